//! The `logits` resource samplers receive: host-side operations on one logits row.
//!
//! A [`LogitsSource`] is anything that holds logits rows and can answer argmax, top-k,
//! penalties and full-row requests; every [`orcd_device::Device`] is one, so on the CUDA
//! backend a sampler's calls run on the GPU and only their small results cross to the plugin.

use std::mem::MaybeUninit;

use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Linker, Lower, Resource};

use orcd_device::{Device, EngineError};

use crate::bindings::sampler::worker::plugin::logits::{Candidate, Host, HostLogits};
use crate::state::PluginState;

/// Logits rows a sampler can work on (see [`orcd_device::Device`]'s `logits_*` operations).
pub trait LogitsSource {
    /// Length of a row.
    fn vocab_size(&self) -> usize;
    /// Best token of `row` and its logit (NaN never wins; ties go to the lower id).
    fn argmax(&self, row: usize) -> Result<(u32, f32), EngineError>;
    /// The `k` best tokens of `row`, best first.
    fn top_k(&self, row: usize, k: usize) -> Result<Vec<(u32, f32)>, EngineError>;
    /// The whole row, copied to the host.
    fn row(&self, row: usize) -> Result<Vec<f32>, EngineError>;
    /// Repetition / frequency / presence penalties over `history`, in place.
    fn penalize(
        &mut self,
        row: usize,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), EngineError>;
}

impl<D: Device + ?Sized> LogitsSource for D {
    fn vocab_size(&self) -> usize {
        Device::vocab_size(self)
    }
    fn argmax(&self, row: usize) -> Result<(u32, f32), EngineError> {
        self.logits_argmax(row)
    }
    fn top_k(&self, row: usize, k: usize) -> Result<Vec<(u32, f32)>, EngineError> {
        self.logits_top_k(row, k)
    }
    fn row(&self, row: usize) -> Result<Vec<f32>, EngineError> {
        self.logits_row(row)
    }
    fn penalize(
        &mut self,
        row: usize,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), EngineError> {
        self.logits_penalize(row, history, repeat, frequency, presence)
    }
}

/// The host-side value behind a guest's `logits` handle: which `sample` call it belongs to.
#[derive(Debug)]
pub struct LogitsHandle {
    /// Serial number of the `sample` call that created the handle.
    call: u64,
}

/// The logits row lent to the store for the duration of one `sample` call.
pub(crate) struct LogitsBinding {
    /// The source, borrowed mutably by `SamplerSession::sample` for the whole guest call.
    source: *mut (dyn LogitsSource + 'static),
    row: usize,
    vocab_size: usize,
    call: u64,
}

// SAFETY: the pointer is only dereferenced on the thread that runs the guest call, while the
// `&mut dyn LogitsSource` it came from is borrowed by `SamplerSession::sample`; the store never
// moves to another thread during that call.
unsafe impl Send for LogitsBinding {}

impl LogitsBinding {
    /// Lend `source` to a store for one call.
    ///
    /// # Safety
    /// The binding must be removed from the store before `source`'s borrow ends; host
    /// functions dereference it while the guest runs.
    pub(crate) unsafe fn new(source: &mut dyn LogitsSource, row: usize, call: u64) -> Self {
        let vocab_size = source.vocab_size();
        let source: *mut (dyn LogitsSource + '_) = source;
        // SAFETY: only the lifetime is erased; the caller guarantees the binding does not
        // outlive the borrow.
        let source: *mut (dyn LogitsSource + 'static) = unsafe { std::mem::transmute(source) };
        LogitsBinding {
            source,
            row,
            vocab_size,
            call,
        }
    }

    pub(crate) fn handle(&self) -> LogitsHandle {
        LogitsHandle { call: self.call }
    }
}

impl PluginState {
    /// The binding a live handle refers to, or a guest fault for a stale or foreign handle.
    fn binding(&mut self, handle: &Resource<LogitsHandle>) -> wasmtime::Result<&mut LogitsBinding> {
        let call = match self.table.get(handle) {
            Ok(h) => h.call,
            Err(e) => return Err(self.guest_fault(format!("bad logits handle: {e}"))),
        };
        match self.logits.as_ref() {
            Some(b) if b.call == call => {}
            _ => {
                return Err(self.guest_fault(
                    "logits handle used outside the sample call that received it".into(),
                ));
            }
        }
        Ok(self.logits.as_mut().expect("checked above"))
    }

    /// Run `op` on the lent source and turn a device failure into a fault.
    fn with_source<R>(
        &mut self,
        handle: &Resource<LogitsHandle>,
        op: impl FnOnce(&mut dyn LogitsSource, usize, usize) -> Result<R, EngineError>,
    ) -> wasmtime::Result<R> {
        let binding = self.binding(handle)?;
        let (row, vocab) = (binding.row, binding.vocab_size);
        // SAFETY: the binding is live (checked above), so the source is still mutably borrowed
        // by the `sample` call that runs this guest call.
        let source = unsafe { &mut *binding.source };
        op(source, row, vocab).map_err(|e| self.device_fault(e))
    }
}

impl HostLogits for PluginState {
    fn vocab_size(&mut self, handle: Resource<LogitsHandle>) -> wasmtime::Result<u32> {
        Ok(self.binding(&handle)?.vocab_size as u32)
    }

    fn argmax(&mut self, handle: Resource<LogitsHandle>) -> wasmtime::Result<Candidate> {
        let (id, logit) = self.with_source(&handle, |s, row, _| s.argmax(row))?;
        Ok(Candidate { id, logit })
    }

    fn top_k(
        &mut self,
        handle: Resource<LogitsHandle>,
        k: u32,
    ) -> wasmtime::Result<Vec<Candidate>> {
        let top = self.with_source(&handle, |s, row, vocab| {
            s.top_k(row, (k as usize).min(vocab))
        })?;
        Ok(top
            .into_iter()
            .map(|(id, logit)| Candidate { id, logit })
            .collect())
    }

    fn penalize(
        &mut self,
        handle: Resource<LogitsHandle>,
        history: Vec<u32>,
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> wasmtime::Result<()> {
        let vocab = self.binding(&handle)?.vocab_size;
        if let Some(bad) = history.iter().find(|&&t| t as usize >= vocab) {
            return Err(self.guest_fault(format!(
                "penalty history holds token id {bad}, outside the vocabulary of {vocab}"
            )));
        }
        if ![repeat, frequency, presence].iter().all(|v| v.is_finite()) || repeat <= 0.0 {
            return Err(self.guest_fault(format!(
                "penalties must be finite with a positive repeat penalty \
                 (repeat {repeat}, frequency {frequency}, presence {presence})"
            )));
        }
        self.with_source(&handle, |s, row, _| {
            s.penalize(row, &history, repeat, frequency, presence)
        })
    }

    fn full(&mut self, handle: Resource<LogitsHandle>) -> wasmtime::Result<Vec<f32>> {
        self.with_source(&handle, |s, row, _| s.row(row))
    }

    fn drop(&mut self, handle: Resource<LogitsHandle>) -> wasmtime::Result<()> {
        // The host owns the handle and deletes it after the call; a guest drop of a borrow is
        // not delivered here, but deleting is harmless if it is.
        let _ = self.table.delete(handle);
        Ok(())
    }
}

impl Host for PluginState {}

/// The import `top-k` of contract 0.2.0's `logits` interface, named as the linker knows it.
const LOGITS_INSTANCE: &str = "worker:plugin/logits@0.2.0";
const TOP_K: &str = "[method]logits.top-k";

/// A `candidate` (`record { id: u32, logit: f32 }`) whose lists are written into the guest's
/// memory in one pass. wasmtime's generated lowering stores a list one field at a time, each
/// store finding the instance's memory again: ~25 ns a candidate, most of a 256-candidate
/// `top-k` call. The canonical ABI lays the record out as `id` (u32, little endian) at 0 and
/// `logit` (f32, little endian) at 4, 8 bytes aligned to 4 (checked below against the generated
/// type's own layout); a list is those records end to end. Single values (never lowered on
/// their own by `top-k`) go through the generated code.
#[derive(Copy, Clone, Debug)]
#[repr(transparent)]
pub(crate) struct BulkCandidate(pub Candidate);

const _: () = assert!(<Candidate as ComponentType>::SIZE32 == 8);
const _: () = assert!(<Candidate as ComponentType>::ALIGN32 == 4);

// SAFETY: every item delegates to the generated `Candidate`, whose type this is.
unsafe impl ComponentType for BulkCandidate {
    type Lower = <Candidate as ComponentType>::Lower;
    const ABI: CanonicalAbiInfo = <Candidate as ComponentType>::ABI;
    const MAY_REQUIRE_REALLOC: bool = <Candidate as ComponentType>::MAY_REQUIRE_REALLOC;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <Candidate as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: single values are lowered by the generated code; lists are written at the offsets
// the canonical ABI gives the record (the layout asserted above), within the bytes wasmtime
// allocated for the list (`offset .. offset + 8 * len`, bounds-checked by the slice).
unsafe impl Lower for BulkCandidate {
    fn linear_lower_to_flat<U>(
        &self,
        cx: &mut LowerContext<'_, U>,
        ty: InterfaceType,
        dst: &mut MaybeUninit<Self::Lower>,
    ) -> wasmtime::Result<()> {
        self.0.linear_lower_to_flat(cx, ty, dst)
    }

    fn linear_lower_to_memory<U>(
        &self,
        cx: &mut LowerContext<'_, U>,
        ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        self.0.linear_lower_to_memory(cx, ty, offset)
    }

    fn linear_store_list_to_memory<U>(
        cx: &mut LowerContext<'_, U>,
        _ty: InterfaceType,
        offset: usize,
        items: &[Self],
    ) -> wasmtime::Result<()> {
        let bytes = items.len() * 8;
        let memory = cx.as_slice_mut();
        let Some(dst) = memory.get_mut(offset..offset + bytes) else {
            return Err(wasmtime::Error::msg(format!(
                "candidate list at {offset} (+{bytes} bytes) is outside the guest's memory"
            )));
        };
        for (c, out) in items.iter().zip(dst.chunks_exact_mut(8)) {
            out[..4].copy_from_slice(&c.0.id.to_le_bytes());
            out[4..].copy_from_slice(&c.0.logit.to_le_bytes());
        }
        Ok(())
    }
}

/// Replace the generated `top-k` import of `linker` (a 0.2.0 sampler linker) with one that
/// answers [`BulkCandidate`]s: the same host code ([`HostLogits::top_k`]), a faster copy.
pub(crate) fn add_bulk_top_k(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let defined = linker.instance(LOGITS_INSTANCE).and_then(|mut logits| {
        logits.func_wrap(
            TOP_K,
            |mut store: wasmtime::StoreContextMut<'_, PluginState>,
             (handle, k): (Resource<LogitsHandle>, u32)| {
                let top = HostLogits::top_k(store.data_mut(), handle, k)?;
                // `BulkCandidate` is `repr(transparent)`: collected in place.
                let top: Vec<BulkCandidate> = top.into_iter().map(BulkCandidate).collect();
                Ok((top,))
            },
        )
    });
    linker.allow_shadowing(false);
    defined
}
