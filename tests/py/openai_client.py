"""Drives exai's /v1/chat/completions with the official `openai` SDK; prints one JSON object.

Usage: python openai_client.py  (env: EXAI_BASE_URL, EXAI_TOKEN, EXAI_MODEL)
"""

import json
import os

import openai

client = openai.OpenAI(base_url=os.environ["EXAI_BASE_URL"] + "/v1",
                       api_key=os.environ.get("EXAI_TOKEN", "none"), max_retries=0, timeout=20.0)
MODEL = os.environ.get("EXAI_MODEL", "mock-echo")

done = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "hello from openai"}])
chunks = list(client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "stream from openai"}], stream=True))
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    missing = None
except openai.NotFoundError as e:
    missing = type(e).__name__

print(json.dumps({
    "content": done.choices[0].message.content,
    "finish_reason": done.choices[0].finish_reason,
    "usage": done.usage.model_dump() if done.usage else None,
    "stream_text": text,
    "stream_finish": finish,
    "missing": missing,
}))
