//! `worker-orcd bench` end to end on the CPU backend: a one-layer random-weight model of
//! SmolLM2's shape, small sizes; the JSON report has every row and every row ran. No timing is
//! asserted.

mod common;

use serde_json::Value;

use common::{smollm2_path, worker_orcd};

#[test]
fn bench_reports_every_row_on_a_tiny_cpu_model() {
    let dir = std::env::temp_dir().join(format!("orcd-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let model = dir.join("tiny.gguf");
    let model_s = model.to_str().expect("utf-8 path");
    let vocab = smollm2_path();
    let synth = worker_orcd(&[
        "synth",
        "--shape",
        "smollm2-135m",
        "--type",
        "q4_0",
        "--layers",
        "1",
        "--vocab-from",
        vocab.to_str().expect("utf-8 path"),
        "--out",
        model_s,
    ]);
    assert!(
        synth.status.success(),
        "{}",
        String::from_utf8_lossy(&synth.stderr)
    );

    let out = worker_orcd(&[
        "bench",
        "--model",
        model_s,
        "--backend",
        "cpu",
        "--threads",
        "2",
        "--repeats",
        "2",
        "--pp",
        "32",
        "--tg",
        "8",
        "--batches",
        "2,4",
        "--batch-prompt",
        "8",
        "--batch-tg",
        "4",
        "--ttft-prompt",
        "16",
        "--ttft-repeats",
        "2",
        "--plugin-iters",
        "10",
        "--shared-seqs",
        "3",
        "--shared-prefix",
        "80",
        "--shared-unique",
        "4",
        "--shared-tg",
        "3",
        "--constrained-seqs",
        "2",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report on stdout");

    assert_eq!(report["setup"]["backend"], "cpu");
    assert!(
        report["setup"]["device"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    let rows = report["rows"].as_array().expect("rows");
    let ids: Vec<&str> = rows.iter().filter_map(|r| r["id"].as_str()).collect();
    let expected = [
        "load",
        "memory",
        "kv_capacity",
        "pp32",
        "tg8",
        "batch2",
        "batch4",
        "plugin_greedy",
        "plugin_topk",
        "ttft_http",
        "shared3_cold",
        "shared3_warm",
        "constrained2_free",
        "constrained2_json",
    ];
    assert_eq!(ids, expected, "{stderr}");
    for r in rows {
        assert_eq!(r["ok"], true, "{r}");
        let v = r["value"].as_f64().expect("a value");
        assert!(v.is_finite() && v > 0.0, "{r}");
    }
    // The shared-prefix workload computes the 80-token system prompt (five 16-token blocks)
    // once: in the cold round the later requests copy it from the first while it runs (or from
    // the prefix cache if it already ended), in the warm round every request copies it from
    // the slots the cold round left cached.
    let detail = |id: &str| {
        rows.iter()
            .find(|r| r["id"] == id)
            .and_then(|r| r["detail"].as_str())
            .expect(id)
            .to_string()
    };
    let copied = |id: &str| -> f64 {
        let d = detail(id);
        let counts = d.split("prompt tokens copied: ").nth(1).expect(&d);
        let count = |what: &str| -> f64 {
            let before = counts.split(what).next().expect(&d);
            before
                .trim()
                .rsplit(' ')
                .next()
                .expect(&d)
                .parse()
                .expect(&d)
        };
        count(" from the prefix cache") + count(" from running sequences")
    };
    assert!(
        copied("shared3_cold") >= 2.0 * 64.0,
        "{}",
        detail("shared3_cold")
    );
    assert!(
        copied("shared3_warm") >= 3.0 * 64.0,
        "{}",
        detail("shared3_warm")
    );
    assert!(
        detail("kv_capacity").contains("q8_0"),
        "{}",
        detail("kv_capacity")
    );

    // The human table went to stderr with the same rows.
    for id in expected {
        assert!(
            stderr.contains(&format!("| {id} ")),
            "{id} missing from:\n{stderr}"
        );
    }

    // A part that cannot run (a sequence longer than the context) says why in its row, and
    // the bench still reports the others.
    let out = worker_orcd(&[
        "bench",
        "--model",
        model_s,
        "--backend",
        "cpu",
        "--threads",
        "2",
        "--repeats",
        "1",
        "--skip",
        "pp,http,plugin",
        "--tg",
        "4",
        "--batches",
        "1",
        "--batch-prompt",
        "100000",
        "--batch-tg",
        "1",
        "--json",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report on stdout");
    let rows = report["rows"].as_array().expect("rows");
    let row = |id: &str| rows.iter().find(|r| r["id"] == id).expect(id).clone();
    assert_eq!(row("tg4")["ok"], true);
    let failed = row("batch1");
    assert_eq!(failed["ok"], false);
    assert!(failed["value"].is_null());
    assert!(
        failed["detail"]
            .as_str()
            .is_some_and(|d| d.contains("FAILED") && d.contains("context")),
        "{failed}"
    );
}
