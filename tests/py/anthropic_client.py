"""Drives exai's /v1/messages with the official `anthropic` SDK and prints one JSON object.

Usage: python anthropic_client.py SCENARIO  (env: EXAI_BASE_URL, EXAI_TOKEN, EXAI_MODEL)
Run by tests/api/anthropic.rs, which asserts on the printed JSON.
"""

import json
import os
import sys

import anthropic

BASE = os.environ["EXAI_BASE_URL"]
TOKEN = os.environ.get("EXAI_TOKEN", "none")
MODEL = os.environ.get("EXAI_MODEL", "mock-echo")

TOOLS = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


def client(token=TOKEN):
    return anthropic.Anthropic(base_url=BASE, api_key=token, max_retries=0, timeout=20.0)


def blocks(message):
    return [b.model_dump(exclude_none=True) for b in message.content]


def create():
    m = client().messages.create(
        model=MODEL,
        max_tokens=64,
        system=[{"type": "text", "text": "Be brief."}],
        messages=[{"role": "user", "content": "hello there"}],
        stop_sequences=["STOP"],
        metadata={"user_id": "user-7"},
        # SDK 2.x has no `temperature` argument; Claude Code and older SDKs send it.
        extra_body={"temperature": 0.2},
    )
    return {
        "id": m.id,
        "type": m.type,
        "role": m.role,
        "content": blocks(m),
        "stop_reason": m.stop_reason,
        "usage": m.usage.model_dump(exclude_none=True),
    }


def stream():
    events = []
    text = []
    for event in client().messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
    ):
        events.append(event.type)
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            text.append(event.delta.text)
    with client().messages.stream(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "and again"}]
    ) as s:
        helper_text = "".join(s.text_stream)
        final = s.get_final_message()
    return {
        "events": events,
        "text": "".join(text),
        "helper_text": helper_text,
        "final": {"id": final.id, "stop_reason": final.stop_reason, "content": blocks(final),
                  "usage": final.usage.model_dump(exclude_none=True)},
    }


def tools():
    m = client().messages.create(
        model=MODEL, max_tokens=64, tools=TOOLS, tool_choice={"type": "any"}, messages=ASK_WEATHER
    )
    return {"content": blocks(m), "stop_reason": m.stop_reason, "id": m.id}


def tools_stream():
    events = []
    with client().messages.stream(
        model=MODEL, max_tokens=64, tools=TOOLS, messages=ASK_WEATHER
    ) as s:
        for event in s:
            events.append(event.type)
        final = s.get_final_message()
    return {"events": events, "content": blocks(final), "stop_reason": final.stop_reason}


def tool_result():
    messages = ASK_WEATHER + [
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_01A",
             "content": [{"type": "text", "text": "sunny, 21 C"}]},
        ]},
    ]
    m = client().messages.create(model=MODEL, max_tokens=64, tools=TOOLS, messages=messages)
    with client().messages.stream(model=MODEL, max_tokens=64, tools=TOOLS, messages=messages) as s:
        streamed = s.get_final_message()
    return {"content": blocks(m), "stop_reason": m.stop_reason, "streamed": blocks(streamed)}


def count_tokens():
    small = client().messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    big = client().messages.count_tokens(
        model=MODEL,
        system="You are a weather bot.",
        tools=TOOLS,
        messages=[{"role": "user", "content": "What is the weather in Paris today, and tomorrow?"}],
    )
    return {"small": small.input_tokens, "big": big.input_tokens}


def models():
    page = client().models.list()
    return {"ids": [m.id for m in page.data], "types": sorted({m.type for m in page.data}),
            "first_id": page.first_id, "has_more": page.has_more}


def error_of(call):
    try:
        call()
    except anthropic.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {
            "class": type(e).__name__,
            "status": e.status_code,
            "type": body.get("type"),
            "error_type": (body.get("error") or {}).get("type"),
            "retry_after": e.response.headers.get("retry-after"),
        }
    return {"class": None}


def errors():
    ask = dict(max_tokens=16, messages=[{"role": "user", "content": "x"}])

    def streamed(model):
        def run():
            for _ in client().messages.create(model=model, stream=True, **ask):
                pass
        return run

    return {
        "auth": error_of(lambda: client("wrong-token").messages.create(model=MODEL, **ask)),
        "not_found": error_of(lambda: client().messages.create(model="no-such-model", **ask)),
        "bad_request": error_of(lambda: client().messages.create(model=MODEL, max_tokens=16, messages=[])),
        "rate_limit": error_of(lambda: client().messages.create(model="mock-429", **ask)),
        "overloaded": error_of(lambda: client().messages.create(model="mock-status-529", **ask)),
        "mid_stream": error_of(streamed("mock-stream-cut")),
    }


SCENARIOS = {f.__name__: f for f in
             [create, stream, tools, tools_stream, tool_result, count_tokens, models, errors]}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]]()))
