//! The engine against a plain `Vec<u8>` model of the disk: random writes (aligned and not),
//! write-zeroes, resizes, flushes and reopens, on the memory and local-directory stores.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::sync::Arc;

use proptest::prelude::*;
use shale_engine::{EngineConfig, LogConfig, Volume};
use shale_store::{LocalStore, MemoryStore, ObjectStore};

#[derive(Debug, Clone)]
enum Op {
    Write {
        off: u64,
        len: usize,
        fill: u8,
    },
    Zero {
        off: u64,
        len: u64,
    },
    Resize {
        size: u64,
    },
    Flush,
    Reopen,
    /// Stop without closing (only used where every acknowledged write must survive).
    Crash,
    /// Collect garbage (segments less than 70 % live).
    Gc,
}

const MAX: u64 = 600 * 1024;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..MAX, 1usize..70_000, any::<u8>(), any::<bool>()).prop_map(|(o, l, f, align)| {
            if align { Op::Write { off: o / 512 * 512, len: (l / 512 + 1) * 512, fill: f } } else { Op::Write { off: o, len: l, fill: f } }
        }),
        2 => (0..MAX, 1u64..100_000).prop_map(|(off, len)| Op::Zero { off, len }),
        1 => (1u64..MAX).prop_map(|size| Op::Resize { size }),
        1 => Just(Op::Flush),
        1 => Just(Op::Reopen),
        1 => Just(Op::Gc),
    ]
}

fn op_with_crash() -> impl Strategy<Value = Op> {
    prop_oneof![8 => op(), 1 => Just(Op::Crash)]
}

fn cfg() -> EngineConfig {
    EngineConfig {
        segment_size: 64 << 10,
        checkpoint_interval: 3,
        upload_threads: 3,
        ..EngineConfig::default()
    }
}

fn pattern(off: u64, len: usize, fill: u8) -> Vec<u8> {
    (0..len)
        .map(|i| fill.wrapping_add(((off as usize + i) / 7) as u8))
        .collect()
}

fn run(store: Arc<dyn ObjectStore>, ops: Vec<Op>) {
    run_with(store, ops, cfg())
}

fn run_with(store: Arc<dyn ObjectStore>, ops: Vec<Op>, cfg: EngineConfig) {
    let cfg = || cfg.clone();
    let prefix = "p/images/x/";
    let mut model = vec![0u8; 300 * 1024 + 17];
    let mut vol = Volume::open(store.clone(), prefix, model.len() as u64, 1, cfg(), false).unwrap();
    for op in ops {
        match op {
            Op::Write { off, len, fill } => {
                let data = pattern(off, len, fill);
                let fits = off + len as u64 <= model.len() as u64;
                let r = vol.write(off, &data);
                assert_eq!(
                    r.is_ok(),
                    fits,
                    "write {off}+{len} on size {}: {r:?}",
                    model.len()
                );
                if fits {
                    model[off as usize..off as usize + len].copy_from_slice(&data);
                }
            }
            Op::Zero { off, len } => {
                let fits = off + len <= model.len() as u64;
                assert_eq!(vol.write_zeroes(off, len).is_ok(), fits);
                if fits {
                    model[off as usize..(off + len) as usize].fill(0);
                }
            }
            Op::Resize { size } => {
                vol.resize(size).unwrap();
                model.resize(size as usize, 0);
            }
            Op::Flush => vol.flush().unwrap(),
            Op::Reopen => {
                vol.close().unwrap();
                vol = Volume::open(store.clone(), prefix, model.len() as u64, 1, cfg(), false)
                    .unwrap();
            }
            Op::Gc => {
                vol.gc(0.7).unwrap();
            }
            Op::Crash => {
                vol.crash();
                vol = Volume::open(store.clone(), prefix, model.len() as u64, 1, cfg(), false)
                    .unwrap();
            }
        }
        // Spot-check a window and the end after every op; the whole disk at the end.
        let mut buf = vec![0u8; 4099];
        let at = (model.len() as u64).saturating_sub(3000) / 2;
        let n = vol.read(at, &mut buf).unwrap();
        assert_eq!(&buf[..n], &model[at as usize..at as usize + n]);
    }
    let mut all = vec![0u8; model.len()];
    assert_eq!(vol.read(0, &mut all).unwrap(), model.len());
    assert!(all == model, "final contents differ");
    vol.close().unwrap();
    let vol = Volume::open(store, prefix, model.len() as u64, 1, cfg(), false).unwrap();
    let mut all = vec![0u8; model.len()];
    vol.read(0, &mut all).unwrap();
    assert!(all == model, "contents differ after the final reopen");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn memory_store_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(Arc::new(MemoryStore::new()), ops);
    }

    #[test]
    fn local_store_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        run(Arc::new(LocalStore::open(dir.path()).unwrap()), ops);
    }

    #[test]
    fn local_store_in_place_log_matches_model(ops in proptest::collection::vec(op_with_crash(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.path()).unwrap());
        let staging = shale_journal::DirStaging::new(store.clone(), "p/images/x/").unwrap();
        let log = LogConfig::InPlace(shale_engine::StagingRef(Arc::new(staging)));
        run_with(store, ops, EngineConfig { log, ..cfg() });
    }

    #[test]
    fn memory_store_ring_journal_matches_model(ops in proptest::collection::vec(op_with_crash(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let log = LogConfig::Ring { place: shale_engine::LogPlaceRef::file(dir.path().join("j")), size: 2 << 20, owner: 1 };
        run_with(Arc::new(MemoryStore::new()), ops, EngineConfig { log, ..cfg() });
    }
}

#[test]
fn flipped_byte_in_segment_is_an_error() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let prefix = "p/images/y/";
    let vol = Volume::open(store.clone(), prefix, 1 << 20, 1, cfg(), false).unwrap();
    vol.write(0, &vec![0xab; 8192]).unwrap();
    vol.close().unwrap();
    let key = store.list(&format!("{prefix}seg/")).unwrap()[0].key.clone();
    let (bytes, _) = store.get(&key).unwrap();
    let mut bad = bytes.to_vec();
    bad[4096 + 100] ^= 1; // a data byte of page 0
    store
        .put(&key, bad.into(), shale_store::PutMode::Overwrite)
        .unwrap();
    let vol = Volume::open(store.clone(), prefix, 1 << 20, 1, cfg(), false).unwrap();
    let mut buf = vec![0u8; 4096];
    let e = vol.read(0, &mut buf).unwrap_err();
    assert_eq!(e.kind(), shale_error::ErrorKind::Corruption, "{e}");
    // The other page is intact and still readable.
    vol.read(4096, &mut buf).unwrap();
    assert_eq!(buf, vec![0xab; 4096]);
}

/// GC reads each victim in one request but checks only the pages of live data: damaged dead
/// data does not stop it, damaged live data does (and nothing is deleted).
#[test]
fn gc_checks_the_live_pages_of_a_victim_and_only_those() {
    for damage_live in [false, true] {
        let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
        let prefix = "p/images/g/";
        let vol = Volume::open(store.clone(), prefix, 1 << 20, 1, cfg(), false).unwrap();
        // One segment: pages 0..8 of the image, then pages 0..6 overwritten in another.
        vol.write(0, &vec![0x11; 8 * 4096]).unwrap();
        vol.close().unwrap();
        let vol = Volume::open(store.clone(), prefix, 1 << 20, 1, cfg(), false).unwrap();
        vol.write(0, &vec![0x22; 6 * 4096]).unwrap();
        vol.close().unwrap();
        let keys: Vec<String> = store
            .list(&format!("{prefix}seg/"))
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        let first = keys.iter().min().unwrap().clone();
        let (bytes, _) = store.get(&first).unwrap();
        let hl = shale_format::segment::header_len(&bytes).unwrap() as usize;
        let h = shale_format::segment::decode_header(&bytes).unwrap();
        let data_off = h.entries[0].off as usize * 512;
        // Image page 1 is dead (overwritten), image page 7 is live.
        let page = if damage_live { 7 } else { 1 };
        let mut bad = bytes.to_vec();
        bad[hl + data_off + page * 4096 + 10] ^= 0x40;
        store
            .put(&first, bad.into(), shale_store::PutMode::Overwrite)
            .unwrap();
        let vol = Volume::open(store.clone(), prefix, 1 << 20, 1, cfg(), false).unwrap();
        let r = vol.gc(0.99);
        let mut buf = vec![0u8; 8 * 4096];
        if damage_live {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), shale_error::ErrorKind::Corruption, "{e}");
            assert!(store
                .list(&format!("{prefix}seg/"))
                .unwrap()
                .iter()
                .any(|o| o.key == first));
            assert!(
                vol.read(0, &mut buf).is_err(),
                "the damaged page still reads as damaged"
            );
        } else {
            let rep = r.unwrap();
            assert!(rep.bytes_relocated >= 2 * 4096, "{rep:?}");
            vol.read(0, &mut buf).unwrap();
            assert_eq!(&buf[..6 * 4096], &vec![0x22; 6 * 4096][..]);
            assert_eq!(&buf[6 * 4096..], &vec![0x11; 2 * 4096][..]);
            assert!(!store
                .list(&format!("{prefix}seg/"))
                .unwrap()
                .iter()
                .any(|o| o.key == first));
        }
        vol.close().unwrap();
    }
}

#[test]
fn gap_in_log_ends_the_prefix_and_orphans_are_skipped_not_deleted() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let prefix = "p/images/z/";
    let c = EngineConfig {
        checkpoint_interval: 1000,
        ..cfg()
    };
    let vol = Volume::open(store.clone(), prefix, 1 << 20, 1, c.clone(), false).unwrap();
    for i in 0..4u8 {
        vol.write(i as u64 * 65536, &vec![i + 1; 65536]).unwrap();
        vol.flush().unwrap();
    }
    vol.close().unwrap();
    // Lose segment 2: 3 and 4 are past the gap.
    store.delete(&format!("{prefix}seg/{:016x}", 2)).unwrap();
    let vol = Volume::open(store.clone(), prefix, 1 << 20, 1, c.clone(), false).unwrap();
    let mut buf = vec![0u8; 65536];
    vol.read(0, &mut buf).unwrap();
    assert_eq!(buf, vec![1; 65536]);
    for i in 1..4u64 {
        vol.read(i * 65536, &mut buf).unwrap();
        assert_eq!(buf, vec![0; 65536], "block {i} must be gone");
    }
    // Recovery never deletes: the orphans stay until garbage collection proves them unneeded.
    assert_eq!(store.list(&format!("{prefix}seg/")).unwrap().len(), 3);
    // New writes get numbers past the old orphans and survive another reopen.
    vol.write(0, &vec![9; 65536]).unwrap();
    vol.close().unwrap();
    let vol = Volume::open(store.clone(), prefix, 1 << 20, 1, c, false).unwrap();
    vol.read(0, &mut buf).unwrap();
    assert_eq!(buf, vec![9; 65536]);
}

/// The same model test on the S3 peer, when `SHALE_TEST_S3=s3://bucket/prefix` is set.
#[test]
fn s3_store_matches_model() {
    let Ok(base) = std::env::var("SHALE_TEST_S3") else {
        println!("skipped: set SHALE_TEST_S3=s3://bucket/prefix (and AWS_*) to run against S3");
        return;
    };
    let url = format!(
        "{}/engine-model-{}",
        base.trim_end_matches('/'),
        std::process::id()
    );
    let store = shale_store::open_store(&url).unwrap();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 4,
        ..ProptestConfig::default()
    });
    runner
        .run(&proptest::collection::vec(op(), 1..25), |ops| {
            for o in store.list("").unwrap() {
                store.delete(&o.key).unwrap();
            }
            run(store.clone(), ops);
            Ok(())
        })
        .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    #[test]
    fn memory_store_with_read_cache_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Arc::new(shale_cache::FileCache::open(dir.path(), 1 << 20).unwrap());
        run_with(Arc::new(MemoryStore::new()), ops, EngineConfig { cache: Some((cache, 5)), ..cfg() });
    }
}

#[test]
fn damaged_read_cache_is_never_returned_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(shale_cache::FileCache::open(dir.path(), 1 << 20).unwrap());
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let c = EngineConfig {
        cache: Some((cache.clone(), 5)),
        ..cfg()
    };
    let vol = Volume::open(store.clone(), "p/images/c/", 1 << 20, 1, c.clone(), false).unwrap();
    vol.write(0, &vec![0x42; 65536]).unwrap();
    vol.close().unwrap();
    let vol = Volume::open(store.clone(), "p/images/c/", 1 << 20, 1, c.clone(), false).unwrap();
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        vol.read(8192, &mut buf).unwrap();
        assert_eq!(buf, vec![0x42; 4096]);
    }
    let s = vol.stats().cache;
    assert!(s.admitted >= 1 && s.hits >= 1, "{s:?}");
    // Scribble over the whole cache file: reads must still be right (checksums catch it).
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("rcache-0.data"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &vec![0xEE; 1 << 20], 0).unwrap();
    vol.read(8192, &mut buf).unwrap();
    assert_eq!(buf, vec![0x42; 4096]);
    assert!(vol.stats().cache.invalidated >= 1);
}

/// On a local store, GC keeps collected segments' files (up to the staging's limit) and new
/// open segments are written over them: the data stays right through reopens and crashes
/// (the old records in a reused file never come back), and the files are really reused.
#[test]
fn local_store_writes_over_collected_segment_files() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.path()).unwrap());
    let prefix = "p/images/r/";
    let cfg = || EngineConfig {
        log: LogConfig::InPlace(shale_engine::StagingRef(Arc::new(
            shale_journal::DirStaging::new(store.clone(), prefix)
                .unwrap()
                .with_free_files(4),
        ))),
        ..cfg()
    };
    let size = 256 * 1024;
    let mut model = vec![0u8; size];
    let mut vol = Volume::open(store.clone(), prefix, size as u64, 1, cfg(), false).unwrap();
    let free = || store.list(&format!("{prefix}free/")).unwrap().len();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut reused = 0;
    for round in 0..12u32 {
        for _ in 0..40 {
            let len = 512 + (next() % 8192) as usize / 512 * 512;
            let off = (next() % (size - len) as u64) / 512 * 512;
            let data = pattern(off, len, next() as u8);
            vol.write(off, &data).unwrap();
            model[off as usize..off as usize + len].copy_from_slice(&data);
        }
        vol.flush().unwrap();
        vol.gc(0.7).unwrap();
        let kept = free();
        assert!(kept <= 4, "{kept} files kept, limit 4");
        // The next round's open segments take them.
        for _ in 0..20 {
            let off = (next() % (size as u64 - 4096)) / 512 * 512;
            let data = pattern(off, 4096, round as u8);
            vol.write(off, &data).unwrap();
            model[off as usize..off as usize + 4096].copy_from_slice(&data);
        }
        vol.flush().unwrap();
        if free() < kept {
            reused += 1;
        }
        if round % 3 != 2 {
            if round % 3 == 0 {
                vol.crash();
            } else {
                vol.close().unwrap();
            }
            vol = Volume::open(store.clone(), prefix, size as u64, 1, cfg(), false).unwrap();
        }
        let mut all = vec![0u8; size];
        vol.read(0, &mut all).unwrap();
        assert!(all == model, "contents differ after round {round}");
    }
    assert!(
        reused >= 3,
        "kept files were reused in only {reused} rounds"
    );
    vol.close().unwrap();
}
