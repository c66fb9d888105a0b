//! A sampler plugin dropped into `--plugin-dir` while the worker runs serves the next requests,
//! without a restart (the plugin folder is rescanned in the background); removed, it is
//! unloaded; a file that fails to load shows in `/health`; every change is counted in
//! `/metrics`.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{smollm2_path, start, terminal, test_options};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampler_added_while_running_serves_new_requests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = orcd_tests::guest::build_guest(&root, "mirostat-sampler");
    let dir = std::env::temp_dir().join(format!("orcd-plugin-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let path = smollm2_path();
    let model = orcd_model::Model::open(&path).expect("SmolLM2 loads");
    let facts = worker_orcd::model_facts::model_facts(&model, &path);
    let plugins =
        worker_orcd::plugin_bridge::load(Some(&dir), &model, Some(Duration::from_millis(100)))
            .expect("plugins load");
    let device = orcd_device::mock::MockDevice::new(facts.vocab_size, 7).expect("mock device");
    let w = start(Box::new(device), plugins, facts, test_options(2, 2)).await;

    let body = json!({"job_id": "m", "prompt": "Once upon a time", "max_tokens": 4,
                      "temperature": 0.8, "seed": 7, "sampler": "mirostat"});
    let refused = w
        .client
        .post(w.url("/execute"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let refused: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(refused["field"], "sampler", "{refused}");
    assert_eq!(refused["code"], "PLUGIN_NOT_FOUND", "{refused}");

    std::fs::copy(&wasm, dir.join("mirostat.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = w
            .client
            .post(w.url("/execute"))
            .json(&body)
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            let events = common::read_sse(resp).await;
            let end = terminal(&events);
            assert_eq!(end.event, "end", "{events:?}");
            assert_eq!(end.data["tokens_out"], 4);
            break;
        }
        assert_eq!(resp.status(), 400);
        assert!(
            Instant::now() < deadline,
            "the new sampler was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Removed: unloaded (no request in flight uses it), and the next request is refused.
    std::fs::remove_file(dir.join("mirostat.wasm")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    for attempt in 0.. {
        // A fresh job id each time: the last one may still be finishing.
        let mut body = body.clone();
        body["job_id"] = json!(format!("gone-{attempt}"));
        let resp = w
            .client
            .post(w.url("/execute"))
            .json(&body)
            .send()
            .await
            .unwrap();
        if resp.status() == 400 {
            let refused: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(refused["code"], "PLUGIN_NOT_FOUND", "{refused}");
            break;
        }
        let _ = common::read_sse(resp).await;
        assert!(
            Instant::now() < deadline,
            "the removed sampler kept serving"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = w
        .client
        .get(w.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "worker_plugin_changes_total{change=\"unloaded\"} 1",
        "worker_plugin_changes_total{change=\"released\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }

    // A file that fails to load is reported by /health with its error.
    std::fs::write(dir.join("broken.wasm"), b"not a component").unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = w.get_json("/health").await;
        let failures = health["plugin_load_failures"].as_array().unwrap();
        if let Some(f) = failures.first() {
            assert_eq!(f["code"], "PLUGIN_LOAD_FAILED", "{health}");
            assert!(
                f["path"].as_str().unwrap().ends_with("broken.wasm"),
                "{health}"
            );
            assert!(!f["message"].as_str().unwrap().is_empty());
            break;
        }
        assert!(Instant::now() < deadline, "the failure was never reported");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
