//! [`ConstraintSession`]: one request's constraint, asked for the allowed tokens before each
//! sample and told each token taken.
//!
//! Building a constraint plugin's tables reads the whole vocabulary, so initialised instances
//! are pooled like tokenizer instances: a session takes one (or builds one), compiles its
//! constraint into a guest `constraint` resource, and gives the instance back when dropped,
//! unless it failed or its plugin was replaced. The guest caches compiled constraints, so a
//! pooled instance also keeps the automata and masks of recent schemas.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::host::Inner;
use crate::plugin::{LoadedPlugin, PluginKind};
use crate::state::{PluginState, guarded_call};
use crate::tokenizer_session::reported;
use crate::versions::ConstraintBindings;
use crate::{PluginError, PluginInfo};

/// Initialised constraint instances kept for reuse.
const POOL: usize = 8;
/// Longest constraint spec (a schema or an expression), in bytes.
pub const MAX_SPEC_BYTES: usize = 256 << 10;

/// An initialised constraint instance.
pub(crate) struct ConstraintInstance {
    plugin: Arc<LoadedPlugin>,
    store: Store<PluginState>,
    bindings: ConstraintBindings,
}

/// A compiled constraint for one request. Not reusable after a failure.
pub struct ConstraintSession {
    inner: Arc<Inner>,
    plugin: Arc<LoadedPlugin>,
    /// None after a trap: the instance was dropped, never to be reused.
    live: Option<(ConstraintInstance, ResourceAny)>,
    /// `ceil(vocab / 32)`: the length every `allowed` answer must have.
    words: usize,
}

impl ConstraintSession {
    pub(crate) fn open(
        inner: Arc<Inner>,
        plugin: Arc<LoadedPlugin>,
        kind: &str,
        spec: &str,
    ) -> Result<Self, PluginError> {
        if spec.len() > MAX_SPEC_BYTES {
            return Err(PluginError::InvalidRequest {
                field: "constraint".into(),
                message: format!(
                    "{} bytes is over the {MAX_SPEC_BYTES}-byte limit",
                    spec.len()
                ),
            });
        }
        let pooled = {
            let mut pool = inner
                .constraint_pool
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let at = pool.iter().rposition(|i| Arc::ptr_eq(&i.plugin, &plugin));
            at.map(|i| pool.swap_remove(i))
        };
        let mut inst = match pooled {
            Some(i) => i,
            None => new_instance(&inner, plugin.clone())?,
        };
        let bindings = &inst.bindings;
        // Compiling a large schema may take longer than a per-token call.
        let compiled = guarded_call(&mut inst.store, inner.init_budget(), |s| {
            bindings.compile(s, kind, spec)
        })?;
        let resource = match compiled {
            Ok(r) => r,
            Err(e) => {
                give_back(&inner, inst);
                return Err(reported(&plugin, e));
            }
        };
        let words = (inner.facts.vocab_size as usize).div_ceil(32);
        Ok(ConstraintSession {
            inner,
            plugin,
            live: Some((inst, resource)),
            words,
        })
    }

    /// The plugin serving this session.
    pub fn plugin(&self) -> &PluginInfo {
        &self.plugin.info
    }

    /// The allowed-token bitset for the next token: `ceil(vocab / 32)` words, token `i`
    /// allowed when bit `i % 32` of word `i / 32` is set (bits past the vocabulary clear).
    /// `remaining`: tokens the request may still generate, the end token included (the plugin
    /// narrows the mask so the output can complete within it).
    pub fn allowed(&mut self, remaining: u32) -> Result<Vec<u32>, PluginError> {
        let words = self.words;
        let vocab = self.inner.facts.vocab_size as usize;
        let label = self.plugin.label.to_string();
        let mut mask = self.call(|b, s, c| Ok(Ok(b.allowed(s, c, remaining)?)))?;
        if mask.len() != words {
            self.live = None;
            return Err(PluginError::invalid_output(
                label,
                format!(
                    "allowed returned {} words for a vocabulary of {vocab} ({words} words)",
                    mask.len()
                ),
            ));
        }
        if !vocab.is_multiple_of(32) {
            // Bits past the vocabulary name no token.
            mask[words - 1] &= (1u32 << (vocab % 32)) - 1;
        }
        Ok(mask)
    }

    /// Take the sampled token.
    pub fn advance(&mut self, token: u32) -> Result<(), PluginError> {
        self.call(|b, s, c| b.advance(s, c, token))
    }

    /// Whether the output so far satisfies the constraint.
    pub fn is_complete(&mut self) -> Result<bool, PluginError> {
        self.call(|b, s, c| Ok(Ok(b.is_complete(s, c)?)))
    }

    /// Run one export on the session's resource; a trap drops the instance.
    fn call<R>(
        &mut self,
        f: impl FnOnce(
            &ConstraintBindings,
            &mut Store<PluginState>,
            ResourceAny,
        ) -> wasmtime::Result<Result<R, crate::bindings::types::Error>>,
    ) -> Result<R, PluginError> {
        let Some((inst, resource)) = self.live.as_mut() else {
            return Err(PluginError::Trap {
                plugin: self.plugin.label.to_string(),
                reason: "the instance was dropped after an earlier failure".into(),
            });
        };
        let bindings = &inst.bindings;
        let resource = *resource;
        match guarded_call(&mut inst.store, self.inner.call_budget(), |s| {
            f(bindings, s, resource)
        }) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(reported(&self.plugin, e)),
            Err(e) => {
                self.live = None;
                Err(e)
            }
        }
    }
}

impl Drop for ConstraintSession {
    fn drop(&mut self) {
        let Some((mut inst, resource)) = self.live.take() else {
            return;
        };
        let budget = self.inner.call_budget();
        if guarded_call(&mut inst.store, budget, |s| resource.resource_drop(s)).is_ok() {
            give_back(&self.inner, inst);
        }
    }
}

/// Return an instance to the pool when its plugin still serves under its name.
fn give_back(inner: &Inner, inst: ConstraintInstance) {
    let current = inner
        .find(PluginKind::Constraint, &inst.plugin.info.name)
        .ok();
    if !current.is_some_and(|c| Arc::ptr_eq(&c, &inst.plugin)) {
        return;
    }
    let mut pool = inner
        .constraint_pool
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if pool.len() < POOL {
        pool.push(inst);
    }
}

/// Instantiate the constraint plugin and run its `init`.
fn new_instance(
    inner: &Inner,
    plugin: Arc<LoadedPlugin>,
) -> Result<ConstraintInstance, PluginError> {
    let mut store = inner.store(&plugin);
    let budget = inner.init_budget();
    let pre = &plugin.pre;
    let bindings = guarded_call(&mut store, budget, |s| {
        pre.constraint(s)
            .unwrap_or_else(|| Err(wasmtime::Error::msg("not a constraint plugin")))
    })?;
    match guarded_call(&mut store, budget, |s| bindings.init(s))? {
        Ok(()) => {}
        Err(e) => return Err(reported(&plugin, e)),
    }
    Ok(ConstraintInstance {
        plugin,
        store,
        bindings,
    })
}

impl std::fmt::Debug for ConstraintSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintSession")
            .field("plugin", &self.plugin.label)
            .field("live", &self.live.is_some())
            .finish()
    }
}
