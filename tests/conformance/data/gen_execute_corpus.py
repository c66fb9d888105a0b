#!/usr/bin/env python3
"""Writes execute_invalid.json and execute_valid.json: /execute bodies the request handler must
refuse (each with the field its error must name) or accept (with values the job must carry).

Bodies are raw strings, so broken JSON and non-JSON content types can be expressed. The limits
the verdicts assume are in each file's "limits" object. Run: python3 gen_execute_corpus.py
"""
import json

LIMITS = {
    "max_prompt_chars": 32768,
    "max_tokens_cap": 2048,
    "vocab_size": 49152,
    "context_length": 8192,
    "samplers": ["standard", "mirostat"],
}
JSON = "application/json"


def body(**fields):
    base = {"job_id": "job-1", "prompt": "Hello"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not DROP}, ensure_ascii=False)


DROP = object()

invalid = [
    # (name, field, body, content type)
    ("missing job_id", "job_id", body(job_id=DROP), JSON),
    ("empty job_id", "job_id", body(job_id=""), JSON),
    ("job_id number", "job_id", body(job_id=17), JSON),
    ("job_id null", "job_id", body(job_id=None), JSON),
    ("job_id too long", "job_id", body(job_id="j" * 257), JSON),
    ("job_id control char", "job_id", body(job_id="a\nb"), JSON),
    ("missing prompt", "prompt", body(prompt=DROP), JSON),
    ("empty prompt", "prompt", body(prompt=""), JSON),
    ("prompt array", "prompt", body(prompt=["a"]), JSON),
    ("prompt over 32768 chars", "prompt", body(prompt="a" * 32769), JSON),
    ("max_tokens 0", "max_tokens", body(max_tokens=0), JSON),
    ("max_tokens 2049", "max_tokens", body(max_tokens=2049), JSON),
    ("max_tokens negative", "max_tokens", body(max_tokens=-5), JSON),
    ("max_tokens fraction", "max_tokens", body(max_tokens=10.5), JSON),
    ("max_tokens string", "max_tokens", body(max_tokens="10"), JSON),
    ("temperature negative", "temperature", body(temperature=-0.1), JSON),
    ("temperature above 2", "temperature", body(temperature=2.5), JSON),
    ("temperature string", "temperature", body(temperature="hot"), JSON),
    ("top_p above 1", "top_p", body(top_p=1.01), JSON),
    ("top_p negative", "top_p", body(top_p=-0.5), JSON),
    ("top_p boolean", "top_p", body(top_p=True), JSON),
    ("top_k negative", "top_k", body(top_k=-1), JSON),
    ("top_k above vocab", "top_k", body(top_k=49153), JSON),
    ("top_k fraction", "top_k", body(top_k=4.5), JSON),
    ("repetition_penalty above 2", "repetition_penalty", body(repetition_penalty=2.5), JSON),
    ("repetition_penalty negative", "repetition_penalty", body(repetition_penalty=-1), JSON),
    ("repetition_penalty object", "repetition_penalty", body(repetition_penalty={"x": 1}), JSON),
    ("min_p above 1", "min_p", body(min_p=1.5), JSON),
    ("min_p negative", "min_p", body(min_p=-0.01), JSON),
    ("stop five sequences", "stop", body(stop=["a", "b", "c", "d", "e"]), JSON),
    ("stop string not array", "stop", body(stop="END"), JSON),
    ("stop item number", "stop[0]", body(stop=[5]), JSON),
    ("stop item empty", "stop[1]", body(stop=["a", ""]), JSON),
    ("seed negative", "seed", body(seed=-1), JSON),
    ("seed fraction", "seed", body(seed=1.5), JSON),
    ("seed string", "seed", body(seed="42"), JSON),
    ("seed u64 max plus one", "seed", body(seed=18446744073709551616), JSON),
    ("seed above u64", "body", body(seed=DROP)[:-1] + ', "seed": 1e400}', JSON),
    ("sampler not a plugin name", "sampler", body(sampler="Beam Search"), JSON),
    ("sampler number", "sampler", body(sampler=3), JSON),
    ("sampler_params not object", "sampler_params", body(sampler_params=[1]), JSON),
    ("sampler_params value string", "sampler_params.tau", body(sampler_params={"tau": "x"}), JSON),
    ("presence_penalty above 2", "presence_penalty", body(presence_penalty=3), JSON),
    ("unknown field", "temprature", body(temprature=0.5), JSON),
    ("unknown field stream", "stream", body(stream=True), JSON),
    ("prompt given twice", "prompt", '{"job_id": "j", "prompt": "a", "prompt": "b"}', JSON),
    ("seed given twice", "seed", '{"job_id": "j", "prompt": "a", "seed": 1, "seed": 2}', JSON),
    ("broken JSON", "body", '{"job_id": "j", "prompt": "p"', JSON),
    ("trailing garbage", "body", body() + " x", JSON),
    ("empty body", "body", "", JSON),
    ("array body", "body", '["job_id", "prompt"]', JSON),
    ("string body", "body", '"hello"', JSON),
    ("null body", "body", "null", JSON),
    ("text/plain content type", "content-type", body(), "text/plain"),
    ("form content type", "content-type", body(), "application/x-www-form-urlencoded"),
    ("missing content type", "content-type", body(), ""),
    ("latin1 charset", "content-type", body(), "application/json; charset=iso-8859-1"),
]

valid = [
    ("minimal", body(), {"max_tokens": 2048, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                          "min_p": 0.0, "repetition_penalty": 1.0, "stop": [], "seed": None,
                          "sampler": "standard"}, JSON),
    ("haiku", body(prompt="Write a haiku about GPU computing", max_tokens=50, temperature=0.7,
                   seed=42), {"max_tokens": 50, "seed": 42}, JSON),
    ("greedy", body(temperature=0), {"temperature": 0.0}, JSON),
    ("all fields", body(max_tokens=100, temperature=2.0, top_p=0.0, top_k=49152,
                        repetition_penalty=2.0, min_p=1.0, stop=["a", "b", "c", "d"],
                        seed=18446744073709551615),
     {"max_tokens": 100, "top_k": 49152, "stop": ["a", "b", "c", "d"],
      "seed": 18446744073709551615}, JSON),
    ("max_tokens bounds", body(max_tokens=1), {"max_tokens": 1}, JSON),
    ("max_tokens cap", body(max_tokens=2048), {"max_tokens": 2048}, JSON),
    ("null optionals", body(seed=None, stop=None, top_k=None), {"seed": None, "top_k": 0}, JSON),
    ("prompt at 32768 chars", body(prompt="\u00e9" * 32768), {}, JSON),
    ("unicode", body(prompt="\u4f60\u597d\uff0c\u4e16\u754c \U0001F600 \u0645\u0631\u062d\u0628\u0627"), {}, JSON),
    ("mirostat", body(sampler="mirostat", sampler_params={"tau": 3.0, "eta": 0.2}),
     {"sampler": "mirostat"}, JSON),
    ("content type with charset", body(), {}, "application/json; charset=utf-8"),
    ("content type upper case", body(), {}, "Application/JSON"),
    ("integer temperature", body(temperature=1), {"temperature": 1.0}, JSON),
]


def write(path, key, entries):
    with open(path, "w") as f:
        json.dump({"limits": LIMITS, key: entries}, f, indent=1, ensure_ascii=False)
        f.write("\n")


write("execute_invalid.json", "cases", [
    {"name": n, "field": fld, "content_type": ct, "body": b} for n, fld, b, ct in invalid
])
write("execute_valid.json", "cases", [
    {"name": n, "content_type": ct, "body": b, "expect": e} for n, b, e, ct in valid
])
print(len(invalid), "invalid,", len(valid), "valid")
