//! The span every HTTP request runs in, and the optional access log (`EXAI_ACCESS_LOG=true`).
//!
//! One middleware, outermost (so requests the guard refuses are seen too):
//!
//! - a `request` span (`tracing`, INFO) around the handler, with `surface`, `method` and
//!   `path` from the start and `request_id`, `status`, `model`, `provider` and `cache` once
//!   the response head is known; log lines written by the handler carry the first three;
//! - when the access log is on, one INFO line per request, target `exai::access`, with method,
//!   path, status, latency to the response head (for a stream, the time to its first byte:
//!   the stream itself is still running), model and cache outcome. Off by default.
//!
//! The chat surfaces tell it the model through [`AccessFacts`] in the response's extensions;
//! the provider and cache outcome come from exai's own answer headers, the request id from
//! `x-request-id` (the response's, else the request's).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument as _;
use tracing::field::Empty;

use super::call::{CACHE_HEADER, PROVIDER_HEADER};

/// The request-id header, read and written by the surfaces.
const REQUEST_ID_HEADER: &str = "x-request-id";
/// `tracing` target of the access log lines (filter with `EXAI_LOG=exai::access=info,…`).
pub const ACCESS_TARGET: &str = "exai::access";

/// Whether the access log is on (`EXAI_ACCESS_LOG`), as app data.
#[derive(Debug, Clone, Copy)]
pub struct AccessLog(pub bool);

/// What a surface knows of a call that the response head does not say: the model asked for.
/// Put in the response's extensions.
#[derive(Debug, Clone)]
pub struct AccessFacts {
    /// The model as the client named it.
    pub model: String,
}

impl AccessFacts {
    /// Notes `model` on `response`.
    pub fn note(response: &mut actix_web::HttpResponseBuilder, model: &str) {
        response.extensions_mut().insert(Self {
            model: model.to_owned(),
        });
    }
}

/// Which surface a path belongs to, for the span and the log line.
pub fn surface_of(path: &str) -> &'static str {
    let under = |prefix: &str| {
        path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if under("/v1/messages") {
        "anthropic"
    } else if under("/v1") {
        "v1"
    } else if under("/ws/dashboard") || under("/dashboard") {
        "dashboard"
    } else if under("/ws") || path == "/" {
        "ws"
    } else if under("/mcp") {
        "mcp"
    } else if under("/api") {
        "api"
    } else if under("/health") {
        "health"
    } else if under("/metrics") {
        "metrics"
    } else {
        "other"
    }
}

/// The middleware (`actix_web::middleware::from_fn`).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let enabled = req
        .app_data::<web::Data<AccessLog>>()
        .is_some_and(|on| on.0);
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.path().to_owned();
    let asked_id = header(req.headers(), REQUEST_ID_HEADER).map(str::to_owned);
    let surface = surface_of(&path);
    let span = tracing::info_span!(
        "request",
        surface,
        method = %method,
        path = %path,
        request_id = Empty,
        status = Empty,
        model = Empty,
        provider = Empty,
        cache = Empty,
    );
    let response = next.call(req).instrument(span.clone()).await?;
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    let headers = response.headers();
    let request_id = header(headers, REQUEST_ID_HEADER)
        .map(str::to_owned)
        .or(asked_id);
    let provider = header(headers, PROVIDER_HEADER).map(str::to_owned);
    let cache = header(headers, CACHE_HEADER).map(str::to_owned);
    let model = response
        .response()
        .extensions()
        .get::<AccessFacts>()
        .map(|facts| facts.model.clone());
    span.record("status", status);
    if let Some(id) = &request_id {
        span.record("request_id", id.as_str());
    }
    if let Some(m) = &model {
        span.record("model", m.as_str());
    }
    if let Some(p) = &provider {
        span.record("provider", p.as_str());
    }
    if let Some(c) = &cache {
        span.record("cache", c.as_str());
    }
    if enabled {
        tracing::info!(
            target: ACCESS_TARGET,
            method = %method,
            path = %path,
            status,
            latency_ms = (latency_ms * 1000.0).round() / 1000.0,
            surface,
            model = model.as_deref().unwrap_or("-"),
            cache = cache.as_deref().unwrap_or("-"),
            provider = provider.as_deref().unwrap_or("-"),
            request_id = request_id.as_deref().unwrap_or("-"),
            "{method} {path} {status} {latency_ms:.1}ms"
        );
    }
    Ok(response)
}

/// A header's value, when it is text.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::surface_of;

    #[test]
    fn paths_name_their_surface() {
        for (path, surface) in [
            ("/v1/chat/completions", "v1"),
            ("/v1/models", "v1"),
            ("/v1/messages", "anthropic"),
            ("/v1/messages/count_tokens", "anthropic"),
            ("/v1messages", "other"),
            ("/ws", "ws"),
            ("/", "ws"),
            ("/ws/dashboard", "dashboard"),
            ("/dashboard", "dashboard"),
            ("/mcp", "mcp"),
            ("/api/metrics/summary", "api"),
            ("/health", "health"),
            ("/metrics", "metrics"),
            ("/favicon.ico", "other"),
        ] {
            assert_eq!(surface_of(path), surface, "{path}");
        }
    }
}
