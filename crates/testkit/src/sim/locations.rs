//! Scenarios with several stores: a volume whose data lives at two or three locations
//! (`shale_locations::Replicated` over fault-injecting memory stores), sync and async, with
//! locations failing and coming back (degrade, or block for a short while), lost
//! acknowledgements, garbage collection, crashes and takeovers.
//!
//! Checks after every crash (and at the end):
//! - the image equals the model after some prefix p of the acknowledged writes, with p at or
//!   past the last completed flush (`loc/not-a-prefix`, `loc/lost-flushed`);
//! - every location's own copy, opened alone, equals the model after some prefix of the
//!   acknowledged writes (`loc/copy-not-a-prefix`): a location never holds a mix that never
//!   existed, nor bytes nobody wrote, however far behind it is;
//! - with every location healthy, no write or flush fails (`loc/io-error`).

use std::sync::Arc;
use std::time::Duration;

use shale_engine::{Durability, EngineConfig, LogConfig, Volume};
use shale_locations::{Location, Mode, OnFailure, Options as LocOptions, Replicated};
use shale_store::{FaultStore, MemoryStore, ObjectStore};

use super::{model, Figures, Options, Outcome, Violation};
use crate::Rng;

const PREFIX: &str = "rbd/images/locsim/";
const SECTOR: u64 = 512;
/// Replication decisions kept for a violation's report.
const HISTORY_KEPT: usize = 1500;

struct W {
    off: u64,
    data: Vec<u8>,
}

pub(crate) struct LocSim {
    seed: u64,
    rng: Rng,
    opts: Options,
    size: u64,
    cfg: EngineConfig,
    on_failure: OnFailure,
    home: Arc<dyn ObjectStore>,
    stores: Vec<(String, Mode, Arc<FaultStore>)>,
    vol: Option<Volume>,
    repl: Option<Arc<Replicated>>,
    epoch: u64,
    fence: Option<(u64, u64)>,
    /// Acknowledged writes in order; the model after k of them is `state(k)`.
    writes: Vec<W>,
    /// Writes covered by the last completed flush.
    flushed: usize,
    journal: Option<std::path::PathBuf>,
    /// Faults injected when the volume was opened: errors are allowed once this grew.
    inj0: u64,
    /// The last crash was followed by a takeover on another host (its own journal).
    journal_lost: bool,
    step: usize,
    trace: Vec<String>,
    /// The replication decisions of the instances so far (the last `HISTORY_KEPT`).
    hist: Vec<String>,
    /// What the locations held and decided, for the report of a copy violation.
    explain: Vec<String>,
    f: Figures,
    v: Vec<Violation>,
}

impl LocSim {
    pub(crate) fn new(seed: u64, opts: Options) -> LocSim {
        let mut rng = Rng::new(model::mix(seed, 0x10c5));
        let n = 2 + rng.below(2) as usize;
        let mut stores = Vec::new();
        for i in 0..n {
            let mode = if i == 0 || rng.below(2) == 0 {
                Mode::Sync
            } else {
                Mode::Async
            };
            let name = ["home", "dc2", "dc3"][i].to_string();
            let fs = Arc::new(FaultStore::new(
                Arc::new(MemoryStore::new()),
                model::mix(seed, 0xfa00 + i as u64),
            ));
            stores.push((name, mode, fs));
        }
        let home: Arc<dyn ObjectStore> = stores[0].2.clone();
        // One file per run (a replayed seed runs several times at once).
        static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let journal = (rng.below(2) == 0).then(|| {
            std::env::temp_dir().join(format!(
                "shale-locsim-{}-{seed:016x}-{run}.jnl",
                std::process::id()
            ))
        });
        let cfg = EngineConfig {
            segment_size: 64 << 10,
            upload_threads: 1 + rng.below(3) as usize,
            checkpoint_interval: 1 + rng.below(4),
            max_pending: 2 + rng.below(6) as usize,
            upload_attempts: 3,
            durability: if journal.is_none() || rng.below(2) == 0 {
                Durability::Backend
            } else {
                Durability::Journal
            },
            seal_after: Duration::from_millis(1 + rng.below(20)),
            gc_threshold: if rng.below(2) == 0 { 0.0 } else { 0.5 },
            gc_every: 1 + rng.below(3),
            ..EngineConfig::default()
        };
        LocSim {
            seed,
            on_failure: if rng.below(5) == 0 {
                OnFailure::Block
            } else {
                OnFailure::Degrade
            },
            size: (128 << 10) + rng.below(256) * SECTOR * 4,
            rng,
            opts,
            cfg,
            home,
            stores,
            vol: None,
            repl: None,
            epoch: 1,
            fence: None,
            writes: Vec::new(),
            flushed: 0,
            journal,
            inj0: 0,
            journal_lost: false,
            step: 0,
            trace: Vec::new(),
            hist: Vec::new(),
            explain: Vec::new(),
            f: Figures::default(),
            v: Vec::new(),
        }
    }

    fn describe(&self) -> String {
        let locs: Vec<String> = self
            .stores
            .iter()
            .map(|(n, m, _)| format!("{n}:{}", m.as_str()))
            .collect();
        format!(
            "locations [{}], {:?}, durability {:?}, journal {}, size {}, {} upload threads, checkpoint every {}, gc {}",
            locs.join(" "),
            self.on_failure,
            self.cfg.durability,
            self.journal.is_some(),
            self.size,
            self.cfg.upload_threads,
            self.cfg.checkpoint_interval,
            self.cfg.gc_threshold
        )
    }

    fn note(&mut self, s: String) {
        if self.opts.verbose {
            eprintln!("[loc {:016x}] {s}", self.seed);
        }
        self.trace.push(s);
        if self.trace.len() > 300 {
            self.trace.drain(..100);
        }
    }

    fn violation(&mut self, kind: &'static str, detail: String) {
        self.note(format!("VIOLATION {kind}: {detail}"));
        self.v.push(Violation {
            seed: self.seed,
            kind,
            step: self.step,
            detail,
        });
    }

    fn state(&self, k: usize) -> Vec<u8> {
        let mut d = vec![0u8; self.size as usize];
        for w in &self.writes[..k] {
            d[w.off as usize..w.off as usize + w.data.len()].copy_from_slice(&w.data);
        }
        d
    }

    fn cfg(&self) -> EngineConfig {
        let mut c = self.cfg.clone();
        c.log = match &self.journal {
            Some(p) => LogConfig::Ring {
                place: shale_engine::LogPlaceRef::file(p.clone()),
                size: 4 << 20,
                owner: 0x10c5_0000 + self.seed % 1000,
            },
            None => LogConfig::Memory,
        };
        c.fence = self.fence;
        c
    }

    fn locations(&self) -> Vec<Location> {
        self.stores
            .iter()
            .map(|(n, m, s)| Location {
                name: n.clone(),
                mode: *m,
                store: s.clone(),
            })
            .collect()
    }

    fn replicated(&self, active: bool) -> Result<Replicated, String> {
        Replicated::open(
            self.home.clone(),
            PREFIX,
            self.locations(),
            LocOptions {
                on_failure: self.on_failure,
                prefer: Vec::new(),
                resync_rate: 0,
                retry: Duration::from_millis(5),
                epoch: self.epoch,
                fence: self.fence,
                active,
                history: HISTORY_KEPT,
            },
            shale_clock::system(),
        )
        .map_err(|e| e.to_string())
    }

    fn open(&mut self) -> Result<(), ()> {
        for attempt in 0..20 {
            let r = self.replicated(true).and_then(|r| {
                let r = Arc::new(r);
                Volume::open(
                    r.clone() as Arc<dyn ObjectStore>,
                    PREFIX,
                    self.size,
                    self.epoch,
                    self.cfg(),
                    false,
                )
                .map(|v| (v, r))
                .map_err(|e| e.to_string())
            });
            match r {
                Ok((v, r)) => {
                    self.vol = Some(v);
                    self.repl = Some(r);
                    self.inj0 = self.injected();
                    return Ok(());
                }
                Err(e) => {
                    self.note(format!("open attempt {attempt}: {e}"));
                    if attempt >= 3 {
                        self.heal_all();
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        self.violation("loc/open-failed", "the volume cannot be opened".into());
        Err(())
    }

    fn injected(&self) -> u64 {
        self.stores.iter().map(|(_, _, s)| s.injected()).sum()
    }

    /// No fault is configured, and none was injected since the volume was opened (an earlier
    /// one may still fail it later, as with one store).
    fn healthy(&self) -> bool {
        self.injected() == self.inj0
            && self
                .stores
                .iter()
                .all(|(_, _, s)| s.config() == Default::default())
    }

    fn heal_all(&mut self) {
        for (_, _, s) in &self.stores {
            s.set(Default::default());
        }
    }

    /// Make at most one location misbehave for a while.
    fn fault_step(&mut self) {
        self.heal_all();
        let n = self.stores.len() as u64;
        let i = self.rng.below(n) as usize;
        let what = self.rng.below(4);
        let s = self.stores[i].2.clone();
        let name = self.stores[i].0.clone();
        match what {
            0 => s.set_offline(true),
            1 => s.update(|c| c.put_error_rate = 0.3),
            2 => s.update(|c| c.lost_ack_rate = 0.3),
            _ => s.update(|c| c.latency = Duration::from_millis(2)),
        }
        self.f.fault_changes += 1;
        if what == 0 {
            self.f.offline_windows += 1;
        }
        self.note(format!("fault at {name}: {:?}", s.config()));
        // It comes back after a while (I/O that waits for it — block mode, or no location
        // holding the history reachable — then goes on).
        let ms = 10 + self.rng.below(90);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            s.set(Default::default());
        });
    }

    fn burst(&mut self) -> Result<(), ()> {
        let n = 1 + self.rng.below(24);
        for _ in 0..n {
            let max = (self.size / SECTOR).min(64);
            let len = (1 + self.rng.below(max)) * SECTOR;
            let off = self.rng.below((self.size - len) / SECTOR + 1) * SECTOR;
            let fill = (self.rng.next_u64() | 1) as u8;
            let mut data = vec![fill; len as usize];
            data[..8].copy_from_slice(&(self.writes.len() as u64).to_le_bytes());
            let healthy = self.healthy();
            let r = self.vol.as_ref().expect("open").write(off, &data);
            self.f.ops += 1;
            match r {
                Ok(()) => self.writes.push(W { off, data }),
                Err(e) => {
                    if healthy && self.on_failure == OnFailure::Degrade {
                        self.violation(
                            "loc/io-error",
                            format!("write failed with every location healthy: {e}"),
                        );
                        return Err(());
                    }
                    self.note(format!("write failed under faults: {e}"));
                    // The write may or may not have landed: the model becomes uncertain.
                    return Err(());
                }
            }
        }
        if self.rng.below(2) == 0 {
            let healthy = self.healthy();
            let r = self.vol.as_ref().expect("open").flush();
            self.f.flushes += 1;
            match r {
                Ok(()) => self.flushed = self.writes.len(),
                Err(e) if healthy => {
                    self.violation(
                        "loc/io-error",
                        format!("flush failed with every location healthy: {e}"),
                    );
                    return Err(());
                }
                Err(e) => {
                    self.note(format!("flush failed under faults: {e}"));
                    return Err(());
                }
            }
        }
        Ok(())
    }

    /// The first k in lo..=hi whose model equals `img`, if any.
    fn matching_prefix(&self, img: &[u8], lo: usize, hi: usize) -> Option<usize> {
        let mut d = self.state(lo);
        if d == img {
            return Some(lo);
        }
        for k in lo..hi {
            let w = &self.writes[k];
            d[w.off as usize..w.off as usize + w.data.len()].copy_from_slice(&w.data);
            if d == img {
                return Some(k + 1);
            }
        }
        None
    }

    fn read_all(vol: &Volume, size: u64) -> Result<Vec<u8>, String> {
        let mut b = vec![0u8; size as usize];
        vol.read(0, &mut b).map_err(|e| e.to_string())?;
        Ok(b)
    }

    /// Crash (and maybe a takeover by a new epoch), then check the image and every copy.
    fn crash(&mut self) -> Result<(), ()> {
        let vol = self.vol.take().expect("open");
        vol.crash();
        if let Some(r) = self.repl.take() {
            r.crash();
            self.hist.push(format!(
                "-- replication decisions up to crash {}",
                self.f.crashes + 1
            ));
            self.hist.extend(r.history());
            let n = self.hist.len();
            self.hist.drain(..n.saturating_sub(HISTORY_KEPT));
        }
        self.f.crashes += 1;
        self.heal_all();
        if self.rng.below(2) == 0 {
            // A takeover: a new epoch fenced past every segment at every location.
            let max = self
                .stores
                .iter()
                .map(|(_, _, s)| super::engine::max_segment(s.inner().as_ref(), PREFIX))
                .max()
                .unwrap_or(0);
            self.epoch += 1;
            self.fence = Some((self.epoch, max + 1));
            self.f.takeovers += 1;
            // Another host: its own journal. What only the old one held (acknowledged, not
            // flushed to the locations) stays there; the flushed floor is what must survive.
            if let Some(p) = self.journal.take() {
                let _ = std::fs::remove_file(&p);
                self.journal = Some(p.with_extension(format!("e{}.jnl", self.epoch)));
            }
            self.journal_lost = true;
            self.note(format!("takeover: epoch {} fence {}", self.epoch, max + 1));
        }
        self.check_copies("after a crash");
        self.open()?;
        self.check_image("after a crash")
    }

    fn check_image(&mut self, when: &str) -> Result<(), ()> {
        self.f.checks += 1;
        let img = match Self::read_all(self.vol.as_ref().expect("open"), self.size) {
            Ok(b) => b,
            Err(e) => {
                self.violation("loc/read-failed", format!("{when}: {e}"));
                return Err(());
            }
        };
        // The last completed flush is durable: in the locations (durability = backend), or in
        // this host's journal (durability = journal; a takeover by another host does not see
        // that journal, so then only a prefix is required). Acknowledged writes after it may
        // be lost by a crash.
        let lost = std::mem::take(&mut self.journal_lost);
        let floor = match self.cfg.durability {
            Durability::Journal if lost => 0,
            _ => self.flushed,
        };
        match self.matching_prefix(&img, floor, self.writes.len()) {
            Some(k) if k >= floor => {
                // What a crash dropped is gone from the history from now on.
                self.writes.truncate(k);
                self.flushed = self.flushed.min(k);
                Ok(())
            }
            Some(k) => {
                self.violation(
                    "loc/lost-flushed",
                    format!("{when}: the image holds {k} writes, {floor} were durable"),
                );
                Err(())
            }
            None => {
                self.violation(
                    "loc/not-a-prefix",
                    format!(
                        "{when}: the image is no prefix of the {} acknowledged writes",
                        self.writes.len()
                    ),
                );
                Err(())
            }
        }
    }

    /// Every location's copy, opened alone, is a prefix of the acknowledged writes.
    fn check_copies(&mut self, when: &str) {
        let found = self.v.len();
        for i in 0..self.stores.len() {
            let (name, _, s) = self.stores[i].clone();
            let store: Arc<dyn ObjectStore> = s.inner().clone();
            let mut cfg = self.cfg();
            cfg.log = LogConfig::Memory;
            let v = match Volume::open(store, PREFIX, self.size, self.epoch, cfg, true) {
                Ok(v) => v,
                Err(e) => {
                    self.violation("loc/copy-unreadable", format!("{when}: {name}'s copy: {e}"));
                    continue;
                }
            };
            let img = Self::read_all(&v, self.size);
            let _ = v.close();
            self.f.checks += 1;
            match img {
                Ok(img) => {
                    if self.matching_prefix(&img, 0, self.writes.len()).is_none() {
                        self.violation(
                            "loc/copy-not-a-prefix",
                            format!(
                                "{when}: {name}'s copy is no prefix of the acknowledged writes"
                            ),
                        );
                    }
                }
                Err(e) => {
                    self.violation("loc/copy-unreadable", format!("{when}: {name}: {e}"));
                }
            }
        }
        if self.v.len() > found && self.explain.is_empty() {
            // What each location holds and how the copies got there, for the report.
            for (name, _, s) in &self.stores {
                let keys: Vec<String> = s
                    .inner()
                    .list(PREFIX)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| m.key.trim_start_matches(PREFIX).to_string())
                    .collect();
                self.explain.push(format!("{name} holds {keys:?}"));
            }
            self.explain.extend(self.hist.iter().cloned());
        }
    }

    pub(crate) fn run(mut self) -> Outcome {
        let t0 = std::time::Instant::now();
        let params = self.describe();
        let steps = 6 + self.rng.below(14) as usize;
        let mut r = self.open();
        while r.is_ok() && self.step < steps {
            self.step += 1;
            r = match self.rng.below(10) {
                0..=4 => self.burst(),
                5 | 6 => {
                    self.fault_step();
                    Ok(())
                }
                7 => {
                    self.heal_all();
                    Ok(())
                }
                _ => self.crash(),
            };
        }
        if r.is_ok() {
            self.heal_all();
            let ok = self.vol.as_ref().map(|v| v.flush());
            if let Some(Ok(())) = ok {
                self.flushed = self.writes.len();
            }
            let _ = self.crash();
        } else if let Some(v) = self.vol.take() {
            if self.v.is_empty() {
                self.f.uncertain += 1;
            }
            v.crash();
        }
        if let Some(r) = self.repl.take() {
            r.crash();
        }
        if let Some(p) = &self.journal {
            let _ = std::fs::remove_file(p);
        }
        self.f.scenarios = 1;
        self.f.location_scenarios = 1;
        self.f.steps += self.step as u64;
        self.f.faults_injected += self
            .stores
            .iter()
            .map(|(_, _, s)| s.injected())
            .sum::<u64>();
        Outcome {
            seed: self.seed,
            figures: std::mem::take(&mut self.f),
            violations: std::mem::take(&mut self.v),
            elapsed: t0.elapsed(),
            params,
            trace: {
                let mut t = std::mem::take(&mut self.trace);
                if !self.explain.is_empty() {
                    t.push("-- at the first copy violation:".into());
                    t.append(&mut self.explain);
                }
                t
            },
        }
    }
}
