//! A deterministic-workload crash and fault simulator for the engine (in the spirit of
//! FoundationDB's and SlateDB's simulation tests), run as an ordinary cargo test
//! (`crates/testkit/tests/sim.rs`; docs/SIMULATOR.md).
//!
//! A *scenario* is a function of one u64 seed: the engine configuration (log device, segment
//! size, checkpoint interval, upload threads, GC thresholds, durability), the image size, and a
//! sequence of steps — bursts of up to 64 concurrent writes / write-zeroes / flushes submitted
//! with completions, crashes (with requests in flight; a process kill, a power loss of the
//! journal device that drops, reorders or tears unsynced journal writes, or the loss of the
//! whole journal), clean close + reopen, resizes and snapshots (also with requests in flight),
//! snapshots removed and read back, GC (in the foreground and concurrently with the workload),
//! store faults switched on and off (error rates, lost PUT acknowledgements, latency, offline
//! windows) and takeovers by a new writer (new epoch and fence, the old lease run out) while
//! the old one keeps running. All of it runs on `shale_store::MemoryStore` behind
//! `shale_store::FaultStore`, with the engine's clock sped up (see [`AcceleratedClock`]) and its
//! randomness seeded. One scenario in five drives the image layer instead (`image.rs`:
//! snapshots, protection, clones, flatten, rollback, resize, exclusive lock, read cache).
//!
//! Checks (a failure is a [`Violation`], reported with the scenario seed):
//! - after every crash and reopen the image equals the model after some prefix p of the
//!   acknowledged history, with p at or past the last completed flush (journal kept) or the
//!   last completed store-durability point (journal lost, memory log) — so no acknowledged and
//!   flushed write is lost, no garbage appears and no mix that never existed is shown;
//! - after a clean close the image equals the whole acknowledged history;
//! - live reads equal everything acknowledged; every snapshot equals the image when it was
//!   taken, across crashes, GC and reopens;
//! - nothing hangs (every wait has a deadline), nothing panics, requests past the end are
//!   refused, and without an injected fault nothing fails;
//! - after a takeover nothing the old writer does becomes visible, and what the old writer
//!   reads is its own data or an error.
//!
//! Determinism: everything the simulator decides comes from the seed. The engine's own threads
//! (committer, uploads, GC) and the store's fault draws still interleave as the OS schedules
//! them, so a replay runs the same workload against the same faults and crash points but may
//! interleave differently; `SHALE_SIM_REPEAT` replays a seed many times.

mod engine;
mod image;
mod locations;
pub mod model;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The engine's clock in a scenario: real time sped up `accel` times (every timestamp,
/// deadline and deliberate sleep of the engine: retry backoffs, seal timers, lease expiry,
/// bounded waits), so slow paths are reached in a fraction of the real time.
#[derive(Debug)]
pub struct AcceleratedClock {
    start: Instant,
    unix0_ms: u64,
    accel: u32,
}

impl AcceleratedClock {
    pub fn new(accel: u32, unix0_ms: u64) -> Self {
        AcceleratedClock {
            start: Instant::now(),
            unix0_ms,
            accel: accel.max(1),
        }
    }
}

impl shale_clock::Clock for AcceleratedClock {
    fn now(&self) -> Instant {
        self.start + self.start.elapsed() * self.accel
    }
    fn unix_ms(&self) -> u64 {
        self.unix0_ms + (self.start.elapsed() * self.accel).as_millis() as u64
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d / self.accel);
    }
}

/// A broken promise, with what is needed to replay it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The scenario seed: `SHALE_SIM_SEED=<seed>` replays it.
    pub seed: u64,
    /// A short class name (`not-a-prefix`, `hang`, `snapshot-mismatch`, ...).
    pub kind: &'static str,
    pub step: usize,
    pub detail: String,
}

/// Counters of one scenario or a whole run.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub scenarios: u64,
    pub steps: u64,
    pub ops: u64,
    pub flushes: u64,
    pub crashes: u64,
    pub crashes_in_flight: u64,
    pub power_losses: u64,
    pub journal_losses: u64,
    pub closes: u64,
    pub takeovers: u64,
    /// Cooperative lock handoffs on one host (same journal file, new epoch).
    pub handoffs: u64,
    pub zombie_ops: u64,
    pub resizes: u64,
    pub snapshots: u64,
    pub snapshot_checks: u64,
    pub gc_runs: u64,
    pub faults_injected: u64,
    pub fault_changes: u64,
    pub offline_windows: u64,
    pub checks: u64,
    pub checks_retried: u64,
    pub open_retries: u64,
    pub errors_tolerated: u64,
    pub ops_lost: u64,
    /// Scenarios ended early because the model became uncertain (not a violation).
    pub uncertain: u64,
    /// Scenarios of the image-layer family, and what they did.
    pub image_scenarios: u64,
    pub clones: u64,
    pub flattens: u64,
    pub rollbacks: u64,
    /// Scenarios of the several-locations family.
    pub location_scenarios: u64,
}

impl Figures {
    pub fn add(&mut self, o: &Figures) {
        macro_rules! add {
            ($($f:ident),*) => { $(self.$f += o.$f;)* };
        }
        add!(
            scenarios,
            steps,
            ops,
            flushes,
            crashes,
            crashes_in_flight,
            power_losses,
            journal_losses,
            closes,
            takeovers,
            handoffs,
            zombie_ops,
            resizes,
            snapshots,
            snapshot_checks,
            gc_runs,
            faults_injected,
            fault_changes,
            offline_windows,
            checks,
            checks_retried,
            open_retries,
            errors_tolerated,
            ops_lost,
            uncertain,
            image_scenarios,
            clones,
            flattens,
            rollbacks,
            location_scenarios
        );
    }
}

/// How scenarios run.
#[derive(Debug, Clone)]
pub struct Options {
    /// A call or request that takes longer than this is a hang.
    pub hang: Duration,
    /// Print every step to stderr.
    pub verbose: bool,
    /// Include takeovers by a new writer while the old one keeps running.
    pub takeovers: bool,
    /// One scenario in this many drives the image layer instead of the engine (0: never).
    pub image_every: u64,
    /// One scenario in this many keeps the data at several locations (0: never).
    pub locations_every: u64,
    /// Force the engine clock's speed-up (None: each scenario's seed picks it).
    pub accel: Option<u32>,
    /// Checker self-test: break the store behind the engine's back at every crash, as a buggy
    /// engine would, to show that the checks notice (`drop-newest-segment`,
    /// `corrupt-segment`, `ignore-journal-loss`). Never set in normal runs.
    pub mutate: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            hang: Duration::from_secs(30),
            verbose: false,
            takeovers: true,
            image_every: 5,
            locations_every: 6,
            accel: None,
            mutate: None,
        }
    }
}

/// What one scenario did and found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub figures: Figures,
    pub violations: Vec<Violation>,
    pub elapsed: Duration,
    /// The configuration its seed chose.
    pub params: String,
    /// The steps it took (the last few hundred).
    pub trace: Vec<String>,
}

/// The seed of scenario `i` of a run with master seed `master`.
pub fn scenario_seed(master: u64, i: u64) -> u64 {
    model::mix(master, i)
}

/// Run one scenario. A panic in the simulator itself is reported as a violation too.
pub fn run_scenario(seed: u64, opts: &Options) -> Outcome {
    let t0 = Instant::now();
    let o = opts.clone();
    let image = o.image_every > 0 && model::mix(seed, 0x1a6e).is_multiple_of(o.image_every);
    let locs = !image
        && o.locations_every > 0
        && model::mix(seed, 0x10c5).is_multiple_of(o.locations_every);
    match std::panic::catch_unwind(move || {
        if locs {
            locations::LocSim::new(seed, o).run()
        } else if image {
            match image::ImgSim::new(seed, o) {
                Ok(s) => s.run(),
                Err(e) => Outcome {
                    seed,
                    figures: Figures {
                        scenarios: 1,
                        image_scenarios: 1,
                        ..Default::default()
                    },
                    violations: vec![Violation {
                        seed,
                        kind: "image/setup-failed",
                        step: 0,
                        detail: e,
                    }],
                    elapsed: Duration::ZERO,
                    params: String::new(),
                    trace: Vec::new(),
                },
            }
        } else {
            engine::Sim::new(seed, o).run()
        }
    }) {
        Ok(out) => out,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Outcome {
                seed,
                figures: Figures {
                    scenarios: 1,
                    ..Default::default()
                },
                violations: vec![Violation {
                    seed,
                    kind: "panic",
                    step: 0,
                    detail: format!("the scenario panicked: {msg}"),
                }],
                elapsed: t0.elapsed(),
                params: String::new(),
                trace: Vec::new(),
            }
        }
    }
}

/// A whole run.
#[derive(Debug, Default)]
pub struct Summary {
    pub figures: Figures,
    /// Scenarios with at least one violation.
    pub failed: Vec<Outcome>,
    pub elapsed: Duration,
    /// Scenario wall times, sorted.
    pub times: Vec<Duration>,
}

impl Summary {
    pub fn violations(&self) -> usize {
        self.failed.iter().map(|o| o.violations.len()).sum()
    }

    /// Wall time of the p-th percentile scenario.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.times.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.times.len() - 1) as f64 * p).round() as usize;
        self.times[i]
    }
}

/// Run `seeds` on `workers` threads; `progress` sees every outcome as it finishes.
pub fn run_many(
    seeds: &[u64],
    workers: usize,
    opts: &Options,
    progress: impl Fn(&Outcome) + Sync,
) -> Summary {
    let t0 = Instant::now();
    let next = AtomicU64::new(0);
    let sum = Mutex::new(Summary::default());
    let seeds = Arc::new(seeds.to_vec());
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= seeds.len() {
                    return;
                }
                let out = run_scenario(seeds[i], opts);
                progress(&out);
                let mut g = sum.lock().unwrap_or_else(|p| p.into_inner());
                g.figures.add(&out.figures);
                g.times.push(out.elapsed);
                if !out.violations.is_empty() {
                    g.failed.push(out);
                }
            });
        }
    });
    let mut s = sum.into_inner().unwrap_or_else(|p| p.into_inner());
    s.times.sort();
    s.failed.sort_by_key(|o| o.seed);
    s.elapsed = t0.elapsed();
    s
}
