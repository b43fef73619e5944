//! The journal's files: records, segments and the checkpoint.
//!
//! A segment `seg-<20-digit sequence>.log` is a run of records:
//!
//! ```text
//! [ length: u32 LE ][ crc32(payload): u32 LE ][ payload: `length` bytes, one JSON Event ]
//! ```
//!
//! The checkpoint (`checkpoint`) says how far the store has confirmed each segment:
//!
//! ```text
//! exai-journal-checkpoint 1
//! <sequence> <confirmed bytes>
//! …
//! crc <crc32 of the lines above, hex>
//! ```
//!
//! It is replaced whole (written to `checkpoint.tmp`, then renamed). A checkpoint that is
//! missing, damaged or names a point beyond a segment's end counts as "nothing confirmed":
//! replaying more than needed is harmless, because the stores insert idempotently by id.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::pipeline::event::Event;

/// Largest record accepted when reading; a longer length field means lost framing.
pub const MAX_RECORD_BYTES: u32 = 16 * 1024 * 1024;
/// Bytes before each payload: length and checksum.
pub const HEADER_BYTES: usize = 8;
/// Segment file name prefix.
const SEGMENT_PREFIX: &str = "seg-";
/// Segment file name suffix.
const SEGMENT_SUFFIX: &str = ".log";
/// The checkpoint file.
const CHECKPOINT_FILE: &str = "checkpoint";
/// The checkpoint being written.
const CHECKPOINT_TMP: &str = "checkpoint.tmp";
/// First line of a checkpoint.
const CHECKPOINT_MAGIC: &str = "exai-journal-checkpoint 1";

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Sequence number (replay order).
    pub seq: u64,
    /// The file.
    pub path: PathBuf,
}

/// What decoding a run of records found.
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

/// A decoded run and how many bytes it covered.
#[derive(Debug, Default)]
pub(super) struct Decoded {
    /// Events and damage.
    pub read: SegmentRead,
    /// Bytes consumed: whole records (good or skipped), plus a torn tail or lost framing.
    pub consumed: usize,
    /// Bytes the first record not consumed needs in full (header included), when the run
    /// stopped because that record did not fit in `bytes`.
    pub wants: Option<usize>,
}

/// Encodes one record: header and JSON payload.
pub fn encode(event: &Event) -> io::Result<Vec<u8>> {
    let mut record = Vec::with_capacity(512);
    record.extend_from_slice(&[0; HEADER_BYTES]);
    serde_json::to_writer(&mut record, &event.encoded()).map_err(io::Error::other)?;
    let payload_len = record.len() - HEADER_BYTES;
    let len = u32::try_from(payload_len)
        .ok()
        .filter(|len| *len <= MAX_RECORD_BYTES)
        .ok_or_else(|| io::Error::other("event too large for the journal"))?;
    let crc = crc32fast::hash(&record[HEADER_BYTES..]);
    record[..4].copy_from_slice(&len.to_le_bytes());
    record[4..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
    Ok(record)
}

/// Decodes records from `bytes`, at most `max_events` intact ones.
///
/// With `at_end`, `bytes` run to the end of the segment: a record cut short there is a torn
/// tail, counted and consumed. Without it, a record that does not fit is left for the next
/// read (and `wants` says how many bytes it needs).
pub(super) fn decode(bytes: &[u8], at_end: bool, max_events: usize) -> Decoded {
    let mut out = Decoded::default();
    let mut pos = 0usize;
    while pos < bytes.len() && out.read.events.len() < max_events {
        let rest = &bytes[pos..];
        let (Some(len), Some(crc)) = (le_u32(rest, 0), le_u32(rest, 4)) else {
            if at_end {
                out.read.torn_tail_bytes = Some(rest.len() as u64);
                pos = bytes.len();
            } else {
                out.wants = Some(HEADER_BYTES);
            }
            break;
        };
        if len > MAX_RECORD_BYTES {
            out.read.lost_framing_bytes = Some(rest.len() as u64);
            pos = bytes.len();
            break;
        }
        let end = HEADER_BYTES + len as usize;
        let Some(payload) = rest.get(HEADER_BYTES..end) else {
            if at_end {
                out.read.torn_tail_bytes = Some(rest.len() as u64);
                pos = bytes.len();
            } else {
                out.wants = Some(end);
            }
            break;
        };
        pos += end;
        if crc32fast::hash(payload) != crc {
            out.read.corrupt_records += 1;
            continue;
        }
        match serde_json::from_slice::<Event>(payload) {
            Ok(event) => out.read.events.push(event),
            Err(_) => out.read.corrupt_records += 1,
        }
    }
    out.consumed = pos;
    out
}

/// Reads a whole segment file without reporting (the decoding rules of [`decode`]).
pub fn read_segment_file(path: &Path) -> io::Result<SegmentRead> {
    let bytes = fs::read(path)?;
    Ok(decode(&bytes, true, usize::MAX).read)
}

/// A little-endian `u32` at `at`, if the bytes are there.
fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// The file for segment `seq`.
pub(super) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
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

/// Makes new directory entries durable; best effort.
pub(super) fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The checkpoint's text for `confirmed` (sequence → confirmed bytes).
fn checkpoint_text(confirmed: &BTreeMap<u64, u64>) -> String {
    let mut body = format!("{CHECKPOINT_MAGIC}\n");
    for (seq, at) in confirmed {
        body.push_str(&format!("{seq} {at}\n"));
    }
    let crc = crc32fast::hash(body.as_bytes());
    body.push_str(&format!("crc {crc:08x}\n"));
    body
}

/// Replaces the checkpoint in `dir`. `durable` fsyncs it before the rename.
pub(super) fn write_checkpoint(
    dir: &Path,
    confirmed: &BTreeMap<u64, u64>,
    durable: bool,
) -> io::Result<()> {
    let tmp = dir.join(CHECKPOINT_TMP);
    let mut file = File::create(&tmp)?;
    file.write_all(checkpoint_text(confirmed).as_bytes())?;
    if durable {
        file.sync_data()?;
    }
    drop(file);
    fs::rename(&tmp, dir.join(CHECKPOINT_FILE))
}

/// The checkpoint in `dir`; empty when missing or damaged.
pub(super) fn read_checkpoint(dir: &Path) -> BTreeMap<u64, u64> {
    fs::read_to_string(dir.join(CHECKPOINT_FILE))
        .ok()
        .and_then(|text| parse_checkpoint(&text))
        .unwrap_or_default()
}

/// Parses a checkpoint's text; `None` if it is not one, or its checksum does not match.
fn parse_checkpoint(text: &str) -> Option<BTreeMap<u64, u64>> {
    let body_end = text.rfind("crc ")?;
    let (body, crc_line) = text.split_at(body_end);
    let crc = u32::from_str_radix(crc_line.strip_prefix("crc ")?.trim(), 16).ok()?;
    if crc32fast::hash(body.as_bytes()) != crc {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != CHECKPOINT_MAGIC {
        return None;
    }
    let mut confirmed = BTreeMap::new();
    for line in lines {
        let (seq, at) = line.split_once(' ')?;
        confirmed.insert(seq.parse().ok()?, at.parse().ok()?);
    }
    Some(confirmed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_damage_reads_as_empty() {
        let mut confirmed = BTreeMap::new();
        confirmed.insert(3, 120);
        confirmed.insert(17, 4096);
        let text = checkpoint_text(&confirmed);
        assert_eq!(parse_checkpoint(&text), Some(confirmed));
        assert_eq!(parse_checkpoint(&text.replace("4096", "4097")), None);
        assert_eq!(parse_checkpoint("garbage"), None);
        assert_eq!(parse_checkpoint(""), None);
    }

    #[test]
    fn a_record_that_does_not_fit_waits_for_the_next_read() {
        let event = Event::new("t", "s", "k", serde_json::json!({"n": 1}));
        let mut bytes = encode(&event).unwrap();
        let one = bytes.len();
        bytes.extend(encode(&event).unwrap());
        let cut = &bytes[..one + 5];
        let mid = decode(cut, false, usize::MAX);
        assert_eq!((mid.read.events.len(), mid.consumed), (1, one));
        assert_eq!(mid.wants, Some(HEADER_BYTES));
        assert!(!mid.read.damaged());
        let torn = decode(cut, true, usize::MAX);
        assert_eq!(torn.read.torn_tail_bytes, Some(5));
        assert_eq!(torn.consumed, cut.len());
        let limited = decode(&bytes, false, 1);
        assert_eq!((limited.read.events.len(), limited.consumed), (1, one));
    }
}
