//! The device-level parts: prefill (`pp`), batch-1 decode (`tg`), many sequences at once (`batch N`).

use super::*;

/// Prefill tok/s of one `prompt`, one warm-up run then `repeats` timed ones. The argmax of the
/// last row ends each timing, so an asynchronous backend has finished the step.
pub(super) fn bench_pp(
    dev: &mut dyn Device,
    prompt: &[u32],
    repeats: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut rates = Vec::with_capacity(repeats);
    for run in 0..=repeats {
        let elapsed = with_slots(dev, 1, prompt.len(), |dev, slots| {
            let t = Instant::now();
            dev.forward(&[SeqInput {
                slot: slots[0],
                start_pos: 0,
                tokens: prompt,
                logits: LogitsWanted::Last,
            }])?;
            dev.logits_argmax(0)?;
            Ok(t.elapsed())
        })?;
        if run > 0 {
            rates.push(prompt.len() as f64 / elapsed.as_secs_f64());
        }
    }
    Ok(rates)
}

/// `steps` greedy decode steps of every sequence in `slots` together, one `forward` each.
/// `next[i]` is sequence i's next input token and `pos` its position; both advance.
pub(super) fn decode(
    dev: &mut dyn Device,
    slots: &[SeqSlot],
    next: &mut [u32],
    pos: &mut usize,
    steps: usize,
) -> anyhow::Result<()> {
    for _ in 0..steps {
        let batch: Vec<SeqInput<'_>> = slots
            .iter()
            .zip(next.iter())
            .map(|(&slot, tok)| SeqInput {
                slot,
                start_pos: *pos,
                tokens: std::slice::from_ref(tok),
                logits: LogitsWanted::Last,
            })
            .collect();
        let rows = dev.forward(&batch)?;
        drop(batch);
        if rows != slots.len() {
            bail!(
                "forward returned {rows} logits rows for {} sequences",
                slots.len()
            );
        }
        for (row, tok) in next.iter_mut().enumerate() {
            *tok = dev.logits_argmax(row)?.0;
        }
        *pos += 1;
    }
    Ok(())
}

/// Batch-1 decode tok/s: a warm-up sequence, then `repeats` sequences of one prompt token and
/// `tg` timed greedy steps.
pub(super) fn bench_tg(
    dev: &mut dyn Device,
    first: u32,
    tg: usize,
    repeats: usize,
) -> anyhow::Result<Vec<f64>> {
    run_timed(dev, first, WARMUP_STEPS)?;
    let mut rates = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let elapsed = run_timed(dev, first, tg)?;
        rates.push(tg as f64 / elapsed.as_secs_f64());
    }
    Ok(rates)
}

/// One batch-1 sequence: prefill `first`, then time `tg` greedy decode steps.
pub(super) fn run_timed(dev: &mut dyn Device, first: u32, tg: usize) -> anyhow::Result<Duration> {
    with_slots(dev, 1, 1 + tg, |dev, slots| {
        let mut next = [first];
        let mut pos = 0;
        decode(dev, slots, &mut next, &mut pos, 1)?;
        let t = Instant::now();
        decode(dev, slots, &mut next, &mut pos, tg)?;
        Ok(t.elapsed())
    })
}

pub(super) struct Batched {
    /// Aggregate prefill tok/s per run.
    pub(super) prefill: Vec<f64>,
    /// Aggregate decode tok/s per run.
    pub(super) decode: Vec<f64>,
}

/// Many sequences at once (llama-batched-bench's shape): prefill every prompt (whole sequences,
/// up to [`BATCH_PREFILL_TOKENS`] tokens per forward), one untimed decode step (per-shape
/// setup such as CUDA graph capture), then `tg` timed steps with all sequences in each forward.
pub(super) fn bench_batched(
    dev: &mut dyn Device,
    prompts: &[Vec<u32>],
    tg: usize,
    repeats: usize,
) -> anyhow::Result<Batched> {
    let n = prompts.len();
    if n == 0 {
        bail!("a batch needs at least one sequence");
    }
    let prompt_len = prompts[0].len();
    let per_forward = (BATCH_PREFILL_TOKENS / prompt_len.max(1)).max(1);
    let mut out = Batched {
        prefill: Vec::new(),
        decode: Vec::new(),
    };
    for _ in 0..repeats {
        let (prefill, decode_time) = with_slots(dev, n, prompt_len + 1 + tg, |dev, slots| {
            let mut next = vec![0u32; n];
            let t = Instant::now();
            for (group, chunk) in slots.chunks(per_forward).enumerate() {
                let base = group * per_forward;
                let batch: Vec<SeqInput<'_>> = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, &slot)| SeqInput {
                        slot,
                        start_pos: 0,
                        tokens: &prompts[base + i],
                        logits: LogitsWanted::Last,
                    })
                    .collect();
                dev.forward(&batch)?;
                for i in 0..chunk.len() {
                    next[base + i] = dev.logits_argmax(i)?.0;
                }
            }
            let prefill = t.elapsed();
            let mut pos = prompt_len;
            decode(dev, slots, &mut next, &mut pos, 1)?;
            let t = Instant::now();
            decode(dev, slots, &mut next, &mut pos, tg)?;
            Ok((prefill, t.elapsed()))
        })?;
        out.prefill
            .push((n * prompt_len) as f64 / prefill.as_secs_f64());
        out.decode.push((n * tg) as f64 / decode_time.as_secs_f64());
    }
    Ok(out)
}

/// `n` seeded prompt token ids below `vocab`.
pub(super) fn random_tokens(rng: &mut SplitMix64, n: usize, vocab: usize) -> Vec<u32> {
    (0..n)
        .map(|_| (rng.next_u64() % vocab.max(1) as u64) as u32)
        .collect()
}
