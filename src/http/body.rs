//! Reading request bodies with bounds on time and memory (issue 12 §4): a client that
//! announces a body and trickles it must not hold memory or request slots for long.
//!
//! [`BodyBudget::read`] reads one body:
//! - within `EXAI_HTTP_BODY_TIMEOUT_MS` for the whole body, else [`BodyError::Timeout`] (408);
//! - within the route's size limit, else [`BodyError::TooLarge`] (413);
//! - within the process-wide budget of bytes being read at once
//!   (`EXAI_HTTP_MAX_BODY_BYTES_IN_FLIGHT`), else [`BodyError::Busy`] (503). A declared
//!   `Content-Length` is reserved up front; a chunked body reserves its bytes as they arrive.
//!   The reservation is released when the read ends, however it ends (RAII).
//!
//! Routes take their other scarce resources (the `/v1` in-flight slot) only after the body
//! is in.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt as _;

use crate::config::ServerConfig;

/// Most bytes allocated for a body before any of it arrived.
const INITIAL_CAPACITY: usize = 256 * 1024;

/// The shared budget of request-body bytes being read, and the body timeout.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    /// Bytes reserved by bodies being read now.
    reserved: Arc<AtomicUsize>,
    /// The most that may be reserved at once.
    max_in_flight: usize,
    /// Longest one body may take to arrive.
    timeout: Duration,
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Larger than the route allows.
    TooLarge {
        /// Declared or received size.
        size: usize,
        /// The route's limit.
        limit: usize,
    },
    /// Did not arrive in time.
    Timeout(Duration),
    /// The budget of bodies being read at once is spent.
    Busy {
        /// Bytes being read now.
        in_flight: usize,
        /// The budget.
        limit: usize,
    },
    /// The connection failed while reading.
    Read(String),
}

impl BodyError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Read(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::Timeout(_) => "body_timeout",
            Self::Busy { .. } => "body_budget_exhausted",
            Self::Read(_) => "body_read_failed",
        }
    }

    /// The answer in OpenAI's error shape (`v1`) or exai's `{"error"}` shape.
    pub fn response(&self, v1: bool) -> HttpResponse {
        let kind = match self {
            Self::Busy { .. } => "server_error",
            _ => "invalid_request_error",
        };
        let mut response = crate::http::guard::refusal(
            self.status(),
            kind,
            self.code(),
            None,
            &self.to_string(),
            v1,
        );
        if matches!(self, Self::Timeout(_)) {
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { size, limit } => {
                write!(
                    f,
                    "request body of {size} bytes exceeds the limit of {limit} bytes"
                )
            }
            Self::Timeout(after) => write!(
                f,
                "request body did not arrive within {} ms (EXAI_HTTP_BODY_TIMEOUT_MS)",
                after.as_millis()
            ),
            Self::Busy { in_flight, limit } => write!(
                f,
                "too many request bodies being read: {in_flight} bytes in flight, budget \
                 {limit} bytes (EXAI_HTTP_MAX_BODY_BYTES_IN_FLIGHT); retry shortly"
            ),
            Self::Read(e) => write!(f, "cannot read the request body: {e}"),
        }
    }
}

/// Bytes reserved from the budget; given back when dropped.
#[derive(Debug)]
struct Reservation {
    /// The budget's counter.
    reserved: Arc<AtomicUsize>,
    /// Bytes held.
    bytes: usize,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl BodyBudget {
    /// The budget from the server settings.
    pub fn new(server: &ServerConfig) -> Self {
        Self::with(
            server.http_max_body_bytes_in_flight,
            server.http_body_timeout,
        )
    }

    /// A budget of `max_in_flight` bytes and a body timeout.
    pub fn with(max_in_flight: usize, timeout: Duration) -> Self {
        Self {
            reserved: Arc::new(AtomicUsize::new(0)),
            max_in_flight,
            timeout,
        }
    }

    /// Bytes reserved by bodies being read now.
    pub fn in_flight(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }

    /// Adds `bytes` to `held`, if the budget allows.
    fn grow(&self, held: &mut Reservation, bytes: usize) -> Result<(), BodyError> {
        let mut now = self.reserved.load(Ordering::Acquire);
        loop {
            let next = now.saturating_add(bytes);
            if next > self.max_in_flight {
                return Err(BodyError::Busy {
                    in_flight: now,
                    limit: self.max_in_flight,
                });
            }
            match self.reserved.compare_exchange_weak(
                now,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    held.bytes += bytes;
                    return Ok(());
                }
                Err(actual) => now = actual,
            }
        }
    }

    /// Reads the whole body of `req`, at most `limit` bytes. See the module docs.
    pub async fn read(
        &self,
        req: &HttpRequest,
        mut payload: web::Payload,
        limit: usize,
    ) -> Result<Bytes, BodyError> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<usize>().ok());
        if let Some(size) = declared
            && size > limit
        {
            return Err(BodyError::TooLarge { size, limit });
        }
        let mut held = Reservation {
            reserved: self.reserved.clone(),
            bytes: 0,
        };
        if let Some(size) = declared {
            self.grow(&mut held, size)?;
        }
        let read = async {
            // Grown as bytes arrive: a client that announces much and sends little costs
            // little beyond its reservation.
            let mut body = BytesMut::with_capacity(declared.unwrap_or(0).min(INITIAL_CAPACITY));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
                let size = body.len() + chunk.len();
                if size > limit {
                    return Err(BodyError::TooLarge { size, limit });
                }
                if size > held.bytes {
                    // Chunked (or longer than declared, which the codec refuses anyway).
                    let more = size - held.bytes;
                    self.grow(&mut held, more)?;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body.freeze())
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(result) => result,
            Err(_) => Err(BodyError::Timeout(self.timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reservations_are_bounded_and_given_back() {
        let budget = BodyBudget::with(100, Duration::from_secs(1));
        let mut a = Reservation {
            reserved: budget.reserved.clone(),
            bytes: 0,
        };
        budget.grow(&mut a, 60).unwrap();
        let mut b = Reservation {
            reserved: budget.reserved.clone(),
            bytes: 0,
        };
        assert_eq!(
            budget.grow(&mut b, 41),
            Err(BodyError::Busy {
                in_flight: 60,
                limit: 100
            })
        );
        budget.grow(&mut b, 40).unwrap();
        assert_eq!(budget.in_flight(), 100);
        drop(a);
        assert_eq!(budget.in_flight(), 40);
        drop(b);
        assert_eq!(budget.in_flight(), 0);
    }
}
