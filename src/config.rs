//! Configuration: an optional `exai.toml`, overridden by environment variables (including the
//! original daemon's names, DESIGN §8), validated once before any actor starts.
//!
//! Loading never stops at the first problem: every setting is read through a [`Reader`] that
//! records each problem with the key it came from (`EXAI_WS_PORT` or `server.port`), and any
//! key left over in `exai.toml` is reported as unknown. [`Config::load`] returns either a
//! complete [`Config`] or the full list of [`ConfigError`]s.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

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

/// How journal appends reach the disk (owned by the journal module).
pub use exai_actors::journal::FsyncPolicy;

/// Provider kinds exai knows how to talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    /// Moonshot Kimi.
    Kimi,
    /// Z.ai GLM.
    Glm,
    /// OpenAI.
    OpenAi,
    /// Any OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio).
    OpenAiCompatible,
    /// Anthropic's Messages API (Anthropic, Kimi's and GLM's Anthropic endpoints).
    Anthropic,
}

impl ProviderKind {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kimi => "kimi",
            Self::Glm => "glm",
            Self::OpenAi => "openai",
            Self::OpenAiCompatible => "openai_compatible",
            Self::Anthropic => "anthropic",
        }
    }

    /// The provider module's kind (which owns base URLs and defaults).
    pub fn actor_kind(self) -> exai_actors::provider::ProviderKind {
        use exai_actors::provider::ProviderKind as K;
        match self {
            Self::Kimi => K::Kimi,
            Self::Glm => K::Glm,
            Self::OpenAi => K::Openai,
            Self::OpenAiCompatible => K::OpenaiCompatible,
            Self::Anthropic => K::Anthropic,
        }
    }

    /// The base URL used when none is configured.
    pub fn default_base_url(self) -> Option<&'static str> {
        self.actor_kind().default_base_url()
    }
}

impl FromStr for ProviderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "kimi" | "moonshot" => Ok(Self::Kimi),
            "glm" | "zhipuai" | "zai" => Ok(Self::Glm),
            "openai" => Ok(Self::OpenAi),
            "openai_compatible" | "custom" => Ok(Self::OpenAiCompatible),
            "anthropic" => Ok(Self::Anthropic),
            other => Err(format!(
                "unknown provider kind {other:?} (expected kimi, glm, openai, openai_compatible \
                 or anthropic)"
            )),
        }
    }
}

/// One configured upstream provider.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Unique name (`kimi`, `glm`, `custom`, …).
    pub name: String,
    /// Which API dialect.
    pub kind: ProviderKind,
    /// Base URL, e.g. `https://api.moonshot.ai/v1`.
    pub base_url: String,
    /// API key, if the provider needs one.
    pub api_key: Option<SecretString>,
    /// Models served in addition to discovery and the built-in catalog.
    pub models: Vec<String>,
    /// Calls in flight at once.
    pub max_concurrency: usize,
    /// Calls waiting for a slot before new ones fail with over-capacity.
    pub max_queue: usize,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout for non-streaming calls.
    pub request_timeout: Duration,
    /// Longest silence allowed between two stream chunks.
    pub stream_idle_timeout: Duration,
    /// Longest life of a whole stream; `None` means `request_timeout`.
    pub stream_max: Option<Duration>,
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Demo/mock provider, labelled simulated everywhere.
    pub simulated: bool,
}

impl ProviderConfig {
    /// A provider with the default limits and timeouts.
    pub fn new(name: impl Into<String>, kind: ProviderKind, base_url: impl Into<String>) -> Self {
        // The provider module owns the defaults; this only mirrors the configurable subset.
        let d = exai_actors::provider::ProviderSettings::new(String::new(), kind.actor_kind());
        Self {
            name: name.into(),
            kind,
            base_url: base_url.into(),
            api_key: None,
            models: Vec::new(),
            max_concurrency: d.max_concurrency,
            max_queue: d.max_queue,
            connect_timeout: d.connect_timeout,
            request_timeout: d.request_timeout,
            stream_idle_timeout: d.stream_idle_timeout,
            stream_max: d.stream_max,
            max_retries: d.max_retries,
            simulated: false,
        }
    }
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
    /// Upstream providers.
    pub providers: Vec<ProviderConfig>,
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
                    .map_err(|e: toml::de::Error| vec![toml_syntax_error(&path, &text, &e)])?;
                Some((path, table))
            }
        };
        Ok(Self { file, env })
    }
}

/// Reads settings from both sources, remembering every problem and every toml key used.
struct Reader<'a> {
    /// The toml table, if any.
    table: Option<&'a toml::Table>,
    /// Environment variables.
    env: &'a HashMap<String, String>,
    /// Dotted toml keys consumed so far.
    used: HashSet<String>,
    /// Every dotted toml key looked up, present or not: the candidates for "did you mean".
    known: HashSet<String>,
    /// Problems found so far.
    errors: Vec<ConfigError>,
}

/// A raw value and the key it came from.
struct Raw {
    /// Key to name in errors.
    key: String,
    /// The value.
    value: toml::Value,
}

impl<'a> Reader<'a> {
    fn lookup_toml(&mut self, path: &str) -> Option<toml::Value> {
        if !self.known.contains(path) {
            self.known.insert(path.to_owned());
        }
        let mut node: &toml::Table = self.table?;
        let parts: Vec<&str> = path.split('.').collect();
        for (i, part) in parts.iter().enumerate() {
            let value = node.get(*part)?;
            if i + 1 == parts.len() {
                self.used.insert(path.to_owned());
                return Some(value.clone());
            }
            node = value.as_table()?;
        }
        None
    }

    /// The raw value: the first set environment variable wins, then the toml key.
    fn raw(&mut self, toml_key: &str, env_keys: &[&str]) -> Option<Raw> {
        let from_toml = self.lookup_toml(toml_key);
        for name in env_keys {
            if let Some(v) = self.env.get(*name) {
                return Some(Raw {
                    key: (*name).to_owned(),
                    value: toml::Value::String(v.clone()),
                });
            }
        }
        from_toml.map(|value| Raw {
            key: toml_key.to_owned(),
            value,
        })
    }

    fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            key: key.into(),
            message: message.into(),
        });
    }

    /// A setting parsed from a string or a toml scalar, with a default.
    fn get<T: FromStr>(&mut self, toml_key: &str, env_keys: &[&str], default: T, what: &str) -> T
    where
        T::Err: std::fmt::Display,
    {
        self.get_opt(toml_key, env_keys, what).unwrap_or(default)
    }

    fn get_opt<T: FromStr>(&mut self, toml_key: &str, env_keys: &[&str], what: &str) -> Option<T>
    where
        T::Err: std::fmt::Display,
    {
        let raw = self.raw(toml_key, env_keys)?;
        let text = match &raw.value {
            toml::Value::String(s) => s.trim().to_owned(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => {
                self.error(raw.key, format!("expected {what}, got a table or array"));
                return None;
            }
        };
        match text.parse::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(raw.key, format!("expected {what}, got {text:?} ({e})"));
                None
            }
        }
    }

    /// A string setting that is empty when unset.
    fn get_string(&mut self, toml_key: &str, env_keys: &[&str]) -> Option<(String, String)> {
        let raw = self.raw(toml_key, env_keys)?;
        match raw.value {
            toml::Value::String(s) if s.trim().is_empty() => None,
            toml::Value::String(s) => Some((raw.key, s.trim().to_owned())),
            _ => {
                self.error(raw.key, "expected a string");
                None
            }
        }
    }

    /// A positive number of seconds (fractions allowed).
    fn secs(&mut self, toml_key: &str, env_keys: &[&str], default: Duration) -> Duration {
        match self.get_opt::<f64>(toml_key, env_keys, "a number of seconds") {
            Some(s) if s.is_finite() && s > 0.0 && s < 1e9 => Duration::from_secs_f64(s),
            Some(s) => {
                let key = self.key_of(toml_key, env_keys);
                self.error(
                    key,
                    format!("must be a positive number of seconds, got {s}"),
                );
                default
            }
            None => default,
        }
    }

    /// A positive number of milliseconds.
    fn millis(&mut self, toml_key: &str, env_keys: &[&str], default: Duration) -> Duration {
        match self.get_opt::<u64>(toml_key, env_keys, "a number of milliseconds") {
            Some(0) => {
                let key = self.key_of(toml_key, env_keys);
                self.error(key, "must be at least 1 ms");
                default
            }
            Some(ms) => Duration::from_millis(ms),
            None => default,
        }
    }

    /// A secret token, at least [`MIN_TOKEN_LEN`] characters when set.
    fn token(&mut self, toml_key: &str, env_keys: &[&str]) -> Option<SecretString> {
        let (key, value) = self.get_string(toml_key, env_keys)?;
        if value.chars().count() < MIN_TOKEN_LEN {
            self.error(
                key,
                format!(
                    "token too short: {} characters, at least {MIN_TOKEN_LEN} required",
                    value.chars().count()
                ),
            );
            return None;
        }
        Some(SecretString::from(value))
    }

    /// A URL with one of the given schemes.
    fn url(&mut self, toml_key: &str, env_keys: &[&str], schemes: &[&str]) -> Option<String> {
        let (key, value) = self.get_string(toml_key, env_keys)?;
        check_url(&key, &value, schemes)
            .map_err(|e| self.errors.push(e))
            .ok()?;
        Some(value)
    }

    /// The key a problem should name: the env var if one is set, else the toml key.
    fn key_of(&self, toml_key: &str, env_keys: &[&str]) -> String {
        env_keys
            .iter()
            .find(|k| self.env.contains_key(**k))
            .map(|k| (*k).to_owned())
            .unwrap_or_else(|| toml_key.to_owned())
    }

    /// Every toml key not consumed is unknown.
    fn report_unknown(&mut self, prefix: &str, table: &toml::Table) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if self.used.contains(&path) {
                continue;
            }
            match v {
                toml::Value::Table(t) if KNOWN_SECTIONS.contains(&path.as_str()) => {
                    self.report_unknown(&path, t)
                }
                _ => {
                    let message = unknown_key_text(self.closest_known(&path).as_deref());
                    self.error(path, message)
                }
            }
        }
    }
}

impl Reader<'_> {
    /// The known key in the same section closest to `path`, if it is a plausible typo.
    fn closest_known(&self, path: &str) -> Option<String> {
        let (section, key) = path.rsplit_once('.').unwrap_or(("", path));
        nearest(
            key,
            self.known.iter().filter_map(|k| {
                let (s, name) = k.rsplit_once('.').unwrap_or(("", k.as_str()));
                (s == section).then_some(name)
            }),
        )
        .map(str::to_owned)
    }
}

/// Keys a `[[providers]]` entry takes.
const PROVIDER_KEYS: &[&str] = &[
    "name",
    "kind",
    "base_url",
    "api_key",
    "models",
    "max_concurrency",
    "max_queue",
    "connect_timeout_s",
    "request_timeout_s",
    "stream_idle_timeout_s",
    "stream_max_s",
    "max_retries",
    "simulated",
];

/// The candidate closest to `key`, if it is near enough to be a plausible typo.
fn nearest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|name| (strsim::levenshtein(key, name), name))
        .filter(|(d, name)| *d <= 2.max(name.len() / 4))
        .min()
        .map(|(_, name)| name)
}

/// "unknown key in exai.toml", with the nearest of `candidates` when there is one.
fn unknown_key_message<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> String {
    unknown_key_text(nearest(key, candidates))
}

/// "unknown key in exai.toml", suggesting `near` when there is one.
fn unknown_key_text(near: Option<&str>) -> String {
    match near {
        Some(near) => format!("unknown key in exai.toml (did you mean `{near}`?)"),
        None => "unknown key in exai.toml".to_owned(),
    }
}

/// A TOML syntax error naming the file, line, column and (when the error has one) the key.
fn toml_syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
    let mut key = path.display().to_string();
    let mut message = format!("not valid TOML: {}", e.message().trim_end());
    if let Some(span) = e.span() {
        let start = span.start.min(text.len());
        let before = &text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        key = format!("{key}:{line}:{column}");
        let at = text.get(span.clone()).unwrap_or("").trim();
        if !at.is_empty() && at.len() <= 64 && !at.contains('\n') {
            message.push_str(&format!(" (at `{at}`)"));
        }
    }
    ConfigError { key, message }
}

/// Tables whose keys are checked one by one.
const KNOWN_SECTIONS: &[&str] = &[
    "server",
    "storage",
    "log",
    "supervisor",
    "metrics",
    "cache",
    "registry",
    "tools",
    "upstream",
];

/// Checks that `value` parses as a URL with one of `schemes`.
fn check_url(key: &str, value: &str, schemes: &[&str]) -> Result<url::Url, ConfigError> {
    let parsed = url::Url::parse(value).map_err(|e| ConfigError {
        key: key.to_owned(),
        message: format!("not a valid URL: {e}"),
    })?;
    if !schemes.contains(&parsed.scheme()) {
        return Err(ConfigError {
            key: key.to_owned(),
            message: format!(
                "unsupported URL scheme {:?} (expected {})",
                parsed.scheme(),
                schemes.join(" or ")
            ),
        });
    }
    Ok(parsed)
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

    /// Builds and validates a configuration from explicit sources, collecting every problem.
    pub fn from_sources(sources: &Sources, cli: &CliOverrides) -> Result<Self, Vec<ConfigError>> {
        let mut r = Reader {
            table: sources.file.as_ref().map(|(_, t)| t),
            env: &sources.env,
            used: HashSet::new(),
            known: HashSet::new(),
            errors: Vec::new(),
        };

        // --- server
        let configured_host = r
            .get_string("server.host", &["EXAI_WS_HOST"])
            .map(|(_, v)| v);
        let host_text = cli
            .host
            .clone()
            .or(configured_host)
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let host = match host_text.as_str() {
            "localhost" => IpAddr::from([127, 0, 0, 1]),
            other => other.parse().unwrap_or_else(|_| {
                let key = r.key_of("server.host", &["EXAI_WS_HOST"]);
                r.error(key, format!("not an IP address: {other:?}"));
                IpAddr::from([127, 0, 0, 1])
            }),
        };
        let configured_port = r.get(
            "server.port",
            &["EXAI_WS_PORT"],
            DEFAULT_PORT,
            "a port number 0-65535",
        );
        let port = cli.port.unwrap_or(configured_port);
        let token = r.token("server.token", &["EXAI_WS_TOKEN"]);
        let dashboard_token = r.token("server.dashboard_token", &["EXAI_DASHBOARD_TOKEN"]);
        let allow_no_auth = cli.allow_no_auth
            || r.get(
                "server.allow_no_auth",
                &["EXAI_ALLOW_NO_AUTH"],
                false,
                "true or false",
            );
        let max_message_bytes = r.get(
            "server.max_message_bytes",
            &["EXAI_WS_MAX_BYTES"],
            32 * 1024 * 1024,
            "a number of bytes",
        );
        let session_max_inflight = r.get(
            "server.session_max_inflight",
            &["EXAI_WS_SESSION_MAX_INFLIGHT"],
            8usize,
            "a positive integer",
        );
        let global_max_inflight = r.get(
            "server.global_max_inflight",
            &["EXAI_WS_GLOBAL_MAX_INFLIGHT"],
            24usize,
            "a positive integer",
        );
        if session_max_inflight == 0 {
            let key = r.key_of(
                "server.session_max_inflight",
                &["EXAI_WS_SESSION_MAX_INFLIGHT"],
            );
            r.error(key, "must be at least 1");
        }
        if global_max_inflight <= session_max_inflight {
            let key = r.key_of(
                "server.global_max_inflight",
                &["EXAI_WS_GLOBAL_MAX_INFLIGHT"],
            );
            r.error(
                key,
                format!(
                    "global in-flight limit ({global_max_inflight}) must be larger than the \
                     per-session limit ({session_max_inflight})"
                ),
            );
        }
        let v1_max_inflight = r.get(
            "server.v1_max_inflight",
            &["EXAI_V1_MAX_INFLIGHT"],
            4096usize,
            "a positive integer",
        );
        let hello_timeout = r.secs(
            "server.hello_timeout_s",
            &["EXAI_WS_HELLO_TIMEOUT"],
            Duration::from_secs(15),
        );
        let max_connections = r.get(
            "server.max_connections",
            &["EXAI_WS_MAX_CONNECTIONS"],
            1000usize,
            "a positive integer",
        );
        let max_connections_per_ip = r.get(
            "server.max_connections_per_ip",
            &["EXAI_WS_MAX_CONNECTIONS_PER_IP"],
            10usize,
            "a positive integer",
        );
        let tool_timeout = r.secs(
            "server.tool_timeout_s",
            &["EXAI_TOOL_TIMEOUT"],
            Duration::from_secs(300),
        );
        let session_rate = (
            positive(
                &mut r,
                "server.session_rate",
                &["EXAI_WS_SESSION_RATE"],
                50.0,
            ),
            positive(
                &mut r,
                "server.session_burst",
                &["EXAI_WS_SESSION_BURST"],
                100.0,
            ),
        );
        let ip_rate = (
            positive(&mut r, "server.ip_rate", &["EXAI_WS_IP_RATE"], 200.0),
            positive(&mut r, "server.ip_burst", &["EXAI_WS_IP_BURST"], 400.0),
        );
        let heartbeat_interval = r.millis(
            "server.heartbeat_interval_ms",
            &["EXAI_WS_HEARTBEAT_INTERVAL_MS"],
            Duration::from_secs(30),
        );
        let client_timeout = r.millis(
            "server.client_timeout_ms",
            &["EXAI_WS_CLIENT_TIMEOUT_MS"],
            Duration::from_secs(90),
        );
        if client_timeout <= heartbeat_interval {
            let key = r.key_of("server.client_timeout_ms", &["EXAI_WS_CLIENT_TIMEOUT_MS"]);
            r.error(key, "must be longer than the heartbeat interval");
        }
        let progress_interval = r.millis(
            "server.progress_interval_ms",
            &["EXAI_WS_PROGRESS_INTERVAL_MS"],
            Duration::from_secs(5),
        );
        let conversation_capacity = r.get(
            "server.conversation_capacity",
            &["EXAI_CONVERSATION_CAPACITY"],
            10_000u64,
            "a positive integer",
        );
        let conversation_ttl = r.secs(
            "server.conversation_ttl_s",
            &["EXAI_CONVERSATION_TTL"],
            Duration::from_secs(3 * 3600),
        );
        let mcp_session_ttl = r.secs(
            "server.mcp_session_ttl_s",
            &["EXAI_MCP_SESSION_TTL"],
            Duration::from_secs(3600),
        );
        let mcp_max_sessions: usize = r.get(
            "server.mcp_max_sessions",
            &["EXAI_MCP_MAX_SESSIONS"],
            1000,
            "a positive integer",
        );
        if mcp_max_sessions == 0 {
            let key = r.key_of("server.mcp_max_sessions", &["EXAI_MCP_MAX_SESSIONS"]);
            r.error(key, "must be at least 1");
        }
        let dashboard_client_queue: usize = r.get(
            "server.dashboard_client_queue",
            &["EXAI_DASHBOARD_CLIENT_QUEUE"],
            256,
            "a positive integer",
        );
        if dashboard_client_queue == 0 {
            let key = r.key_of(
                "server.dashboard_client_queue",
                &["EXAI_DASHBOARD_CLIENT_QUEUE"],
            );
            r.error(key, "must be at least 1");
        }
        let dashboard_evict_after_dropped = r.get(
            "server.dashboard_evict_after_dropped",
            &["EXAI_DASHBOARD_EVICT_AFTER_DROPPED"],
            5_000u64,
            "a positive integer",
        );
        let dashboard_evict_after_full = r.millis(
            "server.dashboard_evict_after_full_ms",
            &["EXAI_DASHBOARD_EVICT_AFTER_FULL_MS"],
            Duration::from_secs(10),
        );
        let shutdown_grace = r.secs(
            "server.shutdown_grace_s",
            &["EXAI_SHUTDOWN_GRACE"],
            Duration::from_secs(25),
        );
        let shutdown_ready_delay = r.millis(
            "server.shutdown_ready_delay_ms",
            &["EXAI_SHUTDOWN_READY_DELAY_MS"],
            Duration::from_millis(1000),
        );

        // --- HTTP hardening: origins, request bodies, pre-hello connections (issue 12)
        let allowed_origins = allowed_origins(&mut r);
        let http_body_timeout = r.millis(
            "server.http_body_timeout_ms",
            &["EXAI_HTTP_BODY_TIMEOUT_MS"],
            Duration::from_secs(10),
        );
        let http_max_body_bytes_in_flight: usize = r.get(
            "server.http_max_body_bytes_in_flight",
            &["EXAI_HTTP_MAX_BODY_BYTES_IN_FLIGHT"],
            256 * 1024 * 1024,
            "a number of bytes",
        );
        if http_max_body_bytes_in_flight == 0 {
            let key = r.key_of(
                "server.http_max_body_bytes_in_flight",
                &["EXAI_HTTP_MAX_BODY_BYTES_IN_FLIGHT"],
            );
            r.error(key, "must be at least 1");
        }
        let max_pending_hello: usize = r.get(
            "server.max_pending_hello",
            &["EXAI_WS_MAX_PENDING_HELLO"],
            (max_connections / 4).max(1),
            "a positive integer",
        );
        if max_pending_hello == 0 || max_pending_hello > max_connections {
            let key = r.key_of("server.max_pending_hello", &["EXAI_WS_MAX_PENDING_HELLO"]);
            r.error(
                key,
                format!("must be between 1 and the connection limit ({max_connections})"),
            );
        }

        // --- process and storage
        let instance = r
            .get_string("instance", &["EXAI_INSTANCE"])
            .map(|(_, v)| v)
            .unwrap_or_else(|| default_instance(port));
        let data_dir = r
            .get_string("storage.data_dir", &["EXAI_DATA_DIR"])
            .map(|(_, v)| PathBuf::from(v))
            .unwrap_or_else(|| PathBuf::from("data"));
        let database_url = r
            .url(
                "storage.database_url",
                &["EXAI_DATABASE_URL", "DATABASE_URL"],
                &["sqlite", "postgres", "postgresql"],
            )
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("exai.db").display()));
        check_data_dir(&data_dir, &r.key_of("storage.data_dir", &["EXAI_DATA_DIR"]))
            .unwrap_or_else(|e| r.errors.push(e));

        // --- log
        let filter = r
            .get_string("log.filter", &["EXAI_LOG"])
            .map(|(_, v)| v)
            .unwrap_or_else(|| "info".to_owned());
        let format = match r.get_string("log.format", &["EXAI_LOG_FORMAT"]) {
            None => LogFormat::Pretty,
            Some((_, v)) if v == "pretty" || v == "text" => LogFormat::Pretty,
            Some((_, v)) if v == "json" => LogFormat::Json,
            Some((key, v)) => {
                r.error(key, format!("expected json or pretty, got {v:?}"));
                LogFormat::Pretty
            }
        };

        // --- supervisor
        let supervisor = SupervisorConfig {
            max_restarts: r.get(
                "supervisor.max_restarts",
                &["EXAI_SUPERVISOR_MAX_RESTARTS"],
                5u32,
                "a non-negative integer",
            ),
            restart_window: r.secs(
                "supervisor.restart_window_s",
                &["EXAI_SUPERVISOR_RESTART_WINDOW"],
                Duration::from_secs(60),
            ),
            check_interval: r.millis(
                "supervisor.check_interval_ms",
                &["EXAI_SUPERVISOR_CHECK_INTERVAL_MS"],
                Duration::from_millis(200),
            ),
            ping_timeout: r.millis(
                "supervisor.ping_timeout_ms",
                &["EXAI_SUPERVISOR_PING_TIMEOUT_MS"],
                Duration::from_millis(2000),
            ),
            backoff_initial: r.millis(
                "supervisor.backoff_initial_ms",
                &["EXAI_SUPERVISOR_BACKOFF_INITIAL_MS"],
                Duration::from_millis(50),
            ),
            backoff_max: r.millis(
                "supervisor.backoff_max_ms",
                &["EXAI_SUPERVISOR_BACKOFF_MAX_MS"],
                Duration::from_millis(5000),
            ),
        };

        // --- metrics
        let batch_size: usize = r.get(
            "metrics.buffer_size",
            &["METRICS_BUFFER_SIZE"],
            50,
            "a positive integer",
        );
        if batch_size == 0 {
            let key = r.key_of("metrics.buffer_size", &["METRICS_BUFFER_SIZE"]);
            r.error(key, "must be at least 1");
        }
        let max_buffered: usize = r.get(
            "metrics.max_buffered",
            &["EXAI_METRICS_MAX_BUFFERED"],
            100_000,
            "a positive integer",
        );
        if max_buffered < batch_size {
            let key = r.key_of("metrics.max_buffered", &["EXAI_METRICS_MAX_BUFFERED"]);
            r.error(
                key,
                format!("must be at least the flush batch size ({batch_size})"),
            );
        }
        let fsync = match r.get_string("metrics.fsync", &["EXAI_METRICS_FSYNC"]) {
            None => FsyncPolicy::Batch,
            Some((_, v)) if v == "always" => FsyncPolicy::Always,
            Some((_, v)) if v == "batch" => FsyncPolicy::Batch,
            Some((_, v)) if v == "never" => FsyncPolicy::Never,
            Some((key, v)) => {
                r.error(key, format!("expected always, batch or never, got {v:?}"));
                FsyncPolicy::Batch
            }
        };
        const DAY: u64 = 24 * 3600;
        let metrics = MetricsConfig {
            batch_size: batch_size.max(1),
            flush_interval: r.millis(
                "metrics.flush_interval_ms",
                &["EXAI_METRICS_FLUSH_INTERVAL_MS"],
                Duration::from_millis(1000),
            ),
            max_buffered,
            fsync,
            retention_raw: days(
                r.get(
                    "metrics.retention_raw_days",
                    &["EXAI_RETENTION_RAW_DAYS"],
                    7u64,
                    "days",
                ),
                DAY,
            ),
            retention_1min: days(
                r.get(
                    "metrics.retention_1min_days",
                    &["EXAI_RETENTION_1MIN_DAYS"],
                    30u64,
                    "days",
                ),
                DAY,
            ),
            retention_1hour: days(
                r.get(
                    "metrics.retention_1hour_days",
                    &["EXAI_RETENTION_1HOUR_DAYS"],
                    365u64,
                    "days",
                ),
                DAY,
            ),
        };

        // --- cache
        let cache = CacheConfig {
            enabled: r.get(
                "cache.enabled",
                &["EXAI_CACHE_ENABLED"],
                true,
                "true or false",
            ),
            ttl: r.secs(
                "cache.ttl_s",
                &["SEMANTIC_CACHE_TTL_SECONDS"],
                Duration::from_secs(600),
            ),
            l2_ttl: r.secs(
                "cache.l2_ttl_s",
                &["EXAI_CACHE_L2_TTL_SECONDS"],
                Duration::from_secs(1800),
            ),
            max_response_bytes: r.get(
                "cache.max_response_bytes",
                &["SEMANTIC_CACHE_MAX_RESPONSE_SIZE"],
                1024 * 1024,
                "a number of bytes",
            ),
            l1_capacity_bytes: r.get(
                "cache.l1_capacity_bytes",
                &["EXAI_CACHE_L1_BYTES"],
                256 * 1024 * 1024,
                "a number of bytes",
            ),
            redis_url: r
                .url("cache.redis_url", &["REDIS_URL"], &["redis", "rediss"])
                .map(SecretString::from),
            redis_timeout: r.millis(
                "cache.redis_timeout_ms",
                &["EXAI_REDIS_TIMEOUT_MS"],
                Duration::from_millis(50),
            ),
        };

        // --- registry
        let fallback = read_fallback(&mut r);
        let aliases = read_aliases(&mut r);
        let registry = RegistryConfig {
            cache_ttl: r.secs(
                "registry.cache_ttl_s",
                &["REGISTRY_CACHE_TTL"],
                Duration::from_secs(300),
            ),
            default_model: r
                .get_string(
                    "registry.default_model",
                    &["EXAI_DEFAULT_MODEL", "DEFAULT_MODEL"],
                )
                .map(|(_, v)| v),
            fallback,
            max_attempts: r.get(
                "registry.max_attempts",
                &["EXAI_MAX_ATTEMPTS"],
                3u32,
                "a positive integer",
            ),
            aliases,
        };

        // --- upstream limits
        let byte_limit = |r: &mut Reader<'_>, toml_key: &str, env: &str, default: usize| {
            let n: usize = r.get(toml_key, &[env], default, "a number of bytes");
            if n == 0 {
                let key = r.key_of(toml_key, &[env]);
                r.error(key, "must be at least 1 byte");
            }
            n.max(1)
        };
        let upstream = UpstreamConfig {
            max_bytes: byte_limit(
                &mut r,
                "upstream.max_bytes",
                "EXAI_UPSTREAM_MAX_BYTES",
                exai_actors::provider::DEFAULT_UPSTREAM_MAX_BYTES,
            ),
            sse_max_event_bytes: byte_limit(
                &mut r,
                "upstream.sse_max_event_bytes",
                "EXAI_SSE_MAX_EVENT_BYTES",
                exai_actors::provider::DEFAULT_SSE_MAX_EVENT_BYTES,
            ),
        };

        // --- providers
        let providers = read_providers(&mut r);

        // --- tools
        let tools = read_tools(&mut r);

        // --- cross-field rules
        if !host.is_loopback() && token.is_none() && !allow_no_auth {
            let key = r.key_of("server.host", &["EXAI_WS_HOST"]);
            r.error(
                key,
                format!(
                    "binding non-loopback address {host} without EXAI_WS_TOKEN is refused; set a \
                     token or pass --allow-no-auth"
                ),
            );
        }

        if let Some((_, table)) = &sources.file {
            let table = table.clone();
            r.report_unknown("", &table);
        }

        if !r.errors.is_empty() {
            return Err(r.errors);
        }
        Ok(Config {
            file: sources.file.as_ref().map(|(p, _)| p.clone()),
            server: ServerConfig {
                host,
                port,
                token,
                dashboard_token,
                allow_no_auth,
                max_message_bytes,
                session_max_inflight,
                global_max_inflight,
                v1_max_inflight,
                hello_timeout,
                max_connections,
                max_connections_per_ip,
                tool_timeout,
                session_rate,
                ip_rate,
                heartbeat_interval,
                client_timeout,
                progress_interval,
                conversation_capacity,
                conversation_ttl,
                mcp_session_ttl,
                mcp_max_sessions: mcp_max_sessions.max(1),
                dashboard_client_queue: dashboard_client_queue.max(1),
                dashboard_evict_after_dropped,
                dashboard_evict_after_full,
                shutdown_grace,
                shutdown_ready_delay,
                allowed_origins,
                http_body_timeout,
                http_max_body_bytes_in_flight,
                max_pending_hello,
            },
            instance,
            data_dir,
            database_url: SecretString::from(database_url),
            log: LogConfig { filter, format },
            supervisor,
            metrics,
            cache,
            registry,
            upstream,
            providers,
            tools,
        })
    }

    /// The effective configuration as JSON, secrets shown as `[redacted]`.
    pub fn redacted(&self) -> Value {
        let secret = |s: &Option<SecretString>| s.as_ref().map(|_| "[redacted]");
        json!({
            "file": self.file.as_ref().map(|p| p.display().to_string()),
            "instance": self.instance,
            "server": {
                "host": self.server.host.to_string(),
                "port": self.server.port,
                "token": secret(&self.server.token),
                "dashboard_token": secret(&self.server.dashboard_token),
                "allow_no_auth": self.server.allow_no_auth,
                "max_message_bytes": self.server.max_message_bytes,
                "session_max_inflight": self.server.session_max_inflight,
                "global_max_inflight": self.server.global_max_inflight,
                "v1_max_inflight": self.server.v1_max_inflight,
                "hello_timeout_s": self.server.hello_timeout.as_secs_f64(),
                "max_connections": self.server.max_connections,
                "max_connections_per_ip": self.server.max_connections_per_ip,
                "tool_timeout_s": self.server.tool_timeout.as_secs_f64(),
                "session_rate": self.server.session_rate.0,
                "session_burst": self.server.session_rate.1,
                "ip_rate": self.server.ip_rate.0,
                "ip_burst": self.server.ip_rate.1,
                "heartbeat_interval_ms": self.server.heartbeat_interval.as_millis() as u64,
                "client_timeout_ms": self.server.client_timeout.as_millis() as u64,
                "progress_interval_ms": self.server.progress_interval.as_millis() as u64,
                "conversation_capacity": self.server.conversation_capacity,
                "conversation_ttl_s": self.server.conversation_ttl.as_secs_f64(),
                "mcp_session_ttl_s": self.server.mcp_session_ttl.as_secs_f64(),
                "mcp_max_sessions": self.server.mcp_max_sessions,
                "dashboard_client_queue": self.server.dashboard_client_queue,
                "dashboard_evict_after_dropped": self.server.dashboard_evict_after_dropped,
                "dashboard_evict_after_full_ms": self.server.dashboard_evict_after_full.as_millis() as u64,
                "shutdown_grace_s": self.server.shutdown_grace.as_secs_f64(),
                "shutdown_ready_delay_ms": self.server.shutdown_ready_delay.as_millis() as u64,
                "allowed_origins": self.server.allowed_origins,
                "http_body_timeout_ms": self.server.http_body_timeout.as_millis() as u64,
                "http_max_body_bytes_in_flight": self.server.http_max_body_bytes_in_flight,
                "max_pending_hello": self.server.max_pending_hello,
            },
            "storage": {
                "data_dir": self.data_dir.display().to_string(),
                "database_url": redact_url(self.database_url.expose_secret()),
            },
            "log": {
                "filter": self.log.filter,
                "format": match self.log.format { LogFormat::Pretty => "pretty", LogFormat::Json => "json" },
            },
            "supervisor": {
                "max_restarts": self.supervisor.max_restarts,
                "restart_window_s": self.supervisor.restart_window.as_secs_f64(),
                "check_interval_ms": self.supervisor.check_interval.as_millis() as u64,
                "ping_timeout_ms": self.supervisor.ping_timeout.as_millis() as u64,
                "backoff_initial_ms": self.supervisor.backoff_initial.as_millis() as u64,
                "backoff_max_ms": self.supervisor.backoff_max.as_millis() as u64,
            },
            "metrics": {
                "buffer_size": self.metrics.batch_size,
                "flush_interval_ms": self.metrics.flush_interval.as_millis() as u64,
                "max_buffered": self.metrics.max_buffered,
                "fsync": format!("{:?}", self.metrics.fsync).to_lowercase(),
                "retention_raw_days": self.metrics.retention_raw.as_secs() / 86_400,
                "retention_1min_days": self.metrics.retention_1min.as_secs() / 86_400,
                "retention_1hour_days": self.metrics.retention_1hour.as_secs() / 86_400,
            },
            "cache": {
                "enabled": self.cache.enabled,
                "ttl_s": self.cache.ttl.as_secs_f64(),
                "l2_ttl_s": self.cache.l2_ttl.as_secs_f64(),
                "max_response_bytes": self.cache.max_response_bytes,
                "l1_capacity_bytes": self.cache.l1_capacity_bytes,
                "redis_url": self.cache.redis_url.as_ref().map(|u| redact_url(u.expose_secret())),
                "redis_timeout_ms": self.cache.redis_timeout.as_millis() as u64,
            },
            "registry": {
                "cache_ttl_s": self.registry.cache_ttl.as_secs_f64(),
                "default_model": self.registry.default_model,
                "fallback": self.registry.fallback,
                "aliases": self.registry.aliases,
                "max_attempts": self.registry.max_attempts,
            },
            "tools": {
                "file_roots": self.tools.file_roots.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
                "file_max_bytes": self.tools.file_max_bytes,
            },
            "upstream": {
                "max_bytes": self.upstream.max_bytes,
                "sse_max_event_bytes": self.upstream.sse_max_event_bytes,
            },
            "providers": self.providers.iter().map(|p| json!({
                "name": p.name,
                "kind": p.kind.as_str(),
                "base_url": redact_url(&p.base_url),
                "api_key": secret(&p.api_key),
                "models": p.models,
                "max_concurrency": p.max_concurrency,
                "max_queue": p.max_queue,
                "connect_timeout_s": p.connect_timeout.as_secs_f64(),
                "request_timeout_s": p.request_timeout.as_secs_f64(),
                "stream_idle_timeout_s": p.stream_idle_timeout.as_secs_f64(),
                "stream_max_s": p.stream_max.unwrap_or(p.request_timeout).as_secs_f64(),
                "max_retries": p.max_retries,
                "simulated": p.simulated,
            })).collect::<Vec<_>>(),
        })
    }
}

/// `EXAI_ALLOWED_ORIGINS` (comma-separated) or `server.allowed_origins` (an array or a
/// comma-separated string): exact browser origins, each `http(s)://host[:port]` with no path.
fn allowed_origins(r: &mut Reader<'_>) -> Vec<String> {
    const TOML_KEY: &str = "server.allowed_origins";
    const ENV_KEYS: &[&str] = &["EXAI_ALLOWED_ORIGINS"];
    let Some(raw) = r.raw(TOML_KEY, ENV_KEYS) else {
        return Vec::new();
    };
    let items: Vec<String> = match &raw.value {
        toml::Value::String(s) => s.split(',').map(str::to_owned).collect(),
        toml::Value::Array(a) if a.iter().all(toml::Value::is_str) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => {
            r.error(raw.key, "expected a list of origins");
            return Vec::new();
        }
    };
    let mut origins = Vec::new();
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        match crate::http::origin::normalize_origin(item) {
            Some(origin) => origins.push(origin),
            None => r.error(
                raw.key.clone(),
                format!("{item:?} is not an origin like https://app.example or http://host:3000"),
            ),
        }
    }
    origins
}

/// A positive finite number.
fn positive(r: &mut Reader<'_>, toml_key: &str, env_keys: &[&str], default: f64) -> f64 {
    match r.get_opt::<f64>(toml_key, env_keys, "a positive number") {
        Some(v) if v.is_finite() && v > 0.0 => v,
        Some(v) => {
            let key = r.key_of(toml_key, env_keys);
            r.error(key, format!("must be a positive number, got {v}"));
            default
        }
        None => default,
    }
}

fn days(n: u64, day: u64) -> Duration {
    Duration::from_secs(n.saturating_mul(day))
}

/// `host:port` of this process, or a fallback when the host name is unknown.
fn default_instance(port: u16) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "exai".to_owned());
    format!("{host}:{port}")
}

/// Replaces a URL's password with `[redacted]`.
pub fn redact_url(raw: &str) -> String {
    exai_actors::provider::redact_url(raw)
}

/// The data directory must exist (or be creatable) and be writable.
fn check_data_dir(dir: &Path, key: &str) -> Result<(), ConfigError> {
    let fail = |message: String| ConfigError {
        key: key.to_owned(),
        message,
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        fail(format!(
            "cannot create data directory {}: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(format!(".exai-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"ok").map_err(|e| {
        fail(format!(
            "data directory {} is not writable: {e}",
            dir.display()
        ))
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// `[tools]`: `file_roots` (`EXAI_FILE_ROOTS`, a path list like `PATH`, or a toml array) and
/// `file_max_bytes` (`EXAI_FILE_MAX_BYTES`).
fn read_tools(r: &mut Reader<'_>) -> ToolsConfig {
    const ROOTS_KEY: &str = "tools.file_roots";
    let env_roots = r.env.get(crate::files::ROOTS_ENV).cloned();
    let toml_roots = r.lookup_toml(ROOTS_KEY);
    let (key, listed): (String, Option<Vec<PathBuf>>) = match (env_roots, toml_roots) {
        (Some(v), _) => (
            crate::files::ROOTS_ENV.to_owned(),
            Some(
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect(),
            ),
        ),
        (None, Some(toml::Value::Array(a))) => {
            let paths: Option<Vec<PathBuf>> =
                a.iter().map(|v| v.as_str().map(PathBuf::from)).collect();
            if paths.is_none() {
                r.error(ROOTS_KEY, "expected an array of directory paths");
            }
            (ROOTS_KEY.to_owned(), paths)
        }
        (None, Some(toml::Value::String(v))) => (
            ROOTS_KEY.to_owned(),
            Some(
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect(),
            ),
        ),
        (None, Some(_)) => {
            r.error(ROOTS_KEY, "expected an array of directory paths");
            (ROOTS_KEY.to_owned(), None)
        }
        (None, None) => (ROOTS_KEY.to_owned(), None),
    };
    let listed = listed
        .filter(|l| !l.is_empty())
        .or_else(|| std::env::current_dir().ok().map(|d| vec![d]))
        .unwrap_or_default();
    let file_roots = match crate::files::FileRoots::canonical_roots(&listed) {
        Ok(roots) => roots,
        Err(e) => {
            r.error(key, e);
            Vec::new()
        }
    };
    let file_max_bytes: usize = r.get(
        "tools.file_max_bytes",
        &["EXAI_FILE_MAX_BYTES"],
        crate::files::DEFAULT_MAX_BYTES,
        "a number of bytes",
    );
    if file_max_bytes == 0 {
        let key = r.key_of("tools.file_max_bytes", &["EXAI_FILE_MAX_BYTES"]);
        r.error(key, "must be at least 1");
    }
    ToolsConfig {
        file_roots,
        file_max_bytes: file_max_bytes.max(1),
    }
}

/// `[registry.fallback]`: model = ["next", "after"]. Also `EXAI_FALLBACK` as
/// `model=a,b;other=c`.
fn read_fallback(r: &mut Reader<'_>) -> BTreeMap<String, Vec<String>> {
    let mut chains = BTreeMap::new();
    if let Some(toml::Value::Table(t)) = r.lookup_toml("registry.fallback") {
        for (model, next) in t {
            let list = next.as_array().map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect::<Vec<_>>()
            });
            match list {
                Some(list) if !list.is_empty() => {
                    chains.insert(model, list);
                }
                _ => r.error(
                    format!("registry.fallback.{model}"),
                    "expected a non-empty array of model names",
                ),
            }
        }
    }
    if let Some(spec) = r.env.get("EXAI_FALLBACK").cloned() {
        for part in spec.split(';').filter(|p| !p.trim().is_empty()) {
            match part.split_once('=') {
                Some((model, next)) if !model.trim().is_empty() && !next.trim().is_empty() => {
                    chains.insert(
                        model.trim().to_owned(),
                        next.split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect(),
                    );
                }
                _ => r.error(
                    "EXAI_FALLBACK",
                    format!("expected model=a,b;other=c, got {part:?}"),
                ),
            }
        }
    }
    chains
}

/// `[registry.aliases]`: name = "model". Also `EXAI_MODEL_ALIASES` as
/// `claude-sonnet-4-5=glm-4.6,claude-haiku-4-5=kimi-k2-turbo` (the environment wins).
fn read_aliases(r: &mut Reader<'_>) -> BTreeMap<String, String> {
    let mut aliases = BTreeMap::new();
    if let Some(value) = r.lookup_toml("registry.aliases") {
        match value {
            toml::Value::Table(t) => {
                for (name, target) in t {
                    match target.as_str().filter(|s| !s.trim().is_empty()) {
                        Some(target) => {
                            aliases.insert(name, target.trim().to_owned());
                        }
                        None => {
                            r.error(format!("registry.aliases.{name}"), "expected a model name")
                        }
                    }
                }
            }
            _ => r.error("registry.aliases", "expected a table of name = \"model\""),
        }
    }
    if let Some(spec) = r.env.get("EXAI_MODEL_ALIASES").cloned() {
        for part in spec.split(',').filter(|p| !p.trim().is_empty()) {
            match part.split_once('=') {
                Some((name, target)) if !name.trim().is_empty() && !target.trim().is_empty() => {
                    aliases.insert(name.trim().to_owned(), target.trim().to_owned());
                }
                _ => r.error(
                    "EXAI_MODEL_ALIASES",
                    format!("expected name=model,other=model, got {part:?}"),
                ),
            }
        }
    }
    aliases
}

/// Providers from `[[providers]]` and from the original environment variables.
fn read_providers(r: &mut Reader<'_>) -> Vec<ProviderConfig> {
    let mut out: Vec<ProviderConfig> = Vec::new();
    let defaults = |name: String, kind: ProviderKind, base_url: String| {
        ProviderConfig::new(name, kind, base_url)
    };

    if let Some(value) = r.lookup_toml("providers") {
        let Some(items) = value.as_array() else {
            r.error("providers", "expected an array of tables ([[providers]])");
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let at = |k: &str| format!("providers[{i}].{k}");
            let Some(t) = item.as_table() else {
                r.error(format!("providers[{i}]"), "expected a table");
                continue;
            };
            for k in t.keys() {
                if !PROVIDER_KEYS.contains(&k.as_str()) {
                    r.error(at(k), unknown_key_message(k, PROVIDER_KEYS.iter().copied()));
                }
            }
            let str_of = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_owned);
            let kind = match str_of("kind").map(|k| k.parse::<ProviderKind>()) {
                Some(Ok(k)) => k,
                Some(Err(e)) => {
                    r.error(at("kind"), e);
                    continue;
                }
                None => {
                    r.error(
                        at("kind"),
                        "missing (kimi, glm, openai, openai_compatible or anthropic)",
                    );
                    continue;
                }
            };
            let name = str_of("name").unwrap_or_else(|| kind.as_str().to_owned());
            let base_url = match str_of("base_url").or(kind.default_base_url().map(str::to_owned)) {
                Some(u) => match check_url(&at("base_url"), &u, &["http", "https"]) {
                    Ok(_) => u,
                    Err(e) => {
                        r.errors.push(e);
                        continue;
                    }
                },
                None => {
                    r.error(at("base_url"), "required for openai_compatible providers");
                    continue;
                }
            };
            let mut p = defaults(name, kind, base_url);
            p.api_key = str_of("api_key")
                .filter(|k| !k.is_empty())
                .map(SecretString::from);
            if let Some(models) = t.get("models") {
                match models.as_array() {
                    Some(a) => {
                        p.models = a
                            .iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    }
                    None => r.error(at("models"), "expected an array of model names"),
                }
            }
            let int = |r: &mut Reader<'_>, k: &str, min: i64| -> Option<u64> {
                let v = t.get(k)?;
                match v.as_integer() {
                    Some(n) if n >= min => u64::try_from(n).ok(),
                    _ => {
                        r.error(at(k), format!("expected an integer ≥ {min}"));
                        None
                    }
                }
            };
            let secs = |r: &mut Reader<'_>, k: &str| -> Option<Duration> {
                let v = t.get(k)?;
                match v.as_float().or(v.as_integer().map(|i| i as f64)) {
                    Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
                    _ => {
                        r.error(at(k), "expected a positive number of seconds");
                        None
                    }
                }
            };
            if let Some(n) = int(r, "max_concurrency", 1) {
                p.max_concurrency = n as usize;
            }
            if let Some(n) = int(r, "max_queue", 0) {
                p.max_queue = n as usize;
            }
            if let Some(n) = int(r, "max_retries", 0) {
                p.max_retries = n as u32;
            }
            if let Some(d) = secs(r, "connect_timeout_s") {
                p.connect_timeout = d;
            }
            if let Some(d) = secs(r, "request_timeout_s") {
                p.request_timeout = d;
            }
            if let Some(d) = secs(r, "stream_idle_timeout_s") {
                p.stream_idle_timeout = d;
            }
            if let Some(d) = secs(r, "stream_max_s") {
                p.stream_max = Some(d);
            }
            p.simulated = t
                .get("simulated")
                .and_then(|v| v.as_bool())
                .unwrap_or(false);
            if out.iter().any(|o| o.name == p.name) {
                r.error(at("name"), format!("duplicate provider name {:?}", p.name));
                continue;
            }
            out.push(p);
        }
    }

    // The original daemon's variables. A provider already configured in exai.toml under
    // the same name is left as it is.
    let env_provider = |r: &mut Reader<'_>,
                        out: &mut Vec<ProviderConfig>,
                        name: &str,
                        kind: ProviderKind,
                        key_vars: &[&str],
                        url_var: Option<&str>| {
        let key = key_vars
            .iter()
            .find_map(|k| r.env.get(*k).filter(|v| !v.trim().is_empty()).cloned());
        let url = url_var.and_then(|u| {
            r.env
                .get(u)
                .filter(|v| !v.trim().is_empty())
                .cloned()
                .map(|v| (u, v))
        });
        if key.is_none() && url.is_none() {
            return;
        }
        if out.iter().any(|p| p.name == name) {
            return;
        }
        let base_url = match url {
            Some((var, u)) => match check_url(var, u.trim(), &["http", "https"]) {
                Ok(_) => u.trim().to_owned(),
                Err(e) => {
                    r.errors.push(e);
                    return;
                }
            },
            None => match kind.default_base_url() {
                Some(u) => u.to_owned(),
                None => return,
            },
        };
        let mut p = defaults(name.to_owned(), kind, base_url);
        p.api_key = key.map(|k| SecretString::from(k.trim().to_owned()));
        out.push(p);
    };
    env_provider(
        r,
        &mut out,
        "kimi",
        ProviderKind::Kimi,
        &["KIMI_API_KEY", "MOONSHOT_API_KEY"],
        Some("KIMI_API_URL"),
    );
    env_provider(
        r,
        &mut out,
        "glm",
        ProviderKind::Glm,
        &["GLM_API_KEY", "ZHIPUAI_API_KEY"],
        Some("GLM_API_URL"),
    );
    env_provider(
        r,
        &mut out,
        "openai",
        ProviderKind::OpenAi,
        &["OPENAI_API_KEY"],
        Some("OPENAI_API_URL"),
    );
    let custom_url = r.env.get("CUSTOM_API_URL").cloned();
    if custom_url.is_none() && r.env.contains_key("CUSTOM_API_KEY") {
        r.error("CUSTOM_API_KEY", "set without CUSTOM_API_URL");
    }
    env_provider(
        r,
        &mut out,
        "custom",
        ProviderKind::OpenAiCompatible,
        &["CUSTOM_API_KEY"],
        Some("CUSTOM_API_URL"),
    );
    if let Some(model) = r.env.get("CUSTOM_MODEL_NAME").cloned() {
        match out.iter_mut().find(|p| p.name == "custom") {
            Some(p) => p.models.push(model),
            None => r.error("CUSTOM_MODEL_NAME", "set without CUSTOM_API_URL"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn load(env: &[(&str, &str)], toml_text: Option<&str>) -> Result<Config, Vec<ConfigError>> {
        let dir = tempfile::tempdir().unwrap();
        let mut env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.entry("EXAI_DATA_DIR".into())
            .or_insert_with(|| dir.path().join("data").display().to_string());
        let file = toml_text.map(|t| {
            (
                PathBuf::from("exai.toml"),
                t.parse::<toml::Table>().unwrap(),
            )
        });
        Config::from_sources(&Sources { file, env }, &CliOverrides::default())
    }

    fn keys(errors: &[ConfigError]) -> Vec<&str> {
        errors.iter().map(|e| e.key.as_str()).collect()
    }

    #[test]
    fn a_toml_syntax_error_names_line_column_and_key() {
        let text = "[server]\nport = 9000\nport = 9001\n";
        let e = text.parse::<toml::Table>().unwrap_err();
        let err = toml_syntax_error(Path::new("exai.toml"), text, &e);
        assert_eq!(err.key, "exai.toml:3:1", "{err:?}");
        assert!(err.message.contains("duplicate key"), "{err:?}");
        assert!(err.message.contains("`port`"), "{err:?}");
    }

    #[test]
    fn an_unknown_key_suggests_the_nearest_known_one() {
        let errors = load(&[], Some("[server]\nprot = 1\n[cache]\nzzzzzz = 1\n")).unwrap_err();
        let prot = errors.iter().find(|e| e.key == "server.prot").unwrap();
        assert!(prot.message.contains("did you mean `port`?"), "{prot:?}");
        let far = errors.iter().find(|e| e.key == "cache.zzzzzz").unwrap();
        assert!(!far.message.contains("did you mean"), "{far:?}");
        let errors = load(
            &[],
            Some("[[providers]]\nkind = \"openai_compatible\"\nbase_url = \"http://h/v1\"\nbase_ulr = 1\n"),
        )
        .unwrap_err();
        let typo = errors
            .iter()
            .find(|e| e.key == "providers[0].base_ulr")
            .unwrap();
        assert!(
            typo.message.contains("did you mean `base_url`?"),
            "{typo:?}"
        );
    }

    #[test]
    fn defaults_are_sane() {
        let c = load(&[], None).unwrap();
        assert_eq!(c.server.port, 8079);
        assert_eq!(c.server.host.to_string(), "127.0.0.1");
        assert_eq!(c.server.session_max_inflight, 8);
        assert_eq!(c.server.global_max_inflight, 24);
        assert_eq!(c.metrics.batch_size, 50);
        assert!(c.database_url.expose_secret().starts_with("sqlite://"));
        assert!(c.providers.is_empty());
    }

    #[test]
    fn collects_every_problem_with_its_key() {
        let errors = load(
            &[
                ("EXAI_WS_PORT", "99999"),
                ("EXAI_WS_TOKEN", "short"),
                ("EXAI_WS_SESSION_MAX_INFLIGHT", "8"),
                ("EXAI_WS_GLOBAL_MAX_INFLIGHT", "8"),
                ("KIMI_API_URL", "not a url"),
            ],
            Some("bogus = 1\n[server]\nnope = true\n"),
        )
        .unwrap_err();
        let k = keys(&errors);
        for expected in [
            "EXAI_WS_PORT",
            "EXAI_WS_TOKEN",
            "EXAI_WS_GLOBAL_MAX_INFLIGHT",
            "KIMI_API_URL",
            "bogus",
            "server.nope",
        ] {
            assert!(k.contains(&expected), "{expected} missing from {k:?}");
        }
    }

    #[test]
    fn env_overrides_file() {
        let c = load(&[("EXAI_WS_PORT", "9000")], Some("[server]\nport = 8100\n")).unwrap();
        assert_eq!(c.server.port, 9000);
        let c = load(&[], Some("[server]\nport = 8100\n")).unwrap();
        assert_eq!(c.server.port, 8100);
    }

    #[test]
    fn non_loopback_without_token_is_refused_unless_allowed() {
        let errors = load(&[("EXAI_WS_HOST", "0.0.0.0")], None).unwrap_err();
        assert_eq!(keys(&errors), vec!["EXAI_WS_HOST"]);
        assert!(
            load(
                &[("EXAI_WS_HOST", "0.0.0.0"), ("EXAI_ALLOW_NO_AUTH", "true")],
                None
            )
            .is_ok()
        );
        assert!(
            load(
                &[
                    ("EXAI_WS_HOST", "0.0.0.0"),
                    ("EXAI_WS_TOKEN", "0123456789abcdef")
                ],
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn providers_from_original_env_names() {
        let c = load(
            &[
                ("MOONSHOT_API_KEY", "sk-moonshot-secret-value"),
                ("ZHIPUAI_API_KEY", "zhipu-secret"),
                ("CUSTOM_API_URL", "http://127.0.0.1:11434/v1"),
                ("CUSTOM_MODEL_NAME", "llama3"),
            ],
            None,
        )
        .unwrap();
        let names: Vec<_> = c.providers.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["kimi", "glm", "custom"]);
        assert_eq!(c.providers[0].base_url, "https://api.moonshot.ai/v1");
        assert_eq!(c.providers[2].models, vec!["llama3"]);
        let shown = c.redacted().to_string();
        assert!(!shown.contains("sk-moonshot-secret-value"));
        assert!(!shown.contains("zhipu-secret"));
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn model_aliases_come_from_toml_and_env_and_anthropic_is_a_kind() {
        let c = load(
            &[(
                "EXAI_MODEL_ALIASES",
                "claude-sonnet-4-5=glm-4.6, claude-haiku-4-5=kimi-k2-turbo",
            )],
            Some(
                "[registry.aliases]\n\"claude-sonnet-4-5\" = \"x\"\nbig = \"kimi-k2\"\n\n\
                 [[providers]]\nkind = \"anthropic\"\napi_key = \"k\"\n",
            ),
        )
        .unwrap();
        let a = &c.registry.aliases;
        assert_eq!(a["claude-sonnet-4-5"], "glm-4.6", "the environment wins");
        assert_eq!(a["claude-haiku-4-5"], "kimi-k2-turbo");
        assert_eq!(a["big"], "kimi-k2");
        assert_eq!(c.providers[0].kind, ProviderKind::Anthropic);
        assert_eq!(c.providers[0].base_url, "https://api.anthropic.com/v1");
        let errors = load(&[("EXAI_MODEL_ALIASES", "nope")], None).unwrap_err();
        assert!(keys(&errors).contains(&"EXAI_MODEL_ALIASES"));
    }

    #[test]
    fn toml_providers_are_validated() {
        let errors = load(
            &[],
            Some(
                "[[providers]]\nkind = \"openai_compatible\"\n\n[[providers]]\nkind = \"nope\"\n\n\
                 [[providers]]\nkind = \"glm\"\nbase_url = \"::\"\nextra = 1\n",
            ),
        )
        .unwrap_err();
        let k = keys(&errors);
        assert!(k.contains(&"providers[0].base_url"), "{k:?}");
        assert!(k.contains(&"providers[1].kind"), "{k:?}");
        assert!(k.contains(&"providers[2].base_url"), "{k:?}");
        assert!(k.contains(&"providers[2].extra"), "{k:?}");
    }

    #[test]
    fn upstream_limits_are_read_and_checked() {
        let c = load(&[], None).unwrap();
        assert_eq!(c.upstream.max_bytes, 32 * 1024 * 1024);
        assert_eq!(c.upstream.sse_max_event_bytes, 4 * 1024 * 1024);
        let c = load(
            &[("EXAI_UPSTREAM_MAX_BYTES", "1000")],
            Some(
                "[upstream]\nsse_max_event_bytes = 500\n[[providers]]\nkind = \"glm\"\n\
                 request_timeout_s = 7\nstream_max_s = 3\n",
            ),
        )
        .unwrap();
        assert_eq!(c.upstream.max_bytes, 1000);
        assert_eq!(c.upstream.sse_max_event_bytes, 500);
        assert_eq!(c.providers[0].stream_max, Some(Duration::from_secs(3)));
        assert_eq!(c.redacted()["providers"][0]["stream_max_s"], 3.0);
        let errors = load(&[("EXAI_SSE_MAX_EVENT_BYTES", "0")], None).unwrap_err();
        assert_eq!(keys(&errors), vec!["EXAI_SSE_MAX_EVENT_BYTES"]);
    }

    #[test]
    fn unwritable_data_dir_is_reported() {
        let errors = load(&[("EXAI_DATA_DIR", "/proc/exai-cannot-write-here")], None).unwrap_err();
        assert_eq!(keys(&errors), vec!["EXAI_DATA_DIR"]);
    }
}
