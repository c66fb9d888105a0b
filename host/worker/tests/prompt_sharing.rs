//! `n` > 1 choices share their prompt (issue 16): the first choice prefills it, the others copy
//! its KV (`Device::copy_kv_prefix`) and compute only the prompt's last token. SmolLM2 on the
//! CPU backend, one worker sharing and one not (`--no-prefix-cache` turns sharing off too):
//! every choice's tokens are the same either way (each choice has its own seed, the request's
//! plus its index), and `/metrics` shows the prompt computed once.
//!
//! One test function: the metrics recorder is process-wide, and the counters are compared
//! exactly, so nothing else in this binary may run requests at the same time.

mod common;

use common::*;
use serde_json::{Value, json};

async fn cpu_worker_sharing(share: bool) -> TestWorker {
    let (plugins, facts, model) = smollm2_plugins();
    let device = orcd_cpu::CpuBackend::new(
        model,
        orcd_cpu::CpuOptions {
            threads: 2,
            kv_tokens_budget: 4096,
            ..Default::default()
        },
    )
    .expect("CPU backend");
    let mut options = test_options(4, 8);
    options.scheduler.prefix_cache = share;
    start(Box::new(device), plugins, facts, options).await
}

async fn post(w: &TestWorker, path: &str, body: &Value) -> (u16, Value) {
    let r = w.client.post(w.url(path)).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

const COUNTERS: [&str; 4] = [
    "worker_tokens_in_total",
    "worker_prompt_tokens_computed_total",
    "worker_prompt_shared_tokens_total",
    "worker_prefix_cache_hit_tokens_total",
];

/// The counters of [`COUNTERS`] now (0 for one not published).
async fn counters(w: &TestWorker) -> [f64; 4] {
    let m = w.metrics().await;
    COUNTERS.map(|name| series(&m, name).unwrap_or(0.0))
}

/// Three sampled choices of one request: their texts, and how the counters moved.
async fn three_choices(w: &TestWorker, prompt: &str, stream: bool) -> (Vec<String>, [f64; 4]) {
    let before = counters(w).await;
    let body = json!({"prompt": prompt, "n": 3, "max_tokens": 12, "temperature": 0.9,
        "seed": 11, "stream": stream});
    let mut texts = vec![String::new(); 3];
    if stream {
        let r = w
            .client
            .post(w.url("/v1/completions"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        for ev in read_sse(r).await {
            if ev.data == "[DONE]" {
                continue;
            }
            for c in ev.data["choices"].as_array().unwrap() {
                let i = c["index"].as_u64().unwrap() as usize;
                texts[i].push_str(c["text"].as_str().unwrap());
            }
        }
    } else {
        let (s, v) = post(w, "/v1/completions", &body).await;
        assert_eq!(s, 200, "{v}");
        for c in v["choices"].as_array().unwrap() {
            let i = c["index"].as_u64().unwrap() as usize;
            texts[i] = c["text"].as_str().unwrap().to_string();
        }
    }
    let after = counters(w).await;
    let mut moved = [0.0; 4];
    for k in 0..4 {
        moved[k] = after[k] - before[k];
    }
    (texts, moved)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_choices_share_the_prompt_and_give_the_tokens_of_prefilling_it_each() {
    let prompt = "A short story about a lighthouse keeper who finds a message in a bottle. \
                  It begins on a stormy night, when";
    let shared = cpu_worker_sharing(true).await;
    let (s, t) = post(&shared, "/tokenize", &json!({ "content": prompt })).await;
    assert_eq!(s, 200, "{t}");
    let len = t["tokens"].as_array().unwrap().len() as f64;
    assert!(len > 20.0, "{len}");

    let (with, moved) = three_choices(&shared, prompt, false).await;
    let [served, computed, copied, cached] = moved;
    assert_eq!(served, 3.0 * len, "every choice is served the prompt");
    // The first choice computes the prompt; each other copies all but its last token (from the
    // first choice, or from its kept slot should the first choice already have ended).
    assert_eq!(computed, len + 2.0, "{moved:?}");
    assert_eq!(copied + cached, 2.0 * (len - 1.0), "{moved:?}");
    assert!(
        copied > 0.0,
        "copied from the running first choice: {moved:?}"
    );
    assert!(
        with[0] != with[1] || with[1] != with[2],
        "three seeds, three samples: {with:?}"
    );

    let alone = cpu_worker_sharing(false).await;
    let (without, moved) = three_choices(&alone, prompt, false).await;
    assert_eq!(without, with, "sharing changes no token");
    let [served, computed, copied, cached] = moved;
    assert_eq!((served, computed), (3.0 * len, 3.0 * len), "{moved:?}");
    assert_eq!((copied, cached), (0.0, 0.0));

    // Streamed, the choices interleave; each is still the same text.
    let (streamed, _) = three_choices(&alone, prompt, true).await;
    assert_eq!(streamed, with);
    // Shared again on the first worker: its kept slots now hold the prompt too, so some copies
    // may come from the cache; the texts do not move.
    let (again, moved) = three_choices(&shared, prompt, true).await;
    assert_eq!(again, with);
    assert!(moved[1] <= len + 2.0, "{moved:?}");

    // Separate requests arriving together under one system prompt: the first computes it, the
    // others wait for it and copy its whole 16-token blocks (at least four), then compute their
    // own parts; greedy, so the texts are those of prefilling every prompt whole.
    let system = "You are a careful assistant for a harbour office. You answer questions about \
                  tides, ships, moorings and the weather in short, plain sentences, and you say \
                  when you do not know. The harbour has three piers: the north pier for ferries, \
                  the east pier for fishing boats and the long south pier for cargo ships, which \
                  wait in the outer basin until the pilot boat brings them in at high water. ";
    let prompts: Vec<String> = (0..3)
        .map(|i| format!("{system}Question {i}: which ships leave on day {i}? Answer:"))
        .collect();
    let (s, t) = post(&shared, "/tokenize", &json!({ "content": system })).await;
    assert_eq!(s, 200, "{t}");
    assert!(t["tokens"].as_array().unwrap().len() >= 64, "{t}");
    let together = |w: TestWorker| {
        let prompts = prompts.clone();
        async move {
            let before = counters(&w).await;
            let answers = futures_util::future::join_all(prompts.iter().map(|p| {
                let body = json!({"prompt": p, "max_tokens": 8, "temperature": 0.0});
                let w = &w;
                async move { post(w, "/v1/completions", &body).await }
            }))
            .await;
            let texts: Vec<String> = answers
                .into_iter()
                .map(|(s, v)| {
                    assert_eq!(s, 200, "{v}");
                    v["choices"][0]["text"].as_str().unwrap().to_string()
                })
                .collect();
            let after = counters(&w).await;
            let moved: [f64; 4] = std::array::from_fn(|k| after[k] - before[k]);
            (texts, moved)
        }
    };
    let (with, moved) = together(cpu_worker_sharing(true).await).await;
    let [served, computed, copied, cached] = moved;
    assert!(copied + cached >= 2.0 * 64.0, "{moved:?}");
    assert_eq!(computed + copied + cached, served, "{moved:?}");
    let (without, moved) = together(cpu_worker_sharing(false).await).await;
    assert_eq!(without, with, "sharing changes no token");
    assert_eq!(moved[1], moved[0], "every prompt computed whole: {moved:?}");
}
