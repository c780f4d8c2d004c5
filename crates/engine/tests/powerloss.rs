//! The engine on a ring journal, or on in-place staging files, that loses power: a seeded run of writes, write-zeroes and
//! flushes over a store that sometimes loses PUT answers, then a crash of the process *and*
//! of the journal's device (unsynced journal writes dropped, reordered or torn), then a
//! reopen. The image must equal the history after some prefix that contains every operation
//! before the last completed flush. SHALE_POWERLOSS_RUNS scales the runs (default 60);
//! SHALE_POWERLOSS_SEED replays one.
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::sync::Arc;

use shale_engine::{EngineConfig, LogConfig, LogPlaceRef, StagingRef, Volume};
use shale_journal::{CrashFile, CrashMode, SimStaging};
use shale_store::{FaultStore, MemoryStore, ObjectStore};

const SIZE: u64 = 1 << 20;

use shale_clock::{mix64 as mix, Entropy, SeededEntropy};

/// The tests' random source: the library's seeded one (reproducible from the printed seed).
struct Rng(SeededEntropy);
impl Rng {
    fn new(seed: u64) -> Self {
        Rng(SeededEntropy::new(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Write { off: u64, len: u64, fill: u8 },
    Zero { off: u64, len: u64 },
}

fn apply(m: &mut [u8], op: Op) {
    match op {
        Op::Write { off, len, fill } => m[off as usize..(off + len) as usize].fill(fill),
        Op::Zero { off, len } => m[off as usize..(off + len) as usize].fill(0),
    }
}

fn run(seed: u64, in_place: bool) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let fault = Arc::new(FaultStore::new(Arc::new(MemoryStore::new()), seed));
    let lost = rng.below(3) as f64 * 0.1;
    fault.update(|f| f.lost_ack_rate = lost);
    let store: Arc<dyn ObjectStore> = fault.clone();
    let prefix = "p/images/pl/";
    let file = Arc::new(CrashFile::new());
    // The in-place path: staging files that lose power too, published into the same store.
    let staging = Arc::new(SimStaging::new(store.clone(), prefix));
    let mut cfg = EngineConfig {
        segment_size: 64 << 10,
        checkpoint_interval: 1 + rng.below(4),
        upload_threads: 1 + rng.below(3) as usize,
        upload_attempts: 100,
        log: LogConfig::Ring {
            place: LogPlaceRef::fixed(file.clone()),
            size: 2 << 20,
            owner: 5,
        },
        entropy: Arc::new(shale_clock::SeededEntropy::new(seed)),
        ..EngineConfig::default()
    };
    if in_place {
        cfg.log = LogConfig::InPlace(StagingRef(staging.clone()));
        // Records written in pieces (header last) as well as whole.
        if rng.below(2) == 0 {
            cfg.record_pieces = shale_journal::RecordPieces {
                from: 512 * (1 + rng.below(8) as usize),
                piece: 512 * (1 + rng.below(16) as usize),
            };
        }
    }
    let mut model = vec![0u8; SIZE as usize];
    for round in 0..3 {
        let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg.clone(), false)
            .map_err(|e| format!("round {round}: open: {e}"))?;
        let mut got = vec![0u8; SIZE as usize];
        vol.read(0, &mut got)
            .map_err(|e| format!("round {round}: read: {e}"))?;
        if got != model {
            return Err(format!(
                "round {round}: the recovered image differs from the model at byte {:?}",
                got.iter().zip(&model).position(|(a, b)| a != b)
            ));
        }
        let mut ops: Vec<Op> = Vec::new();
        let mut flushed = 0usize;
        for _ in 0..(10 + rng.below(80)) {
            let r = rng.below(10);
            if r == 0 {
                vol.flush().map_err(|e| format!("flush: {e}"))?;
                flushed = ops.len();
                continue;
            }
            let aligned = rng.below(3) != 0;
            let len = if aligned {
                (1 + rng.below(32)) * 512
            } else {
                1 + rng.below(20_000)
            };
            let off = if aligned {
                rng.below((SIZE - len) / 512 + 1) * 512
            } else {
                rng.below(SIZE - len + 1)
            };
            let op = if r < 8 {
                Op::Write {
                    off,
                    len,
                    fill: (rng.next() | 1) as u8,
                }
            } else {
                Op::Zero { off, len }
            };
            match op {
                Op::Write { off, len, fill } => vol.write(off, &vec![fill; len as usize]),
                Op::Zero { off, len } => vol.write_zeroes(off, len),
            }
            .map_err(|e| format!("{op:?}: {e}"))?;
            ops.push(op);
        }
        // Power loss: the process stops, the journal device keeps only what it must.
        vol.crash();
        let mode = CrashMode {
            keep_per_mille: rng.below(1001) as u32,
            reorder: rng.below(2) == 0,
            tear: rng.below(2) == 0,
        };
        file.crash(mode, || rng.next());
        staging.crash(mode, || rng.next());
        let vol = Volume::open(store.clone(), prefix, SIZE, 1, cfg.clone(), false)
            .map_err(|e| format!("round {round}: reopen after the crash: {e}"))?;
        vol.read(0, &mut got).map_err(|e| format!("read: {e}"))?;
        let mut m = model.clone();
        for op in &ops[..flushed] {
            apply(&mut m, *op);
        }
        let mut ok = m == got;
        let mut k = flushed;
        while !ok && k < ops.len() {
            apply(&mut m, ops[k]);
            k += 1;
            ok = m == got;
        }
        if !ok {
            return Err(format!(
                "round {round}: image is no prefix of the history ({} ops, {flushed} flushed, {mode:?})",
                ops.len()
            ));
        }
        model = got;
        vol.close().map_err(|e| format!("close: {e}"))?;
    }
    Ok(())
}

fn runs(in_place: bool) {
    if let Some(seed) = std::env::var("SHALE_POWERLOSS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        run(seed, in_place).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        return;
    }
    let runs: u64 = std::env::var("SHALE_POWERLOSS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let base = mix(std::process::id() as u64 ^ 0xfeed ^ in_place as u64);
    for i in 0..runs {
        let seed = mix(base ^ i);
        if let Err(e) = run(seed, in_place) {
            panic!(
                "seed {seed} (in_place={in_place}): {e}; replay with SHALE_POWERLOSS_SEED={seed}"
            );
        }
    }
    println!(
        "in_place={in_place}: {runs} runs, {} power losses",
        runs * 3
    );
}

#[test]
fn engine_on_a_journal_that_loses_power_keeps_a_flushed_prefix() {
    runs(false);
}

#[test]
fn engine_in_place_staging_that_loses_power_keeps_a_flushed_prefix() {
    runs(true);
}
