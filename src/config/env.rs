//! The settings table: every setting's `exai.toml` key, its environment variables (the
//! original daemon's names included, DESIGN §8), its default and one line saying what it is.
//!
//! This is the one place a key, an environment name or a default is written: the reader
//! ([`super::read`]) reads each setting through its entry, `exai check-config` names each
//! value by it ([`super::redact`]), and `docs/configuration.md` is rendered from it
//! ([`super::docs`]). Defaults are read from the module that owns the behaviour (the actors'
//! consts and `Default`s); the few that only configuration knows are the named consts below.
//!
//! Environment variables win over `exai.toml`; when a setting has several names the first one
//! set wins (so `EXAI_DATABASE_URL` before the original `DATABASE_URL`).
//!
//! Adding a setting: a field in its `raw.rs` section, an entry here and in [`SETTINGS`], a
//! field in its config struct, read in `read.rs` and shown in `redact.rs` (the compiler asks
//! for these two once the field exists; the unit tests for a missing table entry or stale
//! docs), then `exai config-docs > docs/configuration.md`.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use exai_actors::cache as cache_owner;
use exai_actors::dashboard as dashboard_owner;
use exai_actors::pipeline::flusher as pipeline_owner;
use exai_actors::pipeline::store::RetentionSettings;
use exai_actors::provider::{self as provider_owner, ProviderKind};
use exai_actors::registry as registry_owner;
use exai_actors::supervisor::SupervisorSettings;

use super::kind::{
    Aliases, Bytes, Chains, Count, Days, Flag, Format, Fsync, Kind, Maybe, Millis, NonNegative,
    Origins, Paths, Port, Positive, Prices, RedisSchemes, Seconds, SecretUrl, StoreSchemes, Text,
    Token,
};
use super::model::{DEFAULT_PORT, LogFormat};
use super::raw::RawFile;
use crate::ws::limits::{self as ws_owner, WsLimits};
use exai_actors::pipeline::journal::FsyncPolicy;

/// Address bound when none is configured.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// `/v1` requests in flight across all clients.
pub const DEFAULT_V1_MAX_INFLIGHT: usize = 4096;
/// Idle lifetime of an MCP session.
pub const DEFAULT_MCP_SESSION_TTL: Duration = Duration::from_secs(3600);
/// MCP sessions kept at most.
pub const DEFAULT_MCP_MAX_SESSIONS: usize = 1000;
/// Time to finish in-flight work after SIGTERM (a balancer's usual 30 s, less a margin).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(25);
/// Time readiness fails before the listener closes.
pub const DEFAULT_SHUTDOWN_READY_DELAY: Duration = Duration::from_millis(1000);
/// Longest a request body may take to arrive.
pub const DEFAULT_HTTP_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of request bodies being read at once, across all requests.
pub const DEFAULT_HTTP_MAX_BODY_BYTES_IN_FLIGHT: usize = 256 * 1024 * 1024;
/// Directory for the SQLite file and the journal.
pub const DEFAULT_DATA_DIR: &str = "data";
/// Tracing filter.
pub const DEFAULT_LOG_FILTER: &str = "info";
/// Events the recorder holds in memory for the flusher.
pub const DEFAULT_MAX_BUFFERED: usize = 100_000;
/// Whether responses are cached.
pub const DEFAULT_CACHE_ENABLED: bool = true;

/// One setting read by the generic reader: a value of kind `K`.
pub struct Setting<K: Kind> {
    /// Dotted `exai.toml` key, e.g. `server.port`.
    pub key: &'static str,
    /// Environment variables, in precedence order.
    pub env: &'static [&'static str],
    /// The key's value in the parsed file.
    pub toml: fn(&RawFile) -> Option<&toml::Value>,
    /// The default.
    pub default: fn() -> K::Value,
    /// What it is, in one line (the documentation's "meaning").
    pub about: &'static str,
}

/// A setting read by its own code in `read.rs`, whose default depends on other settings (or
/// which merges both sources).
pub struct Custom<K> {
    /// Dotted `exai.toml` key.
    pub key: &'static str,
    /// Environment variables, in precedence order.
    pub env: &'static [&'static str],
    /// The key's value in the parsed file.
    pub toml: fn(&RawFile) -> Option<&toml::Value>,
    /// The default, as documented.
    pub default: &'static str,
    /// What it is, in one line.
    pub about: &'static str,
    /// Its kind.
    pub kind: PhantomData<K>,
}

/// What every table entry offers the reader and the documentation.
pub trait Entry: Sync {
    /// Dotted `exai.toml` key.
    fn key(&self) -> &'static str;
    /// Environment variables, in precedence order.
    fn env(&self) -> &'static [&'static str];
    /// The key's value in the parsed file.
    fn toml<'a>(&self, file: &'a RawFile) -> Option<&'a toml::Value>;
    /// The type, as documented.
    fn kind(&self) -> &'static str;
    /// The default, as documented.
    fn default_doc(&self) -> String;
    /// What it is.
    fn about(&self) -> &'static str;
    /// The default as `exai check-config` shows it, when it is a fixed value.
    fn default_shown(&self) -> Option<serde_json::Value>;
}

impl<K: Kind> Entry for Setting<K> {
    fn key(&self) -> &'static str {
        self.key
    }
    fn env(&self) -> &'static [&'static str] {
        self.env
    }
    fn toml<'a>(&self, file: &'a RawFile) -> Option<&'a toml::Value> {
        (self.toml)(file)
    }
    fn kind(&self) -> &'static str {
        K::TYPE
    }
    fn default_doc(&self) -> String {
        K::doc(&(self.default)())
    }
    fn about(&self) -> &'static str {
        self.about
    }
    fn default_shown(&self) -> Option<serde_json::Value> {
        Some(K::show(&(self.default)()))
    }
}

impl<K: Kind> Entry for Custom<K> {
    fn key(&self) -> &'static str {
        self.key
    }
    fn env(&self) -> &'static [&'static str] {
        self.env
    }
    fn toml<'a>(&self, file: &'a RawFile) -> Option<&'a toml::Value> {
        (self.toml)(file)
    }
    fn kind(&self) -> &'static str {
        K::TYPE
    }
    fn default_doc(&self) -> String {
        self.default.to_owned()
    }
    fn about(&self) -> &'static str {
        self.about
    }
    fn default_shown(&self) -> Option<serde_json::Value> {
        None
    }
}

/// The key a problem with `entry` names: its environment variable when one is set, else its
/// `exai.toml` key.
pub fn key_of(env: &HashMap<String, String>, entry: &dyn Entry) -> String {
    entry
        .env()
        .iter()
        .find(|k| env.contains_key(**k))
        .map_or_else(|| entry.key().to_owned(), |k| (*k).to_owned())
}

// ---------------------------------------------------------------------------------------
// [server]

pub const HOST: Setting<Text> = Setting {
    key: "server.host",
    env: &["EXAI_WS_HOST"],
    toml: |f| f.server.host.as_ref(),
    default: || DEFAULT_HOST.to_owned(),
    about: "listen address (`localhost` is 127.0.0.1); `--host` overrides it",
};
pub const PORT: Setting<Port> = Setting {
    key: "server.port",
    env: &["EXAI_WS_PORT"],
    toml: |f| f.server.port.as_ref(),
    default: || DEFAULT_PORT,
    about: "listen port, one listener for everything (0 picks a free one); `--port` overrides it",
};
pub const TOKEN: Setting<Maybe<Token>> = Setting {
    key: "server.token",
    env: &["EXAI_WS_TOKEN"],
    toml: |f| f.server.token.as_ref(),
    default: || None,
    about: "token for `/ws` (hello), `/v1`, `/v1/messages` and `/mcp` (Bearer); at least 16 characters",
};
pub const DASHBOARD_TOKEN: Setting<Maybe<Token>> = Setting {
    key: "server.dashboard_token",
    env: &["EXAI_DASHBOARD_TOKEN"],
    toml: |f| f.server.dashboard_token.as_ref(),
    default: || None,
    about: "read-only token for the dashboard, `/api` and `/metrics`; at least 16 characters",
};
pub const ALLOW_NO_AUTH: Setting<Flag> = Setting {
    key: "server.allow_no_auth",
    env: &["EXAI_ALLOW_NO_AUTH"],
    toml: |f| f.server.allow_no_auth.as_ref(),
    default: || false,
    about: "allow a non-loopback bind without a token (as `--allow-no-auth` does)",
};
pub const MAX_MESSAGE_BYTES: Setting<Bytes<usize>> = Setting {
    key: "server.max_message_bytes",
    env: &["EXAI_WS_MAX_BYTES"],
    toml: |f| f.server.max_message_bytes.as_ref(),
    default: || WsLimits::default().max_message_bytes,
    about: "largest WebSocket message",
};
pub const SESSION_MAX_INFLIGHT: Setting<Count<usize>> = Setting {
    key: "server.session_max_inflight",
    env: &["EXAI_WS_SESSION_MAX_INFLIGHT"],
    toml: |f| f.server.session_max_inflight.as_ref(),
    default: || WsLimits::default().session_max_inflight,
    about: "`/ws` calls in flight per session",
};
pub const GLOBAL_MAX_INFLIGHT: Setting<Count<usize>> = Setting {
    key: "server.global_max_inflight",
    env: &["EXAI_WS_GLOBAL_MAX_INFLIGHT"],
    toml: |f| f.server.global_max_inflight.as_ref(),
    default: || WsLimits::default().global_max_inflight,
    about: "`/ws` calls in flight in total; must exceed the per-session limit",
};
pub const V1_MAX_INFLIGHT: Setting<Count<usize>> = Setting {
    key: "server.v1_max_inflight",
    env: &["EXAI_V1_MAX_INFLIGHT"],
    toml: |f| f.server.v1_max_inflight.as_ref(),
    default: || DEFAULT_V1_MAX_INFLIGHT,
    about: "`/v1` requests in flight in total (429 beyond it)",
};
pub const HELLO_TIMEOUT: Setting<Seconds> = Setting {
    key: "server.hello_timeout_s",
    env: &["EXAI_WS_HELLO_TIMEOUT"],
    toml: |f| f.server.hello_timeout_s.as_ref(),
    default: || WsLimits::default().hello_timeout,
    about: "time allowed for the `hello` frame",
};
pub const MAX_CONNECTIONS: Setting<Count<usize>> = Setting {
    key: "server.max_connections",
    env: &["EXAI_WS_MAX_CONNECTIONS"],
    toml: |f| f.server.max_connections.as_ref(),
    default: || WsLimits::default().max_connections,
    about: "`/ws` connections in total",
};
pub const MAX_CONNECTIONS_PER_IP: Setting<Count<usize>> = Setting {
    key: "server.max_connections_per_ip",
    env: &["EXAI_WS_MAX_CONNECTIONS_PER_IP"],
    toml: |f| f.server.max_connections_per_ip.as_ref(),
    default: || WsLimits::default().max_connections_per_ip,
    about: "`/ws` connections per client IP",
};
pub const MAX_PENDING_HELLO: Custom<Count<usize>> = Custom {
    key: "server.max_pending_hello",
    env: &["EXAI_WS_MAX_PENDING_HELLO"],
    toml: |f| f.server.max_pending_hello.as_ref(),
    default: "connections ÷ 4",
    about: "`/ws` connections still waiting for `hello`; the oldest is closed (1008) to make room",
    kind: PhantomData,
};
pub const TOOL_TIMEOUT: Setting<Seconds> = Setting {
    key: "server.tool_timeout_s",
    env: &["EXAI_TOOL_TIMEOUT"],
    toml: |f| f.server.tool_timeout_s.as_ref(),
    default: || WsLimits::default().tool_timeout,
    about: "longest a tool call may run",
};
pub const SESSION_RATE: Setting<Positive> = Setting {
    key: "server.session_rate",
    env: &["EXAI_WS_SESSION_RATE"],
    toml: |f| f.server.session_rate.as_ref(),
    default: || ws_owner::DEFAULT_SESSION_RATE,
    about: "`/ws` token bucket per session: frames per second",
};
pub const SESSION_BURST: Setting<Positive> = Setting {
    key: "server.session_burst",
    env: &["EXAI_WS_SESSION_BURST"],
    toml: |f| f.server.session_burst.as_ref(),
    default: || ws_owner::DEFAULT_SESSION_BURST,
    about: "`/ws` token bucket per session: burst",
};
pub const IP_RATE: Setting<Positive> = Setting {
    key: "server.ip_rate",
    env: &["EXAI_WS_IP_RATE"],
    toml: |f| f.server.ip_rate.as_ref(),
    default: || ws_owner::DEFAULT_IP_RATE,
    about: "`/ws` token bucket per client IP: frames per second",
};
pub const IP_BURST: Setting<Positive> = Setting {
    key: "server.ip_burst",
    env: &["EXAI_WS_IP_BURST"],
    toml: |f| f.server.ip_burst.as_ref(),
    default: || ws_owner::DEFAULT_IP_BURST,
    about: "`/ws` token bucket per client IP: burst",
};
pub const HEARTBEAT_INTERVAL: Setting<Millis> = Setting {
    key: "server.heartbeat_interval_ms",
    env: &["EXAI_WS_HEARTBEAT_INTERVAL_MS"],
    toml: |f| f.server.heartbeat_interval_ms.as_ref(),
    default: || ws_owner::DEFAULT_HEARTBEAT_INTERVAL,
    about: "server ping period on `/ws`",
};
pub const CLIENT_TIMEOUT: Setting<Millis> = Setting {
    key: "server.client_timeout_ms",
    env: &["EXAI_WS_CLIENT_TIMEOUT_MS"],
    toml: |f| f.server.client_timeout_ms.as_ref(),
    default: || ws_owner::DEFAULT_CLIENT_TIMEOUT,
    about: "a silent `/ws` client is dropped after this; must exceed the heartbeat interval",
};
pub const PROGRESS_INTERVAL: Setting<Millis> = Setting {
    key: "server.progress_interval_ms",
    env: &["EXAI_WS_PROGRESS_INTERVAL_MS"],
    toml: |f| f.server.progress_interval_ms.as_ref(),
    default: || ws_owner::DEFAULT_PROGRESS_INTERVAL,
    about: "`progress` period of a running tool call (`/ws` calls with a `request_id`, MCP calls with a `progressToken`)",
};
pub const CONVERSATION_CAPACITY: Setting<Count<u64>> = Setting {
    key: "server.conversation_capacity",
    env: &["EXAI_CONVERSATION_CAPACITY"],
    toml: |f| f.server.conversation_capacity.as_ref(),
    default: || ws_owner::DEFAULT_CONVERSATION_CAPACITY,
    about: "`continuation_id` conversation threads kept at most",
};
pub const CONVERSATION_TTL: Setting<Seconds> = Setting {
    key: "server.conversation_ttl_s",
    env: &["EXAI_CONVERSATION_TTL"],
    toml: |f| f.server.conversation_ttl_s.as_ref(),
    default: || ws_owner::DEFAULT_CONVERSATION_TTL,
    about: "idle lifetime of a conversation thread",
};
pub const MCP_SESSION_TTL: Setting<Seconds> = Setting {
    key: "server.mcp_session_ttl_s",
    env: &["EXAI_MCP_SESSION_TTL"],
    toml: |f| f.server.mcp_session_ttl_s.as_ref(),
    default: || DEFAULT_MCP_SESSION_TTL,
    about: "idle lifetime of an MCP session on `/mcp` (spec eras up to 2025-11-25)",
};
pub const MCP_MAX_SESSIONS: Setting<Count<usize>> = Setting {
    key: "server.mcp_max_sessions",
    env: &["EXAI_MCP_MAX_SESSIONS"],
    toml: |f| f.server.mcp_max_sessions.as_ref(),
    default: || DEFAULT_MCP_MAX_SESSIONS,
    about: "MCP sessions kept; at the cap a new one evicts the longest idle one without a running call, or is refused (503)",
};
pub const DASHBOARD_CLIENT_QUEUE: Setting<Count<usize>> = Setting {
    key: "server.dashboard_client_queue",
    env: &["EXAI_DASHBOARD_CLIENT_QUEUE"],
    toml: |f| f.server.dashboard_client_queue.as_ref(),
    default: || dashboard_owner::DEFAULT_CLIENT_QUEUE,
    about: "messages queued per dashboard client before it loses events (`lagged`)",
};
pub const DASHBOARD_EVICT_AFTER_DROPPED: Setting<Count<u64>> = Setting {
    key: "server.dashboard_evict_after_dropped",
    env: &["EXAI_DASHBOARD_EVICT_AFTER_DROPPED"],
    toml: |f| f.server.dashboard_evict_after_dropped.as_ref(),
    default: || dashboard_owner::DEFAULT_EVICT_AFTER_DROPPED,
    about: "a dashboard client that lost this many messages in a row is disconnected",
};
pub const DASHBOARD_EVICT_AFTER_FULL: Setting<Millis> = Setting {
    key: "server.dashboard_evict_after_full_ms",
    env: &["EXAI_DASHBOARD_EVICT_AFTER_FULL_MS"],
    toml: |f| f.server.dashboard_evict_after_full_ms.as_ref(),
    default: || dashboard_owner::DEFAULT_EVICT_AFTER_FULL,
    about: "a dashboard client whose queue stayed full this long is disconnected",
};
pub const SHUTDOWN_GRACE: Setting<Seconds> = Setting {
    key: "server.shutdown_grace_s",
    env: &["EXAI_SHUTDOWN_GRACE"],
    toml: |f| f.server.shutdown_grace_s.as_ref(),
    default: || DEFAULT_SHUTDOWN_GRACE,
    about: "time to drain in-flight work on SIGTERM/SIGINT",
};
pub const SHUTDOWN_READY_DELAY: Setting<Millis> = Setting {
    key: "server.shutdown_ready_delay_ms",
    env: &["EXAI_SHUTDOWN_READY_DELAY_MS"],
    toml: |f| f.server.shutdown_ready_delay_ms.as_ref(),
    default: || DEFAULT_SHUTDOWN_READY_DELAY,
    about: "readiness answers 503 this long before the listener closes",
};
pub const ALLOWED_ORIGINS: Setting<Origins> = Setting {
    key: "server.allowed_origins",
    env: &["EXAI_ALLOWED_ORIGINS"],
    toml: |f| f.server.allowed_origins.as_ref(),
    default: Vec::new,
    about: "browser origins allowed besides exai's own: exact `scheme://host[:port]`, comma-separated (toml: an array or a string)",
};
pub const HTTP_BODY_TIMEOUT: Setting<Millis> = Setting {
    key: "server.http_body_timeout_ms",
    env: &["EXAI_HTTP_BODY_TIMEOUT_MS"],
    toml: |f| f.server.http_body_timeout_ms.as_ref(),
    default: || DEFAULT_HTTP_BODY_TIMEOUT,
    about: "a request body not fully arrived by then answers 408",
};
pub const HTTP_MAX_BODY_BYTES_IN_FLIGHT: Setting<Bytes<usize>> = Setting {
    key: "server.http_max_body_bytes_in_flight",
    env: &["EXAI_HTTP_MAX_BODY_BYTES_IN_FLIGHT"],
    toml: |f| f.server.http_max_body_bytes_in_flight.as_ref(),
    default: || DEFAULT_HTTP_MAX_BODY_BYTES_IN_FLIGHT,
    about: "bytes of request bodies being read at once (declared length up front, chunked as it arrives); beyond it 503",
};

// ---------------------------------------------------------------------------------------
// The process, [storage] and [log]

pub const INSTANCE: Custom<Text> = Custom {
    key: "instance",
    env: &["EXAI_INSTANCE"],
    toml: |f| f.instance.as_ref(),
    default: "`<hostname>:<port>`",
    about: "this process's name on events and `/health`",
    kind: PhantomData,
};
pub const DATA_DIR: Setting<Text> = Setting {
    key: "storage.data_dir",
    env: &["EXAI_DATA_DIR"],
    toml: |f| f.storage.data_dir.as_ref(),
    default: || DEFAULT_DATA_DIR.to_owned(),
    about: "directory of the SQLite file and the event journal (`spill/`); must be writable",
};
pub const DATABASE_URL: Custom<SecretUrl<StoreSchemes>> = Custom {
    key: "storage.database_url",
    env: &["EXAI_DATABASE_URL", "DATABASE_URL"],
    toml: |f| f.storage.database_url.as_ref(),
    default: "`sqlite://<data_dir>/exai.db`",
    about: "the event store: `sqlite://…` or `postgres://…`",
    kind: PhantomData,
};
pub const LOG_FILTER: Setting<Text> = Setting {
    key: "log.filter",
    env: &["EXAI_LOG"],
    toml: |f| f.log.filter.as_ref(),
    default: || DEFAULT_LOG_FILTER.to_owned(),
    about: "tracing filter, e.g. `exai=debug,info`",
};
pub const LOG_FORMAT: Setting<Format> = Setting {
    key: "log.format",
    env: &["EXAI_LOG_FORMAT"],
    toml: |f| f.log.format.as_ref(),
    default: || LogFormat::Pretty,
    about: "log lines; colour only when stderr is a terminal and `NO_COLOR` is unset",
};
pub const ACCESS_LOG: Setting<Flag> = Setting {
    key: "log.access_log",
    env: &["EXAI_ACCESS_LOG"],
    toml: |f| f.log.access_log.as_ref(),
    default: || false,
    about: "one log line per HTTP request: method, path, status, latency, model and cache outcome",
};

// ---------------------------------------------------------------------------------------
// [supervisor]

pub const MAX_RESTARTS: Setting<NonNegative> = Setting {
    key: "supervisor.max_restarts",
    env: &["EXAI_SUPERVISOR_MAX_RESTARTS"],
    toml: |f| f.supervisor.max_restarts.as_ref(),
    default: || SupervisorSettings::default().max_restarts,
    about: "restarts within the window before an actor is `failed`",
};
pub const RESTART_WINDOW: Setting<Seconds> = Setting {
    key: "supervisor.restart_window_s",
    env: &["EXAI_SUPERVISOR_RESTART_WINDOW"],
    toml: |f| f.supervisor.restart_window_s.as_ref(),
    default: || SupervisorSettings::default().restart_window,
    about: "the restart-counting window",
};
pub const CHECK_INTERVAL: Setting<Millis> = Setting {
    key: "supervisor.check_interval_ms",
    env: &["EXAI_SUPERVISOR_CHECK_INTERVAL_MS"],
    toml: |f| f.supervisor.check_interval_ms.as_ref(),
    default: || SupervisorSettings::default().check_interval,
    about: "liveness check period",
};
pub const PING_TIMEOUT: Setting<Millis> = Setting {
    key: "supervisor.ping_timeout_ms",
    env: &["EXAI_SUPERVISOR_PING_TIMEOUT_MS"],
    toml: |f| f.supervisor.ping_timeout_ms.as_ref(),
    default: || SupervisorSettings::default().ping_timeout,
    about: "a ping unanswered this long means the actor hung: it is replaced",
};
pub const BACKOFF_INITIAL: Setting<Millis> = Setting {
    key: "supervisor.backoff_initial_ms",
    env: &["EXAI_SUPERVISOR_BACKOFF_INITIAL_MS"],
    toml: |f| f.supervisor.backoff_initial_ms.as_ref(),
    default: || SupervisorSettings::default().backoff.initial,
    about: "first restart backoff",
};
pub const BACKOFF_MAX: Setting<Millis> = Setting {
    key: "supervisor.backoff_max_ms",
    env: &["EXAI_SUPERVISOR_BACKOFF_MAX_MS"],
    toml: |f| f.supervisor.backoff_max_ms.as_ref(),
    default: || SupervisorSettings::default().backoff.max,
    about: "largest restart backoff",
};

// ---------------------------------------------------------------------------------------
// [metrics]

pub const BUFFER_SIZE: Setting<Count<usize>> = Setting {
    key: "metrics.buffer_size",
    env: &["METRICS_BUFFER_SIZE"],
    toml: |f| f.metrics.buffer_size.as_ref(),
    default: || pipeline_owner::DEFAULT_BATCH_SIZE,
    about: "events per flush",
};
pub const FLUSH_INTERVAL: Setting<Millis> = Setting {
    key: "metrics.flush_interval_ms",
    env: &["EXAI_METRICS_FLUSH_INTERVAL_MS"],
    toml: |f| f.metrics.flush_interval_ms.as_ref(),
    default: || pipeline_owner::DEFAULT_FLUSH_INTERVAL,
    about: "longest an event waits before a flush",
};
pub const MAX_BUFFERED: Setting<Count<usize>> = Setting {
    key: "metrics.max_buffered",
    env: &["EXAI_METRICS_MAX_BUFFERED"],
    toml: |f| f.metrics.max_buffered.as_ref(),
    default: || DEFAULT_MAX_BUFFERED,
    about: "event copies held in memory for the flusher; beyond it the flusher reads them back from the journal",
};
pub const FSYNC: Setting<Fsync> = Setting {
    key: "metrics.fsync",
    env: &["EXAI_METRICS_FSYNC"],
    toml: |f| f.metrics.fsync.as_ref(),
    default: FsyncPolicy::default,
    about: "journal fsync: every event, once per flush interval, or never; every event is written before recording returns in all three",
};
pub const RETENTION_RAW: Setting<Days> = Setting {
    key: "metrics.retention_raw_days",
    env: &["EXAI_RETENTION_RAW_DAYS"],
    toml: |f| f.metrics.retention_raw_days.as_ref(),
    default: || RetentionSettings::default().raw,
    about: "raw event retention",
};
pub const RETENTION_1MIN: Setting<Days> = Setting {
    key: "metrics.retention_1min_days",
    env: &["EXAI_RETENTION_1MIN_DAYS"],
    toml: |f| f.metrics.retention_1min_days.as_ref(),
    default: || RetentionSettings::default().minute,
    about: "1-minute rollup retention",
};
pub const RETENTION_1HOUR: Setting<Days> = Setting {
    key: "metrics.retention_1hour_days",
    env: &["EXAI_RETENTION_1HOUR_DAYS"],
    toml: |f| f.metrics.retention_1hour_days.as_ref(),
    default: || RetentionSettings::default().hour,
    about: "1-hour rollup retention",
};

// ---------------------------------------------------------------------------------------
// [cache]

pub const CACHE_ENABLED: Setting<Flag> = Setting {
    key: "cache.enabled",
    env: &["EXAI_CACHE_ENABLED"],
    toml: |f| f.cache.enabled.as_ref(),
    default: || DEFAULT_CACHE_ENABLED,
    about: "whether responses are cached at all",
};
pub const CACHE_TTL: Setting<Seconds> = Setting {
    key: "cache.ttl_s",
    env: &["SEMANTIC_CACHE_TTL_SECONDS"],
    toml: |f| f.cache.ttl_s.as_ref(),
    default: || cache_owner::DEFAULT_L1_TTL,
    about: "L1 (in-memory) time to live",
};
pub const CACHE_L2_TTL: Setting<Seconds> = Setting {
    key: "cache.l2_ttl_s",
    env: &["EXAI_CACHE_L2_TTL_SECONDS"],
    toml: |f| f.cache.l2_ttl_s.as_ref(),
    default: || cache_owner::DEFAULT_L2_TTL,
    about: "L2 (Redis) time to live",
};
pub const CACHE_MAX_RESPONSE_BYTES: Setting<Bytes<usize>> = Setting {
    key: "cache.max_response_bytes",
    env: &["SEMANTIC_CACHE_MAX_RESPONSE_SIZE"],
    toml: |f| f.cache.max_response_bytes.as_ref(),
    default: || cache_owner::DEFAULT_MAX_RESPONSE_BYTES,
    about: "larger responses are not cached",
};
pub const CACHE_L1_CAPACITY: Setting<Bytes<u64>> = Setting {
    key: "cache.l1_capacity_bytes",
    env: &["EXAI_CACHE_L1_BYTES"],
    toml: |f| f.cache.l1_capacity_bytes.as_ref(),
    default: || cache_owner::DEFAULT_L1_CAPACITY_BYTES,
    about: "L1 capacity",
};
pub const REDIS_URL: Setting<Maybe<SecretUrl<RedisSchemes>>> = Setting {
    key: "cache.redis_url",
    env: &["REDIS_URL"],
    toml: |f| f.cache.redis_url.as_ref(),
    default: || None,
    about: "enables the shared Redis L2",
};
pub const REDIS_TIMEOUT: Setting<Millis> = Setting {
    key: "cache.redis_timeout_ms",
    env: &["EXAI_REDIS_TIMEOUT_MS"],
    toml: |f| f.cache.redis_timeout_ms.as_ref(),
    default: || cache_owner::DEFAULT_REDIS_OP_TIMEOUT,
    about: "per-operation Redis timeout",
};

// ---------------------------------------------------------------------------------------
// [registry]

pub const REGISTRY_CACHE_TTL: Setting<Seconds> = Setting {
    key: "registry.cache_ttl_s",
    env: &["REGISTRY_CACHE_TTL"],
    toml: |f| f.registry.cache_ttl_s.as_ref(),
    default: || registry_owner::DEFAULT_CACHE_TTL,
    about: "model catalog lifetime",
};
pub const DEFAULT_MODEL: Setting<Maybe<Text>> = Setting {
    key: "registry.default_model",
    env: &["EXAI_DEFAULT_MODEL", "DEFAULT_MODEL"],
    toml: |f| f.registry.default_model.as_ref(),
    default: || None,
    about: "what `auto` resolves to (and an unmapped `claude-*` name)",
};
pub const MAX_ATTEMPTS: Setting<Count<u32>> = Setting {
    key: "registry.max_attempts",
    env: &["EXAI_MAX_ATTEMPTS"],
    toml: |f| f.registry.max_attempts.as_ref(),
    default: || u32::try_from(registry_owner::DEFAULT_MAX_ATTEMPTS).unwrap_or(u32::MAX),
    about: "attempts across a fallback chain",
};
pub const FALLBACK: Custom<Chains> = Custom {
    key: "registry.fallback",
    env: &["EXAI_FALLBACK"],
    toml: |f| f.registry.fallback.as_ref(),
    default: "—",
    about: "fallback chains: `model=a,b;other=c`, or in toml `model = [\"a\", \"b\"]` (the environment wins per model)",
    kind: PhantomData,
};
pub const ALIASES: Custom<Aliases> = Custom {
    key: "registry.aliases",
    env: &["EXAI_MODEL_ALIASES"],
    toml: |f| f.registry.aliases.as_ref(),
    default: "—",
    about: "model aliases for every surface: `claude-sonnet-4-5=glm-4.6,claude-haiku-4-5=kimi-k2-turbo`, or in toml `\"claude-sonnet-4-5\" = \"glm-4.6\"` (the environment wins); they take precedence over catalog names",
    kind: PhantomData,
};

pub const PRICES: Custom<Prices> = Custom {
    key: "prices",
    env: &["EXAI_PRICES"],
    toml: |f| f.prices.as_ref(),
    default: "built in",
    about: "model prices in USD per million tokens, over the built-in table ([monitoring.md](monitoring.md)): `glm-4.6=0.6/2.2/0.11;my-model=1/2` (`input/output[/cached_input]`), or in toml `\"glm-4.6\" = { input = 0.6, output = 2.2, cached_input = 0.11 }` (the environment wins per model); a model without a price has no `cost_usd`",
    kind: PhantomData,
};

// ---------------------------------------------------------------------------------------
// [upstream] and [tools]

pub const UPSTREAM_MAX_BYTES: Setting<Bytes<usize>> = Setting {
    key: "upstream.max_bytes",
    env: &["EXAI_UPSTREAM_MAX_BYTES"],
    toml: |f| f.upstream.max_bytes.as_ref(),
    default: || provider_owner::DEFAULT_UPSTREAM_MAX_BYTES,
    about: "largest upstream answer read; beyond it the request is aborted and answers 502 `upstream_too_large`",
};
pub const SSE_MAX_EVENT_BYTES: Setting<Bytes<usize>> = Setting {
    key: "upstream.sse_max_event_bytes",
    env: &["EXAI_SSE_MAX_EVENT_BYTES"],
    toml: |f| f.upstream.sse_max_event_bytes.as_ref(),
    default: || provider_owner::DEFAULT_SSE_MAX_EVENT_BYTES,
    about: "largest single SSE event of an upstream stream; beyond it the stream ends with an `upstream_too_large` error event",
};
pub const FILE_ROOTS: Custom<Paths> = Custom {
    key: "tools.file_roots",
    env: &[crate::files::ROOTS_ENV],
    toml: |f| f.tools.file_roots.as_ref(),
    default: "working directory",
    about: "directories tools may read under (a path list like `PATH`, or a toml array); each must exist",
    kind: PhantomData,
};
pub const FILE_MAX_BYTES: Setting<Bytes<usize>> = Setting {
    key: "tools.file_max_bytes",
    env: &["EXAI_FILE_MAX_BYTES"],
    toml: |f| f.tools.file_max_bytes.as_ref(),
    default: || crate::files::DEFAULT_MAX_BYTES,
    about: "file content one tool call may read; beyond it content is cut with a note in the prompt",
};

/// Every entry, in the order the documentation lists them.
pub static SETTINGS: &[&dyn Entry] = &[
    &HOST,
    &PORT,
    &TOKEN,
    &DASHBOARD_TOKEN,
    &ALLOW_NO_AUTH,
    &MAX_MESSAGE_BYTES,
    &SESSION_MAX_INFLIGHT,
    &GLOBAL_MAX_INFLIGHT,
    &V1_MAX_INFLIGHT,
    &HELLO_TIMEOUT,
    &MAX_CONNECTIONS,
    &MAX_CONNECTIONS_PER_IP,
    &MAX_PENDING_HELLO,
    &TOOL_TIMEOUT,
    &SESSION_RATE,
    &SESSION_BURST,
    &IP_RATE,
    &IP_BURST,
    &HEARTBEAT_INTERVAL,
    &CLIENT_TIMEOUT,
    &PROGRESS_INTERVAL,
    &CONVERSATION_CAPACITY,
    &CONVERSATION_TTL,
    &MCP_SESSION_TTL,
    &MCP_MAX_SESSIONS,
    &DASHBOARD_CLIENT_QUEUE,
    &DASHBOARD_EVICT_AFTER_DROPPED,
    &DASHBOARD_EVICT_AFTER_FULL,
    &SHUTDOWN_GRACE,
    &SHUTDOWN_READY_DELAY,
    &ALLOWED_ORIGINS,
    &HTTP_BODY_TIMEOUT,
    &HTTP_MAX_BODY_BYTES_IN_FLIGHT,
    &INSTANCE,
    &DATA_DIR,
    &DATABASE_URL,
    &LOG_FILTER,
    &LOG_FORMAT,
    &ACCESS_LOG,
    &MAX_RESTARTS,
    &RESTART_WINDOW,
    &CHECK_INTERVAL,
    &PING_TIMEOUT,
    &BACKOFF_INITIAL,
    &BACKOFF_MAX,
    &BUFFER_SIZE,
    &FLUSH_INTERVAL,
    &MAX_BUFFERED,
    &FSYNC,
    &RETENTION_RAW,
    &RETENTION_1MIN,
    &RETENTION_1HOUR,
    &CACHE_ENABLED,
    &CACHE_TTL,
    &CACHE_L2_TTL,
    &CACHE_MAX_RESPONSE_BYTES,
    &CACHE_L1_CAPACITY,
    &REDIS_URL,
    &REDIS_TIMEOUT,
    &REGISTRY_CACHE_TTL,
    &DEFAULT_MODEL,
    &FALLBACK,
    &MAX_ATTEMPTS,
    &ALIASES,
    &PRICES,
    &UPSTREAM_MAX_BYTES,
    &SSE_MAX_EVENT_BYTES,
    &FILE_ROOTS,
    &FILE_MAX_BYTES,
];

// ---------------------------------------------------------------------------------------
// Providers

/// A provider configured from the original daemon's environment variables. One already in
/// `exai.toml` under the same name is left as it is.
pub struct EnvProvider {
    /// The provider's name.
    pub name: &'static str,
    /// Its kind.
    pub kind: ProviderKind,
    /// Its API key, in precedence order.
    pub api_key: &'static [&'static str],
    /// Its base URL (the kind's default when unset; required when the kind has none).
    pub base_url: &'static str,
}

/// The providers the environment can configure, in the order they are added.
pub const ENV_PROVIDERS: &[EnvProvider] = &[
    EnvProvider {
        name: "kimi",
        kind: ProviderKind::Kimi,
        api_key: &["KIMI_API_KEY", "MOONSHOT_API_KEY"],
        base_url: "KIMI_API_URL",
    },
    EnvProvider {
        name: "glm",
        kind: ProviderKind::Glm,
        api_key: &["GLM_API_KEY", "ZHIPUAI_API_KEY"],
        base_url: "GLM_API_URL",
    },
    EnvProvider {
        name: "openai",
        kind: ProviderKind::Openai,
        api_key: &["OPENAI_API_KEY"],
        base_url: "OPENAI_API_URL",
    },
    EnvProvider {
        name: "custom",
        kind: ProviderKind::OpenaiCompatible,
        api_key: &["CUSTOM_API_KEY"],
        base_url: "CUSTOM_API_URL",
    },
];
/// The model the `custom` provider serves (besides discovery).
pub const CUSTOM_MODEL_NAME: &str = "CUSTOM_MODEL_NAME";
/// The provider [`CUSTOM_MODEL_NAME`] belongs to.
pub const CUSTOM_PROVIDER: &str = "custom";
