//! The OpenAI-style routes: `chat/completions` with its fault modes chosen by model name,
//! `models`, GLM's `web_search`, and the `/__mock` counters.

use std::collections::VecDeque;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use super::anthropic;
use super::bodies::{
    StreamWatch, big_body, content_text, endless, error_response, sse_line, words,
};
use super::state::MockState;

/// Extra latency of `mock-slow`.
pub const DEFAULT_SLOW: Duration = Duration::from_millis(300);
/// Gap between chunks of `mock-trickle`.
pub const DEFAULT_TRICKLE: Duration = Duration::from_millis(100);
/// `Retry-After` of `mock-429`, in seconds.
pub const DEFAULT_RETRY_AFTER: &str = "1";
/// Gap between chunks of `mock-endless`.
pub const DEFAULT_ENDLESS: Duration = Duration::from_millis(50);
/// The message of `mock-quota`.
pub const QUOTA_MESSAGE: &str = "You exceeded your current quota";
/// Minimum number of content chunks in a trickle stream, so it lasts a while.
const TRICKLE_MIN_CHUNKS: usize = 10;
/// Largest request body accepted.
pub(super) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// The reasoning text of `mock-reasoning`.
const REASONING: &str = "The user wants an echo, so I echo.";

/// What a model name asks the mock to do.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    /// Answer normally.
    Echo,
    /// Answer with `reasoning_content`.
    Reasoning,
    /// Answer after an extra delay.
    Slow(Duration),
    /// HTTP 500.
    Fail500,
    /// HTTP 429 with this `Retry-After`.
    Fail429(String),
    /// HTTP 500 for the first `n` requests of this name.
    Flaky(u64),
    /// A body that is not JSON.
    Malformed,
    /// A stream that stops half-way.
    StreamCut,
    /// Never answer.
    Hang,
    /// A slow stream with this gap between chunks.
    Trickle(Duration),
    /// Answer with this HTTP status.
    Status(u16),
    /// 401 quoting the bearer token.
    Unauthorized,
    /// A completion of this many content bytes; whether `Content-Length` is announced.
    Big(usize, bool),
    /// A stream with one data line of this many bytes.
    SseLine(usize),
    /// A stream that never ends, with this gap between chunks.
    Endless(Duration),
    /// 200 with a quota error object (as an SSE event when streaming).
    Quota,
    /// 200 with a quota error object as plain JSON, even when streaming.
    QuotaJson,
    /// 200 with an object without `choices`.
    NoChoices,
    /// Tool calls (module `anthropic`).
    Tool,
}

fn mode(model: &str) -> Mode {
    let suffix = |prefix: &str| model.strip_prefix(prefix).and_then(|s| s.strip_prefix('-'));
    let millis = |s: &str| s.parse::<u64>().ok().map(Duration::from_millis);
    match model {
        "mock-reasoning" => return Mode::Reasoning,
        "mock-slow" => return Mode::Slow(DEFAULT_SLOW),
        "mock-500" => return Mode::Fail500,
        "mock-429" => return Mode::Fail429(DEFAULT_RETRY_AFTER.into()),
        "mock-malformed" => return Mode::Malformed,
        "mock-stream-cut" => return Mode::StreamCut,
        "mock-hang" => return Mode::Hang,
        "mock-trickle" => return Mode::Trickle(DEFAULT_TRICKLE),
        "mock-401" => return Mode::Unauthorized,
        "mock-endless" => return Mode::Endless(DEFAULT_ENDLESS),
        "mock-quota" => return Mode::Quota,
        "mock-quota-json" => return Mode::QuotaJson,
        "mock-no-choices" => return Mode::NoChoices,
        "mock-tool" => return Mode::Tool,
        _ => {}
    }
    if let Some(n) = suffix("mock-big-cl").and_then(|s| s.parse().ok()) {
        return Mode::Big(n, true);
    }
    if let Some(n) = suffix("mock-big").and_then(|s| s.parse().ok()) {
        return Mode::Big(n, false);
    }
    if let Some(n) = suffix("mock-sse-line").and_then(|s| s.parse().ok()) {
        return Mode::SseLine(n);
    }
    if let Some(d) = suffix("mock-endless").and_then(millis) {
        return Mode::Endless(d);
    }
    if let Some(d) = suffix("mock-slow").and_then(millis) {
        return Mode::Slow(d);
    }
    if let Some(secs) = suffix("mock-429").filter(|s| s.parse::<f64>().is_ok()) {
        return Mode::Fail429(secs.to_owned());
    }
    if let Some(n) = suffix("mock-flaky").and_then(|s| s.parse().ok()) {
        return Mode::Flaky(n);
    }
    if let Some(d) = suffix("mock-trickle").and_then(millis) {
        return Mode::Trickle(d);
    }
    if let Some(code) = suffix("mock-status").and_then(|s| s.parse().ok()) {
        return Mode::Status(code);
    }
    Mode::Echo
}

/// The request's `x-request-id`, if it sent one.
fn request_id(http: &HttpRequest) -> Option<String> {
    http.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

pub(super) async fn chat(
    state: web::Data<MockState>,
    http: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_response(StatusCode::BAD_REQUEST, "request body is not JSON");
    };
    *state
        .last_request
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(body);
    state.log("chat/completions", &request, request_id(&http));
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-echo")
        .to_owned();
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let seen = state.count(&model);
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let mode = mode(&model);
    match &mode {
        Mode::Hang => std::future::pending::<()>().await,
        Mode::Slow(d) => tokio::time::sleep(*d).await,
        Mode::Fail500 => return error_response(StatusCode::INTERNAL_SERVER_ERROR, "mock failure"),
        Mode::Fail429(retry_after) => {
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", retry_after.as_str()))
                .json(json!({"error": {"message": "mock rate limit", "type": "rate_limit"}}));
        }
        Mode::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_REQUEST);
            return error_response(status, "mock status");
        }
        Mode::Unauthorized => {
            let auth = http
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim_start_matches("Bearer ");
            let message = format!("Incorrect API key provided: {auth}");
            return error_response(StatusCode::UNAUTHORIZED, &message);
        }
        Mode::Flaky(n) if seen <= *n => {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "mock flaky failure");
        }
        Mode::Big(n, announce) => return big_body(state.into_inner(), *n, *announce),
        Mode::SseLine(n) => return sse_line(state.into_inner(), *n),
        Mode::Endless(gap) => return endless(state.into_inner(), &model, *gap),
        Mode::Quota | Mode::QuotaJson => {
            let error = json!({"error": {"message": QUOTA_MESSAGE, "type": "insufficient_quota",
                "param": null, "code": "insufficient_quota"}});
            if stream && mode == Mode::Quota {
                return HttpResponse::Ok()
                    .content_type("text/event-stream")
                    .body(format!("data: {error}\n\ndata: [DONE]\n\n"));
            }
            return HttpResponse::Ok().json(error);
        }
        Mode::NoChoices => {
            return HttpResponse::Ok()
                .json(json!({"id": "chatcmpl-empty", "object": "chat.completion"}));
        }
        Mode::Tool => return anthropic::tool_reply(&request, seen, &model, stream),
        _ => {}
    }

    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let prompt_tokens: u64 = messages
        .iter()
        .map(|m| words(&content_text(m.get("content").unwrap_or(&Value::Null))))
        .sum();
    let reply = format!("echo: {last_user}");
    let completion_tokens = words(&reply);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let id = format!("chatcmpl-mock-{seen}");
    let reasoning = mode == Mode::Reasoning;

    if !stream && let Some(call) = tool_call(&request, &last_user) {
        return HttpResponse::Ok().json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": Value::Null, "tool_calls": [call] },
                "finish_reason": "tool_calls",
            }],
            "usage": usage,
        }));
    }
    if !stream {
        if mode == Mode::Malformed {
            return HttpResponse::Ok()
                .content_type("application/json")
                .body("{\"id\": \"chatcmpl-mock\", \"choices\": [");
        }
        let mut message = json!({ "role": "assistant", "content": reply });
        if reasoning {
            message["reasoning_content"] = json!(REASONING);
        }
        return HttpResponse::Ok().json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }],
            "usage": usage,
            "system_fingerprint": "exai-mock",
        }));
    }

    // Streaming: build every chunk up front, then hand them out (with gaps when trickling).
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
    };
    let mut chunks: Vec<Value> = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if reasoning {
        chunks.push(chunk(
            json!({ "reasoning_content": REASONING }),
            Value::Null,
        ));
    }
    let mut pieces: Vec<String> = reply.split_inclusive(' ').map(str::to_owned).collect();
    if matches!(mode, Mode::Trickle(_)) {
        while pieces.len() < TRICKLE_MIN_CHUNKS {
            pieces.push(String::new());
        }
    }
    chunks.extend(
        pieces
            .into_iter()
            .map(|p| chunk(json!({ "content": p }), Value::Null)),
    );
    chunks.push(chunk(json!({}), json!("stop")));
    // As OpenAI does: usage only when asked for, then `"usage": null` on every chunk and a
    // last chunk with no choices that carries it.
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        == Some(true);
    if include_usage {
        for c in &mut chunks {
            c["usage"] = Value::Null;
        }
        let mut usage_chunk = chunk(json!({}), Value::Null);
        usage_chunk["choices"] = json!([]);
        usage_chunk["usage"] = usage;
        chunks.push(usage_chunk);
    }

    let mut frames: VecDeque<Bytes> = chunks
        .iter()
        .map(|c| Bytes::from(format!("data: {c}\n\n")))
        .collect();
    match mode {
        Mode::StreamCut => frames.truncate(frames.len() / 2),
        Mode::Malformed => {
            frames.truncate(1);
            frames.push_back(Bytes::from_static(b"data: {\"choices\": [\n\n"));
            frames.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        }
        _ => frames.push_back(Bytes::from_static(b"data: [DONE]\n\n")),
    }
    let gap = match mode {
        Mode::Trickle(d) => d,
        _ => Duration::ZERO,
    };
    let watch = StreamWatch {
        state: state.into_inner(),
        finished: false,
    };
    let body = futures_util::stream::unfold(
        (frames, watch, true),
        move |(mut frames, mut watch, first)| async move {
            match frames.pop_front() {
                Some(frame) => {
                    if !first && !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    Some((
                        Ok::<_, std::convert::Infallible>(frame),
                        (frames, watch, false),
                    ))
                }
                None => {
                    watch.mark_finished();
                    None
                }
            }
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(body)
}

// ---------------------------------------------------------------------------------------
// Tool routes (issue 14).

/// The tool call a request with `tools` gets: the first tool, called with the last user
/// message as `input`. `None` when there are no tools, `tool_choice` is `none`, or the last
/// message is already a tool result.
fn tool_call(request: &Value, last_user: &str) -> Option<Value> {
    let tools = request.get("tools")?.as_array()?;
    if request.get("tool_choice").and_then(Value::as_str) == Some("none") {
        return None;
    }
    let last_role = request
        .pointer("/messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str);
    if last_role == Some("tool") {
        return None;
    }
    let name = tools
        .first()?
        .pointer("/function/name")
        .and_then(Value::as_str)?;
    Some(json!({
        "id": "call_mock_1",
        "type": "function",
        "function": { "name": name, "arguments": json!({ "input": last_user }).to_string() },
    }))
}

/// GLM's `POST /web_search`: `count` results derived from `search_query`.
pub(super) async fn web_search(
    state: web::Data<MockState>,
    http: HttpRequest,
    body: Bytes,
) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_response(StatusCode::BAD_REQUEST, "request body is not JSON");
    };
    state.log("web_search", &request, request_id(&http));
    let Some(query) = request.get("search_query").and_then(Value::as_str) else {
        return error_response(StatusCode::BAD_REQUEST, "search_query is required");
    };
    let count = request
        .get("count")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .min(50);
    let results: Vec<Value> = (1..=count)
        .map(|i| {
            json!({
                "title": format!("Result {i} for {query}"),
                "link": format!("https://example.invalid/search/{i}"),
                "content": format!("mock page {i} about {query}"),
                "media": "exai-mock",
                "refer": format!("ref_{i}"),
                "publish_date": "2026-01-01",
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "id": "web-search-mock",
        "created": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "request_id": request.get("request_id"),
        "search_intent": [{ "query": query, "intent": "SEARCH_ALWAYS", "keywords": query }],
        "search_result": results,
    }))
}

pub(super) async fn models(state: web::Data<MockState>) -> HttpResponse {
    state.model_list_requests.fetch_add(1, Ordering::Relaxed);
    let models = state
        .models
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let data: Vec<Value> = models
        .iter()
        .map(|id| json!({ "id": id, "object": "model", "created": 0, "owned_by": "exai-mock" }))
        .collect();
    HttpResponse::Ok().json(json!({ "object": "list", "data": data }))
}

pub(super) async fn stats(state: web::Data<MockState>) -> HttpResponse {
    HttpResponse::Ok().json(state.stats())
}

pub(super) async fn reset(state: web::Data<MockState>) -> HttpResponse {
    state.reset();
    HttpResponse::Ok().json(state.stats())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock_upstream::bodies::{BIG_PIECE, filler};

    #[test]
    fn fault_modes_parse_from_model_names() {
        assert_eq!(mode("anything"), Mode::Echo);
        assert_eq!(mode("mock-slow-50"), Mode::Slow(Duration::from_millis(50)));
        assert_eq!(mode("mock-429-0.2"), Mode::Fail429("0.2".into()));
        assert_eq!(mode("mock-flaky-3"), Mode::Flaky(3));
        assert_eq!(
            mode("mock-trickle-20"),
            Mode::Trickle(Duration::from_millis(20))
        );
        assert_eq!(mode("mock-hang"), Mode::Hang);
        assert_eq!(mode("mock-big-100"), Mode::Big(100, false));
        assert_eq!(mode("mock-big-cl-100"), Mode::Big(100, true));
        assert_eq!(mode("mock-sse-line-7"), Mode::SseLine(7));
        assert_eq!(
            mode("mock-endless-5"),
            Mode::Endless(Duration::from_millis(5))
        );
        assert_eq!(mode("mock-quota"), Mode::Quota);
        assert_eq!(mode("mock-quota-json"), Mode::QuotaJson);
        assert_eq!(
            filler(BIG_PIECE + 3).map(|b| b.len()).sum::<usize>(),
            BIG_PIECE + 3
        );
    }
}
