//! Crash-test writer: random I/O on one image until killed — up to 32 asynchronous writes and
//! write-zeroes in flight (group commit, out-of-order uploads), asynchronous flushes in flight
//! with them, and now and then a snapshot.
//!
//! usage: shale-crash-writer STORE_URL IMAGE SEED LOGFILE
//! The store must hold pool `rbd` with the image. See shale_testkit for the log protocol: every
//! operation is logged before it is submitted (one submitting thread, so the log order is the
//! order the engine applies them); `Flushed { upto }` is logged when a flush completes, with
//! `upto` = the number of operations that had completed when it was submitted; `Snap` after a
//! snapshot creation returns (taken with nothing in flight).
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::sync::{Arc, Condvar, Mutex};

use shale_testkit::{Op, Rng};

/// Operations submitted and completed; completions arrive in submission order from the
/// engine, but are counted without relying on it.
#[derive(Default)]
struct Track {
    submitted: u64,
    done: std::collections::BTreeSet<u64>,
    /// Every operation below this has completed.
    prefix: u64,
    failed: Option<String>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: shale-crash-writer STORE_URL IMAGE SEED LOGFILE");
        std::process::exit(2);
    }
    if let Err(e) = run(&args[1], &args[2], &args[3], &args[4]) {
        eprintln!("shale-crash-writer: {e}");
        std::process::exit(1);
    }
}

fn run(url: &str, image: &str, seed: &str, log: &str) -> Result<(), Box<dyn std::error::Error>> {
    let seed: u64 = seed.parse()?;
    let mut s = shale_image::Settings::load()?;
    s.set("store", url)?;
    let c = shale_image::Cluster::connect(s)?;
    let img = c.open_image("rbd", image, false)?;
    let size = img.size();
    let f = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?,
    ));
    let track = Arc::new((Mutex::new(Track::default()), Condvar::new()));
    let mut rng = Rng::new(seed);
    let qd = 1 + rng.below(32);
    let mut n = 0u64;
    let mut snaps = 0u64;
    let wait_inflight = |max: u64| -> Result<(), String> {
        let (m, cv) = &*track;
        let mut t = m.lock().unwrap();
        while t.submitted - t.prefix - t.done.len() as u64 >= max && t.failed.is_none() {
            t = cv.wait(t).unwrap();
        }
        match &t.failed {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    };
    loop {
        let r = rng.below(1000);
        if r < 60 {
            // A flush in flight with the writes: it covers what had completed when submitted.
            let upto = track.0.lock().unwrap().prefix;
            let f2 = f.clone();
            let t2 = track.clone();
            img.submit_flush(Box::new(move |res| match res {
                Ok(()) => {
                    let _ = Op::Flushed { upto }.append(&mut f2.lock().unwrap());
                }
                Err(e) => {
                    t2.0.lock().unwrap().failed = Some(format!("flush: {e}"));
                    t2.1.notify_all();
                }
            }));
            continue;
        }
        if r < 65 {
            // A snapshot, with nothing in flight: it holds exactly the operations before n.
            wait_inflight(1)?;
            snaps += 1;
            let id = snaps;
            img.snap_create(&format!("s{id}"))?;
            Op::Snap { upto: n, id }.append(&mut f.lock().unwrap())?;
            continue;
        }
        let aligned = rng.below(4) != 0;
        let len = if aligned {
            (1 + rng.below(64)) * 512
        } else {
            1 + rng.below(40_000)
        };
        let off = if aligned {
            rng.below((size - len) / 512 + 1) * 512
        } else {
            rng.below(size - len + 1)
        };
        let op = if r < 870 {
            Op::Write {
                off,
                len,
                seed: rng.next_u64(),
            }
        } else {
            Op::Zero { off, len }
        };
        wait_inflight(qd)?;
        op.append(&mut f.lock().unwrap())?;
        let me = n;
        let t2 = track.clone();
        let done: shale_engine::Done = Box::new(move |res| {
            let (m, cv) = &*t2;
            let mut t = m.lock().unwrap();
            match res {
                Ok(()) => {
                    t.done.insert(me);
                    loop {
                        let p = t.prefix;
                        if !t.done.remove(&p) {
                            break;
                        }
                        t.prefix += 1;
                    }
                }
                Err(e) => t.failed = Some(format!("operation {me}: {e}")),
            }
            cv.notify_all();
        });
        track.0.lock().unwrap().submitted += 1;
        match op {
            Op::Write { off, len, seed } => {
                img.submit_write(off, shale_testkit::pattern(seed, off, len), done)
            }
            Op::Zero { off, len } => img.submit_zero(off, len, done),
            Op::Flushed { .. } | Op::Snap { .. } => {}
        }
        n += 1;
    }
}
