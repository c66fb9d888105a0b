//! The device under the bench: opening it, KV slots for its sequences, what it reports about itself.

use super::*;

/// Granularity to which a sequence's KV reservation is rounded here: a multiple of every
/// backend's allocation unit (the CUDA backend reserves 16-token pages, the CPU exact positions),
/// so `n` sequences of `len` tokens always fit in `n * kv_per_sequence(len)` positions.
pub(super) const KV_ROUND_TOKENS: usize = 64;

/// KV positions one sequence of `len` tokens reserves at most, on any backend.
pub(super) fn kv_per_sequence(len: usize) -> usize {
    len.div_ceil(KV_ROUND_TOKENS) * KV_ROUND_TOKENS
}

/// KV positions the device-level parts need at once (the largest of them).
pub(super) fn kv_needed(args: &BenchArgs) -> usize {
    let batched = if args.skip.contains(&Part::Batched) {
        0
    } else {
        args.batches.iter().max().copied().unwrap_or(0)
            * kv_per_sequence(args.batch_prompt + 1 + args.batch_tg)
    };
    [
        args.pp,
        1 + args.tg,
        1 + WARMUP_STEPS,
        PLUGIN_PROMPT,
        batched,
    ]
    .into_iter()
    .max()
    .unwrap_or(1)
}

/// Load the model for the device-level parts with KV room for all of them; when the device
/// cannot hold that much, fall back to the backend's default budget (the batched rows then say
/// what did not fit). Returns a note for the load row.
pub(super) fn open_for_bench(
    args: &BenchArgs,
    model: &Model,
) -> anyhow::Result<(Box<dyn ServedDevice>, String)> {
    let need = kv_needed(args);
    match open_device(args, model.clone(), Some(need)) {
        Ok(d) => Ok((d, format!(" (KV budget {need} positions)"))),
        Err(first) => {
            let d = open_device(args, model.clone(), None)
                .with_context(|| format!("cannot start the {:?} backend", args.backend))?;
            Ok((
                d,
                format!(" (the backend's default KV budget: {need} positions failed: {first})"),
            ))
        }
    }
}

/// The backend with the model and `kv_tokens` KV positions (`None`: the backend's default).
pub(super) fn open_device(
    args: &BenchArgs,
    model: Model,
    kv_tokens: Option<usize>,
) -> Result<Box<dyn ServedDevice>, EngineError> {
    Ok(match args.backend {
        Backend::Cpu => {
            let mut opts = CpuOptions {
                threads: args.threads,
                kv_type: args.kv_type,
                ..CpuOptions::default()
            };
            if let Some(t) = kv_tokens {
                opts.kv_tokens_budget = t;
            }
            Box::new(CpuBackend::new(model, opts)?)
        }
        Backend::Cuda => Box::new(orcd_cuda::CudaBackend::new(
            model,
            orcd_cuda::CudaOptions {
                gpu: args.gpu_device,
                kv_tokens_budget: kv_tokens,
                kv_type: args.kv_type,
                ..orcd_cuda::CudaOptions::default()
            },
        )?),
    })
}

/// CUDA: the kernel driver's version (from `/proc/driver/nvidia/version`, when readable) and
/// the CUDA version the driver supports (from the backend); CPU: none.
pub(super) fn driver_version(info: &DeviceInfo) -> Option<String> {
    let cuda = info.runtime_version.as_ref()?;
    let kernel = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|s| kernel_module_version(&s));
    Some(match kernel {
        Some(k) => format!("{k} (CUDA {cuda})"),
        None => format!("CUDA {cuda}"),
    })
}

/// The version in `/proc/driver/nvidia/version`'s first line, e.g. "580.159.04" from "NVRM
/// version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build ...": the first
/// word after "Kernel Module" that starts with a digit and has a dot.
pub(super) fn kernel_module_version(proc_version: &str) -> Option<String> {
    let after = proc_version.lines().next()?.split("Kernel Module").nth(1)?;
    after
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()) && w.contains('.'))
        .map(str::to_string)
}

/// The card's name, or the CPU's model name and the backend's thread count.
pub(super) fn device_name(info: &DeviceInfo) -> String {
    if info.backend != "cpu" {
        return info.name.clone();
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    format!("{cpu}, {}", info.name)
}

pub(super) fn memory_row(info: &DeviceInfo, free_kv: usize) -> Row {
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let total = info.weights_bytes + info.kv_cache_bytes + info.scratch_bytes;
    let place = if info.backend == "cpu" { "RAM" } else { "VRAM" };
    Row::ok("memory", mib(total), "MiB", vec![mib(total)]).with(format!(
        "{place}: weights {:.1} + KV cache {:.1} ({free_kv} positions) + scratch {:.1} MiB",
        mib(info.weights_bytes),
        mib(info.kv_cache_bytes),
        mib(info.scratch_bytes)
    ))
}

/// The capacity row: how many sequences of [`CAPACITY_SEQ_TOKENS`] positions a KV budget of
/// [`CAPACITY_KV_BYTES`] holds, per KV type, at the bytes a position takes on every layer (what
/// both backends' KV ledgers charge; the CPU backend's sliding-window layers keep less).
pub(super) fn kv_capacity_row(model: &Model, kv_type: orcd_model::KvType) -> Row {
    let c = &model.config;
    let per = |t: orcd_model::KvType| t.bytes_per_token(c.n_layers, c.kv_dim()) as u64;
    let seqs = |t| CAPACITY_KV_BYTES / (per(t) * CAPACITY_SEQ_TOKENS);
    let each: Vec<String> = orcd_model::KvType::ALL
        .iter()
        .map(|&t| {
            format!(
                "{} {} ({:.1} KiB a position)",
                t.name(),
                seqs(t),
                per(t) as f64 / 1024.0
            )
        })
        .collect();
    let n = seqs(kv_type) as f64;
    Row::ok("kv_capacity", n, "seqs", vec![n]).with(format!(
        "{CAPACITY_SEQ_TOKENS}-token sequences in a {} GB KV budget, --kv-type {}; {}",
        CAPACITY_KV_BYTES / 1_000_000_000,
        kv_type.name(),
        each.join(", ")
    ))
}

/// The capacity row's sequence length and KV budget (the serving issue's yardstick).
const CAPACITY_SEQ_TOKENS: u64 = 2048;
const CAPACITY_KV_BYTES: u64 = 40_000_000_000;

/// Reserve `n` slots of `max_tokens`; on failure nothing stays reserved.
pub(super) fn alloc_slots(
    dev: &mut dyn Device,
    n: usize,
    max_tokens: usize,
) -> anyhow::Result<Vec<SeqSlot>> {
    let mut slots = Vec::with_capacity(n);
    for i in 0..n {
        match dev.alloc_seq(max_tokens) {
            Ok(s) => slots.push(s),
            Err(e) => {
                free_slots(dev, &slots);
                bail!(
                    "KV cache cannot hold {n} sequences of {max_tokens} tokens (sequence {} \
                     failed, {} positions free): {e}",
                    i + 1,
                    dev.free_kv_tokens()
                );
            }
        }
    }
    Ok(slots)
}

pub(super) fn free_slots(dev: &mut dyn Device, slots: &[SeqSlot]) {
    for &s in slots {
        dev.free_seq(s);
    }
}

/// Run `f` over `n` fresh slots and release them whatever happens.
pub(super) fn with_slots<T>(
    dev: &mut dyn Device,
    n: usize,
    max_tokens: usize,
    f: impl FnOnce(&mut dyn Device, &[SeqSlot]) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let slots = alloc_slots(dev, n, max_tokens)?;
    let result = f(dev, &slots);
    free_slots(dev, &slots);
    result
}
