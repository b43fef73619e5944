//! The SQLite event store, the embedded default (`sqlite://data/exai.db`).
//!
//! Every write (batches, retention) runs on one dedicated thread, `exai-sqlite-wr`
//! ([`writer`]), that owns a plain `rusqlite` connection: a batch is one message to it and
//! one reply, and the statements run there synchronously, prepared once and cached. (sqlx
//! runs each SQLite connection on a worker thread too, but with a channel hop and a wake-up
//! per statement; that was most of the store's CPU.) History queries and migrations use a
//! sqlx pool of reader connections; the database runs in WAL mode, so they never block the
//! writer.
//!
//! [`EventStore::insert_batch`] does in one transaction what PostgreSQL's
//! `monitoring.ingest_prefolded` does in one call: a multi-row `INSERT OR IGNORE` per chunk
//! of events, fold only the rows inserted into per-minute and per-hour totals in memory
//! (`Rollups`, shared with the PostgreSQL store), then upsert each touched rollup row once
//! (read, merge, write — safe inside the write transaction). A batch of fresh events (the usual case) is
//! one statement per chunk, its rows counted by `changes()`; a batch with an id already
//! stored is rolled back and redone with `RETURNING id`, which names the rows inserted.

#[cfg(test)]
mod tests;
mod writer;

use std::str::FromStr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use uuid::Uuid;

use super::model::{
    Bucket, EventQuery, EventStore, Page, Pruned, RetentionSettings, RollupRow,
    SQLITE_BUSY_TIMEOUT, StoreError, StoreResult, StoreSettings, to_u64,
};
use crate::pipeline::event::Event;
pub use writer::THREAD_NAME as WRITER_THREAD;
use writer::Writer;

/// Migrations for this backend, embedded at compile time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// The SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The writer thread (batches, retention): every write runs on its one connection with
    /// its prepared statements, and writes queue there rather than on SQLite's file lock.
    writer: Writer,
    /// Connections for the history queries and migrations (WAL mode, so readers do not
    /// block the writer).
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file named by `url` and its directory.
    pub fn open(url: &str, settings: StoreSettings) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let path = options.get_filename();
        if path.to_string_lossy().starts_with("file:sqlx-in-memory") {
            // The writer's connection would be a second, separate database.
            return Err(StoreError::InvalidUrl(
                "the SQLite store needs a file, not :memory:".to_owned(),
            ));
        }
        let writer = Writer::start(path.to_path_buf())?;
        // One connection of the budget is the writer's.
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.saturating_sub(1).max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self { writer, pool })
    }

    /// The readers' pool, for tests and tools.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Resolves once the writer thread has ended: after the last clone of this store is
    /// dropped and the writes already queued have run.
    pub fn writer_stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        self.writer.stopped()
    }
}

/// Decodes a rollup row selected in the canonical column order.
fn rollup_from_row(row: &SqliteRow) -> StoreResult<RollupRow> {
    let hist: String = row.try_get("latency_hist")?;
    Ok(RollupRow {
        bucket: row.try_get("bucket")?,
        kind: row.try_get("type")?,
        source: row.try_get("source")?,
        count: to_u64(row.try_get("count")?),
        error_count: to_u64(row.try_get("error_count")?),
        latency_count: to_u64(row.try_get("latency_count")?),
        latency_sum: row.try_get("latency_sum")?,
        latency_min: row.try_get("latency_min")?,
        latency_max: row.try_get("latency_max")?,
        latency_hist: serde_json::from_str(&hist).unwrap_or_default(),
        model: row.try_get("model")?,
        prompt_tokens: row.try_get::<Option<i64>, _>("prompt_tokens")?.map(to_u64),
        completion_tokens: row
            .try_get::<Option<i64>, _>("completion_tokens")?
            .map(to_u64),
        cost_usd: row.try_get("cost_usd")?,
    })
}

/// The select list of [`EventStore::events`].
macro_rules! event_columns {
    () => {
        "SELECT id, ts, instance, source, type, data FROM monitoring_events"
    };
}
/// Decodes a raw event row.
fn event_from_row(row: &SqliteRow) -> StoreResult<Event> {
    let id: String = row.try_get("id")?;
    let data: String = row.try_get("data")?;
    Ok(Event::from_parts(
        Uuid::parse_str(&id).map_err(|e| StoreError::Database(sqlx::Error::Decode(e.into())))?,
        row.try_get("ts")?,
        row.try_get("instance")?,
        row.try_get("source")?,
        row.try_get("type")?,
        serde_json::from_str(&data).unwrap_or_default(),
    ))
}

impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn migrate(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move { Ok(MIGRATOR.run(&self.pool).await?) })
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }

    fn insert_batch<'a>(&'a self, events: &'a [Arc<Event>]) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(async move {
            if events.is_empty() {
                return Ok(0);
            }
            // The thread needs its own handles (this borrow ends when the caller stops
            // waiting): the events are shared, not copied.
            let events = events.to_vec();
            self.writer
                .run(move |conn| writer::insert(conn, &events))
                .await
        })
    }

    fn prune(
        &self,
        now_ms: i64,
        retention: RetentionSettings,
    ) -> BoxFuture<'_, StoreResult<Pruned>> {
        Box::pin(async move {
            let cutoff = |d: std::time::Duration| {
                now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            };
            let (events, minutes, hours) = (
                cutoff(retention.raw),
                cutoff(retention.minute),
                cutoff(retention.hour),
            );
            self.writer
                .run(move |conn| writer::prune(conn, events, minutes, hours))
                .await
        })
    }

    fn rollups<'a>(
        &'a self,
        bucket: Bucket,
        since_ms: i64,
        until_ms: i64,
        kind: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<Vec<RollupRow>>> {
        Box::pin(async move {
            let sql = match bucket {
                Bucket::Minute => {
                    "SELECT bucket, type, source, model, count, error_count, latency_count, \
                     latency_sum, latency_min, latency_max, latency_hist, prompt_tokens, \
                     completion_tokens, cost_usd FROM metrics_1min \
                     WHERE bucket >= ? AND bucket < ? AND (? IS NULL OR type = ?) \
                     ORDER BY bucket, type, source, model"
                }
                Bucket::Hour => {
                    "SELECT bucket, type, source, model, count, error_count, latency_count, \
                     latency_sum, latency_min, latency_max, latency_hist, prompt_tokens, \
                     completion_tokens, cost_usd FROM metrics_1hour \
                     WHERE bucket >= ? AND bucket < ? AND (? IS NULL OR type = ?) \
                     ORDER BY bucket, type, source, model"
                }
            };
            let rows = sqlx::query(sql)
                .bind(since_ms)
                .bind(until_ms)
                .bind(kind)
                .bind(kind)
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(rollup_from_row).collect()
        })
    }

    fn events<'a>(&'a self, query: &'a EventQuery) -> BoxFuture<'a, StoreResult<Page>> {
        Box::pin(async move {
            let limit = query.effective_limit();
            let before = query.before.map(|id| id.to_string());
            // One statement per filter combination, so each can use its index.
            let sql = match (query.kind.is_some(), before.is_some()) {
                (false, false) => concat!(event_columns!(), " ORDER BY id DESC LIMIT ?"),
                (true, false) => {
                    concat!(event_columns!(), " WHERE type = ? ORDER BY id DESC LIMIT ?")
                }
                (false, true) => {
                    concat!(event_columns!(), " WHERE id < ? ORDER BY id DESC LIMIT ?")
                }
                (true, true) => concat!(
                    event_columns!(),
                    " WHERE type = ? AND id < ? ORDER BY id DESC LIMIT ?"
                ),
            };
            let mut q = sqlx::query(sql);
            if let Some(kind) = &query.kind {
                q = q.bind(kind.as_str());
            }
            if let Some(before) = before {
                q = q.bind(before);
            }
            let rows = q
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await?;
            let events = rows
                .iter()
                .map(event_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
            let next_cursor = (events.len() == limit)
                .then(|| events.last().map(|e| e.id.to_string()))
                .flatten();
            Ok(Page {
                events,
                next_cursor,
            })
        })
    }
}
