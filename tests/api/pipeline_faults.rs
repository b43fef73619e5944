//! The metrics pipeline under faults (issue 4): a PostgreSQL outage, `kill -9` while
//! spilling, supervisor restarts of the flusher, and events PostgreSQL would refuse. The
//! shared helpers are in [`crate::pipeline`].

use std::collections::BTreeSet;
use std::io::{BufRead as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use exai_actors::health::HealthBoard;
use exai_actors::pipeline::flusher::{CHILD_NAME, MetricsPipeline};
use exai_actors::pipeline::journal::{FsyncPolicy, list_segments, read_segment_file};
use exai_actors::pipeline::recorder::Recorder;
use exai_actors::pipeline::store::{StoreSettings, open_store, open_store_with};
use exai_actors::policy::breaker::BreakerState;
use exai_actors::supervisor::{Fault, InjectFaultInto};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestDb, eventually};
use crate::pipeline::{
    CHILD_ENV, TEST_KIND, all_events, assert_rollups_match_raw, fast_settings, flush, sample,
    start_flusher,
};
use crate::proxy::TcpProxy;

// ---------------------------------------------------------------------------------------
// PostgreSQL outage.

/// Records numbered events and watches the queue length.
#[derive(Default)]
struct Producer {
    /// Events recorded so far (the next `data.n`).
    n: u64,
    /// Longest queue seen right after recording.
    max_queued: usize,
}

impl Producer {
    fn record(&mut self, count: u64, recorder: &Recorder) {
        for _ in 0..count {
            recorder.record(
                "test",
                TEST_KIND,
                json!({ "n": self.n, "latency_ms": (self.n % 50) as f64 }),
            );
            self.n += 1;
            self.max_queued = self.max_queued.max(recorder.queued());
        }
    }
}

#[actix_rt::test]
async fn postgres_outage_spills_to_journal_and_delivers_everything_once() {
    let db = TestDb::create().await;
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap());
    let store = open_store_with(
        &db.url_via(proxy.addr()),
        StoreSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_millis(300),
        },
    )
    .unwrap();
    store.migrate().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    const CAPACITY: usize = 100;
    let recorder = Recorder::new("test", CAPACITY);
    let health = HealthBoard::new();
    let pipeline = MetricsPipeline::new(
        fast_settings(dir.path()),
        store.clone(),
        recorder.clone(),
        health.clone(),
    )
    .unwrap();
    let (_sup, slot) = start_flusher(&pipeline, &health, &recorder);

    let mut producer = Producer::default();
    for _ in 0..10 {
        producer.record(30, &recorder);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The database goes away mid-run while events keep coming.
    proxy.set_down(true);
    let outage_started = Instant::now();
    let mut saw_open = false;
    while outage_started.elapsed() < Duration::from_secs(20) {
        producer.record(40, &recorder);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let stats = pipeline.stats();
        if stats.breaker == BreakerState::Open && stats.spilled_bytes > 0 && producer.n > 3000 {
            saw_open = true;
            break;
        }
    }
    assert!(
        saw_open,
        "breaker opened and the journal grew: {:?}",
        pipeline.stats()
    );
    let during = pipeline.stats();
    assert!(during.spilled_bytes > 0);
    let snapshot = health.snapshot();
    assert_eq!(
        snapshot.components["pipeline"].status,
        exai_actors::health::Status::Degraded
    );
    assert_eq!(snapshot.components["store"].detail["reachable"], false);
    assert!(
        producer.max_queued <= CAPACITY,
        "memory stays within the bound: {}",
        producer.max_queued
    );

    // Back up: everything arrives exactly once.
    proxy.set_down(false);
    producer.record(500, &recorder);
    eventually(
        Duration::from_secs(20),
        "breaker closed and journal replayed",
        || async {
            let s = pipeline.stats();
            (s.breaker == BreakerState::Closed && s.spilled_bytes == 0).then_some(())
        },
    )
    .await;
    flush(&slot).await;
    assert!(
        producer.max_queued <= CAPACITY,
        "memory stays within the bound: {}",
        producer.max_queued
    );
    let stats = pipeline.stats();
    assert_eq!(stats.dropped, 0);
    assert!(stats.replayed > 0, "{stats:?}");

    let n = producer.n;
    let stored = all_events(store.as_ref(), Some(TEST_KIND)).await;
    let ns: BTreeSet<u64> = stored.iter().filter_map(|e| e.data["n"].as_u64()).collect();
    assert_eq!(stored.len() as u64, n, "each event once");
    assert_eq!(ns, (0..n).collect(), "every event arrived");
    let kinds: BTreeSet<String> = all_events(store.as_ref(), None)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains("breaker.opened") && kinds.contains("breaker.closed"),
        "{kinds:?}"
    );
    assert_rollups_match_raw(store.as_ref()).await;
    assert_eq!(
        health.snapshot().components["pipeline"].status,
        exai_actors::health::Status::Ok
    );
}

// ---------------------------------------------------------------------------------------
// kill -9 while spilling.

/// Child mode of [`kill_9_while_spilling_then_restart_replays_the_journal`]: records events
/// forever with the store unreachable, so they spill, until it is killed. A no-op unless
/// [`CHILD_ENV`] is set.
#[test]
fn kill_child_spiller() {
    let Ok(journal_dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    // A port nothing listens on: the store fails fast.
    let port = crate::helpers::free_port();
    actix_rt::System::new().block_on(async move {
        let store = open_store_with(
            &format!("postgres://postgres@127.0.0.1:{port}/none"),
            StoreSettings {
                max_connections: 1,
                acquire_timeout: Duration::from_millis(50),
            },
        )
        .unwrap();
        let recorder = Recorder::new("child", 16);
        let health = HealthBoard::new();
        let mut settings = fast_settings(Path::new("/nonexistent"));
        settings.journal.dir = journal_dir.into();
        settings.journal.fsync = FsyncPolicy::Never;
        settings.breaker.failure_threshold = 1;
        settings.breaker.cool_down = Duration::from_secs(60);
        let pipeline =
            MetricsPipeline::new(settings, store, recorder.clone(), health.clone()).unwrap();
        let (_sup, _slot) = start_flusher(&pipeline, &health, &recorder);
        let mut n = 0u64;
        let mut out = std::io::stdout();
        loop {
            for _ in 0..50 {
                recorder.record("child", TEST_KIND, json!({ "n": n }));
                n += 1;
            }
            let _ = writeln!(
                out,
                "recorded {n} spilled_bytes {}",
                pipeline.stats().spilled_bytes
            );
            let _ = out.flush();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
}

#[actix_rt::test]
async fn kill_9_while_spilling_then_restart_replays_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("spill");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "pipeline_faults::kill_child_spiller",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &journal_dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let progress = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return false };
            let mut words = line.split_whitespace();
            if words.next() != Some("recorded") {
                continue;
            }
            let n: u64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
            let bytes: u64 = words.nth(1).and_then(|w| w.parse().ok()).unwrap_or(0);
            if n >= 5000 && bytes > 0 {
                return true;
            }
        }
        false
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !progress.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap(); // SIGKILL, mid-spill
    child.wait().unwrap();
    assert!(
        progress.join().unwrap(),
        "child spilled events before being killed"
    );

    // Whatever the kill left, also tear the final record the way a crash mid-write would.
    let segments = list_segments(&journal_dir).unwrap();
    let last = &segments.last().unwrap().path;
    let mut file = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    file.write_all(&500u32.to_le_bytes()).unwrap();
    file.write_all(&[0xab; 4 + 37]).unwrap();
    drop(file);
    let mut journalled = BTreeSet::new();
    for segment in &segments {
        for event in read_segment_file(&segment.path).unwrap().events {
            journalled.insert(event.id);
        }
    }
    assert!(
        journalled.len() > 1000,
        "{} events journalled",
        journalled.len()
    );

    // Restart against a working store: everything journalled arrives, the tear is skipped.
    let store = open_store(&format!(
        "sqlite://{}",
        dir.path().join("exai.db").display()
    ))
    .unwrap();
    store.migrate().await.unwrap();
    let recorder = Recorder::new("restarted", 1000);
    let health = HealthBoard::new();
    let pipeline = MetricsPipeline::new(
        fast_settings(dir.path()),
        store.clone(),
        recorder.clone(),
        health.clone(),
    )
    .unwrap();
    let (_sup, slot) = start_flusher(&pipeline, &health, &recorder);
    eventually(Duration::from_secs(30), "journal replayed", || async {
        (pipeline.stats().spilled_bytes == 0).then_some(())
    })
    .await;
    flush(&slot).await;
    let stats = pipeline.stats();
    assert!(
        stats.journal_torn_tails >= 1,
        "torn tail reported: {stats:?}"
    );
    let stored: BTreeSet<Uuid> = all_events(store.as_ref(), None)
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        stored, journalled,
        "everything journalled arrived, nothing else"
    );
}

// ---------------------------------------------------------------------------------------
// Supervisor restarts of the flusher.

#[actix_rt::test]
async fn flusher_restarts_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&format!(
        "sqlite://{}",
        dir.path().join("exai.db").display()
    ))
    .unwrap();
    store.migrate().await.unwrap();
    let recorder = Recorder::new("test", 5000);
    let health = HealthBoard::new();
    let pipeline = MetricsPipeline::new(
        fast_settings(dir.path()),
        store.clone(),
        recorder.clone(),
        health.clone(),
    )
    .unwrap();
    let (sup, slot) = start_flusher(&pipeline, &health, &recorder);
    let mut n = 0u64;
    for round in 0..30 {
        for _ in 0..20 {
            recorder.record("test", TEST_KIND, json!({ "n": n }));
            n += 1;
        }
        let fault = match round {
            8 => Some(Fault::Panic),
            18 => Some(Fault::Hang),
            _ => None,
        };
        if let Some(fault) = fault {
            let restarts = health.actor(CHILD_NAME).map_or(0, |a| a.restarts);
            sup.send(InjectFaultInto {
                child: CHILD_NAME.to_owned(),
                fault,
            })
            .await
            .unwrap()
            .unwrap();
            eventually(Duration::from_secs(10), "flusher restarted", || async {
                (health.actor(CHILD_NAME).map_or(0, |a| a.restarts) > restarts).then_some(())
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    flush(&slot).await;
    let stored = all_events(store.as_ref(), Some(TEST_KIND)).await;
    let ns: BTreeSet<u64> = stored.iter().filter_map(|e| e.data["n"].as_u64()).collect();
    assert_eq!(stored.len() as u64, n, "each event once");
    assert_eq!(ns, (0..n).collect(), "nothing lost across restarts");
    assert_eq!(health.actor(CHILD_NAME).map(|a| a.restarts), Some(2));
}

// ---------------------------------------------------------------------------------------
// Events PostgreSQL would refuse.

#[actix_rt::test]
async fn postgres_poison_events_cannot_wedge_the_pipeline() {
    let db = TestDb::create().await;
    let store = open_store(&db.url).unwrap();
    store.migrate().await.unwrap();
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
    // U+0000 is refused by jsonb: it is replaced, not lost.
    recorder.record(
        "test",
        TEST_KIND,
        json!({ "n": 0, "error": "bad\u{0}byte" }),
    );
    // A timestamp outside PostgreSQL's range is refused: only that event is dropped.
    let mut out_of_range = sample(1, 0);
    out_of_range.ts = i64::MAX;
    recorder.record_event(out_of_range);
    for n in 2..10 {
        recorder.record("test", TEST_KIND, json!({ "n": n }));
    }
    assert_eq!(pipeline.flush().await.unwrap(), 9);
    let stats = pipeline.stats();
    assert_eq!(
        (stats.rejected, stats.buffered, stats.spilled_bytes),
        (1, 0, 0),
        "{stats:?}"
    );
    let stored = all_events(store.as_ref(), Some(TEST_KIND)).await;
    assert_eq!(stored.len(), 9);
    let first = stored.iter().find(|e| e.data["n"] == 0).unwrap();
    assert_eq!(first.data["error"], "bad\u{fffd}byte");
}
