//! Provider kinds and the settings of one configured provider, with per-kind defaults.
//!
//! Four kinds speak the OpenAI chat-completions dialect and `anthropic` the Messages API; they
//! share one client (`provider/anthropic.rs` holds the difference). A kind decides the default
//! base URL, the built-in catalog entries it serves and its label.

use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::policy::breaker::BreakerSettings;
use crate::policy::retry::RetryPolicy;

/// Default base URL of Moonshot's Kimi API.
pub const KIMI_BASE_URL: &str = "https://api.moonshot.ai/v1";
/// Default base URL of Z.ai's GLM API.
pub const GLM_BASE_URL: &str = "https://api.z.ai/api/paas/v4";
/// Default base URL of the OpenAI API.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Default base URL of Anthropic's API.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com/v1";

/// Calls in flight per provider before callers queue (DESIGN §7).
pub const DEFAULT_MAX_CONCURRENCY: usize = 256;
/// Callers allowed to wait for a slot before the provider answers over-capacity (DESIGN §7).
pub const DEFAULT_MAX_QUEUE: usize = 1024;
/// Time allowed to establish a TCP (and TLS) connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed for a whole non-streaming call, or until a stream's response headers.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest silence allowed between two chunks of a stream. Thinking models can pause for a
/// while before their first token, hence the generous default.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Retries after the first attempt, for retryable failures only.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// First retry delay; doubles per retry with jitter.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(250);
/// Longest single retry delay computed by backoff.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(5);
/// Longest wait honoured from an upstream `Retry-After` header.
pub const DEFAULT_RETRY_AFTER_CAP: Duration = Duration::from_secs(30);
/// Consecutive failed attempts that open a provider's breaker.
pub const DEFAULT_BREAKER_FAILURE_THRESHOLD: u32 = 5;
/// How long a provider's breaker stays open before a probe.
pub const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(30);
/// Largest upstream answer read (`EXAI_UPSTREAM_MAX_BYTES`); beyond it the request is aborted.
pub const DEFAULT_UPSTREAM_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Largest single SSE event of a stream (`EXAI_SSE_MAX_EVENT_BYTES`).
pub const DEFAULT_SSE_MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;
/// Time allowed for a `GET /models` discovery call.
pub const DEFAULT_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Which API a provider speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Moonshot's Kimi.
    Kimi,
    /// Z.ai's GLM.
    Glm,
    /// OpenAI.
    Openai,
    /// Any OpenAI-compatible server: Ollama, vLLM, llama.cpp, LM Studio, the mock upstream.
    OpenaiCompatible,
    /// Anthropic's Messages API (Anthropic, or Kimi's and GLM's Anthropic-compatible
    /// endpoints); see `provider/anthropic.rs`.
    Anthropic,
}

impl ProviderKind {
    /// The kind's name as configured (`kimi`, `glm`, `openai`, `openai_compatible`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Kimi => "kimi",
            Self::Glm => "glm",
            Self::Openai => "openai",
            Self::OpenaiCompatible => "openai_compatible",
            Self::Anthropic => "anthropic",
        }
    }

    /// The base URL used when none is configured; `openai_compatible` has none.
    pub const fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::Kimi => Some(KIMI_BASE_URL),
            Self::Glm => Some(GLM_BASE_URL),
            Self::Openai => Some(OPENAI_BASE_URL),
            Self::OpenaiCompatible => None,
            Self::Anthropic => Some(ANTHROPIC_BASE_URL),
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that configures one provider. `Debug` never shows the API key.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    /// Unique name, used in routes (`<name>/<model>`), events and `/health`.
    pub name: String,
    /// Which API it speaks.
    pub kind: ProviderKind,
    /// Base URL without the trailing `/chat/completions`, e.g. `https://api.moonshot.ai/v1`.
    pub base_url: String,
    /// Bearer token; `None` for local servers that need none.
    pub api_key: Option<SecretString>,
    /// Models this provider serves in addition to the built-in catalog for its kind and what
    /// `GET /models` discovers.
    pub models: Vec<String>,
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Callers waiting for a slot before further calls fail with over-capacity at once.
    pub max_queue: usize,
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for a whole non-streaming call, or until a stream's headers arrive.
    pub request_timeout: Duration,
    /// Longest silence between two stream chunks.
    pub stream_idle_timeout: Duration,
    /// Longest life of a whole stream; `None` means `request_timeout`.
    pub stream_max: Option<Duration>,
    /// Largest upstream answer read before the request is aborted.
    pub max_body_bytes: usize,
    /// Largest single SSE event.
    pub sse_max_event_bytes: usize,
    /// Retries after the first attempt, for retryable failures before any stream started.
    pub max_retries: u32,
    /// Delays between retries (exponential with jitter).
    pub retry: RetryPolicy,
    /// Longest `Retry-After` wait honoured.
    pub retry_after_cap: Duration,
    /// When the breaker opens and for how long.
    pub breaker: BreakerSettings,
    /// Whether the registry asks `GET /models` for more models.
    pub discover_models: bool,
    /// Time allowed for `GET /models`.
    pub discovery_timeout: Duration,
    /// A simulated provider (the demo's mock upstream): labelled so in listings and health.
    pub simulated: bool,
}

impl ProviderSettings {
    /// Settings for a provider of `kind` with every default filled in. `openai_compatible`
    /// has no default base URL, so it starts empty and the caller must set one.
    pub fn new(name: impl Into<String>, kind: ProviderKind) -> Self {
        Self {
            name: name.into(),
            kind,
            base_url: kind.default_base_url().unwrap_or_default().to_owned(),
            api_key: None,
            models: Vec::new(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_queue: DEFAULT_MAX_QUEUE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
            stream_max: None,
            max_body_bytes: DEFAULT_UPSTREAM_MAX_BYTES,
            sse_max_event_bytes: DEFAULT_SSE_MAX_EVENT_BYTES,
            max_retries: DEFAULT_MAX_RETRIES,
            retry: RetryPolicy::new(DEFAULT_RETRY_INITIAL, DEFAULT_RETRY_MAX),
            retry_after_cap: DEFAULT_RETRY_AFTER_CAP,
            breaker: BreakerSettings {
                failure_threshold: DEFAULT_BREAKER_FAILURE_THRESHOLD,
                cool_down: DEFAULT_BREAKER_COOL_DOWN,
            },
            discover_models: true,
            discovery_timeout: DEFAULT_DISCOVERY_TIMEOUT,
            simulated: false,
        }
    }

    /// Moonshot Kimi, named `kimi`.
    pub fn kimi(api_key: SecretString) -> Self {
        Self::new("kimi", ProviderKind::Kimi).with_api_key(api_key)
    }

    /// Z.ai GLM, named `glm`.
    pub fn glm(api_key: SecretString) -> Self {
        Self::new("glm", ProviderKind::Glm).with_api_key(api_key)
    }

    /// OpenAI, named `openai`.
    pub fn openai(api_key: SecretString) -> Self {
        Self::new("openai", ProviderKind::Openai).with_api_key(api_key)
    }

    /// An OpenAI-compatible server at `base_url`.
    pub fn openai_compatible(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        let mut settings = Self::new(name, ProviderKind::OpenaiCompatible);
        settings.base_url = base_url.into();
        settings
    }

    /// A simulated OpenAI-compatible provider (the demo's mock upstream at `base_url`),
    /// labelled simulated in listings, health and events.
    pub fn simulated(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        let mut settings = Self::openai_compatible(name, base_url);
        settings.simulated = true;
        settings
    }

    /// The same settings with an API key.
    pub fn with_api_key(mut self, api_key: SecretString) -> Self {
        self.api_key = Some(api_key);
        self
    }

    /// Longest life of a whole stream: `stream_max`, else `request_timeout`.
    pub fn stream_max(&self) -> Duration {
        self.stream_max.unwrap_or(self.request_timeout)
    }

    /// The base URL with its secrets hidden ([`redact_url`]), for health and listings.
    pub fn display_base_url(&self) -> String {
        redact_url(&self.base_url)
    }
}

/// The one way a URL is shown (health, `check-config`, logs, the dashboard): a password
/// becomes `REDACTED` (a user name alone is hidden too, it may be a key), every query value
/// becomes `REDACTED` (`?api_key=…`), and a fragment is dropped. Text that is not a URL
/// is shown as `[unparsable]`, since it cannot be known which part of it is secret.
pub fn redact_url(raw: &str) -> String {
    const HIDDEN: &str = "REDACTED";
    let Ok(mut url) = reqwest::Url::parse(raw) else {
        return "[unparsable]".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some(HIDDEN));
    } else if !url.username().is_empty() {
        let _ = url.set_username(HIDDEN);
    }
    if url.query().is_some() {
        let keys: Vec<String> = url.query_pairs().map(|(k, _)| k.into_owned()).collect();
        if keys.is_empty() {
            url.set_query(None);
        } else {
            let mut pairs = url.query_pairs_mut();
            pairs.clear();
            for key in &keys {
                pairs.append_pair(key, HIDDEN);
            }
        }
    }
    url.set_fragment(None);
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_their_default_urls() {
        let kimi = ProviderSettings::kimi(SecretString::from("sk-test"));
        assert_eq!(kimi.base_url, KIMI_BASE_URL);
        assert_eq!(kimi.max_concurrency, 256);
        assert_eq!(kimi.max_queue, 1024);
        assert_eq!(
            ProviderSettings::glm(SecretString::from("x")).base_url,
            GLM_BASE_URL
        );
        let local = ProviderSettings::openai_compatible("ollama", "http://127.0.0.1:11434/v1");
        assert_eq!(local.kind, ProviderKind::OpenaiCompatible);
        assert!(local.api_key.is_none());
    }

    #[test]
    fn debug_hides_the_key() {
        let s = ProviderSettings::kimi(SecretString::from("sk-very-secret-123"));
        assert!(!format!("{s:?}").contains("sk-very-secret-123"));
    }

    #[test]
    fn secrets_in_urls_are_redacted() {
        assert_eq!(
            redact_url("https://u:p@h.example/v1"),
            "https://u:REDACTED@h.example/v1"
        );
        assert_eq!(
            redact_url("https://sk-key@h.example/v1"),
            "https://REDACTED@h.example/v1"
        );
        assert_eq!(redact_url("http://127.0.0.1:9/v1"), "http://127.0.0.1:9/v1");
        assert_eq!(redact_url("http://h/a@b"), "http://h/a@b");
        let shown = redact_url("https://h.example/v1?api_key=sk-LEAK&api-version=2024#sk-frag");
        assert_eq!(
            shown,
            "https://h.example/v1?api_key=REDACTED&api-version=REDACTED"
        );
        assert_eq!(redact_url("not a url sk-LEAK"), "[unparsable]");
    }
}
