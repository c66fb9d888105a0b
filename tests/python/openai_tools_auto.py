"""The `openai` SDK on `tool_choice: "auto"`, several calls per choice and `n` > 1 (issue 16),
against SmolLM2 served under a ChatML template with Hermes-style tool calls
(host/worker/tests/fixtures/hermes-tools-chatml.jinja): a conversation that shows the model a
call answered gets a call (arguments checked with `jsonschema`, the SDK's streamed deltas joined
into the same call), the call's result goes back, a greeting gets text; a conversation that
shows two calls per turn gets two (distinct ids, streamed by `index`, both results go back),
one with `parallel_tool_calls=False`; `required` makes a greeting a call; and `n` = 3 choices
sampled from one shared prompt each match that choice asked for alone.

Run by host/worker/tests/python_clients.rs with ORCD_BASE_URL and ORCD_API_KEY set; exits
non-zero on failure.
"""

import json

import jsonschema

from harness import client, run


WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "function": {"name": "get_weather",
                                           "description": "The current weather in a city",
                                           "parameters": WEATHER}}]


def shown_call(call_id, city):
    return {"role": "assistant", "content": None, "tool_calls": [{
        "id": call_id, "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]}


SHOWN = [
    {"role": "system", "content": "You answer weather questions by calling get_weather."},
    {"role": "user", "content": "Weather in Paris?"},
    shown_call("call_1", "Paris"),
    {"role": "user", "content": "Weather in Rome?"},
    shown_call("call_2", "Rome"),
    {"role": "user", "content": "Weather in London?"},
]


def auto_calls_and_round_trips():
    answer = client.chat.completions.create(
        model="x", messages=SHOWN, tools=TOOLS, tool_choice="auto", max_tokens=40,
        temperature=0)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.content is None, choice
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather", call
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    name, arguments, finish, content = None, "", None, ""
    for chunk in client.chat.completions.create(
            model="x", messages=SHOWN, tools=TOOLS, tool_choice="auto", max_tokens=40,
            temperature=0, stream=True):
        c = chunk.choices[0]
        content += c.delta.content or ""
        for d in c.delta.tool_calls or []:
            name = d.function.name or name
            arguments += d.function.arguments or ""
        finish = c.finish_reason or finish
    assert (name, arguments, finish, content) == \
        ("get_weather", call.function.arguments, "tool_calls", ""), (name, arguments, content)
    follow = client.chat.completions.create(
        model="x", tools=TOOLS, max_tokens=16, temperature=0,
        messages=SHOWN + [choice.message.model_dump(exclude_none=True),
                          {"role": "tool", "tool_call_id": call.id,
                           "content": "12 degrees, rain"}])
    c = follow.choices[0]
    if c.finish_reason == "tool_calls":
        jsonschema.validate(json.loads(c.message.tool_calls[0].function.arguments), WEATHER)
    else:
        assert isinstance(c.message.content, str) and not c.message.tool_calls, follow


def auto_answers_in_text():
    ask = [{"role": "user", "content": "Say hello to my friend Anna."}]
    answer = client.chat.completions.create(model="x", messages=ask, tools=TOOLS,
                                            max_tokens=16, temperature=0)
    c = answer.choices[0]
    assert c.finish_reason != "tool_calls" and not c.message.tool_calls, answer
    assert c.message.content and not c.message.content.startswith("<"), answer
    streamed = "".join(chunk.choices[0].delta.content or ""
                       for chunk in client.chat.completions.create(
                           model="x", messages=ask, tools=TOOLS, max_tokens=16,
                           temperature=0, stream=True))
    assert streamed == c.message.content, (streamed, c.message.content)


TIME = {
    "type": "object",
    "properties": {"timezone": {"type": "string"}},
    "required": ["timezone"],
    "additionalProperties": False,
}
TWO_TOOLS = TOOLS + [{"type": "function", "function": {"name": "get_time", "parameters": TIME}}]


def shown_calls(ids, cities):
    return {"role": "assistant", "content": None, "tool_calls": [{
        "id": i, "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": c})}}
        for i, c in zip(ids, cities)]}


TWO_CITIES = [
    {"role": "system",
     "content": "You answer weather questions by calling get_weather once per city."},
    {"role": "user", "content": "Weather in Paris and Rome?"},
    shown_calls(["call_1", "call_2"], ["Paris", "Rome"]),
    {"role": "user", "content": "Weather in Madrid and Berlin?"},
    shown_calls(["call_3", "call_4"], ["Madrid", "Berlin"]),
    {"role": "user", "content": "Weather in London and Oslo?"},
]


def several_calls_per_choice():
    # Room for two calls: the constraint closes the calls when `max_tokens` could not fit more.
    answer = client.chat.completions.create(
        model="x", messages=TWO_CITIES, tools=TWO_TOOLS, max_tokens=200, temperature=0)
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    calls = choice.message.tool_calls
    assert len(calls) == 2 and calls[0].id != calls[1].id, calls
    for call in calls:
        assert call.function.name == "get_weather", call
        jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    # Streamed: the deltas joined by `index` give the same calls.
    joined = {}
    for chunk in client.chat.completions.create(
            model="x", messages=TWO_CITIES, tools=TWO_TOOLS, max_tokens=200, temperature=0,
            stream=True):
        for d in chunk.choices[0].delta.tool_calls or []:
            entry = joined.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = d.id or entry["id"]
            entry["name"] += d.function.name or ""
            entry["arguments"] += d.function.arguments or ""
    assert [(joined[k]["name"], joined[k]["arguments"]) for k in sorted(joined)] == \
        [(c.function.name, c.function.arguments) for c in calls], joined
    assert joined[0]["id"] != joined[1]["id"], joined
    # Both results go back.
    follow = client.chat.completions.create(
        model="x", tools=TWO_TOOLS, max_tokens=8, temperature=0,
        messages=TWO_CITIES + [choice.message.model_dump(exclude_none=True)] + [
            {"role": "tool", "tool_call_id": c.id, "content": w}
            for c, w in zip(calls, ["rain", "snow"])])
    assert follow.choices[0].finish_reason is not None, follow
    one = client.chat.completions.create(
        model="x", messages=TWO_CITIES, tools=TWO_TOOLS, max_tokens=200, temperature=0,
        parallel_tool_calls=False)
    assert len(one.choices[0].message.tool_calls) == 1, one
    assert one.choices[0].message.tool_calls[0].function.arguments == \
        calls[0].function.arguments, one


def required_calls():
    answer = client.chat.completions.create(
        model="x", messages=[{"role": "user", "content": "Say hello to my friend Anna."}],
        tools=TWO_TOOLS, tool_choice="required", max_tokens=60, temperature=0)
    c = answer.choices[0]
    assert c.finish_reason == "tool_calls" and c.message.tool_calls, answer
    for call in c.message.tool_calls:
        schema = WEATHER if call.function.name == "get_weather" else TIME
        jsonschema.validate(json.loads(call.function.arguments), schema)


def n_shares_the_prompt():
    ask = [{"role": "user", "content": "Write one line about the sea."}]
    three = client.chat.completions.create(model="x", messages=ask, max_tokens=10,
                                           temperature=0.9, seed=21, n=3)
    assert [c.index for c in three.choices] == [0, 1, 2], three
    for i, c in enumerate(three.choices):
        alone = client.chat.completions.create(model="x", messages=ask, max_tokens=10,
                                               temperature=0.9, seed=21 + i)
        assert alone.choices[0].message.content == c.message.content, (i, alone, c)


run([("auto_calls_and_round_trips", auto_calls_and_round_trips),
     ("auto_answers_in_text", auto_answers_in_text),
     ("several_calls_per_choice", several_calls_per_choice),
     ("required_calls", required_calls),
     ("n_shares_the_prompt", n_shares_the_prompt)])
