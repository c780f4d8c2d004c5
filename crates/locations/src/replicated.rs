//! [`Replicated`]: the store decorator that keeps an image's data objects at its locations.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use shale_clock::Clock;
use shale_error::{err, Error, ErrorKind, Result};
use shale_format::keys;
use shale_store::{ObjectMeta, ObjectStore, PutMode, Version};

use crate::record::{self, LocationRecord};
use crate::{Location, Mode, OnFailure, Options};

/// The image's data directories (relative to its prefix): these objects live at the locations.
pub const DATA_DIRS: [&str; 3] = ["seg/", "ckpt/", "snap/"];

/// Longest wait between two retries of a failed location.
const MAX_BACKOFF_FACTOR: u32 = 16;
/// Status records are written at most this often (and when the copier goes idle, and at close).
const PERSIST_EVERY: Duration = Duration::from_secs(1);

/// What a data object is, for ordering and trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Segment,
    Checkpoint,
    Snapshot,
}

/// Sequence order of a data object: segments by number; a checkpoint after the segments it
/// covers; snapshot checkpoints after the segments known when they were seen.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Obj {
    order: u64,
    kind: ObjectKind,
    key: String,
}

enum Next {
    Copy(Obj, usize),
    Resolve(Obj),
    Nothing,
}

#[derive(Debug, Clone, Default)]
struct ObjState {
    size: u64,
    /// Bit i: a correct copy is at location i.
    trusted: u64,
    /// Bit i: listed at location i (maybe a stale copy).
    present: u64,
    /// The image deleted it, but some location lacks it or an object before it: it stays
    /// (hidden from the image, still copied in order) until every location holds everything up
    /// to it, so that no location's copy stops being a prefix of the history.
    deleted: bool,
    /// Bit i (deleted objects only): location i is past it — it held the object and deleted
    /// it already — so it needs no copy.
    passed: u64,
}

impl ObjState {
    /// Bit i: location i needs nothing more of this object (an in-sync copy, or past it).
    fn held(&self) -> u64 {
        self.trusted | self.passed
    }
}

#[derive(Debug, Default, Clone)]
struct LocState {
    /// Failing now: the last error and when to try again.
    last_error: Option<String>,
    retry_at_ms: u64,
    failures: u32,
    /// Listing at open failed: trust nothing there until a rescan succeeds.
    unscanned: bool,
    bytes_written: u64,
    bytes_read: u64,
    objects_copied: u64,
    /// Deletes held back while the location is behind (its copy stays a prefix).
    pending_deletes: Vec<String>,
    /// Persisted record, its version, and whether ours changed since.
    rec: LocationRecord,
    ver: Option<Version>,
    /// A newer writer owns the record: stop writing it.
    superseded: bool,
    behind_since_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    objects: BTreeMap<Obj, ObjState>,
    locs: Vec<LocState>,
    stop: bool,
    last_persist_ms: u64,
    /// Highest segment number seen (for the watermark of a location that has everything).
    max_seg: u64,
}

#[derive(Debug)]
struct Inner {
    prefix: String,
    home: Arc<dyn ObjectStore>,
    locs: Vec<Location>,
    /// Location indexes, nearest first.
    order: Vec<usize>,
    opts: Options,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    wake: Condvar,
    /// The last `opts.history` decisions (puts, copies, deletes), for diagnosis.
    hist: Mutex<std::collections::VecDeque<String>>,
}

/// An image's data at its locations, as one [`ObjectStore`]. See the crate documentation.
#[derive(Debug)]
pub struct Replicated {
    inner: Arc<Inner>,
    copier: Mutex<Option<JoinHandle<()>>>,
    /// Stopped as by a crash: nothing more is written (no final status records).
    crashed: std::sync::atomic::AtomicBool,
}

/// Sync status of one location of an image (`shale location ls`).
#[derive(Debug, Clone, Serialize)]
pub struct LocationReport {
    pub name: String,
    pub mode: Mode,
    /// `ok`, `degraded` (behind: filling or catching up) or `error` (failing now).
    pub state: String,
    pub last_error: Option<String>,
    /// Unix ms of the next retry, when failing.
    pub retry_at_ms: Option<u64>,
    pub objects_in_sync: u64,
    pub bytes_in_sync: u64,
    pub objects_behind: u64,
    pub bytes_behind: u64,
    /// Seconds since the location fell behind (0 when in sync).
    pub lag_seconds: f64,
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// Objects the image deleted that this location still holds: deleted there once it is
    /// current and no other location needs them for its copy (they wait while one is behind).
    pub deletes_held: u64,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Bits 0..n set.
fn all_mask(n: usize) -> u64 {
    if n >= 64 {
        u64::MAX
    } else {
        (1u64 << n) - 1
    }
}

/// Keys whose deletes some location holds back: deleted objects of the image.
fn pending_union(st: &State) -> std::collections::HashSet<String> {
    st.locs
        .iter()
        .flat_map(|l| l.pending_deletes.iter().cloned())
        .collect()
}

impl Replicated {
    /// The data of the image under `prefix` at `locs` (at least one; at most 64), its
    /// metadata in `home`. Lists every location and loads its status record; a location that
    /// cannot be listed starts out failing (nothing trusted there) and is rescanned later.
    pub fn open(
        home: Arc<dyn ObjectStore>,
        prefix: &str,
        locs: Vec<Location>,
        opts: Options,
        clock: Arc<dyn Clock>,
    ) -> Result<Replicated> {
        if locs.is_empty() || locs.len() > 64 {
            return Err(err!(
                Invalid,
                "an image needs 1 to 64 data locations, got {}",
                locs.len()
            ));
        }
        for p in &opts.prefer {
            if !locs.iter().any(|l| &l.name == p) {
                tracing::debug!("location_preference names {p:?}, which this image does not use");
            }
        }
        let mut order: Vec<usize> = opts
            .prefer
            .iter()
            .filter_map(|p| locs.iter().position(|l| &l.name == p))
            .collect();
        order.dedup();
        for i in 0..locs.len() {
            if !order.contains(&i) {
                order.push(i);
            }
        }
        let inner = Arc::new(Inner {
            prefix: prefix.to_string(),
            home,
            order,
            opts,
            clock,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            hist: Default::default(),
            locs,
        });
        inner.scan_all()?;
        let r = Replicated {
            inner: inner.clone(),
            copier: Mutex::new(None),
            crashed: std::sync::atomic::AtomicBool::new(false),
        };
        if inner.opts.active {
            inner.persist(true);
            let i2 = inner.clone();
            let h = std::thread::Builder::new()
                .name("shale-resync".into())
                .spawn(move || i2.copier())
                .map_err(|e| Error::io("cannot start the resync thread", e))?;
            *r.copier.lock().unwrap_or_else(|p| p.into_inner()) = Some(h);
        }
        Ok(r)
    }

    /// Per-location sync status, in the image's order.
    pub fn report(&self) -> Vec<LocationReport> {
        self.inner.report()
    }

    /// Copy what `name` (every location when None) is missing, in sequence order, limited to
    /// the objects `wanted` selects, until done; `progress(done_bytes, total_bytes)`. Returns
    /// the bytes copied. Errors when a location stays unreachable.
    pub fn sync_now(
        &self,
        name: Option<&str>,
        wanted: &dyn Fn(ObjectKind, &str) -> bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64> {
        self.inner.sync_now(name, wanted, progress)
    }

    /// Objects whose only in-sync copy is at location `name` (or that have none at all):
    /// what removing it would lose.
    pub fn sole_copies(&self, name: &str) -> Result<Vec<String>> {
        let i = self
            .inner
            .locs
            .iter()
            .position(|l| l.name == name)
            .ok_or_else(|| err!(NotFound, "the image has no location {name:?}"))?;
        let st = lock(&self.inner.state);
        Ok(st
            .objects
            .iter()
            .filter(|(_, s)| !s.deleted && s.trusted & !(1u64 << i) == 0)
            .map(|(o, _)| o.key.clone())
            .collect())
    }

    /// Write the status records now.
    pub fn persist(&self) {
        self.inner.persist(true);
    }

    /// Stop as a crash would (tests and the simulator): the copier ends after its current
    /// object, and no final status records are written.
    pub fn crash(&self) {
        self.crashed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.close();
    }

    /// Stop the copier and write the status records.
    pub fn close(&self) {
        {
            let mut st = lock(&self.inner.state);
            st.stop = true;
        }
        self.inner.wake.notify_all();
        if let Some(h) = self.copier.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = h.join();
        }
        if self.inner.opts.active && !self.crashed.load(std::sync::atomic::Ordering::SeqCst) {
            self.inner.persist(true);
        }
    }

    /// The last decisions taken (puts and their targets, copies, deletes held back or done,
    /// status records), oldest first, when [`Options::history`] keeps them.
    pub fn history(&self) -> Vec<String> {
        self.inner
            .hist
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Location names in the image's order.
    pub fn names(&self) -> Vec<String> {
        self.inner.locs.iter().map(|l| l.name.clone()).collect()
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        self.close();
    }
}

/// A data object's kind and order, or None for a metadata key.
fn classify(prefix: &str, key: &str) -> Option<(ObjectKind, u64)> {
    let rel = key.strip_prefix(prefix)?;
    if let Some(seq) = keys::parse_seg(prefix, key) {
        return Some((ObjectKind::Segment, seq));
    }
    if rel.starts_with("ckpt/") {
        // `ckpt/<epoch>-<next_seq>` and its copies: after segment next_seq - 1.
        let n = keys::parse_ckpt(prefix, key)
            .map(|(_, n)| n.saturating_sub(1))
            .or_else(|| {
                let base = key.rsplit_once('.').map(|(b, _)| b)?;
                keys::parse_ckpt(prefix, base).map(|(_, n)| n.saturating_sub(1))
            })
            .unwrap_or(0);
        return Some((ObjectKind::Checkpoint, n));
    }
    if rel.starts_with("snap/") {
        return Some((ObjectKind::Snapshot, u64::MAX));
    }
    None
}

impl Inner {
    /// Record a decision in the history (when it is kept).
    fn ev(&self, what: impl FnOnce() -> String) {
        if self.opts.history == 0 {
            return;
        }
        let line = format!(
            "{} [{}] {}",
            self.now_ms(),
            std::thread::current().name().unwrap_or("-"),
            what()
        );
        let mut h = self.hist.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() >= self.opts.history {
            h.pop_front();
        }
        h.push_back(line);
    }

    fn now_ms(&self) -> u64 {
        self.clock.unix_ms()
    }

    fn is_data(&self, key: &str) -> bool {
        classify(&self.prefix, key).is_some()
    }

    fn obj(&self, key: &str) -> Option<Obj> {
        let (kind, order) = classify(&self.prefix, key)?;
        Some(Obj {
            order,
            kind,
            key: key.to_string(),
        })
    }

    /// Is segment `seq` a fenced writer's number (never copied nor trusted by number)?
    fn past_fence(&self, seq: u64) -> bool {
        self.opts.fence.is_some_and(|(_, start)| seq >= start)
    }

    /// List every location and load the records.
    fn scan_all(&self) -> Result<()> {
        let n = self.locs.len();
        let mut recs = Vec::with_capacity(n);
        for l in &self.locs {
            recs.push(record::load(self.home.as_ref(), &self.prefix, &l.name)?);
        }
        let mut listings = Vec::with_capacity(n);
        for l in &self.locs {
            listings.push(self.list_data(l.store.as_ref()));
        }
        let now = self.now_ms();
        let mut st = lock(&self.state);
        st.locs = vec![LocState::default(); n];
        for (i, rec) in recs.into_iter().enumerate() {
            if let Some((r, v)) = rec {
                st.locs[i].pending_deletes = r.pending_deletes.clone();
                st.locs[i].rec = r;
                st.locs[i].ver = Some(v);
            }
            // A new writer's fence: what a fenced writer left past it is verified again.
            let ls = &mut st.locs[i];
            if ls.rec.epoch < self.opts.epoch {
                if let Some((_, start)) = self.opts.fence {
                    ls.rec.trusted_below = ls.rec.trusted_below.min(start);
                }
            }
        }
        let mut ok = 0;
        // Deletes held back somewhere: deleted objects of the image, wherever they still are.
        let gone = pending_union(&st);
        for (i, listing) in listings.into_iter().enumerate() {
            match listing {
                Ok(objs) => {
                    ok += 1;
                    let below = st.locs[i].rec.trusted_below;
                    self.ev(|| {
                        format!(
                            "scan {}: {} objects, trusted below {below}, deletes held {:?}",
                            self.locs[i].name,
                            objs.len(),
                            st.locs[i].pending_deletes
                        )
                    });
                    for m in objs {
                        let Some(o) = self.obj(&m.key) else { continue };
                        let deleted = gone.contains(&m.key);
                        if deleted && !st.locs[i].pending_deletes.contains(&m.key) {
                            st.locs[i].pending_deletes.push(m.key.clone());
                        }
                        let trusted = match o.kind {
                            ObjectKind::Segment => o.order < below && !self.past_fence(o.order),
                            _ => true,
                        };
                        if o.kind == ObjectKind::Segment {
                            st.max_seg = st.max_seg.max(o.order);
                        }
                        let e = st.objects.entry(o).or_default();
                        e.present |= 1 << i;
                        e.deleted |= deleted;
                        if trusted {
                            e.trusted |= 1 << i;
                            e.size = m.size;
                        } else if e.size == 0 {
                            e.size = m.size;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        "location {}: cannot list {}: {e}",
                        self.locs[i].name,
                        self.prefix
                    );
                    let ls = &mut st.locs[i];
                    ls.unscanned = true;
                    ls.last_error = Some(e.to_string());
                    ls.retry_at_ms = now;
                    ls.failures = 1;
                }
            }
        }
        if ok == 0 {
            return Err(err!(
                Io,
                "no location of {} can be reached ({})",
                self.prefix,
                self.locs
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        for i in 0..n {
            self.mark_passed(&mut st, i);
        }
        drop(st);
        // Objects nobody trusts yet (every copy past its watermark): the newest writer's copy.
        let untrusted: Vec<Obj> = lock(&self.state)
            .objects
            .iter()
            .filter(|(_, s)| s.trusted == 0)
            .map(|(o, _)| o.clone())
            .collect();
        for o in untrusted {
            if let Err(e) = self.resolve(&o) {
                tracing::warn!("{}: cannot decide which copy is current: {e}", o.key);
            }
        }
        let mut st = lock(&self.state);
        self.retire(&mut st);
        for i in 0..n {
            if self.behind(&st, i) && st.locs[i].behind_since_ms == 0 {
                st.locs[i].behind_since_ms = if st.locs[i].rec.behind_since_ms != 0 {
                    st.locs[i].rec.behind_since_ms
                } else {
                    now
                };
            }
        }
        Ok(())
    }

    fn list_data(&self, store: &dyn ObjectStore) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        for d in DATA_DIRS {
            out.extend(store.list(&format!("{}{d}", self.prefix))?);
        }
        Ok(out)
    }

    /// Decide which copies of an object nobody trusts are current: for a segment, the copy of
    /// the newest epoch (a fenced writer's is older); other objects are written once. Ok(false)
    /// when no location has it any more (it is forgotten); an error when the copies cannot be
    /// read now.
    fn resolve(&self, o: &Obj) -> Result<bool> {
        let present = lock(&self.state)
            .objects
            .get(o)
            .map(|s| s.present)
            .unwrap_or(0);
        let mut best: Option<(u64, usize, u64)> = None; // (epoch, loc, size)
        let mut found = Vec::new();
        let mut unreadable = None;
        for &i in &self.order {
            if present & (1 << i) == 0 {
                continue;
            }
            let store = &self.locs[i].store;
            let r = match o.kind {
                ObjectKind::Segment => segment_epoch(store.as_ref(), &o.key),
                _ => store.get(&o.key).map(|(b, _)| (0, b.len() as u64)),
            };
            let (epoch, size) = match r {
                Ok(x) => x,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => {
                    self.fail(i, &e);
                    unreadable.get_or_insert(e);
                    continue;
                }
            };
            found.push((i, epoch));
            if best.is_none_or(|(be, _, _)| epoch > be) {
                best = Some((epoch, i, size));
            }
        }
        self.ev(|| format!("resolve {}: (location, epoch) {found:?}", o.key));
        let Some((be, _, size)) = best else {
            // Unreadable now, which decides nothing; or gone everywhere it was listed — then
            // forgotten, unless a copy was found or made meanwhile (a put or a discovery
            // racing with this one: the entry is current again).
            if let Some(e) = unreadable {
                return Err(e);
            }
            let mut st = lock(&self.state);
            return Ok(match st.objects.get(o) {
                Some(s) if s.trusted == 0 && s.present & !present == 0 => {
                    st.objects.remove(o);
                    false
                }
                Some(_) => true,
                None => false,
            });
        };
        let mut st = lock(&self.state);
        if let Some(s) = st.objects.get_mut(o) {
            // Every copy of the newest epoch (equal by construction: a writer creates a number
            // once per epoch) is current; older ones stay untrusted and are replaced.
            for (i, e) in found {
                if e == be {
                    s.trusted |= 1 << i;
                }
            }
            s.size = size;
        }
        Ok(true)
    }

    /// Location i lacks an in-sync copy of some object.
    fn behind(&self, st: &State, i: usize) -> bool {
        st.locs[i].unscanned || st.objects.values().any(|s| s.held() & (1 << i) == 0)
    }

    /// Every location holds an in-sync copy of every object ordered up to `o` (inclusive):
    /// no location's copy needs `o` any more to stay a prefix.
    fn held_everywhere(&self, st: &State, o: &Obj) -> bool {
        let all = all_mask(self.locs.len());
        !st.locs.iter().any(|l| l.unscanned)
            && st
                .objects
                .range(..=o.clone())
                .all(|(_, s)| s.held() & all == all)
    }

    /// Deleted objects location i does not hold (after a listing): it is past those whose
    /// deletes it does not hold back and that lie below its watermark (it had them — a copy is
    /// sent in order — and deleted them); the others it still lacks, and is sent.
    fn mark_passed(&self, st: &mut State, i: usize) {
        if st.locs[i].unscanned {
            return;
        }
        let below = st.locs[i].rec.trusted_below;
        let ls = &st.locs[i];
        let passed: Vec<Obj> = st
            .objects
            .iter()
            .filter(|(o, s)| {
                s.deleted
                    && s.present & (1 << i) == 0
                    && o.order < below
                    && !ls.pending_deletes.contains(&o.key)
            })
            .map(|(o, _)| o.clone())
            .collect();
        for o in passed {
            if let Some(s) = st.objects.get_mut(&o) {
                s.passed |= 1 << i;
            }
        }
    }

    /// Forget deleted objects every location holds everything up to: what is left of them is
    /// in the locations' held-back deletes, done once each location is current.
    fn retire(&self, st: &mut State) {
        if st.locs.iter().any(|l| l.unscanned) {
            return;
        }
        let all = all_mask(self.locs.len());
        let mut done = Vec::new();
        for (o, s) in &st.objects {
            if s.held() & all != all {
                break;
            }
            if s.deleted {
                done.push(o.clone());
            }
        }
        for o in done {
            st.objects.remove(&o);
        }
    }

    /// Location i holds in-sync copies of every object ordered before `o`.
    fn current_before(&self, st: &State, i: usize, o: &Obj) -> bool {
        !st.locs[i].unscanned
            && st
                .objects
                .range(..o.clone())
                .all(|(_, s)| s.held() & (1 << i) != 0 || s.trusted == 0)
    }

    fn failing(&self, st: &State, i: usize) -> bool {
        st.locs[i].last_error.is_some() && self.now_ms() < st.locs[i].retry_at_ms
    }

    fn fail(&self, i: usize, e: &Error) {
        let mut st = lock(&self.state);
        let now = self.now_ms();
        let ls = &mut st.locs[i];
        // One more failure per retry (calls failing meanwhile do not lengthen the wait).
        if now >= ls.retry_at_ms || ls.failures == 0 {
            ls.failures = ls.failures.saturating_add(1);
        }
        let factor = 1u32 << (ls.failures.clamp(1, 6) - 1);
        let wait = self.opts.retry * factor.min(MAX_BACKOFF_FACTOR);
        ls.retry_at_ms = now + wait.as_millis() as u64;
        if ls.last_error.is_none() {
            tracing::warn!(
                "location {} failed: {e}; degraded, retrying in {:?}",
                self.locs[i].name,
                wait
            );
        }
        ls.last_error = Some(e.to_string());
        if ls.behind_since_ms == 0 {
            ls.behind_since_ms = now;
        }
    }

    fn succeed(&self, st: &mut State, i: usize) {
        let ls = &mut st.locs[i];
        if ls.last_error.is_some() {
            tracing::info!("location {} is reachable again", self.locs[i].name);
        }
        ls.last_error = None;
        ls.failures = 0;
        ls.retry_at_ms = 0;
    }

    // ---- the write path

    fn put_data(&self, o: Obj, data: Bytes, mode: PutMode) -> Result<Version> {
        let now = self.now_ms();
        self.undelete(&o)?;
        // Inline targets: sync locations that are current (hold everything ordered before
        // this object) and not failing. If there are none: the current locations of any mode
        // that are not failing; then the current ones even if failing (retried). A location
        // that is behind never receives an object out of order (its copy stays a prefix of
        // the history): with no current location reachable the put fails, as a single store's
        // would, and the engine keeps the data (journal, memory) and retries.
        let targets: Vec<usize> = {
            let st = lock(&self.state);
            let current: Vec<usize> = self
                .order
                .iter()
                .copied()
                .filter(|&i| self.current_before(&st, i, &o))
                .collect();
            let sync: Vec<usize> = current
                .iter()
                .copied()
                .filter(|&i| {
                    self.locs[i].mode == Mode::Sync
                        && (!self.failing(&st, i) || self.opts.on_failure == OnFailure::Block)
                })
                .collect();
            if !sync.is_empty() {
                sync
            } else {
                let up: Vec<usize> = current
                    .iter()
                    .copied()
                    .filter(|&i| !self.failing(&st, i))
                    .collect();
                if up.is_empty() {
                    current
                } else {
                    up
                }
            }
        };
        let targets = if targets.is_empty() {
            // Nobody holds everything before this object (after failures): bring one location
            // up to date in order first, then it takes the object.
            vec![self.catch_up_for(&o).ok_or_else(|| {
                err!(
                    Unavailable,
                    "{}: no location holding the image's history so far can be reached",
                    o.key
                )
            })?]
        } else {
            targets
        };
        self.ev(|| format!("put {} targets {:?}", o.key, targets));
        let results: Vec<(usize, Result<Version>)> = if targets.len() == 1 {
            let i = targets[0];
            vec![(i, self.put_one(i, &o, &data, &mode))]
        } else {
            std::thread::scope(|s| {
                let hs: Vec<_> = targets
                    .iter()
                    .map(|&i| {
                        let (o, data, mode) = (&o, &data, &mode);
                        (i, s.spawn(move || self.put_one(i, o, data, mode)))
                    })
                    .collect();
                hs.into_iter()
                    .map(|(i, h)| {
                        (
                            i,
                            h.join()
                                .unwrap_or_else(|_| Err(err!(Io, "location put panicked"))),
                        )
                    })
                    .collect()
            })
        };
        let mut version = None;
        let mut exists = None;
        let mut taken = 0u64;
        let mut error = None;
        let mut done = 0u64;
        for (i, r) in results {
            match r {
                Ok(v) => {
                    done |= 1 << i;
                    version.get_or_insert(v);
                }
                // The number is taken at an in-sync location: the store's answer, as one store
                // would give it (the engine handles a number already taken). What the other
                // locations took is not trusted: the copier checks it against the winner.
                Err(e) if e.kind() == ErrorKind::Exists => {
                    taken |= 1 << i;
                    exists.get_or_insert(e);
                }
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        self.ev(|| {
            format!(
                "put {}: took {done:b}, exists {taken:b}, error {:?}",
                o.key,
                error.as_ref().map(|e| e.to_string())
            )
        });
        if let Some(e) = exists {
            let mut st = lock(&self.state);
            let s = st.objects.entry(o).or_default();
            s.present |= done | taken;
            drop(st);
            self.wake.notify_all();
            return Err(e);
        }
        let res = match (version, error) {
            (Some(v), _) => Ok(v),
            (None, Some(e)) => Err(e),
            (None, None) => Err(err!(Io, "no location took {}", o.key)),
        };
        if done != 0 {
            let mut st = lock(&self.state);
            // A number written again (a fenced writer's, or after a delete): copies elsewhere
            // are stale now, and no held-back delete may remove the new one.
            for ls in st.locs.iter_mut() {
                ls.pending_deletes.retain(|k| k != &o.key);
            }
            if o.kind == ObjectKind::Segment {
                st.max_seg = st.max_seg.max(o.order);
            }
            let s = st.objects.entry(o).or_default();
            s.trusted = done;
            s.present |= done;
            s.deleted = false;
            s.size = data.len() as u64;
            for i in 0..self.locs.len() {
                if done & (1 << i) == 0 && st.locs[i].behind_since_ms == 0 {
                    st.locs[i].behind_since_ms = now;
                }
            }
        }
        self.wake.notify_all();
        res
    }

    /// A key the image deleted is written again (a fenced writer's segment number, taken over):
    /// the records must stop calling it deleted before the new copy exists, or a restart would
    /// hide it. Fails (Unavailable, the engine retries) when they cannot be written.
    fn undelete(&self, o: &Obj) -> Result<()> {
        let had: Vec<usize> = {
            let mut st = lock(&self.state);
            let had: Vec<usize> = (0..self.locs.len())
                .filter(|&i| st.locs[i].pending_deletes.contains(&o.key))
                .collect();
            if had.is_empty() {
                return Ok(());
            }
            for &i in &had {
                st.locs[i].pending_deletes.retain(|k| k != &o.key);
            }
            // Until the put lands, the old copies are neither the image's nor to be copied.
            st.objects.remove(o);
            had
        };
        if !self.opts.active {
            return Ok(());
        }
        let written = self.persist_records(true);
        let mut st = lock(&self.state);
        let missing: Vec<&str> = (0..self.locs.len())
            .filter(|i| !st.locs[*i].superseded && !written.contains(i))
            .map(|i| self.locs[i].name.as_str())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            // Still deleted as far as the records go: so in memory too, until a retry.
            for &i in &had {
                st.locs[i].pending_deletes.push(o.key.clone());
            }
            Err(err!(
                Unavailable,
                "{}: written again after a delete, but the status records of {} cannot be \
                 updated (home store unreachable?); retrying",
                o.key,
                missing.join(", ")
            ))
        }
    }

    /// One location's put, with the failure policy. `Exists` at a location other than the
    /// first target means a stale copy there (or ours from an earlier attempt): replaced.
    fn put_one(&self, i: usize, o: &Obj, data: &Bytes, mode: &PutMode) -> Result<Version> {
        let store = &self.locs[i].store;
        loop {
            let r = store.put(&o.key, data.clone(), mode.clone());
            match r {
                Ok(v) => {
                    let mut st = lock(&self.state);
                    self.succeed(&mut st, i);
                    st.locs[i].bytes_written += data.len() as u64;
                    return Ok(v);
                }
                Err(e) if e.kind() == ErrorKind::Exists => {
                    let mut st = lock(&self.state);
                    self.succeed(&mut st, i);
                    return Err(e);
                }
                Err(e) => {
                    self.fail(i, &e);
                    if self.opts.on_failure == OnFailure::Block
                        && self.locs[i].mode == Mode::Sync
                        && !lock(&self.state).stop
                    {
                        let wait = {
                            let st = lock(&self.state);
                            st.locs[i].retry_at_ms.saturating_sub(self.now_ms())
                        };
                        self.clock.sleep(Duration::from_millis(wait.max(10)));
                        continue;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Copy, in order, what one location lacks of the objects ordered before `o` (the nearest
    /// location that can be made current); its index, or None when none can.
    fn catch_up_for(&self, o: &Obj) -> Option<usize> {
        for &i in &self.order {
            let missing: Vec<(Obj, usize)> = {
                let st = lock(&self.state);
                if st.locs[i].unscanned || self.failing(&st, i) {
                    continue;
                }
                let mut v = Vec::new();
                let mut ok = true;
                for (x, s) in st.objects.range(..o.clone()) {
                    if s.held() & (1 << i) != 0 || s.trusted == 0 {
                        continue;
                    }
                    match self
                        .order
                        .iter()
                        .copied()
                        .find(|&j| s.trusted & (1 << j) != 0 && !self.failing(&st, j))
                    {
                        Some(src) => v.push((x.clone(), src)),
                        None => {
                            ok = false;
                            break;
                        }
                    }
                }
                if !ok {
                    continue;
                }
                v
            };
            if missing
                .iter()
                .all(|(x, src)| match self.copy_one(i, x, *src) {
                    Ok(_) => true,
                    Err(e) => {
                        self.fail(i, &e);
                        false
                    }
                })
            {
                return Some(i);
            }
        }
        None
    }

    fn delete_data(&self, o: Obj) -> Result<()> {
        let (now_targets, later): (Vec<usize>, Vec<usize>) = {
            let mut st = lock(&self.state);
            let needed =
                self.opts.active && st.objects.contains_key(&o) && !self.held_everywhere(&st, &o);
            match st.objects.get_mut(&o) {
                // A location lacks it (or an object before it): it is still a source for
                // that location's copy, so every location holds the delete back until
                // `retire` (a location deleting it first would leave a gap in that copy).
                Some(s) if needed => {
                    s.deleted = true;
                    (Vec::new(), (0..self.locs.len()).collect())
                }
                _ => {
                    st.objects.remove(&o);
                    (0..self.locs.len()).partition(|&i| !self.behind(&st, i) || !self.opts.active)
                }
            }
        };
        self.ev(|| format!("delete {} now {:?} later {:?}", o.key, now_targets, later));
        if !later.is_empty() {
            {
                let mut st = lock(&self.state);
                for &i in &later {
                    if !st.locs[i].pending_deletes.contains(&o.key) {
                        st.locs[i].pending_deletes.push(o.key.clone());
                    }
                }
            }
            // Recorded, so that a restart does not take the copy for an object of the image.
            // Held back even when the record cannot be written now (it is retried): deleting
            // at a location that is behind would break its copy's prefix; a restart in between
            // at worst sees a dead object (an older checkpoint, a segment below it), which
            // recovery ignores and GC deletes again.
            let _ = self.persist_records(true);
        }
        let mut errors = 0;
        let mut last = None;
        for &i in &now_targets {
            if let Err(e) = self.locs[i].store.delete(&o.key) {
                self.fail(i, &e);
                lock(&self.state).locs[i]
                    .pending_deletes
                    .push(o.key.clone());
                errors += 1;
                last = Some(e);
            }
        }
        if errors > 0 {
            // The record says it is gone there, so a restart does not take it for an object
            // of the image.
            let _ = self.persist_records(true);
        }
        match last {
            Some(e) if errors == now_targets.len() && later.is_empty() => Err(e),
            _ => Ok(()),
        }
    }

    // ---- the read path

    /// Locations to read `o` from, nearest first: those with an in-sync copy.
    fn readers(&self, o: &Obj) -> Vec<usize> {
        let st = lock(&self.state);
        let Some(s) = st.objects.get(o) else {
            return Vec::new();
        };
        if s.deleted {
            return Vec::new();
        }
        let mut v: Vec<usize> = self
            .order
            .iter()
            .copied()
            .filter(|&i| s.trusted & (1 << i) != 0)
            .collect();
        // Failing locations last.
        v.sort_by_key(|&i| self.failing(&st, i));
        v
    }

    /// An object this process has not seen (written by another process since): find it.
    fn discover(&self, o: &Obj) -> Result<()> {
        {
            let st = lock(&self.state);
            let deleted = st.objects.get(o).is_some_and(|s| s.deleted)
                || st.locs.iter().any(|l| l.pending_deletes.contains(&o.key));
            if deleted {
                return Err(err!(NotFound, "object {} was deleted", o.key));
            }
        }
        let mut present = 0u64;
        let mut size = 0;
        for &i in &self.order {
            match self.locs[i].store.list(&o.key) {
                Ok(v) => {
                    if let Some(m) = v.iter().find(|m| m.key == o.key) {
                        present |= 1 << i;
                        size = size.max(m.size);
                    }
                }
                Err(e) => self.fail(i, &e),
            }
        }
        self.ev(|| format!("discover {} present {present:b}", o.key));
        if present == 0 {
            return Err(err!(NotFound, "object {} not found at any location", o.key));
        }
        {
            let mut st = lock(&self.state);
            let s = st.objects.entry(o.clone()).or_default();
            s.present |= present;
            s.size = s.size.max(size);
            if o.kind != ObjectKind::Segment {
                s.trusted |= present;
            }
        }
        if o.kind == ObjectKind::Segment {
            self.resolve(o)?;
        }
        self.wake.notify_all();
        Ok(())
    }

    fn read<T>(
        &self,
        key: &str,
        f: impl Fn(&dyn ObjectStore) -> Result<T>,
        len: impl Fn(&T) -> u64,
    ) -> Result<T> {
        let Some(o) = self.obj(key) else {
            return f(self.home.as_ref());
        };
        let mut readers = self.readers(&o);
        if readers.is_empty() {
            self.discover(&o)?;
            readers = self.readers(&o);
        }
        let mut first_err: Option<Error> = None;
        for i in readers {
            match f(self.locs[i].store.as_ref()) {
                Ok(v) => {
                    let mut st = lock(&self.state);
                    st.locs[i].bytes_read += len(&v);
                    return Ok(v);
                }
                Err(e) => {
                    if e.kind() == ErrorKind::NotFound {
                        // Gone there (deleted by another process): not in sync any more.
                        let mut st = lock(&self.state);
                        if let Some(s) = st.objects.get_mut(&o) {
                            s.trusted &= !(1 << i);
                            s.present &= !(1 << i);
                        }
                        drop(st);
                        self.ev(|| format!("read {key} at {}: not found", self.locs[i].name));
                    } else {
                        self.fail(i, &e);
                        tracing::warn!(
                            "reading {key} from location {}: {e}; trying another copy",
                            self.locs[i].name
                        );
                    }
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| err!(NotFound, "object {key} has no in-sync copy")))
    }

    // ---- the copier

    /// The next object location i should receive: the first (in order) it lacks, with a source.
    fn next_missing(&self, st: &State, i: usize) -> Next {
        for (o, s) in &st.objects {
            if s.held() & (1 << i) != 0 {
                continue;
            }
            if s.trusted == 0 {
                // No known-good copy (yet): decide first; nothing after it is sent before, or
                // the location's copy would stop being a prefix.
                return Next::Resolve(o.clone());
            }
            return match self
                .order
                .iter()
                .copied()
                .find(|&j| s.trusted & (1 << j) != 0 && !self.failing(st, j))
            {
                Some(src) => Next::Copy(o.clone(), src),
                None => Next::Nothing,
            };
        }
        Next::Nothing
    }

    /// Copy (or verify) one object to location i from location src; an object gone from the
    /// source meanwhile is no longer trusted there and copies nothing (Ok(0)).
    fn copy_one(&self, i: usize, o: &Obj, src: usize) -> Result<u64> {
        let (data, _) = match self.locs[src].store.get(&o.key) {
            Ok(x) => x,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.ev(|| format!("copy {} from {src}: not found", o.key));
                // Deleted at the source meanwhile: forget that copy; nothing to send.
                let mut st = lock(&self.state);
                if let Some(s) = st.objects.get_mut(o) {
                    s.trusted &= !(1 << src);
                }
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        lock(&self.state).locs[src].bytes_read += data.len() as u64;
        let dst = &self.locs[i].store;
        // Already there and equal (an earlier copy, or a crash after the put): just trust it.
        let same = match dst.get(&o.key) {
            Ok((b, _)) => b == data,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if !same {
            if let Err(e) = dst.put(&o.key, data.clone(), PutMode::Overwrite) {
                self.ev(|| format!("copy {} to {i} from {src}: {e}", o.key));
                return Err(e);
            }
        }
        self.ev(|| format!("copy {} to {i} from {src} (already there: {same})", o.key));
        let mut st = lock(&self.state);
        self.succeed(&mut st, i);
        st.locs[i].bytes_written += if same { 0 } else { data.len() as u64 };
        st.locs[i].objects_copied += 1;
        let live = match st.objects.get_mut(o) {
            Some(s) => {
                // Unless it was rewritten meanwhile (then `trusted` was reset).
                if s.trusted & (1 << src) != 0 {
                    s.trusted |= 1 << i;
                    s.present |= 1 << i;
                }
                !s.deleted
            }
            // Deleted and let go meanwhile: what was just put there is garbage.
            None => false,
        };
        // A deleted object copied for the prefix is deleted there too, later.
        let pending = &mut st.locs[i].pending_deletes;
        if live {
            pending.retain(|k| k != &o.key);
        } else if !pending.contains(&o.key) {
            pending.push(o.key.clone());
        }
        Ok(data.len() as u64)
    }

    /// Deletes held back at location i, once it is current: those of objects no location
    /// needs any more (deleted objects still in the map are a source for another location).
    fn flush_deletes(&self, i: usize) {
        let keys: Vec<String> = {
            let mut st = lock(&self.state);
            self.retire(&mut st);
            if self.behind(&st, i) || self.failing(&st, i) {
                return;
            }
            let mut keep = Vec::new();
            let mut go = Vec::new();
            for k in std::mem::take(&mut st.locs[i].pending_deletes) {
                match self
                    .obj(&k)
                    .and_then(|o| st.objects.get(&o))
                    .map(|s| s.deleted)
                {
                    // Still a source for a location that lacks it.
                    Some(true) => keep.push(k),
                    // Written again since: an object of the image, not to be deleted.
                    Some(false) => {}
                    None => go.push(k),
                }
            }
            st.locs[i].pending_deletes = keep;
            go
        };
        if !keys.is_empty() {
            self.ev(|| format!("deletes at {i}: {keys:?}"));
        }
        for (n, k) in keys.iter().enumerate() {
            if let Err(e) = self.locs[i].store.delete(k) {
                self.fail(i, &e);
                lock(&self.state).locs[i]
                    .pending_deletes
                    .extend(keys[n..].iter().cloned());
                return;
            }
        }
    }

    fn rescan(&self, i: usize) -> Result<()> {
        let objs = self.list_data(self.locs[i].store.as_ref())?;
        let mut st = lock(&self.state);
        let below = st.locs[i].rec.trusted_below;
        let gone = pending_union(&st);
        for m in objs {
            let Some(o) = self.obj(&m.key) else { continue };
            let known = st.objects.get(&o).map(|s| s.deleted);
            if known == Some(true) || (known.is_none() && gone.contains(&m.key)) {
                // Deleted by the image: deleted here too once nobody needs it.
                if !st.locs[i].pending_deletes.contains(&m.key) {
                    st.locs[i].pending_deletes.push(m.key.clone());
                }
                if known.is_none() {
                    continue;
                }
            }
            let seg = o.kind == ObjectKind::Segment;
            let trusted = !seg || (o.order < below && !self.past_fence(o.order));
            let e = st.objects.entry(o).or_insert_with(|| ObjState {
                size: m.size,
                ..ObjState::default()
            });
            e.present |= 1 << i;
            if trusted && (e.trusted != 0 || !seg) {
                e.trusted |= 1 << i;
            }
        }
        st.locs[i].unscanned = false;
        self.mark_passed(&mut st, i);
        self.succeed(&mut st, i);
        Ok(())
    }

    /// Sleep for the rate limit: `bytes` just copied at `resync_rate` bytes/s.
    fn pace(&self, bytes: u64) {
        if self.opts.resync_rate > 0 {
            let secs = bytes as f64 / self.opts.resync_rate as f64;
            self.clock.sleep(Duration::from_secs_f64(secs));
        }
    }

    /// One step of the copier for location i: Ok(Some(bytes)) when it copied an object.
    fn step(&self, i: usize) -> Result<Option<u64>> {
        let (unscanned, failing) = {
            let st = lock(&self.state);
            (st.locs[i].unscanned, self.failing(&st, i))
        };
        if failing {
            return Ok(None);
        }
        if unscanned {
            self.rescan(i)?;
        }
        let next = {
            let st = lock(&self.state);
            self.next_missing(&st, i)
        };
        let (o, src) = match next {
            Next::Copy(o, src) => (o, src),
            Next::Resolve(o) => {
                // Only the newest writer's copy becomes a source: a fenced writer's never is.
                if !self.resolve(&o)? {
                    // No copy left anywhere (deleted meanwhile): forgotten.
                    self.ev(|| format!("forget {}", o.key));
                }
                return Ok(Some(0));
            }
            Next::Nothing => {
                self.flush_deletes(i);
                let mut st = lock(&self.state);
                if !self.behind(&st, i) {
                    st.locs[i].behind_since_ms = 0;
                }
                return Ok(None);
            }
        };
        match self.copy_one(i, &o, src) {
            Ok(n) => Ok(Some(n)),
            Err(e) => {
                // Which side failed? Blame the destination unless the source is unreadable.
                self.fail(i, &e);
                Err(e)
            }
        }
    }

    fn copier(self: Arc<Self>) {
        loop {
            if lock(&self.state).stop {
                return;
            }
            let mut worked = false;
            for i in 0..self.locs.len() {
                match self.step(i) {
                    Ok(Some(n)) => {
                        worked = true;
                        self.pace(n);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!("resync to {}: {e}", self.locs[i].name),
                }
                if lock(&self.state).stop {
                    return;
                }
            }
            self.persist(!worked);
            if !worked {
                let st = lock(&self.state);
                if st.stop {
                    return;
                }
                let _ = self
                    .wake
                    .wait_timeout(st, Duration::from_millis(200))
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    fn sync_now(
        &self,
        name: Option<&str>,
        wanted: &dyn Fn(ObjectKind, &str) -> bool,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64> {
        let targets: Vec<usize> = match name {
            Some(n) => vec![self
                .locs
                .iter()
                .position(|l| l.name == n)
                .ok_or_else(|| err!(NotFound, "the image has no location {n:?}"))?],
            None => (0..self.locs.len()).collect(),
        };
        for &i in &targets {
            let unscanned = lock(&self.state).locs[i].unscanned;
            if unscanned {
                self.rescan(i)
                    .map_err(|e| e.context(format!("location {}", self.locs[i].name)))?;
            }
        }
        let total: u64 = {
            let st = lock(&self.state);
            st.objects
                .iter()
                .filter(|(o, _)| wanted(o.kind, &o.key))
                .map(|(_, s)| {
                    targets
                        .iter()
                        .filter(|&&i| s.held() & (1 << i) == 0)
                        .count() as u64
                        * s.size
                })
                .sum()
        };
        let mut done = 0;
        progress(0, total);
        for &i in &targets {
            loop {
                let next = {
                    let st = lock(&self.state);
                    st.objects
                        .iter()
                        .filter(|(o, s)| s.held() & (1 << i) == 0 && wanted(o.kind, &o.key))
                        .map(|(o, s)| (o.clone(), s.trusted))
                        .next()
                };
                let Some((o, trusted)) = next else { break };
                if trusted == 0 {
                    // No good copy anywhere yet: decide, or give up on it.
                    if !self.resolve(&o)? {
                        return Err(err!(Io, "{}: no location holds a copy to sync from", o.key));
                    }
                    continue;
                }
                let src = self
                    .order
                    .iter()
                    .copied()
                    .find(|&j| trusted & (1 << j) != 0)
                    .expect("trusted somewhere");
                match self.copy_one(i, &o, src) {
                    Ok(n) => {
                        done += n;
                        progress(done.min(total), total);
                        self.pace(n);
                    }
                    Err(e) => {
                        self.fail(i, &e);
                        let _ = self.persist_records(true);
                        return Err(e.context(format!(
                            "syncing {} to location {}",
                            o.key, self.locs[i].name
                        )));
                    }
                }
            }
            self.flush_deletes(i);
            let mut st = lock(&self.state);
            if !self.behind(&st, i) {
                st.locs[i].behind_since_ms = 0;
            }
        }
        let _ = self.persist_records(true);
        Ok(done)
    }

    // ---- status records

    /// Location i's watermark: below the first segment it lacks (or past every segment).
    fn watermark(&self, st: &State, i: usize) -> u64 {
        if st.locs[i].unscanned {
            return st.locs[i].rec.trusted_below;
        }
        st.objects
            .iter()
            .filter(|(o, _)| o.kind == ObjectKind::Segment)
            .find(|(_, s)| s.held() & (1 << i) == 0)
            .map(|(o, _)| o.order)
            .unwrap_or(st.max_seg + 1)
    }

    fn persist(&self, force: bool) {
        if self.opts.active {
            let _ = self.persist_records(force);
        }
    }

    /// Write the records whose content changed (rate-limited unless `force`).
    /// Returns the locations whose record now says what this process knows.
    fn persist_records(&self, force: bool) -> Vec<usize> {
        let now = self.now_ms();
        let mut current = Vec::new();
        let todo: Vec<(usize, LocationRecord, Option<Version>)> = {
            let mut st = lock(&self.state);
            if !force && now < st.last_persist_ms + PERSIST_EVERY.as_millis() as u64 {
                return current;
            }
            st.last_persist_ms = now;
            (0..self.locs.len())
                .filter(|&i| !st.locs[i].superseded)
                .filter_map(|i| {
                    let behind = self.behind(&st, i);
                    let ls = &st.locs[i];
                    let state = if ls.last_error.is_some() {
                        "error"
                    } else if behind {
                        "degraded"
                    } else {
                        "ok"
                    };
                    let r = LocationRecord {
                        trusted_below: self.watermark(&st, i),
                        epoch: self.opts.epoch.max(ls.rec.epoch),
                        state: state.into(),
                        last_error: ls.last_error.clone(),
                        retry_at_ms: if ls.last_error.is_some() {
                            ls.retry_at_ms
                        } else {
                            0
                        },
                        behind_since_ms: if behind { ls.behind_since_ms.max(1) } else { 0 },
                        bytes_written: ls.bytes_written,
                        bytes_read: ls.bytes_read,
                        updated_ms: ls.rec.updated_ms,
                        pending_deletes: ls.pending_deletes.clone(),
                    };
                    let changed = LocationRecord {
                        updated_ms: 0,
                        ..r.clone()
                    } != LocationRecord {
                        updated_ms: 0,
                        ..ls.rec.clone()
                    } || ls.ver.is_none();
                    if !changed {
                        current.push(i);
                    }
                    changed.then(|| {
                        (
                            i,
                            LocationRecord {
                                updated_ms: now,
                                ..r
                            },
                            ls.ver.clone(),
                        )
                    })
                })
                .collect()
        };
        for (i, r, ver) in todo {
            let name = &self.locs[i].name;
            match record::store(self.home.as_ref(), &self.prefix, name, &r, ver) {
                Ok(v) => {
                    self.ev(|| {
                        format!(
                            "record {i}: trusted below {}, deletes held {:?}",
                            r.trusted_below, r.pending_deletes
                        )
                    });
                    let mut st = lock(&self.state);
                    st.locs[i].rec = r;
                    st.locs[i].ver = Some(v);
                    current.push(i);
                }
                Err(e) if e.kind() == ErrorKind::Busy => {
                    // Someone else wrote it: a newer writer supersedes us; the same epoch
                    // (`shale sync` beside the writer) merges on the next round.
                    match record::load(self.home.as_ref(), &self.prefix, name) {
                        Ok(Some((theirs, v))) => {
                            let mut st = lock(&self.state);
                            if theirs.epoch > self.opts.epoch {
                                st.locs[i].superseded = true;
                            } else {
                                st.locs[i].rec = LocationRecord {
                                    // Not ours to lower below what they saw in sync unless
                                    // we know better: keep the lower (safe) value.
                                    trusted_below: theirs.trusted_below.min(r.trusted_below),
                                    ..theirs
                                };
                                st.locs[i].ver = Some(v);
                            }
                        }
                        Ok(None) => lock(&self.state).locs[i].ver = None,
                        Err(e) => tracing::debug!("reloading location record {name}: {e}"),
                    }
                }
                Err(e) => tracing::debug!("writing location record {name}: {e}"),
            }
        }
        current
    }

    fn report(&self) -> Vec<LocationReport> {
        let st = lock(&self.state);
        let now = self.now_ms();
        (0..self.locs.len())
            .map(|i| {
                let ls = &st.locs[i];
                let (mut oi, mut bi, mut ob, mut bb) = (0, 0, 0, 0);
                for s in st.objects.values() {
                    if s.held() & (1 << i) != 0 {
                        if !s.deleted {
                            oi += 1;
                            bi += s.size;
                        }
                    } else {
                        ob += 1;
                        bb += s.size;
                    }
                }
                // This process's view, or the record a writer elsewhere keeps.
                let err = ls.last_error.clone().or_else(|| ls.rec.last_error.clone());
                let behind = ob > 0 || ls.unscanned;
                let since = if ls.behind_since_ms != 0 {
                    ls.behind_since_ms
                } else {
                    ls.rec.behind_since_ms
                };
                let state = if err.is_some() && (ls.last_error.is_some() || behind) {
                    "error"
                } else if behind {
                    "degraded"
                } else {
                    "ok"
                };
                LocationReport {
                    name: self.locs[i].name.clone(),
                    mode: self.locs[i].mode,
                    state: state.into(),
                    last_error: if state == "ok" { None } else { err },
                    retry_at_ms: (state == "error")
                        .then_some(ls.retry_at_ms.max(ls.rec.retry_at_ms))
                        .filter(|&t| t > 0),
                    objects_in_sync: oi,
                    bytes_in_sync: bi,
                    objects_behind: ob,
                    bytes_behind: bb,
                    lag_seconds: if behind && since > 0 {
                        now.saturating_sub(since) as f64 / 1000.0
                    } else {
                        0.0
                    },
                    bytes_written: ls.bytes_written.max(ls.rec.bytes_written),
                    bytes_read: ls.bytes_read.max(ls.rec.bytes_read),
                    deletes_held: ls.pending_deletes.len() as u64,
                }
            })
            .collect()
    }
}

/// A segment's epoch and object size, from its header.
fn segment_epoch(store: &dyn ObjectStore, key: &str) -> Result<(u64, u64)> {
    let first = store.get_range(key, 0..64 * 1024)?;
    let hl = shale_format::segment::header_len(&first).map_err(|e| e.context(key))?;
    let buf = if hl as usize <= first.len() {
        first
    } else {
        store.get_range(key, 0..hl)?
    };
    let h = shale_format::segment::decode_header(&buf).map_err(|e| e.context(key))?;
    Ok((h.epoch, h.header_len + h.data_len))
}

impl ObjectStore for Replicated {
    fn get(&self, key: &str) -> Result<(Bytes, Version)> {
        self.inner
            .read(key, |s| s.get(key), |(b, _)| b.len() as u64)
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes> {
        self.inner
            .read(key, |s| s.get_range(key, range.clone()), |b| b.len() as u64)
    }

    fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<Version> {
        match self.inner.obj(key) {
            Some(o) => self.inner.put_data(o, data, mode),
            None => self.inner.home.put(key, data, mode),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        match self.inner.obj(key) {
            Some(o) => self.inner.delete_data(o),
            None => self.inner.home.delete(key),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let inner = &self.inner;
        // Metadata from home (its data objects only when home is a data location).
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for m in inner.home.list(prefix)? {
            if !inner.is_data(&m.key) {
                out.insert(m.key, m.size);
            }
        }
        // Data: the union of what the locations hold (a copy anywhere is a real object; its
        // in-sync status decides where it is read from).
        let touches_data = DATA_DIRS.iter().any(|d| {
            let dir = format!("{}{d}", inner.prefix);
            dir.starts_with(prefix) || prefix.starts_with(&dir)
        });
        if touches_data {
            let mut ok = 0;
            let mut last = None;
            for (i, l) in inner.locs.iter().enumerate() {
                match l.store.list(prefix) {
                    Ok(v) => {
                        ok += 1;
                        for m in v {
                            if inner.is_data(&m.key) {
                                let e = out.entry(m.key).or_insert(0);
                                *e = (*e).max(m.size);
                            }
                        }
                    }
                    Err(e) => {
                        inner.fail(i, &e);
                        last = Some(e);
                    }
                }
            }
            if ok == 0 {
                return Err(last.unwrap_or_else(|| err!(Io, "no location can be listed")));
            }
            // Deleted objects the locations still hold (held back for a copy's prefix) are
            // gone for the image.
            let st = lock(&inner.state);
            let mut hidden = pending_union(&st);
            hidden.extend(
                st.objects
                    .iter()
                    .filter(|(_, s)| s.deleted)
                    .map(|(o, _)| o.key.clone()),
            );
            drop(st);
            out.retain(|k, _| !hidden.contains(k));
        }
        Ok(out
            .into_iter()
            .map(|(key, size)| ObjectMeta { key, size })
            .collect())
    }

    fn url(&self) -> String {
        format!(
            "{} (locations: {})",
            self.inner.home.url(),
            self.names().join(", ")
        )
    }
}
