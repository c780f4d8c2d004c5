//! The crash-and-fault simulator as a test (see shale_testkit::sim and docs/SIMULATOR.md).
//!
//! Environment:
//! - `SHALE_SIM_SEED=<n>`       replay one scenario (its seed is printed with every violation);
//! - `SHALE_SIM_REPEAT=<n>`     with SHALE_SIM_SEED: run it n times (thread interleavings vary);
//! - `SHALE_SIM_SCENARIOS=<n>`  how many scenarios (default 10 000 in release, 2 000 in debug);
//! - `SHALE_SIM_MASTER=<n>`     master seed (default: from the clock; printed);
//! - `SHALE_SIM_WORKERS=<n>`    scenarios run at once (default 16: they mostly wait);
//! - `SHALE_SIM_HANG_SECS=<n>`  a wait longer than this is a hang (default 30);
//! - `SHALE_SIM_VERBOSE=1`      print every step;
//! - `SHALE_SIM_TAKEOVERS=0`    leave out takeovers (a second writer while the first runs on);
//! - `SHALE_SIM_IMAGE_EVERY=<n>` one scenario in n drives the image layer (default 5; 0: none);
//! - `SHALE_SIM_LOCATIONS_EVERY=<n>` one scenario in n keeps its data at several locations
//!   (default 6; 0: none);
//! - `SHALE_SIM_ACCEL=<n>`      run the engine's clock n times faster than real time (default:
//!   each scenario's seed picks 1, 4, 10 or 25);
//! - `SHALE_SIM_MUTATE=drop-newest-segment|corrupt-segment|ignore-journal-loss`  checker
//!   self-test: damage the store at every crash (or check too strictly); violations must appear;
//! - `SHALE_SIM_ALLOW_KNOWN=kind,kind`  violations of these kinds are reported but do not fail
//!   (`prefix*` matches a family, e.g. `stale-writer*`);
//! - `SHALE_SIM_REPORT=<file>`  where every violation is appended in full (seed, replay command,
//!   parameters, the scenario's last steps), so a rare one is never lost with a console's
//!   scrollback (default: sim-violations.log in cargo's target tmp dir).
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use std::time::Duration;

use shale_testkit::sim::{run_many, scenario_seed, Options, Outcome, Summary};

/// Scenarios per run when SHALE_SIM_SCENARIOS is not set: 10 000 in a release build (≈ 3
/// minutes on two cores), 2 000 in a debug build (≈ 2 minutes). See docs/SIMULATOR.md.
const DEFAULT_SCENARIOS: u64 = if cfg!(debug_assertions) {
    2_000
} else {
    10_000
};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The settings a replay needs besides the seed (they change what a seed means).
fn replay_env(opts: &Options) -> String {
    let mut e = String::new();
    if opts.image_every != 5 {
        e += &format!("SHALE_SIM_IMAGE_EVERY={} ", opts.image_every);
    }
    if opts.locations_every != 6 {
        e += &format!("SHALE_SIM_LOCATIONS_EVERY={} ", opts.locations_every);
    }
    if !opts.takeovers {
        e += "SHALE_SIM_TAKEOVERS=0 ";
    }
    if let Some(a) = opts.accel {
        e += &format!("SHALE_SIM_ACCEL={a} ");
    }
    if let Some(m) = &opts.mutate {
        e += &format!("SHALE_SIM_MUTATE={m} ");
    }
    e
}

/// Each violation of a scenario: kind, seed, step, detail, the replay command and parameters.
fn violations_text(o: &Outcome, env: &str) -> String {
    o.violations
        .iter()
        .map(|v| {
            format!(
                "VIOLATION {} in scenario seed {} at step {}: {}\n  replay: {env}SHALE_SIM_SEED={} cargo test -p shale-testkit --release --test sim -- --nocapture\n  params: {}\n",
                v.kind, v.seed, v.step, v.detail, v.seed, o.params
            )
        })
        .collect()
}

fn print_outcome(o: &Outcome, trace: bool, env: &str) {
    print!("{}", violations_text(o, env));
    if trace {
        let n = o.trace.len();
        for t in &o.trace[n.saturating_sub(40)..] {
            println!("    {t}");
        }
    }
}

/// Where each violation is kept in full.
fn report_file() -> std::path::PathBuf {
    std::env::var_os("SHALE_SIM_REPORT")
        .map(Into::into)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("sim-violations.log")
        })
}

/// Append a failed scenario, with its last steps, to the report file.
fn keep_outcome(o: &Outcome, env: &str, master: Option<u64>) {
    use std::io::Write;
    let mut t = format!("==== {} master {master:?}\n", now_stamp());
    t += &violations_text(o, env);
    for line in &o.trace {
        t += &format!("    {line}\n");
    }
    let path = report_file();
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(t.as_bytes()));
    match written {
        Ok(()) => println!("  (kept in full in {})", path.display()),
        Err(e) => println!("  (could not keep it in {}: {e})", path.display()),
    }
}

/// Seconds since the epoch: enough to tell runs apart in the report file.
fn now_stamp() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| format!("t={}", d.as_secs()))
        .unwrap_or_default()
}

fn report(s: &Summary, master: Option<u64>) {
    let f = &s.figures;
    println!("---- shale simulator ----");
    if let Some(m) = master {
        println!("master seed          {m} (SHALE_SIM_MASTER={m} reruns this set)");
    }
    println!(
        "scenarios run        {} ({} engine-level, {} through the image layer)",
        f.scenarios,
        f.scenarios - f.image_scenarios,
        f.image_scenarios
    );
    println!(
        "wall time            {:.1} s ({:.1} ms per scenario; median {:?}, p99 {:?}, max {:?})",
        s.elapsed.as_secs_f64(),
        s.elapsed.as_secs_f64() * 1000.0 / f.scenarios.max(1) as f64,
        s.percentile(0.5),
        s.percentile(0.99),
        s.percentile(1.0)
    );
    println!("steps                {}", f.steps);
    println!(
        "I/O requests         {} (+{} by writers that lost the image)",
        f.ops, f.zombie_ops
    );
    println!("flushes              {}", f.flushes);
    println!(
                "crashes injected     {} ({} with requests in flight, {} also a power loss of the journal device, {} losing the journal)",
        f.crashes, f.crashes_in_flight, f.power_losses, f.journal_losses
    );
    println!("clean close+reopen   {}", f.closes);
    println!("takeovers            {}", f.takeovers);
    println!("lock handoffs        {}", f.handoffs);
    println!("resizes              {}", f.resizes);
    println!(
        "snapshots            {} taken, {} read back",
        f.snapshots, f.snapshot_checks
    );
    println!("gc runs              {}", f.gc_runs);
    println!(
        "image layer          {} clones, {} flattens, {} rollbacks",
        f.clones, f.flattens, f.rollbacks
    );
    println!(
        "several locations    {} scenarios (2-3 stores, sync/async, failing and returning)",
        f.location_scenarios
    );
    println!(
        "faults injected      {} store errors / lost acks ({} fault-profile changes, {} offline windows)",
        f.faults_injected, f.fault_changes, f.offline_windows
    );
    println!(
        "checks               {} image checks, {} retried under faults; {} errors tolerated under faults; {} open retries",
        f.checks, f.checks_retried, f.errors_tolerated, f.open_retries
    );
    println!(
        "acknowledged, unflushed ops dropped by crashes (allowed): {}",
        f.ops_lost
    );
    println!(
        "scenarios ended early, model uncertain (not violations): {}",
        f.uncertain
    );
    println!("violations found     {}", s.violations());
    let mut kinds: std::collections::BTreeMap<&str, Vec<u64>> = Default::default();
    for o in &s.failed {
        for v in &o.violations {
            kinds.entry(v.kind).or_default().push(v.seed);
        }
    }
    for (k, seeds) in &kinds {
        println!(
            "  {k}: {} (seeds {:?})",
            seeds.len(),
            &seeds[..seeds.len().min(10)]
        );
    }
}

#[test]
fn simulation() {
    // SHALE_LOG=warn (or info, debug) shows the engine's own log lines next to the trace.
    if std::env::var_os("SHALE_LOG").is_some() {
        shale_log::init_from_env();
    }
    let opts = Options {
        hang: Duration::from_secs(env_u64("SHALE_SIM_HANG_SECS").unwrap_or(30)),
        verbose: env_u64("SHALE_SIM_VERBOSE").unwrap_or(0) != 0,
        takeovers: env_u64("SHALE_SIM_TAKEOVERS").unwrap_or(1) != 0,
        image_every: env_u64("SHALE_SIM_IMAGE_EVERY").unwrap_or(5),
        locations_every: env_u64("SHALE_SIM_LOCATIONS_EVERY").unwrap_or(6),
        accel: env_u64("SHALE_SIM_ACCEL").map(|a| a as u32),
        mutate: std::env::var("SHALE_SIM_MUTATE").ok(),
    };
    let (seeds, master) = match env_u64("SHALE_SIM_SEED") {
        Some(seed) => {
            let n = env_u64("SHALE_SIM_REPEAT").unwrap_or(1).max(1);
            println!("replaying scenario seed {seed} ({n} time(s))");
            (vec![seed; n as usize], None)
        }
        None => {
            let master = env_u64("SHALE_SIM_MASTER").unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            });
            let n = env_u64("SHALE_SIM_SCENARIOS").unwrap_or(DEFAULT_SCENARIOS);
            println!("simulating {n} scenarios from master seed {master}");
            (
                (0..n).map(|i| scenario_seed(master, i)).collect(),
                Some(master),
            )
        }
    };
    let workers = env_u64("SHALE_SIM_WORKERS").unwrap_or(16) as usize;
    let replay = master.is_none();
    let env = replay_env(&opts);
    let done = std::sync::atomic::AtomicU64::new(0);
    let total = seeds.len() as u64;
    let s = run_many(&seeds, workers, &opts, |o| {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if !o.violations.is_empty() {
            print_outcome(o, replay, &env);
            keep_outcome(o, &env, master);
        }
        if n.is_multiple_of(1000) || (replay && n == total) {
            println!("  {n}/{total} scenarios done");
        }
    });
    if replay {
        for o in &s.failed {
            let n = o.trace.len();
            println!("trace of seed {} (last {} steps):", o.seed, n.min(60));
            for t in &o.trace[n.saturating_sub(60)..] {
                println!("    {t}");
            }
        }
    }
    report(&s, master);
    let allowed: Vec<String> = std::env::var("SHALE_SIM_ALLOW_KNOWN")
        .unwrap_or_default()
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    let blocking: Vec<_> = s
        .failed
        .iter()
        .flat_map(|o| o.violations.iter())
        .filter(|v| {
            !allowed
                .iter()
                .any(|a| a == v.kind || (a.ends_with('*') && v.kind.starts_with(&a[..a.len() - 1])))
        })
        .collect();
    assert!(
        blocking.is_empty(),
        "{} violation(s); first: {} (seed {}): {}",
        blocking.len(),
        blocking[0].kind,
        blocking[0].seed,
        blocking[0].detail
    );
}
