//! The metrics pipeline end to end (issue 4): recorder → metrics buffer → SQLite and
//! PostgreSQL: exactly once, rollups, history queries, both write paths, retention and the
//! flush cost measurement. Outages, `kill -9` and restarts are in [`crate::pipeline_faults`],
//! which shares the helpers below.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Actor as _;
use exai_actors::health::HealthBoard;
use exai_actors::pipeline::event::Event;
use exai_actors::pipeline::flusher::{Flush, MetricsBuffer, MetricsPipeline, PipelineSettings};
use exai_actors::pipeline::histogram::{Histogram, RELATIVE_ERROR};
use exai_actors::pipeline::recorder::Recorder;
use exai_actors::pipeline::store::{
    Bucket, EventQuery, EventStore, RollupRow, StoreError, open_store, rollups_of, shared_batch,
};
use exai_actors::policy::breaker::BreakerSettings;
use exai_actors::policy::retry::RetryPolicy;
use exai_actors::supervisor::{Slot, Supervisor, SupervisorSettings};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestDb, eventually};

/// Selects the child mode of [`kill_child_spiller`] and names its journal directory.
pub const CHILD_ENV: &str = "EXAI_TEST_PIPELINE_CHILD_JOURNAL";
/// The event type the tests record, so breaker events can be told apart.
pub const TEST_KIND: &str = "test.event";

// ---------------------------------------------------------------------------------------
// Helpers.

/// Fast pipeline settings with the journal under `dir`.
pub fn fast_settings(dir: &Path) -> PipelineSettings {
    PipelineSettings {
        batch_size: 20,
        flush_interval: Duration::from_millis(20),
        retry: RetryPolicy::new(Duration::from_millis(10), Duration::from_millis(100)),
        breaker: BreakerSettings {
            failure_threshold: 3,
            cool_down: Duration::from_millis(200),
        },
        ..PipelineSettings::new(dir.join("spill"))
    }
}

/// Quick liveness checks and restarts.
fn fast_supervisor() -> SupervisorSettings {
    SupervisorSettings {
        check_interval: Duration::from_millis(20),
        ping_timeout: Duration::from_millis(300),
        backoff: RetryPolicy::new(Duration::from_millis(10), Duration::from_millis(50)),
        ..SupervisorSettings::default()
    }
}

/// A varied event: three types, three sources, some failures, some without latency.
pub fn sample(n: u64, ts: i64) -> Event {
    let kinds = [TEST_KIND, "provider.request", "cache.hit"];
    let sources = ["kimi", "glm", "cache"];
    let mut data = json!({ "n": n, "ok": !n.is_multiple_of(9) });
    if !n.is_multiple_of(5) {
        data["latency_ms"] = json!((n % 397) as f64 * 1.7 + 0.25);
    }
    let mut event = Event::new(
        "test",
        sources[(n % 3) as usize],
        kinds[((n / 3) % 3) as usize],
        data,
    );
    event.ts = ts;
    event
}

/// Every raw event in the store, newest first, read through the paginated API.
pub async fn all_events(store: &dyn EventStore, kind: Option<&str>) -> Vec<Event> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .events(&EventQuery {
                kind: kind.map(str::to_owned),
                before,
                limit: Some(1000),
            })
            .await
            .unwrap();
        out.extend(page.events);
        match page.next_cursor {
            Some(cursor) => before = Some(cursor.parse::<Uuid>().unwrap()),
            None => return out,
        }
    }
}

/// Asserts stored rollups equal the aggregates computed directly from the raw rows.
pub async fn assert_rollups_match_raw(store: &dyn EventStore) {
    let raw = all_events(store, None).await;
    for bucket in [Bucket::Minute, Bucket::Hour] {
        let key = |r: &RollupRow| (r.bucket, r.kind.clone(), r.source.clone());
        let mut stored = store
            .rollups(bucket, i64::MIN / 2, i64::MAX, None)
            .await
            .unwrap();
        let mut expected = rollups_of(&raw, bucket);
        stored.sort_by_key(key);
        expected.sort_by_key(key);
        assert_eq!(stored.len(), expected.len(), "{bucket:?} rollup rows");
        for (s, e) in stored.iter().zip(&expected) {
            assert_eq!(key(s), key(e));
            assert_eq!(
                (s.count, s.error_count, s.latency_count),
                (e.count, e.error_count, e.latency_count),
                "{bucket:?} {:?}",
                key(s)
            );
            assert!((s.latency_sum - e.latency_sum).abs() <= 1e-6 * e.latency_sum.abs().max(1.0));
            assert_eq!(
                (s.latency_min, s.latency_max),
                (e.latency_min, e.latency_max)
            );
            assert_eq!(
                Histogram::from_json(&s.latency_hist),
                Histogram::from_json(&e.latency_hist),
                "{bucket:?} histogram {:?}",
                key(s)
            );
        }
    }
}

/// Starts a supervisor with the pipeline's flusher as its only child.
pub fn start_flusher(
    pipeline: &MetricsPipeline,
    health: &HealthBoard,
    recorder: &Recorder,
) -> (actix::Addr<Supervisor>, Slot<MetricsBuffer>) {
    let (spec, slot) = pipeline.child_spec();
    let sup = Supervisor::new(
        fast_supervisor(),
        vec![spec],
        health.clone(),
        recorder.clone(),
    )
    .start();
    (sup, slot)
}

/// Sends [`Flush`] through the supervised actor, retrying while it is being (re)started.
pub async fn flush(slot: &Slot<MetricsBuffer>) -> u64 {
    eventually(Duration::from_secs(10), "a successful Flush", || async {
        let addr = slot.get()?;
        addr.send(Flush).await.ok()?.ok()
    })
    .await
}

/// The nearest-rank quantile of `sorted`.
fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ---------------------------------------------------------------------------------------
// Exactly once, rollups, re-delivery and history, on both backends.

/// Records `N` events (spread over three hours) through the real flusher, then checks the
/// store: each event once, rollups equal to raw aggregates, re-delivery harmless, history
/// queries correct.
async fn exactly_once_rollups_and_history(store: Arc<dyn EventStore>) {
    const N: u64 = 3000;
    store.migrate().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("test", 10_000);
    let health = HealthBoard::new();
    let pipeline = MetricsPipeline::new(
        fast_settings(dir.path()),
        store.clone(),
        recorder.clone(),
        health.clone(),
    )
    .unwrap();
    let (_sup, slot) = start_flusher(&pipeline, &health, &recorder);

    let now = exai_actors::pipeline::store::now_ms();
    let mut recorded = BTreeMap::new();
    for n in 0..N {
        // Spread over the last three hours, several events per minute bucket.
        let event = sample(n, now - (n as i64 * 3_600) % (3 * 3_600_000));
        recorded.insert(event.id, event.clone());
        recorder.record_event(event);
    }
    flush(&slot).await;

    // Each recorded event present exactly once.
    let stored = all_events(store.as_ref(), None).await;
    assert_eq!(stored.len() as u64, N);
    let ids: BTreeSet<Uuid> = stored.iter().map(|e| e.id).collect();
    assert_eq!(ids.len() as u64, N, "no duplicates");
    for event in &stored {
        assert_eq!(recorded.get(&event.id), Some(event), "stored as recorded");
    }
    assert_rollups_match_raw(store.as_ref()).await;

    // Re-delivering a batch (a retry after a lost acknowledgement) changes no count.
    let mut again: Vec<Event> = stored.iter().take(200).cloned().collect();
    let fresh = sample(N, now);
    again.push(fresh.clone());
    assert_eq!(
        store.insert_batch(&shared_batch(&again)).await.unwrap(),
        1,
        "only the new event is new"
    );
    assert_eq!(store.insert_batch(&shared_batch(&again)).await.unwrap(), 0);
    recorded.insert(fresh.id, fresh);
    // The same id twice within one batch is stored and counted once.
    let twice = sample(N + 1, now);
    assert_eq!(
        store
            .insert_batch(&shared_batch(&[twice.clone(), twice.clone()]))
            .await
            .unwrap(),
        1
    );
    recorded.insert(twice.id, twice);
    assert_eq!(all_events(store.as_ref(), None).await.len() as u64, N + 2);
    assert_rollups_match_raw(store.as_ref()).await;

    // History: summary per type and source, against the raw events.
    let raw: Vec<&Event> = recorded.values().collect();
    let summary = store.summary(Duration::from_secs(4 * 3600)).await.unwrap();
    let mut groups: BTreeMap<(String, String), Vec<&Event>> = BTreeMap::new();
    for e in &raw {
        groups
            .entry((e.kind.clone(), e.source.clone()))
            .or_default()
            .push(e);
    }
    assert_eq!(summary.rows.len(), groups.len());
    for row in &summary.rows {
        let events = &groups[&(row.kind.clone(), row.source.clone())];
        assert_eq!(row.count, events.len() as u64);
        assert_eq!(row.errors, events.iter().filter(|e| !e.ok()).count() as u64);
        let mut latencies: Vec<f64> = events.iter().filter_map(|e| e.latency_ms()).collect();
        latencies.sort_by(f64::total_cmp);
        for (q, got) in [(0.5, row.p50_ms), (0.95, row.p95_ms), (0.99, row.p99_ms)] {
            let want = exact_quantile(&latencies, q);
            let got = got.unwrap();
            assert!(
                (got - want).abs() <= want * RELATIVE_ERROR + 1e-9,
                "p{q} of {}/{}: {got} vs exact {want}",
                row.kind,
                row.source
            );
        }
        assert_eq!(row.latency_max_ms, latencies.last().copied());
    }

    // History: time series per bucket, for one type.
    for bucket in [Bucket::Minute, Bucket::Hour] {
        let points = store
            .timeseries(bucket, now - 4 * 3_600_000, now + 60_000, Some(TEST_KIND))
            .await
            .unwrap();
        let mut want: BTreeMap<i64, u64> = BTreeMap::new();
        for e in raw.iter().filter(|e| e.kind == TEST_KIND) {
            *want.entry(bucket.floor(e.ts)).or_default() += 1;
        }
        let got: BTreeMap<i64, u64> = points.iter().map(|p| (p.ts, p.count)).collect();
        assert_eq!(got, want, "{bucket:?} series");
    }
    let bad = store.timeseries(Bucket::Minute, now, now - 1, None).await;
    assert!(matches!(bad, Err(StoreError::InvalidQuery(m)) if m.starts_with("since")));
    let bad = store.timeseries(Bucket::Minute, 0, now, None).await;
    assert!(matches!(bad, Err(StoreError::InvalidQuery(m)) if m.starts_with("since")));

    // History: keyset pagination with a type filter, newest first, no gaps or repeats.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .events(&EventQuery {
                kind: Some("cache.hit".to_owned()),
                before,
                limit: Some(97),
            })
            .await
            .unwrap();
        assert!(page.events.len() <= 97);
        seen.extend(page.events.iter().map(|e| {
            assert_eq!(e.kind, "cache.hit");
            e.id
        }));
        match page.next_cursor {
            Some(c) => before = Some(c.parse().unwrap()),
            None => break,
        }
    }
    let mut want: Vec<Uuid> = raw
        .iter()
        .filter(|e| e.kind == "cache.hit")
        .map(|e| e.id)
        .collect();
    want.sort();
    want.reverse();
    assert_eq!(seen, want);
    let capped = store
        .events(&EventQuery {
            limit: Some(1_000_000),
            ..EventQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(capped.events.len(), 1000, "limit is capped");
}

#[actix_rt::test]
async fn sqlite_stores_every_event_once_with_exact_rollups_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("nested/dir/exai.db").display()
    );
    let store = open_store(&url).unwrap();
    assert_eq!(store.backend(), "sqlite");
    exactly_once_rollups_and_history(store).await;
}

#[actix_rt::test]
async fn postgres_stores_every_event_once_with_exact_rollups_and_history() {
    let db = TestDb::create().await;
    let store = open_store(&db.url).unwrap();
    assert_eq!(store.backend(), "postgres");
    exactly_once_rollups_and_history(store.clone()).await;
    // Migrations are idempotent (start-up and `exai migrate` both run them).
    store.migrate().await.unwrap();
}

/// Asserts two stores' rollups of one granularity are equal row by row: exact counts,
/// min, max and histogram; sums up to float rounding (each store adds in its own order).
fn assert_same_rollups(left: &[RollupRow], right: &[RollupRow], what: &str) {
    let key = |r: &RollupRow| (r.bucket, r.kind.clone(), r.source.clone());
    assert_eq!(
        left.iter().map(key).collect::<Vec<_>>(),
        right.iter().map(key).collect::<Vec<_>>(),
        "{what}: rollup keys"
    );
    for (l, r) in left.iter().zip(right) {
        assert_eq!(
            (l.count, l.error_count, l.latency_count),
            (r.count, r.error_count, r.latency_count),
            "{what} {:?}",
            key(l)
        );
        assert_eq!(
            (l.latency_min, l.latency_max),
            (r.latency_min, r.latency_max),
            "{what} {:?}",
            key(l)
        );
        assert!(
            (l.latency_sum - r.latency_sum).abs() <= 1e-9 * r.latency_sum.abs().max(1.0),
            "{what} {:?}: latency_sum {} vs {}",
            key(l),
            l.latency_sum,
            r.latency_sum
        );
        assert_eq!(
            Histogram::from_json(&l.latency_hist),
            Histogram::from_json(&r.latency_hist),
            "{what} {:?}: histogram",
            key(l)
        );
    }
}

/// The PostgreSQL write path (typed arrays and Rust-folded partials into
/// `ingest_prefolded`, falling back to `aggregate_metrics_columns`), the JSON
/// entry point DESIGN §6 names (`aggregate_metrics(jsonb)`, called directly) and the
/// SQLite store, fed the same batches with retries and in-batch duplicates: the same
/// inserted counts, the same raw rows, and identical rollups (each event counted once).
/// Fresh batches take `ingest_prefolded`'s plain-INSERT fast path; retries and duplicates
/// fall back to the ON CONFLICT path and its SQL fold, so both are covered.
#[actix_rt::test]
async fn postgres_write_paths_agree_with_each_other_and_with_sqlite() {
    use exai_actors::pipeline::store::sqlx;
    use exai_actors::pipeline::store::sqlx::types::Json;

    let columns_db = TestDb::create().await;
    let columns = open_store(&columns_db.url).unwrap();
    columns.migrate().await.unwrap();
    let json_db = TestDb::create().await;
    let json_store = open_store(&json_db.url).unwrap();
    json_store.migrate().await.unwrap();
    let json_pool = sqlx::PgPool::connect(&json_db.url).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = open_store(&format!(
        "sqlite://{}",
        dir.path().join("exai.db").display()
    ))
    .unwrap();
    sqlite.migrate().await.unwrap();

    // 900 varied events over three hours (many per minute), plus the awkward cases: a
    // latency that is a string (not counted), a sub-microsecond one (bucket 0), an `ok`
    // that is not a boolean, empty data, and a latency past the last bucket.
    let now = exai_actors::pipeline::store::now_ms();
    let mut events: Vec<Event> = (0..900)
        .map(|n| sample(n, now - (n as i64 * 11_987) % (3 * 3_600_000)))
        .collect();
    let odd = [
        json!({ "ok": false, "latency_ms": "12.5" }),
        json!({ "ok": true, "latency_ms": 0.0004 }),
        json!({ "ok": "false", "latency_ms": 3 }),
        json!({}),
        json!({ "ok": false, "latency_ms": 1e15 + 0.5 }),
    ];
    for (n, data) in odd.into_iter().enumerate() {
        let mut e = Event::new("test", "odd", TEST_KIND, data);
        e.ts = now - n as i64 * 61_000;
        events.push(e);
    }

    // Fresh batches, then retries: a whole batch again, a batch overlapping two earlier
    // ones with new events mixed in, and the same id twice within one batch.
    let (first, rest) = events.split_at(400);
    let (second, fresh) = rest.split_at(400);
    let mut overlap: Vec<Event> = first[350..].to_vec();
    overlap.extend_from_slice(&fresh[..50]);
    overlap.extend_from_slice(&second[..10]);
    let mut twice: Vec<Event> = fresh[50..].to_vec();
    twice.push(fresh[60].clone());
    twice.insert(0, fresh[50].clone());
    let batches: [(&[Event], u64); 6] = [
        (first, 400),
        (second, 400),
        (first, 0),
        (&overlap, 50),
        (&twice, fresh.len() as u64 - 50),
        (&twice, 0),
    ];
    for (batch, new) in batches {
        assert_eq!(
            columns.insert_batch(&shared_batch(batch)).await.unwrap(),
            new,
            "columns path"
        );
        let via_json: i32 = sqlx::query_scalar("SELECT monitoring.aggregate_metrics($1)")
            .bind(Json(batch))
            .fetch_one(&json_pool)
            .await
            .unwrap();
        assert_eq!(via_json as u64, new, "aggregate_metrics(jsonb)");
        assert_eq!(
            sqlite.insert_batch(&shared_batch(batch)).await.unwrap(),
            new,
            "sqlite"
        );
    }

    let mut want = events.clone();
    want.sort_by_key(|e| std::cmp::Reverse(e.id));
    for store in [&columns, &json_store, &sqlite] {
        assert_eq!(
            all_events(store.as_ref(), None).await,
            want,
            "{} raw rows",
            store.backend()
        );
    }
    for bucket in [Bucket::Minute, Bucket::Hour] {
        let read = |store: &Arc<dyn EventStore>| {
            let store = store.clone();
            async move {
                store
                    .rollups(bucket, i64::MIN / 2, i64::MAX, None)
                    .await
                    .unwrap()
            }
        };
        let expected = rollups_of(&events, bucket);
        let from_columns = read(&columns).await;
        assert_same_rollups(
            &from_columns,
            &expected,
            &format!("{bucket:?} columns vs events"),
        );
        assert_same_rollups(
            &read(&json_store).await,
            &from_columns,
            &format!("{bucket:?} jsonb vs columns"),
        );
        assert_same_rollups(
            &read(&sqlite).await,
            &from_columns,
            &format!("{bucket:?} sqlite vs columns"),
        );
    }
    // The odd events: only the numeric latencies count, and only `ok: false` is an error.
    let odd_rows: Vec<RollupRow> = columns
        .rollups(Bucket::Hour, i64::MIN / 2, i64::MAX, Some(TEST_KIND))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.source == "odd")
        .collect();
    let total = |f: fn(&RollupRow) -> u64| odd_rows.iter().map(f).sum::<u64>();
    assert_eq!(total(|r| r.count), 5);
    assert_eq!(total(|r| r.error_count), 2);
    assert_eq!(total(|r| r.latency_count), 3);
}

/// Two writers storing overlapping batches at the same time (two instances, or a retry
/// racing the original): whichever inserts an event first counts it, the other skips it,
/// and the rollups still equal the raw rows.
#[actix_rt::test]
async fn postgres_concurrent_overlapping_batches_count_each_event_once() {
    let db = TestDb::create().await;
    let store = open_store(&db.url).unwrap();
    store.migrate().await.unwrap();
    let other = open_store(&db.url).unwrap();
    let now = exai_actors::pipeline::store::now_ms();
    for round in 0..5u64 {
        let events: Vec<Event> = (0..900)
            .map(|n| sample(round * 1000 + n, now - (n as i64 * 7_001) % 3_600_000))
            .collect();
        let (left, right) = (&events[..600], &events[300..]);
        let (a, b) = tokio::join!(
            async { store.insert_batch(&shared_batch(left)).await.unwrap() },
            async { other.insert_batch(&shared_batch(right)).await.unwrap() },
        );
        assert_eq!(
            a + b,
            900,
            "round {round}: each event inserted by exactly one writer"
        );
    }
    assert_eq!(all_events(store.as_ref(), None).await.len(), 4500);
    assert_rollups_match_raw(store.as_ref()).await;
}

/// A `request` event (the one event per client call): a model for most, tokens and cost
/// for some, so the rollups' model dimension and nullable sums are exercised.
fn request_sample(n: u64, ts: i64) -> Event {
    let mut data =
        json!({ "ok": !n.is_multiple_of(7), "latency_ms": (n % 211) as f64 * 2.3 + 0.5 });
    if !n.is_multiple_of(4) {
        data["resolved_model"] = json!(["glm-4.6", "kimi-k2"][(n % 2) as usize]);
    }
    if !n.is_multiple_of(3) {
        data["prompt_tokens"] = json!(n % 50 + 1);
        data["completion_tokens"] = json!(n % 17);
    }
    if n.is_multiple_of(5) {
        data["cost_usd"] = json!((n % 13) as f64 * 0.000_25);
    }
    let mut event = Event::new("test", ["kimi", "glm"][(n % 2) as usize], "request", data);
    event.ts = ts;
    event
}

/// Asserts the store's rollups equal [`rollups_of`] its raw rows, every column: key with
/// model, counts, min, max, histogram, tokens; sums up to float rounding.
async fn assert_rollups_exact(store: &dyn EventStore, what: &str) {
    let raw = all_events(store, None).await;
    for bucket in [Bucket::Minute, Bucket::Hour] {
        let stored = store
            .rollups(bucket, i64::MIN / 2, i64::MAX, None)
            .await
            .unwrap();
        let expected = rollups_of(&raw, bucket);
        let key = |r: &RollupRow| (r.bucket, r.kind.clone(), r.source.clone(), r.model.clone());
        assert_eq!(
            stored.iter().map(key).collect::<Vec<_>>(),
            expected.iter().map(key).collect::<Vec<_>>(),
            "{what} {bucket:?}: keys"
        );
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        for (s, e) in stored.iter().zip(&expected) {
            let at = format!("{what} {bucket:?} {:?}", key(s));
            assert_eq!(
                (s.count, s.error_count, s.latency_count),
                (e.count, e.error_count, e.latency_count),
                "{at}"
            );
            assert_eq!(
                (s.latency_min, s.latency_max),
                (e.latency_min, e.latency_max),
                "{at}"
            );
            assert!(close(s.latency_sum, e.latency_sum), "{at}: latency_sum");
            assert_eq!(
                Histogram::from_json(&s.latency_hist),
                Histogram::from_json(&e.latency_hist),
                "{at}: histogram"
            );
            assert_eq!(
                (s.prompt_tokens, s.completion_tokens),
                (e.prompt_tokens, e.completion_tokens),
                "{at}: tokens"
            );
            match (s.cost_usd, e.cost_usd) {
                (Some(a), Some(b)) => assert!(close(a, b), "{at}: cost {a} vs {b}"),
                (a, b) => assert_eq!(a, b, "{at}: cost"),
            }
        }
    }
}

/// `monitoring.ingest_prefolded`'s two paths: a fresh batch takes the plain INSERT and
/// upserts the partials folded in Rust; a replay, a batch with one stored id among new ones
/// and a batch with an id twice fall back to the SQL fold of only the rows inserted. After
/// every step the rollups equal folding the raw rows, model, tokens and cost included.
#[actix_rt::test]
async fn postgres_prefolded_fast_path_and_replay_paths_equal_the_fold_of_raw_rows() {
    let db = TestDb::create().await;
    let store = open_store(&db.url).unwrap();
    store.migrate().await.unwrap();
    let now = exai_actors::pipeline::store::now_ms();
    // Three hours of mixed events, several per minute, in four batches.
    let events: Vec<Event> = (0..1200u64)
        .map(|n| {
            let ts = now - (n as i64 * 9_013) % (3 * 3_600_000);
            if n.is_multiple_of(2) {
                request_sample(n, ts)
            } else {
                sample(n, ts)
            }
        })
        .collect();
    let (a, rest) = events.split_at(300);
    let (b, rest) = rest.split_at(300);
    let (c, d) = rest.split_at(300);

    // Fresh: the fast path.
    assert_eq!(store.insert_batch(&shared_batch(a)).await.unwrap(), 300);
    assert_rollups_exact(store.as_ref(), "fresh").await;
    // The same batch again: nothing new, nothing counted twice.
    assert_eq!(store.insert_batch(&shared_batch(a)).await.unwrap(), 0);
    assert_rollups_exact(store.as_ref(), "replay").await;
    // One already-stored id among new ones (in the middle, so the fast path has inserted
    // rows before it meets the conflict).
    let mut one_stored = b.to_vec();
    one_stored.insert(150, a[7].clone());
    assert_eq!(
        store
            .insert_batch(&shared_batch(&one_stored))
            .await
            .unwrap(),
        300
    );
    assert_rollups_exact(store.as_ref(), "one stored id").await;
    // An id twice within one fresh batch: stored and counted once.
    let mut twice = c.to_vec();
    twice.push(c[42].clone());
    assert_eq!(
        store.insert_batch(&shared_batch(&twice)).await.unwrap(),
        300
    );
    assert_rollups_exact(store.as_ref(), "id twice").await;
    // Fresh again after the fallbacks: the fast path adds to rows both paths wrote.
    assert_eq!(store.insert_batch(&shared_batch(d)).await.unwrap(), 300);
    assert_rollups_exact(store.as_ref(), "fresh after fallbacks").await;

    let mut want = events.clone();
    want.sort_by_key(|e| std::cmp::Reverse(e.id));
    assert_eq!(all_events(store.as_ref(), None).await, want);
    // The request rows really carry models, tokens and cost.
    let rows = store
        .rollups(Bucket::Hour, i64::MIN / 2, i64::MAX, Some("request"))
        .await
        .unwrap();
    assert!(rows.iter().any(|r| r.model == "glm-4.6"));
    assert!(rows.iter().any(|r| r.model.is_empty()));
    assert!(rows.iter().any(|r| r.prompt_tokens.is_some()));
    assert!(rows.iter().any(|r| r.cost_usd.is_some()));
}

#[test]
fn unknown_database_urls_are_refused() {
    assert!(matches!(
        open_store("mysql://x"),
        Err(StoreError::UnsupportedUrl)
    ));
}

// ---------------------------------------------------------------------------------------
// Flush cost against history size (figures for BENCHMARKS.md; no timed assertions).

/// Median and p95 of `rounds` flushes of `batch` fresh events.
async fn measure_flush(store: &dyn EventStore, batch: usize, rounds: usize) -> (f64, f64) {
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds + 3 {
        let events: Vec<Event> = (0..batch as u64)
            .map(|n| sample(n, exai_actors::pipeline::store::now_ms()))
            .collect();
        let started = Instant::now();
        store.insert_batch(&shared_batch(&events)).await.unwrap();
        if round >= 3 {
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    times.sort_by(f64::total_cmp);
    (exact_quantile(&times, 0.5), exact_quantile(&times, 0.95))
}

/// Grows the raw table with `rows` synthetic history rows (outside the flush path).
async fn grow_history(backend: &str, url: &str, from: u64, rows: u64) {
    use exai_actors::pipeline::store::sqlx;
    let from = i64::try_from(from).unwrap();
    let to = from + i64::try_from(rows).unwrap();
    if backend == "postgres" {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(
            "INSERT INTO monitoring.monitoring_events (id, ts, instance, source, type, data) \
             SELECT gen_random_uuid(), now() - g * interval '1 second', 'bulk', 'bulk', \
                    'bulk.row', jsonb_build_object('ok', true, 'latency_ms', g % 1000) \
             FROM generate_series($1::int8, $2::int8 - 1) AS g",
        )
        .bind(from)
        .bind(to)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("ANALYZE monitoring.monitoring_events")
            .execute(&pool)
            .await
            .unwrap();
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(
            "WITH RECURSIVE g(n) AS (SELECT ?1 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?2) \
             INSERT INTO monitoring_events (id, ts, instance, source, type, data) \
             SELECT printf('00000000-0000-4000-8000-%012d', n), \
                    CAST(strftime('%s','now') AS INTEGER) * 1000 - n * 1000, 'bulk', 'bulk', \
                    'bulk.row', json_object('ok', json('true'), 'latency_ms', n % 1000) \
             FROM g",
        )
        .bind(from)
        .bind(to)
        .execute(&pool)
        .await
        .unwrap();
    }
}

/// Prints flush latency at 10k and 1M existing rows for `store`.
async fn flush_cost(label: &str, url: &str) {
    let store = open_store(url).unwrap();
    store.migrate().await.unwrap();
    let mut report = Vec::new();
    let mut have = 0;
    for rows in [10_000u64, 1_000_000] {
        grow_history(store.backend(), url, have, rows - have).await;
        have = rows;
        for batch in [50usize, 1000] {
            let (p50, p95) = measure_flush(store.as_ref(), batch, 30).await;
            report.push(format!(
                "flush cost {label}: {rows:>9} existing rows, batch {batch:>4}: p50 {p50:.2} ms, p95 {p95:.2} ms"
            ));
        }
    }
    for line in report {
        println!("{line}");
    }
}

#[actix_rt::test]
async fn flush_cost_stays_flat_with_history_postgres() {
    let db = TestDb::create().await;
    flush_cost("postgres", &db.url).await;
}

#[actix_rt::test]
async fn flush_cost_stays_flat_with_history_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    flush_cost(
        "sqlite",
        &format!("sqlite://{}", dir.path().join("exai.db").display()),
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Retention.

/// Old rows go, recent ones stay; the flusher's retention job runs once at start.
async fn retention_prunes_old_rows(store: Arc<dyn EventStore>) {
    const DAY: i64 = 86_400_000;
    store.migrate().await.unwrap();
    let now = exai_actors::pipeline::store::now_ms();
    // Raw events: 8 days old (gone), 6 days old (kept). Rollups follow their events' age:
    // per-minute rows at 8 days stay (30-day retention), at 40 days go.
    let ages = [8 * DAY, 6 * DAY, 40 * DAY, 400 * DAY];
    let events: Vec<Event> = ages
        .iter()
        .enumerate()
        .map(|(n, age)| sample(n as u64, now - age))
        .collect();
    store.insert_batch(&shared_batch(&events)).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let recorder = Recorder::new("test", 100);
    let health = HealthBoard::new();
    let pipeline = MetricsPipeline::new(
        fast_settings(dir.path()),
        store.clone(),
        recorder.clone(),
        health.clone(),
    )
    .unwrap();
    let (_sup, _slot) = start_flusher(&pipeline, &health, &recorder);
    eventually(
        Duration::from_secs(10),
        "retention ran at start",
        || async { (all_events(store.as_ref(), None).await.len() == 1).then_some(()) },
    )
    .await;
    let kept = all_events(store.as_ref(), None).await;
    assert_eq!(kept[0].id, events[1].id, "the 6-day-old event stays");
    let minute: Vec<i64> = store
        .rollups(Bucket::Minute, i64::MIN / 2, i64::MAX, None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.bucket)
        .collect();
    assert_eq!(
        minute,
        vec![
            Bucket::Minute.floor(now - 8 * DAY),
            Bucket::Minute.floor(now - 6 * DAY)
        ],
        "per-minute rollups kept for 30 days"
    );
    let hour = store
        .rollups(Bucket::Hour, i64::MIN / 2, i64::MAX, None)
        .await
        .unwrap();
    assert_eq!(hour.len(), 3, "per-hour rollups kept for a year");
}

#[actix_rt::test]
async fn retention_prunes_old_rows_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&format!(
        "sqlite://{}",
        dir.path().join("exai.db").display()
    ))
    .unwrap();
    retention_prunes_old_rows(store).await;
}

#[actix_rt::test]
async fn retention_prunes_old_rows_postgres() {
    let db = TestDb::create().await;
    retention_prunes_old_rows(open_store(&db.url).unwrap()).await;
}
