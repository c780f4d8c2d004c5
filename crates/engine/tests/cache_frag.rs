//! The read cache survives fragmentation: after random 4 KiB writes scatter an image over many
//! segments, one pass over the image leaves every page in a cache as large as the image, and
//! random 4 KiB reads then never go to the store. (A cache of 64 KiB segment blocks held ~1/16
//! of such an image and sent most reads to the store.) Reads stay byte-exact throughout.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::sync::Arc;

use shale_engine::{EngineConfig, Volume};
use shale_store::{MemoryStore, ObjectStore};

const SIZE: u64 = 8 << 20;
const PG: u64 = 4096;

/// A small deterministic generator (xorshift), so failures are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn page_data(page: u64, gen: u8) -> Vec<u8> {
    (0..PG)
        .map(|i| (page as u8).wrapping_mul(31) ^ gen ^ (i / 3) as u8)
        .collect()
}

#[test]
fn fragmented_image_is_served_from_a_page_cache() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(shale_cache::FileCache::open(dir.path(), SIZE).unwrap());
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let cfg = EngineConfig {
        segment_size: 1 << 20,
        cache: Some((cache.clone(), 9)),
        ..EngineConfig::default()
    };
    let prefix = "p/images/frag/";
    let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg.clone(), false).unwrap();
    let pages = SIZE / PG;
    let mut gen = vec![0u8; pages as usize];
    // Sequential fill, then twice the image in random 4 KiB overwrites.
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for p in 0..pages {
        vol.write(p * PG, &page_data(p, 0)).unwrap();
    }
    for _ in 0..2 * pages {
        let p = rng.next() % pages;
        gen[p as usize] = gen[p as usize].wrapping_add(1);
        vol.write(p * PG, &page_data(p, gen[p as usize])).unwrap();
    }
    vol.close().unwrap();
    let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg, false).unwrap();
    // One warm-up pass in 64 KiB reads.
    let mut buf = vec![0u8; 64 << 10];
    for off in (0..SIZE).step_by(buf.len()) {
        vol.read(off, &mut buf).unwrap();
        for (i, page) in buf.chunks(PG as usize).enumerate() {
            let p = off / PG + i as u64;
            assert!(page == page_data(p, gen[p as usize]), "page {p} wrong");
        }
    }
    let reads_after_warm = vol.stats().store_reads;
    let mut one = vec![0u8; PG as usize];
    for _ in 0..4 * pages {
        let p = rng.next() % pages;
        vol.read(p * PG, &mut one).unwrap();
        assert!(one == page_data(p, gen[p as usize]), "page {p} wrong");
    }
    let s = vol.stats();
    assert_eq!(
        s.store_reads - reads_after_warm,
        0,
        "random reads after a warm pass went to the store: {:?}",
        s.cache
    );
    assert!(s.cache.hits >= 4 * pages, "{:?}", s.cache);
    vol.close().unwrap();
}

#[test]
fn a_working_set_larger_than_the_cache_keeps_part_of_it() {
    // Scan resistance: with a cache of a quarter of the image, repeated passes over the whole
    // image still hit for the pages admitted (no thrashing down to zero hits), and every byte
    // read is right.
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(shale_cache::FileCache::open(dir.path(), SIZE / 4).unwrap());
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let cfg = EngineConfig {
        segment_size: 1 << 20,
        cache: Some((cache.clone(), 9)),
        ..EngineConfig::default()
    };
    let prefix = "p/images/big/";
    let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg.clone(), false).unwrap();
    let pages = SIZE / PG;
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for p in 0..pages {
        vol.write(p * PG, &page_data(p, 1)).unwrap();
    }
    vol.close().unwrap();
    let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg, false).unwrap();
    let mut one = vec![0u8; PG as usize];
    // A hot quarter of the image read repeatedly, interleaved with a cold scan of the rest.
    let hot = pages / 8;
    for round in 0..6 {
        for _ in 0..hot * 2 {
            let p = rng.next() % hot;
            vol.read(p * PG, &mut one).unwrap();
            assert!(one == page_data(p, 1));
        }
        for p in hot + (round * pages / 8) % (pages - hot)..pages {
            vol.read(p * PG, &mut one).unwrap();
            assert!(one == page_data(p, 1));
        }
    }
    let before = vol.stats();
    for _ in 0..hot * 2 {
        let p = rng.next() % hot;
        vol.read(p * PG, &mut one).unwrap();
    }
    let after = vol.stats();
    let hits = after.cache.hits - before.cache.hits;
    assert!(
        hits >= hot * 2 * 9 / 10,
        "the hot set was evicted by cold scans: {hits} hits of {} ({:?})",
        hot * 2,
        after.cache
    );
    vol.close().unwrap();
}

#[test]
fn gc_reads_do_not_fill_the_cache() {
    // GC reads live data only to move it: admitting it would fill the cache with entries
    // that are dead once the data is rewritten.
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(shale_cache::FileCache::open(dir.path(), SIZE).unwrap());
    let store: Arc<dyn ObjectStore> = Arc::new(MemoryStore::new());
    let cfg = EngineConfig {
        segment_size: 1 << 20,
        cache: Some((cache.clone(), 9)),
        ..EngineConfig::default()
    };
    let prefix = "p/images/gc/";
    let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg.clone(), false).unwrap();
    let pages = SIZE / PG;
    let mut gen = vec![0u8; pages as usize];
    let mut rng = Rng(0x0bad_cafe_0000_0001);
    for p in 0..pages {
        vol.write(p * PG, &page_data(p, 0)).unwrap();
    }
    for _ in 0..pages {
        let p = rng.next() % pages;
        gen[p as usize] = gen[p as usize].wrapping_add(1);
        vol.write(p * PG, &page_data(p, gen[p as usize])).unwrap();
    }
    vol.close().unwrap();
    let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg, false).unwrap();
    let before = vol.stats().cache.admitted;
    let r = vol.gc(0.99).unwrap();
    assert!(r.bytes_relocated > 0, "{r:?}");
    assert_eq!(vol.stats().cache.admitted, before, "GC admitted its reads");
    let mut one = vec![0u8; PG as usize];
    for p in 0..pages {
        vol.read(p * PG, &mut one).unwrap();
        assert!(
            one == page_data(p, gen[p as usize]),
            "page {p} wrong after GC"
        );
    }
    vol.close().unwrap();
}
