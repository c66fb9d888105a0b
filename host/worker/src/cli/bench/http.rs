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
    let body = serde_json::json!({
        "job_id": format!("bench-ttft-{i}"),
        "prompt": prompt,
        "max_tokens": 1,
        "temperature": 0.0,
        "seed": 42,
    });
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
    if has_event(&stream, "error") {
        bail!("the job failed: {}", stream.trim());
    }
    first.with_context(|| format!("no `token` event in the stream: {}", stream.trim()))
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

/// A text prompt that the model's tokenizer turns into at least `tokens` tokens (words cycle
/// from an offset that differs per `variant`), and its token count.
pub(super) fn prompt_of_tokens(
    plugins: &Plugins,
    tokens: usize,
    variant: usize,
) -> anyhow::Result<(String, usize)> {
    let mut text = String::new();
    for w in 0..tokens.max(1) * 4 {
        if w > 0 {
            text.push(' ');
        }
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
