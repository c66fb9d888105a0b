//! Gemma 3 270M (Q4_K_M, SentencePiece vocabulary with byte-fallback tokens) on the CPU backend
//! behind the HTTP API: characters split over byte tokens stream whole, and the chat endpoint
//! uses the built-in Gemma turn format (the file has no `tokenizer.chat_template`).

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemma_streams_whole_characters_and_chats_in_its_turn_format() {
    let (plugins, facts, model) = plugins_for(&gemma3_path());
    assert!(
        facts
            .chat_template
            .as_deref()
            .unwrap()
            .contains("<start_of_turn>")
    );
    let device = orcd_cpu::CpuBackend::new(
        model,
        orcd_cpu::CpuOptions {
            threads: 2,
            kv_tokens_budget: 2048,
            ..Default::default()
        },
    )
    .unwrap();
    let w = start(Box::new(device), plugins, facts, test_options(2, 2)).await;
    let h = w.get_json("/health").await;
    assert_eq!(h["tokenizer_kind"], "spm");
    assert_eq!(h["quant_kind"], "Q4_K_M");

    let prompt = "<start_of_turn>user\nRépondez avec des emoji 🎉🚀 et du chinois 你好<end_of_turn>\n<start_of_turn>model\n";
    let ev = w
        .execute(
            &json!({"job_id": "g-utf8", "prompt": prompt, "max_tokens": 12,
                         "temperature": 1.0, "seed": 5}),
        )
        .await;
    assert_well_formed(&ev);
    assert_eq!(terminal(&ev).event, "end", "{ev:?}");
    for e in ev.iter().filter(|e| e.event == "token") {
        assert!(!e.data["t"].as_str().unwrap().contains('\u{FFFD}'), "{e:?}");
    }

    let r = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(
            &json!({"messages": [{"role": "system", "content": "Answer in one word."},
                                   {"role": "user", "content": "What color is the sky?"}],
                      "max_tokens": 6, "temperature": 0.0}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!content.trim().is_empty(), "{v}");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 10, "{v}");
    // Roles that do not alternate are refused by the template: 400 naming `messages`.
    let r = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(&json!({"messages": [{"role": "user", "content": "a"},
                                   {"role": "user", "content": "b"}], "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "messages", "{v}");
}
