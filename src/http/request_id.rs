//! `x-request-id` on every HTTP response (issue 17 §1): the client's, when it is 1–128
//! printable ASCII characters ([`crate::call_record::accept_request_id`]), else a new
//! UUIDv7. The id is kept in the request's extensions, so the route that records the call's
//! `request` event (and sends it upstream) uses the same one.

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage as _, HttpRequest};

use crate::call_record::{REQUEST_ID_HEADER, accept_request_id};

/// The request id of one HTTP request, in its extensions.
#[derive(Debug, Clone)]
struct RequestId(Arc<str>);

/// The id in the header, accepted or replaced.
fn from_headers(headers: &actix_web::http::header::HeaderMap) -> String {
    accept_request_id(headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok()))
}

/// The request id of `req` (the middleware's; without it, from the header).
pub fn of(req: &HttpRequest) -> String {
    match req.extensions().get::<RequestId>() {
        Some(id) => id.0.to_string(),
        None => from_headers(req.headers()),
    }
}

/// The middleware: see the module docs. Wrap it outermost, so refusals carry the id too.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id: Arc<str> = Arc::from(from_headers(req.headers()));
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.call(req).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    Ok(response)
}
