//! The `plugin sample` part: the standard sampler plugin's call against the device's logits.

use super::*;

/// µs per `sample` call of the sampler plugin on a real logits row of the device.
pub(super) fn bench_plugin(
    dev: &mut dyn ServedDevice,
    plugins: &Plugins,
    params: &GenParams,
    prompt: &[u32],
    iters: usize,
) -> anyhow::Result<Vec<f64>> {
    let dev: &mut dyn Device = dev;
    with_slots(dev, 1, prompt.len(), |dev, slots| {
        dev.forward(&[SeqInput {
            slot: slots[0],
            start_pos: 0,
            tokens: prompt,
            logits: LogitsWanted::Last,
        }])?;
        let mut session = plugins
            .sampler
            .session(params, 42)
            .map_err(|f| anyhow::anyhow!("{}: {f}", f.code))?;
        let mut sample = |dev: &mut dyn Device| -> anyhow::Result<Duration> {
            let t = Instant::now();
            session
                .sample(dev, 0, prompt)
                .map_err(|f| anyhow::anyhow!("{}: {f}", f.code))?;
            Ok(t.elapsed())
        };
        for _ in 0..PLUGIN_WARMUP {
            sample(dev)?;
        }
        (0..iters)
            .map(|_| sample(dev).map(|d| d.as_secs_f64() * 1e6))
            .collect()
    })
}
