//! Scenario 3: event ingest through the store's one write path, against the raw ceiling of
//! the same database (a bare `COPY` on PostgreSQL, one prepared multi-row transaction on
//! SQLite), and flush latency with a small and a large table.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use exai_actors::pipeline::event::Event;
use exai_actors::pipeline::store::{EventStore, open_store, shared_batch};
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
            // The shape of a real `/v1` call's one `request` event (DESIGN §5).
            let ok = i % 50 != 0;
            Event::new(
                "bench",
                "v1",
                "request",
                json!({
                    "request_id": format!("bench-{i}"),
                    "surface": "v1",
                    "model": "bench-echo",
                    "resolved_model": "bench-echo",
                    "provider": "mock",
                    "stream": false,
                    "cache": "miss",
                    "ok": ok,
                    "status": if ok { 200 } else { 502 },
                    "attempts": 1,
                    "latency_ms": (i % 997) as f64 * 0.37 + 0.5,
                    "prompt_tokens": 31,
                    "completion_tokens": 96,
                    "cost_usd": 0.000_127,
                }),
            )
        })
        .collect()
}

async fn store_eps(store: &Arc<dyn EventStore>, total: usize, batch: usize) -> anyhow::Result<f64> {
    let evs = shared_batch(&events(total));
    let start = Instant::now();
    for chunk in evs.chunks(batch) {
        store.insert_batch(chunk).await.context("insert_batch")?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

async fn flush_latency(store: &Arc<dyn EventStore>, flushes: usize) -> anyhow::Result<(u64, u64)> {
    let mut h = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for _ in 0..flushes {
        let batch = shared_batch(&events(50));
        let t = Instant::now();
        store.insert_batch(&batch).await?;
        h.record((t.elapsed().as_micros() as u64).max(1))?;
    }
    Ok((h.value_at_quantile(0.5), h.value_at_quantile(0.99)))
}

/// One binary `COPY` of the same rows into an identical, empty table, in one transaction.
/// The rows are encoded before the clock starts, so this is the server's ceiling, not a
/// client's. (One `COPY` per batch is no ceiling: each `finish` stalled about 40 ms on
/// loopback TCP here, so 50-row copies measured ~1k events/s.)
async fn pg_copy_eps(url: &str, total: usize) -> anyhow::Result<f64> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(url).await?;
    sqlx::query(
        "CREATE TABLE monitoring.copy_ceiling (LIKE monitoring.monitoring_events INCLUDING ALL)",
    )
    .execute(&mut c)
    .await?;
    let payload = copy_binary(&events(total));
    let start = Instant::now();
    let mut copy = c
        .copy_in_raw(
            "COPY monitoring.copy_ceiling (id, ts, instance, source, type, data) \
             FROM STDIN (FORMAT binary)",
        )
        .await?;
    copy.send(payload.as_slice()).await?;
    copy.finish().await?;
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// PostgreSQL's binary `COPY` format for `events` (uuid, timestamptz, 3 × text, jsonb).
fn copy_binary(events: &[Event]) -> Vec<u8> {
    /// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
    const PG_EPOCH_US: i64 = 946_684_800_000_000;
    fn field(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
        out.extend_from_slice(bytes);
    }
    let mut out = Vec::with_capacity(events.len() * 400);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for e in events {
        out.extend_from_slice(&6i16.to_be_bytes());
        field(&mut out, e.id.as_bytes());
        field(&mut out, &(e.ts * 1000 - PG_EPOCH_US).to_be_bytes());
        field(&mut out, e.instance.as_bytes());
        field(&mut out, e.source.as_bytes());
        field(&mut out, e.kind.as_bytes());
        let mut jsonb = vec![1u8]; // jsonb's binary format: version 1, then the text
        jsonb.extend_from_slice(e.data.to_string().as_bytes());
        field(&mut out, &jsonb);
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
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
    // On a rusqlite connection of its own (as the store's writer thread has): sqlx's
    // per-statement hand-off to its worker thread would make this the slower of the two.
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
        let mut c = rusqlite::Connection::open(&path)?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "NORMAL")?;
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS ceiling (id TEXT PRIMARY KEY, ts INTEGER NOT NULL, \
             instance TEXT NOT NULL, source TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL)",
        )?;
        let evs = events(total);
        let start = Instant::now();
        let tx = c.transaction()?;
        {
            let mut insert = tx.prepare("INSERT INTO ceiling VALUES (?, ?, ?, ?, ?, ?)")?;
            for e in &evs {
                insert.execute(rusqlite::params![
                    e.id.to_string(),
                    e.ts,
                    e.instance,
                    e.source,
                    e.kind,
                    e.data.to_string()
                ])?;
            }
        }
        tx.commit()?;
        Ok(total as f64 / start.elapsed().as_secs_f64())
    })
    .await?
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
            raw_method: "one binary COPY FROM STDIN (one transaction)".into(),
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
            raw_method: "one prepared INSERT transaction (rusqlite)".into(),
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
