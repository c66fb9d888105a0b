//! `tool_choice: "auto"` (issue 16) on SmolLM2 on the CPU backend, served under a ChatML
//! template with Hermes-style tool calls (`tests/fixtures/hermes-tools-chatml.jinja`): the model
//! decides whether to call. An output that begins with `<tool_call>` becomes calls constrained
//! to the tools' schemas (`finish_reason: "tool_calls"`, streamed as `tool_calls` deltas, one
//! per call with its `index`); any other output is the answer's text, streamed as it comes.
//! Greedy, so the model's choice is fixed by the conversation: one that shows it a call
//! answered gets a call, one that shows two calls per turn gets two, a greeting gets text.
//! Also `required` (calls in the model's own format), `parallel_tool_calls: false`, and
//! Mistral's `[TOOL_CALLS]` list form under Mistral Nemo's template.

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

/// The `tool_calls` entries of a streamed answer's deltas, in order, each checked to come
/// whole in its own chunk before the one that carries the finish reason.
fn streamed_calls(chunks: &[Value]) -> Vec<Value> {
    let mut calls = Vec::new();
    for c in chunks {
        if let Some(Value::Array(a)) = c["choices"][0]["delta"].get("tool_calls") {
            assert_eq!(a.len(), 1, "one call per chunk: {c}");
            assert!(c["choices"][0]["finish_reason"].is_null(), "{c}");
            calls.push(a[0].clone());
        }
    }
    calls
}

/// A call's name and arguments, checked against the tools' schemas.
fn check_call(call: &Value) -> (String, Value) {
    assert_eq!(call["type"], "function", "{call}");
    assert!(!call["id"].as_str().unwrap().is_empty(), "{call}");
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
    let streamed = streamed_calls(&chunks);
    assert_eq!(streamed.len(), 1, "{chunks:?}");
    let call = &streamed[0];
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

/// A conversation in which the assistant called `get_weather` twice in one turn, for the two
/// cities asked about, then is asked about two more.
fn two_city_conversation() -> Value {
    let calls = |ids: [&str; 2], cities: [&str; 2]| {
        let calls: Vec<Value> = ids
            .iter()
            .zip(cities)
            .map(|(id, city)| {
                json!({"id": id, "type": "function", "function": {"name": "get_weather",
                    "arguments": json!({"city": city}).to_string()}})
            })
            .collect();
        json!({"role": "assistant", "content": null, "tool_calls": calls})
    };
    json!([
        {"role": "system", "content": "You answer weather questions by calling get_weather once per city."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        calls(["call_1", "call_2"], ["Paris", "Rome"]),
        {"role": "user", "content": "Weather in Madrid and Berlin?"},
        calls(["call_3", "call_4"], ["Madrid", "Berlin"]),
        {"role": "user", "content": "Weather in London and Oslo?"}
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_writes_several_calls_in_one_choice() {
    let w = hermes_worker().await;
    // Room for two calls: the calls' constraint keeps only tokens after which the output can
    // still end within `max_tokens` (counting a byte per token), so a tight budget closes
    // the calls after the first.
    let body = json!({"messages": two_city_conversation(), "tools": [weather_tool(), time_tool()],
        "max_tokens": 200, "temperature": 0});
    let (s, v) = post(&w, &body).await;
    assert_eq!(s, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2, "{v}");
    let got: Vec<(String, Value)> = calls.iter().map(check_call).collect();
    assert_eq!(
        got,
        [
            ("get_weather".to_string(), json!({"city": "London"})),
            ("get_weather".to_string(), json!({"city": "Oslo"}))
        ]
    );
    assert_ne!(calls[0]["id"], calls[1]["id"], "distinct ids");

    // Streamed as OpenAI streams several calls: each with its `index`, then the finish.
    let chunks = post_stream(&w, &body).await;
    let streamed = streamed_calls(&chunks);
    assert_eq!(streamed.len(), 2, "{chunks:?}");
    for (k, call) in streamed.iter().enumerate() {
        assert_eq!(call["index"], k);
        assert_eq!(check_call(call), got[k]);
    }
    assert_ne!(streamed[0]["id"], streamed[1]["id"]);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls", "{last}");
    assert_eq!(last["choices"][0]["delta"], json!({}), "{last}");

    // `parallel_tool_calls: false`: one call, the same first one (greedy).
    let mut one = body.clone();
    one["parallel_tool_calls"] = json!(false);
    let (s, v) = post(&w, &one).await;
    assert_eq!(s, 200, "{v}");
    let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(check_call(&calls[0]), got[0]);

    // The round trip: both calls and both results go back, through the template.
    let mut messages = two_city_conversation().as_array().unwrap().clone();
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": streamed}));
    for (call, weather) in streamed.iter().zip(["rain", "snow"]) {
        messages.push(json!({"role": "tool", "tool_call_id": call["id"], "content": weather}));
    }
    let (s, v) = post(
        &w,
        &json!({"messages": messages, "tools": [weather_tool()], "max_tokens": 8,
            "temperature": 0}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_makes_the_model_call_in_its_own_format() {
    let w = hermes_worker().await;
    // A greeting gets text under `auto`; `required` makes it a call.
    let body = json!({"messages": [{"role": "user", "content": "Say hello to my friend Anna."}],
        "tools": [weather_tool(), time_tool()], "tool_choice": "required", "max_tokens": 40,
        "temperature": 0});
    let (s, v) = post(&w, &body).await;
    assert_eq!(s, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert!(!calls.is_empty(), "{v}");
    for c in calls {
        check_call(c);
    }
    // A named function: exactly one call, of that function.
    let mut named = body.clone();
    named["tool_choice"] = json!({"type": "function", "function": {"name": "get_time"}});
    let (s, v) = post(&w, &named).await;
    assert_eq!(s, 200, "{v}");
    let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{v}");
    assert_eq!(check_call(&calls[0]).0, "get_time");
}

const NEMO_TEMPLATE: &str =
    include_str!("fixtures/chat_templates/mistralai-Mistral-Nemo-Instruct-2407.jinja");

async fn nemo_worker() -> TestWorker {
    let (plugins, mut facts, model) = smollm2_plugins();
    facts.chat_template = Some(NEMO_TEMPLATE.to_string());
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

/// Mistral's list form (`[TOOL_CALLS][{...}, ...]`) under Mistral Nemo's own template, with
/// SmolLM2 writing the calls (its vocabulary spells `[TOOL_CALLS]` in pieces, so the marker
/// shows; SmolLM2 does not call on its own here, so `required` makes it): a conversation that
/// shows a turn with two calls gets several in one list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mistral_list_calls() {
    let w = nemo_worker().await;
    // Mistral's template takes only 9-character ids of letters and digits.
    let call = |id: &str, city: &str| {
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": id,
            "type": "function", "function": {"name": "get_weather",
            "arguments": json!({"city": city}).to_string()}}]})
    };
    let result = |id: &str, r: &str| json!({"role": "tool", "tool_call_id": id, "content": r});
    let two = json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "abcdefgh2", "type": "function", "function": {"name": "get_weather",
            "arguments": json!({"city": "Rome"}).to_string()}},
        {"id": "abcdefgh3", "type": "function", "function": {"name": "get_weather",
            "arguments": json!({"city": "Madrid"}).to_string()}}]});
    let messages = json!([
        {"role": "user", "content": "Weather in Paris?"},
        call("abcdefgh1", "Paris"),
        result("abcdefgh1", "\"sunny\""),
        {"role": "assistant", "content": "Sunny in Paris."},
        {"role": "user", "content": "Weather in Rome and Madrid?"},
        two,
        result("abcdefgh2", "\"rain\""),
        result("abcdefgh3", "\"hot\""),
        {"role": "assistant", "content": "Rain in Rome, hot in Madrid."},
        {"role": "user", "content": "Weather in London and Oslo?"}
    ]);
    let body = json!({"messages": messages, "tools": [weather_tool(), time_tool()],
        "tool_choice": "required", "max_tokens": 200, "temperature": 0});
    let (s, v) = post(&w, &body).await;
    assert_eq!(s, 200, "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    // Greedy: several calls in one list (how many, and the later ones' tools, are the small
    // model's own choice: it repeats calls until the list or `max_tokens` closes).
    assert!(calls.len() >= 2, "{v}");
    assert_eq!(
        check_call(&calls[0]),
        ("get_weather".to_string(), json!({"city": "London"}))
    );
    assert_ne!(calls[0]["id"], calls[1]["id"]);
    for c in calls {
        check_call(c);
        let id = c["id"].as_str().unwrap();
        assert!(
            id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{id}"
        );
    }
    // Streamed: the same calls, one chunk each.
    let chunks = post_stream(&w, &body).await;
    let streamed = streamed_calls(&chunks);
    assert_eq!(streamed.len(), calls.len(), "{chunks:?}");
    for (k, c) in streamed.iter().enumerate() {
        assert_eq!(c["index"], k);
        assert_eq!(check_call(c), check_call(&calls[k]));
    }
    // `parallel_tool_calls: false`: the list holds one call.
    let mut one = body.clone();
    one["parallel_tool_calls"] = json!(false);
    let (s, v) = post(&w, &one).await;
    assert_eq!(s, 200, "{v}");
    let single = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(single.len(), 1, "{v}");
    assert_eq!(check_call(&single[0]), check_call(&calls[0]));
    // The calls and their results go back through the template, which checks the ids.
    let mut round = messages.as_array().unwrap().clone();
    round.push(choice["message"].clone());
    for c in calls {
        round.push(result(c["id"].as_str().unwrap(), "\"fog\""));
    }
    let (s, v) = post(
        &w,
        &json!({"messages": round, "tools": [weather_tool()], "max_tokens": 8,
            "temperature": 0}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // `auto` is taken (the model answers in text here).
    let mut auto = body.clone();
    auto["tool_choice"] = json!("auto");
    auto["max_tokens"] = json!(8);
    let (s, v) = post(&w, &auto).await;
    assert_eq!(s, 200, "{v}");
}
