"""The `openai` SDK on the API additions of issue 16: a tool call round trip (a named function
and `required`, streamed and not; arguments checked with `jsonschema`), `logprobs` on both
endpoints, `n` > 1 with `stream_options.include_usage`.

Run by host/worker/tests/python_clients.rs with ORCD_BASE_URL and ORCD_API_KEY set; exits
non-zero on failure.
"""

import json

import jsonschema
import openai

from harness import client, run


WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME = {
    "type": "object",
    "properties": {"timezone": {"type": "string"}},
    "required": ["timezone"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather",
                                      "description": "The current weather in a city",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": TIME}},
]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def tool_round_trip():
    answer = client.chat.completions.create(
        model="x", messages=ASK, tools=TOOLS, max_tokens=40, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather", call
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    # The SDK's streamed deltas join into the same call.
    name, arguments, finish = None, "", None
    for chunk in client.chat.completions.create(
            model="x", messages=ASK, tools=TOOLS, max_tokens=40, temperature=0, stream=True,
            tool_choice={"type": "function", "function": {"name": "get_weather"}}):
        c = chunk.choices[0]
        for d in c.delta.tool_calls or []:
            name = d.function.name or name
            arguments += d.function.arguments or ""
        finish = c.finish_reason or finish
    assert (name, arguments, finish) == ("get_weather", call.function.arguments, "tool_calls")
    # The call and the tool's answer go back; the model answers in text.
    follow = client.chat.completions.create(
        model="x", tools=TOOLS, tool_choice="none", max_tokens=8, temperature=0,
        messages=ASK + [choice.message.model_dump(exclude_none=True),
                        {"role": "tool", "tool_call_id": call.id,
                         "content": "18 degrees, sunny"}])
    assert isinstance(follow.choices[0].message.content, str), follow
    assert not follow.choices[0].message.tool_calls, follow
    # `required` with two tools: one call of either, valid for its function.
    for seed in (1, 2, 3):
        any_call = client.chat.completions.create(
            model="x", messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=48,
            temperature=0.8, seed=seed).choices[0].message.tool_calls[0]
        jsonschema.validate(json.loads(any_call.function.arguments),
                            SCHEMAS[any_call.function.name])
    # SmolLM2's own template shows no tool-call marker: `auto` is refused by name.
    try:
        client.chat.completions.create(model="x", messages=ASK, tools=TOOLS, max_tokens=4)
    except openai.BadRequestError as e:
        assert e.body["param"] == "tool_choice", e.body
        return
    raise AssertionError("tools without tool_choice (auto) were accepted")


def chat_logprobs():
    answer = client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=6,
        temperature=0, logprobs=True, top_logprobs=3)
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens, answer
    assert b"".join(bytes(t.bytes) for t in content).decode() == answer.choices[0].message.content
    for t in content:
        assert len(t.top_logprobs) == 3 and t.top_logprobs[0].token == t.token, t
        assert t.logprob <= 0 and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-6, t


def completion_logprobs():
    answer = client.completions.create(model="x", prompt="The capital of France is",
                                       max_tokens=4, temperature=0, logprobs=2)
    lp = answer.choices[0].logprobs
    assert "".join(lp.tokens) == answer.choices[0].text, lp
    assert len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 4, lp
    assert lp.text_offset[0] == 0 and all(len(t) == 2 for t in lp.top_logprobs), lp


def n_choices_with_usage():
    whole = client.completions.create(model="x", prompt="Once upon a time", max_tokens=5,
                                      temperature=0.9, seed=4, n=3)
    assert [c.index for c in whole.choices] == [0, 1, 2], whole
    texts = {0: "", 1: "", 2: ""}
    usage = None
    for chunk in client.completions.create(model="x", prompt="Once upon a time", max_tokens=5,
                                           temperature=0.9, seed=4, n=3, stream=True,
                                           stream_options={"include_usage": True}):
        for c in chunk.choices:
            texts[c.index] += c.text
        if chunk.usage is not None:
            assert not chunk.choices, chunk
            usage = chunk.usage
    assert [texts[i] for i in range(3)] == [c.text for c in whole.choices], (texts, whole)
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens, usage


run([("tool_round_trip", tool_round_trip), ("chat_logprobs", chat_logprobs),
     ("completion_logprobs", completion_logprobs),
     ("n_choices_with_usage", n_choices_with_usage)])
