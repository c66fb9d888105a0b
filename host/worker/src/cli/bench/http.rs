//! The `ttft http` part: the real server in-process and an SSE client timing the first token.

use super::*;

/// Time to first token through the real HTTP server: ms per request (after one warm-up
/// request), the prompt's length in tokens and the server's step budget.
pub(super) fn bench_http(
    args: &BenchArgs,
    model: &Model,
    plugins: &Plugins,
) -> anyhow::Result<(Vec<f64>, usize, usize)> {
    let prompts: Vec<(String, usize)> = (0..=args.ttft_repeats)
        .map(|i| prompt_of_tokens(plugins, args.ttft_prompt, i))
        .collect::<anyhow::Result<_>>()?;
    let prompt_tokens = prompts[0].1;
    let kv = (prompts.iter().map(|p| p.1).max().unwrap_or(0) + 8) * 2;
    let server = InProcessServer::start(args, model, plugins.clone(), kv, 1, 16)?;
    let url = server.url("/execute");
    let result = server.block_on(async {
        let client = reqwest::Client::new();
        let mut times = Vec::new();
        for (i, (prompt, _)) in prompts.iter().enumerate() {
            let d = first_token(&client, &url, prompt, i).await?;
            if i > 0 {
                times.push(d.as_secs_f64() * 1e3);
            }
        }
        anyhow::Ok(times)
    });
    let step = server.step_tokens;
    server.stop()?;
    Ok((result?, prompt_tokens, step))
}

/// The real server in-process on 127.0.0.1:0, on a device of its own.
pub(super) struct InProcessServer {
    runtime: tokio::runtime::Runtime,
    worker: RunningWorker,
    /// The scheduler's step budget in tokens.
    pub(super) step_tokens: usize,
}

impl InProcessServer {
    /// Start it with KV room for `kv_tokens` positions, `max_running` sequences decoded
    /// together and `max_tokens_out` a request at most.
    pub(super) fn start(
        args: &BenchArgs,
        model: &Model,
        plugins: Plugins,
        kv_tokens: usize,
        max_running: usize,
        max_tokens_out: u32,
    ) -> anyhow::Result<InProcessServer> {
        let facts = model_facts(model, &args.model);
        let device = open_device(args, model.clone(), Some(kv_tokens)).with_context(|| {
            format!("cannot start the {:?} backend for the server", args.backend)
        })?;
        let step_tokens = args
            .step_tokens
            .unwrap_or(match args.backend {
                Backend::Cpu => SERVE_STEP_TOKENS_CPU,
                Backend::Cuda => SERVE_STEP_TOKENS_CUDA,
            })
            .max(1);
        let options = WorkerOptions {
            worker_id: "00000000-0000-4000-8000-00000000be7c".into(),
            model_ref: args.model.display().to_string(),
            scheduler: SchedulerConfig {
                step_token_budget: step_tokens,
                max_running: max_running.max(1),
                queue_capacity: max_running.max(64),
                ..SchedulerConfig::default()
            },
            limits: ServerLimits {
                request: RequestLimits {
                    max_prompt_chars: 32_768,
                    max_tokens_out,
                    vocab_size: facts.vocab_size as u32,
                },
                max_tokens_in: None,
                max_body_bytes: 1 << 20,
                compute: None,
            },
            connections: ConnectionLimits::default(),
            callback_url: None,
            handle_sigterm: false,
            api_key: None,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let worker = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot listen on 127.0.0.1:0")?;
            let parts = WorkerParts {
                device,
                plugins,
                model: facts,
            };
            anyhow::Ok(lifecycle::start(parts, options, listener).await?)
        })?;
        Ok(InProcessServer {
            runtime,
            worker,
            step_tokens,
        })
    }

    /// `http://ADDR{path}`.
    pub(super) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.worker.addr)
    }

    pub(super) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Shut the server down and wait for it (its device is released with it).
    pub(super) fn stop(self) -> anyhow::Result<()> {
        let InProcessServer {
            runtime, worker, ..
        } = self;
        worker.request_shutdown();
        runtime.block_on(worker.wait())?;
        Ok(())
    }
}

/// One `POST /execute`: the time from sending it to the first `token` event; reads the stream
/// to its end.
pub(super) async fn first_token(
    client: &reqwest::Client,
    url: &str,
    prompt: &str,
    i: usize,
) -> anyhow::Result<Duration> {
    let body = execute_body(format!("bench-ttft-{i}"), prompt, 1, &NO_FIELDS);
    Ok(one_stream(client, url, body).await?.0)
}

/// No extra fields for [`execute_body`].
pub(super) static NO_FIELDS: serde_json::Value = serde_json::Value::Null;

/// The `POST /execute` body of every bench request: greedy (seed 42), `max_tokens`, and the
/// fields of `extra` (a JSON object, e.g. a `response_format`) added.
pub(super) fn execute_body(
    job_id: String,
    prompt: &str,
    max_tokens: usize,
    extra: &serde_json::Value,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "job_id": job_id,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": 42,
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

/// A batch of requests sent at once and read to their ends.
#[derive(Debug)]
pub(super) struct Round {
    /// Per request, ms from sending it to its first `token` event.
    pub ttft_ms: Vec<f64>,
    /// Tokens generated by all requests.
    pub tokens: usize,
    /// From the first request sent to the last stream ended.
    pub wall: Duration,
    /// Per request that generated at least two tokens: its decode rate, tokens after the first
    /// over the time from its first `token` event to its stream's end (tok/s of one sequence).
    pub decode_rates: Vec<f64>,
}

impl Round {
    /// Aggregate tokens a second over the round's wall time.
    pub fn tok_per_s(&self) -> f64 {
        self.tokens as f64 / self.wall.as_secs_f64()
    }
}

/// `POST /execute` every body at once; the first failure fails the round.
pub(super) async fn concurrent_round(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<serde_json::Value>,
) -> anyhow::Result<Round> {
    let t = Instant::now();
    let answers = futures_util::future::join_all(
        bodies.into_iter().map(|body| one_stream(client, url, body)),
    )
    .await;
    let wall = t.elapsed();
    let mut round = Round {
        ttft_ms: Vec::new(),
        tokens: 0,
        wall,
        decode_rates: Vec::new(),
    };
    for a in answers {
        let (first, n, end) = a?;
        round.ttft_ms.push(first.as_secs_f64() * 1e3);
        round.tokens += n;
        let decoding = end.saturating_sub(first).as_secs_f64();
        if n >= 2 && decoding > 0.0 {
            round.decode_rates.push((n - 1) as f64 / decoding);
        }
    }
    Ok(round)
}

/// Requests that build what a steady worker already has before a timed round: `n` requests at
/// once (so `n` plugin instances are initialised and pooled), each with `extra` fields (e.g. the
/// round's `response_format`, compiled and cached in each instance) and a short prompt of its
/// own that shares no block with the timed prompts.
pub(super) async fn warm_up(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    extra: &serde_json::Value,
) -> anyhow::Result<()> {
    let bodies = (0..n)
        .map(|i| {
            execute_body(
                format!("bench-warm-up-{i}"),
                &format!("warm-up {i}"),
                1,
                extra,
            )
        })
        .collect();
    concurrent_round(client, url, bodies).await.map(|_| ())
}

/// One `POST /execute` read to its end: the time to its first `token` event, the
/// `tokens_out` of its `end` event and the time to the stream's end.
async fn one_stream(
    client: &reqwest::Client,
    url: &str,
    body: serde_json::Value,
) -> anyhow::Result<(Duration, usize, Duration)> {
    let t = Instant::now();
    let mut resp = client.post(url).json(&body).send().await?;
    if !resp.status().is_success() {
        let status = resp.status();
        bail!(
            "/execute answered {status}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    let mut stream = String::new();
    let mut first = None;
    while let Some(chunk) = resp.chunk().await? {
        stream.push_str(&String::from_utf8_lossy(&chunk));
        if first.is_none() && has_event(&stream, "token") {
            first = Some(t.elapsed());
        }
    }
    let end = event_data(&stream, "end")
        .with_context(|| format!("the job did not end: {}", stream.trim()))?;
    let tokens = end["tokens_out"]
        .as_u64()
        .with_context(|| format!("no tokens_out in {end}"))?;
    let first = first.with_context(|| format!("no `token` event in: {}", stream.trim()))?;
    Ok((first, tokens as usize, t.elapsed()))
}

/// The JSON `data` of an SSE text's first `event: <name>`.
fn event_data(stream: &str, name: &str) -> Option<serde_json::Value> {
    let mut lines = stream.lines();
    while let Some(l) = lines.next() {
        if l.strip_prefix("event:").map(str::trim) == Some(name) {
            let data = lines.next()?.strip_prefix("data:")?;
            return serde_json::from_str(data.trim()).ok();
        }
    }
    None
}

/// Whether an SSE text has a complete `event: <name>` line.
pub(super) fn has_event(stream: &str, name: &str) -> bool {
    stream
        .split('\n')
        .rev()
        .skip(1)
        .any(|l| l.strip_prefix("event:").map(str::trim) == Some(name))
}

/// English words a prompt is built from (each one or two tokens in common vocabularies).
pub(super) const WORDS: &[&str] = &[
    "the", "river", "carried", "small", "boats", "past", "old", "stone", "houses", "while",
    "children", "watched", "from", "a", "bridge", "and", "counted", "every", "sail", "until",
    "evening", "light", "turned", "water", "gold", "over", "quiet", "town", "near", "hills",
];

/// A text prompt that the model's tokenizer turns into at least `tokens` tokens, and its token
/// count. It starts with `variant`'s number (so prompts of different variants share no prefix
/// the prefix cache could reuse: the words alone repeat every 30 variants), then words cycle
/// from an offset that differs per `variant`.
pub(super) fn prompt_of_tokens(
    plugins: &Plugins,
    tokens: usize,
    variant: usize,
) -> anyhow::Result<(String, usize)> {
    let mut text = format!("{variant}.");
    for w in 0..tokens.max(1) * 4 {
        text.push(' ');
        text.push_str(WORDS[(variant * 7 + w) % WORDS.len()]);
        if w % 8 == 7 || w + 1 >= tokens {
            let n = plugins
                .tokenizer
                .encode(&text)
                .map_err(|f| anyhow::anyhow!("{}: {f}", f.code))?
                .len();
            if n >= tokens {
                return Ok((text, n));
            }
        }
    }
    bail!("could not build a prompt of {tokens} tokens")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_s_data_is_read_as_json() {
        let s =
            "event: token\ndata: {\"t\":\"a\",\"i\":0}\n\nevent: end\ndata: {\"tokens_out\":7}\n\n";
        assert_eq!(event_data(s, "end").unwrap()["tokens_out"], 7);
        assert_eq!(event_data(s, "token").unwrap()["t"], "a");
        assert!(event_data(s, "error").is_none());
    }
}
