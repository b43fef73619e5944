//! The event store: one trait, [`EventStore`], with a SQLite backend (the embedded default)
//! and a PostgreSQL backend (DESIGN §6). The flusher writes through
//! [`EventStore::insert_batch`]; the HTTP layer reads history through `summary`,
//! `timeseries` and `events`; the retention job calls `prune`.
//!
//! Both backends have the same semantics: a batch is inserted idempotently by event id and
//! only the newly inserted rows are folded into the `metrics_1min` and `metrics_1hour`
//! rollups, in the same transaction. A flush therefore costs O(batch), never O(history),
//! and re-delivering a batch changes no count. Rollup rows are keyed by (bucket, type, source,
//! model) — the model of a `request` event, `""` otherwise — and sum its tokens and cost.
//!
//! History queries read rollups (summary, timeseries) or raw rows (events) and merge the
//! rollups' latency histograms ([`crate::pipeline::histogram`]), so percentiles carry the
//! histogram's stated relative-error bound for any window.
//!
//! The contract both backends implement lives in `model.rs`; this module re-exports it and
//! opens the backend a database URL names.

pub mod postgres;
pub mod sqlite;

mod model;

use std::sync::Arc;

/// Re-exported so tests and tools can inspect a database directly with the same driver.
pub use sqlx;

pub use model::{
    Bucket, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_PAGE_LIMIT, EventQuery,
    EventStore, MAX_PAGE_LIMIT, MAX_TIMESERIES_POINTS, Page, Point, Pruned, RetentionSettings,
    RollupRow, SQLITE_BUSY_TIMEOUT, SUMMARY_MINUTE_ROLLUP_MAX, StoreError, StoreResult,
    StoreSettings, SummaryRow, now_ms, rollups_of, series, shared_batch, summarize,
};

/// Opens the store named by `database_url` with default pool settings.
pub fn open_store(database_url: &str) -> StoreResult<Arc<dyn EventStore>> {
    open_store_with(database_url, StoreSettings::default())
}

/// Opens the store named by `database_url`: `sqlite://path` (the file and its directory are
/// created) or `postgres://…`. Connections are made lazily, so this succeeds while the
/// database is down; call [`EventStore::migrate`] to apply the schema.
pub fn open_store_with(
    database_url: &str,
    settings: StoreSettings,
) -> StoreResult<Arc<dyn EventStore>> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(database_url, settings)?))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(database_url, settings)?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}
