//! The spill journal: where events go while the store is unreachable (breaker open) or the
//! in-memory queue is full, so nothing recorded is lost and memory stays bounded (DESIGN §6).
//!
//! # Format
//!
//! The journal is a directory of segment files `seg-<20-digit sequence>.log`, replayed in
//! sequence order (oldest first). A segment is a run of records:
//!
//! ```text
//! [ length: u32 LE ][ crc32(payload): u32 LE ][ payload: `length` bytes, one JSON Event ]
//! ```
//!
//! Appends go to the newest segment until it exceeds `segment_bytes`, then a new one is
//! started. [`Journal::seal`] closes the segment being written, so every segment it returns
//! is immutable and can be replayed and deleted while new spills go to a fresh one.
//!
//! # Damage
//!
//! - A record cut short at the end of a segment (a torn write from a crash or `kill -9`
//!   mid-append) is detected, reported once with a `warn` and skipped.
//! - A record whose checksum does not match but whose length is sane is skipped and
//!   counted; reading continues with the next record.
//! - A length beyond [`MAX_RECORD_BYTES`] means the framing itself is lost: the rest of that
//!   segment is skipped and reported. Other segments are unaffected.
//!
//! Damage never blocks the replay of anything else.
//!
//! # Durability: the fsync policy ([`FsyncPolicy`])
//!
//! Every record is handed to the OS (`write`) before the append returns, so a process crash
//! (`kill -9`) loses nothing that was appended, whatever the policy. The policy decides when
//! the OS is made to put it on disk, which is what a power loss or kernel crash tests:
//!
//! - `always`: `fsync` after every record. Survives power loss record by record; slowest,
//!   and it slows the recording path whenever the in-memory queue overflows.
//! - `batch` (default): `fsync` once per batch the flusher spills, and for records spilled on
//!   the recording path (queue overflow, one event at a time) once per flush interval via
//!   [`Journal::sync`], plus before a segment is sealed. A power loss can lose at most about
//!   one flush interval of overflow; the recording path never waits for a disk flush.
//! - `never`: no `fsync`; the OS writes pages back when it likes (typically within ~30 s).
//!
//! The journal's total size is not bounded: disk is the overflow. It is reported as
//! `spilled_bytes` in `/health`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::event::{Event, Spill};

/// Largest record accepted when reading; a longer length field means lost framing.
pub const MAX_RECORD_BYTES: u32 = 16 * 1024 * 1024;
/// Default size at which a new segment is started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Bytes before each payload: length and checksum.
const HEADER_BYTES: usize = 8;
/// Segment file name prefix.
const SEGMENT_PREFIX: &str = "seg-";
/// Segment file name suffix.
const SEGMENT_SUFFIX: &str = ".log";

/// When appended records are forced to disk. See the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every record.
    Always,
    /// Once per append call (per spilled batch).
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
}

impl JournalSettings {
    /// Default policy and segment size in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            fsync: FsyncPolicy::default(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
        }
    }
}

/// What reading one segment found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SegmentRead {
    /// The intact events, in the order they were written.
    pub events: Vec<Event>,
    /// Records skipped because their checksum or payload was bad.
    pub corrupt_records: u64,
    /// Bytes of a truncated final record (a torn write), if any.
    pub torn_tail_bytes: Option<u64>,
    /// Bytes skipped after an insane length field, if any.
    pub lost_framing_bytes: Option<u64>,
}

impl SegmentRead {
    /// Whether anything was skipped.
    pub fn damaged(&self) -> bool {
        self.corrupt_records > 0
            || self.torn_tail_bytes.is_some()
            || self.lost_framing_bytes.is_some()
    }
}

/// One sealed segment, ready to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number (replay order).
    pub seq: u64,
    /// The file.
    pub path: PathBuf,
}

/// The segment being appended to.
#[derive(Debug)]
struct Writer {
    /// Its sequence number.
    seq: u64,
    /// The open file.
    file: File,
    /// Its size so far.
    size: u64,
}

/// Mutable state behind the journal's lock.
#[derive(Debug)]
struct State {
    /// Sequence number for the next new segment.
    next_seq: u64,
    /// The open segment, if any.
    writer: Option<Writer>,
}

/// The spill journal. Shared (`Arc`) between the recording path and the flusher; survives
/// restarts of the flusher actor.
#[derive(Debug)]
pub struct Journal {
    /// Directory, policy and segment size.
    settings: JournalSettings,
    /// The writer and sequence counter.
    state: Mutex<State>,
    /// Total bytes in all segment files.
    bytes: AtomicU64,
    /// Records appended since this process opened the journal.
    appended: AtomicU64,
    /// Records skipped while reading (bad checksum or payload), since open.
    corrupt_records: AtomicU64,
    /// Torn tails or lost framing found while reading, since open.
    torn_tails: AtomicU64,
    /// Whether the open segment has records not yet fsynced (policy `batch`).
    dirty: AtomicBool,
}

impl Journal {
    /// Opens (creating) the journal directory and takes stock of leftover segments.
    pub fn open(settings: JournalSettings) -> io::Result<Self> {
        fs::create_dir_all(&settings.dir)?;
        let segments = list_segments(&settings.dir)?;
        let mut bytes = 0;
        for segment in &segments {
            bytes += fs::metadata(&segment.path).map(|m| m.len()).unwrap_or(0);
        }
        let next_seq = segments.last().map_or(1, |s| s.seq + 1);
        Ok(Self {
            settings,
            state: Mutex::new(State {
                next_seq,
                writer: None,
            }),
            bytes: AtomicU64::new(bytes),
            appended: AtomicU64::new(0),
            corrupt_records: AtomicU64::new(0),
            torn_tails: AtomicU64::new(0),
            dirty: AtomicBool::new(false),
        })
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.settings.dir
    }

    /// Total bytes in all segments (replayed segments are deleted and no longer count).
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether nothing is waiting to be replayed.
    pub fn is_empty(&self) -> bool {
        self.bytes() == 0
    }

    /// Records appended since open.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// Records skipped as corrupt since open.
    pub fn corrupt_records(&self) -> u64 {
        self.corrupt_records.load(Ordering::Relaxed)
    }

    /// Torn tails (or lost framing) found since open.
    pub fn torn_tails(&self) -> u64 {
        self.torn_tails.load(Ordering::Relaxed)
    }

    /// Appends `events` as one record each, then syncs per the policy (under `batch`: one
    /// `fsync` for the whole call). Used by the flusher for whole batches.
    pub fn append(&self, events: &[Event]) -> io::Result<()> {
        self.append_with(events, true)
    }

    /// Appends without waiting for a disk flush under `batch` (the next [`Journal::sync`]
    /// covers it). Used on the recording path, which must not wait for the disk.
    pub fn append_deferred(&self, events: &[Event]) -> io::Result<()> {
        self.append_with(events, false)
    }

    /// Flushes records appended with [`Journal::append_deferred`] to disk, if any. The
    /// flusher calls this once per flush interval.
    pub fn sync(&self) -> io::Result<()> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &state.writer {
            Some(writer) => writer.file.sync_data(),
            None => Ok(()),
        }
    }

    /// The body of [`Journal::append`] and [`Journal::append_deferred`].
    fn append_with(&self, events: &[Event], sync_batch: bool) -> io::Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut records = Vec::with_capacity(events.len());
        for event in events {
            records.push(encode(event)?);
        }
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self.write_locked(&mut state, &records, sync_batch);
        if result.is_err() {
            // A partial record may now end the segment; start a new one next time so it
            // stays a (detectable) torn tail instead of being followed by good records.
            state.writer = None;
        }
        result
    }

    /// The body of [`Journal::append`], under the lock.
    fn write_locked(
        &self,
        state: &mut State,
        records: &[Vec<u8>],
        sync_batch: bool,
    ) -> io::Result<()> {
        let roll = state
            .writer
            .as_ref()
            .is_none_or(|w| w.size >= self.settings.segment_bytes);
        if roll {
            self.sync_writer(state)?;
            let seq = state.next_seq;
            let path = segment_path(&self.settings.dir, seq);
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            state.next_seq += 1;
            if self.settings.fsync != FsyncPolicy::Never {
                sync_dir(&self.settings.dir);
            }
            state.writer = Some(Writer { seq, file, size: 0 });
        }
        let Some(writer) = state.writer.as_mut() else {
            return Err(io::Error::other("journal writer missing"));
        };
        match self.settings.fsync {
            FsyncPolicy::Always => {
                for record in records {
                    writer.file.write_all(record)?;
                    writer.file.sync_data()?;
                    self.wrote(writer, record.len());
                }
            }
            FsyncPolicy::Batch | FsyncPolicy::Never => {
                let all: Vec<u8> = records.concat();
                writer.file.write_all(&all)?;
                if self.settings.fsync == FsyncPolicy::Batch {
                    if sync_batch {
                        writer.file.sync_data()?;
                        // That covered any deferred records of this segment too.
                        self.dirty.store(false, Ordering::Release);
                    } else {
                        self.dirty.store(true, Ordering::Release);
                    }
                }
                for record in records {
                    self.wrote(writer, record.len());
                }
            }
        }
        tracing::trace!(
            segment = writer.seq,
            records = records.len(),
            "journal append"
        );
        Ok(())
    }

    /// Fsyncs the open segment if deferred records are pending, before it is closed.
    fn sync_writer(&self, state: &mut State) -> io::Result<()> {
        if let Some(writer) = &state.writer
            && self.dirty.swap(false, Ordering::AcqRel)
        {
            writer.file.sync_data()?;
        }
        Ok(())
    }

    /// Book-keeping after one record reached the file.
    fn wrote(&self, writer: &mut Writer, len: usize) {
        let len = len as u64;
        writer.size += len;
        self.bytes.fetch_add(len, Ordering::Relaxed);
        self.appended.fetch_add(1, Ordering::Relaxed);
    }

    /// Closes the segment being written and returns every segment, oldest first. All of them
    /// are immutable from now on: new appends start a new segment.
    pub fn seal(&self) -> io::Result<Vec<Segment>> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.sync_writer(&mut state)?;
        state.writer = None;
        list_segments(&self.settings.dir)
    }

    /// Reads one sealed segment, skipping damage (see the module docs). Damage is counted
    /// and reported with one `warn` line per damaged segment.
    pub fn read(&self, segment: &Segment) -> io::Result<SegmentRead> {
        let read = read_segment_file(&segment.path)?;
        if read.damaged() {
            self.corrupt_records
                .fetch_add(read.corrupt_records, Ordering::Relaxed);
            if read.torn_tail_bytes.is_some() || read.lost_framing_bytes.is_some() {
                self.torn_tails.fetch_add(1, Ordering::Relaxed);
            }
            tracing::warn!(
                segment = %segment.path.display(),
                intact = read.events.len(),
                corrupt_records = read.corrupt_records,
                torn_tail_bytes = read.torn_tail_bytes,
                lost_framing_bytes = read.lost_framing_bytes,
                "spill journal segment damaged; skipping the damaged part"
            );
        }
        Ok(read)
    }

    /// Deletes a fully replayed segment.
    pub fn remove(&self, segment: &Segment) -> io::Result<()> {
        let len = fs::metadata(&segment.path).map(|m| m.len()).unwrap_or(0);
        fs::remove_file(&segment.path)?;
        // Saturating: a segment left from before open is counted once, at open.
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(len))
            });
        Ok(())
    }
}

impl Spill for Journal {
    /// The recording path's overflow: written at once, fsynced by the flusher's next
    /// [`Journal::sync`] (policy `batch`).
    fn spill(&self, events: &[Event]) -> io::Result<()> {
        self.append_deferred(events)
    }
}

/// Encodes one record: header and JSON payload.
fn encode(event: &Event) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(event).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len <= MAX_RECORD_BYTES)
        .ok_or_else(|| io::Error::other("event too large for the journal"))?;
    let mut record = Vec::with_capacity(HEADER_BYTES + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    record.extend_from_slice(&payload);
    Ok(record)
}

/// Reads a segment file without reporting: the decoding rules of the module docs.
pub fn read_segment_file(path: &Path) -> io::Result<SegmentRead> {
    let bytes = fs::read(path)?;
    Ok(decode_segment(&bytes))
}

/// Decodes a segment's bytes.
fn decode_segment(bytes: &[u8]) -> SegmentRead {
    let mut read = SegmentRead::default();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        let (Some(len), Some(crc)) = (le_u32(rest, 0), le_u32(rest, 4)) else {
            read.torn_tail_bytes = Some(rest.len() as u64);
            break;
        };
        if len > MAX_RECORD_BYTES {
            read.lost_framing_bytes = Some(rest.len() as u64);
            break;
        }
        let end = HEADER_BYTES + len as usize;
        let Some(payload) = rest.get(HEADER_BYTES..end) else {
            read.torn_tail_bytes = Some(rest.len() as u64);
            break;
        };
        pos += end;
        if crc32fast::hash(payload) != crc {
            read.corrupt_records += 1;
            continue;
        }
        match serde_json::from_slice::<Event>(payload) {
            Ok(event) => read.events.push(event),
            Err(_) => read.corrupt_records += 1,
        }
    }
    read
}

/// A little-endian `u32` at `at`, if the bytes are there.
fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// The file for segment `seq`.
fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{seq:020}{SEGMENT_SUFFIX}"))
}

/// Every segment in `dir`, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SEGMENT_PREFIX))
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        segments.push(Segment {
            seq,
            path: entry.path(),
        });
    }
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

/// Makes a new file's directory entry durable; best effort.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("exai-journal-{name}-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn events(range: std::ops::Range<i64>) -> Vec<Event> {
        range
            .map(|n| Event::new("t", "s", "x.y", json!({ "n": n })))
            .collect()
    }

    fn ns(events: &[Event]) -> Vec<i64> {
        events
            .iter()
            .map(|e| e.data["n"].as_i64().unwrap())
            .collect()
    }

    fn replay_all(journal: &Journal) -> Vec<Event> {
        let mut out = Vec::new();
        for segment in journal.seal().unwrap() {
            out.extend(journal.read(&segment).unwrap().events);
            journal.remove(&segment).unwrap();
        }
        out
    }

    #[test]
    fn replays_oldest_first_across_segments_and_reopen() {
        let dir = temp_dir("order");
        let settings = JournalSettings {
            segment_bytes: 300,
            fsync: FsyncPolicy::Always,
            ..JournalSettings::new(&dir)
        };
        {
            let journal = Journal::open(settings.clone()).unwrap();
            for chunk in events(0..40).chunks(3) {
                journal.append(chunk).unwrap();
            }
            assert!(
                journal.seal().unwrap().len() > 3,
                "small segments roll over"
            );
            assert!(journal.bytes() > 0);
        }
        // A new process finds the leftovers, keeps appending after them.
        let journal = Journal::open(settings).unwrap();
        journal.append(&events(40..45)).unwrap();
        let all = replay_all(&journal);
        assert_eq!(ns(&all), (0..45).collect::<Vec<_>>());
        assert_eq!(journal.bytes(), 0);
        assert!(journal.seal().unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn torn_tail_is_reported_and_skipped() {
        let dir = temp_dir("torn");
        let journal = Journal::open(JournalSettings::new(&dir)).unwrap();
        journal.append(&events(0..10)).unwrap();
        let segment = journal.seal().unwrap().remove(0);
        // Cut the last record in half, as a crash mid-write would.
        let len = fs::metadata(&segment.path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&segment.path).unwrap();
        file.set_len(len - 20).unwrap();
        drop(file);
        // A second segment after it must still replay.
        journal.append(&events(10..12)).unwrap();
        let mut all = Vec::new();
        let mut torn = 0;
        for segment in journal.seal().unwrap() {
            let read = journal.read(&segment).unwrap();
            torn += u64::from(read.torn_tail_bytes.is_some());
            all.extend(read.events);
        }
        assert_eq!(ns(&all), vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11]);
        assert_eq!(torn, 1);
        assert_eq!(journal.torn_tails(), 1);
        // A header cut short is torn too.
        assert_eq!(decode_segment(&[1, 0, 0]).torn_tail_bytes, Some(3));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_middle_record_is_skipped_and_reading_continues() {
        let dir = temp_dir("crc");
        let journal = Journal::open(JournalSettings::new(&dir)).unwrap();
        journal.append(&events(0..5)).unwrap();
        let segment = journal.seal().unwrap().remove(0);
        let mut bytes = fs::read(&segment.path).unwrap();
        // Flip a payload byte of the third record.
        let mut pos = 0;
        for _ in 0..2 {
            pos += HEADER_BYTES + le_u32(&bytes, pos).unwrap() as usize;
        }
        bytes[pos + HEADER_BYTES + 3] ^= 0xff;
        fs::write(&segment.path, &bytes).unwrap();
        let read = journal.read(&segment).unwrap();
        assert_eq!(ns(&read.events), vec![0, 1, 3, 4]);
        assert_eq!(read.corrupt_records, 1);
        assert_eq!(read.torn_tail_bytes, None);
        assert_eq!(journal.corrupt_records(), 1);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn insane_length_skips_only_the_rest_of_its_segment() {
        let mut bytes = encode(&events(0..1)[0]).unwrap();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 20]);
        let read = decode_segment(&bytes);
        assert_eq!(read.events.len(), 1);
        assert_eq!(read.lost_framing_bytes, Some(24));
    }

    #[test]
    fn deferred_appends_are_written_at_once_and_synced_later() {
        let dir = temp_dir("deferred");
        let journal = Journal::open(JournalSettings::new(&dir)).unwrap();
        journal.spill(&events(0..3)).unwrap();
        // Written (a crashing process would not lose them) before any sync.
        let on_disk = list_segments(&dir).unwrap();
        assert_eq!(
            ns(&read_segment_file(&on_disk[0].path).unwrap().events),
            vec![0, 1, 2]
        );
        assert!(journal.dirty.load(Ordering::Acquire));
        journal.sync().unwrap();
        assert!(!journal.dirty.load(Ordering::Acquire));
        journal.append(&events(3..4)).unwrap();
        assert_eq!(ns(&replay_all(&journal)), vec![0, 1, 2, 3]);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn fsync_policy_parses() {
        assert_eq!("always".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Always));
        assert_eq!("batch".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Batch));
        assert_eq!("never".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Never));
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
