//! [`PluginHost`]: the shared wasmtime engine, the plugin directory, and the factory of
//! per-request sessions.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use orcd_common::Vocab;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel, Store};

use crate::bindings::{constraint, handler, sampler, tokenizer, v0_1_0};
use crate::bounded_clock::{BoundedClocks, bounded_clock};
use crate::builtin::BUILTIN_PLUGINS;
use crate::directory::{Counters, Directory};
use crate::plugin::{LoadedPlugin, PluginInfo, PluginKind, PluginPre, PluginSource};
use crate::state::{CallBudget, PluginState, guarded_call};
use crate::versions::Contract;
use crate::vocab_view::VocabView;
use crate::{
    ConstraintSession, HandlerSession, ModelFacts, PluginError, PluginHostConfig, SamplerSession,
    SamplingParams, TokenizerSession, cache, plugin,
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

/// The pre-linked host functions of each world, per contract version.
struct Linkers {
    tokenizer: Linker<PluginState>,
    sampler: Linker<PluginState>,
    handler: Linker<PluginState>,
    tokenizer_v0_1: Linker<PluginState>,
    sampler_v0_1: Linker<PluginState>,
    handler_v0_1: Linker<PluginState>,
    constraint: Linker<PluginState>,
}

pub(crate) struct Inner {
    pub engine: Engine,
    linkers: Linkers,
    pub cfg: PluginHostConfig,
    pub facts: Arc<ModelFacts>,
    pub vocab: Arc<VocabView>,
    directory: RwLock<Directory>,
    /// Changes of the directory, counted.
    pub counters: Arc<Counters>,
    /// Initialised tokenizer instances returned by finished sessions.
    pub tokenizer_pool: Mutex<Vec<crate::tokenizer_session::TokenizerInstance>>,
    /// Initialised constraint instances returned by finished sessions.
    pub constraint_pool: Mutex<Vec<crate::constraint_session::ConstraintInstance>>,
}

impl Inner {
    /// The directory, for reading.
    pub(crate) fn directory(&self) -> RwLockReadGuard<'_, Directory> {
        self.directory.read().unwrap_or_else(|e| e.into_inner())
    }

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
        let reads_vocab = matches!(
            plugin.info.kind,
            PluginKind::Tokenizer | PluginKind::Constraint
        );
        let vocab = reads_vocab.then(|| self.vocab.clone());
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
        let dir = self.directory();
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
        let dir = self.directory();
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
        vocab: &Vocab,
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
        let linkers = make_linkers(&engine, cfg.bulk_candidate_lists)?;
        let inner = Arc::new(Inner {
            engine,
            linkers,
            cfg,
            facts: Arc::new(facts),
            vocab,
            directory: RwLock::new(Directory::default()),
            counters: Arc::new(Counters::default()),
            tokenizer_pool: Mutex::new(Vec::new()),
            constraint_pool: Mutex::new(Vec::new()),
        });
        spawn_ticker(Arc::downgrade(&inner))?;
        let host = PluginHost { inner };
        if host.inner.cfg.load_builtins {
            for (crate_name, _version, wasm) in BUILTIN_PLUGINS {
                let source = PluginSource::Builtin(crate_name.to_string());
                match host.load_bytes(wasm, source) {
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        event = "plugin_load_failed",
                        code = e.code().as_str(),
                        "built-in {crate_name}: {e}"
                    ),
                }
            }
        }
        // `rescan` logs each load and failure.
        let _ = host.rescan();
        Ok(host)
    }

    /// Every plugin loaded, sorted by kind and name.
    pub fn plugins(&self) -> Vec<PluginInfo> {
        let dir = self.directory();
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
        let (kind, contract, version) = plugin::inspect(&inner.engine, &component, &hint)?;
        let pre = self.link(kind, version, &component, &hint)?;
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
            released: None,
        };
        let (name, version, description) = self.read_info(&loaded)?;
        plugin::check_info(&name, &version, &hint)?;
        loaded.info.name = name;
        loaded.info.version = version;
        loaded.info.description = description.chars().take(200).collect();
        loaded.label = Arc::from(loaded.info.label());
        loaded.released = Some(inner.counters.clone());
        let info = loaded.info.clone();
        self.directory_mut()
            .insert(Arc::new(loaded), &inner.counters);
        if kind == PluginKind::Tokenizer {
            self.clear_stale_tokenizers();
        }
        Ok(info)
    }

    /// The directory, for reading.
    pub(crate) fn directory(&self) -> RwLockReadGuard<'_, Directory> {
        self.inner.directory()
    }

    /// The directory, for changing.
    pub(crate) fn directory_mut(&self) -> RwLockWriteGuard<'_, Directory> {
        self.inner
            .directory
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Drop pooled tokenizer instances of a plugin that no longer serves (they would keep it
    /// in memory).
    pub(crate) fn clear_stale_tokenizers(&self) {
        let active = self
            .inner
            .active(
                PluginKind::Tokenizer,
                self.inner.cfg.tokenizer.as_deref(),
                None,
            )
            .ok();
        crate::tokenizer_session::retain_pooled(&self.inner, active.as_ref());
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

    /// Admission check of a request's sampler: the plugin `name` is loaded
    /// ([`PluginError::NotFound`] otherwise) and its `validate` accepts `params`
    /// ([`PluginError::InvalidRequest`] naming the field otherwise). Runs on a fresh instance,
    /// under the same bounds as any call; a 0.1.0 sampler has no `validate` and accepts here.
    pub fn validate_sampler(&self, name: &str, params: &SamplingParams) -> Result<(), PluginError> {
        let plugin = self.inner.find(PluginKind::Sampler, name)?;
        match crate::sampler_session::validate(&self.inner, &plugin, params)? {
            Ok(()) => Ok(()),
            Err(f) => Err(PluginError::InvalidRequest {
                field: f.field,
                message: f.message,
            }),
        }
    }

    /// Names of the constraint plugins loaded, `structured` (the built-in) first.
    pub fn constraint_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .plugins()
            .into_iter()
            .filter(|p| p.kind == PluginKind::Constraint)
            .map(|p| p.name)
            .collect();
        names.sort_by_key(|n| (n != "structured", n.clone()));
        names
    }

    /// A constraint session of the plugin `name` for one request: `spec` of `kind`
    /// (`json-schema`, `json-object`, `regex`, `gbnf`) compiled for the model's vocabulary. A plugin
    /// that refuses the spec gives [`PluginError::Reported`] with its code and message.
    pub fn constraint(
        &self,
        name: &str,
        kind: &str,
        spec: &str,
    ) -> Result<ConstraintSession, PluginError> {
        let plugin = self.inner.find(PluginKind::Constraint, name)?;
        ConstraintSession::open(self.inner.clone(), plugin, kind, spec)
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

    /// Link a component against the host functions of its kind and contract version.
    fn link(
        &self,
        kind: PluginKind,
        contract: Contract,
        component: &Component,
        hint: &str,
    ) -> Result<PluginPre, PluginError> {
        let l = &self.inner.linkers;
        let fail = |e: wasmtime::Error| PluginError::load(hint, format!("cannot link: {e:#}"));
        Ok(match (kind, contract) {
            (PluginKind::Constraint, Contract::V0_2) => PluginPre::Constraint(
                constraint::ConstraintPre::new(
                    l.constraint.instantiate_pre(component).map_err(fail)?,
                )
                .map_err(fail)?,
            ),
            (PluginKind::Constraint, Contract::V0_1) => {
                return Err(PluginError::load(
                    hint,
                    "the constraint world exists from contract 0.2.0 on",
                ));
            }
            (PluginKind::Tokenizer, Contract::V0_2) => PluginPre::Tokenizer(
                tokenizer::TokenizerPre::new(l.tokenizer.instantiate_pre(component).map_err(fail)?)
                    .map_err(fail)?,
            ),
            (PluginKind::Sampler, Contract::V0_2) => PluginPre::Sampler(
                sampler::SamplerPre::new(l.sampler.instantiate_pre(component).map_err(fail)?)
                    .map_err(fail)?,
            ),
            (PluginKind::RequestHandler, Contract::V0_2) => PluginPre::Handler(
                handler::RequestHandlerPre::new(
                    l.handler.instantiate_pre(component).map_err(fail)?,
                )
                .map_err(fail)?,
            ),
            (PluginKind::Tokenizer, Contract::V0_1) => PluginPre::TokenizerV0_1(
                v0_1_0::tokenizer::TokenizerPre::new(
                    l.tokenizer_v0_1.instantiate_pre(component).map_err(fail)?,
                )
                .map_err(fail)?,
            ),
            (PluginKind::Sampler, Contract::V0_1) => PluginPre::SamplerV0_1(
                v0_1_0::sampler::SamplerPre::new(
                    l.sampler_v0_1.instantiate_pre(component).map_err(fail)?,
                )
                .map_err(fail)?,
            ),
            (PluginKind::RequestHandler, Contract::V0_1) => PluginPre::HandlerV0_1(
                v0_1_0::handler::RequestHandlerPre::new(
                    l.handler_v0_1.instantiate_pre(component).map_err(fail)?,
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
        let pre = &plugin.pre;
        let info = guarded_call(&mut store, budget, |s| {
            if let Some(b) = pre.tokenizer(s) {
                return b?.info(s);
            }
            if let Some(b) = pre.sampler(s) {
                return b?.info(s);
            }
            if let Some(b) = pre.constraint(s) {
                return b?.info(s);
            }
            match pre.handler(s) {
                Some(b) => b?.info(s),
                None => Err(wasmtime::Error::msg("no plugin kind matched")),
            }
        })
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

/// WASI with nothing granted plus each world's host interfaces, for each contract version.
fn make_linkers(engine: &Engine, bulk_candidate_lists: bool) -> Result<Linkers, PluginError> {
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
    type H = HasSelf<PluginState>;
    let mut tok = base()?;
    tokenizer::Tokenizer::add_to_linker::<_, H>(&mut tok, |s| s).map_err(fail)?;
    let mut samp = base()?;
    sampler::Sampler::add_to_linker::<_, H>(&mut samp, |s| s).map_err(fail)?;
    if bulk_candidate_lists {
        crate::logits::add_bulk_top_k(&mut samp).map_err(fail)?;
    }
    let mut hand = base()?;
    handler::RequestHandler::add_to_linker::<_, H>(&mut hand, |s| s).map_err(fail)?;
    let mut cons = base()?;
    constraint::Constraint::add_to_linker::<_, H>(&mut cons, |s| s).map_err(fail)?;
    let mut tok1 = base()?;
    v0_1_0::tokenizer::Tokenizer::add_to_linker::<_, H>(&mut tok1, |s| s).map_err(fail)?;
    let mut samp1 = base()?;
    v0_1_0::sampler::Sampler::add_to_linker::<_, H>(&mut samp1, |s| s).map_err(fail)?;
    let mut hand1 = base()?;
    v0_1_0::handler::RequestHandler::add_to_linker::<_, H>(&mut hand1, |s| s).map_err(fail)?;
    Ok(Linkers {
        tokenizer: tok,
        sampler: samp,
        handler: hand,
        tokenizer_v0_1: tok1,
        sampler_v0_1: samp1,
        handler_v0_1: hand1,
        constraint: cons,
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
