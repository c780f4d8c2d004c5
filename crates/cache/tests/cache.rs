//! Read cache: admission on the second miss, bypass of large reads, eviction, persistence
//! across reopen, one process per cache file.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use shale_cache::{BlockCache, BlockKey, FileCache, BLOCK};

fn key(seg: u64, block: u32) -> BlockKey {
    BlockKey {
        owner: 1,
        seg,
        block,
    }
}

#[test]
fn second_miss_admits_and_hits_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileCache::open(dir.path(), 8 * BLOCK as u64).unwrap();
    let data = vec![7u8; BLOCK];
    let mut out = vec![0u8; BLOCK];
    // Fill it: while there is room, a first miss is admitted.
    for b in 100..108 {
        c.offer(&key(1, b), &data, false);
    }
    assert!(
        c.get(&key(1, 100), &mut out),
        "admitted while there was room"
    );
    assert!(!c.get(&key(1, 0), &mut out));
    c.offer(&key(1, 0), &data, false);
    assert!(
        !c.get(&key(1, 0), &mut out),
        "once full, a single miss must not admit (scan resistance)"
    );
    c.offer(&key(1, 0), &data, false);
    assert!(c.get(&key(1, 0), &mut out));
    assert_eq!(out, data);
    // Large sequential reads bypass even on repeats.
    c.offer(&key(2, 0), &data, true);
    c.offer(&key(2, 0), &data, true);
    assert!(!c.get(&key(2, 0), &mut out));
    let s = c.stats();
    assert_eq!((s.hits, s.admitted), (2, 9));
    drop(c);
    let c = FileCache::open(dir.path(), 8 * BLOCK as u64).unwrap();
    let mut out = vec![0u8; 4096];
    assert!(c.get(&key(1, 0), &mut out), "entries survive a restart");
    assert_eq!(out, vec![7u8; 4096]);
    c.invalidate(&key(1, 0));
    assert!(!c.get(&key(1, 0), &mut out));
}

#[test]
fn bounded_and_evicts() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileCache::open(dir.path(), 4 * BLOCK as u64).unwrap();
    let data = vec![1u8; 4096];
    for b in 0..20u32 {
        c.offer(&key(9, b), &data, false);
        c.offer(&key(9, b), &data, false);
    }
    let _ = &data;
    let mut out = vec![0u8; 4096];
    let cached = (0..20u32).filter(|&b| c.get(&key(9, b), &mut out)).count();
    assert_eq!(cached, 4);
    assert!(c.stats().evicted >= 16);
    assert_eq!(
        std::fs::metadata(dir.path().join("rcache-0.data"))
            .unwrap()
            .len(),
        4 * BLOCK as u64
    );
    // A second user of the directory gets its own file.
    let c2 = FileCache::open(dir.path(), 4 * BLOCK as u64).unwrap();
    drop(c2);
    assert!(dir.path().join("rcache-1.data").exists());
}
