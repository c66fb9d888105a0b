//! The kernel modules: sources embedded from `cuda/kernels/*.cu`, compiled through
//! [`crate::compile::KernelCompiler`] at startup, loaded into the context, and their functions
//! looked up once. [`launch`] is the one place a kernel is started; every launch is checked.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, c_void};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

use cudarc::driver::{result, sys};
use orcd_model::quant::GgmlType;

use crate::compile::{CacheOutcome, KernelCompiler};
use crate::driver::{GpuContext, check, check_launch};
use crate::error::{CudaError, CudaResult};

const COMMON: &str = include_str!("../kernels/common.cuh");
const QUANT: &str = include_str!("../kernels/quant.cuh");
const PACKED: &str = include_str!("../kernels/packed.cuh");

/// (module name, source, needs the quant headers: quant.cuh and packed.cuh).
const SOURCES: [(&str, &str, bool); 12] = [
    ("norm", include_str!("../kernels/norm.cu"), false),
    ("rope", include_str!("../kernels/rope.cu"), false),
    (
        "activation",
        include_str!("../kernels/activation.cu"),
        false,
    ),
    ("attention", include_str!("../kernels/attention.cu"), false),
    ("logits", include_str!("../kernels/logits.cu"), false),
    ("mask", include_str!("../kernels/mask.cu"), false),
    ("embed", include_str!("../kernels/embed.cu"), true),
    ("mmvq", include_str!("../kernels/mmvq.cu"), true),
    ("quant_act", include_str!("../kernels/quant_act.cu"), false),
    (
        "mmvq_packed",
        include_str!("../kernels/mmvq_packed.cu"),
        true,
    ),
    ("gemm_q8", include_str!("../kernels/gemm_q8.cu"), true),
    ("moe", include_str!("../kernels/moe.cu"), true),
];

/// Launch shapes; they must match the `#define`s of the same names in the `.cu` files.
pub(crate) mod shape {
    /// mmvq.cu: warps (= weight rows) per block and activation columns per block.
    pub const MMV_ROWS_PER_BLOCK: u32 = 4;
    pub const MMV_COLS: u32 = 8;
    /// embed.cu.
    pub const EMBED_THREADS: u32 = 128;
    /// norm.cu (also the residual add and row gather).
    pub const NORM_THREADS: u32 = 256;
    /// rope.cu.
    pub const ROPE_THREADS: u32 = 64;
    /// activation.cu.
    pub const ACT_THREADS: u32 = 256;
    /// attention.cu.
    pub const KV_THREADS: u32 = 128;
    pub const ATT_WARPS: u32 = 8;
    pub const ATT_MAX_HEAD_DIM: usize = 256;
    /// logits.cu.
    pub const LOGITS_THREADS: u32 = 1024;
    pub const ARGMAX_THREADS: u32 = 256;
    /// mask.cu.
    pub const MASK_THREADS: u32 = 256;
    /// moe.cu.
    pub const MOE_ROWS_PER_BLOCK: u32 = 4;
    pub const MOE_THREADS: u32 = 256;
    pub const MOE_MAX_USED: usize = 32;
}

/// The full source NVRTC sees for module `name`.
fn full_source(body: &str, quant: bool) -> String {
    let mut s = String::with_capacity(COMMON.len() + QUANT.len() + PACKED.len() + body.len() + 3);
    s.push_str(COMMON);
    s.push('\n');
    if quant {
        s.push_str(QUANT);
        s.push('\n');
        s.push_str(PACKED);
        s.push('\n');
    }
    s.push_str(body);
    s
}

/// Compile every module afresh for the compiler's architecture (no GPU needed, only libnvrtc)
/// and return (module name, ptxas resource report) per module; the first compile error is
/// returned as is.
pub fn resource_reports(compiler: &KernelCompiler) -> CudaResult<Vec<(String, String)>> {
    SOURCES
        .iter()
        .map(|(name, body, quant)| {
            let log = compiler.resource_report(name, &full_source(body, *quant))?;
            Ok((name.to_string(), log))
        })
        .collect()
}

/// A module whose every kernel starts with `pdl_prologue()` (common.cuh) says so with this line;
/// its kernels are then launched with programmatic dependent launch (sm_90+): the next kernel in
/// the stream is scheduled while this one runs and waits in its prologue for this one's results,
/// which hides most of the launch gap between small kernels. A kernel without the prologue must
/// never get the attribute (it could read its inputs early), hence the opt-in per module.
pub(crate) const PDL_MARKER: &str =
    "// pdl: every kernel of this module begins with pdl_prologue()";

/// Kernels (by handle) launched with programmatic dependent launch, and whether it is on.
static PDL_FUNCTIONS: RwLock<Option<HashSet<usize>>> = RwLock::new(None);
static PDL_ON: AtomicBool = AtomicBool::new(false);

/// Whether programmatic dependent launch is used: compute capability 9.0 or newer and not
/// turned off with `ORCD_PDL=0`.
fn pdl_wanted(cc: (i32, i32)) -> bool {
    cc.0 >= 9 && !std::env::var("ORCD_PDL").is_ok_and(|v| v == "0")
}

/// Every loaded kernel, by name.
#[derive(Debug)]
pub struct Kernels {
    modules: Vec<sys::CUmodule>,
    functions: HashMap<String, sys::CUfunction>,
    /// Kernels registered in [`PDL_FUNCTIONS`], unregistered on drop.
    pdl: Vec<usize>,
    /// How many modules came from the disk cache, for logs and the cache test.
    pub cache_hits: usize,
}

// SAFETY: module and function handles are plain driver handles, valid in the context they were
// loaded in; the driver API is thread-safe and the owner binds the context before use.
unsafe impl Send for Kernels {}
// SAFETY: as above; lookups only read the map.
unsafe impl Sync for Kernels {}

impl Kernels {
    /// Compile (or take from the cache) and load every module for `gpu`.
    pub fn load(gpu: &GpuContext, compiler: &KernelCompiler) -> CudaResult<Kernels> {
        gpu.bind()?;
        let mut k = Kernels {
            modules: Vec::new(),
            functions: HashMap::new(),
            pdl: Vec::new(),
            cache_hits: 0,
        };
        let pdl = pdl_wanted(gpu.compute_capability());
        if pdl {
            PDL_ON.store(true, Ordering::Relaxed);
        }
        for (name, body, quant) in SOURCES {
            let src = full_source(body, quant);
            let (cubin, outcome) = compiler.cubin(name, &src)?;
            let module = match load_module(&cubin, name) {
                Ok(m) => m,
                Err(e) if outcome == CacheOutcome::Hit => {
                    tracing::warn!(module = name, error = %e, "cached kernel failed to load; recompiling");
                    compiler.evict(name, &src);
                    let (cubin, _) = compiler.cubin(name, &src)?;
                    load_module(&cubin, name)?
                }
                Err(e) => return Err(e),
            };
            if outcome == CacheOutcome::Hit {
                k.cache_hits += 1;
            }
            k.modules.push(module);
            for fname in kernel_names(body) {
                let cname = CString::new(fname.clone()).expect("kernel names have no NUL");
                // SAFETY: `module` was just loaded and stays loaded until drop.
                let f = check(
                    unsafe { result::module::get_function(module, cname) },
                    &format!("cuModuleGetFunction({fname})"),
                )?;
                if pdl && body.contains(PDL_MARKER) {
                    k.pdl.push(f as usize);
                }
                k.functions.insert(fname, f);
            }
        }
        if !k.pdl.is_empty() {
            let mut set = PDL_FUNCTIONS.write().unwrap_or_else(|e| e.into_inner());
            set.get_or_insert_with(HashSet::new).extend(&k.pdl);
        }
        Ok(k)
    }

    /// The kernel called `name`.
    pub fn get(&self, name: &str) -> CudaResult<sys::CUfunction> {
        self.functions
            .get(name)
            .copied()
            .ok_or_else(|| CudaError::MissingKernel(name.to_string()))
    }

    /// The kernel `<prefix>_<type>`, e.g. `mmv_q4_k_f32` for ("mmv", Q4K, "_f32").
    pub fn for_type(
        &self,
        prefix: &str,
        ty: GgmlType,
        suffix: &str,
    ) -> CudaResult<sys::CUfunction> {
        self.get(&format!(
            "{prefix}_{}{suffix}",
            ty.name().to_ascii_lowercase()
        ))
    }
}

impl Drop for Kernels {
    fn drop(&mut self) {
        if !self.pdl.is_empty() {
            let mut set = PDL_FUNCTIONS.write().unwrap_or_else(|e| e.into_inner());
            if let Some(set) = set.as_mut() {
                for f in &self.pdl {
                    set.remove(f);
                }
            }
        }
        for &m in &self.modules {
            // SAFETY: loaded by us, unloaded once; teardown errors cannot be handled.
            unsafe {
                let _ = result::module::unload(m);
            }
        }
    }
}

fn load_module(cubin: &[u8], name: &str) -> CudaResult<sys::CUmodule> {
    // SAFETY: `cubin` is a complete CUBIN image produced by NVRTC (or read back from the cache
    // and then validated by the driver, which rejects malformed images with an error).
    check(
        unsafe { result::module::load_data(cubin.as_ptr() as *const c_void) },
        &format!("cuModuleLoadData({name})"),
    )
}

/// The `extern "C" __global__` function names defined in a source: the kernels named directly
/// (`... __global__ void name(` or with launch bounds on the next line) and those made by the
/// `*_KERNEL(name, T)` macros.
fn kernel_names(body: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut pending_global = false;
    let mut in_macro = false;
    for line in body.lines() {
        let line = line.trim();
        // Skip comments and `#define`s with their continuation lines.
        let continued = line.ends_with('\\');
        if in_macro || line.starts_with("#define") || line.starts_with("//") {
            in_macro = continued && !line.starts_with("//");
            continue;
        }
        // `SOMETHING_KERNEL(name, T)`: a macro instantiation.
        if let Some((mac, rest)) = line.split_once('(')
            && mac.ends_with("_KERNEL")
            && mac
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            if let Some(name) = rest.split(',').next() {
                names.push(name.trim().to_string());
            }
            continue;
        }
        if line.starts_with("extern \"C\" __global__") {
            pending_global = true;
        }
        if pending_global && let Some(open) = line.find('(') {
            // `... void name(` or, after a `__launch_bounds__(..)` line, `name(` alone.
            if let Some(name) = line[..open].split_whitespace().last()
                && name != "__launch_bounds__"
            {
                names.push(name.to_string());
                pending_global = false;
            }
        }
    }
    names
}

/// One kernel argument, passed by value.
#[derive(Copy, Clone, Debug)]
pub(crate) enum Arg {
    /// A device address.
    Ptr(u64),
    I32(i32),
    /// A 64-bit count or byte offset (`u64` in the kernel).
    U64(u64),
    F32(f32),
}

/// Launch `f` on `gpu`'s stream with `args` (in the kernel's parameter order); `what` names
/// the kernel in errors.
pub(crate) fn launch(
    gpu: &GpuContext,
    f: sys::CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    args: &[Arg],
    what: &str,
) -> CudaResult<()> {
    launch_smem(gpu, f, grid, block, 0, args, what)
}

/// Let `f` use `bytes` of dynamic shared memory: its limit (48 KiB by default) is raised when
/// lower, never lowered, so launches of other sizes keep working.
pub(crate) fn allow_dynamic_smem(f: sys::CUfunction, bytes: u32, what: &str) -> CudaResult<()> {
    let bytes = i32::try_from(bytes)
        .map_err(|_| CudaError::shape(format!("{what}: {bytes} bytes of shared memory")))?;
    let attr = sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
    // SAFETY: `f` is a loaded kernel of the bound context; the attribute is a plain limit.
    let limit = check(
        unsafe { result::function::get_function_attribute(f, attr) },
        &format!("{what}: dynamic shared memory limit"),
    )?;
    if limit < bytes {
        // SAFETY: as above.
        check(
            unsafe { result::function::set_function_attribute(f, attr, bytes) },
            &format!("{what}: dynamic shared memory {bytes} bytes"),
        )?;
    }
    Ok(())
}

/// [`launch`] with `smem` bytes of dynamic shared memory (within the function's limit, which
/// the caller raises first where it exceeds the default 48 KiB).
pub(crate) fn launch_smem(
    gpu: &GpuContext,
    f: sys::CUfunction,
    grid: (u32, u32, u32),
    block: (u32, u32, u32),
    smem: u32,
    args: &[Arg],
    what: &str,
) -> CudaResult<()> {
    if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
        return Ok(()); // nothing to do
    }
    // Each argument's bytes sit at the start of an 8-byte slot (little-endian), which is how
    // cuLaunchKernel reads a parameter of 4 or 8 bytes through its pointer.
    let mut slots: Vec<u64> = args
        .iter()
        .map(|a| match *a {
            Arg::Ptr(p) | Arg::U64(p) => p,
            Arg::I32(v) => u64::from(v as u32),
            Arg::F32(v) => u64::from(v.to_bits()),
        })
        .collect();
    let mut params: Vec<*mut c_void> = slots
        .iter_mut()
        .map(|s| s as *mut u64 as *mut c_void)
        .collect();
    if PDL_ON.load(Ordering::Relaxed) && is_pdl(f) {
        let mut attr = sys::CUlaunchAttribute {
            id: sys::CUlaunchAttributeID::CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION,
            pad: Default::default(),
            // SAFETY: an all-zero union is a valid value; the one field used is set below.
            value: unsafe { std::mem::zeroed() },
        };
        attr.value.programmaticStreamSerializationAllowed = 1;
        let config = sys::CUlaunchConfig {
            gridDimX: grid.0,
            gridDimY: grid.1,
            gridDimZ: grid.2,
            blockDimX: block.0,
            blockDimY: block.1,
            blockDimZ: block.2,
            sharedMemBytes: smem,
            hStream: gpu.stream(),
            attrs: &mut attr,
            numAttrs: 1,
        };
        // SAFETY: as below; `config` and `attr` outlive the call. The kernel's module carries
        // PDL_MARKER: it waits for the previous grid before touching memory.
        let r =
            unsafe { sys::cuLaunchKernelEx(&config, f, params.as_mut_ptr(), std::ptr::null_mut()) };
        if r != sys::cudaError_enum::CUDA_ERROR_NOT_SUPPORTED {
            return check_launch(r.result(), what);
        }
        // A driver without programmatic launches: plain launches from now on.
        tracing::warn!("programmatic dependent launch not supported; using plain launches");
        PDL_ON.store(false, Ordering::Relaxed);
    }
    // SAFETY: `f` is a loaded kernel whose parameter list matches `args` (each launcher is
    // written against its kernel's signature); `params` outlives the call, which copies them.
    check_launch(
        unsafe { result::launch_kernel(f, grid, block, smem, gpu.stream(), &mut params) },
        what,
    )
}

/// Whether `f` belongs to a module marked with [`PDL_MARKER`].
fn is_pdl(f: sys::CUfunction) -> bool {
    PDL_FUNCTIONS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|s| s.contains(&(f as usize)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_are_found_in_every_source() {
        let names: Vec<String> = SOURCES
            .iter()
            .flat_map(|(_, b, _)| kernel_names(b))
            .collect();
        for want in [
            "rms_norm_f32",
            "add_f32",
            "add_bias_f32",
            "gather_rows_f32",
            "rope_f32",
            "silu_mul_f32",
            "gelu_tanh_mul_f32",
            "kv_write_f32",
            "kv_copy_prefix",
            "attention_ref_f32",
            "attention_decode_f32",
            "attention_prefill4_f32",
            "argmax_f32",
            "top_k_f32",
            "logsumexp_f32",
            "gather_f32",
            "penalize_f32",
            "embed_q4_k",
            "mmv_q4_k_f32",
            "mmv_q6_k_f32",
            "mmv_bf16_f32",
            "mmv3_q4_1_f32",
            "mmv_glu_q5_0_f32",
            "add_rms_norm_f32",
            "rope_qk_store_f32",
            "layer_norm_f32",
            "gelu_tanh_f32",
            "moe_route_f32",
            "moe_mmv_mxfp4_f32",
            "moe_mmv_grouped_mxfp4_f32",
            "moe_swiglu_oai_f32",
            "moe_combine_f32",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        // Every KV-cache type has its store and attention kernels.
        for t in orcd_model::KvType::ALL {
            let t = t.name();
            for k in [
                "kv_write",
                "rope_qk_store",
                "attention_ref",
                "attention_decode",
                "attention_prefill1",
                "attention_prefill4",
            ] {
                let n = format!("{k}_{t}");
                assert!(names.contains(&n), "{n} missing");
            }
        }
        // Every supported type has a matrix and an embedding kernel.
        for t in GgmlType::ALL {
            let n = t.name().to_ascii_lowercase();
            assert!(names.contains(&format!("mmv_{n}_f32")), "mmv for {n}");
            assert!(names.contains(&format!("embed_{n}")), "embed for {n}");
            assert!(names.contains(&format!("mmv3_{n}_f32")), "mmv3 for {n}");
            assert!(names.contains(&format!("mmv_glu_{n}_f32")), "glu for {n}");
        }
    }

    /// Compiles every module with NVRTC (no GPU needed, only libnvrtc) into a fresh cache
    /// directory, then again: the second pass must come entirely from the cache.
    #[test]
    #[ignore = "needs libnvrtc (run on the GPU machine, or with LD_LIBRARY_PATH pointing at it)"]
    fn every_module_compiles_and_the_second_start_compiles_nothing() {
        let dir = std::env::temp_dir().join(format!("orcd-kcache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let compiler = KernelCompiler::new((9, 0), &dir).expect("nvrtc");
        for (name, body, quant) in SOURCES {
            let src = full_source(body, quant);
            let (cubin, outcome) = compiler.cubin(name, &src).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(outcome, CacheOutcome::Compiled, "{name}");
            assert_eq!(&cubin[..4], b"\x7fELF", "{name} is a CUBIN (ELF) image");
        }
        for (name, body, quant) in SOURCES {
            let (_, outcome) = compiler.cubin(name, &full_source(body, quant)).unwrap();
            assert_eq!(outcome, CacheOutcome::Hit, "{name}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A module marked for programmatic dependent launch calls the prologue once per kernel
    /// (a kernel without it could read its inputs before the previous kernel wrote them).
    #[test]
    fn pdl_marked_modules_call_the_prologue_in_every_kernel() {
        let mut marked = 0;
        for (name, body, _) in SOURCES {
            if body.contains(PDL_MARKER) {
                marked += 1;
                // One call per kernel definition (a macro defines many kernels with one).
                let calls = body.matches("pdl_prologue();").count();
                let defs = body.matches("extern \"C\" __global__").count();
                assert_eq!(calls, defs, "{name}: one prologue per kernel definition");
            }
        }
        assert!(marked > 0);
    }

    #[test]
    fn launch_shapes_match_the_sources() {
        let all: String = SOURCES
            .iter()
            .map(|(_, b, _)| *b)
            .collect::<Vec<_>>()
            .join("\n");
        for (name, value) in [
            ("MMV_ROWS_PER_BLOCK", shape::MMV_ROWS_PER_BLOCK),
            ("MMV_COLS", shape::MMV_COLS),
            ("EMBED_THREADS", shape::EMBED_THREADS),
            ("NORM_THREADS", shape::NORM_THREADS),
            ("ROPE_THREADS", shape::ROPE_THREADS),
            ("ACT_THREADS", shape::ACT_THREADS),
            ("KV_THREADS", shape::KV_THREADS),
            ("ATT_WARPS", shape::ATT_WARPS),
            ("ATT_MAX_HEAD_DIM", shape::ATT_MAX_HEAD_DIM as u32),
            ("LOGITS_THREADS", shape::LOGITS_THREADS),
            ("ARGMAX_THREADS", shape::ARGMAX_THREADS),
            ("MOE_ROWS_PER_BLOCK", shape::MOE_ROWS_PER_BLOCK),
            ("MOE_THREADS", shape::MOE_THREADS),
            ("MOE_MAX_USED", shape::MOE_MAX_USED as u32),
        ] {
            assert!(
                all.contains(&format!("#define {name} {value}\n")),
                "{name} is not {value} in the kernels"
            );
        }
    }
}
