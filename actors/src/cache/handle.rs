//! The request path: [`CacheHandle`] reads and writes L1 and L2 and runs single-flight
//! without a mailbox hop, and keeps L2 connected for the actor ([`CacheHandle::maintain_l2`]).
//! Everything lives in one `Arc` that the actor's factory captures.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use tracing::Instrument as _;

use super::flight::{Flights, Role};
use super::key::CacheKey;
use super::l1::{self, Entry, L1, now_ms};
use super::redis::{L2, decode_l2, encode_l2, is_connection_error, millis};
use super::settings::{CacheError, CacheSettings, EVENT_SOURCE, HEALTH_COMPONENT};
use super::types::{
    CacheHit, CacheLevel, CacheReply, CacheStats, Counters, L2State, Origin, StoreOutcome, bump,
};
use crate::health::{HealthBoard, Status};
use crate::pipeline::recorder::Recorder;
use crate::policy::failure_log::Transition;

/// Everything the handle and the actor share.
struct Shared {
    /// Configuration.
    settings: CacheSettings,
    /// The in-process level.
    l1: L1,
    /// Counters.
    counters: Arc<Counters>,
    /// Flights in progress (single-flight).
    flights: Arc<Flights>,
    /// Redis, when configured.
    l2: Option<L2>,
    /// The recording API.
    recorder: Recorder,
    /// Where the `cache` component is published.
    health: HealthBoard,
}

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

impl CacheHandle {
    /// The shared state for `settings`, its health component published once. Redis, if
    /// configured, is connected by the actor once it starts.
    pub(super) fn new(
        settings: CacheSettings,
        recorder: Recorder,
        health: HealthBoard,
    ) -> Result<Self, CacheError> {
        let l2 = match &settings.redis_url {
            None => None,
            Some(url) => Some(L2::open(url)?),
        };
        let counters = Arc::new(Counters::default());
        let l1 = l1::build(&settings, counters.clone(), recorder.clone());
        let handle = CacheHandle {
            shared: Arc::new(Shared {
                settings,
                l1,
                counters,
                flights: Arc::default(),
                l2,
                recorder,
                health,
            }),
        };
        handle.publish_health();
        Ok(handle)
    }

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

    /// Looks `key` up in L1, then L2 (filling L1 on an L2 hit), counting hits and misses.
    /// Nothing is recorded per lookup: the call's `request` event says how the cache answered.
    pub async fn lookup(&self, key: &CacheKey) -> Option<CacheHit> {
        if let Some(hit) = self.lookup_l1(key) {
            return Some(hit);
        }
        if let Some(hit) = self.lookup_l2(key).await {
            return Some(hit);
        }
        bump(&self.shared.counters.misses);
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
            if let Some(hit) = self.lookup(key).await {
                return Ok(hit.into());
            }
            match self.shared.flights.join_or_lead(key) {
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
            inflight: shared.flights.len(),
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
        let get = cmd
            .query_async::<Option<Vec<u8>>>(&mut conn)
            .instrument(tracing::debug_span!("redis", command = "GET"));
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
        let set = cmd
            .query_async::<()>(&mut conn)
            .instrument(tracing::debug_span!("redis", command = "SET"));
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

    /// Keeps L2 connected: connects now, then whenever an operation reports it down, with
    /// backoff between failed attempts. Runs on the actor; ends with it.
    pub(super) async fn maintain_l2(self) {
        let Some(l2) = &self.shared.l2 else {
            return;
        };
        let mut delays = self.shared.settings.reconnect.start();
        // A new actor instance always reconnects: the connection's driver task runs on the
        // actor's thread, and a restart after a blocked thread replaced that thread.
        let mut force = true;
        loop {
            if !force && self.l2_state() == L2State::Up {
                l2.wake.notified().await;
                continue;
            }
            force = false;
            match l2.connect(&self.shared.settings).await {
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
