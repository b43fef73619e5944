//! The values the cache hands out — hits, replies, where they came from, its statistics —
//! and the counters behind those statistics.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::Serialize;

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
    pub(super) fn from_u8(v: u8) -> Self {
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

/// What [`CacheHandle::store`](super::CacheHandle::store) did.
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

/// The answer of [`CacheHandle::get_or_fetch`](super::CacheHandle::get_or_fetch).
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

/// Monotonic counters; shared with the eviction listener.
#[derive(Debug, Default)]
pub(super) struct Counters {
    /// See [`CacheStats::hits_l1`].
    pub(super) hits_l1: AtomicU64,
    /// See [`CacheStats::hits_l2`].
    pub(super) hits_l2: AtomicU64,
    /// See [`CacheStats::misses`].
    pub(super) misses: AtomicU64,
    /// See [`CacheStats::evictions`].
    pub(super) evictions: AtomicU64,
    /// See [`CacheStats::rejections`].
    pub(super) rejections: AtomicU64,
    /// See [`CacheStats::sets`].
    pub(super) sets: AtomicU64,
    /// See [`CacheStats::fetches`].
    pub(super) fetches: AtomicU64,
    /// See [`CacheStats::fetch_errors`].
    pub(super) fetch_errors: AtomicU64,
    /// See [`CacheStats::coalesced`].
    pub(super) coalesced: AtomicU64,
    /// See [`CacheStats::l2_errors`].
    pub(super) l2_errors: AtomicU64,
}

/// Increments a counter.
pub(super) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
