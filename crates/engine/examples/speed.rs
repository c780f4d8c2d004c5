//! Measurements for bench/results-compare.md that fio cannot make (issue 12):
//!
//! - `scale DIR N ACTIVE SECS`: open N images on a local-directory store (in-place log, as the
//!   image layer configures it), run 4 KiB random writes (one thread per active image, QD1
//!   synchronous) on ACTIVE of them for SECS seconds; print aggregate IOPS, the process's
//!   thread count and resident memory.
//! - `write DIR MIB BS`: write MIB MiB in BS-byte writes (sequential for BS >= 64 KiB, random
//!   4 KiB-aligned otherwise; 8 writers) to one image on a local-directory store; print MiB/s
//!   and the process's CPU time per write (user + system, from /proc/self/stat).
//! - `crash-fill DIR JOURNAL_BYTES`: a ring journal of JOURNAL_BYTES behind a store that refuses
//!   every segment upload; write until the journal is full (minus one segment), flush, then
//!   abort the process (no close, no destructors: a crash).
//! - `crash-open DIR JOURNAL_BYTES`: open the same image (store reachable again) and print how
//!   long `Volume::open` took (journal replay included), then verify every written page.
#![allow(clippy::disallowed_methods)] // a measuring tool: real time is the point

use std::sync::Arc;
use std::time::{Duration, Instant};

use shale_engine::{EngineConfig, LogConfig, LogPlaceRef, StagingRef, Volume};
use shale_store::{FaultStore, LocalStore, ObjectStore};

const PG: u64 = 4096;

fn usage() -> ! {
    eprintln!("usage: speed scale DIR N ACTIVE SECS | crash-fill DIR BYTES | crash-open DIR BYTES");
    std::process::exit(2)
}

fn page(p: u64, gen: u64) -> Vec<u8> {
    let mut v = vec![0u8; PG as usize];
    for (i, c) in v.chunks_mut(8).enumerate() {
        c.copy_from_slice(&(p.wrapping_mul(0x9e37_79b9) ^ gen ^ i as u64).to_le_bytes());
    }
    v
}

fn proc_status(key: &str) -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 4 {
        usage()
    }
    let dir = std::path::PathBuf::from(&a[2]);
    let num = |i: usize| -> u64 {
        a.get(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| usage())
    };
    match a[1].as_str() {
        "write" => write(&dir, num(3), num(4) as usize),
        "scale" => scale(&dir, num(3) as usize, num(4) as usize, num(5)),
        "crash-fill" => crash(&dir, num(3), true),
        "crash-open" => crash(&dir, num(3), false),
        _ => usage(),
    }
}

fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name; 100 ticks/s.
    (t(11) + t(12)) / 100.0
}

fn local_volume(store: &Arc<dyn ObjectStore>, prefix: &str, size: u64) -> Volume {
    let staging = shale_journal::DirStaging::new(store.clone(), prefix)
        .expect("a local-directory store stages in place");
    let cfg = EngineConfig {
        log: LogConfig::InPlace(StagingRef(Arc::new(staging))),
        ..EngineConfig::default()
    };
    Volume::open(store.clone(), prefix, size, 1, cfg, false).unwrap()
}

fn write(dir: &std::path::Path, mib: u64, bs: usize) {
    const SIZE: u64 = 1 << 30;
    std::fs::create_dir_all(dir).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.join("store")).unwrap());
    let vol = Arc::new(local_volume(&store, "rbd/images/w/", SIZE));
    let n = (mib << 20) / bs as u64;
    let writers = 8u64;
    let (c0, t0) = (cpu_secs(), Instant::now());
    let hs: Vec<_> = (0..writers)
        .map(|w| {
            let vol = vol.clone();
            std::thread::spawn(move || {
                let data = vec![w as u8 + 1; bs];
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ w;
                for i in (w..n).step_by(writers as usize) {
                    let off = if bs >= 64 << 10 {
                        i * bs as u64 % SIZE
                    } else {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x % (SIZE / bs as u64) * bs as u64
                    };
                    vol.write(off, &data).unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    vol.flush().unwrap();
    let (el, cpu) = (t0.elapsed().as_secs_f64(), cpu_secs() - c0);
    println!(
        "bs={bs} writes={n} {:.0} MiB/s {:.0} IOPS, CPU {:.1} us per write",
        mib as f64 / el,
        n as f64 / el,
        cpu / n as f64 * 1e6
    );
    vol.close().unwrap();
}

fn scale(dir: &std::path::Path, n: usize, active: usize, secs: u64) {
    const SIZE: u64 = 256 << 20;
    std::fs::create_dir_all(dir).unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.join("store")).unwrap());
    let threads0 = proc_status("Threads:");
    let mut vols = Vec::new();
    for i in 0..n {
        let prefix = format!("rbd/images/img{i}/");
        vols.push(Arc::new(local_volume(&store, &prefix, SIZE)));
    }
    let threads_open = proc_status("Threads:");
    let rss_open = proc_status("VmRSS:");
    let stop = Instant::now() + Duration::from_secs(secs);
    let mut hs = Vec::new();
    for (i, v) in vols.iter().take(active).enumerate() {
        let v = v.clone();
        hs.push(std::thread::spawn(move || {
            let mut x = 0x2545_f491_4f6c_dd1du64 ^ i as u64;
            let mut ios = 0u64;
            let data = page(i as u64, 7);
            while Instant::now() < stop {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.write(x % (SIZE / PG) * PG, &data).unwrap();
                ios += 1;
            }
            ios
        }));
    }
    let t0 = Instant::now();
    let ios: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
    let el = t0.elapsed().as_secs_f64();
    let rss_run = proc_status("VmRSS:");
    for v in &vols {
        v.close().unwrap();
    }
    println!(
        "images={n} active={active} secs={el:.1} iops={:.0} threads_before={threads0} \
         threads_open={threads_open} rss_open={rss_open} rss_after_io={rss_run}",
        ios as f64 / el
    );
}

fn crash(dir: &std::path::Path, journal: u64, fill: bool) {
    const SIZE: u64 = 4 << 30;
    std::fs::create_dir_all(dir).unwrap();
    let local: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(dir.join("store")).unwrap());
    let fault = Arc::new(FaultStore::new(local.clone(), 1));
    let store: Arc<dyn ObjectStore> = fault.clone();
    let seg = 32u64 << 20;
    let cfg = EngineConfig {
        segment_size: seg,
        max_pending: (journal / seg) as usize + 2,
        log: LogConfig::Ring {
            place: LogPlaceRef::file(dir.join("image.jnl")),
            size: journal,
            owner: 7,
        },
        ..EngineConfig::default()
    };
    let prefix = "rbd/images/crash/";
    // Pages written: the journal's size less two segments (the ring keeps room to wrap).
    let pages = (journal - 2 * seg) / PG;
    if fill {
        let vol = Volume::open(store, prefix, SIZE, 1, cfg, false).unwrap();
        fault.update(|c| c.fail_puts = true);
        let t0 = Instant::now();
        let chunk = 256u64; // 1 MiB writes of 256 distinct pages
        for c in 0..pages / chunk {
            let mut buf = Vec::with_capacity((chunk * PG) as usize);
            for p in c * chunk..(c + 1) * chunk {
                buf.extend_from_slice(&page(p, 1));
            }
            vol.write(c * chunk * PG, &buf).unwrap();
        }
        vol.flush().unwrap();
        let s = vol.stats();
        println!(
            "filled {} MiB in {:.1}s; journal used {} of {} MiB, {} segments not stored",
            pages / chunk,
            t0.elapsed().as_secs_f64(),
            s.log.used >> 20,
            s.log.capacity >> 20,
            s.pending_segments
        );
        std::process::abort();
    }
    let t0 = Instant::now();
    let vol = Volume::open(local, prefix, SIZE, 1, cfg, false).unwrap();
    let open = t0.elapsed();
    let written = pages / 256 * 256;
    let mut buf = vec![0u8; PG as usize];
    for p in (0..written).step_by(97) {
        vol.read(p * PG, &mut buf).unwrap();
        assert!(buf == page(p, 1), "page {p} lost or wrong after the crash");
    }
    println!(
        "open after crash with {} MiB in the journal: {:.3}s (journal used {} MiB); sampled pages verified",
        (written * PG) >> 20,
        open.as_secs_f64(),
        vol.stats().log.used >> 20
    );
    let t1 = Instant::now();
    vol.close().unwrap();
    println!(
        "close (stores the replayed segments): {:.1}s",
        t1.elapsed().as_secs_f64()
    );
}
