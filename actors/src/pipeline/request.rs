//! The `request` event: one per client call, on every surface (DESIGN §5, issue 17).
//!
//! The surfaces build a [`RequestEvent`] as the call runs and record it once, when the call
//! ends or is cancelled. Client-facing figures — the dashboard's rates and percentiles, the
//! rollups' token and cost sums, Prometheus' `exai_requests_total` — are all read from it.
//! The struct is the one definition of the event's fields: it is serialised once into the
//! event's `data`, and readers take back only what they need with [`RequestFacts`], a
//! borrowed view that ignores every other field.
//!
//! Absent facts are absent, not zero: a call that made no upstream call has no `provider`,
//! an upstream that reported no usage gives no token counts, and a model without a price has
//! no `cost_usd`.
//!
//! What only the layers below a surface know — the attempts the providers made, which
//! candidate answered, the usage, the time upstream — they add to the call's [`CallContext`],
//! which the surface opens around its call ([`CallContext::scope`]) and reads when it records
//! the event. It travels as a task-local, so the dispatcher's and providers' signatures stay
//! as they are and a tool that asks several models adds every call up; the provider also
//! sends its `request_id` upstream as `x-request-id`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The event type.
pub const REQUEST_EVENT: &str = "request";
/// The `client` of every call until client keys exist.
pub const ANONYMOUS_CLIENT: &str = "anonymous";
/// The status recorded for a call the client abandoned before its answer (nginx's "client
/// closed request"): no HTTP status was sent.
pub const CLIENT_CLOSED_STATUS: u16 = 499;
/// The `error_kind` of such a call.
pub const CANCELLED: &str = "cancelled";

/// The client surface a call came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    /// `POST /v1/chat/completions`.
    V1,
    /// `POST /v1/messages`.
    Anthropic,
    /// The EXAI tool protocol on `/ws`.
    Ws,
    /// MCP, over Streamable HTTP or stdio.
    Mcp,
}

impl Surface {
    /// The label used in events, metrics and the event's `source`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::Anthropic => "anthropic",
            Self::Ws => "ws",
            Self::Mcp => "mcp",
        }
    }

    /// Every surface, in a fixed order.
    pub const ALL: [Self; 4] = [Self::V1, Self::Anthropic, Self::Ws, Self::Mcp];
}

/// How the cache answered a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheLabel {
    /// Served from the in-memory cache.
    L1,
    /// Served from Redis.
    L2,
    /// Fetched upstream by this call.
    Miss,
    /// Answered by an identical concurrent call's fetch.
    Coalesced,
    /// The cache was skipped (disabled, `cache:false`, no-store, continuation, error).
    Bypass,
}

impl CacheLabel {
    /// The label used in events, headers and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Bypass => "bypass",
        }
    }

    /// Whether the answer came out of the cache without an upstream call of its own.
    pub const fn is_hit(self) -> bool {
        matches!(self, Self::L1 | Self::L2 | Self::Coalesced)
    }
}

/// Token counts an upstream reported for one call (several model calls of one tool call are
/// added up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Prompt tokens, cached ones included.
    pub prompt: u64,
    /// Generated tokens.
    pub completion: u64,
    /// Prompt tokens served from the provider's prompt cache, when it says.
    pub cached: Option<u64>,
}

impl std::ops::Add for Tokens {
    type Output = Self;

    /// The sum of two reports (a tool call that asked several models).
    fn add(self, other: Self) -> Self {
        Self {
            prompt: self.prompt + other.prompt,
            completion: self.completion + other.completion,
            cached: match (self.cached, other.cached) {
                (None, None) => None,
                (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
            },
        }
    }
}

/// The data of one `request` event. See the module docs; DESIGN §5 lists the fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEvent {
    /// The client's `x-request-id` (or `/ws` `request_id`), else the generated one.
    pub request_id: String,
    /// Where the call came in.
    pub surface: Surface,
    /// The tool called (`/ws` and MCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The `/ws` or MCP session, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// MCP: the protocol version (spec era) the call was made in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// The process that served it.
    pub instance: String,
    /// Who called ([`ANONYMOUS_CLIENT`] until client keys exist).
    pub client: String,
    /// The model as the client asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The canonical model the registry resolved it to (the one that answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_model: Option<String>,
    /// The provider that answered (or the last one tried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The resolved model a fallback stood in for, when a fallback answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_from: Option<String>,
    /// Upstream attempts made (0 for a cache hit or a call that needed no model).
    pub attempts: u32,
    /// The HTTP status the client got, or its protocol's error code mapped to one;
    /// [`CLIENT_CLOSED_STATUS`] when the client left first.
    pub status: u16,
    /// Whether the call succeeded.
    pub ok: bool,
    /// Why it failed (`GatewayError::kind`, or [`CANCELLED`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<String>,
    /// How the cache answered; absent when no model was called.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheLabel>,
    /// Whether the answer was streamed.
    pub stream: bool,
    /// From the request's arrival to its last byte (or cancellation), ms.
    pub latency_ms: f64,
    /// Time spent waiting on upstreams (retries and backoff included), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ms: Option<f64>,
    /// Streams: from the request's arrival to the first content byte, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// Prompt tokens the upstream reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Completion tokens the upstream reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Cached prompt tokens the upstream reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u64>,
    /// What the call cost upstream, from the price table; absent without a price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl RequestEvent {
    /// A call on `surface` that has just begun: no model, no outcome yet.
    pub fn begin(surface: Surface, request_id: String, instance: &str) -> Self {
        Self {
            request_id,
            surface,
            tool: None,
            session_id: None,
            protocol_version: None,
            instance: instance.to_owned(),
            client: ANONYMOUS_CLIENT.to_owned(),
            model: None,
            resolved_model: None,
            provider: None,
            fallback_from: None,
            attempts: 0,
            status: CLIENT_CLOSED_STATUS,
            ok: false,
            error_kind: Some(CANCELLED.to_owned()),
            cache: None,
            stream: false,
            latency_ms: 0.0,
            upstream_ms: None,
            ttft_ms: None,
            prompt_tokens: None,
            completion_tokens: None,
            cached_tokens: None,
            cost_usd: None,
        }
    }

    /// Sets the usage fields from `tokens`.
    pub fn set_tokens(&mut self, tokens: Tokens) {
        self.prompt_tokens = Some(tokens.prompt);
        self.completion_tokens = Some(tokens.completion);
        self.cached_tokens = tokens.cached;
    }

    /// The event's `data`.
    pub fn to_data(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What the layers below a surface learned about one call. See the module docs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Upstream attempts admitted (retries and fallbacks included).
    pub attempts: u32,
    /// The provider that answered last (or was tried last).
    pub provider: Option<String>,
    /// The canonical model that answered.
    pub resolved_model: Option<String>,
    /// The resolved model a fallback stood in for.
    pub fallback_from: Option<String>,
    /// Time spent waiting on upstreams.
    pub upstream: Duration,
    /// Usage the upstreams reported, summed.
    pub tokens: Option<Tokens>,
    /// How the cache answered (the last model call's).
    pub cache: Option<CacheLabel>,
    /// When the first content was handed towards the client (streams).
    pub first_byte: Option<Instant>,
}

impl Tally {
    /// Adds one report of usage.
    pub fn add_tokens(&mut self, tokens: Tokens) {
        self.tokens = Some(self.tokens.map_or(tokens, |t| t + tokens));
    }
}

tokio::task_local! {
    /// The call the current task works for, when a surface opened one.
    static CALL: Arc<CallContext>;
}

/// One client call's context: its request id and its [`Tally`]. Shared (`Arc`) between the
/// surface and whatever outlives the scope on its behalf (a stream being forwarded).
#[derive(Debug, Default)]
pub struct CallContext {
    /// The call's request id, sent upstream as `x-request-id`.
    request_id: String,
    /// What was learned so far.
    tally: Mutex<Tally>,
}

impl CallContext {
    /// A context for the call `request_id`.
    pub fn new(request_id: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            request_id: request_id.into(),
            tally: Mutex::new(Tally::default()),
        })
    }

    /// Runs `work` with `context` as the current call.
    pub async fn scope<F: std::future::Future>(context: Arc<Self>, work: F) -> F::Output {
        CALL.scope(context, work).await
    }

    /// The current call's context, if a surface opened one.
    pub fn current() -> Option<Arc<Self>> {
        CALL.try_with(Arc::clone).ok()
    }

    /// Applies `f` to the current call's tally, if there is a current call.
    pub fn note(f: impl FnOnce(&mut Tally)) {
        if let Ok(context) = CALL.try_with(Arc::clone) {
            context.update(f);
        }
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Applies `f` to this call's tally.
    pub fn update(&self, f: impl FnOnce(&mut Tally)) {
        f(&mut self.tally.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// A copy of the tally so far.
    pub fn tally(&self) -> Tally {
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl RequestEvent {
    /// Takes in what the layers below learned (`tally`): routing, attempts, upstream time,
    /// usage and cache outcome. Fields already set by the surface are kept when the tally
    /// has nothing for them.
    pub fn absorb(&mut self, tally: &Tally) {
        self.attempts = tally.attempts;
        if tally.provider.is_some() {
            self.provider.clone_from(&tally.provider);
        }
        if tally.resolved_model.is_some() {
            self.resolved_model.clone_from(&tally.resolved_model);
        }
        self.fallback_from.clone_from(&tally.fallback_from);
        if tally.attempts > 0 || !tally.upstream.is_zero() {
            self.upstream_ms = Some(tally.upstream.as_secs_f64() * 1000.0);
        }
        if let Some(tokens) = tally.tokens {
            self.set_tokens(tokens);
        }
        if tally.cache.is_some() {
            self.cache = tally.cache;
        }
    }
}

/// What readers (folds, metrics) take from a `request` event's data; every other field is
/// skipped without being built.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RequestFacts<'a> {
    /// `surface`.
    #[serde(borrow, default)]
    pub surface: Option<&'a str>,
    /// `resolved_model`.
    #[serde(borrow, default)]
    pub resolved_model: Option<&'a str>,
    /// `model` (as asked).
    #[serde(borrow, default)]
    pub model: Option<&'a str>,
    /// `provider`.
    #[serde(borrow, default)]
    pub provider: Option<&'a str>,
    /// `status`.
    #[serde(default)]
    pub status: Option<u16>,
    /// `ok`.
    #[serde(default)]
    pub ok: Option<bool>,
    /// `cache`.
    #[serde(borrow, default)]
    pub cache: Option<&'a str>,
    /// `attempts`.
    #[serde(default)]
    pub attempts: Option<u32>,
    /// `latency_ms`.
    #[serde(default)]
    pub latency_ms: Option<f64>,
    /// `ttft_ms`.
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    /// `prompt_tokens`.
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    /// `completion_tokens`.
    #[serde(default)]
    pub completion_tokens: Option<u64>,
    /// `cached_tokens`.
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    /// `cost_usd`.
    #[serde(default)]
    pub cost_usd: Option<f64>,
}

impl<'a> RequestFacts<'a> {
    /// The facts of an event's `data` (all absent if it is not a request's).
    pub fn of(data: &'a serde_json::Value) -> Self {
        Self::deserialize(data).unwrap_or_default()
    }

    /// The model a figure is counted under: the resolved one, else the one asked for.
    pub fn model_label(&self) -> Option<&'a str> {
        self.resolved_model.or(self.model)
    }
}

/// The status class of an HTTP status (`2xx`, `4xx`, `5xx`, …).
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        5 => "5xx",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn absent_facts_are_absent_and_readers_get_them_back() {
        let mut event = RequestEvent::begin(Surface::V1, "r1".into(), "i");
        let data = event.to_data();
        assert_eq!(data["status"], 499);
        assert_eq!(data["error_kind"], "cancelled");
        assert_eq!(data["client"], "anonymous");
        for absent in ["cost_usd", "prompt_tokens", "provider", "ttft_ms", "tool"] {
            assert!(data.get(absent).is_none(), "{absent} present: {data}");
        }
        event.ok = true;
        event.status = 200;
        event.error_kind = None;
        event.resolved_model = Some("glm-4.6".into());
        event.cache = Some(CacheLabel::Miss);
        event.set_tokens(Tokens {
            prompt: 10,
            completion: 5,
            cached: None,
        });
        event.cost_usd = Some(0.5);
        let data = event.to_data();
        assert_eq!(data["surface"], "v1");
        assert_eq!(data["cache"], "miss");
        assert!(data.get("cached_tokens").is_none());
        let facts = RequestFacts::of(&data);
        assert_eq!(facts.model_label(), Some("glm-4.6"));
        assert_eq!(facts.status, Some(200));
        assert_eq!(facts.prompt_tokens, Some(10));
        assert_eq!(facts.cost_usd, Some(0.5));
        let back: RequestEvent = serde_json::from_value(data).unwrap();
        assert_eq!(back, event);
    }

    #[tokio::test]
    async fn the_context_reaches_the_layers_below_and_adds_up() {
        assert!(CallContext::current().is_none());
        CallContext::note(|t| t.attempts += 1); // no call: nothing happens
        let context = CallContext::new("req-1");
        CallContext::scope(context.clone(), async {
            let here = CallContext::current().unwrap();
            assert_eq!(here.request_id(), "req-1");
            for _ in 0..2 {
                CallContext::note(|t| {
                    t.attempts += 1;
                    t.add_tokens(Tokens {
                        prompt: 3,
                        completion: 1,
                        cached: None,
                    });
                    t.provider = Some("p".into());
                });
            }
        })
        .await;
        let tally = context.tally();
        assert_eq!(tally.attempts, 2);
        assert_eq!(tally.tokens.map(|t| t.prompt), Some(6));
        let mut event = RequestEvent::begin(Surface::Ws, "req-1".into(), "i");
        event.absorb(&tally);
        assert_eq!(event.provider.as_deref(), Some("p"));
        assert_eq!(event.completion_tokens, Some(2));
        assert!(event.upstream_ms.is_some());
    }

    #[test]
    fn tokens_add_up_and_classes_are_named() {
        let a = Tokens {
            prompt: 1,
            completion: 2,
            cached: None,
        };
        let b = Tokens {
            prompt: 3,
            completion: 4,
            cached: Some(1),
        };
        assert_eq!(
            a + b,
            Tokens {
                prompt: 4,
                completion: 6,
                cached: Some(1)
            }
        );
        assert_eq!((a + a).cached, None);
        assert_eq!(status_class(503), "5xx");
        assert_eq!(status_class(499), "4xx");
        assert_eq!(status_class(200), "2xx");
    }
}
