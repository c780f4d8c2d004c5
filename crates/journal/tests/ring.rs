//! Ring journal: wrap-around, replay after a wrap, torn and damaged records, stale records of
//! earlier passes, a full journal (bounded wait), and the in-place log's scan and publish.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use shale_format::record::{self, Op};
use shale_format::segment::{EntryKind, JournalMark};
use shale_journal::{InPlaceLog, LogDevice, RingJournal};
use shale_store::PutMode;

const SIZE: u64 = (1 << 20) + 16384 + 8192;

fn op(lba: u64, sectors: u32) -> Op {
    Op {
        lba,
        len: sectors,
        kind: EntryKind::Data,
    }
}

fn data(seed: u8, sectors: u32) -> Vec<u8> {
    vec![seed; sectors as usize * 512]
}

fn env(ms: u64) -> shale_journal::RingEnv {
    shale_journal::RingEnv {
        full_wait: Duration::from_millis(ms),
        clock: shale_clock::system(),
        fresh_id: 0x1234_5678_9abc_def1,
    }
}

fn open(path: &std::path::Path, mark: JournalMark) -> (RingJournal, Vec<shale_journal::Replayed>) {
    RingJournal::open(path, SIZE, 7, mark, env(200)).unwrap()
}

#[test]
fn replay_after_wraps_returns_exactly_the_unreleased_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let (j, rep) = open(&path, JournalMark::default());
    assert!(rep.is_empty());
    let mut out = Vec::new();
    // ~60 KiB records; release all but the last 5 as we go: several passes over the ring.
    let mut seqs = Vec::new();
    for i in 0..100u32 {
        let s = j
            .append(
                &[op(i as u64 * 8, 120)],
                &data(i as u8, 120),
                &mut out,
                (0, 0),
            )
            .unwrap();
        seqs.push((s, i));
        if seqs.len() > 5 {
            j.release(seqs[seqs.len() - 6].0);
        }
    }
    assert!(
        seqs.last().unwrap().0 > 100,
        "wrap markers consume numbers too"
    );
    let released = seqs[seqs.len() - 6].0;
    drop(j);
    let (j, rep) = open(
        &path,
        JournalMark {
            journal_id: 0,
            jseq: 0,
        },
    );
    // Base mark matches (fresh journal started at the default mark): everything live replays.
    let got: Vec<u8> = rep
        .iter()
        .map(|r| r.bytes[record::header_sectors(1) as usize * 512])
        .collect();
    assert!(rep.len() >= 5, "got {}", rep.len());
    assert_eq!(&got[got.len() - 5..], &[95, 96, 97, 98, 99]);
    // With the store at `released` of this journal, only later records come back.
    let id = j.id();
    drop(j);
    let (_j, rep) = open(
        &path,
        JournalMark {
            journal_id: id,
            jseq: released,
        },
    );
    let got: Vec<u8> = rep.iter().map(|r| r.bytes[512]).collect();
    assert_eq!(got, vec![95, 96, 97, 98, 99]);
}

#[test]
fn torn_and_damaged_records_end_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let (j, _) = open(&path, JournalMark::default());
    let mut out = Vec::new();
    for i in 0..6u32 {
        j.append(&[op(i as u64, 8)], &data(10 + i as u8, 8), &mut out, (0, 0))
            .unwrap();
    }
    drop(j);
    // Record layout: 4096 superblock, then 6 records of 512 + 4096 bytes.
    let rec = 512 + 4096;
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    // Tear the last record (half its data is old), damage the fourth.
    f.write_all_at(&[0u8; 2048], 4096 + 5 * rec + 512 + 2048)
        .unwrap();
    f.write_all_at(&[0xffu8; 1], 4096 + 3 * rec + 700).unwrap();
    drop(f);
    let (_j, rep) = open(&path, JournalMark::default());
    let got: Vec<u8> = rep.iter().map(|r| r.bytes[512]).collect();
    assert_eq!(
        got,
        vec![10, 11, 12],
        "replay must stop at the damaged record"
    );
}

#[test]
fn stale_records_of_an_earlier_pass_are_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let (j, _) = open(&path, JournalMark::default());
    let mut out = Vec::new();
    let mut last = 0;
    for i in 0..40u32 {
        last = j
            .append(&[op(i as u64, 120)], &data(i as u8, 120), &mut out, (0, 0))
            .unwrap();
        j.release(last); // everything stored at once
    }
    let id = j.id();
    // One new record after many released ones: the ring around it is full of valid-looking
    // stale records of the same journal.
    let s = j
        .append(&[op(1, 8)], &data(200, 8), &mut out, (0, 0))
        .unwrap();
    drop(j);
    let (_j, rep) = open(
        &path,
        JournalMark {
            journal_id: id,
            jseq: last,
        },
    );
    assert_eq!(rep.len(), 1);
    assert_eq!(rep[0].seq, s);
    assert_eq!(rep[0].bytes[512], 200);
}

#[test]
fn a_journal_the_store_moved_past_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let (j, _) = open(&path, JournalMark::default());
    let mut out = Vec::new();
    j.append(&[op(0, 8)], &data(1, 8), &mut out, (0, 0))
        .unwrap();
    drop(j);
    // Another journal (another host) has written since: this one is stale.
    let (_j, rep) = open(
        &path,
        JournalMark {
            journal_id: 12345,
            jseq: 9,
        },
    );
    assert!(rep.is_empty());
    // And a lost journal file is simply a fresh one.
    std::fs::remove_file(&path).unwrap();
    let (_j, rep) = open(
        &path,
        JournalMark {
            journal_id: 12345,
            jseq: 9,
        },
    );
    assert!(rep.is_empty());
}

#[test]
fn a_full_journal_waits_a_bounded_time_then_fails_and_recovers_when_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let (j, _) = open(&path, JournalMark::default());
    let mut out = Vec::new();
    let mut seqs = Vec::new();
    let t = Instant::now();
    let err = loop {
        match j.append(&[op(0, 1000)], &data(3, 1000), &mut out, (0, 0)) {
            Ok(s) => seqs.push(s),
            Err(e) => break e,
        }
        assert!(t.elapsed() < Duration::from_secs(10), "never filled");
    };
    assert_eq!(err.kind(), shale_error::ErrorKind::Unavailable, "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the wait must be bounded"
    );
    let st = j.stats();
    assert!(st.full_waits >= 1 && st.used > 0, "{st:?}");
    // Releasing space (the store took the data) lets writers continue.
    j.release(*seqs.last().unwrap());
    j.append(&[op(0, 1000)], &data(4, 1000), &mut out, (0, 0))
        .unwrap();
}

#[test]
fn in_place_staging_scan_and_publish() {
    use shale_journal::{DirStaging, StagedFile, Staging};
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn shale_store::ObjectStore> =
        std::sync::Arc::new(shale_store::LocalStore::open(dir.path()).unwrap());
    let prefix = "p/images/i/";
    let staging = std::sync::Arc::new(DirStaging::new(store.clone(), prefix).unwrap());
    let log = InPlaceLog::new(99, 1, 65536, staging.clone(), 3);
    let mut seg_data = Vec::new();
    for i in 0..3u32 {
        let at = seg_data.len() as u64;
        let mut out = Vec::new();
        log.append(
            &[op(i as u64 * 8, 8)],
            &data(i as u8 + 1, 8),
            &mut out,
            (5, at),
        )
        .unwrap();
        seg_data.extend_from_slice(&out);
    }
    log.sync().unwrap();
    let f = StagedFile {
        epoch: 3,
        seq: 5,
        adopted: false,
    };
    assert_eq!(staging.list().unwrap(), vec![f]);
    let (file, len) = staging.read(&f).unwrap();
    let recs = InPlaceLog::scan(file.as_ref(), len, 65536, Some((99, 1))).unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs[2].off, 2 * (512 + 4096));
    assert!(
        InPlaceLog::scan(file.as_ref(), len, 65536, Some((99, 2)))
            .unwrap()
            .is_empty(),
        "wrong first record"
    );
    let header = vec![0xAB; 65536];
    staging.publish(&f, &header, seg_data.len() as u64).unwrap();
    let (bytes, _) = store.get("p/images/i/seg/0000000000000005").unwrap();
    assert_eq!(&bytes[..65536], &header[..]);
    assert_eq!(&bytes[65536..65536 + seg_data.len()], &seg_data[..]);
    assert_eq!(bytes.len() % 4096, 0);
    assert!(staging.list().unwrap().is_empty());
    // A takeover adopts older writers' staging files.
    let log = InPlaceLog::new(98, 1, 65536, staging.clone(), 3);
    let mut out = Vec::new();
    log.append(&[op(0, 8)], &data(7, 8), &mut out, (6, 0))
        .unwrap();
    staging.adopt(4).unwrap();
    assert_eq!(
        staging.list().unwrap(),
        vec![StagedFile {
            epoch: 3,
            seq: 6,
            adopted: true
        }]
    );
}

/// Suspected and confirmed: a superblock whose tail sat exactly at the end of the file was
/// rejected on reopen and the journal started afresh, dropping its records.
#[test]
fn a_tail_at_the_very_end_of_the_file_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let (j, _) = open(&path, JournalMark::default());
    let id = j.id();
    drop(j);
    // Forge the state: a superblock whose tail is the end of the file and a record at the
    // start (where replay continues). Written as version 1 (one life, records carry the
    // journal id): files of earlier releases stay readable.
    let mut sb = vec![0u8; 4096];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact_at(&mut sb, 0)
        .unwrap();
    let size = SIZE / 4096 * 4096;
    sb[16 + 5 * 8..16 + 6 * 8].copy_from_slice(&size.to_le_bytes()); // tail_off
    sb[16 + 6 * 8..16 + 7 * 8].copy_from_slice(&5u64.to_le_bytes()); // tail_seq
    sb[8..12].copy_from_slice(&1u32.to_le_bytes()); // version 1
    sb[12..16].copy_from_slice(&0u32.to_le_bytes());
    let crc = crc32c::crc32c(&sb[..72]);
    sb[72..76].copy_from_slice(&crc.to_le_bytes());
    let mut rec = Vec::new();
    record::encode_into(
        &mut rec,
        id,
        5,
        record::RecordKind::Ops,
        &[op(0, 8)],
        &data(9, 8),
    );
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&sb, 0).unwrap();
    f.write_all_at(&rec, 4096).unwrap();
    drop(f);
    let (j, rep) = open(
        &path,
        JournalMark {
            journal_id: id,
            jseq: 4,
        },
    );
    assert_eq!(j.id(), id, "the journal was started afresh");
    assert_eq!(rep.len(), 1, "the record after the tail was lost");
    assert_eq!(rep[0].seq, 5);
}

/// Suspected and confirmed: a superblock with a bad checksum was taken for "no journal" and
/// the file started afresh. It must be refused with an error that says what to do.
#[test]
fn a_damaged_superblock_is_an_error_not_a_fresh_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let (j, _) = open(&path, JournalMark::default());
    let mut out = Vec::new();
    j.append(&[op(0, 8)], &data(1, 8), &mut out, (0, 0))
        .unwrap();
    drop(j);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&[0xff; 4], 20).unwrap();
    drop(f);
    let e = RingJournal::open(&path, SIZE, 7, JournalMark::default(), env(100)).unwrap_err();
    assert_eq!(e.kind(), shale_error::ErrorKind::Corruption, "{e}");
    assert!(e.to_string().contains("Move it away"), "{e}");
}

/// Suspected and confirmed: after a power loss the file can lose records the store already
/// holds; numbering then restarted below the store's mark and later records were skipped as
/// "already stored" at the next recovery.
#[test]
fn numbering_continues_past_what_the_store_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let (j, _) = open(&path, JournalMark::default());
    let id = j.id();
    let mut out = Vec::new();
    let s1 = j
        .append(&[op(0, 8)], &data(1, 8), &mut out, (0, 0))
        .unwrap();
    drop(j);
    // The store has records up to s1 + 5 of this journal (they were uploaded, then the file
    // lost them).
    let mark = JournalMark {
        journal_id: id,
        jseq: s1 + 5,
    };
    let (j, rep) = open(&path, mark);
    assert!(rep.is_empty());
    let s = j
        .append(&[op(8, 8)], &data(2, 8), &mut out, (0, 0))
        .unwrap();
    assert!(
        s > s1 + 5,
        "numbering restarted at {s}, below the store's {}",
        s1 + 5
    );
    drop(j);
    let (_j, rep) = open(&path, mark);
    assert_eq!(rep.len(), 1, "the new record must be replayed");
    assert_eq!(rep[0].seq, s);
}

/// Found by the simulator (seed 13801463995275948137): a power loss drops record n but keeps
/// n+1 (unsynced writes reach the device in any order). Replay stops before n; the next life
/// writes its own n where the old one was — same size, so its n+1 starts where the old n+1
/// lies. If a second power loss keeps the new n but drops the new n+1, replay must stop after
/// n: the old n+1 (an acknowledged write the first recovery already dropped) must not come
/// back. Every open starts a new life whose records carry their own id.
#[test]
fn a_record_an_earlier_life_left_behind_never_comes_back() {
    use shale_journal::{CrashFile, CrashMode, LogFile};
    use std::sync::Arc;
    let file = Arc::new(CrashFile::new());
    let dynf: Arc<dyn LogFile> = file.clone();
    let path = std::path::Path::new("crash-journal");
    let open = |mark| RingJournal::open_file(dynf.clone(), path, SIZE, 7, mark, env(200)).unwrap();
    // Keep or drop each unsynced write, in order.
    let crash = |keep: &[bool]| {
        let mut it = keep.iter().copied();
        let mode = CrashMode {
            keep_per_mille: 500,
            reorder: false,
            tear: false,
        };
        file.crash(
            mode,
            move || if it.next().unwrap_or(true) { 0 } else { 999 },
        );
    };
    let mut out = Vec::new();
    let (j, _) = open(JournalMark::default());
    let s1 = j
        .append(&[op(0, 8)], &data(1, 8), &mut out, (0, 0))
        .unwrap();
    j.sync().unwrap();
    let s2 = j
        .append(&[op(8, 8)], &data(2, 8), &mut out, (0, 0))
        .unwrap();
    let s3 = j
        .append(&[op(16, 8)], &data(3, 8), &mut out, (0, 0))
        .unwrap();
    assert_eq!((s2, s3), (s1 + 1, s1 + 2));
    drop(j);
    crash(&[false, true]); // record s2 lost, s3 kept
    let (j, rep) = open(JournalMark::default());
    assert_eq!(rep.iter().map(|r| r.seq).collect::<Vec<_>>(), [s1]);
    // The next life: its s2 where the old one was, then its s3.
    let n2 = j
        .append(&[op(24, 8)], &data(4, 8), &mut out, (0, 0))
        .unwrap();
    let n3 = j
        .append(&[op(32, 8)], &data(5, 8), &mut out, (0, 0))
        .unwrap();
    assert_eq!((n2, n3), (s2, s3));
    drop(j);
    crash(&[true, false]); // the new s2 kept, the new s3 lost
    let (_j, rep) = open(JournalMark::default());
    let seqs: Vec<u64> = rep.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [s1, s2], "replay after the second power loss");
    let h = record::decode_header_any(&rep[1].bytes).unwrap();
    assert_eq!(h.ops[0].lba, 24, "record {s2} is the second life's");
}

/// A collected segment's file is kept and written over by a later staging file: the store no
/// longer shows it, the old records never read back as the new file's (not the first one,
/// zeroed before the file takes its staging name, nor one further on, from another log), and
/// the published segment holds exactly the new records.
#[test]
fn in_place_staging_writes_over_collected_segment_files() {
    use shale_journal::{DirStaging, StagedFile, Staging};
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn shale_store::ObjectStore> =
        std::sync::Arc::new(shale_store::LocalStore::open(dir.path()).unwrap());
    let prefix = "p/images/i/";
    let staging = std::sync::Arc::new(DirStaging::new(store.clone(), prefix).unwrap());
    let write = |log: &InPlaceLog, seg: u64, n: u32, fill: u8| {
        let mut seg_data = Vec::new();
        for i in 0..n {
            let mut out = Vec::new();
            let at = seg_data.len() as u64;
            log.append(&[op(i as u64 * 8, 8)], &data(fill, 8), &mut out, (seg, at))
                .unwrap();
            seg_data.extend_from_slice(&out);
        }
        log.sync().unwrap();
        seg_data
    };
    // Segment 5: records 1..=3 of log 99.
    let old = InPlaceLog::new(99, 1, 65536, staging.clone(), 3);
    let old_data = write(&old, 5, 3, 1);
    let f5 = StagedFile {
        epoch: 3,
        seq: 5,
        adopted: false,
    };
    staging
        .publish(&f5, &[0xAB; 65536], old_data.len() as u64)
        .unwrap();
    let seg5 = "p/images/i/seg/0000000000000005";
    // Read once: the store keeps a handle to it.
    store.get_range(seg5, 0..4096).unwrap();
    assert!(staging.retire(5).unwrap());
    assert_eq!(
        store.get_range(seg5, 0..4096).unwrap_err().kind(),
        shale_error::ErrorKind::NotFound
    );
    assert!(store.list("p/images/i/seg/").unwrap().is_empty());
    assert_eq!(store.list("p/images/i/free/").unwrap().len(), 1);
    // Retiring what is gone already is done.
    assert!(staging.retire(5).unwrap());

    // A new writer (log 77, record 1 first) opens segment 9: the kept file, with nothing in
    // it a scan accepts.
    let new = InPlaceLog::new(77, 1, 65536, staging.clone(), 4);
    let f9 = StagedFile {
        epoch: 4,
        seq: 9,
        adopted: false,
    };
    let file = staging.open(4, 9, 65536).unwrap();
    assert!(store.list("p/images/i/free/").unwrap().is_empty());
    let (_, len) = staging.read(&f9).unwrap();
    assert!(
        len >= 65536 + old_data.len() as u64,
        "the old blocks are there"
    );
    assert!(
        InPlaceLog::scan(file.as_ref(), len, 65536, None)
            .unwrap()
            .is_empty(),
        "the old first record must not read back"
    );
    // One record of the new log, the same size as the old ones: old record 2 of log 99
    // follows it, and is not taken for the new log's record 2.
    let new_data = write(&new, 9, 1, 9);
    let (file, len) = staging.read(&f9).unwrap();
    let recs = InPlaceLog::scan(file.as_ref(), len, 65536, None).unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].journal_id, recs[0].seq), (77, 1));
    staging
        .publish(&f9, &[0xCD; 65536], new_data.len() as u64)
        .unwrap();
    let (bytes, _) = store.get("p/images/i/seg/0000000000000009").unwrap();
    assert_eq!(bytes.len(), 65536 + new_data.len().div_ceil(4096) * 4096);
    assert_eq!(&bytes[65536..65536 + new_data.len()], &new_data[..]);
    assert!(bytes[65536 + new_data.len()..].iter().all(|b| *b == 0));
}

/// Free files are taken one writer at a time: a claim (`free/<seq>-<epoch>`) left by this or
/// an older epoch is stale and removed; a newer writer's claim is left alone; with no room
/// kept (`with_free_files(0)`, or the pool full) the caller deletes the segment.
#[test]
fn in_place_staging_free_files_claims_and_limits() {
    use shale_journal::{DirStaging, Staging};
    let dir = tempfile::tempdir().unwrap();
    let store: std::sync::Arc<dyn shale_store::ObjectStore> =
        std::sync::Arc::new(shale_store::LocalStore::open(dir.path()).unwrap());
    let prefix = "p/images/i/";
    let put = |k: &str| {
        store
            .put(
                k,
                bytes::Bytes::from(vec![7u8; 65536 + 8192]),
                PutMode::Overwrite,
            )
            .unwrap();
    };
    put("p/images/i/seg/0000000000000001");
    put("p/images/i/seg/0000000000000002");
    let off = DirStaging::new(store.clone(), prefix)
        .unwrap()
        .with_free_files(0);
    assert!(!off.retire(1).unwrap());
    assert!(store.get("p/images/i/seg/0000000000000001").is_ok());
    let one = DirStaging::new(store.clone(), prefix)
        .unwrap()
        .with_free_files(1);
    assert!(one.retire(1).unwrap());
    assert!(!one.retire(2).unwrap(), "the pool is full");
    assert!(store.get("p/images/i/seg/0000000000000002").is_ok());
    // Claims: epoch 3's is stale for a writer of epoch 5, epoch 8's is not.
    put("p/images/i/free/0000000000000003-0000000000000003");
    put("p/images/i/free/0000000000000004-0000000000000008");
    let st = DirStaging::new(store.clone(), prefix).unwrap();
    st.open(5, 10, 65536).unwrap();
    let left: Vec<String> = store
        .list("p/images/i/free/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(
        left,
        vec!["p/images/i/free/0000000000000004-0000000000000008"]
    );
    // The free file (segment 1's) became the staging file, its first record place zeroed.
    let (f, len) = st
        .read(&shale_journal::StagedFile {
            epoch: 5,
            seq: 10,
            adopted: false,
        })
        .unwrap();
    assert_eq!(len, 65536 + 8192);
    let mut b = vec![0u8; 8192];
    f.read_at(&mut b, 65536).unwrap();
    assert!(b[..4096].iter().all(|x| *x == 0) && b[4096..].iter().all(|x| *x == 7));
}
