//! What the mock server and its [`MockUpstream`](super::MockUpstream)(super::MockUpstream) handle share: the
//! settings, the counters and the bounded log of requests.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::Duration;

use actix_web::web::Bytes;
use serde_json::{Value, json};

/// Requests kept in the log behind [`MockUpstream::recorded`](super::MockUpstream::recorded).
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

/// Counters and settings shared by the server and its [`MockUpstream`](super::MockUpstream) handle.
#[derive(Debug)]
pub(super) struct MockState {
    /// Latency before every chat answer.
    pub(super) latency: Duration,
    /// Chat requests received.
    pub(super) requests: AtomicU64,
    /// Chat requests received, per model name.
    pub(super) by_model: Mutex<HashMap<String, u64>>,
    /// `GET /models` requests received.
    pub(super) model_list_requests: AtomicU64,
    /// Streams whose client disconnected before the end.
    pub(super) cancelled_streams: AtomicU64,
    /// Bytes of generated large bodies handed to the network.
    pub(super) body_bytes_sent: AtomicU64,
    /// Models `GET /models` lists.
    pub(super) models: RwLock<Vec<String>>,
    /// The body of the last chat request, for pass-through assertions.
    pub(super) last_request: Mutex<Option<Bytes>>,
    /// The last [`REQUEST_LOG_CAPACITY`] chat and web-search requests, oldest first.
    pub(super) log: Mutex<VecDeque<RecordedRequest>>,
}

/// One request the mock received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `chat/completions` or `web_search`.
    pub endpoint: &'static str,
    /// The parsed body.
    pub body: Value,
    /// The `x-request-id` header, when sent.
    pub request_id: Option<String>,
}

impl MockState {
    pub(super) fn new(settings: &MockSettings) -> Self {
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
    pub(super) fn count(&self, model: &str) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut by_model = self.by_model.lock().unwrap_or_else(PoisonError::into_inner);
        let n = by_model.entry(model.to_owned()).or_insert(0);
        *n += 1;
        *n
    }

    pub(super) fn requests_for(&self, model: &str) -> u64 {
        let by_model = self.by_model.lock().unwrap_or_else(PoisonError::into_inner);
        by_model.get(model).copied().unwrap_or(0)
    }

    pub(super) fn reset(&self) {
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
    pub(super) fn log(&self, endpoint: &'static str, body: &Value, request_id: Option<String>) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        while log.len() >= REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(RecordedRequest {
            endpoint,
            body: body.clone(),
            request_id,
        });
    }

    pub(super) fn stats(&self) -> Value {
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
