//! Hardening of the request path: one job-id rule on every endpoint, errors counted by code in
//! `/metrics`, and the running-sequences gauge back at 0 when the worker is idle.
//!
//! The metrics recorder is per process, so the tests here run one at a time (`SERIAL`) and
//! compare counters before and after.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The value of the series `name` in a Prometheus text page, which must have it.
fn present(text: &str, name: &str) -> f64 {
    series(text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn errors(text: &str, code: &str) -> f64 {
    present(text, &format!("worker_errors_total{{code=\"{code}\"}}"))
}

async fn wait_idle(w: &TestWorker) {
    for _ in 0..400 {
        if w.get_json("/health").await["jobs_in_flight"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("jobs still in flight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_execute_refuse_the_same_bad_job_ids() {
    let _serial = SERIAL.lock().await;
    let w = mock_worker(2, 4, 1 << 16).await;
    let long = "x".repeat(257);
    for bad in [
        "",
        "a\nb",
        "forged\n2026-01-01 INFO x\x1b[2J",
        "a\rb",
        &long,
    ] {
        for path in ["/cancel", "/execute"] {
            let body = json!({"job_id": bad, "prompt": "hi", "max_tokens": 2});
            let body = if path == "/cancel" {
                json!({"job_id": bad})
            } else {
                body
            };
            let r = w.client.post(w.url(path)).json(&body).send().await.unwrap();
            assert_eq!(r.status(), 400, "{path} {bad:?}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], "INVALID_REQUEST", "{path} {bad:?}: {v}");
            assert_eq!(v["field"], "job_id", "{path} {bad:?}: {v}");
            assert!(
                !v["message"].as_str().unwrap().contains('\n'),
                "{path}: {v}"
            );
        }
    }
    let ok = "x".repeat(256);
    let r = w
        .client
        .post(w.url("/cancel"))
        .json(&json!({"job_id": ok}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_counted_by_code_and_the_running_gauge_returns_to_zero() {
    let _serial = SERIAL.lock().await;
    let w = slow_mock_worker(2, 4, 1 << 16).await;
    let before = w.metrics().await;

    // Two refusals before a job exists (INVALID_REQUEST), one unknown route (NOT_FOUND).
    for body in [json!({"prompt": "no id"}), json!({"job_id": "a\u{7}"})] {
        let r = w
            .client
            .post(w.url("/execute"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    let r = w.client.get(w.url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // One job cancelled (CANCELLED), two that finish.
    let cancelled = {
        let w = &w;
        async move {
            let resp = w
                .client
                .post(w.url("/execute"))
                .json(&json!({"job_id": "c1", "prompt": "Hello there", "max_tokens": 2000}))
                .send()
                .await
                .unwrap();
            read_sse(resp).await
        }
    };
    let canceller = async {
        // Cancel once the job is known to the worker (it is in flight).
        loop {
            if w.get_json("/health").await["jobs_in_flight"] != 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let r = w
            .client
            .post(w.url("/cancel"))
            .json(&json!({"job_id": "c1"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    };
    let (events, ()) = tokio::join!(cancelled, canceller);
    assert_eq!(terminal(&events).data["code"], "CANCELLED", "{events:?}");
    for id in ["ok1", "ok2"] {
        let events = w
            .execute(&json!({"job_id": id, "prompt": "Hello there", "max_tokens": 3}))
            .await;
        assert_eq!(terminal(&events).event, "end");
    }
    wait_idle(&w).await;

    let after = w.metrics().await;
    let delta = |code: &str| errors(&after, code) - errors(&before, code);
    assert_eq!(delta("INVALID_REQUEST"), 2.0, "{after}");
    assert_eq!(delta("NOT_FOUND"), 1.0, "{after}");
    assert_eq!(delta("CANCELLED"), 1.0, "{after}");
    assert_eq!(delta("INTERNAL"), 0.0, "{after}");
    // The scheduler publishes the gauges right after the step that retired the last job;
    // before the fix the gauge kept reading 1 for as long as the worker sat idle.
    let mut gauges = (f64::NAN, f64::NAN);
    for _ in 0..200 {
        let text = w.metrics().await;
        gauges = (
            present(&text, "worker_running_sequences"),
            present(&text, "worker_queue_depth"),
        );
        if gauges == (0.0, 0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        gauges,
        (0.0, 0.0),
        "running sequences, queue depth while idle"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_compute_budget_is_refused_before_streaming() {
    let _serial = SERIAL.lock().await;
    let (plugins, mut facts, model) = smollm2_plugins();
    let cost = worker_orcd::server::ComputeCost::of(&model.config);
    // SmolLM2-135M: ~0.27 GFLOP a token; 50 GFLOP fit a short request, not ~2,000 tokens.
    let max_gflop = 50.0;
    assert!(cost.gflop(20) < max_gflop && cost.gflop(2000) > max_gflop);
    let device = orcd_device::mock::MockDevice::with_options(
        facts.vocab_size,
        7,
        orcd_device::mock::MockOptions {
            context_length: 4096,
            kv_tokens: 1 << 16,
            ..Default::default()
        },
    )
    .unwrap();
    facts.context_length = 4096;
    let mut options = test_options(2, 4);
    options.limits.compute = Some(worker_orcd::server::ComputeBudget { cost, max_gflop });
    let w = start(Box::new(device), plugins, facts, options).await;

    let long_prompt = "The robot walked along the quiet road. ".repeat(250);
    let before = w.metrics().await;
    for (path, body) in [
        (
            "/execute",
            json!({"job_id": "big", "prompt": long_prompt, "max_tokens": 4}),
        ),
        (
            "/execute",
            json!({"job_id": "big-out", "prompt": "Hi", "max_tokens": 2000}),
        ),
        (
            "/v1/completions",
            json!({"prompt": long_prompt, "max_tokens": 4}),
        ),
    ] {
        let r = w.client.post(w.url(path)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        let text = r.text().await.unwrap();
        assert!(text.contains("--max-request-gflop"), "{path}: {text}");
        assert!(text.contains("INVALID_REQUEST"), "{path}: {text}");
    }
    let after = w.metrics().await;
    assert_eq!(
        errors(&after, "INVALID_REQUEST") - errors(&before, "INVALID_REQUEST"),
        3.0
    );
    // Nothing was admitted, and a request within the budget runs.
    assert_eq!(w.get_json("/health").await["jobs_in_flight"], 0);
    let events = w
        .execute(&json!({"job_id": "small", "prompt": "Hi there", "max_tokens": 4}))
        .await;
    assert_eq!(terminal(&events).event, "end", "{events:?}");
}

/// A mock worker (SmolLM2's plugins) whose model carries `template`.
async fn worker_with_template(template: &str) -> TestWorker {
    let (plugins, mut facts, _model) = smollm2_plugins();
    let device = mock_device(facts.vocab_size, 1 << 14);
    facts.context_length = MOCK_CONTEXT;
    facts.chat_template = Some(template.to_string());
    start(Box::new(device), plugins, facts, test_options(2, 4)).await
}

async fn chat(w: &TestWorker, content: &str) -> (u16, Value) {
    let resp = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": content}], "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

async fn completion_status(w: &TestWorker) -> u16 {
    w.client
        .post(w.url("/v1/completions"))
        .json(&json!({"prompt": "Once", "max_tokens": 2}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A hostile model-file template (the chat_template fuzzing finding: a lazily repeated empty
/// sequence iterates for minutes without fuel or output) is refused at load; chat requests get
/// `CHAT_TEMPLATE_FAILED` at once, the rest of the API serves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_stalls_at_load_refuses_chat_and_the_worker_serves_on() {
    let _g = SERIAL.lock().await;
    let w = worker_with_template("{{ () * 33331333334 }}").await;
    let (status, body) = chat(&w, "Hi").await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "CHAT_TEMPLATE_FAILED", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not finish rendering"),
        "{body}"
    );
    assert_eq!(completion_status(&w).await, 200);
    assert_eq!(w.get_json("/health").await["status"], "healthy");
}

/// A template that stalls only on some conversations: the request that stalls it ends with
/// `CHAT_TEMPLATE_FAILED` at the render deadline while `/health` stays fast, and the template is
/// refused from then on (no second runaway render is started).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_that_stalls_on_a_request_is_bounded_and_refused_from_then_on() {
    let _g = SERIAL.lock().await;
    let w = worker_with_template(
        "{% for m in messages %}{% if m.content == 'stall' %}{{ () * 33331333334 }}{% endif %}\
         {{ m.content }}{% endfor %}",
    )
    .await;
    assert_eq!(chat(&w, "Hi").await.0, 200);
    let stalled = tokio::spawn({
        let client = w.client.clone();
        let url = w.url("/v1/chat/completions");
        async move {
            let resp = client
                .post(url)
                .json(&json!({"messages": [{"role": "user", "content": "stall"}], "max_tokens": 2}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    });
    // While the render runs (until its deadline), the server answers: /health comes back
    // before the stalled request does.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!stalled.is_finished(), "the stalled render ended early");
    let health = w.get_json("/health").await;
    assert_eq!(health["status"], "healthy");
    assert!(
        !stalled.is_finished(),
        "/health waited for the stalled render"
    );
    let (status, body) = stalled.await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["error"]["code"], "CHAT_TEMPLATE_FAILED", "{body}");
    let (status, body) = chat(&w, "Hi").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &json!("CHAT_TEMPLATE_FAILED"))
    );
    assert_eq!(completion_status(&w).await, 200);
}
