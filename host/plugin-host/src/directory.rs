//! The plugin directory: which plugin serves each (kind, name), and the plugin folder as the
//! truth about it.
//!
//! A rescan compares the folder with what the last one saw: a new or changed `.wasm` file is
//! loaded (replacing the plugin of the same kind and name for new sessions), a removed file
//! unloads its plugin, a file that fails to load unloads what it held before and is reported
//! (with its error) until it is fixed or removed. Sessions hold an `Arc` of their plugin, so a
//! request in flight keeps the version it started with; the plugin's memory goes when its last
//! session ends (counted as `released`). Removing a file that shadowed a built-in plugin brings
//! the built-in back. Every change is logged and counted ([`DirectoryChanges`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use crate::plugin::{LoadedPlugin, PluginKind, PluginSource};
use crate::{PluginError, PluginHost, PluginInfo};

/// Which plugin serves a kind under a name.
pub(crate) type Key = (PluginKind, String);

/// The plugins loaded and what the last folder scan saw.
#[derive(Default)]
pub(crate) struct Directory {
    /// The plugin serving each key.
    pub plugins: BTreeMap<Key, Arc<LoadedPlugin>>,
    /// Built-in plugins, kept so that removing a file that shadowed one restores it.
    pub builtins: BTreeMap<Key, Arc<LoadedPlugin>>,
    /// Each `.wasm` file of the folder as last scanned.
    pub files: HashMap<PathBuf, FileState>,
}

/// A scanned file: its modification time and length, and what it loaded or why it failed.
pub(crate) struct FileState {
    stamp: (SystemTime, u64),
    outcome: Result<Key, LoadFailure>,
}

/// A plugin file that failed to load (reported by `/health` until fixed or removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadFailure {
    /// The file.
    pub path: PathBuf,
    /// The stable code (`PLUGIN_LOAD_FAILED`, or `PLUGIN_TRAP`... when `info()` failed).
    pub code: orcd_device::ErrorCode,
    /// Why, naming the file.
    pub message: String,
}

/// Counts of directory changes since the host started.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryChanges {
    /// Plugins loaded under a new kind and name (built-ins included).
    pub loaded: u64,
    /// Plugins that replaced another of the same kind and name.
    pub replaced: u64,
    /// Plugins taken out of the directory (file removed, or now failing to load).
    pub unloaded: u64,
    /// Unloaded or replaced plugins whose last session ended (their memory is freed).
    pub released: u64,
    /// Files that failed to load.
    pub failed: u64,
}

/// The counters behind [`DirectoryChanges`], shared with every loaded plugin (which counts its
/// own release when dropped).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    loaded: AtomicU64,
    replaced: AtomicU64,
    unloaded: AtomicU64,
    pub released: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> DirectoryChanges {
        DirectoryChanges {
            loaded: self.loaded.load(Ordering::Relaxed),
            replaced: self.replaced.load(Ordering::Relaxed),
            unloaded: self.unloaded.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

impl Directory {
    /// Put `plugin` in service under its key; counts and logs a load or a replacement.
    pub(crate) fn insert(&mut self, plugin: Arc<LoadedPlugin>, counters: &Counters) {
        let info = &plugin.info;
        let key = (info.kind, info.name.clone());
        if matches!(info.source, PluginSource::Builtin(_)) {
            self.builtins.insert(key.clone(), plugin.clone());
        }
        let source = source_text(&info.source);
        match self.plugins.insert(key, plugin.clone()) {
            Some(old) => {
                Counters::bump(&counters.replaced);
                tracing::info!(event = "plugin_replaced", plugin = %info.label(), kind = %info.kind,
                    replaced = %old.info.label(), source = %source, "plugin replaced; sessions in flight keep the old version");
            }
            None => {
                Counters::bump(&counters.loaded);
                tracing::info!(event = "plugin_loaded", plugin = %info.label(), kind = %info.kind,
                    source = %source, "plugin loaded");
            }
        }
    }

    /// Take the plugin that `path` loaded out of service (the built-in of the same key comes
    /// back, when there is one); nothing when another file or a built-in serves the key now.
    fn unload(&mut self, key: &Key, path: &Path, why: &str, counters: &Counters) {
        let from_path = self
            .plugins
            .get(key)
            .is_some_and(|p| p.info.source == PluginSource::File(path.to_path_buf()));
        if !from_path {
            return;
        }
        let old = match self.builtins.get(key) {
            Some(builtin) => self.plugins.insert(key.clone(), builtin.clone()),
            None => self.plugins.remove(key),
        };
        if let Some(old) = old {
            Counters::bump(&counters.unloaded);
            tracing::info!(event = "plugin_unloaded", plugin = %old.info.label(), kind = %old.info.kind,
                path = %path.display(), restored_builtin = self.builtins.contains_key(key),
                "plugin unloaded ({why}); sessions in flight keep it until they end");
        }
    }

    /// The files that failed to load, by path.
    pub(crate) fn failures(&self) -> Vec<LoadFailure> {
        let mut out: Vec<LoadFailure> = self
            .files
            .values()
            .filter_map(|f| f.outcome.as_ref().err().cloned())
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }
}

fn source_text(source: &PluginSource) -> String {
    match source {
        PluginSource::Builtin(name) => format!("built-in {name}"),
        PluginSource::File(path) => path.display().to_string(),
    }
}

impl PluginHost {
    /// Bring the directory in line with the plugin folder: load every `.wasm` file that is new
    /// or changed since the last scan, unload the plugins of files that are gone (or now fail
    /// to load). Returns one result per file loaded (nothing when there is no folder).
    pub fn rescan(&self) -> Vec<Result<PluginInfo, PluginError>> {
        let Some(dir) = self.inner.cfg.plugin_dir.clone() else {
            return Vec::new();
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                return vec![Err(PluginError::Runtime(format!(
                    "cannot read plugin folder {}: {e}",
                    dir.display()
                )))];
            }
        };
        let mut present: BTreeMap<PathBuf, (SystemTime, u64)> = BTreeMap::new();
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_none_or(|x| x != "wasm") {
                continue;
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_file() {
                let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                present.insert(path, (modified, meta.len()));
            }
        }
        let counters = &self.inner.counters;
        // Files that are gone.
        {
            let mut d = self.directory_mut();
            let gone: Vec<PathBuf> = d
                .files
                .keys()
                .filter(|p| !present.contains_key(*p))
                .cloned()
                .collect();
            for path in gone {
                if let Some(FileState {
                    outcome: Ok(key), ..
                }) = d.files.remove(&path)
                {
                    d.unload(&key, &path, "its file was removed", counters);
                }
            }
        }
        // Files that are new or changed.
        let mut results = Vec::new();
        for (path, stamp) in present {
            let before = self.directory().files.get(&path).map(|f| {
                let key = f.outcome.as_ref().ok().cloned();
                (f.stamp, key)
            });
            if before.as_ref().is_some_and(|(s, _)| *s == stamp) {
                continue;
            }
            let result = self.load_file(&path);
            let mut d = self.directory_mut();
            let old_key = before.and_then(|(_, k)| k);
            let outcome = match &result {
                Ok(info) => {
                    let key = (info.kind, info.name.clone());
                    if let Some(old) = old_key.filter(|k| *k != key) {
                        d.unload(&old, &path, "its file now holds another plugin", counters);
                    }
                    Ok(key)
                }
                Err(e) => {
                    Counters::bump(&counters.failed);
                    tracing::warn!(event = "plugin_load_failed", code = e.code().as_str(), path = %path.display(), "{e}");
                    if let Some(old) = old_key {
                        d.unload(&old, &path, "its file no longer loads", counters);
                    }
                    Err(LoadFailure {
                        path: path.clone(),
                        code: e.code(),
                        message: e.to_string(),
                    })
                }
            };
            d.files.insert(path, FileState { stamp, outcome });
            drop(d);
            results.push(result);
        }
        self.clear_stale_tokenizers();
        results
    }

    /// Counts of directory changes since start (for `/metrics`).
    pub fn directory_changes(&self) -> DirectoryChanges {
        self.inner.counters.snapshot()
    }

    /// The plugin files that failed to load at the last scan that saw them (for `/health`).
    pub fn load_failures(&self) -> Vec<LoadFailure> {
        self.directory().failures()
    }
}
