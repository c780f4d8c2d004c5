//! Regression tests of the data-safety issue: each failed on the code before its fix.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::sync::Arc;
use std::time::Duration;

use shale_engine::{EngineConfig, Volume};
use shale_error::ErrorKind;
use shale_store::{LocalStore, MemoryStore, ObjectStore, PutMode};

const SIZE: u64 = 4 << 20;

fn cfg() -> EngineConfig {
    EngineConfig {
        segment_size: 64 << 10,
        checkpoint_interval: 4,
        upload_threads: 3,
        ..EngineConfig::default()
    }
}

/// An in-place log staged next to the segments of a local-directory store.
fn in_place(store: &Arc<dyn ObjectStore>, prefix: &str) -> shale_engine::LogConfig {
    shale_engine::LogConfig::InPlace(shale_engine::StagingRef(Arc::new(
        shale_journal::DirStaging::new(store.clone(), prefix).expect("a local store"),
    )))
}

fn rng(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Import 4 MiB, overwrite random 4 KiB blocks, collect garbage: returns the model.
fn churned_image(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<u8> {
    let mut model = vec![0u8; SIZE as usize];
    let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg(), false).unwrap();
    for (i, chunk) in model.chunks_mut(64 << 10).enumerate() {
        chunk.fill(i as u8 + 1);
        vol.write(i as u64 * (64 << 10), chunk).unwrap();
    }
    let mut seed = 7;
    for _ in 0..200 {
        let blk = rng(&mut seed) % (SIZE / 4096);
        let b = vec![(rng(&mut seed) | 1) as u8; 4096];
        model[(blk * 4096) as usize..][..4096].copy_from_slice(&b);
        vol.write(blk * 4096, &b).unwrap();
    }
    vol.flush().unwrap();
    let rep = vol.gc(0.9).unwrap();
    assert!(rep.segments_deleted > 0, "{rep:?}");
    vol.close().unwrap();
    model
}

fn read_all(vol: &Volume) -> Vec<u8> {
    let mut buf = vec![0u8; SIZE as usize];
    vol.read(0, &mut buf).unwrap();
    buf
}

fn ckpts(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    store
        .list(&format!("{prefix}ckpt/"))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

fn seg_count(store: &Arc<dyn ObjectStore>, prefix: &str) -> usize {
    store.list(&format!("{prefix}seg/")).unwrap().len()
}

/// Reproduced: after GC, removing or damaging the one checkpoint made `export` return other
/// data and the next writable open delete most segments.
#[test]
fn a_lost_or_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    for damage in ["remove", "corrupt"] {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let prefix = "rbd/images/a/";
        let model = churned_image(&store, prefix);
        let cks = ckpts(&store, prefix);
        assert!(
            cks.len() >= 2,
            "GC must keep the previous checkpoint: {cks:?}"
        );
        let newest = cks.last().unwrap().clone();
        match damage {
            "remove" => store.delete(&newest).unwrap(),
            _ => {
                let (mut b, _) = store.get(&newest).map(|(b, v)| (b.to_vec(), v)).unwrap();
                let n = b.len();
                b[n / 2] ^= 0x40;
                store.put(&newest, b.into(), PutMode::Overwrite).unwrap();
            }
        }
        let ro = Volume::open(store.clone(), prefix, SIZE, 1, cfg(), true).unwrap();
        assert!(read_all(&ro) == model, "{damage}: read-only view differs");
        let segs = seg_count(&store, prefix);
        let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg(), false).unwrap();
        assert!(read_all(&vol) == model, "{damage}: writable view differs");
        assert_eq!(
            seg_count(&store, prefix),
            segs,
            "{damage}: recovery deleted segments"
        );
        vol.write(0, &[5u8; 4096]).unwrap();
        vol.close().unwrap();
    }
}

/// With every checkpoint gone, no open may start from an empty map, and nothing is deleted.
#[test]
fn losing_every_checkpoint_is_a_corruption_error_that_changes_nothing() {
    for damage in ["remove", "corrupt"] {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let prefix = "rbd/images/a/";
        churned_image(&store, prefix);
        for k in ckpts(&store, prefix) {
            if damage == "remove" {
                store.delete(&k).unwrap();
            } else {
                store
                    .put(&k, vec![0u8; 100].into(), PutMode::Overwrite)
                    .unwrap();
            }
        }
        let before: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
        for ro in [true, false] {
            let e = Volume::open(store.clone(), prefix, SIZE, 1, cfg(), ro).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corruption, "{damage} ro={ro}: {e}");
            assert!(e.to_string().contains("shale repair"), "{e}");
        }
        let after: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(before, after, "{damage}: a failed open changed the store");
    }
}

/// Reproduced: a truncated segment made the read-modify-write of an unaligned write panic the
/// committer (index out of range) and the writer never got an answer.
#[test]
fn a_truncated_segment_is_corruption_and_never_hangs_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.path()).unwrap());
    let prefix = "rbd/images/t/";
    let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg(), false).unwrap();
    for i in 0..(SIZE / (64 << 10)) {
        vol.write(i * (64 << 10), &vec![i as u8 + 1; 64 << 10])
            .unwrap();
    }
    vol.close().unwrap();
    let key = format!("{prefix}seg/{:016x}", 2);
    let path = store.local_path(&key).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len - 20000).unwrap();
    drop(f);
    let vol = Arc::new(Volume::open(store.clone(), prefix, SIZE, 1, cfg(), false).unwrap());
    // Find the bytes segment 2 held: the last 64 KiB block of it is gone.
    let mut bad_off = None;
    for i in 0..(SIZE / 512) {
        let mut b = vec![0u8; 512];
        if let Err(e) = vol.read(i * 512, &mut b) {
            assert_eq!(e.kind(), ErrorKind::Corruption, "{e}");
            bad_off = Some(i * 512);
            break;
        }
    }
    let off = bad_off.expect("some read must hit the truncated tail");
    // An unaligned write over it: read-modify-write on the committer must fail, not panic.
    let (tx, rx) = std::sync::mpsc::channel();
    let v = vol.clone();
    std::thread::spawn(move || {
        let _ = tx.send(v.write(off + 100, &[0x11; 1000]));
    });
    let r = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the write hung");
    assert!(r.is_err(), "a write patching a damaged segment must fail");
    // The image still answers afterwards.
    vol.write(0, &[1u8; 4096]).unwrap();
    vol.flush().unwrap();
}

/// Reproduced (image layer): two snapshot checkpoints under one id. Here: a snapshot key that
/// exists already is never overwritten.
#[test]
fn a_snapshot_checkpoint_never_replaces_an_existing_one() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let prefix = "rbd/images/s/";
    let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg(), false).unwrap();
    vol.write(0, &[1u8; 4096]).unwrap();
    vol.snapshot("snap/0000000000000004").unwrap();
    let (before, _) = store
        .get(&format!("{prefix}snap/0000000000000004"))
        .unwrap();
    vol.write(0, &[2u8; 4096]).unwrap();
    let e = vol.snapshot("snap/0000000000000004").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Exists, "{e}");
    let (after, _) = store
        .get(&format!("{prefix}snap/0000000000000004"))
        .unwrap();
    assert_eq!(before, after);
    vol.close().unwrap();
}

/// Found by the model test: a checkpoint taken before the first write of a new in-place log
/// claimed that log's record 1 (the old log's record number was carried over), so recovery
/// after a crash dropped the acknowledged write staged as that record.
#[test]
fn a_checkpoint_before_the_first_record_of_a_new_log_claims_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.path()).unwrap());
    let p = "p/images/x/";
    let cfg = || EngineConfig {
        log: in_place(&store, p),
        ..cfg()
    };
    let n = 300 * 1024;
    let vol = Volume::open(store.clone(), p, n, 1, cfg(), false).unwrap();
    vol.write(129536, &[7]).unwrap();
    vol.close().unwrap();
    let vol = Volume::open(store.clone(), p, n, 1, cfg(), false).unwrap();
    vol.write_zeroes(34521, 95016).unwrap();
    vol.close().unwrap();
    let vol = Volume::open(store.clone(), p, n, 1, cfg(), false).unwrap();
    vol.gc(0.7).unwrap(); // a checkpoint before this log's first record
    vol.write(17920, &vec![147u8; 60416]).unwrap();
    vol.flush().unwrap();
    vol.crash();
    let vol = Volume::open(store.clone(), p, n, 1, cfg(), false).unwrap();
    let mut b = vec![0u8; 60416];
    vol.read(17920, &mut b).unwrap();
    assert!(b == vec![147u8; 60416], "a flushed write was lost");
    vol.close().unwrap();
}

/// Suspected from the code and confirmed: thousands of small writes queued at once became one
/// record whose entries overflowed the in-place segment's reserved header (publish failed).
#[test]
fn a_batch_of_thousands_of_small_writes_fits_an_in_place_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.path()).unwrap());
    let p = "p/images/b/";
    let cfg = || EngineConfig {
        log: in_place(&store, p),
        segment_size: 8 << 20,
        ..cfg()
    };
    let n: u64 = 64 << 20;
    let vol = Volume::open(store.clone(), p, n, 1, cfg(), false).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let count = 6000u64;
    for i in 0..count {
        let tx = tx.clone();
        // Every other sector: no two ops merge.
        vol.submit_write(
            i * 1024,
            vec![(i % 251) as u8 + 1; 512],
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
    }
    for _ in 0..count {
        rx.recv_timeout(Duration::from_secs(30)).unwrap().unwrap();
    }
    vol.flush().unwrap();
    vol.close().unwrap();
    let vol = Volume::open(store.clone(), p, n, 1, cfg(), false).unwrap();
    for i in (0..count).step_by(97) {
        let mut b = vec![0u8; 512];
        vol.read(i * 1024, &mut b).unwrap();
        assert_eq!(b, vec![(i % 251) as u8 + 1; 512], "write {i}");
    }
    vol.close().unwrap();
}

/// Suspected and confirmed: a torn last record in an in-place staging file left its bytes in
/// the last page of the published segment, whose checksum was computed over zeros there — a
/// permanent EIO after recovery.
#[test]
fn a_torn_last_staged_record_does_not_poison_the_published_segment() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.path()).unwrap());
    let p = "p/images/t/";
    let cfg = || EngineConfig {
        log: in_place(&store, p),
        ..cfg()
    };
    let n: u64 = 1 << 20;
    let vol = Volume::open(store.clone(), p, n, 1, cfg(), false).unwrap();
    vol.write(0, &[3u8; 1536]).unwrap(); // 3 sectors: the record ends inside a page
    vol.flush().unwrap();
    vol.crash();
    let staged = store.list(&format!("{p}open/")).unwrap();
    assert_eq!(staged.len(), 1);
    let path = store.local_path(&staged[0].key).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0x5a; 700]).unwrap(); // a torn record's first bytes
    drop(f);
    let vol = Volume::open(store.clone(), p, n, 1, cfg(), false).unwrap();
    let mut b = vec![0u8; 4096];
    vol.read(0, &mut b).unwrap();
    assert_eq!(&b[..1536], &[3u8; 1536][..]);
    vol.close().unwrap();
    let vol = Volume::open(store.clone(), p, n, 1, cfg(), true).unwrap();
    vol.read(0, &mut b).unwrap();
    assert_eq!(&b[..1536], &[3u8; 1536][..]);
}

/// Suspected and confirmed: a writer that lost the image could rotate away (delete) the
/// checkpoints of its epoch that the new owner's recovery had used as its base; the new owner
/// now stores a base of its own epoch when it takes over.
#[test]
fn a_takeover_never_depends_on_checkpoints_the_old_writer_may_rotate_away() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let p = "p/images/f/";
    let old = Volume::open(store.clone(), p, SIZE, 1, cfg(), false).unwrap();
    for i in 0..20u64 {
        old.write(i * 65536, &vec![i as u8 + 1; 65536]).unwrap();
    }
    old.flush_to_store().unwrap();
    // Take over: epoch 2, fenced past every stored segment.
    let start = store.list(&format!("{p}seg/")).unwrap().len() as u64 + 1;
    let new_cfg = EngineConfig {
        fence: Some((2, start)),
        ..cfg()
    };
    let new = Volume::open(store.clone(), p, SIZE, 2, new_cfg.clone(), false).unwrap();
    let mine: Vec<String> = ckpts(&store, p)
        .into_iter()
        .filter(|k| k.contains("ckpt/0000000000000002-"))
        .collect();
    assert!(
        !mine.is_empty(),
        "the new owner stored no checkpoint of its own"
    );
    // The fenced writer goes on, rotating its epoch's checkpoints.
    for i in 0..40u64 {
        let _ = old.write(i * 4096, &[0xee; 4096]);
    }
    let _ = old.flush_to_store();
    old.crash();
    for k in ckpts(&store, p) {
        if k.contains("ckpt/0000000000000001-") {
            store.delete(&k).unwrap();
        }
    }
    new.close().unwrap();
    let again = Volume::open(store.clone(), p, SIZE, 2, new_cfg, false).unwrap();
    let mut b = vec![0u8; 65536];
    again.read(65536 * 3, &mut b).unwrap();
    assert_eq!(b, vec![4u8; 65536]);
    again.close().unwrap();
}

/// A writer whose lease has run out deletes nothing (GC refuses with Fenced).
#[test]
fn gc_deletes_nothing_without_a_lease() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let p = "p/images/l/";
    let ok = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let o2 = ok.clone();
    let c = EngineConfig {
        lease: Some(shale_engine::LeaseCheck(Arc::new(move || {
            o2.load(std::sync::atomic::Ordering::SeqCst)
        }))),
        ..cfg()
    };
    let vol = Volume::open(store.clone(), p, SIZE, 1, c, false).unwrap();
    for _ in 0..3 {
        for i in 0..16u64 {
            vol.write(i * 65536, &vec![i as u8; 65536]).unwrap();
        }
    }
    vol.flush_to_store().unwrap();
    let segs = seg_count(&store, p);
    ok.store(false, std::sync::atomic::Ordering::SeqCst);
    let e = vol.gc(0.9).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
    assert!(
        seg_count(&store, p) >= segs,
        "segments were deleted without a lease"
    );
}

/// Suspected and confirmed: a write queued before a shrink but committed after it left data
/// past the new end (visible again after growing back).
#[test]
fn a_shrink_racing_queued_writes_leaves_nothing_past_the_new_end() {
    for round in 0..20u64 {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let p = "p/images/r/";
        let vol = Arc::new(Volume::open(store.clone(), p, SIZE, 1, cfg(), false).unwrap());
        let half = SIZE / 2;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writers: Vec<_> = (0..2u64)
            .map(|t| {
                let (vol, stop) = (vol.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let off = half + ((i * 2 + t) % 256) * 4096;
                        let _ = vol.write(off, &[0xab; 4096]);
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(200 + round * 50));
        vol.resize(half).unwrap();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for w in writers {
            w.join().unwrap();
        }
        vol.resize(SIZE).unwrap();
        let mut b = vec![0u8; (SIZE - half) as usize];
        vol.read(half, &mut b).unwrap();
        assert!(
            b.iter().all(|&x| x == 0),
            "round {round}: data past the shrunk end came back"
        );
        vol.close().unwrap();
    }
}

/// Suspected and confirmed: two writers of one epoch (an image without the exclusive lock
/// opened writable twice) used the same segment numbers, and the second took the first one's
/// segment for its own — its data silently replaced, with valid checksums.
#[test]
fn a_second_writer_of_the_same_epoch_is_refused_not_merged() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let p = "p/images/two/";
    let a = Volume::open(store.clone(), p, SIZE, 1, cfg(), false).unwrap();
    let b = Volume::open(store.clone(), p, SIZE, 1, cfg(), false).unwrap();
    a.write(0, &[1u8; 4096]).unwrap();
    a.flush_to_store().unwrap();
    b.write(0, &[2u8; 4096]).unwrap();
    let e = b.flush_to_store().unwrap_err();
    assert!(
        e.to_string().contains("another writer"),
        "the second writer's data must not be merged silently: {e}"
    );
    a.close().unwrap();
    let v = Volume::open(store.clone(), p, SIZE, 1, cfg(), true).unwrap();
    let mut buf = vec![0u8; 4096];
    v.read(0, &mut buf).unwrap();
    assert_eq!(buf, vec![1u8; 4096]);
}

/// A PUT whose answer was lost is retried; the segment it finds is recognised as ours.
#[test]
fn a_lost_put_answer_is_recognised_as_our_own_segment() {
    let fault = Arc::new(shale_store::FaultStore::new(
        Arc::new(MemoryStore::new()),
        11,
    ));
    fault.update(|f| f.lost_ack_rate = 0.5);
    let store: Arc<dyn ObjectStore> = fault.clone();
    let p = "p/images/ack/";
    let c = EngineConfig {
        upload_attempts: 50,
        ..cfg()
    };
    let vol = Volume::open(store.clone(), p, SIZE, 1, c.clone(), false).unwrap();
    for i in 0..32u64 {
        vol.write(i * 65536, &vec![i as u8 + 1; 65536]).unwrap();
    }
    vol.flush_to_store().unwrap();
    vol.close().unwrap();
    fault.update(|f| f.lost_ack_rate = 0.0);
    let vol = Volume::open(store.clone(), p, SIZE, 1, c, true).unwrap();
    let mut b = vec![0u8; 65536];
    for i in 0..32u64 {
        vol.read(i * 65536, &mut b).unwrap();
        assert_eq!(b, vec![i as u8 + 1; 65536]);
    }
}
