//! Read cache: admission on the second miss, bypass of large reads, eviction, persistence
//! across reopen, one process per cache file.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use shale_cache::{BlockCache, BlockKey, FileCache, BLOCK, MIN_SIZE};

/// Slots in the smallest cache.
const N: u32 = (MIN_SIZE / BLOCK as u64) as u32;

fn key(seg: u64, block: u32) -> BlockKey {
    BlockKey {
        owner: 1,
        seg,
        block,
        tag: 0,
    }
}

#[test]
fn second_miss_admits_and_hits_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileCache::open(dir.path(), MIN_SIZE).unwrap();
    let data = vec![7u8; BLOCK];
    let mut out = vec![0u8; BLOCK];
    // Fill it: while there is room, a first miss is admitted.
    for b in 100..100 + N {
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
    assert_eq!((s.hits, s.admitted), (2, N as u64 + 1));
    drop(c);
    let c = FileCache::open(dir.path(), MIN_SIZE).unwrap();
    let mut out = vec![0u8; 4096];
    assert!(c.get(&key(1, 0), &mut out), "entries survive a restart");
    assert_eq!(out, vec![7u8; 4096]);
    c.invalidate(&key(1, 0));
    assert!(!c.get(&key(1, 0), &mut out));
}

#[test]
fn bounded_and_evicts() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileCache::open(dir.path(), MIN_SIZE).unwrap();
    let data = vec![1u8; 4096];
    for b in 0..5 * N {
        c.offer(&key(9, b), &data, false);
        c.offer(&key(9, b), &data, false);
    }
    let _ = &data;
    let mut out = vec![0u8; 4096];
    let cached = (0..5 * N).filter(|&b| c.get(&key(9, b), &mut out)).count();
    assert_eq!(cached, N as usize);
    assert!(c.stats().evicted >= 4 * N as u64);
    assert_eq!(
        std::fs::metadata(dir.path().join("rcache-0.data"))
            .unwrap()
            .len(),
        MIN_SIZE
    );
    // A second user of the directory gets its own file.
    let c2 = FileCache::open(dir.path(), MIN_SIZE).unwrap();
    drop(c2);
    assert!(dir.path().join("rcache-1.data").exists());
}

#[test]
fn too_small_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let e = FileCache::open(&dir.path().join("c"), MIN_SIZE - 1).unwrap_err();
    assert!(e.to_string().contains("too small"), "{e}");
    assert!(!dir.path().join("c").exists());
}

#[test]
fn a_scribbled_slot_or_another_tag_is_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let c = FileCache::open(dir.path(), MIN_SIZE).unwrap();
    let data = vec![5u8; BLOCK];
    let mut out = vec![0u8; BLOCK];
    c.offer(&key(3, 8), &data, false);
    assert!(c.get(&key(3, 8), &mut out));
    // The same place in a segment of other contents (another tag) is not this entry.
    let other = BlockKey {
        tag: 1,
        ..key(3, 8)
    };
    assert!(!c.get(&other, &mut out));
    // Damage the slot on disk: the next get fails its checksum, drops it and counts it.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("rcache-0.data"))
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xEE; 16], 100).unwrap();
    assert!(!c.get(&key(3, 8), &mut out));
    assert_eq!(c.stats().invalidated, 1);
    assert!(!c.get(&key(3, 8), &mut out), "dropped, not found again");
}
