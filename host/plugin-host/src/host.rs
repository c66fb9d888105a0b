//! [`PluginHost`]: the shared wasmtime engine, the plugin directory, and the factory of
//! per-request sessions.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel, Store};

use crate::bindings::{handler, sampler, tokenizer};
use crate::builtin::BUILTIN_PLUGINS;
use crate::plugin::{LoadedPlugin, PluginInfo, PluginKind, PluginPre, PluginSource};
use crate::bounded_clock::{BoundedClocks, bounded_clock};
use crate::state::{CallBudget, PluginState, guarded_call};
use crate::vocab_view::{VocabData, VocabView};
use crate::{
    HandlerSession, ModelFacts, PluginError, PluginHostConfig, SamplerSession, SamplingParams,
    TokenizerSession, cache, plugin,
};

/// Period of the epoch ticker; call time bounds are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Initialised tokenizer instances kept for reuse.
pub(crate) const TOKENIZER_POOL: usize = 8;
/// Bytes a guest may pass to the host in one call (a penalty history, a log line).
const HOSTCALL_BYTES: usize = 4 << 20;
/// Live component-model handles one store may hold.
const MAX_COMPONENT_HANDLES: usize = 10_000;
/// Largest `.wasm` file the plugin folder may hold.
const MAX_PLUGIN_FILE: u64 = 64 << 20;

/// The plugin runtime. Cheap to clone; every clone shares the engine and the directory.
#[derive(Clone)]
pub struct PluginHost {
    pub(crate) inner: Arc<Inner>,
}

/// The pre-linked host functions of each world.
struct Linkers {
    tokenizer: Linker<PluginState>,
    sampler: Linker<PluginState>,
    handler: Linker<PluginState>,
}

/// The plugins loaded, by kind and name, and what the last folder scan saw.
#[derive(Default)]
struct Directory {
    plugins: BTreeMap<(PluginKind, String), Arc<LoadedPlugin>>,
    /// Modification time and length of each scanned file.
    scanned: HashMap<PathBuf, (SystemTime, u64)>,
}

pub(crate) struct Inner {
    pub engine: Engine,
    linkers: Linkers,
    pub cfg: PluginHostConfig,
    pub facts: Arc<ModelFacts>,
    pub vocab: Arc<VocabView>,
    directory: RwLock<Directory>,
    /// Initialised tokenizer instances returned by finished sessions.
    pub tokenizer_pool: Mutex<Vec<crate::tokenizer_session::TokenizerInstance>>,
}

impl Inner {
    /// The budget of a per-request call.
    pub(crate) fn call_budget(&self) -> CallBudget {
        budget(self.cfg.call_timeout, self.cfg.fuel_per_call)
    }

    /// The budget of `info` and `init`.
    pub(crate) fn init_budget(&self) -> CallBudget {
        budget(
            self.cfg.init_timeout,
            self.cfg.fuel_per_call.map(|f| f.saturating_mul(100)),
        )
    }

    /// A fresh store for one instance of `plugin`.
    pub(crate) fn store(&self, plugin: &LoadedPlugin) -> Store<PluginState> {
        let vocab = (plugin.info.kind == PluginKind::Tokenizer).then(|| self.vocab.clone());
        let state = PluginState::new(
            plugin.label.clone(),
            self.facts.clone(),
            vocab,
            self.cfg.memory_limit_bytes,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        store.set_hostcall_fuel(HOSTCALL_BYTES);
        store.set_max_component_handles(MAX_COMPONENT_HANDLES);
        store
    }

    /// The plugin that serves `kind` under `name`.
    pub(crate) fn find(
        &self,
        kind: PluginKind,
        name: &str,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let dir = self.directory.read().unwrap_or_else(|e| e.into_inner());
        dir.plugins
            .get(&(kind, name.to_string()))
            .cloned()
            .ok_or_else(|| PluginError::NotFound {
                kind: kind.as_str(),
                name: name.to_string(),
            })
    }

    /// The plugin that serves a kind with one active plugin (tokenizer, handler): the named
    /// one, else the only one, else the built-in one.
    pub(crate) fn active(
        &self,
        kind: PluginKind,
        wanted: Option<&str>,
        preferred: Option<&str>,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        if let Some(name) = wanted {
            return self.find(kind, name);
        }
        let dir = self.directory.read().unwrap_or_else(|e| e.into_inner());
        let of_kind: Vec<&Arc<LoadedPlugin>> = dir
            .plugins
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, p)| p)
            .collect();
        let pick = match of_kind.as_slice() {
            [only] => Some(*only),
            many => preferred
                .and_then(|n| many.iter().find(|p| p.info.name == n))
                .or_else(|| {
                    many.iter()
                        .find(|p| matches!(p.info.source, PluginSource::Builtin(_)))
                })
                .copied(),
        };
        pick.cloned().ok_or_else(|| PluginError::NotFound {
            kind: kind.as_str(),
            name: wanted.or(preferred).unwrap_or("(any)").to_string(),
        })
    }
}

fn budget(timeout: Duration, fuel: Option<u64>) -> CallBudget {
    let ticks = timeout.as_micros().div_ceil(EPOCH_TICK.as_micros()) as u64 + 1;
    CallBudget {
        epoch_ticks: ticks,
        fuel,
        timeout_ms: timeout.as_millis() as u64,
    }
}

impl PluginHost {
    /// Start the runtime: build the engine, load the built-in plugins (when configured) and
    /// the plugin folder. A plugin that fails to load is logged and skipped; the host fails
    /// only when the runtime itself cannot start.
    pub fn new(
        cfg: PluginHostConfig,
        facts: ModelFacts,
        vocab: &VocabData,
    ) -> Result<Self, PluginError> {
        let engine = make_engine(&cfg)?;
        let vocab = Arc::new(VocabView::new(vocab)?);
        if vocab.len() != facts.vocab_size as usize {
            tracing::warn!(
                event = "plugin_host",
                "vocabulary has {} tokens but the model's vocab size is {}",
                vocab.len(),
                facts.vocab_size
            );
        }
        let linkers = make_linkers(&engine)?;
        let inner = Arc::new(Inner {
            engine,
            linkers,
            cfg,
            facts: Arc::new(facts),
            vocab,
            directory: RwLock::new(Directory::default()),
            tokenizer_pool: Mutex::new(Vec::new()),
        });
        spawn_ticker(Arc::downgrade(&inner))?;
        let host = PluginHost { inner };
        if host.inner.cfg.load_builtins {
            for (crate_name, wasm) in BUILTIN_PLUGINS {
                let source = PluginSource::Builtin(crate_name.to_string());
                match host.load_bytes(wasm, source) {
                    Ok(info) => {
                        tracing::info!(event = "plugin_loaded", plugin = %info.label(), kind = %info.kind, "built-in plugin loaded")
                    }
                    Err(e) => tracing::warn!(
                        event = "plugin_load_failed",
                        code = e.code(),
                        "built-in {crate_name}: {e}"
                    ),
                }
            }
        }
        for result in host.rescan() {
            if let Err(e) = result {
                tracing::warn!(event = "plugin_load_failed", code = e.code(), "{e}");
            }
        }
        Ok(host)
    }

    /// Every plugin loaded, sorted by kind and name.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let dir = self
            .inner
            .directory
            .read()
            .unwrap_or_else(|e| e.into_inner());
        dir.plugins.values().map(|p| p.info.clone()).collect()
    }

    /// Names of the sampler plugins loaded, `standard` first (for the handler's limits).
    pub fn sampler_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .plugins()
            .into_iter()
            .filter(|p| p.kind == PluginKind::Sampler)
            .map(|p| p.name)
            .collect();
        names.sort_by_key(|n| (n != "standard", n.clone()));
        names
    }

    /// Load (or replace) a plugin from a `.wasm` file. A plugin with the same kind and name
    /// replaces the loaded one for new sessions; sessions already open keep the old one.
    pub fn load_file(&self, path: &Path) -> Result<PluginInfo, PluginError> {
        let hint = path.display().to_string();
        let meta = std::fs::metadata(path)
            .map_err(|e| PluginError::load(&hint, format!("cannot read: {e}")))?;
        if meta.len() > MAX_PLUGIN_FILE {
            return Err(PluginError::load(
                &hint,
                format!(
                    "{} bytes is over the {MAX_PLUGIN_FILE}-byte limit",
                    meta.len()
                ),
            ));
        }
        let wasm = std::fs::read(path)
            .map_err(|e| PluginError::load(&hint, format!("cannot read: {e}")))?;
        self.load_bytes(&wasm, PluginSource::File(path.to_path_buf()))
    }

    /// Load (or replace) a plugin from component bytes.
    pub fn load_bytes(&self, wasm: &[u8], source: PluginSource) -> Result<PluginInfo, PluginError> {
        let hint = match &source {
            PluginSource::Builtin(name) => format!("built-in {name}"),
            PluginSource::File(path) => path.display().to_string(),
        };
        let inner = &self.inner;
        let component = cache::compile(&inner.engine, wasm, inner.cfg.cache_dir.as_deref(), &hint)?;
        let (kind, contract) = plugin::inspect(&inner.engine, &component, &hint)?;
        let pre = self.link(kind, &component, &hint)?;
        let mut loaded = LoadedPlugin {
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                kind,
                contract,
                source,
            },
            label: Arc::from(hint.as_str()),
            pre,
        };
        let (name, version, description) = self.read_info(&loaded)?;
        plugin::check_info(&name, &version, &hint)?;
        loaded.info.name = name;
        loaded.info.version = version;
        loaded.info.description = description.chars().take(200).collect();
        loaded.label = Arc::from(loaded.info.label());
        let info = loaded.info.clone();
        let mut dir = inner.directory.write().unwrap_or_else(|e| e.into_inner());
        dir.plugins
            .insert((kind, info.name.clone()), Arc::new(loaded));
        drop(dir);
        if kind == PluginKind::Tokenizer {
            // Pooled instances belong to the replaced plugin.
            inner
                .tokenizer_pool
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        Ok(info)
    }

    /// Scan the plugin folder and load every `.wasm` file that is new or changed since the
    /// last scan. Returns one result per file loaded (nothing when there is no folder).
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
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
            .collect();
        paths.sort();
        let mut results = Vec::new();
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let stamp = (
                meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                meta.len(),
            );
            {
                let d = self
                    .inner
                    .directory
                    .read()
                    .unwrap_or_else(|e| e.into_inner());
                if d.scanned.get(&path) == Some(&stamp) {
                    continue;
                }
            }
            let result = self.load_file(&path);
            match &result {
                Ok(info) => {
                    tracing::info!(event = "plugin_loaded", plugin = %info.label(), kind = %info.kind, path = %path.display(), "plugin loaded")
                }
                Err(e) => tracing::warn!(event = "plugin_load_failed", code = e.code(), "{e}"),
            }
            self.inner
                .directory
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .scanned
                .insert(path, stamp);
            results.push(result);
        }
        results
    }

    /// Rescan the plugin folder every `interval` on a background thread until the host and
    /// its sessions are dropped; load results are logged. Does nothing without a folder.
    pub fn watch(&self, interval: Duration) -> Result<(), PluginError> {
        if self.inner.cfg.plugin_dir.is_none() {
            return Ok(());
        }
        let weak = Arc::downgrade(&self.inner);
        std::thread::Builder::new()
            .name("plugin-watch".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(interval);
                    let Some(inner) = weak.upgrade() else { break };
                    // `rescan` logs each load and failure.
                    let _ = PluginHost { inner }.rescan();
                }
            })
            .map(drop)
            .map_err(|e| PluginError::Runtime(format!("cannot start the plugin watcher: {e}")))
    }

    /// A tokenizer session on the active tokenizer plugin (an initialised instance from the
    /// pool, or a new one).
    pub fn tokenizer(&self) -> Result<TokenizerSession, PluginError> {
        TokenizerSession::open(self.clone())
    }

    /// A sampler session of the plugin `name` for one request.
    pub fn sampler(
        &self,
        name: &str,
        params: &SamplingParams,
        seed: u64,
    ) -> Result<SamplerSession, PluginError> {
        let plugin = self.inner.find(PluginKind::Sampler, name)?;
        SamplerSession::open(self.inner.clone(), plugin, params, seed)
    }

    /// A session of the active request handler.
    pub fn request_handler(&self) -> Result<HandlerSession, PluginError> {
        let plugin = self.inner.active(
            PluginKind::RequestHandler,
            self.inner.cfg.handler.as_deref(),
            Some("orcd"),
        )?;
        HandlerSession::open(self.inner.clone(), plugin)
    }

    /// Facts about the model the plugins see.
    pub fn model_facts(&self) -> &ModelFacts {
        &self.inner.facts
    }

    /// Link a component against the host functions of its kind.
    fn link(
        &self,
        kind: PluginKind,
        component: &Component,
        hint: &str,
    ) -> Result<PluginPre, PluginError> {
        let l = &self.inner.linkers;
        let fail = |e: wasmtime::Error| PluginError::load(hint, format!("cannot link: {e:#}"));
        Ok(match kind {
            PluginKind::Tokenizer => PluginPre::Tokenizer(
                tokenizer::TokenizerPre::new(l.tokenizer.instantiate_pre(component).map_err(fail)?)
                    .map_err(fail)?,
            ),
            PluginKind::Sampler => PluginPre::Sampler(
                sampler::SamplerPre::new(l.sampler.instantiate_pre(component).map_err(fail)?)
                    .map_err(fail)?,
            ),
            PluginKind::RequestHandler => PluginPre::Handler(
                handler::RequestHandlerPre::new(
                    l.handler.instantiate_pre(component).map_err(fail)?,
                )
                .map_err(fail)?,
            ),
        })
    }

    /// Instantiate once and call `info()`.
    fn read_info(&self, plugin: &LoadedPlugin) -> Result<(String, String, String), PluginError> {
        let inner = &self.inner;
        let mut store = inner.store(plugin);
        let budget = inner.init_budget();
        let info = match &plugin.pre {
            PluginPre::Tokenizer(pre) => guarded_call(&mut store, budget, |s| {
                let b = pre.instantiate(&mut *s)?;
                b.worker_plugin_tokenizer_plugin().call_info(&mut *s)
            }),
            PluginPre::Sampler(pre) => guarded_call(&mut store, budget, |s| {
                let b = pre.instantiate(&mut *s)?;
                b.worker_plugin_sampler_plugin().call_info(&mut *s)
            }),
            PluginPre::Handler(pre) => guarded_call(&mut store, budget, |s| {
                let b = pre.instantiate(&mut *s)?;
                b.worker_plugin_handler_plugin().call_info(&mut *s)
            }),
        }
        .map_err(|e| PluginError::load(plugin.label.to_string(), format!("info() failed: {e}")))?;
        Ok((info.name, info.version, info.description))
    }
}

/// The engine every plugin shares: components, epoch interruption, optional fuel, a bounded
/// stack, and none of the Wasm proposals the plugins do not need.
fn make_engine(cfg: &PluginHostConfig) -> Result<Engine, PluginError> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(cfg.fuel_per_call.is_some())
        .max_wasm_stack(cfg.max_stack_bytes)
        .cranelift_opt_level(OptLevel::Speed)
        .wasm_memory64(false)
        .wasm_multi_memory(false)
        .wasm_relaxed_simd(false);
    Engine::new(&config).map_err(|e| PluginError::Runtime(format!("cannot start wasmtime: {e:#}")))
}

/// WASI with nothing granted plus each world's host interfaces.
fn make_linkers(engine: &Engine) -> Result<Linkers, PluginError> {
    let fail = |e: wasmtime::Error| PluginError::Runtime(format!("cannot build linker: {e:#}"));
    let base = || -> Result<Linker<PluginState>, PluginError> {
        let mut l = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut l).map_err(fail)?;
        // The monotonic clock again, with waits bounded by the call's deadline.
        l.allow_shadowing(true);
        wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<_, BoundedClocks>(
            &mut l,
            bounded_clock,
        )
        .map_err(fail)?;
        l.allow_shadowing(false);
        Ok(l)
    };
    let mut tok = base()?;
    tokenizer::Tokenizer::add_to_linker::<_, HasSelf<PluginState>>(&mut tok, |s| s)
        .map_err(fail)?;
    let mut samp = base()?;
    sampler::Sampler::add_to_linker::<_, HasSelf<PluginState>>(&mut samp, |s| s).map_err(fail)?;
    let mut hand = base()?;
    handler::RequestHandler::add_to_linker::<_, HasSelf<PluginState>>(&mut hand, |s| s)
        .map_err(fail)?;
    Ok(Linkers {
        tokenizer: tok,
        sampler: samp,
        handler: hand,
    })
}

/// Advance the engine's epoch every [`EPOCH_TICK`] until the host and its sessions are dropped.
fn spawn_ticker(inner: Weak<Inner>) -> Result<(), PluginError> {
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            while let Some(inner) = inner.upgrade() {
                let engine = inner.engine.clone();
                drop(inner);
                engine.increment_epoch();
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .map_err(|e| PluginError::Runtime(format!("cannot start the epoch ticker: {e}")))
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let labels: Vec<String> = self.plugins().iter().map(PluginInfo::label).collect();
        f.debug_struct("PluginHost")
            .field("plugins", &labels)
            .finish()
    }
}
