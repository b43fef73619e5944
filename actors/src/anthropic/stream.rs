//! Streams, translated chunk by chunk with bounded state (the open block, a few counters —
//! never the text so far): OpenAI chunks → Anthropic events ([`ToAnthropic`]), Anthropic
//! events → OpenAI chunks ([`ToOpenai`]), and a complete Anthropic message as the events of
//! a stream ([`message_events`], for cache hits).
//!
//! Items are the SSE `data:` payloads, one JSON object each. An Anthropic event's SSE
//! `event:` name is its payload's `type`, so a surface writes the frame from the payload.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};

use super::fresh_id;
use super::response::{finish_reason, message_id, now_secs, stop_reason, usage_to_anthropic};
use crate::provider::error::ProviderError;

/// A chunk translator.
pub trait Translate: Send {
    /// Translates one upstream payload, appending the payloads to send. `Err` carries the
    /// message of an error the upstream reported (or an unreadable payload).
    fn chunk(&mut self, data: &[u8], out: &mut VecDeque<Bytes>) -> Result<(), String>;
    /// The upstream finished cleanly: the closing payloads.
    fn finish(&mut self, out: &mut VecDeque<Bytes>);
}

fn push(out: &mut VecDeque<Bytes>, value: &Value) {
    out.push_back(Bytes::from(value.to_string()));
}

/// The block of an Anthropic stream being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// None.
    None,
    /// A text block.
    Text,
    /// A thinking block.
    Thinking,
    /// A tool_use block for the OpenAI tool call of this index.
    Tool(u64),
}

/// OpenAI chat-completion chunks → Anthropic stream events.
#[derive(Debug)]
pub struct ToAnthropic {
    /// Whether `message_start` was sent.
    started: bool,
    /// The block open now.
    open: Open,
    /// Index of the open block (or of the next one when none is open).
    index: u64,
    /// The last `finish_reason`.
    finish: Option<String>,
    /// The stop sequence the upstream says it hit.
    matched: Option<String>,
    /// The last usage seen.
    usage: Option<Value>,
}

impl Default for ToAnthropic {
    fn default() -> Self {
        Self::new()
    }
}

impl ToAnthropic {
    /// A translator at the start of a stream.
    pub fn new() -> Self {
        Self {
            started: false,
            open: Open::None,
            index: 0,
            finish: None,
            matched: None,
            usage: None,
        }
    }

    fn start(&mut self, chunk: &Value, out: &mut VecDeque<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        push(
            out,
            &json!({
                "type": "message_start",
                "message": {
                    "id": message_id(chunk.get("id").and_then(Value::as_str)),
                    "type": "message",
                    "role": "assistant",
                    "model": chunk.get("model").cloned().unwrap_or_else(|| json!("")),
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": { "input_tokens": 0, "output_tokens": 0 },
                },
            }),
        );
        push(out, &json!({ "type": "ping" }));
    }

    fn close(&mut self, out: &mut VecDeque<Bytes>) {
        if self.open != Open::None {
            push(
                out,
                &json!({ "type": "content_block_stop", "index": self.index }),
            );
            self.open = Open::None;
            self.index += 1;
        }
    }

    fn open(&mut self, open: Open, block: Value, out: &mut VecDeque<Bytes>) {
        self.close(out);
        push(
            out,
            &json!({ "type": "content_block_start", "index": self.index, "content_block": block }),
        );
        self.open = open;
    }

    fn delta(&self, delta: Value, out: &mut VecDeque<Bytes>) {
        push(
            out,
            &json!({ "type": "content_block_delta", "index": self.index, "delta": delta }),
        );
    }
}

impl Translate for ToAnthropic {
    fn chunk(&mut self, data: &[u8], out: &mut VecDeque<Bytes>) -> Result<(), String> {
        let v: Value =
            serde_json::from_slice(data).map_err(|e| format!("unreadable upstream chunk: {e}"))?;
        if let Some(message) = v.pointer("/error/message").and_then(Value::as_str) {
            return Err(message.to_owned());
        }
        self.start(&v, out);
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let Some(choice) = v.pointer("/choices/0") else {
            return Ok(());
        };
        if let Some(u) = choice.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(r) = delta
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            if self.open != Open::Thinking {
                self.open(
                    Open::Thinking,
                    json!({ "type": "thinking", "thinking": "", "signature": "" }),
                    out,
                );
            }
            self.delta(json!({ "type": "thinking_delta", "thinking": r }), out);
        }
        if let Some(t) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if self.open != Open::Text {
                self.open(Open::Text, json!({ "type": "text", "text": "" }), out);
            }
            self.delta(json!({ "type": "text_delta", "text": t }), out);
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let n = call.get("index").and_then(Value::as_u64).unwrap_or(0);
            if self.open != Open::Tool(n) {
                let id = call
                    .get("id")
                    .and_then(Value::as_str)
                    .map_or_else(|| fresh_id("toolu_"), str::to_owned);
                let name = call
                    .pointer("/function/name")
                    .cloned()
                    .unwrap_or_else(|| json!(""));
                self.open(
                    Open::Tool(n),
                    json!({ "type": "tool_use", "id": id, "name": name, "input": {} }),
                    out,
                );
            }
            if let Some(args) = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                self.delta(
                    json!({ "type": "input_json_delta", "partial_json": args }),
                    out,
                );
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_owned());
        }
        if let Some(s) = choice.get("stop_reason").and_then(Value::as_str) {
            self.matched = Some(s.to_owned());
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut VecDeque<Bytes>) {
        self.start(&Value::Null, out);
        self.close(out);
        let stop = stop_reason(self.finish.as_deref(), self.matched.as_deref());
        push(
            out,
            &json!({
                "type": "message_delta",
                "delta": {
                    "stop_reason": stop,
                    "stop_sequence": if stop == "stop_sequence" { json!(self.matched) } else { Value::Null },
                },
                "usage": usage_to_anthropic(self.usage.as_ref()),
            }),
        );
        push(out, &json!({ "type": "message_stop" }));
    }
}

/// Anthropic stream events → OpenAI chat-completion chunks.
#[derive(Debug)]
pub struct ToOpenai {
    /// `chatcmpl-<message id>`.
    id: String,
    /// The model the upstream named.
    model: Value,
    /// `created` of every chunk.
    created: u64,
    /// The OpenAI index of the tool call being streamed.
    tool: Option<u64>,
    /// Tool calls started so far.
    tools: u64,
    /// Usage from `message_start` (input side).
    usage: Value,
}

impl Default for ToOpenai {
    fn default() -> Self {
        Self::new()
    }
}

impl ToOpenai {
    /// A translator at the start of a stream.
    pub fn new() -> Self {
        Self {
            id: "chatcmpl-anthropic".into(),
            model: json!(""),
            created: now_secs(),
            tool: None,
            tools: 0,
            usage: json!({}),
        }
    }

    fn emit(&self, delta: Value, finish: Option<&str>, out: &mut VecDeque<Bytes>) {
        push(
            out,
            &json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
            }),
        );
    }
}

impl Translate for ToOpenai {
    fn chunk(&mut self, data: &[u8], out: &mut VecDeque<Bytes>) -> Result<(), String> {
        let v: Value =
            serde_json::from_slice(data).map_err(|e| format!("unreadable upstream event: {e}"))?;
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let m = v.get("message").unwrap_or(&Value::Null);
                if let Some(id) = m.get("id").and_then(Value::as_str) {
                    self.id = format!("chatcmpl-{id}");
                }
                self.model = m.get("model").cloned().unwrap_or_else(|| json!(""));
                self.usage = m.get("usage").cloned().unwrap_or_else(|| json!({}));
                self.emit(json!({ "role": "assistant", "content": "" }), None, out);
            }
            Some("content_block_start") => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let n = self.tools;
                        self.tools += 1;
                        self.tool = Some(n);
                        self.emit(
                            json!({ "tool_calls": [{
                                "index": n, "id": block.get("id"), "type": "function",
                                "function": { "name": block.get("name"), "arguments": "" },
                            }] }),
                            None,
                            out,
                        );
                    }
                    Some("text") => {
                        if let Some(t) = block
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            self.emit(json!({ "content": t }), None, out);
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        self.emit(json!({ "content": d.get("text") }), None, out);
                    }
                    Some("thinking_delta") => {
                        self.emit(json!({ "reasoning_content": d.get("thinking") }), None, out);
                    }
                    Some("input_json_delta") => {
                        let n = self.tool.unwrap_or(0);
                        self.emit(
                            json!({ "tool_calls": [{
                                "index": n, "function": { "arguments": d.get("partial_json") },
                            }] }),
                            None,
                            out,
                        );
                    }
                    _ => {}
                }
            }
            Some("content_block_stop") => self.tool = None,
            Some("message_delta") => {
                let mut usage = self.usage.clone();
                if let (Some(u), Some(delta)) = (
                    usage.as_object_mut(),
                    v.get("usage").and_then(Value::as_object),
                ) {
                    for (k, val) in delta {
                        u.insert(k.clone(), val.clone());
                    }
                }
                let finish = finish_reason(v.pointer("/delta/stop_reason").and_then(Value::as_str));
                self.emit(json!({}), Some(finish), out);
                push(
                    out,
                    &json!({
                        "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                        "model": self.model, "choices": [],
                        "usage": super::response::usage_to_openai(Some(&usage)),
                    }),
                );
            }
            Some("error") => {
                return Err(v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("the upstream reported an error")
                    .to_owned());
            }
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self, _: &mut VecDeque<Bytes>) {}
}

/// A complete Anthropic message as the events of a stream (a cached answer served to a
/// streaming request).
pub fn message_events(body: &[u8]) -> Result<Vec<Bytes>, serde_json::Error> {
    let v: Value = serde_json::from_slice(body)?;
    let mut out = VecDeque::new();
    let mut start = v.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["stop_sequence"] = Value::Null;
    push(
        &mut out,
        &json!({ "type": "message_start", "message": start }),
    );
    for (index, block) in v
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let (empty, delta) = match block.get("type").and_then(Value::as_str) {
            Some("text") => (
                json!({ "type": "text", "text": "" }),
                json!({ "type": "text_delta", "text": block.get("text") }),
            ),
            Some("thinking") => (
                json!({ "type": "thinking", "thinking": "", "signature": "" }),
                json!({ "type": "thinking_delta", "thinking": block.get("thinking") }),
            ),
            Some("tool_use") => (
                json!({ "type": "tool_use", "id": block.get("id"), "name": block.get("name"), "input": {} }),
                json!({ "type": "input_json_delta",
                        "partial_json": block.get("input").cloned().unwrap_or_else(|| json!({})).to_string() }),
            ),
            _ => continue,
        };
        push(
            &mut out,
            &json!({ "type": "content_block_start", "index": index, "content_block": empty }),
        );
        push(
            &mut out,
            &json!({ "type": "content_block_delta", "index": index, "delta": delta }),
        );
        push(
            &mut out,
            &json!({ "type": "content_block_stop", "index": index }),
        );
    }
    push(
        &mut out,
        &json!({
            "type": "message_delta",
            "delta": { "stop_reason": v.get("stop_reason"), "stop_sequence": v.get("stop_sequence") },
            "usage": v.get("usage"),
        }),
    );
    push(&mut out, &json!({ "type": "message_stop" }));
    Ok(out.into())
}

/// The stream item type the provider hands out.
pub type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>;

/// A stream translated by `T`. An upstream error ends it after the payloads already
/// translated.
pub struct Translated<T> {
    /// The upstream payloads.
    inner: Chunks,
    /// The translator.
    translator: T,
    /// Payloads ready to hand out.
    queue: VecDeque<Bytes>,
    /// The provider, for errors.
    provider: String,
    /// Whether the upstream is finished.
    done: bool,
}

impl<T: Translate> Translated<T> {
    /// `inner` translated by `translator`.
    pub fn new(inner: Chunks, translator: T, provider: &str) -> Self {
        Self {
            inner,
            translator,
            queue: VecDeque::new(),
            provider: provider.to_owned(),
            done: false,
        }
    }
}

impl<T: Translate + Unpin> Stream for Translated<T> {
    type Item = Result<Bytes, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.queue.pop_front() {
                return Poll::Ready(Some(Ok(b)));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    if let Err(message) = this.translator.chunk(&data, &mut this.queue) {
                        this.done = true;
                        this.queue.clear();
                        return Poll::Ready(Some(Err(ProviderError::StreamInterrupted {
                            provider: this.provider.clone(),
                            message,
                        })));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.translator.finish(&mut this.queue);
                    this.done = true;
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run<T: Translate>(mut t: T, chunks: &[Value]) -> Vec<Value> {
        let mut out = VecDeque::new();
        for c in chunks {
            t.chunk(c.to_string().as_bytes(), &mut out).unwrap();
        }
        t.finish(&mut out);
        out.iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect()
    }

    fn types(events: &[Value]) -> Vec<&str> {
        events.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn openai_text_and_reasoning_chunks_become_the_full_event_sequence() {
        let events = run(
            ToAnthropic::new(),
            &[
                json!({"id": "chatcmpl-1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}),
                json!({"choices": [{"index": 0, "delta": {"reasoning_content": "think"}}]}),
                json!({"choices": [{"index": 0, "delta": {"content": "he"}}]}),
                json!({"choices": [{"index": 0, "delta": {"content": "llo"}, "finish_reason": "stop"}]}),
                json!({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}),
            ],
        );
        assert_eq!(
            types(&events),
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        assert_eq!(events[0]["message"]["id"], "msg_1");
        assert_eq!(events[2]["content_block"]["type"], "thinking");
        assert_eq!(
            events[3]["delta"],
            json!({"type": "thinking_delta", "thinking": "think"})
        );
        assert_eq!(events[5]["index"], 1);
        assert_eq!(events[7]["delta"]["text"], "llo");
        assert_eq!(events[9]["delta"]["stop_reason"], "end_turn");
        assert_eq!(events[9]["usage"]["output_tokens"], 2);
        assert_eq!(events[9]["usage"]["input_tokens"], 4);
    }

    #[test]
    fn tool_call_argument_deltas_become_input_json_deltas_by_index() {
        let events = run(
            ToAnthropic::new(),
            &[
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "w", "arguments": ""}}]}}]}),
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{\"c\":"}}]}}]}),
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]}),
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "x", "arguments": "{}"}}]}}]}),
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
            ],
        );
        let starts: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "content_block_start")
            .collect();
        assert_eq!(
            starts[0]["content_block"],
            json!({"type": "tool_use", "id": "call_a", "name": "w", "input": {}})
        );
        assert_eq!(starts[1]["content_block"]["id"], "call_b");
        assert_eq!(starts[1]["index"], 1);
        let partial: String = events
            .iter()
            .filter(|e| e["index"] == 0 && e["delta"]["type"] == "input_json_delta")
            .map(|e| e["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(partial, "{\"c\":1}");
        let delta = events
            .iter()
            .find(|e| e["type"] == "message_delta")
            .unwrap();
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    }

    #[test]
    fn an_empty_stream_still_starts_and_stops() {
        let events = run(ToAnthropic::new(), &[]);
        assert_eq!(
            types(&events),
            ["message_start", "ping", "message_delta", "message_stop"]
        );
    }

    #[test]
    fn anthropic_events_become_openai_chunks() {
        let chunks = run(
            ToOpenai::new(),
            &[
                json!({"type": "message_start", "message": {"id": "msg_1", "model": "c", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
                json!({"type": "ping"}),
                json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
                json!({"type": "content_block_stop", "index": 0}),
                json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}}),
                json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
                json!({"type": "content_block_stop", "index": 1}),
                json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 5}}),
                json!({"type": "message_stop"}),
            ],
        );
        assert_eq!(chunks[0]["id"], "chatcmpl-msg_1");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "hi");
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "toolu_1"
        );
        assert_eq!(
            chunks[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[5]["usage"]["prompt_tokens"], 7);
        assert_eq!(chunks[5]["usage"]["completion_tokens"], 5);
        let mut out = VecDeque::new();
        let error =
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}});
        assert_eq!(
            ToOpenai::new().chunk(error.to_string().as_bytes(), &mut out),
            Err("busy".into())
        );
    }

    #[test]
    fn a_cached_message_replays_as_events() {
        let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": "hi"}, {"type": "tool_use", "id": "t", "name": "w", "input": {"a": 1}}],
            "stop_reason": "tool_use", "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 2}});
        let events: Vec<Value> = message_events(body.to_string().as_bytes())
            .unwrap()
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        assert_eq!(events.len(), 9);
        assert_eq!(events[0]["message"]["content"], json!([]));
        assert_eq!(events[5]["delta"]["partial_json"], "{\"a\":1}");
        assert_eq!(events[7]["delta"]["stop_reason"], "tool_use");
    }
}
