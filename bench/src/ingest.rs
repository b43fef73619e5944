//! Scenario 3: event ingest through the store's one write path, against the raw ceiling of
//! the same database (a bare `COPY` on PostgreSQL, one prepared multi-row transaction on
//! SQLite), and flush latency with a small and a large table.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use exai_actors::pipeline::event::Event;
use exai_actors::pipeline::store::{EventStore, open_store};
use serde_json::json;

/// Figures for one backend.
#[derive(Debug, Clone)]
pub struct IngestRow {
    /// `postgres` or `sqlite`.
    pub backend: String,
    /// Events per flush call.
    pub batch: usize,
    /// Sustained events/s through `insert_batch`.
    pub store_eps: f64,
    /// Raw ceiling events/s for the same rows.
    pub raw_eps: f64,
    /// What the raw ceiling was.
    pub raw_method: String,
}

/// Flush latency at a table size.
#[derive(Debug, Clone)]
pub struct FlushRow {
    /// Backend.
    pub backend: String,
    /// Rows in the events table before measuring.
    pub existing_rows: u64,
    /// Median flush latency, µs (batch of 50).
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
}

/// Everything scenario 3 measured.
#[derive(Debug, Clone, Default)]
pub struct Ingest {
    /// Throughput rows.
    pub rows: Vec<IngestRow>,
    /// Flush-latency rows.
    pub flush: Vec<FlushRow>,
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::new(
                "bench",
                "provider",
                "provider.request",
                json!({"ok": i % 50 != 0, "latency_ms": (i % 997) as f64 * 0.37 + 0.5, "provider": "mock", "model": "bench-echo"}),
            )
        })
        .collect()
}

async fn store_eps(store: &Arc<dyn EventStore>, total: usize, batch: usize) -> anyhow::Result<f64> {
    let evs = events(total);
    let start = Instant::now();
    for chunk in evs.chunks(batch) {
        store.insert_batch(chunk).await.context("insert_batch")?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

async fn flush_latency(store: &Arc<dyn EventStore>, flushes: usize) -> anyhow::Result<(u64, u64)> {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for _ in 0..flushes {
        let batch = events(50);
        let t = Instant::now();
        store.insert_batch(&batch).await?;
        h.record((t.elapsed().as_micros() as u64).max(1))?;
    }
    Ok((h.value_at_quantile(0.5), h.value_at_quantile(0.99)))
}

/// `COPY` of the same rows into an identical, empty table.
async fn pg_copy_eps(url: &str, total: usize) -> anyhow::Result<f64> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await?;
    sqlx::query(
        "CREATE TABLE monitoring.copy_ceiling (LIKE monitoring.monitoring_events INCLUDING ALL)",
    )
    .execute(&mut c)
    .await?;
    let mut text = String::with_capacity(total * 200);
    for e in events(total) {
        let ts = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_millis(e.ts as u64),
        );
        let data = e.data.to_string().replace('\\', "\\\\");
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            e.id, ts, e.instance, e.source, e.kind, data
        ));
    }
    let start = Instant::now();
    let mut copy = c
        .copy_in_raw(
            "COPY monitoring.copy_ceiling (id, ts, instance, source, type, data) FROM STDIN",
        )
        .await?;
    copy.send(text.as_bytes()).await?;
    copy.finish().await?;
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Grows the PostgreSQL events table to `rows` rows with server-side generated data.
async fn pg_fill(url: &str, rows: u64) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await?;
    let have: (i64,) = sqlx::query_as("SELECT count(*) FROM monitoring.monitoring_events")
        .fetch_one(&mut c)
        .await?;
    let need = rows.saturating_sub(have.0 as u64);
    if need > 0 {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO monitoring.monitoring_events (id, ts, instance, source, type, data) \
             SELECT gen_random_uuid(), now() - (g * interval '1 ms'), 'fill', 'provider', 'provider.request', \
             '{{\"ok\": true, \"latency_ms\": 1.5}}'::jsonb FROM generate_series(1, {need}) g"
        )))
        .execute(&mut c)
        .await?;
        sqlx::query("ANALYZE monitoring.monitoring_events")
            .execute(&mut c)
            .await?;
    }
    Ok(())
}

/// One prepared multi-row transaction into a plain SQLite table: the ceiling for SQLite.
async fn sqlite_raw_eps(path: &Path, total: usize) -> anyhow::Result<f64> {
    use sqlx::Connection;
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS ceiling (id TEXT PRIMARY KEY, ts INTEGER, instance TEXT, source TEXT, type TEXT, data TEXT) WITHOUT ROWID")
        .execute(&mut c)
        .await?;
    let evs = events(total);
    let start = Instant::now();
    let mut tx = c.begin().await?;
    for e in &evs {
        sqlx::query("INSERT INTO ceiling VALUES (?, ?, ?, ?, ?, ?)")
            .bind(e.id.to_string())
            .bind(e.ts)
            .bind(&e.instance)
            .bind(&e.source)
            .bind(&e.kind)
            .bind(e.data.to_string())
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

async fn sqlite_fill(path: &Path, rows: u64) -> anyhow::Result<()> {
    use sqlx::Connection;
    let url = format!("sqlite://{}", path.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await?;
    let have: (i64,) = sqlx::query_as("SELECT count(*) FROM monitoring_events")
        .fetch_one(&mut c)
        .await?;
    let need = rows.saturating_sub(have.0 as u64);
    let have = have.0;
    if need > 0 {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < {need}) \
             INSERT INTO monitoring_events (id, ts, instance, source, type, data) \
             SELECT printf('00000000-0000-7000-8000-%012d', n + {have}), 1700000000000 + n + {have}, 'fill', 'provider', \
             'provider.request', '{{\"ok\": true, \"latency_ms\": 1.5}}' FROM g"
        )))
        .execute(&mut c)
        .await?;
    }
    Ok(())
}

/// Runs scenario 3 on both backends.
pub async fn run(work: &Path, quick: bool, big_rows: u64) -> anyhow::Result<Ingest> {
    let total = if quick { 20_000 } else { 200_000 };
    let flushes = if quick { 100 } else { 500 };
    let mut out = Ingest::default();

    // PostgreSQL.
    let url = crate::create_db("exai_bench_ingest").await?;
    let store = open_store(&url).context("open PostgreSQL store")?;
    store.migrate().await?;
    pg_fill(&url, 10_000).await?;
    let (p50, p99) = flush_latency(&store, flushes).await?;
    out.flush.push(FlushRow {
        backend: "postgres".into(),
        existing_rows: 10_000,
        p50_us: p50,
        p99_us: p99,
    });
    let raw = pg_copy_eps(&url, total).await?;
    for batch in [50, 1000] {
        let eps = store_eps(&store, total, batch).await?;
        out.rows.push(IngestRow {
            backend: "postgres".into(),
            batch,
            store_eps: eps,
            raw_eps: raw,
            raw_method: "COPY FROM STDIN".into(),
        });
    }
    eprintln!("[bench] filling PostgreSQL to {big_rows} rows");
    pg_fill(&url, big_rows).await?;
    let (p50, p99) = flush_latency(&store, flushes).await?;
    out.flush.push(FlushRow {
        backend: "postgres".into(),
        existing_rows: big_rows,
        p50_us: p50,
        p99_us: p99,
    });

    // SQLite.
    let db = work.join("ingest.db");
    let store = open_store(&format!("sqlite://{}", db.display())).context("open SQLite store")?;
    store.migrate().await?;
    sqlite_fill(&db, 10_000).await?;
    let (p50, p99) = flush_latency(&store, flushes).await?;
    out.flush.push(FlushRow {
        backend: "sqlite".into(),
        existing_rows: 10_000,
        p50_us: p50,
        p99_us: p99,
    });
    let raw = sqlite_raw_eps(&work.join("ceiling.db"), total).await?;
    for batch in [50, 1000] {
        let eps = store_eps(&store, total, batch).await?;
        out.rows.push(IngestRow {
            backend: "sqlite".into(),
            batch,
            store_eps: eps,
            raw_eps: raw,
            raw_method: "one prepared INSERT transaction".into(),
        });
    }
    eprintln!("[bench] filling SQLite to {big_rows} rows");
    sqlite_fill(&db, big_rows).await?;
    let (p50, p99) = flush_latency(&store, flushes).await?;
    out.flush.push(FlushRow {
        backend: "sqlite".into(),
        existing_rows: big_rows,
        p50_us: p50,
        p99_us: p99,
    });
    Ok(out)
}
