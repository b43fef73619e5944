//! How the cache is configured: its names, its documented defaults, [`CacheSettings`] and
//! the construction error.

use std::time::Duration;

use secrecy::SecretString;

use crate::policy::retry::RetryPolicy;

/// The supervisor child's name.
pub const ACTOR_NAME: &str = "cache";
/// The `/health` component this cache reports as.
pub const HEALTH_COMPONENT: &str = "cache";
/// `source` of every event this module records.
pub(super) const EVENT_SOURCE: &str = "cache";

/// Default L1 capacity: 256 MiB of response bytes.
pub const DEFAULT_L1_CAPACITY_BYTES: u64 = 256 * 1024 * 1024;
/// Default L1 time to live (`SEMANTIC_CACHE_TTL_SECONDS`).
pub const DEFAULT_L1_TTL: Duration = Duration::from_secs(600);
/// Default L2 time to live.
pub const DEFAULT_L2_TTL: Duration = Duration::from_secs(1800);
/// Default size cap for one stored response (`SEMANTIC_CACHE_MAX_RESPONSE_SIZE`): 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Default Redis key prefix; the key's hex digest follows it.
pub const DEFAULT_REDIS_PREFIX: &str = "exai:cache:v1:";
/// Default bound on one Redis operation, so a request never waits on a dead Redis longer.
pub const DEFAULT_REDIS_OP_TIMEOUT: Duration = Duration::from_millis(50);
/// Default bound on one background connection attempt (connect plus `PING`).
pub const DEFAULT_REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default first delay between reconnection attempts.
pub const DEFAULT_RECONNECT_INITIAL: Duration = Duration::from_millis(100);
/// Default longest delay between reconnection attempts.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(10);
/// Default interval at which the actor publishes stats to the health board.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(1);

/// How the cache is configured. `Default` gives the documented defaults with no Redis.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// L1 capacity in bytes (body + model + a fixed per-entry overhead).
    pub l1_capacity_bytes: u64,
    /// L1 time to live (`SEMANTIC_CACHE_TTL_SECONDS`, default 600 s).
    pub l1_ttl: Duration,
    /// L2 time to live (default 1800 s). Millisecond precision.
    pub l2_ttl: Duration,
    /// Responses larger than this are not stored (`SEMANTIC_CACHE_MAX_RESPONSE_SIZE`).
    pub max_response_bytes: usize,
    /// `REDIS_URL`; `None` runs L1 only. Secret because it may carry a password.
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key (tests use their own to run in parallel).
    pub redis_prefix: String,
    /// Bound on each Redis operation on the request path.
    pub redis_op_timeout: Duration,
    /// Bound on each background connection attempt.
    pub redis_connect_timeout: Duration,
    /// Delays between background reconnection attempts.
    pub reconnect: RetryPolicy,
    /// How often the actor refreshes the `cache` health component.
    pub health_interval: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            l1_capacity_bytes: DEFAULT_L1_CAPACITY_BYTES,
            l1_ttl: DEFAULT_L1_TTL,
            l2_ttl: DEFAULT_L2_TTL,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            redis_url: None,
            redis_prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            redis_op_timeout: DEFAULT_REDIS_OP_TIMEOUT,
            redis_connect_timeout: DEFAULT_REDIS_CONNECT_TIMEOUT,
            reconnect: RetryPolicy::new(DEFAULT_RECONNECT_INITIAL, DEFAULT_RECONNECT_MAX),
            health_interval: DEFAULT_HEALTH_INTERVAL,
        }
    }
}

/// Errors of the cache's construction and messages.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// `REDIS_URL` could not be parsed. The URL itself is not repeated (it may hold a
    /// password).
    #[error("REDIS_URL is not a valid Redis URL")]
    InvalidRedisUrl,
}
