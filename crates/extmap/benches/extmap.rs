//! Criterion benchmarks of the extent map at 10 million extents.
//!
//! ```text
//! cargo bench -p shale-extmap            # SHALE_EXTENTS=1000000 for a quicker run
//! ```
//!
//! Two maps are built once, outside the timed loops, from 8-sector (4 KiB) extents at distinct
//! non-adjacent lbas (they never merge): one inserted in random order, one sequentially. The
//! build prints bytes/extent and the mean insert time. Criterion then times, on each map:
//! a random 8-sector lookup, an overwrite of an existing extent (punch + place), and an
//! insert of a new extent into a gap followed by its removal (the map stays the same size).
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use shale_extmap::{ExtentMap, Target};
use std::hint::black_box;
use std::time::{Duration, Instant};

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

fn target(i: u64) -> Target {
    Target::Data {
        seg: 1 + i / 4096,
        off: ((i % 4096) * 8) as u32,
    }
}

fn build(name: &str, order: &[u64]) -> ExtentMap {
    let mut map = ExtentMap::new();
    let t = Instant::now();
    for &i in order {
        map.insert(i * 16, 8, target(i));
    }
    let ns = t.elapsed().as_nanos() as f64 / order.len() as f64;
    println!(
        "build/{name}: extents={} bytes/extent={:.2} insert_ns={ns:.0} chunks={}",
        map.len(),
        map.mem_bytes() as f64 / map.len().max(1) as f64,
        map.chunk_count()
    );
    map
}

fn benches(c: &mut Criterion) {
    let n: u64 = std::env::var("SHALE_EXTENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let seed: u64 = std::env::var("SHALE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    println!("SHALE_SEED={seed} SHALE_EXTENTS={n}");
    let mut rng = Rng(seed);
    let mut order: Vec<u64> = (0..n).collect();
    for k in (1..order.len()).rev() {
        let j = rng.below(k as u64 + 1) as usize;
        order.swap(k, j);
    }
    let random = build("random", &order);
    drop(order);
    let sequential = build("sequential", &(0..n).collect::<Vec<_>>());

    for (name, mut map) in [("random", random), ("sequential", sequential)] {
        let mut group = c.benchmark_group(format!("extmap_{}M_{name}", n / 1_000_000));
        group.sample_size(20);
        group.warm_up_time(Duration::from_millis(500));
        group.measurement_time(Duration::from_secs(2));
        group.bench_function("lookup_8", |b| {
            b.iter_batched(
                || rng.below(n * 16),
                |lba| {
                    let mut hits = 0u64;
                    map.for_each_in(lba, 8, |m| hits += m.len);
                    black_box(hits)
                },
                BatchSize::SmallInput,
            )
        });
        group.bench_function("overwrite_8", |b| {
            b.iter_batched(
                || rng.below(n),
                |i| map.insert(i * 16, 8, target(i ^ 1)),
                BatchSize::SmallInput,
            )
        });
        group.bench_function("insert_then_remove_4", |b| {
            b.iter_batched(
                || rng.below(n) * 16 + 10,
                |lba| {
                    map.insert(lba, 4, Target::Zero);
                    map.remove(lba, 4);
                },
                BatchSize::SmallInput,
            )
        });
        group.finish();
    }
}

criterion_group!(extmap, benches);
criterion_main!(extmap);
