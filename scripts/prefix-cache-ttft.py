#!/usr/bin/env python3
"""Time to first token of a request whose long prompt start is cached, against the same worker
with `--no-prefix-cache` (issue 15's prefix caching, figures in NOTES.md).

    scripts/prefix-cache-ttft.py WORKER_BINARY MODEL [--backend cpu] [--prefix-tokens 1000]

For each setting (cache on, cache off) it starts `WORKER_BINARY --model MODEL`, sends one
request (the shared start plus question 0) to fill the cache, then REPEATS requests with the
same start and another question each, and prints the time from sending each `POST /execute` to
its first `token` event (medians and every run). Every request is greedy with `max_tokens: 1`.
Only the standard library: http.client reading the SSE stream line by line.
"""

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import time


def post_json(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, json.loads(data)


def first_token_ms(port, job_id, prompt):
    """Milliseconds from sending the request to its first `token` event; reads to the end."""
    body = json.dumps({"job_id": job_id, "prompt": prompt, "max_tokens": 1, "temperature": 0.0})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/execute", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise SystemExit(f"{job_id}: HTTP {r.status} {r.read()!r}")
    first, event, last = None, None, None
    while True:
        line = r.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line.startswith("event:"):
            event = line[6:].strip()
            last = event
            if event == "token" and first is None:
                first = (time.perf_counter() - t0) * 1000.0
    c.close()
    if first is None or last != "end":
        raise SystemExit(f"{job_id}: no token (last event {last})")
    return first


def wait_ready(port, proc):
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"worker exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("worker not ready after 300 s")


def shared_start(port, tokens):
    """A text of at least `tokens` tokens (sentences that differ by their numbers)."""
    text, i = "You are the assistant of a small library. ", 0
    while True:
        text += f"Rule {i}: the shelf of section {i} is dusted on day {i % 7}. "
        i += 1
        _, v = post_json(port, "/tokenize", {"content": text})
        if len(v["tokens"]) >= tokens:
            return text, len(v["tokens"])


def run(binary, model, backend, port, cache, prefix_tokens, repeats):
    args = [binary, "--model", model, "--backend", backend, "--port", str(port)]
    if not cache:
        args.append("--no-prefix-cache")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        start, n = shared_start(port, prefix_tokens)
        prompt = lambda q: f"{start}\nQuestion {q}: which shelf holds the atlases?\nAnswer:"
        first_token_ms(port, "fill", prompt(0))
        times = [first_token_ms(port, f"q{q}", prompt(q)) for q in range(1, repeats + 1)]
        _, m = http_get(port, "/metrics")
        hits = [l for l in m.splitlines() if l.startswith("worker_prefix_cache_hit")]
        return n, times, hits
    finally:
        proc.terminate()
        proc.wait()


def http_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("GET", path)
    r = c.getresponse()
    return r.status, r.read().decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("model")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--port", type=int, default=18471)
    ap.add_argument("--prefix-tokens", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    for cache in (True, False):
        n, times, hits = run(a.binary, a.model, a.backend, a.port, cache, a.prefix_tokens, a.repeats)
        label = "cache on " if cache else "cache off"
        print(
            f"{label}: shared start {n} tokens, first token median {statistics.median(times):.0f} ms "
            f"(runs {', '.join(f'{t:.0f}' for t in times)}) {' '.join(hits)}"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
