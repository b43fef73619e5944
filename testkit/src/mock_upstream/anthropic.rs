//! The mock's tool calls (`mock-tool`, OpenAI dialect) and its Anthropic-compatible
//! `POST /v1/messages` (for the `anthropic` provider kind's pass-through).
//!
//! `mock-tool` on `/chat/completions`: a request with `tools` is answered with one call of
//! the first tool, arguments `{"city":"Paris"}` (streamed in two argument deltas). A request
//! whose last message is a `tool` result is answered `tool result: <content>`, and refused
//! with 400 unless its `tool_call_id` matches a call of an earlier assistant message.
//!
//! `/v1/messages` answers `echo: <last user text>` as an Anthropic message or its SSE
//! events, requires `x-api-key` (401 `authentication_error` otherwise) and
//! `anthropic-version`, and answers `mock-status-<code>` with that status in Anthropic's
//! error shape. The body is kept as the last request for pass-through assertions.

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use super::bodies::{content_text, error_response};
use super::state::MockState;

/// The arguments of every mock tool call.
pub const TOOL_ARGUMENTS: &str = "{\"city\":\"Paris\"}";

/// SSE body of `frames`.
fn sse(frames: Vec<String>) -> HttpResponse {
    let body = frames.concat();
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .body(body)
}

/// The `mock-tool` answer to an OpenAI chat request.
pub(super) fn tool_reply(request: &Value, seen: u64, model: &str, stream: bool) -> HttpResponse {
    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let id = format!("chatcmpl-mock-tool-{seen}");
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
    };
    let usage = json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17,
                       "prompt_tokens_details": {"cached_tokens": 2}});
    if let Some(last) = messages.last().filter(|m| m["role"] == "tool") {
        let call_id = last
            .get("tool_call_id")
            .and_then(Value::as_str)
            .unwrap_or("");
        let bound = messages.iter().any(|m| {
            m["role"] == "assistant"
                && m["tool_calls"]
                    .as_array()
                    .is_some_and(|calls| calls.iter().any(|c| c["id"] == call_id))
        });
        if !bound {
            return error_response(StatusCode::BAD_REQUEST, "tool_call_id matches no call");
        }
        let reply = format!("tool result: {}", content_text(&last["content"]));
        if stream {
            return sse(vec![
                format!(
                    "data: {}\n\n",
                    chunk(json!({"role": "assistant", "content": reply}), Value::Null)
                ),
                format!("data: {}\n\n", chunk(json!({}), json!("stop"))),
                "data: [DONE]\n\n".to_owned(),
            ]);
        }
        return HttpResponse::Ok().json(json!({
            "id": id, "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
            "usage": usage,
        }));
    }
    let name = request
        .pointer("/tools/0/function/name")
        .cloned()
        .unwrap_or_else(|| json!("tool"));
    let call_id = format!("call_mock_{seen}");
    if stream {
        let (a, b) = TOOL_ARGUMENTS.split_at(8);
        let mut last = chunk(json!({}), json!("tool_calls"));
        last["usage"] = usage;
        return sse(vec![
            format!(
                "data: {}\n\n",
                chunk(
                    json!({"role": "assistant", "content": null, "tool_calls": [
                {"index": 0, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
                    Value::Null
                )
            ),
            format!(
                "data: {}\n\n",
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": a}}]}),
                    Value::Null
                )
            ),
            format!(
                "data: {}\n\n",
                chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
                    Value::Null
                )
            ),
            format!("data: {last}\n\n"),
            "data: [DONE]\n\n".to_owned(),
        ]);
    }
    HttpResponse::Ok().json(json!({
        "id": id, "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": TOOL_ARGUMENTS}}],
        }}],
        "usage": usage,
    }))
}

/// Anthropic's error shape.
fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status)
        .json(json!({"type": "error", "error": {"type": kind, "message": message}}))
}

/// `POST /v1/messages`: see the module docs.
pub(super) async fn messages(
    state: web::Data<MockState>,
    http: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    let header = |n: &str| http.headers().get(n).and_then(|v| v.to_str().ok());
    if header("x-api-key").is_none_or(str::is_empty) {
        return anthropic_error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key required",
        );
    }
    if header("anthropic-version").is_none() {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version required",
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "body is not JSON",
        );
    };
    *state
        .last_request
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(body);
    let model = request["model"].as_str().unwrap_or("mock-echo").to_owned();
    let seen = state.count(&model);
    if let Some(code) = model
        .strip_prefix("mock-status-")
        .and_then(|c| c.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
    {
        return anthropic_error(code, "api_error", "mock status");
    }
    let last_user = request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| content_text(&m["content"]))
        .unwrap_or_default();
    let reply = format!("echo: {last_user}");
    let id = format!("msg_mock_{seen}");
    let usage = json!({"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 1});
    if request["stream"].as_bool() != Some(true) {
        return HttpResponse::Ok().json(json!({
            "id": id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": reply}],
            "stop_reason": "end_turn", "stop_sequence": null, "usage": usage,
        }));
    }
    let event = |v: Value| format!("event: {}\ndata: {v}\n\n", v["type"].as_str().unwrap_or(""));
    let mut frames = vec![
        event(
            json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 7, "output_tokens": 1}}}),
        ),
        event(
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        event(json!({"type": "ping"})),
    ];
    for piece in reply.split_inclusive(' ') {
        frames.push(event(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": piece}})));
    }
    frames.push(event(json!({"type": "content_block_stop", "index": 0})));
    frames.push(event(json!({"type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 3}})));
    frames.push(event(json!({"type": "message_stop"})));
    sse(frames)
}
