//! [`SamplerSession`]: one request's sampler instance, called once per generated token.
//!
//! The session owns a store with one guest `session` resource (parameters, RNG state). Each
//! [`SamplerSession::sample`] lends the caller's logits source to the store for the duration
//! of the guest call through a `logits` handle; the guest's argmax / top-k / penalty calls go
//! straight to the device.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::ResourceAny;

use crate::host::Inner;
use crate::logits::{LogitsBinding, LogitsSource};
use crate::plugin::LoadedPlugin;
use crate::state::{PluginState, guarded_call};
use crate::tokenizer_session::reported;
use crate::versions::SamplerBindings;
use crate::{PluginError, PluginInfo, SamplingParams};

/// Most history tokens passed to one `sample` call.
const MAX_HISTORY: usize = 1 << 16;

/// The live instance of a session.
struct Live {
    store: Store<PluginState>,
    bindings: SamplerBindings,
    /// The guest's `session` resource.
    session: ResourceAny,
}

/// A sampler for one request. Not reusable after a failure: a trapped instance is dropped.
pub struct SamplerSession {
    /// Keeps the runtime (and its epoch ticker) alive while the session is.
    inner: Arc<Inner>,
    plugin: Arc<LoadedPlugin>,
    live: Option<Live>,
    /// Serial number of the next `sample` call.
    calls: u64,
}

impl SamplerSession {
    pub(crate) fn open(
        inner: Arc<Inner>,
        plugin: Arc<LoadedPlugin>,
        params: &SamplingParams,
        seed: u64,
    ) -> Result<Self, PluginError> {
        let (mut store, bindings) = instantiate(&inner, &plugin)?;
        let budget = inner.call_budget();
        let opened = guarded_call(&mut store, budget, |s| bindings.open(s, params, seed))?;
        let session = opened.map_err(|e| reported(&plugin, e))?;
        Ok(SamplerSession {
            inner,
            plugin,
            live: Some(Live {
                store,
                bindings,
                session,
            }),
            calls: 0,
        })
    }

    /// The plugin serving this session.
    pub fn plugin(&self) -> &PluginInfo {
        &self.plugin.info
    }

    /// Pick the next token from row `row` of `logits`; `history` is the sequence so far
    /// (the caller passes at most the penalty window). The id is checked against the
    /// vocabulary.
    pub fn sample(
        &mut self,
        logits: &mut dyn LogitsSource,
        row: usize,
        history: &[u32],
    ) -> Result<u32, PluginError> {
        let Some(live) = self.live.as_mut() else {
            return Err(PluginError::Trap {
                plugin: self.plugin.label.to_string(),
                reason: "the instance was dropped after an earlier failure".into(),
            });
        };
        let history = &history[history.len().saturating_sub(MAX_HISTORY)..];
        let vocab = logits.vocab_size();
        self.calls += 1;
        // SAFETY: the binding is taken out of the store below, before `logits`' borrow ends.
        let binding = unsafe { LogitsBinding::new(logits, row, self.calls) };
        let handle = binding.handle();
        live.store.data_mut().logits = Some(binding);
        let budget = self.inner.call_budget();
        let (bindings, session) = (&live.bindings, live.session);
        let result = guarded_call(&mut live.store, budget, |s| {
            let handle = s.data_mut().table.push(handle)?;
            let rep = handle.rep();
            let out = bindings.sample(&mut *s, session, handle, history);
            let _ = s
                .data_mut()
                .table
                .delete(wasmtime::component::Resource::<crate::logits::LogitsHandle>::new_own(rep));
            out
        });
        live.store.data_mut().logits = None;
        match result {
            Ok(Ok(id)) if (id as usize) < vocab => Ok(id),
            Ok(Ok(id)) => {
                self.live = None;
                Err(PluginError::invalid_output(
                    self.plugin.label.to_string(),
                    format!("sample returned token id {id}, outside the vocabulary of {vocab}"),
                ))
            }
            Ok(Err(e)) => Err(reported(&self.plugin, e)),
            Err(e) => {
                self.live = None;
                Err(e)
            }
        }
    }
}

/// A fresh instance of a sampler plugin in its own store.
fn instantiate(
    inner: &Inner,
    plugin: &LoadedPlugin,
) -> Result<(Store<PluginState>, SamplerBindings), PluginError> {
    let mut store = inner.store(plugin);
    let pre = &plugin.pre;
    let bindings = guarded_call(&mut store, inner.call_budget(), |s| {
        pre.sampler(s)
            .unwrap_or_else(|| Err(wasmtime::Error::msg("not a sampler plugin")))
    })?;
    Ok((store, bindings))
}

/// Run the sampler's `validate` on a fresh instance (admission, before the request is queued).
/// `Ok(Err(field))` is a refusal naming the field; `Err` is a plugin failure.
pub(crate) fn validate(
    inner: &Inner,
    plugin: &LoadedPlugin,
    params: &SamplingParams,
) -> Result<Result<(), crate::InvalidField>, PluginError> {
    let (mut store, bindings) = instantiate(inner, plugin)?;
    let refused = guarded_call(&mut store, inner.call_budget(), |s| {
        bindings.validate(s, params)
    })?;
    Ok(refused.map_err(|f| crate::InvalidField {
        field: crate::tokenizer_session::cap(&f.field, 128),
        message: crate::tokenizer_session::cap(&f.message, 1024),
    }))
}

impl Drop for SamplerSession {
    fn drop(&mut self) {
        if let Some(mut live) = self.live.take() {
            live.store.data_mut().logits = None;
            let budget = self.inner.call_budget();
            // The guest's destructor runs under the same bounds; its failure changes nothing.
            let _ = guarded_call(&mut live.store, budget, |s| live.session.resource_drop(s));
        }
    }
}

impl std::fmt::Debug for SamplerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplerSession")
            .field("plugin", &self.plugin.label)
            .field("live", &self.live.is_some())
            .field("calls", &self.calls)
            .finish()
    }
}
