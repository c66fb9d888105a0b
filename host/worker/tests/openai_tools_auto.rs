//! `tool_choice: "auto"` (issue 16) on SmolLM2 on the CPU backend, served under a ChatML
//! template with Hermes-style tool calls (`tests/fixtures/hermes-tools-chatml.jinja`): the model
//! decides whether to call. An output that begins with `<tool_call>` becomes a call constrained
//! to the tools' schemas (`finish_reason: "tool_calls"`, streamed as a `tool_calls` delta);
//! any other output is the answer's text, streamed as it comes. Greedy, so the model's choice is
//! fixed by the conversation: one that shows it a call answered gets a call, a greeting gets
//! text.

mod common;

use common::*;
use serde_json::{Value, json};

const HERMES_TEMPLATE: &str = include_str!("fixtures/hermes-tools-chatml.jinja");

async fn hermes_worker() -> TestWorker {
    let (plugins, mut facts, model) = smollm2_plugins();
    facts.chat_template = Some(HERMES_TEMPLATE.to_string());
    let device = orcd_cpu::CpuBackend::new(
        model,
        orcd_cpu::CpuOptions {
            threads: 2,
            kv_tokens_budget: 4096,
            ..Default::default()
        },
    )
    .expect("CPU backend");
    start(Box::new(device), plugins, facts, test_options(2, 4)).await
}

async fn post(w: &TestWorker, body: &Value) -> (u16, Value) {
    let r = w
        .client
        .post(w.url("/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Every chunk of a streamed answer (`[DONE]` checked and dropped).
async fn post_stream(w: &TestWorker, body: &Value) -> Vec<Value> {
    let mut body = body.clone();
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
    events
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"], "additionalProperties": false}}})
}

fn time_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_time",
        "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"], "additionalProperties": false}}})
}

/// A conversation in which the assistant already called `get_weather` for two cities, then is
/// asked about a third. (With a tool's answer and a text reply after each call, SmolLM2 goes on
/// in text, `<tool_response>...` included, which departs from the marker: text.)
fn weather_conversation() -> Value {
    let call = |id: &str, city: &str| {
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": id,
            "type": "function", "function": {"name": "get_weather",
            "arguments": json!({"city": city}).to_string()}}]})
    };
    json!([
        {"role": "system", "content": "You answer weather questions by calling get_weather."},
        {"role": "user", "content": "Weather in Paris?"},
        call("call_1", "Paris"),
        {"role": "user", "content": "Weather in Rome?"},
        call("call_2", "Rome"),
        {"role": "user", "content": "Weather in London?"}
    ])
}

/// A call's name and arguments, checked against the tools' schemas.
fn check_call(call: &Value) -> (String, Value) {
    assert_eq!(call["type"], "function", "{call}");
    assert!(call["id"].as_str().unwrap().starts_with("call_"), "{call}");
    let name = call["function"]["name"].as_str().unwrap().to_string();
    let arguments = call["function"]["arguments"].as_str().unwrap();
    let a: Value = serde_json::from_str(arguments).unwrap_or_else(|e| panic!("{arguments}: {e}"));
    let key = match name.as_str() {
        "get_weather" => "city",
        "get_time" => "timezone",
        other => panic!("called {other}"),
    };
    assert!(a[key].is_string(), "{a}");
    assert_eq!(a.as_object().unwrap().len(), 1, "{a}");
    (name, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_calls_a_tool_when_the_model_writes_its_marker() {
    let w = hermes_worker().await;
    let tools = json!([weather_tool(), time_tool()]);
    // `tool_choice` left out: OpenAI's default with tools is `auto`.
    let body = json!({"messages": weather_conversation(), "tools": tools, "max_tokens": 40,
        "temperature": 0});
    let (s, v) = post(&w, &body).await;
    assert_eq!(s, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    assert!(choice["message"]["content"].is_null(), "{v}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    let (name, arguments) = check_call(&calls[0]);
    assert_eq!(name, "get_weather");
    assert_eq!(arguments, json!({"city": "London"}));

    // Streamed: the role, then the call whole in the last chunk; the marker never shows.
    let mut explicit = body.clone();
    explicit["tool_choice"] = json!("auto");
    let chunks = post_stream(&w, &explicit).await;
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "", "no text besides the call: {chunks:?}");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls", "{last}");
    let call = &last["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(call["index"], 0);
    assert_eq!(check_call(call), (name, arguments), "greedy: the same call");

    // The round trip: the call and its result go back, still under `auto`.
    let mut messages = weather_conversation().as_array().unwrap().clone();
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call.clone()]}));
    messages
        .push(json!({"role": "tool", "tool_call_id": call["id"], "content": "12 degrees, rain"}));
    let (s, v) = post(
        &w,
        &json!({"messages": messages, "tools": tools, "tool_choice": "auto",
            "max_tokens": 24, "temperature": 0}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let message = &v["choices"][0]["message"];
    match v["choices"][0]["finish_reason"].as_str().unwrap() {
        "tool_calls" => {
            check_call(&message["tool_calls"][0]);
        }
        _ => assert!(message["content"].is_string(), "{v}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_answers_in_text_when_the_model_does_not_call() {
    let w = hermes_worker().await;
    let body = json!({"messages": [{"role": "user", "content": "Say hello to my friend Anna."}],
        "tools": [weather_tool()], "tool_choice": "auto", "max_tokens": 16, "temperature": 0});
    let (s, v) = post(&w, &body).await;
    assert_eq!(s, 200, "{v}");
    let choice = &v["choices"][0];
    let greeting = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(!greeting.is_empty() && !greeting.starts_with('<'), "{v}");
    assert!(choice["message"].get("tool_calls").is_none(), "{v}");
    assert_ne!(choice["finish_reason"], "tool_calls");
    // Streamed as content deltas (several: text is not held back), the same text.
    let chunks = post_stream(&w, &body).await;
    let deltas: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|t| !t.is_empty())
        .collect();
    assert!(deltas.len() > 1, "{chunks:?}");
    assert_eq!(deltas.concat(), greeting);
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none())
    );
    // Text that begins like the marker and departs from it (`<tool_response>`, which SmolLM2
    // writes after a call it was shown answered) is held back only while it could still be the
    // marker, then goes out as text.
    let shown = json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
            "type": "function", "function": {"name": "get_weather",
            "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18 degrees, sunny"},
        {"role": "user", "content": "Weather in Rome?"}
    ]);
    let tagged = json!({"messages": shown, "tools": [weather_tool()], "max_tokens": 24,
        "temperature": 0});
    let (s, v) = post(&w, &tagged).await;
    assert_eq!(s, 200, "{v}");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.starts_with("<tool_"), "{v}");
    let chunks = post_stream(&w, &tagged).await;
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    // `n` = 2 under `auto`: each choice decides for itself (here both in text, greedy).
    let mut two = body.clone();
    two["n"] = json!(2);
    let (s, v) = post(&w, &two).await;
    assert_eq!(s, 200, "{v}");
    for c in v["choices"].as_array().unwrap() {
        assert_eq!(c["message"]["content"], json!(greeting), "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_is_refused_by_name_where_the_template_shows_no_marker() {
    // SmolLM2's own template knows no tool calls.
    let w = cpu_worker(2, 4, 2048).await;
    for choice in [json!("auto"), Value::Null] {
        let mut body = json!({"messages": [{"role": "user", "content": "Hi"}],
            "tools": [weather_tool()], "max_tokens": 4});
        if !choice.is_null() {
            body["tool_choice"] = choice;
        }
        let (s, v) = post(&w, &body).await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["param"], "tool_choice", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("marker"),
            "{v}"
        );
    }
}
