//! The state routes share, built once in start-up ([`crate::app`]): [`AppState`] for the
//! operational routes (health, history, metrics, dashboard, debug) and [`SurfaceState`] for
//! the client surfaces (`/ws`, `/v1`, `/v1/messages`, `/mcp`) and the tools they call.
//!
//! A leaf: routes depend on it, it depends on no route. Each is registered as `web::Data`;
//! every field is a cheap handle, so all workers share one set of limits, counters and
//! conversations.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::Addr;
use actix_web::web;
use exai_actors::cache::CacheHandle;
use exai_actors::health::{HealthBoard, Status};
use exai_actors::pipeline::flusher::MetricsPipeline;
use exai_actors::pipeline::recorder::Recorder;
use exai_actors::pipeline::store::EventStore;
use exai_actors::registry::dispatch::Dispatcher;
use exai_actors::supervisor::Supervisor;
use secrecy::SecretString;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::files::FileRoots;
use crate::lifecycle::Lifecycle;
use crate::pricing::PriceTable;
use crate::service::ChatService;
use crate::tools::conversation::ConversationStore;
use crate::ws::limits::{ConnectionTracker, WsLimits};

/// Shared state every operational route sees.
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Actor and component health.
    pub health: HealthBoard,
    /// The one recording API.
    pub recorder: Recorder,
    /// Readiness and shutdown flags.
    pub lifecycle: Arc<Lifecycle>,
    /// The root actor.
    pub supervisor: Addr<Supervisor>,
    /// The event pipeline (flusher state, journal).
    pub pipeline: MetricsPipeline,
    /// Where events are persisted; history queries read it.
    pub store: Arc<dyn EventStore>,
    /// The client surfaces (`/ws`, `/v1`); shutdown drains their sessions.
    pub surface: web::Data<SurfaceState>,
    /// The Prometheus series of `/metrics`, fed by the recorder.
    pub metrics: Arc<crate::prometheus::Metrics>,
}

/// The `/health` document (also served by the `health` tool) and its overall status.
pub fn health_document(
    health: &HealthBoard,
    recorder: &Recorder,
    instance: &str,
    lifecycle: Option<&Lifecycle>,
) -> (Status, serde_json::Value) {
    let snapshot = health.snapshot();
    let mut components = serde_json::to_value(&snapshot.components).unwrap_or_default();
    if let Some(map) = components.as_object_mut() {
        // The recording queue itself: what was recorded, what waits, what overflowed.
        let mut events = serde_json::to_value(recorder.stats()).unwrap_or_default();
        events["status"] = json!("ok");
        map.insert("events".to_owned(), events);
    }
    let body = json!({
        "status": snapshot.status,
        "version": env!("CARGO_PKG_VERSION"),
        "instance": instance,
        "uptime_s": lifecycle.map(Lifecycle::uptime_s),
        "shutting_down": lifecycle.is_some_and(Lifecycle::is_shutting_down),
        "actors": snapshot.actors,
        "components": components,
    });
    (snapshot.status, body)
}

/// Everything `/ws` and `/v1` need.
pub struct SurfaceState {
    /// The shared chat path.
    pub(crate) chat: ChatService,
    /// The one recording API.
    pub(crate) recorder: Recorder,
    /// Health, for the `status` tool.
    pub(crate) health: HealthBoard,
    /// `EXAI_WS_TOKEN`, required by both surfaces when set.
    token: Option<SecretString>,
    /// The `/ws` limits.
    pub(crate) limits: WsLimits,
    /// `/ws` connections in total and per IP.
    pub(crate) connections: ConnectionTracker,
    /// `/ws` calls in flight across all sessions.
    pub(crate) ws_inflight: Arc<Semaphore>,
    /// `/v1` requests in flight.
    pub(crate) v1_inflight: Arc<AtomicUsize>,
    /// Bound on `/v1` requests in flight.
    pub(crate) v1_max_inflight: usize,
    /// Conversation threads of the tools, by `continuation_id`.
    pub(crate) conversations: ConversationStore,
    /// Where tools may read files, and how much per call.
    pub(crate) files: FileRoots,
    /// The event store, for the `activity` tool (absent in servers built without one).
    pub(crate) history: Option<Arc<dyn EventStore>>,
    /// Uptime and shutdown state, for the `health` tool.
    pub(crate) lifecycle: Option<Arc<Lifecycle>>,
    /// This process's instance name.
    pub(crate) instance: String,
    /// Largest `/v1` request body.
    pub(crate) max_body_bytes: usize,
    /// Turns true when shutdown begins: sessions finish their calls, then close with 1001.
    pub(crate) shutdown: tokio::sync::watch::Sender<bool>,
    /// Model prices, for the `cost_usd` of `request` events.
    pub(crate) prices: Arc<PriceTable>,
}

impl std::fmt::Debug for SurfaceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SurfaceState")
            .field("auth", &self.token.is_some())
            .field("limits", &self.limits)
            .field("ws_connections", &self.connections.open())
            .finish_non_exhaustive()
    }
}

impl SurfaceState {
    /// Builds the state from the configuration, the dispatcher (registry and providers),
    /// the cache handle (`None` when the cache is disabled), the recorder and the health
    /// board.
    pub fn new(
        config: &Config,
        dispatcher: Dispatcher,
        cache: Option<CacheHandle>,
        recorder: Recorder,
        health: HealthBoard,
    ) -> Self {
        Self::with_limits(
            config,
            WsLimits::from(&config.server),
            dispatcher,
            cache,
            recorder,
            health,
        )
    }

    /// Like [`SurfaceState::new`] with explicit `/ws` limits.
    pub fn with_limits(
        config: &Config,
        limits: WsLimits,
        dispatcher: Dispatcher,
        cache: Option<CacheHandle>,
        recorder: Recorder,
        health: HealthBoard,
    ) -> Self {
        Self {
            chat: ChatService::new(dispatcher, cache),
            recorder,
            health,
            token: config.server.token.clone(),
            connections: ConnectionTracker::new(&limits),
            ws_inflight: Arc::new(Semaphore::new(limits.global_max_inflight)),
            v1_inflight: Arc::new(AtomicUsize::new(0)),
            v1_max_inflight: config.server.v1_max_inflight,
            conversations: ConversationStore::new(
                limits.conversation_capacity,
                limits.conversation_ttl,
                limits.conversation_max_messages,
            ),
            files: FileRoots::new(config.tools.file_roots.clone(), config.tools.file_max_bytes),
            history: None,
            lifecycle: None,
            instance: config.instance.clone(),
            max_body_bytes: limits.max_message_bytes,
            shutdown: tokio::sync::watch::Sender::new(false),
            prices: Arc::new(config.prices.clone()),
            limits,
        }
    }

    /// The same state with the event store (for `activity`) and the lifecycle (for
    /// `health`'s uptime and shutdown flag).
    pub fn with_history(mut self, store: Arc<dyn EventStore>, lifecycle: Arc<Lifecycle>) -> Self {
        self.history = Some(store);
        self.lifecycle = Some(lifecycle);
        self
    }

    /// Starts the `request` event of a call on `surface`.
    pub(crate) fn start_call(
        &self,
        surface: exai_actors::pipeline::request::Surface,
        request_id: String,
    ) -> crate::call_record::CallRecord {
        crate::call_record::CallRecord::start(&self.recorder, &self.prices, surface, request_id)
    }

    /// The `/health` document and its overall status.
    pub fn health_document(&self) -> (Status, serde_json::Value) {
        health_document(
            &self.health,
            &self.recorder,
            &self.instance,
            self.lifecycle.as_deref(),
        )
    }

    /// Starts the `/ws` part of shutdown (step 3 of the ordered shutdown): every session
    /// refuses new calls, lets its running calls finish, then closes with 1001 (going away),
    /// so the HTTP server's graceful stop is not held up by idle WebSocket connections.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether `offered` grants access: always when no token is configured, otherwise when
    /// it equals the token (compared in constant time).
    pub fn authorized(&self, offered: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(expected) => {
                offered.is_some_and(|offered| crate::auth::token_matches(expected, offered))
            }
        }
    }

    /// Open `/ws` connections.
    pub fn ws_connections(&self) -> usize {
        self.connections.open()
    }

    /// `/ws` calls in flight across all sessions.
    pub fn ws_calls_in_flight(&self) -> usize {
        self.limits
            .global_max_inflight
            .saturating_sub(self.ws_inflight.available_permits())
    }

    /// `/v1` requests in flight.
    pub fn v1_in_flight(&self) -> usize {
        self.v1_inflight.load(Ordering::Relaxed)
    }
}
