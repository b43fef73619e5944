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
//! one actor thread and add a cross-thread wake-up to each. When the actor still answered a
//! `Lookup` message, a release build measured 10,000 L1 hits at about 2 µs each through the
//! handle and 8.5 µs each as a message to the actor on its own thread; with 8 concurrent
//! callers, 11 ms against 80 ms in total. Nothing sent it, so the message is gone.
//!
//! The [`Cache`] actor keeps what is policy and background work: it (re)connects to Redis
//! with backoff from [`crate::policy::retry`] and publishes the `cache` component (status and
//! [`CacheStats`]) to the [`HealthBoard`] every [`DEFAULT_HEALTH_INTERVAL`]; it takes no
//! messages beyond the supervisor's. The state lives in the `Arc` the child factory captures,
//! so a restart of the actor loses nothing but its timers; the new instance opens a fresh
//! Redis connection (its driver task runs on the actor's thread, which a restart after a
//! blocked thread replaced).
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
//! Lookups record nothing (issue 17): the client call's `request` event carries how the cache
//! answered (`l1`, `l2`, `miss`, `coalesced`, `bypass`), and the counters behind `/metrics`'
//! `exai_cache_operations_total` count every hit and miss.
//!
//! - `cache.set` `{ok: true, model, key, bytes}` or `{ok: false, reason: "too_large", model,
//!   key, bytes, limit}`
//! - `cache.evict` `{level: "l1", cause: "size"|"expired", model, bytes}`
//! - `cache.error` `{ok: false, level: "l2", op, error, failures}` on the change to "down"
//!   and on each periodic summary while Redis stays down.
//!
//! # Files
//!
//! `settings.rs` (names, defaults, [`CacheSettings`]), `types.rs` (hits, replies, stats),
//! `key.rs` (the request fingerprint), `l1.rs` (moka), `redis.rs` (the L2 value format and
//! connection), `flight.rs` (single-flight), `handle.rs` (the request path) and `actor.rs`
//! (the supervised actor and [`ResponseCache`], which builds both).
//!
//! [`HealthBoard`]: crate::health::HealthBoard
//! [`FailureLog`]: crate::policy::failure_log::FailureLog

mod actor;
mod flight;
mod handle;
pub mod key;
mod l1;
mod redis;
mod settings;
mod types;

pub use bytes::Bytes;

pub use actor::{Cache, ResponseCache};
pub use handle::CacheHandle;
pub use settings::{
    ACTOR_NAME, CacheError, CacheSettings, DEFAULT_HEALTH_INTERVAL, DEFAULT_L1_CAPACITY_BYTES,
    DEFAULT_L1_TTL, DEFAULT_L2_TTL, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_RECONNECT_INITIAL,
    DEFAULT_RECONNECT_MAX, DEFAULT_REDIS_CONNECT_TIMEOUT, DEFAULT_REDIS_OP_TIMEOUT,
    DEFAULT_REDIS_PREFIX, HEALTH_COMPONENT,
};
pub use types::{CacheHit, CacheLevel, CacheReply, CacheStats, L2State, Origin, StoreOutcome};

#[cfg(test)]
mod tests;
