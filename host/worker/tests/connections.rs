//! The connection layer over real sockets: slowloris heads, idle and kept-alive connections,
//! slow and lying bodies, and the connection cap, each ended within the configured bound while
//! `/health` keeps answering. Bounds are short here; the deadlines the tests wait for are
//! generous (several times the bound), so they assert "closed", not a timing.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use worker_orcd::server::{BodyRate, ConnectionLimits};

/// Every test waits at most this long for a connection to be closed.
const DEADLINE: Duration = Duration::from_secs(15);

fn limits(max_connections: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_secs(1),
        body: BodyRate {
            grace: Duration::from_secs(1),
            min_rate: 100,
        },
        max_connections,
    }
}

async fn worker_with(limits: ConnectionLimits) -> TestWorker {
    let (plugins, mut facts, _model) = smollm2_plugins();
    let device = orcd_device::mock::MockDevice::with_options(
        facts.vocab_size,
        7,
        orcd_device::mock::MockOptions {
            context_length: 2048,
            kv_tokens: 4096,
            ..Default::default()
        },
    )
    .unwrap();
    facts.context_length = 2048;
    let mut options = test_options(4, 16);
    options.connections = limits;
    start(Box::new(device), plugins, facts, options).await
}

/// Whether the server has closed `tcp` (EOF or reset) within `wait`; bytes it sends first
/// (an error response) are collected into `got`.
async fn closed_within(tcp: &mut TcpStream, wait: Duration, got: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    let end = Instant::now() + wait;
    loop {
        match timeout(
            end.saturating_duration_since(Instant::now()),
            tcp.read(&mut buf),
        )
        .await
        {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One request on a fresh connection (`Connection: close`): status and JSON body.
async fn raw_get(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    assert!(closed_within(&mut tcp, DEADLINE, &mut got).await);
    parse_response(&got)
}

fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// `/health` answers 200 on a fresh connection, well within the deadline.
async fn health_answers(addr: SocketAddr) {
    let (status, body) = timeout(Duration::from_secs(5), raw_get(addr, "/health"))
        .await
        .expect("/health answers while connections are attacked");
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_heads_are_closed_and_health_stays_up() {
    let w = worker_with(limits(512)).await;
    let addr = w.worker.addr;
    let mut attackers = Vec::new();
    for _ in 0..50 {
        attackers.push(TcpStream::connect(addr).await.unwrap());
    }
    let head = b"POST /execute HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let started = Instant::now();
    let mut open: Vec<bool> = vec![true; attackers.len()];
    // One byte every 0.5 s on every connection until the server has closed them all.
    'drip: for byte in head.iter().cycle() {
        for (tcp, open) in attackers.iter_mut().zip(open.iter_mut()) {
            if *open && tcp.write_all(&[*byte]).await.is_err() {
                *open = false;
            }
        }
        let mut got = Vec::new();
        for (tcp, open) in attackers.iter_mut().zip(open.iter_mut()) {
            if *open && closed_within(tcp, Duration::from_millis(10), &mut got).await {
                *open = false;
            }
        }
        if open.iter().all(|o| !o) {
            break 'drip;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{} slowloris connections still open",
            open.iter().filter(|o| **o).count()
        );
        health_answers(addr).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    health_answers(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_kept_alive_connections_are_closed() {
    let w = worker_with(limits(512)).await;
    let addr = w.worker.addr;
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // A kept-alive connection after one full request.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = timeout(DEADLINE, kept.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(parse_response(&buf[..n]).0, 200);
    health_answers(addr).await;
    let mut got = Vec::new();
    assert!(closed_within(&mut kept, DEADLINE, &mut got).await);
    // hyper may answer the timeout with 408 before closing.
    if !got.is_empty() {
        assert_eq!(parse_response(&got).0, 408);
    }
    for tcp in &mut idle {
        assert!(closed_within(tcp, DEADLINE, &mut got).await);
    }
    health_answers(addr).await;
}

/// Send a head announcing `content_length`, then `sent` body bytes, then nothing more; the
/// server must answer and close.
async fn stalled_body_is_cut(addr: SocketAddr, content_length: u64, drip: bool) -> (u16, Value) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /execute HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {content_length}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    if drip {
        // One byte every 0.3 s, well under the 100 B/s minimum.
        let started = Instant::now();
        loop {
            if tcp.write_all(b" ").await.is_err()
                || closed_within(&mut tcp, Duration::from_millis(300), &mut got).await
            {
                break;
            }
            assert!(started.elapsed() < DEADLINE, "a dripping body was not cut");
        }
    } else {
        tcp.write_all(b"{\"job_id\":").await.unwrap();
        assert!(closed_within(&mut tcp, DEADLINE, &mut got).await);
    }
    parse_response(&got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_and_dripping_bodies_are_cut() {
    let w = worker_with(limits(512)).await;
    let addr = w.worker.addr;
    let (status, body) = stalled_body_is_cut(addr, 10_000_000_000, false).await;
    assert!((400..500).contains(&status), "{status} {body}");
    let (status, body) = stalled_body_is_cut(addr, 100_000, false).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "INVALID_REQUEST", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("too slowly"),
        "{body}"
    );
    let (status, body) = stalled_body_is_cut(addr, 1000, true).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("too slowly"),
        "{body}"
    );
    health_answers(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_and_the_cap_frees_up() {
    let mut l = limits(4);
    // Long enough that the held connections outlive the checks below.
    l.header_read_timeout = Duration::from_secs(30);
    let w = worker_with(l).await;
    let addr = w.worker.addr;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    for _ in 0..3 {
        let (status, body) = raw_get(addr, "/health").await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["code"], "WORKER_BUSY", "{body}");
        assert_eq!(body["retriable"], true, "{body}");
    }
    drop(held);
    let started = Instant::now();
    loop {
        let (status, _) = raw_get(addr, "/health").await;
        if status == 200 {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "the cap never freed up");
        tokio::time::sleep(Duration::from_millis(50)).await;
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
    assert!(
        metrics.contains("worker_connections_refused_total"),
        "{metrics}"
    );
}
