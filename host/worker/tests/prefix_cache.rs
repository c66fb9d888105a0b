//! Prefix caching (issue 15) on a real model: SmolLM2 on the CPU backend behind the HTTP API,
//! one worker with the cache and one without.
//!
//! - Greedy requests sharing a ~400-token start give the same text and the same
//!   log-probabilities (`/v1/completions` `logprobs: 5`: the model's log-softmax, so the logits
//!   rows, compared exactly) with and without the cache: after a shared prefix, for a prompt
//!   cached whole (its last token is recomputed to get the first token's logits), and for a
//!   prompt that continues a generation (KV computed one decode token at a time).
//! - A request cancelled part-way through its prefill leaves its computed positions behind for
//!   the next request with that prompt, which then gives the uncached output.
//! - Under a KV budget of a few requests, kept slots are evicted (least recently used) and every
//!   request is served, one needing the whole budget included.
//! - `/metrics` counts lookups, hits, hit tokens (exactly, from `/tokenize`) and evictions.
//!
//! One test function: the metrics recorder is process-wide, and the counters are compared
//! exactly, so nothing else in this binary may run requests at the same time.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn cpu_worker_with(prefix_cache: bool, kv_tokens: usize) -> TestWorker {
    let (plugins, facts, model) = smollm2_plugins();
    let device = orcd_cpu::CpuBackend::new(
        model,
        orcd_cpu::CpuOptions {
            threads: 2,
            kv_tokens_budget: kv_tokens,
            ..Default::default()
        },
    )
    .expect("CPU backend");
    let mut options = test_options(4, 8);
    options.scheduler.prefix_cache = prefix_cache;
    start(Box::new(device), plugins, facts, options).await
}

async fn post(w: &TestWorker, path: &str, body: &Value) -> (u16, Value) {
    let r = w.client.post(w.url(path)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn tokens(w: &TestWorker, text: &str) -> Vec<u64> {
    let (s, v) = post(w, "/tokenize", &json!({ "content": text })).await;
    assert_eq!(s, 200, "{v}");
    v["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect()
}

/// A greedy completion with the top-5 log-probabilities of each step: (text, logprobs).
async fn complete(w: &TestWorker, prompt: &str) -> (Value, Value) {
    let (s, v) = post(
        w,
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 8, "temperature": 0, "logprobs": 5}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let choice = &v["choices"][0];
    assert!(
        !choice["logprobs"]["token_logprobs"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    (choice["text"].clone(), choice["logprobs"].clone())
}

/// Poll `/metrics` until `ok` holds for it (gauges are published after the scheduler's turn,
/// which may come after the response); the last text either way.
async fn metrics_when(w: &TestWorker, ok: impl Fn(&str) -> bool) -> String {
    for _ in 0..200 {
        let m = w.metrics().await;
        if ok(&m) {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.metrics().await
}

fn common_prefix(a: &[u64], b: &[u64]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// ~400 tokens every prompt of the first part starts with.
fn system_text() -> String {
    let rules: String = (1..=30)
        .map(|i| {
            format!(
                "Rule {i}: the shelf of section {i} is dusted on day {}. ",
                i % 7
            )
        })
        .collect();
    format!("You are the assistant of a small library. {rules}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_caching_changes_no_output_counts_its_hits_and_evicts_under_pressure() {
    let off = cpu_worker_with(false, 4096).await;
    let on = cpu_worker_with(true, 4096).await;
    let system = system_text();
    let p1 = format!("{system}Question: which shelf holds the atlases?\nAnswer:");
    let p2 = format!("{system}Question: when is section 4 dusted?\nAnswer:");
    let (t1, t2) = (tokens(&on, &p1).await, tokens(&on, &p2).await);
    assert!(t1.len() > 300, "{} tokens", t1.len());

    // Part 1: identical output and logits with and without the cache.
    let want1 = complete(&off, &p1).await;
    let want2 = complete(&off, &p2).await;
    let before = on.metrics().await;
    let delta = |m: &str, s: &str| series(m, s).unwrap_or(0.0) - series(&before, s).unwrap_or(0.0);
    // p1 misses; p2 copies the shared start from p1's slot; p1 again copies all of its prompt
    // but the last token.
    for (i, (p, want)) in [(&p1, &want1), (&p2, &want2), (&p1, &want1)]
        .into_iter()
        .enumerate()
    {
        let got = complete(&on, p).await;
        assert_eq!(got.0, want.0, "request {i}: text differs with the cache");
        assert_eq!(
            got.1, want.1,
            "request {i}: log-probabilities differ with the cache"
        );
    }
    let m = on.metrics().await;
    assert_eq!(delta(&m, "worker_prefix_cache_lookups_total"), 3.0, "{m}");
    assert_eq!(delta(&m, "worker_prefix_cache_hits_total"), 2.0, "{m}");
    let shared = common_prefix(&t1, &t2).min(t2.len() - 1);
    assert!(shared >= 300, "{shared}");
    assert_eq!(
        delta(&m, "worker_prefix_cache_hit_tokens_total"),
        (shared + t1.len() - 1) as f64,
        "shared {shared}, p1 {} tokens, p2 {}",
        t1.len(),
        t2.len()
    );
    assert_eq!(delta(&m, "worker_prefix_cache_evictions_total"), 0.0);
    // A prompt that continues a generation: KV written by decode steps is reused too.
    let p4 = format!(
        "{p1}{}\nQuestion: and the maps?\nAnswer:",
        want1.0.as_str().unwrap()
    );
    let want4 = complete(&off, &p4).await;
    let got4 = complete(&on, &p4).await;
    assert_eq!(
        got4, want4,
        "a continued conversation differs with the cache"
    );
    let m = metrics_when(&on, |m| {
        series(m, "worker_prefix_cache_slots").unwrap_or(0.0) >= 2.0
    })
    .await;
    assert_eq!(delta(&m, "worker_prefix_cache_hits_total"), 3.0, "{m}");
    // (At least the shared start; how much of the answer is reused depends on how the
    // answer's text tokenizes again.)
    assert!(
        delta(&m, "worker_prefix_cache_hit_tokens_total") >= (2 * shared + t1.len() - 1) as f64,
        "{m}"
    );
    // Kept slots are reported, and they hold the positions they cached.
    assert!(
        series(&m, "worker_prefix_cache_slots").unwrap_or(0.0) >= 2.0,
        "{m}"
    );
    assert!(
        series(&m, "worker_prefix_cache_tokens").unwrap_or(0.0) >= (t1.len() + t2.len()) as f64,
        "{m}"
    );
    assert!(
        series(&m, "worker_prefix_cache_reserved_tokens").unwrap_or(0.0)
            >= series(&m, "worker_prefix_cache_tokens").unwrap_or(0.0),
        "{m}"
    );

    // Part 2: a prompt cancelled part-way through its prefill leaves its computed positions.
    let long = format!(
        "{}Question: list the rules for days 1 and 2.\nAnswer:",
        system_text().repeat(2)
    );
    let want_long = complete(&off, &long).await;
    let steps_before = series(&on.metrics().await, "worker_step_tokens_count").unwrap_or(0.0);
    let stream = on
        .client
        .post(on.url("/execute"))
        .json(&json!({"job_id": "long", "prompt": long, "max_tokens": 8, "temperature": 0.0}))
        .send();
    let reader = tokio::spawn(async move { read_sse(stream.await.unwrap()).await });
    // A few 32-token steps into the prefill (of ~800 tokens, 25 steps), cancel it.
    let m = metrics_when(&on, |m| {
        series(m, "worker_step_tokens_count").unwrap_or(0.0) >= steps_before + 3.0
    })
    .await;
    assert!(series(&m, "worker_step_tokens_count").unwrap_or(0.0) >= steps_before + 3.0);
    let r = on
        .client
        .post(on.url("/cancel"))
        .json(&json!({"job_id": "long"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let events = reader.await.unwrap();
    assert_eq!(terminal(&events).data["code"], "CANCELLED", "{events:?}");
    let hits_before = series(&on.metrics().await, "worker_prefix_cache_hits_total").unwrap_or(0.0);
    let got_long = complete(&on, &long).await;
    assert_eq!(got_long, want_long, "after a cancelled prefill");
    let m = on.metrics().await;
    assert_eq!(
        series(&m, "worker_prefix_cache_hits_total").unwrap_or(0.0),
        hits_before + 1.0,
        "{m}"
    );
    drop(off);
    drop(on);

    // Part 3: a KV budget of 200 positions, ~50 a request: kept slots are evicted, least
    // recently used first, and every request is served.
    let small = cpu_worker_with(true, 200).await;
    let before = small.metrics().await;
    let note = |i: usize| {
        format!(
            "Note {i}: the reading room on floor {i} closes at {} in the evening, and the \
             archive next to it keeps the old city maps of district {i}. Summary:",
            i + 5
        )
    };
    for i in 0..8 {
        let (s, v) = post(
            &small,
            "/v1/completions",
            &json!({"prompt": note(i), "max_tokens": 4, "temperature": 0}),
        )
        .await;
        assert_eq!(s, 200, "request {i}: {v}");
    }
    let m = small.metrics().await;
    let evicted = series(&m, "worker_prefix_cache_evictions_total").unwrap_or(0.0)
        - series(&before, "worker_prefix_cache_evictions_total").unwrap_or(0.0);
    assert!(evicted >= 2.0, "{m}");
    // A request that needs (almost) the whole budget: every kept slot is evicted for it.
    let n_note = tokens(&small, &note(9)).await.len();
    let (s, v) = post(
        &small,
        "/v1/completions",
        &json!({"prompt": note(9), "max_tokens": 196 - n_note, "temperature": 0,
                "stop": ["\n"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let m = small.metrics().await;
    assert!(
        series(&m, "worker_prefix_cache_evictions_total").unwrap_or(0.0)
            > series(&before, "worker_prefix_cache_evictions_total").unwrap_or(0.0) + evicted,
        "{m}"
    );
    // Concurrent requests under the small budget: all served.
    let small = std::sync::Arc::new(small);
    let tasks: Vec<_> = (10..14)
        .map(|i| {
            let w = small.clone();
            let prompt = note(i);
            tokio::spawn(async move {
                post(
                    &w,
                    "/v1/completions",
                    &json!({"prompt": prompt, "max_tokens": 4, "temperature": 0}),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        let (s, v) = t.await.unwrap();
        assert_eq!(s, 200, "{v}");
    }
}
