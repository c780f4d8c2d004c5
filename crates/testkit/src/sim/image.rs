//! The image-layer family: the same seeded-workload idea driven through `shale_image`
//! (Cluster / Image) so that snapshots, protection, clones, flatten, rollback, resize, GC, the
//! exclusive lock and the read cache are exercised with their RBD semantics, under store faults
//! and with close/reopen cycles. The image layer has no crash hook, so this family checks exact
//! contents (everything acknowledged) after every clean reopen, and every snapshot and clone
//! against its model.

use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shale_error::ErrorKind;
use shale_image::{Cluster, Image, Settings};
use shale_store::fault::FaultConfig;
use shale_store::{FaultStore, MemoryStore, ObjectStore};

use super::engine::{Abort, Tracker};
use super::model::{self, Op};
use super::{Figures, Options, Outcome, Violation};
use crate::Rng;

type Step = std::result::Result<(), Abort>;

const POOL: &str = "rbd";

struct Img {
    name: String,
    h: Option<Arc<Image>>,
    model: Vec<u8>,
    /// The base snapshot it was cloned from (until flattened).
    parent: Option<String>,
    /// What was done to it, for reports: acknowledged writes and zeroes, resizes, rollbacks.
    hist: Vec<String>,
    ops: Vec<Op>,
}

struct SnapM {
    name: String,
    data: Vec<u8>,
    protected: bool,
    children: usize,
}

pub(crate) struct ImgSim {
    seed: u64,
    rng: Rng,
    opts: Options,
    inner: Arc<MemoryStore>,
    fault: Arc<FaultStore>,
    c: Cluster,
    dir: PathBuf,
    desc: String,
    faults: u8,
    features: Option<u64>,
    imgs: Vec<Img>,
    snaps: Vec<SnapM>,
    snap_n: u64,
    clone_n: u64,
    steps: usize,
    qd: u64,
    tr: Arc<Tracker>,
    next_id: u64,
    offline: Option<std::thread::JoinHandle<()>>,
    /// Faults were configured or injected since everything was last reopened clean.
    tainted: bool,
    inj_mark: u64,
    step: usize,
    trace: Vec<String>,
    f: Figures,
    v: Vec<Violation>,
}

fn abandon(i: Arc<Image>) {
    let _ = std::thread::Builder::new()
        .name("sim-abandon".into())
        .spawn(move || drop(i));
}

impl ImgSim {
    pub(crate) fn new(seed: u64, opts: Options) -> std::result::Result<ImgSim, String> {
        let mut rng = Rng::new(seed);
        static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "shale-simi-{}-{seed:016x}-{}",
            std::process::id(),
            RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let ring = rng.below(2) == 0;
        let mut s = Settings::default();
        let seg = ["64K", "64K", "128K"][rng.below(3) as usize];
        let ckpt = (1 + rng.below(4)).to_string();
        let up = (1 + rng.below(3)).to_string();
        let gc = ["0", "0.5", "0.8", "0.95"][rng.below(4) as usize];
        let durability = ["journal", "journal", "backend"][rng.below(3) as usize];
        let rcache = ["0", "0", "256K", "1M"][rng.below(4) as usize];
        let jsize = ["2M", "4M", "16M"][rng.below(3) as usize];
        let set = |s: &mut Settings, k: &str, v: &str| {
            s.set(k, v).map_err(|e| format!("setting {k}={v}: {e}"))
        };
        if ring {
            // Not opened (the fault store is passed in); it only makes the engine use a ring
            // journal and the read cache as for any remote store.
            set(&mut s, "store", "file:///shale-sim-not-opened")?;
            set(&mut s, "journal", "ring")?;
            set(&mut s, "cache_dir", &dir.display().to_string())?;
            set(&mut s, "cache_size", jsize)?;
            set(&mut s, "read_cache_size", rcache)?;
        } else {
            set(&mut s, "store", "memory://")?;
        }
        set(&mut s, "segment_size", seg)?;
        set(&mut s, "checkpoint_interval", &ckpt)?;
        set(&mut s, "upload_threads", &up)?;
        set(&mut s, "gc_threshold", gc)?;
        set(&mut s, "durability", durability)?;
        let inner = Arc::new(MemoryStore::new());
        let fault = Arc::new(FaultStore::new(inner.clone(), model::mix(seed, 0xfa18)));
        let store: Arc<dyn ObjectStore> = fault.clone();
        let accel = opts
            .accel
            .unwrap_or([1, 4, 10, 10][rng.below(4) as usize] as u32);
        let c = Cluster::with_env(
            store,
            s,
            Arc::new(super::AcceleratedClock::new(accel, 1_800_000_000_000)),
            Arc::new(shale_clock::SeededEntropy::new(model::mix(seed, 0xe8))),
        )
        .map_err(|e| format!("cluster: {e}"))?;
        let features = match rng.below(3) {
            0 => Some(1 | 32), // layering, deep-flatten: no exclusive lock
            _ => None,         // librbd's defaults (exclusive lock, object map, fast diff)
        };
        let mut size = (64 << 10) + rng.below(448 << 10) / 512 * 512;
        if rng.below(4) == 0 {
            size += 1 + rng.below(511);
        }
        let faults = match rng.below(10) {
            0..=4 => 0,
            _ => 1,
        };
        let steps = 6 + rng.below(20) as usize;
        let qd = [1, 4, 16, 64][rng.below(4) as usize];
        let desc = format!(
            "image layer: {} journal{}, segment {seg}, checkpoint every {ckpt}, {up} upload threads, \
             gc {gc}, durability {durability}, read cache {rcache}, features {features:?}, size {size}, \
                          {steps} steps, qd {qd}, faults level {faults}, clock x{accel}",
            if ring { "ring" } else { "memory" },
            if ring { format!(" {jsize}") } else { String::new() },
        );
        c.create_image_with(POOL, "base", size, 22, features)
            .map_err(|e| format!("create: {e}"))?;
        Ok(ImgSim {
            seed,
            rng,
            opts,
            inner,
            fault,
            c,
            dir,
            desc,
            faults,
            features,
            imgs: vec![Img {
                name: "base".into(),
                h: None,
                model: vec![0; size as usize],
                parent: None,
                hist: Vec::new(),
                ops: Vec::new(),
            }],
            snaps: Vec::new(),
            snap_n: 1,
            clone_n: 1,
            steps,
            qd,
            tr: Arc::default(),
            next_id: 1,
            offline: None,
            tainted: false,
            inj_mark: 0,
            step: 0,
            trace: Vec::new(),
            f: Figures::default(),
            v: Vec::new(),
        })
    }

    pub(crate) fn run(mut self) -> Outcome {
        let t0 = Instant::now();
        let desc = self.desc.clone();
        self.note(format!("params: {desc}"));
        let r = self.open(0).and_then(|_| {
            for _ in 0..self.steps {
                self.step_once()?;
            }
            self.finish()
        });
        if r.is_err() && self.v.is_empty() {
            self.f.uncertain += 1;
        }
        self.clear_faults();
        for i in &mut self.imgs {
            if let Some(h) = i.h.take() {
                abandon(h);
            }
        }
        self.f.scenarios = 1;
        self.f.image_scenarios = 1;
        self.f.faults_injected += self.fault.injected();
        self.f.steps += self.step as u64;
        let out = Outcome {
            seed: self.seed,
            figures: std::mem::take(&mut self.f),
            violations: std::mem::take(&mut self.v),
            elapsed: t0.elapsed(),
            params: desc,
            trace: std::mem::take(&mut self.trace),
        };
        let dir = self.dir.clone();
        drop(self);
        let _ = std::fs::remove_dir_all(dir);
        out
    }

    fn note(&mut self, s: String) {
        if self.opts.verbose {
            eprintln!("[sim-image {:016x} step {}] {s}", self.seed, self.step);
        }
        self.trace.push(format!("step {}: {s}", self.step));
        if self.trace.len() > 400 {
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

    fn faults_configured(&self) -> bool {
        self.offline.is_some() || self.fault.config() != FaultConfig::default()
    }

    fn is_tainted(&mut self) -> bool {
        if self.faults_configured() || self.fault.injected() > self.inj_mark {
            self.tainted = true;
        }
        self.tainted
    }

    fn clear_faults(&mut self) {
        if let Some(h) = self.offline.take() {
            let _ = h.join();
        }
        self.fault.set(FaultConfig::default());
    }

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
                    "image/hang",
                    format!("{what} did not return within {hang:?}"),
                );
                Err(Abort)
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.violation("image/panic", format!("{what} panicked"));
                Err(Abort)
            }
        }
    }

    /// An error from the image layer: tolerated under faults (the model is then uncertain when
    /// `certain` is false: the scenario ends), a violation otherwise.
    fn judge(&mut self, what: &str, e: &shale_error::Error, certain: bool) -> Step {
        if self.is_tainted() {
            self.f.errors_tolerated += 1;
            self.note(format!("{what}: tolerated error under faults: {e}"));
            if certain {
                Ok(())
            } else {
                Err(Abort)
            }
        } else {
            self.violation(
                "image/unexpected-error",
                format!(
                    "{what} failed without any injected fault: {:?}: {e}",
                    e.kind()
                ),
            );
            Err(Abort)
        }
    }

    fn h(&self, i: usize) -> Arc<Image> {
        self.imgs[i].h.clone().expect("image open")
    }

    fn open(&mut self, i: usize) -> Step {
        let name = self.imgs[i].name.clone();
        for attempt in 0..4 {
            if attempt == 3 {
                self.clear_faults();
            }
            let c = self.c.clone();
            let n2 = name.clone();
            let r = self.timed("open", move || c.open_image(POOL, &n2, false))?;
            match r {
                Ok(h) => {
                    self.imgs[i].h = Some(Arc::new(h));
                    return Ok(());
                }
                Err(e) if attempt < 3 && self.is_tainted() => {
                    self.f.open_retries += 1;
                    self.note(format!("open {name}: {e}; retrying"));
                }
                Err(e) => {
                    self.violation(
                        "image/open-failed",
                        format!("opening {name} failed: {:?}: {e}", e.kind()),
                    );
                    return Err(Abort);
                }
            }
        }
        Err(Abort)
    }

    fn read_image(&mut self, i: usize, what: &str) -> std::result::Result<Option<Vec<u8>>, Abort> {
        let h = self.h(i);
        let size = self.imgs[i].model.len();
        let r = self.timed(what, move || {
            let mut b = vec![0u8; size];
            h.read(0, &mut b).map(|n| {
                b.truncate(n);
                b
            })
        })?;
        match r {
            Ok(b) => Ok(Some(b)),
            Err(e) => {
                let w = format!("{what} of {}", self.imgs[i].name);
                self.judge(&w, &e, true)?;
                Ok(None)
            }
        }
    }

    fn check(&mut self, i: usize, what: &str) -> Step {
        let Some(b) = self.read_image(i, what)? else {
            return Ok(());
        };
        self.f.checks += 1;
        if b != self.imgs[i].model {
            let at = model::first_diff(&self.imgs[i].model, &b);
            let kind = if self.imgs[i].parent.is_some() {
                "image/clone-mismatch"
            } else {
                "image/read-mismatch"
            };
            let why = at.map(|a| self.explain(i, &b, a)).unwrap_or_default();
            self.violation(
                kind,
                format!(
                                        "{what}: image {} ({} bytes{}) differs from everything acknowledged, first at byte {at:?} (read {} bytes; image has {:02x?}, expected {:02x?})",
                    self.imgs[i].name,
                    self.imgs[i].model.len(),
                    self.imgs[i]
                        .parent
                        .as_ref()
                        .map(|p| format!(", clone of base@{p}"))
                                                .unwrap_or_default(),
                    b.len(),
                    at.map(|a| &b[a..(a + 8).min(b.len())]),
                                        at.map(|a| &self.imgs[i].model[a..(a + 8).min(b.len())]),
                ) + &why,
            );
            return Err(Abort);
        }
        Ok(())
    }

    /// Which acknowledged operations touched byte `at`, and whose data the image shows there.
    fn explain(&self, i: usize, img: &[u8], at: usize) -> String {
        let a = at as u64;
        let touching: Vec<String> = self.imgs[i]
            .hist
            .iter()
            .zip(0..)
            .filter_map(|(h, _)| {
                let covers = h.contains("resize") || h.contains("rollback") || {
                    self.imgs[i].ops.iter().any(|_| false)
                };
                covers.then(|| h.clone())
            })
            .collect();
        let ops: Vec<String> = self.imgs[i]
            .ops
            .iter()
            .filter(|op| match op {
                Op::Write { off, len, .. } | Op::Zero { off, len } => *off <= a && a < off + len,
                Op::Resize { .. } => false,
            })
            .map(|op| format!("{op:?}"))
            .collect();
        let w0 = at / 8 * 8;
        let w1 = (w0 + 8).min(img.len());
        let from: Vec<String> = self.imgs[i]
            .ops
            .iter()
            .filter(|op| match **op {
                Op::Write { off, len, seed } => {
                    off <= w0 as u64
                        && w1 as u64 <= off + len
                        && model::data(seed, w0 as u64, (w1 - w0) as u64) == img[w0..w1]
                }
                _ => false,
            })
            .map(|op| format!("{op:?}"))
            .collect();
        let id = self.imgs[i]
            .h
            .as_ref()
            .map(|h| h.id().to_string())
            .unwrap_or_default();
        let pfx = format!("{POOL}/images/{id}/");
        let keys: Vec<String> = self
            .inner
            .list(&pfx)
            .unwrap_or_default()
            .into_iter()
            .map(|o| o.key[pfx.len()..].to_string())
            .filter(|k| k.starts_with("ckpt/") || k.starts_with("seg/") || k.starts_with("snap/"))
            .map(|k| {
                k.replace("ckpt/00000000000000", "ckpt/")
                    .replace("seg/00000000000000", "seg/")
                    .replace("-00000000000000", "-")
            })
            .collect();
        format!(
            "; acknowledged ops covering byte {at}: {ops:?}; the image's word there is the data \
             of {from:?}; resizes/rollbacks: {touching:?}; objects: {keys:?}"
        )
    }

    fn check_snap(&mut self, k: usize, what: &str) -> Step {
        self.check_snap_as(k, what, false)
    }

    /// `strict`: faults are off and the header lists the snapshot: it must read back.
    fn check_snap_as(&mut self, k: usize, what: &str, strict: bool) -> Step {
        let name = self.snaps[k].name.clone();
        let c = self.c.clone();
        let n2 = name.clone();
        let size = self.snaps[k].data.len();
        let r = self.timed("snapshot read", move || {
            let v = c.open_image_at(POOL, "base", &n2)?;
            let mut b = vec![0u8; size];
            let n = v.read(0, &mut b)?;
            b.truncate(n);
            Ok::<_, shale_error::Error>((b, v.size()))
        })?;
        self.f.snapshot_checks += 1;
        match r {
            Ok((b, sz)) => {
                if b != self.snaps[k].data || sz as usize != size {
                    let at = model::first_diff(&self.snaps[k].data, &b);
                    self.violation(
                        "image/snapshot-mismatch",
                        format!("{what}: base@{name} differs from the image when it was taken (size {sz} vs {size}), first at byte {at:?}"),
                    );
                    return Err(Abort);
                }
                Ok(())
            }
            Err(e) if strict => {
                self.violation(
                    "image/listed-snapshot-unreadable",
                    format!(
                        "{what}: base@{name} is listed in the header but cannot be read (faults off): {:?}: {e}",
                        e.kind()
                    ),
                );
                Err(Abort)
            }
            Err(e) => self.judge(&format!("{what}: reading base@{name}"), &e, true),
        }
    }

    fn step_once(&mut self) -> Step {
        self.step += 1;
        let n = self.imgs.len() as u64;
        let i = self.rng.below(n) as usize;
        match self.rng.below(100) {
            0..=29 => self.io(i),
            30..=37 => self.check(i, "read check"),
            38..=45 => self.snap_create(),
            46..=49 => self.snap_remove(),
            50..=55 => {
                if self.snaps.is_empty() {
                    return self.io(i);
                }
                let k = self.rng.below(self.snaps.len() as u64) as usize;
                self.check_snap(k, "snapshot check")
            }
            56..=59 => self.rollback(),
            60..=65 => self.clone_snap(),
            66..=68 => self.flatten(),
            69..=72 => self.resize(i),
            73..=76 => self.gc(i),
            77..=84 => self.reopen(i),
            85..=92 if self.faults > 0 => {
                self.set_faults();
                Ok(())
            }
            93..=95 if self.faults > 0 => self.heal(),
            _ => self.io(i),
        }
    }

    fn set_faults(&mut self) {
        let mut c = FaultConfig::default();
        match self.rng.below(5) {
            0 => c.put_error_rate = (1 + self.rng.below(10)) as f64 / 100.0,
            1 => c.lost_ack_rate = (1 + self.rng.below(20)) as f64 / 100.0,
            2 => c.get_error_rate = (1 + self.rng.below(5)) as f64 / 100.0,
            3 => {
                if let Some(h) = self.offline.take() {
                    let _ = h.join();
                }
                let ms = 5 + self.rng.below(200);
                let f = self.fault.clone();
                f.set_offline(true);
                self.offline = Some(
                    std::thread::Builder::new()
                        .name("sim-offline".into())
                        .spawn(move || {
                            std::thread::sleep(Duration::from_millis(ms));
                            f.set_offline(false);
                        })
                        .expect("spawn"),
                );
                self.f.offline_windows += 1;
                self.tainted = true;
                self.note(format!("store offline for {ms} ms"));
                return;
            }
            _ => {}
        }
        self.note(format!("faults: {c:?}"));
        self.fault.update(|x| {
            let off = x.offline;
            *x = c;
            x.offline = off;
        });
        self.f.fault_changes += 1;
        if self.faults_configured() {
            self.tainted = true;
        }
    }

    /// Faults off, every image closed and reopened: errors are violations again.
    fn heal(&mut self) -> Step {
        self.clear_faults();
        for i in 0..self.imgs.len() {
            self.reopen(i)?;
        }
        self.inj_mark = self.fault.injected();
        self.tainted = false;
        self.note("healed: faults off, every image reopened".into());
        Ok(())
    }

    fn gen_io(&mut self, size: u64) -> Op {
        let zero = self.rng.below(100) < 22;
        let (off, len) = if self.rng.below(10) < 7 && size >= 512 {
            let sectors = size / 512;
            let n = (1 + self.rng.below(64)).min(sectors);
            let at = self.rng.below(sectors - n + 1);
            (at * 512, n * 512)
        } else {
            let len = (1 + self.rng.below(12_000)).min(size);
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

    fn io(&mut self, i: usize) -> Step {
        let h = self.h(i);
        let n = 1 + self.rng.below(self.qd);
        let size = self.imgs[i].model.len() as u64;
        let mut ids = Vec::new();
        let mut ops = Vec::new();
        for _ in 0..n {
            let id = self.next_id;
            self.next_id += 1;
            if self.rng.below(100) < 8 {
                if id.is_multiple_of(3) {
                    h.submit_flush_alone(self.tr.done(id, false));
                } else {
                    h.submit_flush(self.tr.done(id, false));
                }
                ids.push(id);
                self.f.flushes += 1;
                continue;
            }
            let op = self.gen_io(size);
            let d = self.tr.done(id, true);
            match op {
                Op::Write { off, len, seed } if seed.is_multiple_of(3) => {
                    h.submit_write_alone(off, model::data(seed, off, len), d)
                }
                Op::Write { off, len, seed } => h.submit_write(off, model::data(seed, off, len), d),
                Op::Zero { off, len } => h.submit_zero(off, len, d),
                Op::Resize { .. } => unreachable!(),
            }
            ids.push(id);
            ops.push((id, op));
            self.f.ops += 1;
        }
        let missing = self.tr.wait(&ids, self.opts.hang);
        if !missing.is_empty() {
            self.violation(
                "image/hang",
                format!(
                    "requests {missing:?} on {} never completed",
                    self.imgs[i].name
                ),
            );
            return Err(Abort);
        }
        let res = {
            let mut g = self.tr.lock();
            let r: Vec<_> = ids.iter().map(|id| g.results.remove(id)).collect();
            r
        };
        let mut errs = Vec::new();
        for (id, r) in ids.iter().zip(res) {
            match r {
                Some(Ok(())) => {
                    if let Some((_, op)) = ops.iter().find(|(x, _)| x == id) {
                        model::apply(&mut self.imgs[i].model, op);
                        self.imgs[i].ops.push(*op);
                        let step = self.step;
                        self.imgs[i].hist.push(format!("step {step}: {op:?}"));
                    }
                }
                Some(Err((k, m))) => errs.push(shale_error::Error::new(k, m)),
                None => {}
            }
        }
        self.note(format!(
            "{}: {n} requests, {} failed",
            self.imgs[i].name,
            errs.len()
        ));
        for e in errs {
            self.judge("I/O", &e, true)?;
        }
        Ok(())
    }

    fn snap_create(&mut self) -> Step {
        let name = format!("s{}", self.snap_n);
        self.snap_n += 1;
        let h = self.h(0);
        let n2 = name.clone();
        let r = self.timed("snap_create", move || h.snap_create(&n2))?;
        match r {
            Ok(_) => {
                self.snaps.push(SnapM {
                    name: name.clone(),
                    data: self.imgs[0].model.clone(),
                    protected: false,
                    children: 0,
                });
                self.f.snapshots += 1;
                self.note(format!("snapshot base@{name}"));
                Ok(())
            }
            Err(e) => {
                self.judge("snap_create", &e, true)?;
                // Whatever the header now says is the truth: a snapshot that exists must read
                // as the image did when it was taken (now).
                self.resync_snaps(Some(&name))
            }
        }
    }

    /// After a failed snapshot operation: adopt the header's list (faults off to read it).
    fn resync_snaps(&mut self, created: Option<&str>) -> Step {
        self.clear_faults();
        let h = self.h(0);
        let r = self.timed("snap_list", move || h.snap_list())?;
        let list = match r {
            Ok(l) => l,
            Err(e) => {
                self.violation(
                    "image/unexpected-error",
                    format!("snap_list failed without faults: {e}"),
                );
                return Err(Abort);
            }
        };
        self.snaps.retain(|s| list.iter().any(|x| x.name == s.name));
        if let Some(n) = created {
            if list.iter().any(|x| x.name == n) && !self.snaps.iter().any(|s| s.name == n) {
                self.note(format!("the failed snapshot {n} exists after all"));
                self.snaps.push(SnapM {
                    name: n.to_string(),
                    data: self.imgs[0].model.clone(),
                    protected: false,
                    children: 0,
                });
                let k = self.snaps.len() - 1;
                self.check_snap_as(k, "snapshot whose creation reported an error", true)?;
            }
        }
        for s in &mut self.snaps {
            if let Some(x) = list.iter().find(|x| x.name == s.name) {
                s.protected = x.protected;
            }
        }
        Ok(())
    }

    fn snap_remove(&mut self) -> Step {
        if self.snaps.is_empty() {
            return self.snap_create();
        }
        let k = self.rng.below(self.snaps.len() as u64) as usize;
        let name = self.snaps[k].name.clone();
        let refuse = self.snaps[k].protected || self.snaps[k].children > 0;
        let h = self.h(0);
        let n2 = name.clone();
        let r = self.timed("snap_remove", move || h.snap_remove(&n2))?;
        match (r, refuse) {
            (Ok(()), false) => {
                self.snaps.remove(k);
                self.note(format!("removed base@{name}"));
                Ok(())
            }
            (Ok(()), true) => {
                self.violation(
                    "image/accepted-bad-request",
                    format!("removing protected or cloned snapshot base@{name} succeeded"),
                );
                Err(Abort)
            }
            (Err(e), true) => {
                self.note(format!("removing base@{name} refused as it must be: {e}"));
                // ...and nothing changed.
                self.check_snap(k, "snapshot after a refused removal")
            }
            (Err(e), false) => {
                self.judge("snap_remove", &e, true)?;
                self.resync_snaps(None)
            }
        }
    }

    fn rollback(&mut self) -> Step {
        if self.snaps.is_empty() {
            return self.snap_create();
        }
        let k = self.rng.below(self.snaps.len() as u64) as usize;
        let name = self.snaps[k].name.clone();
        let h = self.h(0);
        let n2 = name.clone();
        let r = self.timed("snap_rollback", move || h.snap_rollback(&n2, |_, _| {}))?;
        match r {
            Ok(()) => {
                self.imgs[0].model = self.snaps[k].data.clone();
                let step = self.step;
                self.imgs[0]
                    .hist
                    .push(format!("step {step}: rollback to @{name}"));
                self.note(format!("rolled base back to @{name}"));
                self.f.rollbacks += 1;
                self.check(0, "after rollback")
            }
            Err(e) => self.judge("snap_rollback", &e, false),
        }
    }

    fn clone_snap(&mut self) -> Step {
        if self.snaps.is_empty() || self.imgs.len() >= 3 {
            return self.snap_create();
        }
        let k = self.rng.below(self.snaps.len() as u64) as usize;
        let sname = self.snaps[k].name.clone();
        if !self.snaps[k].protected {
            let h = self.h(0);
            let n2 = sname.clone();
            match self.timed("snap_protect", move || h.snap_protect(&n2))? {
                Ok(()) => self.snaps[k].protected = true,
                Err(e) => {
                    self.judge("snap_protect", &e, true)?;
                    return self.resync_snaps(None);
                }
            }
        }
        let cname = format!("c{}", self.clone_n);
        self.clone_n += 1;
        let c = self.c.clone();
        let (s2, c2) = (sname.clone(), cname.clone());
        let r = self.timed("clone", move || {
            c.clone_image(POOL, "base", &s2, POOL, &c2, None)
        })?;
        match r {
            Ok(_) => {
                self.snaps[k].children += 1;
                self.imgs.push(Img {
                    name: cname.clone(),
                    h: None,
                    model: self.snaps[k].data.clone(),
                    parent: Some(sname.clone()),
                    hist: Vec::new(),
                    ops: Vec::new(),
                });
                self.f.clones += 1;
                self.note(format!("cloned base@{sname} as {cname}"));
                let i = self.imgs.len() - 1;
                self.open(i)?;
                self.check(i, "new clone")
            }
            Err(e) => self.judge("clone", &e, false),
        }
    }

    fn flatten(&mut self) -> Step {
        let Some(i) = (1..self.imgs.len()).find(|&i| self.imgs[i].parent.is_some()) else {
            return self.clone_snap();
        };
        let h = self.h(i);
        let r = self.timed("flatten", move || h.flatten(|_, _| {}))?;
        match r {
            Ok(()) => {
                let p = self.imgs[i].parent.take().unwrap_or_default();
                if let Some(s) = self.snaps.iter_mut().find(|s| s.name == p) {
                    s.children = s.children.saturating_sub(1);
                }
                self.note(format!("flattened {}", self.imgs[i].name));
                self.f.flattens += 1;
                self.check(i, "after flatten")
            }
            Err(e) => self.judge("flatten", &e, false),
        }
    }

    fn resize(&mut self, i: usize) -> Step {
        let old = self.imgs[i].model.len() as u64;
        let new = match self.rng.below(3) {
            0 => old + 512 * (1 + self.rng.below(128)),
            1 => (old / 2).max(4096) + self.rng.below(2) * self.rng.below(512),
            _ => (32 << 10) + self.rng.below(512 << 10),
        };
        let h = self.h(i);
        let r = self.timed("resize", move || h.resize(new, true))?;
        match r {
            Ok(()) => {
                self.imgs[i].model.resize(new as usize, 0);
                let step = self.step;
                self.imgs[i]
                    .hist
                    .push(format!("step {step}: resize {old} -> {new}"));
                self.note(format!("resized {} {old} -> {new}", self.imgs[i].name));
                self.f.resizes += 1;
                Ok(())
            }
            Err(e) => self.judge("resize", &e, false),
        }
    }

    fn gc(&mut self, i: usize) -> Step {
        let h = self.h(i);
        let th = [0.5, 0.9, 1.0][self.rng.below(3) as usize];
        let r = self.timed("gc", move || h.gc(th))?;
        self.f.gc_runs += 1;
        match r {
            Ok(rep) => {
                self.note(format!("gc {} ({th}): {rep:?}", self.imgs[i].name));
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound && !self.is_tainted() => {
                self.violation(
                    "image/gc-error",
                    format!("gc of {} failed without faults: {e}", self.imgs[i].name),
                );
                Err(Abort)
            }
            Err(e) => self.judge("gc", &e, true),
        }
    }

    fn reopen(&mut self, i: usize) -> Step {
        if !self.is_tainted() {
            self.check(i, "before close")?;
        }
        let h = self.imgs[i].h.take().expect("image open");
        let h2 = h.clone();
        let r = self.timed("close", move || h2.close())?;
        // The last handle goes: the lock (if any) is released on drop.
        let h3 = h;
        self.timed("drop", move || drop(h3))?;
        if let Err(e) = &r {
            // Unstored writes may be gone (the memory log): the model is uncertain.
            self.judge("close", e, false)?;
        } else {
            self.f.closes += 1;
        }
        self.open(i)?;
        self.note(format!("reopened {}", self.imgs[i].name));
        if r.is_ok() {
            self.check(i, "after reopen")?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Step {
        self.step += 1;
        self.heal()?;
        for i in 0..self.imgs.len() {
            self.check(i, "final")?;
        }
        for k in 0..self.snaps.len() {
            self.check_snap(k, "final")?;
        }
        let _ = self.features;
        for i in 0..self.imgs.len() {
            let h = self.imgs[i].h.take().expect("image open");
            let h2 = h.clone();
            let r = self.timed("final close", move || h2.close())?;
            self.timed("drop", move || drop(h))?;
            if let Err(e) = r {
                self.violation(
                    "image/unexpected-error",
                    format!("closing {} without faults failed: {e}", self.imgs[i].name),
                );
                return Err(Abort);
            }
        }
        Ok(())
    }
}

impl Drop for ImgSim {
    fn drop(&mut self) {
        if let Some(h) = self.offline.take() {
            let _ = h.join();
        }
        for i in &mut self.imgs {
            if let Some(h) = i.h.take() {
                abandon(h);
            }
        }
    }
}
