//! State shared by the two client surfaces, `/ws` (the EXAI tool protocol) and `/v1` (the
//! OpenAI-compatible API), and the one function that registers both.
//!
//! Built once in start-up and registered as `web::Data<SurfaceState>`; every field is a
//! cheap handle, so all workers share one set of limits, counters and conversations.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::web;
use exai_actors::cache::CacheHandle;
use exai_actors::health::HealthBoard;
use exai_actors::pipeline::recorder::Recorder;
use exai_actors::registry::dispatch::Dispatcher;
use secrecy::SecretString;
use tokio::sync::Semaphore;

use exai_actors::pipeline::store::EventStore;

use crate::chat::ChatService;
use crate::config::Config;
use crate::files::FileRoots;
use crate::lifecycle::Lifecycle;
use crate::tools::Registry;
use crate::tools::conversation::ConversationStore;
use crate::ws::limits::{ConnectionTracker, WsLimits};

/// `source` of the events the surfaces record for `/ws`.
pub const WS_SOURCE: &str = "ws";
/// `source` of the events the surfaces record for `/v1`.
pub const V1_SOURCE: &str = "v1";

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
    /// Every tool, for every surface.
    pub(crate) tools: Registry,
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
            WsLimits::from_server_config(&config.server),
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
            tools: Registry::new(),
            files: FileRoots::new(config.tools.file_roots.clone(), config.tools.file_max_bytes),
            history: None,
            lifecycle: None,
            instance: config.instance.clone(),
            max_body_bytes: limits.max_message_bytes,
            shutdown: tokio::sync::watch::Sender::new(false),
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

    /// The `/health` document and its overall status.
    pub fn health_document(&self) -> (exai_actors::health::Status, serde_json::Value) {
        crate::routes::health::document(
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

/// Registers `/ws` (and the WebSocket upgrade of `/`) and `/v1`. Register it before any
/// other `/` route: a plain `GET /` falls through to the next matching resource.
pub fn configure(cfg: &mut web::ServiceConfig) {
    crate::ws::configure(cfg);
    crate::routes::v1::configure(cfg);
    crate::anthropic::configure(cfg);
}
