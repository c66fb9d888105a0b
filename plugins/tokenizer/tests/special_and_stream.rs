//! Special tokens, BOS and detokenization on the real models' vocabularies: the prompts of
//! llama.cpp's greedy reference files (tokenized with special tokens parsed and the model's
//! BOS rule), chat markers, and streaming text that never splits a character.

mod common;

use common::{model_path, reference_dir, tokenizer};
use orcd_tokenizer::{StreamDecoder, Tokenizer};

/// The prompts of a greedy reference file with llama.cpp's `prompt_tokens` and the text of its
/// `greedy_tokens`.
fn greedy_cases(file: &str) -> Vec<(String, Vec<u32>, Vec<u32>, String)> {
    let text = std::fs::read_to_string(reference_dir().join(file)).expect("read greedy file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid json");
    let ids = |a: &serde_json::Value| -> Vec<u32> {
        a.as_array()
            .expect("ids")
            .iter()
            .map(|i| i.as_u64().expect("id") as u32)
            .collect()
    };
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                c["prompt"].as_str().expect("prompt").to_string(),
                ids(&c["prompt_tokens"]),
                ids(&c["greedy_tokens"]),
                c["greedy_text"].as_str().expect("text").to_string(),
            )
        })
        .collect()
}

fn check_greedy_file(t: &Tokenizer, file: &str) {
    for (prompt, prompt_tokens, greedy_tokens, greedy_text) in greedy_cases(file) {
        assert_eq!(
            t.encode(&prompt, true, true).unwrap(),
            prompt_tokens,
            "{file}: {prompt:?}"
        );
        let text = t.decode(&greedy_tokens, true).unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            greedy_text,
            "{file}: {prompt:?}"
        );
    }
}

#[test]
fn smollm2_prompts_with_special_tokens_match_llama_cpp() {
    let t = tokenizer(&model_path("smollm2"));
    check_greedy_file(&t, "smollm2-135m-instruct-q4_1.greedy.json");
}

#[test]
fn gemma3_prompts_with_bos_match_llama_cpp() {
    let t = tokenizer(&model_path("gemma3"));
    check_greedy_file(&t, "gemma3-270m-q4_k_m.greedy.json");
}

#[test]
fn smollm2_chat_markers_only_with_parse_special() {
    let t = tokenizer(&model_path("smollm2"));
    let start = t.token_id("<|im_start|>").unwrap();
    let end = t.token_id("<|im_end|>").unwrap();
    let text = "<|im_start|>user\nHi<|im_end|>";
    let ids = t.encode(text, true, false).unwrap();
    assert_eq!(ids.first(), Some(&start));
    assert_eq!(ids.last(), Some(&end));
    let plain = t.encode(text, false, false).unwrap();
    assert!(!plain.contains(&start) && !plain.contains(&end));
    // Rendered back: with special tokens the text returns, without them the markers vanish.
    assert_eq!(t.decode(&ids, false).unwrap(), text.as_bytes());
    assert_eq!(t.decode(&ids, true).unwrap(), b"user\nHi");
    assert_eq!(t.decode(&plain, true).unwrap(), text.as_bytes());
    assert_eq!(t.eot(), Some(end));
}

#[test]
fn gemma3_turn_markers_only_with_parse_special() {
    let t = tokenizer(&model_path("gemma3"));
    assert_eq!(
        (t.token_id("<start_of_turn>"), t.token_id("<end_of_turn>")),
        (Some(105), Some(106))
    );
    let ids = t
        .encode("<start_of_turn>user\nHi<end_of_turn>", true, true)
        .unwrap();
    assert_eq!(ids[..2], [2, 105]);
    assert_eq!(ids.last(), Some(&106));
    let plain = t.encode("<start_of_turn>user", false, false).unwrap();
    assert!(!plain.contains(&105) && plain.len() > 2);
}

/// Streams `text`'s tokens one by one; returns the chunks.
fn stream(t: &Tokenizer, text: &str) -> Vec<String> {
    let mut d = StreamDecoder::new();
    let mut chunks: Vec<String> = t
        .encode(text, false, false)
        .unwrap()
        .into_iter()
        .map(|id| d.push(t, id).unwrap())
        .collect();
    chunks.push(d.finish());
    chunks
}

#[test]
fn streamed_text_never_splits_a_character() {
    let text = "🦙 我想在apple工作1314151天～ 😶‍🌫️ Cửa Việt កាន់តែ";
    for which in ["smollm2", "gemma3"] {
        let t = tokenizer(&model_path(which));
        let chunks = stream(&t, text);
        assert!(
            chunks.iter().all(|c| !c.contains('\u{FFFD}')),
            "{which}: {chunks:?}"
        );
        assert_eq!(chunks.concat(), text, "{which}");
        // Some character really was spread over several tokens (so holding back was needed).
        let ids = t.encode(text, false, false).unwrap();
        let split = ids
            .iter()
            .any(|&id| std::str::from_utf8(&t.token_to_piece(id, false).unwrap()).is_err());
        assert!(
            split,
            "{which}: no token ends inside a character; the test proves nothing"
        );
    }
}

#[test]
fn phi3_special_tokens_swallow_following_whitespace() {
    // llama.cpp gives Phi-3's special tokens `rstrip` (keyed on `general.name`), except
    // `<unk>`, `<s>` and `<|endoftext|>`.
    let t = tokenizer(&common::suite_vocab("phi-3"));
    let user = t.token_id("<|user|>").unwrap();
    let hi = t.token_id("▁Hi").unwrap();
    assert_eq!(t.encode("<|user|>\n  Hi", true, false).unwrap(), [user, hi]);
    let eot = t.token_id("<|endoftext|>").unwrap();
    let with_space = t.encode("<|endoftext|> Hi", true, false).unwrap();
    assert_eq!(with_space[0], eot);
    assert_ne!(
        with_space[1..],
        [hi],
        "no rstrip: the space stays before Hi"
    );
}
