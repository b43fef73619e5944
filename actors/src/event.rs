//! The monitoring event and the one recording API (DESIGN §5).
//!
//! Everything that happens — an upstream attempt, a cache lookup, a connection, a breaker
//! change, an actor fault — becomes an [`Event`] through [`Recorder::record`]. Recording
//! never blocks on I/O and never awaits: it appends to a bounded in-memory queue that the
//! metrics buffer drains, and hands the event to live subscribers (the dashboard).
//!
//! The queue lives here, not inside the metrics-buffer actor, so a restart of that actor
//! loses nothing. When the queue is full, events go to the installed [`Spill`] sink (the
//! disk journal); only if none is installed is the oldest event dropped and counted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

/// Capacity of the live broadcast channel. A subscriber that falls further behind than this
/// is told how many events it missed (`RecvError::Lagged`) instead of slowing recording.
pub const LIVE_CHANNEL_CAPACITY: usize = 4096;

/// One monitoring event: `{id, ts, instance, source, type, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// UUIDv7 assigned at recording time; the idempotency key in every store.
    pub id: Uuid,
    /// Milliseconds since the Unix epoch, from the same clock as `id`.
    pub ts: i64,
    /// The process that recorded it, so several instances can share one database.
    pub instance: String,
    /// The component that recorded it (`provider`, `cache`, `ws`, `supervisor`, …).
    pub source: String,
    /// What happened, as `noun.verb` (`provider.request`, `actor.restarted`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Type-specific fields (`ok`, `latency_ms`, `error_kind`, `provider`, `model`, …).
    pub data: Value,
}

impl Event {
    /// A new event stamped now. Ids are UUIDv7 from a process-wide monotonic generator, so
    /// they sort in recording order even within one millisecond (keyset pagination and
    /// replay order rely on it); `ts` is the id's own millisecond.
    pub fn new(instance: &str, source: &str, kind: &str, data: Value) -> Self {
        let id = Uuid::now_v7();
        let ts = id
            .get_timestamp()
            .map(|t| {
                let (secs, nanos) = t.to_unix();
                i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
                    + i64::from(nanos / 1_000_000)
            })
            .unwrap_or_else(|| {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
            });
        Self {
            id,
            ts,
            instance: instance.to_owned(),
            source: source.to_owned(),
            kind: kind.to_owned(),
            data,
        }
    }

    /// `data.ok`, treating a missing field as success.
    pub fn ok(&self) -> bool {
        self.data.get("ok").and_then(Value::as_bool).unwrap_or(true)
    }

    /// `data.latency_ms`, when present.
    pub fn latency_ms(&self) -> Option<f64> {
        self.data.get("latency_ms").and_then(Value::as_f64)
    }
}

/// An event as live subscribers receive it: one shared copy for every subscriber. It is
/// not serialised here: recording stays cheap on the request path, and the subscriber (the
/// dashboard) encodes it only if someone is watching.
pub type LiveEvent = Arc<Event>;

/// Where events go when the in-memory queue is full: the spill journal.
pub trait Spill: Send + Sync {
    /// Persists `events` durably enough to survive a restart of the process.
    fn spill(&self, events: &[Event]) -> std::io::Result<()>;
}

/// Counters describing the queue, for `/health` and the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecorderStats {
    /// Events recorded since start.
    pub recorded: u64,
    /// Events waiting in memory for the flusher.
    pub queued: usize,
    /// The queue's bound.
    pub capacity: usize,
    /// Events sent to the spill sink because the queue was full.
    pub spilled: u64,
    /// Events lost: only possible when the queue is full and no spill sink is installed,
    /// or the spill sink itself failed.
    pub dropped: u64,
}

/// The recording handle. Cheap to clone; callable from any thread, sync or async.
#[derive(Clone)]
pub struct Recorder {
    /// Shared state; every clone records into the same queue.
    inner: Arc<Inner>,
}

/// State shared by all clones of a [`Recorder`].
struct Inner {
    /// This process's instance name, stamped on every event.
    instance: String,
    /// Events not yet taken by the flusher, oldest first.
    queue: Mutex<VecDeque<Event>>,
    /// Upper bound for `queue`.
    capacity: usize,
    /// Queue length at which the flusher is woken early.
    wake_at: std::sync::atomic::AtomicUsize,
    /// Wakes the flusher.
    notify: Notify,
    /// Overflow destination when `queue` is full.
    spill: RwLock<Option<Arc<dyn Spill>>>,
    /// Live feed for the dashboard.
    live: broadcast::Sender<LiveEvent>,
    /// Counter: events recorded.
    recorded: AtomicU64,
    /// Counter: events spilled on overflow.
    spilled: AtomicU64,
    /// Counter: events lost.
    dropped: AtomicU64,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("instance", &self.inner.instance)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Recorder {
    /// A recorder for `instance` whose queue holds at most `capacity` events.
    pub fn new(instance: impl Into<String>, capacity: usize) -> Self {
        let (live, _) = broadcast::channel(LIVE_CHANNEL_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                instance: instance.into(),
                queue: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
                capacity: capacity.max(1),
                wake_at: std::sync::atomic::AtomicUsize::new(usize::MAX),
                notify: Notify::new(),
                spill: RwLock::new(None),
                live,
                recorded: AtomicU64::new(0),
                spilled: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The instance name stamped on events.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Records one event. Never blocks on I/O unless the queue is full, in which case the
    /// event goes to the spill journal.
    pub fn record(&self, source: &str, kind: &str, data: Value) {
        self.record_event(Event::new(&self.inner.instance, source, kind, data));
    }

    /// Records an already-built event (used when replaying or relaying).
    pub fn record_event(&self, event: Event) {
        let inner = &self.inner;
        inner.recorded.fetch_add(1, Ordering::Relaxed);
        if inner.live.receiver_count() > 0 {
            // A send error only means every subscriber left meanwhile.
            let _ = inner.live.send(Arc::new(event.clone()));
        }
        let overflow = {
            let mut queue = inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if queue.len() < inner.capacity {
                queue.push_back(event);
                if queue.len() >= inner.wake_at.load(Ordering::Relaxed) {
                    inner.notify.notify_one();
                }
                None
            } else {
                Some(event)
            }
        };
        if let Some(event) = overflow {
            self.overflow(event);
        }
    }

    /// The queue is full: spill, or as a last resort drop the oldest queued event.
    fn overflow(&self, event: Event) {
        let inner = &self.inner;
        inner.notify.notify_one();
        let spill = inner
            .spill
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        match spill {
            Some(sink) => match sink.spill(std::slice::from_ref(&event)) {
                Ok(()) => {
                    inner.spilled.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    inner.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%error, "spill failed; event dropped");
                }
            },
            None => {
                let mut queue = inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
                queue.pop_front();
                queue.push_back(event);
                inner.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Installs the overflow destination (the metrics pipeline's journal).
    pub fn set_spill(&self, sink: Arc<dyn Spill>) {
        *self
            .inner
            .spill
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(sink);
    }

    /// Takes up to `max` of the oldest queued events.
    pub fn drain(&self, max: usize) -> Vec<Event> {
        let mut queue = self
            .inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = max.min(queue.len());
        queue.drain(..n).collect()
    }

    /// Puts events back at the front of the queue, keeping their order (a flush that could
    /// not be completed). Whatever does not fit goes to the spill sink.
    pub fn requeue_front(&self, events: Vec<Event>) {
        let mut rest = Vec::new();
        {
            let mut queue = self
                .inner
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let room = self.inner.capacity.saturating_sub(queue.len());
            let mut events = events;
            if events.len() > room {
                rest = events.split_off(room);
            }
            for event in events.into_iter().rev() {
                queue.push_front(event);
            }
        }
        for event in rest {
            self.overflow(event);
        }
    }

    /// Number of events waiting in memory.
    pub fn queued(&self) -> usize {
        self.inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Asks to be woken (through [`Recorder::notified`]) once `len` events are queued.
    pub fn wake_at(&self, len: usize) {
        self.inner.wake_at.store(len.max(1), Ordering::Relaxed);
    }

    /// Resolves when the queue reached the wake threshold or overflowed.
    pub async fn notified(&self) {
        self.inner.notify.notified().await;
    }

    /// Subscribes to the live feed. Subscribers share one copy of each event; a subscriber
    /// that is not waiting is not woken, so one that takes events in batches costs the
    /// recording threads no wake-ups.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveEvent> {
        self.inner.live.subscribe()
    }

    /// Counters for `/health`.
    pub fn stats(&self) -> RecorderStats {
        RecorderStats {
            recorded: self.inner.recorded.load(Ordering::Relaxed),
            queued: self.queued(),
            capacity: self.inner.capacity,
            spilled: self.inner.spilled.load(Ordering::Relaxed),
            dropped: self.inner.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_monotonic_within_a_millisecond() {
        let events: Vec<Event> = (0..10_000)
            .map(|_| Event::new("t", "s", "k", Value::Null))
            .collect();
        for pair in events.windows(2) {
            assert!(pair[0].id < pair[1].id);
            assert!(pair[0].ts <= pair[1].ts);
        }
    }

    #[test]
    fn events_have_v7_ids_and_keep_order() {
        let rec = Recorder::new("test", 10);
        rec.record("s", "a.b", json!({"n": 1}));
        rec.record("s", "a.b", json!({"n": 2}));
        let events = rec.drain(10);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id.get_version_num(), 7);
        assert!(events[0].id < events[1].id, "v7 ids sort by time");
        assert_eq!(events[1].data["n"], 2);
        assert_eq!(events[0].instance, "test");
    }

    #[test]
    fn full_queue_without_spill_drops_oldest_and_counts() {
        let rec = Recorder::new("t", 3);
        for n in 0..5 {
            rec.record("s", "x", json!({ "n": n }));
        }
        let ns: Vec<_> = rec.drain(10).iter().map(|e| e.data["n"].as_i64()).collect();
        assert_eq!(ns, vec![Some(2), Some(3), Some(4)]);
        assert_eq!(rec.stats().dropped, 2);
    }

    struct Collect(Mutex<Vec<Event>>);
    impl Spill for Collect {
        fn spill(&self, events: &[Event]) -> std::io::Result<()> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(events);
            Ok(())
        }
    }

    #[test]
    fn full_queue_with_spill_loses_nothing() {
        let rec = Recorder::new("t", 2);
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        rec.set_spill(sink.clone());
        for n in 0..5 {
            rec.record("s", "x", json!({ "n": n }));
        }
        assert_eq!(rec.drain(10).len(), 2);
        assert_eq!(sink.0.lock().map(|v| v.len()).unwrap_or(0), 3);
        assert_eq!(rec.stats().dropped, 0);
        assert_eq!(rec.stats().spilled, 3);
    }

    #[test]
    fn requeue_keeps_order() {
        let rec = Recorder::new("t", 10);
        for n in 0..4 {
            rec.record("s", "x", json!({ "n": n }));
        }
        let first = rec.drain(2);
        rec.requeue_front(first);
        let ns: Vec<_> = rec.drain(10).iter().map(|e| e.data["n"].as_i64()).collect();
        assert_eq!(ns, vec![Some(0), Some(1), Some(2), Some(3)]);
    }

    #[tokio::test]
    async fn live_subscribers_get_recorded_events() {
        let rec = Recorder::new("t", 10);
        let mut rx = rec.subscribe();
        rec.record("s", "x.y", json!({"ok": true}));
        let live = rx.recv().await.map_err(|e| e.to_string());
        let live = live.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(live.kind, "x.y");
        assert_eq!(rec.drain(10).first().map(|e| e.id), Some(live.id));
    }
}
