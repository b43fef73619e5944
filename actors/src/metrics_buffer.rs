//! The metrics buffer: the one flusher that moves recorded events from the [`Recorder`]'s
//! bounded queue into the [`EventStore`] (DESIGN §3, §6).
//!
//! **Owns** (through [`MetricsPipeline`], an `Arc` the supervisor's factory captures, so a
//! restart of the actor loses none of it): the store handle, the store's [`Breaker`], the
//! spill [`Journal`], the batch in flight, the retry backoff and the counters. The actor itself
//! holds nothing else; a restart resets only its timers.
//!
//! **Flush policy.** The actor flushes when `batch_size` events are queued (the recorder wakes
//! it through [`Recorder::wake_at`]) or every `flush_interval`, whichever comes first, in
//! inserts of at most `max_batch` events. A batch is moved into the shared in-flight slot
//! before the store is called and cleared only after the store acknowledged it, so a failed
//! flush — or a restart in the middle of one — keeps it; re-sending is safe because inserts are
//! idempotent by event id.
//!
//! **Failure.** A failed insert is retried after an exponential backoff with jitter
//! ([`crate::retry`]); meanwhile new events wait in the bounded queue and, once it is full,
//! overflow to the journal (installed with [`Recorder::set_spill`]). After
//! `breaker.failure_threshold` consecutive failures the breaker opens: the in-flight batch and
//! the whole queue go to the journal, and keep going there every `flush_interval` while it
//! stays open. When the cool-down ends a single probe (`ping`) is let through; if it succeeds
//! the breaker closes, the journal is replayed oldest first, and then the queue. Journal
//! leftovers from a previous process are replayed the same way at start-up. The start and
//! end of an outage are recorded as `breaker.opened` / `breaker.closed` events (source
//! `metrics_buffer`, `data.breaker = "store"`); failed half-open probes are not, so a long
//! outage does not repeat itself every cool-down. Logging goes through [`FailureLog`]: an
//! outage logs about five lines — store failing, breaker opened, breaker closed, store
//! recovered, journal replayed — plus one summary per `log_summary_every` while it lasts.
//!
//! **Messages:** [`Flush`] (flush everything now; used at shutdown — if the store is down,
//! everything goes to the journal and the reply is an error saying so) and [`Stats`].
//!
//! **Health:** component `pipeline` (buffered, spilled bytes, last successful flush,
//! consecutive failures, breaker state, flushed, dropped, …; degraded while the breaker is not
//! closed or the journal holds events) and component `store` (backend, reachable).
//!
//! **Retention:** a background job prunes the store per [`RetentionSettings`] once at start
//! and then every `retention_interval`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use serde::Serialize;
use serde_json::json;

use crate::breaker::{Breaker, BreakerSettings, BreakerState, Permit, Transition};
use crate::event::{Event, Recorder};
use crate::failure_log::{DEFAULT_SUMMARY_EVERY, FailureLog};
use crate::health::{HealthBoard, Status, rfc3339};
use crate::journal::{Journal, JournalSettings};
use crate::retry::{Backoff, RetryPolicy};
use crate::store::{EventStore, RetentionSettings, StoreError, now_ms};
use crate::supervisor::{ChildSpec, Slot};

/// The supervisor child name, as shown in `/health`.
pub const CHILD_NAME: &str = "metrics_buffer";
/// The `source` of events this module records.
pub const EVENT_SOURCE: &str = "metrics_buffer";
/// Health component for the pipeline.
pub const HEALTH_PIPELINE: &str = "pipeline";
/// Health component for the store.
pub const HEALTH_STORE: &str = "store";
/// Default flush threshold (`METRICS_BUFFER_SIZE`).
pub const DEFAULT_BATCH_SIZE: usize = 50;
/// Default largest insert when catching up.
pub const DEFAULT_MAX_BATCH: usize = 1000;
/// Default flush interval.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Default first retry delay after a failed flush.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(200);
/// Default longest retry delay.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(5);
/// Default consecutive failures that open the store breaker.
pub const DEFAULT_BREAKER_THRESHOLD: u32 = 3;
/// Default time the store breaker stays open before probing.
pub const DEFAULT_BREAKER_COOL_DOWN: Duration = Duration::from_secs(5);
/// Default events per insert while replaying the journal.
pub const DEFAULT_REPLAY_BATCH: usize = 1000;
/// Default gap between retention runs.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// How the pipeline flushes, retries and spills.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    /// Queue length that triggers a flush (`METRICS_BUFFER_SIZE`, default 50).
    pub batch_size: usize,
    /// Largest single insert, used when more than `batch_size` events are waiting.
    pub max_batch: usize,
    /// Flush at least this often (default 1 s).
    pub flush_interval: Duration,
    /// Where and how the spill journal writes.
    pub journal: JournalSettings,
    /// Backoff between retries of a failed flush.
    pub retry: RetryPolicy,
    /// When the store breaker opens and how long it stays open.
    pub breaker: BreakerSettings,
    /// Events per insert while replaying the journal.
    pub replay_batch: usize,
    /// How long rows are kept.
    pub retention: RetentionSettings,
    /// Gap between retention runs (default 1 h; also run once at start).
    pub retention_interval: Duration,
    /// Gap between "still failing" log lines during an outage.
    pub log_summary_every: Duration,
}

impl PipelineSettings {
    /// Defaults, with the journal in `journal_dir` (e.g. `<data dir>/spill`).
    pub fn new(journal_dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            batch_size: DEFAULT_BATCH_SIZE,
            max_batch: DEFAULT_MAX_BATCH,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            journal: JournalSettings::new(journal_dir),
            retry: RetryPolicy::new(DEFAULT_RETRY_INITIAL, DEFAULT_RETRY_MAX),
            breaker: BreakerSettings {
                failure_threshold: DEFAULT_BREAKER_THRESHOLD,
                cool_down: DEFAULT_BREAKER_COOL_DOWN,
            },
            replay_batch: DEFAULT_REPLAY_BATCH,
            retention: RetentionSettings::default(),
            retention_interval: DEFAULT_RETENTION_INTERVAL,
            log_summary_every: DEFAULT_SUMMARY_EVERY,
        }
    }
}

/// Why the pipeline could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The spill journal could not be opened or written.
    #[error("spill journal: {0}")]
    Journal(#[from] std::io::Error),
    /// The store is unreachable; the events were kept in the journal instead.
    #[error("store unavailable ({error}); {spilled} events kept in the spill journal")]
    StoreUnavailable {
        /// Events moved to the journal by this call.
        spilled: u64,
        /// The last store error.
        error: String,
    },
}

/// The pipeline's counters, for `/health`, the dashboard and [`Stats`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineStats {
    /// Events in memory: the recorder queue plus the batch in flight.
    pub buffered: usize,
    /// The recorder queue's bound.
    pub capacity: usize,
    /// Bytes in the spill journal.
    pub spilled_bytes: u64,
    /// When the store last acknowledged a flush, RFC 3339.
    pub last_successful_flush: Option<String>,
    /// Store failures in a row.
    pub consecutive_failures: u64,
    /// The store breaker's state (`closed`, `open`, `half_open`).
    pub breaker: BreakerState,
    /// Events newly inserted into the store since start (including replayed ones).
    pub flushed: u64,
    /// Of those, events replayed from the journal.
    pub replayed: u64,
    /// Events written to the journal since start (queue overflow and breaker spills).
    pub spilled: u64,
    /// Events lost because the journal itself failed.
    pub dropped: u64,
    /// Events the store refused as invalid data (e.g. out-of-range values); dropped after
    /// the rest of their batch was stored.
    pub rejected: u64,
    /// Journal records skipped as corrupt since start.
    pub journal_corrupt_records: u64,
    /// Truncated journal tails found since start.
    pub journal_torn_tails: u64,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The last store error, while failing.
    pub last_error: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Messages.

/// Flushes everything now: the journal, the batch in flight and the whole queue. Replies
/// with the number of events newly stored. If the store is down, everything goes to the
/// journal and the reply is [`PipelineError::StoreUnavailable`]. Used at shutdown.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, PipelineError>")]
pub struct Flush;

/// Returns the current counters.
#[derive(Debug, Message)]
#[rtype(result = "Result<PipelineStats, PipelineError>")]
pub struct Stats;

// ---------------------------------------------------------------------------------------
// Shared state.

/// What the next loop iteration should wait for.
#[derive(Debug, Clone, Copy)]
struct Wait {
    /// The longest wait.
    delay: Duration,
    /// Whether a full-enough queue may end the wait early.
    listen: bool,
}

/// Mutable bookkeeping, behind one lock.
#[derive(Debug)]
struct Book {
    /// The store breaker.
    breaker: Breaker,
    /// Store failure logging.
    store_log: FailureLog,
    /// Journal failure logging.
    journal_log: FailureLog,
    /// Retention failure logging.
    retention_log: FailureLog,
    /// Logging for events the store refuses.
    reject_log: FailureLog,
    /// Retry delays after failed flushes.
    backoff: Backoff,
    /// No store call before this (backoff after a failure).
    retry_at: Option<Instant>,
    /// Store failures in a row.
    consecutive_failures: u64,
    /// Last store acknowledgement.
    last_success: Option<SystemTime>,
    /// Last store error, while failing.
    last_error: Option<String>,
    /// Last retention run.
    last_retention: Option<Instant>,
    /// Whether the next journal replay is worth an `info` line (leftovers at start-up, or
    /// the end of an outage); routine overflow replays log at `debug`.
    announce_replay: bool,
}

/// Everything that survives an actor restart.
struct Shared {
    /// Policy.
    settings: PipelineSettings,
    /// Where events are persisted.
    store: Arc<dyn EventStore>,
    /// Where events come from (and where breaker events are recorded).
    recorder: Recorder,
    /// Where health is published.
    health: HealthBoard,
    /// The spill journal (also installed as the recorder's overflow sink).
    journal: Arc<Journal>,
    /// Serialises flushes between the loop, [`Flush`] and successive actor instances.
    flush_lock: tokio::sync::Mutex<()>,
    /// Events taken from the queue and not yet acknowledged by the store.
    in_flight: Mutex<Vec<Event>>,
    /// Breaker, backoff, failure logs and timestamps.
    book: Mutex<Book>,
    /// Counter: events newly stored.
    flushed: AtomicU64,
    /// Counter: events newly stored from the journal.
    replayed: AtomicU64,
    /// Counter: events the flusher itself moved to the journal.
    spilled_by_flusher: AtomicU64,
    /// Counter: events the store refused as invalid data.
    rejected: AtomicU64,
}

/// The metrics pipeline: shared state plus the way to start its actor under the supervisor.
/// Cheap to clone.
#[derive(Clone)]
pub struct MetricsPipeline {
    /// The state every actor instance works on.
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MetricsPipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsPipeline")
            .field("stats", &self.stats())
            .finish()
    }
}

impl MetricsPipeline {
    /// Opens the journal (taking stock of leftovers from a previous process), installs it as
    /// the recorder's overflow sink and publishes initial health. Start the actor with
    /// [`MetricsPipeline::child_spec`].
    pub fn new(
        settings: PipelineSettings,
        store: Arc<dyn EventStore>,
        recorder: Recorder,
        health: HealthBoard,
    ) -> Result<Self, PipelineError> {
        let journal = Arc::new(Journal::open(settings.journal.clone())?);
        recorder.set_spill(journal.clone());
        let summary_every = settings.log_summary_every;
        let book = Book {
            breaker: Breaker::new(settings.breaker),
            store_log: FailureLog::with_summary_every("store", summary_every),
            journal_log: FailureLog::with_summary_every("spill journal", summary_every),
            retention_log: FailureLog::with_summary_every("retention", summary_every),
            reject_log: FailureLog::with_summary_every(
                "event storage (rejected events)",
                summary_every,
            ),
            backoff: settings.retry.start(),
            retry_at: None,
            consecutive_failures: 0,
            last_success: None,
            last_error: None,
            last_retention: None,
            announce_replay: false,
        };
        let pipeline = Self {
            shared: Arc::new(Shared {
                settings,
                store,
                recorder,
                health,
                journal,
                flush_lock: tokio::sync::Mutex::new(()),
                in_flight: Mutex::new(Vec::new()),
                book: Mutex::new(book),
                flushed: AtomicU64::new(0),
                replayed: AtomicU64::new(0),
                spilled_by_flusher: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
        };
        if !pipeline.shared.journal.is_empty() {
            pipeline.shared.book(|b| b.announce_replay = true);
            tracing::info!(
                bytes = pipeline.shared.journal.bytes(),
                "spill journal holds events from a previous run; replaying them"
            );
        }
        pipeline.shared.publish_health();
        Ok(pipeline)
    }

    /// The supervisor child (named [`CHILD_NAME`]) and the slot its address appears in. The
    /// factory captures this pipeline, so every restart continues with the same state.
    pub fn child_spec(&self) -> (ChildSpec, Slot<MetricsBuffer>) {
        let slot = Slot::new();
        let shared = self.shared.clone();
        let spec = ChildSpec::new(CHILD_NAME, slot.clone(), move || MetricsBuffer {
            shared: shared.clone(),
        });
        (spec, slot)
    }

    /// Current counters, without a mailbox hop.
    pub fn stats(&self) -> PipelineStats {
        self.shared.stats()
    }

    /// Flushes everything now, without a mailbox hop (what [`Flush`] does).
    pub async fn flush(&self) -> Result<u64, PipelineError> {
        self.shared.flush_all().await
    }

    /// The store events are written to (the HTTP layer queries history through it).
    pub fn store(&self) -> Arc<dyn EventStore> {
        self.shared.store.clone()
    }

    /// The spill journal.
    pub fn journal(&self) -> Arc<Journal> {
        self.shared.journal.clone()
    }
}

impl Shared {
    /// Runs `f` on the bookkeeping.
    fn book<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        f(&mut self.book.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Events in the in-flight slot.
    fn in_flight_len(&self) -> usize {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// One iteration of the flush loop; returns how long to wait before the next.
    async fn step(&self) -> Wait {
        let _guard = self.flush_lock.lock().await;
        if let Err(error) = self.journal.sync() {
            self.journal_failed(&error);
        }
        let interval = self.settings.flush_interval;
        let now = Instant::now();
        if let Some(at) = self.book(|b| b.retry_at).filter(|at| *at > now) {
            self.publish_health();
            return Wait {
                delay: (at - now).min(interval),
                listen: false,
            };
        }
        let permit = self.book(|b| b.breaker.allow());
        let wait = match permit {
            Permit::Rejected { retry_in } => {
                self.spill_everything();
                Wait {
                    delay: retry_in.clamp(Duration::from_millis(1), interval),
                    listen: false,
                }
            }
            Permit::Probe { transition } => {
                if let Some(t) = transition {
                    self.record_transition(t);
                }
                match self.store.ping().await {
                    Ok(()) => {
                        self.succeeded();
                        self.flush_or_back_off(false).await
                    }
                    Err(error) => {
                        self.failed(&error);
                        self.spill_everything();
                        Wait {
                            delay: interval,
                            listen: false,
                        }
                    }
                }
            }
            Permit::Granted => self.flush_or_back_off(false).await,
        };
        self.publish_health();
        wait
    }

    /// Flushes the journal and the queue; on failure schedules a retry (or spills, if the
    /// breaker opened).
    async fn flush_or_back_off(&self, everything: bool) -> Wait {
        let interval = self.settings.flush_interval;
        match self.drain_to_store(everything).await {
            Ok(_) => {
                self.book(|b| {
                    b.backoff.reset();
                    b.retry_at = None;
                });
                Wait {
                    delay: interval,
                    listen: true,
                }
            }
            Err(error) => {
                self.failed(&error);
                let (delay, open) = self.book(|b| {
                    let delay = b.backoff.next_delay();
                    b.retry_at = Some(Instant::now() + delay);
                    (delay, b.breaker.state() != BreakerState::Closed)
                });
                if open {
                    self.spill_everything();
                }
                Wait {
                    delay,
                    listen: false,
                }
            }
        }
    }

    /// Replays the journal oldest first, then the in-flight batch, then the queue. With
    /// `everything`, drains the queue completely; otherwise what was queued at the start.
    async fn drain_to_store(&self, everything: bool) -> Result<u64, StoreError> {
        let mut stored = self.replay_journal().await?;
        stored += self.store_in_flight().await?;
        let max_batch = self.settings.max_batch.max(1);
        let mut rounds = self.recorder.queued() / max_batch + 1;
        loop {
            let batch = self.recorder.drain(max_batch);
            if batch.is_empty() {
                break;
            }
            *self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = batch;
            stored += self.store_in_flight().await?;
            rounds -= 1;
            if rounds == 0 && !everything {
                break;
            }
        }
        Ok(stored)
    }

    /// Sends the in-flight batch to the store; clears it once acknowledged.
    async fn store_in_flight(&self) -> Result<u64, StoreError> {
        let batch = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if batch.is_empty() {
            return Ok(0);
        }
        let inserted = self.insert(&batch).await?;
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.flushed.fetch_add(inserted, Ordering::Relaxed);
        self.succeeded();
        Ok(inserted)
    }

    /// Inserts `events`. If the store refuses the data itself (a poison event), retries them
    /// one by one and drops, counts and logs only the refused ones, so one bad event cannot
    /// wedge the pipeline. Connectivity errors are returned untouched.
    async fn insert(&self, events: &[Event]) -> Result<u64, StoreError> {
        match self.store.insert_batch(events).await {
            Err(error) if error.is_rejection() => {
                let mut inserted = 0;
                for event in events {
                    match self.store.insert_batch(std::slice::from_ref(event)).await {
                        Ok(n) => inserted += n,
                        Err(error) if error.is_rejection() => {
                            self.rejected.fetch_add(1, Ordering::Relaxed);
                            self.book(|b| b.reject_log.failure(&error));
                        }
                        Err(error) => return Err(error),
                    }
                }
                Ok(inserted)
            }
            other => other,
        }
    }

    /// Replays every sealed journal segment, oldest first, deleting each once stored.
    async fn replay_journal(&self) -> Result<u64, StoreError> {
        if self.journal.is_empty() {
            return Ok(0);
        }
        let segments = match self.journal.seal() {
            Ok(segments) => segments,
            Err(error) => {
                self.journal_failed(&error);
                return Ok(0);
            }
        };
        let chunk = self.settings.replay_batch.max(1);
        let mut stored = 0;
        for segment in segments {
            let read = match self.journal.read(&segment) {
                Ok(read) => read,
                Err(error) => {
                    self.journal_failed(&error);
                    return Ok(stored);
                }
            };
            for events in read.events.chunks(chunk) {
                let inserted = self.insert(events).await?;
                stored += inserted;
                self.flushed.fetch_add(inserted, Ordering::Relaxed);
                self.replayed.fetch_add(inserted, Ordering::Relaxed);
                self.succeeded();
            }
            if let Err(error) = self.journal.remove(&segment) {
                self.journal_failed(&error);
                return Ok(stored);
            }
        }
        if stored > 0 {
            if self.book(|b| std::mem::take(&mut b.announce_replay)) {
                tracing::info!(events = stored, "spill journal replayed into the store");
            } else {
                tracing::debug!(events = stored, "spill journal replayed into the store");
            }
        }
        Ok(stored)
    }

    /// Moves the in-flight batch and the whole queue to the journal.
    fn spill_everything(&self) -> u64 {
        let mut events = std::mem::take(
            &mut *self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        events.extend(self.recorder.drain(usize::MAX));
        if events.is_empty() {
            return 0;
        }
        let n = events.len() as u64;
        match self.journal.append(&events) {
            Ok(()) => {
                self.spilled_by_flusher.fetch_add(n, Ordering::Relaxed);
                self.book(|b| b.journal_log.success());
                n
            }
            Err(error) => {
                self.journal_failed(&error);
                // Back into memory: bounded by the queue, overflow counted as dropped.
                self.recorder.requeue_front(events);
                0
            }
        }
    }

    /// Reports a journal I/O failure (quietly, through its failure log).
    fn journal_failed(&self, error: &std::io::Error) {
        self.book(|b| b.journal_log.failure(error));
    }

    /// Reports a store acknowledgement.
    fn succeeded(&self) {
        let transition = self.book(|b| {
            b.consecutive_failures = 0;
            b.last_success = Some(SystemTime::now());
            b.last_error = None;
            b.store_log.success();
            b.breaker.on_success()
        });
        if let Some(t) = transition {
            self.record_transition(t);
        }
    }

    /// Reports a store failure.
    fn failed(&self, error: &StoreError) {
        let (transition, was_closed) = self.book(|b| {
            b.consecutive_failures += 1;
            b.last_error = Some(error.to_string());
            b.store_log.failure(error);
            let was_closed = b.breaker.state() == BreakerState::Closed;
            (b.breaker.on_failure(), was_closed)
        });
        match transition {
            // Closed → open: the outage begins.
            Some(t) if was_closed => self.record_transition(t),
            // A failed half-open probe re-opens a breaker that is already "out": not news.
            Some(_) => tracing::debug!("store probe failed; breaker open again"),
            None => {}
        }
    }

    /// Records the start (`breaker.opened`) or end (`breaker.closed`) of a store outage as
    /// an event and one log line. Half-open probes are neither recorded nor logged above
    /// `debug`, so a long outage does not repeat itself every cool-down.
    fn record_transition(&self, transition: Transition) {
        let (failures, last_error) = self.book(|b| {
            if transition == Transition::Closed {
                b.announce_replay = true;
            }
            (b.consecutive_failures, b.last_error.clone())
        });
        match transition {
            Transition::Opened => tracing::warn!(
                backend = self.store.backend(),
                "store breaker opened; spilling events to the journal"
            ),
            Transition::Closed => tracing::info!(
                backend = self.store.backend(),
                "store breaker closed; replaying the journal"
            ),
            Transition::HalfOpened => {
                tracing::debug!("store breaker half-open; probing");
                return;
            }
        }
        self.recorder.record(
            EVENT_SOURCE,
            transition.event_kind(),
            json!({
                "breaker": "store",
                "backend": self.store.backend(),
                "ok": transition == Transition::Closed,
                "state": transition.to_state(),
                "consecutive_failures": failures,
                "error": last_error,
            }),
        );
    }

    /// Flushes everything now (the [`Flush`] message).
    async fn flush_all(&self) -> Result<u64, PipelineError> {
        let _guard = self.flush_lock.lock().await;
        let permit = self.book(|b| b.breaker.allow());
        let result = match permit {
            Permit::Rejected { .. } => Err(self
                .book(|b| b.last_error.clone())
                .unwrap_or_else(|| "store breaker open".to_owned())),
            Permit::Granted | Permit::Probe { .. } => {
                if let Some(t) = permit.transition() {
                    self.record_transition(t);
                }
                match self.drain_to_store(true).await {
                    Ok(n) => Ok(n),
                    Err(error) => {
                        self.failed(&error);
                        Err(error.to_string())
                    }
                }
            }
        };
        let result = match result {
            Ok(n) => {
                self.book(|b| {
                    b.backoff.reset();
                    b.retry_at = None;
                });
                Ok(n)
            }
            Err(error) => {
                let spilled = self.spill_everything();
                Err(PipelineError::StoreUnavailable { spilled, error })
            }
        };
        self.publish_health();
        result
    }

    /// Prunes old rows if a retention run is due.
    async fn retention_if_due(&self) {
        let interval = self.settings.retention_interval;
        let due = self.book(|b| {
            let due = b.last_retention.is_none_or(|at| at.elapsed() >= interval)
                && b.breaker.state() == BreakerState::Closed;
            if due {
                b.last_retention = Some(Instant::now());
            }
            due
        });
        if !due {
            return;
        }
        match self.store.prune(now_ms(), self.settings.retention).await {
            Ok(pruned) => {
                self.book(|b| b.retention_log.success());
                tracing::debug!(?pruned, "retention run");
            }
            Err(error) => {
                self.book(|b| b.retention_log.failure(&error));
            }
        }
    }

    /// Current counters.
    fn stats(&self) -> PipelineStats {
        let recorder = self.recorder.stats();
        let (breaker, consecutive_failures, last_success, last_error) = self.book(|b| {
            (
                b.breaker.state(),
                b.consecutive_failures,
                b.last_success,
                b.last_error.clone(),
            )
        });
        PipelineStats {
            buffered: recorder.queued + self.in_flight_len(),
            capacity: recorder.capacity,
            spilled_bytes: self.journal.bytes(),
            last_successful_flush: last_success.map(rfc3339),
            consecutive_failures,
            breaker,
            flushed: self.flushed.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            spilled: recorder.spilled + self.spilled_by_flusher.load(Ordering::Relaxed),
            dropped: recorder.dropped,
            rejected: self.rejected.load(Ordering::Relaxed),
            journal_corrupt_records: self.journal.corrupt_records(),
            journal_torn_tails: self.journal.torn_tails(),
            backend: self.store.backend(),
            last_error,
        }
    }

    /// Publishes the `pipeline` and `store` health components.
    fn publish_health(&self) {
        let stats = self.stats();
        let spilling = stats.breaker != BreakerState::Closed || stats.spilled_bytes > 0;
        let reachable = stats.breaker == BreakerState::Closed && stats.consecutive_failures == 0;
        let pipeline_status = if spilling {
            Status::Degraded
        } else {
            Status::Ok
        };
        let detail = serde_json::to_value(&stats).unwrap_or_default();
        self.health
            .set_component(HEALTH_PIPELINE, pipeline_status, detail);
        self.health.set_component(
            HEALTH_STORE,
            if reachable {
                Status::Ok
            } else {
                Status::Degraded
            },
            json!({
                "backend": stats.backend,
                "reachable": reachable,
                "last_error": stats.last_error,
            }),
        );
    }
}

/// The flush loop: one [`Shared::step`] after another, waiting in between.
async fn flush_loop(shared: Arc<Shared>) {
    loop {
        let wait = shared.step().await;
        if wait.listen {
            tokio::select! {
                () = tokio::time::sleep(wait.delay) => {}
                () = shared.recorder.notified() => {}
            }
        } else {
            tokio::time::sleep(wait.delay).await;
        }
    }
}

/// The retention loop: a run at start (once per process) and every `retention_interval`.
async fn retention_loop(shared: Arc<Shared>) {
    let check_every = shared
        .settings
        .retention_interval
        .min(Duration::from_secs(60))
        .max(Duration::from_millis(10));
    loop {
        shared.retention_if_due().await;
        tokio::time::sleep(check_every).await;
    }
}

// ---------------------------------------------------------------------------------------
// The actor.

/// The flusher actor. See the module docs; all of its state lives in [`MetricsPipeline`].
pub struct MetricsBuffer {
    /// The pipeline state shared with every other instance of this actor.
    shared: Arc<Shared>,
}

impl Actor for MetricsBuffer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.shared
            .recorder
            .wake_at(self.shared.settings.batch_size.max(1));
        ctx.spawn(flush_loop(self.shared.clone()).into_actor(self));
        ctx.spawn(retention_loop(self.shared.clone()).into_actor(self));
    }
}

crate::supervised_child!(MetricsBuffer);

impl Handler<Flush> for MetricsBuffer {
    type Result = ResponseFuture<Result<u64, PipelineError>>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let shared = self.shared.clone();
        Box::pin(async move { shared.flush_all().await })
    }
}

impl Handler<Stats> for MetricsBuffer {
    type Result = Result<PipelineStats, PipelineError>;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> Self::Result {
        Ok(self.shared.stats())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::store::{Bucket, EventQuery, Page, Pruned, RollupRow, StoreResult};
    use futures_util::future::BoxFuture;
    use std::collections::BTreeMap;
    use std::sync::atomic::AtomicBool;

    /// An in-memory store that can be switched off.
    #[derive(Default)]
    struct FakeStore {
        down: AtomicBool,
        rows: Mutex<BTreeMap<uuid::Uuid, Event>>,
        calls: AtomicU64,
    }

    impl FakeStore {
        fn check(&self) -> StoreResult<()> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::SeqCst) {
                Err(StoreError::Database(sqlx::Error::PoolTimedOut))
            } else {
                Ok(())
            }
        }
    }

    impl EventStore for FakeStore {
        fn backend(&self) -> &'static str {
            "fake"
        }
        fn migrate(&self) -> BoxFuture<'_, StoreResult<()>> {
            Box::pin(async { Ok(()) })
        }
        fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
            Box::pin(async { self.check() })
        }
        fn insert_batch<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, StoreResult<u64>> {
            Box::pin(async move {
                self.check()?;
                if events.iter().any(|e| e.data.get("poison").is_some()) {
                    return Err(StoreError::Database(sqlx::Error::Encode("poison".into())));
                }
                let mut rows = self.rows.lock().unwrap();
                let mut n = 0;
                for e in events {
                    if rows.insert(e.id, e.clone()).is_none() {
                        n += 1;
                    }
                }
                Ok(n)
            })
        }
        fn prune(&self, _: i64, _: RetentionSettings) -> BoxFuture<'_, StoreResult<Pruned>> {
            Box::pin(async { Ok(Pruned::default()) })
        }
        fn rollups<'a>(
            &'a self,
            _: Bucket,
            _: i64,
            _: i64,
            _: Option<&'a str>,
        ) -> BoxFuture<'a, StoreResult<Vec<RollupRow>>> {
            Box::pin(async { Ok(Vec::new()) })
        }
        fn events<'a>(&'a self, _: &'a EventQuery) -> BoxFuture<'a, StoreResult<Page>> {
            Box::pin(async {
                Ok(Page {
                    events: Vec::new(),
                    next_cursor: None,
                })
            })
        }
    }

    fn settings(dir: &std::path::Path) -> PipelineSettings {
        PipelineSettings {
            flush_interval: Duration::from_millis(20),
            retry: RetryPolicy::new(Duration::from_millis(5), Duration::from_millis(20)),
            breaker: BreakerSettings {
                failure_threshold: 2,
                cool_down: Duration::from_millis(50),
            },
            ..PipelineSettings::new(dir.join("spill"))
        }
    }

    #[tokio::test]
    async fn a_poison_event_is_dropped_alone() {
        let dir = std::env::temp_dir().join(format!("exai-mb-{}", uuid::Uuid::new_v4()));
        let store = Arc::new(FakeStore::default());
        let recorder = Recorder::new("t", 100);
        let pipeline = MetricsPipeline::new(
            settings(&dir),
            store.clone(),
            recorder.clone(),
            HealthBoard::new(),
        )
        .unwrap();
        for n in 0..10 {
            recorder.record("s", "x", json!({ "n": n }));
        }
        recorder.record("s", "x", json!({ "poison": true }));
        recorder.record("s", "x", json!({ "n": 10 }));
        assert_eq!(pipeline.flush().await.unwrap(), 11);
        let stats = pipeline.stats();
        assert_eq!(
            (stats.rejected, stats.buffered, stats.consecutive_failures),
            (1, 0, 0)
        );
        assert_eq!(store.rows.lock().unwrap().len(), 11);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn outage_spills_and_recovery_stores_everything_once() {
        let dir = std::env::temp_dir().join(format!("exai-mb-{}", uuid::Uuid::new_v4()));
        let store = Arc::new(FakeStore::default());
        let recorder = Recorder::new("t", 20);
        let health = HealthBoard::new();
        let pipeline = MetricsPipeline::new(
            settings(&dir),
            store.clone(),
            recorder.clone(),
            health.clone(),
        )
        .unwrap();
        let shared = pipeline.shared.clone();
        store.down.store(true, Ordering::SeqCst);
        for n in 0..200 {
            recorder.record("s", "x", json!({ "n": n }));
            if n % 10 == 0 {
                shared.step().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(recorder.queued() <= 20);
        }
        let stats = pipeline.stats();
        assert_eq!(stats.breaker, BreakerState::Open, "{stats:?}");
        assert!(stats.spilled_bytes > 0);
        assert_eq!(
            health.snapshot().components["pipeline"].status,
            Status::Degraded
        );
        assert!(matches!(
            pipeline.flush().await,
            Err(PipelineError::StoreUnavailable { .. })
        ));
        store.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        shared.step().await;
        pipeline.flush().await.unwrap();
        let stats = pipeline.stats();
        assert_eq!(stats.breaker, BreakerState::Closed);
        assert_eq!(stats.spilled_bytes, 0);
        assert_eq!(stats.dropped, 0);
        let rows = store.rows.lock().unwrap();
        let ns: std::collections::BTreeSet<i64> = rows
            .values()
            .filter_map(|e| e.data.get("n").and_then(serde_json::Value::as_i64))
            .collect();
        assert_eq!(ns.len(), 200, "every recorded event stored once");
        let kinds: Vec<&str> = rows.values().map(|e| e.kind.as_str()).collect();
        assert!(kinds.contains(&"breaker.opened") && kinds.contains(&"breaker.closed"));
        drop(rows);
        assert_eq!(health.snapshot().components["pipeline"].status, Status::Ok);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
