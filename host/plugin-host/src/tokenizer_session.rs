//! [`TokenizerSession`]: text to token ids and token ids to bytes, through the active tokenizer
//! plugin.
//!
//! Building a tokenizer reads the whole vocabulary (up to 262144 tokens) through the `vocab`
//! import, so initialised instances are pooled: a session takes one from the pool (or builds
//! one) and gives it back when dropped, unless the instance failed or its plugin was replaced.

use std::sync::Arc;

use wasmtime::Store;

use crate::host::Inner;
use crate::plugin::{LoadedPlugin, PluginKind};
use crate::state::{PluginState, guarded_call};
use crate::versions::TokenizerBindings;
use crate::{PluginError, PluginHost};

/// Longest text `encode` accepts, in bytes.
const MAX_ENCODE_BYTES: usize = 1 << 20;
/// Most ids `decode` accepts.
const MAX_DECODE_IDS: usize = 1 << 16;
/// Ids `encode` may return beyond one per byte of text (BOS, EOS, a dummy-prefix token): no
/// tokenizer makes more tokens than the text has bytes, so more is a plugin fault.
const ENCODE_EXTRA_IDS: usize = 16;
/// Longest piece of one token, in bytes (real vocabularies stay far below).
const MAX_PIECE_BYTES: usize = 1 << 16;

/// An initialised tokenizer instance.
pub(crate) struct TokenizerInstance {
    plugin: Arc<LoadedPlugin>,
    store: Store<PluginState>,
    bindings: TokenizerBindings,
}

/// A tokenizer for one request (or any caller that needs one for a while).
pub struct TokenizerSession {
    host: PluginHost,
    /// None after a failure: the instance was dropped, never to be reused.
    instance: Option<TokenizerInstance>,
    /// The plugin the session started with, for error labels after a failure.
    plugin: Arc<LoadedPlugin>,
}

impl TokenizerSession {
    pub(crate) fn open(host: PluginHost) -> Result<Self, PluginError> {
        let plugin = active_tokenizer(&host.inner)?;
        let pooled = {
            let mut pool = host
                .inner
                .tokenizer_pool
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let at = pool.iter().rposition(|i| Arc::ptr_eq(&i.plugin, &plugin));
            at.map(|i| pool.swap_remove(i))
        };
        let instance = match pooled {
            Some(i) => i,
            None => new_instance(&host.inner, plugin.clone())?,
        };
        Ok(TokenizerSession {
            host,
            instance: Some(instance),
            plugin,
        })
    }

    /// The plugin serving this session.
    pub fn plugin(&self) -> &crate::PluginInfo {
        &self.plugin.info
    }

    /// Turn text into token ids (see the WIT `encode`). Every id is checked against the
    /// vocabulary.
    pub fn encode(
        &mut self,
        text: &str,
        parse_special: bool,
        add_bos: bool,
    ) -> Result<Vec<u32>, PluginError> {
        if text.len() > MAX_ENCODE_BYTES {
            return Err(PluginError::InvalidRequest {
                field: "prompt".into(),
                message: format!(
                    "{} bytes is over the {MAX_ENCODE_BYTES}-byte limit",
                    text.len()
                ),
            });
        }
        let ids = self.call(|b, s| b.encode(s, text, parse_special, add_bos))?;
        if ids.len() > text.len() + ENCODE_EXTRA_IDS {
            return Err(PluginError::invalid_output(
                self.plugin.label.to_string(),
                format!(
                    "encode returned {} ids for {} bytes of text",
                    ids.len(),
                    text.len()
                ),
            ));
        }
        let vocab = self.host.inner.facts.vocab_size;
        if let Some(bad) = ids.iter().find(|&&id| id >= vocab) {
            return Err(PluginError::invalid_output(
                self.plugin.label.to_string(),
                format!("encode returned token id {bad}, outside the vocabulary of {vocab}"),
            ));
        }
        Ok(ids)
    }

    /// The bytes of one token for streaming (may be part of a UTF-8 character).
    pub fn piece(&mut self, id: u32) -> Result<Vec<u8>, PluginError> {
        let piece = self.call(|b, s| b.token_piece(s, id))?;
        if piece.len() > MAX_PIECE_BYTES {
            return Err(PluginError::invalid_output(
                self.plugin.label.to_string(),
                format!(
                    "token-piece returned {} bytes for token {id}, over {MAX_PIECE_BYTES}",
                    piece.len()
                ),
            ));
        }
        Ok(piece)
    }

    /// The bytes of a whole token sequence.
    pub fn decode(&mut self, ids: &[u32], skip_special: bool) -> Result<Vec<u8>, PluginError> {
        if ids.len() > MAX_DECODE_IDS {
            return Err(PluginError::InvalidRequest {
                field: "ids".into(),
                message: format!("{} ids is over the {MAX_DECODE_IDS} limit", ids.len()),
            });
        }
        self.call(|b, s| b.decode(s, ids, skip_special))
    }

    /// Run one export; a trap drops the instance, a reported error keeps it.
    fn call<R>(
        &mut self,
        f: impl FnOnce(
            &TokenizerBindings,
            &mut Store<PluginState>,
        ) -> wasmtime::Result<Result<R, crate::bindings::types::Error>>,
    ) -> Result<R, PluginError> {
        if self.instance.is_none() {
            // A fresh instance after an earlier failure of this session.
            self.instance = Some(new_instance(&self.host.inner, self.plugin.clone())?);
        }
        let inst = self.instance.as_mut().expect("set above");
        let budget = self.host.inner.call_budget();
        let bindings = &inst.bindings;
        match guarded_call(&mut inst.store, budget, |s| f(bindings, s)) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(reported(&self.plugin, e)),
            Err(e) => {
                self.instance = None;
                Err(e)
            }
        }
    }
}

impl Drop for TokenizerSession {
    fn drop(&mut self) {
        let Some(inst) = self.instance.take() else {
            return;
        };
        // Only instances of the plugin that is still active go back to the pool.
        let current = active_tokenizer(&self.host.inner).ok();
        if current.is_some_and(|c| Arc::ptr_eq(&c, &inst.plugin)) {
            let mut pool = self
                .host
                .inner
                .tokenizer_pool
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if pool.len() < super::host::TOKENIZER_POOL {
                pool.push(inst);
            }
        }
    }
}

/// Keep only the pooled instances of `active` (none when no tokenizer serves).
pub(crate) fn retain_pooled(inner: &Inner, active: Option<&Arc<LoadedPlugin>>) {
    let mut pool = inner
        .tokenizer_pool
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    pool.retain(|i| active.is_some_and(|a| Arc::ptr_eq(a, &i.plugin)));
}

fn active_tokenizer(inner: &Inner) -> Result<Arc<LoadedPlugin>, PluginError> {
    inner.active(PluginKind::Tokenizer, inner.cfg.tokenizer.as_deref(), None)
}

/// Instantiate the tokenizer and run its `init`.
fn new_instance(
    inner: &Inner,
    plugin: Arc<LoadedPlugin>,
) -> Result<TokenizerInstance, PluginError> {
    let mut store = inner.store(&plugin);
    let budget = inner.init_budget();
    let pre = &plugin.pre;
    let bindings = guarded_call(&mut store, budget, |s| {
        pre.tokenizer(s)
            .unwrap_or_else(|| Err(wasmtime::Error::msg("not a tokenizer plugin")))
    })?;
    match guarded_call(&mut store, budget, |s| bindings.init(s))? {
        Ok(()) => {}
        Err(e) => return Err(reported(&plugin, e)),
    }
    Ok(TokenizerInstance {
        plugin,
        store,
        bindings,
    })
}

/// A plugin's reported `error`, tagged with its label.
pub(crate) fn reported(plugin: &LoadedPlugin, e: crate::bindings::types::Error) -> PluginError {
    PluginError::Reported {
        plugin: plugin.label.to_string(),
        code: cap(&e.code, 64),
        message: cap(&e.message, 1024),
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub(crate) fn cap(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl std::fmt::Debug for TokenizerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenizerSession")
            .field("plugin", &self.plugin.label)
            .field("live", &self.instance.is_some())
            .finish()
    }
}
