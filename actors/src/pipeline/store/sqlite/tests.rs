//! The writer thread's failure paths: an SQLite error, a panic and a vanished file come back
//! as errors (never a hang), the writer recovers once the cause is gone, and dropping the
//! store ends the thread. The write paths' results are checked in `tests/api/pipeline.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Duration;

use futures_util::FutureExt as _;
use serde_json::json;

use super::*;
use crate::pipeline::store::{now_ms, shared_batch};

/// Waits at most this long for an answer that must come at once: a hang fails the test
/// instead of wedging it.
const NO_HANG: Duration = Duration::from_secs(10);

/// A fresh directory with the store's file in it, removed at the end of the test.
struct TempDb {
    /// The directory.
    dir: PathBuf,
}

impl TempDb {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("exai-sqlite-writer-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("exai.db")
    }

    fn open(&self) -> SqliteStore {
        SqliteStore::open(
            &format!("sqlite://{}", self.file().display()),
            StoreSettings::default(),
        )
        .unwrap()
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            Event::new(
                "i",
                "test",
                "test.writer",
                json!({"n": i, "latency_ms": 1.5}),
            )
        })
        .collect()
}

/// Awaits `future`, failing the test if it takes longer than [`NO_HANG`].
async fn answer<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(NO_HANG, future)
        .await
        .expect("the writer answered")
}

#[tokio::test]
async fn a_statement_error_comes_back_as_an_error_and_the_writer_recovers() {
    let db = TempDb::new();
    let store = db.open();
    // Not migrated yet: the table is missing.
    let batch = events(3);
    let error = answer(store.insert_batch(&shared_batch(&batch)))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::Sqlite(_)) && error.to_string().contains("no such table"),
        "{error}"
    );
    assert!(
        !error.is_rejection(),
        "a missing table is not the data's fault"
    );
    let error = answer(store.prune(now_ms(), RetentionSettings::default()))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Sqlite(_)), "{error}");

    answer(store.migrate()).await.unwrap();
    assert_eq!(
        answer(store.insert_batch(&shared_batch(&batch)))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        answer(store.insert_batch(&shared_batch(&batch)))
            .await
            .unwrap(),
        0,
        "idempotent"
    );
    let page = answer(store.events(&EventQuery::default())).await.unwrap();
    assert_eq!(page.events.len(), 3);
}

#[tokio::test]
async fn an_unopenable_file_comes_back_as_an_error() {
    let db = TempDb::new();
    // The database path is a directory: the writer cannot open it.
    std::fs::create_dir_all(db.file()).unwrap();
    let store = db.open();
    let error = answer(store.insert_batch(&shared_batch(&events(1))))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Sqlite(_)), "{error}");
    // And again: the failed open is retried, not cached as a dead connection.
    let error = answer(store.insert_batch(&shared_batch(&events(1))))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Sqlite(_)), "{error}");
}

#[tokio::test]
async fn a_deleted_database_file_fails_writes_until_it_is_back() {
    let db = TempDb::new();
    let store = db.open();
    answer(store.migrate()).await.unwrap();
    assert_eq!(
        answer(store.insert_batch(&shared_batch(&events(5))))
            .await
            .unwrap(),
        5
    );
    let saved = db.dir.with_extension("saved");
    std::fs::rename(&db.dir, &saved).unwrap();
    std::fs::create_dir_all(&db.dir).unwrap();
    // SQLite alone would go on writing to the moved file; the writer notices and fails.
    for _ in 0..2 {
        let error = answer(store.insert_batch(&shared_batch(&events(5))))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::Sqlite(_)) && !error.is_rejection(),
            "{error}"
        );
        let error = answer(store.prune(now_ms(), RetentionSettings::default()))
            .await
            .unwrap_err();
        assert!(matches!(error, StoreError::Sqlite(_)), "{error}");
    }
    // The file is back: writes resume on it.
    std::fs::remove_dir_all(&db.dir).unwrap();
    std::fs::rename(&saved, &db.dir).unwrap();
    assert_eq!(
        answer(store.insert_batch(&shared_batch(&events(5))))
            .await
            .unwrap(),
        5
    );
    let page = answer(store.events(&EventQuery::default())).await.unwrap();
    assert_eq!(page.events.len(), 10);
}

#[tokio::test]
async fn a_panic_on_the_writer_comes_back_as_an_error_and_the_writer_goes_on() {
    let db = TempDb::new();
    let store = db.open();
    answer(store.migrate()).await.unwrap();
    let error = answer(store.writer.run(|_| -> StoreResult<()> { panic!("boom") }))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::Writer(m) if m.contains("boom")),
        "{error}"
    );
    // A panic halfway through a transaction leaves nothing behind.
    let batch = events(4);
    let half = shared_batch(&batch);
    let error = answer(store.writer.run(move |conn| -> StoreResult<()> {
        writer::insert(conn, &half[..2])?;
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM monitoring_events", [])?;
        panic!("mid-transaction")
    }))
    .await
    .unwrap_err();
    assert!(matches!(error, StoreError::Writer(_)), "{error}");
    assert_eq!(
        answer(store.insert_batch(&shared_batch(&batch)))
            .await
            .unwrap(),
        2
    );
    let page = answer(store.events(&EventQuery::default())).await.unwrap();
    assert_eq!(page.events.len(), 4);
}

#[tokio::test]
async fn dropping_the_store_ends_the_writer_thread() {
    let db = TempDb::new();
    let store = db.open();
    answer(store.migrate()).await.unwrap();
    let clone = store.clone();
    assert_eq!(
        answer(clone.insert_batch(&shared_batch(&events(2))))
            .await
            .unwrap(),
        2
    );
    let stopped = store.writer_stopped();
    let mut stopped = std::pin::pin!(stopped);
    drop(store);
    // A clone still holds the thread.
    tokio::task::yield_now().await;
    assert!(stopped.as_mut().now_or_never().is_none(), "still running");
    drop(clone);
    answer(stopped).await;
}
