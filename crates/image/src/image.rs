//! An open image: the engine volume plus the image header (size, features, metadata).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use shale_engine::{Stats, Volume};
use shale_error::{err, Result};

use crate::cluster::Cluster;
use crate::iostats::IoKind;

/// RBD feature bits Shale reports (layering | exclusive-lock | object-map | fast-diff |
/// deep-flatten), as librbd's defaults.
pub const DEFAULT_FEATURES: u64 = crate::features::DEFAULT;

/// The persistent header of an image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct ImageHeader {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub order: u8,
    pub features: u64,
    pub created: u64,
    #[serde(default)]
    pub epoch: u64,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub removing: bool,
    #[serde(default)]
    pub snapshots: Vec<SnapInfo>,
    /// Next snapshot id to hand out (ids are never reused).
    #[serde(default)]
    pub next_snap_id: u64,
    #[serde(default)]
    pub parent: Option<ParentRef>,
    #[serde(default)]
    pub snap_limit: Option<u64>,
    /// (epoch, first segment number) set when a writer takes the image over: segments from
    /// that number on written under an older epoch are a fenced writer's and never count.
    #[serde(default)]
    pub fence: Option<(u64, u64)>,
    /// Advisory (legacy) locks: `rbd lock add` / `rbd_lock_exclusive` / `rbd_lock_shared`.
    #[serde(default)]
    pub lockers: Vec<crate::lock::Locker>,
    /// Exclusive-lock owners whose lock was broken: they may never write again.
    #[serde(default)]
    pub blocklist: Vec<String>,
    /// Striping asked for at creation (0: librbd's default, one object at a time). Reported
    /// back as librbd does; the data layout does not depend on it.
    #[serde(default)]
    pub stripe_unit: u64,
    #[serde(default)]
    pub stripe_count: u64,
    /// Where the image's data lives (empty: the home store alone). See `locations.rs`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<crate::locations::ImageLocation>,
}

/// A snapshot in an image header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapInfo {
    pub id: u64,
    pub name: String,
    /// Last segment it covers.
    pub seq: u64,
    pub size: u64,
    pub protected: bool,
    pub created: u64,
    /// Clones made from it.
    #[serde(default)]
    pub children: Vec<ChildRef>,
}

/// A clone of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChildRef {
    pub pool: String,
    pub image_id: String,
}

/// The parent of a clone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ParentRef {
    pub pool: String,
    pub image_id: String,
    pub image_name: String,
    pub snap_id: u64,
    pub snap_name: String,
    /// Bytes of the clone that may read through to the parent.
    pub overlap: u64,
}

impl SnapInfo {
    /// Key of its checkpoint, relative to the image prefix.
    pub(crate) fn key(id: u64) -> String {
        shale_format::keys::snap_rel(id)
    }
}

impl ImageHeader {
    pub(crate) fn new(id: &str, name: &str, size: u64, order: u8, created: u64) -> Self {
        ImageHeader {
            id: id.into(),
            name: name.into(),
            size,
            order,
            features: DEFAULT_FEATURES,
            created,
            epoch: 1,
            metadata: BTreeMap::new(),
            removing: false,
            snapshots: Vec::new(),
            next_snap_id: 4,
            parent: None,
            snap_limit: None,
            fence: None,
            lockers: Vec::new(),
            blocklist: Vec::new(),
            stripe_unit: 0,
            stripe_count: 0,
            locations: Vec::new(),
        }
    }
}

impl Drop for Image {
    /// Dropping a handle that holds the exclusive lock stores everything and lets the lock go
    /// (the lock's renewal thread would otherwise keep the volume alive). Errors are logged.
    fn drop(&mut self) {
        if self.lock.is_owner() {
            if let Err(e) = self.lock.release(self) {
                tracing::warn!("closing {}/{}: {e}", self.pool, self.id);
            }
        }
    }
}

/// Open the head of an image: writable (recovering, under the header's epoch and fence) or
/// read-only; a clone gets its parent attached.
pub(crate) fn head_volume(
    c: &Cluster,
    pool: &str,
    id: &str,
    h: &ImageHeader,
    writable: bool,
    lease: Option<shale_engine::LeaseCheck>,
) -> Result<Volume> {
    let prefix = shale_format::keys::image_prefix(pool, id);
    let mut cfg = c.engine_config_for(pool, id, h);
    cfg.fence = h.fence;
    cfg.lease = lease;
    let store = c.data_store(pool, id, h, writable)?;
    let v = Volume::open(store, &prefix, h.size, h.epoch, cfg, !writable)?;
    attach_parent(c, &v, h, None)?;
    Ok(v)
}

fn attach_parent(c: &Cluster, v: &Volume, h: &ImageHeader, snap_size: Option<u64>) -> Result<()> {
    if let Some(p) = &h.parent {
        // A snapshot of a clone keeps the overlap it had; the head's may have shrunk since.
        let overlap = snap_size.map(|s| s.min(p.overlap)).unwrap_or(p.overlap);
        v.set_parent(Some(shale_engine::Parent {
            vol: c.parent_volume(p)?,
            overlap,
        }));
    }
    Ok(())
}

/// The name of an image's journal in the cache directory.
pub(crate) fn journal_key(pool: &str, id: &str) -> String {
    format!("{pool}-{id}-")
}

/// What `info` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    pub name: String,
    pub id: String,
    pub pool: String,
    pub size: u64,
    pub order: u8,
    pub object_size: u64,
    pub num_objs: u64,
    pub block_name_prefix: String,
    pub features: u64,
    pub created: u64,
    pub read_only: bool,
}

/// An open image. Cheap to share across threads (`&self` everywhere).
#[derive(Debug)]
pub struct Image {
    pub(crate) cluster: Cluster,
    pub(crate) pool: String,
    pub(crate) id: String,
    pub(crate) header: Mutex<(ImageHeader, shale_store::Version)>,
    /// The engine volume; swapped when the exclusive lock is taken (reopened writable under
    /// the new epoch) or given up (reopened read-only).
    pub(crate) vol: Arc<RwLock<Arc<Volume>>>,
    pub(crate) lock: Arc<crate::lock::LockCtl>,
    pub(crate) read_only: bool,
    /// The snapshot this handle shows (read-only), if any.
    pub(crate) snap: Option<SnapInfo>,
    /// When a handle that does not hold the exclusive lock last reloaded its read-only view.
    pub(crate) refreshed: Mutex<std::time::Instant>,
}

/// How stale a non-owner's view of an image another client writes may get.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

impl Image {
    pub(crate) fn open(c: &Cluster, pool: &str, id: &str, read_only: bool) -> Result<Image> {
        Self::open_at(c, pool, id, None, read_only)
    }

    /// Open the head (`snap` None) or, read-only, a snapshot by name.
    pub(crate) fn open_at(
        c: &Cluster,
        pool: &str,
        id: &str,
        snap: Option<&str>,
        read_only: bool,
    ) -> Result<Image> {
        // Only with the exclusive lock can a reader tell a dead writer from a live one (a live
        // writer of an image without it has its journal here too: leave that one alone).
        let locked_image = || {
            c.load_header(pool, id)
                .map(|(h, _)| h.features & crate::lock::EXCLUSIVE_LOCK != 0)
        };
        if snap.is_none()
            && read_only
            && crate::lock::needs_recovery(c, pool, id)? == Some(true)
            && locked_image()?
        {
            // A writer stopped uncleanly and left acknowledged writes in its journal or
            // staging here: a read-only view of the store alone would silently miss them.
            // Recover them first, as any writable open would (taking the lock).
            tracing::warn!(
                "{pool}/{id}: the last writer did not close cleanly; recovering its journal \
                 before the read-only open"
            );
            let w = Self::open_at(c, pool, id, None, false)
                .map_err(|e| e.context("recovering an uncleanly stopped writer's journal"))?;
            w.writer()?;
            w.close()?;
            drop(w);
        }
        let (h, ver) = c.load_header(pool, id)?;
        if h.removing {
            return Err(err!(
                NotFound,
                "image {pool}/{} is being removed; run `shale rm {pool}/{}` again to finish",
                h.name,
                h.name
            ));
        }
        let locking = snap.is_none() && !read_only && h.features & crate::lock::EXCLUSIVE_LOCK != 0;
        let (vol, snap, read_only) = match snap {
            // With the exclusive-lock feature the head opens read-only; the first write takes
            // the lock and reopens it writable under a new epoch.
            None => (
                head_volume(c, pool, id, &h, !read_only && !locking, None)?,
                None,
                read_only,
            ),
            Some(name) => {
                let s = h
                    .snapshots
                    .iter()
                    .find(|s| s.name == name)
                    .cloned()
                    .ok_or_else(|| {
                        err!(NotFound, "image {pool}/{} has no snapshot {name:?}", h.name)
                    })?;
                let prefix = shale_format::keys::image_prefix(pool, id);
                let v = Volume::open_snapshot(
                    c.data_store(pool, id, &h, false)?,
                    &prefix,
                    &SnapInfo::key(s.id),
                    s.size,
                    c.engine_config_for(pool, id, &h),
                )?;
                attach_parent(c, &v, &h, Some(s.size))?;
                (v, Some(s), true)
            }
        };
        let img = Image {
            cluster: c.clone(),
            pool: pool.into(),
            id: id.into(),
            header: Mutex::new((h, ver)),
            vol: Arc::new(RwLock::new(Arc::new(vol))),
            lock: Arc::new(crate::lock::LockCtl::new(
                locking,
                &c.client_id(),
                c.entropy.next_u64() as u32,
            )),
            read_only,
            snap,
            refreshed: Mutex::new(c.clock.now()),
        };
        crate::lock::take_if_free(&img)?;
        Ok(img)
    }

    /// Nothing to flush: the image locks writers and this handle never became one (or gave the
    /// lock up, which stored everything).
    fn idle_without_lock(&self) -> bool {
        self.read_only || (self.lock.enabled() && !self.lock.is_owner())
    }

    /// Run a write on the writer volume, again on the new one if the lock moved meanwhile
    /// (the old volume was closed under us).
    fn retrying<T>(&self, f: impl Fn(&Volume) -> Result<T>) -> Result<T> {
        let mut tries = 0;
        loop {
            let v = self.writer()?;
            match f(&v) {
                Err(e)
                    if e.kind() == shale_error::ErrorKind::Unavailable
                        && v.is_closed()
                        && tries < 3 =>
                {
                    tries += 1
                }
                r => return r,
            }
        }
    }

    /// The current engine volume.
    pub(crate) fn vol(&self) -> Arc<Volume> {
        self.vol.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The volume to write through: takes the exclusive lock first when the image uses it.
    pub(crate) fn writer(&self) -> Result<Arc<Volume>> {
        if self.read_only {
            return Err(err!(ReadOnly, "image is open read-only"));
        }
        self.lock.ensure(self)?;
        Ok(self.vol())
    }

    fn hdr(&self) -> std::sync::MutexGuard<'_, (ImageHeader, shale_store::Version)> {
        self.header.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Change the header with a conditional write, retrying on a concurrent change.
    pub(crate) fn update_header(&self, f: impl Fn(&mut ImageHeader) -> Result<()>) -> Result<()> {
        if self.read_only {
            return Err(err!(ReadOnly, "image is open read-only"));
        }
        let mut g = self.hdr();
        *g = self.cluster.modify_header(&self.pool, &self.id, f)?;
        Ok(())
    }

    /// Re-read the header (another handle or process may have changed snapshots or parents).
    /// The header as this handle last saw it.
    pub(crate) fn header_now(&self) -> ImageHeader {
        self.hdr().0.clone()
    }

    /// Take a header this handle just wrote.
    pub(crate) fn set_header(&self, h: ImageHeader) {
        if let Ok(fresh) = self.cluster.load_header(&self.pool, &self.id) {
            *self.hdr() = fresh;
        } else {
            self.hdr().0 = h;
        }
    }

    pub(crate) fn reload_header(&self) -> Result<ImageHeader> {
        let fresh = self.cluster.load_header(&self.pool, &self.id)?;
        let mut g = self.hdr();
        *g = fresh;
        Ok(g.0.clone())
    }

    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn pool(&self) -> &str {
        &self.pool
    }
    pub fn name(&self) -> String {
        self.hdr().0.name.clone()
    }
    pub fn size(&self) -> u64 {
        self.vol().size()
    }
    pub fn features(&self) -> u64 {
        self.hdr().0.features
    }
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// librbd's stripe unit: what creation asked for, else the object size.
    pub fn stripe_unit(&self) -> u64 {
        let h = &self.hdr().0;
        if h.stripe_unit == 0 {
            1 << h.order
        } else {
            h.stripe_unit
        }
    }

    /// librbd's stripe count: what creation asked for, else 1.
    pub fn stripe_count(&self) -> u64 {
        self.hdr().0.stripe_count.max(1)
    }

    /// Record, right after creation, what librbd accepts there beyond Shale's own layout:
    /// the striping parameters (reported back; data stays laid out as always) and feature bits
    /// that change no behaviour here (striping, journaling: every Shale image is journaled
    /// locally, and there is no rbd-mirror journal).
    pub fn set_creation_extras(
        &self,
        stripe_unit: u64,
        stripe_count: u64,
        add_features: u64,
    ) -> Result<()> {
        use crate::features::{JOURNALING, STRIPINGV2};
        if add_features & !(JOURNALING | STRIPINGV2) != 0 {
            return Err(err!(
                Invalid,
                "features {add_features:#x} cannot be added after creation"
            ));
        }
        self.update_header(|h| {
            h.stripe_unit = stripe_unit;
            h.stripe_count = stripe_count;
            h.features |= add_features;
            Ok(())
        })
    }

    pub fn info(&self) -> ImageInfo {
        let h = self.hdr().0.clone();
        let object_size = 1u64 << h.order;
        let size = self.vol().size();
        ImageInfo {
            name: h.name,
            block_name_prefix: format!("rbd_data.{}", h.id),
            id: h.id,
            pool: self.pool.clone(),
            size,
            order: h.order,
            object_size,
            num_objs: size.div_ceil(object_size),
            features: h.features,
            created: h.created,
            read_only: self.read_only,
        }
    }

    pub fn stats(&self) -> Stats {
        self.vol().stats()
    }

    /// The writer epoch of this handle's view of the header (every exclusive-lock takeover
    /// bumps it): for metrics and diagnostics.
    pub fn epoch(&self) -> u64 {
        self.hdr().0.epoch
    }

    /// Read at `off`; returns the bytes read (short at the end). Past the end is an error.
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize> {
        let t = self.cluster.clock.now();
        let r = self.read_uncounted(off, buf);
        self.count(IoKind::Read, *r.as_ref().unwrap_or(&0) as u64, t, r.is_ok());
        r
    }

    fn read_uncounted(&self, off: u64, buf: &mut [u8]) -> Result<usize> {
        self.refresh_view()?;
        let mut tries = 0;
        loop {
            match self.vol().read(off, buf) {
                // A writer elsewhere collected a segment this (older) view still names: load
                // the current view and read again.
                Err(e)
                    if e.kind() == shale_error::ErrorKind::NotFound
                        && tries < 3
                        && self.snap.is_none()
                        && self.idle_without_lock() =>
                {
                    tries += 1;
                    tracing::debug!("{}/{}: {e}; reloading the view", self.pool, self.id);
                    self.reload_view()?;
                }
                r => return r,
            }
        }
    }

    /// A handle that reads an image another client writes (it does not hold the lock) reloads
    /// its read-only view at most once per second, so it sees what the writer stored or
    /// staged since.
    fn refresh_view(&self) -> Result<()> {
        if self.snap.is_some() || !self.lock.enabled() || self.lock.is_owner() {
            return Ok(());
        }
        {
            let mut t = self.refreshed.lock().unwrap_or_else(|p| p.into_inner());
            if self.cluster.clock.since(*t) < REFRESH {
                return Ok(());
            }
            *t = self.cluster.clock.now();
        }
        let (h, _) = self.cluster.load_header(&self.pool, &self.id)?;
        // Nothing new to see unless someone holds the lock now, or took it since our view
        // (every takeover bumps the epoch).
        if h.epoch == self.hdr().0.epoch && crate::lock::current_owner(self)?.is_none() {
            return Ok(());
        }
        self.reload_view()
    }

    /// `rbd_invalidate_cache`: a handle that does not hold the lock (the destination of a
    /// live migration before its first write) sees every write the lock's owner made before
    /// this call: the owner is asked to store them, then the view is reloaded.
    pub fn invalidate_cache(&self) -> Result<()> {
        if self.snap.is_some() || self.lock.is_owner() {
            return Ok(());
        }
        if self.features() & crate::lock::EXCLUSIVE_LOCK != 0 {
            crate::lock::request_sync(self)?;
        }
        self.reload_view()?;
        *self.refreshed.lock().unwrap_or_else(|p| p.into_inner()) = self.cluster.clock.now();
        Ok(())
    }

    /// Replace this (non-writer) handle's view with the image as stored now.
    pub(crate) fn reload_view(&self) -> Result<()> {
        let (h, ver) = self.cluster.load_header(&self.pool, &self.id)?;
        let fresh = Arc::new(head_volume(
            &self.cluster,
            &self.pool,
            &self.id,
            &h,
            false,
            None,
        )?);
        let _no_takeover = self
            .lock
            .acquiring
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.lock.is_owner() {
            return Ok(()); // became the writer meanwhile: its volume is the truth
        }
        *self.vol.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        *self.hdr() = (h, ver);
        Ok(())
    }
    pub fn write(&self, off: u64, data: &[u8]) -> Result<()> {
        let t = self.cluster.clock.now();
        let r = self.retrying(|v| v.write(off, data));
        self.count(IoKind::Write, data.len() as u64, t, r.is_ok());
        r
    }
    pub fn discard(&self, off: u64, len: u64) -> Result<()> {
        let t = self.cluster.clock.now();
        let r = self.retrying(|v| v.write_zeroes(off, len));
        self.count(IoKind::Discard, len, t, r.is_ok());
        r
    }
    pub fn write_zeroes(&self, off: u64, len: u64) -> Result<()> {
        let t = self.cluster.clock.now();
        let r = self.retrying(|v| v.write_zeroes(off, len));
        self.count(IoKind::Write, len, t, r.is_ok());
        r
    }
    pub fn flush(&self) -> Result<()> {
        let t = self.cluster.clock.now();
        let r = if self.idle_without_lock() {
            Ok(())
        } else {
            self.writer().and_then(|v| v.flush())
        };
        self.count(IoKind::Flush, 0, t, r.is_ok());
        r
    }

    /// Count an operation started at `t` in the image's I/O statistics.
    fn count(&self, k: IoKind, bytes: u64, t: std::time::Instant, ok: bool) {
        self.lock
            .io
            .record(k, bytes, self.cluster.clock.since(t), ok);
    }

    /// `done`, counting the operation when it completes.
    fn counted(&self, k: IoKind, bytes: u64, done: shale_engine::Done) -> shale_engine::Done {
        let io = self.lock.io.clone();
        let clock = self.cluster.clock.clone();
        let t = clock.now();
        Box::new(move |r| {
            io.record(k, bytes, clock.since(t), r.is_ok());
            done(r)
        })
    }

    /// This image's I/O statistics in this process (every handle of it shares nothing: per
    /// handle).
    pub fn io_stats(&self) -> crate::iostats::IoSnapshot {
        self.lock.io.snapshot()
    }

    /// Asynchronous write: `done` runs (on an engine thread) once the write is acknowledged.
    /// Concurrent submissions are committed together (group commit); use these from
    /// asynchronous front ends instead of a thread per request.
    pub fn submit_write(&self, off: u64, data: Vec<u8>, done: shale_engine::Done) {
        let done = self.counted(IoKind::Write, data.len() as u64, done);
        match self.writer() {
            Ok(v) => v.submit_write(off, data, done),
            Err(e) => done(Err(e)),
        }
    }
    /// [`submit_write`](Self::submit_write) from a caller with nothing else in flight on this
    /// image: committed on this thread when the engine is idle (see
    /// `shale_engine::Volume::submit_write_alone`).
    pub fn submit_write_alone(&self, off: u64, data: Vec<u8>, done: shale_engine::Done) {
        let done = self.counted(IoKind::Write, data.len() as u64, done);
        match self.writer() {
            Ok(v) => v.submit_write_alone(off, data, done),
            Err(e) => done(Err(e)),
        }
    }
    /// Asynchronous discard / write-zeroes.
    pub fn submit_zero(&self, off: u64, len: u64, done: shale_engine::Done) {
        let done = self.counted(IoKind::Discard, len, done);
        match self.writer() {
            Ok(v) => v.submit_zero(off, len, done),
            Err(e) => done(Err(e)),
        }
    }
    /// Asynchronous flush: `done` runs once every write acknowledged before it is durable.
    pub fn submit_flush(&self, done: shale_engine::Done) {
        let done = self.counted(IoKind::Flush, 0, done);
        if self.idle_without_lock() {
            return done(Ok(()));
        }
        match self.writer() {
            Ok(v) => v.submit_flush(done),
            Err(e) => done(Err(e)),
        }
    }
    /// [`submit_flush`](Self::submit_flush) from a caller with nothing else in flight: the
    /// log is synced on this thread when the engine is idle.
    pub fn submit_flush_alone(&self, done: shale_engine::Done) {
        let done = self.counted(IoKind::Flush, 0, done);
        if self.idle_without_lock() {
            return done(Ok(()));
        }
        match self.writer() {
            Ok(v) => v.submit_flush_alone(done),
            Err(e) => done(Err(e)),
        }
    }
    /// Collect garbage now (segments less live than `threshold`).
    pub fn gc(&self, threshold: f64) -> Result<shale_engine::GcReport> {
        self.writer()?.gc(threshold)
    }

    /// Seal and store everything written so far (what `close` does, without closing).
    pub fn flush_to_store(&self) -> Result<()> {
        if self.idle_without_lock() {
            return Ok(());
        }
        self.writer()?.flush_to_store()
    }
    /// Runs of allocated sectors (lba, count) in [lba, lba+n): for sparse copies.
    pub fn allocated(&self, lba: u64, n: u64) -> Vec<(u64, u64)> {
        self.vol().allocated(lba, n)
    }

    /// Runs of sectors (lba, count) in [lba, lba+n) that read as data, exactly: this image's
    /// data and, for a clone, the parent chain's data it did not overwrite or zero (for NBD
    /// block status; everything else reads as zeros).
    pub fn allocated_deep(&self, lba: u64, n: u64) -> Vec<(u64, u64)> {
        self.vol().allocated_deep(lba, n)
    }

    /// Like `allocated`, counting what a clone reads from its parent as allocated.
    pub fn allocated_with_parent(&self, lba: u64, n: u64) -> Vec<(u64, u64)> {
        let overlap = self.vol().parent_overlap().div_ceil(512);
        if overlap <= lba {
            return self.vol().allocated(lba, n);
        }
        // Everything below the overlap the clone did not zero may come from the parent.
        let mut out: Vec<(u64, u64)> = Vec::new();
        let end = lba + n;
        let mut push = |a: u64, len: u64| match out.last_mut() {
            Some(l) if l.0 + l.1 == a => l.1 += len,
            _ => out.push((a, len)),
        };
        let top = overlap.min(end);
        push(lba, top - lba);
        for (a, len) in self.vol().allocated(top, end.saturating_sub(top)) {
            push(a, len);
        }
        out
    }

    /// Resize. Shrinking requires `allow_shrink` (as `rbd resize --allow-shrink`).
    pub fn resize(&self, new_size: u64, allow_shrink: bool) -> Result<()> {
        if self.read_only {
            return Err(err!(ReadOnly, "image is open read-only"));
        }
        if new_size > crate::cluster::MAX_IMAGE_SIZE {
            return Err(err!(
                Invalid,
                "size {new_size} is larger than the maximum image size (512 TiB)"
            ));
        }
        let old = self.vol().size();
        if new_size < old && !allow_shrink {
            return Err(err!(
                Invalid,
                "shrinking from {old} to {new_size} bytes needs --allow-shrink"
            ));
        }
        // Shrink: trim the data durably before the header says so; grow: header first is
        // harmless either way since new space reads as zeros.
        self.writer()?.resize(new_size)?;
        // A clone shrunk below its overlap never sees the parent past the new end again.
        self.writer()?.cap_parent_overlap(new_size);
        self.update_header(|h| {
            h.size = new_size;
            if let Some(p) = h.parent.as_mut() {
                p.overlap = p.overlap.min(new_size);
            }
            Ok(())
        })
    }

    /// Enable or disable features with librbd's rules: layering, striping, deep-flatten (on),
    /// data-pool cannot change after creation; object-map and journaling need exclusive-lock,
    /// fast-diff needs object-map (and the reverse when disabling).
    pub fn update_features(&self, mask: u64, enable: bool) -> Result<()> {
        use crate::features::{
            DATA_POOL, DEEP_FLATTEN as DEEP, EXCLUSIVE_LOCK as EXCL, FAST_DIFF as FDIFF,
            JOURNALING as JOURNAL, LAYERING, OBJECT_MAP as OMAP, STRIPINGV2 as STRIPING,
        };
        const KNOWN: u64 = LAYERING | STRIPING | EXCL | OMAP | FDIFF | DEEP | JOURNAL | DATA_POOL;
        if mask & !KNOWN != 0 {
            return Err(err!(Invalid, "unknown feature bits {:#x}", mask & !KNOWN));
        }
        if mask & (LAYERING | STRIPING | DATA_POOL) != 0 || (enable && mask & DEEP != 0) {
            return Err(err!(Invalid, "layering, striping, data-pool and enabling deep-flatten can only be chosen at creation"));
        }
        self.update_header(|h| {
            let mut f = if enable {
                h.features | mask
            } else {
                h.features & !mask
            };
            if enable {
                if f & OMAP != 0 && f & EXCL == 0 {
                    return Err(err!(Invalid, "object-map requires exclusive-lock"));
                }
                if f & FDIFF != 0 && f & OMAP == 0 {
                    return Err(err!(Invalid, "fast-diff requires object-map"));
                }
                // Journaling is accepted as librbd does (it needs exclusive-lock); the bit
                // changes nothing here: every Shale image is journaled locally already.
                if f & JOURNAL != 0 && f & EXCL == 0 {
                    return Err(err!(Invalid, "journaling requires exclusive-lock"));
                }
            } else {
                if f & JOURNAL != 0 && mask & EXCL != 0 {
                    return Err(err!(
                        Invalid,
                        "cannot disable exclusive-lock while journaling is enabled"
                    ));
                }
                if f & OMAP != 0 && mask & EXCL != 0 {
                    return Err(err!(
                        Invalid,
                        "cannot disable exclusive-lock while object-map is enabled"
                    ));
                }
                if f & FDIFF != 0 && mask & OMAP != 0 {
                    return Err(err!(
                        Invalid,
                        "cannot disable object-map while fast-diff is enabled"
                    ));
                }
            }
            f &= KNOWN;
            h.features = f;
            Ok(())
        })
    }

    pub fn metadata_get(&self, key: &str) -> Result<String> {
        self.hdr()
            .0
            .metadata
            .get(key)
            .cloned()
            .ok_or_else(|| err!(NotFound, "no metadata key {key:?}"))
    }
    pub fn metadata_set(&self, key: &str, value: &str) -> Result<()> {
        if key.is_empty() {
            return Err(err!(Invalid, "metadata key is empty"));
        }
        self.update_header(|h| {
            h.metadata.insert(key.to_string(), value.to_string());
            Ok(())
        })
    }
    pub fn metadata_remove(&self, key: &str) -> Result<()> {
        self.update_header(|h| {
            h.metadata
                .remove(key)
                .map(|_| ())
                .ok_or_else(|| err!(NotFound, "no metadata key {key:?}"))
        })
    }
    pub fn metadata_list(&self) -> BTreeMap<String, String> {
        self.hdr().0.metadata.clone()
    }

    /// Flush and stop background work. Dropping an image does the same, logging errors.
    pub fn close(&self) -> Result<()> {
        self.vol().close()
    }
}
