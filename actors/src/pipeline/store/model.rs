//! The store's contract, shared by both backends: the [`EventStore`] trait, its settings,
//! errors, query and row types, and the rollup arithmetic (folding events or rollup rows into
//! summaries and time series) that both backends and the tests use.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::pipeline::event::Event;
use crate::pipeline::histogram::Histogram;
use crate::pipeline::request::{REQUEST_EVENT, RequestFacts};

/// Most events one [`EventStore::events`] page returns, whatever the caller asks for.
pub const MAX_PAGE_LIMIT: usize = 1000;
/// Page size when the caller gives none.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Most buckets one [`EventStore::timeseries`] answer may span.
pub const MAX_TIMESERIES_POINTS: i64 = 10_000;
/// Summaries over windows up to this long read per-minute rollups; longer ones read hourly.
pub const SUMMARY_MINUTE_ROLLUP_MAX: Duration = Duration::from_secs(6 * 3600);
/// Default pool size: the flusher needs one connection, queries and retention a few more.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4;
/// Default wait for a pooled connection (includes connecting). Short, so an outage is
/// noticed quickly and the flusher's breaker can open.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long SQLite waits on a locked database before failing a statement.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres:`/`postgresql:`.
    #[error("database URL must start with sqlite:// or postgres://")]
    UnsupportedUrl,
    /// The URL could not be parsed (the URL itself is not repeated: it may hold a password).
    #[error("invalid database URL: {0}")]
    InvalidUrl(String),
    /// The SQLite file's directory could not be created.
    #[error("cannot create database directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database rejected a statement or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The SQLite writer's connection (a `rusqlite` one, on its own thread) could not open
    /// the file or had a statement rejected.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The SQLite writer thread could not be started, has stopped, or panicked on a write.
    #[error("SQLite writer: {0}")]
    Writer(String),
    /// Applying migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query parameter is out of range; the message names the parameter.
    #[error("{0}")]
    InvalidQuery(String),
}

impl StoreError {
    /// Whether the database refused the data itself (PostgreSQL SQLSTATE class 22 "data
    /// exception" or 23 "integrity constraint violation", or a value that could not be
    /// encoded; for SQLite's writer a constraint, a value too big or of the wrong type), as
    /// opposed to being unreachable or misconfigured. Retrying the same batch
    /// cannot succeed; the flusher then stores its events one by one and drops (and counts)
    /// only those refused.
    pub fn is_rejection(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| code.starts_with("22") || code.starts_with("23")),
            Self::Database(sqlx::Error::Encode(_)) => true,
            Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::ConstraintViolation
                    | rusqlite::ErrorCode::TooBig
                    | rusqlite::ErrorCode::TypeMismatch
            ),
            Self::Sqlite(rusqlite::Error::ToSqlConversionFailure(_)) => true,
            _ => false,
        }
    }
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Rollup granularity for [`EventStore::timeseries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Bucket {
    /// `metrics_1min`.
    #[serde(rename = "1m")]
    Minute,
    /// `metrics_1hour`.
    #[serde(rename = "1h")]
    Hour,
}

impl Bucket {
    /// Bucket length in milliseconds.
    pub const fn millis(self) -> i64 {
        match self {
            Self::Minute => 60_000,
            Self::Hour => 3_600_000,
        }
    }

    /// The start of the bucket holding `ts_ms`.
    pub const fn floor(self, ts_ms: i64) -> i64 {
        ts_ms - ts_ms.rem_euclid(self.millis())
    }
}

impl std::str::FromStr for Bucket {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "1m" => Ok(Self::Minute),
            "1h" => Ok(Self::Hour),
            _ => Err(StoreError::InvalidQuery(
                "bucket: expected 1m or 1h".to_owned(),
            )),
        }
    }
}

/// How long each kind of row is kept (DESIGN §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Raw events (`monitoring_events`); default 7 days.
    pub raw: Duration,
    /// Per-minute rollups; default 30 days.
    pub minute: Duration,
    /// Per-hour rollups; default 365 days.
    pub hour: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            raw: Duration::from_secs(7 * 86_400),
            minute: Duration::from_secs(30 * 86_400),
            hour: Duration::from_secs(365 * 86_400),
        }
    }
}

/// Rows removed by one [`EventStore::prune`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Raw events deleted.
    pub events: u64,
    /// Per-minute rollup rows deleted.
    pub minute_rows: u64,
    /// Per-hour rollup rows deleted.
    pub hour_rows: u64,
}

/// One rollup row as stored: the aggregates of one (bucket, type, source, model).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollupRow {
    /// Bucket start, unix milliseconds.
    pub bucket: i64,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Event source.
    pub source: String,
    /// A `request` event's `resolved_model`; `""` for other types and unresolved calls
    /// ([`rollup_model`]).
    pub model: String,
    /// Events in the bucket.
    pub count: u64,
    /// Events with `data.ok == false`.
    pub error_count: u64,
    /// Events carrying a numeric `data.latency_ms`.
    pub latency_count: u64,
    /// Sum of those latencies, ms.
    pub latency_sum: f64,
    /// Smallest latency, ms.
    pub latency_min: Option<f64>,
    /// Largest latency, ms.
    pub latency_max: Option<f64>,
    /// Sparse latency histogram ([`Histogram::to_json`]).
    pub latency_hist: Value,
    /// Prompt tokens of the `request` events; `None` while none reported any.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens of the `request` events; `None` while none reported any.
    pub completion_tokens: Option<u64>,
    /// Cost of the `request` events, USD; `None` while none had a price.
    pub cost_usd: Option<f64>,
}

/// One line of `GET /api/metrics/summary`: a (type, source, model) over the window (or, in
/// [`Summary::models`] and [`Summary::requests`], `request` rows folded across sources).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummaryRow {
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Event source (`""` when folded across sources).
    pub source: String,
    /// The rows' model (`""`: not a `request` row, an unresolved call, or folded across
    /// models).
    pub model: String,
    /// Events.
    pub count: u64,
    /// Failed events (`data.ok == false`).
    pub errors: u64,
    /// Mean latency, ms, when any event carried one.
    pub latency_avg_ms: Option<f64>,
    /// Smallest latency, ms (exact).
    pub latency_min_ms: Option<f64>,
    /// Largest latency, ms (exact).
    pub latency_max_ms: Option<f64>,
    /// Median latency, ms (histogram estimate).
    pub p50_ms: Option<f64>,
    /// 95th percentile latency, ms (histogram estimate).
    pub p95_ms: Option<f64>,
    /// 99th percentile latency, ms (histogram estimate).
    pub p99_ms: Option<f64>,
    /// Prompt tokens reported.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens reported.
    pub completion_tokens: Option<u64>,
    /// Cost, USD.
    pub cost_usd: Option<f64>,
}

/// `GET /api/metrics/summary`: every row, the `request` rows per model, and their totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// Per (type, source, model), ordered.
    pub rows: Vec<SummaryRow>,
    /// `request` rows per model, across sources, ordered by model.
    pub models: Vec<SummaryRow>,
    /// All `request` rows together; `None` without any.
    pub requests: Option<SummaryRow>,
}

/// One point of `GET /api/metrics/timeseries`: every matching row of one bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Bucket start, unix milliseconds.
    pub ts: i64,
    /// Events.
    pub count: u64,
    /// Failed events.
    pub errors: u64,
    /// Mean latency, ms.
    pub latency_avg_ms: Option<f64>,
    /// Median latency, ms.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency, ms.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency, ms.
    pub p99_ms: Option<f64>,
    /// Prompt tokens reported.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens reported.
    pub completion_tokens: Option<u64>,
    /// Cost, USD.
    pub cost_usd: Option<f64>,
}

/// One page of `GET /api/events`, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    /// The events, newest (highest id) first.
    pub events: Vec<Event>,
    /// Pass as `before` to get the next (older) page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Filters for [`EventStore::events`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events of this type.
    pub kind: Option<String>,
    /// Only events older than this cursor (an event id, as returned in `next_cursor`).
    pub before: Option<Uuid>,
    /// Page size; clamped to `1..=MAX_PAGE_LIMIT`, default [`DEFAULT_PAGE_LIMIT`].
    pub limit: Option<usize>,
}

impl EventQuery {
    /// The effective page size.
    pub fn effective_limit(&self) -> usize {
        self.limit
            .unwrap_or(DEFAULT_PAGE_LIMIT)
            .clamp(1, MAX_PAGE_LIMIT)
    }
}

/// Connection pool settings shared by both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSettings {
    /// Pool size.
    pub max_connections: u32,
    /// Wait for a pooled connection, including connecting; keep short so outages fail fast.
    pub acquire_timeout: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        }
    }
}

/// The persistence contract of the metrics pipeline. Object safe: used as `Arc<dyn EventStore>`.
pub trait EventStore: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`, for `/health`.
    fn backend(&self) -> &'static str;

    /// Applies the embedded migrations (idempotent).
    fn migrate(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// A cheap round trip, to probe reachability.
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>>;

    /// Inserts `events` idempotently by id and folds only the newly inserted ones into the
    /// rollups, in one transaction. Returns how many were new.
    /// The events are shared (`Arc`) with the journal's memory and the live feed, so a batch
    /// reaches the store without a copy.
    fn insert_batch<'a>(&'a self, events: &'a [Arc<Event>]) -> BoxFuture<'a, StoreResult<u64>>;

    /// Deletes rows older than the retention periods, measured back from `now_ms`.
    fn prune(
        &self,
        now_ms: i64,
        retention: RetentionSettings,
    ) -> BoxFuture<'_, StoreResult<Pruned>>;

    /// Rollup rows with `since_ms <= bucket < until_ms`, optionally of one type, ordered by
    /// bucket.
    fn rollups<'a>(
        &'a self,
        bucket: Bucket,
        since_ms: i64,
        until_ms: i64,
        kind: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<Vec<RollupRow>>>;

    /// A page of raw events, newest first (keyset pagination on the time-ordered id).
    fn events<'a>(&'a self, query: &'a EventQuery) -> BoxFuture<'a, StoreResult<Page>>;

    /// Per (type, source, model) totals over the last `window` (rounded out to whole
    /// buckets: per minute up to [`SUMMARY_MINUTE_ROLLUP_MAX`], per hour beyond), with the
    /// `request` rows per model and in total.
    fn summary(&self, window: Duration) -> BoxFuture<'_, StoreResult<Summary>> {
        Box::pin(async move {
            let bucket = if window <= SUMMARY_MINUTE_ROLLUP_MAX {
                Bucket::Minute
            } else {
                Bucket::Hour
            };
            let now = now_ms();
            let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
            let since = bucket.floor(now.saturating_sub(window_ms));
            let rows = self.rollups(bucket, since, i64::MAX, None).await?;
            let requests: Vec<RollupRow> = rows
                .iter()
                .filter(|r| r.kind == REQUEST_EVENT)
                .cloned()
                .collect();
            let fold_all = |rows: &[RollupRow]| {
                let mut fold = Fold::default();
                rows.iter().for_each(|r| fold.add_row(r));
                (!rows.is_empty()).then(|| fold.into_summary(REQUEST_EVENT, "", ""))
            };
            Ok(Summary {
                rows: summarize(&rows),
                models: summarize_by(&requests, |r| (r.kind.as_str(), "", r.model.as_str())),
                requests: fold_all(&requests),
            })
        })
    }

    /// One point per non-empty bucket with `since_ms <= bucket < until_ms` (since is rounded
    /// down to its bucket), all types or one. Errors name the bad parameter.
    fn timeseries<'a>(
        &'a self,
        bucket: Bucket,
        since_ms: i64,
        until_ms: i64,
        kind: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<Vec<Point>>> {
        Box::pin(async move {
            if since_ms >= until_ms {
                return Err(StoreError::InvalidQuery(
                    "since: must be earlier than until".to_owned(),
                ));
            }
            let since = bucket.floor(since_ms);
            let span = until_ms.saturating_sub(since) / bucket.millis();
            if span > MAX_TIMESERIES_POINTS {
                return Err(StoreError::InvalidQuery(format!(
                    "since: range spans {span} buckets; at most {MAX_TIMESERIES_POINTS} allowed"
                )));
            }
            let rows = self.rollups(bucket, since, until_ms, kind).await?;
            Ok(series(&rows))
        })
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// Running totals while folding rollup rows or events.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fold {
    /// Events.
    pub(crate) count: u64,
    /// Failed events.
    pub(crate) errors: u64,
    /// Events with a latency.
    pub(crate) latency_count: u64,
    /// Sum of latencies.
    pub(crate) latency_sum: f64,
    /// Smallest latency.
    pub(crate) latency_min: Option<f64>,
    /// Largest latency.
    pub(crate) latency_max: Option<f64>,
    /// Merged histogram.
    pub(crate) hist: Histogram,
    /// Prompt tokens, once any were reported.
    pub(crate) prompt_tokens: Option<u64>,
    /// Completion tokens, once any were reported.
    pub(crate) completion_tokens: Option<u64>,
    /// Cost, once any call had one.
    pub(crate) cost_usd: Option<f64>,
}

/// The model dimension of an event's rollup row: a `request` event's `resolved_model`, `""`
/// for everything else (so only registry-resolved names, never client-chosen ones, become
/// rows).
pub fn rollup_model(event: &Event) -> &str {
    if event.kind != REQUEST_EVENT {
        return "";
    }
    event
        .data
        .get("resolved_model")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Adds an optional amount to an optional sum (`None` + `None` stays `None`).
pub(crate) fn add_opt<T: std::ops::Add<Output = T>>(sum: Option<T>, v: Option<T>) -> Option<T> {
    match (sum, v) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

impl Fold {
    /// Adds one raw event.
    pub(crate) fn add_event(&mut self, event: &Event) {
        self.count += 1;
        if !event.ok() {
            self.errors += 1;
        }
        if let Some(latency) = event.latency_ms() {
            self.latency_count += 1;
            self.latency_sum += latency;
            self.latency_min = Some(self.latency_min.map_or(latency, |m| m.min(latency)));
            self.latency_max = Some(self.latency_max.map_or(latency, |m| m.max(latency)));
            self.hist.record(latency);
        }
        if event.kind == REQUEST_EVENT {
            let facts = RequestFacts::of(&event.data);
            self.prompt_tokens = add_opt(self.prompt_tokens, facts.prompt_tokens);
            self.completion_tokens = add_opt(self.completion_tokens, facts.completion_tokens);
            self.cost_usd = add_opt(self.cost_usd, facts.cost_usd.filter(|c| c.is_finite()));
        }
    }

    /// Adds one stored rollup row.
    pub(crate) fn add_row(&mut self, row: &RollupRow) {
        self.count += row.count;
        self.errors += row.error_count;
        self.latency_count += row.latency_count;
        self.latency_sum += row.latency_sum;
        self.latency_min = opt_min(self.latency_min, row.latency_min);
        self.latency_max = opt_max(self.latency_max, row.latency_max);
        self.hist
            .merge_stored(&row.latency_hist, row.latency_min, row.latency_max);
        self.prompt_tokens = add_opt(self.prompt_tokens, row.prompt_tokens);
        self.completion_tokens = add_opt(self.completion_tokens, row.completion_tokens);
        self.cost_usd = add_opt(self.cost_usd, row.cost_usd);
    }

    /// These totals as a summary line.
    fn into_summary(self, kind: &str, source: &str, model: &str) -> SummaryRow {
        SummaryRow {
            kind: kind.to_owned(),
            source: source.to_owned(),
            model: model.to_owned(),
            count: self.count,
            errors: self.errors,
            latency_avg_ms: self.latency_avg(),
            latency_min_ms: self.latency_min,
            latency_max_ms: self.latency_max,
            p50_ms: self.hist.quantile(0.50),
            p95_ms: self.hist.quantile(0.95),
            p99_ms: self.hist.quantile(0.99),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cost_usd: self.cost_usd,
        }
    }

    /// Mean latency.
    fn latency_avg(&self) -> Option<f64> {
        (self.latency_count > 0).then(|| self.latency_sum / self.latency_count as f64)
    }
}

/// The smaller of two optional values.
pub(crate) fn opt_min(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The larger of two optional values.
pub(crate) fn opt_max(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Folds rollup rows into one summary line per (type, source, model).
pub fn summarize(rows: &[RollupRow]) -> Vec<SummaryRow> {
    summarize_by(rows, |r| {
        (r.kind.as_str(), r.source.as_str(), r.model.as_str())
    })
}

/// Folds rollup rows into one summary line per `key` (type, source, model).
pub fn summarize_by<'a>(
    rows: &'a [RollupRow],
    key: impl Fn(&'a RollupRow) -> (&'a str, &'a str, &'a str),
) -> Vec<SummaryRow> {
    let mut folds: BTreeMap<(&str, &str, &str), Fold> = BTreeMap::new();
    for row in rows {
        folds.entry(key(row)).or_default().add_row(row);
    }
    folds
        .into_iter()
        .map(|((kind, source, model), fold)| fold.into_summary(kind, source, model))
        .collect()
}

/// Folds rollup rows into one point per bucket.
pub fn series(rows: &[RollupRow]) -> Vec<Point> {
    let mut folds: BTreeMap<i64, Fold> = BTreeMap::new();
    for row in rows {
        folds.entry(row.bucket).or_default().add_row(row);
    }
    folds
        .into_iter()
        .map(|(ts, fold)| Point {
            ts,
            count: fold.count,
            errors: fold.errors,
            latency_avg_ms: fold.latency_avg(),
            p50_ms: fold.hist.quantile(0.50),
            p95_ms: fold.hist.quantile(0.95),
            p99_ms: fold.hist.quantile(0.99),
            prompt_tokens: fold.prompt_tokens,
            completion_tokens: fold.completion_tokens,
            cost_usd: fold.cost_usd,
        })
        .collect()
}

/// The rollup rows `events` would produce, computed directly from the events: what the
/// stores must hold after inserting them once. Used by tests and consistency checks.
pub fn rollups_of(events: &[Event], bucket: Bucket) -> Vec<RollupRow> {
    let mut folds: BTreeMap<RollupKey<'_>, Fold> = BTreeMap::new();
    for event in events {
        folds
            .entry(rollup_key(bucket, event))
            .or_default()
            .add_event(event);
    }
    folds
        .into_iter()
        .map(|((bucket, kind, source, model), fold)| fold.into_row(bucket, kind, source, model))
        .collect()
}

/// A rollup row's key: bucket start (unix ms), type, source, model ([`rollup_model`]).
pub(crate) type RollupKey<'a> = (i64, &'a str, &'a str, &'a str);

/// `events` as a batch for [`EventStore::insert_batch`] (a copy of each; for tests, tools and
/// replays that hold plain events).
pub fn shared_batch(events: &[Event]) -> Vec<Arc<Event>> {
    events.iter().cloned().map(Arc::new).collect()
}

/// The key of the `bucket` rollup row `event` is folded into.
pub(crate) fn rollup_key(bucket: Bucket, event: &Event) -> RollupKey<'_> {
    (
        bucket.floor(event.ts),
        &event.kind,
        &event.source,
        rollup_model(event),
    )
}

/// The per-minute and per-hour totals of the newly inserted events of one batch, folded in
/// memory. Each backend then adds them to its stored rows, once per touched key and in the
/// batch's transaction: SQLite row by row, PostgreSQL as one upsert per rollup table.
#[derive(Debug, Default)]
pub(crate) struct Rollups<'a> {
    /// Per-minute totals, ordered by key.
    pub(crate) minute: BTreeMap<RollupKey<'a>, Fold>,
    /// Per-hour totals, ordered by key.
    pub(crate) hour: BTreeMap<RollupKey<'a>, Fold>,
}

impl<'a> Rollups<'a> {
    /// The totals of `events`, every one of them new.
    pub(crate) fn of(events: &'a [Arc<Event>]) -> Self {
        let mut rollups = Self::default();
        events.iter().for_each(|event| rollups.add(event));
        rollups
    }

    /// Folds one newly inserted event.
    pub(crate) fn add(&mut self, event: &'a Event) {
        self.minute
            .entry(rollup_key(Bucket::Minute, event))
            .or_default()
            .add_event(event);
        self.hour
            .entry(rollup_key(Bucket::Hour, event))
            .or_default()
            .add_event(event);
    }

    /// The totals as rollup rows of each granularity, ordered by key: (minute, hour).
    pub(crate) fn into_rows(self) -> (Vec<RollupRow>, Vec<RollupRow>) {
        let rows = |folds: BTreeMap<RollupKey<'a>, Fold>| {
            folds
                .into_iter()
                .map(|((bucket, kind, source, model), fold)| {
                    fold.into_row(bucket, kind, source, model)
                })
                .collect()
        };
        (rows(self.minute), rows(self.hour))
    }
}

impl Fold {
    /// The stored form of these totals.
    pub(crate) fn into_row(self, bucket: i64, kind: &str, source: &str, model: &str) -> RollupRow {
        RollupRow {
            bucket,
            kind: kind.to_owned(),
            source: source.to_owned(),
            model: model.to_owned(),
            count: self.count,
            error_count: self.errors,
            latency_count: self.latency_count,
            latency_sum: self.latency_sum,
            latency_min: self.latency_min,
            latency_max: self.latency_max,
            latency_hist: self.hist.to_json(),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            cost_usd: self.cost_usd,
        }
    }
}

/// Converts a database count to `u64` (negative counts cannot occur; they read as 0).
pub(crate) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Converts a `u64` count to the database's `i64`.
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn buckets_floor_and_parse() {
        assert_eq!(Bucket::Minute.floor(125_000), 120_000);
        assert_eq!(Bucket::Hour.floor(3_600_001), 3_600_000);
        assert_eq!(Bucket::Minute.floor(-1), -60_000);
        assert_eq!("1m".parse::<Bucket>().ok(), Some(Bucket::Minute));
        let err = "5m".parse::<Bucket>().err().map(|e| e.to_string());
        assert!(err.unwrap().starts_with("bucket:"));
    }

    #[test]
    fn summary_of_rollups_equals_summary_of_events() {
        let mut events = Vec::new();
        for n in 0..500 {
            let mut e = Event::new(
                "i",
                if n % 2 == 0 { "a" } else { "b" },
                "provider.request",
                json!({"ok": n % 7 != 0, "latency_ms": f64::from(n) * 1.5 + 0.2}),
            );
            e.ts = 1_700_000_000_000 + i64::from(n) * 1_000;
            events.push(e);
        }
        let minute = rollups_of(&events, Bucket::Minute);
        let hour = rollups_of(&events, Bucket::Hour);
        assert!(minute.len() > hour.len());
        let from_minute = summarize(&minute);
        let from_hour = summarize(&hour);
        assert_eq!(from_minute.len(), 2);
        for (m, h) in from_minute.iter().zip(&from_hour) {
            assert_eq!(m.count, h.count);
            assert_eq!(m.errors, h.errors);
            assert_eq!(m.p99_ms, h.p99_ms);
            assert_eq!(m.latency_max_ms, h.latency_max_ms);
        }
        assert_eq!(from_minute[0].count + from_minute[1].count, 500);
        let points = series(&minute);
        assert_eq!(points.iter().map(|p| p.count).sum::<u64>(), 500);
    }

    #[test]
    fn page_limit_is_capped() {
        let q = EventQuery {
            limit: Some(50_000),
            ..EventQuery::default()
        };
        assert_eq!(q.effective_limit(), MAX_PAGE_LIMIT);
        assert_eq!(EventQuery::default().effective_limit(), DEFAULT_PAGE_LIMIT);
    }
}
