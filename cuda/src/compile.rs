//! Run-time kernel compilation: NVRTC turns each `kernels/*.cu` source into a CUBIN for the
//! device's exact architecture (`sm_XY` from its compute capability), and the result is cached
//! on disk so that a second start compiles nothing.
//!
//! Cache key: FNV-1a 64 over the source text, the NVRTC options (which name the architecture)
//! and the NVRTC version. The file is written to a temporary name and renamed, so a concurrent
//! start never reads half a file; a cache entry that fails to load is recompiled.

use std::ffi::{CString, c_char};
use std::path::{Path, PathBuf};

use crate::error::{CudaError, CudaResult};
use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

/// Where compiled kernels are kept: `$ORCD_KERNEL_CACHE`, else `$XDG_CACHE_HOME/orcd/kernels`,
/// else `$HOME/.cache/orcd/kernels`, else the system temporary directory.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ORCD_KERNEL_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("orcd/kernels");
    }
    if let Some(d) = std::env::var_os("HOME") {
        return PathBuf::from(d).join(".cache/orcd/kernels");
    }
    std::env::temp_dir().join("orcd-kernels")
}

/// FNV-1a, 64 bits: a stable hash (unlike `DefaultHasher`) for cache file names.
pub(crate) fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separate the parts so ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// NVRTC's (major, minor) version; fails cleanly when libnvrtc is missing.
pub fn nvrtc_version() -> CudaResult<(i32, i32)> {
    // SAFETY: only tries to dlopen libnvrtc by its usual names.
    if !unsafe { nvrtc_sys::is_culib_present() } {
        return Err(CudaError::Unavailable(
            "the CUDA run-time compiler library (libnvrtc) is not installed".into(),
        ));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: writes two ints.
    unsafe { nvrtc_sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| CudaError::Nvrtc(format!("nvrtcVersion: {e:?}")))?;
    Ok((major, minor))
}

/// Compiles kernel sources for one architecture, through the on-disk cache.
#[derive(Debug)]
pub struct KernelCompiler {
    /// e.g. "sm_90".
    arch: String,
    nvrtc: (i32, i32),
    dir: PathBuf,
}

/// What [`KernelCompiler::cubin`] did, for logs and tests.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Compiled,
}

impl KernelCompiler {
    /// A compiler for compute capability `cc`, caching under `dir`.
    pub fn new(cc: (i32, i32), dir: &Path) -> CudaResult<KernelCompiler> {
        let nvrtc = nvrtc_version()?;
        Ok(KernelCompiler {
            arch: format!("sm_{}{}", cc.0, cc.1),
            nvrtc,
            dir: dir.to_path_buf(),
        })
    }

    fn options(&self) -> Vec<String> {
        let mut o = vec![
            format!("--gpu-architecture={}", self.arch),
            "--std=c++17".into(),
            // Exact IEEE division and square roots: the kernels are checked against the CPU.
            "--prec-div=true".into(),
            "--prec-sqrt=true".into(),
        ];
        // `ORCD_MMV_FAST=0`: every weight type takes the reference matrix-vector row kernel
        // (A/B measurements; the fast paths are on by default).
        if std::env::var("ORCD_MMV_FAST").is_ok_and(|v| v == "0") {
            o.push("-DMMV_FAST=0".into());
        }
        o
    }

    /// The cache file of `source` named `name`.
    fn cache_path(&self, name: &str, source: &str) -> PathBuf {
        let opts = self.options().join(" ");
        let ver = format!("{}.{}", self.nvrtc.0, self.nvrtc.1);
        let key = fnv1a64(&[source.as_bytes(), opts.as_bytes(), ver.as_bytes()]);
        self.dir
            .join(format!("{name}-{}-{key:016x}.cubin", self.arch))
    }

    /// The CUBIN of `source` (`name` is for messages and file names), from the cache when
    /// present, else compiled now and stored.
    pub fn cubin(&self, name: &str, source: &str) -> CudaResult<(Vec<u8>, CacheOutcome)> {
        let path = self.cache_path(name, source);
        if let Ok(bytes) = std::fs::read(&path)
            && !bytes.is_empty()
        {
            return Ok((bytes, CacheOutcome::Hit));
        }
        let cubin = self.compile(name, source)?;
        if let Err(e) = store(&self.dir, &path, &cubin) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the kernel cache");
        }
        Ok((cubin, CacheOutcome::Compiled))
    }

    /// Drop a cache entry that failed to load, so the next call compiles afresh.
    pub fn evict(&self, name: &str, source: &str) {
        let _ = std::fs::remove_file(self.cache_path(name, source));
    }

    /// Compile `source` afresh (no cache) with ptxas's resource report on, and return that
    /// report (registers, shared memory, spills per kernel): a compile check that needs
    /// libnvrtc but no GPU (`cuda/tests/nvrtc.rs`).
    pub fn resource_report(&self, name: &str, source: &str) -> CudaResult<String> {
        let mut opts = self.options();
        opts.push("--ptxas-options=-v".into());
        let (_, log) = self.compile_with(name, source, &opts)?;
        Ok(log)
    }

    fn compile(&self, name: &str, source: &str) -> CudaResult<Vec<u8>> {
        self.compile_with(name, source, &self.options())
            .map(|(cubin, _)| cubin)
    }

    /// The CUBIN of `source` under `opts`, and the compiler's log.
    fn compile_with(
        &self,
        name: &str,
        source: &str,
        opts: &[String],
    ) -> CudaResult<(Vec<u8>, String)> {
        let err =
            |what: &str, e: nvrtc::NvrtcError| CudaError::Nvrtc(format!("{what} {name}: {e:?}"));
        let src = CString::new(source)
            .map_err(|_| CudaError::Nvrtc(format!("kernel source {name} contains a NUL byte")))?;
        let cname = CString::new(format!("{name}.cu")).expect("kernel names have no NUL");
        let prog =
            nvrtc::create_program(&src, Some(&cname)).map_err(|e| err("nvrtcCreateProgram", e))?;
        // SAFETY: `prog` was just created and is destroyed below exactly once.
        unsafe {
            let compiled = nvrtc::compile_program(prog, opts);
            let result = match compiled {
                Ok(()) => {
                    let log = nvrtc::get_program_log(prog)
                        .map(|l| c_chars_to_string(&l))
                        .unwrap_or_default();
                    cubin_of(prog)
                        .map(|c| (c, log))
                        .map_err(|e| err("nvrtcGetCUBIN", e))
                }
                Err(e) => {
                    let log = nvrtc::get_program_log(prog)
                        .map(|l| c_chars_to_string(&l))
                        .unwrap_or_default();
                    Err(CudaError::Nvrtc(format!(
                        "NVRTC failed on {name}.cu ({e:?}):\n{log}"
                    )))
                }
            };
            let _ = nvrtc::destroy_program(prog);
            result
        }
    }
}

/// The CUBIN of a compiled program.
///
/// # Safety
/// `prog` must be a live, successfully compiled NVRTC program.
unsafe fn cubin_of(prog: nvrtc_sys::nvrtcProgram) -> Result<Vec<u8>, nvrtc::NvrtcError> {
    let mut size = 0usize;
    // SAFETY: per the function contract; writes one usize.
    unsafe { nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size) }.result()?;
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` holds exactly `size` bytes.
    unsafe { nvrtc_sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char) }.result()?;
    Ok(buf)
}

fn c_chars_to_string(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Write `bytes` to `path` through a temporary file and a rename.
fn store(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_separates_parts_and_is_stable() {
        assert_ne!(fnv1a64(&[b"ab", b"c"]), fnv1a64(&[b"a", b"bc"]));
        assert_eq!(fnv1a64(&[b"x"]), fnv1a64(&[b"x"]));
        assert_ne!(fnv1a64(&[b"x", b"sm_90"]), fnv1a64(&[b"x", b"sm_80"]));
    }

    #[test]
    fn cache_dir_is_named_somewhere() {
        assert!(!default_cache_dir().as_os_str().is_empty());
    }
}
