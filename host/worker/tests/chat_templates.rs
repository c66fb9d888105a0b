//! The chat templates of the model families teams run first, as published with the models
//! (`tests/fixtures/chat_templates/*.jinja`: llama.cpp's copies in `models/templates/` of the
//! llama-cpp-python 0.3.36 sdist, fetched from Hugging Face by its `get_chat_template.py`),
//! rendered by the worker's minijinja setup. The expected prompts are what Hugging Face's
//! `apply_chat_template` (Jinja2, `trim_blocks` and `lstrip_blocks`) renders for the same
//! conversation.

use serde_json::{Map, Value, json};
use worker_orcd::server::chat_template::{ChatMessage, ChatTemplate, TemplateError};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/chat_templates/{name}.jinja",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.into(),
        content: content.into(),
        tool_calls: None,
        tool_call_id: None,
    }
}

/// A system prompt and one question.
fn system_and_user() -> Vec<ChatMessage> {
    vec![
        msg("system", "You are a helpful assistant."),
        msg("user", "Hello!"),
    ]
}

/// Two user turns around an assistant answer.
fn multi_turn() -> Vec<ChatMessage> {
    vec![
        msg("user", "Hi"),
        msg("assistant", "Hello! How can I help?"),
        msg("user", "Tell me a joke."),
    ]
}

fn kwargs(v: Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

fn render(t: &ChatTemplate, conv: &[ChatMessage], kw: &Map<String, Value>) -> String {
    t.render(conv, true, kw).expect("renders")
}

#[test]
fn llama_3_1_header_tokens() {
    let t = ChatTemplate::new(
        &fixture("meta-llama-Llama-3.1-8B-Instruct"),
        "<|begin_of_text|>",
        "<|eot_id|>",
    )
    .expect("compiles");
    let none = Map::new();
    assert_eq!(
        render(&t, &system_and_user(), &none),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(
        render(&t, &multi_turn(), &none),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn llama_3_2_takes_the_date_from_kwargs_or_today() {
    let t = ChatTemplate::new(
        &fixture("meta-llama-Llama-3.2-3B-Instruct"),
        "<|begin_of_text|>",
        "<|eot_id|>",
    )
    .expect("compiles");
    let date = kwargs(json!({"date_string": "07 Dec 2026"}));
    assert_eq!(
        render(&t, &system_and_user(), &date),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 07 Dec 2026\n\nYou are a helpful assistant.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(
        render(&t, &multi_turn(), &date),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 07 Dec 2026\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    // Without a date the template asks `strftime_now` for today's.
    let today = || chrono::Local::now().format("%d %b %Y").to_string();
    let before = today();
    let out = render(&t, &system_and_user(), &Map::new());
    let after = today();
    assert!(
        out.contains(&format!("Today Date: {before}\n"))
            || out.contains(&format!("Today Date: {after}\n")),
        "{out}"
    );
}

#[test]
fn qwen3_thinks_only_when_asked() {
    let t = ChatTemplate::new(&fixture("Qwen-Qwen3-0.6B"), "", "<|im_end|>").expect("compiles");
    let default = Map::new();
    assert_eq!(
        render(&t, &system_and_user(), &default),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
    assert_eq!(
        render(&t, &multi_turn(), &default),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
    assert_eq!(
        render(
            &t,
            &multi_turn(),
            &kwargs(json!({"enable_thinking": false}))
        ),
        render(&t, &multi_turn(), &default)
    );
    let thinking = kwargs(json!({"enable_thinking": true}));
    assert_eq!(
        render(&t, &system_and_user(), &thinking),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        render(&t, &multi_turn(), &thinking),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn phi_3_5_turns() {
    let t = ChatTemplate::new(
        &fixture("microsoft-Phi-3.5-mini-instruct"),
        "<s>",
        "<|endoftext|>",
    )
    .expect("compiles");
    let none = Map::new();
    assert_eq!(
        render(&t, &system_and_user(), &none),
        "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\n"
    );
    assert_eq!(
        render(&t, &multi_turn(), &none),
        "<|user|>\nHi<|end|>\n<|assistant|>\nHello! How can I help?<|end|>\n<|user|>\nTell me a joke.<|end|>\n<|assistant|>\n"
    );
}

#[test]
fn mistral_inst_turns_and_alternation() {
    let t = ChatTemplate::new(
        &fixture("mistralai-Mistral-Nemo-Instruct-2407"),
        "<s>",
        "</s>",
    )
    .expect("compiles");
    let none = Map::new();
    let out = render(&t, &system_and_user(), &none);
    assert_eq!(
        out,
        "<s>[INST]You are a helpful assistant.\n\nHello![/INST]"
    );
    assert_eq!(
        t.strip_bos(&out),
        "[INST]You are a helpful assistant.\n\nHello![/INST]"
    );
    assert_eq!(
        render(&t, &multi_turn(), &none),
        "<s>[INST]Hi[/INST]Hello! How can I help?</s>[INST]Tell me a joke.[/INST]"
    );
    // The template's own refusal is the conversation's fault.
    let err = t
        .render(&[msg("user", "a"), msg("user", "b")], true, &none)
        .unwrap_err();
    assert!(
        matches!(err, TemplateError::Render(ref m) if m.contains("alternate")),
        "{err}"
    );
}

#[test]
fn kwargs_the_template_does_not_read_are_refused() {
    let t = ChatTemplate::new(
        &fixture("microsoft-Phi-3.5-mini-instruct"),
        "<s>",
        "<|endoftext|>",
    )
    .expect("compiles");
    let err = t
        .render(
            &system_and_user(),
            true,
            &kwargs(json!({"enable_thinking": true})),
        )
        .unwrap_err();
    assert!(
        matches!(err, TemplateError::Kwargs(ref m) if m.contains("enable_thinking")),
        "{err}"
    );
    let err = t
        .render(&system_and_user(), true, &kwargs(json!({"messages": []})))
        .unwrap_err();
    assert!(
        matches!(err, TemplateError::Kwargs(ref m) if m.contains("messages")),
        "{err}"
    );
}

#[test]
fn features_minijinja_lacks_are_typed_errors() {
    // An unknown filter compiles (filters resolve at render time) and fails typed.
    let t =
        ChatTemplate::new("{{ messages[0].content | nonesuch_filter }}", "", "").expect("compiles");
    let err = t.render(&system_and_user(), true, &Map::new()).unwrap_err();
    assert!(matches!(err, TemplateError::Unsupported(_)), "{err}");
    // An unknown Python method on a string.
    let t = ChatTemplate::new("{{ messages[0].content.casefold() }}", "", "").expect("compiles");
    let err = t.render(&system_and_user(), true, &Map::new()).unwrap_err();
    assert!(matches!(err, TemplateError::Unsupported(_)), "{err}");
    // Syntax minijinja does not have (Hugging Face's `{% generation %}` tag) fails to compile.
    let err = ChatTemplate::new("{% generation %}x{% endgeneration %}", "", "").unwrap_err();
    assert!(matches!(err, TemplateError::Compile(_)), "{err}");
}

/// The tool-call marker `tool_choice: "auto"` reads off each template: Qwen's `<tool_call>`,
/// Mistral Nemo's `[TOOL_CALLS]` list, Llama 3.x's bare JSON (`{`); none for a template
/// without a format the worker knows (Phi-3.5 without tools), where `auto` is refused.
#[test]
fn tool_call_markers_are_read_off_the_templates() {
    for (name, marker) in [
        ("Qwen-Qwen3-0.6B", Some("<tool_call>")),
        ("meta-llama-Llama-3.1-8B-Instruct", Some("{")),
        ("meta-llama-Llama-3.2-3B-Instruct", Some("{")),
        ("microsoft-Phi-3.5-mini-instruct", None),
        ("mistralai-Mistral-Nemo-Instruct-2407", Some("[TOOL_CALLS]")),
    ] {
        let t = ChatTemplate::new(&fixture(name), "<s>", "</s>").expect("compiles");
        assert_eq!(t.call_format().map(|f| f.marker), marker, "{name}");
    }
}
