#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use super::*;
use serde_json::json;
use std::collections::BTreeSet;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("exai-journal-{name}-{}", uuid::Uuid::new_v4()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn settings(dir: &Path, segment_bytes: u64, shards: usize) -> JournalSettings {
    JournalSettings {
        segment_bytes,
        shards,
        ..JournalSettings::new(dir)
    }
}

fn event(n: i64) -> Event {
    Event::new("t", "s", "x.y", json!({ "n": n }))
}

fn ns(events: &[Arc<Event>]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e.data["n"].as_i64().unwrap())
        .collect()
}

/// Reads the whole backlog, confirming each run; the events in order.
fn replay(journal: &Journal) -> Vec<Arc<Event>> {
    let mut out = Vec::new();
    while let Some(run) = journal.backlog(7).unwrap() {
        out.extend(run.events.iter().cloned());
        journal.confirm_backlog(&run);
    }
    out
}

#[test]
fn segments_rotate_and_are_deleted_once_confirmed() {
    let dir = temp_dir("rotate");
    let journal = Journal::open(settings(&dir, 600, 1), 1000).unwrap();
    for n in 0..40 {
        assert!(matches!(journal.append(event(n)), Appended::Queued(_)));
    }
    let on_disk = list_segments(&dir).unwrap().len();
    assert!(on_disk > 3, "small segments roll over: {on_disk}");
    let bytes = journal.bytes();
    assert!(bytes > 0);

    // Confirm the first half: only sealed segments wholly before it can go.
    let first = journal.take(20);
    assert_eq!(ns(&first.events), (0..20).collect::<Vec<_>>());
    journal.confirm(first);
    let deleted = journal.collect().unwrap();
    assert!(deleted >= 1 && deleted < on_disk, "{deleted} of {on_disk}");
    assert!(journal.bytes() < bytes);

    // Confirm the rest: every sealed segment goes, the open one stays.
    let rest = journal.take(100);
    assert_eq!(ns(&rest.events), (20..40).collect::<Vec<_>>());
    journal.confirm(rest);
    journal.collect().unwrap();
    assert_eq!(
        list_segments(&dir).unwrap().len(),
        1,
        "only the open segment"
    );
    assert_eq!(journal.backlog_bytes(), 0);
    assert!(journal.backlog(10).unwrap().is_none(), "nothing to replay");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_restart_replays_from_the_checkpoint() {
    let dir = temp_dir("checkpoint");
    {
        let journal = Journal::open(settings(&dir, 1 << 20, 1), 1000).unwrap();
        for n in 0..10 {
            journal.append(event(n));
        }
        let stored = journal.take(6);
        journal.confirm(stored);
        journal.checkpoint(true).unwrap();
        // Confirmed in memory but not checkpointed: replayed again (harmless).
        let more = journal.take(2);
        journal.confirm(more);
    } // kill -9: nothing else happens.
    let journal = Journal::open(settings(&dir, 1 << 20, 1), 1000).unwrap();
    assert!(journal.backlog_bytes() > 0);
    journal.append(event(10));
    let replayed = replay(&journal);
    assert_eq!(
        ns(&replayed),
        vec![6, 7, 8, 9],
        "from the confirmed point on"
    );
    assert_eq!(
        journal.collect().unwrap(),
        1,
        "the replayed segment is deleted"
    );
    assert_eq!(ns(&journal.take(10).events), vec![10]);

    // Without a usable checkpoint everything is replayed (the store deduplicates).
    fs::write(
        dir.join("checkpoint"),
        b"exai-journal-checkpoint 1\n1 99\ncrc 0\n",
    )
    .unwrap();
    drop(journal);
    let journal = Journal::open(settings(&dir, 1 << 20, 1), 1000).unwrap();
    assert_eq!(ns(&replay(&journal)), vec![10]);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_fully_confirmed_leftover_is_deleted_at_open() {
    let dir = temp_dir("leftover");
    {
        let journal = Journal::open(settings(&dir, 1 << 20, 2), 1000).unwrap();
        for n in 0..5 {
            journal.append(event(n));
        }
        journal.confirm(journal.take(10));
        journal.checkpoint(true).unwrap();
    }
    assert!(!list_segments(&dir).unwrap().is_empty());
    let journal = Journal::open(settings(&dir, 1 << 20, 2), 1000).unwrap();
    assert!(list_segments(&dir).unwrap().is_empty());
    assert_eq!((journal.bytes(), journal.backlog_bytes()), (0, 0));
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn torn_tail_is_reported_once_and_skipped() {
    let dir = temp_dir("torn");
    {
        let journal = Journal::open(settings(&dir, 1 << 20, 1), 1000).unwrap();
        for n in 0..10 {
            journal.append(event(n));
        }
    }
    // Cut the last record in half, as a kill -9 mid-write would.
    let segment = list_segments(&dir).unwrap().remove(0);
    let len = fs::metadata(&segment.path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&segment.path).unwrap();
    file.set_len(len - 20).unwrap();
    drop(file);
    let journal = Journal::open(settings(&dir, 1 << 20, 1), 1000).unwrap();
    journal.append(event(10));
    journal.drop_memory();
    let all = replay(&journal);
    assert_eq!(ns(&all), vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 10]);
    assert_eq!(journal.torn_tails(), 1);
    // A header cut short is torn too.
    assert_eq!(
        format::decode(&[1, 0, 0], true, usize::MAX)
            .read
            .torn_tail_bytes,
        Some(3)
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn corrupt_middle_record_is_skipped_and_reading_continues() {
    let dir = temp_dir("crc");
    {
        let journal = Journal::open(settings(&dir, 1 << 20, 1), 1000).unwrap();
        for n in 0..5 {
            journal.append(event(n));
        }
    }
    let segment = list_segments(&dir).unwrap().remove(0);
    let mut bytes = fs::read(&segment.path).unwrap();
    // Flip a payload byte of the third record.
    let mut pos = 0;
    for _ in 0..2 {
        pos += HEADER_BYTES + u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
    }
    bytes[pos + HEADER_BYTES + 3] ^= 0xff;
    fs::write(&segment.path, &bytes).unwrap();
    let journal = Journal::open(settings(&dir, 1 << 20, 1), 1000).unwrap();
    assert_eq!(ns(&replay(&journal)), vec![0, 1, 3, 4]);
    assert_eq!(journal.corrupt_records(), 1);
    assert_eq!(journal.torn_tails(), 0);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn insane_length_skips_only_the_rest_of_its_segment() {
    let mut bytes = encode(&event(0)).unwrap();
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    bytes.extend_from_slice(&[0; 20]);
    let decoded = format::decode(&bytes, true, usize::MAX);
    assert_eq!(decoded.read.events.len(), 1);
    assert_eq!(decoded.read.lost_framing_bytes, Some(24));
    assert_eq!(decoded.consumed, bytes.len());
}

#[test]
fn full_memory_goes_to_disk_and_nothing_is_lost_or_reordered() {
    let dir = temp_dir("full");
    let journal = Journal::open(settings(&dir, 1 << 20, 1), 3).unwrap();
    let outcomes: Vec<Appended> = (0..5).map(|n| journal.append(event(n))).collect();
    assert_eq!(
        outcomes,
        vec![
            Appended::Queued(1),
            Appended::Queued(2),
            Appended::Queued(3),
            Appended::DiskOnly,
            Appended::DiskOnly
        ]
    );
    assert_eq!(journal.queued(), 3);
    // The segment is read from disk now; its memory copies are discarded.
    assert!(journal.take(10).is_empty());
    assert_eq!(journal.queued(), 0);
    assert_eq!(ns(&replay(&journal)), vec![0, 1, 2, 3, 4]);
    // Memory has room again: the next records go to a new segment kept in memory.
    journal.append(event(5));
    assert_eq!(journal.queued(), 1);
    assert_eq!(journal.collect().unwrap(), 1);
    assert_eq!(ns(&journal.take(10).events), vec![5]);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_batch_the_store_did_not_take_is_read_back_from_disk() {
    let dir = temp_dir("forget");
    let journal = Journal::open(settings(&dir, 1 << 20, 2), 100).unwrap();
    for n in 0..6 {
        journal.append(event(n));
    }
    let failed = journal.take(4);
    assert_eq!(failed.events.len(), 4);
    assert_eq!(journal.forget(failed), 4);
    let mut got: Vec<i64> = ns(&replay(&journal));
    got.extend(ns(&journal.take(10).events));
    got.sort_unstable();
    assert_eq!(got, (0..6).collect::<Vec<_>>(), "{got:?}");

    // A batch dropped unreported (the flusher stopped mid-insert) is safe too.
    for n in 6..9 {
        journal.append(event(n));
    }
    drop(journal.take(10));
    let mut got: BTreeSet<i64> = ns(&replay(&journal)).into_iter().collect();
    got.extend(ns(&journal.take(10).events));
    assert!((6..9).all(|n| got.contains(&n)), "{got:?}");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn with_memory_off_events_wait_on_disk() {
    let dir = temp_dir("off");
    let journal = Journal::open(settings(&dir, 1 << 20, 2), 100).unwrap();
    journal.append(event(0));
    journal.set_memory(false);
    assert_eq!(journal.drop_memory(), 1);
    for n in 1..4 {
        assert_eq!(journal.append(event(n)), Appended::DiskOnly);
    }
    assert_eq!((journal.queued(), journal.spilled()), (0, 4));
    assert!(journal.backlog_bytes() > 0);
    journal.set_memory(true);
    assert_eq!(ns(&replay(&journal)), vec![0, 1, 2, 3]);
    assert_eq!(journal.backlog_bytes(), 0);
    journal.collect().unwrap();
    assert!(list_segments(&dir).unwrap().is_empty(), "read and deleted");
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn concurrent_recording_threads_lose_nothing() {
    let dir = temp_dir("threads");
    let journal = Arc::new(Journal::open(settings(&dir, 4096, 4), 200).unwrap());
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let journal = journal.clone();
            std::thread::spawn(move || {
                for i in 0..2000 {
                    journal.append(event(t * 10_000 + i));
                }
            })
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut drain = |journal: &Journal| {
        while let Some(run) = journal.backlog(100).unwrap() {
            seen.extend(ns(&run.events));
            journal.confirm_backlog(&run);
        }
        let taken = journal.take(300);
        seen.extend(ns(&taken.events));
        journal.confirm(taken);
        journal.collect().unwrap();
    };
    while !threads.iter().all(|t| t.is_finished()) {
        drain(&journal);
    }
    for t in threads {
        t.join().unwrap();
    }
    for _ in 0..3 {
        drain(&journal);
    }
    assert_eq!(seen.len(), 8000, "every event delivered");
    assert_eq!(journal.appended(), 8000);
    assert_eq!(journal.backlog_bytes(), 0);
    assert!(
        list_segments(&dir).unwrap().len() <= 4,
        "at most the open segments remain"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn batch_fsync_covers_what_was_written() {
    let dir = temp_dir("sync");
    let journal = Journal::open(settings(&dir, 1 << 20, 1), 100).unwrap();
    journal.append(event(0));
    let dirty = || {
        lock(&journal.segments)
            .values()
            .any(|s| s.needs_sync.load(Ordering::Acquire))
    };
    assert!(dirty());
    journal.sync().unwrap();
    assert!(!dirty());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn fsync_policy_parses() {
    assert_eq!("always".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Always));
    assert_eq!("batch".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Batch));
    assert_eq!("never".parse::<FsyncPolicy>(), Ok(FsyncPolicy::Never));
    assert!("sometimes".parse::<FsyncPolicy>().is_err());
}
