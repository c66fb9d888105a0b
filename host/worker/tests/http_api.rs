//! The worker's HTTP API over the mock device with the real plugins (SmolLM2's vocabulary):
//! event order, errors and codes, cancel, disconnects, back-pressure, OOM recovery, shutdown,
//! health, metrics, the OpenAPI document.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};

const JSON: &str = "application/json";

fn job(id: &str, max_tokens: u32, seed: u64) -> Value {
    json!({"job_id": id, "prompt": "Write a story about a robot.", "max_tokens": max_tokens,
           "temperature": 0.8, "seed": seed})
}

/// Open an `/execute` stream and return it after its first `token` event.
type EventStream = std::pin::Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<
                    eventsource_stream::Event,
                    eventsource_stream::EventStreamError<reqwest::Error>,
                >,
            > + Send,
    >,
>;

async fn open_until_first_token(w: &TestWorker, body: &Value) -> EventStream {
    let resp = w
        .client
        .post(w.url("/execute"))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut s = Box::pin(eventsource_stream::Eventsource::eventsource(
        resp.bytes_stream(),
    ));
    loop {
        let ev = s.next().await.expect("stream goes on").expect("valid SSE");
        if ev.event == "token" {
            break;
        }
        assert!(ev.event == "started" || ev.event == "metrics", "{ev:?}");
    }
    s
}

async fn wait_idle(w: &TestWorker) {
    for _ in 0..200 {
        if w.get_json("/health").await["jobs_in_flight"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("jobs still in flight: {}", w.get_json("/health").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_streams_started_tokens_end_and_seed_fixes_tokens() {
    let w = mock_worker(4, 4, 1 << 16).await;
    let a = w.execute(&job("a", 12, 42)).await;
    assert_well_formed(&a);
    assert_eq!(a[0].data["job_id"], "a");
    assert!(a[0].data["started_at"].as_str().unwrap().contains('T'));
    let end = terminal(&a);
    assert_eq!(end.event, "end", "{a:?}");
    assert_eq!(end.data["seed"], 42);
    assert!(end.data["tokens_out"].as_u64().unwrap() <= 12);
    let b = w.execute(&job("b", 12, 42)).await;
    assert_eq!(text_of(&a), text_of(&b));
    assert_eq!(terminal(&b).data["tokens_out"], end.data["tokens_out"]);
    // No seed: the worker picks one and reports it; replaying it gives the same text.
    let c = w
        .execute(&json!({"job_id": "c", "prompt": "Hello", "max_tokens": 6}))
        .await;
    let seed = terminal(&c).data["seed"].as_u64().expect("seed reported");
    let d = w
        .execute(&json!({"job_id": "d", "prompt": "Hello", "max_tokens": 6, "seed": seed}))
        .await;
    assert_eq!(text_of(&c), text_of(&d));
    for e in [&a, &b, &c, &d] {
        assert!(!text_of(e).contains('\u{FFFD}'));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_sequence_cuts_the_output_before_it() {
    let w = mock_worker(2, 2, 1 << 16).await;
    let free = w.execute(&job("free", 40, 77)).await;
    let text = text_of(&free);
    let chars: Vec<char> = text.chars().collect();
    assert!(chars.len() > 20, "{text:?}");
    // A stop sequence taken from the middle of the free run: the same seeded run must end
    // right before its first occurrence.
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let cut = &text[..text.find(&stop).unwrap()];
    let mut body = job("stopped", 40, 77);
    body["stop"] = json!([stop, "never-appears-\u{2603}"]);
    let stopped = w.execute(&body).await;
    assert_well_formed(&stopped);
    let end = terminal(&stopped);
    assert_eq!(end.event, "end");
    assert_eq!(end.data["stop_reason"], "stop", "{stopped:?}");
    assert_eq!(text_of(&stopped), cut);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_gets_periodic_metrics_events() {
    let w = mock_worker(2, 2, 1 << 16).await;
    let ev = w.execute(&job("long-metrics", 2000, 4)).await;
    assert_well_formed(&ev);
    let metrics: Vec<&Sse> = ev.iter().filter(|e| e.event == "metrics").collect();
    let end = terminal(&ev);
    // Metrics come every 200 ms in these tests.
    if end.data["decode_time_ms"].as_u64().unwrap() > 400 {
        assert!(!metrics.is_empty(), "no metrics event in a long job");
    }
    for m in metrics {
        assert_eq!(m.data["job_id"], "long-metrics");
        assert!(m.data["tokens_out"].as_u64().unwrap() > 0);
        assert!(m.data.get("vram_bytes").is_some() && m.data.get("decode_time_ms").is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_bodies_get_400_naming_the_field() {
    let w = mock_worker(2, 2, 1 << 16).await;
    // (body, content type, field)
    let inline = [
        ("{}", "job_id"),
        ("not json", "body"),
        (r#"{"job_id":"x"}"#, "prompt"),
        (r#"{"job_id":"","prompt":"hi"}"#, "job_id"),
        (r#"{"job_id":"x","prompt":""}"#, "prompt"),
        (
            r#"{"job_id":"x","prompt":"hi","max_tokens":0}"#,
            "max_tokens",
        ),
        (
            r#"{"job_id":"x","prompt":"hi","max_tokens":99999}"#,
            "max_tokens",
        ),
        (
            r#"{"job_id":"x","prompt":"hi","temperature":2.5}"#,
            "temperature",
        ),
        (r#"{"job_id":"x","prompt":"hi","top_p":1.5}"#, "top_p"),
        (r#"{"job_id":"x","prompt":"hi","seed":-1}"#, "seed"),
        (
            r#"{"job_id":"x","prompt":"hi","stop":["a","b","c","d","e"]}"#,
            "stop",
        ),
    ];
    let mut cases: Vec<(String, String, String)> = inline
        .iter()
        .map(|(b, f)| (b.to_string(), JSON.to_string(), f.to_string()))
        .collect();
    let long = format!(r#"{{"job_id":"x","prompt":"{}"}}"#, "a".repeat(32_769));
    cases.push((long, JSON.into(), "prompt".into()));
    // The conformance corpus of the request-handler plugin, when present.
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/conformance/data/execute_invalid.json");
    if let Ok(text) = std::fs::read_to_string(&corpus) {
        let v: Value = serde_json::from_str(&text).expect("corpus is JSON");
        let list = v
            .get("cases")
            .unwrap_or(&v)
            .as_array()
            .expect("a list of cases")
            .clone();
        assert!(list.len() >= 40, "the corpus has {} cases", list.len());
        for c in list {
            let body = match &c["body"] {
                Value::String(raw) => raw.clone(),
                other => other.to_string(),
            };
            let ctype = c["content_type"].as_str().unwrap_or(JSON).to_string();
            let field = c["field"].as_str().unwrap_or("").to_string();
            cases.push((body, ctype, field));
        }
    }
    for (body, ctype, field) in &cases {
        let mut req = w.client.post(w.url("/execute")).body(body.clone());
        if !ctype.is_empty() {
            req = req.header("content-type", ctype);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 400, "{body:.200} -> {v}");
        assert_eq!(v["code"], "INVALID_REQUEST", "{v}");
        assert_eq!(v["retriable"], false);
        let msg = v["message"].as_str().unwrap();
        if !field.is_empty() {
            assert!(
                msg.contains(field.as_str()) || v["field"] == field.as_str(),
                "{body:.200}: message `{msg}` does not name `{field}`"
            );
        }
    }
    // A duplicate job id while the first still runs is refused too.
    let _running = open_until_first_token(&w, &job("dup", 2000, 1)).await;
    let r = w
        .client
        .post(w.url("/execute"))
        .json(&job("dup", 4, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_the_stream_with_cancelled_and_is_idempotent() {
    let w = slow_mock_worker(2, 2, 1 << 16).await;
    let mut s = open_until_first_token(&w, &job("long", 2000, 3)).await;
    let r = w
        .client
        .post(w.url("/cancel"))
        .json(&json!({"job_id": "long"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let mut last = None;
    while let Some(ev) = s.next().await {
        last = Some(ev.unwrap());
    }
    let last = last.unwrap();
    assert_eq!(last.event, "error");
    let data: Value = serde_json::from_str(&last.data).unwrap();
    assert_eq!(data["code"], "CANCELLED");
    assert_eq!(data["retriable"], false);
    for id in ["long", "never-seen"] {
        let r = w
            .client
            .post(w.url("/cancel"))
            .json(&json!({"job_id": id}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    let r = w
        .client
        .post(w.url("/cancel"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    wait_idle(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_cancels_its_job_running_or_queued() {
    let w = slow_mock_worker(1, 4, 1 << 16).await;
    let running = open_until_first_token(&w, &job("run", 2000, 5)).await;
    // Queued behind `run` (one sequence at a time): read only `started`, then go away.
    let queued = w
        .client
        .post(w.url("/execute"))
        .json(&job("queued", 2000, 6))
        .send()
        .await;
    let queued = queued.unwrap();
    assert_eq!(queued.status(), 200);
    assert_eq!(w.get_json("/health").await["jobs_in_flight"], 2);
    drop(queued);
    drop(running);
    wait_idle(&w).await;
    // The worker serves the next request normally.
    let ev = w.execute(&job("after", 4, 1)).await;
    assert_eq!(terminal(&ev).event, "end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_answers_503_retriable_and_recovers() {
    let w = slow_mock_worker(1, 0, 1 << 16).await;
    let _running = open_until_first_token(&w, &job("a", 2000, 1)).await;
    let r = w
        .client
        .post(w.url("/execute"))
        .json(&job("b", 4, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "WORKER_BUSY");
    assert_eq!(v["retriable"], true);
    w.client
        .post(w.url("/cancel"))
        .json(&json!({"job_id": "a"}))
        .send()
        .await
        .unwrap();
    wait_idle(&w).await;
    let ev = w.execute(&job("b", 4, 1)).await;
    assert_eq!(terminal(&ev).event, "end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_kv_cache_cannot_fit_gets_vram_oom_and_the_next_succeeds() {
    // 256 KV tokens in all: a 2000-token generation cannot be held.
    let w = mock_worker(4, 4, 256).await;
    let ev = w.execute(&job("big", 2000, 1)).await;
    assert_well_formed(&ev);
    let end = terminal(&ev);
    assert_eq!(end.event, "error");
    assert_eq!(end.data["code"], "VRAM_OOM");
    assert_eq!(end.data["retriable"], true);
    let ev = w.execute(&job("small", 8, 1)).await;
    assert_eq!(terminal(&ev).event, "end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_streams_complete_and_match_their_solo_runs() {
    let w = std::sync::Arc::new(mock_worker(32, 8, 1 << 16).await);
    let solo = w.execute(&job("solo", 16, 11)).await;
    let mut tasks = Vec::new();
    for i in 0..32u64 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            w.execute(&job(&format!("c{i}"), 16, 11)).await
        }));
    }
    for t in tasks {
        let ev = t.await.unwrap();
        assert_well_formed(&ev);
        assert_eq!(terminal(&ev).event, "end", "{ev:?}");
        // Batch invariance: the same seeded request gives the same tokens among 31 others.
        assert_eq!(text_of(&ev), text_of(&solo));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_job_past_the_inference_timeout_gets_inference_timeout() {
    let (plugins, mut facts, _m) = smollm2_plugins();
    facts.context_length = 4096;
    // 20 ms a step: 2048 tokens cannot finish within the 300 ms timeout.
    let device = TestDevice {
        inner: orcd_device::mock::MockDevice::new(facts.vocab_size, 1).unwrap(),
        steps: 0,
        panic_at: None,
        step_delay: Duration::from_millis(20),
    };
    let mut opts = test_options(1, 4);
    opts.scheduler.inference_timeout = Duration::from_millis(300);
    let w = start(Box::new(device), plugins, facts, opts).await;
    let h = {
        let body = job("first", 2048, 1);
        let client = w.client.clone();
        let url = w.url("/execute");
        tokio::spawn(
            async move { read_sse(client.post(url).json(&body).send().await.unwrap()).await },
        )
    };
    let second = w.execute(&job("second", 2048, 1)).await;
    let first = h.await.unwrap();
    // The first times out while decoding, the second while it waits behind the first.
    for ev in [&first, &second] {
        assert_well_formed(ev);
        let t = terminal(ev);
        assert_eq!(t.event, "error", "{ev:?}");
        assert_eq!(t.data["code"], "INFERENCE_TIMEOUT", "{t:?}");
        assert_eq!(t.data["retriable"], false);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_every_field_from_cache() {
    let w = mock_worker(2, 2, 1 << 16).await;
    let h = w.get_json("/health").await;
    for key in [
        "status",
        "model",
        "resident",
        "quant_kind",
        "vram_bytes_used",
        "tokenizer_kind",
        "vocab_size",
        "context_length",
        "uptime_seconds",
    ] {
        assert!(h.get(key).is_some(), "missing {key}: {h}");
    }
    assert_eq!(h["status"], "healthy");
    assert_eq!(h["resident"], true);
    assert_eq!(h["vocab_size"], 49152);
    assert_eq!(h["quant_kind"], "Q4_1");
    assert_eq!(h["backend"], "mock");
    // The VRAM report by purpose adds up to the total.
    let vram = &h["vram"];
    let parts: u64 = ["weights_bytes", "kv_cache_bytes", "scratch_bytes"]
        .iter()
        .map(|k| vram[k].as_u64().unwrap_or_else(|| panic!("vram.{k}: {h}")))
        .sum();
    assert_eq!(parts, h["vram_bytes_used"].as_u64().unwrap());
    // The startup residency check ran before the server answered.
    assert!(h["residency"]["checks"].as_u64().unwrap() >= 1, "{h}");
    assert_eq!(h["residency"]["failures"], 0);
    assert!(h["residency"]["last_check_unix_ms"].as_u64().unwrap() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_the_spec_series() {
    let w = mock_worker(2, 2, 1 << 16).await;
    w.execute(&job("m", 4, 1)).await;
    let text = w
        .client
        .get(w.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "worker_vram_bytes",
        "worker_requests_total{outcome=\"success\"}",
        "worker_requests_total{outcome=\"cancelled\"}",
        "worker_requests_total{outcome=\"timeout\"}",
        "worker_requests_total{outcome=\"error\"}",
        "worker_tokens_generated_total",
        "worker_tokens_in_total",
        "worker_inference_duration_ms_bucket",
        "worker_time_to_first_token_ms_bucket",
        "worker_inter_token_latency_ms_bucket",
        "worker_uptime_seconds",
    ] {
        assert!(text.contains(series), "missing {series} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_refuses_new_jobs_and_lets_running_ones_finish() {
    let w = mock_worker(2, 2, 1 << 16).await;
    let body = job("running", 300, 9);
    let resp = w
        .client
        .post(w.url("/execute"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let r = w
        .client
        .post(w.url("/shutdown"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = w
        .client
        .post(w.url("/execute"))
        .json(&job("late", 4, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "SHUTTING_DOWN");
    let events = read_sse(resp).await;
    assert_well_formed(&events);
    assert_eq!(
        terminal(&events).event,
        "end",
        "the running job was lost: {events:?}"
    );
    let TestWorker { worker, .. } = w;
    tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("the worker stops after draining")
        .expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_get_a_json_404() {
    let w = mock_worker(1, 1, 1 << 16).await;
    let r = w.client.get(w.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_step_ends_its_jobs_with_internal_and_the_worker_keeps_serving() {
    let (plugins, facts, _m) = smollm2_plugins();
    let device = TestDevice {
        inner: orcd_device::mock::MockDevice::new(facts.vocab_size, 3).unwrap(),
        steps: 0,
        panic_at: Some(3),
        step_delay: Duration::ZERO,
    };
    let w = start(Box::new(device), plugins, facts, test_options(2, 2)).await;
    let first = w.execute(&job("victim", 50, 1)).await;
    assert_well_formed(&first);
    assert_eq!(terminal(&first).event, "error");
    assert_eq!(terminal(&first).data["code"], "INTERNAL");
    let second = w.execute(&job("next", 5, 1)).await;
    assert_eq!(terminal(&second).event, "end", "{second:?}");
    assert_eq!(w.get_json("/health").await["status"], "healthy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_streams_end_with_done_and_a_dropped_stream_cancels_its_job() {
    let w = slow_mock_worker(1, 2, 1 << 16).await;
    let resp = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(
            &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6,
                      "seed": 3, "stream": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = read_sse(resp).await;
    let last = events.last().unwrap();
    assert_eq!(last.data, Value::String("[DONE]".into()));
    assert_eq!(events[0].data["choices"][0]["delta"]["role"], "assistant");
    let finish = &events[events.len() - 2].data["choices"][0]["finish_reason"];
    assert!(finish == "length" || finish == "stop", "{events:?}");
    for e in &events[..events.len() - 1] {
        assert_eq!(e.data["object"], "chat.completion.chunk");
    }
    // A long streaming completion dropped after its first chunk: the job is cancelled.
    let resp = w
        .client
        .post(w.url("/v1/completions"))
        .json(&json!({"prompt": "Once", "max_tokens": 2000, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut s = eventsource_stream::Eventsource::eventsource(resp.bytes_stream());
    let first = s.next().await.unwrap().unwrap();
    assert!(first.data.contains("text_completion"), "{first:?}");
    drop(s);
    wait_idle(&w).await;
    let ev = w.execute(&job("after-openai", 4, 1)).await;
    assert_eq!(terminal(&ev).event, "end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_template_kwargs_the_template_cannot_take_get_400_naming_the_field() {
    let w = mock_worker(1, 2, 1 << 16).await;
    // SmolLM2's template reads no `enable_thinking`; `messages` is the worker's own.
    for kwargs in [json!({"enable_thinking": true}), json!({"messages": []})] {
        let r = w
            .client
            .post(w.url("/v1/chat/completions"))
            .json(
                &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                          "chat_template_kwargs": kwargs}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        // OpenAI's error shape.
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "INVALID_REQUEST", "{v}");
        assert_eq!(v["error"]["param"], "chat_template_kwargs", "{v}");
    }
}
