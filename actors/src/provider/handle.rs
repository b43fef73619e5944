//! The provider handle: the hot path of every upstream call.
//!
//! A [`ProviderHandle`] is cheap to clone and callable from any thread and runtime, so the HTTP
//! layer and the dispatcher call it directly instead of hopping through the provider actor's
//! mailbox. Everything that must outlive an actor restart — the breaker, the concurrency
//! slots, the counters — lives behind its `Arc`.
//!
//! One call is: take a concurrency slot (or queue, or fail with over-capacity), then up to
//! `1 + max_retries` attempts, each admitted by the breaker, each recorded as a
//! `provider.request` event. Dropping the returned future or stream drops the HTTP request
//! (aborting it upstream) and releases the slot.
//!
//! The `reqwest` client is kept per thread: each actix worker runs its own runtime, and a
//! client's pooled connections belong to the runtime that opened them, so sharing one client
//! between workers would tie connections to whichever worker happened to open them.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{Stream, StreamExt as _};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::anthropic::{self, Translation};
use super::body::{self, BodyError};
use super::error::{ErrorLabels, ProviderError, TimeoutKind};

use super::settings::ProviderSettings;
use super::sse::{SseEvent, SseParser};
use crate::health::{HealthBoard, Status};
use crate::pipeline::recorder::Recorder;
use crate::policy::breaker::{
    BreakerSet, BreakerState, MAX_MODEL_BREAKERS, Outcome, Probes, Scope, SetPermit, Transition,
};
use crate::policy::failure_log::FailureLog;
use crate::policy::retry::parse_retry_after;

/// `source` of every event a provider records.
pub const EVENT_SOURCE: &str = "provider";
/// Event type of one upstream attempt.
pub const REQUEST_EVENT: &str = "provider.request";
/// How much of an upstream error body is kept in the error message.
const ERROR_BODY_LIMIT: usize = 512;
/// How much of a non-2xx upstream body is read to find its message.
const ERROR_BODY_READ_LIMIT: usize = 64 * 1024;
/// The setting that caps an upstream answer, named in its error.
const MAX_BYTES_SETTING: &str = "EXAI_UPSTREAM_MAX_BYTES";
/// The setting that caps one SSE event, named in its error.
const MAX_EVENT_SETTING: &str = "EXAI_SSE_MAX_EVENT_BYTES";
/// How long idle pooled connections are kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Source of unique handle ids, the key of the per-thread client table.
static NEXT_HANDLE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// One HTTP client per provider handle per thread (see the module docs).
    static CLIENTS: RefCell<HashMap<u64, reqwest::Client>> = RefCell::new(HashMap::new());
}

/// The health component name of a provider (`provider:<name>`).
pub fn health_component(provider: &str) -> String {
    format!("provider:{provider}")
}

/// Token usage as reported by the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Tokens in the prompt (Anthropic: `input_tokens`).
    #[serde(default, alias = "input_tokens")]
    pub prompt_tokens: u64,
    /// Tokens generated (Anthropic: `output_tokens`).
    #[serde(default, alias = "output_tokens")]
    pub completion_tokens: u64,
    /// Their sum, as the upstream counted it.
    #[serde(default)]
    pub total_tokens: u64,
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
    provider: Arc<str>,
    /// The upstream model id that was sent.
    model: String,
    /// Usage from the chunk that carried it, once seen.
    usage: Arc<Mutex<Option<Usage>>>,
    /// The chunks.
    inner: Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>,
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

/// Counters kept per provider for `/health`.
#[derive(Debug, Default)]
struct Counters {
    /// Calls made (each may have several attempts).
    calls: AtomicU64,
    /// Upstream attempts.
    attempts: AtomicU64,
    /// Calls that succeeded.
    succeeded: AtomicU64,
    /// Calls that failed.
    failed: AtomicU64,
    /// Retries made.
    retries: AtomicU64,
    /// Calls refused for lack of capacity.
    over_capacity: AtomicU64,
    /// Calls refused by an open breaker (the provider's or a model's).
    breaker_rejected: AtomicU64,
    /// Attempts abandoned by their caller.
    cancelled: AtomicU64,
    /// Prompt tokens reported.
    prompt_tokens: AtomicU64,
    /// Completion tokens reported.
    completion_tokens: AtomicU64,
}

impl Counters {
    fn json(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "calls": get(&self.calls),
            "attempts": get(&self.attempts),
            "succeeded": get(&self.succeeded),
            "failed": get(&self.failed),
            "retries": get(&self.retries),
            "over_capacity": get(&self.over_capacity),
            "breaker_rejected": get(&self.breaker_rejected),
            "cancelled": get(&self.cancelled),
            "prompt_tokens": get(&self.prompt_tokens),
            "completion_tokens": get(&self.completion_tokens),
        })
    }
}

/// State shared by every clone of a handle and by every incarnation of the provider actor.
struct Shared {
    /// Unique per handle; keys the per-thread client table.
    id: u64,
    /// Provider name, shared with results and errors.
    name: Arc<str>,
    /// Its settings (the key inside is a `SecretString`).
    settings: ProviderSettings,
    /// `<base>/chat/completions` (`<base>/messages` for `anthropic`), parsed once.
    completions_url: reqwest::Url,
    /// `<base>/models`.
    models_url: reqwest::Url,
    /// The key's header(s), marked sensitive so they never print.
    headers: HeaderMap,
    /// Concurrency slots.
    slots: Arc<Semaphore>,
    /// Callers waiting for a slot.
    queued: AtomicUsize,
    /// The circuit breakers: provider-wide and per model.
    breaker: Mutex<BreakerSet>,
    /// Counters for `/health`.
    counters: Counters,
    /// Where `provider.request` and `breaker.*` events go.
    recorder: Recorder,
    /// Where the `provider:<name>` component is published.
    health: HealthBoard,
    /// Quiet logging of failure streaks.
    failures: Mutex<FailureLog>,
    /// Mirror of `failures.is_failing()`, so a success needs no lock while healthy.
    failing: AtomicBool,
}

/// Cheap-to-clone access to one provider. See the module docs.
#[derive(Clone)]
pub struct ProviderHandle {
    /// Everything, shared.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for ProviderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderHandle")
            .field("name", &self.shared.name)
            .field("kind", &self.shared.settings.kind)
            .field("base_url", &self.shared.settings.display_base_url())
            .finish_non_exhaustive()
    }
}

/// Installs the process-wide TLS crypto provider once.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // An error only means another part of the process installed one first.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl ProviderHandle {
    /// A handle for `settings`, recording into `recorder` and publishing its health
    /// component `provider:<name>` on `health`. Fails only when the base URL is empty or not
    /// a URL, or the HTTP client cannot be built.
    pub fn new(
        settings: ProviderSettings,
        recorder: Recorder,
        health: HealthBoard,
    ) -> Result<Self, ProviderError> {
        let name: Arc<str> = settings.name.as_str().into();
        let base = settings.base_url.trim_end_matches('/').to_owned();
        if base.is_empty() {
            return Err(ProviderError::Unavailable {
                provider: name.to_string(),
                message: "no base URL configured".into(),
            });
        }
        let endpoint = anthropic::endpoint(settings.kind);
        let invalid = |e: url::ParseError| ProviderError::Unavailable {
            provider: name.to_string(),
            message: format!("base URL is not a valid URL: {e}"),
        };
        let completions_url = endpoint_url(&base, endpoint).map_err(invalid)?;
        let models_url = endpoint_url(&base, "models").map_err(invalid)?;
        let headers = anthropic::upstream_headers(settings.kind, settings.api_key.as_ref())
            .ok_or_else(|| ProviderError::Unavailable {
                provider: name.to_string(),
                message: "API key contains characters not allowed in a header".into(),
            })?;
        let what: &'static str = Box::leak(format!("provider {name}").into_boxed_str());
        let handle = Self {
            shared: Arc::new(Shared {
                id: NEXT_HANDLE_ID.fetch_add(1, Ordering::Relaxed),
                completions_url,
                models_url,
                headers,
                slots: Arc::new(Semaphore::new(
                    settings.max_concurrency.clamp(1, Semaphore::MAX_PERMITS),
                )),
                queued: AtomicUsize::new(0),
                breaker: Mutex::new(BreakerSet::new(settings.breaker, MAX_MODEL_BREAKERS)),
                counters: Counters::default(),
                recorder,
                health,
                failures: Mutex::new(FailureLog::new(what)),
                failing: AtomicBool::new(false),
                name,
                settings,
            }),
        };
        handle.client()?;
        handle.publish_health();
        Ok(handle)
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Its settings (the key stays a `SecretString`).
    pub fn settings(&self) -> &ProviderSettings {
        &self.shared.settings
    }

    /// The provider-wide (transport) breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.lock_breaker().provider_state()
    }

    /// The state that decides calls to `model`: the worse of the provider-wide breaker and
    /// the model's own.
    pub fn breaker_state_for(&self, model: &str) -> BreakerState {
        self.lock_breaker().state_for(model)
    }

    /// Whether a call to `model` made now would be refused by a breaker (does not use up
    /// the probe, counts nothing).
    pub fn breaker_rejects(&self, model: &str) -> bool {
        self.lock_breaker().peek(model, Instant::now()).is_some()
    }

    /// If a breaker refuses a call to `model` now: the error that call gets. The refusal is
    /// counted (`breaker_rejected`); the probe is not used up.
    pub fn breaker_rejection(&self, model: &str) -> Option<ProviderError> {
        let (scope, retry_in) = self.lock_breaker().peek(model, Instant::now())?;
        self.shared
            .counters
            .breaker_rejected
            .fetch_add(1, Ordering::Relaxed);
        Some(self.breaker_open(scope, retry_in))
    }

    /// Calls holding a concurrency slot now.
    pub fn in_flight(&self) -> usize {
        let max = self
            .shared
            .settings
            .max_concurrency
            .clamp(1, Semaphore::MAX_PERMITS);
        max.saturating_sub(self.shared.slots.available_permits())
    }

    /// Calls waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Publishes the `provider:<name>` health component: breakers, slots and counters.
    /// Degraded while any of its breakers is not closed. `breaker` is the provider-wide one;
    /// `model_breakers` lists each model breaker that has counted failures or is not closed.
    pub fn publish_health(&self) {
        let s = &self.shared;
        let now = Instant::now();
        let (breaker, model_breakers, any_open) = {
            let set = self.lock_breaker();
            (
                set.provider_snapshot_at(now),
                set.model_snapshots_at(now),
                set.any_open(),
            )
        };
        let status = if any_open {
            Status::Degraded
        } else {
            Status::Ok
        };
        let model_breakers: Vec<Value> = model_breakers
            .into_iter()
            .map(|m| {
                json!({
                    "model": m.model,
                    "state": m.breaker.state,
                    "failures": m.breaker.consecutive_failures,
                    "times_opened": m.breaker.times_opened,
                    "retry_after_ms": m.breaker.retry_in_ms,
                })
            })
            .collect();
        s.health.set_component(
            &health_component(&s.name),
            status,
            json!({
                "kind": s.settings.kind,
                "base_url": s.settings.display_base_url(),
                "simulated": s.settings.simulated,
                "breaker": breaker,
                "model_breakers": model_breakers,
                "in_flight": self.in_flight(),
                "queued": self.queued(),
                "max_concurrency": s.settings.max_concurrency,
                "max_queue": s.settings.max_queue,
                "counters": s.counters.json(),
            }),
        );
    }

    /// A non-streaming chat completion of `body` with `model` as the upstream model id.
    pub async fn complete(&self, model: &str, body: Value) -> Result<Completion, ProviderError> {
        let translation = Translation::of(self.shared.settings.kind, &body);
        let body = self.prepare_body(translation, body, model, false)?;
        let _slot = self.acquire_slot().await?;
        let client = self.client()?;
        let s = &self.shared;
        s.counters.calls.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut backoff = s.settings.retry.start();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let guard = self.admit(model, attempt, false)?;
            let result = tokio::time::timeout(
                s.settings.request_timeout,
                self.attempt_complete(&client, body.clone()),
            )
            .await
            .unwrap_or_else(|_| Err(self.timeout(TimeoutKind::Request)))
            .and_then(|(body, usage)| {
                let body = translation.response(body).map_err(|e| self.malformed(&e))?;
                Ok((body, usage))
            });
            match result {
                Ok((body, usage)) => {
                    guard.succeeded(Some(200), None, usage);
                    return Ok(Completion {
                        provider: s.name.clone(),
                        model: model.to_owned(),
                        body,
                        usage,
                        attempts: attempt,
                        latency: started.elapsed(),
                        simulated: s.settings.simulated,
                    });
                }
                Err(error) => match self
                    .retry_or_give_up(guard, error, attempt, &mut backoff)
                    .await
                {
                    None => continue,
                    Some(error) => return Err(error),
                },
            }
        }
    }

    /// A streaming chat completion. Retries happen only until the upstream answered 200;
    /// once the stream has started, failures end it with an error item.
    pub async fn stream(&self, model: &str, body: Value) -> Result<ChatStream, ProviderError> {
        let translation = Translation::of(self.shared.settings.kind, &body);
        let body = self.prepare_body(translation, body, model, true)?;
        let slot = self.acquire_slot().await?;
        let client = self.client()?;
        let s = &self.shared;
        s.counters.calls.fetch_add(1, Ordering::Relaxed);
        let mut backoff = s.settings.retry.start();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let guard = self.admit(model, attempt, true)?;
            let result = tokio::time::timeout(
                s.settings.request_timeout,
                self.send(&client, s.completions_url.clone(), body.clone()),
            )
            .await
            .unwrap_or_else(|_| Err(self.timeout(TimeoutKind::Request)));
            match result {
                Ok(response) if !is_event_stream(&response) => {
                    // A JSON answer to a stream request: usually an error object. The client
                    // gets it as the stream's error; a stream must not pretend to succeed.
                    let error = match body::read_capped(response, s.settings.max_body_bytes).await {
                        Ok(bytes) => self.non_stream_answer_error(&bytes),
                        Err(e) => self.body_error(e),
                    };
                    guard.failed(&error, None);
                    s.counters.failed.fetch_add(1, Ordering::Relaxed);
                    drop(slot);
                    return Ok(ChatStream {
                        provider: s.name.clone(),
                        model: model.to_owned(),
                        usage: Arc::new(Mutex::new(None)),
                        inner: Box::pin(futures_util::stream::once(std::future::ready(Err(error)))),
                    });
                }
                Ok(response) => {
                    let usage = Arc::new(Mutex::new(None));
                    let deadline =
                        tokio::time::Instant::from_std(guard.started) + s.settings.stream_max();
                    let state = StreamState {
                        handle: self.clone(),
                        body: Some(Box::pin(response.bytes_stream())),
                        parser: SseParser::new(s.settings.sse_max_event_bytes),
                        ready: VecDeque::new(),
                        eof: false,
                        guard: Some(guard),
                        slot: Some(slot),
                        usage: usage.clone(),
                        first_chunk: None,
                        deadline,
                        ends_on_message_stop: s.settings.kind == super::ProviderKind::Anthropic,
                    };
                    let inner = Box::pin(futures_util::stream::unfold(state, StreamState::next));
                    return Ok(ChatStream {
                        provider: s.name.clone(),
                        model: model.to_owned(),
                        usage,
                        inner: translation.stream(inner, &s.name),
                    });
                }
                Err(error) => match self
                    .retry_or_give_up(guard, error, attempt, &mut backoff)
                    .await
                {
                    None => continue,
                    Some(error) => return Err(error),
                },
            }
        }
    }

    /// A JSON `POST` to another endpoint of the provider's API (`path` relative to its base
    /// URL, e.g. GLM's `web_search`), with the same slot, breaker, retries, timeout and
    /// `provider.request` event as a completion; `label` names the call in the event's
    /// `model`. Returns the response body, which must be JSON.
    pub async fn post_json(
        &self,
        path: &str,
        label: &str,
        body: &Value,
    ) -> Result<Bytes, ProviderError> {
        let s = &self.shared;
        let url = endpoint_url(&s.settings.base_url, path).map_err(|e| {
            ProviderError::InvalidRequest {
                provider: s.name.to_string(),
                message: format!("bad endpoint {path:?}: {e}"),
            }
        })?;
        let bytes =
            Bytes::from(
                serde_json::to_vec(body).map_err(|e| ProviderError::InvalidRequest {
                    provider: s.name.to_string(),
                    message: e.to_string(),
                })?,
            );
        let _slot = self.acquire_slot().await?;
        let client = self.client()?;
        s.counters.calls.fetch_add(1, Ordering::Relaxed);
        let mut backoff = s.settings.retry.start();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let guard = self.admit(label, attempt, false)?;
            let result = tokio::time::timeout(s.settings.request_timeout, async {
                let response = self.send(&client, url.clone(), bytes.clone()).await?;
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| self.transport_error(e))?;
                serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                    .map_err(|e| self.malformed(&e))?;
                Ok(body)
            })
            .await
            .unwrap_or_else(|_| Err(self.timeout(TimeoutKind::Request)));
            match result {
                Ok(body) => {
                    guard.succeeded(Some(200), None, None);
                    return Ok(body);
                }
                Err(error) => match self
                    .retry_or_give_up(guard, error, attempt, &mut backoff)
                    .await
                {
                    None => continue,
                    Some(error) => return Err(error),
                },
            }
        }
    }

    /// The upstream's `GET /models`. Not subject to the breaker or the slots: discovery must
    /// not fence off a provider, nor be starved by traffic.
    pub async fn list_remote_models(&self) -> Result<Vec<RemoteModel>, ProviderError> {
        /// The OpenAI list shape.
        #[derive(Deserialize)]
        struct List {
            /// The models.
            data: Vec<Entry>,
        }
        /// One listed model; Ollama and vLLM add context fields under various names.
        #[derive(Deserialize)]
        struct Entry {
            /// Model id.
            id: String,
            /// Owner label.
            #[serde(default)]
            owned_by: Option<String>,
            /// vLLM's name for the context window.
            #[serde(default)]
            max_model_len: Option<u64>,
            /// Another common name for it.
            #[serde(default)]
            context_length: Option<u64>,
            /// And another.
            #[serde(default)]
            context_window: Option<u64>,
        }
        let s = &self.shared;
        let client = self.client()?;
        let fetch = async {
            let request = client.get(s.models_url.clone()).headers(s.headers.clone());
            let response = request.send().await.map_err(|e| self.transport_error(e))?;
            if !response.status().is_success() {
                return Err(self.status_error(response).await);
            }
            let bytes = body::read_capped(response, s.settings.max_body_bytes)
                .await
                .map_err(|e| self.body_error(e))?;
            serde_json::from_slice::<List>(&bytes).map_err(|e| self.malformed(&e))
        };
        let list = tokio::time::timeout(s.settings.discovery_timeout, fetch)
            .await
            .unwrap_or_else(|_| Err(self.timeout(TimeoutKind::Request)))?;
        Ok(list
            .data
            .into_iter()
            .map(|e| RemoteModel {
                context_window: e.context_window.or(e.context_length).or(e.max_model_len),
                id: e.id,
                owned_by: e.owned_by,
            })
            .collect())
    }

    // -----------------------------------------------------------------------------------
    // Internals.

    fn lock_breaker(&self) -> std::sync::MutexGuard<'_, BreakerSet> {
        self.shared
            .breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// This thread's client for this provider, built on first use.
    fn client(&self) -> Result<reqwest::Client, ProviderError> {
        let s = &self.shared;
        CLIENTS.with(|clients| {
            let mut clients = clients.borrow_mut();
            if let Some(client) = clients.get(&s.id) {
                return Ok(client.clone());
            }
            install_crypto_provider();
            let client = reqwest::Client::builder()
                .connect_timeout(s.settings.connect_timeout)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .tcp_nodelay(true)
                .build()
                .map_err(|e| ProviderError::Unavailable {
                    provider: s.name.to_string(),
                    message: format!(
                        "cannot build HTTP client: {}",
                        error_chain(&e.without_url())
                    ),
                })?;
            clients.insert(s.id, client.clone());
            Ok(client)
        })
    }

    /// Sets `model` and `stream`, leaves everything else as the caller sent it (translated
    /// to the provider's dialect when it differs).
    fn prepare_body(
        &self,
        translation: Translation,
        body: Value,
        model: &str,
        stream: bool,
    ) -> Result<Bytes, ProviderError> {
        let Value::Object(map) = body else {
            return Err(ProviderError::InvalidRequest {
                provider: self.shared.name.to_string(),
                message: "the request body must be a JSON object".into(),
            });
        };
        let mut map = translation.request(map, stream);
        map.insert("model".into(), Value::String(model.to_owned()));
        map.insert("stream".into(), Value::Bool(stream));
        serde_json::to_vec(&map)
            .map(Bytes::from)
            .map_err(|e| ProviderError::InvalidRequest {
                provider: self.shared.name.to_string(),
                message: e.to_string(),
            })
    }

    /// Takes a concurrency slot, queueing while the queue has room.
    async fn acquire_slot(&self) -> Result<OwnedSemaphorePermit, ProviderError> {
        let s = &self.shared;
        if let Ok(permit) = s.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _queued = QueueGuard::enter(&s.queued);
        if _queued.position >= s.settings.max_queue {
            s.counters.over_capacity.fetch_add(1, Ordering::Relaxed);
            return Err(ProviderError::OverCapacity {
                provider: s.name.to_string(),
                max_concurrency: s.settings.max_concurrency,
                max_queue: s.settings.max_queue,
            });
        }
        s.slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ProviderError::Unavailable {
                provider: s.name.to_string(),
                message: "shutting down".into(),
            })
    }

    /// Asks the breaker for permission to make attempt number `attempt`.
    fn admit(
        &self,
        model: &str,
        attempt: u32,
        stream: bool,
    ) -> Result<AttemptGuard, ProviderError> {
        let s = &self.shared;
        let permit = self.lock_breaker().allow_at(model, Instant::now());
        let probes = match permit {
            SetPermit::Rejected { scope, retry_in } => {
                s.counters.breaker_rejected.fetch_add(1, Ordering::Relaxed);
                s.counters.failed.fetch_add(1, Ordering::Relaxed);
                return Err(self.breaker_open(scope, retry_in));
            }
            SetPermit::Granted {
                probes,
                transitions,
            } => {
                self.on_transitions(transitions);
                probes
            }
        };
        s.counters.attempts.fetch_add(1, Ordering::Relaxed);
        if attempt > 1 {
            s.counters.retries.fetch_add(1, Ordering::Relaxed);
        }
        Ok(AttemptGuard {
            handle: self.clone(),
            model: model.to_owned(),
            attempt,
            stream,
            probes,
            started: Instant::now(),
            done: false,
        })
    }

    /// The error of a call refused by the breaker of `scope`.
    fn breaker_open(&self, scope: Scope, retry_in: Duration) -> ProviderError {
        ProviderError::BreakerOpen {
            provider: self.shared.name.to_string(),
            model: scope.model().map(str::to_owned),
            retry_in_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Reports how an attempt on `model` ended to the breakers and records what changed.
    fn report(&self, model: &str, outcome: Outcome, probes: Probes) {
        let transitions = self
            .lock_breaker()
            .report_at(model, outcome, probes, Instant::now());
        self.on_transitions(transitions);
    }

    /// Records breaker transitions as events (with `provider` and `model`; `model` is null
    /// for the provider-wide breaker), logs each once and republishes health.
    fn on_transitions(&self, transitions: Vec<(Scope, Transition)>) {
        if transitions.is_empty() {
            return;
        }
        let s = &self.shared;
        for (scope, transition) in transitions {
            let state = transition.to_state();
            let model = scope.model();
            s.recorder.record(
                EVENT_SOURCE,
                transition.event_kind(),
                json!({
                    "provider": &*s.name,
                    "model": model,
                    "scope": scope.as_str(),
                    "state": state,
                    "simulated": s.settings.simulated,
                }),
            );
            match transition {
                Transition::Opened => {
                    tracing::warn!(provider = %s.name, model, "circuit breaker opened");
                }
                Transition::HalfOpened | Transition::Closed => {
                    tracing::info!(provider = %s.name, model, state = %state, "circuit breaker changed");
                }
            }
        }
        self.publish_health();
    }

    /// One `POST` of `body` to `url`: a transport error or a non-2xx status is an error.
    async fn send(
        &self,
        client: &reqwest::Client,
        url: reqwest::Url,
        body: Bytes,
    ) -> Result<reqwest::Response, ProviderError> {
        let response = self
            .request(client, url, body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_error(response).await)
        }
    }

    /// After failed attempt number `attempt`: `None` once the retry delay has passed (try
    /// again), or the error to return (not retryable, or no retries left), counted as a
    /// failed call.
    async fn retry_or_give_up(
        &self,
        guard: AttemptGuard,
        error: ProviderError,
        attempt: u32,
        backoff: &mut crate::policy::retry::Backoff,
    ) -> Option<ProviderError> {
        guard.failed(&error, None);
        if error.is_retryable() && attempt <= self.shared.settings.max_retries {
            tokio::time::sleep(self.retry_delay(&error, backoff)).await;
            return None;
        }
        self.shared.counters.failed.fetch_add(1, Ordering::Relaxed);
        Some(error)
    }

    /// One non-streaming attempt: the body and its usage.
    async fn attempt_complete(
        &self,
        client: &reqwest::Client,
        body: Bytes,
    ) -> Result<(Bytes, Option<Usage>), ProviderError> {
        let response = self
            .send(client, self.shared.completions_url.clone(), body)
            .await?;
        let bytes = body::read_capped(response, self.shared.settings.max_body_bytes)
            .await
            .map_err(|e| self.body_error(e))?;
        let parsed: AnswerBody = serde_json::from_slice(&bytes).map_err(|e| self.malformed(&e))?;
        if let Some(error) = parsed.error {
            return Err(self.reported_error(&error));
        }
        let anthropic_upstream = self.shared.settings.kind == super::ProviderKind::Anthropic;
        let is_answer = if anthropic_upstream {
            parsed.content.is_some()
        } else {
            parsed.choices.is_some()
        };
        if !is_answer {
            let expected = if anthropic_upstream {
                "content"
            } else {
                "choices"
            };
            return Err(ProviderError::Malformed {
                provider: self.shared.name.to_string(),
                message: format!("the answer has neither {expected} nor an error"),
            });
        }
        Ok((bytes, parsed.usage))
    }

    /// The error a complete JSON answer to a stream request stands for: the upstream's error
    /// object, or a malformed answer.
    fn non_stream_answer_error(&self, bytes: &[u8]) -> ProviderError {
        match serde_json::from_slice::<AnswerBody>(bytes) {
            Ok(AnswerBody {
                error: Some(error), ..
            }) => self.reported_error(&error),
            Ok(_) => ProviderError::Malformed {
                provider: self.shared.name.to_string(),
                message: "a stream was asked for but the upstream answered plain JSON".into(),
            },
            Err(e) => self.malformed(&e),
        }
    }

    /// An upstream error object (`{"message","type","code"}`, or a bare string) as an error.
    fn reported_error(&self, error: &Value) -> ProviderError {
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
            provider: self.shared.name.to_string(),
            message: clip(self.scrub(message)),
            labels: Box::new(ErrorLabels {
                error_type: error_type.map(|t| clip(self.scrub(t))),
                code: code.map(|c| clip(self.scrub(c))),
            }),
        }
    }

    /// A failed capped body read as an error.
    fn body_error(&self, error: BodyError) -> ProviderError {
        match error {
            BodyError::TooLarge { limit } => ProviderError::TooLarge {
                provider: self.shared.name.to_string(),
                what: "answer",
                limit,
                setting: MAX_BYTES_SETTING,
            },
            BodyError::Transport(e) => self.transport_error(e),
        }
    }

    fn request(
        &self,
        client: &reqwest::Client,
        url: reqwest::Url,
        body: Bytes,
    ) -> reqwest::RequestBuilder {
        client
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .headers(self.shared.headers.clone())
            .body(body)
    }

    /// The delay before the next retry: the upstream's `Retry-After` when it sent one
    /// (already capped), else the next backoff step.
    fn retry_delay(
        &self,
        error: &ProviderError,
        backoff: &mut crate::policy::retry::Backoff,
    ) -> Duration {
        let step = backoff.next_delay();
        error.retry_after().unwrap_or(step)
    }

    fn timeout(&self, kind: TimeoutKind) -> ProviderError {
        let settings = &self.shared.settings;
        ProviderError::Timeout {
            provider: self.shared.name.to_string(),
            kind,
            after: match kind {
                TimeoutKind::Connect => settings.connect_timeout,
                TimeoutKind::Request => settings.request_timeout,
                TimeoutKind::StreamIdle => settings.stream_idle_timeout,
                TimeoutKind::StreamTotal => settings.stream_max(),
            },
        }
    }

    fn malformed(&self, error: &dyn std::fmt::Display) -> ProviderError {
        ProviderError::Malformed {
            provider: self.shared.name.to_string(),
            message: format!("invalid JSON: {error}"),
        }
    }

    /// Classifies a transport error. The URL is dropped from the message.
    fn transport_error(&self, error: reqwest::Error) -> ProviderError {
        if error.is_timeout() && error.is_connect() {
            return self.timeout(TimeoutKind::Connect);
        }
        ProviderError::Connection {
            provider: self.shared.name.to_string(),
            connect: error.is_connect(),
            message: self.scrub(error_chain(&error.without_url())),
        }
    }

    /// Turns a non-2xx answer into an error, keeping the upstream's message and
    /// `Retry-After`.
    async fn status_error(&self, response: reqwest::Response) -> ProviderError {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.shared.settings.retry_after_cap));
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
            provider: self.shared.name.to_string(),
            status,
            message,
            retry_after,
        }
    }

    /// Removes the API key from text that came from elsewhere (upstream bodies).
    fn scrub(&self, text: String) -> String {
        match &self.shared.settings.api_key {
            Some(key) if !key.expose_secret().is_empty() && text.contains(key.expose_secret()) => {
                text.replace(key.expose_secret(), "[redacted]")
            }
            _ => text,
        }
    }

    /// Records the `provider.request` event of one attempt and feeds the failure log.
    #[allow(clippy::too_many_arguments)]
    fn record_attempt(
        &self,
        model: &str,
        attempt: u32,
        stream: bool,
        latency: Duration,
        ttft: Option<Duration>,
        usage: Option<Usage>,
        outcome: Result<Option<u16>, &ProviderError>,
    ) {
        let s = &self.shared;
        let (ok, status, error_kind) = match outcome {
            Ok(status) => (true, status, None),
            Err(error) => (false, error.upstream_status(), Some(error.kind())),
        };
        if let Some(usage) = usage {
            s.counters
                .prompt_tokens
                .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
            s.counters
                .completion_tokens
                .fetch_add(usage.completion_tokens, Ordering::Relaxed);
        }
        s.recorder.record(
            EVENT_SOURCE,
            REQUEST_EVENT,
            json!({
                "provider": &*s.name,
                "model": model,
                "ok": ok,
                "status": status,
                "latency_ms": latency.as_secs_f64() * 1000.0,
                "ttft_ms": ttft.map(|t| t.as_secs_f64() * 1000.0),
                "prompt_tokens": usage.map(|u| u.prompt_tokens),
                "completion_tokens": usage.map(|u| u.completion_tokens),
                "total_tokens": usage.map(|u| u.total_tokens),
                "attempt": attempt,
                "stream": stream,
                "error_kind": error_kind,
                "simulated": s.settings.simulated,
            }),
        );
        match outcome {
            Ok(_) => {
                if s.failing.load(Ordering::Relaxed) {
                    let mut log = s.failures.lock().unwrap_or_else(PoisonError::into_inner);
                    log.success();
                    s.failing.store(log.is_failing(), Ordering::Relaxed);
                }
            }
            Err(error) => {
                tracing::debug!(provider = %s.name, model, attempt, %error, "upstream attempt failed");
                let mut log = s.failures.lock().unwrap_or_else(PoisonError::into_inner);
                log.failure(error);
                s.failing.store(log.is_failing(), Ordering::Relaxed);
            }
        }
    }
}

/// Counts a caller waiting for a slot; uncounts it however the wait ends.
struct QueueGuard<'a> {
    /// The counter.
    queued: &'a AtomicUsize,
    /// Callers already waiting when this one arrived.
    position: usize,
}

impl<'a> QueueGuard<'a> {
    fn enter(queued: &'a AtomicUsize) -> Self {
        let position = queued.fetch_add(1, Ordering::AcqRel);
        Self { queued, position }
    }
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One admitted attempt: reports its outcome to the breaker and records its event exactly
/// once — as cancelled if the caller dropped it first.
struct AttemptGuard {
    /// The provider.
    handle: ProviderHandle,
    /// Upstream model id.
    model: String,
    /// 1-based attempt number.
    attempt: u32,
    /// Whether this is a streaming attempt.
    stream: bool,
    /// Which breakers let this through as their half-open probe.
    probes: Probes,
    /// When the attempt began.
    started: Instant,
    /// Set once the outcome is reported.
    done: bool,
}

impl AttemptGuard {
    fn succeeded(mut self, status: Option<u16>, ttft: Option<Duration>, usage: Option<Usage>) {
        self.done = true;
        let h = &self.handle;
        h.report(&self.model, Outcome::Success, self.probes);
        h.shared.counters.succeeded.fetch_add(1, Ordering::Relaxed);
        h.record_attempt(
            &self.model,
            self.attempt,
            self.stream,
            self.started.elapsed(),
            ttft,
            usage,
            Ok(status),
        );
    }

    fn failed(mut self, error: &ProviderError, ttft: Option<Duration>) {
        self.done = true;
        let h = &self.handle;
        // A client error proves the upstream is up; see `ProviderError::breaker_outcome`.
        h.report(&self.model, error.breaker_outcome(), self.probes);
        h.record_attempt(
            &self.model,
            self.attempt,
            self.stream,
            self.started.elapsed(),
            ttft,
            None,
            Err(error),
        );
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let h = &self.handle;
        if self.probes != Probes::default() {
            h.report(&self.model, Outcome::Abandoned, self.probes);
        }
        h.shared.counters.cancelled.fetch_add(1, Ordering::Relaxed);
        let s = &h.shared;
        s.recorder.record(
            EVENT_SOURCE,
            REQUEST_EVENT,
            json!({
                "provider": &*s.name,
                "model": &self.model,
                "ok": false,
                "status": null,
                "latency_ms": self.started.elapsed().as_secs_f64() * 1000.0,
                "attempt": self.attempt,
                "stream": self.stream,
                "error_kind": "cancelled",
                "simulated": s.settings.simulated,
            }),
        );
    }
}

/// The upstream body of a stream.
type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Everything a running stream holds; dropping it aborts the upstream request.
struct StreamState {
    /// The provider.
    handle: ProviderHandle,
    /// The upstream body; `None` once finished.
    body: Option<ByteStream>,
    /// SSE parser state.
    parser: SseParser,
    /// Events parsed but not yet handed out.
    ready: VecDeque<SseEvent>,
    /// Whether the upstream body has ended.
    eof: bool,
    /// The attempt, reported when the stream ends; `None` once reported.
    guard: Option<AttemptGuard>,
    /// The concurrency slot, released when the stream ends or is dropped.
    slot: Option<OwnedSemaphorePermit>,
    /// Usage, shared with the [`ChatStream`].
    usage: Arc<Mutex<Option<Usage>>>,
    /// Time to the first data chunk.
    first_chunk: Option<Duration>,
    /// When the stream's lifetime (`stream_max_s`) ends.
    deadline: tokio::time::Instant,
    /// An Anthropic upstream: `message_stop` ends the stream (there is no `[DONE]`).
    ends_on_message_stop: bool,
}

impl StreamState {
    /// The unfold step: the next chunk, or the end.
    async fn next(mut self) -> Option<(Result<Bytes, ProviderError>, Self)> {
        let mut batch = Vec::new();
        loop {
            self.guard.as_ref()?;
            if let Some(event) = self.ready.pop_front() {
                match event {
                    SseEvent::Data(data) => {
                        if let Some(error) = self.reported_error(&data) {
                            self.finish(Some(&error));
                            return Some((Err(error), self));
                        }
                        if self.first_chunk.is_none() {
                            self.first_chunk = self.guard.as_ref().map(|g| g.started.elapsed());
                        }
                        self.sniff_usage(&data);
                        if self.ends_on_message_stop && anthropic::is_message_stop(&data) {
                            self.ready.push_front(SseEvent::Done);
                        }
                        return Some((Ok(data), self));
                    }
                    SseEvent::Done => {
                        // If the body's end has already arrived, reading it now hands the
                        // connection back to the pool instead of closing it.
                        if let Some(body) = self.body.as_mut() {
                            let _ = futures_util::FutureExt::now_or_never(body.next());
                        }
                        self.finish(None);
                        return None;
                    }
                }
            }
            if self.eof {
                let error = self.interrupted("the upstream ended the stream before [DONE]".into());
                self.finish(Some(&error));
                return Some((Err(error), self));
            }
            let idle = self.handle.shared.settings.stream_idle_timeout;
            let now = tokio::time::Instant::now();
            let idle_until = now + idle;
            let deadline = self.deadline;
            if now >= deadline {
                // Checked here too: a timeout does not fire while the body is always ready,
                // and a fast endless stream must end as well.
                let error = self.handle.timeout(TimeoutKind::StreamTotal);
                self.finish(Some(&error));
                return Some((Err(error), self));
            }
            let body = self.body.as_mut()?;
            let parsed = match tokio::time::timeout_at(idle_until.min(deadline), body.next()).await
            {
                Err(_) => {
                    let kind = if deadline <= idle_until {
                        TimeoutKind::StreamTotal
                    } else {
                        TimeoutKind::StreamIdle
                    };
                    let error = self.handle.timeout(kind);
                    self.finish(Some(&error));
                    return Some((Err(error), self));
                }
                Ok(None) => {
                    self.eof = true;
                    self.parser.finish(&mut batch)
                }
                Ok(Some(Ok(bytes))) => self.parser.push(&bytes, &mut batch),
                Ok(Some(Err(e))) => {
                    let message = self.handle.scrub(error_chain(&e.without_url()));
                    let error = self.interrupted(message);
                    self.finish(Some(&error));
                    return Some((Err(error), self));
                }
            };
            self.ready.extend(batch.drain(..));
            if let Err(too_large) = parsed {
                // The stream is aborted at once; nothing after the cap is handed out.
                self.ready.clear();
                let error = ProviderError::TooLarge {
                    provider: self.handle.shared.name.to_string(),
                    what: "SSE event",
                    limit: too_large.limit,
                    setting: MAX_EVENT_SETTING,
                };
                self.finish(Some(&error));
                return Some((Err(error), self));
            }
        }
    }

    /// The error an SSE data event carries instead of a chunk (`{"error":{…}}`), if it does.
    fn reported_error(&self, data: &[u8]) -> Option<ProviderError> {
        /// Only the error is read.
        #[derive(Deserialize)]
        struct Chunk {
            /// The upstream's error object.
            #[serde(default)]
            error: Option<Value>,
        }
        const NEEDLE: &[u8] = b"\"error\"";
        if !data.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            return None;
        }
        let error = serde_json::from_slice::<Chunk>(data).ok()?.error?;
        Some(self.handle.reported_error(&error))
    }

    fn interrupted(&self, message: String) -> ProviderError {
        ProviderError::StreamInterrupted {
            provider: self.handle.shared.name.to_string(),
            message,
        }
    }

    /// Keeps usage from a chunk that carries it (top level, or Kimi's `choices[0].usage`).
    fn sniff_usage(&self, data: &[u8]) {
        /// A chunk's usage, wherever the upstream puts it.
        #[derive(Deserialize)]
        struct Chunk {
            /// OpenAI and GLM: top level.
            #[serde(default)]
            usage: Option<Usage>,
            /// Kimi: inside the choice.
            #[serde(default)]
            choices: Vec<Choice>,
        }
        /// One choice of a chunk.
        #[derive(Deserialize)]
        struct Choice {
            /// Kimi's per-choice usage.
            #[serde(default)]
            usage: Option<Usage>,
        }
        const NEEDLE: &[u8] = b"\"usage\"";
        if !data.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            return;
        }
        if let Ok(chunk) = serde_json::from_slice::<Chunk>(data)
            && let Some(usage) = chunk
                .usage
                .or_else(|| chunk.choices.into_iter().find_map(|c| c.usage))
        {
            *self.usage.lock().unwrap_or_else(PoisonError::into_inner) = Some(usage);
        }
    }

    /// Reports the attempt and releases the upstream body and the slot.
    fn finish(&mut self, error: Option<&ProviderError>) {
        self.body = None;
        self.slot = None;
        let Some(guard) = self.guard.take() else {
            return;
        };
        match error {
            None => {
                let usage = *self.usage.lock().unwrap_or_else(PoisonError::into_inner);
                guard.succeeded(Some(200), self.first_chunk, usage);
            }
            Some(error) => {
                self.handle
                    .shared
                    .counters
                    .failed
                    .fetch_add(1, Ordering::Relaxed);
                guard.failed(error, self.first_chunk);
            }
        }
    }
}

/// What is read of a complete answer: usage, and whether it is a completion at all.
#[derive(Deserialize)]
struct AnswerBody {
    /// Token usage.
    #[serde(default)]
    usage: Option<Usage>,
    /// Present in every completion; only its presence is checked.
    #[serde(default)]
    choices: Option<serde::de::IgnoredAny>,
    /// Present in every Anthropic message (an `anthropic` upstream); only its presence is
    /// checked.
    #[serde(default)]
    content: Option<serde::de::IgnoredAny>,
    /// An error object sent with a 200 instead of a completion.
    #[serde(default)]
    error: Option<Value>,
}

/// Whether a 2xx answer is an event stream (anything but JSON is taken as one, since some
/// servers label their streams loosely).
fn is_event_stream(response: &reqwest::Response) -> bool {
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
fn error_chain(error: &dyn std::error::Error) -> String {
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

/// `<base>/<path>`: the path is appended to the base URL's path, so a base URL that carries
/// a query string (`…/v1?api_key=…`, as some gateways want) keeps it on every endpoint.
fn endpoint_url(base: &str, path: &str) -> Result<reqwest::Url, url::ParseError> {
    let mut url = reqwest::Url::parse(base)?;
    let joined = format!(
        "{}/{}",
        url.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    Ok(url)
}

#[cfg(test)]
mod endpoint_tests {
    #![allow(clippy::unwrap_used)]
    use super::endpoint_url;

    #[test]
    fn endpoints_keep_the_base_path_and_its_query() {
        let u = endpoint_url("https://gw.example/v1?api_key=k", "chat/completions").unwrap();
        assert_eq!(
            u.as_str(),
            "https://gw.example/v1/chat/completions?api_key=k"
        );
        let u = endpoint_url("http://127.0.0.1:9/v1/", "/models").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:9/v1/models");
        let u = endpoint_url("http://h", "messages").unwrap();
        assert_eq!(u.as_str(), "http://h/messages");
        assert!(endpoint_url("not a url", "models").is_err());
    }
}
