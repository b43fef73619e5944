//! The token estimate of `POST /v1/messages/count_tokens`.
//!
//! Counted with a real BPE tokenizer (`o200k_base`, embedded in the binary by `tiktoken-rs`)
//! over the text the model would read: the system prompt, every message's text, tool calls'
//! inputs and tool results, and each tool's name, description and input schema, plus a few
//! tokens of framing per message and per tool. Claude's own tokenizer is not public and each
//! provider counts its own way, so the figure is an **estimate**, good for budgeting a context
//! window, not for billing. Images count a flat [`IMAGE_TOKENS`].

use serde_json::Value;

/// Framing tokens counted per message (role and separators).
const PER_MESSAGE: usize = 4;
/// Framing tokens counted per tool definition.
const PER_TOOL: usize = 8;
/// Tokens counted for one image (a typical 1 MP image).
pub const IMAGE_TOKENS: usize = 1600;

/// Tokens in `text`.
fn count(text: &str) -> usize {
    if text.is_empty() {
        return 0;
    }
    tiktoken_rs::o200k_base_singleton()
        .encode_ordinary(text)
        .len()
}

/// Tokens of one `content`: a string or an array of blocks.
fn content(value: &Value) -> usize {
    match value {
        Value::String(s) => count(s),
        Value::Array(blocks) => blocks.iter().map(block).sum(),
        _ => 0,
    }
}

/// Tokens of one content block.
fn block(b: &Value) -> usize {
    let text = |k: &str| b.get(k).and_then(Value::as_str).map_or(0, count);
    match b.get("type").and_then(Value::as_str) {
        Some("text") => text("text"),
        Some("thinking") => text("thinking"),
        Some("image") => IMAGE_TOKENS,
        Some("tool_use") => {
            text("name") + b.get("input").map_or(0, |i| count(&i.to_string())) + PER_MESSAGE
        }
        Some("tool_result") => b.get("content").map_or(0, content) + PER_MESSAGE,
        Some("document") => b
            .pointer("/source/data")
            .and_then(Value::as_str)
            .map_or(0, count),
        _ => 0,
    }
}

/// The estimated input tokens of a Messages request (system, messages and tools).
pub fn estimate(body: &Value) -> usize {
    let system = body.get("system").map_or(0, content);
    let messages: usize = body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| PER_MESSAGE + m.get("content").map_or(0, content))
        .sum();
    let tools: usize = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|t| {
            let text = |k: &str| t.get(k).and_then(Value::as_str).map_or(0, count);
            PER_TOOL
                + text("name")
                + text("description")
                + t.get("input_schema").map_or(0, |s| count(&s.to_string()))
        })
        .sum();
    system + messages + tools
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn counts_real_bpe_tokens_over_system_messages_and_tools() {
        // "hello world" is two tokens in o200k_base.
        assert_eq!(count("hello world"), 2);
        let base = json!({"messages": [{"role": "user", "content": "hello world"}]});
        assert_eq!(estimate(&base), PER_MESSAGE + 2);
        let more = json!({
            "system": [{"type": "text", "text": "hello world"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hello world"},
                                                      {"type": "image", "source": {}}]}],
            "tools": [{"name": "w", "description": "hello world", "input_schema": {"type": "object"}}],
        });
        let n = estimate(&more);
        assert!(n > estimate(&base) + IMAGE_TOKENS + PER_TOOL + 4, "{n}");
    }
}
