//! A team-written constraint plugin (`examples/choice-constraint`) dropped into `--plugin-dir`
//! while the worker serves, selected per request with `constraint_plugin`: before it is there
//! the request is 400 `PLUGIN_NOT_FOUND`; once loaded, every output is one of its answers
//! (with a mock device's random logits, so only the mask keeps it there); what it does not
//! compile is a 400 naming the field, while the same request without `constraint_plugin`
//! still goes to the built-in plugin.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{assert_well_formed, read_sse, smollm2_path, start, terminal, test_options, text_of};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_constraint_plugin_added_while_serving_is_selected_per_request() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = orcd_tests::guest::build_guest(&root, "choice-constraint");
    let dir = std::env::temp_dir().join(format!("orcd-constraint-plugin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let path = smollm2_path();
    let model = orcd_model::Model::open(&path).expect("SmolLM2 loads");
    let facts = worker_orcd::model_facts::model_facts(&model, &path);
    let plugins =
        worker_orcd::plugin_bridge::load(Some(&dir), &model, Some(Duration::from_millis(100)))
            .expect("plugins load");
    let device = orcd_device::mock::MockDevice::new(facts.vocab_size, 7).expect("mock device");
    let w = start(Box::new(device), plugins, facts, test_options(2, 4)).await;

    let answers = ["yes", "no", "maybe", "not sure"];
    let body = |id: &str, seed: u64| {
        json!({"job_id": id, "prompt": "Is it raining?", "max_tokens": 12, "temperature": 1.0,
               "seed": seed, "regex": answers.join("|"), "constraint_plugin": "choice"})
    };
    let post = |body: Value| {
        let w = &w;
        async move {
            w.client
                .post(w.url("/execute"))
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };

    // Not there yet: refused before any event, naming the field.
    let refused = post(body("early", 1)).await;
    assert_eq!(refused.status(), 400);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["code"], "PLUGIN_NOT_FOUND", "{refused}");
    assert_eq!(refused["field"], "constraint_plugin", "{refused}");

    // Dropped into the folder while serving: picked up by the rescan.
    std::fs::copy(&wasm, dir.join("choice.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    let first = loop {
        attempt += 1;
        let resp = post(body(&format!("load-{attempt}"), 1)).await;
        if resp.status() == 200 {
            break read_sse(resp).await;
        }
        assert_eq!(resp.status(), 400);
        assert!(Instant::now() < deadline, "the plugin was never picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let plugins = w.get_json("/plugins").await;
    assert!(
        plugins["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "constraint" && p["name"] == "choice"),
        "{plugins}"
    );

    // Random logits: only the plugin's mask keeps every output an answer.
    let mut outputs = vec![first];
    for seed in 2..8 {
        outputs.push(read_sse(post(body(&format!("s{seed}"), seed)).await).await);
    }
    for ev in &outputs {
        assert_well_formed(ev);
        assert_eq!(terminal(ev).event, "end", "{ev:?}");
        assert_eq!(terminal(ev).data["stop_reason"], "eos", "{ev:?}");
        let text = text_of(ev);
        assert!(answers.contains(&text.as_str()), "{text:?}");
    }

    // Selected per request: the same regex language the built-in compiles is refused by
    // `choice` with its own message, and served by the built-in without `constraint_plugin`.
    let mut digits = body("digits", 3);
    digits["regex"] = json!("[0-9]{3}");
    let refused = post(digits.clone()).await;
    assert_eq!(refused.status(), 400);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["code"], "INVALID_REQUEST", "{refused}");
    assert_eq!(refused["field"], "regex", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("literal alternatives"),
        "{refused}"
    );
    digits.as_object_mut().unwrap().remove("constraint_plugin");
    let ev = read_sse(post(digits).await).await;
    assert_eq!(terminal(&ev).event, "end", "{ev:?}");
    let text = text_of(&ev);
    assert!(
        text.len() == 3 && text.bytes().all(|b| b.is_ascii_digit()),
        "{text:?}"
    );

    // A name no plugin has.
    let mut unknown = body("unknown", 1);
    unknown["constraint_plugin"] = json!("no-such-plugin");
    let refused: Value = post(unknown).await.json().await.unwrap();
    assert_eq!(refused["code"], "PLUGIN_NOT_FOUND", "{refused}");
    assert_eq!(refused["field"], "constraint_plugin", "{refused}");
    let _ = std::fs::remove_dir_all(&dir);
}
