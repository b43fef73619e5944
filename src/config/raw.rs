//! `exai.toml` as parsed: one serde struct per section, each with `deny_unknown_fields`.
//!
//! Values stay `toml::Value`s here: the reader parses them with the same rules and messages
//! as the environment's strings (so `port = "9000"` and `EXAI_WS_PORT=9000` mean the same,
//! and every problem names its key). What this module owns is the file's shape: every key it
//! does not declare is reported, all of them at once, with the nearest declared key of the
//! same section as a "did you mean" ([`RawFile::from_table`]). A syntax error names the file,
//! line and column ([`syntax_error`]).
//!
//! A section's fields are its keys; what each one means, its environment names and its
//! default are in the settings table (`env.rs`), which a unit test keeps equal to these
//! structs.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::error::{ConfigError, Errors};
use exai_actors::provider as provider_owner;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawFile {
    /// `instance`.
    pub instance: Option<toml::Value>,
    /// `[server]`.
    pub server: RawServer,
    /// `[storage]`.
    pub storage: RawStorage,
    /// `[log]`.
    pub log: RawLog,
    /// `[supervisor]`.
    pub supervisor: RawSupervisor,
    /// `[metrics]`.
    pub metrics: RawMetrics,
    /// `[cache]`.
    pub cache: RawCache,
    /// `[registry]`.
    pub registry: RawRegistry,
    /// `[tools]`.
    pub tools: RawTools,
    /// `[upstream]`.
    pub upstream: RawUpstream,
    /// `[prices]`: model → `{input, output, cached_input}`, USD per million tokens.
    pub prices: Option<toml::Value>,
    /// `[[providers]]`: each entry is read as a [`RawProvider`] by [`RawProvider::from_value`],
    /// so a problem names its index.
    pub providers: Option<toml::Value>,
}

/// `[server]`: the listener and the client surfaces.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawServer {
    pub host: Option<toml::Value>,
    pub port: Option<toml::Value>,
    pub token: Option<toml::Value>,
    pub dashboard_token: Option<toml::Value>,
    pub allow_no_auth: Option<toml::Value>,
    pub max_message_bytes: Option<toml::Value>,
    pub session_max_inflight: Option<toml::Value>,
    pub global_max_inflight: Option<toml::Value>,
    pub v1_max_inflight: Option<toml::Value>,
    pub hello_timeout_s: Option<toml::Value>,
    pub max_connections: Option<toml::Value>,
    pub max_connections_per_ip: Option<toml::Value>,
    pub max_pending_hello: Option<toml::Value>,
    pub tool_timeout_s: Option<toml::Value>,
    pub session_rate: Option<toml::Value>,
    pub session_burst: Option<toml::Value>,
    pub ip_rate: Option<toml::Value>,
    pub ip_burst: Option<toml::Value>,
    pub heartbeat_interval_ms: Option<toml::Value>,
    pub client_timeout_ms: Option<toml::Value>,
    pub progress_interval_ms: Option<toml::Value>,
    pub conversation_capacity: Option<toml::Value>,
    pub conversation_ttl_s: Option<toml::Value>,
    pub mcp_session_ttl_s: Option<toml::Value>,
    pub mcp_max_sessions: Option<toml::Value>,
    pub dashboard_client_queue: Option<toml::Value>,
    pub dashboard_evict_after_dropped: Option<toml::Value>,
    pub dashboard_evict_after_full_ms: Option<toml::Value>,
    pub shutdown_grace_s: Option<toml::Value>,
    pub shutdown_ready_delay_ms: Option<toml::Value>,
    pub allowed_origins: Option<toml::Value>,
    pub http_body_timeout_ms: Option<toml::Value>,
    pub http_max_body_bytes_in_flight: Option<toml::Value>,
}

/// `[storage]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawStorage {
    pub data_dir: Option<toml::Value>,
    pub database_url: Option<toml::Value>,
}

/// `[log]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLog {
    pub filter: Option<toml::Value>,
    pub format: Option<toml::Value>,
    pub access_log: Option<toml::Value>,
}

/// `[supervisor]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSupervisor {
    pub max_restarts: Option<toml::Value>,
    pub restart_window_s: Option<toml::Value>,
    pub check_interval_ms: Option<toml::Value>,
    pub ping_timeout_ms: Option<toml::Value>,
    pub backoff_initial_ms: Option<toml::Value>,
    pub backoff_max_ms: Option<toml::Value>,
}

/// `[metrics]`: the event pipeline.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawMetrics {
    pub buffer_size: Option<toml::Value>,
    pub flush_interval_ms: Option<toml::Value>,
    pub max_buffered: Option<toml::Value>,
    pub fsync: Option<toml::Value>,
    pub retention_raw_days: Option<toml::Value>,
    pub retention_1min_days: Option<toml::Value>,
    pub retention_1hour_days: Option<toml::Value>,
}

/// `[cache]`: the response cache.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawCache {
    pub enabled: Option<toml::Value>,
    pub ttl_s: Option<toml::Value>,
    pub l2_ttl_s: Option<toml::Value>,
    pub max_response_bytes: Option<toml::Value>,
    pub l1_capacity_bytes: Option<toml::Value>,
    pub redis_url: Option<toml::Value>,
    pub redis_timeout_ms: Option<toml::Value>,
}

/// `[registry]`: models, fallbacks and aliases.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRegistry {
    pub cache_ttl_s: Option<toml::Value>,
    pub default_model: Option<toml::Value>,
    pub max_attempts: Option<toml::Value>,
    /// `[registry.fallback]`: model = ["next", …] (any model names).
    pub fallback: Option<toml::Value>,
    /// `[registry.aliases]`: name = "model" (any names).
    pub aliases: Option<toml::Value>,
}

/// `[tools]`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawTools {
    pub file_roots: Option<toml::Value>,
    pub file_max_bytes: Option<toml::Value>,
}

/// `[upstream]`: limits on what every provider sends back.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawUpstream {
    pub max_bytes: Option<toml::Value>,
    pub sse_max_event_bytes: Option<toml::Value>,
}

/// One `[[providers]]` entry (documented in [`PROVIDER_KEYS`]).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawProvider {
    pub name: Option<toml::Value>,
    pub kind: Option<toml::Value>,
    pub base_url: Option<toml::Value>,
    pub api_key: Option<toml::Value>,
    pub models: Option<toml::Value>,
    pub max_concurrency: Option<toml::Value>,
    pub max_queue: Option<toml::Value>,
    pub connect_timeout_s: Option<toml::Value>,
    pub request_timeout_s: Option<toml::Value>,
    pub stream_idle_timeout_s: Option<toml::Value>,
    pub stream_max_s: Option<toml::Value>,
    pub max_retries: Option<toml::Value>,
    pub simulated: Option<toml::Value>,
}

impl RawFile {
    /// The file's sections, with every undeclared key recorded (in key order, section by
    /// section) and left out.
    pub fn from_table(table: &toml::Table, errors: &mut Errors) -> Self {
        let mut kept = toml::Table::new();
        for (name, value) in table {
            match section_fields(name) {
                Some(fields) => match value {
                    toml::Value::Table(t) => {
                        let t = known_only(name, t, fields, errors);
                        kept.insert(name.clone(), toml::Value::Table(t));
                    }
                    _ => errors.push(name, format!("expected a table ([{name}])")),
                },
                None if fields_of::<RawFile>().contains(&name.as_str()) => {
                    kept.insert(name.clone(), value.clone());
                }
                None => errors.push(name, unknown_key(name, fields_of::<RawFile>())),
            }
        }
        deserialize(kept, "exai.toml", errors).unwrap_or_default()
    }
}

impl RawProvider {
    /// Entry `i` of `[[providers]]`, with its undeclared keys recorded and left out; `None`
    /// (recorded) when it is not a table.
    pub fn from_value(i: usize, value: &toml::Value, errors: &mut Errors) -> Option<Self> {
        let at = format!("providers[{i}]");
        let Some(t) = value.as_table() else {
            errors.push(&at, "expected a table");
            return None;
        };
        let t = known_only(&at, t, fields_of::<RawProvider>(), errors);
        deserialize(t, &at, errors)
    }
}

/// The declared keys of a section's struct.
fn section_fields(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "server" => fields_of::<RawServer>(),
        "storage" => fields_of::<RawStorage>(),
        "log" => fields_of::<RawLog>(),
        "supervisor" => fields_of::<RawSupervisor>(),
        "metrics" => fields_of::<RawMetrics>(),
        "cache" => fields_of::<RawCache>(),
        "registry" => fields_of::<RawRegistry>(),
        "tools" => fields_of::<RawTools>(),
        "upstream" => fields_of::<RawUpstream>(),
        _ => return None,
    })
}

/// `table` without the keys not in `fields`, each recorded as `<at>.<key>`.
fn known_only(
    at: &str,
    table: &toml::Table,
    fields: &'static [&'static str],
    errors: &mut Errors,
) -> toml::Table {
    let mut kept = toml::Table::new();
    for (key, value) in table {
        if fields.contains(&key.as_str()) {
            kept.insert(key.clone(), value.clone());
        } else {
            errors.push(&format!("{at}.{key}"), unknown_key(key, fields));
        }
    }
    kept
}

/// `table` as `T`. Only declared keys are left and every field is a `toml::Value`, so this
/// fails only if a struct above and its [`fields_of`] disagree; then the problem is recorded.
fn deserialize<T: DeserializeOwned>(
    table: toml::Table,
    at: &str,
    errors: &mut Errors,
) -> Option<T> {
    table
        .try_into()
        .map_err(|e: toml::de::Error| errors.push(at, e.message().trim_end().to_owned()))
        .ok()
}

/// "unknown key in exai.toml", suggesting the nearest of `fields` when it is a plausible
/// typo.
pub fn unknown_key(key: &str, fields: &[&str]) -> String {
    match nearest(key, fields.iter().copied()) {
        Some(near) => format!("unknown key in exai.toml (did you mean `{near}`?)"),
        None => "unknown key in exai.toml".to_owned(),
    }
}

/// The candidate closest to `key`, if it is near enough to be a plausible typo.
fn nearest<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|name| (strsim::levenshtein(key, name), name))
        .filter(|(d, name)| *d <= 2.max(name.len() / 4))
        .min()
        .map(|(_, name)| name)
}

/// The field names serde's derive declares for `T`, read by a deserializer that only asks
/// for them. Empty for a type that is not a struct.
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{Error as _, Visitor, value::Error};

    /// Records the fields `deserialize_struct` is called with, then stops.
    struct Probe<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Probe<'_> {
        type Error = Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Error> {
            *self.0 = fields;
            Err(Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

/// A TOML syntax error naming the file, line, column and (when the error has one) the key.
pub fn syntax_error(path: &Path, text: &str, e: &toml::de::Error) -> ConfigError {
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

/// A `[[providers]]` key, for the documentation.
pub struct ProviderKey {
    /// The key.
    pub key: &'static str,
    /// Its type.
    pub kind: &'static str,
    /// Its default.
    pub default: fn() -> String,
    /// What it is.
    pub about: &'static str,
}

/// Seconds of a default duration, as documented.
fn secs(d: Duration) -> String {
    d.as_secs_f64().to_string()
}

/// Every `[[providers]]` key (the fields of [`RawProvider`]) for the documentation, with the
/// provider module's defaults.
pub const PROVIDER_KEYS: &[ProviderKey] = &[
    ProviderKey {
        key: "name",
        kind: "string",
        default: || "the kind".to_owned(),
        about: "unique name, used in routes (`<name>/<model>`), events and `/health`",
    },
    ProviderKey {
        key: "kind",
        kind: "`kimi`, `glm`, `openai`, `openai_compatible`, `anthropic`",
        default: || "— (required)".to_owned(),
        about: "the API dialect (`moonshot`, `zhipuai`/`zai` and `custom` are accepted as aliases)",
    },
    ProviderKey {
        key: "base_url",
        kind: "URL (http, https)",
        default: || "the kind's (none for `openai_compatible`)".to_owned(),
        about: "base URL without the trailing `/chat/completions` (or `/messages`)",
    },
    ProviderKey {
        key: "api_key",
        kind: "secret",
        default: || "—".to_owned(),
        about: "API key; never printed (`check-config`, `/health` and logs show `[redacted]`)",
    },
    ProviderKey {
        key: "models",
        kind: "list",
        default: || "—".to_owned(),
        about: "models served besides the built-in catalog for the kind and what `GET <base_url>/models` discovers",
    },
    ProviderKey {
        key: "max_concurrency",
        kind: "integer ≥ 1",
        default: || provider_owner::DEFAULT_MAX_CONCURRENCY.to_string(),
        about: "calls in flight at once",
    },
    ProviderKey {
        key: "max_queue",
        kind: "integer ≥ 0",
        default: || provider_owner::DEFAULT_MAX_QUEUE.to_string(),
        about: "calls waiting for a slot before new ones fail with over-capacity",
    },
    ProviderKey {
        key: "connect_timeout_s",
        kind: "seconds",
        default: || secs(provider_owner::DEFAULT_CONNECT_TIMEOUT),
        about: "TCP/TLS connect timeout",
    },
    ProviderKey {
        key: "request_timeout_s",
        kind: "seconds",
        default: || secs(provider_owner::DEFAULT_REQUEST_TIMEOUT),
        about: "whole non-streaming call, or until a stream's response headers",
    },
    ProviderKey {
        key: "stream_idle_timeout_s",
        kind: "seconds",
        default: || secs(provider_owner::DEFAULT_STREAM_IDLE_TIMEOUT),
        about: "longest silence between two stream chunks",
    },
    ProviderKey {
        key: "stream_max_s",
        kind: "seconds",
        default: || "`request_timeout_s`".to_owned(),
        about: "longest life of a whole stream",
    },
    ProviderKey {
        key: "max_retries",
        kind: "integer ≥ 0",
        default: || provider_owner::DEFAULT_MAX_RETRIES.to_string(),
        about: "retries after the first attempt, for retryable failures before a stream started",
    },
    ProviderKey {
        key: "simulated",
        kind: "bool",
        default: || "false".to_owned(),
        about: "a simulated provider (the demo's mock upstream), labelled so in listings, health and events",
    },
];
