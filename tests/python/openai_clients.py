"""Real Python clients against a running worker: the `openai` SDK drives /v1/completions and
/v1/chat/completions (streaming and not, and `response_format` json_schema over the schema
fixtures, outputs checked with `jsonschema`), `prometheus_client`'s parser reads /metrics.

Run by host/worker/tests/python_clients.rs with ORCD_BASE_URL and ORCD_API_KEY set (the worker
requires that key); exits non-zero on failure. Requests name models the worker has never heard of
("x", "gpt-4o-mini"): without --served-model-name it serves any name, as llama-server does.
"""

import json
import os
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import openai
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from harness import BASE, KEY, client, run



def models():
    listed = client.models.list()
    assert len(listed.data) == 1, listed
    assert listed.data[0].id == "SmolLM2-135M-Instruct.Q4_1", listed


def model_id():
    return client.models.list().data[0].id


def any_model_name():
    for name in ("x", "gpt-4o-mini"):
        whole = client.completions.create(model=name, prompt="Hello", max_tokens=2,
                                          temperature=0, seed=1)
        assert whole.choices[0].text, whole
        assert whole.model == name, whole.model
    chat = client.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi"}],
                                          max_tokens=2, temperature=0, seed=1)
    assert chat.model == "x", chat.model


def wrong_key():
    stranger = OpenAI(base_url=BASE + "/v1", api_key="not-the-key", max_retries=0, timeout=30)
    try:
        stranger.models.list()
    except openai.AuthenticationError as e:
        assert e.status_code == 401
        # The SDK keeps the error object's `code` (the worker's stable code) apart from the message.
        assert e.code == "UNAUTHORIZED", (e.code, e.body)
        return
    raise AssertionError("a wrong key was accepted")


def completions():
    kw = dict(model=model_id(), prompt="The capital of France is", max_tokens=8,
              temperature=0, seed=42)
    whole = client.completions.create(**kw)
    choice = whole.choices[0]
    assert choice.text, whole
    assert choice.finish_reason in ("stop", "length"), choice.finish_reason
    assert whole.usage.completion_tokens > 0 and whole.usage.prompt_tokens > 0, whole.usage
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    chunks = list(client.completions.create(stream=True, **kw))
    streamed = "".join(c.choices[0].text for c in chunks)
    assert streamed == choice.text, (streamed, choice.text)
    assert chunks[-1].choices[0].finish_reason == choice.finish_reason


def chat():
    kw = dict(model=model_id(), messages=[{"role": "user", "content": "Say hello in French."}],
              max_tokens=12, temperature=0, seed=1)
    whole = client.chat.completions.create(**kw)
    msg = whole.choices[0].message
    assert msg.role == "assistant", msg
    assert msg.content, whole
    streamed = ""
    finish = None
    for c in client.chat.completions.create(stream=True, **kw):
        delta = c.choices[0].delta
        streamed += delta.content or ""
        finish = c.choices[0].finish_reason or finish
    assert streamed == msg.content, (streamed, msg.content)
    assert finish == whole.choices[0].finish_reason


def bad_request():
    try:
        client.completions.create(model="x", prompt="x", max_tokens=4, temperature=3.0)
    except openai.BadRequestError as e:
        assert e.status_code == 400
        assert "temperature" in str(e), str(e)
        return
    raise AssertionError("temperature 3.0 was accepted")


def samplers():
    # The worker's extensions ride in extra_body, as with vLLM.
    ok = client.completions.create(model=model_id(), prompt="Once upon a time", max_tokens=4,
                                   seed=3, extra_body={"sampler": "standard",
                                                       "sampler_params": {"candidates": 32}})
    assert ok.choices[0].text is not None, ok
    chat_ok = client.chat.completions.create(
        model=model_id(), messages=[{"role": "user", "content": "Hi"}], max_tokens=3,
        extra_body={"sampler": "standard"})
    assert chat_ok.choices[0].message.role == "assistant", chat_ok
    for extra, code, param in [
        ({"sampler": "nosuch"}, "PLUGIN_NOT_FOUND", "sampler"),
        ({"sampler_params": {"tau": 5}}, "INVALID_REQUEST", "sampler_params.tau"),
        ({"samplr": "standard"}, "INVALID_REQUEST", "samplr"),
    ]:
        try:
            client.completions.create(model=model_id(), prompt="x", max_tokens=2,
                                      extra_body=extra)
        except openai.BadRequestError as e:
            assert e.status_code == 400
            assert e.body["code"] == code, e.body
            assert e.body["param"] == param, e.body
            continue
        raise AssertionError(f"{extra} was accepted")


def structured():
    path = os.path.join(os.path.dirname(__file__), "../fixtures/constraint/schemas.json")
    with open(path) as f:
        fixtures = json.load(f)

    def one(job):
        fx, temperature = job
        answer = client.chat.completions.create(
            model=model_id(), max_tokens=160, temperature=temperature, seed=42,
            messages=[{"role": "system", "content": "You answer with JSON only."},
                      {"role": "user", "content": f"Make up a realistic {fx['name']} record."}],
            response_format={"type": "json_schema", "json_schema": {
                "name": fx["name"], "schema": fx["schema"], "strict": True}},
)
        choice = answer.choices[0]
        assert choice.finish_reason == "stop", (fx["name"], choice)
        value = json.loads(choice.message.content)
        jsonschema.validate(value, fx["schema"])
        return fx["name"]

    jobs = [(fx, t) for fx in fixtures for t in (0.0, 0.8)]
    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(one, jobs))
    assert len(done) == len(jobs) >= 20, done
    # A schema the worker cannot enforce is a 400 naming the field.
    try:
        client.chat.completions.create(
            model=model_id(), max_tokens=4, messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_schema", "json_schema": {
                "name": "p", "schema": {"type": "string", "pattern": "a+"}}})
    except openai.BadRequestError as e:
        assert e.body["param"] == "response_format", e.body
        return
    raise AssertionError("a pattern schema was accepted")


def prometheus():
    req = urllib.request.Request(BASE + "/metrics", headers={"Authorization": f"Bearer {KEY}"})
    text = urllib.request.urlopen(req, timeout=30).read().decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in [
        ("worker_vram_bytes", "gauge"),
        ("worker_requests", "counter"),
        ("worker_tokens_generated", "counter"),
        ("worker_tokens_in", "counter"),
        ("worker_inference_duration_ms", "histogram"),
        ("worker_time_to_first_token_ms", "histogram"),
        ("worker_inter_token_latency_ms", "histogram"),
        ("worker_uptime_seconds", "gauge"),
    ]:
        assert name in families, f"{name} missing; have {sorted(families)}"
        assert families[name].type == kind, (name, families[name].type)
    outcomes = {s.labels.get("outcome") for s in families["worker_requests"].samples}
    assert {"success", "error", "cancelled", "timeout"} <= outcomes, outcomes
    success = [s.value for s in families["worker_requests"].samples
               if s.labels.get("outcome") == "success" and s.name.endswith("_total")]
    assert success and success[0] >= 4, success


run([("models", models), ("any_model_name", any_model_name),
     ("wrong_key", wrong_key), ("completions", completions), ("chat", chat),
     ("bad_request", bad_request), ("samplers", samplers),
     ("structured", structured), ("prometheus", prometheus)])
