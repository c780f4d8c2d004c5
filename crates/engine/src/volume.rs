//! `Volume`: the open handle on one image's log — shared state, the submit API, flush,
//! resize and close. The committer (commit.rs) and the upload workers (upload.rs) do the work.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use shale_error::{err, Error, Result};
use shale_extmap::{ExtentMap, Target};
use shale_format::segment::{Entry, JournalMark};
use shale_format::SECTOR;
use shale_journal::{LogDevice, LogStats};
use shale_store::ObjectStore;

use crate::config::{Durability, EngineConfig, LogConfig};
use crate::read::SegIndexCache;
use crate::upload::Job;

/// Completion of a submitted request. Called exactly once, from an engine thread (or the
/// submitting thread when the request is refused up front).
pub type Done = Box<dyn FnOnce(Result<()>) + Send + 'static>;

/// A sealed segment that may not be in the store yet.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub seq: u64,
    pub entries: Vec<Entry>,
    pub data: crate::segdata::SegData,
    pub mark: JournalMark,
    /// A checkpoint to write once this segment is durable.
    pub checkpoint: Option<Vec<(u64, u64, Target)>>,
}

#[derive(Debug)]
pub(crate) struct OpenSeg {
    pub seq: u64,
    pub entries: Vec<Entry>,
    pub data: crate::segdata::SegData,
    /// Number of the last log record applied to this segment.
    pub jseq: u64,
}

/// Counters, for `info`, metrics and the benchmarks.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub segments_written: u64,
    pub bytes_to_store: u64,
    pub checkpoints_written: u64,
    pub extents: usize,
    pub map_bytes: usize,
    pub store_reads: u64,
    /// Sealed segments not yet stored (write-back lag), and their bytes.
    pub pending_segments: usize,
    pub pending_bytes: u64,
    /// Times writers waited for memory (sealed segments backed up).
    pub room_waits: u64,
    pub gc: crate::gc::GcReport,
    pub log: LogStats,
    pub cache: shale_cache::CacheStats,
}

pub(crate) enum Req {
    Write {
        off: u64,
        data: Vec<u8>,
    },
    Zero {
        off: u64,
        len: u64,
        trim: bool,
    },
    Flush,
    Seal,
    /// Seal and store a checkpoint of the map under `key` (None: as the newest regular
    /// checkpoint); the segment number goes to `out`.
    Snapshot {
        key: Option<String>,
        out: Arc<Mutex<Option<u64>>>,
    },
    /// Garbage collection: write these sectors again, each only where the map still points at
    /// (seg, off) — a client write that came in meanwhile wins.
    Relocate {
        items: Vec<Relocation>,
    },
}

/// One run of sectors to move out of a segment.
pub(crate) struct Relocation {
    pub lba: u64,
    pub seg: u64,
    pub off: u32,
    /// A view of the victim's data as GC read it (not copied on the way to the record).
    pub data: bytes::Bytes,
}

/// A clone's parent: reads of never-written sectors below `overlap` bytes come from `vol`
/// (a read-only view of the parent image at a snapshot).
#[derive(Debug, Clone)]
pub struct Parent {
    pub vol: Arc<Volume>,
    pub overlap: u64,
}

pub(crate) struct Pending {
    pub req: Req,
    pub done: Done,
}

#[derive(Default)]
pub(crate) struct Queue {
    pub reqs: VecDeque<Pending>,
    pub stop: bool,
}

pub(crate) struct Inner {
    pub map: ExtentMap,
    pub size: u64,
    pub open: OpenSeg,
    /// Sealed and not yet stored, by seq.
    pub pending: BTreeMap<u64, Arc<Sealed>>,
    /// Every segment ≤ durable is stored.
    pub durable: u64,
    /// Stored segments above `durable` (uploads finish out of order), with their jseq.
    pub stored_ahead: BTreeMap<u64, u64>,
    /// Flushes waiting for `durable` to reach a segment.
    pub durable_waiters: Vec<(u64, Done)>,
    /// The first fatal failure; the volume refuses further work.
    pub failed: Option<String>,
    /// Another writer took the image over: every further write fails with `Fenced`.
    pub fenced: bool,
    /// When the open segment got its first record.
    pub open_since: Option<std::time::Instant>,
    pub segs_since_ckpt: u64,
    /// Snapshot and regular checkpoints captured but not yet stored (GC waits for them: they
    /// may name segments it is about to delete).
    pub maps_in_flight: usize,
    pub closing: bool,
    pub stats: Stats,
}

impl Inner {
    /// State of a freshly opened log: an empty open segment numbered `open_seq`, every segment
    /// up to `durable` stored.
    fn new(
        map: ExtentMap,
        size: u64,
        open_seq: u64,
        durable: u64,
        jseq: u64,
        segs_since_ckpt: u64,
    ) -> Inner {
        Inner {
            map,
            size,
            open: OpenSeg {
                seq: open_seq,
                entries: Vec::new(),
                data: Default::default(),
                jseq,
            },
            pending: BTreeMap::new(),
            durable,
            stored_ahead: Default::default(),
            durable_waiters: Vec::new(),
            failed: None,
            fenced: false,
            open_since: None,
            segs_since_ckpt,
            maps_in_flight: 0,
            closing: false,
            stats: Stats::default(),
        }
    }
}

pub(crate) struct Shared {
    pub store: Arc<dyn ObjectStore>,
    /// The store for segment and checkpoint uploads: `store` behind a retry decorator —
    /// forever while a log device holds the data (until the volume fails or is fenced),
    /// `upload_attempts` times otherwise.
    pub uploads: Arc<dyn ObjectStore>,
    /// `<pool>/images/<id>/`
    pub prefix: String,
    pub cfg: EngineConfig,
    pub epoch: u64,
    pub read_only: bool,
    pub log: Arc<dyn LogDevice>,
    pub inner: Mutex<Inner>,
    /// Signalled when `durable` advances, a failure is recorded or pending shrinks.
    pub progress: Condvar,
    pub queue: Mutex<Queue>,
    pub queue_cv: Condvar,
    /// Held by whoever writes log records and changes the open segment: the committer
    /// while it works through requests, or a submitter committing its own write
    /// (`commit::write_now`). Taken before `queue` when both are held.
    pub commit_lock: Mutex<()>,
    pub index_cache: SegIndexCache,
    pub jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    pub parent: std::sync::RwLock<Option<Parent>>,
    /// Held shared by every read from planning to copying, and exclusively by GC while it
    /// deletes segments: a read planned before a relocation still finds its segment.
    pub gc_guard: std::sync::RwLock<()>,
    /// One garbage collection at a time (explicit, background and automatic runs): a run that
    /// listed segments another run then deleted would fail on them.
    pub gc_one: Mutex<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Volume({}{})", self.store.url(), self.prefix)
    }
}

/// An open image log. All methods take `&self` and may be called from many threads.
#[derive(Debug)]
pub struct Volume {
    pub(crate) sh: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

pub(crate) fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock leaves the map in an unknown state only for the panicking
    // operation; the data structures themselves stay valid, so continue.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A completion that can never be lost: if the engine drops it without answering (a thread
/// died while it held the request), the caller still hears back, with `Io`.
pub(crate) fn guarded(done: Done) -> Done {
    struct Guard(Option<Done>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some(d) = self.0.take() {
                d(Err(err!(
                    Io,
                    "the image's engine thread stopped before answering this request"
                )));
            }
        }
    }
    let mut g = Guard(Some(done));
    Box::new(move |r| {
        if let Some(d) = g.0.take() {
            d(r)
        }
    })
}

/// Turn a panic payload into a message.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A one-shot completion a caller can wait for.
fn waiter() -> (Done, std::sync::mpsc::Receiver<Result<()>>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    (
        Box::new(move |r| {
            let _ = tx.send(r);
        }),
        rx,
    )
}

fn wait(rx: std::sync::mpsc::Receiver<Result<()>>) -> Result<()> {
    rx.recv()
        .unwrap_or_else(|_| Err(err!(Io, "the image's committer thread is gone")))
}

impl Volume {
    /// Open (recover) the log under `prefix`. `size` is the image size in bytes.
    pub fn open(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        size: u64,
        epoch: u64,
        cfg: EngineConfig,
        read_only: bool,
    ) -> Result<Volume> {
        if !(EngineConfig::MIN_SEGMENT_SIZE..=EngineConfig::MAX_SEGMENT_SIZE)
            .contains(&cfg.segment_size)
        {
            return Err(err!(
                Invalid,
                "segment_size {} is out of range {}..={} bytes",
                cfg.segment_size,
                EngineConfig::MIN_SEGMENT_SIZE,
                EngineConfig::MAX_SEGMENT_SIZE
            ));
        }
        let mut rec = crate::recovery::recover(
            store.as_ref(),
            prefix,
            epoch,
            read_only,
            cfg.fence,
            cfg.clock.as_ref(),
        )?;
        let (log, replay): (Arc<dyn LogDevice>, Vec<Vec<u8>>) = match (&cfg.log, read_only) {
            // A reader shows what a writer that stopped uncleanly left staged, from memory.
            (LogConfig::InPlace(staging), true) => (
                Arc::new(shale_journal::MemoryLog::default()),
                crate::recovery::finish_staged(
                    store.as_ref(),
                    prefix,
                    staging.0.as_ref(),
                    epoch,
                    &cfg,
                    &mut rec,
                    false,
                )?,
            ),
            (_, true) | (LogConfig::Memory, _) => {
                (Arc::new(shale_journal::MemoryLog::default()), Vec::new())
            }
            (LogConfig::Ring { place, size, owner }, false) => {
                let env = shale_journal::RingEnv {
                    full_wait: cfg.full_wait,
                    clock: cfg.clock.clone(),
                    fresh_id: cfg.entropy.next_u64() | 1,
                };
                let name = place.0.name();
                let (j, recs) = shale_journal::RingJournal::open_file(
                    place.0.open()?,
                    std::path::Path::new(&name),
                    *size,
                    *owner,
                    rec.mark,
                    env,
                )?;
                if rec.mark.journal_id == j.id() {
                    j.release(rec.mark.jseq);
                }
                (Arc::new(j), recs.into_iter().map(|r| r.bytes).collect())
            }
            (LogConfig::InPlace(staging), false) => {
                crate::recovery::finish_staged(
                    store.as_ref(),
                    prefix,
                    staging.0.as_ref(),
                    epoch,
                    &cfg,
                    &mut rec,
                    true,
                )?;
                let id = cfg.entropy.next_u64() | 1;
                (
                    Arc::new(
                        shale_journal::InPlaceLog::new(
                            id,
                            1,
                            cfg.header_reserve,
                            staging.0.clone(),
                            epoch,
                        )
                        .with_pieces(cfg.record_pieces),
                    ),
                    Vec::new(),
                )
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        // The open segment's journal mark names records of *this* log device: a new device
        // (another id) has applied none yet. Carrying the old device's number over would make
        // a checkpoint claim records of the new device it does not hold, and recovery would
        // then skip them.
        let jseq = if log.id() == rec.mark.journal_id {
            rec.mark.jseq
        } else {
            0
        };
        let attempts = if matches!(cfg.log, LogConfig::Memory) {
            shale_store::Attempts::Limit(cfg.upload_attempts.max(1))
        } else {
            shale_store::Attempts::Forever
        };
        let sh = Arc::new_cyclic(|me: &std::sync::Weak<Shared>| {
            let me = me.clone();
            let uploads: Arc<dyn ObjectStore> = Arc::new(
                shale_store::RetryStore::new(store.clone(), attempts, cfg.clock.clone())
                    .cancelled_when(move || {
                        // Asked between attempts only, never with the state lock held.
                        me.upgrade()
                            .is_none_or(|sh| lock(&sh.inner).failed.is_some())
                    }),
            );
            Shared {
                store,
                uploads,
                prefix: prefix.to_string(),
                epoch,
                read_only,
                log,
                inner: Mutex::new(Inner::new(
                    rec.map,
                    size,
                    rec.next_seq,
                    rec.next_seq - 1,
                    jseq,
                    rec.segs_replayed,
                )),
                progress: Condvar::new(),
                queue: Mutex::new(Queue::default()),
                queue_cv: Condvar::new(),
                commit_lock: Mutex::new(()),
                index_cache: SegIndexCache::new(1024),
                jobs: Mutex::new(tx),
                parent: std::sync::RwLock::new(None),
                gc_guard: std::sync::RwLock::new(()),
                gc_one: Mutex::new(()),
                cfg,
            }
        });
        // Records the log kept for us go back into the open segment before anything new.
        // The upload workers start after this: segments sealed here wait in the job queue
        // (their records stay in the journal until stored), so open does not share the
        // machine with storing them — it returns once the map is whole.
        for r in replay {
            crate::commit::apply_record(&sh, r)?;
        }
        let mut threads = if read_only {
            Vec::new()
        } else {
            crate::upload::spawn_workers(&sh, rx)?
        };
        if !read_only {
            threads.push(crate::commit::spawn(&sh)?);
            if sh.cfg.gc_threshold > 0.0 {
                threads.push(crate::gc::spawn(
                    &sh,
                    sh.cfg.gc_threshold,
                    sh.cfg.gc_every.max(1),
                )?);
            }
        }
        Ok(Volume {
            sh,
            threads: Mutex::new(threads),
        })
    }

    /// A read-only view of the log as of the snapshot checkpoint stored under `key` (relative
    /// to `prefix`), `size` bytes long.
    pub fn open_snapshot(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        key: &str,
        size: u64,
        cfg: EngineConfig,
    ) -> Result<Volume> {
        let map = crate::recovery::load_checkpoint_map(store.as_ref(), &format!("{prefix}{key}"))?;
        let (tx, _rx) = std::sync::mpsc::channel();
        let sh = Arc::new(Shared {
            uploads: store.clone(),
            store,
            prefix: prefix.to_string(),
            epoch: 0,
            read_only: true,
            log: Arc::new(shale_journal::MemoryLog::default()),
            // No open segment a read could hit, nothing to upload.
            inner: Mutex::new(Inner::new(map, size, u64::MAX, 0, 0, 0)),
            progress: Condvar::new(),
            queue: Mutex::new(Queue::default()),
            queue_cv: Condvar::new(),
            commit_lock: Mutex::new(()),
            index_cache: SegIndexCache::new(256),
            jobs: Mutex::new(tx),
            parent: std::sync::RwLock::new(None),
            gc_guard: std::sync::RwLock::new(()),
            gc_one: Mutex::new(()),
            cfg,
        });
        Ok(Volume {
            sh,
            threads: Mutex::new(Vec::new()),
        })
    }

    /// Closed (by `close`, or swapped out by the image layer).
    pub fn is_closed(&self) -> bool {
        lock(&self.sh.inner).closing
    }

    /// Refuse every further write with `Fenced` (the exclusive lock was lost). Writes not yet
    /// in the store are dropped with it: a fenced writer's data must never become visible.
    pub fn fence(&self) {
        let mut g = lock(&self.sh.inner);
        g.fenced = true;
        if g.failed.is_none() {
            g.failed = Some("fenced: another client took the image over".into());
        }
        drop(g);
        self.sh.progress.notify_all();
    }

    /// Set or clear the parent that never-written sectors read through to.
    pub fn set_parent(&self, parent: Option<Parent>) {
        *self.sh.parent.write().unwrap_or_else(|p| p.into_inner()) = parent;
    }

    /// The parent overlap in bytes (0 without a parent).
    pub fn parent_overlap(&self) -> u64 {
        self.sh
            .parent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|p| p.overlap)
            .unwrap_or(0)
    }

    /// Lower the parent overlap (a shrink cuts the clone off from the parent past the end).
    pub fn cap_parent_overlap(&self, max: u64) {
        if let Some(p) = self
            .sh
            .parent
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            p.overlap = p.overlap.min(max);
        }
    }

    /// Seal, and store a checkpoint of the whole map under `key` (relative to the prefix) once
    /// the segments it covers are durable. Returns the last segment number it covers. Cost:
    /// one pass over the map in memory; no data is copied.
    pub fn snapshot(&self, key: &str) -> Result<u64> {
        let out = Arc::new(Mutex::new(None));
        let (d, rx) = waiter();
        self.submit(
            Req::Snapshot {
                key: Some(key.to_string()),
                out: out.clone(),
            },
            None,
            d,
        );
        wait(rx)?;
        let seq = *out.lock().unwrap_or_else(|p| p.into_inner());
        seq.ok_or_else(|| err!(Io, "snapshot was not taken"))
    }

    /// Ranges of [lba, lba+n) (sectors) whose content differs from the snapshot checkpoint
    /// `since` (relative key), or that hold data when `since` is None: (lba, len, exists) with
    /// `exists` false where the range now reads as zeros. Never-written ranges (holes) are not
    /// reported; the caller resolves them against a parent.
    pub fn diff(&self, since: Option<&str>, lba: u64, n: u64) -> Result<Vec<(u64, u64, bool)>> {
        let old = match since {
            Some(k) => Some(crate::recovery::load_checkpoint_map(
                self.sh.store.as_ref(),
                &format!("{}{k}", self.sh.prefix),
            )?),
            None => None,
        };
        let cur = lock(&self.sh.inner).map.lookup(lba, n);
        let mut out: Vec<(u64, u64, bool)> = Vec::new();
        let mut push = |a: u64, len: u64, exists: bool| match out.last_mut() {
            Some(l) if l.0 + l.1 == a && l.2 == exists => l.1 += len,
            _ => out.push((a, len, exists)),
        };
        match old {
            None => {
                for m in cur {
                    if let Some(Target::Data { .. }) = m.target {
                        push(m.lba, m.len, true);
                    }
                }
            }
            Some(old) => {
                let prev = old.lookup(lba, n);
                let (mut i, mut j) = (0, 0);
                let mut at = lba;
                while i < cur.len() && j < prev.len() {
                    let (c, p) = (cur[i], prev[j]);
                    let end = (c.lba + c.len).min(p.lba + p.len);
                    let ct = c.target.map(|t| shift(t, at - c.lba));
                    let pt = p.target.map(|t| shift(t, at - p.lba));
                    let zero = |t: Option<Target>| !matches!(t, Some(Target::Data { .. }));
                    if ct != pt && !(zero(ct) && zero(pt)) {
                        push(at, end - at, !zero(ct));
                    }
                    at = end;
                    if c.lba + c.len == end {
                        i += 1;
                    }
                    if p.lba + p.len == end {
                        j += 1;
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn size(&self) -> u64 {
        lock(&self.sh.inner).size
    }

    /// Collect garbage now: relocate the live data of segments less than `threshold` live,
    /// then delete what no map needs.
    pub fn gc(&self, threshold: f64) -> Result<crate::gc::GcReport> {
        crate::gc::run(&self.sh, threshold, None)
    }

    pub fn stats(&self) -> Stats {
        let mut s = {
            let g = lock(&self.sh.inner);
            let mut s = g.stats.clone();
            s.extents = g.map.len();
            s.map_bytes = g.map.mem_bytes();
            s.pending_segments = g.pending.len();
            s.pending_bytes = g.pending.values().map(|p| p.data.len() as u64).sum();
            s
        };
        s.log = self.sh.log.stats();
        s.cache = self
            .sh
            .cfg
            .cache
            .as_ref()
            .map(|(c, _)| c.stats())
            .unwrap_or_default();
        s
    }

    /// Sectors of [lba, lba+n) that hold data, for sparse export: returns (lba, len) runs.
    pub fn allocated(&self, lba: u64, n: u64) -> Vec<(u64, u64)> {
        let g = lock(&self.sh.inner);
        let mut out: Vec<(u64, u64)> = Vec::new();
        g.map.for_each_in(lba, n, |m| {
            if let Some(Target::Data { .. }) = m.target {
                match out.last_mut() {
                    Some(last) if last.0 + last.1 == m.lba => last.1 += m.len,
                    _ => out.push((m.lba, m.len)),
                }
            }
        });
        out
    }

    /// Runs of [lba, lba+n) that read as data (for block-status queries): this log's data
    /// and, below a clone's parent overlap where this log wrote nothing, what the parent chain
    /// holds as data. Zeros this log wrote over the parent stay holes.
    pub fn allocated_deep(&self, lba: u64, n: u64) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        let mut gaps: Vec<(u64, u64)> = Vec::new();
        {
            let g = lock(&self.sh.inner);
            g.map.for_each_in(lba, n, |m| match m.target {
                Some(Target::Data { .. }) => out.push((m.lba, m.len)),
                None => gaps.push((m.lba, m.len)),
                _ => {}
            });
        }
        let parent = self
            .sh
            .parent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(p) = parent {
            let top = p.overlap.div_ceil(SECTOR);
            for (s, l) in gaps {
                let e = (s + l).min(top);
                if s < e {
                    out.extend(p.vol.allocated_deep(s, e - s));
                }
            }
            out.sort_unstable();
        }
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(out.len());
        for (s, l) in out {
            match merged.last_mut() {
                Some(last) if last.0 + last.1 == s => last.1 += l,
                _ => merged.push((s, l)),
            }
        }
        merged
    }

    /// Segment numbers that hold the newest data of sectors [lba, lba+n) (replication syncs
    /// a range by its segments; data still in the open segment has none yet).
    pub fn segments_of(&self, lba: u64, n: u64) -> std::collections::BTreeSet<u64> {
        let g = lock(&self.sh.inner);
        let mut out = std::collections::BTreeSet::new();
        g.map.for_each_in(lba, n, |m| {
            if let Some(Target::Data { seg, .. }) = m.target {
                out.insert(seg);
            }
        });
        out
    }

    /// Runs of [lba, lba+n) that this log has written (data or zeros) — everything else reads
    /// through to a parent, if any.
    pub fn written(&self, lba: u64, n: u64) -> Vec<(u64, u64)> {
        let g = lock(&self.sh.inner);
        let mut out: Vec<(u64, u64)> = Vec::new();
        g.map.for_each_in(lba, n, |m| {
            if m.target.is_some() {
                match out.last_mut() {
                    Some(last) if last.0 + last.1 == m.lba => last.1 += m.len,
                    _ => out.push((m.lba, m.len)),
                }
            }
        });
        out
    }

    fn refuse(&self, g: &Inner) -> Result<()> {
        self.sh.refuse(g)
    }

    pub(crate) fn check_range(size: u64, off: u64, len: u64) -> Result<()> {
        match off.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(err!(
                Invalid,
                "I/O at {off}+{len} is past the end of the image ({size} bytes)"
            )),
        }
    }

    fn submit(&self, req: Req, range: Option<(u64, u64)>, done: Done) {
        self.sh.submit(req, range, done, false)
    }

    /// Write `data` at byte `off` (any alignment); `done` runs once it is acknowledged.
    pub fn submit_write(&self, off: u64, data: Vec<u8>, done: Done) {
        let len = data.len() as u64;
        self.submit(Req::Write { off, data }, Some((off, len)), done)
    }

    /// [`submit_write`](Self::submit_write) from a submitter with nothing else in flight on
    /// this image: when the committer is idle, the write is committed on this thread before
    /// this returns (and `done` runs here), which saves two thread hand-offs at queue depth 1.
    /// Writes that may be in flight together go through `submit_write`, so that they share
    /// records. The hint only costs batching when wrong: order and safety are the same either
    /// way (a write is committed here only when nothing is queued before it).
    pub fn submit_write_alone(&self, off: u64, data: Vec<u8>, done: Done) {
        let len = data.len() as u64;
        self.sh
            .submit(Req::Write { off, data }, Some((off, len)), done, true)
    }

    /// Make [off, off+len) read as zeros (discard and write-zeroes).
    pub fn submit_zero(&self, off: u64, len: u64, done: Done) {
        self.submit(
            Req::Zero {
                off,
                len,
                trim: false,
            },
            Some((off, len)),
            done,
        )
    }

    /// `done` runs once every write acknowledged before this call is durable (on the log
    /// device, or in the store with `durability = backend` or without a log device).
    pub fn submit_flush(&self, done: Done) {
        if self.sh.read_only {
            return done(Ok(()));
        }
        self.submit(Req::Flush, None, done)
    }

    /// [`submit_flush`](Self::submit_flush) from a submitter with nothing else in flight: with
    /// `durability = journal` and the committer idle, the log is synced on this thread.
    pub fn submit_flush_alone(&self, done: Done) {
        if self.sh.read_only {
            return done(Ok(()));
        }
        self.sh.submit(Req::Flush, None, done, true)
    }

    pub fn write(&self, off: u64, data: &[u8]) -> Result<()> {
        let (d, rx) = waiter();
        self.submit_write_alone(off, data.to_vec(), d);
        wait(rx)
    }

    pub fn write_zeroes(&self, off: u64, len: u64) -> Result<()> {
        let (d, rx) = waiter();
        self.submit_zero(off, len, d);
        wait(rx)
    }

    pub fn flush(&self) -> Result<()> {
        let (d, rx) = waiter();
        self.submit_flush_alone(d);
        wait(rx)
    }

    /// Seal the open segment and wait until everything written so far is in the store.
    pub fn flush_to_store(&self) -> Result<()> {
        self.sh.flush_to_store()
    }

    /// Change the image size. Shrinking trims everything past the new end (durably, in the
    /// store, before returning), so that growing again later reads zeros there.
    pub fn resize(&self, new_size: u64) -> Result<()> {
        let old = {
            let mut g = lock(&self.sh.inner);
            self.refuse(&g)?;
            let old = g.size;
            // Shrink first: writes checked from now on see the new end.
            g.size = g.size.min(new_size);
            old
        };
        if new_size < old {
            let (d, rx) = waiter();
            // The range is past the new size: submit without the range check.
            self.submit(
                Req::Zero {
                    off: new_size,
                    len: old - new_size,
                    trim: true,
                },
                None,
                d,
            );
            wait(rx)?;
            self.flush_to_store()?;
        }
        lock(&self.sh.inner).size = new_size;
        Ok(())
    }

    /// Store everything, then stop the committer and the upload workers.
    ///
    /// The final seal is queued as the last request, atomically with refusing new ones: a
    /// write that races with close is either in the final segment or fails — never
    /// acknowledged and dropped. Waiting for the store is bounded by `close_wait`: past it,
    /// with a journal the unstored segments stay in the journal (kept; the next open on this
    /// host stores them) and close succeeds with a warning; without one, close fails.
    pub fn close(&self) -> Result<()> {
        let res = self.stop_queue().and_then(|target| {
            if self.sh.read_only {
                return Ok(());
            }
            let deadline = self.sh.cfg.clock.now() + self.sh.cfg.close_wait;
            self.sh.wait_durable(target, Some(deadline))
        });
        let mut detach = false;
        let res = match res {
            Err(e) if e.kind() == shale_error::ErrorKind::TimedOut => {
                let kept = !matches!(self.sh.cfg.log, LogConfig::Memory);
                let mut g = lock(&self.sh.inner);
                let n = g.pending.len();
                if g.failed.is_none() {
                    g.failed = Some("closed while the store was unreachable".into());
                }
                drop(g);
                self.sh.progress.notify_all();
                detach = true;
                if kept {
                    tracing::warn!(
                        "{:?}: closing with {n} segment(s) not yet in the store ({e}); they stay \
                         in the journal and are stored by the next open on this host",
                        self.sh
                    );
                    Ok(())
                } else {
                    Err(err!(
                        Unavailable,
                        "closing: {n} segment(s) of unflushed writes could not be stored: {e}"
                    ))
                }
            }
            Err(e) => Err(e),
            Ok(()) => {
                // Everything is in the store: the journal holds nothing more, and its absence
                // tells the next opener that this writer stopped cleanly.
                if let LogConfig::Ring { place, .. } = &self.sh.cfg.log {
                    if !self.sh.read_only {
                        if let Err(e) = place.0.remove() {
                            tracing::warn!("{e}");
                        }
                    }
                }
                Ok(())
            }
        };
        lock(&self.sh.inner).closing = true;
        self.sh.progress.notify_all();
        let tx = self.sh.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for _ in 0..self.sh.cfg.upload_threads.max(1) {
            let _ = tx.send(Job::Stop);
        }
        drop(tx);
        // Workers stuck in a store call that never answers are left to finish on their own
        // (they store nothing more: the volume is marked failed).
        if !detach {
            for t in threads {
                let _ = t.join();
            }
        }
        res
    }

    /// Queue a final seal and refuse every later request; wait for the seal. Returns the
    /// last segment number the store must reach.
    fn stop_queue(&self) -> Result<u64> {
        let (d, rx) = waiter();
        {
            let mut q = self.sh.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.stop {
                return Ok(lock(&self.sh.inner).open.seq.saturating_sub(1));
            }
            q.reqs.push_back(Pending {
                req: Req::Seal,
                done: guarded(d),
            });
            q.stop = true;
        }
        self.sh.queue_cv.notify_all();
        if self.sh.read_only {
            // No committer: nothing was written, nothing to seal.
            let mut q = self.sh.queue.lock().unwrap_or_else(|p| p.into_inner());
            for p in q.reqs.drain(..) {
                (p.done)(Ok(()));
            }
        }
        wait(rx)?;
        Ok(lock(&self.sh.inner).open.seq.saturating_sub(1))
    }

    /// Stop like a killed process would: no final seal or flush; queued requests fail, the
    /// open segment is dropped, uploads already handed to workers may or may not finish.
    /// For crash tests.
    #[doc(hidden)]
    pub fn crash(self) {
        {
            let mut q = self.sh.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.stop = true;
            for p in q.reqs.drain(..) {
                (p.done)(Err(err!(Io, "crashed")));
            }
        }
        self.sh.queue_cv.notify_all();
        {
            let mut g = lock(&self.sh.inner);
            g.closing = true;
            g.failed = Some("crashed".into());
        }
        self.sh.progress.notify_all();
        let tx = self.sh.jobs.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..self.sh.cfg.upload_threads.max(1) {
            let _ = tx.send(Job::Stop);
        }
        drop(tx);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }

    /// Byte range check for reads: how many bytes of `len` at `off` are inside the image.
    pub(crate) fn clamp(&self, off: u64, len: u64) -> Result<u64> {
        let size = self.size();
        if off > size {
            return Err(err!(
                Invalid,
                "read at {off} is past the end of the image ({size} bytes)"
            ));
        }
        Ok(len.min(size - off))
    }

    /// Sector size helper for callers.
    pub const SECTOR: u64 = SECTOR;
}

impl Drop for Volume {
    fn drop(&mut self) {
        let running = self.threads.lock().map(|w| !w.is_empty()).unwrap_or(false);
        if running {
            if let Err(e) = self.close() {
                tracing::warn!("closing {:?}: {e}", self.sh);
            }
        }
    }
}

/// Delete every object of an image's log (segments, checkpoints) under `prefix`.
pub fn destroy(
    store: &dyn ObjectStore,
    prefix: &str,
    mut progress: impl FnMut(u64, u64),
) -> Result<()> {
    let objs = store.list(prefix)?;
    let total = objs.len() as u64;
    for (i, o) in objs.iter().enumerate() {
        store.delete(&o.key)?;
        progress(i as u64 + 1, total);
    }
    Ok(())
}

impl Shared {
    pub(crate) fn refuse(&self, g: &Inner) -> Result<()> {
        if self.read_only {
            return Err(err!(ReadOnly, "image is open read-only"));
        }
        if g.fenced {
            return Err(err!(
                Fenced,
                "another client has taken this image over; this handle can no longer write"
            ));
        }
        if let Some(f) = &g.failed {
            return Err(err!(Io, "image is unusable after a failure: {f}"));
        }
        if g.closing {
            // Unavailable: a handle whose volume was swapped (lock handover) retries.
            return Err(err!(Unavailable, "image is closed"));
        }
        Ok(())
    }

    /// Queue a request for the committer. `now`: the submitter has nothing else in flight
    /// (a synchronous call, or the front end says so), so an aligned write may be committed
    /// on its own thread when the committer is idle.
    pub(crate) fn submit(&self, req: Req, range: Option<(u64, u64)>, done: Done, now: bool) {
        let check = {
            let g = lock(&self.inner);
            self.refuse(&g).and_then(|_| match range {
                Some((off, len)) => Volume::check_range(g.size, off, len),
                None => Ok(()),
            })
        };
        if let Err(e) = check {
            return done(Err(e));
        }
        // An aligned write that finds the committer idle, nothing queued and room for its
        // segment is committed here, on the submitter's thread (no hand-off either way).
        let commit = match &req {
            Req::Write { off, data }
                if now && crate::commit::fits_one_record(self, *off, data.len()) =>
            {
                self.commit_lock.try_lock().ok()
            }
            Req::Flush if now && self.durability() == Durability::Journal => {
                self.commit_lock.try_lock().ok()
            }
            _ => None,
        };
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.stop {
            drop(q);
            return done(Err(err!(Unavailable, "image is closed")));
        }
        let req = match (commit.is_some() && q.reqs.is_empty(), req) {
            (true, Req::Write { off, data }) if self.has_room() => {
                drop(q);
                let r = crate::commit::write_now(self, off, data);
                // Answered without the commit lock: an answer may submit again.
                drop(commit);
                return done(r);
            }
            (true, Req::Flush) => {
                drop(q);
                let r = crate::commit::flush_now(self);
                drop(commit);
                return done(r);
            }
            (_, req) => req,
        };
        drop(commit);
        q.reqs.push_back(Pending {
            req,
            done: guarded(done),
        });
        drop(q);
        self.queue_cv.notify_one();
    }

    /// Submit and wait.
    pub(crate) fn call(&self, req: Req) -> Result<()> {
        let (d, rx) = waiter();
        self.submit(req, None, d, false);
        wait(rx)
    }

    /// Seal the open segment and wait until everything written so far is in the store.
    pub(crate) fn flush_to_store(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.call(Req::Seal)?;
        let target = lock(&self.inner).open.seq - 1;
        self.wait_durable(target, None)
    }

    /// Wait until every segment up to `target` is stored (`TimedOut` past `deadline`).
    pub(crate) fn wait_durable(
        &self,
        target: u64,
        deadline: Option<std::time::Instant>,
    ) -> Result<()> {
        let mut g = lock(&self.inner);
        loop {
            if g.durable >= target {
                return Ok(());
            }
            if let Some(f) = &g.failed {
                return Err(err!(Io, "flush failed: {f}"));
            }
            match deadline {
                None => g = self.progress.wait(g).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = self.cfg.clock.now();
                    if now >= d {
                        return Err(err!(
                            TimedOut,
                            "segments {:016x}..={target:016x} are not in the store yet",
                            g.durable + 1
                        ));
                    }
                    g = self
                        .progress
                        .wait_timeout(g, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// An engine thread panicked: mark the image failed and answer everything waiting with an
    /// error, so no caller hangs. Called from the dying thread.
    /// Whether a record can be written without waiting for the store to take sealed
    /// segments (and nothing failed).
    fn has_room(&self) -> bool {
        let g = lock(&self.inner);
        g.failed.is_none() && g.pending.len() < self.cfg.max_pending
    }

    pub(crate) fn died(&self, what: &str, p: &(dyn std::any::Any + Send)) {
        let msg = format!("{what} thread failed: {}", panic_message(p));
        tracing::error!("{self:?}: {msg}");
        let waiters = {
            let mut g = lock(&self.inner);
            if g.failed.is_none() {
                g.failed = Some(msg.clone());
            }
            self.fail_waiters(&mut g)
        };
        let queued: Vec<Pending> = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if what == "committer" {
                q.stop = true;
            }
            q.reqs.drain(..).collect()
        };
        self.progress.notify_all();
        for d in waiters {
            d(Err(err!(Io, "{msg}")));
        }
        for p in queued {
            (p.done)(Err(err!(Io, "{msg}")));
        }
    }

    /// Fail every flush waiting for durability (after a fatal error).
    pub(crate) fn fail_waiters(&self, g: &mut Inner) -> Vec<Done> {
        std::mem::take(&mut g.durable_waiters)
            .into_iter()
            .map(|(_, d)| d)
            .collect()
    }

    /// Refuse (Fenced) when this writer's lease has run out: it must not delete anything.
    pub(crate) fn check_lease(&self, what: &str) -> Result<()> {
        match &self.cfg.lease {
            Some(l) if !(l.0)() => Err(err!(
                Fenced,
                "not {what}: this writer's exclusive-lock lease has run out"
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn durability(&self) -> Durability {
        match self.cfg.log {
            LogConfig::Memory => Durability::Backend,
            _ => self.cfg.durability,
        }
    }
}

/// The target of the sector `k` sectors into a mapping.
fn shift(t: Target, k: u64) -> Target {
    match t {
        Target::Data { seg, off } => Target::Data {
            seg,
            off: off + k as u32,
        },
        z => z,
    }
}

/// For error messages that need an `Error` from a stored failure string.
pub(crate) fn failed_error(f: &str) -> Error {
    err!(Io, "image is unusable after a failure: {f}")
}
