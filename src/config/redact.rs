//! What `exai check-config` prints: the effective configuration as JSON, every value named
//! by its table entry and shown by its kind, so a secret (a [`SecretString`]) can only appear
//! as `[redacted]` and a URL only with its credentials replaced.
//!
//! Each part is taken apart with an exhaustive pattern, so a field added to a config struct
//! does not compile until it is shown here (or deliberately left out, with the reason).

use secrecy::SecretString;
use serde_json::{Map, Value, json};

use exai_actors::provider::{ProviderSettings, redact_url};

use super::env::{self as e, Custom, Setting};
use super::kind::{Kind, REDACTED};
use super::model::{
    CacheConfig, Config, LogConfig, MetricsConfig, RegistryConfig, ServerConfig, SupervisorConfig,
    ToolsConfig, UpstreamConfig,
};

impl Config {
    /// The effective configuration as JSON, secrets shown as `[redacted]`.
    pub fn redacted(&self) -> Value {
        let mut out = Shown::default();
        self.redact(&mut out);
        out.into_value()
    }
}

/// A part of the configuration that can be shown with its secrets hidden.
pub trait Redact {
    /// Adds this part to `out`.
    fn redact(&self, out: &mut Shown);
}

/// The JSON being built, nested by the settings' dotted keys.
#[derive(Debug, Default)]
pub struct Shown(Map<String, Value>);

impl Shown {
    /// The JSON object.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }

    /// `value` of `setting`, at its key.
    fn put<K: Kind>(&mut self, setting: &Setting<K>, value: &K::Value) {
        self.insert(setting.key, K::show(value));
    }

    /// `value` of a custom `setting`, at its key.
    fn put_custom<K: Kind>(&mut self, setting: &Custom<K>, value: &K::Value) {
        self.insert(setting.key, K::show(value));
    }

    /// `value` at a dotted key.
    fn insert(&mut self, dotted: &str, value: Value) {
        let mut node = &mut self.0;
        let mut parts = dotted.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                node.insert(part.to_owned(), value);
                return;
            }
            let child = node
                .entry(part.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            let Value::Object(map) = child else {
                return;
            };
            node = map;
        }
    }
}

impl Redact for Config {
    fn redact(&self, out: &mut Shown) {
        let Config {
            file,
            server,
            instance,
            data_dir,
            database_url,
            log,
            supervisor,
            metrics,
            cache,
            registry,
            upstream,
            providers,
            tools,
            prices,
        } = self;
        out.insert(
            "file",
            json!(file.as_ref().map(|p| p.display().to_string())),
        );
        server.redact(out);
        out.put_custom(&e::INSTANCE, instance);
        out.put(&e::DATA_DIR, &data_dir.display().to_string());
        out.put_custom(&e::DATABASE_URL, database_url);
        log.redact(out);
        supervisor.redact(out);
        metrics.redact(out);
        cache.redact(out);
        registry.redact(out);
        upstream.redact(out);
        tools.redact(out);
        out.insert(
            e::PRICES.key,
            serde_json::to_value(
                prices
                    .entries()
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            )
            .unwrap_or_default(),
        );
        out.insert(
            "providers",
            Value::Array(providers.iter().map(provider).collect()),
        );
    }
}

impl Redact for ServerConfig {
    fn redact(&self, out: &mut Shown) {
        let ServerConfig {
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
            session_rate: (session_rate, session_burst),
            ip_rate: (ip_rate, ip_burst),
            heartbeat_interval,
            client_timeout,
            progress_interval,
            conversation_capacity,
            conversation_ttl,
            mcp_session_ttl,
            mcp_max_sessions,
            dashboard_client_queue,
            dashboard_evict_after_dropped,
            dashboard_evict_after_full,
            shutdown_grace,
            shutdown_ready_delay,
            allowed_origins,
            http_body_timeout,
            http_max_body_bytes_in_flight,
            max_pending_hello,
        } = self;
        out.put(&e::HOST, &host.to_string());
        out.put(&e::PORT, port);
        out.put(&e::TOKEN, token);
        out.put(&e::DASHBOARD_TOKEN, dashboard_token);
        out.put(&e::ALLOW_NO_AUTH, allow_no_auth);
        out.put(&e::MAX_MESSAGE_BYTES, max_message_bytes);
        out.put(&e::SESSION_MAX_INFLIGHT, session_max_inflight);
        out.put(&e::GLOBAL_MAX_INFLIGHT, global_max_inflight);
        out.put(&e::V1_MAX_INFLIGHT, v1_max_inflight);
        out.put(&e::HELLO_TIMEOUT, hello_timeout);
        out.put(&e::MAX_CONNECTIONS, max_connections);
        out.put(&e::MAX_CONNECTIONS_PER_IP, max_connections_per_ip);
        out.put(&e::TOOL_TIMEOUT, tool_timeout);
        out.put(&e::SESSION_RATE, session_rate);
        out.put(&e::SESSION_BURST, session_burst);
        out.put(&e::IP_RATE, ip_rate);
        out.put(&e::IP_BURST, ip_burst);
        out.put(&e::HEARTBEAT_INTERVAL, heartbeat_interval);
        out.put(&e::CLIENT_TIMEOUT, client_timeout);
        out.put(&e::PROGRESS_INTERVAL, progress_interval);
        out.put(&e::CONVERSATION_CAPACITY, conversation_capacity);
        out.put(&e::CONVERSATION_TTL, conversation_ttl);
        out.put(&e::MCP_SESSION_TTL, mcp_session_ttl);
        out.put(&e::MCP_MAX_SESSIONS, mcp_max_sessions);
        out.put(&e::DASHBOARD_CLIENT_QUEUE, dashboard_client_queue);
        out.put(
            &e::DASHBOARD_EVICT_AFTER_DROPPED,
            dashboard_evict_after_dropped,
        );
        out.put(&e::DASHBOARD_EVICT_AFTER_FULL, dashboard_evict_after_full);
        out.put(&e::SHUTDOWN_GRACE, shutdown_grace);
        out.put(&e::SHUTDOWN_READY_DELAY, shutdown_ready_delay);
        out.put(&e::ALLOWED_ORIGINS, allowed_origins);
        out.put(&e::HTTP_BODY_TIMEOUT, http_body_timeout);
        out.put(
            &e::HTTP_MAX_BODY_BYTES_IN_FLIGHT,
            http_max_body_bytes_in_flight,
        );
        out.put_custom(&e::MAX_PENDING_HELLO, max_pending_hello);
    }
}

impl Redact for LogConfig {
    fn redact(&self, out: &mut Shown) {
        let LogConfig {
            filter,
            format,
            access_log,
        } = self;
        out.put(&e::LOG_FILTER, filter);
        out.put(&e::LOG_FORMAT, format);
        out.put(&e::ACCESS_LOG, access_log);
    }
}

impl Redact for SupervisorConfig {
    fn redact(&self, out: &mut Shown) {
        let SupervisorConfig {
            max_restarts,
            restart_window,
            check_interval,
            ping_timeout,
            backoff_initial,
            backoff_max,
        } = self;
        out.put(&e::MAX_RESTARTS, max_restarts);
        out.put(&e::RESTART_WINDOW, restart_window);
        out.put(&e::CHECK_INTERVAL, check_interval);
        out.put(&e::PING_TIMEOUT, ping_timeout);
        out.put(&e::BACKOFF_INITIAL, backoff_initial);
        out.put(&e::BACKOFF_MAX, backoff_max);
    }
}

impl Redact for MetricsConfig {
    fn redact(&self, out: &mut Shown) {
        let MetricsConfig {
            batch_size,
            flush_interval,
            max_buffered,
            fsync,
            retention_raw,
            retention_1min,
            retention_1hour,
        } = self;
        out.put(&e::BUFFER_SIZE, batch_size);
        out.put(&e::FLUSH_INTERVAL, flush_interval);
        out.put(&e::MAX_BUFFERED, max_buffered);
        out.put(&e::FSYNC, fsync);
        out.put(&e::RETENTION_RAW, retention_raw);
        out.put(&e::RETENTION_1MIN, retention_1min);
        out.put(&e::RETENTION_1HOUR, retention_1hour);
    }
}

impl Redact for CacheConfig {
    fn redact(&self, out: &mut Shown) {
        let CacheConfig {
            enabled,
            ttl,
            l2_ttl,
            max_response_bytes,
            l1_capacity_bytes,
            redis_url,
            redis_timeout,
        } = self;
        out.put(&e::CACHE_ENABLED, enabled);
        out.put(&e::CACHE_TTL, ttl);
        out.put(&e::CACHE_L2_TTL, l2_ttl);
        out.put(&e::CACHE_MAX_RESPONSE_BYTES, max_response_bytes);
        out.put(&e::CACHE_L1_CAPACITY, l1_capacity_bytes);
        out.put(&e::REDIS_URL, redis_url);
        out.put(&e::REDIS_TIMEOUT, redis_timeout);
    }
}

impl Redact for RegistryConfig {
    fn redact(&self, out: &mut Shown) {
        let RegistryConfig {
            cache_ttl,
            default_model,
            fallback,
            max_attempts,
            aliases,
        } = self;
        out.put(&e::REGISTRY_CACHE_TTL, cache_ttl);
        out.put(&e::DEFAULT_MODEL, default_model);
        out.put_custom(&e::FALLBACK, fallback);
        out.put(&e::MAX_ATTEMPTS, max_attempts);
        out.put_custom(&e::ALIASES, aliases);
    }
}

impl Redact for UpstreamConfig {
    fn redact(&self, out: &mut Shown) {
        let UpstreamConfig {
            max_bytes,
            sse_max_event_bytes,
        } = self;
        out.put(&e::UPSTREAM_MAX_BYTES, max_bytes);
        out.put(&e::SSE_MAX_EVENT_BYTES, sse_max_event_bytes);
    }
}

impl Redact for ToolsConfig {
    fn redact(&self, out: &mut Shown) {
        let ToolsConfig {
            file_roots,
            file_max_bytes,
        } = self;
        out.put_custom(&e::FILE_ROOTS, file_roots);
        out.put(&e::FILE_MAX_BYTES, file_max_bytes);
    }
}

/// A secret that may be unset: `[redacted]` or `null`.
fn secret(value: &Option<SecretString>) -> Value {
    value.as_ref().map_or(Value::Null, |_| json!(REDACTED))
}

/// One provider, under its `[[providers]]` keys.
fn provider(p: &ProviderSettings) -> Value {
    let ProviderSettings {
        name,
        kind,
        base_url,
        api_key,
        models,
        max_concurrency,
        max_queue,
        connect_timeout,
        request_timeout,
        stream_idle_timeout,
        stream_max,
        max_retries,
        simulated,
        // From `[upstream]`, applied to every provider when the gateway is built.
        max_body_bytes: _,
        sse_max_event_bytes: _,
        // The provider module's fixed policy, not configurable per provider.
        retry: _,
        retry_after_cap: _,
        breaker: _,
        discover_models: _,
        discovery_timeout: _,
    } = p;
    json!({
        "name": name,
        "kind": kind.as_str(),
        "base_url": redact_url(base_url),
        "api_key": secret(api_key),
        "models": models,
        "max_concurrency": max_concurrency,
        "max_queue": max_queue,
        "connect_timeout_s": connect_timeout.as_secs_f64(),
        "request_timeout_s": request_timeout.as_secs_f64(),
        "stream_idle_timeout_s": stream_idle_timeout.as_secs_f64(),
        "stream_max_s": stream_max.unwrap_or(*request_timeout).as_secs_f64(),
        "max_retries": max_retries,
        "simulated": simulated,
    })
}
