//! The SQLite event store, the embedded default (`sqlite://data/exai.db`).
//!
//! [`EventStore::insert_batch`] does in one transaction what PostgreSQL's
//! `monitoring.ingest_prefolded` does in one call: a multi-row `INSERT OR IGNORE` per chunk
//! of events, fold only the rows inserted into per-minute and per-hour totals in memory
//! ([`Rollups`], shared with the PostgreSQL store), then upsert each touched rollup row once
//! (read, merge, write — safe inside the write transaction). A batch of fresh events (the usual case) is
//! one statement per chunk, its rows counted by `changes()`; a batch with an id already
//! stored is rolled back and redone with `RETURNING id`, which names the rows inserted.
//! Every write goes through one connection (sqlx runs each SQLite connection on its own
//! worker thread, with one channel hop per statement, so fewer statements is the saving).
//! The database runs in WAL mode.

use std::collections::HashSet;
use std::str::FromStr;

use futures_util::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use super::model::{
    Bucket, EventQuery, EventStore, Page, Pruned, RetentionSettings, RollupRow, Rollups,
    SQLITE_BUSY_TIMEOUT, StoreError, StoreResult, StoreSettings, add_opt, opt_max, opt_min, to_i64,
    to_u64,
};
use crate::pipeline::event::Event;
use crate::pipeline::histogram::Histogram;

/// Migrations for this backend, embedded at compile time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Events per multi-row `INSERT`: 6 bound values each, so 3,000 per statement, under the
/// bundled SQLite's limit of 32,766 (`SQLITE_MAX_VARIABLE_NUMBER`); the flusher's default
/// `max_batch` is one statement.
const INSERT_CHUNK: usize = 500;

/// The SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one writer connection (batches, retention, migrations), so every write runs on
    /// the same sqlx worker thread with its prepared statements, and writes queue here
    /// rather than on SQLite's file lock.
    writer: SqlitePool,
    /// Connections for the history queries (WAL mode, so readers do not block the writer).
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
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options.clone());
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

    /// Inserts the batch and folds the new rows; see the module docs.
    async fn insert(&self, events: &[Event]) -> StoreResult<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        match self.insert_fresh(events).await? {
            Some(inserted) => Ok(inserted),
            None => self.insert_checked(events).await,
        }
    }

    /// The fast path, for a batch of events none of which is stored yet (the usual case):
    /// plain multi-row `INSERT OR IGNORE`s without `RETURNING`, so each chunk is one
    /// statement and one reply from sqlx's worker thread, not one reply per row. If every
    /// row went in, all of them are folded and the transaction commits. If any was ignored
    /// (a replayed batch, an id twice in the batch), the transaction is rolled back and
    /// `None` returned: [`Self::insert_checked`] then learns row by row which are new.
    async fn insert_fresh(&self, events: &[Event]) -> StoreResult<Option<u64>> {
        let mut tx = self.writer.begin().await?;
        let mut inserted = 0u64;
        for chunk in events.chunks(INSERT_CHUNK) {
            inserted += insert_rows(chunk, false)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if inserted != events.len() as u64 {
            tx.rollback().await?;
            return Ok(None);
        }
        write_rollups(Rollups::of(events), &mut tx).await?;
        tx.commit().await?;
        Ok(Some(inserted))
    }

    /// The general path: `RETURNING id` names the rows actually inserted (OR IGNORE skips
    /// ids already stored), and only those are folded.
    async fn insert_checked(&self, events: &[Event]) -> StoreResult<u64> {
        let mut tx = self.writer.begin().await?;
        let mut rollups = Rollups::default();
        let mut inserted = 0u64;
        for chunk in events.chunks(INSERT_CHUNK) {
            let rows = insert_rows(chunk, true).fetch_all(&mut *tx).await?;
            let mut new_ids = HashSet::with_capacity(rows.len());
            for row in &rows {
                new_ids.insert(row.try_get::<String, _>(0)?);
            }
            for event in chunk {
                // `remove`: an id repeated within the batch is folded once.
                if !new_ids.remove(&event.id.to_string()) {
                    continue;
                }
                inserted += 1;
                rollups.add(event);
            }
        }
        write_rollups(rollups, &mut tx).await?;
        tx.commit().await?;
        Ok(inserted)
    }
}

/// One multi-row `INSERT OR IGNORE` of `chunk` (at most [`INSERT_CHUNK`] events), with
/// `RETURNING id` when `returning`. Full-size chunks are kept prepared on the writer
/// connection; the odd-sized tail of a batch is prepared once and not cached, so it does
/// not push the full-size statements out of sqlx's statement cache.
fn insert_rows(
    chunk: &[Event],
    returning: bool,
) -> sqlx::query::Query<'_, Sqlite, sqlx::sqlite::SqliteArguments> {
    let mut sql = String::with_capacity(100 + chunk.len() * 20);
    sql.push_str(
        "INSERT OR IGNORE INTO monitoring_events (id, ts, instance, source, type, data) VALUES ",
    );
    for i in 0..chunk.len() {
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?, ?)"
        });
    }
    if returning {
        sql.push_str(" RETURNING id");
    }
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(chunk.len() == INSERT_CHUNK);
    for event in chunk {
        let data = serde_json::to_string(&event.data).unwrap_or_else(|_| "{}".to_owned());
        query = query
            .bind(event.id.to_string())
            .bind(event.ts)
            .bind(event.instance.as_str())
            .bind(event.source.as_str())
            .bind(event.kind.as_str())
            .bind(data);
    }
    query
}

/// Adds the batch's totals to the stored rollup rows, inside the batch's transaction.
async fn write_rollups(
    rollups: Rollups<'_>,
    tx: &mut Transaction<'static, Sqlite>,
) -> StoreResult<()> {
    let (minute, hour) = rollups.into_rows();
    for row in minute {
        upsert_rollup(tx, Bucket::Minute, row).await?;
    }
    for row in hour {
        upsert_rollup(tx, Bucket::Hour, row).await?;
    }
    Ok(())
}

/// Adds `add` to the stored rollup row with the same key (or creates it).
async fn upsert_rollup(
    tx: &mut Transaction<'static, Sqlite>,
    bucket: Bucket,
    add: RollupRow,
) -> StoreResult<()> {
    let select = match bucket {
        Bucket::Minute => {
            "SELECT bucket, type, source, model, count, error_count, latency_count, latency_sum, \
             latency_min, latency_max, latency_hist, prompt_tokens, completion_tokens, cost_usd \
             FROM metrics_1min WHERE bucket = ? AND type = ? AND source = ? AND model = ?"
        }
        Bucket::Hour => {
            "SELECT bucket, type, source, model, count, error_count, latency_count, latency_sum, \
             latency_min, latency_max, latency_hist, prompt_tokens, completion_tokens, cost_usd \
             FROM metrics_1hour WHERE bucket = ? AND type = ? AND source = ? AND model = ?"
        }
    };
    let existing = sqlx::query(select)
        .bind(add.bucket)
        .bind(&add.kind)
        .bind(&add.source)
        .bind(&add.model)
        .fetch_optional(&mut **tx)
        .await?;
    let merged = match existing {
        Some(row) => {
            let old = rollup_from_row(&row)?;
            let mut hist = Histogram::from_json(&old.latency_hist);
            hist.merge(&Histogram::from_json(&add.latency_hist));
            RollupRow {
                count: old.count + add.count,
                error_count: old.error_count + add.error_count,
                latency_count: old.latency_count + add.latency_count,
                latency_sum: old.latency_sum + add.latency_sum,
                latency_min: opt_min(old.latency_min, add.latency_min),
                latency_max: opt_max(old.latency_max, add.latency_max),
                latency_hist: hist.to_json(),
                prompt_tokens: add_opt(old.prompt_tokens, add.prompt_tokens),
                completion_tokens: add_opt(old.completion_tokens, add.completion_tokens),
                cost_usd: add_opt(old.cost_usd, add.cost_usd),
                ..add
            }
        }
        None => add,
    };
    let write = match bucket {
        Bucket::Minute => {
            "INSERT OR REPLACE INTO metrics_1min (bucket, type, source, model, count, error_count, \
             latency_count, latency_sum, latency_min, latency_max, latency_hist, prompt_tokens, \
             completion_tokens, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        }
        Bucket::Hour => {
            "INSERT OR REPLACE INTO metrics_1hour (bucket, type, source, model, count, error_count, \
             latency_count, latency_sum, latency_min, latency_max, latency_hist, prompt_tokens, \
             completion_tokens, cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        }
    };
    sqlx::query(write)
        .bind(merged.bucket)
        .bind(&merged.kind)
        .bind(&merged.source)
        .bind(&merged.model)
        .bind(to_i64(merged.count))
        .bind(to_i64(merged.error_count))
        .bind(to_i64(merged.latency_count))
        .bind(merged.latency_sum)
        .bind(merged.latency_min)
        .bind(merged.latency_max)
        .bind(merged.latency_hist.to_string())
        .bind(merged.prompt_tokens.map(to_i64))
        .bind(merged.completion_tokens.map(to_i64))
        .bind(merged.cost_usd)
        .execute(&mut **tx)
        .await?;
    Ok(())
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
    Ok(Event {
        id: Uuid::parse_str(&id)
            .map_err(|e| StoreError::Database(sqlx::Error::Decode(e.into())))?,
        ts: row.try_get("ts")?,
        instance: row.try_get("instance")?,
        source: row.try_get("source")?,
        kind: row.try_get("type")?,
        data: serde_json::from_str(&data).unwrap_or_default(),
    })
}

impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn migrate(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move { Ok(MIGRATOR.run(&self.writer).await?) })
    }

    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }

    fn insert_batch<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(self.insert(events))
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
            // One transaction: a reader never sees raw rows pruned but their rollups not.
            let mut tx = self.writer.begin().await?;
            let events = sqlx::query("DELETE FROM monitoring_events WHERE ts < ?")
                .bind(cutoff(retention.raw))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let minute_rows = sqlx::query("DELETE FROM metrics_1min WHERE bucket < ?")
                .bind(cutoff(retention.minute))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let hour_rows = sqlx::query("DELETE FROM metrics_1hour WHERE bucket < ?")
                .bind(cutoff(retention.hour))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(Pruned {
                events,
                minute_rows,
                hour_rows,
            })
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
