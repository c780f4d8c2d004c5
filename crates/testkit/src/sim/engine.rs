//! One scenario against `shale_engine::Volume`: a seeded workload, fault schedule and crash
//! points, and the checks after every crash, reopen and takeover. See the module docs of
//! `sim` and docs/SIMULATOR.md.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use shale_engine::{Durability, EngineConfig, GcReport, LogConfig, Volume};
use shale_error::{ErrorKind, Result as SResult};
use shale_store::fault::FaultConfig;
use shale_store::{FaultStore, MemoryStore, ObjectStore};

use super::model::{self, Entry, Op, Status};
use super::{Figures, Options, Outcome, Violation};
use crate::Rng;

const PREFIX: &str = "rbd/images/sim/";

/// The scenario cannot go on (a violation was recorded, or the model became uncertain).
pub(crate) struct Abort;
type Step = std::result::Result<(), Abort>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Log {
    Memory,
    /// The ring journal in a real file (O_DIRECT); a crash is a process kill.
    Ring {
        size: u64,
    },
    /// The ring journal on a simulated file (shale_journal::CrashFile); a crash is a power
    /// loss: unsynced journal writes are dropped, reordered or torn.
    PowerLoss {
        size: u64,
    },
    /// The in-place log of a local-directory store: records go into the open segment's staging
    /// file (shale_journal::SimStaging, files that lose power like CrashFile); publishing goes
    /// through the fault-injecting store. A crash is a power loss half of the time.
    InPlace,
}

/// Everything a scenario's seed decides up front.
#[derive(Debug, Clone)]
struct Params {
    log: Log,
    cfg: EngineConfig,
    size: u64,
    steps: usize,
    qd: u64,
    /// 0: no faults; 1: light; 2: heavy.
    faults: u8,
    /// How much faster than real time the engine's clock runs.
    accel: u32,
    /// Largest aligned write, in sectors.
    max_sectors: u64,
}

impl Params {
    fn new(rng: &mut Rng) -> Params {
        let pick = |rng: &mut Rng, v: &[u64]| v[rng.below(v.len() as u64) as usize];
        let log = match rng.below(4) {
            0 => Log::Memory,
            3 => Log::InPlace,
            // The simulated file copies itself on every sync: keep it small.
            1 => Log::PowerLoss {
                size: pick(rng, &[(1 << 20) + (16 << 10), 2 << 20]),
            },
            _ => Log::Ring {
                size: pick(
                    rng,
                    &[
                        (1 << 20) + (16 << 10),
                        (1 << 20) + (16 << 10),
                        2 << 20,
                        4 << 20,
                        4 << 20,
                        16 << 20,
                    ],
                ),
            },
        };
        let cfg = EngineConfig {
            segment_size: pick(
                rng,
                &[64 << 10, 64 << 10, 64 << 10, 64 << 10, 128 << 10, 256 << 10],
            ),
            upload_threads: 1 + rng.below(3) as usize,
            checkpoint_interval: 1 + rng.below(4),
            max_pending: 1 + rng.below(8) as usize,
            upload_attempts: 2 + rng.below(4) as u32,
            durability: if rng.below(3) == 0 {
                Durability::Backend
            } else {
                Durability::Journal
            },
            full_wait: Duration::from_millis(200 + rng.below(800)),
            seal_after: Duration::from_millis(1 + rng.below(40)),
            gc_threshold: if rng.below(2) == 0 {
                0.0
            } else {
                0.3 + rng.below(65) as f64 / 100.0
            },
            gc_every: 1 + rng.below(4),
            // The in-place log writes big records in pieces, header last: make small records
            // big enough for that in half the scenarios.
            record_pieces: if rng.below(2) == 0 {
                shale_journal::RecordPieces {
                    from: 512 * (1 + rng.below(16) as usize),
                    piece: 512 * (1 + rng.below(32) as usize),
                }
            } else {
                shale_journal::RecordPieces::default()
            },
            ..EngineConfig::default()
        };
        let mut size = (64 << 10) + rng.below(704 << 10) / 512 * 512;
        if rng.below(5) == 0 {
            size += 1 + rng.below(511);
        }
        Params {
            log,
            cfg,
            size,
            steps: 8 + rng.below(28) as usize,
            qd: pick(rng, &[1, 4, 8, 16, 32, 64]),
            faults: match rng.below(10) {
                0..=3 => 0,
                4..=7 => 1,
                _ => 2,
            },
            max_sectors: pick(rng, &[8, 32, 128, 128, 512]),
            accel: pick(rng, &[1, 4, 10, 10, 25, 25]) as u32,
        }
    }

    fn describe(&self) -> String {
        let c = &self.cfg;
        format!(
            "log {:?}, durability {:?}, size {}, segment {} KiB, {} upload threads, checkpoint every {}, \
             max_pending {}, upload_attempts {}, full_wait {:?}, seal_after {:?}, auto-gc {} every {}, \
             records in pieces from {} bytes ({} each), \
                          {} steps, qd {}, faults level {}, clock x{}",
            self.log,
            c.durability,
            self.size,
            c.segment_size >> 10,
            c.upload_threads,
            c.checkpoint_interval,
            c.max_pending,
            c.upload_attempts,
            c.full_wait,
            c.seal_after,
            c.gc_threshold,
            c.gc_every,
            c.record_pieces.from,
            c.record_pieces.piece,
            self.steps,
                        self.qd,
            self.faults,
            self.accel
        )
    }
}

/// Completions, filled from engine threads.
#[derive(Default)]
pub(crate) struct Track {
    pub(crate) results: HashMap<u64, std::result::Result<(), (ErrorKind, String)>>,
    /// The largest id of a content operation that completed successfully.
    max_ok: Option<u64>,
}

#[derive(Default)]
pub(crate) struct Tracker {
    m: Mutex<Track>,
    cv: Condvar,
}

impl Tracker {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Track> {
        self.m.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn done(self: &Arc<Self>, id: u64, content: bool) -> shale_engine::Done {
        let t = self.clone();
        Box::new(move |r: SResult<()>| {
            let mut g = t.lock();
            if r.is_ok() && content {
                g.max_ok = Some(g.max_ok.map_or(id, |m| m.max(id)));
            }
            g.results
                .insert(id, r.map_err(|e| (e.kind(), e.to_string())));
            drop(g);
            t.cv.notify_all();
        })
    }

    /// Wait until every id has an answer; returns the ids still unanswered at the deadline.
    pub(crate) fn wait(&self, ids: &[u64], timeout: Duration) -> Vec<u64> {
        let deadline = Instant::now() + timeout;
        let mut g = self.lock();
        loop {
            let missing: Vec<u64> = ids
                .iter()
                .copied()
                .filter(|i| !g.results.contains_key(i))
                .collect();
            let now = Instant::now();
            if missing.is_empty() || now >= deadline {
                return missing;
            }
            g = self
                .cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

struct Snap {
    key: String,
    size: u64,
    data: Vec<u8>,
}

/// A writer that lost the image to a takeover but keeps running.
struct Zombie {
    vol: Arc<Volume>,
    model: Vec<u8>,
    size: u64,
    tr: Arc<Tracker>,
}

pub(crate) struct Sim {
    seed: u64,
    rng: Rng,
    p: Params,
    opts: Options,
    inner: Arc<MemoryStore>,
    fault: Arc<FaultStore>,
    store: Arc<dyn ObjectStore>,
    dir: PathBuf,
    journal: Option<PathBuf>,
    /// The simulated journal file (Log::PowerLoss).
    cfile: Arc<shale_journal::CrashFile>,
    /// The simulated staging files (Log::InPlace).
    staging: Arc<shale_journal::SimStaging>,
    jgen: u32,
    vol: Option<Arc<Volume>>,
    epoch: u64,
    fence: Option<(u64, u64)>,
    /// The current writer's exclusive-lock lease (still valid?); a takeover happens only once
    /// the old writer's lease ran out, as with the image layer's lock.
    lease: Arc<std::sync::atomic::AtomicBool>,
    /// The size the image header would record (the size every open uses).
    size: u64,
    tr: Arc<Tracker>,
    next_id: u64,
    /// The disk before `entries[0]`.
    base: Vec<u8>,
    entries: Vec<Entry>,
    /// The disk after every resolved entry up to `applied`.
    cur: Vec<u8>,
    applied: usize,
    /// After a crash the image must hold every Ok entry with id < floor_j (journal kept) or
    /// < floor_s (journal lost / store only).
    floor_j: u64,
    floor_s: u64,
    /// Flushes not answered yet: (id, floor they establish when they succeed).
    flushes: Vec<(u64, Option<u64>)>,
    /// Out-of-range requests that must be refused.
    bad: Vec<u64>,
    snaps: Vec<Snap>,
    snap_n: u64,
    /// Snapshots taken with requests in flight: (key, size, position in the history); their
    /// contents are known once everything before them has answered.
    pending_snaps: Vec<(String, u64, u64)>,
    /// A resize happened inside the current burst (live reads then skip it).
    resized_in_burst: bool,
    /// The smallest size a resize in the current burst shrank the image to.
    shrunk_to: Option<u64>,
    bg: Option<mpsc::Receiver<SResult<GcReport>>>,
    offline: Option<std::thread::JoinHandle<()>>,
    /// Faults injected when the volume was opened; errors are expected only once this grew
    /// or faults are configured.
    inj0: u64,
    tainted: bool,
    vol_failed: bool,
    step: usize,
    /// Every write of a writer that had lost the image: (id, op, takeover number).
    zombie_writes: Vec<(u64, Op, u64)>,
    /// An old writer is running and has not been told it lost the image.
    stale_active: bool,
    /// An old writer ran GC (or could have) before it was fenced: what it deleted may be
    /// missing from here on.
    stale_gc: bool,
    /// The last takeover's fence (computed as the image layer does: past the newest stored
    /// segment) lay below the next_seq of a checkpoint already in the store.
    fence_below: Option<String>,
    trace: Vec<String>,
    f: Figures,
    v: Vec<Violation>,
}

/// The newest segment number stored or covered by a checkpoint — what the image layer's
/// `lock::fence` puts the fence past.
pub(crate) fn max_segment(store: &dyn ObjectStore, prefix: &str) -> u64 {
    let mut objs = store
        .list(&shale_format::keys::seg_dir(prefix))
        .unwrap_or_default();
    objs.extend(
        store
            .list(&shale_format::keys::ckpt_dir(prefix))
            .unwrap_or_default(),
    );
    shale_format::keys::max_covered_segment(prefix, objs.iter().map(|o| o.key.as_str()))
}

/// The epoch in a segment header (for reports only; see docs/FORMAT.md).
fn shale_format_epoch(b: &[u8]) -> Option<u64> {
    shale_format::segment::decode_header(b)
        .ok()
        .map(|h| h.epoch)
}

/// The class of a violation seen while an old writer interferes.
fn stale_kind(k: &'static str) -> &'static str {
    match k {
        "unexpected-error" => "stale-writer/unexpected-error",
        "not-a-prefix" => "stale-writer/not-a-prefix",
        "read-mismatch" => "stale-writer/read-mismatch",
        "read-error" => "stale-writer/read-error",
        "snapshot-read-error" => "stale-writer/snapshot-read-error",
        "snapshot-mismatch" => "stale-writer/snapshot-mismatch",
        "gc-error" => "stale-writer/gc-error",
        "open-failed" => "stale-writer/open-failed",
        "short-read" => "stale-writer/short-read",
        k => k,
    }
}

/// Take the volume back from helper threads that answered but have not dropped their handle.
fn unwrap_arc(mut v: Arc<Volume>) -> std::result::Result<Volume, Arc<Volume>> {
    for _ in 0..2000 {
        match Arc::try_unwrap(v) {
            Ok(x) => return Ok(x),
            Err(a) => v = a,
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(v)
}

/// Drop a volume on a detached thread (its close may hang after a violation).
fn abandon(v: Arc<Volume>) {
    let _ = std::thread::Builder::new()
        .name("sim-abandon".into())
        .spawn(move || drop(v));
}

/// How many collected segments' files the simulated staging keeps to write over: none, one or
/// four, from the seed (the random streams stay as they were).
fn free_files(seed: u64) -> usize {
    [0, 1, 4][(seed >> 7) as usize % 3]
}

impl Sim {
    pub(crate) fn new(seed: u64, opts: Options) -> Sim {
        let mut rng = Rng::new(seed);
        let mut p = Params::new(&mut rng);
        if let Some(a) = opts.accel {
            p.accel = a;
        }
        p.cfg.clock = Arc::new(super::AcceleratedClock::new(p.accel, 1_800_000_000_000));
        // A writer's bounded wait for room must not shrink with the clock: CPU work does not.
        p.cfg.full_wait *= p.accel;
        p.cfg.entropy = Arc::new(shale_clock::SeededEntropy::new(model::mix(seed, 0xe7)));
        let inner = Arc::new(MemoryStore::new());
        let fault = Arc::new(FaultStore::new(inner.clone(), model::mix(seed, 0xfa17)));
        let store: Arc<dyn ObjectStore> = fault.clone();
        static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shale-sim-{}-{seed:016x}-{}",
            std::process::id(),
            RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let journal = match p.log {
            Log::Memory => None,
            Log::Ring { .. } | Log::PowerLoss { .. } => Some(dir.join("j0.jnl")),
            // No file: the staging files are the journal (the path only marks "has one").
            Log::InPlace => Some(dir.join("staging")),
        };
        let staging = Arc::new(
            shale_journal::SimStaging::new(store.clone(), PREFIX).with_free_files(free_files(seed)),
        );
        let size = p.size;
        Sim {
            seed,
            rng,
            opts,
            inner,
            fault,
            store,
            dir,
            journal,
            cfile: Arc::new(shale_journal::CrashFile::new()),
            staging,
            jgen: 0,
            vol: None,
            epoch: 1,
            fence: None,
            lease: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            size,
            tr: Arc::default(),
            next_id: 1,
            base: vec![0; size as usize],
            entries: Vec::new(),
            cur: vec![0; size as usize],
            applied: 0,
            floor_j: 0,
            floor_s: 0,
            flushes: Vec::new(),
            bad: Vec::new(),
            snaps: Vec::new(),
            snap_n: 1,
            pending_snaps: Vec::new(),
            resized_in_burst: false,
            shrunk_to: None,
            bg: None,
            offline: None,
            inj0: 0,
            tainted: false,
            vol_failed: false,
            step: 0,
            zombie_writes: Vec::new(),
            stale_active: false,
            stale_gc: false,
            fence_below: None,
            trace: Vec::new(),
            f: Figures::default(),
            v: Vec::new(),
            p,
        }
    }

    pub(crate) fn run(mut self) -> Outcome {
        let t0 = Instant::now();
        let params = self.p.describe();
        let r = self.open_first().and_then(|_| {
            for _ in 0..self.p.steps {
                self.step_once()?;
            }
            self.finish()
        });
        if r.is_err() && self.v.is_empty() {
            self.f.uncertain += 1;
        }
        self.f.scenarios = 1;
        self.f.faults_injected += self.fault.injected();
        self.f.steps += self.step as u64;
        if let Some(v) = self.vol.take() {
            abandon(v);
        }
        let dir = self.dir.clone();
        let out = Outcome {
            seed: self.seed,
            figures: std::mem::take(&mut self.f),
            violations: std::mem::take(&mut self.v),
            elapsed: t0.elapsed(),
            params,
            trace: std::mem::take(&mut self.trace),
        };
        drop(self);
        let _ = std::fs::remove_dir_all(dir);
        out
    }

    // ---- bookkeeping -------------------------------------------------------------------

    fn note(&mut self, s: String) {
        if self.opts.verbose {
            eprintln!("[sim {:016x} step {}] {s}", self.seed, self.step);
        }
        self.trace.push(format!("step {}: {s}", self.step));
        if self.trace.len() > 400 {
            self.trace.drain(..100);
        }
    }

    fn violation(&mut self, kind: &'static str, mut detail: String) {
        // After a takeover, missing objects and foreign data may come from the old writer.
        let stale_related = matches!(
            kind,
            "not-a-prefix"
                | "read-mismatch"
                | "snapshot-mismatch"
                | "open-failed"
                | "read-error"
                | "snapshot-read-error"
        ) || (kind == "unexpected-error"
            && ["not found", "NotFound", "Corruption", "Fenced"]
                .iter()
                .any(|p| detail.contains(p)));
        let kind = if kind == "open-failed" && self.fence_below.is_some() {
            detail.push_str(&format!(
                " [{}]",
                self.fence_below.clone().unwrap_or_default()
            ));
            "fence-below-checkpoint"
        } else if self.f.takeovers > 0 && stale_related {
            detail.push_str(&format!(
                " [after {} takeover(s): an old writer kept running with its uploads, \
                 checkpoints and GC in flight{}{}]",
                self.f.takeovers,
                if self.stale_active {
                    "; it is still running unfenced"
                } else {
                    ""
                },
                if self.stale_gc {
                    "; it ran GC before it was fenced"
                } else {
                    ""
                },
            ));
            stale_kind(kind)
        } else {
            kind
        };
        self.note(format!("VIOLATION {kind}: {detail}"));
        self.v.push(Violation {
            seed: self.seed,
            kind,
            step: self.step,
            detail,
        });
    }

    fn id(&mut self) -> u64 {
        let i = self.next_id;
        self.next_id += 1;
        i
    }

    fn vol(&self) -> Arc<Volume> {
        self.vol.clone().expect("volume is open")
    }

    fn cfg(&self) -> EngineConfig {
        let mut c = self.p.cfg.clone();
        c.log = match (&self.journal, self.p.log) {
            (Some(path), Log::Ring { size }) => LogConfig::Ring {
                place: shale_engine::LogPlaceRef::file(path.clone()),
                size,
                owner: 0x5151_0000 + self.seed % 1000,
            },
            (Some(_), Log::InPlace) => {
                LogConfig::InPlace(shale_engine::StagingRef(self.staging.clone()))
            }
            (Some(_), Log::PowerLoss { size }) => LogConfig::Ring {
                place: shale_engine::LogPlaceRef::fixed(self.cfile.clone()),
                size,
                owner: 0x5151_0000 + self.seed % 1000,
            },
            _ => LogConfig::Memory,
        };
        c.fence = self.fence;
        let lease = self.lease.clone();
        c.lease = Some(shale_engine::LeaseCheck(Arc::new(move || {
            lease.load(std::sync::atomic::Ordering::SeqCst)
        })));
        c
    }

    /// Is a flush a store-durability point (not just a journal one)?
    fn flush_reaches_store(&self) -> bool {
        self.p.log == Log::Memory || self.p.cfg.durability == Durability::Backend
    }

    fn faults_configured(&self) -> bool {
        self.offline.is_some() || self.fault.config() != FaultConfig::default()
    }

    fn is_tainted(&mut self) -> bool {
        if self.fault.injected() > self.inj0 || self.faults_configured() {
            self.tainted = true;
        }
        self.tainted
    }

    /// Run `f` on its own thread; a call that does not return in time is a hang.
    fn timed<R: Send + 'static>(
        &mut self,
        what: &str,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> std::result::Result<R, Abort> {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sim-call".into())
            .spawn(move || {
                let _ = tx.send(f());
            })
            .expect("spawn a thread");
        match rx.recv_timeout(self.opts.hang) {
            Ok(r) => Ok(r),
            Err(RecvTimeoutError::Timeout) => {
                let hang = self.opts.hang;
                self.violation(
                    "hang",
                    format!(
                        "{what} did not return within {hang:?} (faults now: {:?})",
                        self.fault.config()
                    ),
                );
                Err(Abort)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.violation("panic", format!("{what} panicked inside the engine"));
                Err(Abort)
            }
        }
    }

    /// An error came back from the engine: expected under faults, a violation otherwise.
    fn judge(&mut self, what: &str, kind: ErrorKind, msg: &str) -> Step {
        if msg.contains("unusable") || kind == ErrorKind::Fenced {
            self.vol_failed = true;
        }
        if self.is_tainted() {
            self.f.errors_tolerated += 1;
            self.note(format!(
                "{what}: tolerated error under faults: {kind:?}: {msg}"
            ));
            Ok(())
        } else {
            self.violation(
                "unexpected-error",
                format!("{what} failed without any injected fault: {kind:?}: {msg}"),
            );
            Err(Abort)
        }
    }

    /// Take answers from the tracker: statuses of entries, flush floors, refusals.
    fn resolve(&mut self) -> Step {
        let (results, _) = {
            let g = self.tr.lock();
            (g.results.clone(), g.max_ok)
        };
        let mut errors = Vec::new();
        for e in self
            .entries
            .iter_mut()
            .filter(|e| e.status == Status::Pending)
        {
            if let Some(r) = results.get(&e.id) {
                match r {
                    Ok(()) => e.status = Status::Ok,
                    Err((k, m)) => {
                        e.status = Status::Failed;
                        let end = match e.op {
                            Op::Write { off, len, .. } | Op::Zero { off, len } => off + len,
                            Op::Resize { .. } => 0,
                        };
                        // Queued before a shrink and past the new end: refused at commit, as
                        // it must be.
                        let refused =
                            *k == ErrorKind::Invalid && self.shrunk_to.is_some_and(|s| end > s);
                        if !refused {
                            errors.push((format!("op {} {:?}", e.id, e.op), *k, m.clone()));
                        }
                    }
                }
            }
        }
        let mut keep = Vec::new();
        for (id, fl) in std::mem::take(&mut self.flushes) {
            match results.get(&id) {
                None => keep.push((id, fl)),
                Some(Ok(())) => {
                    if let Some(fl) = fl {
                        self.floor_j = self.floor_j.max(fl);
                        if self.flush_reaches_store() {
                            self.floor_s = self.floor_s.max(fl);
                        }
                    }
                }
                Some(Err((k, m))) => errors.push((format!("flush {id}"), *k, m.clone())),
            }
        }
        self.flushes = keep;
        let mut keep = Vec::new();
        for id in std::mem::take(&mut self.bad) {
            match results.get(&id) {
                None => keep.push(id),
                Some(Ok(())) => self.violation(
                    "accepted-bad-input",
                    format!("request {id} past the end of the image was acknowledged"),
                ),
                Some(Err(_)) => {}
            }
        }
        self.bad = keep;
        {
            let mut g = self.tr.lock();
            let done: Vec<u64> = g.results.keys().copied().collect();
            for id in done {
                let pending = self
                    .entries
                    .iter()
                    .any(|e| e.id == id && e.status == Status::Pending)
                    || self.flushes.iter().any(|f| f.0 == id)
                    || self.bad.contains(&id);
                if !pending {
                    g.results.remove(&id);
                }
            }
        }
        for (what, k, m) in errors {
            self.judge(&what, k, &m)?;
        }
        if self.v.iter().any(|v| v.kind == "accepted-bad-input") {
            return Err(Abort);
        }
        Ok(())
    }

    /// Apply resolved entries to `cur`, in order.
    fn advance_cur(&mut self) {
        while self.applied < self.entries.len() {
            let e = &self.entries[self.applied];
            match e.status {
                Status::Pending => break,
                Status::Ok => model::apply(&mut self.cur, &e.op),
                Status::Failed => {}
            }
            self.applied += 1;
        }
    }

    /// Fold entries below the store floor into `base` (no check can go below it).
    fn fold(&mut self) {
        let n = self
            .entries
            .iter()
            .take_while(|e| e.id < self.floor_s && e.status != Status::Pending)
            .count()
            .min(self.applied);
        if n == 0 {
            return;
        }
        for e in self.entries.drain(..n) {
            if e.status == Status::Ok {
                model::apply(&mut self.base, &e.op);
            }
        }
        self.applied -= n;
    }

    /// After the volume stopped: whatever has not answered never will have happened.
    fn settle(&mut self) -> Step {
        let r = self.resolve_quiet();
        for e in self
            .entries
            .iter_mut()
            .filter(|e| e.status == Status::Pending)
        {
            e.status = Status::Failed;
        }
        self.finish_pending_snaps();
        self.resized_in_burst = false;
        self.shrunk_to = None;
        self.flushes.clear();
        self.bad.clear();
        self.tr.lock().results.clear();
        self.advance_cur();
        r
    }

    /// `resolve` where errors are expected (after a crash): no judging.
    fn resolve_quiet(&mut self) -> Step {
        let t = self.tainted;
        self.tainted = true;
        let r = self.resolve();
        self.tainted = t;
        r
    }

    // ---- the workload ------------------------------------------------------------------

    fn gen_io(&mut self) -> Op {
        let size = self.size;
        let zero = self.rng.below(100) < 22;
        if self.rng.below(100) == 0 {
            let off = self.rng.below(size + 1);
            return if zero {
                Op::Zero { off, len: 0 }
            } else {
                Op::Write {
                    off,
                    len: 0,
                    seed: 0,
                }
            };
        }
        let (off, len) = if self.rng.below(10) < 7 && size >= 512 {
            let sectors = size / 512;
            let n = (1 + self.rng.below(self.p.max_sectors)).min(sectors);
            let n = if zero && self.rng.below(4) == 0 {
                (n * 8).min(sectors)
            } else {
                n
            };
            let at = self.rng.below(sectors - n + 1);
            (at * 512, n * 512)
        } else {
            let len = (1 + self.rng.below(20_000)).min(size);
            (self.rng.below(size - len + 1), len)
        };
        if zero {
            Op::Zero { off, len }
        } else {
            Op::Write {
                off,
                len,
                seed: self.rng.next_u64(),
            }
        }
    }

    fn submit_op(&mut self, vol: &Volume) {
        let id = self.id();
        let op = self.gen_io();
        self.entries.push(Entry {
            id,
            op,
            status: Status::Pending,
        });
        let d = self.tr.done(id, true);
        match op {
            // A third of the writes may be committed on this thread (the engine's depth-1
            // path); chosen from the write's own seed so the random stream stays as it was.
            Op::Write { off, len, seed } if seed.is_multiple_of(3) => {
                vol.submit_write_alone(off, model::data(seed, off, len), d)
            }
            Op::Write { off, len, seed } => vol.submit_write(off, model::data(seed, off, len), d),
            Op::Zero { off, len } => vol.submit_zero(off, len, d),
            Op::Resize { .. } => unreachable!(),
        }
        self.f.ops += 1;
    }

    fn submit_flush(&mut self, vol: &Volume) {
        let id = self.id();
        let fl = self.tr.lock().max_ok.map(|m| m + 1);
        self.flushes.push((id, fl));
        // One flush in three may sync on this thread (the engine's depth-1 path).
        if id.is_multiple_of(3) {
            vol.submit_flush_alone(self.tr.done(id, false));
        } else {
            vol.submit_flush(self.tr.done(id, false));
        }
        self.f.flushes += 1;
    }

    fn submit_bad(&mut self, vol: &Volume) {
        let id = self.id();
        self.bad.push(id);
        let off = self.size - self.rng.below(self.size.min(4096));
        let len = 1 + self.size - off + self.rng.below(8192);
        if self.rng.below(2) == 0 {
            vol.submit_write(off, vec![0xEE; len as usize], self.tr.done(id, false));
        } else {
            vol.submit_zero(off, len, self.tr.done(id, false));
        }
    }

    /// Wait for every outstanding request; a request that never completes is a hang.
    fn drain(&mut self) -> Step {
        let ids: Vec<u64> = self
            .entries
            .iter()
            .filter(|e| e.status == Status::Pending)
            .map(|e| e.id)
            .chain(self.flushes.iter().map(|f| f.0))
            .chain(self.bad.iter().copied())
            .collect();
        let missing = self.tr.wait(&ids, self.opts.hang);
        if !missing.is_empty() {
            let hang = self.opts.hang;
            let what: Vec<String> = missing
                .iter()
                .take(8)
                .map(|id| {
                    if self.flushes.iter().any(|f| f.0 == *id) {
                        format!("{id}: flush")
                    } else if let Some(e) = self.entries.iter().find(|e| e.id == *id) {
                        format!("{id}: {:?}", e.op)
                    } else {
                        format!("{id}: out-of-range request")
                    }
                })
                .collect();
            let stats = self.engine_stats();
            self.violation(
                "hang",
                format!(
                    "{} submitted request(s) not completed within {hang:?}: {what:?}; faults now {:?}; engine: {stats}",
                    missing.len(),
                    self.fault.config()
                ),
            );
            return Err(Abort);
        }
        self.resolve()?;
        self.advance_cur();
        self.finish_pending_snaps();
        self.resized_in_burst = false;
        self.shrunk_to = None;
        self.fold();
        Ok(())
    }

    /// Snapshots taken in flight hold every acknowledged request queued before them.
    fn finish_pending_snaps(&mut self) {
        for (key, size, pos) in std::mem::take(&mut self.pending_snaps) {
            let mut data = model::model_at(&self.base, &self.entries, pos);
            data.resize(size as usize, 0);
            self.snaps.push(Snap { key, size, data });
        }
    }

    /// A snapshot taken while requests are in flight.
    fn snapshot_in_flight(&mut self) -> Step {
        let key = format!("snap/{:016x}", self.snap_n);
        self.snap_n += 1;
        let pos = self.id();
        let size = self.size;
        let vol = self.vol();
        let k2 = key.clone();
        match self.timed("snapshot in flight", move || vol.snapshot(&k2))? {
            Ok(_) => {
                self.note(format!("snapshot {key} with requests in flight"));
                self.pending_snaps.push((key, size, pos));
                self.f.snapshots += 1;
                Ok(())
            }
            Err(e) => {
                let _ = self.inner.delete(&format!("{PREFIX}{key}"));
                let (k, m) = (e.kind(), e.to_string());
                self.judge("snapshot in flight", k, &m)
            }
        }
    }

    /// A resize while requests are in flight (only while the store behaves: a failed resize
    /// leaves the size uncertain).
    fn resize_in_flight(&mut self) -> Step {
        if self.faults_configured() || self.is_tainted() {
            return Ok(());
        }
        let old = self.size;
        let new = if self.rng.below(2) == 0 {
            old + 512 * (1 + self.rng.below(64))
        } else {
            (old / 2 + self.rng.below(old / 2 + 1)).max(4096)
        };
        let id = self.id();
        let vol = self.vol();
        match self.timed("resize in flight", move || vol.resize(new))? {
            Ok(()) => {
                self.note(format!("resize {old} -> {new} with requests in flight"));
                self.entries.push(Entry {
                    id,
                    op: Op::Resize { size: new },
                    status: Status::Ok,
                });
                self.size = new;
                self.resized_in_burst = true;
                if new < old {
                    self.shrunk_to = Some(self.shrunk_to.map_or(new, |s| s.min(new)));
                    // Everything queued before the trim is in the store when resize returns.
                    self.floor_s = self.floor_s.max(id + 1);
                    self.floor_j = self.floor_j.max(id + 1);
                }
                self.f.resizes += 1;
                Ok(())
            }
            Err(e) => {
                let (k, m) = (e.kind(), e.to_string());
                self.judge("resize in flight", k, &m)?;
                Err(Abort)
            }
        }
    }

    /// Read a range no request in flight touches: it must read as acknowledged, now.
    fn read_in_flight(&mut self) -> Step {
        if self.resized_in_burst
            || self.entries[self.applied..]
                .iter()
                .any(|e| matches!(e.op, Op::Resize { .. }))
        {
            return Ok(());
        }
        let size = (self.size as usize).min(self.cur.len()) as u64;
        if size == 0 {
            return Ok(());
        }
        let len = 1 + self.rng.below((64 << 10).min(size));
        let off = self.rng.below(size - len + 1);
        let busy = self.entries[self.applied..].iter().any(|e| match e.op {
            Op::Write { off: o, len: l, .. } | Op::Zero { off: o, len: l } => {
                // Partial sectors are rewritten whole: widen to sectors.
                let (a, z) = (o / 512 * 512, (o + l).div_ceil(512) * 512);
                a < off + len && off < z
            }
            Op::Resize { .. } => true,
        });
        if busy {
            return Ok(());
        }
        let vol = self.vol();
        let r = self.timed("read in flight", move || {
            let mut b = vec![0u8; len as usize];
            vol.read(off, &mut b).map(|n| {
                b.truncate(n);
                b
            })
        })?;
        self.f.checks += 1;
        match r {
            Ok(b) => {
                let want = &self.cur[off as usize..(off + len) as usize];
                if b != want {
                    let at = off as usize + model::first_diff(want, &b).unwrap_or(0);
                    let mut full = self.cur.clone();
                    full[off as usize..off as usize + b.len()].copy_from_slice(&b);
                    let why = model::explain(&self.base, &self.entries, u64::MAX, &full, at);
                    self.violation(
                        "read-mismatch",
                        format!(
                            "a read of {off}+{len} (no request in flight touches it) differs from \
                             everything acknowledged: {why}"
                        ),
                    );
                    return Err(Abort);
                }
                Ok(())
            }
            Err(e) => {
                let (k, m) = (e.kind(), e.to_string());
                self.judge("read in flight", k, &m)
            }
        }
    }

    /// A burst of up to `qd` requests in flight: writes, zeroes, flushes, waits.
    fn batch(&mut self, crash_in_flight: bool) -> Step {
        let vol = self.vol();
        let n = 1 + self.rng.below(self.p.qd);
        let (mut w, mut fl) = (0, 0);
        for _ in 0..n {
            match self.rng.below(100) {
                0..=7 => {
                    self.submit_flush(&vol);
                    fl += 1;
                }
                8..=10 => self.drain()?,
                11 => self.submit_bad(&vol),
                12 => self.snapshot_in_flight()?,
                13 if !crash_in_flight => self.resize_in_flight()?,
                14 | 15 => self.read_in_flight()?,
                _ => {
                    self.submit_op(&vol);
                    w += 1;
                }
            }
        }
        if self.rng.below(3) == 0 {
            self.submit_flush(&vol);
            fl += 1;
        }
        drop(vol);
        self.note(format!(
            "batch of {n}: {w} I/Os, {fl} flushes{}",
            if crash_in_flight {
                ", crash in flight"
            } else {
                ""
            }
        ));
        if crash_in_flight {
            if self.rng.below(2) == 0 {
                std::thread::sleep(Duration::from_micros(self.rng.below(3000)));
            }
            self.f.crashes_in_flight += 1;
            let lose = self.journal.is_some() && self.rng.below(4) == 0;
            return self.crash(lose);
        }
        self.drain()
    }

    fn read_all(&mut self, what: &str) -> std::result::Result<SResult<Vec<u8>>, Abort> {
        let vol = self.vol();
        let size = self.size;
        let r = self.timed(what, move || {
            let mut buf = vec![0u8; size as usize];
            vol.read(0, &mut buf).map(|n| {
                buf.truncate(n);
                buf
            })
        })?;
        if let Ok(b) = &r {
            if b.len() as u64 != size {
                self.violation(
                    "short-read",
                    format!("{what}: read {} of {size} bytes", b.len()),
                );
                return Err(Abort);
            }
        }
        Ok(r)
    }

    /// A read for a check: retried, with faults cleared as a last resort.
    fn read_for_check(&mut self, what: &str) -> std::result::Result<Vec<u8>, Abort> {
        for attempt in 0..4 {
            if attempt == 3 {
                self.clear_faults();
            }
            match self.read_all(what)? {
                Ok(b) => return Ok(b),
                Err(e) => {
                    self.f.checks_retried += 1;
                    if attempt == 3 || !self.is_tainted() {
                        self.violation(
                            "read-error",
                            format!("{what}: reading the image failed: {:?}: {e}", e.kind()),
                        );
                        return Err(Abort);
                    }
                    self.note(format!("{what}: read failed under faults ({e}); retrying"));
                }
            }
        }
        Err(Abort)
    }

    /// Live read: the image must equal the model of everything acknowledged.
    fn read_check(&mut self) -> Step {
        self.drain()?;
        let img = match self.read_all("read")? {
            Ok(b) => b,
            Err(e) => {
                let (k, m) = (e.kind(), e.to_string());
                return self.judge("read", k, &m);
            }
        };
        self.f.checks += 1;
        if img != self.cur {
            let at = model::first_diff(&self.cur, &img).unwrap_or(0);
            let why = model::explain(&self.base, &self.entries, u64::MAX, &img, at);
            let zombie = self.zombie_data_at(&img, at);
            let kind = if zombie.is_some() {
                "stale-writer-data-visible"
            } else {
                "read-mismatch"
            };
            let zombie = zombie.unwrap_or_default();
            self.violation(
                kind,
                format!("a live read differs from everything acknowledged: {why}{zombie}"),
            );
            return Err(Abort);
        }
        self.note("read check ok".into());
        Ok(())
    }

    /// The engine's counters, for reports (the call itself may block if the engine is stuck).
    fn engine_stats(&self) -> String {
        let Some(v) = self.vol.clone() else {
            return "closed".into();
        };
        let (tx, rx) = mpsc::channel();
        let _ = std::thread::Builder::new()
            .name("sim-stats".into())
            .spawn(move || {
                let s = v.stats();
                let _ = tx.send(format!(
                "pending segments {}, segments written {}, checkpoints {}, room waits {}, log {:?}",
                s.pending_segments, s.segments_written, s.checkpoints_written, s.room_waits, s.log
            ));
            });
        rx.recv_timeout(Duration::from_secs(2))
            .unwrap_or_else(|_| "stats() blocked too (a lock is held)".into())
    }

    /// The image's objects, for reports: checkpoints, segments (with their epochs), snapshots.
    fn store_state(&self) -> String {
        let list = |d: &str| {
            self.inner
                .list(&format!("{PREFIX}{d}/"))
                .unwrap_or_default()
                .into_iter()
                .map(|o| o.key[PREFIX.len() + d.len() + 1..].to_string())
                .collect::<Vec<_>>()
        };
        let segs: Vec<String> = list("seg")
            .into_iter()
            .map(|k| {
                let ep = self
                    .inner
                    .get_range(&format!("{PREFIX}seg/{k}"), 0..64 << 10)
                    .ok()
                    .and_then(|b| shale_format_epoch(&b));
                format!(
                    "{:x}{}",
                    u64::from_str_radix(&k, 16).unwrap_or(0),
                    ep.map(|e| format!("@e{e}")).unwrap_or_default()
                )
            })
            .collect();
        format!(
            "ckpt {:?}; seg [{}]; snap {:?}; epoch {} fence {:?}",
            list("ckpt"),
            segs.join(" "),
            list("snap"),
            self.epoch,
            self.fence
        )
    }

    /// Is the word of the image at `at` data an old writer wrote after it lost the image?
    fn zombie_data_at(&self, img: &[u8], at: usize) -> Option<String> {
        let w0 = at / 8 * 8;
        let w1 = (w0 + 8).min(img.len());
        let got = &img[w0..w1];
        if got.iter().all(|&b| b == 0) {
            return None;
        }
        self.zombie_writes.iter().rev().find_map(|(id, op, t)| match *op {
            Op::Write { off, len, seed }
                if off <= w0 as u64
                    && w1 as u64 <= off + len
                    && model::data(seed, w0 as u64, (w1 - w0) as u64) == got =>
            {
                Some(format!(
                    "; the image's bytes there were written by the old writer of takeover {t}                      (request {id}, {op:?}) after it had lost the image"
                ))
            }
            _ => None,
        })
    }

    /// After a reopen: the image must be the model after some prefix p >= lower.
    fn check_recovered(&mut self, lower: u64, what: &str) -> Step {
        let img = self.read_for_check(what)?;
        self.f.checks += 1;
        match model::find_prefix(&self.base, &self.entries, lower, &img) {
            Some((p, mut m)) => {
                let lost = self
                    .entries
                    .iter()
                    .filter(|e| e.id >= p && e.status == Status::Ok)
                    .count();
                self.note(format!(
                    "{what}: image is the prefix up to id {p} (lower bound {lower}); {lost} acknowledged op(s) not kept"
                ));
                self.f.ops_lost += lost as u64;
                self.entries.retain(|e| e.id < p);
                if m.len() as u64 != self.size {
                    // A resize the prefix does not reach still holds (the size lives in the
                    // header): the history goes on at the header's size.
                    let id = self.id();
                    self.entries.push(Entry {
                        id,
                        op: Op::Resize { size: self.size },
                        status: Status::Ok,
                    });
                }
                m.resize(self.size as usize, 0);
                self.cur = m;
                self.applied = self.entries.len();
                self.fold();
                Ok(())
            }
            None => {
                let at_low = model::model_at(&self.base, &self.entries, lower);
                let at_end = model::model_at(&self.base, &self.entries, u64::MAX);
                let d_low = model::first_diff(&at_low, &img);
                let d_end = model::first_diff(&at_end, &img);
                let oks = self
                    .entries
                    .iter()
                    .filter(|e| e.id >= lower && e.status == Status::Ok)
                    .count();
                let why = d_end
                    .map(|at| model::explain(&self.base, &self.entries, u64::MAX, &img, at))
                    .unwrap_or_default();
                let why_low = d_low
                    .map(|at| model::explain(&self.base, &self.entries, lower, &img, at))
                    .unwrap_or_default();
                let zombie = d_low.and_then(|at| self.zombie_data_at(&img, at));
                let kind = if zombie.is_some() {
                    "stale-writer-data-visible"
                } else {
                    "not-a-prefix"
                };
                let zombie = zombie.unwrap_or_default();
                self.violation(
                    kind,
                    format!(
                        "{what}: the image equals no prefix of the history at or past the durable \
                         point (lower bound id {lower}, {oks} acknowledged ops after it, floors \
                         journal {} store {}); first difference from the model at the lower \
                         bound: {d_low:?} [{why_low}]; from the full model: {d_end:?} [{why}]{zombie}; store: {}",
                        self.floor_j, self.floor_s, self.store_state()
                    ),
                );
                Err(Abort)
            }
        }
    }

    fn check_snapshot(&mut self, i: usize, what: &str) -> Step {
        let (key, size) = (self.snaps[i].key.clone(), self.snaps[i].size);
        let store = self.store.clone();
        let cfg = self.cfg();
        let inj = self.fault.injected();
        let configured = self.faults_configured();
        let k2 = key.clone();
        let r = self.timed("snapshot read", move || {
            let v = Volume::open_snapshot(store, PREFIX, &k2, size, cfg)?;
            let mut buf = vec![0u8; size as usize];
            let n = v.read(0, &mut buf)?;
            buf.truncate(n);
            Ok::<_, shale_error::Error>(buf)
        })?;
        self.f.snapshot_checks += 1;
        match r {
            Ok(b) => {
                if b != self.snaps[i].data {
                    let at = model::first_diff(&self.snaps[i].data, &b);
                    self.violation(
                        "snapshot-mismatch",
                        format!(
                            "{what}: snapshot {key} ({size} bytes) differs from the image when it was taken, first at byte {at:?}"
                        ),
                    );
                    return Err(Abort);
                }
                Ok(())
            }
            Err(e) => {
                if configured || self.fault.injected() > inj || self.faults_configured() {
                    self.f.errors_tolerated += 1;
                    self.note(format!(
                        "{what}: snapshot {key} read failed under faults: {e}"
                    ));
                    Ok(())
                } else {
                    self.violation(
                        "snapshot-read-error",
                        format!(
                            "{what}: snapshot {key} cannot be read without any fault: {:?}: {e}",
                            e.kind()
                        ),
                    );
                    Err(Abort)
                }
            }
        }
    }

    fn check_all_snapshots(&mut self, what: &str) -> Step {
        for i in 0..self.snaps.len() {
            self.check_snapshot(i, what)?;
        }
        Ok(())
    }

    // ---- lifecycle ---------------------------------------------------------------------

    fn open_first(&mut self) -> Step {
        if let Some(j) = &self.journal {
            let _ = std::fs::create_dir_all(j.parent().expect("journal dir"));
        }
        self.note(format!("params: {}", self.p.describe()));
        self.reopen("open")
    }

    /// Open the volume (as the image layer would, with the header's size, epoch and fence).
    fn reopen(&mut self, what: &str) -> Step {
        for attempt in 0..4 {
            if attempt == 3 {
                self.clear_faults();
            }
            let (store, size, epoch, cfg) = (self.store.clone(), self.size, self.epoch, self.cfg());
            let r = self.timed(what, move || {
                Volume::open(store, PREFIX, size, epoch, cfg, false)
            })?;
            match r {
                Ok(v) => {
                    self.vol = Some(Arc::new(v));
                    self.inj0 = self.fault.injected();
                    self.tainted = self.faults_configured();
                    self.vol_failed = false;
                    return Ok(());
                }
                Err(e) => {
                    self.f.open_retries += 1;
                    let clean = !self.faults_configured() && self.fault.injected() == self.inj0;
                    if attempt == 3 || clean && attempt > 0 {
                        let st = self.store_state();
                        self.violation(
                            "open-failed",
                            format!("{what}: the volume cannot be opened without faults: {:?}: {e}; store: {st}", e.kind()),
                        );
                        return Err(Abort);
                    }
                    self.inj0 = self.fault.injected();
                    self.note(format!("{what}: open failed ({e}); retrying"));
                }
            }
        }
        Err(Abort)
    }

    fn join_bg(&mut self) -> Step {
        if let Some(rx) = self.bg.take() {
            match rx.recv_timeout(self.opts.hang) {
                Ok(Ok(rep)) => self.note(format!("background gc done: {rep:?}")),
                Ok(Err(e)) => self.gc_error("background gc", e)?,
                Err(RecvTimeoutError::Timeout) => {
                    let hang = self.opts.hang;
                    self.violation(
                        "hang",
                        format!("background gc did not return within {hang:?}"),
                    );
                    return Err(Abort);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.violation("panic", "background gc panicked".into());
                    return Err(Abort);
                }
            }
        }
        Ok(())
    }

    fn gc_error(&mut self, what: &str, e: shale_error::Error) -> Step {
        let (k, m) = (e.kind(), e.to_string());
        if self.is_tainted() {
            return self.judge(what, k, &m);
        }
        self.violation(
            "gc-error",
            format!("{what} failed without any injected fault: {k:?}: {m}"),
        );
        Err(Abort)
    }

    fn crash(&mut self, lose_journal: bool) -> Step {
        self.join_bg()?;
        let vol = self.vol.take().expect("volume is open");
        let vol = match unwrap_arc(vol) {
            Ok(v) => v,
            Err(v) => {
                self.violation("internal", "the volume is still shared at a crash".into());
                abandon(v);
                return Err(Abort);
            }
        };
        self.timed("crash", move || vol.crash())?;
        self.f.crashes += 1;
        self.settle()?;
        if let Log::PowerLoss { .. } = self.p.log {
            // The machine lost power too: unsynced journal writes may be gone, reordered or
            // torn (what a flush synced survives).
            let mode = self.power_loss_mode();
            let mut r = Rng::new(self.rng.next_u64());
            let unsynced = self.cfile.unsynced();
            self.cfile.crash(mode, || r.next_u64());
            self.f.power_losses += 1;
            self.note(format!(
                "power loss: {unsynced} unsynced journal writes, {mode:?}"
            ));
        }
        if self.p.log == Log::InPlace && self.rng.below(2) == 0 {
            let mode = self.power_loss_mode();
            let mut r = Rng::new(self.rng.next_u64());
            self.staging.crash(mode, || r.next_u64());
            self.f.power_losses += 1;
            self.note(format!("power loss of the staging files: {mode:?}"));
        }
        if lose_journal {
            if let Some(j) = &self.journal {
                let _ = std::fs::remove_file(j);
            }
            self.cfile = Arc::new(shale_journal::CrashFile::new());
            if self.p.log == Log::InPlace {
                self.staging = Arc::new(
                    shale_journal::SimStaging::new(self.store.clone(), PREFIX)
                        .with_free_files(free_files(self.seed)),
                );
            }
            self.f.journal_losses += 1;
        }
        if self.rng.below(3) == 0 {
            self.clear_faults();
        }
        self.mutate();
        self.note(format!(
            "crash{}; floors journal {} store {}",
            if lose_journal { " + journal lost" } else { "" },
            self.floor_j,
            self.floor_s
        ));
        self.reopen("reopen after crash")?;
        let lower = if (lose_journal && self.opts.mutate.as_deref() != Some("ignore-journal-loss"))
            || self.journal.is_none()
        {
            self.floor_s
        } else {
            self.floor_j.max(self.floor_s)
        };
        self.check_recovered(lower, "after crash")?;
        self.check_some_snapshots("after crash")
    }

    /// Checker self-test: damage the store as a buggy engine might (see `Options::mutate`).
    fn mutate(&mut self) {
        let Some(m) = self.opts.mutate.clone() else {
            return;
        };
        let dir = format!("{PREFIX}seg/");
        let segs = self.inner.list(&dir).unwrap_or_default();
        let Some(newest) = segs.last() else {
            return;
        };
        match m.as_str() {
            "drop-newest-segment" => {
                let _ = self.inner.delete(&newest.key);
                self.note(format!("MUTATION: deleted {}", newest.key));
            }
            "corrupt-segment" => {
                let o = &segs[self.rng.below(segs.len() as u64) as usize];
                if let Ok((b, _)) = self.inner.get(&o.key) {
                    let mut v = b.to_vec();
                    let at = v.len() - 1 - self.rng.below((v.len() / 2) as u64) as usize;
                    v[at] ^= 0x5a;
                    let _ = self.inner.put(
                        &o.key,
                        bytes::Bytes::from(v),
                        shale_store::PutMode::Overwrite,
                    );
                    self.note(format!("MUTATION: flipped byte {at} of {}", o.key));
                }
            }
            _ => {}
        }
    }

    fn check_some_snapshots(&mut self, what: &str) -> Step {
        if self.snaps.is_empty() {
            return Ok(());
        }
        if self.rng.below(2) == 0 {
            self.check_all_snapshots(what)
        } else {
            let i = self.rng.below(self.snaps.len() as u64) as usize;
            self.check_snapshot(i, what)
        }
    }

    /// What a power loss does to unsynced writes (journal file or staging files).
    fn power_loss_mode(&mut self) -> shale_journal::CrashMode {
        shale_journal::CrashMode {
            keep_per_mille: [0, 500, 900, 1000][self.rng.below(4) as usize],
            reorder: self.rng.below(2) == 0,
            tear: self.rng.below(2) == 0,
        }
    }

    /// Close the volume (background work first); the close's result and the lower bound of
    /// what the next open must show (everything on success; else what a flush made durable).
    fn close_volume(
        &mut self,
        what: &str,
    ) -> std::result::Result<(std::result::Result<(), String>, u64), Abort> {
        self.join_bg()?;
        self.drain()?;
        let vol = self.vol.take().expect("volume is open");
        let v2 = vol.clone();
        let r = self.timed(what, move || v2.close())?;
        drop(vol);
        self.settle()?;
        let lower = match &r {
            Ok(()) => {
                self.floor_j = self.next_id;
                self.floor_s = self.next_id;
                self.next_id
            }
            Err(e) => {
                let (k, m) = (e.kind(), e.to_string());
                self.judge(what, k, &m)?;
                if self.journal.is_none() {
                    self.floor_s
                } else {
                    self.floor_j.max(self.floor_s)
                }
            }
        };
        Ok((r.map_err(|e| e.to_string()), lower))
    }

    fn close_reopen(&mut self) -> Step {
        let (r, lower) = self.close_volume("close")?;
        if r.is_ok() {
            self.f.closes += 1;
        }
        let msg = format!("closed ({r:?}); reopening");
        self.note(msg);
        self.reopen("reopen after close")?;
        self.check_recovered(lower, "after close")?;
        self.check_some_snapshots("after close")
    }

    fn clear_faults(&mut self) {
        if let Some(h) = self.offline.take() {
            let _ = h.join();
        }
        self.fault.set(FaultConfig::default());
    }

    fn set_faults(&mut self) {
        let heavy = self.p.faults >= 2;
        let scale = if heavy { 2.0 } else { 1.0 };
        // At most one request in two fails or loses its answer: a store that never answers is
        // an outage (the offline windows), and retrying through it is not a hang.
        let rate =
            |rng: &mut Rng, max: f64| ((1 + rng.below(100)) as f64 / 100.0 * max * scale).min(0.5);
        let mut c = FaultConfig::default();
        let what = self.rng.below(7);
        match what {
            0 => {}
            1 => c.put_error_rate = rate(&mut self.rng, 0.15),
            2 => c.get_error_rate = rate(&mut self.rng, 0.05),
            3 => c.lost_ack_rate = rate(&mut self.rng, 0.3),
            4 => c.latency = Duration::from_micros(self.rng.below(1500)),
            5 => {
                c.put_error_rate = rate(&mut self.rng, 0.05);
                c.lost_ack_rate = rate(&mut self.rng, 0.15);
                c.get_error_rate = rate(&mut self.rng, 0.02);
            }
            _ => {
                c.lost_ack_rate = rate(&mut self.rng, 0.5);
                c.latency = Duration::from_micros(self.rng.below(500));
            }
        }
        self.note(format!("faults: {c:?}"));
        self.fault.update(|x| {
            let off = x.offline;
            *x = c;
            x.offline = off;
        });
        if self.faults_configured() {
            self.tainted = true;
        }
        self.f.fault_changes += 1;
    }

    fn offline_window(&mut self) {
        if let Some(h) = self.offline.take() {
            let _ = h.join();
        }
        let ms = 5 + self.rng.below(if self.p.faults >= 2 { 900 } else { 250 });
        let puts_only = self.rng.below(3) == 0;
        self.note(format!(
            "store {} for {ms} ms",
            if puts_only {
                "refuses writes"
            } else {
                "offline"
            }
        ));
        let f = self.fault.clone();
        if puts_only {
            f.update(|c| c.fail_puts = true);
        } else {
            f.set_offline(true);
        }
        self.tainted = true;
        self.offline = Some(
            std::thread::Builder::new()
                .name("sim-offline".into())
                .spawn(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    f.update(|c| {
                        c.offline = false;
                        c.fail_puts = false;
                    });
                })
                .expect("spawn"),
        );
        self.f.offline_windows += 1;
    }

    fn step_once(&mut self) -> Step {
        self.step += 1;
        if self.vol_failed {
            // The engine said the image is unusable: restart it, as a client would.
            self.note("volume failed: restarting it".into());
            return if self.rng.below(2) == 0 {
                let lose = self.journal.is_some() && self.rng.below(4) == 0;
                self.crash(lose)
            } else {
                self.close_reopen()
            };
        }
        let faults = self.p.faults > 0;
        match self.rng.below(100) {
            0..=33 => self.batch(false),
            34..=38 => self.batch(true),
            39..=44 => {
                self.drain()?;
                let lose = self.journal.is_some() && self.rng.below(4) == 0;
                self.crash(lose)
            }
            45..=46 => self.close_reopen(),
            47..=48 if self.opts.takeovers => self.handoff(),
            47..=48 => self.close_reopen(),
            49..=55 => self.read_check(),
            56..=59 => self.sync_flush(false),
            60..=62 => self.sync_flush(true),
            63..=66 => self.resize(),
            67..=70 => self.snap_create(),
            71..=72 => self.snap_remove(),
            73..=75 => {
                self.drain()?;
                if self.snaps.is_empty() {
                    return self.batch(false);
                }
                let i = self.rng.below(self.snaps.len() as u64) as usize;
                self.check_snapshot(i, "snapshot check")
            }
            76..=78 => self.gc_sync(),
            79..=82 => self.gc_background(),
            83..=89 if faults => {
                self.set_faults();
                Ok(())
            }
            90..=93 if faults => {
                self.offline_window();
                Ok(())
            }
            // Another host cannot share a local-directory store's staging files.
            94..=97 if self.opts.takeovers && self.p.log != Log::InPlace => self.takeover(),
            _ => self.batch(false),
        }
    }

    fn sync_flush(&mut self, to_store: bool) -> Step {
        self.drain()?;
        let vol = self.vol();
        let upto = self.next_id;
        let r = if to_store {
            self.timed("flush_to_store", move || vol.flush_to_store())?
        } else {
            self.timed("flush", move || vol.flush())?
        };
        self.f.flushes += 1;
        match r {
            Ok(()) => {
                self.floor_j = self.floor_j.max(upto);
                if to_store || self.flush_reaches_store() {
                    self.floor_s = self.floor_s.max(upto);
                }
                self.note(format!(
                    "{} ok",
                    if to_store { "flush_to_store" } else { "flush" }
                ));
                self.fold();
                Ok(())
            }
            Err(e) => {
                let (k, m) = (e.kind(), e.to_string());
                self.judge("flush", k, &m)
            }
        }
    }

    fn resize(&mut self) -> Step {
        if self.faults_configured() || self.is_tainted() {
            // A failed resize leaves the size uncertain; the image layer retries it. Only
            // resize while the store behaves.
            return self.batch(false);
        }
        self.drain()?;
        let new = match self.rng.below(4) {
            0 => self.size + 512 * (1 + self.rng.below(256)),
            1 => (self.size / 2).max(4096) / 512 * 512 + self.rng.below(2) * self.rng.below(512),
            2 => (32 << 10) + self.rng.below(1 << 20),
            _ => self
                .size
                .saturating_sub(self.rng.below(self.size / 2 + 1))
                .max(1),
        };
        let old = self.size;
        let vol = self.vol();
        let id = self.id();
        let r = self.timed("resize", move || vol.resize(new))?;
        match r {
            Ok(()) => {
                self.note(format!("resize {old} -> {new}"));
                self.entries.push(Entry {
                    id,
                    op: Op::Resize { size: new },
                    status: Status::Ok,
                });
                self.advance_cur();
                self.size = new;
                if new < old {
                    // The trim is durable in the store before resize returns.
                    self.floor_s = self.floor_s.max(id + 1);
                    self.floor_j = self.floor_j.max(id + 1);
                    self.fold();
                }
                self.f.resizes += 1;
                Ok(())
            }
            Err(e) => {
                let (k, m) = (e.kind(), e.to_string());
                self.judge("resize", k, &m)?;
                // The size is now uncertain: end the scenario here.
                Err(Abort)
            }
        }
    }

    fn snap_create(&mut self) -> Step {
        self.drain()?;
        let key = format!("snap/{:016x}", self.snap_n);
        self.snap_n += 1;
        let vol = self.vol();
        let k2 = key.clone();
        let r = self.timed("snapshot", move || vol.snapshot(&k2))?;
        match r {
            Ok(seq) => {
                let mut data = self.cur.clone();
                data.resize(self.size as usize, 0);
                self.note(format!("snapshot {key} at segment {seq}"));
                self.snaps.push(Snap {
                    key,
                    size: self.size,
                    data,
                });
                self.f.snapshots += 1;
                Ok(())
            }
            Err(e) => {
                // As the image layer does: a failed snapshot is removed.
                let _ = self.inner.delete(&format!("{PREFIX}{key}"));
                let (k, m) = (e.kind(), e.to_string());
                self.judge("snapshot", k, &m)
            }
        }
    }

    fn snap_remove(&mut self) -> Step {
        if self.snaps.is_empty() {
            return self.snap_create();
        }
        let i = self.rng.below(self.snaps.len() as u64) as usize;
        let key = format!("{PREFIX}{}", self.snaps[i].key);
        match self.store.delete(&key) {
            Ok(()) => {
                self.note(format!("snapshot {key} removed"));
                self.snaps.remove(i);
                Ok(())
            }
            Err(e) => {
                let (k, m) = (e.kind(), e.to_string());
                self.judge("snapshot remove", k, &m)
            }
        }
    }

    fn gc_threshold(&mut self) -> f64 {
        [0.3, 0.5, 0.7, 0.9, 1.0][self.rng.below(5) as usize]
    }

    fn gc_sync(&mut self) -> Step {
        let th = self.gc_threshold();
        let vol = self.vol();
        let r = self.timed("gc", move || vol.gc(th))?;
        self.f.gc_runs += 1;
        match r {
            Ok(rep) => {
                self.note(format!("gc({th}): {rep:?}"));
                Ok(())
            }
            Err(e) => self.gc_error("gc", e),
        }
    }

    fn gc_background(&mut self) -> Step {
        if self.bg.is_some() {
            return self.batch(false);
        }
        let th = self.gc_threshold();
        let vol = self.vol();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sim-gc".into())
            .spawn(move || {
                let _ = tx.send(vol.gc(th));
            })
            .expect("spawn");
        self.bg = Some(rx);
        self.f.gc_runs += 1;
        self.note(format!("background gc({th}) started"));
        self.batch(false)
    }

    /// A cooperative handoff of the exclusive lock on this host (to a second handle of this
    /// process, or another process here): the owner stores everything and closes; the next
    /// writer takes the lock — new epoch, fence past every stored segment, as the image layer's
    /// lock does — and opens the same journal file (a new life of it).
    fn handoff(&mut self) -> Step {
        // If the owner cannot store everything (faults), what it acknowledged is in the
        // journal the next writer on this host replays.
        let (r, lower) = self.close_volume("handoff: the owner closes")?;
        self.epoch += 1;
        let start = max_segment(self.inner.as_ref(), PREFIX) + 1;
        self.fence = Some((self.epoch, start));
        if self.p.log == Log::InPlace {
            // As the image layer's lock::fence does: what the previous owner left staged (a
            // close during a store outage keeps it there) is taken over by the new epoch.
            if let Err(e) = shale_journal::Staging::adopt(self.staging.as_ref(), self.epoch) {
                self.note(format!("adopting staged files: {e}"));
            }
        }
        self.f.handoffs += 1;
        let staged = shale_journal::Staging::list(self.staging.as_ref())
            .map(|l| format!("{l:?}"))
            .unwrap_or_default();
        self.note(format!(
            "handoff ({:?}): epoch {} fence at segment {start}, same journal; store: {}; staged: {staged}",
            r,
            self.epoch,
            self.store_state()
        ));
        self.reopen("open by the next owner")?;
        self.check_recovered(lower, "after handoff")?;
        self.check_some_snapshots("after handoff")
    }

    /// Another host takes the image over (new epoch, fence past every stored segment) while
    /// the old writer keeps running: nothing the old writer does afterwards may become visible.
    fn takeover(&mut self) -> Step {
        self.join_bg()?;
        self.drain()?;
        // The old writer's lease has run out (only then may another host take over), but the
        // old writer has not noticed yet; the new owner then fences past every stored segment.
        self.lease.store(false, std::sync::atomic::Ordering::SeqCst);
        self.lease = Arc::new(std::sync::atomic::AtomicBool::new(true));
        // The old writer stops deleting a margin before its lease runs out (the image layer's
        // lock does): a delete that passed the check just before has landed by now.
        std::thread::sleep(Duration::from_millis(50));
        let start = max_segment(self.inner.as_ref(), PREFIX) + 1;
        let above: Vec<String> = self
            .inner
            .list(&format!("{PREFIX}ckpt/"))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|o| {
                let name = o.key.rsplit('/').next()?.to_string();
                let n = u64::from_str_radix(name.split('-').nth(1)?, 16).ok()?;
                (n > start).then_some(name)
            })
            .collect();
        self.fence_below = (!above.is_empty()).then(|| {
            format!(
                "the takeover's fence start {start} (newest stored segment + 1, as the image \
                 layer's lock::fence computes it) lies below checkpoint(s) {above:?} that were in \
                 the store at fence time"
            )
        });
        let zvol = self.vol.take().expect("volume is open");
        let mut z = Zombie {
            vol: zvol,
            model: self.cur.clone(),
            size: self.size,
            tr: Arc::default(),
        };
        self.epoch += 1;
        self.fence = Some((self.epoch, start));
        let old_journal = self.journal.clone();
        // The new owner runs on another host: its own journal.
        self.cfile = Arc::new(shale_journal::CrashFile::new());
        if self.journal.is_some() {
            self.jgen += 1;
            self.journal = Some(self.dir.join(format!("j{}.jnl", self.jgen)));
        }
        // The old host's journal is out of reach: only what is in the store counts.
        self.floor_j = self.floor_s;
        self.note(format!(
            "takeover: epoch {} fence at segment {start}; the old writer keeps running",
            self.epoch
        ));
        self.f.takeovers += 1;
        let r = self.takeover_rounds(&mut z);
        // The old writer dies sooner or later.
        let zv = z.vol;
        let crash = self.rng.below(2) == 0;
        match unwrap_arc(zv) {
            Ok(v) if crash => {
                self.timed("old writer crash", move || v.crash())?;
            }
            Ok(v) => {
                let _ = self.timed("old writer close", move || v.close())?;
            }
            Err(v) => abandon(v),
        }
        self.stale_active = false;
        if let Some(j) = old_journal {
            let _ = std::fs::remove_file(j);
        }
        r?;
        if self.vol.is_some() {
            self.read_check()?;
        }
        Ok(())
    }

    fn takeover_rounds(&mut self, z: &mut Zombie) -> Step {
        self.reopen("open by the new owner")?;
        if self.rng.below(2) == 0 {
            // The old writer learns at once that it lost the lock (the image layer's renewal
            // thread does this within its renewal period).
            z.vol.fence();
            self.note("the old writer is fenced at once".into());
        } else {
            self.stale_active = true;
            if self.p.cfg.gc_threshold > 0.0 {
                self.stale_gc = true;
            }
        }
        self.check_recovered(self.floor_s, "after takeover")?;
        let rounds = 1 + self.rng.below(3);
        for _ in 0..rounds {
            self.zombie_round(z)?;
            self.batch(false)?;
            if self.rng.below(2) == 0 {
                self.read_check()?;
            }
        }
        Ok(())
    }

    fn zombie_round(&mut self, z: &mut Zombie) -> Step {
        let n = 1 + self.rng.below(16);
        let mut ids = Vec::new();
        let mut ops = Vec::new();
        let size = z.size;
        let saved = self.size;
        self.size = size;
        for _ in 0..n {
            let id = self.id();
            let op = self.gen_io();
            let d = z.tr.done(id, true);
            match op {
                Op::Write { off, len, seed } => {
                    z.vol.submit_write(off, model::data(seed, off, len), d)
                }
                Op::Zero { off, len } => z.vol.submit_zero(off, len, d),
                Op::Resize { .. } => unreachable!(),
            }
            ids.push(id);
            ops.push((id, op));
            self.zombie_writes.push((id, op, self.f.takeovers));
        }
        self.size = saved;
        let missing = z.tr.wait(&ids, self.opts.hang);
        if !missing.is_empty() {
            self.violation(
                "hang",
                format!("the old writer's requests {missing:?} never completed"),
            );
            return Err(Abort);
        }
        let res = z.tr.lock().results.clone();
        let mut ok = 0;
        for (id, op) in ops {
            if let Some(Ok(())) = res.get(&id) {
                model::apply(&mut z.model, &op);
                ok += 1;
            }
        }
        self.f.zombie_ops += ok;
        let what = self.rng.below(6);
        let zv = z.vol.clone();
        let th = self.gc_threshold();
        let r: SResult<String> = match what {
            0 => self.timed("old writer flush", move || {
                zv.flush().map(|_| "flush".into())
            })?,
            1 => self.timed("old writer flush_to_store", move || {
                zv.flush_to_store().map(|_| "flush_to_store".into())
            })?,
            2 => {
                if self.stale_active {
                    self.stale_gc = true;
                }
                self.timed("old writer gc", move || {
                    zv.gc(th).map(|r| format!("gc {r:?}"))
                })?
            }
            3 => {
                zv.fence();
                self.stale_active = false;
                Ok("fenced (it noticed the lost lock)".into())
            }
            _ => Ok("nothing".into()),
        };
        self.note(format!(
            "old writer: {ok}/{n} writes acknowledged; then {r:?}"
        ));
        // Whatever the old writer reads must be its own data or an error, never another's.
        let zv = z.vol.clone();
        let zsize = z.size;
        let got = self.timed("old writer read", move || {
            let mut b = vec![0u8; zsize as usize];
            zv.read(0, &mut b).map(|_| b)
        })?;
        if let Ok(b) = got {
            if b != z.model {
                let at = model::first_diff(&z.model, &b);
                // Whose bytes are they? The new owner's history, or the old writer's own?
                let whose = at
                    .map(|a| {
                        model::explain(&self.base, &self.entries, u64::MAX, &b, a)
                            + &self.zombie_data_at(&b, a).unwrap_or_default()
                            + &format!(
                                "; its own model has {:02x?}",
                                &z.model[a..(a + 8).min(z.model.len())]
                            )
                    })
                    .unwrap_or_default();
                self.violation(
                    "stale-writer-read",
                    format!(
                        "the writer that lost the image read data that is neither its own nor an \
                         error, first at byte {at:?} ({whose}); store: {}",
                        self.store_state()
                    ),
                );
                return Err(Abort);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Step {
        self.step += 1;
        self.clear_faults();
        self.join_bg()?;
        self.drain()?;
        if self.vol_failed {
            self.crash(false)?;
        }
        self.note("finish: close, reopen, check everything".into());
        self.close_reopen()?;
        self.check_all_snapshots("final")?;
        self.read_check()?;
        let vol = self.vol.take().expect("volume is open");
        let r = self.timed("final close", move || vol.close())?;
        if let Err(e) = r {
            self.violation(
                "unexpected-error",
                format!("closing a healthy volume failed: {e}"),
            );
            return Err(Abort);
        }
        Ok(())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(h) = self.offline.take() {
            let _ = h.join();
        }
        if let Some(v) = self.vol.take() {
            abandon(v);
        }
    }
}
