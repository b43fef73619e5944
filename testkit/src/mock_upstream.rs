//! The in-repo mock upstream: a real HTTP server speaking the OpenAI chat-completions API
//! (JSON and SSE) and `GET /models`, for tests, benchmarks and `exai demo`.
//!
//! Routes work with and without the `/v1` prefix, so both `http://127.0.0.1:PORT/v1` and
//! `http://127.0.0.1:PORT` are usable base URLs. `GET /__mock/stats` returns the counters and
//! `POST /__mock/reset` clears them.
//!
//! Ordinary models answer deterministically: the reply is `echo: <last user message>` and
//! usage counts words. Fault modes are chosen by model name:
//!
//! | model | behaviour |
//! |---|---|
//! | `mock-slow`, `mock-slow-<ms>` | answers after an extra 300 ms (or `<ms>`) |
//! | `mock-500` | HTTP 500 |
//! | `mock-429`, `mock-429-<secs>` | HTTP 429 with `Retry-After: 1` (or `<secs>`, fractions allowed) |
//! | `mock-flaky-<n>` | the first `n` requests for that name since reset answer 500, then success |
//! | `mock-malformed` | 200 with a body (or SSE chunk) that is not JSON |
//! | `mock-stream-cut` | a stream that stops half-way without `[DONE]` |
//! | `mock-hang` | never answers |
//! | `mock-trickle`, `mock-trickle-<ms>` | a stream with one chunk every 100 ms (or `<ms>`) |
//! | `mock-reasoning` | the message carries Kimi-style `reasoning_content` |
//! | `mock-status-<code>` | HTTP `<code>` with an OpenAI-style error body |
//! | `mock-401` | HTTP 401 whose message quotes the bearer token, as some real APIs do |
//! | `mock-tool` | a call of the first tool (or, after a `tool` result, its text); see `anthropic` |
//!
//! `POST /v1/messages` speaks Anthropic's Messages API (module `anthropic`).
//!
//! Hostile upstreams (bounded answers, errors in a 200):
//!
//! | model | behaviour |
//! |---|---|
//! | `mock-big-<n>` | a completion whose content is `n` bytes, sent chunked without `Content-Length` (stream or not) |
//! | `mock-big-cl-<n>` | the same, announcing its `Content-Length` |
//! | `mock-sse-line-<n>` | a stream whose second event is one `data:` line of `n` bytes, sent in pieces |
//! | `mock-endless`, `mock-endless-<ms>` | a stream that never ends: one chunk every 50 ms (or `<ms>`) |
//! | `mock-quota` | 200 with `{"error":{"message":"You exceeded your current quota","type":"insufficient_quota"}}`; a stream sends it as an SSE data event |
//! | `mock-quota-json` | the same 200 JSON error body, even for a stream request |
//! | `mock-no-choices` | 200 with a JSON object that has no `choices` |
//!
//! Bytes of generated bodies handed to the network are counted (`body_bytes_sent`), so tests
//! can show an oversized answer was cut off early.
//!
//! Every chat request is counted (in total and per model name) when it arrives, before any
//! fault, so tests can assert exactly how many upstream calls were made. Streams whose
//! client went away before the end are counted too.
//!
//! Tool-protocol support (issue 14), grouped under "Tool routes" below:
//! - every chat and web-search request body is kept in a bounded log
//!   ([`MockUpstream::recorded`]), so tests can assert what reached the upstream;
//! - `POST /web_search` answers like GLM's web-search API (`search_result` entries derived
//!   from the query, `count` of them);
//! - a chat request with `tools` (and `tool_choice` other than `none`) whose last message is
//!   not a tool result is answered with a `tool_calls` message calling the first tool.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{Value, json};

mod anthropic;

/// Extra latency of `mock-slow`.
pub const DEFAULT_SLOW: Duration = Duration::from_millis(300);
/// Gap between chunks of `mock-trickle`.
pub const DEFAULT_TRICKLE: Duration = Duration::from_millis(100);
/// `Retry-After` of `mock-429`, in seconds.
pub const DEFAULT_RETRY_AFTER: &str = "1";
/// Gap between chunks of `mock-endless`.
pub const DEFAULT_ENDLESS: Duration = Duration::from_millis(50);
/// Piece size of generated large bodies.
const BIG_PIECE: usize = 64 * 1024;
/// The message of `mock-quota`.
pub const QUOTA_MESSAGE: &str = "You exceeded your current quota";
/// Minimum number of content chunks in a trickle stream, so it lasts a while.
const TRICKLE_MIN_CHUNKS: usize = 10;
/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// The reasoning text of `mock-reasoning`.
const REASONING: &str = "The user wants an echo, so I echo.";
/// Requests kept in the log behind [`MockUpstream::recorded`].
pub const REQUEST_LOG_CAPACITY: usize = 512;
/// Models `GET /models` lists by default.
pub const DEFAULT_MODELS: &[&str] = &[
    "mock-echo",
    "mock-reasoning",
    "mock-slow",
    "mock-500",
    "mock-429",
    "mock-malformed",
    "mock-stream-cut",
    "mock-hang",
    "mock-trickle",
];

/// How to run the mock.
#[derive(Debug, Clone)]
pub struct MockSettings {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Latency added before every chat answer.
    pub latency: Duration,
    /// Models listed by `GET /models`.
    pub models: Vec<String>,
    /// HTTP worker threads.
    pub workers: usize,
}

impl Default for MockSettings {
    fn default() -> Self {
        Self {
            port: 0,
            latency: Duration::ZERO,
            models: DEFAULT_MODELS.iter().map(|m| (*m).to_owned()).collect(),
            workers: 1,
        }
    }
}

/// Counters and settings shared by the server and its [`MockUpstream`] handle.
#[derive(Debug)]
struct MockState {
    /// Latency before every chat answer.
    latency: Duration,
    /// Chat requests received.
    requests: AtomicU64,
    /// Chat requests received, per model name.
    by_model: Mutex<HashMap<String, u64>>,
    /// `GET /models` requests received.
    model_list_requests: AtomicU64,
    /// Streams whose client disconnected before the end.
    cancelled_streams: AtomicU64,
    /// Bytes of generated large bodies handed to the network.
    body_bytes_sent: AtomicU64,
    /// Models `GET /models` lists.
    models: RwLock<Vec<String>>,
    /// The body of the last chat request, for pass-through assertions.
    last_request: Mutex<Option<Bytes>>,
    /// The last [`REQUEST_LOG_CAPACITY`] chat and web-search requests, oldest first.
    log: Mutex<VecDeque<RecordedRequest>>,
}

/// One request the mock received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `chat/completions` or `web_search`.
    pub endpoint: &'static str,
    /// The parsed body.
    pub body: Value,
}

impl MockState {
    fn new(settings: &MockSettings) -> Self {
        Self {
            latency: settings.latency,
            requests: AtomicU64::new(0),
            by_model: Mutex::new(HashMap::new()),
            model_list_requests: AtomicU64::new(0),
            cancelled_streams: AtomicU64::new(0),
            body_bytes_sent: AtomicU64::new(0),
            models: RwLock::new(settings.models.clone()),
            last_request: Mutex::new(None),
            log: Mutex::new(VecDeque::new()),
        }
    }

    /// Counts a chat request; returns how many `model` has had since reset, this one included.
    fn count(&self, model: &str) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut by_model = self.by_model.lock().unwrap_or_else(PoisonError::into_inner);
        let n = by_model.entry(model.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    fn requests_for(&self, model: &str) -> u64 {
        let by_model = self.by_model.lock().unwrap_or_else(PoisonError::into_inner);
        by_model.get(model).copied().unwrap_or(0)
    }

    fn reset(&self) {
        self.requests.store(0, Ordering::Relaxed);
        self.model_list_requests.store(0, Ordering::Relaxed);
        self.cancelled_streams.store(0, Ordering::Relaxed);
        self.body_bytes_sent.store(0, Ordering::Relaxed);
        self.by_model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Adds a request to the bounded log.
    fn log(&self, endpoint: &'static str, body: &Value) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        while log.len() >= REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(RecordedRequest {
            endpoint,
            body: body.clone(),
        });
    }

    fn stats(&self) -> Value {
        let by_model = self
            .by_model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        json!({
            "requests": self.requests.load(Ordering::Relaxed),
            "by_model": by_model,
            "model_list_requests": self.model_list_requests.load(Ordering::Relaxed),
            "cancelled_streams": self.cancelled_streams.load(Ordering::Relaxed),
            "body_bytes_sent": self.body_bytes_sent.load(Ordering::Relaxed),
        })
    }
}

/// A running mock upstream on its own thread and actix System. Stopped by [`stop`] or on
/// drop.
///
/// [`stop`]: MockUpstream::stop
#[derive(Debug)]
pub struct MockUpstream {
    /// Where it listens.
    addr: SocketAddr,
    /// Counters.
    state: Arc<MockState>,
    /// Stops the server.
    server: ServerHandle,
    /// The server thread, joined by `stop`.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MockUpstream {
    /// Starts a mock on its own thread; works from a plain tokio runtime, inside an actix
    /// System, or from sync code.
    pub fn start(settings: MockSettings) -> std::io::Result<Self> {
        let state = Arc::new(MockState::new(&settings));
        let (tx, rx) = std::sync::mpsc::channel();
        let server_state = state.clone();
        let thread = std::thread::Builder::new()
            .name("mock-upstream".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                let ready = tx.clone();
                let result = system.block_on(async move {
                    let (addrs, running) = serve(server_state, settings.port, settings.workers)?;
                    let addr = addrs
                        .first()
                        .copied()
                        .ok_or_else(|| std::io::Error::other("mock upstream bound no address"))?;
                    let _ = ready.send(Ok((addr, running.handle())));
                    running.await
                });
                if let Err(error) = result {
                    let _ = tx.send(Err(error));
                }
            })?;
        let (addr, server) = rx
            .recv()
            .map_err(|_| std::io::Error::other("mock upstream thread exited before binding"))??;
        Ok(Self {
            addr,
            state,
            server,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`, ready to be a provider's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Chat requests received since start or reset.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Chat requests received for `model` since start or reset.
    pub fn requests_for(&self, model: &str) -> u64 {
        self.state.requests_for(model)
    }

    /// `GET /models` requests received since start or reset.
    pub fn model_list_requests(&self) -> u64 {
        self.state.model_list_requests.load(Ordering::Relaxed)
    }

    /// Streams whose client disconnected before the end.
    pub fn cancelled_streams(&self) -> u64 {
        self.state.cancelled_streams.load(Ordering::Relaxed)
    }

    /// Bytes of generated large bodies (`mock-big-*`, `mock-sse-line-*`) handed to the
    /// network since start or reset.
    pub fn body_bytes_sent(&self) -> u64 {
        self.state.body_bytes_sent.load(Ordering::Relaxed)
    }

    /// The last chat request body received, parsed.
    pub fn last_request(&self) -> Option<Value> {
        let last = self
            .state
            .last_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        last.and_then(|b| serde_json::from_slice(&b).ok())
    }

    /// The chat and web-search requests received since start or reset (the last
    /// [`REQUEST_LOG_CAPACITY`]), oldest first.
    pub fn recorded(&self) -> Vec<RecordedRequest> {
        self.state
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// Replaces what `GET /models` lists.
    pub fn set_models(&self, models: Vec<String>) {
        *self
            .state
            .models
            .write()
            .unwrap_or_else(PoisonError::into_inner) = models;
    }

    /// Clears every counter (including the per-name counts behind `mock-flaky-<n>`).
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // The command is sent when `stop` is called; the returned future only waits for it.
        drop(self.server.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for MockUpstream {
    fn drop(&mut self) {
        if self.thread.is_some() {
            drop(self.server.stop(false));
        }
    }
}

/// Runs a mock on `port` in the current actix System until it is stopped (the
/// `exai mock-upstream` command).
pub async fn run(port: u16, latency: Duration) -> std::io::Result<()> {
    let settings = MockSettings {
        port,
        latency,
        workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ..MockSettings::default()
    };
    let state = Arc::new(MockState::new(&settings));
    let (addrs, running) = serve(state, settings.port, settings.workers)?;
    for addr in addrs {
        tracing::info!(%addr, "mock upstream listening");
    }
    running.await
}

/// Builds, binds and starts the server (must run inside an actix System).
fn serve(
    state: Arc<MockState>,
    port: u16,
    workers: usize,
) -> std::io::Result<(Vec<SocketAddr>, actix_web::dev::Server)> {
    let data = web::Data::from(state);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(routes))
        .workers(workers.max(1))
        .disable_signals()
        .shutdown_timeout(0)
        .bind(("127.0.0.1", port))?;
    let addrs = server.addrs();
    Ok((addrs, server.run()))
}

/// Every route, with and without `/v1`.
fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
        .route("/chat/completions", web::post().to(chat))
        .route("/v1/chat/completions", web::post().to(chat))
        .route("/models", web::get().to(models))
        .route("/v1/models", web::get().to(models))
        .route("/web_search", web::post().to(web_search))
        .route("/v1/web_search", web::post().to(web_search))
        .route("/messages", web::post().to(anthropic::messages))
        .route("/v1/messages", web::post().to(anthropic::messages))
        .route("/__mock/stats", web::get().to(stats))
        .route("/__mock/reset", web::post().to(reset));
}

/// What a model name asks the mock to do.
#[derive(Debug, Clone, PartialEq)]
enum Mode {
    /// Answer normally.
    Echo,
    /// Answer with `reasoning_content`.
    Reasoning,
    /// Answer after an extra delay.
    Slow(Duration),
    /// HTTP 500.
    Fail500,
    /// HTTP 429 with this `Retry-After`.
    Fail429(String),
    /// HTTP 500 for the first `n` requests of this name.
    Flaky(u64),
    /// A body that is not JSON.
    Malformed,
    /// A stream that stops half-way.
    StreamCut,
    /// Never answer.
    Hang,
    /// A slow stream with this gap between chunks.
    Trickle(Duration),
    /// Answer with this HTTP status.
    Status(u16),
    /// 401 quoting the bearer token.
    Unauthorized,
    /// A completion of this many content bytes; whether `Content-Length` is announced.
    Big(usize, bool),
    /// A stream with one data line of this many bytes.
    SseLine(usize),
    /// A stream that never ends, with this gap between chunks.
    Endless(Duration),
    /// 200 with a quota error object (as an SSE event when streaming).
    Quota,
    /// 200 with a quota error object as plain JSON, even when streaming.
    QuotaJson,
    /// 200 with an object without `choices`.
    NoChoices,
    /// Tool calls (module `anthropic`).
    Tool,
}

fn mode(model: &str) -> Mode {
    let suffix = |prefix: &str| model.strip_prefix(prefix).and_then(|s| s.strip_prefix('-'));
    let millis = |s: &str| s.parse::<u64>().ok().map(Duration::from_millis);
    match model {
        "mock-reasoning" => return Mode::Reasoning,
        "mock-slow" => return Mode::Slow(DEFAULT_SLOW),
        "mock-500" => return Mode::Fail500,
        "mock-429" => return Mode::Fail429(DEFAULT_RETRY_AFTER.into()),
        "mock-malformed" => return Mode::Malformed,
        "mock-stream-cut" => return Mode::StreamCut,
        "mock-hang" => return Mode::Hang,
        "mock-trickle" => return Mode::Trickle(DEFAULT_TRICKLE),
        "mock-401" => return Mode::Unauthorized,
        "mock-endless" => return Mode::Endless(DEFAULT_ENDLESS),
        "mock-quota" => return Mode::Quota,
        "mock-quota-json" => return Mode::QuotaJson,
        "mock-no-choices" => return Mode::NoChoices,
        "mock-tool" => return Mode::Tool,
        _ => {}
    }
    if let Some(n) = suffix("mock-big-cl").and_then(|s| s.parse().ok()) {
        return Mode::Big(n, true);
    }
    if let Some(n) = suffix("mock-big").and_then(|s| s.parse().ok()) {
        return Mode::Big(n, false);
    }
    if let Some(n) = suffix("mock-sse-line").and_then(|s| s.parse().ok()) {
        return Mode::SseLine(n);
    }
    if let Some(d) = suffix("mock-endless").and_then(millis) {
        return Mode::Endless(d);
    }
    if let Some(d) = suffix("mock-slow").and_then(millis) {
        return Mode::Slow(d);
    }
    if let Some(secs) = suffix("mock-429").filter(|s| s.parse::<f64>().is_ok()) {
        return Mode::Fail429(secs.to_owned());
    }
    if let Some(n) = suffix("mock-flaky").and_then(|s| s.parse().ok()) {
        return Mode::Flaky(n);
    }
    if let Some(d) = suffix("mock-trickle").and_then(millis) {
        return Mode::Trickle(d);
    }
    if let Some(code) = suffix("mock-status").and_then(|s| s.parse().ok()) {
        return Mode::Status(code);
    }
    Mode::Echo
}

fn error_response(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({
        "error": { "message": message, "type": "mock_error", "code": status.as_u16() }
    }))
}

/// Text of a message's `content`: a string, or the text parts of an array.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn words(text: &str) -> u64 {
    u64::try_from(text.split_whitespace().count()).unwrap_or(u64::MAX)
}

async fn chat(state: web::Data<MockState>, http: HttpRequest, body: Bytes) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_response(StatusCode::BAD_REQUEST, "request body is not JSON");
    };
    *state
        .last_request
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = Some(body);
    state.log("chat/completions", &request);
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-echo")
        .to_owned();
    let stream = request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let seen = state.count(&model);
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    let mode = mode(&model);
    match &mode {
        Mode::Hang => std::future::pending::<()>().await,
        Mode::Slow(d) => tokio::time::sleep(*d).await,
        Mode::Fail500 => return error_response(StatusCode::INTERNAL_SERVER_ERROR, "mock failure"),
        Mode::Fail429(retry_after) => {
            return HttpResponse::TooManyRequests()
                .insert_header(("Retry-After", retry_after.as_str()))
                .json(json!({"error": {"message": "mock rate limit", "type": "rate_limit"}}));
        }
        Mode::Status(code) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_REQUEST);
            return error_response(status, "mock status");
        }
        Mode::Unauthorized => {
            let auth = http
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .trim_start_matches("Bearer ");
            let message = format!("Incorrect API key provided: {auth}");
            return error_response(StatusCode::UNAUTHORIZED, &message);
        }
        Mode::Flaky(n) if seen <= *n => {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "mock flaky failure");
        }
        Mode::Big(n, announce) => return big_body(state.into_inner(), *n, *announce),
        Mode::SseLine(n) => return sse_line(state.into_inner(), *n),
        Mode::Endless(gap) => return endless(state.into_inner(), &model, *gap),
        Mode::Quota | Mode::QuotaJson => {
            let error = json!({"error": {"message": QUOTA_MESSAGE, "type": "insufficient_quota",
                "param": null, "code": "insufficient_quota"}});
            if stream && mode == Mode::Quota {
                return HttpResponse::Ok()
                    .content_type("text/event-stream")
                    .body(format!("data: {error}\n\ndata: [DONE]\n\n"));
            }
            return HttpResponse::Ok().json(error);
        }
        Mode::NoChoices => {
            return HttpResponse::Ok()
                .json(json!({"id": "chatcmpl-empty", "object": "chat.completion"}));
        }
        Mode::Tool => return anthropic::tool_reply(&request, seen, &model, stream),
        _ => {}
    }

    let messages = request
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    let prompt_tokens: u64 = messages
        .iter()
        .map(|m| words(&content_text(m.get("content").unwrap_or(&Value::Null))))
        .sum();
    let reply = format!("echo: {last_user}");
    let completion_tokens = words(&reply);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    });
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let id = format!("chatcmpl-mock-{seen}");
    let reasoning = mode == Mode::Reasoning;

    if !stream && let Some(call) = tool_call(&request, &last_user) {
        return HttpResponse::Ok().json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": Value::Null, "tool_calls": [call] },
                "finish_reason": "tool_calls",
            }],
            "usage": usage,
        }));
    }
    if !stream {
        if mode == Mode::Malformed {
            return HttpResponse::Ok()
                .content_type("application/json")
                .body("{\"id\": \"chatcmpl-mock\", \"choices\": [");
        }
        let mut message = json!({ "role": "assistant", "content": reply });
        if reasoning {
            message["reasoning_content"] = json!(REASONING);
        }
        return HttpResponse::Ok().json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{ "index": 0, "message": message, "finish_reason": "stop" }],
            "usage": usage,
            "system_fingerprint": "exai-mock",
        }));
    }

    // Streaming: build every chunk up front, then hand them out (with gaps when trickling).
    let chunk = |delta: Value, finish: Value| {
        json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        })
    };
    let mut chunks: Vec<Value> = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    if reasoning {
        chunks.push(chunk(
            json!({ "reasoning_content": REASONING }),
            Value::Null,
        ));
    }
    let mut pieces: Vec<String> = reply.split_inclusive(' ').map(str::to_owned).collect();
    if matches!(mode, Mode::Trickle(_)) {
        while pieces.len() < TRICKLE_MIN_CHUNKS {
            pieces.push(String::new());
        }
    }
    chunks.extend(
        pieces
            .into_iter()
            .map(|p| chunk(json!({ "content": p }), Value::Null)),
    );
    chunks.push(chunk(json!({}), json!("stop")));
    let mut usage_chunk = chunk(json!({}), Value::Null);
    usage_chunk["choices"] = json!([]);
    usage_chunk["usage"] = usage;
    chunks.push(usage_chunk);

    let mut frames: VecDeque<Bytes> = chunks
        .iter()
        .map(|c| Bytes::from(format!("data: {c}\n\n")))
        .collect();
    match mode {
        Mode::StreamCut => frames.truncate(frames.len() / 2),
        Mode::Malformed => {
            frames.truncate(1);
            frames.push_back(Bytes::from_static(b"data: {\"choices\": [\n\n"));
            frames.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        }
        _ => frames.push_back(Bytes::from_static(b"data: [DONE]\n\n")),
    }
    let gap = match mode {
        Mode::Trickle(d) => d,
        _ => Duration::ZERO,
    };
    let watch = StreamWatch {
        state: state.into_inner(),
        finished: false,
    };
    let body = futures_util::stream::unfold(
        (frames, watch, true),
        move |(mut frames, mut watch, first)| async move {
            match frames.pop_front() {
                Some(frame) => {
                    if !first && !gap.is_zero() {
                        tokio::time::sleep(gap).await;
                    }
                    Some((
                        Ok::<_, std::convert::Infallible>(frame),
                        (frames, watch, false),
                    ))
                }
                None => {
                    watch.mark_finished();
                    None
                }
            }
        },
    );
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .streaming(body)
}

// ---------------------------------------------------------------------------------------
// Tool routes (issue 14).

/// The tool call a request with `tools` gets: the first tool, called with the last user
/// message as `input`. `None` when there are no tools, `tool_choice` is `none`, or the last
/// message is already a tool result.
fn tool_call(request: &Value, last_user: &str) -> Option<Value> {
    let tools = request.get("tools")?.as_array()?;
    if request.get("tool_choice").and_then(Value::as_str) == Some("none") {
        return None;
    }
    let last_role = request
        .pointer("/messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
        .and_then(|m| m.get("role"))
        .and_then(Value::as_str);
    if last_role == Some("tool") {
        return None;
    }
    let name = tools
        .first()?
        .pointer("/function/name")
        .and_then(Value::as_str)?;
    Some(json!({
        "id": "call_mock_1",
        "type": "function",
        "function": { "name": name, "arguments": json!({ "input": last_user }).to_string() },
    }))
}

/// GLM's `POST /web_search`: `count` results derived from `search_query`.
async fn web_search(state: web::Data<MockState>, body: Bytes) -> HttpResponse {
    use actix_web::http::StatusCode;
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_response(StatusCode::BAD_REQUEST, "request body is not JSON");
    };
    state.log("web_search", &request);
    let Some(query) = request.get("search_query").and_then(Value::as_str) else {
        return error_response(StatusCode::BAD_REQUEST, "search_query is required");
    };
    let count = request
        .get("count")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .min(50);
    let results: Vec<Value> = (1..=count)
        .map(|i| {
            json!({
                "title": format!("Result {i} for {query}"),
                "link": format!("https://example.invalid/search/{i}"),
                "content": format!("mock page {i} about {query}"),
                "media": "exai-mock",
                "refer": format!("ref_{i}"),
                "publish_date": "2026-01-01",
            })
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "id": "web-search-mock",
        "created": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "request_id": request.get("request_id"),
        "search_intent": [{ "query": query, "intent": "SEARCH_ALWAYS", "keywords": query }],
        "search_result": results,
    }))
}

/// Hands out `pieces` one by one, counting their bytes as sent and the stream as cancelled
/// if it is dropped first.
fn counted_body(
    state: Arc<MockState>,
    pieces: impl Iterator<Item = Bytes> + Unpin + 'static,
) -> impl futures_util::Stream<Item = Result<Bytes, std::convert::Infallible>> {
    let watch = StreamWatch {
        state,
        finished: false,
    };
    futures_util::stream::unfold((pieces, watch), |(mut pieces, mut watch)| async move {
        match pieces.next() {
            Some(piece) => {
                watch
                    .state
                    .body_bytes_sent
                    .fetch_add(piece.len() as u64, Ordering::Relaxed);
                Some((Ok(piece), (pieces, watch)))
            }
            None => {
                watch.mark_finished();
                None
            }
        }
    })
}

/// `n` bytes of `x` as pieces of at most [`BIG_PIECE`], without holding them all.
fn filler(n: usize) -> impl Iterator<Item = Bytes> {
    let piece = Bytes::from(vec![b'x'; BIG_PIECE]);
    (0..n.div_ceil(BIG_PIECE)).map(move |i| {
        let len = (n - i * BIG_PIECE).min(BIG_PIECE);
        piece.slice(..len)
    })
}

/// `mock-big-<n>`: a completion with `n` content bytes, generated as it is sent.
fn big_body(state: Arc<MockState>, n: usize, announce: bool) -> HttpResponse {
    let head = Bytes::from_static(
        b"{\"id\":\"chatcmpl-big\",\"object\":\"chat.completion\",\"model\":\"mock-big\",\
          \"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"",
    );
    let tail = Bytes::from_static(b"\"},\"finish_reason\":\"stop\"}]}");
    let total = head.len() + n + tail.len();
    let pieces = std::iter::once(head)
        .chain(filler(n))
        .chain(std::iter::once(tail));
    let body = counted_body(state, pieces);
    let mut response = HttpResponse::Ok();
    response.content_type("application/json");
    if announce {
        response.no_chunking(total as u64);
    }
    response.streaming(body)
}

/// `mock-sse-line-<n>`: a stream whose second event is one data line of `n` bytes.
fn sse_line(state: Arc<MockState>, n: usize) -> HttpResponse {
    let first = Bytes::from_static(
        b"data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
    );
    let pieces = std::iter::once(first)
        .chain(std::iter::once(Bytes::from_static(b"data: ")))
        .chain(filler(n))
        .chain(std::iter::once(Bytes::from_static(b"\n\ndata: [DONE]\n\n")));
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(counted_body(state, pieces))
}

/// `mock-endless`: a stream with one chunk every `gap`, forever.
fn endless(state: Arc<MockState>, model: &str, gap: Duration) -> HttpResponse {
    let chunk = json!({
        "id": "chatcmpl-endless", "object": "chat.completion.chunk", "model": model,
        "choices": [{ "index": 0, "delta": { "content": "more " }, "finish_reason": null }],
    });
    let frame = Bytes::from(format!("data: {chunk}\n\n"));
    let watch = StreamWatch {
        state,
        finished: false,
    };
    let body = futures_util::stream::unfold((watch, true), move |(watch, first)| {
        let frame = frame.clone();
        async move {
            if !first {
                tokio::time::sleep(gap).await;
            }
            Some((Ok::<_, std::convert::Infallible>(frame), (watch, false)))
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

/// Counts a stream as cancelled if it is dropped before its last frame was sent.
struct StreamWatch {
    /// Where the counter lives.
    state: Arc<MockState>,
    /// Set once every frame was handed out.
    finished: bool,
}

impl StreamWatch {
    /// The last frame was handed out.
    fn mark_finished(&mut self) {
        self.finished = true;
    }
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        if !self.finished {
            self.state.cancelled_streams.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn models(state: web::Data<MockState>) -> HttpResponse {
    state.model_list_requests.fetch_add(1, Ordering::Relaxed);
    let models = state
        .models
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let data: Vec<Value> = models
        .iter()
        .map(|id| json!({ "id": id, "object": "model", "created": 0, "owned_by": "exai-mock" }))
        .collect();
    HttpResponse::Ok().json(json!({ "object": "list", "data": data }))
}

async fn stats(state: web::Data<MockState>) -> HttpResponse {
    HttpResponse::Ok().json(state.stats())
}

async fn reset(state: web::Data<MockState>) -> HttpResponse {
    state.reset();
    HttpResponse::Ok().json(state.stats())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_modes_parse_from_model_names() {
        assert_eq!(mode("anything"), Mode::Echo);
        assert_eq!(mode("mock-slow-50"), Mode::Slow(Duration::from_millis(50)));
        assert_eq!(mode("mock-429-0.2"), Mode::Fail429("0.2".into()));
        assert_eq!(mode("mock-flaky-3"), Mode::Flaky(3));
        assert_eq!(
            mode("mock-trickle-20"),
            Mode::Trickle(Duration::from_millis(20))
        );
        assert_eq!(mode("mock-hang"), Mode::Hang);
        assert_eq!(mode("mock-big-100"), Mode::Big(100, false));
        assert_eq!(mode("mock-big-cl-100"), Mode::Big(100, true));
        assert_eq!(mode("mock-sse-line-7"), Mode::SseLine(7));
        assert_eq!(
            mode("mock-endless-5"),
            Mode::Endless(Duration::from_millis(5))
        );
        assert_eq!(mode("mock-quota"), Mode::Quota);
        assert_eq!(mode("mock-quota-json"), Mode::QuotaJson);
        assert_eq!(
            filler(BIG_PIECE + 3).map(|b| b.len()).sum::<usize>(),
            BIG_PIECE + 3
        );
    }
}
