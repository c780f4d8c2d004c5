//! All process-global state of the C interface, in one place.
//!
//! The Ceph ABI hands out bare pointers (`rados_t`, `rbd_image_t`, ...) and lets a handle made by
//! librados be used by librbd, so the state behind them is process-global:
//!
//! ```text
//!   Globals (one per process; a forked child starts a fresh one)
//!     handle tables    rados_t, rados_ioctx_t, rbd_image_t, rbd_completion_t, image options
//!     stores           store URL -> Store (one connected shale_image::Cluster per URL)
//!     open images      (store URL, pool, image id) -> SharedImage + handle count
//!     workers          the aio worker pool (started on first use)
//! ```
//!
//! Invariants:
//! * At most one engine (`shale_image::Image`) per image per process: every `rbd_open*` of the
//!   same image shares one [`SharedImage`]. A read-only engine is replaced by a writable one when
//!   a writable handle opens; the image is closed (flushed) when its last handle closes, under
//!   the registry lock, so a reopen never races with the final flush.
//! * Exclusive-lock ownership is per handle: the engine holds the store-level lock for the
//!   process, and [`SharedImage::holder`] names the one handle that owns it (see
//!   [`crate::owner`]).
//! * Fork: threads do not survive `fork`, and locks held by them would stay locked, so a child
//!   (detected by a changed pid) starts with fresh, empty state; the parent's state is leaked on
//!   purpose (it is never freed, which makes the `&'static` references sound).

use crate::aio::{Job, WorkerPool};
use crate::cluster::Cluster;
use crate::completion::RbdCompletion;
use crate::handle::Table;
use crate::image::RbdImage;
use crate::options::ImageOptions;
use crate::pools::Ioctx;
use core::ffi::c_int;
use shale_image::{Image, Settings};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};

/// Lock, ignoring poisoning (a panic elsewhere must not wedge the library).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connected store: what `rados_connect` yields, shared by every handle naming the same URL.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) url: String,
    pub(crate) cluster: shale_image::Cluster,
}

impl Store {
    /// A stable fsid for the store, derived from its URL (FNV-1a, formatted as a UUID).
    pub(crate) fn fsid(&self) -> String {
        let mut h: [u64; 2] = [0xcbf2_9ce4_8422_2325, 0x8422_2325_cbf2_9ce4];
        for (i, part) in h.iter_mut().enumerate() {
            for b in self.url.bytes().chain([i as u8]) {
                *part ^= u64::from(b);
                *part = part.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        let x = (u128::from(h[0]) << 64) | u128::from(h[1]);
        let s = format!("{x:032x}");
        format!(
            "{}-{}-{}-{}-{}",
            &s[..8],
            &s[8..12],
            &s[12..16],
            &s[16..20],
            &s[20..]
        )
    }
}

/// Identity of an image in this process.
pub(crate) type ImageKey = (String, String, String);

/// One open image shared by all its handles, plus the in-flight tracking aio needs.
#[derive(Debug)]
pub(crate) struct SharedImage {
    pub(crate) key: ImageKey,
    image: RwLock<Arc<Image>>,
    inflight: Mutex<Inflight>,
    idle: Condvar,
    /// Which of this process's handles owns the exclusive lock the engine holds (see
    /// [`crate::owner`]).
    pub(crate) holder: Mutex<Option<crate::owner::Holder>>,
}

/// Requests in flight on an image, numbered in submission order.
#[derive(Default)]
struct Inflight {
    next: u64,
    pending: BTreeSet<u64>,
    /// (barrier, job): jobs to run once every request numbered below `barrier` has ended.
    deferred: Vec<(u64, Job)>,
}

impl std::fmt::Debug for Inflight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflight")
            .field("next", &self.next)
            .field("pending", &self.pending)
            .field("deferred", &self.deferred.len())
            .finish()
    }
}

impl Inflight {
    /// Whether a request numbered below `barrier` is still in flight.
    fn busy_before(&self, barrier: u64) -> bool {
        self.pending.first().is_some_and(|&s| s < barrier)
    }
}

impl SharedImage {
    fn new(key: ImageKey, image: Image) -> Self {
        Self {
            key,
            image: RwLock::new(Arc::new(image)),
            inflight: Mutex::new(Inflight::default()),
            idle: Condvar::new(),
            holder: Mutex::new(None),
        }
    }

    /// Let the engine run other clients' maintenance operations (`snap_create`, `resize`,
    /// `flatten`) while this process holds the exclusive lock explicitly, as librbd's owner
    /// does for them. Called whenever an engine is installed.
    fn serve_others(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        self.image().set_proxy_handler(Arc::new(move |run| {
            let shared = weak.upgrade().ok_or_else(|| {
                shale_image::Error::new(shale_image::ErrorKind::Busy, "the image was closed")
            })?;
            let img = shared.image();
            run(&img)
        }));
    }

    /// The engine (a clone: an upgrade to a writable engine does not disturb running calls).
    pub(crate) fn image(&self) -> Arc<Image> {
        self.image.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Register an operation; returns its sequence number for [`Self::end`].
    pub(crate) fn begin(&self) -> u64 {
        self.begin_alone().0
    }

    /// [`begin`](Self::begin), and whether no other operation was in flight.
    pub(crate) fn begin_alone(&self) -> (u64, bool) {
        let mut g = lock(&self.inflight);
        let seq = g.next;
        g.next += 1;
        let alone = g.pending.is_empty();
        g.pending.insert(seq);
        (seq, alone)
    }

    /// Operation `seq` has ended: wake the waiters and run the deferred jobs it released (on
    /// this thread, after the lock is dropped; they must not block).
    pub(crate) fn end(&self, seq: u64) {
        let ready: Vec<(u64, Job)> = {
            let mut g = lock(&self.inflight);
            g.pending.remove(&seq);
            if g.deferred.is_empty() {
                Vec::new()
            } else {
                let low = g.pending.first().copied().unwrap_or(u64::MAX);
                let (ready, wait) = std::mem::take(&mut g.deferred)
                    .into_iter()
                    .partition(|&(barrier, _)| barrier <= low);
                g.deferred = wait;
                ready
            }
        };
        self.idle.notify_all();
        for (_, job) in ready {
            job();
        }
    }

    /// The sequence number the next operation will get: a barrier for [`Self::wait_before`].
    pub(crate) fn barrier(&self) -> u64 {
        lock(&self.inflight).next
    }

    /// Run `job` once every operation numbered below `barrier` has ended: now, on this thread,
    /// if none is in flight, else from the [`Self::end`] of the last of them. Never waits, so
    /// a pool thread is never parked behind the jobs that would end those operations.
    pub(crate) fn after(&self, barrier: u64, job: Job) {
        let mut g = lock(&self.inflight);
        if g.busy_before(barrier) {
            g.deferred.push((barrier, job));
            return;
        }
        drop(g);
        job();
    }

    /// Whether an operation numbered below `barrier` is still in flight.
    #[cfg(test)]
    pub(crate) fn busy_before(&self, barrier: u64) -> bool {
        lock(&self.inflight).busy_before(barrier)
    }

    /// Wait until every operation numbered below `barrier` has ended. Blocks the caller: on a
    /// pool thread (a completion callback calling `rbd_flush` or `rbd_close`) the pool grows
    /// meanwhile (see [`crate::aio::blocking`]), so the completions it waits for still run.
    pub(crate) fn wait_before(&self, barrier: u64) {
        if !lock(&self.inflight).busy_before(barrier) {
            return;
        }
        crate::aio::blocking(|| {
            let mut g = lock(&self.inflight);
            while g.busy_before(barrier) {
                g = self.idle.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        })
    }
}

struct OpenEntry {
    shared: Arc<SharedImage>,
    handles: usize,
    writable: bool,
}

/// The process-global state; see the module docs.
pub(crate) struct Globals {
    pid: u32,
    pub(crate) clusters: Table<Cluster>,
    pub(crate) ioctxs: Table<Ioctx>,
    pub(crate) images: Table<RbdImage>,
    pub(crate) completions: Table<RbdCompletion>,
    pub(crate) options: Table<ImageOptions>,
    stores: Mutex<HashMap<String, Arc<Store>>>,
    open: Mutex<HashMap<ImageKey, OpenEntry>>,
    /// Images whose last handle is closing (flushing to the store) right now: a reopen of the
    /// same image waits for it; every other open and close goes on.
    closing: Mutex<std::collections::HashSet<ImageKey>>,
    closed: std::sync::Condvar,
    workers: OnceLock<Option<WorkerPool>>,
    next_instance: AtomicU64,
}

static CURRENT: AtomicPtr<Globals> = AtomicPtr::new(std::ptr::null_mut());

/// The state of this process (fresh after a fork).
pub(crate) fn globals() -> &'static Globals {
    let pid = std::process::id();
    loop {
        let cur = CURRENT.load(Ordering::Acquire);
        if !cur.is_null() {
            // SAFETY: a non-NULL CURRENT came from Box::into_raw below and is never freed.
            let g = unsafe { &*cur };
            if g.pid == pid {
                return g;
            }
        }
        let fresh = Box::into_raw(Box::new(Globals::new(pid)));
        match CURRENT.compare_exchange(cur, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // The previous state (a parent's, after fork) is leaked on purpose.
            // SAFETY: `fresh` is now published and never freed.
            Ok(_) => return unsafe { &*fresh },
            // SAFETY: `fresh` was never published; we still own it.
            Err(_) => drop(unsafe { Box::from_raw(fresh) }),
        }
    }
}

impl Globals {
    fn new(pid: u32) -> Self {
        Self {
            pid,
            clusters: Table::new(),
            ioctxs: Table::new(),
            images: Table::new(),
            completions: Table::new(),
            options: Table::new(),
            stores: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
            closing: Mutex::new(std::collections::HashSet::new()),
            closed: std::sync::Condvar::new(),
            workers: OnceLock::new(),
            next_instance: AtomicU64::new(u64::from(pid) << 20),
        }
    }

    /// A new instance id (`rados_get_instance_id`, watcher ids).
    pub(crate) fn instance_id(&self) -> u64 {
        self.next_instance.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The aio worker pool, started on first use (None if no thread could be started).
    pub(crate) fn workers(&self) -> Option<&WorkerPool> {
        self.workers.get_or_init(WorkerPool::start).as_ref()
    }

    /// Connect to the store `settings` name, reusing a connection to the same URL.
    pub(crate) fn connect(&self, settings: Settings) -> Result<Arc<Store>, c_int> {
        let url = settings.store_url();
        let mut stores = lock(&self.stores);
        if let Some(s) = stores.get(&url) {
            return Ok(s.clone());
        }
        let cluster = shale_image::Cluster::connect(settings).map_err(|e| {
            tracing::warn!("rados_connect: cannot open the store: {e}");
            crate::errno::of(&e)
        })?;
        let store = Arc::new(Store {
            url: url.clone(),
            cluster,
        });
        stores.insert(url, store.clone());
        Ok(store)
    }

    /// The connected store with URL `url`, if any.
    pub(crate) fn store(&self, url: &str) -> Option<Arc<Store>> {
        lock(&self.stores).get(url).cloned()
    }

    /// Open (or share) the engine of image `id` in `pool` of `store`.
    pub(crate) fn open_image(
        &self,
        store: &Store,
        pool: &str,
        id: &str,
        read_only: bool,
    ) -> shale_image::Result<Arc<SharedImage>> {
        let key: ImageKey = (store.url.clone(), pool.to_string(), id.to_string());
        // A close of this image still flushing: open what it leaves behind, not beside it.
        // (Checked under the open lock, which a closer holds while it marks itself closing.)
        let mut open = loop {
            let open = lock(&self.open);
            let c = lock(&self.closing);
            if !c.contains(&key) {
                drop(c);
                break open;
            }
            drop(open);
            let c = self.closed.wait(c).unwrap_or_else(|p| p.into_inner());
            drop(c);
        };
        if let Some(e) = open.get_mut(&key) {
            if !read_only && !e.writable {
                let img = store.cluster.open_image_by_id(pool, id, false)?;
                *e.shared.image.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(img);
                e.shared.serve_others();
                e.writable = true;
            }
            e.handles += 1;
            return Ok(e.shared.clone());
        }
        let img = store.cluster.open_image_by_id(pool, id, read_only)?;
        let shared = Arc::new(SharedImage::new(key.clone(), img));
        shared.serve_others();
        open.insert(
            key,
            OpenEntry {
                shared: shared.clone(),
                handles: 1,
                writable: !read_only,
            },
        );
        Ok(shared)
    }

    /// Make sure the engine `shared` holds is writable (a handle opened at a snapshot opened
    /// the head read-only).
    pub(crate) fn make_writable(&self, shared: &Arc<SharedImage>) -> shale_image::Result<()> {
        let mut open = lock(&self.open);
        let Some(e) = open.get_mut(&shared.key) else {
            return Ok(());
        };
        if !e.writable {
            let Some(store) = self.store(&shared.key.0) else {
                return Ok(());
            };
            let img = store
                .cluster
                .open_image_by_id(&shared.key.1, &shared.key.2, false)?;
            // The read-only engine is dropped once no running call uses it (as in open_image).
            *e.shared.image.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(img);
            e.shared.serve_others();
            e.writable = true;
        }
        Ok(())
    }

    /// Drop one handle of `shared`; the last one waits for its operations and closes the image.
    pub(crate) fn release_image(&self, shared: &Arc<SharedImage>) -> shale_image::Result<()> {
        let mut open = lock(&self.open);
        let Some(e) = open.get_mut(&shared.key) else {
            return Ok(());
        };
        e.handles -= 1;
        if e.handles > 0 {
            return Ok(());
        }
        open.remove(&shared.key);
        // The close (a final flush to the store, bounded by close_wait) runs outside the
        // process-wide lock: only a reopen of this same image waits for it.
        lock(&self.closing).insert(shared.key.clone());
        drop(open);
        // Normally nothing is left in flight here: rbd_close waited for the image's requests.
        shared.wait_before(shared.barrier());
        let r = shared.image().close();
        lock(&self.closing).remove(&shared.key);
        self.closed.notify_all();
        if let Err(e) = &r {
            tracing::warn!(pool = %shared.key.1, image = %shared.key.2, error = %e, "closing the image failed");
        }
        r
    }

    /// The image as this process has it open, if it does.
    pub(crate) fn open_shared(&self, key: &ImageKey) -> Option<Arc<SharedImage>> {
        lock(&self.open).get(key).map(|e| e.shared.clone())
    }

    /// How many handles of this process have the image open.
    pub(crate) fn open_handles(&self, key: &ImageKey) -> usize {
        lock(&self.open).get(key).map_or(0, |e| e.handles)
    }
}
