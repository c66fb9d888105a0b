//! `docs/openapi.yaml` against the running server: every documented path answers with a
//! documented status, JSON bodies carry the schema's required fields, the error codes listed
//! are the worker's.

mod common;

use common::*;
use serde_json::{Value, json};
use worker_orcd::error_code::ErrorCode;

fn doc() -> Value {
    serde_yaml::from_str(worker_orcd::server::OPENAPI_YAML).expect("openapi.yaml parses")
}

/// Resolve a `$ref` inside the document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut cur = doc;
            for part in r.trim_start_matches("#/").split('/') {
                cur = &cur[part];
            }
            resolve(doc, cur)
        }
        None => v,
    }
}

/// Check `body` against the required fields (recursively through objects and arrays).
fn check_shape(doc: &Value, schema: &Value, body: &Value, at: &str) {
    let schema = resolve(doc, schema);
    // A null value (a `nullable` field, e.g. `logprobs`) has no fields to check.
    if body.is_null() {
        return;
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check_shape(doc, s, body, at);
        }
        return;
    }
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req {
            let k = r.as_str().unwrap();
            assert!(
                body.get(k).is_some(),
                "{at}: missing required `{k}` in {body}"
            );
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, s) in props {
            if let Some(v) = body.get(k) {
                check_shape(doc, s, v, &format!("{at}.{k}"));
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), body.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check_shape(doc, items, v, &format!("{at}[{i}]"));
        }
    }
    if let (Some(en), Some(s)) = (schema.get("enum").and_then(Value::as_array), body.as_str()) {
        assert!(en.iter().any(|e| e == s), "{at}: `{s}` not in {en:?}");
    }
}

/// A valid request body for each documented POST path.
fn example_body(path: &str) -> Value {
    match path {
        "/execute" => json!({"job_id": "openapi", "prompt": "Hi", "max_tokens": 3, "seed": 1}),
        "/cancel" => json!({"job_id": "openapi"}),
        "/tokenize" => json!({"content": "Hi", "with_pieces": true}),
        "/detokenize" => json!({"tokens": [1, 2]}),
        "/v1/completions" => json!({"prompt": "Hi", "max_tokens": 3, "seed": 1}),
        "/v1/chat/completions" => {
            json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "seed": 1})
        }
        _ => json!({}),
    }
}

#[test]
fn documented_error_codes_are_the_workers() {
    let d = doc();
    let listed: Vec<String> = d["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    let ours: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    assert_eq!(listed, ours);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_path_answers_as_documented() {
    let d = doc();
    let w = mock_worker(4, 4, 1 << 16).await;
    let mut paths: Vec<(String, Value)> = d["paths"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // `/shutdown` last: it stops the worker.
    paths.sort_by_key(|(p, _)| p == "/shutdown");
    for (path, ops) in paths {
        for (method, op) in ops.as_object().unwrap() {
            let req = match method.as_str() {
                "get" => w.client.get(w.url(&path)),
                "post" => w.client.post(w.url(&path)).json(&example_body(&path)),
                m => panic!("undocumented method {m}"),
            };
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16().to_string();
            let documented = &op["responses"][&status];
            assert!(
                !documented.is_null(),
                "{method} {path} answered undocumented {status}"
            );
            let ctype = resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let documented = resolve(&d, documented);
            let content = documented["content"]
                .as_object()
                .expect("content documented");
            let media = content
                .keys()
                .find(|k| ctype.starts_with(k.as_str()))
                .unwrap_or_else(|| panic!("{method} {path}: content type {ctype} not documented"))
                .clone();
            let body = resp.text().await.unwrap();
            if media == "application/json" {
                let v: Value = serde_json::from_str(&body).unwrap();
                check_shape(
                    &d,
                    &content[&media]["schema"],
                    &v,
                    &format!("{method} {path}"),
                );
            }
            if media == "text/event-stream" && path == "/execute" {
                assert!(body.starts_with("event: started"), "{body}");
                assert!(body.contains("event: end"), "{body}");
            }
        }
    }
}

/// The rows of `docs/api.md`'s error-code table: (codes of the row, HTTP status, retriable).
fn api_md_error_rows() -> Vec<(Vec<String>, u16, bool)> {
    let md = include_str!("../../../docs/api.md");
    let table = md
        .split("## Error codes")
        .nth(1)
        .expect("docs/api.md has an `## Error codes` section");
    let mut rows = Vec::new();
    for line in table.lines().skip_while(|l| !l.starts_with('|')) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let codes: Vec<String> = cells[0]
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|c| c.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_'))
            .map(str::to_string)
            .collect();
        let Ok(status) = cells[1].parse::<u16>() else {
            continue; // the header and the separator
        };
        rows.push((codes, status, cells[2] == "yes"));
    }
    rows
}

#[test]
fn error_codes_in_api_md_are_the_workers_with_their_status() {
    let rows = api_md_error_rows();
    let mut documented: Vec<String> = rows.iter().flat_map(|(c, _, _)| c.clone()).collect();
    documented.sort();
    let mut ours: Vec<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_string())
        .collect();
    ours.sort();
    assert_eq!(documented, ours, "docs/api.md's error table vs ErrorCode");
    for (codes, status, retriable) in rows {
        for code in codes {
            let c =
                ErrorCode::from_wire(&code).unwrap_or_else(|| panic!("{code}: not an ErrorCode"));
            assert_eq!(
                c.http_status(),
                status,
                "{code}: HTTP status in docs/api.md"
            );
            assert_eq!(c.retriable(), retriable, "{code}: retriable in docs/api.md");
        }
    }
}
