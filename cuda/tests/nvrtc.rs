//! Compile every kernel module for sm_90 with NVRTC and print ptxas's resource report
//! (registers, shared memory, spills): a compile check (compile errors fail it) that needs libnvrtc but no GPU.
//! Run where libnvrtc is installed (e.g. from the `nvidia-cuda-nvrtc` wheel):
//! `LD_LIBRARY_PATH=<dir of libnvrtc.so.13> cargo test --release -p orcd-cuda --test nvrtc -- --ignored --nocapture`.

use orcd_cuda::compile::KernelCompiler;
use orcd_cuda::kernels::resource_reports;

#[test]
#[ignore = "needs libnvrtc"]
fn every_module_compiles_for_sm90() {
    let dir = std::env::temp_dir().join(format!("orcd-nvrtc-{}", std::process::id()));
    let compiler = KernelCompiler::new((9, 0), &dir).expect("libnvrtc");
    let reports = resource_reports(&compiler).unwrap_or_else(|e| panic!("{e}"));
    let mut spills = Vec::new();
    for (module, log) in &reports {
        println!("== {module}");
        let mut kernel = String::new();
        for line in log.lines() {
            if let Some(rest) = line.split("Compiling entry function '").nth(1) {
                kernel = rest.split('\'').next().unwrap_or("").to_string();
            }
            if line.contains("registers") || line.contains("spill") {
                println!("{kernel}: {}", line.trim());
            }
            if line.contains("bytes spill stores") && !line.contains(" 0 bytes spill stores") {
                spills.push(format!("{module}/{kernel}: {}", line.trim()));
            }
        }
    }
    // Spills are reported, not failed on: a reference kernel may spill a few bytes (mmv_q6_k).
    if !spills.is_empty() {
        println!("register spills:\n{}", spills.join("\n"));
    }
}
