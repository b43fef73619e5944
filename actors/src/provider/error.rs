//! What can go wrong calling a provider, and the one mapping of each kind to an HTTP status
//! and an `error_kind` label. Every message names the provider and the cause; none contains
//! an API key (upstream bodies are scrubbed of the key before they are kept).

use std::time::Duration;

use crate::policy::breaker::Outcome;

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Establishing the connection.
    Connect,
    /// The whole non-streaming call, or waiting for a stream's headers.
    Request,
    /// Silence between two stream chunks.
    StreamIdle,
    /// The whole life of a stream (`stream_max_s`).
    StreamTotal,
}

impl TimeoutKind {
    /// Label used in messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Request => "request",
            Self::StreamIdle => "stream idle",
            Self::StreamTotal => "stream lifetime",
        }
    }
}

/// The `type` and `code` of an error object an upstream sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorLabels {
    /// `error.type`, when given.
    pub error_type: Option<String>,
    /// `error.code`, when given (as text).
    pub code: Option<String>,
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
    /// A circuit breaker refuses calls after repeated failures: the provider-wide one
    /// (`model` is `None`) or the model's own.
    #[error(
        "provider {provider}{}: circuit breaker open after repeated failures; retry in {retry_in_ms} ms",
        .model.as_ref().map(|m| format!(" model {m}")).unwrap_or_default()
    )]
    BreakerOpen {
        /// Provider name.
        provider: String,
        /// The model whose breaker is open; `None` for the provider-wide breaker.
        model: Option<String>,
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
        /// Whether it failed while connecting (refused, DNS, TLS): the provider as a whole
        /// is unreachable, not one model.
        connect: bool,
    },
    /// The upstream answered 200 with an error object instead of a completion (OpenAI's
    /// `{"error":{"message","type"}}`, e.g. an exhausted quota).
    #[error("provider {provider}: upstream answered with an error: {message}")]
    UpstreamReported {
        /// Provider name.
        provider: String,
        /// The upstream's `error.message` (truncated, scrubbed of the key).
        message: String,
        /// Its `type` and `code` (boxed: rare, and it keeps every error small).
        labels: Box<ErrorLabels>,
    },
    /// The upstream's answer (or one SSE event of it) is larger than allowed; the request
    /// was aborted.
    #[error("provider {provider}: upstream {what} exceeds the limit of {limit} bytes ({setting})")]
    TooLarge {
        /// Provider name.
        provider: String,
        /// `answer` or `SSE event`.
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
        /// The setting that sets it.
        setting: &'static str,
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
            | Self::StreamInterrupted { .. }
            | Self::UpstreamReported { .. }
            | Self::TooLarge { .. } => 502,
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
            Self::UpstreamReported { .. } => "upstream_error",
            Self::TooLarge { .. } => "upstream_too_large",
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
            | Self::UpstreamReported { provider, .. }
            | Self::TooLarge { provider, .. }
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
            || matches!(self, Self::UpstreamReported { .. } if !self.reported_client_error())
    }

    /// Whether an error object in a 200 answer blames the request (`invalid_request_error`
    /// and the like) rather than the provider.
    fn reported_client_error(&self) -> bool {
        match self {
            Self::UpstreamReported { labels, .. } => [&labels.error_type, &labels.code]
                .into_iter()
                .flatten()
                .any(|t| t.contains("invalid")),
            _ => false,
        }
    }

    /// What the failure says to the breakers. Connect-phase failures (refused, DNS, TLS,
    /// connect timeout) fence the whole provider; the upstream answering badly for one
    /// model (5xx, 408, 429, a request or stream timeout, a broken or cut answer, an error
    /// object in a 200 — a quota message included, like the 429 it stands for) fences that
    /// model only. Client errors, an error object blaming the request, and an answer over
    /// the size cap prove the upstream is up.
    pub fn breaker_outcome(&self) -> Outcome {
        match self {
            Self::Connection { connect: true, .. }
            | Self::Timeout {
                kind: TimeoutKind::Connect,
                ..
            } => Outcome::TransportFailure,
            Self::Upstream { status, .. } if matches!(status, 408 | 429) || *status >= 500 => {
                Outcome::ModelFailure
            }
            Self::UpstreamReported { .. } if !self.reported_client_error() => Outcome::ModelFailure,
            Self::Timeout { .. }
            | Self::Connection { .. }
            | Self::Malformed { .. }
            | Self::StreamInterrupted { .. } => Outcome::ModelFailure,
            Self::Exhausted { last, .. } => last.breaker_outcome(),
            _ => Outcome::Success,
        }
    }

    /// How long the client should wait before trying again: the upstream's `Retry-After`,
    /// or the time until an open breaker lets a probe through.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Upstream { retry_after, .. } => *retry_after,
            Self::BreakerOpen { retry_in_ms, .. } => Some(Duration::from_millis(*retry_in_ms)),
            Self::Exhausted { last, .. } => last.retry_after(),
            _ => None,
        }
    }

    /// The upstream's own error `type` and `code`, for an error object it sent in a 200.
    pub fn reported_type(&self) -> Option<(&str, Option<&str>)> {
        match self {
            Self::UpstreamReported { labels, .. } => Some((
                labels.error_type.as_deref().unwrap_or("upstream_error"),
                labels.code.as_deref(),
            )),
            Self::Exhausted { last, .. } => last.reported_type(),
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
        assert_eq!(upstream(400).breaker_outcome(), Outcome::Success);
        assert_eq!(upstream(503).breaker_outcome(), Outcome::ModelFailure);
    }

    #[test]
    fn breaker_scopes() {
        let connect = ProviderError::Connection {
            provider: "p".into(),
            message: "refused".into(),
            connect: true,
        };
        assert_eq!(connect.breaker_outcome(), Outcome::TransportFailure);
        assert_eq!(upstream(500).breaker_outcome(), Outcome::ModelFailure);
        assert_eq!(upstream(429).breaker_outcome(), Outcome::ModelFailure);
        assert_eq!(upstream(404).breaker_outcome(), Outcome::Success);
        let reported = |t: &str| ProviderError::UpstreamReported {
            provider: "p".into(),
            message: "m".into(),
            labels: Box::new(ErrorLabels {
                error_type: Some(t.into()),
                code: None,
            }),
        };
        let quota = reported("insufficient_quota");
        assert_eq!(quota.http_status(), 502);
        assert_eq!(quota.breaker_outcome(), Outcome::ModelFailure);
        assert!(!quota.is_retryable());
        assert!(quota.is_fallback_worthy());
        let invalid = reported("invalid_request_error");
        assert_eq!(invalid.breaker_outcome(), Outcome::Success);
        assert!(!invalid.is_fallback_worthy());
        let open = ProviderError::BreakerOpen {
            provider: "p".into(),
            model: Some("m".into()),
            retry_in_ms: 1500,
        };
        assert_eq!(open.retry_after(), Some(Duration::from_millis(1500)));
        assert!(
            open.to_string()
                .contains("provider p model m: circuit breaker open")
        );
    }
}
