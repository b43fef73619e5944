//! The flusher's side of the journal: taking memory copies, confirming them, reading the
//! disk backlog, deleting confirmed segments, the checkpoint and the batch fsync.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::format::{decode, sync_dir, write_checkpoint};
use super::{
    Backlog, CHECKPOINT_EVERY, FsyncPolicy, Journal, Pending, READ_CHUNK_BYTES, Seg, SegmentRead,
    Taken, encode, lock,
};
use crate::pipeline::event::Event;

impl Journal {
    /// Whether new records are kept in memory. The flusher turns this off while the store
    /// is down (the events are on disk anyway) and on again once it answers.
    pub fn set_memory(&self, on: bool) {
        self.memory.store(on, Ordering::Relaxed);
    }

    /// Takes up to `max` events from memory, oldest first within each shard. Copies whose
    /// segment is now read from disk are discarded on the way.
    pub fn take(&self, max: usize) -> Taken {
        let mut taken = Taken::default();
        let n = self.shards.len();
        let start = self.take_from.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if taken.events.len() >= max {
                break;
            }
            let mut shard = lock(&self.shards[(start + i) % n]);
            let mut popped = 0;
            while taken.events.len() < max {
                let Some(pending) = shard.queue.pop_front() else {
                    break;
                };
                popped += 1;
                if pending
                    .at
                    .as_ref()
                    .is_some_and(|at| !at.seg.mem.load(Ordering::Acquire))
                {
                    continue;
                }
                taken.push(pending);
            }
            drop(shard);
            self.queued.fetch_sub(popped, Ordering::AcqRel);
        }
        taken
    }

    /// The store has `taken`: moves each segment's confirmed point past it.
    pub fn confirm(&self, mut taken: Taken) {
        for mark in std::mem::take(&mut taken.marks) {
            let mut confirmed = lock(&mark.seg.confirmed);
            // A segment switched to disk meanwhile is confirmed by the disk reader only.
            if mark.seg.mem.load(Ordering::Acquire) && *confirmed < mark.end {
                *confirmed = mark.end;
            }
        }
    }

    /// Forgets a batch the store did not take: its segments are read from disk from their
    /// confirmed point from now on. Events in it that were never written are written now;
    /// those that still cannot be are kept in memory if there is room, else dropped and
    /// counted. Returns the number of events now on disk only.
    pub fn forget(&self, mut taken: Taken) -> u64 {
        for mark in std::mem::take(&mut taken.marks) {
            mark.seg.to_disk();
        }
        let mut unwritten = Vec::new();
        let mut forgotten = 0u64;
        let mut not_on_disk = taken.unwritten.iter().copied().peekable();
        for (i, event) in std::mem::take(&mut taken.events).into_iter().enumerate() {
            if not_on_disk.next_if_eq(&i).is_some() {
                unwritten.push(event);
            } else {
                forgotten += 1;
            }
        }
        forgotten += self.write_unwritten(unwritten);
        self.spilled.fetch_add(forgotten, Ordering::Relaxed);
        forgotten
    }

    /// Forgets every memory copy (the store is down): like [`Journal::forget`] for all that
    /// is queued. Returns the number of events now on disk only.
    pub fn drop_memory(&self) -> u64 {
        let mut unwritten = Vec::new();
        let mut forgotten = 0u64;
        for shard in self.shards.iter() {
            let queue = std::mem::take(&mut lock(shard).queue);
            self.queued.fetch_sub(queue.len(), Ordering::AcqRel);
            for pending in queue {
                match pending.at {
                    Some(at) => {
                        if at.seg.mem.load(Ordering::Acquire) {
                            at.seg.to_disk();
                        }
                        forgotten += 1;
                    }
                    None => unwritten.push(pending.event),
                }
            }
        }
        forgotten += self.write_unwritten(unwritten);
        self.spilled.fetch_add(forgotten, Ordering::Relaxed);
        forgotten
    }

    /// Writes events that are not on disk yet; keeps in memory (or drops and counts) those
    /// that still cannot be written. Returns how many were written.
    fn write_unwritten(&self, events: Vec<Arc<Event>>) -> u64 {
        let mut written = 0;
        for event in events {
            match self.append_disk_only(event) {
                None => written += 1,
                Some(event) => match self.reserve() {
                    Some(_) => lock(&self.shards[0])
                        .queue
                        .push_back(Pending { event, at: None }),
                    None => {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                },
            }
        }
        written
    }

    /// Writes an event that has no memory copy; its segment is read from disk from now on.
    /// Gives the event back if it could not be written.
    fn append_disk_only(&self, event: Arc<Event>) -> Option<Arc<Event>> {
        let record = match encode(&event) {
            Ok(record) => record,
            Err(error) => {
                self.write_failed(&error);
                return Some(event);
            }
        };
        let (index, mut shard) = self.lock_shard();
        match self.write(index, &mut shard, &record) {
            Ok(at) => {
                at.seg.to_disk();
                None
            }
            Err(error) => {
                self.write_failed(&error);
                Some(event)
            }
        }
    }

    /// The next run of at most `max_events` events to replay from disk: the oldest segment
    /// without memory copies that the store has not confirmed to its end. An open segment
    /// read this way is sealed first when memory has room again, so new records go back to
    /// being kept in memory. `None` when there is nothing to read.
    pub fn backlog(&self, max_events: usize) -> io::Result<Option<Backlog>> {
        let segments: Vec<Arc<Seg>> = lock(&self.segments).values().cloned().collect();
        for seg in segments {
            if seg.mem.load(Ordering::Acquire) {
                continue;
            }
            if !seg.sealed.load(Ordering::Acquire) && self.has_room() {
                self.seal_segment(&seg);
            }
            let from = *lock(&seg.confirmed);
            let sealed = seg.sealed.load(Ordering::Acquire);
            let written = seg.written.load(Ordering::Acquire);
            if from >= written {
                continue;
            }
            let mut want = READ_CHUNK_BYTES as u64;
            loop {
                let to = written.min(from.saturating_add(want));
                let bytes = read_range(&seg, from, to)?;
                let at_end = sealed && to == written;
                let decoded = decode(&bytes, at_end, max_events.max(1));
                if decoded.consumed == 0 {
                    match decoded.wants {
                        // One record longer than the chunk: read it whole.
                        Some(needs) if needs as u64 > want && to < written => {
                            want = needs as u64;
                            continue;
                        }
                        // The file is shorter than what was written to it: cut under us.
                        _ => {
                            let mut read = decoded.read;
                            read.torn_tail_bytes = Some(written - from);
                            self.report_damage(&seg, &read);
                            return Ok(Some(Backlog {
                                events: shared(read.events),
                                seg,
                                to: written,
                            }));
                        }
                    }
                }
                self.report_damage(&seg, &decoded.read);
                return Ok(Some(Backlog {
                    events: shared(decoded.read.events),
                    to: from + decoded.consumed as u64,
                    seg,
                }));
            }
        }
        Ok(None)
    }

    /// The store has the backlog run: its segment is confirmed past it.
    pub fn confirm_backlog(&self, backlog: &Backlog) {
        let mut confirmed = lock(&backlog.seg.confirmed);
        if *confirmed < backlog.to {
            *confirmed = backlog.to;
        }
    }

    /// Whether memory is on and at most half full.
    fn has_room(&self) -> bool {
        self.memory.load(Ordering::Relaxed)
            && self.queued.load(Ordering::Relaxed) < self.capacity / 2
    }

    /// Seals `seg` if its shard is still writing it.
    fn seal_segment(&self, seg: &Arc<Seg>) {
        let Some(index) = seg.shard else {
            return;
        };
        let mut shard = lock(&self.shards[index]);
        if shard
            .writer
            .as_ref()
            .is_some_and(|w| Arc::ptr_eq(&w.seg, seg))
        {
            self.seal_writer(&mut shard);
        }
    }

    /// Counts damage found while reading and reports it with one `warn` line.
    fn report_damage(&self, seg: &Seg, read: &SegmentRead) {
        if !read.damaged() {
            return;
        }
        self.corrupt_records
            .fetch_add(read.corrupt_records, Ordering::Relaxed);
        if read.torn_tail_bytes.is_some() || read.lost_framing_bytes.is_some() {
            self.torn_tails.fetch_add(1, Ordering::Relaxed);
        }
        tracing::warn!(
            segment = %seg.path.display(),
            intact = read.events.len(),
            corrupt_records = read.corrupt_records,
            torn_tail_bytes = read.torn_tail_bytes,
            lost_framing_bytes = read.lost_framing_bytes,
            "event journal segment damaged; skipping the damaged part"
        );
    }

    /// Deletes every sealed segment the store has confirmed to its end; returns how many.
    pub fn collect(&self) -> io::Result<usize> {
        let done: Vec<Arc<Seg>> = lock(&self.segments)
            .values()
            .filter(|s| s.done())
            .cloned()
            .collect();
        for seg in &done {
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            lock(&self.segments).remove(&seg.seq);
            let len = seg.written.load(Ordering::Acquire);
            let _ = self
                .bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                    Some(b.saturating_sub(len))
                });
            tracing::trace!(segment = seg.seq, "journal segment confirmed and deleted");
        }
        Ok(done.len())
    }

    /// Writes the confirmed points to the checkpoint file if they moved, at most every
    /// 100 ms unless `force`.
    pub fn checkpoint(&self, force: bool) -> io::Result<()> {
        let mut book = lock(&self.checkpoint);
        if !force && book.at.is_some_and(|at| at.elapsed() < CHECKPOINT_EVERY) {
            return Ok(());
        }
        let confirmed: BTreeMap<u64, u64> = lock(&self.segments)
            .values()
            .filter_map(|s| {
                let at = *lock(&s.confirmed);
                (at > 0).then_some((s.seq, at))
            })
            .collect();
        if book.written.as_ref() == Some(&confirmed) {
            return Ok(());
        }
        write_checkpoint(
            &self.settings.dir,
            &confirmed,
            self.settings.fsync == FsyncPolicy::Always,
        )?;
        book.written = Some(confirmed);
        book.at = Some(Instant::now());
        Ok(())
    }

    /// Fsyncs every segment written since the last call, and the directory if a segment
    /// was created (policy `batch`; the other policies need nothing here). Blocks on the
    /// disk: call it off the async threads.
    pub fn sync(&self) -> io::Result<()> {
        if self.settings.fsync != FsyncPolicy::Batch {
            return Ok(());
        }
        let dirty: Vec<Arc<Seg>> = lock(&self.segments)
            .values()
            .filter(|s| s.needs_sync.load(Ordering::Acquire))
            .cloned()
            .collect();
        let mut result = Ok(());
        for seg in dirty {
            if !seg.needs_sync.swap(false, Ordering::AcqRel) {
                continue;
            }
            let file = lock(&seg.file).clone();
            let synced = match file {
                Some(file) => file.sync_data(),
                None => File::open(&seg.path).and_then(|f| f.sync_data()),
            };
            if let Err(error) = synced {
                seg.needs_sync.store(true, Ordering::Release);
                result = Err(error);
            } else if seg.sealed.load(Ordering::Acquire) {
                lock(&seg.file).take();
            }
        }
        if self.dir_dirty.swap(false, Ordering::AcqRel) {
            sync_dir(&self.settings.dir);
        }
        result
    }
}

/// Bytes `from..to` of a segment (fewer if the file is shorter).
fn read_range(seg: &Seg, from: u64, to: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(&seg.path)?;
    file.seek(SeekFrom::Start(from))?;
    let len = to.saturating_sub(from);
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Events read back from disk, as a batch for the store.
fn shared(events: Vec<Event>) -> Vec<Arc<Event>> {
    events.into_iter().map(Arc::new).collect()
}
