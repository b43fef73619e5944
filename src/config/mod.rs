//! Configuration: an optional `exai.toml`, overridden by environment variables (including the
//! original daemon's names, DESIGN §8), validated once before any actor starts.
//!
//! - [`env`]: the settings table: every key, its environment names, default and meaning;
//! - [`raw`]: `exai.toml`'s sections as serde structs, rejecting unknown keys;
//! - [`kind`]: how each kind of value is parsed, shown and documented;
//! - [`read`]: reading every setting through the table;
//! - [`validate`]: the problem list and the rules between settings;
//! - [`redact`]: `exai check-config`'s output, secrets hidden by their type;
//! - [`docs`]: `docs/configuration.md`, rendered from the table.
//!
//! Loading never stops at the first problem: [`Config::load`] returns either a complete
//! [`Config`] or every [`ConfigError`], each naming the key it came from (`EXAI_WS_PORT` or
//! `server.port`).

pub mod docs;
pub mod env;
pub mod kind;
pub mod raw;
pub mod read;
pub mod redact;
pub mod validate;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde_json::Value;

/// How journal appends reach the disk (owned by the journal module).
pub use exai_actors::journal::FsyncPolicy;
/// Provider kinds, owned by the provider module; [`read::parse_kind`] reads their names.
pub use exai_actors::provider::ProviderKind;
/// One configured provider, as the provider module takes it.
pub use exai_actors::provider::ProviderSettings;

use raw::RawFile;
use read::Reader;
use redact::{Redact, Shown};
use validate::Errors;

/// Default listen port of the original daemon.
pub const DEFAULT_PORT: u16 = 8079;
/// Shortest accepted token.
pub const MIN_TOKEN_LEN: usize = 16;
/// Environment variable that names the configuration file.
pub const CONFIG_FILE_ENV: &str = "EXAI_CONFIG";
/// Configuration file read when present and none is named.
pub const DEFAULT_CONFIG_FILE: &str = "exai.toml";

/// One configuration problem, naming the key it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The environment variable or `exai.toml` key at fault.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

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

/// Where raw values come from: `exai.toml` and the environment.
pub struct Sources {
    /// Parsed `exai.toml`, if any.
    pub file: Option<(PathBuf, toml::Table)>,
    /// Environment variables.
    pub env: HashMap<String, String>,
}

impl Sources {
    /// Reads the process environment and the configuration file it names (or `exai.toml`
    /// in the working directory, if present). A file that cannot be read or parsed is an
    /// error naming the file.
    pub fn from_process(explicit_file: Option<&Path>) -> Result<Self, Vec<ConfigError>> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let named = explicit_file
            .map(Path::to_path_buf)
            .or_else(|| env.get(CONFIG_FILE_ENV).map(PathBuf::from));
        let path = match named {
            Some(p) => Some(p),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        let file = match path {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    vec![ConfigError {
                        key: path.display().to_string(),
                        message: format!("cannot read configuration file: {e}"),
                    }]
                })?;
                let table: toml::Table = text
                    .parse()
                    .map_err(|e: toml::de::Error| vec![raw::syntax_error(&path, &text, &e)])?;
                Some((path, table))
            }
        };
        Ok(Self { file, env })
    }
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

impl Config {
    /// Loads from the process environment and `exai.toml`.
    pub fn load(file: Option<&Path>, cli: &CliOverrides) -> Result<Self, Vec<ConfigError>> {
        let sources = Sources::from_process(file)?;
        Self::from_sources(&sources, cli)
    }

    /// Builds and validates a configuration from explicit sources, collecting every problem:
    /// first those of values, in reading order, then those between settings, then the
    /// unknown `exai.toml` keys.
    pub fn from_sources(sources: &Sources, cli: &CliOverrides) -> Result<Self, Vec<ConfigError>> {
        let mut unknown = Errors::default();
        let file = match &sources.file {
            Some((_, table)) => RawFile::from_table(table, &mut unknown),
            None => RawFile::default(),
        };
        let mut r = Reader {
            file: &file,
            env: &sources.env,
            errors: Errors::default(),
        };
        let server = read::server(&mut r, cli);
        let (instance, data_dir, database_url) = read::process(&mut r, server.port);
        let config = Config {
            file: sources.file.as_ref().map(|(p, _)| p.clone()),
            log: read::log(&mut r),
            supervisor: read::supervisor(&mut r),
            metrics: read::metrics(&mut r),
            cache: read::cache(&mut r),
            registry: read::registry(&mut r),
            upstream: read::upstream(&mut r),
            providers: read::providers(&mut r),
            tools: read::tools(&mut r),
            server,
            instance,
            data_dir,
            database_url,
        };
        let mut errors = r.errors;
        validate::check(&config, &sources.env, &mut errors);
        errors.0.extend(unknown.0);
        errors.finish(config)
    }

    /// The effective configuration as JSON, secrets shown as `[redacted]`.
    pub fn redacted(&self) -> Value {
        let mut out = Shown::default();
        self.redact(&mut out);
        out.into_value()
    }
}

/// Replaces a URL's credentials and query values (the provider module's one way to show a
/// URL).
pub use exai_actors::provider::redact_url;
