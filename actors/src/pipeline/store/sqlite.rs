//! The SQLite event store, the embedded default (`sqlite://data/exai.db`).
//!
//! SQLite has no stored procedures, so [`EventStore::insert_batch`] does in one transaction
//! what PostgreSQL's `monitoring.aggregate_metrics` does in one statement: a multi-row
//! `INSERT OR IGNORE … RETURNING id` per chunk of events, fold only the rows it reports as
//! inserted into per-minute and per-hour totals in memory, then upsert each touched rollup
//! row once (read, merge, write — safe inside the write transaction). The database runs in
//! WAL mode.

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use futures_util::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use uuid::Uuid;

use super::model::{
    Bucket, EventQuery, EventStore, Fold, Page, Pruned, RetentionSettings, RollupRow,
    SQLITE_BUSY_TIMEOUT, StoreError, StoreResult, StoreSettings, opt_max, opt_min, to_i64, to_u64,
};
use crate::pipeline::event::Event;
use crate::pipeline::histogram::Histogram;

/// Migrations for this backend, embedded at compile time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Events per multi-row `INSERT` (6 bound values each, well under SQLite's variable limit).
const INSERT_CHUNK: usize = 100;

/// The SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Connection pool (WAL mode, so readers do not block the flusher).
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
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// The underlying pool, for tests and tools.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Inserts the batch and folds the new rows; see the module docs.
    async fn insert(&self, events: &[Event]) -> StoreResult<u64> {
        if events.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        let mut minute: BTreeMap<(i64, &str, &str), Fold> = BTreeMap::new();
        let mut hour: BTreeMap<(i64, &str, &str), Fold> = BTreeMap::new();
        let mut inserted = 0u64;
        for chunk in events.chunks(INSERT_CHUNK) {
            // One multi-row statement per chunk; RETURNING names the rows actually inserted
            // (OR IGNORE skips ids already stored), and only those are folded.
            let mut sql = String::from(
                "INSERT OR IGNORE INTO monitoring_events (id, ts, instance, source, type, data) \
                 VALUES ",
            );
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 {
                    "(?, ?, ?, ?, ?, ?)"
                } else {
                    ", (?, ?, ?, ?, ?, ?)"
                });
            }
            sql.push_str(" RETURNING id");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
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
            let rows = query.fetch_all(&mut *tx).await?;
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
                minute
                    .entry((Bucket::Minute.floor(event.ts), &event.kind, &event.source))
                    .or_default()
                    .add_event(event);
                hour.entry((Bucket::Hour.floor(event.ts), &event.kind, &event.source))
                    .or_default()
                    .add_event(event);
            }
        }
        for ((bucket, kind, source), fold) in minute {
            upsert_rollup(&mut tx, Bucket::Minute, fold.into_row(bucket, kind, source)).await?;
        }
        for ((bucket, kind, source), fold) in hour {
            upsert_rollup(&mut tx, Bucket::Hour, fold.into_row(bucket, kind, source)).await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }
}

/// Adds `add` to the stored rollup row with the same key (or creates it).
async fn upsert_rollup(
    tx: &mut Transaction<'static, Sqlite>,
    bucket: Bucket,
    add: RollupRow,
) -> StoreResult<()> {
    let select = match bucket {
        Bucket::Minute => {
            "SELECT bucket, type, source, count, error_count, latency_count, latency_sum, \
             latency_min, latency_max, latency_hist FROM metrics_1min \
             WHERE bucket = ? AND type = ? AND source = ?"
        }
        Bucket::Hour => {
            "SELECT bucket, type, source, count, error_count, latency_count, latency_sum, \
             latency_min, latency_max, latency_hist FROM metrics_1hour \
             WHERE bucket = ? AND type = ? AND source = ?"
        }
    };
    let existing = sqlx::query(select)
        .bind(add.bucket)
        .bind(&add.kind)
        .bind(&add.source)
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
                ..add
            }
        }
        None => add,
    };
    let write = match bucket {
        Bucket::Minute => {
            "INSERT OR REPLACE INTO metrics_1min (bucket, type, source, count, error_count, \
             latency_count, latency_sum, latency_min, latency_max, latency_hist) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        }
        Bucket::Hour => {
            "INSERT OR REPLACE INTO metrics_1hour (bucket, type, source, count, error_count, \
             latency_count, latency_sum, latency_min, latency_max, latency_hist) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        }
    };
    sqlx::query(write)
        .bind(merged.bucket)
        .bind(&merged.kind)
        .bind(&merged.source)
        .bind(to_i64(merged.count))
        .bind(to_i64(merged.error_count))
        .bind(to_i64(merged.latency_count))
        .bind(merged.latency_sum)
        .bind(merged.latency_min)
        .bind(merged.latency_max)
        .bind(merged.latency_hist.to_string())
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
        Box::pin(async move { Ok(MIGRATOR.run(&self.pool).await?) })
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
            let mut tx = self.pool.begin().await?;
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
                    "SELECT bucket, type, source, count, error_count, latency_count, \
                     latency_sum, latency_min, latency_max, latency_hist FROM metrics_1min \
                     WHERE bucket >= ? AND bucket < ? AND (? IS NULL OR type = ?) \
                     ORDER BY bucket, type, source"
                }
                Bucket::Hour => {
                    "SELECT bucket, type, source, count, error_count, latency_count, \
                     latency_sum, latency_min, latency_max, latency_hist FROM metrics_1hour \
                     WHERE bucket >= ? AND bucket < ? AND (? IS NULL OR type = ?) \
                     ORDER BY bucket, type, source"
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
