//! What can go wrong calling a provider, and the one mapping of each kind to an HTTP status
//! and an `error_kind` label. Every message names the provider and the cause; none contains
//! an API key (upstream bodies are scrubbed of the key before they are kept).

use std::time::Duration;

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Establishing the connection.
    Connect,
    /// The whole non-streaming call, or waiting for a stream's headers.
    Request,
    /// Silence between two stream chunks.
    StreamIdle,
}

impl TimeoutKind {
    /// Label used in messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Request => "request",
            Self::StreamIdle => "stream idle",
        }
    }
}

/// A failed provider call (or dispatch through the registry).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// Every concurrency slot is taken and the wait queue is full.
    #[error(
        "provider {provider}: over capacity ({max_concurrency} in flight and {max_queue} queued)"
    )]
    OverCapacity {
        /// Provider name.
        provider: String,
        /// Its concurrency limit.
        max_concurrency: usize,
        /// Its queue bound.
        max_queue: usize,
    },
    /// The circuit breaker refuses calls after repeated failures.
    #[error(
        "provider {provider}: circuit breaker open after repeated failures; retry in {retry_in_ms} ms"
    )]
    BreakerOpen {
        /// Provider name.
        provider: String,
        /// Time until a probe will be let through.
        retry_in_ms: u64,
    },
    /// A timeout fired.
    #[error("provider {provider}: {} timeout after {} ms", .kind.as_str(), .after.as_millis())]
    Timeout {
        /// Provider name.
        provider: String,
        /// Which timeout.
        kind: TimeoutKind,
        /// Its configured length.
        after: Duration,
    },
    /// The upstream answered with a non-success status.
    #[error("provider {provider}: upstream answered HTTP {status}: {message}")]
    Upstream {
        /// Provider name.
        provider: String,
        /// The upstream status code.
        status: u16,
        /// The upstream's error text (truncated, scrubbed of the key).
        message: String,
        /// A `Retry-After` the upstream asked for, capped.
        retry_after: Option<Duration>,
    },
    /// The connection could not be made or broke before an answer.
    #[error("provider {provider}: connection failed: {message}")]
    Connection {
        /// Provider name.
        provider: String,
        /// The transport error.
        message: String,
    },
    /// The upstream answered 2xx with a body that is not what the API promises.
    #[error("provider {provider}: malformed response: {message}")]
    Malformed {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// A stream that had started ended or broke before `[DONE]`. Never retried.
    #[error("provider {provider}: stream interrupted: {message}")]
    StreamInterrupted {
        /// Provider name.
        provider: String,
        /// What happened.
        message: String,
    },
    /// The request body cannot be sent (not a JSON object).
    #[error("invalid request for provider {provider}: {message}")]
    InvalidRequest {
        /// Provider name.
        provider: String,
        /// What is wrong.
        message: String,
    },
    /// The provider cannot be used (actor gone, client could not be built).
    #[error("provider {provider} unavailable: {message}")]
    Unavailable {
        /// Provider name.
        provider: String,
        /// Why.
        message: String,
    },
    /// No registered provider serves this model.
    #[error("unknown model {model:?}: no registered provider serves it")]
    UnknownModel {
        /// The model asked for.
        model: String,
    },
    /// Every candidate in the model's fallback chain failed.
    #[error("all {attempts} attempts for model {model:?} failed: {summary}")]
    Exhausted {
        /// The model asked for.
        model: String,
        /// Candidates tried.
        attempts: usize,
        /// `provider/model: cause` for each attempt, `; `-separated.
        summary: String,
        /// The last failure, which decides the HTTP status.
        last: Box<ProviderError>,
    },
}

impl ProviderError {
    /// The HTTP status the gateway answers with: over capacity 429, breaker open or
    /// unavailable 503, timeout 504, upstream 4xx passed through, upstream 5xx, malformed,
    /// connection and interrupted streams 502, unknown model 404, invalid request 400.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::OverCapacity { .. } => 429,
            Self::BreakerOpen { .. } | Self::Unavailable { .. } => 503,
            Self::Timeout { .. } => 504,
            Self::Upstream { status, .. } if (400..500).contains(status) => *status,
            Self::Upstream { .. }
            | Self::Connection { .. }
            | Self::Malformed { .. }
            | Self::StreamInterrupted { .. } => 502,
            Self::InvalidRequest { .. } => 400,
            Self::UnknownModel { .. } => 404,
            Self::Exhausted { last, .. } => last.http_status(),
        }
    }

    /// The `error_kind` recorded in events and returned to clients.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OverCapacity { .. } => "over_capacity",
            Self::BreakerOpen { .. } => "breaker_open",
            Self::Timeout { .. } => "timeout",
            Self::Upstream { status: 429, .. } => "rate_limited",
            Self::Upstream { status, .. } if *status >= 500 => "upstream_server_error",
            Self::Upstream { .. } => "upstream_client_error",
            Self::Connection { .. } => "connection",
            Self::Malformed { .. } => "malformed",
            Self::StreamInterrupted { .. } => "stream_interrupted",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Unavailable { .. } => "unavailable",
            Self::UnknownModel { .. } => "unknown_model",
            Self::Exhausted { last, .. } => last.kind(),
        }
    }

    /// The provider named in the error, if one is.
    pub fn provider(&self) -> Option<&str> {
        match self {
            Self::OverCapacity { provider, .. }
            | Self::BreakerOpen { provider, .. }
            | Self::Timeout { provider, .. }
            | Self::Upstream { provider, .. }
            | Self::Connection { provider, .. }
            | Self::Malformed { provider, .. }
            | Self::StreamInterrupted { provider, .. }
            | Self::InvalidRequest { provider, .. }
            | Self::Unavailable { provider, .. } => Some(provider),
            Self::UnknownModel { .. } => None,
            Self::Exhausted { last, .. } => last.provider(),
        }
    }

    /// Whether the same provider should be tried again after a backoff: 408, 429, 5xx
    /// except 501, connection failures and connect timeouts.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Upstream { status, .. } => {
                matches!(status, 408 | 429) || (*status >= 500 && *status != 501)
            }
            Self::Connection { .. } => true,
            Self::Timeout { kind, .. } => *kind == TimeoutKind::Connect,
            _ => false,
        }
    }

    /// Whether the next model in a fallback chain should be tried: anything that says the
    /// provider (not the request) is the problem.
    pub fn is_fallback_worthy(&self) -> bool {
        self.is_retryable()
            || matches!(
                self,
                Self::BreakerOpen { .. }
                    | Self::OverCapacity { .. }
                    | Self::Timeout { .. }
                    | Self::Malformed { .. }
                    | Self::Unavailable { .. }
            )
    }

    /// Whether the failure says the upstream is unhealthy (counts towards opening the
    /// breaker). Client errors (4xx other than 408/429) prove it is up.
    pub(crate) fn counts_against_breaker(&self) -> bool {
        match self {
            Self::Upstream { status, .. } => matches!(status, 408 | 429) || *status >= 500,
            Self::Timeout { .. }
            | Self::Connection { .. }
            | Self::Malformed { .. }
            | Self::StreamInterrupted { .. } => true,
            _ => false,
        }
    }

    /// The upstream's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Upstream { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status the upstream answered, if it answered.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Self::Upstream { status, .. } => Some(*status),
            Self::Exhausted { last, .. } => last.upstream_status(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(status: u16) -> ProviderError {
        ProviderError::Upstream {
            provider: "p".into(),
            status,
            message: "m".into(),
            retry_after: None,
        }
    }

    #[test]
    fn statuses_map_as_documented() {
        assert_eq!(upstream(400).http_status(), 400);
        assert_eq!(upstream(429).http_status(), 429);
        assert_eq!(upstream(500).http_status(), 502);
        let timeout = ProviderError::Timeout {
            provider: "p".into(),
            kind: TimeoutKind::Request,
            after: Duration::from_millis(5),
        };
        assert_eq!(timeout.http_status(), 504);
        assert_eq!(
            timeout.to_string(),
            "provider p: request timeout after 5 ms"
        );
    }

    #[test]
    fn retry_rules() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(upstream(status).is_retryable(), "{status}");
        }
        for status in [400, 401, 403, 404, 422, 501] {
            assert!(!upstream(status).is_retryable(), "{status}");
        }
        assert!(!upstream(400).counts_against_breaker());
        assert!(upstream(503).counts_against_breaker());
    }
}
