//! Chat templates: the model's `tokenizer.chat_template` (a Hugging Face Jinja template) rendered
//! with `minijinja`, with the globals HF templates expect (`messages`, `add_generation_prompt`,
//! `bos_token`, `eos_token`, `raise_exception`, `strftime_now`), Python string methods
//! (`.strip()`, `.startswith()`, ...) through `minijinja-contrib`'s pycompat layer, maps in
//! their given order (a tool's parameters render in the order the request lists them) and
//! `tojson` as Python's `json.dumps` ([`super::template_json`]).
//!
//! A request's `chat_template_kwargs` (vLLM's and llama-server's field) become template
//! variables; `enable_thinking` is `false` unless the request sets it, so Qwen3-style templates
//! answer without a thinking block by default. A template feature minijinja cannot render is a
//! typed error ([`TemplateError::Unsupported`]), never a prompt rendered some other way.
//!
//! Bounds. A template is model-file input, and a hostile one must not stall the worker: loops
//! are bounded by minijinja's fuel, the output by a writer that stops at [`MAX_RENDERED_BYTES`],
//! and everything else (minijinja repeats a sequence lazily, `{{ () * 33331333334 }}` iterates
//! without fuel or output, a fuzzing finding; printing a repeated non-empty sequence iterates
//! every item even after the writer refused one) by [`ChatTemplate::render_within`], which renders
//! on a thread of its own and gives up at a deadline. A template that once ran past it is
//! marked stalled and refused from then on (its thread cannot be stopped; no second one is
//! started). [`ChatTemplate::load`] compiles once at startup and renders a probe conversation
//! under the same deadline.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use minijinja::{Environment, Error, ErrorKind, Value};
use serde::{Deserialize, Serialize};
use serde_json::Map;

/// Largest template accepted from a model file.
pub const MAX_TEMPLATE_BYTES: usize = 64 * 1024;
/// Longest rendered prompt (bytes); a template that loops past it is stopped.
pub const MAX_RENDERED_BYTES: usize = 4 * 1024 * 1024;
/// Longest a render may take before the template is given up as stalled.
pub const RENDER_DEADLINE: Duration = Duration::from_secs(2);

/// Gemma's turn format, for Gemma files that carry no template (the system message goes in
/// front of the first user turn; roles must alternate).
pub const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

/// ChatML, the fallback for other files without a template (llama.cpp's default too).
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The template for a model: its own `tokenizer.chat_template`, else the built-in format of its
/// architecture.
pub fn template_for(architecture: &str, from_file: Option<&str>) -> String {
    match from_file {
        Some(t) => t.to_string(),
        None if architecture.starts_with("gemma") => GEMMA_TEMPLATE.to_string(),
        None => CHATML_TEMPLATE.to_string(),
    }
}

/// One chat message. `content` is plain text (the OpenAI list-of-parts form is flattened to its
/// text parts before rendering).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// An assistant message's tool calls (OpenAI's shape, `arguments` a JSON string), for
    /// templates that render them (Hugging Face's convention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<serde_json::Value>,
    /// A `tool` message's answer to this call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    /// A plain text message.
    pub fn text(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            tool_calls: None,
            tool_call_id: None,
        }
    }
}

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    /// How the template's model writes a tool call (`tool_choice: "auto"`), when known.
    call_format: Option<super::tool_formats::CallFormat>,
    /// The template prompts GPT-OSS's harmony format (its answers come as channel messages).
    harmony: bool,
    /// Set once a render ran past its deadline; every later render is refused.
    stalled: AtomicBool,
}

/// Why a template could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("the chat template is {0} bytes, at most {MAX_TEMPLATE_BYTES} allowed")]
    TooLarge(usize),
    #[error("the chat template does not compile: {0}")]
    Compile(String),
    /// The template refused the conversation (`raise_exception`), or rendering it ran past
    /// the limits.
    #[error("the chat template rejected the conversation: {0}")]
    Render(String),
    /// The template uses something minijinja cannot render (an unknown filter, test, method or
    /// function, an operation on values it does not support).
    #[error("the model's chat template uses a feature this worker cannot render: {0}")]
    Unsupported(String),
    /// A `chat_template_kwargs` entry the template cannot take.
    #[error("chat_template_kwargs: {0}")]
    Kwargs(String),
    /// A render ran past [`RENDER_DEADLINE`]; the template is refused from then on.
    #[error(
        "the model's chat template did not finish rendering within {} ms and is refused until the worker restarts",
        RENDER_DEADLINE.as_millis()
    )]
    Stalled,
}

impl TemplateError {
    /// Whether the fault lies with the template (the model file) rather than the request.
    pub fn is_the_templates(&self) -> bool {
        matches!(
            self,
            TemplateError::TooLarge(_)
                | TemplateError::Compile(_)
                | TemplateError::Unsupported(_)
                | TemplateError::Stalled
        )
    }
}

/// A writer that takes at most [`MAX_RENDERED_BYTES`] and then fails, so a template that
/// produces endless output stops as soon as it passes the bound.
struct BoundedOut {
    buf: Vec<u8>,
    overflowed: bool,
}

impl Write for BoundedOut {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + bytes.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered prompt too long"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The variables the worker sets itself; `chat_template_kwargs` cannot replace them.
const RESERVED: &[&str] = &[
    "messages",
    "add_generation_prompt",
    "bos_token",
    "eos_token",
];

/// Marks an error raised by the template's own `raise_exception`.
#[derive(Debug)]
struct RaisedByTemplate;

impl std::fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("raised by the template")
    }
}

impl std::error::Error for RaisedByTemplate {}

fn raise_exception(msg: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg).with_source(RaisedByTemplate))
}

fn strftime_now(format: String) -> String {
    chrono::Local::now().format(&format).to_string()
}

impl ChatTemplate {
    /// Compile `source`; `bos_token` / `eos_token` are the texts of those special tokens.
    pub fn new(
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate, TemplateError> {
        if source.len() > MAX_TEMPLATE_BYTES {
            return Err(TemplateError::TooLarge(source.len()));
        }
        let mut env = Environment::new();
        // `apply_chat_template` in transformers renders with these two on.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_fuel(Some(10_000_000));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        // `json.dumps`, as the Python renderers templates are written for.
        env.add_filter("tojson", super::template_json::tojson);
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| TemplateError::Compile(e.to_string()))?;
        Ok(ChatTemplate {
            env,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            call_format: super::tool_formats::call_format(source),
            harmony: source.contains("<|start|>assistant") && source.contains("<|channel|>"),
            stalled: AtomicBool::new(false),
        })
    }

    /// Compile `source` and render a short probe conversation within [`RENDER_DEADLINE`]: a
    /// template that cannot even do that is refused at startup, not on the first request. A
    /// template that refuses the probe itself (`raise_exception`, e.g. roles it does not
    /// know) still loads: the refusal is the template's answer to that conversation.
    pub fn load(
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Arc<ChatTemplate>, TemplateError> {
        let template = Arc::new(ChatTemplate::new(source, bos_token, eos_token)?);
        let probe = vec![
            ChatMessage::text("system", "You are terse."),
            ChatMessage::text("user", "Hi"),
        ];
        match template.render_within(probe, true, Map::new(), RENDER_DEADLINE) {
            Ok(_) | Err(TemplateError::Render(_)) => Ok(template),
            Err(e) => Err(e),
        }
    }

    /// [`ChatTemplate::render`] on a thread of its own, waiting at most `deadline` (the caller
    /// blocks: call it from a blocking context). Past the deadline the template is marked
    /// stalled: this and every later call get [`TemplateError::Stalled`]; the stalled thread
    /// runs on until minijinja returns.
    pub fn render_within(
        self: &Arc<Self>,
        messages: Vec<ChatMessage>,
        add_generation_prompt: bool,
        kwargs: Map<String, serde_json::Value>,
        deadline: Duration,
    ) -> Result<String, TemplateError> {
        if self.stalled.load(Ordering::Acquire) {
            return Err(TemplateError::Stalled);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let template = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("chat-template".into())
            .spawn(move || {
                let out = template.render(&messages, add_generation_prompt, &kwargs);
                let _ = tx.send(out);
            })
            .map_err(|e| TemplateError::Render(format!("no thread to render on: {e}")))?;
        match rx.recv_timeout(deadline) {
            Ok(out) => {
                // The thread has sent its last value and only returns from here: join it so
                // that no render thread outlives its request (only a stalled one is left).
                let _ = thread.join();
                out
            }
            Err(_) => {
                // A stalled render cannot be stopped from outside; dropping the handle
                // detaches it, and the template is refused from now on.
                drop(thread);
                self.stalled.store(true, Ordering::Release);
                Err(TemplateError::Stalled)
            }
        }
    }

    /// Render a conversation; with `add_generation_prompt` the text ends where the assistant's
    /// answer starts. `kwargs` (the request's `chat_template_kwargs`) become variables; each
    /// must be one the template reads (an ignored one would be a silent no-op) and none may
    /// replace the worker's own.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        kwargs: &Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| TemplateError::Compile(e.to_string()))?;
        if !kwargs.is_empty() {
            let read: HashSet<String> = tmpl.undeclared_variables(false);
            for key in kwargs.keys() {
                if RESERVED.contains(&key.as_str()) {
                    return Err(TemplateError::Kwargs(format!(
                        "`{key}` is set by the worker and cannot be replaced"
                    )));
                }
                if !read.contains(key) {
                    return Err(TemplateError::Kwargs(format!(
                        "the model's chat template does not use `{key}`"
                    )));
                }
            }
        }
        // The worker's variables over the request's over the defaults.
        let mut vars = Map::new();
        vars.insert("enable_thinking".into(), false.into());
        vars.extend(kwargs.clone());
        vars.insert(
            "messages".into(),
            serde_json::to_value(messages).map_err(|e| TemplateError::Render(e.to_string()))?,
        );
        vars.insert("add_generation_prompt".into(), add_generation_prompt.into());
        vars.insert("bos_token".into(), self.bos_token.clone().into());
        vars.insert("eos_token".into(), self.eos_token.clone().into());
        let mut out = BoundedOut {
            buf: Vec::new(),
            overflowed: false,
        };
        let rendered = tmpl.render_captured_to(Value::from_serialize(&vars), &mut out);
        if out.overflowed {
            return Err(TemplateError::Render(format!(
                "the rendered prompt passed {MAX_RENDERED_BYTES} bytes"
            )));
        }
        rendered.map_err(|e| classify(&e))?;
        String::from_utf8(out.buf).map_err(|e| TemplateError::Render(e.to_string()))
    }

    /// How the template's model writes a tool call, read off the template's text (see
    /// [`super::tool_formats::call_format`]).
    pub fn call_format(&self) -> Option<super::tool_formats::CallFormat> {
        self.call_format
    }

    /// Whether the template prompts GPT-OSS's harmony format, whose answers are split into
    /// reasoning and content (see [`super::harmony`]).
    pub fn is_harmony(&self) -> bool {
        self.harmony
    }

    /// Whether the template reads the top-level variable `name` (e.g. `tools`).
    pub fn reads(&self, name: &str) -> bool {
        self.env
            .get_template("chat")
            .is_ok_and(|t| t.undeclared_variables(false).contains(name))
    }

    /// The rendered text minus a leading BOS text: the tokenizer adds BOS itself when the model
    /// wants one, and a second one would change the model's input.
    pub fn strip_bos<'a>(&self, rendered: &'a str) -> &'a str {
        if self.bos_token.is_empty() {
            return rendered;
        }
        rendered
            .strip_prefix(self.bos_token.as_str())
            .unwrap_or(rendered)
    }
}

/// A render error as the template's refusal (its `raise_exception`, or the fuel limit) or as
/// a feature minijinja lacks.
fn classify(e: &Error) -> TemplateError {
    let raised = std::error::Error::source(e).is_some_and(|s| s.is::<RaisedByTemplate>());
    if raised {
        return TemplateError::Render(e.detail().unwrap_or_default().to_string());
    }
    match e.kind() {
        ErrorKind::OutOfFuel => TemplateError::Render(e.to_string()),
        _ => TemplateError::Unsupported(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn user(text: &str) -> ChatMessage {
        ChatMessage {
            role: "user".into(),
            content: text.into(),
            tool_calls: None,
            tool_call_id: None,
        }
    }

    #[test]
    fn renders_smollm2_chatml() {
        let t = ChatTemplate::new(SMOLLM2, "<|im_start|>", "<|im_end|>").unwrap();
        let out = t.render(&[user("Hi")], true, &Map::new()).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(
            !t.render(&[user("Hi")], false, &Map::new())
                .unwrap()
                .ends_with("assistant\n")
        );
    }

    #[test]
    fn raise_exception_and_python_methods_work() {
        let src = "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{{ bos_token }}{% for m in messages %}{{ m['content'] | trim }}|{{ m.content.strip().upper() }}{% endfor %}";
        let t = ChatTemplate::new(src, "<bos>", "<eos>").unwrap();
        assert_eq!(
            t.render(&[user("  hey ")], true, &Map::new()).unwrap(),
            "<bos>hey|HEY"
        );
        let sys = ChatMessage {
            role: "system".into(),
            content: "x".into(),
            tool_calls: None,
            tool_call_id: None,
        };
        let err = t.render(&[sys], true, &Map::new()).unwrap_err();
        assert!(
            err.to_string().contains("System role not supported"),
            "{err}"
        );
        assert_eq!(t.strip_bos("<bos>hey"), "hey");
    }

    #[test]
    fn builtin_gemma_format_alternates_and_folds_the_system_prompt() {
        let t = ChatTemplate::new(GEMMA_TEMPLATE, "<bos>", "<eos>").unwrap();
        let sys = ChatMessage {
            role: "system".into(),
            content: "Be brief.".into(),
            tool_calls: None,
            tool_call_id: None,
        };
        let out = t.render(&[sys, user(" Hi ")], true, &Map::new()).unwrap();
        assert_eq!(
            out,
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(t.strip_bos(&out).len(), out.len() - "<bos>".len());
        let err = t
            .render(&[user("a"), user("b")], true, &Map::new())
            .unwrap_err();
        assert!(err.to_string().contains("alternate"), "{err}");
        assert_eq!(template_for("gemma3", None), GEMMA_TEMPLATE);
        assert_eq!(template_for("llama", None), CHATML_TEMPLATE);
        assert_eq!(template_for("llama", Some("x")), "x");
    }

    #[test]
    fn strftime_now_formats_the_date() {
        let t = ChatTemplate::new("{{ strftime_now('%Y') }}", "", "").unwrap();
        let year: i32 = t.render(&[], false, &Map::new()).unwrap().parse().unwrap();
        assert!(year >= 2024);
    }

    #[test]
    fn bad_templates_are_errors_not_panics() {
        assert!(matches!(
            ChatTemplate::new("{% for %}", "", ""),
            Err(TemplateError::Compile(_))
        ));
        let huge = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        assert!(matches!(
            ChatTemplate::new(&huge, "", ""),
            Err(TemplateError::TooLarge(_))
        ));
        let looping = ChatTemplate::new(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        assert!(looping.render(&[], false, &Map::new()).is_err());
    }

    #[test]
    fn endless_output_stops_at_the_bound() {
        // 100,000 x 100 bytes within the fuel: only the output bound stops it.
        let t = ChatTemplate::new(
            "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        let err = t.render(&[], false, &Map::new()).unwrap_err();
        assert!(
            matches!(&err, TemplateError::Render(m) if m.contains("passed")),
            "{err:?}"
        );
    }

    /// The fuzzing finding (`fuzz/findings/chat_template-timeout-repeat`): an empty sequence
    /// repeated 33 billion times iterates without fuel or output.
    #[test]
    fn a_stalling_template_is_refused_at_load_and_stays_refused() {
        let finding = include_str!("../../../../fuzz/findings/chat_template-timeout-repeat");
        let source = finding
            .get(1..)
            .unwrap_or_default()
            .split('\0')
            .next()
            .unwrap();
        assert!(source.contains("33331333334"), "{source:?}");
        assert!(matches!(
            ChatTemplate::load(source, "", ""),
            Err(TemplateError::Stalled)
        ));
        // A printed non-empty repetition: formatting a sequence iterates every item even after
        // the output bound refused the first write; the deadline ends it.
        assert!(matches!(
            ChatTemplate::load("{{ [1, 2] * 100000000000 }}", "", ""),
            Err(TemplateError::Stalled)
        ));
        // A template that stalls only on some conversations loads, and is refused once it
        // has stalled.
        let t = ChatTemplate::load(
            "{% for m in messages %}{% if m.content == 'stall' %}{{ () * 33331333334 }}{% endif %}{{ m.content }}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        let says = |text: &str| vec![ChatMessage::text("user", text)];
        let short = Duration::from_millis(200);
        assert_eq!(
            t.render_within(says("hi"), false, Map::new(), short)
                .unwrap(),
            "hi"
        );
        assert!(matches!(
            t.render_within(says("stall"), false, Map::new(), short),
            Err(TemplateError::Stalled)
        ));
        assert!(matches!(
            t.render_within(says("hi"), false, Map::new(), short),
            Err(TemplateError::Stalled)
        ));
        assert!(TemplateError::Stalled.is_the_templates());
    }
}
