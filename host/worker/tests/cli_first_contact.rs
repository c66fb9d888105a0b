//! The `worker-orcd` binary as a new user meets it: `--version` names the plugins built in;
//! compiled plugins are cached per user by default (`--plugin-cache` moves the cache,
//! `--no-plugin-cache` turns it off) and a second run reuses them; the server binds loopback by
//! default, warns when it listens beyond loopback without a key, and takes the key from
//! `ORCD_API_KEY` (out of `ps`).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::SystemTime;

use common::*;
use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("first-contact")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_worker-orcd"))
}

#[test]
fn version_names_the_builtin_plugins_and_their_versions() {
    let out = worker_orcd(&["--version"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("worker-orcd {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "plugin contract: worker:plugin@{}",
            orcd_plugin_host::CONTRACT_VERSION
        )),
        "{text}"
    );
    assert_eq!(orcd_plugin_host::CONTRACT_VERSION, "0.2.0");
    let builtins = orcd_plugin_host::builtin_plugins();
    let names: Vec<&str> = builtins.iter().map(|b| b.crate_name).collect();
    assert_eq!(
        names,
        [
            "orcd-tokenizer",
            "orcd-sampler-standard",
            "orcd-handler",
            "orcd-constraint"
        ]
    );
    for b in builtins {
        assert!(
            text.contains(&format!("{} {}", b.crate_name, b.version)),
            "{text}"
        );
    }
}

/// `*.cwasm` files in `dir` and their modification times.
fn compiled(dir: &Path) -> BTreeMap<PathBuf, SystemTime> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
                .map(|p| {
                    let t = std::fs::metadata(&p).unwrap().modified().unwrap();
                    (p, t)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn tokenize(home: &Path, extra: &[&str]) -> Vec<u8> {
    let out = bin()
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", home)
        .args(["tokenize", "--json", "--model"])
        .arg(smollm2_path())
        .args(extra)
        .arg("Hello, world")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn compiled_plugins_are_cached_per_user_by_default_and_reused() {
    let home = scratch("home");
    let default_cache = home.join(".cache/worker-orcd/plugins");
    let first = tokenize(&home, &[]);
    let after_first = compiled(&default_cache);
    assert_eq!(after_first.len(), 4, "{after_first:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&default_cache)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "the cache folder must be private");
    }
    // The second run loads them: nothing is compiled or rewritten.
    let second = tokenize(&home, &[]);
    assert_eq!(first, second);
    assert_eq!(compiled(&default_cache), after_first);

    // XDG_CACHE_HOME moves the default; --plugin-cache moves it anywhere.
    let moved = scratch("moved");
    tokenize(&home, &["--plugin-cache", moved.to_str().unwrap()]);
    assert_eq!(compiled(&moved).len(), 4);

    // --no-plugin-cache reads and writes nothing.
    let off_home = scratch("off-home");
    let off = tokenize(&off_home, &["--no-plugin-cache"]);
    assert_eq!(off, first);
    assert!(!off_home.join(".cache").exists());
    let both = bin()
        .args(["tokenize", "--no-plugin-cache", "--plugin-cache", "/tmp/x"])
        .args(["--model", "m.gguf", "t"])
        .output()
        .unwrap();
    assert!(
        !both.status.success(),
        "the two flags contradict each other"
    );
}

/// A `worker-orcd` server on SmolLM2 (CPU) with JSON logs; returns it and its `ready` line.
fn serve(args: &[&str], envs: &[(&str, &str)]) -> (Child, Vec<Value>) {
    let cache = scratch("serve-cache");
    let mut child = bin()
        .args([
            "--backend",
            "cpu",
            "--threads",
            "1",
            "--port",
            "0",
            "--log-json",
        ])
        .arg("--model")
        .arg(smollm2_path())
        .arg("--plugin-cache")
        .arg(&cache)
        .args(args)
        .env_remove("ORCD_API_KEY")
        .envs(envs.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in reader.by_ref() {
        let line = line.unwrap();
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let ready = v["event"] == "ready";
        lines.push(v);
        if ready {
            // Keep reading, so the worker's later log lines have somewhere to go.
            std::thread::spawn(move || reader.for_each(drop));
            return (child, lines);
        }
    }
    let status = child.wait();
    panic!("the worker exited ({status:?}) before it was ready: {lines:?}");
}

fn addr_of(lines: &[Value]) -> String {
    lines.last().unwrap()["addr"].as_str().unwrap().to_string()
}

/// `POST /shutdown` over a plain socket, then the process exits 0.
fn shut_down(mut child: Child, port: &str, key: Option<&str>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
    let auth = key
        .map(|k| format!("authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "POST /shutdown HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: 0\r\n{auth}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert!(child.wait().unwrap().success());
}

#[test]
fn the_server_binds_loopback_and_warns_when_open_without_a_key() {
    let (child, lines) = serve(&[], &[]);
    let addr = addr_of(&lines);
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    assert!(
        !lines.iter().any(|l| l["event"] == "open_listener"),
        "{lines:?}"
    );
    let port = addr.rsplit(':').next().unwrap().to_string();
    shut_down(child, &port, None);

    let (child, lines) = serve(&["--bind", "0.0.0.0"], &[]);
    let warning = lines
        .iter()
        .find(|l| l["event"] == "open_listener")
        .unwrap_or_else(|| panic!("no warning: {lines:?}"));
    assert_eq!(warning["level"], "WARN");
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("ORCD_API_KEY"),
        "{warning}"
    );
    let addr = addr_of(&lines);
    assert!(addr.starts_with("0.0.0.0:"), "{addr}");
    let port = addr.rsplit(':').next().unwrap().to_string();
    shut_down(child, &port, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_comes_from_the_environment() {
    let key = "from-the-environment";
    let (child, lines) = serve(
        &["--bind", "0.0.0.0", "--served-model-name", "smol"],
        &[("ORCD_API_KEY", key)],
    );
    assert!(
        !lines.iter().any(|l| l["event"] == "open_listener"),
        "a keyed worker needs no warning: {lines:?}"
    );
    let port = addr_of(&lines).rsplit(':').next().unwrap().to_string();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let open = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(open.status(), 200);
    let r = client
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client
        .get(format!("{base}/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"][0]["id"], "smol");
    shut_down(child, &port, Some(key));
}
