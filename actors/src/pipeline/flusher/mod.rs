//! The metrics buffer: the one flusher that moves recorded events from the journal into the
//! [`EventStore`] (DESIGN §3, §6).
//!
//! **Owns** (through [`MetricsPipeline`], an `Arc` the supervisor's factory captures, so a
//! restart of the actor loses none of it): the store handle, the store's [`Breaker`], the
//! event [`Journal`] (installed in the [`Recorder`], which writes every event to it before
//! `record` returns), the retry backoff and the counters. The actor itself holds nothing
//! else; a restart resets only its timers.
//!
//! **Flush policy.** The actor flushes when `batch_size` events are queued (the recorder wakes
//! it through [`Recorder::wake_at`]) or every `flush_interval`, whichever comes first, in
//! inserts of at most `max_batch` events. Events come from the journal's memory copies; once
//! the store acknowledged a batch the journal is told ([`Journal::confirm`]), and segments
//! confirmed to their end are deleted. Re-sending is always safe: inserts are idempotent by
//! event id.
//!
//! **Failure.** A batch the store did not take is not kept in memory: the journal forgets its
//! copies and the flusher reads those events back from disk ([`Journal::backlog`]) on the
//! next attempt, after an exponential backoff with jitter ([`crate::policy::retry`]). After
//! `breaker.failure_threshold` consecutive failures the breaker opens: memory copies are
//! dropped and no new ones are kept while it stays open, so memory stays empty and the
//! outage's events wait on disk. When the cool-down ends a single probe (`ping`) is let
//! through; if it succeeds the breaker closes and the backlog is replayed oldest segment
//! first, then memory resumes. Whatever a previous process left unconfirmed (the journal's
//! checkpoint says from where) is replayed the same way at start-up. The start and end of an
//! outage are recorded as `breaker.opened` / `breaker.closed` events (source
//! `metrics_buffer`, `data.breaker = "store"`); failed half-open probes are not, so a long
//! outage does not repeat itself every cool-down. Logging goes through [`FailureLog`]: an
//! outage logs about five lines — store failing, breaker opened, breaker closed, store
//! recovered, journal replayed — plus one summary per `log_summary_every` while it lasts.
//!
//! **Durability housekeeping**, once per loop iteration: under `EXAI_METRICS_FSYNC=batch`
//! the journal is fsynced once per `flush_interval` (on a blocking thread); the checkpoint is
//! rewritten when confirmed points moved (at most every 100 ms); confirmed segments are
//! deleted.
//!
//! **Flushing on demand:** [`MetricsPipeline::flush`] flushes everything now (used at
//! shutdown — if the store is down, everything stays in the journal and the reply is an error
//! saying so). The actor takes no messages beyond the supervisor's, except the test-only
//! `Flush` under `fault-injection`.
//!
//! **Health:** component `pipeline` (buffered, spilled bytes, journal bytes, last successful
//! flush, consecutive failures, breaker state, flushed, dropped, …; degraded while the
//! breaker is not closed or the journal holds a backlog) and component `store` (backend,
//! reachable).
//!
//! **Retention:** a background job prunes the store per [`RetentionSettings`] once at start
//! and then every `retention_interval`.
//!
//! [`RetentionSettings`]: crate::pipeline::store::RetentionSettings

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use serde_json::json;

use crate::health::{HealthBoard, Status, rfc3339};
use crate::pipeline::event::Event;
use crate::pipeline::journal::{FsyncPolicy, Journal, Taken};
use crate::pipeline::recorder::Recorder;
use crate::pipeline::store::{EventStore, StoreError, now_ms};
use crate::policy::breaker::{Breaker, BreakerState, Permit, Transition};
use crate::policy::failure_log::FailureLog;
use crate::policy::retry::Backoff;
use crate::supervisor::{ChildSpec, FLUSHER_THREAD, Slot};

mod settings;

pub use settings::{
    CHILD_NAME, DEFAULT_BATCH_SIZE, DEFAULT_BREAKER_COOL_DOWN, DEFAULT_BREAKER_THRESHOLD,
    DEFAULT_FLUSH_INTERVAL, DEFAULT_MAX_BATCH, DEFAULT_REPLAY_BATCH, DEFAULT_RETENTION_INTERVAL,
    DEFAULT_RETRY_INITIAL, DEFAULT_RETRY_MAX, EVENT_SOURCE, HEALTH_PIPELINE, HEALTH_STORE,
    PipelineError, PipelineSettings, PipelineStats,
};

/// Backlog runs (of `replay_batch` events) one loop iteration replays at most.
const BACKLOG_RUNS_PER_STEP: usize = 16;

// ---------------------------------------------------------------------------------------
// Messages.

/// Flushes everything now through the supervised actor, which is how tests prove a
/// restarted instance works. Production (the shutdown flush) calls
/// [`MetricsPipeline::flush`] instead. Compiled only with `fault-injection`.
#[cfg(feature = "fault-injection")]
#[derive(Debug, Message)]
#[rtype(result = "Result<u64, PipelineError>")]
pub struct Flush;

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
    /// Journal write errors already reported.
    write_errors_seen: u64,
    /// Last journal fsync (policy `batch`).
    last_sync: Option<Instant>,
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
    /// The event journal (also installed in the recorder).
    journal: Arc<Journal>,
    /// Serialises flushes between the loop, [`MetricsPipeline::flush`] and successive actor
    /// instances.
    flush_lock: tokio::sync::Mutex<()>,
    /// Breaker, backoff, failure logs and timestamps.
    book: Mutex<Book>,
    /// Counter: events newly stored.
    flushed: AtomicU64,
    /// Counter: events newly stored from the journal.
    replayed: AtomicU64,
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
    /// Opens the journal (taking stock of what a previous process left unconfirmed),
    /// installs it in the recorder and publishes initial health. Start the actor with
    /// [`MetricsPipeline::child_spec`]. The journal keeps at most the recorder's capacity of
    /// events in memory.
    pub fn new(
        settings: PipelineSettings,
        store: Arc<dyn EventStore>,
        recorder: Recorder,
        health: HealthBoard,
    ) -> Result<Self, PipelineError> {
        let journal = Arc::new(Journal::open(
            settings.journal.clone(),
            recorder.capacity(),
        )?);
        recorder
            .set_journal(journal.clone())
            .map_err(|_| std::io::Error::other("the recorder already writes to another journal"))?;
        let summary_every = settings.log_summary_every;
        let book = Book {
            breaker: Breaker::new(settings.breaker),
            store_log: FailureLog::with_summary_every("store", summary_every),
            journal_log: FailureLog::with_summary_every("event journal", summary_every),
            write_errors_seen: 0,
            last_sync: None,
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
                book: Mutex::new(book),
                flushed: AtomicU64::new(0),
                replayed: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
            }),
        };
        let backlog = pipeline.shared.journal.backlog_bytes();
        if backlog > 0 {
            pipeline.shared.book(|b| b.announce_replay = true);
            tracing::info!(
                bytes = backlog,
                "event journal holds events a previous run did not see stored; replaying them"
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
        })
        .on_thread(FLUSHER_THREAD);
        (spec, slot)
    }

    /// Current counters, without a mailbox hop.
    pub fn stats(&self) -> PipelineStats {
        self.shared.stats()
    }

    /// Flushes everything now: the journal, the batch in flight and the whole queue. Replies
    /// with the number of events newly stored. If the store is down, everything goes to the
    /// journal and the reply is [`PipelineError::StoreUnavailable`]. Used at shutdown.
    pub async fn flush(&self) -> Result<u64, PipelineError> {
        self.shared.flush_all().await
    }

    /// The store events are written to (the HTTP layer queries history through it).
    pub fn store(&self) -> Arc<dyn EventStore> {
        self.shared.store.clone()
    }

    /// The event journal.
    pub fn journal(&self) -> Arc<Journal> {
        self.shared.journal.clone()
    }
}

impl Shared {
    /// Runs `f` on the bookkeeping.
    fn book<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        f(&mut self.book.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// One iteration of the flush loop; returns how long to wait before the next.
    async fn step(&self) -> Wait {
        let _guard = self.flush_lock.lock().await;
        self.housekeeping(false).await;
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

    /// Replays the disk backlog oldest segment first, then the memory copies. With
    /// `everything`, drains memory and the backlog completely; otherwise a bounded amount,
    /// so the loop gets to report health and let an on-demand flush in.
    async fn drain_to_store(&self, everything: bool) -> Result<u64, StoreError> {
        let mut stored = self.replay_backlog(everything).await?;
        let max_batch = self.settings.max_batch.max(1);
        let mut rounds = self.journal.queued() / max_batch + 1;
        loop {
            let taken = self.journal.take(max_batch);
            if taken.is_empty() {
                break;
            }
            stored += self.store_taken(taken).await?;
            rounds -= 1;
            if rounds == 0 && !everything {
                break;
            }
        }
        if everything {
            // Whatever went to disk meanwhile (memory full) is the backlog's again.
            stored += self.replay_backlog(true).await?;
        }
        Ok(stored)
    }

    /// Inserts events taken from memory and confirms them to the journal. If the store does
    /// not take them, the journal forgets the copies: the next attempt reads them from disk.
    async fn store_taken(&self, taken: Taken) -> Result<u64, StoreError> {
        match self.insert(&taken.events).await {
            Ok(inserted) => {
                self.journal.confirm(taken);
                self.flushed.fetch_add(inserted, Ordering::Relaxed);
                self.succeeded();
                Ok(inserted)
            }
            Err(error) => {
                self.journal.forget(taken);
                Err(error)
            }
        }
    }

    /// Inserts `events`. If the store refuses the data itself (a poison event), retries them
    /// one by one and drops, counts and logs only the refused ones, so one bad event cannot
    /// wedge the pipeline. Connectivity errors are returned untouched.
    #[tracing::instrument(name = "store.flush", skip_all, fields(backend = self.store.backend(), batch = events.len()))]
    async fn insert(&self, events: &[Arc<Event>]) -> Result<u64, StoreError> {
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

    /// Replays the journal's disk backlog, oldest segment first, confirming each run once
    /// stored. Without `everything`, at most [`BACKLOG_RUNS_PER_STEP`] runs.
    async fn replay_backlog(&self, everything: bool) -> Result<u64, StoreError> {
        let chunk = self.settings.replay_batch.max(1);
        let mut stored = 0;
        let mut runs = 0;
        while everything || runs < BACKLOG_RUNS_PER_STEP {
            let backlog = match self.journal.backlog(chunk) {
                Ok(Some(backlog)) => backlog,
                Ok(None) => break,
                Err(error) => {
                    self.journal_failed(&error);
                    break;
                }
            };
            runs += 1;
            if !backlog.events.is_empty() {
                let inserted = self.insert(&backlog.events).await?;
                stored += inserted;
                self.flushed.fetch_add(inserted, Ordering::Relaxed);
                self.replayed.fetch_add(inserted, Ordering::Relaxed);
                self.succeeded();
            }
            self.journal.confirm_backlog(&backlog);
        }
        if stored > 0 {
            if self.book(|b| std::mem::take(&mut b.announce_replay)) {
                tracing::info!(events = stored, "event journal replayed into the store");
            } else {
                tracing::debug!(events = stored, "event journal replayed into the store");
            }
        }
        Ok(stored)
    }

    /// The store is down: memory copies are dropped and no new ones kept (the events are in
    /// the journal). Returns how many copies were dropped.
    fn spill_everything(&self) -> u64 {
        self.journal.set_memory(false);
        self.journal.drop_memory()
    }

    /// Durability housekeeping: fsync (policy `batch`, once per flush interval or when
    /// `force`d, on a blocking thread), the checkpoint, deletion of confirmed segments, and
    /// reporting of journal write errors.
    async fn housekeeping(&self, force: bool) {
        let interval = self.settings.flush_interval;
        let batch = self.settings.journal.fsync == FsyncPolicy::Batch;
        let sync_due = batch
            && self.book(|b| {
                let due = force || b.last_sync.is_none_or(|at| at.elapsed() >= interval);
                if due {
                    b.last_sync = Some(Instant::now());
                }
                due
            });
        let mut failed = false;
        if sync_due {
            let journal = self.journal.clone();
            let synced = tokio::task::spawn_blocking(move || journal.sync())
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
            if let Err(error) = synced {
                failed = true;
                self.journal_failed(&error);
            }
        }
        if let Err(error) = self.journal.collect() {
            failed = true;
            self.journal_failed(&error);
        }
        if let Err(error) = self.journal.checkpoint(force) {
            failed = true;
            self.journal_failed(&error);
        }
        let errors = self.journal.write_errors();
        let last = self.journal.last_write_error();
        self.book(|b| {
            if errors > b.write_errors_seen {
                b.write_errors_seen = errors;
                b.journal_log
                    .failure(&last.as_deref().unwrap_or("journal write failed"));
            } else if !failed {
                b.journal_log.success();
            }
        });
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
            (b.breaker.on_success(), b.breaker.state())
        });
        let (transition, state) = transition;
        if state == BreakerState::Closed {
            // The store answers: new events are kept in memory again.
            self.journal.set_memory(true);
        }
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

    /// Flushes everything now ([`MetricsPipeline::flush`]).
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
        self.housekeeping(true).await;
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
            buffered: recorder.queued,
            capacity: recorder.capacity,
            spilled_bytes: self.journal.backlog_bytes(),
            journal_bytes: self.journal.bytes(),
            journal_segments: self.journal.segment_count(),
            last_successful_flush: last_success.map(rfc3339),
            consecutive_failures,
            breaker,
            flushed: self.flushed.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            spilled: recorder.spilled,
            dropped: recorder.dropped,
            journal_write_errors: self.journal.write_errors(),
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

#[cfg(feature = "fault-injection")]
impl Handler<Flush> for MetricsBuffer {
    type Result = ResponseFuture<Result<u64, PipelineError>>;

    fn handle(&mut self, _: Flush, _: &mut Self::Context) -> Self::Result {
        let shared = self.shared.clone();
        Box::pin(async move { shared.flush_all().await })
    }
}

#[cfg(test)]
mod tests;
