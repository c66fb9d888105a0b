//! Compiled components cached on disk, keyed by the hash of the component bytes and the
//! engine's compatibility hash.
//!
//! Layout of the cache folder: `<sha256 of .wasm>-<engine hash>.cwasm` (the native code
//! wasmtime produced) and beside it `<same>.sha256` (the hex SHA-256 of that `.cwasm`). A file
//! is only deserialized when its name matches the key this host computes and its content
//! matches the checksum this host wrote; anything else is recompiled and overwritten.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::PluginError;

/// Serial for temporary file names of this process.
static TMP_SERIAL: AtomicU64 = AtomicU64::new(0);

/// Lower-case hex of a SHA-256 digest.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The cache key of `wasm` for `engine`.
fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    format!("{}-{:016x}", sha256_hex(wasm), h.finish())
}

/// Compile `wasm` into a component, through the cache when there is one.
pub(crate) fn compile(
    engine: &Engine,
    wasm: &[u8],
    cache_dir: Option<&Path>,
    hint: &str,
) -> Result<Component, PluginError> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, wasm)
            .map_err(|e| PluginError::load(hint, format!("not a valid component: {e:#}")));
    };
    let key = cache_key(engine, wasm);
    let code_path = dir.join(format!("{key}.cwasm"));
    let sum_path = dir.join(format!("{key}.sha256"));
    if let Some(component) = read_cached(engine, &code_path, &sum_path) {
        return Ok(component);
    }
    let code = engine
        .precompile_component(wasm)
        .map_err(|e| PluginError::load(hint, format!("not a valid component: {e:#}")))?;
    if let Err(e) = write_cached(dir, &code_path, &sum_path, &code) {
        tracing::warn!(event = "plugin_cache", path = %code_path.display(), "cannot write the compile cache: {e}");
    }
    // SAFETY: `code` was produced by `precompile_component` of this very engine just above.
    unsafe { Component::deserialize(engine, &code) }
        .map_err(|e| PluginError::load(hint, format!("cannot load compiled code: {e:#}")))
}

/// The cached component, when both files exist and the checksum matches.
fn read_cached(engine: &Engine, code_path: &Path, sum_path: &Path) -> Option<Component> {
    let sum = std::fs::read_to_string(sum_path).ok()?;
    let code = std::fs::read(code_path).ok()?;
    if sha256_hex(&code) != sum.trim() {
        tracing::warn!(event = "plugin_cache", path = %code_path.display(), "checksum mismatch; recompiling");
        return None;
    }
    // SAFETY: the file sits under the name this host derives from the component's hash and the
    // engine's compatibility hash, and its content matches the checksum this host wrote beside
    // it after `precompile_component`; the cache folder belongs to the worker alone.
    match unsafe { Component::deserialize(engine, &code) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(event = "plugin_cache", path = %code_path.display(), "cannot deserialize ({e}); recompiling");
            None
        }
    }
}

/// Write code and checksum through temporary files renamed into place.
fn write_cached(dir: &Path, code_path: &Path, sum_path: &Path, code: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = |ext: &str| -> PathBuf {
        let n = TMP_SERIAL.fetch_add(1, Ordering::Relaxed);
        dir.join(format!(".tmp-{}-{n}.{ext}", std::process::id()))
    };
    let code_tmp = tmp("cwasm");
    std::fs::write(&code_tmp, code)?;
    std::fs::rename(&code_tmp, code_path)?;
    let sum_tmp = tmp("sha256");
    std::fs::write(&sum_tmp, sha256_hex(code))?;
    std::fs::rename(&sum_tmp, sum_path)?;
    Ok(())
}
