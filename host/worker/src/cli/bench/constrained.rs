//! The `constrained` part: what constrained decoding costs a batch. `--constrained-seqs`
//! requests (64) go out at once through the in-process server, each a `--batch-prompt`-token
//! prompt of its own and `--batch-tg` tokens to generate, greedy, twice on one server: `free`
//! (no constraint) and `json` (every request with `response_format` json_schema, a schema of
//! the shape applications send: an object with a string, an enum, a number and an array of
//! strings). Each round's row is the median request's decode rate (its tokens after the first
//! over the time from its first `token` event to its stream's end), with the aggregate tok/s
//! beside it; the `json` row says its ratio to `free`. Outputs differ in length (a JSON answer
//! can end before `--batch-tg`), so the per-sequence rate is what compares. Each round follows
//! a warm-up round of the same kind (one short request per sequence: the plugin instances built
//! and pooled, the schema compiled and cached in each), so the rows measure a steady worker;
//! the schema's compile time is the plugin bench's figure. The mask is computed by the
//! constraint plugin per sequence and applied on the device before the sampler.

use super::*;

/// The schema of the `json` round.
fn schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "kind": {"type": "string", "enum": ["report", "letter", "note"]},
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}}
        },
        "required": ["title", "kind", "score", "tags"],
        "additionalProperties": false
    })
}

/// The `free` and the `json` round, and the prompt's length in tokens.
pub(super) fn bench_constrained(
    args: &BenchArgs,
    model: &Model,
    plugins: &Plugins,
    seqs: usize,
) -> anyhow::Result<([Round; 2], usize)> {
    // Each round its own prompts: the second must not find the first's in the prefix cache.
    let round_prompts = |round: usize| -> anyhow::Result<Vec<(String, usize)>> {
        (0..seqs)
            .map(|i| prompt_of_tokens(plugins, args.batch_prompt, 1000 + round * seqs + i))
            .collect()
    };
    let rounds_prompts = [round_prompts(0)?, round_prompts(1)?];
    let prompt_tokens = rounds_prompts
        .iter()
        .flatten()
        .map(|p| p.1)
        .max()
        .unwrap_or(0);
    let kv = (seqs + 1) * kv_per_sequence(prompt_tokens + args.batch_tg + 16);
    let max_tokens = u32::try_from(args.batch_tg).context("--batch-tg is too large")?;
    let server = InProcessServer::start(args, model, plugins.clone(), kv, seqs, max_tokens)?;
    let execute = server.url("/execute");
    let result = server.block_on(async {
        let client = reqwest::Client::new();
        let mut rounds = Vec::new();
        let json_format = serde_json::json!({
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "doc", "schema": schema(), "strict": true}
            }
        });
        for (round, constrained) in [false, true].into_iter().enumerate() {
            let extra = if constrained {
                &json_format
            } else {
                &NO_FIELDS
            };
            warm_up(&client, &execute, seqs, extra).await?;
            let bodies = rounds_prompts[round]
                .iter()
                .enumerate()
                .map(|(i, (p, _))| {
                    let id = format!("bench-constrained-{round}-{i}");
                    execute_body(id, p, args.batch_tg, extra)
                })
                .collect();
            rounds.push(concurrent_round(&client, &execute, bodies).await?);
        }
        anyhow::Ok(rounds)
    });
    server.stop()?;
    let rounds: [Round; 2] = result?
        .try_into()
        .map_err(|_| anyhow::anyhow!("two rounds ran"))?;
    Ok((rounds, prompt_tokens))
}
