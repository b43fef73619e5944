//! The in-repo mock upstream: a real HTTP server speaking the OpenAI chat-completions API
//! (JSON and SSE) and `GET /models`, for tests, benchmarks and `exai demo`.
//!
//! Routes work with and without the `/v1` prefix, so both `http://127.0.0.1:PORT/v1` and
//! `http://127.0.0.1:PORT` are usable base URLs. `GET /__mock/stats` returns the counters and
//! `POST /__mock/reset` clears them.
//!
//! Ordinary models answer deterministically: the reply is `echo: <last user message>` and
//! usage counts words (a stream reports it only when asked with
//! `stream_options.include_usage`, as OpenAI does: `"usage": null` on every chunk, then a
//! last chunk without choices). Each logged request keeps its `x-request-id`. Fault modes are
//! chosen by model name:
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

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use serde_json::Value;

mod anthropic;
mod bodies;
mod openai;
mod state;

pub use openai::{
    DEFAULT_ENDLESS, DEFAULT_RETRY_AFTER, DEFAULT_SLOW, DEFAULT_TRICKLE, QUOTA_MESSAGE,
};
use state::MockState;
pub use state::{DEFAULT_MODELS, MockSettings, REQUEST_LOG_CAPACITY, RecordedRequest};

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
    use openai::{MAX_BODY_BYTES, chat, models, reset, stats, web_search};
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
