//! The write path's shortcuts (a request's buffer becomes the record's data without a copy;
//! the open segment is reserved once) keep every byte and every edge case: empty writes,
//! writes larger than a record, mixes in one batch — checked after a reopen from the store.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::sync::Arc;

use shale_engine::{EngineConfig, Volume};
use shale_store::{MemoryStore, ObjectStore};

#[test]
fn empty_large_and_batched_writes_survive_a_reopen() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let cfg = EngineConfig {
        segment_size: 1 << 20,
        ..EngineConfig::default()
    };
    let size = 16u64 << 20;
    let p = "p/images/w/";
    let vol = Arc::new(Volume::open(store.clone(), p, size, 1, cfg.clone(), false).unwrap());
    let mut model = vec![0u8; size as usize];
    // An empty aligned write first in its batch: no entry, no error.
    vol.write(4096, &[]).unwrap();
    // Larger than a record (4 MiB) and than a segment: split.
    let big: Vec<u8> = (0..9 << 20).map(|i| (i / 511) as u8).collect();
    vol.write(512, &big).unwrap();
    model[512..512 + big.len()].copy_from_slice(&big);
    // Many small writes at once (one batch), some empty, some unaligned.
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..200u64 {
        let len = match i % 5 {
            0 => 0,
            1 => 4096,
            2 => 700,
            _ => 1024,
        };
        let off = (i * 37_000) % (size - 8192);
        let data = vec![(i % 251) as u8 + 1; len];
        model[off as usize..off as usize + len].copy_from_slice(&data);
        let tx = tx.clone();
        vol.submit_write(off, data, Box::new(move |r| tx.send(r).unwrap()));
    }
    for _ in 0..200 {
        rx.recv().unwrap().unwrap();
    }
    vol.close().unwrap();
    let vol = Volume::open(store, p, size, 1, cfg, false).unwrap();
    let mut got = vec![0u8; size as usize];
    vol.read(0, &mut got).unwrap();
    assert!(got == model, "image differs from the model after reopen");
    vol.close().unwrap();
}

/// Batched writes fill segments to within one write of their size: a record ends before the
/// write that would take it past the open segment, and no write is split for that (it stays
/// atomic). Before, a batch became one record of up to 4 MiB, sealed whole into the next
/// segment: half-empty segments, and records bigger than a segment.
#[test]
fn batched_writes_fill_segments_without_splitting_a_write() {
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let seg = 256u64 << 10;
    let cfg = EngineConfig {
        segment_size: seg,
        ..EngineConfig::default()
    };
    let size = 8u64 << 20;
    let p = "p/images/f/";
    let vol = Arc::new(Volume::open(store.clone(), p, size, 1, cfg.clone(), false).unwrap());
    let mut model = vec![0u8; size as usize];
    let wlen = 40usize << 10;
    let n = 60u64;
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..n {
        let data: Vec<u8> = (0..wlen).map(|k| (k / 512) as u8 ^ i as u8).collect();
        let off = i * wlen as u64 + 4096;
        model[off as usize..off as usize + wlen].copy_from_slice(&data);
        let tx = tx.clone();
        vol.submit_write(off, data, Box::new(move |r| tx.send(r).unwrap()));
    }
    for _ in 0..n {
        rx.recv().unwrap().unwrap();
    }
    vol.close().unwrap();
    let mut segs: Vec<String> = store
        .list(&format!("{p}seg/"))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    segs.sort();
    let mut writes = 0u64;
    for (k, key) in segs.iter().enumerate() {
        let (obj, _) = store.get(key).unwrap();
        let (h, _) = shale_format::segment::decode(&obj).unwrap();
        let used: u64 = h
            .entries
            .iter()
            .map(|e| (e.off as u64 + e.len as u64) * 512)
            .max()
            .unwrap_or(0);
        // A segment may hold its size plus 1/128 of it for record headers.
        let limit = seg + seg / 128;
        assert!(used <= limit, "{key} holds {used} bytes");
        if k + 1 < segs.len() {
            assert!(
                used + wlen as u64 + 512 > limit,
                "{key} is not full: {used} of {seg} bytes"
            );
        }
        // Every write whole in one segment.
        for e in &h.entries {
            assert_eq!(
                e.len as usize * 512,
                wlen,
                "{key}: a write was split: {e:?}"
            );
        }
        writes += h.entries.len() as u64;
    }
    assert_eq!(writes, n);
    let vol = Volume::open(store, p, size, 1, cfg, false).unwrap();
    let mut got = vec![0u8; size as usize];
    vol.read(0, &mut got).unwrap();
    assert!(got == model, "image differs after reopen");
    vol.close().unwrap();
}
