//! Where compiled plugins are cached: the per-user cache folder by default
//! (`$XDG_CACHE_HOME/worker-orcd/plugins`, else `~/.cache/worker-orcd/plugins`), moved with
//! `--plugin-cache DIR`, turned off with `--no-plugin-cache`. Compiling the three built-in
//! plugins costs most of a second at every start; with the cache, a start deserializes them.
//!
//! The folder holds native code the worker loads, so it is created readable and writable by
//! this user alone (mode 0700); the cache itself checks every file's name and checksum.

use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args, Debug, Clone)]
pub struct PluginCacheArgs {
    /// Folder for compiled plugins, reused across runs (default: the per-user cache,
    /// $XDG_CACHE_HOME/worker-orcd/plugins or ~/.cache/worker-orcd/plugins).
    #[arg(long, value_name = "DIR", conflicts_with = "no_plugin_cache")]
    pub plugin_cache: Option<PathBuf>,
    /// Compile the plugins at every start; read and write no cache.
    #[arg(long)]
    pub no_plugin_cache: bool,
}

impl PluginCacheArgs {
    /// The cache folder to use (created, private to this user), or none when turned off.
    pub fn resolve(&self) -> anyhow::Result<Option<PathBuf>> {
        if self.no_plugin_cache {
            return Ok(None);
        }
        let dir = match &self.plugin_cache {
            Some(dir) => dir.clone(),
            None => dirs::cache_dir()
                .context(
                    "no per-user cache folder (neither XDG_CACHE_HOME nor HOME is set): pass \
                     --plugin-cache DIR or --no-plugin-cache",
                )?
                .join("worker-orcd")
                .join("plugins"),
        };
        create_private(&dir)
            .with_context(|| format!("cannot create the plugin cache {}", dir.display()))?;
        Ok(Some(dir))
    }
}

#[cfg(unix)]
fn create_private(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}
