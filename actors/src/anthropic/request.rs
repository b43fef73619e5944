//! Request bodies: Anthropic Messages → OpenAI chat completions ([`to_openai`]) and back
//! ([`to_anthropic`]).

use serde_json::{Map, Value, json};

use super::{DEFAULT_MAX_TOKENS, RAW_ARGUMENTS_KEY, TOOL_ERROR_PREFIX};
use crate::provider::settings::ProviderKind;

/// Text of an Anthropic `content` that is a string or an array of blocks: the text blocks
/// joined by newlines; other blocks are left out (`[image]` marks an image).
pub fn blocks_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => {
            let mut out = String::new();
            for block in blocks {
                let piece = match block.get("type").and_then(Value::as_str) {
                    Some("text") => block.get("text").and_then(Value::as_str).unwrap_or(""),
                    Some("image") => "[image]",
                    _ => continue,
                };
                if !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(piece);
            }
            out
        }
        _ => String::new(),
    }
}

/// An Anthropic image block's `source` as an OpenAI `image_url` part.
fn image_part(block: &Value) -> Option<Value> {
    let source = block.get("source")?;
    let url = match source.get("type").and_then(Value::as_str)? {
        "base64" => format!(
            "data:{};base64,{}",
            source.get("media_type").and_then(Value::as_str)?,
            source.get("data").and_then(Value::as_str)?
        ),
        "url" => source.get("url").and_then(Value::as_str)?.to_owned(),
        _ => return None,
    };
    Some(json!({ "type": "image_url", "image_url": { "url": url } }))
}

/// The OpenAI `content` of user text and image blocks: text alone becomes one string (the
/// blocks joined by newlines, which every OpenAI-compatible server accepts), parts otherwise.
fn user_content(parts: Vec<Value>) -> Value {
    if parts
        .iter()
        .all(|p| p.get("type").and_then(Value::as_str) == Some("text"))
    {
        let texts: Vec<&str> = parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect();
        return json!(texts.join("\n"));
    }
    Value::Array(parts)
}

/// Translates one Anthropic message into OpenAI messages, appended to `out`.
fn message_to_openai(message: &Value, out: &mut Vec<Value>) {
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or("user");
    let content = message.get("content").unwrap_or(&Value::Null);
    let blocks: Vec<Value> = match content {
        Value::String(s) => vec![json!({ "type": "text", "text": s })],
        Value::Array(blocks) => blocks.clone(),
        _ => Vec::new(),
    };
    if role == "system" {
        let text = blocks_text(content);
        if !text.is_empty() {
            out.push(json!({ "role": "system", "content": text }));
        }
        return;
    }
    if role == "assistant" {
        let mut text = String::new();
        let mut tool_calls = Vec::new();
        for block in &blocks {
            match block.get("type").and_then(Value::as_str) {
                Some("text") => {
                    if !text.is_empty() {
                        text.push('\n');
                    }
                    text.push_str(block.get("text").and_then(Value::as_str).unwrap_or(""))
                }
                Some("tool_use") => {
                    let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                    tool_calls.push(json!({
                        "id": block.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": {
                            "name": block.get("name").cloned().unwrap_or(Value::Null),
                            "arguments": input.to_string(),
                        },
                    }));
                }
                // Thinking blocks (and their signatures) stay on the Anthropic side.
                _ => {}
            }
        }
        let mut m = json!({ "role": "assistant", "content": if text.is_empty() && !tool_calls.is_empty() { Value::Null } else { json!(text) } });
        if !tool_calls.is_empty() {
            m["tool_calls"] = Value::Array(tool_calls);
        }
        out.push(m);
        return;
    }
    // A user turn: tool results first (they answer the previous assistant turn), then the
    // remaining text and images as one user message.
    let mut parts = Vec::new();
    for block in &blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => parts.push(json!({
                "type": "text",
                "text": block.get("text").and_then(Value::as_str).unwrap_or(""),
            })),
            Some("image") => parts.extend(image_part(block)),
            Some("tool_result") => {
                let mut text = blocks_text(block.get("content").unwrap_or(&Value::Null));
                if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                    text.insert_str(0, TOOL_ERROR_PREFIX);
                }
                out.push(json!({
                    "role": "tool",
                    "tool_call_id": block.get("tool_use_id").cloned().unwrap_or(Value::Null),
                    "content": text,
                }));
            }
            _ => {}
        }
    }
    if !parts.is_empty() {
        out.push(json!({ "role": "user", "content": user_content(parts) }));
    }
}

/// An Anthropic Messages request as an OpenAI chat-completions request for a provider of
/// `kind`. `model` and `stream` are set by the caller.
pub fn to_openai(body: &Value, kind: ProviderKind, stream: bool) -> Value {
    let mut messages = Vec::new();
    match body.get("system") {
        Some(Value::String(s)) if !s.is_empty() => {
            messages.push(json!({ "role": "system", "content": s }));
        }
        Some(system @ Value::Array(_)) => {
            let text = blocks_text(system);
            if !text.is_empty() {
                messages.push(json!({ "role": "system", "content": text }));
            }
        }
        _ => {}
    }
    for message in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        message_to_openai(message, &mut messages);
    }
    let mut out = Map::new();
    out.insert("messages".into(), Value::Array(messages));
    for (from, to) in [
        ("max_tokens", "max_tokens"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("stop_sequences", "stop"),
    ] {
        if let Some(v) = body.get(from).filter(|v| !v.is_null()) {
            out.insert(to.into(), v.clone());
        }
    }
    if let Some(user) = body.pointer("/metadata/user_id").filter(|v| v.is_string()) {
        out.insert("user".into(), user.clone());
    }
    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        // Server tools (web search and the like) have no input schema and no OpenAI form.
        .filter(|t| t.get("input_schema").is_some())
        .map(|t| {
            let mut function = json!({
                "name": t.get("name").cloned().unwrap_or(Value::Null),
                "parameters": t.get("input_schema").cloned().unwrap_or_else(|| json!({})),
            });
            if let Some(d) = t.get("description").filter(|d| d.is_string()) {
                function["description"] = d.clone();
            }
            json!({ "type": "function", "function": function })
        })
        .collect();
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = body.get("tool_choice").filter(|_| has_tools) {
        let mapped = match choice.get("type").and_then(Value::as_str) {
            Some("auto") => Some(json!("auto")),
            Some("any") => Some(json!("required")),
            Some("none") => Some(json!("none")),
            Some("tool") => choice
                .get("name")
                .map(|n| json!({ "type": "function", "function": { "name": n } })),
            _ => None,
        };
        if let Some(mapped) = mapped {
            out.insert("tool_choice".into(), mapped);
        }
        if choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
            == Some(true)
        {
            out.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    if let Some(thinking) = body
        .get("thinking")
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
    {
        // GLM has a switch of its own; Kimi thinks when a thinking model is asked for; the
        // others have no equivalent, so the field is dropped.
        if kind == ProviderKind::Glm && (thinking == "enabled" || thinking == "disabled") {
            out.insert("thinking".into(), json!({ "type": thinking }));
        }
    }
    if stream {
        out.insert("stream_options".into(), json!({ "include_usage": true }));
    }
    Value::Object(out)
}

/// OpenAI `content` (a string or parts) as Anthropic blocks.
fn openai_content_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![json!({ "type": "text", "text": s })],
        Value::Array(parts) => parts
            .iter()
            .filter_map(|part| match part.get("type").and_then(Value::as_str) {
                Some("text") => Some(json!({
                    "type": "text",
                    "text": part.get("text").and_then(Value::as_str).unwrap_or(""),
                })),
                Some("image_url") => {
                    let url = part
                        .pointer("/image_url/url")
                        .or_else(|| part.get("image_url"))
                        .and_then(Value::as_str)?;
                    let source = match url
                        .strip_prefix("data:")
                        .and_then(|rest| rest.split_once(";base64,"))
                    {
                        Some((media_type, data)) => {
                            json!({ "type": "base64", "media_type": media_type, "data": data })
                        }
                        None => json!({ "type": "url", "url": url }),
                    };
                    Some(json!({ "type": "image", "source": source }))
                }
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The Anthropic `tool_use` block of an OpenAI `tool_calls` entry, with `id`.
pub fn tool_use_block(call: &Value, id: Value) -> Value {
    let arguments = call
        .pointer("/function/arguments")
        .and_then(Value::as_str)
        .unwrap_or("");
    json!({
        "type": "tool_use",
        "id": id,
        "name": call.pointer("/function/name").cloned().unwrap_or(Value::Null),
        "input": arguments_input(arguments),
    })
}

/// A tool call's `arguments` string as a `tool_use` input: the parsed object, or the raw
/// string under [`RAW_ARGUMENTS_KEY`] when it is not a JSON object.
pub fn arguments_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({ RAW_ARGUMENTS_KEY: arguments }),
    }
}

/// Appends `blocks` as a turn of `role`, merging with the previous turn of the same role
/// (the Messages API wants user and assistant turns to alternate).
fn push_turn(messages: &mut Vec<Value>, role: &str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut()
        && last.get("role").and_then(Value::as_str) == Some(role)
        && let Some(Value::Array(content)) = last.get_mut("content")
    {
        content.extend(blocks);
        return;
    }
    messages.push(json!({ "role": role, "content": blocks }));
}

/// An OpenAI chat-completions request as an Anthropic Messages request. `model` and
/// `stream` are set by the caller.
pub fn to_anthropic(body: &Value) -> Value {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in body
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let content = m.get("content").unwrap_or(&Value::Null);
        match m.get("role").and_then(Value::as_str).unwrap_or("user") {
            "system" | "developer" => {
                let text = match content {
                    Value::String(s) => s.clone(),
                    other => openai_content_blocks(other)
                        .iter()
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                };
                system.push(text);
            }
            "assistant" => {
                let mut blocks = openai_content_blocks(content);
                for call in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let id = call
                        .get("id")
                        .cloned()
                        .unwrap_or_else(|| json!(super::fresh_id("toolu_")));
                    blocks.push(tool_use_block(call, id));
                }
                push_turn(&mut messages, "assistant", blocks);
            }
            "tool" | "function" => {
                let text = match content {
                    Value::String(s) => s.clone(),
                    other => openai_content_blocks(other)
                        .iter()
                        .filter_map(|b| b.get("text").and_then(Value::as_str))
                        .collect::<Vec<_>>()
                        .join("\n"),
                };
                push_turn(
                    &mut messages,
                    "user",
                    vec![json!({
                        "type": "tool_result",
                        "tool_use_id": m.get("tool_call_id").cloned().unwrap_or(Value::Null),
                        "content": text,
                    })],
                );
            }
            _ => push_turn(&mut messages, "user", openai_content_blocks(content)),
        }
    }
    let mut out = Map::new();
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n")));
    }
    out.insert("messages".into(), Value::Array(messages));
    let max_tokens = body
        .get("max_tokens")
        .or_else(|| body.get("max_completion_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max_tokens));
    for field in ["temperature", "top_p"] {
        if let Some(v) = body.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), v.clone());
        }
    }
    match body.get("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(Value::Array(a)) if !a.is_empty() => {
            out.insert("stop_sequences".into(), Value::Array(a.clone()));
        }
        _ => {}
    }
    if let Some(user) = body.get("user").filter(|u| u.is_string()) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    let tools: Vec<Value> = body
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let f = t.get("function")?;
            let mut tool = json!({
                "name": f.get("name")?,
                "input_schema": f.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"})),
            });
            if let Some(d) = f.get("description").filter(|d| d.is_string()) {
                tool["description"] = d.clone();
            }
            Some(tool)
        })
        .collect();
    if !tools.is_empty() {
        out.insert("tools".into(), Value::Array(tools));
        let mut choice = match body.get("tool_choice") {
            Some(Value::String(s)) if s == "required" => Some(json!({ "type": "any" })),
            Some(Value::String(s)) if s == "none" => Some(json!({ "type": "none" })),
            Some(Value::String(s)) if s == "auto" => Some(json!({ "type": "auto" })),
            Some(c @ Value::Object(_)) => c
                .pointer("/function/name")
                .map(|n| json!({ "type": "tool", "name": n })),
            _ => None,
        };
        if body.get("parallel_tool_calls").and_then(Value::as_bool) == Some(false) {
            let c = choice.get_or_insert_with(|| json!({ "type": "auto" }));
            c["disable_parallel_tool_use"] = json!(true);
        }
        if let Some(choice) = choice {
            out.insert("tool_choice".into(), choice);
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai(body: Value) -> Value {
        to_openai(&body, ProviderKind::OpenaiCompatible, false)
    }

    #[test]
    fn system_string_and_blocks_become_a_system_message() {
        let out = openai(json!({"system": "be brief", "messages": []}));
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        let out = openai(json!({
            "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "messages": [],
        }));
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "a\nb"})
        );
        let out = openai(json!({"messages": [
            {"role": "system", "content": [{"type": "text", "text": "late"}]}]}));
        assert_eq!(
            out["messages"][0],
            json!({"role": "system", "content": "late"}),
            "system turns inside messages too"
        );
    }

    #[test]
    fn text_and_image_blocks_become_content_parts() {
        let out = openai(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "look"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}},
            {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
        ]}]}));
        let parts = &out["messages"][0]["content"];
        assert_eq!(parts[0], json!({"type": "text", "text": "look"}));
        assert_eq!(parts[1]["image_url"]["url"], "data:image/png;base64,AAA");
        assert_eq!(parts[2]["image_url"]["url"], "https://x/y.png");
        let out = openai(json!({"messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(out["messages"][0], json!({"role": "user", "content": "hi"}));
        let out = openai(json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": "b"},
        ]}]}));
        assert_eq!(
            out["messages"][0],
            json!({"role": "user", "content": "a\nb"}),
            "text alone is a string"
        );
    }

    #[test]
    fn tool_use_becomes_tool_calls_with_the_same_id() {
        let out = openai(json!({"messages": [{"role": "assistant", "content": [
            {"type": "text", "text": "calling"},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ]}]}));
        let m = &out["messages"][0];
        assert_eq!(m["content"], "calling");
        assert_eq!(m["tool_calls"][0]["id"], "toolu_1");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "weather");
        let args: Value = serde_json::from_str(
            m["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(args, json!({"city": "Paris"}));
    }

    #[test]
    fn tool_results_become_tool_messages_with_errors_marked() {
        let out = openai(json!({"messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": true},
            {"type": "text", "text": "thanks"},
        ]}]}));
        let m = out["messages"].as_array().unwrap();
        assert_eq!(
            m[0],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"})
        );
        assert_eq!(m[1]["content"], format!("{TOOL_ERROR_PREFIX}boom"));
        assert_eq!(m[2], json!({"role": "user", "content": "thanks"}));
    }

    #[test]
    fn tools_become_functions_and_tool_choice_maps() {
        let tools = json!([{"name": "w", "description": "d", "input_schema": {"type": "object"}},
                           {"type": "web_search_20250305", "name": "web_search"}]);
        let choice = |c: Value| {
            openai(json!({"messages": [], "tools": tools, "tool_choice": c}))["tool_choice"].clone()
        };
        let out = openai(json!({"messages": [], "tools": tools}));
        assert_eq!(
            out["tools"].as_array().unwrap().len(),
            1,
            "server tools are dropped"
        );
        assert_eq!(
            out["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(out["tools"][0]["function"]["description"], "d");
        assert_eq!(choice(json!({"type": "auto"})), "auto");
        assert_eq!(choice(json!({"type": "any"})), "required");
        assert_eq!(choice(json!({"type": "none"})), "none");
        assert_eq!(
            choice(json!({"type": "tool", "name": "w"}))["function"]["name"],
            "w"
        );
        let out = openai(json!({"messages": [], "tools": tools,
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true}}));
        assert_eq!(out["parallel_tool_calls"], false);
        let out = openai(json!({"messages": [], "tool_choice": {"type": "any"}}));
        assert!(out.get("tool_choice").is_none(), "no tools, no tool_choice");
    }

    #[test]
    fn sampling_stop_and_user_carry_over() {
        let out = openai(json!({
            "messages": [], "max_tokens": 9, "temperature": 0.5, "top_p": 0.9, "top_k": 3,
            "stop_sequences": ["END"], "metadata": {"user_id": "u1"},
        }));
        assert_eq!(out["max_tokens"], 9);
        assert_eq!(out["temperature"], 0.5);
        assert_eq!(out["top_p"], 0.9);
        assert_eq!(out["stop"], json!(["END"]));
        assert_eq!(out["user"], "u1");
        assert!(out.get("top_k").is_none(), "no OpenAI equivalent: dropped");
    }

    #[test]
    fn thinking_maps_to_glm_only() {
        let body = json!({"messages": [], "thinking": {"type": "enabled", "budget_tokens": 1024}});
        assert_eq!(
            to_openai(&body, ProviderKind::Glm, false)["thinking"],
            json!({"type": "enabled"})
        );
        assert!(
            to_openai(&body, ProviderKind::Kimi, false)
                .get("thinking")
                .is_none()
        );
        assert!(
            to_openai(&body, ProviderKind::Openai, true)["stream_options"]["include_usage"] == true
        );
    }

    #[test]
    fn openai_requests_become_anthropic_requests() {
        let out = to_anthropic(&json!({
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,QQ=="}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "w", "arguments": "{\"a\":1}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "r1"},
                {"role": "user", "content": "more"},
            ],
            "stop": "X", "user": "u", "temperature": 0.1,
            "tools": [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
        }));
        assert_eq!(out["system"], "sys");
        assert_eq!(out["max_tokens"], DEFAULT_MAX_TOKENS);
        let m = out["messages"].as_array().unwrap();
        assert_eq!(
            m[0]["content"][1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "QQ=="})
        );
        assert_eq!(m[1]["content"][0]["input"], json!({"a": 1}));
        assert_eq!(m[1]["content"][0]["id"], "call_1");
        assert_eq!(m[2]["role"], "user");
        assert_eq!(m[2]["content"][0]["type"], "tool_result");
        assert_eq!(
            m[2]["content"][1],
            json!({"type": "text", "text": "more"}),
            "merged turn"
        );
        assert_eq!(out["stop_sequences"], json!(["X"]));
        assert_eq!(out["metadata"]["user_id"], "u");
        assert_eq!(out["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(out["tool_choice"], json!({"type": "any"}));
    }

    #[test]
    fn invalid_arguments_are_kept_raw() {
        assert_eq!(arguments_input("{\"a\":1}"), json!({"a": 1}));
        assert_eq!(
            arguments_input("not json"),
            json!({RAW_ARGUMENTS_KEY: "not json"})
        );
        assert_eq!(arguments_input(""), json!({}));
    }
}
