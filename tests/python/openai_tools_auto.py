"""The `openai` SDK on `tool_choice: "auto"` and `n` > 1 (issue 16), against SmolLM2 served
under a ChatML template with Hermes-style tool calls
(host/worker/tests/fixtures/hermes-tools-chatml.jinja): a conversation that shows the model a
call answered gets a call (arguments checked with `jsonschema`, the SDK's streamed deltas joined
into the same call), the call's result goes back, a greeting gets text, and `n` = 3 choices
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
     ("n_shares_the_prompt", n_shares_the_prompt)])
