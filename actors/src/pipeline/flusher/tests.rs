#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use crate::pipeline::store::{
    Bucket, EventQuery, Page, Pruned, RetentionSettings, RollupRow, StoreResult,
};
use crate::policy::breaker::BreakerSettings;
use crate::policy::retry::RetryPolicy;
use futures_util::future::BoxFuture;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

/// An in-memory store that can be switched off.
#[derive(Default)]
struct FakeStore {
    down: AtomicBool,
    rows: Mutex<BTreeMap<uuid::Uuid, Event>>,
    calls: AtomicU64,
}

impl FakeStore {
    fn check(&self) -> StoreResult<()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Database(sqlx::Error::PoolTimedOut))
        } else {
            Ok(())
        }
    }
}

impl EventStore for FakeStore {
    fn backend(&self) -> &'static str {
        "fake"
    }
    fn migrate(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async { Ok(()) })
    }
    fn ping(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async { self.check() })
    }
    fn insert_batch<'a>(&'a self, events: &'a [Arc<Event>]) -> BoxFuture<'a, StoreResult<u64>> {
        Box::pin(async move {
            self.check()?;
            if events.iter().any(|e| e.data.get("poison").is_some()) {
                return Err(StoreError::Database(sqlx::Error::Encode("poison".into())));
            }
            let mut rows = self.rows.lock().unwrap();
            let mut n = 0;
            for e in events {
                if rows.insert(e.id, Event::clone(e)).is_none() {
                    n += 1;
                }
            }
            Ok(n)
        })
    }
    fn prune(&self, _: i64, _: RetentionSettings) -> BoxFuture<'_, StoreResult<Pruned>> {
        Box::pin(async { Ok(Pruned::default()) })
    }
    fn rollups<'a>(
        &'a self,
        _: Bucket,
        _: i64,
        _: i64,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, StoreResult<Vec<RollupRow>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn events<'a>(&'a self, _: &'a EventQuery) -> BoxFuture<'a, StoreResult<Page>> {
        Box::pin(async {
            Ok(Page {
                events: Vec::new(),
                next_cursor: None,
            })
        })
    }
}

fn settings(dir: &std::path::Path) -> PipelineSettings {
    PipelineSettings {
        flush_interval: Duration::from_millis(20),
        retry: RetryPolicy::new(Duration::from_millis(5), Duration::from_millis(20)),
        breaker: BreakerSettings {
            failure_threshold: 2,
            cool_down: Duration::from_millis(50),
        },
        ..PipelineSettings::new(dir.join("spill"))
    }
}

#[tokio::test]
async fn a_poison_event_is_dropped_alone() {
    let dir = std::env::temp_dir().join(format!("exai-mb-{}", uuid::Uuid::new_v4()));
    let store = Arc::new(FakeStore::default());
    let recorder = Recorder::new("t", 100);
    let pipeline = MetricsPipeline::new(
        settings(&dir),
        store.clone(),
        recorder.clone(),
        HealthBoard::new(),
    )
    .unwrap();
    for n in 0..10 {
        recorder.record("s", "x", json!({ "n": n }));
    }
    recorder.record("s", "x", json!({ "poison": true }));
    recorder.record("s", "x", json!({ "n": 10 }));
    assert_eq!(pipeline.flush().await.unwrap(), 11);
    let stats = pipeline.stats();
    assert_eq!(
        (stats.rejected, stats.buffered, stats.consecutive_failures),
        (1, 0, 0)
    );
    assert_eq!(store.rows.lock().unwrap().len(), 11);
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn confirmed_segments_are_deleted_so_the_journal_stays_small() {
    let dir = std::env::temp_dir().join(format!("exai-mb-{}", uuid::Uuid::new_v4()));
    let store = Arc::new(FakeStore::default());
    let recorder = Recorder::new("t", 10_000);
    let mut settings = settings(&dir);
    settings.journal.segment_bytes = 2048;
    settings.journal.shards = 2;
    let pipeline = MetricsPipeline::new(
        settings,
        store.clone(),
        recorder.clone(),
        HealthBoard::new(),
    )
    .unwrap();
    for round in 0..20 {
        for n in 0..50 {
            recorder.record("s", "x", json!({ "n": round * 50 + n }));
        }
        pipeline.flush().await.unwrap();
    }
    let stats = pipeline.stats();
    assert_eq!(store.rows.lock().unwrap().len(), 1000);
    assert!(
        stats.journal_segments <= 2 && stats.journal_bytes <= 2 * 2048 + 512,
        "only the open segments remain: {stats:?}"
    );
    assert_eq!((stats.spilled_bytes, stats.buffered), (0, 0));
    assert!(dir.join("spill/checkpoint").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn outage_spills_and_recovery_stores_everything_once() {
    let dir = std::env::temp_dir().join(format!("exai-mb-{}", uuid::Uuid::new_v4()));
    let store = Arc::new(FakeStore::default());
    let recorder = Recorder::new("t", 20);
    let health = HealthBoard::new();
    let pipeline = MetricsPipeline::new(
        settings(&dir),
        store.clone(),
        recorder.clone(),
        health.clone(),
    )
    .unwrap();
    let shared = pipeline.shared.clone();
    store.down.store(true, Ordering::SeqCst);
    for n in 0..200 {
        recorder.record("s", "x", json!({ "n": n }));
        if n % 10 == 0 {
            shared.step().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(recorder.queued() <= 20);
    }
    let stats = pipeline.stats();
    assert_eq!(stats.breaker, BreakerState::Open, "{stats:?}");
    assert!(stats.spilled_bytes > 0);
    assert_eq!(
        health.snapshot().components["pipeline"].status,
        Status::Degraded
    );
    assert!(matches!(
        pipeline.flush().await,
        Err(PipelineError::StoreUnavailable { .. })
    ));
    store.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(60)).await;
    shared.step().await;
    pipeline.flush().await.unwrap();
    let stats = pipeline.stats();
    assert_eq!(stats.breaker, BreakerState::Closed);
    assert_eq!(stats.spilled_bytes, 0);
    assert_eq!(stats.dropped, 0);
    let rows = store.rows.lock().unwrap();
    let ns: std::collections::BTreeSet<i64> = rows
        .values()
        .filter_map(|e| e.data.get("n").and_then(serde_json::Value::as_i64))
        .collect();
    assert_eq!(ns.len(), 200, "every recorded event stored once");
    let kinds: Vec<&str> = rows.values().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"breaker.opened") && kinds.contains(&"breaker.closed"));
    drop(rows);
    assert_eq!(health.snapshot().components["pipeline"].status, Status::Ok);
    std::fs::remove_dir_all(dir).unwrap();
}
