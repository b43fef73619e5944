//! The event journal: a write-ahead log every recorded event passes through before it
//! reaches the store (DESIGN §6), so a `kill -9` at any moment loses nothing that was
//! recorded.
//!
//! # Writing
//!
//! [`Journal::append`] encodes the event, writes it to a segment file with one `write(2)` and
//! only then returns: by the time the caller answers its client, the event is in the kernel.
//! There is no global lock on this path. The journal has a few *shards* (about two per core),
//! each with its own open segment and its own in-memory queue behind its own mutex; a
//! recording thread tries its own shard first and takes any free one if that is busy, so two
//! threads never wait for each other's `write`. A segment is rotated (sealed, a new one
//! opened) once it reaches `segment_bytes`.
//!
//! # Memory and disk
//!
//! Each appended event is also kept in its shard's bounded in-memory queue (`capacity` events
//! over all shards), so the flusher normally never reads the files: it takes events from
//! memory ([`Journal::take`]), inserts them and reports them stored ([`Journal::confirm`]).
//! Memory is only a cache of the log. When it is full, or while the store is down
//! ([`Journal::set_memory`], [`Journal::drop_memory`]), or after a failed insert
//! ([`Journal::forget`]), a
//! segment stops keeping memory copies; from then on the flusher reads that segment from
//! disk, from its confirmed point ([`Journal::backlog`]), oldest segment first. The disk is
//! the overflow: while the store is down, memory holds nothing and the backlog grows on disk.
//!
//! # Confirmation, deletion and restart
//!
//! Each segment knows how far (in bytes) the store has confirmed it. A sealed segment
//! confirmed to its end is deleted ([`Journal::collect`]), so the journal holds at most about
//! one open segment per shard plus whatever the store has not confirmed. The confirmed
//! points are written to a checkpoint file ([`Journal::checkpoint`], at most every 100 ms
//! while they move). A new process treats every segment it finds as a backlog and replays it
//! from the checkpoint's point; without a usable checkpoint it replays whole segments, which
//! is harmless because the stores insert idempotently by event id.
//!
//! # Damage
//!
//! The record format is in [`format`]: `[length u32][crc32 u32][JSON payload]`.
//! - A record cut short at the end of a segment (a torn write from `kill -9` mid-append) is
//!   detected, reported with one `warn` line and skipped.
//! - A record whose checksum does not match but whose length is sane is skipped and counted;
//!   reading continues with the next record.
//! - A length beyond [`MAX_RECORD_BYTES`] means the framing itself is lost: the rest of that
//!   segment is skipped and reported. Other segments are unaffected.
//!
//! # Durability: the fsync policy ([`FsyncPolicy`], `EXAI_METRICS_FSYNC`)
//!
//! Every record is handed to the OS (`write`) before the append returns, so a process crash
//! (`kill -9`) loses nothing whatever the policy. The policy decides when the OS is made to
//! put it on disk, which is what a power loss or kernel crash tests:
//!
//! - `always`: `fsync` after every record, before the append returns (and the checkpoint is
//!   fsynced too). Survives power loss record by record; recording then waits for the disk.
//! - `batch` (default): the flusher fsyncs every segment written since the last time once per
//!   flush interval ([`Journal::sync`], off the async threads). A power loss can lose about
//!   one flush interval of events; recording never waits for the disk.
//! - `never`: no `fsync`; the OS writes pages back when it likes (typically within ~30 s).

use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use crate::pipeline::event::Event;

mod flusher;
mod format;
#[cfg(test)]
mod tests;

pub use format::{
    HEADER_BYTES, MAX_RECORD_BYTES, Segment, SegmentRead, encode, list_segments, read_segment_file,
};
use format::{read_checkpoint, segment_path, sync_dir};

/// Default size at which a segment is sealed and a new one started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Most shards (open segments) a journal uses.
pub const MAX_SHARDS: usize = 16;
/// Bytes read from disk at a time while replaying.
const READ_CHUNK_BYTES: usize = 1024 * 1024;
/// Least time between two checkpoint writes (unless forced).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// When appended records are forced to disk. See the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every record, before the append returns.
    Always,
    /// Once per flush interval, by the flusher.
    #[default]
    Batch,
    /// Never; the OS decides.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "batch" => Ok(Self::Batch),
            "never" => Ok(Self::Never),
            other => Err(format!("expected always, batch or never, got {other:?}")),
        }
    }
}

/// Where the journal lives and how it writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSettings {
    /// The journal directory (created if missing), e.g. `<data dir>/spill`.
    pub dir: PathBuf,
    /// When to fsync.
    pub fsync: FsyncPolicy,
    /// Segment size at which a new segment is started.
    pub segment_bytes: u64,
    /// Shards, i.e. segments open at once (1 to [`MAX_SHARDS`]).
    pub shards: usize,
}

impl JournalSettings {
    /// Default policy, segment size and shard count (two per core) in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            dir: dir.into(),
            fsync: FsyncPolicy::default(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            shards: (cores * 2).clamp(2, MAX_SHARDS),
        }
    }
}

/// Where [`Journal::append`] put an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written, and kept in memory; that many events are now queued in memory.
    Queued(usize),
    /// Written; memory is full or off, so the flusher will read it from disk.
    DiskOnly,
    /// The write failed; kept in memory only (that many now queued).
    MemoryOnly(usize),
    /// The write failed and memory is full: lost, and counted.
    Dropped,
}

/// Where a record ends in which segment.
#[derive(Debug, Clone)]
struct At {
    /// The segment.
    seg: Arc<Seg>,
    /// Offset just past the record.
    end: u64,
}

/// An event kept in memory, with where it is in the log.
#[derive(Debug)]
struct Pending {
    /// The event, shared with the live feed until the dashboard has encoded it.
    event: Arc<Event>,
    /// Its record; `None` if it could not be written.
    at: Option<At>,
}

/// Events taken from memory by [`Journal::take`], to be inserted and then reported with
/// [`Journal::confirm`] (stored) or [`Journal::forget`] (not stored). Dropping it unreported
/// is safe too: its segments are then read from disk.
#[derive(Debug, Default)]
pub struct Taken {
    /// The events, oldest first within each shard (shared with the live feed, not copied).
    pub events: Vec<Arc<Event>>,
    /// For each segment involved, the end of its last record here.
    marks: Vec<At>,
    /// Indices (in `events`) of events that are not on disk.
    unwritten: Vec<usize>,
}

impl Taken {
    /// Whether nothing was taken.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Adds one event; keeps the last end per segment.
    fn push(&mut self, pending: Pending) {
        match pending.at {
            Some(at) => match self.marks.iter_mut().find(|m| Arc::ptr_eq(&m.seg, &at.seg)) {
                Some(mark) => mark.end = mark.end.max(at.end),
                None => self.marks.push(at),
            },
            None => self.unwritten.push(self.events.len()),
        }
        self.events.push(pending.event);
    }
}

impl Drop for Taken {
    /// A batch dropped unreported (the flusher was stopped mid-insert): its segments are
    /// read from disk from their confirmed point, so nothing in it is skipped.
    fn drop(&mut self) {
        for mark in self.marks.drain(..) {
            mark.seg.to_disk();
        }
    }
}

/// A run of events read back from disk by [`Journal::backlog`]; report it with
/// [`Journal::confirm_backlog`] once stored.
#[derive(Debug)]
pub struct Backlog {
    /// The intact events (may be empty if the run was all damage).
    pub events: Vec<Arc<Event>>,
    /// The segment read.
    seg: Arc<Seg>,
    /// Offset just past the run.
    to: u64,
}

/// One segment file and what is known about it.
#[derive(Debug)]
struct Seg {
    /// Sequence number (replay order).
    seq: u64,
    /// The file.
    path: PathBuf,
    /// The shard writing it; `None` for a segment left by a previous process.
    shard: Option<usize>,
    /// Bytes of complete records (the file's size for leftovers).
    written: AtomicU64,
    /// No more records will be appended.
    sealed: AtomicBool,
    /// Every record from the confirmed point on is also in memory. Only ever goes from
    /// true to false, and only while `confirmed` is locked.
    mem: AtomicBool,
    /// Records written since the last fsync (policy `batch`).
    needs_sync: AtomicBool,
    /// The open file while it is written (and until its last fsync).
    file: Mutex<Option<Arc<File>>>,
    /// Bytes the store has confirmed, from the start of the file.
    confirmed: Mutex<u64>,
}

impl Seg {
    /// Stops keeping memory copies: the flusher reads it from disk from its confirmed point.
    fn to_disk(&self) {
        let _confirmed = lock(&self.confirmed);
        self.mem.store(false, Ordering::Release);
    }

    /// Whether it is sealed and confirmed to its end.
    fn done(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
            && *lock(&self.confirmed) >= self.written.load(Ordering::Acquire)
    }
}

/// The segment a shard is appending to.
#[derive(Debug)]
struct Writer {
    /// Its bookkeeping.
    seg: Arc<Seg>,
    /// The open file (append mode).
    file: Arc<File>,
    /// Bytes written so far.
    size: u64,
}

/// One shard: an open segment and the memory copies of its records.
#[derive(Debug, Default)]
struct Shard {
    /// The segment being appended to, if any.
    writer: Option<Writer>,
    /// Events in memory, in the order they were written.
    queue: VecDeque<Pending>,
}

/// What the last checkpoint said.
#[derive(Debug, Default)]
struct CheckpointBook {
    /// Its contents.
    written: Option<BTreeMap<u64, u64>>,
    /// When it was written.
    at: Option<Instant>,
}

/// The write-ahead journal. Shared (`Arc`) by the recorder and the flusher; survives
/// restarts of the flusher actor.
#[derive(Debug)]
pub struct Journal {
    /// Directory, policy, segment size, shard count.
    settings: JournalSettings,
    /// Bound on events kept in memory over all shards.
    capacity: usize,
    /// The shards.
    shards: Box<[Mutex<Shard>]>,
    /// Every segment on disk, by sequence number.
    segments: Mutex<BTreeMap<u64, Arc<Seg>>>,
    /// Sequence number for the next new segment.
    next_seq: AtomicU64,
    /// Events in the shards' queues.
    queued: AtomicUsize,
    /// Whether new records are kept in memory (off while the store is down).
    memory: AtomicBool,
    /// Shard [`Journal::take`] starts at (rotates, for fairness).
    take_from: AtomicUsize,
    /// A segment was created since the directory was last fsynced.
    dir_dirty: AtomicBool,
    /// Bytes in all segment files.
    bytes: AtomicU64,
    /// Records appended since open.
    appended: AtomicU64,
    /// Events kept on disk only (no memory copy, or the copy was dropped), since open.
    spilled: AtomicU64,
    /// Events lost (not written and no room in memory), since open.
    dropped: AtomicU64,
    /// Failed writes or fsyncs, since open.
    write_errors: AtomicU64,
    /// The last write error.
    last_write_error: Mutex<Option<String>>,
    /// Records skipped while reading (bad checksum or payload), since open.
    corrupt_records: AtomicU64,
    /// Torn tails or lost framing found while reading, since open.
    torn_tails: AtomicU64,
    /// The last checkpoint.
    checkpoint: Mutex<CheckpointBook>,
}

/// Process-wide counter giving each recording thread its home shard.
static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's number (its home shard, modulo the shard count).
    static THREAD_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's number, assigned on first use.
fn thread_slot() -> usize {
    THREAD_SLOT.with(|slot| {
        let mut n = slot.get();
        if n == usize::MAX {
            n = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
            slot.set(n);
        }
        n
    })
}

/// Locks, ignoring poisoning (every critical section leaves consistent state).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Journal {
    /// Opens (creating) the journal directory, keeping at most `capacity` events in memory.
    /// Segments found there (a previous process's) become the backlog, each from the point
    /// the checkpoint says the store confirmed; those confirmed to their end are deleted.
    pub fn open(settings: JournalSettings, capacity: usize) -> io::Result<Self> {
        fs::create_dir_all(&settings.dir)?;
        let checkpoint = read_checkpoint(&settings.dir);
        let mut segments = BTreeMap::new();
        let mut bytes = 0;
        for found in list_segments(&settings.dir)? {
            let len = fs::metadata(&found.path).map(|m| m.len()).unwrap_or(0);
            let confirmed = checkpoint
                .get(&found.seq)
                .copied()
                .filter(|at| *at <= len)
                .unwrap_or(0);
            bytes += len;
            segments.insert(
                found.seq,
                Arc::new(Seg {
                    seq: found.seq,
                    path: found.path,
                    shard: None,
                    written: AtomicU64::new(len),
                    sealed: AtomicBool::new(true),
                    mem: AtomicBool::new(false),
                    needs_sync: AtomicBool::new(false),
                    file: Mutex::new(None),
                    confirmed: Mutex::new(confirmed),
                }),
            );
        }
        let next_seq = segments.keys().next_back().map_or(1, |s| s + 1);
        let shards = settings.shards.clamp(1, MAX_SHARDS);
        let journal = Self {
            settings,
            capacity: capacity.max(1),
            shards: (0..shards).map(|_| Mutex::new(Shard::default())).collect(),
            segments: Mutex::new(segments),
            next_seq: AtomicU64::new(next_seq),
            queued: AtomicUsize::new(0),
            memory: AtomicBool::new(true),
            take_from: AtomicUsize::new(0),
            dir_dirty: AtomicBool::new(false),
            bytes: AtomicU64::new(bytes),
            appended: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            last_write_error: Mutex::new(None),
            corrupt_records: AtomicU64::new(0),
            torn_tails: AtomicU64::new(0),
            checkpoint: Mutex::new(CheckpointBook {
                written: Some(checkpoint),
                at: None,
            }),
        };
        journal.collect()?;
        Ok(journal)
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    /// Bound on events kept in memory.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    // -----------------------------------------------------------------------------------
    // The recording path.

    /// Writes `event` to the log (one `write`, plus an `fsync` under policy `always`) and
    /// keeps a copy in memory if there is room. Never waits for another thread's write.
    pub fn append(&self, event: impl Into<Arc<Event>>) -> Appended {
        let event = event.into();
        let record = match encode(&event) {
            Ok(record) => Some(record),
            Err(error) => {
                self.write_failed(&error);
                None
            }
        };
        let (index, mut shard) = self.lock_shard();
        let at = record.and_then(|r| match self.write(index, &mut shard, &r) {
            Ok(at) => Some(at),
            Err(error) => {
                self.write_failed(&error);
                None
            }
        });
        match at {
            Some(at) => {
                if at.seg.mem.load(Ordering::Acquire) {
                    if self.memory.load(Ordering::Relaxed)
                        && let Some(queued) = self.reserve()
                    {
                        shard.queue.push_back(Pending {
                            event,
                            at: Some(at),
                        });
                        return Appended::Queued(queued);
                    }
                    at.seg.to_disk();
                }
                self.spilled.fetch_add(1, Ordering::Relaxed);
                Appended::DiskOnly
            }
            None => match self.reserve() {
                Some(queued) => {
                    shard.queue.push_back(Pending { event, at: None });
                    Appended::MemoryOnly(queued)
                }
                None => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    Appended::Dropped
                }
            },
        }
    }

    /// This thread's shard if free, else any free one, else waits for its own.
    fn lock_shard(&self) -> (usize, MutexGuard<'_, Shard>) {
        let n = self.shards.len();
        let home = thread_slot() % n;
        for i in 0..n {
            let index = (home + i) % n;
            match self.shards[index].try_lock() {
                Ok(guard) => return (index, guard),
                Err(TryLockError::Poisoned(p)) => return (index, p.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        (home, lock(&self.shards[home]))
    }

    /// Takes one place in memory; the new count, or `None` when full.
    fn reserve(&self) -> Option<usize> {
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        if before < self.capacity {
            Some(before + 1)
        } else {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            None
        }
    }

    /// Appends one encoded record to the shard's segment, rotating first if it is full.
    fn write(&self, index: usize, shard: &mut Shard, record: &[u8]) -> io::Result<At> {
        if shard
            .writer
            .as_ref()
            .is_none_or(|w| w.size >= self.settings.segment_bytes)
        {
            self.seal_writer(shard);
            shard.writer = Some(self.open_segment(index)?);
        }
        let Some(writer) = shard.writer.as_mut() else {
            return Err(io::Error::other("journal writer missing"));
        };
        if let Err(error) = (&*writer.file).write_all(record) {
            // A partial record may now end the segment: seal it there, so it stays a
            // detectable torn tail instead of being followed by good records.
            self.seal_writer(shard);
            return Err(error);
        }
        let len = record.len() as u64;
        writer.size += len;
        writer.seg.written.store(writer.size, Ordering::Release);
        self.bytes.fetch_add(len, Ordering::Relaxed);
        self.appended.fetch_add(1, Ordering::Relaxed);
        match self.settings.fsync {
            FsyncPolicy::Always => {
                if let Err(error) = writer.file.sync_data() {
                    // Written (a crash loses nothing); only power-loss safety failed.
                    self.write_failed(&error);
                }
            }
            FsyncPolicy::Batch => writer.seg.needs_sync.store(true, Ordering::Release),
            FsyncPolicy::Never => {}
        }
        Ok(At {
            seg: writer.seg.clone(),
            end: writer.size,
        })
    }

    /// Starts a new segment for shard `index`.
    fn open_segment(&self, index: usize) -> io::Result<Writer> {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let path = segment_path(&self.settings.dir, seq);
        let file = Arc::new(
            OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)?,
        );
        match self.settings.fsync {
            FsyncPolicy::Always => sync_dir(&self.settings.dir),
            FsyncPolicy::Batch => self.dir_dirty.store(true, Ordering::Release),
            FsyncPolicy::Never => {}
        }
        let mem = self.memory.load(Ordering::Relaxed)
            && self.queued.load(Ordering::Relaxed) < self.capacity;
        let seg = Arc::new(Seg {
            seq,
            path,
            shard: Some(index),
            written: AtomicU64::new(0),
            sealed: AtomicBool::new(false),
            mem: AtomicBool::new(mem),
            needs_sync: AtomicBool::new(false),
            file: Mutex::new(Some(file.clone())),
            confirmed: Mutex::new(0),
        });
        lock(&self.segments).insert(seq, seg.clone());
        tracing::trace!(segment = seq, shard = index, "journal segment opened");
        Ok(Writer { seg, file, size: 0 })
    }

    /// Seals the shard's segment, if any: no more records go to it.
    fn seal_writer(&self, shard: &mut Shard) {
        if let Some(writer) = shard.writer.take() {
            writer.seg.sealed.store(true, Ordering::Release);
            if !writer.seg.needs_sync.load(Ordering::Acquire) {
                lock(&writer.seg.file).take();
            }
        }
    }

    /// Counts and remembers a failed write or fsync.
    fn write_failed(&self, error: &io::Error) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_write_error) = Some(error.to_string());
    }

    // -----------------------------------------------------------------------------------
    // Counters.

    /// Bytes in all segment files (confirmed or not).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Bytes on disk without memory copies that the store has not confirmed: what the
    /// flusher still has to read back (the spill).
    pub fn backlog_bytes(&self) -> u64 {
        lock(&self.segments)
            .values()
            .filter(|s| !s.mem.load(Ordering::Acquire))
            .map(|s| {
                s.written
                    .load(Ordering::Acquire)
                    .saturating_sub(*lock(&s.confirmed))
            })
            .sum()
    }

    /// Segment files on disk.
    pub fn segment_count(&self) -> usize {
        lock(&self.segments).len()
    }

    /// Events kept in memory.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Records appended since open.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// Events kept on disk only (no memory copy, or the copy was dropped), since open.
    pub fn spilled(&self) -> u64 {
        self.spilled.load(Ordering::Relaxed)
    }

    /// Events lost since open: not written and no room in memory.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Failed writes or fsyncs since open.
    pub fn write_errors(&self) -> u64 {
        self.write_errors.load(Ordering::Relaxed)
    }

    /// The last write or fsync error.
    pub fn last_write_error(&self) -> Option<String> {
        lock(&self.last_write_error).clone()
    }

    /// Records skipped as corrupt since open.
    pub fn corrupt_records(&self) -> u64 {
        self.corrupt_records.load(Ordering::Relaxed)
    }

    /// Torn tails (or lost framing) found since open.
    pub fn torn_tails(&self) -> u64 {
        self.torn_tails.load(Ordering::Relaxed)
    }
}
