//! Chat templates, the worker's own module (`host/worker/src/server/chat_template.rs`, included
//! here by path so the fuzz build need not compile the whole worker), with hostile input on
//! both sides:
//!
//! - first byte even: the rest up to the first NUL is a template (a GGUF file's
//!   `tokenizer.chat_template` is model-file input) rendered over a fixed conversation;
//! - first byte odd: the built-in templates (ChatML, Gemma) rendered over a conversation made
//!   of the input (client input: roles and contents).
//!
//! Nothing may panic or hang: templates go through the worker's own bounds (`ChatTemplate::load`
//! probes at load, `render_within` gives up at the render deadline and marks the template
//! stalled; libFuzzer's `-timeout` catches anything those miss); a rendered prompt stays
//! within `MAX_RENDERED_BYTES`; the built-in ChatML template carries every message's role and
//! content into the prompt unchanged.

#![no_main]

#[allow(dead_code)]
#[path = "../../host/worker/src/server/chat_template.rs"]
mod chat_template;

use chat_template::{
    CHATML_TEMPLATE, ChatMessage, ChatTemplate, GEMMA_TEMPLATE, MAX_RENDERED_BYTES,
    RENDER_DEADLINE, template_for,
};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;

fn fixed_conversation() -> Vec<ChatMessage> {
    [
        ("system", "You are terse."),
        ("user", "Hi"),
        ("assistant", "Hello."),
        ("user", "Bye"),
    ]
    .into_iter()
    .map(|(role, content)| ChatMessage::text(role, content))
    .collect()
}

/// Messages from arbitrary text: NUL separates fields, role then content, alternately.
fn conversation(text: &str) -> Vec<ChatMessage> {
    let fields: Vec<&str> = text.split('\0').collect();
    fields
        .chunks(2)
        .take(16)
        .map(|pair| ChatMessage::text(pair[0], pair.get(1).copied().unwrap_or("")))
        .collect()
}

fn render(source: &str, messages: &[ChatMessage]) -> Option<String> {
    let template = ChatTemplate::load(source, "<s>", "</s>").ok()?;
    render_with(&template, messages)
}

fn render_with(template: &Arc<ChatTemplate>, messages: &[ChatMessage]) -> Option<String> {
    // No `chat_template_kwargs`, and Qwen3's `enable_thinking` (a template that does not
    // read it refuses it: a typed error, fine here).
    let none = serde_json::Map::new();
    let mut thinking = serde_json::Map::new();
    thinking.insert("enable_thinking".into(), serde_json::Value::Bool(false));
    for (add_generation_prompt, kwargs) in [(false, &none), (true, &thinking), (true, &none)] {
        let rendered = template.render_within(
            messages.to_vec(),
            add_generation_prompt,
            kwargs.clone(),
            RENDER_DEADLINE,
        );
        if let Ok(out) = rendered {
            assert!(out.len() <= MAX_RENDERED_BYTES);
            let stripped = template.strip_bos(&out);
            assert!(out.ends_with(stripped));
            if add_generation_prompt {
                return Some(out);
            }
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode % 2 == 0 {
        let source = text.split('\0').next().unwrap_or("");
        let _ = render(&template_for("llama", Some(source)), &fixed_conversation());
    } else {
        let messages = conversation(text);
        // The built-in templates compile once.
        static BUILT_IN: OnceLock<(Arc<ChatTemplate>, Arc<ChatTemplate>)> = OnceLock::new();
        let (chatml, gemma) = BUILT_IN.get_or_init(|| {
            let t = |s| ChatTemplate::load(s, "<s>", "</s>").expect("built-in template loads");
            (t(CHATML_TEMPLATE), t(GEMMA_TEMPLATE))
        });
        if let Some(out) = render_with(chatml, &messages) {
            for m in &messages {
                let turn = format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content);
                assert!(out.contains(&turn), "{out:?} lacks {turn:?}");
            }
            assert!(out.ends_with("<|im_start|>assistant\n"));
        }
        let _ = render_with(gemma, &messages);
    }
});
