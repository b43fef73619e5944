//! Complete responses: OpenAI chat completion → Anthropic message ([`to_anthropic`]) and
//! back ([`to_openai`]), and the pieces the stream translators share.

use serde_json::{Value, json};

use super::fresh_id;
use super::request::tool_use_block;

/// The Anthropic `stop_reason` of an OpenAI `finish_reason`. `stop` is `end_turn` unless
/// the upstream named the stop sequence it hit (vLLM's `stop_reason`), then `stop_sequence`.
pub fn stop_reason(finish_reason: Option<&str>, matched_stop: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ if matched_stop.is_some() => "stop_sequence",
        _ => "end_turn",
    }
}

/// The OpenAI `finish_reason` of an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// Anthropic usage from an OpenAI `usage`: cached prompt tokens
/// (`prompt_tokens_details.cached_tokens`) become `cache_read_input_tokens` and are not
/// counted in `input_tokens`, as Anthropic counts them.
pub fn usage_to_anthropic(usage: Option<&Value>) -> Value {
    let get = |p: &str| usage.and_then(|u| u.pointer(p)).and_then(Value::as_u64);
    let prompt = get("/prompt_tokens").unwrap_or(0);
    let cached = get("/prompt_tokens_details/cached_tokens");
    let mut out = json!({
        "input_tokens": prompt.saturating_sub(cached.unwrap_or(0)),
        "output_tokens": get("/completion_tokens").unwrap_or(0),
    });
    if let Some(cached) = cached {
        out["cache_read_input_tokens"] = json!(cached);
    }
    out
}

/// OpenAI usage from an Anthropic `usage` (cache reads and writes count as prompt tokens).
pub fn usage_to_openai(usage: Option<&Value>) -> Value {
    let get = |k: &str| usage.and_then(|u| u.get(k)).and_then(Value::as_u64);
    let cached = get("cache_read_input_tokens").unwrap_or(0);
    let prompt =
        get("input_tokens").unwrap_or(0) + cached + get("cache_creation_input_tokens").unwrap_or(0);
    let completion = get("output_tokens").unwrap_or(0);
    let mut out = json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    });
    if cached > 0 {
        out["prompt_tokens_details"] = json!({ "cached_tokens": cached });
    }
    out
}

/// A `msg_…` id derived from the upstream's id (so a cached answer keeps its id), or a
/// fresh one.
pub fn message_id(upstream: Option<&str>) -> String {
    match upstream {
        Some(id) if id.starts_with("msg_") => id.to_owned(),
        Some(id) if !id.is_empty() => {
            let tail: String = id
                .trim_start_matches("chatcmpl-")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            format!("msg_{tail}")
        }
        _ => fresh_id("msg_"),
    }
}

/// An OpenAI chat completion as an Anthropic message. `None` when it is not a JSON object.
pub fn to_anthropic(body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let v: Value = serde_json::from_slice(body)?;
    let choice = v.pointer("/choices/0").unwrap_or(&Value::Null);
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(r) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        content.push(json!({ "type": "thinking", "thinking": r, "signature": "" }));
    }
    if let Some(t) = message
        .get("content")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        content.push(json!({ "type": "text", "text": t }));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = call
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| fresh_id("toolu_"), str::to_owned);
        content.push(tool_use_block(call, json!(id)));
    }
    let matched = choice.get("stop_reason").and_then(Value::as_str);
    let stop = stop_reason(choice.get("finish_reason").and_then(Value::as_str), matched);
    let out = json!({
        "id": message_id(v.get("id").and_then(Value::as_str)),
        "type": "message",
        "role": "assistant",
        "model": v.get("model").cloned().unwrap_or_else(|| json!("")),
        "content": content,
        "stop_reason": stop,
        "stop_sequence": if stop == "stop_sequence" { json!(matched) } else { Value::Null },
        "usage": usage_to_anthropic(v.get("usage")),
    });
    serde_json::to_vec(&out)
}

/// An Anthropic message as an OpenAI chat completion.
pub fn to_openai(body: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let v: Value = serde_json::from_slice(body)?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in v
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => text.push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => {
                reasoning.push_str(block.get("thinking").and_then(Value::as_str).unwrap_or(""))
            }
            Some("tool_use") => tool_calls.push(json!({
                "id": block.get("id").cloned().unwrap_or(Value::Null),
                "type": "function",
                "function": {
                    "name": block.get("name").cloned().unwrap_or(Value::Null),
                    "arguments": block.get("input").cloned().unwrap_or_else(|| json!({})).to_string(),
                },
            })),
            _ => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) },
    });
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
    }
    let out = json!({
        "id": format!("chatcmpl-{}", v.get("id").and_then(Value::as_str).unwrap_or("anthropic")),
        "object": "chat.completion",
        "created": now_secs(),
        "model": v.get("model").cloned().unwrap_or_else(|| json!("")),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason(v.get("stop_reason").and_then(Value::as_str)),
        }],
        "usage": usage_to_openai(v.get("usage")),
    });
    serde_json::to_vec(&out)
}

/// Seconds since the epoch, for `created`.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn anthropic(body: Value) -> Value {
        serde_json::from_slice(&to_anthropic(body.to_string().as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn text_tool_use_and_thinking_blocks_come_back() {
        let out = anthropic(json!({
            "id": "chatcmpl-abc", "model": "m",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "ok", "reasoning_content": "hmm",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "w", "arguments": "{oops"}},
                ]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}},
        }));
        assert_eq!(out["id"], "msg_abc");
        assert_eq!(out["type"], "message");
        assert_eq!(
            out["content"][0],
            json!({"type": "thinking", "thinking": "hmm", "signature": ""})
        );
        assert_eq!(out["content"][1], json!({"type": "text", "text": "ok"}));
        assert_eq!(out["content"][2]["input"], json!({"city": "Paris"}));
        assert_eq!(out["content"][2]["id"], "call_1");
        assert_eq!(
            out["content"][3]["input"][super::super::RAW_ARGUMENTS_KEY],
            "{oops"
        );
        assert_eq!(out["stop_reason"], "tool_use");
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 6, "output_tokens": 3, "cache_read_input_tokens": 4})
        );
    }

    #[test]
    fn finish_reasons_map_to_stop_reasons() {
        assert_eq!(stop_reason(Some("stop"), None), "end_turn");
        assert_eq!(stop_reason(Some("length"), None), "max_tokens");
        assert_eq!(stop_reason(Some("tool_calls"), None), "tool_use");
        assert_eq!(stop_reason(Some("stop"), Some("END")), "stop_sequence");
        let out = anthropic(
            json!({"choices": [{"finish_reason": "stop", "stop_reason": "END",
            "message": {"content": "x"}}]}),
        );
        assert_eq!(out["stop_sequence"], "END");
        assert!(out["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(finish_reason(Some("tool_use")), "tool_calls");
        assert_eq!(finish_reason(Some("max_tokens")), "length");
        assert_eq!(finish_reason(Some("end_turn")), "stop");
    }

    #[test]
    fn anthropic_messages_become_chat_completions() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "thinking", "thinking": "t", "signature": "s"},
                        {"type": "text", "text": "hi"},
                        {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"a": 1}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 3},
        });
        let out: Value =
            serde_json::from_slice(&to_openai(body.to_string().as_bytes()).unwrap()).unwrap();
        let m = &out["choices"][0]["message"];
        assert_eq!(m["content"], "hi");
        assert_eq!(m["reasoning_content"], "t");
        assert_eq!(m["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["usage"]["prompt_tokens"], 8);
        assert_eq!(out["usage"]["prompt_tokens_details"]["cached_tokens"], 3);
        assert!(to_openai(b"nope").is_err());
    }
}
