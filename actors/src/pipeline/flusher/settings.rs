//! The flusher's names, defaults and settings, its error and its statistics.

use std::time::Duration;

use serde::Serialize;

use crate::pipeline::journal::JournalSettings;
use crate::pipeline::store::RetentionSettings;
use crate::policy::breaker::{BreakerSettings, BreakerState};
use crate::policy::failure_log::DEFAULT_SUMMARY_EVERY;
use crate::policy::retry::RetryPolicy;

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
    /// Where and how the event journal writes.
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
    /// The event journal could not be opened or written.
    #[error("event journal: {0}")]
    Journal(#[from] std::io::Error),
    /// The store is unreachable; the events stay in the journal.
    #[error("store unavailable ({error}); {spilled} events kept in the event journal")]
    StoreUnavailable {
        /// Events whose memory copies this call dropped (they stay in the journal).
        spilled: u64,
        /// The last store error.
        error: String,
    },
}

/// The pipeline's counters, for `/health`, the dashboard and [`Stats`](super::Stats).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineStats {
    /// Events in memory, waiting for the flusher.
    pub buffered: usize,
    /// The memory bound.
    pub capacity: usize,
    /// Bytes of events the store has not confirmed that wait on disk only (the spill): the
    /// backlog the flusher reads back from the journal.
    pub spilled_bytes: u64,
    /// Bytes in all journal segments, confirmed or not.
    pub journal_bytes: u64,
    /// Journal segment files.
    pub journal_segments: usize,
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
    /// Events kept on disk only since start (memory full, failed inserts, breaker open).
    pub spilled: u64,
    /// Events lost because the journal itself failed and memory was full.
    pub dropped: u64,
    /// Failed journal writes or fsyncs since start.
    pub journal_write_errors: u64,
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
