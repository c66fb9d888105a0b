//! What a stranger can do to a worker, over real sockets: with `--api-key` every route but
//! `GET /health` needs the bearer key (401 otherwise, in the project's or OpenAI's error shape);
//! the control routes take only `application/json` (415 otherwise), so a cross-site "simple"
//! POST cannot stop the worker; the OpenAI routes serve any model name unless
//! `--served-model-name` restricts them (404 `MODEL_NOT_FOUND`), and `/v1/models` lists a
//! stable id; `/health` lists the plugins with their versions.

mod common;

use common::*;
use serde_json::{Value, json};
use worker_orcd::server::ApiKey;

const KEY: &str = "k3y-for-tests";

/// A mock-device worker with SmolLM2's plugins, an optional key and served names.
async fn worker(api_key: Option<&str>, served: &[&str]) -> TestWorker {
    let (plugins, mut facts, _model) = smollm2_plugins();
    facts.context_length = MOCK_CONTEXT;
    if let Some(first) = served.first() {
        facts.id = first.to_string();
        facts.served_names = served.iter().map(|s| s.to_string()).collect();
    }
    let mut options = test_options(2, 2);
    options.api_key = api_key.map(|k| ApiKey::new(k).unwrap());
    let device = mock_device(facts.vocab_size, 1 << 16);
    start(Box::new(device), plugins, facts, options).await
}

fn completion(model: Option<&str>) -> Value {
    let mut body = json!({"prompt": "Hi", "max_tokens": 2, "seed": 1, "temperature": 0});
    if let Some(m) = model {
        body["model"] = json!(m);
    }
    body
}

/// The error code of a body in either shape (`{"code"}` or OpenAI's `{"error":{"code"}}`).
fn code_of(v: &Value) -> &str {
    v["code"]
        .as_str()
        .or_else(|| v["error"]["code"].as_str())
        .unwrap_or_else(|| panic!("no error code in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_key_only_health_is_open() {
    let w = worker(Some(KEY), &[]).await;
    let health = w.client.get(w.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let routes: [(&str, &str, Option<Value>); 10] = [
        ("GET", "/v1/models", None),
        ("GET", "/metrics", None),
        ("GET", "/openapi.yaml", None),
        ("GET", "/no-such-route", None),
        ("POST", "/health", Some(json!({}))),
        (
            "POST",
            "/execute",
            Some(json!({"job_id": "a", "prompt": "Hi"})),
        ),
        ("POST", "/cancel", Some(json!({"job_id": "a"}))),
        ("POST", "/shutdown", Some(json!({}))),
        ("POST", "/v1/completions", Some(completion(None))),
        (
            "POST",
            "/v1/chat/completions",
            Some(json!({"messages": [{"role": "user", "content": "Hi"}]})),
        ),
    ];
    let bad_headers = [
        None,
        Some("Bearer wrong-key".to_string()),
        Some(format!("Bearer {KEY}x")),
        Some(format!("Basic {KEY}")),
        Some(KEY.to_string()),
    ];
    for (method, path, body) in &routes {
        for auth in &bad_headers {
            let mut req = match *method {
                "GET" => w.client.get(w.url(path)),
                _ => w.client.post(w.url(path)).json(body.as_ref().unwrap()),
            };
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(r.headers()["www-authenticate"], "Bearer", "{method} {path}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(code_of(&v), "UNAUTHORIZED", "{method} {path}: {v}");
            if path.starts_with("/v1/") {
                assert_eq!(v["error"]["type"], "authentication_error", "{v}");
            } else {
                assert_eq!(v["retriable"], false, "{v}");
            }
        }
    }
    // The worker is still up and serves the key's holder.
    let bearer = format!("Bearer {KEY}");
    for path in ["/v1/models", "/metrics", "/openapi.yaml"] {
        let r = w
            .client
            .get(w.url(path))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    let r = w
        .client
        .post(w.url("/execute"))
        .header("authorization", &bearer)
        .json(&json!({"job_id": "keyed", "prompt": "Hi", "max_tokens": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = read_sse(r).await;
    assert_well_formed(&events);
    assert_eq!(terminal(&events).event, "end");
    let r = w
        .client
        .post(w.url("/v1/completions"))
        .header("authorization", format!("bearer {KEY}"))
        .json(&completion(Some("anything")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!w.worker.state().shutting_down());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_routes_refuse_cross_site_simple_posts() {
    let w = worker(None, &[]).await;
    let simple = [
        ("text/plain", "{}"),
        ("text/plain;charset=UTF-8", ""),
        ("application/x-www-form-urlencoded", "job_id=a"),
        ("multipart/form-data; boundary=x", "--x--"),
    ];
    for path in ["/shutdown", "/cancel"] {
        for (ctype, body) in simple {
            let r = w
                .client
                .post(w.url(path))
                .header("content-type", ctype)
                .header("origin", "https://evil.example")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 415, "{path} {ctype}");
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["code"], "UNSUPPORTED_MEDIA_TYPE", "{v}");
        }
        // No content type at all (a body-less POST) is refused too.
        let r = w.client.post(w.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 415, "{path} without a content type");
    }
    assert!(!w.worker.state().shutting_down());
    let events = w
        .execute(&json!({"job_id": "after", "prompt": "Hi", "max_tokens": 2}))
        .await;
    assert_eq!(terminal(&events).event, "end");

    // The JSON forms work.
    let r = w
        .client
        .post(w.url("/cancel"))
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"job_id":"nobody"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = w
        .client
        .post(w.url("/shutdown"))
        .header("content-type", "application/json")
        .body("{\"now\": true}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        400,
        "unknown fields in the shutdown body are refused"
    );
    assert!(!w.worker.state().shutting_down());
    let r = w
        .client
        .post(w.url("/shutdown"))
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(w.worker.state().shutting_down());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_model_name_is_served_and_the_id_is_the_file_stem() {
    let w = worker(None, &[]).await;
    let models = w.get_json("/v1/models").await;
    let data = models["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{models}");
    assert_eq!(data[0]["id"], "SmolLM2-135M-Instruct.Q4_1");
    for (asked, reported) in [
        (Some("gpt-4o"), "gpt-4o"),
        (Some("x"), "x"),
        (None, "SmolLM2-135M-Instruct.Q4_1"),
    ] {
        let r = w
            .client
            .post(w.url("/v1/completions"))
            .json(&completion(asked))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asked:?}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["model"], reported, "{v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_model_names_restrict_what_clients_may_ask_for() {
    let w = worker(None, &["smol", "smol-alias"]).await;
    let models = w.get_json("/v1/models").await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["smol", "smol-alias"]);
    for name in ["smol", "smol-alias"] {
        let r = w
            .client
            .post(w.url("/v1/completions"))
            .json(&completion(Some(name)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name}");
    }
    for path in ["/v1/completions", "/v1/chat/completions"] {
        let body = if path.contains("chat") {
            json!({"model": "x", "messages": [{"role": "user", "content": "Hi"}]})
        } else {
            completion(Some("x"))
        };
        let r = w.client.post(w.url(path)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "MODEL_NOT_FOUND", "{v}");
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["error"]["param"], "model", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("`smol`"),
            "{v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_lists_the_plugins_with_their_versions() {
    let w = worker(Some(KEY), &[]).await;
    let h = w.get_json("/health").await;
    let plugins = h["plugins"].as_array().expect("plugins listed");
    let builtins = orcd_plugin_host::builtin_plugins();
    assert_eq!(builtins.len(), 4, "{builtins:?}");
    for kind in ["tokenizer", "sampler", "request-handler", "constraint"] {
        let p = plugins
            .iter()
            .find(|p| p["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {h}"));
        assert_eq!(p["source"], "builtin", "{p}");
        assert_eq!(p["contract"], orcd_plugin_host::CONTRACT_VERSION, "{p}");
        let version = p["version"].as_str().unwrap();
        assert!(
            builtins.iter().any(|b| b.version == version),
            "{p} vs {builtins:?}"
        );
    }
    assert!(plugins.iter().any(|p| p["name"] == "standard"), "{h}");
}
