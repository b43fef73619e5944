//! Turning what an upstream sent back into [`ProviderError`]s: status codes, transport
//! failures, capped bodies, error objects in a 200, and timeouts. Text from the upstream is
//! clipped and scrubbed of the API key.

use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use serde_json::Value;

use super::body::{self, BodyError};
use super::call::Usage;
use super::error::{ErrorLabels, ProviderError, TimeoutKind};
use super::shared::Shared;
use crate::policy::retry::parse_retry_after;

/// How much of an upstream error body is kept in the error message.
const ERROR_BODY_LIMIT: usize = 512;
/// How much of a non-2xx upstream body is read to find its message.
const ERROR_BODY_READ_LIMIT: usize = 64 * 1024;
/// The setting that caps an upstream answer, named in its error.
const MAX_BYTES_SETTING: &str = "EXAI_UPSTREAM_MAX_BYTES";
/// What is read of a complete answer: usage, and whether it is a completion at all.
#[derive(Deserialize)]
pub(super) struct AnswerBody {
    /// Token usage.
    #[serde(default)]
    pub(super) usage: Option<Usage>,
    /// Present in every completion; only its presence is checked.
    #[serde(default)]
    pub(super) choices: Option<serde::de::IgnoredAny>,
    /// Present in every Anthropic message (an `anthropic` upstream); only its presence is
    /// checked.
    #[serde(default)]
    pub(super) content: Option<serde::de::IgnoredAny>,
    /// An error object sent with a 200 instead of a completion.
    #[serde(default)]
    pub(super) error: Option<Value>,
}

/// Whether a 2xx answer is an event stream (anything but JSON is taken as one, since some
/// servers label their streams loosely).
pub(super) fn is_event_stream(response: &reqwest::Response) -> bool {
    !response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// Text from an upstream kept to [`ERROR_BODY_LIMIT`] bytes.
fn clip(mut text: String) -> String {
    if text.len() > ERROR_BODY_LIMIT {
        let mut end = ERROR_BODY_LIMIT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// An error and its causes, `: `-joined.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Shared {
    /// The error a complete JSON answer to a stream request stands for: the upstream's error
    /// object, or a malformed answer.
    pub(super) fn non_stream_answer_error(&self, bytes: &[u8]) -> ProviderError {
        match serde_json::from_slice::<AnswerBody>(bytes) {
            Ok(AnswerBody {
                error: Some(error), ..
            }) => self.reported_error(&error),
            Ok(_) => ProviderError::Malformed {
                provider: self.name.to_string(),
                message: "a stream was asked for but the upstream answered plain JSON".into(),
            },
            Err(e) => self.malformed(&e),
        }
    }

    /// An upstream error object (`{"message","type","code"}`, or a bare string) as an error.
    pub(super) fn reported_error(&self, error: &Value) -> ProviderError {
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        };
        let (message, error_type, code) = match error {
            Value::String(message) => (Some(message.clone()), None, None),
            other => (
                text(other.get("message")),
                text(other.get("type")),
                text(other.get("code")),
            ),
        };
        let message = message.unwrap_or_else(|| clip(error.to_string()));
        ProviderError::UpstreamReported {
            provider: self.name.to_string(),
            message: clip(self.scrub(message)),
            labels: Box::new(ErrorLabels {
                error_type: error_type.map(|t| clip(self.scrub(t))),
                code: code.map(|c| clip(self.scrub(c))),
            }),
        }
    }

    /// A failed capped body read as an error.
    pub(super) fn body_error(&self, error: BodyError) -> ProviderError {
        match error {
            BodyError::TooLarge { limit } => ProviderError::TooLarge {
                provider: self.name.to_string(),
                what: "answer",
                limit,
                setting: MAX_BYTES_SETTING,
            },
            BodyError::Transport(e) => self.transport_error(e),
        }
    }

    pub(super) fn timeout(&self, kind: TimeoutKind) -> ProviderError {
        let settings = &self.settings;
        ProviderError::Timeout {
            provider: self.name.to_string(),
            kind,
            after: match kind {
                TimeoutKind::Connect => settings.connect_timeout,
                TimeoutKind::Request => settings.request_timeout,
                TimeoutKind::StreamIdle => settings.stream_idle_timeout,
                TimeoutKind::StreamTotal => settings.stream_max(),
            },
        }
    }

    pub(super) fn malformed(&self, error: &dyn std::fmt::Display) -> ProviderError {
        ProviderError::Malformed {
            provider: self.name.to_string(),
            message: format!("invalid JSON: {error}"),
        }
    }

    /// Classifies a transport error. The URL is dropped from the message.
    pub(super) fn transport_error(&self, error: reqwest::Error) -> ProviderError {
        if error.is_timeout() && error.is_connect() {
            return self.timeout(TimeoutKind::Connect);
        }
        ProviderError::Connection {
            provider: self.name.to_string(),
            connect: error.is_connect(),
            message: self.scrub(error_chain(&error.without_url())),
        }
    }

    /// Turns a non-2xx answer into an error, keeping the upstream's message and
    /// `Retry-After`.
    pub(super) async fn status_error(&self, response: reqwest::Response) -> ProviderError {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.settings.retry_after_cap));
        let raw = body::read_prefix(response, ERROR_BODY_READ_LIMIT).await;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                v.pointer("/error/message")
                    .or_else(|| v.get("message"))
                    .or_else(|| v.get("error"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or(text);
        let mut message = clip(self.scrub(message));
        if message.is_empty() {
            message = "(empty body)".into();
        }
        ProviderError::Upstream {
            provider: self.name.to_string(),
            status,
            message,
            retry_after,
        }
    }

    /// Removes the API key from text that came from elsewhere (upstream bodies).
    pub(super) fn scrub(&self, text: String) -> String {
        match &self.settings.api_key {
            Some(key) if !key.expose_secret().is_empty() && text.contains(key.expose_secret()) => {
                text.replace(key.expose_secret(), "[redacted]")
            }
            _ => text,
        }
    }
}
