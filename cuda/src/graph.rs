//! CUDA graphs of the forward pass. A step's launches depend only on its shape (tokens in the
//! chunk, logits rows, first row): positions, slots and token ids are read from the metadata
//! block the step uploads first, and every buffer address is fixed at startup. So the launches
//! of one shape are captured once into a graph and replayed for every later step of that shape,
//! replacing ~14 launches per layer with one graph launch (decode is launch-bound).

use std::collections::HashMap;

use cudarc::driver::{result, sys};

use crate::driver::{GpuContext, check};
use crate::error::CudaResult;

/// Steps of at most this many tokens are captured (decode batches; a prompt's one-off shape is
/// not worth a capture).
pub const GRAPH_MAX_TOKENS: usize = 64;
/// Distinct shapes kept.
pub const GRAPH_CACHE_SIZE: usize = 128;

/// (tokens in the chunk, logits rows, first logits row).
pub type StepShape = (usize, usize, usize);

/// Instantiated graphs by step shape.
#[derive(Debug, Default)]
pub struct GraphCache {
    execs: HashMap<StepShape, sys::CUgraphExec>,
}

// SAFETY: executable graphs are driver handles usable from any thread with the context bound.
unsafe impl Send for GraphCache {}

impl GraphCache {
    /// Whether a step of this shape is (or may become) a graph.
    pub fn eligible(&self, shape: StepShape) -> bool {
        shape.0 <= GRAPH_MAX_TOKENS
            && (self.execs.contains_key(&shape) || self.execs.len() < GRAPH_CACHE_SIZE)
    }

    pub fn len(&self) -> usize {
        self.execs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.execs.is_empty()
    }

    /// Launch the graph of `shape`, capturing it first from `queue` (which must only queue
    /// work on `gpu`'s stream: no synchronization, no allocation).
    pub fn run(
        &mut self,
        gpu: &GpuContext,
        shape: StepShape,
        queue: impl FnOnce() -> CudaResult<()>,
    ) -> CudaResult<()> {
        let exec = match self.execs.get(&shape) {
            Some(&e) => e,
            None => {
                let e = capture(gpu, queue)?;
                self.execs.insert(shape, e);
                e
            }
        };
        // SAFETY: `exec` is a live executable graph of this context; the stream is ours.
        check(
            unsafe { result::graph::launch(exec, gpu.stream()) },
            "cuGraphLaunch",
        )
    }

    /// Destroy every graph (the context must be current).
    pub fn clear(&mut self) {
        for (_, e) in self.execs.drain() {
            // SAFETY: each exec is destroyed once; teardown errors cannot be handled.
            unsafe {
                let _ = result::graph::exec_destroy(e);
            }
        }
    }
}

impl Drop for GraphCache {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Capture what `queue` launches on the stream into an executable graph.
fn capture(
    gpu: &GpuContext,
    queue: impl FnOnce() -> CudaResult<()>,
) -> CudaResult<sys::CUgraphExec> {
    let stream = gpu.stream();
    // SAFETY: our stream; thread-local mode keeps other threads' CUDA calls out of the capture.
    check(
        unsafe {
            result::stream::begin_capture(
                stream,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        },
        "cuStreamBeginCapture",
    )?;
    let queued = queue();
    // Always end the capture, so the stream is usable whatever happened.
    // SAFETY: the capture begun above.
    let graph = check(
        unsafe { result::stream::end_capture(stream) },
        "cuStreamEndCapture",
    );
    let graph = match graph {
        Ok(g) => g,
        Err(e) => return Err(queued.err().unwrap_or(e)),
    };
    if let Err(e) = queued {
        // SAFETY: a graph we own, destroyed once.
        unsafe {
            let _ = result::graph::destroy(graph);
        }
        return Err(e);
    }
    // SAFETY: `graph` is the captured graph; it is destroyed right after instantiation.
    let exec = unsafe { result::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) };
    // SAFETY: as above.
    unsafe {
        let _ = result::graph::destroy(graph);
    }
    check(exec, "cuGraphInstantiate")
}
