//! The types of an upstream call: what a completion, a stream and a model listing are, and
//! the names of the events a provider records.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ProviderError;

/// `source` of every event a provider records.
pub const EVENT_SOURCE: &str = "provider";
/// Event type of an upstream attempt that failed, was retried or was cancelled (successful
/// attempts are part of their call's `request` event).
pub const ATTEMPT_EVENT: &str = "provider.attempt";
/// The health component name of a provider (`provider:<name>`).
pub fn health_component(provider: &str) -> String {
    format!("provider:{provider}")
}

/// Token usage as reported by the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawUsage")]
pub struct Usage {
    /// Tokens in the prompt, cached ones included (Anthropic: `input_tokens` plus
    /// `cache_read_input_tokens`).
    pub prompt_tokens: u64,
    /// Tokens generated (Anthropic: `output_tokens`).
    pub completion_tokens: u64,
    /// Their sum, as the upstream counted it.
    pub total_tokens: u64,
    /// Prompt tokens served from the provider's prompt cache, when it says: OpenAI's and
    /// GLM's `prompt_tokens_details.cached_tokens`, Kimi's `cached_tokens`, Anthropic's
    /// `cache_read_input_tokens`.
    pub cached_tokens: Option<u64>,
}

impl Usage {
    /// `self` completed by `later` (a later report of the same stream): every count `later`
    /// has wins; Anthropic streams report input tokens first and output tokens last.
    pub fn merged(self, later: Self) -> Self {
        let pick = |old: u64, new: u64| if new > 0 { new } else { old };
        Self {
            prompt_tokens: pick(self.prompt_tokens, later.prompt_tokens),
            completion_tokens: pick(self.completion_tokens, later.completion_tokens),
            total_tokens: pick(self.total_tokens, later.total_tokens),
            cached_tokens: later.cached_tokens.or(self.cached_tokens),
        }
    }
}

/// `usage` in any of the shapes upstreams send.
#[derive(Deserialize)]
struct RawUsage {
    /// OpenAI, Kimi, GLM.
    #[serde(default)]
    prompt_tokens: Option<u64>,
    /// Anthropic (cache reads not included).
    #[serde(default)]
    input_tokens: Option<u64>,
    /// OpenAI, Kimi, GLM.
    #[serde(default)]
    completion_tokens: Option<u64>,
    /// Anthropic.
    #[serde(default)]
    output_tokens: Option<u64>,
    /// OpenAI, Kimi, GLM.
    #[serde(default)]
    total_tokens: Option<u64>,
    /// OpenAI and GLM: `{"cached_tokens": n}`.
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
    /// Kimi.
    #[serde(default)]
    cached_tokens: Option<u64>,
    /// Anthropic.
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// `prompt_tokens_details`.
#[derive(Deserialize)]
struct PromptDetails {
    /// Prompt tokens read from the provider's cache.
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl From<RawUsage> for Usage {
    fn from(raw: RawUsage) -> Self {
        let anthropic_cached = raw.cache_read_input_tokens;
        let prompt = raw
            .prompt_tokens
            .unwrap_or_else(|| raw.input_tokens.unwrap_or(0) + anthropic_cached.unwrap_or(0));
        let completion = raw.completion_tokens.or(raw.output_tokens).unwrap_or(0);
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: raw.total_tokens.unwrap_or(prompt + completion),
            cached_tokens: raw
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .or(raw.cached_tokens)
                .or(anthropic_cached),
        }
    }
}

/// A finished non-streaming completion.
#[derive(Debug, Clone)]
pub struct Completion {
    /// Which provider answered.
    pub provider: Arc<str>,
    /// The upstream model id that was sent.
    pub model: String,
    /// The upstream's JSON body, byte for byte (unknown fields such as Kimi's
    /// `reasoning_content` are untouched).
    pub body: Bytes,
    /// Token usage from the body, when present.
    pub usage: Option<Usage>,
    /// Attempts made, 1 when the first succeeded.
    pub attempts: u32,
    /// Time from the first attempt to the answer, backoff included.
    pub latency: Duration,
    /// Whether the provider is simulated (the demo's mock upstream).
    pub simulated: bool,
}

impl Completion {
    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// `choices[0].message.content`, when it is a string.
    pub fn content(&self) -> Option<String> {
        let body = self.json().ok()?;
        body.pointer("/choices/0/message/content")?
            .as_str()
            .map(str::to_owned)
    }
}

/// A model listed by the upstream's `GET /models`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteModel {
    /// The model id to send upstream.
    pub id: String,
    /// `owned_by`, when given.
    pub owned_by: Option<String>,
    /// Context window, when the upstream says (`context_length` or `context_window`).
    pub context_window: Option<u64>,
}

/// A streaming completion: the `data:` payloads (one JSON chunk each) as the upstream sent
/// them, without `[DONE]`. The stream ends after `[DONE]`; if the upstream stops, stalls or
/// breaks before that, the last item is an error. Dropping it aborts the upstream request
/// and releases the concurrency slot.
pub struct ChatStream {
    /// Which provider answers.
    pub(super) provider: Arc<str>,
    /// The upstream model id that was sent.
    pub(super) model: String,
    /// Usage from the chunk that carried it, once seen.
    pub(super) usage: Arc<Mutex<Option<Usage>>>,
    /// The chunks.
    pub(super) inner: Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl ChatStream {
    /// Which provider answers.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The upstream model id that was sent.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Usage, once the chunk carrying it has passed (usually the last one).
    pub fn usage(&self) -> Option<Usage> {
        *self.usage.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Stream for ChatStream {
    type Item = Result<Bytes, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// How a recorded attempt ended.
#[derive(Debug, Clone, Copy)]
pub(super) enum AttemptOutcome<'a> {
    /// Failed, and another attempt follows.
    Retried(&'a ProviderError),
    /// Failed, and the call gives up on this provider.
    Failed(&'a ProviderError),
    /// Its caller went away first.
    Cancelled,
}

impl AttemptOutcome<'_> {
    /// The `outcome` of the event.
    pub(super) const fn label(self) -> &'static str {
        match self {
            Self::Retried(_) => "retried",
            Self::Failed(_) => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}
