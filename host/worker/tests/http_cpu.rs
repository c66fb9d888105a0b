//! The spec's acceptance scenarios on a real model: SmolLM2-135M-Instruct (Q4_1) on the CPU
//! backend behind the HTTP API. Generations are short: the CPU here decodes a few dozen tokens a
//! second.

mod common;

use std::sync::Arc;

use chrono::Timelike;
use common::*;
use serde_json::{Value, json};

/// English words for 0..=59, as a speaker would say a minute ("twenty-nine", "oh five").
fn minute_words(m: u32) -> String {
    const ONES: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 6] = ["", "", "twenty", "thirty", "forty", "fifty"];
    match m {
        0..=19 => ONES[m as usize].to_string(),
        _ if m.is_multiple_of(10) => TENS[(m / 10) as usize].to_string(),
        _ => format!("{}-{}", TENS[(m / 10) as usize], ONES[(m % 10) as usize]),
    }
}

#[test]
fn minutes_are_spoken_words() {
    assert_eq!(minute_words(29), "twenty-nine");
    assert_eq!(minute_words(7), "seven");
    assert_eq!(minute_words(40), "forty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haiku_with_the_spoken_minute_is_reproducible_with_seed_42() {
    let w = cpu_worker(4, 4, 4096).await;
    let minute = minute_words(chrono::Local::now().minute());
    // An instruct model: the orchestrator sends its chat format (special-token text is parsed
    // into the special tokens).
    let prompt = format!(
        "<|im_start|>user\nWrite a haiku about GPU computing that mentions the word \"{minute}\".<|im_end|>\n<|im_start|>assistant\n"
    );
    let body = |id: &str| json!({"job_id": id, "prompt": prompt, "max_tokens": 50, "temperature": 0.7, "seed": 42});
    let first = w.execute(&body("haiku-1")).await;
    let second = w.execute(&body("haiku-2")).await;
    for ev in [&first, &second] {
        assert_well_formed(ev);
        assert_eq!(terminal(ev).event, "end", "{ev:?}");
        assert_eq!(terminal(ev).data["seed"], 42);
        assert!(ev.iter().any(|e| e.event == "token"), "{ev:?}");
    }
    assert_eq!(text_of(&first), text_of(&second));
    assert_eq!(
        terminal(&first).data["tokens_out"],
        terminal(&second).data["tokens_out"]
    );
    eprintln!("haiku ({minute}): {}", text_of(&first));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utf8_streams_without_replacement_characters() {
    let w = cpu_worker(4, 4, 4096).await;
    for (i, prompt) in [
        "请用中文回答：你好吗？🙂",
        "Répète exactement: 日本語テキスト 🚀🔥 Ελληνικά русский",
        "Emoji only please: 😀😃😄😁",
    ]
    .iter()
    .enumerate()
    {
        let ev = w
            .execute(
                &json!({"job_id": format!("utf8-{i}"), "prompt": prompt, "max_tokens": 24,
                             "temperature": 0.9, "seed": 7}),
            )
            .await;
        assert_well_formed(&ev);
        assert_eq!(terminal(&ev).event, "end");
        for e in ev.iter().filter(|e| e.event == "token") {
            let t = e.data["t"].as_str().unwrap();
            assert!(!t.is_empty());
            assert!(!t.contains('\u{FFFD}'), "U+FFFD in {t:?} for {prompt}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_with_seed_42_repeats_exactly() {
    let w = cpu_worker(4, 4, 4096).await;
    let body = |id: &str| {
        json!({"job_id": id, "prompt": "The capital of France is", "max_tokens": 12,
               "temperature": 0.0, "seed": 42})
    };
    let a = w.execute(&body("g1")).await;
    let b = w.execute(&body("g2")).await;
    assert_eq!(terminal(&a).event, "end");
    assert!(!text_of(&a).is_empty());
    assert_eq!(text_of(&a), text_of(&b));
    assert!(text_of(&a).contains("Paris"), "{}", text_of(&a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_gives_the_same_tokens_alone_and_inside_a_batch() {
    let w = Arc::new(cpu_worker(8, 8, 8192).await);
    let probe = |id: &str| {
        json!({"job_id": id, "prompt": "Once upon a time, in a small village,", "max_tokens": 16,
               "temperature": 0.8, "top_p": 0.95, "seed": 1234})
    };
    let alone = w.execute(&probe("alone")).await;
    assert_eq!(terminal(&alone).event, "end");
    let mut others = Vec::new();
    for (i, p) in [
        "Explain gravity.",
        "List three fruits:",
        "def fibonacci(n):",
    ]
    .iter()
    .enumerate()
    {
        let w = w.clone();
        let body: Value = json!({"job_id": format!("other-{i}"), "prompt": p,
                                 "max_tokens": 20, "temperature": 1.0, "seed": i});
        others.push(tokio::spawn(async move { w.execute(&body).await }));
    }
    let batched = w.execute(&probe("batched")).await;
    for o in others {
        assert_eq!(terminal(&o.await.unwrap()).event, "end");
    }
    assert_eq!(text_of(&alone), text_of(&batched));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_recovery_on_the_cpu_backend() {
    // 256 KV positions in all: 2000 new tokens cannot be held, 8 can.
    let w = cpu_worker(4, 4, 256).await;
    let big = w
        .execute(&json!({"job_id": "big", "prompt": "Hello", "max_tokens": 2000}))
        .await;
    assert_well_formed(&big);
    assert_eq!(terminal(&big).data["code"], "VRAM_OOM", "{big:?}");
    assert_eq!(terminal(&big).data["retriable"], true);
    let small = w
        .execute(&json!({"job_id": "small", "prompt": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                         "max_tokens": 8, "temperature": 0.0}))
        .await;
    assert_eq!(terminal(&small).event, "end", "{small:?}");
    assert_eq!(w.get_json("/health").await["status"], "healthy");
}

/// Fair admission (issue 15): a short request sent while a long prompt is being prefilled gets
/// its first token before the long prompt gets its own: the step after it arrives carries its
/// whole prompt (the newcomer's first chunk goes before the long prompt's next chunk). Asserts
/// the order of the two first tokens, not a time. The long prompt (~1,800 tokens, ~60 steps of
/// the test workers' 32-token budget) is cancelled once the short request is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_request_starts_while_a_long_prompt_is_prefilled() {
    use eventsource_stream::Eventsource;
    use futures_util::StreamExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let w = Arc::new(cpu_worker(4, 4, 8192).await);
    // Each stream takes a rank from `order` when its first token arrives.
    let order = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let stream = |id: &str, prompt: String, max_tokens: u32| {
        let req = client.post(w.url("/execute")).json(&json!({
            "job_id": id, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0
        }));
        let order = order.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let mut events = resp.bytes_stream().eventsource();
            let (mut started, mut first_token_rank, mut last) = (Some(started_tx), None, None);
            while let Some(ev) = events.next().await {
                let ev = ev.expect("well-formed SSE");
                if ev.event == "started"
                    && let Some(tx) = started.take()
                {
                    let _ = tx.send(());
                }
                if ev.event == "token" && first_token_rank.is_none() {
                    first_token_rank = Some(order.fetch_add(1, Ordering::SeqCst));
                }
                last = Some(ev.event);
            }
            (first_token_rank, last)
        });
        (started_rx, task)
    };
    let long_prompt =
        "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(125);
    let (long_started, long) = stream("long", long_prompt, 4);
    long_started.await.expect("the long job started");
    // A few steps into the long prefill (each takes a tenth of a second or more here).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let (_, short) = stream("short", "Hi".into(), 8);
    let (short_rank, short_end) = short.await.unwrap();
    assert_eq!(short_end.as_deref(), Some("end"));
    let cancel = client
        .post(w.url("/cancel"))
        .json(&json!({"job_id": "long"}))
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), 202);
    let (long_rank, _) = long.await.unwrap();
    assert_eq!(
        short_rank,
        Some(0),
        "the short request's first token came after the long prompt's (long's rank {long_rank:?})"
    );
}
