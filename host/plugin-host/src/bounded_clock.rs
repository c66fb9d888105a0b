//! `wasi:clocks/monotonic-clock` with every wait bounded by the current call's deadline.
//!
//! Why: a call's time bound is enforced by epoch interruption, which only fires while the
//! guest runs Wasm code. A guest that sleeps (`std::thread::sleep`, which becomes
//! `subscribe-duration` and a blocking `wasi:io/poll`) waits inside the host, where no epoch
//! check happens, so an hour-long sleep would hold the worker thread for an hour. Here a
//! subscription that would wait past the deadline of the call in progress ends the call at once
//! with `PLUGIN_TIMEOUT`, as a runaway call does (a guest that asks to wait longer than it has
//! left cannot finish in time; waking it at the deadline instead would race the epoch ticker,
//! which may not have reached the epoch deadline yet). Reading the clock stays as wasmtime-wasi
//! has it.

use std::time::{Duration, Instant};

use wasmtime::Trap;
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::clocks::{WasiClocksCtxView, WasiClocksView};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;

use crate::state::PluginState;

/// The linker's `HasData` marker for [`BoundedClock`].
pub(crate) struct BoundedClocks;

impl HasData for BoundedClocks {
    type Data<'a> = BoundedClock<'a>;
}

/// The monotonic clock of one instance during one call.
pub(crate) struct BoundedClock<'a> {
    inner: WasiClocksCtxView<'a>,
    /// When the call in progress must end (`None` outside a call: no bound).
    deadline: Option<Instant>,
}

/// The view the linker hands the clock functions.
pub(crate) fn bounded_clock(state: &mut PluginState) -> BoundedClock<'_> {
    let deadline = state.call_deadline;
    BoundedClock {
        inner: state.clocks(),
        deadline,
    }
}

impl BoundedClock<'_> {
    /// `wait` when it ends before the call's deadline; past it, the trap that ends the call
    /// as timed out.
    fn bound(&self, wait: Duration) -> wasmtime::Result<Duration> {
        match self.deadline {
            Some(d) if wait > d.saturating_duration_since(Instant::now()) => {
                Err(wasmtime::Error::from(Trap::Interrupt))
            }
            _ => Ok(wait),
        }
    }
}

impl monotonic_clock::Host for BoundedClock<'_> {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        monotonic_clock::Host::now(&mut self.inner)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        monotonic_clock::Host::resolution(&mut self.inner)
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let now = monotonic_clock::Host::now(&mut self.inner)?;
        let wait = self.bound(Duration::from_nanos(when.saturating_sub(now)))?;
        monotonic_clock::Host::subscribe_duration(&mut self.inner, wait.as_nanos() as u64)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let wait = self.bound(Duration::from_nanos(duration))?;
        monotonic_clock::Host::subscribe_duration(&mut self.inner, wait.as_nanos() as u64)
    }
}
