//! Anthropic's Messages API for Claude Code and the Anthropic SDKs: `POST /v1/messages`
//! (JSON, or SSE events), `POST /v1/messages/count_tokens` (an estimate, [`tokens`]) and the
//! Anthropic shape of `GET /v1/models` (when the request carries `anthropic-version`).
//!
//! A request is checked, marked as Anthropic-dialect ([`exai_actors::anthropic`]) and sent
//! down the one chat path ([`crate::service`]): the same resolution (aliases, `claude-*`
//! fallback), cache and single-flight, provider calls, retries, breakers and fallbacks as
//! `/v1/chat/completions`. The provider translates for OpenAI-compatible upstreams and
//! passes the request through untranslated to an `anthropic` provider. Errors use
//! Anthropic's shape ([`crate::error::AnthropicError`]); auth is `x-api-key` or Bearer,
//! checked against `EXAI_WS_TOKEN` in constant time. `tool.call` events carry
//! `surface: "anthropic"`.

pub mod tokens;

use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _};
use exai_actors::anthropic::{DIALECT_ANTHROPIC, DIALECT_FIELD};
use exai_actors::cache::key as cache_key;
use exai_actors::pipeline::request::{CallContext, Surface};
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::call_record::CallRecord;
use crate::error::{AnthropicError, GatewayError};
use crate::http::body::{BodyBudget, BodyError};
use crate::http::call::{
    InflightGuard, answer_headers, bool_field, cache_directives, event_stream_headers,
};
use crate::service::{CacheOutcome, ChunkStream};
use crate::state::SurfaceState;

/// The header that marks an Anthropic client.
pub const VERSION_HEADER: &str = "anthropic-version";

/// Registers `/v1/messages` and `/v1/messages/count_tokens`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/messages", web::post().to(messages))
        .route("/v1/messages/count_tokens", web::post().to(count_tokens));
}

/// Whether a request speaks Anthropic's API (for the shape of `GET /v1/models`).
pub fn is_anthropic_client(req: &HttpRequest) -> bool {
    req.headers().contains_key(VERSION_HEADER)
}

/// `x-api-key: <EXAI_WS_TOKEN>` or `Authorization: Bearer <EXAI_WS_TOKEN>`, when a token is
/// configured.
fn check_auth(req: &HttpRequest, state: &SurfaceState) -> Result<(), AnthropicError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    // The Bearer scheme in any case (RFC 9110), through the one helper every surface uses.
    let offered = header("x-api-key")
        .map(str::trim)
        .or_else(|| crate::auth::bearer_token(req));
    if state.authorized(offered) {
        Ok(())
    } else {
        Err(GatewayError::Unauthorized.into())
    }
}

/// Reads the body through the app's [`BodyBudget`] (within `EXAI_HTTP_BODY_TIMEOUT_MS` and
/// the shared byte budget), up to the `/v1` limit. A body that does not arrive in time is 408,
/// a spent budget 503 (`retry-after: 1`), both in Anthropic's error shape.
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    bodies: &BodyBudget,
    limit: usize,
) -> Result<Result<Bytes, HttpResponse>, AnthropicError> {
    match bodies.read(req, payload, limit).await {
        Ok(bytes) => Ok(Ok(bytes)),
        Err(BodyError::TooLarge { size, limit }) => {
            Err(GatewayError::TooLarge { size, limit }.into())
        }
        Err(e) => {
            let kind = match e {
                BodyError::Busy { .. } => "overloaded_error",
                _ => "invalid_request_error",
            };
            let mut response = HttpResponse::build(e.status());
            if matches!(e, BodyError::Busy { .. }) {
                response.insert_header(("retry-after", "1"));
            }
            if matches!(e, BodyError::Timeout(_)) {
                response.insert_header((header::CONNECTION, "close"));
            }
            Ok(Err(response.json(json!({
                "type": "error",
                "error": { "type": kind, "message": e.to_string() },
            }))))
        }
    }
}

/// Parses and checks a Messages request: `model`, a non-empty `messages` array, a positive
/// `max_tokens`, a boolean `stream`. Roles are not checked: Claude Code also sends `system`
/// turns inside `messages`. Everything else is left to the translation (unknown
/// fields are dropped for OpenAI-compatible upstreams and passed through to `anthropic`).
fn parse_body(bytes: &[u8], count_only: bool) -> Result<(Value, bool), GatewayError> {
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::invalid(format!("request body is not valid JSON: {e}"), None))?;
    let Some(fields) = body.as_object() else {
        return Err(GatewayError::invalid(
            "request body must be a JSON object",
            None,
        ));
    };
    if fields
        .get("model")
        .and_then(Value::as_str)
        .is_none_or(|m| m.trim().is_empty())
    {
        return Err(GatewayError::invalid(
            "model: a non-empty string is required",
            Some("model"),
        ));
    }
    if fields
        .get("messages")
        .and_then(Value::as_array)
        .is_none_or(|m| m.is_empty())
    {
        return Err(GatewayError::invalid(
            "messages: a non-empty array is required",
            Some("messages"),
        ));
    }
    if !count_only
        && fields
            .get("max_tokens")
            .and_then(Value::as_u64)
            .is_none_or(|n| n == 0)
    {
        return Err(GatewayError::invalid(
            "max_tokens: a positive integer is required",
            Some("max_tokens"),
        ));
    }
    let stream = bool_field(fields, "stream", "stream: must be a boolean")?;
    Ok((body, stream))
}

/// `POST /v1/messages`: one `request` event per call, whatever the outcome.
pub async fn messages(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<SurfaceState>,
    bodies: web::Data<BodyBudget>,
) -> HttpResponse {
    let mut record = Some(state.start_call(Surface::Anthropic, crate::http::request_id::of(&req)));
    let context = record
        .as_ref()
        .map(CallRecord::context)
        .unwrap_or_else(|| CallContext::new(String::new()));
    let result = CallContext::scope(
        context,
        serve_messages(&req, payload, &state, &bodies, &mut record),
    )
    .await;
    let (response, kind) = match result {
        Ok(response) => (response, None),
        Err(e) => (e.error_response(), Some(e.0.kind())),
    };
    // A stream took the record with it; anything else ends here.
    if let Some(record) = record {
        record.finish(response.status().as_u16(), kind);
    }
    response
}

/// The call itself; a streamed answer takes `record` along.
async fn serve_messages(
    req: &HttpRequest,
    payload: web::Payload,
    state: &web::Data<SurfaceState>,
    bodies: &BodyBudget,
    record: &mut Option<CallRecord>,
) -> Result<HttpResponse, AnthropicError> {
    check_auth(req, state)?;
    // The body first; the in-flight place only once it is in (issue 12 §4), as on /v1.
    let bytes = match read_body(req, payload, bodies, state.max_body_bytes).await? {
        Ok(bytes) => bytes,
        Err(refusal) => return Ok(refusal),
    };
    let inflight = InflightGuard::acquire(state)?;
    let (mut body, stream) = parse_body(&bytes, false)?;
    if let Some(r) = record.as_mut() {
        let event = r.event();
        event.stream = stream;
        event.model = body.get("model").and_then(Value::as_str).map(str::to_owned);
    }
    let bypass = cache_key::bypass(&body, cache_directives(req));
    if let Some(fields) = body.as_object_mut() {
        fields.remove("cache");
        fields.insert(DIALECT_FIELD.into(), json!(DIALECT_ANTHROPIC));
    }
    let mut response = HttpResponse::Ok();
    if stream {
        let answer = state.chat.stream(body, bypass).await?;
        event_stream_headers(&mut response);
        crate::http::access::AccessFacts::note(&mut response, &answer.model);
        answer_headers(
            &mut response,
            answer.cache,
            answer.provider.as_deref(),
            answer.cache_age_ms,
        );
        let Some(record) = record.take() else {
            return Err(GatewayError::Internal("the call has no record".to_owned()).into());
        };
        Ok(response.streaming(sse(answer.chunks, record, inflight)))
    } else {
        let answer = state.chat.complete(body, bypass).await?;
        drop(inflight);
        response.content_type("application/json");
        crate::http::access::AccessFacts::note(&mut response, &answer.model);
        answer_headers(
            &mut response,
            answer.cache,
            answer.provider.as_deref(),
            answer.cache_age_ms,
        );
        if answer.cache == CacheOutcome::Bypass {
            response.insert_header((header::CACHE_CONTROL, "no-store"));
        }
        Ok(response.body(answer.body))
    }
}

/// The `type` of an event payload, which is also its SSE event name.
#[derive(Deserialize)]
struct EventType<'a> {
    /// `message_start`, `content_block_delta`, …
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
}

/// One SSE frame: `event: <type>` and `data: <payload>`.
fn frame(kind: &str, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + kind.len() + 18);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\n\n");
    out.freeze()
}

/// Where an SSE response is.
enum Sse {
    /// Forwarding events.
    /// (The record is boxed: it is large and the state moves on every event.)
    Open(ChunkStream, Box<CallRecord>, InflightGuard),
    /// Ended.
    Closed,
}

/// The events as SSE frames, each written as soon as it arrives. An upstream failure ends
/// the stream with an `error` event; an `error` event from the upstream ends it too.
fn sse(
    chunks: ChunkStream,
    record: CallRecord,
    inflight: InflightGuard,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    futures_util::stream::unfold(
        Sse::Open(chunks, Box::new(record), inflight),
        |state| async move {
            let Sse::Open(mut chunks, mut record, inflight) = state else {
                return None;
            };
            match chunks.next().await {
                Some(Ok(chunk)) => {
                    let kind = serde_json::from_slice::<EventType<'_>>(&chunk)
                        .map(|t| t.kind.into_owned())
                        .unwrap_or_else(|_| "message".to_owned());
                    let bytes = frame(&kind, &chunk);
                    if kind == "error" {
                        record.finish(200, Some("upstream_error_event"));
                        return Some((Ok(bytes), Sse::Closed));
                    }
                    if kind == "content_block_delta" {
                        record.first_byte();
                    }
                    Some((Ok(bytes), Sse::Open(chunks, record, inflight)))
                }
                None => {
                    record.finish(200, None);
                    None
                }
                Some(Err(e)) => {
                    let error = GatewayError::from(e);
                    record.finish(200, Some(error.kind()));
                    let payload = error.anthropic_json().to_string();
                    Some((Ok(frame("error", payload.as_bytes())), Sse::Closed))
                }
            }
        },
    )
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}`, estimated locally.
pub async fn count_tokens(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<SurfaceState>,
    bodies: web::Data<BodyBudget>,
) -> Result<HttpResponse, AnthropicError> {
    check_auth(&req, &state)?;
    let bytes = match read_body(&req, payload, &bodies, state.max_body_bytes).await? {
        Ok(bytes) => bytes,
        Err(refusal) => return Ok(refusal),
    };
    let (body, _) = parse_body(&bytes, true)?;
    let count = web::block(move || tokens::estimate(&body))
        .await
        .map_err(|e| GatewayError::Internal(format!("token count failed: {e}")))?;
    Ok(HttpResponse::Ok().json(json!({ "input_tokens": count })))
}

/// `GET /v1/models` for an Anthropic client: `{"data":[{"type":"model","id",
/// "display_name","created_at"}],"has_more","first_id","last_id"}`, one entry per model id.
pub async fn models(req: &HttpRequest, state: &web::Data<SurfaceState>) -> HttpResponse {
    if let Err(e) = check_auth(req, state) {
        return e.error_response();
    }
    let listings = state.chat.dispatcher().registry().list_models().await;
    let mut seen = std::collections::HashSet::new();
    let data: Vec<Value> = listings
        .into_iter()
        .filter(|m| seen.insert(m.id.clone()))
        .map(|m| {
            json!({
                "type": "model",
                "id": m.id,
                "display_name": m.id,
                "created_at": "1970-01-01T00:00:00Z",
            })
        })
        .collect();
    let first = data.first().map(|m| m["id"].clone());
    let last = data.last().map(|m| m["id"].clone());
    HttpResponse::Ok().json(json!({
        "data": data, "has_more": false, "first_id": first, "last_id": last,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bodies_are_checked_in_anthropic_terms() {
        let status = |b: &str, count: bool| {
            parse_body(b.as_bytes(), count)
                .err()
                .map(|e| e.anthropic_status_type())
        };
        let ok = r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#;
        assert_eq!(status(ok, false), None);
        assert_eq!(status("nope", false), Some((400, "invalid_request_error")));
        assert!(
            status(
                r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
                false
            )
            .is_some()
        );
        assert_eq!(
            status(
                r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
                true
            ),
            None
        );
        assert!(status(r#"{"model":"m","max_tokens":5,"messages":[]}"#, false).is_some());
        assert_eq!(
            status(
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}"#,
                false
            ),
            None,
            "Claude Code sends system turns inside messages"
        );
        assert!(
            status(
                r#"{"model":"m","max_tokens":0,"messages":[{"role":"user"}]}"#,
                false
            )
            .is_some()
        );
        let (_, stream) = parse_body(
            br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"x"}]}"#,
            false,
        )
        .unwrap();
        assert!(stream);
    }

    #[test]
    fn frames_name_their_event() {
        assert_eq!(
            frame("ping", br#"{"type":"ping"}"#),
            Bytes::from_static(b"event: ping\ndata: {\"type\":\"ping\"}\n\n")
        );
    }
}
