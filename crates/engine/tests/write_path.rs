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
