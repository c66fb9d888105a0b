//! The `worker-orcd` binary's lifecycle: startup order (the server answers before the ready
//! callback), a failed callback is fatal, SIGTERM drains running jobs and exits 0, a CUDA
//! backend without CUDA fails fast.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use common::*;
use serde_json::{Value, json};

const WORKER_ID: &str = "5b1f7a8e-8d0c-4a47-9d3e-1f2a3b4c5d6e";

fn worker_command(model: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_worker-orcd"));
    c.args([
        "--backend",
        "cpu",
        "--threads",
        "2",
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
    ])
    .arg("--model")
    .arg(model)
    .args(["--worker-id", WORKER_ID])
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the worker did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the callback endpoint saw: the body, and the worker's `/health` status fetched while
/// answering the callback (the server must already be up).
type Seen = Arc<Mutex<Option<(Value, u16)>>>;

async fn on_ready(State(seen): State<Seen>, Json(body): Json<Value>) -> &'static str {
    let uri = body["uri"].as_str().unwrap_or_default().to_string();
    let status = match reqwest::get(format!("{uri}/health")).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    };
    *seen.lock().unwrap() = Some((body, status));
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_after_the_server_answers_and_sigterm_drains_running_jobs() {
    let model = smollm2_path();
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cb_addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/ready", post(on_ready))
        .with_state(seen.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut child = worker_command(&model)
        .args(["--callback-url", &format!("http://{cb_addr}/ready")])
        .spawn()
        .unwrap();
    let start = Instant::now();
    let (body, health_status) = loop {
        if let Some(s) = seen.lock().unwrap().clone() {
            break s;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the worker exited during startup"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no ready callback"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        health_status, 200,
        "the server did not answer when the callback came"
    );
    assert_eq!(body["worker_id"], WORKER_ID);
    assert_eq!(body["model_ref"], model.display().to_string());
    assert!(body["vram_bytes"].as_u64().unwrap() > 0);
    let base = body["uri"].as_str().unwrap().to_string();

    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{base}/execute"))
        .json(
            &json!({"job_id": "drain", "prompt": "Count: one, two, three,", "max_tokens": 24,
                      "temperature": 0.0}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sigterm = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sigterm.success());
    let events = read_sse(resp).await;
    assert_well_formed(&events);
    assert_eq!(
        terminal(&events).event,
        "end",
        "the running job was lost: {events:?}"
    );
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(60)))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_failed_ready_callback_is_fatal() {
    let model = smollm2_path();
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let mut child = worker_command(&model)
        .args(["--callback-url", &format!("http://{addr}/ready")])
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(120));
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("callback"), "{stderr}");
}

#[test]
fn the_cuda_backend_without_cuda_fails_fast_with_no_cpu_fallback() {
    if orcd_cuda::driver_available() {
        eprintln!("skipped: a CUDA driver is present on this machine");
        return;
    }
    let model = smollm2_path();
    let out = Command::new(env!("CARGO_BIN_EXE_worker-orcd"))
        .args(["--backend", "cuda", "--bind", "127.0.0.1", "--port", "0"])
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.to_lowercase().contains("cuda"), "{stderr}");
    assert!(!stderr.contains("worker ready"), "{stderr}");
}

#[test]
fn bad_flags_are_clear_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_worker-orcd"))
        .args(["--backend", "cpu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--model"));
    let out = Command::new(env!("CARGO_BIN_EXE_worker-orcd"))
        .args([
            "--backend",
            "cpu",
            "--worker-id",
            "not-a-uuid",
            "--model",
            "/nonexistent.gguf",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("UUID"));
    let out = Command::new(env!("CARGO_BIN_EXE_worker-orcd"))
        .args(["--backend", "cpu", "--model", "/nonexistent.gguf"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MODEL_LOAD_FAILED"));
}
