//! The OpenAI-compatible API: `POST /v1/chat/completions` (JSON, or SSE ending in
//! `data: [DONE]`) and `GET /v1/models`.
//!
//! Requests go through the same path as the `/ws` `chat` tool ([`crate::service`]): resolve,
//! cache (single-flight), provider. Unknown request fields pass through to the upstream
//! untouched; exai's own controls (`cache`, `continuation_id`) are taken out. Errors use
//! OpenAI's JSON shape with the status from [`crate::error`]. Bearer auth applies when
//! `EXAI_WS_TOKEN` is set (scheme in any case). The body is read first, within
//! [`crate::http::body`]'s time and memory bounds (408, 413, 503); only then is a place taken
//! under the global in-flight bound (`v1_max_inflight`, 429 beyond it); each provider's own
//! concurrency limit applies behind that. Origin, Host and `Content-Type` are checked before
//! any of this by [`crate::http::guard`].
//!
//! The hot path is lean: no mailbox hop, the body is parsed once, the upstream's response
//! bytes are returned as they are, and nothing is logged per request above `debug`. Each
//! stream chunk is written as soon as it arrives.

use actix_web::http::header;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, ResponseError as _};
use exai_actors::cache::key as cache_key;
use exai_actors::pipeline::request::{CallContext, Surface};
use futures_util::StreamExt as _;
use serde_json::{Value, json};

use crate::call_record::CallRecord;
use crate::error::GatewayError;
use crate::http::body::{BodyBudget, BodyError};
pub use crate::http::call::{CACHE_AGE_HEADER, CACHE_HEADER, PROVIDER_HEADER};
use crate::http::call::{
    InflightGuard, answer_headers, bool_field, cache_directives, event_stream_headers,
};
use crate::service::{CacheOutcome, ChunkStream};
use crate::state::SurfaceState;

/// Fields that steer exai and are not sent upstream.
const EXAI_FIELDS: &[&str] = &[
    "cache",
    "continuation_id",
    exai_actors::anthropic::DIALECT_FIELD,
];
/// The SSE terminator.
const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

/// Registers the routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/chat/completions", web::post().to(chat_completions))
        .route("/v1/models", web::get().to(models));
}

/// `Authorization: Bearer <EXAI_WS_TOKEN>`, when a token is configured.
fn check_auth(req: &HttpRequest, state: &SurfaceState) -> Result<(), GatewayError> {
    let offered = crate::auth::bearer_token(req);
    if state.authorized(offered) {
        Ok(())
    } else {
        Err(GatewayError::Unauthorized)
    }
}

/// Parses and checks the request body.
fn parse_body(bytes: &[u8]) -> Result<(Value, bool), GatewayError> {
    let body: Value = serde_json::from_slice(bytes)
        .map_err(|e| GatewayError::invalid(format!("request body is not valid JSON: {e}"), None))?;
    let Some(fields) = body.as_object() else {
        return Err(GatewayError::invalid(
            "request body must be a JSON object",
            None,
        ));
    };
    match fields.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => {}
        Some(Value::String(_)) | None => {
            return Err(GatewayError::invalid(
                "you must provide a model parameter",
                Some("model"),
            ));
        }
        Some(_) => {
            return Err(GatewayError::invalid(
                "model must be a string",
                Some("model"),
            ));
        }
    }
    match fields.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        Some(Value::Array(_)) => {
            return Err(GatewayError::invalid(
                "messages must not be empty",
                Some("messages"),
            ));
        }
        Some(_) => {
            return Err(GatewayError::invalid(
                "messages must be an array",
                Some("messages"),
            ));
        }
        None => {
            return Err(GatewayError::invalid(
                "messages is required",
                Some("messages"),
            ));
        }
    }
    let stream = bool_field(fields, "stream", "stream must be a boolean")?;
    if fields
        .get("cache")
        .is_some_and(|v| !v.is_null() && !v.is_boolean())
    {
        return Err(GatewayError::invalid(
            "cache must be a boolean",
            Some("cache"),
        ));
    }
    // Nothing else is checked: unknown fields pass through to the upstream.
    Ok((body, stream))
}

/// `POST /v1/chat/completions`: one `request` event per call, whatever the outcome.
pub async fn chat_completions(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<SurfaceState>,
    bodies: web::Data<BodyBudget>,
) -> HttpResponse {
    let mut record = Some(state.start_call(Surface::V1, crate::http::request_id::of(&req)));
    let context = record
        .as_ref()
        .map(CallRecord::context)
        .unwrap_or_else(|| CallContext::new(String::new()));
    let result = CallContext::scope(
        context,
        serve_completion(&req, payload, &state, &bodies, &mut record),
    )
    .await;
    let (response, kind) = match result {
        Ok(response) => (response, None),
        Err(e) => (e.error_response(), Some(e.kind())),
    };
    // A stream took the record with it; anything else ends here.
    if let Some(record) = record {
        record.finish(response.status().as_u16(), kind);
    }
    response
}

/// The call itself. A streamed answer takes `record` along, to finish it when the stream
/// ends.
async fn serve_completion(
    req: &HttpRequest,
    payload: web::Payload,
    state: &web::Data<SurfaceState>,
    bodies: &BodyBudget,
    record: &mut Option<CallRecord>,
) -> Result<HttpResponse, GatewayError> {
    check_auth(req, state)?;
    // The body first, bounded in time and memory; the in-flight slot only once it is in,
    // so clients trickling their bodies cannot hold the slots (issue 12 §4).
    let bytes = match bodies.read(req, payload, state.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge { size, limit }) => {
            return Err(GatewayError::TooLarge { size, limit });
        }
        Err(e) => {
            if let Some(r) = record.as_mut() {
                r.hint_error(e.code());
            }
            return Ok(e.response(true));
        }
    };
    let inflight = InflightGuard::acquire(state)?;
    let (mut body, stream) = parse_body(&bytes)?;
    if let Some(r) = record.as_mut() {
        let event = r.event();
        event.stream = stream;
        event.model = body.get("model").and_then(Value::as_str).map(str::to_owned);
    }
    let bypass = cache_key::bypass(&body, cache_directives(req));
    if let Some(fields) = body.as_object_mut() {
        for field in EXAI_FIELDS {
            fields.remove(*field);
        }
    }
    if stream {
        let answer = state.chat.stream(body, bypass).await?;
        let mut response = HttpResponse::Ok();
        event_stream_headers(&mut response);
        crate::http::access::AccessFacts::note(&mut response, &answer.model);
        answer_headers(
            &mut response,
            answer.cache,
            answer.provider.as_deref(),
            answer.cache_age_ms,
        );
        let Some(record) = record.take() else {
            return Err(GatewayError::Internal("the call has no record".to_owned()));
        };
        Ok(response.streaming(sse(answer.chunks, record, inflight)))
    } else {
        let answer = state.chat.complete(body, bypass).await?;
        drop(inflight);
        let mut response = HttpResponse::Ok();
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

/// Where an SSE response is.
enum Sse {
    /// Forwarding chunks.
    Open {
        /// The upstream chunks.
        chunks: ChunkStream,
        /// The call's `request` event, finished when the response ends (or, dropped, as
        /// cancelled). Boxed: it is large and the stream state is moved on every chunk.
        record: Box<CallRecord>,
        /// The `/v1` in-flight place, held for the whole stream.
        _inflight: InflightGuard,
    },
    /// Ended.
    Closed,
}

/// The chunks as SSE events, each written as soon as it arrives, ending with `[DONE]` (after
/// an error event when the upstream failed mid-stream).
fn sse(
    chunks: ChunkStream,
    record: CallRecord,
    inflight: InflightGuard,
) -> impl futures_util::Stream<Item = Result<Bytes, actix_web::Error>> {
    let start = Sse::Open {
        chunks,
        record: Box::new(record),
        _inflight: inflight,
    };
    futures_util::stream::unfold(start, |state| async move {
        let Sse::Open {
            mut chunks,
            mut record,
            _inflight,
        } = state
        else {
            return None;
        };
        match chunks.next().await {
            Some(Ok(chunk)) => {
                record.first_byte();
                let mut event = BytesMut::with_capacity(chunk.len() + 8);
                event.extend_from_slice(b"data: ");
                event.extend_from_slice(&chunk);
                event.extend_from_slice(b"\n\n");
                Some((
                    Ok(event.freeze()),
                    Sse::Open {
                        chunks,
                        record,
                        _inflight,
                    },
                ))
            }
            None => {
                record.finish(200, None);
                Some((Ok(Bytes::from_static(SSE_DONE)), Sse::Closed))
            }
            Some(Err(e)) => {
                // An error event, then `[DONE]`: the stream still ends the way clients expect,
                // and never with a `finish_reason` it did not have.
                let error = GatewayError::from(e);
                record.finish(200, Some(error.kind()));
                let event = format!("data: {}\n\ndata: [DONE]\n\n", error.openai_json());
                Some((Ok(Bytes::from(event)), Sse::Closed))
            }
        }
    })
}

/// `GET /v1/models`: every model the registry serves, OpenAI list shape plus exai's extras.
pub async fn models(
    req: HttpRequest,
    state: web::Data<SurfaceState>,
) -> Result<HttpResponse, GatewayError> {
    if crate::http::anthropic::is_anthropic_client(&req) {
        return Ok(crate::http::anthropic::models(&req, &state).await);
    }
    check_auth(&req, &state)?;
    let listings = state.chat.dispatcher().registry().list_models().await;
    let data: Vec<Value> = listings
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id,
                "object": "model",
                "created": 0,
                "owned_by": m.provider,
                "provider_kind": m.provider_kind,
                "aliases": m.aliases,
                "context_window": m.context_window,
                "max_output_tokens": m.max_output_tokens,
                "capabilities": m.capabilities,
                "status": m.status,
                "simulated": m.simulated,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "object": "list", "data": data })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn bodies_are_checked() {
        let code = |b: &str| {
            parse_body(b.as_bytes())
                .err()
                .map(|e| e.http_status().as_u16())
        };
        assert_eq!(code("nope"), Some(400));
        assert_eq!(code("[]"), Some(400));
        assert_eq!(
            code(r#"{"messages":[{"role":"user","content":"x"}]}"#),
            Some(400)
        );
        assert_eq!(code(r#"{"model":"m"}"#), Some(400));
        assert_eq!(
            code(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"y"}"#),
            Some(400)
        );
        let (body, stream) = parse_body(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true,"foo":1}"#,
        )
        .unwrap();
        assert!(stream);
        assert_eq!(body["foo"], 1);
    }
}
