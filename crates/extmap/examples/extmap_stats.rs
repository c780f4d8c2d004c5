//! Quick size and speed figures for the extent map at 10 million extents.
//!
//! ```text
//! cargo run --release -p shale-extmap --example extmap_stats [-- EXTENTS]
//! ```
//!
//! Builds the map from 8-sector (4 KiB) extents at distinct, non-adjacent positions (so they
//! never merge), once in random order and once sequentially, and prints one line per order:
//! `extents=… bytes/extent=… insert_ns=… lookup_ns=… order=… chunks=…` (the first line adds
//! `rss_bytes/extent=…`, the growth of the resident set while building, allocator overhead
//! included).
//! `insert_ns` is the mean over building the whole map; `lookup_ns` the mean of 2M random
//! 8-sector `for_each_in` calls on the full map. The shuffle seed comes from `SHALE_SEED`
//! (printed, so a run can be repeated); `SHALE_CHUNK_ENTRIES` overrides the chunk size.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use shale_extmap::{ExtentMap, Target};
use std::hint::black_box;
use std::time::Instant;

/// SplitMix64: small, seedable, good enough to shuffle.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Resident set size in bytes, if the platform tells.
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn target(i: u64) -> Target {
    Target::Data {
        seg: 1 + i / 4096,
        off: ((i % 4096) * 8) as u32,
    }
}

fn run(order_name: &str, order: &[u64], rng: &mut Rng, with_rss: bool) {
    let n = order.len() as u64;
    let rss0 = rss_bytes();
    let mut map = match std::env::var("SHALE_CHUNK_ENTRIES")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(cap) => ExtentMap::with_chunk_capacity(cap),
        None => ExtentMap::new(),
    };
    let t = Instant::now();
    for &i in order {
        map.insert(i * 16, 8, target(i));
    }
    let insert_ns = t.elapsed().as_nanos() as f64 / n as f64;
    // Only meaningful for the first map built: later ones reuse memory the allocator kept.
    let rss = match (with_rss, rss0, rss_bytes()) {
        (true, Some(a), Some(b)) => format!(
            " rss_bytes/extent={:.1}",
            b.saturating_sub(a) as f64 / n as f64
        ),
        _ => String::new(),
    };

    let probes: Vec<u64> = (0..2_000_000).map(|_| rng.below(n * 16)).collect();
    let t = Instant::now();
    let mut found = 0u64;
    for &lba in &probes {
        map.for_each_in(lba, 8, |m| {
            if m.target.is_some() {
                found += m.len;
            }
        });
    }
    let lookup_ns = t.elapsed().as_nanos() as f64 / probes.len() as f64;
    black_box(found);

    println!(
        "extents={} bytes/extent={:.2} insert_ns={:.0} lookup_ns={:.0} order={} chunks={}{}",
        map.len(),
        map.mem_bytes() as f64 / map.len().max(1) as f64,
        insert_ns,
        lookup_ns,
        order_name,
        map.chunk_count(),
        rss,
    );
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let seed = std::env::var("SHALE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_u64);
    eprintln!("SHALE_SEED={seed}");
    let mut rng = Rng(seed);
    let mut order: Vec<u64> = (0..n).collect();
    for k in (1..order.len()).rev() {
        let j = rng.below(k as u64 + 1) as usize;
        order.swap(k, j);
    }
    run("random", &order, &mut rng, true);
    order.sort_unstable();
    run("sequential", &order, &mut rng, false);
}
