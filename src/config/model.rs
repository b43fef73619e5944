//! The validated, effective configuration: the structs the rest of exai reads. A leaf: it
//! depends on nothing else in `config`, so every part of `config` (and of exai) can use it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use exai_actors::pipeline::journal::FsyncPolicy;
use exai_actors::provider::ProviderSettings;
use secrecy::SecretString;

/// Default listen port of the original daemon.
pub const DEFAULT_PORT: u16 = 8079;
/// Shortest accepted token.
pub const MIN_TOKEN_LEN: usize = 16;
/// Environment variable that names the configuration file.
pub const CONFIG_FILE_ENV: &str = "EXAI_CONFIG";
/// Configuration file read when present and none is named.
pub const DEFAULT_CONFIG_FILE: &str = "exai.toml";

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// The validated, effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the file came from, if one was read.
    pub file: Option<PathBuf>,
    /// Listener and client-surface settings.
    pub server: ServerConfig,
    /// This process's name in events and health.
    pub instance: String,
    /// Directory for the SQLite file and the spill journal.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: SecretString,
    /// Logging.
    pub log: LogConfig,
    /// Restart policy.
    pub supervisor: SupervisorConfig,
    /// Event pipeline.
    pub metrics: MetricsConfig,
    /// Response cache.
    pub cache: CacheConfig,
    /// Model registry.
    pub registry: RegistryConfig,
    /// Limits on what upstreams send back.
    pub upstream: UpstreamConfig,
    /// Upstream providers, in configuration order (the `[upstream]` limits are applied
    /// when the gateway is built).
    pub providers: Vec<ProviderSettings>,
    /// What tools may read.
    pub tools: ToolsConfig,
    /// Model prices, for the `cost_usd` of `request` events.
    pub prices: crate::pricing::PriceTable,
}

/// What tools may read (`files`, `relevant_files`, `images`, precommit's `path`).
#[derive(Debug, Clone)]
pub struct ToolsConfig {
    /// Canonical directories tools may read under; default the working directory.
    pub file_roots: Vec<PathBuf>,
    /// Bytes of file content one call may read.
    pub file_max_bytes: usize,
}

/// Limits on upstream answers, for every provider.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Largest upstream answer read; beyond it the request is aborted (502).
    pub max_bytes: usize,
    /// Largest single SSE event of a stream.
    pub sse_max_event_bytes: usize,
}

/// Listener and client-surface settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one (tests).
    pub port: u16,
    /// Token for `/ws` and `/v1`.
    pub token: Option<SecretString>,
    /// Read-only token for the dashboard and `/api`.
    pub dashboard_token: Option<SecretString>,
    /// Allows a non-loopback bind without a token.
    pub allow_no_auth: bool,
    /// Largest accepted WebSocket message.
    pub max_message_bytes: usize,
    /// `/ws` calls in flight per session.
    pub session_max_inflight: usize,
    /// `/ws` calls in flight across all sessions.
    pub global_max_inflight: usize,
    /// `/v1` requests in flight across all clients.
    pub v1_max_inflight: usize,
    /// Time allowed for the `hello` frame.
    pub hello_timeout: Duration,
    /// `/ws` connections in total.
    pub max_connections: usize,
    /// `/ws` connections per client IP.
    pub max_connections_per_ip: usize,
    /// Longest a tool call may run.
    pub tool_timeout: Duration,
    /// `/ws` token bucket per session: (refill per second, burst).
    pub session_rate: (f64, f64),
    /// `/ws` token bucket per client IP: (refill per second, burst).
    pub ip_rate: (f64, f64),
    /// Server ping period on `/ws`.
    pub heartbeat_interval: Duration,
    /// Silence after which a `/ws` client is dropped.
    pub client_timeout: Duration,
    /// `progress` period of a running tool call.
    pub progress_interval: Duration,
    /// Conversation threads kept at most.
    pub conversation_capacity: u64,
    /// Idle lifetime of a conversation thread.
    pub conversation_ttl: Duration,
    /// Idle lifetime of an MCP session (`/mcp`, spec eras up to 2025-11-25).
    pub mcp_session_ttl: Duration,
    /// MCP sessions kept at most; a new one evicts the longest idle one without running calls.
    pub mcp_max_sessions: usize,
    /// Messages queued per dashboard client before it starts losing events.
    pub dashboard_client_queue: usize,
    /// Dashboard client disconnected after this many drops in a row.
    pub dashboard_evict_after_dropped: u64,
    /// Dashboard client disconnected after its queue stayed full this long.
    pub dashboard_evict_after_full: Duration,
    /// Time to finish in-flight work after SIGTERM.
    pub shutdown_grace: Duration,
    /// Time readiness reports 503 before the listener closes, so balancers notice.
    pub shutdown_ready_delay: Duration,
    /// Browser origins allowed besides exai's own (normalised `scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Longest a request body may take to arrive.
    pub http_body_timeout: Duration,
    /// Bytes of request bodies being read at once, across all requests.
    pub http_max_body_bytes_in_flight: usize,
    /// `/ws` connections still waiting for `hello`.
    pub max_pending_hello: usize,
}

/// Logging settings.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// `EnvFilter` directive.
    pub filter: String,
    /// Output format.
    pub format: LogFormat,
    /// One log line per HTTP request (`EXAI_ACCESS_LOG`).
    pub access_log: bool,
}

/// Restart policy for supervised actors.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// Restarts allowed within the window before an actor is marked failed.
    pub max_restarts: u32,
    /// The restart-counting window.
    pub restart_window: Duration,
    /// Liveness check period.
    pub check_interval: Duration,
    /// A ping unanswered this long means the actor hung.
    pub ping_timeout: Duration,
    /// First restart backoff.
    pub backoff_initial: Duration,
    /// Largest restart backoff.
    pub backoff_max: Duration,
}

/// Event pipeline settings.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// Events per flush.
    pub batch_size: usize,
    /// Longest an event waits before a flush.
    pub flush_interval: Duration,
    /// Events held in memory before spilling to the journal.
    pub max_buffered: usize,
    /// Journal durability.
    pub fsync: FsyncPolicy,
    /// Raw event retention.
    pub retention_raw: Duration,
    /// 1-minute rollup retention.
    pub retention_1min: Duration,
    /// 1-hour rollup retention.
    pub retention_1hour: Duration,
}

/// Response cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Whether responses are cached at all.
    pub enabled: bool,
    /// L1 time to live.
    pub ttl: Duration,
    /// L2 (Redis) time to live.
    pub l2_ttl: Duration,
    /// Largest response stored.
    pub max_response_bytes: usize,
    /// L1 capacity in bytes.
    pub l1_capacity_bytes: u64,
    /// Redis for the shared L2, if any.
    pub redis_url: Option<SecretString>,
    /// Per-operation Redis timeout.
    pub redis_timeout: Duration,
}

/// Model registry settings.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Catalog cache lifetime.
    pub cache_ttl: Duration,
    /// What `auto` resolves to.
    pub default_model: Option<String>,
    /// Model → models to try next.
    pub fallback: BTreeMap<String, Vec<String>>,
    /// Upper bound on attempts across a fallback chain.
    pub max_attempts: u32,
    /// Configured model aliases: name → model (`EXAI_MODEL_ALIASES`, `[registry.aliases]`).
    pub aliases: BTreeMap<String, String>,
}

/// Overrides that come from the command line.
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    /// `--allow-no-auth`.
    pub allow_no_auth: bool,
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
}
