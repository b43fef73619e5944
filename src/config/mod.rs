//! Configuration: an optional `exai.toml`, overridden by environment variables (including the
//! original daemon's names, DESIGN §8), validated once before any actor starts.
//!
//! - [`model`]: the validated configuration's structs (a leaf, as is [`error`]);
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
pub mod error;
pub mod kind;
pub mod model;
pub mod raw;
pub mod read;
pub mod redact;
pub mod validate;

#[cfg(test)]
mod tests;

pub use error::ConfigError;
/// How journal appends reach the disk (owned by the journal module).
pub use exai_actors::pipeline::journal::FsyncPolicy;
/// Provider kinds, owned by the provider module; [`read::parse_kind`] reads their names.
pub use exai_actors::provider::ProviderKind;
/// One configured provider, as the provider module takes it.
pub use exai_actors::provider::ProviderSettings;
/// Replaces a URL's credentials and query values (the provider module's one way to show a
/// URL).
pub use exai_actors::provider::redact_url;
pub use model::{
    CONFIG_FILE_ENV, CacheConfig, CliOverrides, Config, DEFAULT_CONFIG_FILE, DEFAULT_PORT,
    LogConfig, LogFormat, MIN_TOKEN_LEN, MetricsConfig, RegistryConfig, ServerConfig,
    SupervisorConfig, ToolsConfig, UpstreamConfig,
};
pub use read::Sources;

use crate::ws::limits::WsLimits;

impl From<&ServerConfig> for WsLimits {
    /// The configured `/ws` limits, with the limits module's defaults for what is not
    /// configurable.
    fn from(server: &ServerConfig) -> Self {
        Self {
            max_message_bytes: server.max_message_bytes,
            session_max_inflight: server.session_max_inflight,
            global_max_inflight: server.global_max_inflight,
            hello_timeout: server.hello_timeout,
            max_connections: server.max_connections,
            max_connections_per_ip: server.max_connections_per_ip,
            max_pending_hello: server.max_pending_hello,
            tool_timeout: server.tool_timeout,
            session_rate: server.session_rate.0,
            session_burst: server.session_rate.1,
            ip_rate: server.ip_rate.0,
            ip_burst: server.ip_rate.1,
            heartbeat_interval: server.heartbeat_interval,
            client_timeout: server.client_timeout,
            progress_interval: server.progress_interval,
            conversation_capacity: server.conversation_capacity,
            conversation_ttl: server.conversation_ttl,
            ..Self::default()
        }
    }
}
