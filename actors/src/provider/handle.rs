//! The provider handle: the hot path of every upstream call.
//!
//! A [`ProviderHandle`] is cheap to clone and callable from any thread and runtime, so the HTTP
//! layer and the dispatcher call it directly instead of hopping through the provider actor's
//! mailbox. Everything that must outlive an actor restart — the breaker, the concurrency
//! slots, the counters — lives behind its `Arc`.
//!
//! One call is: take a concurrency slot (or queue, or fail with over-capacity), then up to
//! `1 + max_retries` attempts, each admitted by the breaker and counted in the client call's
//! [`CallContext`] (whose request id goes upstream as `x-request-id`); an attempt that fails,
//! is retried or is cancelled is recorded as a `provider.attempt` event (a successful one is
//! part of the call's `request` event). Dropping the returned future or stream drops the HTTP
//! request (aborting it upstream) and releases the slot.
//!
//! The pieces of a call live beside it: [`Shared`] state (`shared.rs`), the result types
//! (`call.rs`), slot and attempt guards (`attempt.rs`), a running stream (`stream.rs`) and
//! the mapping of upstream failures to errors (`upstream.rs`).
//!
//! The `reqwest` client is kept per thread: each actix worker runs its own runtime, and a
//! client's pooled connections belong to the runtime that opened them, so sharing one client
//! between workers would tie connections to whichever worker happened to open them.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::anthropic::{self, Translation};
use super::attempt::{AttemptGuard, QueueGuard};
use super::body;
use super::call::{ChatStream, Completion, RemoteModel, Usage};
use super::error::{ProviderError, TimeoutKind};
use super::settings::{ProviderKind, ProviderSettings};
use super::shared::{Counters, Shared};
use super::sse::SseParser;
use super::stream::StreamState;
use super::upstream::{AnswerBody, error_chain, is_event_stream};
use crate::health::HealthBoard;
use crate::pipeline::recorder::Recorder;
use crate::pipeline::request::CallContext;
use crate::policy::breaker::{BreakerSet, BreakerState, MAX_MODEL_BREAKERS, SetPermit};
use crate::policy::failure_log::FailureLog;

/// How long idle pooled connections are kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The header carrying the client call's request id upstream (a constant name, so no
/// request parses or allocates it).
const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Source of unique handle ids, the key of the per-thread client table.
static NEXT_HANDLE_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// One HTTP client per provider handle per thread (see the module docs).
    static CLIENTS: RefCell<HashMap<u64, reqwest::Client>> = RefCell::new(HashMap::new());
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
        self.shared.lock_breaker().provider_state()
    }

    /// The state that decides calls to `model`: the worse of the provider-wide breaker and
    /// the model's own.
    pub fn breaker_state_for(&self, model: &str) -> BreakerState {
        self.shared.lock_breaker().state_for(model)
    }

    /// Whether a call to `model` made now would be refused by a breaker (does not use up
    /// the probe, counts nothing).
    pub fn breaker_rejects(&self, model: &str) -> bool {
        self.shared
            .lock_breaker()
            .peek(model, Instant::now())
            .is_some()
    }

    /// If a breaker refuses a call to `model` now: the error that call gets. The refusal is
    /// counted (`breaker_rejected`); the probe is not used up.
    pub fn breaker_rejection(&self, model: &str) -> Option<ProviderError> {
        let (scope, retry_in) = self.shared.lock_breaker().peek(model, Instant::now())?;
        self.shared
            .counters
            .breaker_rejected
            .fetch_add(1, Ordering::Relaxed);
        Some(self.shared.breaker_open(scope, retry_in))
    }

    /// Calls holding a concurrency slot now.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Calls waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.shared.queued()
    }

    /// Publishes the `provider:<name>` health component: breakers, slots and counters.
    /// Degraded while any of its breakers is not closed. `breaker` is the provider-wide one;
    /// `model_breakers` lists each model breaker that has counted failures or is not closed.
    pub fn publish_health(&self) {
        self.shared.publish_health();
    }

    /// A non-streaming chat completion of `body` with `model` as the upstream model id.
    #[tracing::instrument(name = "upstream", skip_all, fields(provider = %self.shared.name, model = %model, request_id = tracing::field::Empty))]
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
            .unwrap_or_else(|_| Err(self.shared.timeout(TimeoutKind::Request)))
            .and_then(|(body, usage)| {
                let body = translation
                    .response(body)
                    .map_err(|e| self.shared.malformed(&e))?;
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
    #[tracing::instrument(name = "upstream", skip_all, fields(provider = %self.shared.name, model = %model, request_id = tracing::field::Empty))]
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
            .unwrap_or_else(|_| Err(self.shared.timeout(TimeoutKind::Request)));
            match result {
                Ok(response) if !is_event_stream(&response) => {
                    // A JSON answer to a stream request: usually an error object. The client
                    // gets it as the stream's error; a stream must not pretend to succeed.
                    let error = match body::read_capped(response, s.settings.max_body_bytes).await {
                        Ok(bytes) => self.shared.non_stream_answer_error(&bytes),
                        Err(e) => self.shared.body_error(e),
                    };
                    guard.failed(&error, None, false);
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
                        shared: self.shared.clone(),
                        body: Some(Box::pin(response.bytes_stream())),
                        parser: SseParser::new(s.settings.sse_max_event_bytes),
                        ready: VecDeque::new(),
                        eof: false,
                        guard: Some(guard),
                        slot: Some(slot),
                        usage: usage.clone(),
                        first_chunk: None,
                        deadline,
                        ends_on_message_stop: s.settings.kind == ProviderKind::Anthropic,
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
    /// `provider.attempt` events as a completion; `label` names the call in their `model`.
    /// Returns the response body, which must be JSON.
    #[tracing::instrument(name = "upstream", skip_all, fields(provider = %self.shared.name, model = %label, request_id = tracing::field::Empty))]
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
                    .map_err(|e| self.shared.transport_error(e))?;
                serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                    .map_err(|e| self.shared.malformed(&e))?;
                Ok(body)
            })
            .await
            .unwrap_or_else(|_| Err(self.shared.timeout(TimeoutKind::Request)));
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
    #[tracing::instrument(name = "upstream", skip_all, fields(provider = %self.shared.name, model = "GET /models"))]
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
            let response = request
                .send()
                .await
                .map_err(|e| self.shared.transport_error(e))?;
            if !response.status().is_success() {
                return Err(self.shared.status_error(response).await);
            }
            let bytes = body::read_capped(response, s.settings.max_body_bytes)
                .await
                .map_err(|e| self.shared.body_error(e))?;
            serde_json::from_slice::<List>(&bytes).map_err(|e| self.shared.malformed(&e))
        };
        let list = tokio::time::timeout(s.settings.discovery_timeout, fetch)
            .await
            .unwrap_or_else(|_| Err(self.shared.timeout(TimeoutKind::Request)))?;
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
        let permit = self.shared.lock_breaker().allow_at(model, Instant::now());
        let probes = match permit {
            SetPermit::Rejected { scope, retry_in } => {
                s.counters.breaker_rejected.fetch_add(1, Ordering::Relaxed);
                s.counters.failed.fetch_add(1, Ordering::Relaxed);
                return Err(self.shared.breaker_open(scope, retry_in));
            }
            SetPermit::Granted {
                probes,
                transitions,
            } => {
                self.shared.on_transitions(transitions);
                probes
            }
        };
        s.counters.attempts.fetch_add(1, Ordering::Relaxed);
        if attempt > 1 {
            s.counters.retries.fetch_add(1, Ordering::Relaxed);
        }
        CallContext::note(|t| {
            t.attempts += 1;
            t.provider = Some(s.name.to_string());
        });
        Ok(AttemptGuard {
            shared: self.shared.clone(),
            model: model.to_owned(),
            attempt,
            stream,
            probes,
            started: Instant::now(),
            done: false,
        })
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
            .map_err(|e| self.shared.transport_error(e))?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.shared.status_error(response).await)
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
        let retry = error.is_retryable() && attempt <= self.shared.settings.max_retries;
        guard.failed(&error, None, retry);
        if retry {
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
            .map_err(|e| self.shared.body_error(e))?;
        let parsed: AnswerBody =
            serde_json::from_slice(&bytes).map_err(|e| self.shared.malformed(&e))?;
        if let Some(error) = parsed.error {
            return Err(self.shared.reported_error(&error));
        }
        let anthropic_upstream = self.shared.settings.kind == ProviderKind::Anthropic;
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

    fn request(
        &self,
        client: &reqwest::Client,
        url: reqwest::Url,
        body: Bytes,
    ) -> reqwest::RequestBuilder {
        let request = client
            .post(url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .headers(self.shared.headers.clone());
        // The client call's id goes upstream, so both sides' logs can be joined.
        let request =
            match CallContext::current().and_then(|c| HeaderValue::from_str(c.request_id()).ok()) {
                Some(id) => request.header(REQUEST_ID_HEADER, id),
                None => request,
            };
        request.body(body)
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
