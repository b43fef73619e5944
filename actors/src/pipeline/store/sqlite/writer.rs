//! The SQLite store's writer: one OS thread, `exai-sqlite-wr`, that owns the one
//! `rusqlite::Connection` every write goes through (batches and retention).
//!
//! A write is one message to the thread (a boxed job) and one `oneshot` reply, so a batch
//! costs one hop however many statements it runs; the statements themselves are prepared once
//! and kept in the connection's statement cache. The connection is opened on the first job
//! (and again after a failure that may have left it unusable), so opening the store succeeds
//! while the file cannot be opened yet, and every failure comes back to the caller as a
//! [`StoreError`]: an SQLite error, a panic inside the job (caught on the thread), or the
//! thread being gone. The thread ends when the last [`Writer`] handle is dropped and the jobs
//! already queued have run.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use tokio::sync::{oneshot, watch};

use crate::pipeline::event::Event;
use crate::pipeline::histogram::Histogram;
use crate::pipeline::store::model::{
    Bucket, Pruned, RollupRow, Rollups, SQLITE_BUSY_TIMEOUT, StoreError, StoreResult, add_opt,
    opt_max, opt_min, to_i64, to_u64,
};

/// Events per multi-row `INSERT`: 6 bound values each, so 3,000 per statement, under the
/// bundled SQLite's limit of 32,766 (`SQLITE_MAX_VARIABLE_NUMBER`); the flusher's default
/// `max_batch` is one statement.
const INSERT_CHUNK: usize = 500;

/// The writer thread's name: at most 15 bytes, so `/proc/<pid>/task/*/comm`, `top -H` and
/// `perf` show it whole.
pub const THREAD_NAME: &str = "exai-sqlite-wr";

/// Prepared statements kept per connection: the four rollup statements, the three prune
/// statements and the batch `INSERT`s, one per batch size seen recently (LRU, so the
/// statements every batch uses are never the ones evicted).
const STATEMENT_CACHE: usize = 32;

/// One unit of work on the writer thread; it sends its own reply.
type Job = Box<dyn FnOnce(&mut Link) + Send>;

/// The handle to the writer thread. Cloning shares the thread; it ends once every clone is
/// dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    /// Jobs for the thread. Unbounded: every caller waits for its reply, so the queue holds
    /// at most one job per waiting caller.
    jobs: mpsc::Sender<Job>,
    /// Closed (its sender dropped) when the thread has ended.
    stopped: watch::Receiver<()>,
}

impl Writer {
    /// Starts the thread for the database file at `path`; the connection is opened lazily.
    pub fn start(path: PathBuf) -> StoreResult<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ended, stopped) = watch::channel(());
        std::thread::Builder::new()
            .name(THREAD_NAME.to_owned())
            .spawn(move || {
                // Dropped when the loop ends (the last handle went away): wakes `stopped`.
                let _ended = ended;
                let mut link = Link {
                    path,
                    conn: None,
                    opened: None,
                    opened_before: false,
                };
                while let Ok(job) = queue.recv() {
                    job(&mut link);
                }
            })
            .map_err(|e| StoreError::Writer(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { jobs, stopped })
    }

    /// Runs `work` on the writer thread against its connection (opened if needed) and
    /// returns its result. A panic in `work` is caught there and comes back as an error (the
    /// connection is then reopened for the next job, its transaction rolled back); a thread
    /// that is gone comes back as an error too, never as a wait.
    pub async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |link: &mut Link| {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| link.with(work)))
                .unwrap_or_else(|panic| {
                    link.conn = None;
                    Err(StoreError::Writer(format!(
                        "a write panicked: {}",
                        panic_message(panic.as_ref())
                    )))
                });
            // The caller may have stopped waiting; the write is done either way.
            let _ = reply.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| StoreError::Writer("the writer thread has stopped".to_owned()))?;
        answer
            .await
            .map_err(|_| StoreError::Writer("the writer thread stopped mid-write".to_owned()))?
    }

    /// Resolves once the writer thread has ended (for tests: dropping every handle ends it).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopped = self.stopped.clone();
        async move { while stopped.changed().await.is_ok() {} }
    }
}

/// The text of a caught panic's payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// The writer thread's state: where the database is, and the connection once open.
struct Link {
    /// The database file.
    path: PathBuf,
    /// The connection; `None` until the first job, and again after a failure that may have
    /// left it unusable (an I/O error, a missing table, a panic mid-job) or once the file it
    /// has open is no longer the one at `path`.
    conn: Option<Connection>,
    /// The identity of the file `conn` has open.
    opened: Option<FileId>,
    /// Whether a connection was ever opened: only the first open may create the file.
    opened_before: bool,
}

impl Link {
    /// Runs `work` on the connection, opening it first if needed. After an error that says
    /// nothing about the data (the file, the disk, the schema), the connection is dropped
    /// so the next job starts on a fresh one.
    fn with<T>(&mut self, work: impl FnOnce(&mut Connection) -> StoreResult<T>) -> StoreResult<T> {
        // SQLite keeps writing to a file deleted or replaced under it (in WAL mode without
        // an error), so every write first checks the path still names the open file: one
        // `stat` per batch. A moved file is reopened without creating it, so the writes fail
        // (and the flusher's breaker sees it) until the file is back.
        if self.conn.is_some() && file_id(&self.path) != self.opened {
            self.conn = None;
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            slot @ None => {
                let conn = open(&self.path, !self.opened_before)?;
                self.opened_before = true;
                self.opened = file_id(&self.path);
                slot.insert(conn)
            }
        };
        let result = work(conn);
        if let Err(error) = &result
            && !error.is_rejection()
        {
            self.conn = None;
        }
        result
    }
}

/// What identifies a file across renames and deletions: device and inode on Unix (elsewhere
/// only whether it exists).
type FileId = (u64, u64);

/// The identity of the file at `path`, if there is one.
fn file_id(path: &Path) -> Option<FileId> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        Some((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Some((0, 0))
    }
}

/// Opens the writer's connection (creating the file if `create`): WAL, `synchronous =
/// NORMAL`, the store's busy timeout, foreign keys on (as sqlx sets them for the readers).
fn open(path: &Path, create: bool) -> StoreResult<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(SQLITE_BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

// ---------------------------------------------------------------------------------------
// The writes, run on the writer thread.

/// Inserts the batch and folds the new rows, in one transaction: the fast path for a batch
/// none of whose ids is stored yet, else the checked path.
pub fn insert(conn: &mut Connection, events: &[Arc<Event>]) -> StoreResult<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    match insert_fresh(conn, events)? {
        Some(inserted) => Ok(inserted),
        None => insert_checked(conn, events),
    }
}

/// The fast path, for a batch of events none of which is stored yet (the usual case):
/// multi-row `INSERT OR IGNORE`s without `RETURNING`, each chunk's rows counted by
/// `changes()`. If every row went in, all of them are folded and the transaction commits.
/// If any was ignored (a replayed batch, an id twice in the batch), the transaction is rolled
/// back and `None` returned: [`insert_checked`] then learns which rows are new.
fn insert_fresh(conn: &mut Connection, events: &[Arc<Event>]) -> StoreResult<Option<u64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut inserted = 0u64;
    for chunk in events.chunks(INSERT_CHUNK) {
        let mut stmt = tx.prepare_cached(&insert_sql(chunk.len(), false))?;
        bind_rows(&mut stmt, chunk)?;
        inserted += stmt.raw_execute()? as u64;
    }
    if inserted != events.len() as u64 {
        tx.rollback()?;
        return Ok(None);
    }
    write_rollups(Rollups::of(events), &tx)?;
    tx.commit()?;
    Ok(Some(inserted))
}

/// The general path: `RETURNING id` names the rows actually inserted (OR IGNORE skips ids
/// already stored), and only those are folded.
fn insert_checked(conn: &mut Connection, events: &[Arc<Event>]) -> StoreResult<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut rollups = Rollups::default();
    let mut inserted = 0u64;
    for chunk in events.chunks(INSERT_CHUNK) {
        let mut new_ids = HashSet::with_capacity(chunk.len());
        {
            let mut stmt = tx.prepare_cached(&insert_sql(chunk.len(), true))?;
            bind_rows(&mut stmt, chunk)?;
            let mut rows = stmt.raw_query();
            while let Some(row) = rows.next()? {
                new_ids.insert(row.get::<_, String>(0)?);
            }
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
    write_rollups(rollups, &tx)?;
    tx.commit()?;
    Ok(inserted)
}

/// The multi-row `INSERT OR IGNORE` of `rows` events (at most [`INSERT_CHUNK`]), with
/// `RETURNING id` when `returning`.
fn insert_sql(rows: usize, returning: bool) -> String {
    let mut sql = String::with_capacity(100 + rows * 20);
    sql.push_str(
        "INSERT OR IGNORE INTO monitoring_events (id, ts, instance, source, type, data) VALUES ",
    );
    for i in 0..rows {
        sql.push_str(if i == 0 {
            "(?, ?, ?, ?, ?, ?)"
        } else {
            ", (?, ?, ?, ?, ?, ?)"
        });
    }
    if returning {
        sql.push_str(" RETURNING id");
    }
    sql
}

/// Binds the six values of each event of `chunk`, in order.
fn bind_rows(stmt: &mut rusqlite::CachedStatement<'_>, chunk: &[Arc<Event>]) -> StoreResult<()> {
    let mut id = uuid::Uuid::encode_buffer();
    for (i, event) in chunk.iter().enumerate() {
        let at = i * 6;
        stmt.raw_bind_parameter(at + 1, &*event.id.hyphenated().encode_lower(&mut id))?;
        stmt.raw_bind_parameter(at + 2, event.ts)?;
        stmt.raw_bind_parameter(at + 3, event.instance.as_str())?;
        stmt.raw_bind_parameter(at + 4, event.source.as_str())?;
        stmt.raw_bind_parameter(at + 5, event.kind.as_str())?;
        // Encoded once, when the journal wrote it.
        stmt.raw_bind_parameter(at + 6, event.data_json())?;
    }
    Ok(())
}

/// Deletes raw events older than `events_before`, minute rollups older than
/// `minutes_before` and hour rollups older than `hours_before`, in one transaction: a
/// reader never sees raw rows pruned but their rollups not.
pub fn prune(
    conn: &mut Connection,
    events_before: i64,
    minutes_before: i64,
    hours_before: i64,
) -> StoreResult<Pruned> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let delete = |sql: &str, before: i64| -> StoreResult<u64> {
        Ok(tx.prepare_cached(sql)?.execute([before])? as u64)
    };
    let pruned = Pruned {
        events: delete("DELETE FROM monitoring_events WHERE ts < ?", events_before)?,
        minute_rows: delete("DELETE FROM metrics_1min WHERE bucket < ?", minutes_before)?,
        hour_rows: delete("DELETE FROM metrics_1hour WHERE bucket < ?", hours_before)?,
    };
    tx.commit()?;
    Ok(pruned)
}

// ---------------------------------------------------------------------------------------
// Rollups.

/// Adds the batch's totals to the stored rollup rows, inside the batch's transaction.
fn write_rollups(rollups: Rollups<'_>, tx: &Transaction<'_>) -> StoreResult<()> {
    let (minute, hour) = rollups.into_rows();
    for row in minute {
        upsert_rollup(tx, Bucket::Minute, row)?;
    }
    for row in hour {
        upsert_rollup(tx, Bucket::Hour, row)?;
    }
    Ok(())
}

/// Adds `add` to the stored rollup row with the same key (or creates it).
fn upsert_rollup(tx: &Transaction<'_>, bucket: Bucket, add: RollupRow) -> StoreResult<()> {
    let select = match bucket {
        Bucket::Minute => {
            "SELECT count, error_count, latency_count, latency_sum, latency_min, latency_max, \
             latency_hist, prompt_tokens, completion_tokens, cost_usd \
             FROM metrics_1min WHERE bucket = ? AND type = ? AND source = ? AND model = ?"
        }
        Bucket::Hour => {
            "SELECT count, error_count, latency_count, latency_sum, latency_min, latency_max, \
             latency_hist, prompt_tokens, completion_tokens, cost_usd \
             FROM metrics_1hour WHERE bucket = ? AND type = ? AND source = ? AND model = ?"
        }
    };
    let merged = {
        let mut stmt = tx.prepare_cached(select)?;
        let mut rows = stmt.query((add.bucket, &add.kind, &add.source, &add.model))?;
        match rows.next()? {
            Some(old) => {
                let old_hist: String = old.get(6)?;
                let mut hist =
                    Histogram::from_json(&serde_json::from_str(&old_hist).unwrap_or_default());
                hist.merge(&Histogram::from_json(&add.latency_hist));
                RollupRow {
                    count: to_u64(old.get(0)?) + add.count,
                    error_count: to_u64(old.get(1)?) + add.error_count,
                    latency_count: to_u64(old.get(2)?) + add.latency_count,
                    latency_sum: old.get::<_, f64>(3)? + add.latency_sum,
                    latency_min: opt_min(old.get(4)?, add.latency_min),
                    latency_max: opt_max(old.get(5)?, add.latency_max),
                    latency_hist: hist.to_json(),
                    prompt_tokens: add_opt(
                        old.get::<_, Option<i64>>(7)?.map(to_u64),
                        add.prompt_tokens,
                    ),
                    completion_tokens: add_opt(
                        old.get::<_, Option<i64>>(8)?.map(to_u64),
                        add.completion_tokens,
                    ),
                    cost_usd: add_opt(old.get(9)?, add.cost_usd),
                    ..add
                }
            }
            None => add,
        }
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
    tx.prepare_cached(write)?.execute((
        merged.bucket,
        &merged.kind,
        &merged.source,
        &merged.model,
        to_i64(merged.count),
        to_i64(merged.error_count),
        to_i64(merged.latency_count),
        merged.latency_sum,
        merged.latency_min,
        merged.latency_max,
        merged.latency_hist.to_string(),
        merged.prompt_tokens.map(to_i64),
        merged.completion_tokens.map(to_i64),
        merged.cost_usd,
    ))?;
    Ok(())
}
