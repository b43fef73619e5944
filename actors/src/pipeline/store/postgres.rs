//! The PostgreSQL event store (including Supabase's). Tables live in schema `monitoring`
//! (see `migrations/postgres`).
//!
//! Every batch is one call of `monitoring.ingest_prefolded` (one round trip, one
//! transaction). The events are bound as parallel typed arrays (ids, unix-ms timestamps,
//! instances, sources, types, data), so the server parses only each event's `data` as JSON.
//! The rollup fold runs here, in Rust, with the code the SQLite store uses
//! ([`Rollups`](super::model::Rollups)): the batch's per-minute and per-hour partial rows go
//! along as parallel arrays too. The function first tries a plain `INSERT` of the events
//! (no `ON CONFLICT`, no `RETURNING`); if it succeeds every event was new, so it upserts the
//! partials. On a `unique_violation` (a replayed batch, an id twice in the batch, a
//! concurrent writer storing one of these ids) it discards them and falls back to
//! `monitoring.aggregate_metrics_columns`, which inserts idempotently and folds, in SQL,
//! only the rows it actually inserted. Either way each event is counted once.
//!
//! `monitoring.aggregate_metrics(jsonb)`, the function DESIGN §6 names, takes the whole
//! batch as one JSON array and delegates to `aggregate_metrics_columns`.

use std::str::FromStr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::Value;
use sqlx::Postgres;
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;

use super::model::{
    Bucket, EventQuery, EventStore, Page, Pruned, RetentionSettings, RollupRow, Rollups,
    StoreError, StoreResult, StoreSettings, to_i64, to_u64,
};
use crate::pipeline::event::Event;

/// Migrations for this backend, embedded at compile time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Idle pooled connections are closed after this, so a dead server's sockets do not linger.
const IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// Connection pool, connected lazily.
    pool: PgPool,
}

impl PgStore {
    /// A store for `url`; connections are opened on first use.
    pub fn open(url: &str, settings: StoreSettings) -> StoreResult<Self> {
        // sqlx's parse error may quote the URL, which can hold a password: say less.
        let options = PgConnectOptions::from_str(url)
            .map_err(|_| StoreError::InvalidUrl("not a valid postgres:// URL".to_owned()))?;
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            .idle_timeout(IDLE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self { pool })
    }

    /// The underlying pool, for tests and tools.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// The select list of [`EventStore::events`].
macro_rules! event_columns {
    () => {
        "SELECT id, (extract(epoch FROM ts) * 1000)::int8 AS ts_ms, instance, source, type, \
         data FROM monitoring.monitoring_events"
    };
}
/// Whether any string in the event holds U+0000, which PostgreSQL's `jsonb` and `text`
/// refuse (SQLSTATE 22P05): one such event would otherwise poison its whole batch.
fn has_nul(event: &Event) -> bool {
    fn in_value(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(in_value),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || in_value(v)),
            _ => false,
        }
    }
    [&event.instance, &event.source, &event.kind]
        .iter()
        .any(|s| s.contains('\0'))
        || in_value(&event.data)
}

/// A copy of the event with every U+0000 replaced by U+FFFD (the replacement character).
fn without_nul(event: &Event) -> Event {
    fn clean(s: &str) -> String {
        s.replace('\0', "\u{fffd}")
    }
    fn in_value(value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(clean(s)),
            Value::Array(items) => Value::Array(items.iter().map(in_value).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (clean(k), in_value(v))).collect())
            }
            other => other.clone(),
        }
    }
    Event::from_parts(
        event.id,
        event.ts,
        clean(&event.instance),
        clean(&event.source),
        clean(&event.kind),
        in_value(&event.data),
    )
}

/// Decodes a rollup row selected with `bucket` as unix milliseconds.
fn rollup_from_row(row: &PgRow) -> StoreResult<RollupRow> {
    Ok(RollupRow {
        bucket: row.try_get("bucket_ms")?,
        kind: row.try_get("type")?,
        source: row.try_get("source")?,
        count: to_u64(row.try_get("count")?),
        error_count: to_u64(row.try_get("error_count")?),
        latency_count: to_u64(row.try_get("latency_count")?),
        latency_sum: row.try_get("latency_sum")?,
        latency_min: row.try_get("latency_min")?,
        latency_max: row.try_get("latency_max")?,
        latency_hist: row.try_get("latency_hist")?,
        model: row.try_get("model")?,
        prompt_tokens: row.try_get::<Option<i64>, _>("prompt_tokens")?.map(to_u64),
        completion_tokens: row
            .try_get::<Option<i64>, _>("completion_tokens")?
            .map(to_u64),
        cost_usd: row.try_get("cost_usd")?,
    })
}

/// Decodes a raw event row selected with `ts` as unix milliseconds.
fn event_from_row(row: &PgRow) -> StoreResult<Event> {
    Ok(Event::from_parts(
        row.try_get("id")?,
        row.try_get("ts_ms")?,
        row.try_get("instance")?,
        row.try_get("source")?,
        row.try_get("type")?,
        row.try_get("data")?,
    ))
}

/// One granularity's partial rollup rows as the parallel arrays `monitoring.ingest_prefolded`
/// takes (element i of every field is row i).
#[derive(Debug, Default)]
struct Partials<'a> {
    /// Bucket starts, unix milliseconds.
    bucket_ms: Vec<i64>,
    /// Event types.
    kinds: Vec<&'a str>,
    /// Event sources.
    sources: Vec<&'a str>,
    /// Models ([`rollup_model`](super::model::rollup_model)).
    models: Vec<&'a str>,
    /// Events.
    counts: Vec<i64>,
    /// Failed events.
    errors: Vec<i64>,
    /// Events with a latency.
    latency_counts: Vec<i64>,
    /// Sums of latencies.
    latency_sums: Vec<f64>,
    /// Smallest latencies.
    latency_mins: Vec<Option<f64>>,
    /// Largest latencies.
    latency_maxs: Vec<Option<f64>>,
    /// Sparse histograms.
    latency_hists: Vec<Json<&'a Value>>,
    /// Prompt token sums.
    prompt_tokens: Vec<Option<i64>>,
    /// Completion token sums.
    completion_tokens: Vec<Option<i64>>,
    /// Cost sums, USD.
    cost_usd: Vec<Option<f64>>,
}

impl<'a> Partials<'a> {
    /// The columns of `rows`.
    fn of(rows: &'a [RollupRow]) -> Self {
        let mut p = Self::default();
        for row in rows {
            p.bucket_ms.push(row.bucket);
            p.kinds.push(&row.kind);
            p.sources.push(&row.source);
            p.models.push(&row.model);
            p.counts.push(to_i64(row.count));
            p.errors.push(to_i64(row.error_count));
            p.latency_counts.push(to_i64(row.latency_count));
            p.latency_sums.push(row.latency_sum);
            p.latency_mins.push(row.latency_min);
            p.latency_maxs.push(row.latency_max);
            p.latency_hists.push(Json(&row.latency_hist));
            p.prompt_tokens.push(row.prompt_tokens.map(to_i64));
            p.completion_tokens.push(row.completion_tokens.map(to_i64));
            p.cost_usd.push(row.cost_usd);
        }
        p
    }

    /// Binds the fourteen arrays, in the function's parameter order.
    fn bind_to<'q>(
        self,
        query: sqlx::query::QueryScalar<'q, Postgres, i32, PgArguments>,
    ) -> sqlx::query::QueryScalar<'q, Postgres, i32, PgArguments>
    where
        'a: 'q,
    {
        query
            .bind(self.bucket_ms)
            .bind(self.kinds)
            .bind(self.sources)
            .bind(self.models)
            .bind(self.counts)
            .bind(self.errors)
            .bind(self.latency_counts)
            .bind(self.latency_sums)
            .bind(self.latency_mins)
            .bind(self.latency_maxs)
            .bind(self.latency_hists)
            .bind(self.prompt_tokens)
            .bind(self.completion_tokens)
            .bind(self.cost_usd)
    }
}

impl EventStore for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
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
            let sanitized;
            let events = if events.iter().any(|event| has_nul(event)) {
                sanitized = events
                    .iter()
                    .map(|event| Arc::new(without_nul(event)))
                    .collect::<Vec<_>>();
                sanitized.as_slice()
            } else {
                events
            };
            // Column-wise, so PostgreSQL parses only each event's `data` as JSON.
            let n = events.len();
            let mut ids = Vec::with_capacity(n);
            let mut ts_ms = Vec::with_capacity(n);
            let mut instances = Vec::with_capacity(n);
            let mut sources = Vec::with_capacity(n);
            let mut kinds = Vec::with_capacity(n);
            let mut data = Vec::with_capacity(n);
            for event in events {
                ids.push(event.id);
                ts_ms.push(event.ts);
                instances.push(event.instance.as_str());
                sources.push(event.source.as_str());
                kinds.push(event.kind.as_str());
                // Encoded once, when the journal wrote it.
                data.push(Json(event.data_raw()));
            }
            // The batch's rollups, as if every event were new; the function uses them only
            // if it was (see the module docs).
            let (minute, hour) = Rollups::of(events).into_rows();
            let query = sqlx::query_scalar(
                "SELECT monitoring.ingest_prefolded($1, $2, $3, $4, $5, $6, \
                 $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
                 $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34)",
            )
            .bind(ids)
            .bind(ts_ms)
            .bind(instances)
            .bind(sources)
            .bind(kinds)
            .bind(data);
            let query = Partials::of(&minute).bind_to(query);
            let query = Partials::of(&hour).bind_to(query);
            let inserted: i32 = query.fetch_one(&self.pool).await?;
            Ok(u64::try_from(inserted).unwrap_or(0))
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
            // One transaction: a reader never sees raw rows pruned but their rollups not.
            let mut tx = self.pool.begin().await?;
            let events = sqlx::query(
                "DELETE FROM monitoring.monitoring_events \
                 WHERE ts < timestamptz 'epoch' + $1 * interval '1 millisecond'",
            )
            .bind(cutoff(retention.raw))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let minute_rows = sqlx::query(
                "DELETE FROM monitoring.metrics_1min \
                 WHERE bucket < timestamptz 'epoch' + $1 * interval '1 millisecond'",
            )
            .bind(cutoff(retention.minute))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let hour_rows = sqlx::query(
                "DELETE FROM monitoring.metrics_1hour \
                 WHERE bucket < timestamptz 'epoch' + $1 * interval '1 millisecond'",
            )
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
                    "SELECT (extract(epoch FROM bucket) * 1000)::int8 AS bucket_ms, type, source, \
                     model, count, error_count, latency_count, latency_sum, latency_min, \
                     latency_max, latency_hist, prompt_tokens, completion_tokens, cost_usd \
                     FROM monitoring.metrics_1min \
                     WHERE bucket >= timestamptz 'epoch' + $1 * interval '1 millisecond' \
                       AND bucket < timestamptz 'epoch' + $2 * interval '1 millisecond' \
                       AND ($3::text IS NULL OR type = $3) \
                     ORDER BY bucket, type, source, model"
                }
                Bucket::Hour => {
                    "SELECT (extract(epoch FROM bucket) * 1000)::int8 AS bucket_ms, type, source, \
                     model, count, error_count, latency_count, latency_sum, latency_min, \
                     latency_max, latency_hist, prompt_tokens, completion_tokens, cost_usd \
                     FROM monitoring.metrics_1hour \
                     WHERE bucket >= timestamptz 'epoch' + $1 * interval '1 millisecond' \
                       AND bucket < timestamptz 'epoch' + $2 * interval '1 millisecond' \
                       AND ($3::text IS NULL OR type = $3) \
                     ORDER BY bucket, type, source, model"
                }
            };
            // timestamptz tops out in year 294276; keep `until` inside it.
            let until_ms = until_ms.min(MAX_TIMESTAMP_MS);
            let since_ms = since_ms.clamp(MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS);
            let rows = sqlx::query(sql)
                .bind(since_ms)
                .bind(until_ms)
                .bind(kind)
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(rollup_from_row).collect()
        })
    }

    fn events<'a>(&'a self, query: &'a EventQuery) -> BoxFuture<'a, StoreResult<Page>> {
        Box::pin(async move {
            let limit = query.effective_limit();
            // One static statement per filter combination: a prepared statement with
            // `$1 IS NULL OR …` would get a generic plan that cannot use the indexes.
            let sql = match (query.kind.is_some(), query.before.is_some()) {
                (false, false) => concat!(event_columns!(), " ORDER BY id DESC LIMIT $1"),
                (true, false) => concat!(
                    event_columns!(),
                    " WHERE type = $1 ORDER BY id DESC LIMIT $2"
                ),
                (false, true) => {
                    concat!(event_columns!(), " WHERE id < $1 ORDER BY id DESC LIMIT $2")
                }
                (true, true) => concat!(
                    event_columns!(),
                    " WHERE type = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                ),
            };
            let mut q = sqlx::query(sql);
            if let Some(kind) = &query.kind {
                q = q.bind(kind.as_str());
            }
            if let Some(before) = query.before {
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

/// A safe upper bound for timestamps passed to PostgreSQL (year 9999).
const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_000;
/// A safe lower bound for timestamps passed to PostgreSQL (year 1).
const MIN_TIMESTAMP_MS: i64 = -62_135_596_800_000;
