//! The response cache (DESIGN §3, issue 5): a moka L1 in this process, an optional Redis
//! L2 shared by every instance, and a single-flight table so identical concurrent misses
//! cost one upstream call.
//!
//! # Who owns what
//!
//! The read and write paths do not go through a mailbox: every request-serving thread holds
//! a [`CacheHandle`] (an `Arc` around the L1, the counters, the single-flight table and the
//! Redis connection) and calls [`CacheHandle::get_or_fetch`], [`CacheHandle::lookup`] or
//! [`CacheHandle::store`] directly. A mailbox hop per lookup would serialise every hit through
//! one actor thread and add a cross-thread wake-up to each. The `cache_lookup_handle_vs_actor`
//! test measures it: in a release build, 10,000 L1 hits took about 2 µs each through the
//! handle and 8.5 µs each as a message to the actor on its own arbiter; with 8 concurrent
//! callers, 11 ms against 80 ms in total.
//!
//! The [`Cache`] actor keeps what is policy and background work: it (re)connects to Redis
//! with backoff from [`crate::policy::retry`], publishes the `cache` component (status and
//! [`CacheStats`]) to the [`HealthBoard`] every [`DEFAULT_HEALTH_INTERVAL`], and answers
//! [`Lookup`], [`Store`] and [`Stats`] for callers that prefer messages — each delegates to the
//! handle. The state lives in the `Arc` the child factory captures, so a restart of the actor
//! loses nothing but its timers; the new instance opens a fresh Redis connection (the old
//! connection's driver ran on the old instance's arbiter).
//!
//! # Reads and writes
//!
//! Reads go L1 → L2 → miss; an L2 hit fills L1 (for at most what is left of its L2 life).
//! Writes go to both. L1 is bounded in bytes by a weigher; responses larger than
//! [`CacheSettings::max_response_bytes`] are not stored and are counted as rejections. Only
//! successful, complete responses are ever stored: a failed fetch is never cached.
//!
//! # Single-flight policy
//!
//! [`CacheHandle::get_or_fetch`] makes concurrent identical misses share one fetch: the first
//! caller becomes the *leader* and runs the fetch; the others *wait* for its result.
//!
//! - The leader succeeds: every waiter gets the same body (origin [`Origin::Coalesced`]).
//! - The leader fails: every waiter gets a clone of **the same error**, and nothing is
//!   cached. Retrying is the caller's (and the provider's retry policy's) business; doing it
//!   here would multiply upstream calls during an outage, which single-flight exists to stop.
//! - The leader is cancelled (its future dropped, e.g. the client went away) or panics: its
//!   flight ends without a result; waiters look the key up again and one of them becomes the
//!   new leader. Nobody waits forever.
//!
//! The flight table holds one entry per key being fetched right now; the leader's guard
//! removes it when the flight ends, however it ends. A waiter waits as long as the leader's
//! fetch takes, so the fetch itself must be bounded (the provider's request timeout); a
//! waiter whose own caller gives up simply drops its future.
//!
//! # Redis outage
//!
//! Every Redis operation has a short timeout ([`DEFAULT_REDIS_OP_TIMEOUT`]). The first
//! failed operation marks L2 down: from then on requests skip Redis entirely (L1 only) and
//! the actor reconnects in the background with backoff. The state change is logged once
//! (through [`FailureLog`]), recorded once as `cache.error`, and `/health` shows the `cache`
//! component as degraded until a reconnect succeeds. Failed operations are counted
//! (`l2_errors`), not recorded one by one.
//!
//! # Events (source `cache`)
//!
//! - `cache.hit` `{level: "l1"|"l2", model, key, age_ms, bytes}`
//! - `cache.miss` `{model, key}`
//! - `cache.set` `{ok: true, model, key, bytes}` or `{ok: false, reason: "too_large", model,
//!   key, bytes, limit}`
//! - `cache.evict` `{level: "l1", cause: "size"|"expired", model, bytes}`
//! - `cache.error` `{ok: false, level: "l2", op, error, failures}` on the change to "down"
//!   and on each periodic summary while Redis stays down.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use moka::notification::RemovalCause;
use redis::aio::MultiplexedConnection;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Notify, watch};

pub use bytes::Bytes;

use crate::cache::key::CacheKey;
use crate::health::{HealthBoard, Status};
use crate::pipeline::recorder::Recorder;
use crate::policy::failure_log::{FailureLog, Transition};
use crate::policy::retry::RetryPolicy;
use crate::supervisor::{ChildSpec, Slot};

/// The supervisor child's name.
pub const ACTOR_NAME: &str = "cache";
/// The `/health` component this cache reports as.
pub const HEALTH_COMPONENT: &str = "cache";
/// `source` of every event this module records.
const EVENT_SOURCE: &str = "cache";

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

/// Bytes charged per L1 entry on top of body and model, for the key, `Arc`, moka's node,
/// timer wheel and frequency sketch. Measured: ~650 bytes of RSS per entry beyond the body
/// (93k entries of ~320-byte bodies, release build), so the byte capacity bounds real memory.
const ENTRY_OVERHEAD_BYTES: usize = 640;
/// First bytes of every L2 value; a value without them is ignored (and counted).
const L2_MAGIC: &[u8; 4] = b"EXC1";
/// L2 header: magic, `stored_at` (i64 BE), model length (u16 BE).
const L2_HEADER_BYTES: usize = 4 + 8 + 2;

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

/// Which cache level answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheLevel {
    /// This process's memory.
    L1,
    /// The shared Redis.
    L2,
}

impl CacheLevel {
    /// `"l1"` or `"l2"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
        }
    }
}

/// State of the Redis L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum L2State {
    /// No `REDIS_URL`: L1 only, by configuration.
    Disabled,
    /// Configured, first connection not made yet.
    Connecting,
    /// Connected; reads and writes use it.
    Up,
    /// Unreachable: L1 only while the actor reconnects in the background.
    Down,
}

impl L2State {
    /// Decodes the atomic representation.
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Disabled,
            1 => Self::Connecting,
            2 => Self::Up,
            _ => Self::Down,
        }
    }

    /// `"disabled"`, `"connecting"`, `"up"` or `"down"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Connecting => "connecting",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// A cached response, as served.
#[derive(Debug, Clone)]
pub struct CacheHit {
    /// The complete (non-streamed) JSON response, exactly as stored.
    pub body: Bytes,
    /// The resolved model that produced it.
    pub model: String,
    /// Which level answered.
    pub level: CacheLevel,
    /// When it was stored, Unix milliseconds.
    pub stored_at_ms: i64,
    /// How old it is now, milliseconds.
    pub age_ms: u64,
}

/// What [`CacheHandle::store`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored in L1 (and written to L2 when it is up).
    Stored,
    /// Larger than the size cap: not stored, counted as a rejection.
    TooLarge {
        /// The response's size.
        bytes: usize,
        /// The cap.
        limit: usize,
    },
}

/// Where a [`CacheReply`] came from; the metadata to show instead of upstream latency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Served from the cache.
    Hit {
        /// Which level answered.
        level: CacheLevel,
        /// When it was stored, Unix milliseconds.
        stored_at_ms: i64,
        /// Its age, milliseconds.
        age_ms: u64,
    },
    /// This caller fetched it upstream (it led the flight).
    Fetched {
        /// Whether it was stored.
        stored: StoreOutcome,
    },
    /// Another caller's concurrent fetch answered it (single-flight).
    Coalesced,
}

impl Origin {
    /// A short label for headers and logs: `l1`, `l2`, `miss` or `coalesced`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Hit { level, .. } => level.as_str(),
            Self::Fetched { .. } => "miss",
            Self::Coalesced => "coalesced",
        }
    }
}

/// The answer of [`CacheHandle::get_or_fetch`].
#[derive(Debug, Clone)]
pub struct CacheReply {
    /// The complete JSON response.
    pub body: Bytes,
    /// How it was obtained.
    pub origin: Origin,
}

impl From<CacheHit> for CacheReply {
    fn from(hit: CacheHit) -> Self {
        Self {
            body: hit.body,
            origin: Origin::Hit {
                level: hit.level,
                stored_at_ms: hit.stored_at_ms,
                age_ms: hit.age_ms,
            },
        }
    }
}

/// Counters and sizes for `/health` and the dashboard.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CacheStats {
    /// Lookups answered from L1 or L2.
    pub hits: u64,
    /// Of which from L1.
    pub hits_l1: u64,
    /// Of which from L2.
    pub hits_l2: u64,
    /// Lookups answered by neither level.
    pub misses: u64,
    /// `hits / (hits + misses)`, 0 when there were no lookups.
    pub hit_ratio: f64,
    /// Entries in L1.
    pub entries: u64,
    /// Bytes in L1 (weighted size).
    pub bytes: u64,
    /// L1 capacity in bytes.
    pub capacity_bytes: u64,
    /// L1 entries removed for size or age.
    pub evictions: u64,
    /// Responses not stored because they exceeded the size cap.
    pub rejections: u64,
    /// Responses stored.
    pub sets: u64,
    /// Upstream fetches made through `get_or_fetch` (one per flight).
    pub fetches: u64,
    /// Of which failed (never cached).
    pub fetch_errors: u64,
    /// Callers answered by another caller's fetch.
    pub coalesced: u64,
    /// Flights in progress right now.
    pub inflight: usize,
    /// Redis state.
    pub l2: L2State,
    /// Failed Redis operations and connection attempts.
    pub l2_errors: u64,
}

// ---------------------------------------------------------------------------------------
// Messages. Each delegates to the handle; the request path should use the handle directly.

/// Looks a key up (L1, then L2).
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<CacheHit>, CacheError>")]
pub struct Lookup {
    /// The request's key.
    pub key: CacheKey,
    /// The resolved model, for the `cache.miss` event.
    pub model: String,
}

/// Stores a complete successful response.
#[derive(Debug, Message)]
#[rtype(result = "Result<StoreOutcome, CacheError>")]
pub struct Store {
    /// The request's key.
    pub key: CacheKey,
    /// The resolved model that produced it.
    pub model: String,
    /// The complete JSON response.
    pub body: Bytes,
}

/// Returns the current [`CacheStats`].
#[derive(Debug, Message)]
#[rtype(result = "Result<CacheStats, CacheError>")]
pub struct Stats;

// ---------------------------------------------------------------------------------------
// Shared state.

/// One L1 entry.
#[derive(Debug)]
struct Entry {
    /// The response.
    body: Bytes,
    /// The resolved model.
    model: String,
    /// When it was first stored (in any instance), Unix ms.
    stored_at_ms: i64,
    /// How long it may stay in L1 from insertion.
    ttl: Duration,
}

impl Entry {
    /// The weigher's charge.
    fn weight(&self) -> u32 {
        let bytes = self.body.len() + self.model.len() + ENTRY_OVERHEAD_BYTES;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    /// As served, `level` being where it was found.
    fn hit(&self, level: CacheLevel) -> CacheHit {
        CacheHit {
            body: self.body.clone(),
            model: self.model.clone(),
            level,
            stored_at_ms: self.stored_at_ms,
            age_ms: u64::try_from(now_ms().saturating_sub(self.stored_at_ms)).unwrap_or(0),
        }
    }
}

/// Per-entry L1 lifetime: the TTL carried by the entry, reset when an entry is replaced.
struct EntryExpiry;

impl moka::Expiry<CacheKey, Arc<Entry>> for EntryExpiry {
    fn expire_after_create(
        &self,
        _: &CacheKey,
        entry: &Arc<Entry>,
        _: Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &CacheKey,
        entry: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Monotonic counters; shared with the eviction listener.
#[derive(Debug, Default)]
struct Counters {
    /// See [`CacheStats::hits_l1`].
    hits_l1: AtomicU64,
    /// See [`CacheStats::hits_l2`].
    hits_l2: AtomicU64,
    /// See [`CacheStats::misses`].
    misses: AtomicU64,
    /// See [`CacheStats::evictions`].
    evictions: AtomicU64,
    /// See [`CacheStats::rejections`].
    rejections: AtomicU64,
    /// See [`CacheStats::sets`].
    sets: AtomicU64,
    /// See [`CacheStats::fetches`].
    fetches: AtomicU64,
    /// See [`CacheStats::fetch_errors`].
    fetch_errors: AtomicU64,
    /// See [`CacheStats::coalesced`].
    coalesced: AtomicU64,
    /// See [`CacheStats::l2_errors`].
    l2_errors: AtomicU64,
}

/// Increments a counter.
fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What a finished flight hands its waiters: the body, or the leader's error (type-erased;
/// waiters downcast it back to their own error type).
type FlightResult = Result<Bytes, Arc<dyn Any + Send + Sync>>;

/// One flight in the table: its id and where its result will appear (`None` until then).
struct FlightSlot {
    /// Distinguishes this flight from a later one for the same key.
    id: u64,
    /// Waiters subscribe here.
    result: watch::Receiver<Option<FlightResult>>,
}

/// The Redis side, present when `REDIS_URL` is set.
struct L2 {
    /// Connection factory.
    client: redis::Client,
    /// The live connection with its generation, `None` while down.
    conn: RwLock<Option<(u64, MultiplexedConnection)>>,
    /// Source of connection generations.
    generation: AtomicU64,
    /// [`L2State`] as a byte, readable without a lock.
    state: AtomicU8,
    /// Logs the outage on state change and as a periodic summary only.
    failures: Mutex<FailureLog>,
    /// Wakes the reconnector when an operation found Redis dead.
    wake: Notify,
}

/// Everything the handle and the actor share.
struct Shared {
    /// Configuration.
    settings: CacheSettings,
    /// The in-process level.
    l1: moka::sync::Cache<CacheKey, Arc<Entry>>,
    /// Counters.
    counters: Arc<Counters>,
    /// Flights in progress, by key. Entries are removed by the leader's guard.
    flights: Mutex<HashMap<CacheKey, FlightSlot>>,
    /// Source of flight ids.
    next_flight: AtomicU64,
    /// Redis, when configured.
    l2: Option<L2>,
    /// The recording API.
    recorder: Recorder,
    /// Where the `cache` component is published.
    health: HealthBoard,
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Milliseconds of `d`, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether a Redis error means the connection (not the command) is broken.
fn is_connection_error(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

/// Encodes an entry for L2.
fn encode_l2(model: &str, stored_at_ms: i64, body: &[u8]) -> Vec<u8> {
    let model = &model.as_bytes()[..model.len().min(usize::from(u16::MAX))];
    let mut out = Vec::with_capacity(L2_HEADER_BYTES + model.len() + body.len());
    out.extend_from_slice(L2_MAGIC);
    out.extend_from_slice(&stored_at_ms.to_be_bytes());
    out.extend_from_slice(&u16::try_from(model.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(model);
    out.extend_from_slice(body);
    out
}

/// Decodes an L2 value into `(model, stored_at_ms, body)`; `None` if malformed.
fn decode_l2(raw: Vec<u8>) -> Option<(String, i64, Bytes)> {
    let raw = Bytes::from(raw);
    if raw.len() < L2_HEADER_BYTES || !raw.starts_with(L2_MAGIC) {
        return None;
    }
    let stored_at_ms = i64::from_be_bytes(raw.get(4..12)?.try_into().ok()?);
    let model_len = usize::from(u16::from_be_bytes(raw.get(12..14)?.try_into().ok()?));
    let model_end = L2_HEADER_BYTES.checked_add(model_len)?;
    let model = std::str::from_utf8(raw.get(L2_HEADER_BYTES..model_end)?)
        .ok()?
        .to_owned();
    Some((model, stored_at_ms, raw.slice(model_end..)))
}

// ---------------------------------------------------------------------------------------
// Construction.

/// Builds the cache: the shared state, its handle, and the supervisor child spec.
pub struct ResponseCache {
    /// The handle every request path clones.
    handle: CacheHandle,
    /// Where the supervised actor's address is published.
    slot: Slot<Cache>,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("handle", &self.handle)
            .finish()
    }
}

impl ResponseCache {
    /// Builds the cache. Redis, if configured, is connected by the actor once it starts;
    /// until then (and whenever Redis is down) the cache runs on L1 alone.
    pub fn new(
        settings: CacheSettings,
        recorder: Recorder,
        health: HealthBoard,
    ) -> Result<Self, CacheError> {
        let l2 = match &settings.redis_url {
            None => None,
            Some(url) => Some(L2 {
                client: redis::Client::open(url.expose_secret())
                    .map_err(|_| CacheError::InvalidRedisUrl)?,
                conn: RwLock::new(None),
                generation: AtomicU64::new(0),
                state: AtomicU8::new(L2State::Connecting as u8),
                failures: Mutex::new(FailureLog::new("redis cache")),
                wake: Notify::new(),
            }),
        };
        let counters = Arc::new(Counters::default());
        let listener_counters = counters.clone();
        let listener_recorder = recorder.clone();
        let l1 = moka::sync::Cache::<CacheKey, Arc<Entry>>::builder()
            .max_capacity(settings.l1_capacity_bytes)
            .weigher(|_, entry: &Arc<Entry>| entry.weight())
            .expire_after(EntryExpiry)
            .eviction_listener(move |_key, entry: Arc<Entry>, cause| {
                let cause = match cause {
                    RemovalCause::Size => "size",
                    RemovalCause::Expired => "expired",
                    RemovalCause::Explicit | RemovalCause::Replaced => return,
                };
                bump(&listener_counters.evictions);
                listener_recorder.record(
                    EVENT_SOURCE,
                    "cache.evict",
                    json!({
                        "level": "l1",
                        "cause": cause,
                        "model": entry.model,
                        "bytes": entry.body.len(),
                    }),
                );
            })
            .build();
        let handle = CacheHandle {
            shared: Arc::new(Shared {
                settings,
                l1,
                counters,
                flights: Mutex::new(HashMap::new()),
                next_flight: AtomicU64::new(0),
                l2,
                recorder,
                health,
            }),
        };
        handle.publish_health();
        Ok(Self {
            handle,
            slot: Slot::new(),
        })
    }

    /// The handle for the request path.
    pub fn handle(&self) -> CacheHandle {
        self.handle.clone()
    }

    /// Where the supervised actor's current address is published.
    pub fn slot(&self) -> Slot<Cache> {
        self.slot.clone()
    }

    /// The supervisor child (named [`ACTOR_NAME`]); every restart reuses the same state.
    pub fn child_spec(&self) -> ChildSpec {
        let handle = self.handle.clone();
        ChildSpec::new(ACTOR_NAME, self.slot.clone(), move || {
            Cache::new(handle.clone())
        })
    }
}

// ---------------------------------------------------------------------------------------
// The handle: the request path.

/// Cheap-to-clone access to the cache for the request path (no mailbox hop).
#[derive(Clone)]
pub struct CacheHandle {
    /// The shared state.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for CacheHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheHandle")
            .field("l2", &self.l2_state())
            .field("entries", &self.shared.l1.entry_count())
            .finish()
    }
}

/// What a caller of `get_or_fetch` turned out to be.
enum Role {
    /// Runs the fetch; the guard ends the flight when dropped.
    Lead(FlightGuard),
    /// Waits for the leader.
    Follow(watch::Receiver<Option<FlightResult>>),
}

/// The leader's end of a flight: publishes the result, and removes the table entry when
/// dropped (completion, error, cancellation or panic alike).
struct FlightGuard {
    /// The cache.
    shared: Arc<Shared>,
    /// The flight's key.
    key: CacheKey,
    /// The flight's id, so a later flight's entry is never removed.
    id: u64,
    /// Where the result goes.
    result: watch::Sender<Option<FlightResult>>,
}

impl FlightGuard {
    /// Hands `result` to every current and late waiter.
    fn publish(&self, result: FlightResult) {
        self.result.send_replace(Some(result));
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut flights = self
            .shared
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if flights
            .get(&self.key)
            .is_some_and(|slot| slot.id == self.id)
        {
            flights.remove(&self.key);
        }
    }
}

impl CacheHandle {
    /// The configuration in force.
    pub fn settings(&self) -> &CacheSettings {
        &self.shared.settings
    }

    /// The Redis state.
    pub fn l2_state(&self) -> L2State {
        match &self.shared.l2 {
            None => L2State::Disabled,
            Some(l2) => L2State::from_u8(l2.state.load(Ordering::Relaxed)),
        }
    }

    /// Looks `key` up in L1, then L2 (filling L1 on an L2 hit). Records `cache.hit` or
    /// `cache.miss`; `model` is the resolved model, used in the miss event.
    pub async fn lookup(&self, key: &CacheKey, model: &str) -> Option<CacheHit> {
        if let Some(hit) = self.lookup_l1(key) {
            return Some(hit);
        }
        if let Some(hit) = self.lookup_l2(key).await {
            return Some(hit);
        }
        bump(&self.shared.counters.misses);
        self.shared.recorder.record(
            EVENT_SOURCE,
            "cache.miss",
            json!({ "model": model, "key": key.short() }),
        );
        None
    }

    /// Stores a complete successful response in L1 and (when up) L2. Never call it with an
    /// error response.
    pub async fn store(&self, key: &CacheKey, model: &str, body: Bytes) -> StoreOutcome {
        match self.store_l1(key, model, body) {
            Ok(entry) => {
                self.store_l2(key, &entry).await;
                StoreOutcome::Stored
            }
            Err(outcome) => outcome,
        }
    }

    /// Answers from the cache, or runs `fetch` once for all concurrent callers of the same
    /// key, stores a successful result and hands it to all of them. See the module docs for
    /// what waiters get when the leader fails or is cancelled. A failed fetch is never
    /// cached; its error reaches the leader as is and each waiter as a clone.
    pub async fn get_or_fetch<F, Fut, E>(
        &self,
        key: &CacheKey,
        model: &str,
        fetch: F,
    ) -> Result<CacheReply, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Clone + Send + Sync + 'static,
    {
        let flight = loop {
            if let Some(hit) = self.lookup(key, model).await {
                return Ok(hit.into());
            }
            match self.join_or_lead(key) {
                Role::Lead(guard) => {
                    // A flight that ended between our lookup and now has stored its result
                    // in L1 before leaving the table: look again before fetching.
                    if let Some(hit) = self.lookup_l1(key) {
                        guard.publish(Ok(hit.body.clone()));
                        return Ok(hit.into());
                    }
                    break Some(guard);
                }
                Role::Follow(mut result) => {
                    let outcome = match result.wait_for(Option::is_some).await {
                        Ok(value) => value.clone(),
                        Err(_) => None,
                    };
                    match outcome {
                        Some(Ok(body)) => {
                            bump(&self.shared.counters.coalesced);
                            return Ok(CacheReply {
                                body,
                                origin: Origin::Coalesced,
                            });
                        }
                        Some(Err(error)) => match error.downcast_ref::<E>() {
                            Some(error) => {
                                bump(&self.shared.counters.coalesced);
                                return Err(error.clone());
                            }
                            // The leader used another error type for the same key: fetch
                            // for ourselves rather than invent an error.
                            None => break None,
                        },
                        // The leader was cancelled: look again, perhaps lead.
                        None => continue,
                    }
                }
            }
        };
        bump(&self.shared.counters.fetches);
        match fetch().await {
            Ok(body) => {
                let stored = self.store_l1(key, model, body.clone());
                if let Some(guard) = &flight {
                    guard.publish(Ok(body.clone()));
                }
                drop(flight);
                let stored = match stored {
                    Ok(entry) => {
                        self.store_l2(key, &entry).await;
                        StoreOutcome::Stored
                    }
                    Err(outcome) => outcome,
                };
                Ok(CacheReply {
                    body,
                    origin: Origin::Fetched { stored },
                })
            }
            Err(error) => {
                bump(&self.shared.counters.fetch_errors);
                if let Some(guard) = &flight {
                    guard.publish(Err(Arc::new(error.clone())));
                }
                Err(error)
            }
        }
    }

    /// Current counters and sizes.
    pub fn stats(&self) -> CacheStats {
        let shared = &self.shared;
        shared.l1.run_pending_tasks();
        let c = &shared.counters;
        let hits_l1 = c.hits_l1.load(Ordering::Relaxed);
        let hits_l2 = c.hits_l2.load(Ordering::Relaxed);
        let hits = hits_l1 + hits_l2;
        let misses = c.misses.load(Ordering::Relaxed);
        let lookups = hits + misses;
        #[allow(clippy::cast_precision_loss)]
        let hit_ratio = if lookups == 0 {
            0.0
        } else {
            hits as f64 / lookups as f64
        };
        CacheStats {
            hits,
            hits_l1,
            hits_l2,
            misses,
            hit_ratio,
            entries: shared.l1.entry_count(),
            bytes: shared.l1.weighted_size(),
            capacity_bytes: shared.settings.l1_capacity_bytes,
            evictions: c.evictions.load(Ordering::Relaxed),
            rejections: c.rejections.load(Ordering::Relaxed),
            sets: c.sets.load(Ordering::Relaxed),
            fetches: c.fetches.load(Ordering::Relaxed),
            fetch_errors: c.fetch_errors.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
            inflight: shared
                .flights
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            l2: self.l2_state(),
            l2_errors: c.l2_errors.load(Ordering::Relaxed),
        }
    }

    /// Publishes the `cache` health component: degraded while a configured Redis is down.
    pub fn publish_health(&self) {
        let stats = self.stats();
        let status = match stats.l2 {
            L2State::Down => Status::Degraded,
            L2State::Disabled | L2State::Connecting | L2State::Up => Status::Ok,
        };
        let detail = serde_json::to_value(&stats).unwrap_or_default();
        self.shared
            .health
            .set_component(HEALTH_COMPONENT, status, detail);
    }

    // --- L1 -----------------------------------------------------------------------------

    /// L1 only; records and counts a hit.
    fn lookup_l1(&self, key: &CacheKey) -> Option<CacheHit> {
        let entry = self.shared.l1.get(key)?;
        let hit = entry.hit(CacheLevel::L1);
        bump(&self.shared.counters.hits_l1);
        self.record_hit(key, &hit);
        Some(hit)
    }

    /// Inserts into L1 unless too large (then counts and records the rejection).
    fn store_l1(
        &self,
        key: &CacheKey,
        model: &str,
        body: Bytes,
    ) -> Result<Arc<Entry>, StoreOutcome> {
        let shared = &self.shared;
        let limit = shared.settings.max_response_bytes;
        if body.len() > limit {
            bump(&shared.counters.rejections);
            shared.recorder.record(
                EVENT_SOURCE,
                "cache.set",
                json!({
                    "ok": false,
                    "reason": "too_large",
                    "model": model,
                    "key": key.short(),
                    "bytes": body.len(),
                    "limit": limit,
                }),
            );
            return Err(StoreOutcome::TooLarge {
                bytes: body.len(),
                limit,
            });
        }
        let entry = Arc::new(Entry {
            // A response body is usually a slice of the HTTP client's read buffer (8 KiB or
            // more); keeping the slice would pin the whole buffer, so L1 memory would be ~20×
            // what the weigher charges. Copy it into an allocation of its own size.
            body: Bytes::copy_from_slice(&body),
            model: model.to_owned(),
            stored_at_ms: now_ms(),
            ttl: shared.settings.l1_ttl,
        });
        shared.l1.insert(*key, entry.clone());
        bump(&shared.counters.sets);
        shared.recorder.record(
            EVENT_SOURCE,
            "cache.set",
            json!({ "ok": true, "model": model, "key": key.short(), "bytes": entry.body.len() }),
        );
        Ok(entry)
    }

    /// Records `cache.hit`.
    fn record_hit(&self, key: &CacheKey, hit: &CacheHit) {
        self.shared.recorder.record(
            EVENT_SOURCE,
            "cache.hit",
            json!({
                "level": hit.level.as_str(),
                "model": hit.model,
                "key": key.short(),
                "age_ms": hit.age_ms,
                "bytes": hit.body.len(),
            }),
        );
    }

    /// Joins the flight for `key`, or starts one.
    fn join_or_lead(&self, key: &CacheKey) -> Role {
        let shared = &self.shared;
        let mut flights = shared
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = flights.get(key) {
            return Role::Follow(slot.result.clone());
        }
        let id = shared.next_flight.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        flights.insert(*key, FlightSlot { id, result: rx });
        Role::Lead(FlightGuard {
            shared: shared.clone(),
            key: *key,
            id,
            result: tx,
        })
    }

    // --- L2 -----------------------------------------------------------------------------

    /// The Redis key for `key`.
    fn redis_key(&self, key: &CacheKey) -> String {
        format!("{}{}", self.shared.settings.redis_prefix, key.to_hex())
    }

    /// The live connection, if L2 is up.
    fn connection(&self) -> Option<(&L2, u64, MultiplexedConnection)> {
        let l2 = self.shared.l2.as_ref()?;
        let conn = l2.conn.read().unwrap_or_else(PoisonError::into_inner);
        let (generation, conn) = conn.as_ref()?;
        Some((l2, *generation, conn.clone()))
    }

    /// L2 read with the operation timeout; a hit fills L1 and is recorded.
    async fn lookup_l2(&self, key: &CacheKey) -> Option<CacheHit> {
        let (_, generation, mut conn) = self.connection()?;
        let timeout = self.shared.settings.redis_op_timeout;
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.redis_key(key));
        let get = cmd.query_async::<Option<Vec<u8>>>(&mut conn);
        let raw = match tokio::time::timeout(timeout, get).await {
            Ok(Ok(raw)) => raw?,
            Ok(Err(error)) => {
                self.l2_failed(
                    generation,
                    "get",
                    &error.to_string(),
                    is_connection_error(&error),
                );
                return None;
            }
            Err(_) => {
                self.l2_failed(generation, "get", "timed out", true);
                return None;
            }
        };
        let Some((model, stored_at_ms, body)) = decode_l2(raw) else {
            bump(&self.shared.counters.l2_errors);
            tracing::debug!(key = %key.short(), "malformed L2 cache value ignored");
            return None;
        };
        let age = Duration::from_millis(
            u64::try_from(now_ms().saturating_sub(stored_at_ms)).unwrap_or(0),
        );
        let ttl = self
            .shared
            .settings
            .l1_ttl
            .min(self.shared.settings.l2_ttl.saturating_sub(age));
        let entry = Arc::new(Entry {
            body,
            model,
            stored_at_ms,
            ttl,
        });
        // Another instance may allow larger responses; this one's L1 keeps to its own cap.
        if !ttl.is_zero() && entry.body.len() <= self.shared.settings.max_response_bytes {
            self.shared.l1.insert(*key, entry.clone());
        }
        let hit = entry.hit(CacheLevel::L2);
        bump(&self.shared.counters.hits_l2);
        self.record_hit(key, &hit);
        Some(hit)
    }

    /// L2 write with the operation timeout; skipped while L2 is not up.
    async fn store_l2(&self, key: &CacheKey, entry: &Entry) {
        let Some((_, generation, mut conn)) = self.connection() else {
            return;
        };
        let settings = &self.shared.settings;
        let value = encode_l2(&entry.model, entry.stored_at_ms, &entry.body);
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(key))
            .arg(value)
            .arg("PX")
            .arg(millis(settings.l2_ttl).max(1));
        let set = cmd.query_async::<()>(&mut conn);
        match tokio::time::timeout(settings.redis_op_timeout, set).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                self.l2_failed(
                    generation,
                    "set",
                    &error.to_string(),
                    is_connection_error(&error),
                );
            }
            Err(_) => self.l2_failed(generation, "set", "timed out", true),
        }
    }

    /// An L2 operation failed. A broken connection marks L2 down (once per connection),
    /// records `cache.error`, degrades health and wakes the reconnector.
    fn l2_failed(&self, generation: u64, op: &str, error: &str, connection: bool) {
        bump(&self.shared.counters.l2_errors);
        let Some(l2) = &self.shared.l2 else {
            return;
        };
        if !connection {
            tracing::debug!(op, error, "redis cache command failed");
            return;
        }
        {
            let mut conn = l2.conn.write().unwrap_or_else(PoisonError::into_inner);
            if conn.as_ref().is_none_or(|(g, _)| *g != generation) {
                // Another caller already reported this connection.
                return;
            }
            *conn = None;
            l2.state.store(L2State::Down as u8, Ordering::Relaxed);
        }
        self.note_l2_failure(op, error);
        l2.wake.notify_one();
    }

    /// Feeds the failure log; records and publishes on a state change or summary.
    fn note_l2_failure(&self, op: &str, error: &str) {
        let Some(l2) = &self.shared.l2 else {
            return;
        };
        let transition = l2
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failure(&error);
        let failures = match transition {
            Transition::Failing => 1,
            Transition::StillFailing { failures, .. } => failures,
            Transition::Quiet | Transition::Recovered { .. } => return,
        };
        self.shared.recorder.record(
            EVENT_SOURCE,
            "cache.error",
            json!({
                "ok": false,
                "level": "l2",
                "op": op,
                "error": error,
                "failures": failures,
                "l2": L2State::Down.as_str(),
            }),
        );
        self.publish_health();
    }

    /// One connection attempt: connect and `PING`, within the connect timeout.
    async fn connect_l2(&self, l2: &L2) -> Result<MultiplexedConnection, String> {
        let settings = &self.shared.settings;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.redis_connect_timeout))
            .set_response_timeout(Some(settings.redis_op_timeout));
        let attempt = async {
            let mut conn = l2
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        };
        match tokio::time::timeout(settings.redis_connect_timeout, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err("connection attempt timed out".to_owned()),
        }
    }

    /// Keeps L2 connected: connects now, then whenever an operation reports it down, with
    /// backoff between failed attempts. Runs on the actor; ends with it.
    async fn maintain_l2(self) {
        let Some(l2) = &self.shared.l2 else {
            return;
        };
        let mut delays = self.shared.settings.reconnect.start();
        // A new actor instance always reconnects: the old connection's driver task ran on
        // the previous instance's arbiter.
        let mut force = true;
        loop {
            if !force && self.l2_state() == L2State::Up {
                l2.wake.notified().await;
                continue;
            }
            force = false;
            match self.connect_l2(l2).await {
                Ok(conn) => {
                    let generation = l2.generation.fetch_add(1, Ordering::Relaxed) + 1;
                    *l2.conn.write().unwrap_or_else(PoisonError::into_inner) =
                        Some((generation, conn));
                    l2.state.store(L2State::Up as u8, Ordering::Relaxed);
                    // Logs "recovered" once if this ends an outage.
                    l2.failures
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .success();
                    delays.reset();
                    self.publish_health();
                }
                Err(error) => {
                    bump(&self.shared.counters.l2_errors);
                    *l2.conn.write().unwrap_or_else(PoisonError::into_inner) = None;
                    l2.state.store(L2State::Down as u8, Ordering::Relaxed);
                    self.note_l2_failure("connect", &error);
                    tokio::time::sleep(delays.next_delay()).await;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The actor: policy, health and Redis upkeep.

/// The supervised cache actor. See the module docs.
pub struct Cache {
    /// The shared state it maintains and delegates to.
    handle: CacheHandle,
}

impl Cache {
    /// An instance over `handle`'s state (called by the child factory on each start).
    pub fn new(handle: CacheHandle) -> Self {
        Self { handle }
    }
}

impl Actor for Cache {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.handle.publish_health();
        let interval = self.handle.shared.settings.health_interval;
        ctx.run_interval(interval, |act, _| act.handle.publish_health());
        if self.handle.shared.l2.is_some() {
            ctx.spawn(actix::fut::wrap_future(self.handle.clone().maintain_l2()));
        }
    }
}

crate::supervised_child!(Cache);

impl Handler<Lookup> for Cache {
    type Result = ResponseFuture<Result<Option<CacheHit>, CacheError>>;

    fn handle(&mut self, msg: Lookup, _: &mut Self::Context) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(async move { Ok(handle.lookup(&msg.key, &msg.model).await) })
    }
}

impl Handler<Store> for Cache {
    type Result = ResponseFuture<Result<StoreOutcome, CacheError>>;

    fn handle(&mut self, msg: Store, _: &mut Self::Context) -> Self::Result {
        let handle = self.handle.clone();
        Box::pin(async move { Ok(handle.store(&msg.key, &msg.model, msg.body).await) })
    }
}

impl Handler<Stats> for Cache {
    type Result = Result<CacheStats, CacheError>;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> Self::Result {
        Ok(self.handle.stats())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::Value;
    use std::sync::atomic::AtomicUsize;

    fn cache_with(settings: CacheSettings) -> (CacheHandle, Recorder, HealthBoard) {
        let recorder = Recorder::new("test", 100_000);
        let health = HealthBoard::new();
        let cache = ResponseCache::new(settings, recorder.clone(), health.clone()).unwrap();
        (cache.handle(), recorder, health)
    }

    fn key(n: u32) -> CacheKey {
        CacheKey::derive(
            &json!({"messages": [{"role": "user", "content": n.to_string()}]}),
            "m",
        )
    }

    fn kinds(recorder: &Recorder) -> Vec<(String, Value)> {
        recorder
            .drain(100_000)
            .into_iter()
            .map(|e| (e.kind, e.data))
            .collect()
    }

    #[derive(Debug, Clone, PartialEq)]
    struct Upstream(&'static str);

    #[tokio::test]
    async fn miss_then_store_then_l1_hit_with_its_own_metadata() {
        let (cache, recorder, _) = cache_with(CacheSettings::default());
        let k = key(1);
        assert!(cache.lookup(&k, "m").await.is_none());
        let stored = cache.store(&k, "m", Bytes::from_static(b"{\"a\":1}")).await;
        assert_eq!(stored, StoreOutcome::Stored);
        let hit = cache.lookup(&k, "m").await.unwrap();
        assert_eq!(hit.body, Bytes::from_static(b"{\"a\":1}"));
        assert_eq!(hit.level, CacheLevel::L1);
        assert_eq!(hit.model, "m");
        assert!(hit.age_ms < 5_000);
        let events = kinds(&recorder);
        let names: Vec<_> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["cache.miss", "cache.set", "cache.hit"]);
        assert_eq!(events[2].1["level"], "l1");
        let stats = cache.stats();
        assert_eq!(
            (stats.hits, stats.misses, stats.sets, stats.entries),
            (1, 1, 1, 1)
        );
        assert!((stats.hit_ratio - 0.5).abs() < f64::EPSILON);
        assert!(stats.bytes > 0);
        assert_eq!(stats.l2, L2State::Disabled);
    }

    #[tokio::test]
    async fn oversized_responses_are_rejected_and_counted() {
        let (cache, recorder, _) = cache_with(CacheSettings {
            max_response_bytes: 10,
            ..CacheSettings::default()
        });
        let k = key(2);
        let outcome = cache.store(&k, "m", Bytes::from(vec![b'x'; 11])).await;
        assert_eq!(
            outcome,
            StoreOutcome::TooLarge {
                bytes: 11,
                limit: 10
            }
        );
        assert!(cache.lookup(&k, "m").await.is_none());
        assert_eq!(cache.stats().rejections, 1);
        let events = kinds(&recorder);
        assert_eq!(events[0].0, "cache.set");
        assert_eq!(events[0].1["ok"], false);
        assert_eq!(events[0].1["reason"], "too_large");
        // Exactly at the limit is fine.
        assert_eq!(
            cache.store(&k, "m", Bytes::from(vec![b'x'; 10])).await,
            StoreOutcome::Stored
        );
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let (cache, recorder, _) = cache_with(CacheSettings {
            l1_ttl: Duration::from_millis(50),
            ..CacheSettings::default()
        });
        let k = key(3);
        cache.store(&k, "m", Bytes::from_static(b"{}")).await;
        assert!(cache.lookup(&k, "m").await.is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(
            cache.lookup(&k, "m").await.is_none(),
            "an expired entry is never served"
        );
        // moka removes expired entries (and fires `cache.evict`) on its own timer wheel,
        // whose buckets are about a second wide; serving is what the TTL guarantees.
        let names: Vec<_> = kinds(&recorder).into_iter().map(|(k, _)| k).collect();
        assert_eq!(names.last().map(String::as_str), Some("cache.miss"));
    }

    #[tokio::test]
    async fn capacity_is_in_bytes() {
        let body = Bytes::from(vec![b'x'; 1000]);
        let (cache, recorder, _) = cache_with(CacheSettings {
            l1_capacity_bytes: 10 * (1000 + ENTRY_OVERHEAD_BYTES as u64 + 1),
            ..CacheSettings::default()
        });
        for n in 0..50 {
            cache.store(&key(n), "m", body.clone()).await;
        }
        let stats = cache.stats();
        assert!(stats.entries <= 10, "{stats:?}");
        assert!(stats.bytes <= stats.capacity_bytes, "{stats:?}");
        assert!(stats.evictions >= 40, "{stats:?}");
        assert!(
            kinds(&recorder)
                .iter()
                .any(|(k, d)| k == "cache.evict" && d["cause"] == "size")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_identical_misses_fetch_once() {
        let (cache, _, _) = cache_with(CacheSettings::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let k = key(4);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let cache = cache.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    cache
                        .get_or_fetch(&k, "m", || async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, Upstream>(Bytes::from_static(b"{\"ok\":true}"))
                        })
                        .await
                })
            })
            .collect();
        let mut origins = Vec::new();
        for task in tasks {
            let reply = task.await.unwrap().unwrap();
            assert_eq!(reply.body, Bytes::from_static(b"{\"ok\":true}"));
            origins.push(reply.origin.label());
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(origins.iter().filter(|o| **o == "miss").count(), 1);
        let stats = cache.stats();
        assert_eq!(stats.inflight, 0, "the flight table is cleaned");
        assert_eq!(stats.fetches, 1);
        // A later call is a plain L1 hit.
        let reply = cache
            .get_or_fetch(&k, "m", || async { Err::<Bytes, _>(Upstream("unused")) })
            .await
            .unwrap();
        assert_eq!(reply.origin.label(), "l1");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_failed_leader_fails_every_waiter_and_nothing_is_cached() {
        let (cache, _, _) = cache_with(CacheSettings::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let k = key(5);
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                let calls = calls.clone();
                tokio::spawn(async move {
                    cache
                        .get_or_fetch(&k, "m", || async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Err::<Bytes, _>(Upstream("boom"))
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap_err(), Upstream("boom"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(
            cache.lookup(&k, "m").await.is_none(),
            "errors are never cached"
        );
        let stats = cache.stats();
        assert_eq!((stats.inflight, stats.fetch_errors, stats.sets), (0, 1, 0));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_cancelled_leader_hands_over_to_a_waiter() {
        let (cache, _, _) = cache_with(CacheSettings::default());
        let k = key(6);
        let started = Arc::new(Notify::new());
        let leader = {
            let cache = cache.clone();
            let started = started.clone();
            tokio::spawn(async move {
                cache
                    .get_or_fetch(&k, "m", || async move {
                        started.notify_one();
                        futures_util::future::pending::<Result<Bytes, Upstream>>().await
                    })
                    .await
            })
        };
        started.notified().await;
        let waiter = {
            let cache = cache.clone();
            tokio::spawn(async move {
                cache
                    .get_or_fetch(&k, "m", || async {
                        Ok::<_, Upstream>(Bytes::from_static(b"{}"))
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(cache.stats().inflight, 1);
        leader.abort();
        let reply = tokio::time::timeout(Duration::from_secs(2), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            reply.origin.label(),
            "miss",
            "the waiter became the new leader"
        );
        assert_eq!(cache.stats().inflight, 0);
        assert!(cache.lookup(&k, "m").await.is_some());
    }

    #[tokio::test]
    async fn health_component_reports_stats() {
        let (cache, _, health) = cache_with(CacheSettings::default());
        cache.store(&key(7), "m", Bytes::from_static(b"{}")).await;
        cache.publish_health();
        let snapshot = health.snapshot();
        let component = &snapshot.components[HEALTH_COMPONENT];
        assert_eq!(component.status, Status::Ok);
        assert_eq!(component.detail["l2"], "disabled");
        assert_eq!(component.detail["sets"], 1);
        for field in [
            "hits",
            "misses",
            "hit_ratio",
            "entries",
            "bytes",
            "evictions",
            "rejections",
        ] {
            assert!(component.detail.get(field).is_some(), "{field} missing");
        }
    }

    #[test]
    fn l2_values_round_trip_and_garbage_is_rejected() {
        let raw = encode_l2("kimi", 1_700_000_000_123, b"{\"x\":1}");
        let (model, at, body) = decode_l2(raw).unwrap();
        assert_eq!(
            (model.as_str(), at, &body[..]),
            ("kimi", 1_700_000_000_123, &b"{\"x\":1}"[..])
        );
        assert!(decode_l2(b"nope".to_vec()).is_none());
        let mut truncated = encode_l2("kimi", 1, b"");
        truncated.truncate(L2_HEADER_BYTES + 2);
        assert!(decode_l2(truncated).is_none());
    }

    #[test]
    fn invalid_redis_url_is_reported_without_the_url() {
        let settings = CacheSettings {
            redis_url: Some(SecretString::from("not a url :secret@")),
            ..CacheSettings::default()
        };
        let error =
            ResponseCache::new(settings, Recorder::new("t", 10), HealthBoard::new()).unwrap_err();
        assert!(!error.to_string().contains("secret"));
    }

    /// Compares a lookup through the handle with the same lookup as an actor message to an
    /// actor on its own arbiter (as under the supervisor). Prints the figures.
    #[actix_rt::test]
    async fn cache_lookup_handle_vs_actor() {
        const LOOKUPS: u32 = 10_000;
        let (cache, recorder, _) = cache_with(CacheSettings::default());
        let k = key(8);
        cache.store(&k, "m", Bytes::from(vec![b'x'; 2048])).await;
        let arbiter = Arbiter::new();
        let actor_handle = cache.clone();
        let addr = Cache::start_in_arbiter(&arbiter.handle(), move |_| Cache::new(actor_handle));

        let start = Instant::now();
        for _ in 0..LOOKUPS {
            assert!(cache.lookup(&k, "m").await.is_some());
        }
        let via_handle = start.elapsed();
        let _ = recorder.drain(usize::MAX);

        let start = Instant::now();
        for _ in 0..LOOKUPS {
            let hit = addr
                .send(Lookup {
                    key: k,
                    model: "m".to_owned(),
                })
                .await
                .unwrap()
                .unwrap();
            assert!(hit.is_some());
        }
        let via_actor = start.elapsed();
        let _ = recorder.drain(usize::MAX);

        // The same, 8 callers at once (a multi-worker HTTP server).
        let start = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let cache = cache.clone();
                actix_rt::spawn(async move {
                    for _ in 0..LOOKUPS / 8 {
                        assert!(cache.lookup(&k, "m").await.is_some());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let concurrent_handle = start.elapsed();
        let start = Instant::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let addr = addr.clone();
                actix_rt::spawn(async move {
                    for _ in 0..LOOKUPS / 8 {
                        let msg = Lookup {
                            key: k,
                            model: "m".to_owned(),
                        };
                        assert!(addr.send(msg).await.unwrap().unwrap().is_some());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let concurrent_actor = start.elapsed();
        println!(
            "cache lookup x{LOOKUPS}: handle {:?} ({:.2} us/op), actor message {:?} ({:.2} us/op); \
             8 concurrent callers: handle {:?}, actor {:?}",
            via_handle,
            via_handle.as_secs_f64() * 1e6 / f64::from(LOOKUPS),
            via_actor,
            via_actor.as_secs_f64() * 1e6 / f64::from(LOOKUPS),
            concurrent_handle,
            concurrent_actor,
        );
        arbiter.stop();
    }
}
