//! GPT-OSS's harmony format on `/v1/chat/completions` (issue 20).
//!
//! The prompt: llama.cpp's copy of the model's chat template (`openai-gpt-oss-120b.jinja`, read
//! out of the llama-cpp-python 0.3.36 sdist at test time) rendered by the worker's minijinja
//! setup is byte-identical to what Python's Jinja2 renders for the same conversation, set up as
//! llama-cpp-python's `Jinja2ChatFormatter` sets it up (`tests/fixtures/render_jinja2.py`):
//! system and developer instructions, several turns, a tools list with every parameter type the
//! template writes, a tool call with its answer, the template's own keyword arguments.
//!
//! The answer: a worker whose device emits a fixed harmony reply token by token (a synthetic
//! model with a vocabulary carrying harmony's special tokens, and a scripted device in place of
//! the weights) answers with the `analysis` channel as `reasoning_content` and the `final`
//! channel as `content`, unstreamed and streamed; `<|return|>` ends the answer (the script goes
//! on after it), `<|end|>` does not.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use orcd_device::mock::MockDevice;
use orcd_device::{Device, DeviceInfo, EngineError, LogitsWanted, SeqInput, SeqSlot, host_logits};
use orcd_model::gguf::{GgufFile, MetaValue};
use orcd_tools::synth::harmony::with_harmony;
use orcd_tools::synth::{SynthOptions, shape, synthesize};
use serde_json::{Map, Value, json};
use worker_orcd::served_device::ServedDevice;
use worker_orcd::server::chat_template::{ChatMessage, ChatTemplate};

/// llama.cpp's copy of GPT-OSS's chat template, from the cached sdist.
fn harmony_template() -> String {
    let path = orcd_tests::models::fetch_chat_templates().join("openai-gpt-oss-120b.jinja");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What Python's Jinja2 renders, as llama-cpp-python's `Jinja2ChatFormatter` sets it up.
fn render_with_jinja2(
    template: &str,
    messages: &[ChatMessage],
    tools: Option<&Value>,
    kwargs: &Map<String, Value>,
) -> String {
    let dir = std::env::temp_dir().join(format!("orcd-harmony-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let template_path = dir.join("template.jinja");
    std::fs::write(&template_path, template).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/render_jinja2.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .arg(&template_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with jinja2) runs");
    let input = json!({"messages": messages, "add_generation_prompt": true,
        "bos_token": "<|startoftext|>", "eos_token": "<|return|>", "tools": tools,
        "kwargs": kwargs});
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "render_jinja2.py failed (python3 needs jinja2): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn msg(role: &str, content: &str) -> ChatMessage {
    ChatMessage::text(role, content)
}

/// Tools with every parameter type the template writes in TypeScript.
fn tools() -> Value {
    json!([
        {"type": "function", "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Paris\" <FR>"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                "days": {"type": "integer", "description": "Days ahead", "default": 1},
                "hourly": {"type": "boolean"},
                "fields": {"type": "array", "items": {"type": "string"}},
                "points": {"type": "array", "items": {"type": "object", "properties": {
                    "lat": {"type": "number"}, "lon": {"type": "number"}}}},
                "threshold": {"type": "number", "default": 0.5, "nullable": true},
                "where": {"type": "object", "properties": {
                    "zip": {"type": "string"}, "near": {"type": "boolean"}},
                    "required": ["zip"]},
                "mode": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "any": {}
            }, "required": ["city"]}}},
        {"type": "function", "function": {
            "name": "get_time", "description": "The time now",
            "parameters": {"type": "object", "properties": {}}}}
    ])
}

/// Renders `messages` (with `tools` and `kwargs`) both ways and requires the same bytes.
fn same_as_jinja2(messages: Vec<ChatMessage>, tools: Option<Value>, kwargs: Value) {
    let source = harmony_template();
    let t = ChatTemplate::new(&source, "<|startoftext|>", "<|return|>").expect("compiles");
    assert!(t.is_harmony());
    let kwargs = kwargs.as_object().cloned().unwrap_or_default();
    let mut ours_kwargs = kwargs.clone();
    if let Some(tools) = &tools {
        assert!(t.reads("tools"));
        ours_kwargs.insert("tools".into(), tools.clone());
    }
    let ours = t.render(&messages, true, &ours_kwargs).expect("renders");
    let theirs = render_with_jinja2(&source, &messages, tools.as_ref(), &kwargs);
    assert_eq!(ours, theirs);
    assert!(ours.ends_with("<|start|>assistant"), "{ours}");
}

#[test]
fn system_and_user_render_as_jinja2_renders_them() {
    same_as_jinja2(
        vec![msg("system", "You are terse."), msg("user", "Hello!")],
        None,
        json!({}),
    );
}

#[test]
fn developer_instructions_and_several_turns_render_as_jinja2_renders_them() {
    same_as_jinja2(
        vec![
            msg("developer", "Answer in French.\nBe brief."),
            msg("user", "Hi"),
            msg("assistant", "Bonjour !"),
            msg("user", "Quelle heure est-il ? <b>\"vite\"</b>"),
        ],
        None,
        json!({"reasoning_effort": "high", "model_identity": "You are a test model."}),
    );
}

#[test]
fn tools_a_call_and_its_answer_render_as_jinja2_renders_them() {
    let mut call = msg("assistant", "");
    call.tool_calls = Some(json!([{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]));
    let mut answer = msg("tool", "{\"temp\": 21, \"sky\": \"clear & <sunny>\"}");
    answer.tool_call_id = Some("call_1".into());
    same_as_jinja2(
        vec![
            msg("system", "Use the tools."),
            msg("user", "Weather in Paris?"),
            call,
            answer,
        ],
        Some(tools()),
        json!({"builtin_tools": ["browser", "python"]}),
    );
}

#[test]
fn an_assistant_turn_with_channel_tags_is_refused_by_the_template() {
    let t = ChatTemplate::new(&harmony_template(), "<|startoftext|>", "<|return|>").unwrap();
    let e = t
        .render(
            &[
                msg("user", "Hi"),
                msg("assistant", "<|channel|>final<|message|>Hello"),
                msg("user", "Again"),
            ],
            true,
            &Map::new(),
        )
        .expect_err("the template raises");
    assert!(e.to_string().contains("<|channel|> tags"), "{e}");
}

// ---- the answer ----------------------------------------------------------------------------

/// A small synthetic model whose vocabulary is the golden tests' 1024 byte-level tokens plus
/// harmony's special tokens and template (`synth --harmony-template`), with the `gpt-4o`
/// pre-tokenizer.
fn harmony_model(dir: &Path) -> PathBuf {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/llamacpp-golden/vocab-1024.gguf");
    let base = GgufFile::open(&base).expect("the golden tests' vocabulary");
    let mut w = orcd_model::gguf::GgufWriter::new();
    for (key, value) in base.metadata() {
        let value = match key.as_str() {
            "tokenizer.ggml.pre" => MetaValue::Str("gpt-4o".into()),
            _ => value.clone(),
        };
        w.add_metadata(key.clone(), value).unwrap();
    }
    let base = GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap();
    let vocab = with_harmony(&base, &harmony_template()).expect("harmony vocabulary");
    let opts = SynthOptions {
        shape: shape("smollm2-135m").unwrap(),
        ty: orcd_model::quant::GgmlType::Q8_0,
        embed_ty: None,
        layers: Some(1),
        experts: None,
        seed: 1,
        output_std: None,
    };
    let model_path = dir.join("model.gguf");
    synthesize(&opts, &vocab, &model_path).expect("synth");
    model_path
}

/// The mock device, except that each sequence's logits after its prompt pick the tokens of
/// `script` in turn (then the first token of the vocabulary).
struct ScriptedDevice {
    inner: MockDevice,
    script: Vec<u32>,
    /// Where each slot's prompt ended (its first logits row).
    prompt_end: HashMap<SeqSlot, usize>,
    rows: Vec<Vec<f32>>,
}

impl ScriptedDevice {
    fn row(&self, i: usize) -> Result<&Vec<f32>, EngineError> {
        self.rows
            .get(i)
            .ok_or_else(|| EngineError::InvalidInput(format!("no logits row {i}")))
    }
}

impl Device for ScriptedDevice {
    fn info(&self) -> DeviceInfo {
        self.inner.info()
    }
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }
    fn context_length(&self) -> usize {
        self.inner.context_length()
    }
    fn alloc_seq(&mut self, max_tokens: usize) -> Result<SeqSlot, EngineError> {
        self.inner.alloc_seq(max_tokens)
    }
    fn free_seq(&mut self, slot: SeqSlot) {
        self.prompt_end.remove(&slot);
        self.inner.free_seq(slot)
    }
    fn free_kv_tokens(&self) -> usize {
        self.inner.free_kv_tokens()
    }
    fn copy_kv_prefix(
        &mut self,
        from: SeqSlot,
        to: SeqSlot,
        n_tokens: usize,
    ) -> Result<(), EngineError> {
        self.inner.copy_kv_prefix(from, to, n_tokens)
    }
    fn kv_prefix_kept(&self, from: SeqSlot, n_tokens: usize, to_max_tokens: usize) -> bool {
        self.inner.kv_prefix_kept(from, n_tokens, to_max_tokens)
    }
    fn forward(&mut self, batch: &[SeqInput<'_>]) -> Result<usize, EngineError> {
        let n = self.inner.forward(batch)?;
        let vocab = self.inner.vocab_size();
        self.rows.clear();
        for s in batch {
            let end = s.start_pos + s.tokens.len();
            match s.logits {
                LogitsWanted::None => {}
                LogitsWanted::Last => {
                    let start = *self.prompt_end.entry(s.slot).or_insert(end);
                    let next = self.script.get(end - start).copied().unwrap_or(0);
                    let mut row = vec![0.0; vocab];
                    row[next as usize] = 30.0;
                    self.rows.push(row);
                }
                LogitsWanted::All => {
                    self.rows
                        .extend(std::iter::repeat_n(vec![0.0; vocab], s.tokens.len()));
                }
            }
        }
        Ok(n)
    }
    fn logits_argmax(&self, row: usize) -> Result<(u32, f32), EngineError> {
        Ok(host_logits::argmax(self.row(row)?))
    }
    fn logits_top_k(&self, row: usize, k: usize) -> Result<Vec<(u32, f32)>, EngineError> {
        Ok(host_logits::top_k(self.row(row)?, k))
    }
    fn logits_row(&self, row: usize) -> Result<Vec<f32>, EngineError> {
        Ok(self.row(row)?.clone())
    }
    fn logits_penalize(
        &mut self,
        row: usize,
        history: &[u32],
        repeat: f32,
        frequency: f32,
        presence: f32,
    ) -> Result<(), EngineError> {
        self.row(row)?;
        host_logits::penalize(&mut self.rows[row], history, repeat, frequency, presence);
        Ok(())
    }
    fn logits_mask(&mut self, row: usize, allowed: &[u32]) -> Result<(), EngineError> {
        self.row(row)?;
        host_logits::mask(&mut self.rows[row], allowed);
        Ok(())
    }
    fn logits_logsumexp(&self, row: usize) -> Result<f32, EngineError> {
        Ok(host_logits::logsumexp(self.row(row)?))
    }
    fn logits_gather(&self, row: usize, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        host_logits::gather(self.row(row)?, ids)
            .map_err(|id| EngineError::InvalidInput(format!("token {id} outside the vocabulary")))
    }
}

impl ServedDevice for ScriptedDevice {
    fn verify_residency(&self) -> Result<usize, EngineError> {
        Ok(0)
    }
}

const REASONING: &str = "The user greets me. Answer briefly & kindly: <ok>.";
const ANSWER: &str = "Hello! How can I help? 🙂";

/// A worker whose model answers every chat with the harmony reply of [`REASONING`] and
/// [`ANSWER`], then (after `<|return|>`) text that must never be seen.
async fn harmony_worker(dir: &Path) -> TestWorker {
    let path = harmony_model(dir);
    let (plugins, mut facts, _model) = plugins_for(&path);
    let reply = format!(
        "<|channel|>analysis<|message|>{REASONING}<|end|><|start|>assistant<|channel|>final<|message|>{ANSWER}<|return|>NEVER SENT<|end|>"
    );
    let script = plugins
        .tokenizer
        .encode_with(&reply, true, false)
        .expect("encode the reply");
    facts.context_length = MOCK_CONTEXT;
    let device = ScriptedDevice {
        inner: mock_device(facts.vocab_size, 8192),
        script,
        prompt_end: HashMap::new(),
        rows: Vec::new(),
    };
    start(Box::new(device), plugins, facts, test_options(2, 4)).await
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("orcd-harmony-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn chat() -> Value {
    json!({"messages": [{"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi!"}], "max_tokens": 200})
}

#[tokio::test]
async fn the_analysis_channel_is_reasoning_content_and_the_final_channel_is_content() {
    let dir = temp_dir("whole");
    let w = harmony_worker(&dir).await;
    let r = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], ANSWER);
    assert_eq!(choice["message"]["reasoning_content"], REASONING);
    // `<|return|>` ended the answer: it is a stop, not a length cut, and nothing after it came.
    assert_eq!(choice["finish_reason"], "stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_streamed_answer_sends_reasoning_and_content_deltas() {
    let dir = temp_dir("stream");
    let w = harmony_worker(&dir).await;
    let mut body = chat();
    body["stream"] = json!(true);
    let r = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut events: Vec<Value> = read_sse(r).await.into_iter().map(|e| e.data).collect();
    assert_eq!(events.pop(), Some(json!("[DONE]")));
    let mut reasoning = String::new();
    let mut content = String::new();
    let mut reasoning_chunks = 0;
    let mut content_after_reasoning = true;
    for e in &events {
        let delta = &e["choices"][0]["delta"];
        if let Some(r) = delta["reasoning_content"].as_str() {
            reasoning_chunks += 1;
            content_after_reasoning &= content.is_empty();
            reasoning.push_str(r);
        }
        if let Some(c) = delta["content"].as_str() {
            content.push_str(c);
        }
        let text = e.to_string();
        assert!(!text.contains("<|"), "markup reached the client: {text}");
    }
    assert_eq!(reasoning, REASONING);
    assert_eq!(content, ANSWER);
    assert!(reasoning_chunks > 1, "the reasoning came in one piece");
    assert!(content_after_reasoning);
    let last = events.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn tool_calls_in_harmony_are_a_typed_400_and_tool_choice_none_answers() {
    let dir = temp_dir("tools");
    let w = harmony_worker(&dir).await;
    let mut body = chat();
    body["tools"] = tools();
    let r = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["param"], "tools", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("harmony"),
        "{e}"
    );
    body["tool_choice"] = json!("none");
    let r = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], ANSWER);
    let _ = std::fs::remove_dir_all(&dir);
}
