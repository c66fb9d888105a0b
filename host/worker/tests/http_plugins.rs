//! Samplers through every endpoint: `sampler` and `sampler_params` on `/execute`,
//! `/v1/completions` and `/v1/chat/completions`, checked at admission (an unknown sampler is
//! 400 `PLUGIN_NOT_FOUND`, a parameter the sampler's `validate` refuses is 400 naming the field,
//! before any event), unknown OpenAI body fields refused by name, and `GET /plugins`.

mod common;

use std::path::Path;

use common::{smollm2_path, start, test_options};
use serde_json::{Value, json};

/// A mock-device worker with SmolLM2's plugins plus the two example samplers in its folder.
async fn worker_with_examples() -> (common::TestWorker, std::path::PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::temp_dir().join(format!("orcd-http-plugins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for example in ["mirostat-sampler", "typical-sampler"] {
        let wasm = orcd_tests::guest::build_guest(&root, example);
        std::fs::copy(&wasm, dir.join(format!("{example}.wasm"))).unwrap();
    }
    let path = smollm2_path();
    let model = orcd_model::Model::open(&path).expect("SmolLM2 loads");
    let facts = worker_orcd::model_facts::model_facts(&model, &path);
    let plugins = worker_orcd::plugin_bridge::load(Some(&dir), &model, None).expect("plugins load");
    let device = orcd_device::mock::MockDevice::new(facts.vocab_size, 7).expect("mock device");
    let w = start(Box::new(device), plugins, facts, test_options(2, 4)).await;
    (w, dir)
}

async fn post(w: &common::TestWorker, route: &str, body: &Value) -> (u16, Value) {
    let resp = w.client.post(w.url(route)).json(body).send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    if ct.starts_with("text/event-stream") {
        let events = common::read_sse(resp).await;
        let last = common::terminal(&events);
        return (
            status,
            json!({"sse_terminal": last.event, "data": last.data}),
        );
    }
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samplers_are_selected_and_checked_at_admission_on_every_endpoint() {
    let (w, dir) = worker_with_examples().await;

    // Selected and served through each endpoint.
    let (s, b) = post(
        &w,
        "/v1/completions",
        &json!({"prompt": "Once upon a time", "max_tokens": 4, "seed": 1,
                "sampler": "typical", "sampler_params": {"p": 0.8}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["usage"]["completion_tokens"], 4, "{b}");
    let (s, b) = post(
        &w,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "seed": 1,
                "sampler": "mirostat", "sampler_params": {"tau": 3.0}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = post(
        &w,
        "/execute",
        &json!({"job_id": "t1", "prompt": "Hello", "max_tokens": 3, "seed": 2,
                "sampler": "typical", "sampler_params": {"candidates": 32}}),
    )
    .await;
    assert_eq!((s, b["sse_terminal"].as_str()), (200, Some("end")), "{b}");

    // An unknown sampler: 400 PLUGIN_NOT_FOUND naming it once, on every endpoint.
    for (route, body) in [
        (
            "/execute",
            json!({"job_id": "nf", "prompt": "Hello", "sampler": "nosuch"}),
        ),
        (
            "/v1/completions",
            json!({"prompt": "Hello", "sampler": "nosuch"}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "Hi"}], "sampler": "nosuch"}),
        ),
    ] {
        let (s, b) = post(&w, route, &body).await;
        assert_eq!(s, 400, "{route}: {b}");
        let (code, message, field) = if route == "/execute" {
            (&b["code"], &b["message"], &b["field"])
        } else {
            (
                &b["error"]["code"],
                &b["error"]["message"],
                &b["error"]["param"],
            )
        };
        assert_eq!(code, "PLUGIN_NOT_FOUND", "{route}: {b}");
        assert_eq!(field, "sampler", "{route}: {b}");
        let message = message.as_str().unwrap();
        assert_eq!(message.matches("nosuch").count(), 1, "{message}");
        assert!(
            message.contains("typical"),
            "lists what is loaded: {message}"
        );
    }

    // A parameter the sampler refuses: 400 naming the field, before any event.
    for (route, body, field) in [
        (
            "/execute",
            json!({"job_id": "bad1", "prompt": "Hello", "sampler": "mirostat",
                   "sampler_params": {"tau": -1}}),
            "sampler_params.tau",
        ),
        (
            "/execute",
            json!({"job_id": "bad2", "prompt": "Hello", "sampler": "typical",
                   "sampler_params": {"tua": 1}}),
            "sampler_params.tua",
        ),
        (
            "/v1/completions",
            json!({"prompt": "Hello", "sampler": "typical", "sampler_params": {"p": 0}}),
            "sampler_params.p",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": [{"role": "user", "content": "Hi"}],
                   "sampler_params": {"tau": 5}}),
            "sampler_params.tau",
        ),
        (
            "/v1/completions",
            json!({"prompt": "Hello", "sampler_params": {"tau": "x"}}),
            "sampler_params.tau",
        ),
    ] {
        let (s, b) = post(&w, route, &body).await;
        assert_eq!(s, 400, "{route} {body}: {b}");
        let (code, got) = if route == "/execute" {
            (&b["code"], &b["field"])
        } else {
            (&b["error"]["code"], &b["error"]["param"])
        };
        assert_eq!(code, "INVALID_REQUEST", "{b}");
        assert_eq!(got, field, "{route} {body}: {b}");
    }

    // Unknown OpenAI body fields are refused by name; no-op values of OpenAI's own pass.
    let (s, b) = post(
        &w,
        "/v1/completions",
        &json!({"prompt": "Hello", "max_tokens": 2, "samplr": "typical"}),
    )
    .await;
    assert_eq!(
        (s, b["error"]["param"].as_str()),
        (400, Some("samplr")),
        "{b}"
    );
    let (s, b) = post(
        &w,
        "/v1/completions",
        &json!({"prompt": "Hello", "max_tokens": 2, "logprobs": null, "echo": false,
                "user": "u-1"}),
    )
    .await;
    assert_eq!(s, 200, "{b}");

    // What is loaded, by contract version.
    let list = w.get_json("/plugins").await;
    let plugins = list["plugins"].as_array().unwrap();
    let find = |name: &str| plugins.iter().find(|p| p["name"] == name).cloned();
    let typical = find("typical").expect("typical listed");
    assert_eq!(typical["kind"], "sampler");
    assert_eq!(typical["contract"], "0.2.0");
    assert!(
        typical["source"]
            .as_str()
            .unwrap()
            .ends_with("typical-sampler.wasm")
    );
    assert_eq!(find("standard").unwrap()["source"], "builtin");
    assert_eq!(list["load_failures"], json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Constrained decoding composes with any sampler: the mask is applied to the row on the
/// device before the sampler plugin reads it, so the example samplers (built outside this
/// repository's sampler) stay inside the constraint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constraints_compose_with_custom_samplers() {
    let (w, dir) = worker_with_examples().await;
    for (sampler, params) in [
        ("mirostat", json!({"tau": 3.0})),
        ("typical", json!({})),
        ("standard", json!({})),
    ] {
        for seed in [1u64, 2, 3] {
            let body = json!({"job_id": format!("c-{sampler}-{seed}"), "prompt": "Call me at",
                "max_tokens": 20, "temperature": 1.0, "seed": seed, "sampler": sampler,
                "sampler_params": params, "regex": r"[0-9]{3}-[0-9]{4}"});
            let events = w.execute(&body).await;
            let end = common::terminal(&events);
            assert_eq!(end.event, "end", "{sampler}: {events:?}");
            assert_eq!(end.data["stop_reason"], "eos", "{sampler}: {events:?}");
            let text = common::text_of(&events);
            let b = text.as_bytes();
            assert!(
                b.len() == 8
                    && b[3] == b'-'
                    && b[..3].iter().chain(&b[4..]).all(u8::is_ascii_digit),
                "{sampler} seed {seed}: {text:?}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}
