//! The one chat path both client surfaces use (DESIGN §4): resolve the model through the
//! registry, look the request up in the response cache (single-flight on a miss), and call
//! the provider through the dispatcher (retries, breaker, fallback chain).
//!
//! `/ws` `call_tool chat` and `POST /v1/chat/completions` build an OpenAI request body and
//! call [`ChatService::complete`] or [`ChatService::stream`]; neither surface talks to the
//! registry, the cache or a provider in any other way. Everything runs on the caller's task
//! through handles (no mailbox hop). What a call learns on the way — cache outcome, time
//! upstream, usage — goes into its [`CallContext`] (the providers add their attempts, the
//! dispatcher the answering candidate); the surface records the call's one `request` event.
//!
//! Usage on streams: unless the client asked for `stream_options.include_usage` itself, it
//! is asked for here (so the call's tokens are known), and the usage chunk and the
//! `"usage":null` fields it brings are taken back out of what the client receives.
//!
//! Streams are not stored in the cache (a cached answer is a complete response), but a
//! streaming request whose answer is cached is served from the cache, re-chunked as one
//! content chunk and a final chunk.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use actix_web::web::Bytes;
use exai_actors::cache::key::CacheKey;
use exai_actors::cache::{CacheHandle, Origin};
use exai_actors::pipeline::request::{CacheLabel, CallContext, Tokens};
use exai_actors::provider::{ProviderError, Usage};
use exai_actors::registry::dispatch::Dispatcher;
use futures_util::Stream;
use serde_json::{Value, json};

use crate::error::GatewayError;

/// A stream of chat-completion chunks: the `data:` payloads, one JSON object each, without
/// `[DONE]`. Dropping it aborts the upstream request.
pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Bytes, ProviderError>> + Send>>;

/// How an answer was obtained, for headers, events and the `/ws` metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Served from L1.
    L1,
    /// Served from L2.
    L2,
    /// Fetched upstream by this call.
    Miss,
    /// Another identical concurrent call's fetch answered it.
    Coalesced,
    /// The cache was skipped (disabled, `cache:false`, no-store/no-cache, continuation).
    Bypass,
}

impl CacheOutcome {
    /// Label for headers and events.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
            Self::Miss => "miss",
            Self::Coalesced => "coalesced",
            Self::Bypass => "bypass",
        }
    }

    fn from_origin(origin: &Origin) -> Self {
        match origin.label() {
            "l1" => Self::L1,
            "l2" => Self::L2,
            "coalesced" => Self::Coalesced,
            _ => Self::Miss,
        }
    }

    /// Whether the answer came out of the cache without an upstream call of its own.
    pub const fn is_hit(self) -> bool {
        matches!(self, Self::L1 | Self::L2 | Self::Coalesced)
    }

    /// The `cache` of the call's `request` event.
    pub const fn label(self) -> CacheLabel {
        match self {
            Self::L1 => CacheLabel::L1,
            Self::L2 => CacheLabel::L2,
            Self::Miss => CacheLabel::Miss,
            Self::Coalesced => CacheLabel::Coalesced,
            Self::Bypass => CacheLabel::Bypass,
        }
    }
}

/// Usage as a `request` event counts it.
pub fn tokens_of(usage: Usage) -> Tokens {
    Tokens {
        prompt: usage.prompt_tokens,
        completion: usage.completion_tokens,
        cached: usage.cached_tokens,
    }
}

/// Notes a cache hit in the current call: no upstream call, the preferred provider.
fn note_hit(outcome: CacheOutcome, model: &str, provider: Option<&str>) {
    CallContext::note(|t| {
        t.cache = Some(outcome.label());
        t.resolved_model = Some(model.to_owned());
        t.provider = provider.map(str::to_owned);
    });
}

/// Notes a completed upstream answer in the current call: cache outcome, time, usage.
fn note_upstream(outcome: CacheOutcome, started: Instant, usage: Option<Usage>) {
    CallContext::note(|t| {
        t.cache = Some(outcome.label());
        t.upstream += started.elapsed();
        if let Some(usage) = usage {
            t.add_tokens(tokens_of(usage));
        }
    });
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct ChatAnswer {
    /// The OpenAI response body, byte for byte as the upstream (or the cache) gave it.
    pub body: Bytes,
    /// The canonical model it was resolved to.
    pub model: String,
    /// The provider that answered (the preferred one on a cache hit).
    pub provider: Option<Arc<str>>,
    /// How it was obtained.
    pub cache: CacheOutcome,
    /// Age of the cached answer, on a hit: its own metadata, not the original call's.
    pub cache_age_ms: Option<u64>,
}

/// A streaming answer.
pub struct ChatChunks {
    /// The chunks.
    pub chunks: ChunkStream,
    /// The canonical model it was resolved to.
    pub model: String,
    /// The provider answering (the preferred one on a cache hit).
    pub provider: Option<Arc<str>>,
    /// How it is obtained.
    pub cache: CacheOutcome,
    /// Age of the cached answer, on a hit.
    pub cache_age_ms: Option<u64>,
}

/// The shared chat path. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ChatService {
    /// Resolution and provider calls.
    dispatcher: Dispatcher,
    /// The response cache, when enabled.
    cache: Option<CacheHandle>,
}

impl ChatService {
    /// A chat path over `dispatcher`, caching through `cache` when given.
    pub fn new(dispatcher: Dispatcher, cache: Option<CacheHandle>) -> Self {
        Self { dispatcher, cache }
    }

    /// The dispatcher (and through it the registry).
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The cache, when enabled.
    pub fn cache(&self) -> Option<&CacheHandle> {
        self.cache.as_ref()
    }

    /// A non-streaming completion of `body` (an OpenAI chat request with a `model`).
    /// `bypass` skips the cache entirely.
    pub async fn complete(&self, body: Value, bypass: bool) -> Result<ChatAnswer, GatewayError> {
        let asked = model_of(&body)?;
        let resolved = self.dispatcher.resolve(&asked).await?;
        // The dispatcher names the answering candidate; a failed call keeps this one.
        CallContext::note(|t| t.resolved_model = Some(resolved.model.clone()));
        let preferred: Option<Arc<str>> = resolved.provider().map(Arc::from);
        let cache = match &self.cache {
            Some(cache) if !bypass => cache,
            _ => {
                let started = Instant::now();
                let done = self.dispatcher.complete(&asked, body).await;
                note_upstream(
                    CacheOutcome::Bypass,
                    started,
                    done.as_ref().ok().and_then(|d| d.usage),
                );
                let done = done?;
                return Ok(ChatAnswer {
                    body: done.body,
                    model: resolved.model,
                    provider: Some(done.provider),
                    cache: CacheOutcome::Bypass,
                    cache_age_ms: None,
                });
            }
        };
        let key = CacheKey::derive(&body, &resolved.model);
        let mut answered_by: Option<Arc<str>> = None;
        let dispatcher = &self.dispatcher;
        let answered = &mut answered_by;
        let reply = cache
            .get_or_fetch(&key, &resolved.model, || async move {
                let started = Instant::now();
                let done = dispatcher.complete(&asked, body).await;
                note_upstream(
                    CacheOutcome::Miss,
                    started,
                    done.as_ref().ok().and_then(|d| d.usage),
                );
                let done = done?;
                *answered = Some(done.provider);
                Ok::<Bytes, ProviderError>(done.body)
            })
            .await?;
        let outcome = CacheOutcome::from_origin(&reply.origin);
        if outcome.is_hit() {
            note_hit(outcome, &resolved.model, preferred.as_deref());
        }
        Ok(ChatAnswer {
            body: reply.body,
            model: resolved.model,
            provider: answered_by.or(preferred),
            cache: outcome,
            cache_age_ms: match reply.origin {
                Origin::Hit { age_ms, .. } => Some(age_ms),
                _ => None,
            },
        })
    }

    /// A streaming completion of `body`. A cached complete answer is re-chunked; otherwise
    /// the upstream stream is passed through chunk by chunk.
    pub async fn stream(&self, mut body: Value, bypass: bool) -> Result<ChatChunks, GatewayError> {
        let asked = model_of(&body)?;
        let resolved = self.dispatcher.resolve(&asked).await?;
        // The dispatcher names the answering candidate; a failed call keeps this one.
        CallContext::note(|t| t.resolved_model = Some(resolved.model.clone()));
        if let Some(cache) = self.cache.as_ref().filter(|_| !bypass) {
            let key = CacheKey::derive(&body, &resolved.model);
            if let Some(hit) = cache.lookup(&key).await {
                let outcome = if matches!(hit.level, exai_actors::cache::CacheLevel::L1) {
                    CacheOutcome::L1
                } else {
                    CacheOutcome::L2
                };
                let chunks = if exai_actors::anthropic::is_anthropic(&body) {
                    exai_actors::anthropic::stream::message_events(&hit.body).map_err(|e| {
                        GatewayError::Internal(format!("cached response is not JSON: {e}"))
                    })?
                } else {
                    rechunk(&hit.body, &resolved.model)?
                };
                note_hit(outcome, &resolved.model, resolved.provider());
                return Ok(ChatChunks {
                    chunks: Box::pin(futures_util::stream::iter(chunks.into_iter().map(Ok))),
                    model: resolved.model.clone(),
                    provider: resolved.provider().map(Arc::from),
                    cache: outcome,
                    cache_age_ms: Some(hit.age_ms),
                });
            }
        }
        // Streamed Anthropic-dialect answers are not assembled for the cache (complete ones are).
        let store_to = match &self.cache {
            Some(cache) if !bypass && !exai_actors::anthropic::is_anthropic(&body) => {
                Some((cache.clone(), CacheKey::derive(&body, &resolved.model)))
            }
            _ => None,
        };
        // Usage on streams (see the module docs); the Anthropic dialect's translation asks
        // for it itself.
        let strip_usage =
            !exai_actors::anthropic::is_anthropic(&body) && !ask_for_stream_usage(&mut body);
        let outcome = if self.cache.is_some() && !bypass {
            CacheOutcome::Miss
        } else {
            CacheOutcome::Bypass
        };
        let started = Instant::now();
        let stream = match self.dispatcher.stream(&asked, body).await {
            Ok(stream) => stream,
            Err(e) => {
                note_upstream(outcome, started, None);
                return Err(e.into());
            }
        };
        let provider: Arc<str> = Arc::from(stream.provider());
        let metered = Metered {
            inner: stream,
            context: CallContext::current(),
            outcome,
            started,
            done: false,
        };
        let chunks: ChunkStream = match store_to {
            // A miss: pass chunks through as they come and store the assembled answer
            // once the stream completes cleanly.
            Some((cache, key)) => {
                let limit = cache.settings().max_response_bytes;
                Box::pin(StoreOnComplete {
                    inner: Box::pin(metered),
                    assembly: Some(Assembly::new(limit)),
                    cache,
                    key,
                    model: resolved.model.clone(),
                })
            }
            None => Box::pin(metered),
        };
        let chunks: ChunkStream = if strip_usage {
            Box::pin(futures_util::StreamExt::filter_map(chunks, |item| {
                std::future::ready(match item {
                    Ok(chunk) => without_usage(chunk).map(Ok),
                    Err(e) => Some(Err(e)),
                })
            }))
        } else {
            chunks
        };
        Ok(ChatChunks {
            chunks,
            model: resolved.model,
            provider: Some(provider),
            cache: outcome,
            cache_age_ms: None,
        })
    }
}

/// Asks the upstream to report usage at the end of the stream; true when the client asked
/// for it already.
fn ask_for_stream_usage(body: &mut Value) -> bool {
    let Some(fields) = body.as_object_mut() else {
        return true;
    };
    let options = fields.entry("stream_options").or_insert_with(|| json!({}));
    if !options.is_object() {
        *options = json!({});
    }
    let asked = options
        .get("include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    options["include_usage"] = Value::Bool(true);
    asked
}

/// A chunk as the client sees it when it did not ask for usage: the usage-only chunk is
/// dropped, and the `"usage":null` that OpenAI adds to every other chunk is taken out.
fn without_usage(chunk: Bytes) -> Option<Bytes> {
    /// What decides whether a chunk is the usage-only one.
    #[derive(serde::Deserialize)]
    struct Probe {
        /// Empty in the usage chunk.
        #[serde(default)]
        choices: Option<Vec<serde::de::IgnoredAny>>,
        /// Set in the usage chunk.
        #[serde(default)]
        usage: Option<Value>,
    }
    const NEEDLE: &[u8] = b"\"usage\"";
    if !chunk.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
        return Some(chunk);
    }
    if let Ok(probe) = serde_json::from_slice::<Probe>(&chunk)
        && probe.usage.is_some_and(|u| !u.is_null())
        && probe.choices.is_none_or(|c| c.is_empty())
    {
        return None;
    }
    for pattern in [&b",\"usage\":null"[..], &b"\"usage\":null,"[..]] {
        if let Some(at) = chunk.windows(pattern.len()).position(|w| w == pattern) {
            let mut out = Vec::with_capacity(chunk.len() - pattern.len());
            out.extend_from_slice(&chunk[..at]);
            out.extend_from_slice(&chunk[at + pattern.len()..]);
            return Some(Bytes::from(out));
        }
    }
    Some(chunk)
}

/// Passes the upstream's chunks through and, when the stream ends (or is dropped), notes in
/// the call's context the time spent upstream and the usage the provider read.
struct Metered {
    /// The provider's chunks (it reads their usage as they pass).
    inner: exai_actors::provider::ChatStream,
    /// The call this stream answers (taken when it started; the stream outlives the scope).
    context: Option<Arc<CallContext>>,
    /// How the cache took part.
    outcome: CacheOutcome,
    /// When the upstream call began.
    started: Instant,
    /// Set once noted.
    done: bool,
}

impl Metered {
    fn note(&mut self) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let usage = self.inner.usage();
        if let Some(context) = &self.context {
            context.update(|t| {
                t.cache = Some(self.outcome.label());
                t.upstream += self.started.elapsed();
                if let Some(usage) = usage {
                    t.add_tokens(tokens_of(usage));
                }
            });
        }
    }
}

impl Stream for Metered {
    type Item = Result<Bytes, ProviderError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if matches!(next, std::task::Poll::Ready(None)) {
            self.note();
        }
        next
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.note();
    }
}

/// Passes a miss's chunks through unchanged while assembling them into a complete
/// response, which is stored in the cache when the stream ends cleanly. An error, a drop
/// before the end, tool-call deltas, several choices, or an answer over the cache's size cap
/// leave the cache untouched.
struct StoreOnComplete {
    /// The upstream chunks.
    inner: ChunkStream,
    /// The answer so far; `None` once it cannot (or can no longer) be cached.
    assembly: Option<Assembly>,
    /// Where the answer goes.
    cache: CacheHandle,
    /// Its key.
    key: CacheKey,
    /// The resolved model.
    model: String,
}

impl Stream for StoreOnComplete {
    type Item = Result<Bytes, ProviderError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = this.inner.as_mut().poll_next(cx);
        match &next {
            std::task::Poll::Ready(Some(Ok(chunk))) => {
                if let Some(a) = this.assembly.as_mut()
                    && !a.add(chunk)
                {
                    this.assembly = None;
                }
            }
            std::task::Poll::Ready(Some(Err(_))) => this.assembly = None,
            std::task::Poll::Ready(None) => {
                if let Some(body) = this.assembly.take().and_then(|a| a.finish(&this.model)) {
                    let (cache, key, model) = (this.cache.clone(), this.key, this.model.clone());
                    let mut store = Box::pin(async move {
                        cache.store(&key, &model, body).await;
                    });
                    // The first poll stores in L1 and records `cache.set` now, before the
                    // client is handed the end of the stream; only the L2 write (if any)
                    // finishes in the background.
                    if store.as_mut().poll(cx).is_pending() {
                        actix_rt::spawn(store);
                    }
                }
            }
            std::task::Poll::Pending => {}
        }
        next
    }
}

/// A streamed answer being put back together.
struct Assembly {
    /// `id` of the chunks.
    id: Option<Value>,
    /// `created` of the chunks.
    created: Option<Value>,
    /// `model` the upstream reported.
    model: Option<Value>,
    /// Concatenated `delta.content`.
    content: String,
    /// Concatenated `delta.reasoning_content`.
    reasoning: String,
    /// The last `finish_reason`.
    finish: Option<Value>,
    /// `usage`, when a chunk carried it.
    usage: Option<Value>,
    /// Bytes accumulated; the assembly is dropped beyond `limit`.
    bytes: usize,
    /// The cache's size cap.
    limit: usize,
}

impl Assembly {
    fn new(limit: usize) -> Self {
        Self {
            id: None,
            created: None,
            model: None,
            content: String::new(),
            reasoning: String::new(),
            finish: None,
            usage: None,
            bytes: 0,
            limit,
        }
    }

    /// Adds one chunk; false when the answer cannot be cached.
    fn add(&mut self, chunk: &[u8]) -> bool {
        self.bytes += chunk.len();
        if self.bytes > self.limit {
            return false;
        }
        let Ok(v) = serde_json::from_slice::<Value>(chunk) else {
            return false;
        };
        for (slot, field) in [
            (&mut self.id, "id"),
            (&mut self.created, "created"),
            (&mut self.model, "model"),
        ] {
            if slot.is_none() {
                *slot = v.get(field).cloned();
            }
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        let Some(choices) = v.get("choices").and_then(Value::as_array) else {
            return true;
        };
        for choice in choices {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                return false;
            }
            let delta = choice.get("delta").unwrap_or(&Value::Null);
            if delta.get("tool_calls").is_some_and(|t| !t.is_null()) {
                return false;
            }
            if let Some(c) = delta.get("content").and_then(Value::as_str) {
                self.content.push_str(c);
            }
            if let Some(c) = delta.get("reasoning_content").and_then(Value::as_str) {
                self.reasoning.push_str(c);
            }
            if let Some(f) = choice.get("finish_reason").filter(|f| !f.is_null()) {
                self.finish = Some(f.clone());
            }
        }
        true
    }

    /// The complete response, if the stream finished with a reason.
    fn finish(self, model: &str) -> Option<Bytes> {
        let finish = self.finish?;
        let mut message = json!({ "role": "assistant", "content": self.content });
        if !self.reasoning.is_empty() {
            message["reasoning_content"] = json!(self.reasoning);
        }
        let mut body = json!({
            "id": self.id.unwrap_or_else(|| json!("chatcmpl-assembled")),
            "object": "chat.completion",
            "created": self.created.unwrap_or_else(|| json!(0)),
            "model": self.model.unwrap_or_else(|| json!(model)),
            "choices": [{ "index": 0, "message": message, "finish_reason": finish }],
        });
        if let Some(usage) = self.usage {
            body["usage"] = usage;
        }
        Some(Bytes::from(body.to_string()))
    }
}

/// The request's `model`, which must be a non-empty string.
fn model_of(body: &Value) -> Result<String, GatewayError> {
    match body.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => Ok(m.clone()),
        Some(Value::String(_)) => Err(GatewayError::invalid(
            "model must not be empty",
            Some("model"),
        )),
        Some(_) => Err(GatewayError::invalid(
            "model must be a string",
            Some("model"),
        )),
        None => Err(GatewayError::invalid("model is required", Some("model"))),
    }
}

/// `choices[0].message.content` of a complete response, when it is a string.
pub fn content_of(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value
        .pointer("/choices/0/message/content")?
        .as_str()
        .map(str::to_owned)
}

/// `choices[0].delta.content` of one stream chunk, when present.
pub fn delta_of(chunk: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(chunk).ok()?;
    value
        .pointer("/choices/0/delta/content")?
        .as_str()
        .map(str::to_owned)
}

/// A complete cached response as stream chunks: one carrying the role and content, one with
/// the finish reason (and usage, when the response had it).
fn rechunk(body: &[u8], model: &str) -> Result<Vec<Bytes>, GatewayError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| GatewayError::Internal(format!("cached response is not JSON: {e}")))?;
    let id = value
        .get("id")
        .cloned()
        .unwrap_or_else(|| json!("chatcmpl-cached"));
    let created = value.get("created").cloned().unwrap_or_else(|| json!(0));
    let model = value.get("model").cloned().unwrap_or_else(|| json!(model));
    let message = value
        .pointer("/choices/0/message")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let finish = value
        .pointer("/choices/0/finish_reason")
        .cloned()
        .unwrap_or_else(|| json!("stop"));
    let mut delta = json!({ "role": "assistant" });
    for field in ["content", "reasoning_content", "tool_calls"] {
        if let Some(v) = message.get(field).filter(|v| !v.is_null()) {
            delta[field] = v.clone();
        }
    }
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
    };
    let mut last = chunk(json!({}), finish);
    if let Some(usage) = value.get("usage").filter(|u| !u.is_null()) {
        last["usage"] = usage.clone();
    }
    Ok(vec![
        Bytes::from(chunk(delta, Value::Null).to_string()),
        Bytes::from(last.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn rechunks_a_cached_answer() {
        let body = br#"{"id":"x","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"total_tokens":3}}"#;
        let chunks = rechunk(body, "m").unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(delta_of(&chunks[0]).as_deref(), Some("hi"));
        let last: Value = serde_json::from_slice(&chunks[1]).unwrap();
        assert_eq!(last["choices"][0]["finish_reason"], "stop");
        assert_eq!(last["usage"]["total_tokens"], 3);
        assert_eq!(content_of(body).as_deref(), Some("hi"));
    }

    #[test]
    fn assembles_a_stream_into_a_response() {
        let mut a = Assembly::new(1 << 20);
        assert!(a.add(br#"{"id":"c1","created":5,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"he"}}]}"#));
        assert!(a.add(br#"{"id":"c1","choices":[{"index":0,"delta":{"content":"llo","reasoning_content":"r"}}]}"#));
        assert!(a.add(br#"{"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"total_tokens":2}}"#));
        let body: Value = serde_json::from_slice(&a.finish("m").unwrap()).unwrap();
        assert_eq!(body["choices"][0]["message"]["content"], "hello");
        assert_eq!(body["choices"][0]["message"]["reasoning_content"], "r");
        assert_eq!(body["usage"]["total_tokens"], 2);
        let mut cut = Assembly::new(1 << 20);
        assert!(cut.add(br#"{"choices":[{"index":0,"delta":{"content":"x"}}]}"#));
        assert!(cut.finish("m").is_none(), "no finish_reason: not complete");
        let mut tools = Assembly::new(1 << 20);
        assert!(!tools.add(br#"{"choices":[{"index":0,"delta":{"tool_calls":[{}]}}]}"#));
        let mut big = Assembly::new(10);
        assert!(!big.add(br#"{"choices":[{"index":0,"delta":{"content":"xxxxxxxxxxxx"}}]}"#));
    }

    #[test]
    fn stream_usage_is_asked_for_and_kept_from_clients_that_did_not() {
        let mut body = json!({"model": "m"});
        assert!(!ask_for_stream_usage(&mut body));
        assert_eq!(body["stream_options"]["include_usage"], true);
        let mut asked = json!({"model": "m", "stream_options": {"include_usage": true}});
        assert!(ask_for_stream_usage(&mut asked));
        let usage_chunk = Bytes::from_static(
            br#"{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        );
        assert!(without_usage(usage_chunk).is_none());
        let chunk = Bytes::from_static(
            br#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}"#,
        );
        assert_eq!(
            without_usage(chunk).unwrap(),
            Bytes::from_static(br#"{"id":"c","choices":[{"index":0,"delta":{"content":"x"}}]}"#)
        );
        let plain = Bytes::from_static(br#"{"id":"c","choices":[{"index":0,"delta":{}}]}"#);
        assert_eq!(without_usage(plain.clone()).unwrap(), plain);
        // Kimi reports usage inside the last choice: that chunk is kept whole.
        let kimi = Bytes::from_static(
            br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop","usage":{"prompt_tokens":1}}]}"#,
        );
        assert_eq!(without_usage(kimi.clone()).unwrap(), kimi);
    }

    #[test]
    fn model_is_required() {
        assert!(model_of(&json!({})).is_err());
        assert!(model_of(&json!({"model": 3})).is_err());
        assert_eq!(model_of(&json!({"model": "m"})).unwrap(), "m");
    }
}
