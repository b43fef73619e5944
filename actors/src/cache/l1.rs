//! The in-process level: a moka cache bounded in bytes by a weigher, with a TTL carried by
//! each entry. Evictions for size or age are counted and recorded as `cache.evict`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use moka::notification::RemovalCause;
use serde_json::json;

use super::key::CacheKey;
use super::settings::{CacheSettings, EVENT_SOURCE};
use super::types::{CacheHit, CacheLevel, Counters, bump};
use crate::pipeline::recorder::Recorder;

/// Bytes charged per L1 entry on top of body and model, for the key, `Arc`, moka's node,
/// timer wheel and frequency sketch. Measured: ~650 bytes of RSS per entry beyond the body
/// (93k entries of ~320-byte bodies, release build), so the byte capacity bounds real memory.
pub(super) const ENTRY_OVERHEAD_BYTES: usize = 640;
/// One L1 entry.
#[derive(Debug)]
pub(super) struct Entry {
    /// The response.
    pub(super) body: Bytes,
    /// The resolved model.
    pub(super) model: String,
    /// When it was first stored (in any instance), Unix ms.
    pub(super) stored_at_ms: i64,
    /// How long it may stay in L1 from insertion.
    pub(super) ttl: Duration,
}

impl Entry {
    /// The weigher's charge.
    fn weight(&self) -> u32 {
        let bytes = self.body.len() + self.model.len() + ENTRY_OVERHEAD_BYTES;
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }

    /// As served, `level` being where it was found.
    pub(super) fn hit(&self, level: CacheLevel) -> CacheHit {
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
pub(super) struct EntryExpiry;

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

/// Unix milliseconds now.
pub(super) fn now_ms() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// The L1 map.
pub(super) type L1 = moka::sync::Cache<CacheKey, Arc<Entry>>;

/// Builds L1 for `settings`; its eviction listener counts into `counters` and records into
/// `recorder`.
pub(super) fn build(settings: &CacheSettings, counters: Arc<Counters>, recorder: Recorder) -> L1 {
    L1::builder()
        .max_capacity(settings.l1_capacity_bytes)
        .weigher(|_, entry: &Arc<Entry>| entry.weight())
        .expire_after(EntryExpiry)
        .eviction_listener(move |_key, entry: Arc<Entry>, cause| {
            let cause = match cause {
                RemovalCause::Size => "size",
                RemovalCause::Expired => "expired",
                RemovalCause::Explicit | RemovalCause::Replaced => return,
            };
            bump(&counters.evictions);
            recorder.record(
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
        .build()
}
