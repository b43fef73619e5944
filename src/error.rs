//! The one place that maps client-surface errors to HTTP statuses (with the OpenAI error
//! JSON shape) and to the `/ws` protocol's error codes (DESIGN §7).
//!
//! Both surfaces build a [`GatewayError`] wherever a request fails; `/v1` turns it into a
//! response through [`actix_web::ResponseError`], `/ws` into `error{code,message,details}`
//! through [`GatewayError::protocol_code`] and [`GatewayError::details`]. Messages never
//! contain a token or an API key (provider errors are scrubbed at the source).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use exai_actors::provider::ProviderError;
use serde_json::{Value, json};

/// The `/ws` protocol's error codes, exactly as DESIGN §7 lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolCode {
    /// Malformed frame or request.
    InvalidRequest,
    /// Missing or wrong token.
    Unauthorized,
    /// Unknown model, unknown request id.
    NotFound,
    /// A tool or upstream deadline passed.
    Timeout,
    /// A tool argument is invalid.
    ValidationError,
    /// An in-flight or rate limit refused the call.
    OverCapacity,
    /// A bug or an unexpected state.
    InternalError,
    /// The upstream is fenced off (breaker open) or unavailable.
    ServiceUnavailable,
    /// No tool of that name.
    ToolNotFound,
    /// The tool failed for a reason of its own.
    ToolExecutionError,
    /// The upstream failed.
    ProviderError,
    /// A frame the protocol does not allow (binary, unknown op, oversized, bad UTF-8).
    ProtocolError,
}

impl ProtocolCode {
    /// The wire spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::NotFound => "NOT_FOUND",
            Self::Timeout => "TIMEOUT",
            Self::ValidationError => "VALIDATION_ERROR",
            Self::OverCapacity => "OVER_CAPACITY",
            Self::InternalError => "INTERNAL_ERROR",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::ToolNotFound => "TOOL_NOT_FOUND",
            Self::ToolExecutionError => "TOOL_EXECUTION_ERROR",
            Self::ProviderError => "PROVIDER_ERROR",
            Self::ProtocolError => "PROTOCOL_ERROR",
        }
    }
}

/// A failed client request, on either surface.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed (bad JSON, missing or wrong-typed field).
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong.
        message: String,
        /// The offending field, when there is one.
        param: Option<String>,
    },
    /// A frame the protocol does not allow.
    #[error("{0}")]
    Protocol(String),
    /// A tool argument failed validation.
    #[error("invalid argument {param:?}: {message}")]
    Validation {
        /// The argument's name.
        param: String,
        /// What is wrong with it.
        message: String,
    },
    /// Missing or wrong token.
    #[error("missing or invalid token")]
    Unauthorized,
    /// An in-flight limit is reached.
    #[error("over capacity: {0}")]
    OverCapacity(String),
    /// A rate limit is exceeded.
    #[error("rate limit exceeded: {0}")]
    RateLimited(String),
    /// The request body or frame is larger than allowed.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// No tool of this name.
    #[error("unknown tool {0:?}")]
    ToolNotFound(String),
    /// Something named by the request does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The tool ran past its deadline.
    #[error("tool call timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The tool itself failed.
    #[error("{0}")]
    ToolFailed(String),
    /// The provider path failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The server cannot take the call now (shutting down).
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Unexpected internal state.
    #[error("internal error: {0}")]
    Internal(String),
}

impl GatewayError {
    /// A malformed request naming its field.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    /// A bad tool argument.
    pub fn validation(param: &str, message: impl Into<String>) -> Self {
        Self::Validation {
            param: param.to_owned(),
            message: message.into(),
        }
    }

    /// The HTTP status `/v1` answers with.
    pub fn http_status(&self) -> StatusCode {
        let code = match self {
            Self::InvalidRequest { .. } | Self::Protocol(_) | Self::Validation { .. } => 400,
            Self::Unauthorized => 401,
            Self::NotFound(_) | Self::ToolNotFound(_) => 404,
            Self::TooLarge { .. } => 413,
            Self::OverCapacity(_) | Self::RateLimited(_) => 429,
            Self::Timeout(_) => 504,
            Self::ToolFailed(_) | Self::Internal(_) => 500,
            Self::Unavailable(_) => 503,
            Self::Provider(e) => e.http_status(),
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY)
    }

    /// The `/ws` protocol code.
    pub fn protocol_code(&self) -> ProtocolCode {
        match self {
            Self::InvalidRequest { .. } => ProtocolCode::InvalidRequest,
            Self::Protocol(_) | Self::TooLarge { .. } => ProtocolCode::ProtocolError,
            Self::Validation { .. } => ProtocolCode::ValidationError,
            Self::Unauthorized => ProtocolCode::Unauthorized,
            Self::OverCapacity(_) | Self::RateLimited(_) => ProtocolCode::OverCapacity,
            Self::ToolNotFound(_) => ProtocolCode::ToolNotFound,
            Self::NotFound(_) => ProtocolCode::NotFound,
            Self::Timeout(_) => ProtocolCode::Timeout,
            Self::ToolFailed(_) => ProtocolCode::ToolExecutionError,
            Self::Internal(_) => ProtocolCode::InternalError,
            Self::Unavailable(_) => ProtocolCode::ServiceUnavailable,
            Self::Provider(e) => provider_code(e),
        }
    }

    /// The `error_kind` recorded in events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Protocol(_) => "protocol",
            Self::Validation { .. } => "validation",
            Self::Unauthorized => "unauthorized",
            Self::OverCapacity(_) => "over_capacity",
            Self::RateLimited(_) => "rate_limited",
            Self::TooLarge { .. } => "too_large",
            Self::ToolNotFound(_) => "tool_not_found",
            Self::NotFound(_) => "not_found",
            Self::Timeout(_) => "timeout",
            Self::ToolFailed(_) => "tool_failed",
            Self::Internal(_) => "internal",
            Self::Unavailable(_) => "unavailable",
            Self::Provider(e) => e.kind(),
        }
    }

    /// `details` of a `/ws` error: what a client can act on.
    pub fn details(&self) -> Value {
        match self {
            Self::InvalidRequest { param: Some(p), .. } => json!({ "field": p }),
            Self::Validation { param, .. } => json!({ "argument": param }),
            Self::TooLarge { size, limit } => json!({ "size": size, "limit": limit }),
            Self::Timeout(after) => json!({ "timeout_ms": after.as_millis() as u64 }),
            Self::RateLimited(_) => json!({ "limit": "rate" }),
            Self::OverCapacity(_) => json!({ "limit": "in_flight" }),
            Self::Provider(e) => {
                let mut d = json!({ "error_kind": e.kind() });
                if let Some(p) = e.provider() {
                    d["provider"] = json!(p);
                }
                if let Some(s) = e.upstream_status() {
                    d["upstream_status"] = json!(s);
                }
                if let Some(r) = e.retry_after() {
                    d["retry_after_ms"] = json!(r.as_millis() as u64);
                }
                d
            }
            _ => json!({}),
        }
    }

    /// `error{code,message,details}` of a `/ws` reply.
    pub fn protocol_json(&self) -> Value {
        json!({
            "code": self.protocol_code().as_str(),
            "message": self.to_string(),
            "details": self.details(),
        })
    }

    /// The OpenAI error `type`.
    fn openai_type(&self) -> &'static str {
        match self.http_status().as_u16() {
            401 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The OpenAI error `param`.
    fn openai_param(&self) -> Option<&str> {
        match self {
            Self::InvalidRequest { param, .. } => param.as_deref(),
            Self::Validation { param, .. } => Some(param),
            Self::Provider(ProviderError::UnknownModel { .. }) => Some("model"),
            _ => None,
        }
    }

    /// The OpenAI error shape: `{"error":{"message","type","param","code"}}`.
    pub fn openai_json(&self) -> Value {
        let code = match self {
            Self::Provider(ProviderError::UnknownModel { .. }) => "model_not_found",
            Self::Unauthorized => "invalid_api_key",
            other => other.kind(),
        };
        json!({
            "error": {
                "message": self.to_string(),
                "type": self.openai_type(),
                "param": self.openai_param(),
                "code": code,
            }
        })
    }
}

/// The provider failure that decided a chain's outcome.
fn last_provider_error(e: &ProviderError) -> &ProviderError {
    match e {
        ProviderError::Exhausted { last, .. } => last_provider_error(last),
        other => other,
    }
}

impl GatewayError {
    /// Anthropic's status and error `type` for `/v1/messages` (the same source as the
    /// OpenAI mapping): 400 `invalid_request_error`, 401 `authentication_error`, 403
    /// `permission_error`, 404 `not_found_error`, 413 `request_too_large`, 429
    /// `rate_limit_error`, 504 `timeout_error`, 529 `overloaded_error` (exai or the provider
    /// is at capacity, its breaker is open, or the upstream said overloaded), else 500
    /// `api_error`.
    pub fn anthropic_status_type(&self) -> (u16, &'static str) {
        let overloaded = match self {
            Self::OverCapacity(_) | Self::Unavailable(_) => true,
            Self::Provider(e) => matches!(
                last_provider_error(e),
                ProviderError::OverCapacity { .. }
                    | ProviderError::BreakerOpen { .. }
                    | ProviderError::Unavailable { .. }
                    | ProviderError::Upstream { status: 529, .. }
            ),
            _ => false,
        };
        if overloaded {
            return (529, "overloaded_error");
        }
        match self.http_status().as_u16() {
            401 => (401, "authentication_error"),
            403 => (403, "permission_error"),
            404 => (404, "not_found_error"),
            413 => (413, "request_too_large"),
            429 => (429, "rate_limit_error"),
            400..=499 => (400, "invalid_request_error"),
            504 => (504, "timeout_error"),
            _ => (500, "api_error"),
        }
    }

    /// Seconds for `retry-after` on a 429 or 529: the upstream's or the breaker's wait,
    /// else 1.
    pub fn anthropic_retry_after(&self) -> Option<u64> {
        let (status, _) = self.anthropic_status_type();
        if status != 429 && status != 529 {
            return None;
        }
        let wait = match self {
            Self::Provider(e) => match last_provider_error(e) {
                ProviderError::BreakerOpen { retry_in_ms, .. } => {
                    Some(Duration::from_millis(*retry_in_ms))
                }
                other => other.retry_after(),
            },
            _ => None,
        };
        Some(wait.map_or(1, |w| w.as_secs_f64().ceil().max(1.0) as u64))
    }

    /// Anthropic's error shape: `{"type":"error","error":{"type","message"}}`.
    pub fn anthropic_json(&self) -> Value {
        json!({
            "type": "error",
            "error": { "type": self.anthropic_status_type().1, "message": self.to_string() },
        })
    }
}

/// A [`GatewayError`] answered in Anthropic's shape (the `/v1/messages` surface).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct AnthropicError(#[from] pub GatewayError);

impl ResponseError for AnthropicError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.0.anthropic_status_type().0)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let Some(after) = self.0.anthropic_retry_after() {
            response.insert_header(("retry-after", after.to_string()));
        }
        response.json(self.0.anthropic_json())
    }
}

/// The protocol code of a provider failure.
fn provider_code(e: &ProviderError) -> ProtocolCode {
    match e {
        ProviderError::OverCapacity { .. } => ProtocolCode::OverCapacity,
        ProviderError::BreakerOpen { .. } | ProviderError::Unavailable { .. } => {
            ProtocolCode::ServiceUnavailable
        }
        ProviderError::Timeout { .. } => ProtocolCode::Timeout,
        ProviderError::UnknownModel { .. } => ProtocolCode::NotFound,
        ProviderError::InvalidRequest { .. } => ProtocolCode::InvalidRequest,
        ProviderError::Exhausted { last, .. } => provider_code(last),
        ProviderError::Upstream { .. }
        | ProviderError::Connection { .. }
        | ProviderError::Malformed { .. }
        | ProviderError::StreamInterrupted { .. } => ProtocolCode::ProviderError,
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        self.http_status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.http_status());
        if let Some(after) = match self {
            Self::Provider(e) => e.retry_after(),
            _ => None,
        } {
            response.insert_header(("Retry-After", after.as_secs().max(1).to_string()));
        }
        if matches!(self, Self::Unauthorized) {
            response.insert_header(("WWW-Authenticate", "Bearer"));
        }
        response.json(self.openai_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let unknown = GatewayError::from(ProviderError::UnknownModel { model: "x".into() });
        assert_eq!(unknown.http_status().as_u16(), 404);
        assert_eq!(unknown.protocol_code().as_str(), "NOT_FOUND");
        assert_eq!(unknown.openai_json()["error"]["param"], "model");
        let busy = GatewayError::OverCapacity("8 in flight".into());
        assert_eq!(busy.http_status().as_u16(), 429);
        assert_eq!(busy.protocol_code().as_str(), "OVER_CAPACITY");
        let bad = GatewayError::validation("temperature", "must be between 0 and 1");
        assert_eq!(bad.protocol_json()["details"]["argument"], "temperature");
        assert_eq!(bad.openai_json()["error"]["type"], "invalid_request_error");
        let timeout = GatewayError::from(ProviderError::Timeout {
            provider: "p".into(),
            kind: exai_actors::provider::TimeoutKind::Request,
            after: Duration::from_millis(5),
        });
        assert_eq!(timeout.http_status().as_u16(), 504);
        assert_eq!(timeout.anthropic_status_type(), (504, "timeout_error"));
        let anthropic = |e: GatewayError| (e.anthropic_status_type(), e.anthropic_retry_after());
        assert_eq!(
            anthropic(GatewayError::Unauthorized),
            ((401, "authentication_error"), None)
        );
        assert_eq!(
            anthropic(bad.clone()),
            ((400, "invalid_request_error"), None)
        );
        assert_eq!(anthropic(unknown.clone()), ((404, "not_found_error"), None));
        assert_eq!(anthropic(busy), ((529, "overloaded_error"), Some(1)));
        let limited = GatewayError::from(ProviderError::Upstream {
            provider: "p".into(),
            status: 429,
            message: "slow down".into(),
            retry_after: Some(Duration::from_secs(3)),
        });
        assert_eq!(anthropic(limited), ((429, "rate_limit_error"), Some(3)));
        let open = GatewayError::from(ProviderError::BreakerOpen {
            provider: "p".into(),
            retry_in_ms: 1500,
        });
        assert_eq!(anthropic(open), ((529, "overloaded_error"), Some(2)));
        assert_eq!(
            anthropic(GatewayError::Internal("x".into())),
            ((500, "api_error"), None)
        );
        assert_eq!(unknown.anthropic_json()["type"], "error");
        assert_eq!(unknown.anthropic_json()["error"]["type"], "not_found_error");
        assert_eq!(timeout.protocol_code().as_str(), "TIMEOUT");
    }
}
