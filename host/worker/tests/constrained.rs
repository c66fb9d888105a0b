//! Constrained decoding end to end (issue 16) on the CPU backend with SmolLM2: every schema
//! fixture through `/v1/chat/completions` `response_format: json_schema`, greedy and sampled,
//! parses and validates; `json_object` on `/v1/completions`; a `regex` and llama.cpp's example
//! GBNF grammars (`grammar`, outputs checked by an independent recognizer) through `/execute`;
//! schemas the plugin cannot enforce are 400 naming the field; and a vocabulary that cannot
//! spell the rest of the output ends the job with `CONSTRAINT_DEAD_END`.

mod common;

use common::*;
use futures_util::future::join_all;
use serde_json::{Value, json};

#[path = "../../../plugins/constraint/tests/common/validate.rs"]
mod validate;

#[path = "../../../plugins/constraint/tests/common/gbnf_check.rs"]
mod gbnf_check;

fn fixtures() -> Vec<Value> {
    let path = orcd_tests::models::repo_root().join("tests/fixtures/constraint/schemas.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixtures")).expect("JSON")
}

/// A chat request for fixture `f` with its schema as `response_format`.
fn chat_body(f: &Value, temperature: f32, seed: u64) -> Value {
    let name = f["name"].as_str().unwrap();
    json!({
        "messages": [
            {"role": "system", "content": "You answer with JSON only."},
            {"role": "user", "content": format!(
                "Make up a realistic {} record. Answer with JSON matching this schema: {}",
                name.replace('_', " "), f["schema"])}
        ],
        "max_tokens": 160,
        "temperature": temperature,
        // No penalty: a 135M model loops inside an unbounded string now and then
        // ("done_done_done..."); the constraint's token budget closes it in time.
        "seed": seed,
        "response_format": {"type": "json_schema",
            "json_schema": {"name": name, "schema": f["schema"], "strict": true}}
    })
}

/// Every fixture schema as `response_format`, greedy and sampled (bodies from `body`): each
/// answer is 200, ends with `stop`, parses and validates.
/// The two whole-fixture runs (SmolLM2, Gemma 3) one after the other: on 2 cores, side by side,
/// a first visit of a constraint state in the Wasm plugin can pass its 1 s call bound.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn every_fixture_validates(w: &TestWorker, body: impl Fn(&Value, f32, u64) -> Value) {
    let _one_at_a_time = HEAVY.lock().await;
    let fixtures = fixtures();
    assert!(fixtures.len() >= 30);
    let mut runs = Vec::new();
    for f in &fixtures {
        for (temperature, seed) in [(0.0, 1), (0.8, 42)] {
            runs.push((f, temperature, body(f, temperature, seed)));
        }
    }
    // Eight at a time (the worker runs eight sequences): 66 requests at once would wait in the
    // queue past the inference timeout on a 2-core machine.
    let mut answers = Vec::new();
    for chunk in runs.chunks(8) {
        answers.extend(
            join_all(chunk.iter().map(|(_, _, body)| async {
                let resp = w
                    .client
                    .post(w.url("/v1/chat/completions"))
                    .json(body)
                    .send()
                    .await
                    .unwrap();
                let status = resp.status();
                (status, resp.json::<Value>().await.unwrap())
            }))
            .await,
        );
    }
    for ((f, temperature, _), (status, answer)) in runs.iter().zip(answers) {
        let name = f["name"].as_str().unwrap();
        assert_eq!(status, 200, "{name} t={temperature}: {answer}");
        let choice = &answer["choices"][0];
        let content = choice["message"]["content"].as_str().unwrap();
        assert_eq!(
            choice["finish_reason"], "stop",
            "{name} t={temperature}: {content}"
        );
        let v: Value = serde_json::from_str(content)
            .unwrap_or_else(|e| panic!("{name} t={temperature}: {content}: {e}"));
        validate::validate(&f["schema"], &f["schema"], &v, "$")
            .unwrap_or_else(|e| panic!("{name} t={temperature}: {content}: {e}"));
        eprintln!("{name} t={temperature}: {content}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_schema_parses_and_validates_greedy_and_sampled() {
    let w = cpu_worker(8, 80, 16_384).await;
    every_fixture_validates(&w, chat_body).await;
}

/// The same on Gemma 3 270M (a 262k SentencePiece vocabulary with byte fallback), with a
/// short prompt (the schema is not in it: the constraint alone keeps the output valid).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_schema_validates_on_gemma3_greedy_and_sampled() {
    let (plugins, facts, model) = plugins_for(&gemma3_path());
    let device = orcd_cpu::CpuBackend::new(
        model,
        orcd_cpu::CpuOptions {
            threads: 2,
            kv_tokens_budget: 16_384,
            ..Default::default()
        },
    )
    .expect("CPU backend");
    let w = start(Box::new(device), plugins, facts, test_options(8, 80)).await;
    every_fixture_validates(&w, |f, temperature, seed| {
        let name = f["name"].as_str().unwrap();
        let mut body = chat_body(f, temperature, seed);
        body["messages"] = json!([{"role": "user", "content":
            format!("Make up a realistic {} record as JSON.", name.replace('_', " "))}]);
        body
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_object_on_completions_and_streaming_chat() {
    let w = cpu_worker(4, 4, 4096).await;
    let body = json!({"prompt": "A JSON object describing a cat:", "max_tokens": 120,
        "temperature": 0, "response_format": {"type": "json_object"}});
    let resp = w
        .client
        .post(w.url("/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let text = answer["choices"][0]["text"].as_str().unwrap();
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{text}");
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert!(v.is_object(), "{text}");

    // Streamed: the deltas join into the same kind of document.
    let f = &fixtures()[2];
    let mut body = chat_body(f, 0.0, 3);
    body["stream"] = json!(true);
    let resp = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let text = resp.text().await.unwrap();
    let mut content = String::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if line == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(line).unwrap();
        if let Some(c) = chunk["choices"][0]["delta"]["content"].as_str() {
            content.push_str(c);
        }
    }
    let v: Value = serde_json::from_str(&content).unwrap_or_else(|e| panic!("{content}: {e}"));
    validate::validate(&f["schema"], &f["schema"], &v, "$").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_regex_and_response_format() {
    let w = cpu_worker(4, 4, 4096).await;
    let re = r"(Mon|Tue|Wed|Thu|Fri) [0-9]{2}:[0-9]{2} (am|pm)";
    for (id, temperature) in [("re-greedy", 0.0), ("re-sampled", 0.9)] {
        let ev = w
            .execute(&json!({"job_id": id, "prompt": "<|im_start|>user\nWhen shall we meet?<|im_end|>\n<|im_start|>assistant\n",
                "max_tokens": 40, "temperature": temperature, "seed": 5, "regex": re}))
            .await;
        assert_well_formed(&ev);
        assert_eq!(terminal(&ev).event, "end", "{ev:?}");
        assert_eq!(terminal(&ev).data["stop_reason"], "eos");
        let text = text_of(&ev);
        let days = ["Mon ", "Tue ", "Wed ", "Thu ", "Fri "];
        let b = text.as_bytes();
        assert!(
            text.len() == 12
                && days.iter().any(|d| text.starts_with(d))
                && b[4..6].iter().chain(&b[7..9]).all(u8::is_ascii_digit)
                && b[6] == b':'
                && (text.ends_with(" am") || text.ends_with(" pm")),
            "{text:?}"
        );
    }
    let f = &fixtures()[0];
    let ev = w
        .execute(
            &json!({"job_id": "rf", "prompt": "A person as JSON:", "max_tokens": 300,
            "temperature": 0, "response_format": {"type": "json_schema",
            "json_schema": {"name": "person", "schema": f["schema"]}}}),
        )
        .await;
    assert_eq!(terminal(&ev).event, "end", "{ev:?}");
    let text = text_of(&ev);
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e} {:?}", terminal(&ev)));
    validate::validate(&f["schema"], &f["schema"], &v, "$").unwrap();

    // Keys come in the schema's `properties` order (OpenAI strict mode's), on both paths: the
    // handler plugin (`/execute`) and the worker's own parse (`/v1`) keep the declared order.
    let schema = json!({"type": "object", "properties": {
        "title": {"type": "string", "maxLength": 20}, "year": {"type": "integer"},
        "author": {"type": "string", "maxLength": 20}},
        "required": ["title", "year", "author"], "additionalProperties": false});
    let format = json!({"type": "json_schema", "json_schema": {"name": "book", "schema": schema}});
    let ev = w
        .execute(
            &json!({"job_id": "order", "prompt": "A book as JSON:", "max_tokens": 40,
            "temperature": 0, "response_format": format.clone()}),
        )
        .await;
    let chat: Value = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(
            &json!({"messages": [{"role": "user", "content": "A book as JSON."}],
            "max_tokens": 40, "temperature": 0, "response_format": format}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = chat["choices"][0]["message"]["content"].as_str().unwrap();
    for text in [text_of(&ev).as_str(), chat] {
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["title", "year", "author"], "{text}");
        assert!(text.starts_with(r#"{"title":"#), "{text}");
    }
}

/// llama.cpp's example grammars through `/execute` `grammar` on SmolLM2, greedy and sampled:
/// every output is accepted by a GBNF recognizer written independently of the plugin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_grammar_with_llama_cpp_examples() {
    let w = cpu_worker(8, 16, 16_384).await;
    let dir = orcd_tests::models::fetch_grammars();
    let cases = [
        ("json", "A JSON object describing a cat:", 60),
        ("arithmetic", "Some equations:\n", 30),
        ("list", "A shopping list:\n", 30),
        ("chess", "A chess game in PGN:\n", 40),
        ("json_arr", "A JSON array of three numbers:", 30),
    ];
    let mut runs = Vec::new();
    for (name, prompt, max_tokens) in cases {
        let grammar = std::fs::read_to_string(dir.join(format!("{name}.gbnf"))).unwrap();
        for (temperature, seed) in [(0.0, 1), (0.9, 17)] {
            let body = json!({"job_id": format!("{name}-{seed}"), "prompt": prompt,
                "max_tokens": max_tokens, "temperature": temperature, "seed": seed,
                "grammar": grammar});
            runs.push((name, grammar.clone(), temperature, body));
        }
    }
    let answers = join_all(runs.iter().map(|(_, _, _, body)| w.execute(body))).await;
    for ((name, grammar, temperature, _), ev) in runs.iter().zip(answers) {
        assert_well_formed(&ev);
        let end = terminal(&ev);
        assert_eq!(end.event, "end", "{name} t={temperature}: {ev:?}");
        let text = text_of(&ev);
        assert_eq!(
            end.data["stop_reason"], "eos",
            "{name} t={temperature}: {text:?}"
        );
        assert!(
            gbnf_check::Recognizer::new(grammar).accepts(&text),
            "{name} t={temperature}: {text:?}"
        );
        eprintln!("{name} t={temperature}: {text:?}");
    }
    // `/v1`: `grammar` as an extra body field (llama-server's and vLLM's `guided_grammar` way).
    let list = std::fs::read_to_string(dir.join("list.gbnf")).unwrap();
    let chat: Value = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(
            &json!({"messages": [{"role": "user", "content": "Three fruits, as a list."}],
            "max_tokens": 30, "temperature": 0, "grammar": list}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let content = chat["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(chat["choices"][0]["finish_reason"], "stop", "{chat}");
    assert!(
        gbnf_check::Recognizer::new(&list).accepts(content),
        "{content:?}"
    );
    let e: Value = w
        .client
        .post(w.url("/v1/completions"))
        .json(&json!({"prompt": "p", "grammar": "root ::= <think>"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(e["error"]["param"], "grammar", "{e}");
    // A grammar the plugin cannot compile is a 400 naming `grammar`.
    for bad in [
        "root ::= <think>",
        "item ::= \"a\"",
        "root ::= \"(\" root \")\"",
    ] {
        let resp = w
            .client
            .post(w.url("/execute"))
            .json(&json!({"job_id": "bad", "prompt": "p", "grammar": bad}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["field"], "grammar", "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_the_plugin_cannot_enforce_are_400_naming_the_field() {
    let w = mock_worker(4, 4, 4096).await;
    let schema =
        json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "x+"}}});
    let chat = json!({"messages": [{"role": "user", "content": "hi"}], "response_format":
        {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}});
    let resp = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let e: Value = resp.json().await.unwrap();
    assert_eq!(e["error"]["param"], "response_format", "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("pattern"),
        "{e}"
    );
    for (body, field) in [
        (
            json!({"job_id": "b1", "prompt": "p", "regex": "("}),
            "regex",
        ),
        (
            json!({"job_id": "b2", "prompt": "p", "response_format": {"type": "json_schema",
            "json_schema": {"name": "n", "schema": {"oneOf": []}}}}),
            "response_format",
        ),
        (
            json!({"job_id": "b3", "prompt": "p", "response_format": {"type": "yaml"}}),
            "response_format",
        ),
    ] {
        let resp = w
            .client
            .post(w.url("/execute"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let e: Value = resp.json().await.unwrap();
        assert_eq!(e["code"], "INVALID_REQUEST", "{e}");
        assert_eq!(e["field"], field, "{e}");
    }
}

/// A byte-level vocabulary of printable ASCII without `z` and `~` (96 tokens, 0-2 control,
/// 2 the EOS): no token can spell a `z`.
fn vocab_without_z() -> orcd_model::gguf::GgufFile {
    use orcd_model::gguf::{GgufFile, GgufWriter, MetaArray, MetaValue};
    let mut tokens: Vec<String> = vec!["<s>".into(), "<pad>".into(), "</s>".into()];
    tokens.extend((0x20u8..0x7f).filter(|&b| b != b'z' && b != b'~').map(|b| {
        if b == b' ' {
            "\u{120}".to_string()
        } else {
            (b as char).to_string()
        }
    }));
    assert_eq!(tokens.len(), 96);
    let types: Vec<i32> = (0..96).map(|i| if i < 3 { 3 } else { 1 }).collect();
    let mut w = GgufWriter::new();
    let meta = [
        ("general.architecture", MetaValue::Str("llama".into())),
        ("tokenizer.ggml.model", MetaValue::Str("gpt2".into())),
        ("tokenizer.ggml.pre", MetaValue::Str("default".into())),
        (
            "tokenizer.ggml.tokens",
            MetaValue::Array(MetaArray::Str(tokens)),
        ),
        (
            "tokenizer.ggml.token_type",
            MetaValue::Array(MetaArray::I32(types)),
        ),
        (
            "tokenizer.ggml.merges",
            MetaValue::Array(MetaArray::Str(Vec::new())),
        ),
        ("tokenizer.ggml.bos_token_id", MetaValue::U32(0)),
        ("tokenizer.ggml.eos_token_id", MetaValue::U32(2)),
    ];
    for (k, v) in meta {
        w.add_metadata(k, v).unwrap();
    }
    GgufFile::from_bytes(w.to_bytes().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constraint_the_vocabulary_cannot_finish_ends_with_constraint_dead_end() {
    use orcd_tools::synth::{SynthOptions, shape, synthesize};
    let path = std::env::temp_dir().join(format!("orcd-no-z-{}.gguf", std::process::id()));
    let opts = SynthOptions {
        shape: shape("smollm2-135m").unwrap(),
        ty: orcd_model::quant::GgmlType::Q8_0,
        embed_ty: None,
        layers: Some(1),
        experts: None,
        seed: 1,
        output_std: None,
    };
    synthesize(&opts, &vocab_without_z(), &path).expect("synthesize");
    let (plugins, mut facts, _model) = plugins_for(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(facts.vocab_size, 96);
    facts.context_length = MOCK_CONTEXT;
    let w = start(
        Box::new(mock_device(96, 4096)),
        plugins,
        facts,
        test_options(2, 2),
    )
    .await;
    // `a` is the only way in; after it, only `z` could go on.
    let ev = w
        .execute(&json!({"job_id": "dead", "prompt": "ab", "max_tokens": 10, "regex": "az"}))
        .await;
    assert_well_formed(&ev);
    assert_eq!(text_of(&ev), "a", "{ev:?}");
    let end = terminal(&ev);
    assert_eq!(end.event, "error", "{ev:?}");
    assert_eq!(end.data["code"], "CONSTRAINT_DEAD_END", "{ev:?}");
    // The worker keeps serving, constrained or not.
    let ev = w
        .execute(&json!({"job_id": "ok", "prompt": "ab", "max_tokens": 3, "regex": "b+c"}))
        .await;
    assert_eq!(terminal(&ev).event, "end", "{ev:?}");
    assert!(text_of(&ev).starts_with('b'), "{ev:?}");
}
