//! Loading: the sources ([`Sources`]: the environment and `exai.toml`), then every setting
//! read through its table entry ([`super::env`]), from the environment first, parsed by its
//! kind ([`super::kind`]), then the rules between settings ([`super::validate`]). Every
//! problem goes to one list ([`Config::from_sources`]). What is not a plain setting has its
//! own function here: the host (and `--host`), defaults that depend on other settings, the
//! file roots and the providers.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exai_actors::provider::{ProviderKind, ProviderSettings};
use secrecy::SecretString;

use super::env::{self as e, Custom, Entry, Setting, key_of};
use super::error::{ConfigError, Errors, check_url};
use super::kind::{Count, Kind, Paths, Raw, SecretUrl, StoreSchemes, Text};
use super::model::{
    CONFIG_FILE_ENV, CacheConfig, CliOverrides, Config, DEFAULT_CONFIG_FILE, LogConfig,
    MetricsConfig, RegistryConfig, ServerConfig, SupervisorConfig, ToolsConfig, UpstreamConfig,
};
use super::raw::{self, RawFile, RawProvider};
use super::validate;

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
        let server = server(&mut r, cli);
        let (instance, data_dir, database_url) = process(&mut r, server.port);
        let config = Config {
            file: sources.file.as_ref().map(|(p, _)| p.clone()),
            log: log(&mut r),
            supervisor: supervisor(&mut r),
            metrics: metrics(&mut r),
            cache: cache(&mut r),
            registry: registry(&mut r),
            upstream: upstream(&mut r),
            providers: providers(&mut r),
            tools: tools(&mut r),
            prices: prices(&mut r),
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
}

/// Reads settings from both sources, recording every problem.
pub struct Reader<'a> {
    /// The parsed `exai.toml` (empty when there is none).
    pub file: &'a RawFile,
    /// Environment variables.
    pub env: &'a HashMap<String, String>,
    /// Problems found so far.
    pub errors: Errors,
}

impl Reader<'_> {
    /// The first set environment variable of `entry`.
    fn env_raw(&self, entry: &dyn Entry) -> Option<Raw> {
        entry.env().iter().find_map(|name| {
            self.env.get(*name).map(|v| Raw {
                key: (*name).to_owned(),
                value: toml::Value::String(v.clone()),
            })
        })
    }

    /// `entry`'s value in `exai.toml`.
    fn toml_raw(&self, entry: &dyn Entry) -> Option<Raw> {
        entry.toml(self.file).map(|value| Raw {
            key: entry.key().to_owned(),
            value: value.clone(),
        })
    }

    /// `entry` parsed as `K` from the environment, else from `exai.toml`; `None` when unset
    /// or not valid (recorded).
    fn parse<K: Kind>(&mut self, entry: &dyn Entry) -> Option<K::Value> {
        let raw = self.env_raw(entry).or_else(|| self.toml_raw(entry))?;
        K::parse(&raw, &mut self.errors)
    }

    /// A setting's value, or its default.
    pub fn get<K: Kind>(&mut self, setting: &Setting<K>) -> K::Value {
        self.parse::<K>(setting).unwrap_or_else(setting.default)
    }

    /// A custom setting's value, when set and valid.
    pub fn custom<K: Kind>(&mut self, setting: &Custom<K>) -> Option<K::Value> {
        self.parse::<K>(setting)
    }

    /// A custom setting's values from `exai.toml` and from the environment, for settings that
    /// merge the two.
    pub fn both<K: Kind>(&mut self, setting: &Custom<K>) -> (Option<K::Value>, Option<K::Value>) {
        let from_toml = self
            .toml_raw(setting)
            .and_then(|raw| K::parse(&raw, &mut self.errors));
        let from_env = self
            .env_raw(setting)
            .and_then(|raw| K::parse(&raw, &mut self.errors));
        (from_toml, from_env)
    }

    /// The key a problem with `entry` names.
    pub fn key_of(&self, entry: &dyn Entry) -> String {
        key_of(self.env, entry)
    }
}

/// `[server]`, with the command line's `--host`, `--port` and `--allow-no-auth`.
pub fn server(r: &mut Reader<'_>, cli: &CliOverrides) -> ServerConfig {
    let configured_host = r.get(&e::HOST);
    let host_text = cli.host.clone().unwrap_or(configured_host);
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let host = match host_text.as_str() {
        "localhost" => loopback,
        other => other.parse().unwrap_or_else(|_| {
            let key = r.key_of(&e::HOST);
            r.errors.push(&key, format!("not an IP address: {other:?}"));
            loopback
        }),
    };
    let configured_port = r.get(&e::PORT);
    let token = r.get(&e::TOKEN);
    let dashboard_token = r.get(&e::DASHBOARD_TOKEN);
    let allow_no_auth = cli.allow_no_auth || r.get(&e::ALLOW_NO_AUTH);
    let max_message_bytes = r.get(&e::MAX_MESSAGE_BYTES);
    let session_max_inflight = r.get(&e::SESSION_MAX_INFLIGHT);
    let global_max_inflight = r.get(&e::GLOBAL_MAX_INFLIGHT);
    let v1_max_inflight = r.get(&e::V1_MAX_INFLIGHT);
    let hello_timeout = r.get(&e::HELLO_TIMEOUT);
    let max_connections = r.get(&e::MAX_CONNECTIONS);
    ServerConfig {
        host,
        port: cli.port.unwrap_or(configured_port),
        token,
        dashboard_token,
        allow_no_auth,
        max_message_bytes,
        session_max_inflight,
        global_max_inflight,
        v1_max_inflight,
        hello_timeout,
        max_connections,
        max_connections_per_ip: r.get(&e::MAX_CONNECTIONS_PER_IP),
        tool_timeout: r.get(&e::TOOL_TIMEOUT),
        session_rate: (r.get(&e::SESSION_RATE), r.get(&e::SESSION_BURST)),
        ip_rate: (r.get(&e::IP_RATE), r.get(&e::IP_BURST)),
        heartbeat_interval: r.get(&e::HEARTBEAT_INTERVAL),
        client_timeout: r.get(&e::CLIENT_TIMEOUT),
        progress_interval: r.get(&e::PROGRESS_INTERVAL),
        conversation_capacity: r.get(&e::CONVERSATION_CAPACITY),
        conversation_ttl: r.get(&e::CONVERSATION_TTL),
        mcp_session_ttl: r.get(&e::MCP_SESSION_TTL),
        mcp_max_sessions: r.get(&e::MCP_MAX_SESSIONS),
        dashboard_client_queue: r.get(&e::DASHBOARD_CLIENT_QUEUE),
        dashboard_evict_after_dropped: r.get(&e::DASHBOARD_EVICT_AFTER_DROPPED),
        dashboard_evict_after_full: r.get(&e::DASHBOARD_EVICT_AFTER_FULL),
        shutdown_grace: r.get(&e::SHUTDOWN_GRACE),
        shutdown_ready_delay: r.get(&e::SHUTDOWN_READY_DELAY),
        allowed_origins: r.get(&e::ALLOWED_ORIGINS),
        http_body_timeout: r.get(&e::HTTP_BODY_TIMEOUT),
        http_max_body_bytes_in_flight: r.get(&e::HTTP_MAX_BODY_BYTES_IN_FLIGHT),
        max_pending_hello: r
            .custom::<Count<usize>>(&e::MAX_PENDING_HELLO)
            .unwrap_or((max_connections / 4).max(1)),
    }
}

/// `instance`, `[storage]`: the instance name (default `<hostname>:<port>`), the data
/// directory and the store URL (default SQLite in the data directory).
pub fn process(r: &mut Reader<'_>, port: u16) -> (String, PathBuf, SecretString) {
    let instance = r
        .custom::<Text>(&e::INSTANCE)
        .unwrap_or_else(|| default_instance(port));
    let data_dir = PathBuf::from(r.get(&e::DATA_DIR));
    let database_url = r
        .custom::<SecretUrl<StoreSchemes>>(&e::DATABASE_URL)
        .unwrap_or_else(|| {
            SecretString::from(format!("sqlite://{}", data_dir.join("exai.db").display()))
        });
    (instance, data_dir, database_url)
}

/// `[log]`.
pub fn log(r: &mut Reader<'_>) -> LogConfig {
    LogConfig {
        filter: r.get(&e::LOG_FILTER),
        format: r.get(&e::LOG_FORMAT),
        access_log: r.get(&e::ACCESS_LOG),
    }
}

/// `[supervisor]`.
pub fn supervisor(r: &mut Reader<'_>) -> SupervisorConfig {
    SupervisorConfig {
        max_restarts: r.get(&e::MAX_RESTARTS),
        restart_window: r.get(&e::RESTART_WINDOW),
        check_interval: r.get(&e::CHECK_INTERVAL),
        ping_timeout: r.get(&e::PING_TIMEOUT),
        backoff_initial: r.get(&e::BACKOFF_INITIAL),
        backoff_max: r.get(&e::BACKOFF_MAX),
    }
}

/// `[metrics]`.
pub fn metrics(r: &mut Reader<'_>) -> MetricsConfig {
    MetricsConfig {
        batch_size: r.get(&e::BUFFER_SIZE),
        max_buffered: r.get(&e::MAX_BUFFERED),
        fsync: r.get(&e::FSYNC),
        flush_interval: r.get(&e::FLUSH_INTERVAL),
        retention_raw: r.get(&e::RETENTION_RAW),
        retention_1min: r.get(&e::RETENTION_1MIN),
        retention_1hour: r.get(&e::RETENTION_1HOUR),
    }
}

/// `[cache]`.
pub fn cache(r: &mut Reader<'_>) -> CacheConfig {
    CacheConfig {
        enabled: r.get(&e::CACHE_ENABLED),
        ttl: r.get(&e::CACHE_TTL),
        l2_ttl: r.get(&e::CACHE_L2_TTL),
        max_response_bytes: r.get(&e::CACHE_MAX_RESPONSE_BYTES),
        l1_capacity_bytes: r.get(&e::CACHE_L1_CAPACITY),
        redis_url: r.get(&e::REDIS_URL),
        redis_timeout: r.get(&e::REDIS_TIMEOUT),
    }
}

/// `[registry]`: fallback chains and aliases from both sources, the environment winning per
/// model.
pub fn registry(r: &mut Reader<'_>) -> RegistryConfig {
    let (toml_chains, env_chains) = r.both(&e::FALLBACK);
    let mut fallback = toml_chains.unwrap_or_default();
    fallback.extend(env_chains.unwrap_or_default());
    let (toml_aliases, env_aliases) = r.both(&e::ALIASES);
    let mut aliases = toml_aliases.unwrap_or_default();
    aliases.extend(env_aliases.unwrap_or_default());
    RegistryConfig {
        cache_ttl: r.get(&e::REGISTRY_CACHE_TTL),
        default_model: r.get(&e::DEFAULT_MODEL),
        fallback,
        max_attempts: r.get(&e::MAX_ATTEMPTS),
        aliases,
    }
}

/// `[prices]` over the built-in table, then `EXAI_PRICES`, per model.
pub fn prices(r: &mut Reader<'_>) -> crate::pricing::PriceTable {
    let (from_toml, from_env) = r.both(&e::PRICES);
    crate::pricing::PriceTable::builtin()
        .with(from_toml.unwrap_or_default())
        .with(from_env.unwrap_or_default())
}

/// `[upstream]`.
pub fn upstream(r: &mut Reader<'_>) -> UpstreamConfig {
    UpstreamConfig {
        max_bytes: r.get(&e::UPSTREAM_MAX_BYTES),
        sse_max_event_bytes: r.get(&e::SSE_MAX_EVENT_BYTES),
    }
}

/// `[tools]`: the file roots (default the working directory), canonicalised; each must be
/// an existing directory.
pub fn tools(r: &mut Reader<'_>) -> ToolsConfig {
    let listed = r.custom::<Paths>(&e::FILE_ROOTS);
    let key = r.key_of(&e::FILE_ROOTS);
    let listed = listed
        .filter(|l| !l.is_empty())
        .or_else(|| std::env::current_dir().ok().map(|d| vec![d]))
        .unwrap_or_default();
    let file_roots = crate::files::FileRoots::canonical_roots(&listed).unwrap_or_else(|err| {
        r.errors.push(&key, err);
        Vec::new()
    });
    ToolsConfig {
        file_roots,
        file_max_bytes: r.get(&e::FILE_MAX_BYTES),
    }
}

/// A provider kind by its configured name or one of the original daemon's aliases.
pub fn parse_kind(name: &str) -> Result<ProviderKind, String> {
    match name {
        "kimi" | "moonshot" => Ok(ProviderKind::Kimi),
        "glm" | "zhipuai" | "zai" => Ok(ProviderKind::Glm),
        "openai" => Ok(ProviderKind::Openai),
        "openai_compatible" | "custom" => Ok(ProviderKind::OpenaiCompatible),
        "anthropic" => Ok(ProviderKind::Anthropic),
        other => Err(format!(
            "unknown provider kind {other:?} (expected kimi, glm, openai, openai_compatible or \
             anthropic)"
        )),
    }
}

/// Providers from `[[providers]]`, then from the original environment variables.
pub fn providers(r: &mut Reader<'_>) -> Vec<ProviderSettings> {
    let mut out: Vec<ProviderSettings> = Vec::new();
    let file = r.file;
    if let Some(value) = &file.providers {
        let Some(items) = value.as_array() else {
            r.errors
                .push("providers", "expected an array of tables ([[providers]])");
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let Some(p) = RawProvider::from_value(i, item, &mut r.errors) else {
                continue;
            };
            let Some(p) = toml_provider(&mut r.errors, i, &p) else {
                continue;
            };
            if out.iter().any(|o| o.name == p.name) {
                r.errors.push(
                    &format!("providers[{i}].name"),
                    format!("duplicate provider name {:?}", p.name),
                );
                continue;
            }
            out.push(p);
        }
    }
    for p in e::ENV_PROVIDERS {
        env_provider(r, &mut out, p);
    }
    if let Some(model) = r.env.get(e::CUSTOM_MODEL_NAME).cloned() {
        match out.iter_mut().find(|p| p.name == e::CUSTOM_PROVIDER) {
            Some(p) => p.models.push(model),
            None => {
                let url = e::ENV_PROVIDERS
                    .iter()
                    .find(|p| p.name == e::CUSTOM_PROVIDER)
                    .map_or("", |p| p.base_url);
                r.errors
                    .push(e::CUSTOM_MODEL_NAME, format!("set without {url}"));
            }
        }
    }
    out
}

/// One `[[providers]]` entry; `None` (recorded) when its kind or base URL is unusable.
fn toml_provider(errors: &mut Errors, i: usize, p: &RawProvider) -> Option<ProviderSettings> {
    let at = |k: &str| format!("providers[{i}].{k}");
    let str_of = |v: &Option<toml::Value>| v.as_ref().and_then(|v| v.as_str()).map(str::to_owned);
    let kind = match str_of(&p.kind).map(|k| parse_kind(&k)) {
        Some(Ok(k)) => k,
        Some(Err(message)) => {
            errors.push(&at("kind"), message);
            return None;
        }
        None => {
            errors.push(
                &at("kind"),
                "missing (kimi, glm, openai, openai_compatible or anthropic)",
            );
            return None;
        }
    };
    let name = str_of(&p.name).unwrap_or_else(|| kind.as_str().to_owned());
    let Some(base_url) = str_of(&p.base_url).or(kind.default_base_url().map(str::to_owned)) else {
        errors.push(&at("base_url"), "required for openai_compatible providers");
        return None;
    };
    if let Err(e) = check_url(&at("base_url"), &base_url, &["http", "https"]) {
        errors.0.push(e);
        return None;
    }
    let mut s = ProviderSettings::new(name, kind);
    s.base_url = base_url;
    s.api_key = str_of(&p.api_key)
        .filter(|k| !k.is_empty())
        .map(SecretString::from);
    if let Some(models) = &p.models {
        match models.as_array() {
            Some(a) => {
                s.models = a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            }
            None => errors.push(&at("models"), "expected an array of model names"),
        }
    }
    let mut int = |k: &str, v: &Option<toml::Value>, min: i64| -> Option<u64> {
        match v.as_ref()?.as_integer() {
            Some(n) if n >= min => u64::try_from(n).ok(),
            _ => {
                errors.push(&at(k), format!("expected an integer ≥ {min}"));
                None
            }
        }
    };
    if let Some(n) = int("max_concurrency", &p.max_concurrency, 1) {
        s.max_concurrency = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = int("max_queue", &p.max_queue, 0) {
        s.max_queue = usize::try_from(n).unwrap_or(usize::MAX);
    }
    if let Some(n) = int("max_retries", &p.max_retries, 0) {
        s.max_retries = u32::try_from(n).unwrap_or(u32::MAX);
    }
    let mut secs = |k: &str, v: &Option<toml::Value>| -> Option<Duration> {
        let v = v.as_ref()?;
        match v.as_float().or(v.as_integer().map(|i| i as f64)) {
            Some(s) if s > 0.0 && s.is_finite() => Some(Duration::from_secs_f64(s)),
            _ => {
                errors.push(&at(k), "expected a positive number of seconds");
                None
            }
        }
    };
    if let Some(d) = secs("connect_timeout_s", &p.connect_timeout_s) {
        s.connect_timeout = d;
    }
    if let Some(d) = secs("request_timeout_s", &p.request_timeout_s) {
        s.request_timeout = d;
    }
    if let Some(d) = secs("stream_idle_timeout_s", &p.stream_idle_timeout_s) {
        s.stream_idle_timeout = d;
    }
    if let Some(d) = secs("stream_max_s", &p.stream_max_s) {
        s.stream_max = Some(d);
    }
    s.simulated = p
        .simulated
        .as_ref()
        .and_then(toml::Value::as_bool)
        .unwrap_or(false);
    Some(s)
}

/// A provider from the original daemon's variables, unless one of that name exists.
fn env_provider(r: &mut Reader<'_>, out: &mut Vec<ProviderSettings>, p: &e::EnvProvider) {
    let set = |name: &str| r.env.get(name).filter(|v| !v.trim().is_empty()).cloned();
    let key = p.api_key.iter().find_map(|k| set(k));
    let url = set(p.base_url);
    if url.is_none() && p.kind.default_base_url().is_none() {
        for k in p.api_key.iter().filter(|k| r.env.contains_key(**k)) {
            r.errors.push(k, format!("set without {}", p.base_url));
        }
    }
    if (key.is_none() && url.is_none()) || out.iter().any(|o| o.name == p.name) {
        return;
    }
    let mut s = ProviderSettings::new(p.name, p.kind);
    match url {
        Some(u) => match check_url(p.base_url, u.trim(), &["http", "https"]) {
            Ok(_) => s.base_url = u.trim().to_owned(),
            Err(e) => {
                r.errors.0.push(e);
                return;
            }
        },
        None if s.base_url.is_empty() => return,
        None => {}
    }
    s.api_key = key.map(|k| SecretString::from(k.trim().to_owned()));
    out.push(s);
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
