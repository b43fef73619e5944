//! The one recording API (DESIGN §5).
//!
//! Every [`Event`] goes through [`Recorder::record`]. Recording never awaits and never
//! touches the database: it writes the event to the journal (one `write(2)`, see
//! [`crate::pipeline::journal`]) and keeps a copy in the journal's bounded memory for the
//! flusher, then hands the event to live subscribers (the dashboard). So by the time
//! `record` returns, the event survives a `kill -9` of the process.
//!
//! The recorder is created before the pipeline that owns the journal; events recorded
//! before [`Recorder::set_journal`] (or by a recorder that never gets one, as in tests) wait
//! in a bounded in-memory queue, which `set_journal` moves into the journal. Without a
//! journal, a full queue drops its oldest event and counts it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, broadcast};

use crate::pipeline::event::{Event, LiveEvent};
use crate::pipeline::journal::{Appended, Journal};

/// A synchronous observer of every recorded event (the Prometheus series): called on the
/// recording thread, so it must be cheap and must not block.
pub type Observer = Arc<dyn Fn(&Event) + Send + Sync>;

/// Capacity of the live broadcast channel. A subscriber that falls further behind than this
/// is told how many events it missed (`RecvError::Lagged`) instead of slowing recording.
pub const LIVE_CHANNEL_CAPACITY: usize = 4096;

/// Counters describing the queue, for `/health` and the dashboard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RecorderStats {
    /// Events recorded since start.
    pub recorded: u64,
    /// Events waiting in memory for the flusher.
    pub queued: usize,
    /// The memory bound.
    pub capacity: usize,
    /// Events kept on disk only (memory full, or the store down); the flusher reads them
    /// back from the journal.
    pub spilled: u64,
    /// Events lost: only possible when the journal cannot be written and memory is full,
    /// or, without a journal, when the queue is full.
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
    /// Events recorded while there is no journal, oldest first.
    queue: Mutex<VecDeque<Event>>,
    /// Upper bound for `queue` and for the journal's memory.
    capacity: usize,
    /// Queue length at which the flusher is woken early.
    wake_at: std::sync::atomic::AtomicUsize,
    /// Wakes the flusher.
    notify: Notify,
    /// The journal every event is written to, once the pipeline installed it.
    journal: OnceLock<Arc<Journal>>,
    /// Live feed for the dashboard.
    live: broadcast::Sender<LiveEvent>,
    /// Sees every event as it is recorded, once installed.
    observer: OnceLock<Observer>,
    /// Counter: events recorded.
    recorded: AtomicU64,
    /// Counter: events lost without a journal.
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
                journal: OnceLock::new(),
                live,
                observer: OnceLock::new(),
                recorded: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The instance name stamped on events.
    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// Records one event: written to the journal before this returns. Never awaits; a
    /// `write(2)` (and an `fsync` under `EXAI_METRICS_FSYNC=always`) is the only I/O.
    pub fn record(&self, source: &str, kind: &str, data: Value) {
        self.record_event(Event::new(&self.inner.instance, source, kind, data));
    }

    /// Records an already-built event (used when replaying or relaying).
    pub fn record_event(&self, event: Event) {
        let inner = &self.inner;
        inner.recorded.fetch_add(1, Ordering::Relaxed);
        if let Some(observer) = inner.observer.get() {
            observer(&event);
        }
        // One allocation shared by the live feed, the journal's memory copy and the store's
        // batch: nothing downstream copies the event (the store takes `Arc`s).
        let event = Arc::new(event);
        if inner.live.receiver_count() > 0 {
            // A send error only means every subscriber left meanwhile.
            let _ = inner.live.send(Arc::clone(&event));
        }
        match inner.journal.get() {
            Some(journal) => match journal.append(event) {
                Appended::Queued(queued) | Appended::MemoryOnly(queued) => {
                    if queued >= inner.wake_at.load(Ordering::Relaxed) {
                        inner.notify.notify_one();
                    }
                }
                // The flusher has disk to read (or a loss to report).
                Appended::DiskOnly | Appended::Dropped => inner.notify.notify_one(),
            },
            None => self.queue_in_memory(Arc::unwrap_or_clone(event)),
        }
    }

    /// No journal yet: the bounded queue, dropping the oldest event when full.
    fn queue_in_memory(&self, event: Event) {
        let inner = &self.inner;
        let mut queue = inner.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.len() >= inner.capacity {
            queue.pop_front();
            inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back(event);
        if queue.len() >= inner.wake_at.load(Ordering::Relaxed) {
            inner.notify.notify_one();
        }
    }

    /// Installs the observer that sees every event recorded from now on (one per recorder;
    /// a second one is refused).
    pub fn observe(&self, observer: Observer) -> Result<(), Observer> {
        self.inner.observer.set(observer)
    }

    /// Installs the journal (the metrics pipeline's). Events queued so far move into it.
    /// A recorder takes one journal for its lifetime; a second one is refused.
    pub fn set_journal(&self, journal: Arc<Journal>) -> Result<(), Arc<Journal>> {
        self.inner.journal.set(journal)?;
        for event in self.drain(usize::MAX) {
            self.record_event_counted(event);
        }
        Ok(())
    }

    /// [`Recorder::record_event`] without counting or publishing it again (a loss is
    /// counted by the journal).
    fn record_event_counted(&self, event: Event) {
        if let Some(journal) = self.inner.journal.get() {
            let _ = journal.append(event);
        }
    }

    /// The installed journal, if any.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.inner.journal.get()
    }

    /// The memory bound.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Takes up to `max` of the oldest events recorded while there was no journal (all of
    /// them, for a recorder that never gets one). Events in the journal are the flusher's.
    pub fn drain(&self, max: usize) -> Vec<Event> {
        let mut queue = self
            .inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = max.min(queue.len());
        queue.drain(..n).collect()
    }

    /// Number of events waiting in memory (journal copies included).
    pub fn queued(&self) -> usize {
        let local = self
            .inner
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        local + self.inner.journal.get().map_or(0, |j| j.queued())
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
            spilled: self.inner.journal.get().map_or(0, |j| j.spilled()),
            dropped: self.inner.dropped.load(Ordering::Relaxed)
                + self.inner.journal.get().map_or(0, |j| j.dropped()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use uuid::Uuid;

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

    #[test]
    fn with_a_journal_full_memory_loses_nothing() {
        let dir = std::env::temp_dir().join(format!("exai-rec-{}", Uuid::new_v4()));
        let rec = Recorder::new("t", 2);
        rec.record("s", "x", json!({ "n": 0 }));
        let journal = Arc::new(
            Journal::open(crate::pipeline::journal::JournalSettings::new(&dir), 2).unwrap(),
        );
        assert!(rec.set_journal(journal.clone()).is_ok());
        assert!(rec.set_journal(journal.clone()).is_err(), "one journal");
        assert!(
            rec.drain(10).is_empty(),
            "the early event moved into the journal"
        );
        for n in 1..5 {
            rec.record("s", "x", json!({ "n": n }));
        }
        let stats = rec.stats();
        assert_eq!((stats.queued, stats.spilled, stats.dropped), (2, 3, 0));
        let on_disk: usize = crate::pipeline::journal::list_segments(&dir)
            .unwrap()
            .iter()
            .map(|s| {
                crate::pipeline::journal::read_segment_file(&s.path)
                    .unwrap()
                    .events
                    .len()
            })
            .sum();
        assert_eq!(on_disk, 5, "every event written before record returned");
        std::fs::remove_dir_all(dir).unwrap();
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
