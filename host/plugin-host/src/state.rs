//! What each plugin instance's `Store` holds, the memory limiter, and the one place where a
//! guest call's outcome becomes a [`PluginError`].

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use orcd_device::EngineError;

use crate::logits::LogitsBinding;
use crate::vocab_view::VocabView;
use crate::{ModelFacts, PluginError};

/// Most resources one instance may keep in its table (streams, logits handles).
const MAX_TABLE_ENTRIES: usize = 1024;
/// Most entries of a Wasm table (function references) one instance may grow to.
const MAX_WASM_TABLE_ELEMENTS: usize = 100_000;
/// Longest log line kept from a plugin, in bytes.
pub(crate) const MAX_LOG_BYTES: usize = 4096;
/// Log lines one instance may write before the host drops the rest.
pub(crate) const MAX_LOG_LINES: u32 = 1000;
/// Bytes of an instance's stderr kept (later writes fail); its tail explains a panic.
const STDERR_CAPACITY: usize = 64 << 10;
/// Bytes of stderr quoted in a trap's message.
const STDERR_QUOTED: usize = 400;

/// A failure detected on the host side of a guest call; it is reported instead of the trap it
/// causes.
#[derive(Debug)]
pub(crate) enum HostFault {
    /// The device failed while serving a logits operation.
    Device(EngineError),
    /// The guest passed arguments the host refuses (a token id outside the vocabulary, a
    /// stale logits handle).
    Guest(String),
}

/// Caps the linear memory and tables of one instance and remembers whether the cap was hit.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    pub limit_bytes: usize,
    pub exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "memory growth to {desired} bytes exceeds the limit of {}",
                self.limit_bytes
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_WASM_TABLE_ELEMENTS {
            self.exceeded = true;
            return Err(wasmtime::Error::msg(format!(
                "table growth to {desired} elements exceeds the limit of {MAX_WASM_TABLE_ELEMENTS}"
            )));
        }
        Ok(true)
    }
}

/// The data of one plugin instance's `Store`.
pub(crate) struct PluginState {
    /// A WASI context with nothing granted: no preopened directories, no environment, no
    /// arguments, no sockets, no stdin, stdout discarded. std still gets clocks and random
    /// numbers.
    pub wasi: WasiCtx,
    /// The instance's stderr (a panic message lands here), kept in memory.
    pub stderr: MemoryOutputPipe,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    /// `name@version` of the plugin, for logs and errors.
    pub label: Arc<str>,
    pub facts: Arc<ModelFacts>,
    /// The vocabulary, for tokenizer instances only.
    pub vocab: Option<Arc<VocabView>>,
    /// The logits row a sampler may use, set only during `sample`.
    pub logits: Option<LogitsBinding>,
    /// What went wrong on the host side during the current call.
    pub fault: Option<HostFault>,
    /// Log lines written so far.
    pub log_lines: u32,
    /// When the guest call in progress must end; bounds the guest's clock waits (see
    /// `bounded_clock`).
    pub call_deadline: Option<std::time::Instant>,
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl PluginState {
    pub(crate) fn new(
        label: Arc<str>,
        facts: Arc<ModelFacts>,
        vocab: Option<Arc<VocabView>>,
        memory_limit: usize,
    ) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_TABLE_ENTRIES);
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        PluginState {
            wasi: WasiCtx::builder().stderr(stderr.clone()).build(),
            stderr,
            table,
            limiter: MemoryLimiter {
                limit_bytes: memory_limit,
                exceeded: false,
            },
            label,
            facts,
            vocab,
            logits: None,
            fault: None,
            log_lines: 0,
            call_deadline: None,
        }
    }

    /// Record a refusal of the guest's arguments and return the error that traps the guest.
    pub(crate) fn guest_fault(&mut self, reason: String) -> wasmtime::Error {
        let err = wasmtime::Error::msg(reason.clone());
        self.fault = Some(HostFault::Guest(reason));
        err
    }

    /// Record a device failure and return the error that traps the guest.
    pub(crate) fn device_fault(&mut self, err: EngineError) -> wasmtime::Error {
        let trap = wasmtime::Error::msg(format!("device error: {err}"));
        self.fault = Some(HostFault::Device(err));
        trap
    }
}

/// How long and how much a guest call may run.
#[derive(Copy, Clone, Debug)]
pub(crate) struct CallBudget {
    /// Epoch ticks before the call is interrupted.
    pub epoch_ticks: u64,
    /// Fuel for the call, when the engine counts fuel.
    pub fuel: Option<u64>,
    /// The wall-clock bound, for messages.
    pub timeout_ms: u64,
}

/// Run one guest call with a fresh time budget and classify its failure.
pub(crate) fn guarded_call<R>(
    store: &mut Store<PluginState>,
    budget: CallBudget,
    call: impl FnOnce(&mut Store<PluginState>) -> wasmtime::Result<R>,
) -> Result<R, PluginError> {
    store.set_epoch_deadline(budget.epoch_ticks);
    if let Some(fuel) = budget.fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| PluginError::Runtime(format!("cannot set fuel: {e}")))?;
    }
    store.data_mut().fault = None;
    store.data_mut().call_deadline =
        Some(std::time::Instant::now() + std::time::Duration::from_millis(budget.timeout_ms));
    let outcome = call(store);
    let state = store.data_mut();
    state.call_deadline = None;
    let fault = state.fault.take();
    match outcome {
        Ok(value) => Ok(value),
        Err(err) => Err(classify(state, fault, budget, err)),
    }
}

/// Turn a failed call into the error the request ends with.
fn classify(
    state: &PluginState,
    fault: Option<HostFault>,
    budget: CallBudget,
    err: wasmtime::Error,
) -> PluginError {
    let plugin = state.label.to_string();
    match fault {
        Some(HostFault::Device(source)) => return PluginError::Device { plugin, source },
        Some(HostFault::Guest(reason)) => return PluginError::InvalidOutput { plugin, reason },
        None => {}
    }
    if state.limiter.exceeded {
        return PluginError::Memory {
            plugin,
            limit_bytes: state.limiter.limit_bytes,
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => PluginError::Timeout {
            plugin,
            reason: format!("call interrupted after about {} ms", budget.timeout_ms),
        },
        Some(Trap::OutOfFuel) => PluginError::Timeout {
            plugin,
            reason: format!("call used all of its {} fuel", budget.fuel.unwrap_or(0)),
        },
        Some(Trap::StackOverflow) => PluginError::Trap {
            plugin,
            reason: "stack overflow".into(),
        },
        Some(trap) => PluginError::Trap {
            plugin,
            reason: with_stderr(trap.to_string(), state),
        },
        None => PluginError::Trap {
            plugin,
            reason: with_stderr(format!("{err:#}"), state),
        },
    }
}

/// `reason` followed by the tail of the instance's stderr, when it wrote any.
fn with_stderr(reason: String, state: &PluginState) -> String {
    let bytes = state.stderr.contents();
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim_end();
    if text.is_empty() {
        return reason;
    }
    let mut start = text.len().saturating_sub(STDERR_QUOTED);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("{reason}; stderr: {}", &text[start..])
}
