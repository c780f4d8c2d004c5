//! `Volume`: the open handle on one image's log (write path, flush, resize, close).

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use shale_error::{err, Result};
use shale_extmap::{ExtentMap, Target};
use shale_format::segment::{Entry, EntryKind};
use shale_format::SECTOR;
use shale_store::ObjectStore;

use crate::config::EngineConfig;
use crate::read::SegIndexCache;
use crate::upload::{self, Job};

/// A sealed segment that may not be in the store yet.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub seq: u64,
    pub entries: Vec<Entry>,
    pub data: Vec<u8>,
    /// A checkpoint to write once this segment is durable.
    pub checkpoint: Option<Vec<(u64, u64, Target)>>,
}

#[derive(Debug)]
pub(crate) struct OpenSeg {
    pub seq: u64,
    pub entries: Vec<Entry>,
    pub data: Vec<u8>,
}

/// Counters, for `info` and the benchmarks.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub segments_written: u64,
    pub bytes_to_store: u64,
    pub checkpoints_written: u64,
    pub extents: usize,
    pub map_bytes: usize,
    pub store_reads: u64,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub map: ExtentMap,
    pub size: u64,
    pub open: OpenSeg,
    /// Sealed and not yet stored, by seq.
    pub pending: BTreeMap<u64, Arc<Sealed>>,
    /// Every segment ≤ durable is stored.
    pub durable: u64,
    /// Stored segments above `durable` (uploads finish out of order).
    pub stored_ahead: std::collections::BTreeSet<u64>,
    /// The first failure of a background upload; the volume refuses further work.
    pub failed: Option<String>,
    pub segs_since_ckpt: u64,
    pub closing: bool,
    pub stats: Stats,
}

pub(crate) struct Shared {
    pub store: Arc<dyn ObjectStore>,
    /// `<pool>/images/<id>/`
    pub prefix: String,
    pub cfg: EngineConfig,
    pub epoch: u64,
    pub read_only: bool,
    pub inner: Mutex<Inner>,
    /// Signalled when `durable` advances, a failure is recorded or pending shrinks.
    pub progress: Condvar,
    /// Serialises writes so that read-modify-write of partial sectors is atomic.
    pub write_lock: Mutex<()>,
    pub index_cache: SegIndexCache,
    pub jobs: Mutex<std::sync::mpsc::Sender<Job>>,
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
    workers: Mutex<Vec<JoinHandle<()>>>,
}

pub(crate) fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock leaves the map in an unknown state only for the panicking
    // operation; the data structures themselves stay valid, so continue.
    m.lock().unwrap_or_else(|p| p.into_inner())
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
        if !(EngineConfig::MIN_SEGMENT_SIZE..=EngineConfig::MAX_SEGMENT_SIZE).contains(&cfg.segment_size) {
            return Err(err!(
                Invalid,
                "segment_size {} is out of range {}..={} bytes",
                cfg.segment_size,
                EngineConfig::MIN_SEGMENT_SIZE,
                EngineConfig::MAX_SEGMENT_SIZE
            ));
        }
        let rec = crate::recovery::recover(store.as_ref(), prefix, epoch, read_only)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let sh = Arc::new(Shared {
            store,
            prefix: prefix.to_string(),
            epoch,
            read_only,
            inner: Mutex::new(Inner {
                map: rec.map,
                size,
                open: OpenSeg { seq: rec.next_seq, entries: Vec::new(), data: Vec::new() },
                pending: BTreeMap::new(),
                durable: rec.next_seq - 1,
                stored_ahead: Default::default(),
                failed: None,
                segs_since_ckpt: rec.segs_replayed,
                closing: false,
                stats: Stats::default(),
            }),
            progress: Condvar::new(),
            write_lock: Mutex::new(()),
            index_cache: SegIndexCache::new(1024),
            jobs: Mutex::new(tx),
            cfg,
        });
        let workers = upload::spawn_workers(&sh, rx)?;
        Ok(Volume { sh, workers: Mutex::new(workers) })
    }

    pub fn size(&self) -> u64 {
        lock(&self.sh.inner).size
    }

    pub fn stats(&self) -> Stats {
        let g = lock(&self.sh.inner);
        let mut s = g.stats.clone();
        s.extents = g.map.len();
        s.map_bytes = g.map.mem_bytes();
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

    fn check_writable(&self, g: &Inner) -> Result<()> {
        if self.sh.read_only {
            return Err(err!(ReadOnly, "image is open read-only"));
        }
        if let Some(f) = &g.failed {
            return Err(err!(Io, "image is unusable after a store failure: {f}"));
        }
        if g.closing {
            return Err(err!(Invalid, "image is closed"));
        }
        Ok(())
    }

    fn check_range(size: u64, off: u64, len: u64) -> Result<()> {
        match off.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(err!(Invalid, "I/O at {off}+{len} is past the end of the image ({size} bytes)")),
        }
    }

    /// Write `data` at byte `off`. Any alignment; whole sectors are the fast path.
    pub fn write(&self, off: u64, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            Self::check_range(self.size(), off, 0)?;
            return Ok(());
        }
        let _w = self.sh.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        {
            let g = lock(&self.sh.inner);
            self.check_writable(&g)?;
            Self::check_range(g.size, off, data.len() as u64)?;
        }
        if off % SECTOR == 0 && data.len() as u64 % SECTOR == 0 {
            return self.append(off / SECTOR, Some(data), data.len() as u64 / SECTOR, EntryKind::Data);
        }
        // Read-modify-write of the partial first and last sectors.
        let first = off / SECTOR;
        let end = (off + data.len() as u64).div_ceil(SECTOR);
        let mut buf = vec![0u8; ((end - first) * SECTOR) as usize];
        let head = (off - first * SECTOR) as usize;
        self.read_sectors(first, 1, &mut buf[..SECTOR as usize])?;
        if end - first > 1 {
            let tail = buf.len() - SECTOR as usize;
            self.read_sectors(end - 1, 1, &mut buf[tail..])?;
        }
        buf[head..head + data.len()].copy_from_slice(data);
        self.append(first, Some(&buf), end - first, EntryKind::Data)
    }

    /// Make bytes [off, off+len) read as zeros. `discard` and `write_zeroes` both end here:
    /// whole sectors become an explicit-zero extent; partial edge sectors are rewritten.
    pub fn write_zeroes(&self, off: u64, len: u64) -> Result<()> {
        let _w = self.sh.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        {
            let g = lock(&self.sh.inner);
            self.check_writable(&g)?;
            Self::check_range(g.size, off, len)?;
        }
        self.zero_locked(off, len, EntryKind::Zero)
    }

    /// Zero [off, off+len) with the write lock held; full sectors get `kind` (Zero or Trim),
    /// partial edge sectors are rewritten with zeros. One atomic append.
    fn zero_locked(&self, off: u64, len: u64, kind: EntryKind) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = off + len;
        let first_full = off.div_ceil(SECTOR);
        let end_full = end / SECTOR;
        let mut head = None;
        let mut tail = None;
        if first_full > end_full {
            // Within one sector.
            head = Some(self.zeroed_sector(off, end)?);
        } else {
            if off % SECTOR != 0 {
                head = Some(self.zeroed_sector(off, first_full * SECTOR)?);
            }
            if end % SECTOR != 0 {
                tail = Some(self.zeroed_sector(end_full * SECTOR, end)?);
            }
        }
        let mut pieces: Vec<(u64, Option<&[u8]>, u64, EntryKind)> = Vec::new();
        if let Some((lba, buf)) = &head {
            pieces.push((*lba, Some(buf), 1, EntryKind::Data));
        }
        if end_full > first_full {
            pieces.push((first_full, None, end_full - first_full, kind));
        }
        if let Some((lba, buf)) = &tail {
            pieces.push((*lba, Some(buf), 1, EntryKind::Data));
        }
        self.append_all(&pieces)
    }

    /// The sector holding bytes [a, b) (which lie within one sector), with them zeroed.
    fn zeroed_sector(&self, a: u64, b: u64) -> Result<(u64, Vec<u8>)> {
        let lba = a / SECTOR;
        let mut buf = vec![0u8; SECTOR as usize];
        self.read_sectors(lba, 1, &mut buf)?;
        let s = (a - lba * SECTOR) as usize;
        buf[s..s + (b - a) as usize].fill(0);
        Ok((lba, buf))
    }

    /// Append one change to the open segment and the map, sealing as needed. Caller holds the
    /// write lock.
    fn append(&self, lba: u64, data: Option<&[u8]>, n: u64, kind: EntryKind) -> Result<()> {
        self.append_all(&[(lba, data, n, kind)])
    }

    /// Append the pieces of one client operation. They land in one segment whenever their data
    /// fits in one (the open segment is sealed first if needed), so that a crash keeps or loses
    /// the operation as a whole; only an operation larger than a segment is split.
    fn append_all(&self, pieces: &[(u64, Option<&[u8]>, u64, EntryKind)]) -> Result<()> {
        let seg_sectors = self.sh.cfg.segment_size / SECTOR;
        let data_sectors: u64 = pieces.iter().filter(|p| p.3 == EntryKind::Data).map(|p| p.2).sum();
        let mut g = self.wait_for_room()?;
        let used = g.open.data.len() as u64 / SECTOR;
        if used > 0 && used + data_sectors > seg_sectors && data_sectors <= seg_sectors {
            self.seal(&mut g);
        }
        for &(mut lba, data, mut n, kind) in pieces {
            let mut consumed = 0usize;
            while n > 0 {
                let used = g.open.data.len() as u64 / SECTOR;
                let take = match kind {
                    EntryKind::Data => {
                        if used >= seg_sectors {
                            self.seal(&mut g);
                            drop(g);
                            g = self.wait_for_room()?;
                            continue;
                        }
                        n.min(seg_sectors - used)
                    }
                    _ => n.min(u32::MAX as u64 / 2),
                };
                let seq = g.open.seq;
                match (kind, data) {
                    (EntryKind::Data, Some(d)) => {
                        let bytes = (take * SECTOR) as usize;
                        g.open.data.extend_from_slice(&d[consumed..consumed + bytes]);
                        consumed += bytes;
                        g.open.entries.push(Entry { lba, len: take as u32, off: used as u32, kind });
                        g.map.insert(lba, take, Target::Data { seg: seq, off: used as u32 });
                    }
                    (EntryKind::Zero, _) => {
                        g.open.entries.push(Entry { lba, len: take as u32, off: 0, kind });
                        g.map.insert(lba, take, Target::Zero);
                    }
                    (EntryKind::Trim, _) => {
                        g.open.entries.push(Entry { lba, len: take as u32, off: 0, kind });
                        g.map.remove(lba, take);
                    }
                    (EntryKind::Data, None) => return Err(err!(Invalid, "internal: data entry without data")),
                }
                lba += take;
                n -= take;
            }
        }
        // Keep segments from growing without bound in entries alone (many tiny zeroings).
        if g.open.data.len() as u64 >= self.sh.cfg.segment_size || g.open.entries.len() >= 1 << 16 {
            self.seal(&mut g);
        }
        Ok(())
    }

    /// Block while too many sealed segments wait for upload (back-pressure, bounded by the
    /// upload rate); fail if the volume failed.
    fn wait_for_room(&self) -> Result<MutexGuard<'_, Inner>> {
        let mut g = lock(&self.sh.inner);
        loop {
            self.check_writable(&g)?;
            if g.pending.len() < self.sh.cfg.max_pending {
                return Ok(g);
            }
            g = self.sh.progress.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Seal the open segment (if it has anything) and queue its upload.
    pub(crate) fn seal(&self, g: &mut Inner) {
        if g.open.entries.is_empty() {
            return;
        }
        let next = g.open.seq + 1;
        let open = std::mem::replace(&mut g.open, OpenSeg { seq: next, entries: Vec::new(), data: Vec::new() });
        g.segs_since_ckpt += 1;
        let checkpoint = if g.segs_since_ckpt >= self.sh.cfg.checkpoint_interval {
            g.segs_since_ckpt = 0;
            Some(g.map.iter().collect())
        } else {
            None
        };
        let sealed = Arc::new(Sealed { seq: open.seq, entries: open.entries, data: open.data, checkpoint });
        g.pending.insert(sealed.seq, sealed.clone());
        let tx = self.sh.jobs.lock().unwrap_or_else(|p| p.into_inner());
        if tx.send(Job::Upload(sealed)).is_err() {
            g.failed = Some("upload workers are gone".into());
        }
    }

    /// Make every write completed before this call durable in the store.
    pub fn flush(&self) -> Result<()> {
        if self.sh.read_only {
            return Ok(());
        }
        let mut g = lock(&self.sh.inner);
        self.seal(&mut g);
        let target = g.open.seq - 1;
        loop {
            if let Some(f) = &g.failed {
                return Err(err!(Io, "flush failed: {f}"));
            }
            if g.durable >= target {
                return Ok(());
            }
            g = self.sh.progress.wait(g).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Change the image size. Shrinking trims everything past the new end (durably, before
    /// returning), so that growing again later reads zeros there.
    pub fn resize(&self, new_size: u64) -> Result<()> {
        let _w = self.sh.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let old = {
            let g = lock(&self.sh.inner);
            self.check_writable(&g)?;
            g.size
        };
        if new_size < old {
            self.zero_locked(new_size, old - new_size, EntryKind::Trim)?;
            lock(&self.sh.inner).size = new_size;
            self.flush()?;
        } else {
            lock(&self.sh.inner).size = new_size;
        }
        Ok(())
    }

    /// Flush, stop the upload workers and write a final checkpoint if useful.
    pub fn close(&self) -> Result<()> {
        let res = self.flush();
        {
            let mut g = lock(&self.sh.inner);
            g.closing = true;
        }
        let tx = self.sh.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for _ in &workers {
            let _ = tx.send(Job::Stop);
        }
        drop(tx);
        for w in workers {
            let _ = w.join();
        }
        res
    }

    /// Byte range check for reads: how many bytes of `len` at `off` are inside the image.
    pub(crate) fn clamp(&self, off: u64, len: u64) -> Result<u64> {
        let size = self.size();
        if off > size {
            return Err(err!(Invalid, "read at {off} is past the end of the image ({size} bytes)"));
        }
        Ok(len.min(size - off))
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        let workers = self.workers.lock().map(|w| !w.is_empty()).unwrap_or(false);
        if workers {
            if let Err(e) = self.close() {
                tracing::warn!("closing {:?}: {e}", self.sh);
            }
        }
    }
}

/// Delete every object of an image's log (segments, checkpoints) under `prefix`.
pub fn destroy(store: &dyn ObjectStore, prefix: &str, mut progress: impl FnMut(u64, u64)) -> Result<()> {
    let objs = store.list(prefix)?;
    let total = objs.len() as u64;
    for (i, o) in objs.iter().enumerate() {
        store.delete(&o.key)?;
        progress(i as u64 + 1, total);
    }
    Ok(())
}
