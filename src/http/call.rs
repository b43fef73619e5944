//! What the two HTTP chat surfaces, `/v1/chat/completions` ([`crate::http::v1`]) and
//! `/v1/messages` ([`crate::http::anthropic`]), share: the in-flight bound, the cache
//! directives from its headers, exai's answer headers and the check of a boolean body field.
//! Each surface keeps its own error shape and messages; both record their calls' `request`
//! events through [`crate::call_record`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::HttpRequest;
use actix_web::http::header;
use exai_actors::cache::key::CacheDirectives;
use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::service::CacheOutcome;
use crate::state::SurfaceState;

/// Header telling the client how the cache answered.
pub const CACHE_HEADER: &str = "x-exai-cache";
/// Response header: age of a cached answer in milliseconds (hits only).
pub const CACHE_AGE_HEADER: &str = "x-exai-cache-age-ms";
/// Header naming the provider that answered.
pub const PROVIDER_HEADER: &str = "x-exai-provider";

/// The request's `Cache-Control` and `Pragma` directives.
pub(crate) fn cache_directives(req: &HttpRequest) -> CacheDirectives {
    let header_value =
        |name: header::HeaderName| req.headers().get(name).and_then(|v| v.to_str().ok());
    CacheDirectives::from_headers(
        header_value(header::CACHE_CONTROL),
        header_value(header::PRAGMA),
    )
}

/// The head of a streamed answer: SSE, never stored by caches, not buffered by proxies (nginx
/// honours `x-accel-buffering`).
pub(crate) fn event_stream_headers(response: &mut actix_web::HttpResponseBuilder) {
    response
        .content_type("text/event-stream")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"));
}

/// exai's headers on an answer: how the cache answered, the provider, a hit's age.
pub(crate) fn answer_headers(
    response: &mut actix_web::HttpResponseBuilder,
    cache: CacheOutcome,
    provider: Option<&str>,
    age_ms: Option<u64>,
) {
    response.insert_header((CACHE_HEADER, cache.as_str()));
    if let Some(p) = provider {
        response.insert_header((PROVIDER_HEADER, p));
    }
    if let Some(age) = age_ms {
        response.insert_header((CACHE_AGE_HEADER, age.to_string()));
    }
}

/// A place among the `/v1` requests in flight (`/v1/messages` included); released when
/// dropped.
pub(crate) struct InflightGuard(Arc<AtomicUsize>);

impl InflightGuard {
    pub(crate) fn acquire(state: &SurfaceState) -> Result<Self, GatewayError> {
        let now = state.v1_inflight.fetch_add(1, Ordering::AcqRel);
        if now >= state.v1_max_inflight {
            state.v1_inflight.fetch_sub(1, Ordering::AcqRel);
            return Err(GatewayError::OverCapacity(format!(
                "{} requests in flight (limit {})",
                now, state.v1_max_inflight
            )));
        }
        Ok(Self(state.v1_inflight.clone()))
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The boolean body field `name` (absent or `null`: `false`); anything else is a validation
/// error with `message`.
pub(crate) fn bool_field(
    fields: &Map<String, Value>,
    name: &str,
    message: &str,
) -> Result<bool, GatewayError> {
    match fields.get(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(GatewayError::invalid(message, Some(name))),
    }
}
