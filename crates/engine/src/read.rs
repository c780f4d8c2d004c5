//! The read path: resolve sectors through the extent map, then copy from the open segment, a
//! sealed segment still in memory, or the store (ranged GET, page checksums verified).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shale_cache::{BlockKey, BLOCK};
use shale_error::{err, Result};
use shale_extmap::Target;
use shale_format::segment::{self, Header};
use shale_format::{PAGE, SECTOR};

use crate::upload::seg_key;
use crate::volume::{lock, Sealed, Shared, Volume};

/// Decoded headers of stored segments (their page checksums), bounded.
#[derive(Debug)]
pub(crate) struct SegIndexCache {
    cap: usize,
    map: Mutex<HashMap<u64, Arc<Header>>>,
}

impl SegIndexCache {
    pub(crate) fn new(cap: usize) -> Self {
        SegIndexCache {
            cap,
            map: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn get(&self, sh: &Shared, seq: u64) -> Result<Arc<Header>> {
        if let Some(h) = self.map.lock().unwrap_or_else(|p| p.into_inner()).get(&seq) {
            return Ok(h.clone());
        }
        let h = Arc::new(load_header(sh.store.as_ref(), &seg_key(&sh.prefix, seq))?);
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= self.cap {
            // Crude but bounded: drop an arbitrary half.
            let drop: Vec<u64> = m.keys().copied().take(self.cap / 2).collect();
            for k in drop {
                m.remove(&k);
            }
        }
        m.insert(seq, h.clone());
        Ok(h)
    }
}

/// Fetch and decode a segment header with one or two ranged GETs.
pub(crate) fn load_header(store: &dyn shale_store::ObjectStore, key: &str) -> Result<Header> {
    let first = store.get_range(key, 0..64 * 1024)?;
    let hl = segment::header_len(&first).map_err(|e| e.context(key))?;
    let buf = if hl as usize <= first.len() {
        first
    } else {
        store.get_range(key, 0..hl)?
    };
    if (buf.len() as u64) < hl {
        return Err(shale_error::Error::corruption(format!(
            "{key}: segment object is truncated inside its header ({} of {hl} bytes)",
            buf.len()
        )));
    }
    segment::decode_header(&buf).map_err(|e| e.context(key))
}

/// Where one run of sectors comes from.
enum Source {
    Zeros,
    /// Never written here: read through to the parent (its sector address).
    Parent(u64),
    Memory(Arc<Sealed>, usize),
    Store(u64, u32),
}

impl Volume {
    /// Read `buf.len()` bytes at `off`; returns how many were read (short at the image's end).
    pub fn read(&self, off: u64, buf: &mut [u8]) -> Result<usize> {
        let n = self.clamp(off, buf.len() as u64)? as usize;
        if n == 0 {
            return Ok(0);
        }
        let buf = &mut buf[..n];
        if off.is_multiple_of(SECTOR) && (n as u64).is_multiple_of(SECTOR) {
            self.sh.read_sectors(off / SECTOR, n as u64 / SECTOR, buf)?;
        } else {
            let first = off / SECTOR;
            let end = (off + n as u64).div_ceil(SECTOR);
            let mut tmp = vec![0u8; ((end - first) * SECTOR) as usize];
            self.sh.read_sectors(first, end - first, &mut tmp)?;
            let s = (off - first * SECTOR) as usize;
            buf.copy_from_slice(&tmp[s..s + n]);
        }
        Ok(n)
    }
}

/// Part of a stored segment's data area read in one request (see
/// [`Shared::read_segment_span`]).
pub(crate) struct SegmentSpan {
    key: String,
    h: Arc<segment::Header>,
    /// Byte offset of `bytes` in the data area (page aligned).
    p0: u64,
    bytes: bytes::Bytes,
    /// Pages already checked.
    checked: Vec<bool>,
}

impl SegmentSpan {
    /// Bytes read (held in memory while any view of them lives).
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The `len` sectors at sector `off` of the data area, their pages checked (each once).
    /// (A view of the span's buffer, no copy.)
    pub(crate) fn check(&mut self, off: u64, len: u64) -> Result<bytes::Bytes> {
        let (a, z) = (off * SECTOR - self.p0, (off + len) * SECTOR - self.p0);
        if z > self.bytes.len() as u64 {
            return Err(err!(Invalid, "{}: extent outside the span read", self.key));
        }
        let page = PAGE as u64;
        for p in a / page..z.div_ceil(page) {
            if !self.checked[p as usize] {
                let bytes = &self.bytes[(p * page) as usize..((p + 1) * page) as usize];
                segment::verify_pages(&self.h, ((self.p0 + p * page) / page) as u32, bytes)
                    .map_err(|e| e.context(&self.key))?;
                self.checked[p as usize] = true;
            }
        }
        Ok(self.bytes.slice(a as usize..z as usize))
    }
}

impl Shared {
    /// Read whole sectors into `out` (exactly `n * 512` bytes).
    pub(crate) fn read_sectors(&self, lba: u64, n: u64, out: &mut [u8]) -> Result<()> {
        self.read_sectors_with(lba, n, out, true)
    }

    /// [`Self::read_sectors`]; `admit` false: use the read cache but add nothing to it (GC
    /// reads data it is about to move: its cache entries would be dead at once).
    pub(crate) fn read_sectors_with(
        &self,
        lba: u64,
        n: u64,
        out: &mut [u8],
        admit: bool,
    ) -> Result<()> {
        let _guard = self.gc_guard.read().unwrap_or_else(|p| p.into_inner());
        let mut plan: Vec<(usize, usize, Source)> = Vec::new();
        let parent = self
            .parent
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Sectors wholly or partly below the overlap read through (a partial last sector of
        // the overlap is read from the parent, then its tail is zeroed below).
        let parent_end = parent
            .as_ref()
            .map(|p| p.overlap.div_ceil(SECTOR))
            .unwrap_or(0);
        {
            let g = lock(&self.inner);
            let open_seq = g.open.seq;
            g.map.for_each_in(lba, n, |m| {
                let at = ((m.lba - lba) * SECTOR) as usize;
                let len = (m.len * SECTOR) as usize;
                match m.target {
                    None if parent_end > m.lba => {
                        // Below the overlap the parent's data shows through; past it, zeros.
                        let n = m.len.min(parent_end - m.lba);
                        plan.push((at, (n * SECTOR) as usize, Source::Parent(m.lba)));
                        if n < m.len {
                            plan.push((
                                at + (n * SECTOR) as usize,
                                ((m.len - n) * SECTOR) as usize,
                                Source::Zeros,
                            ));
                        }
                    }
                    None | Some(Target::Zero) => plan.push((at, len, Source::Zeros)),
                    Some(Target::Data { seg, off }) => {
                        let boff = off as usize * SECTOR as usize;
                        if seg == open_seq {
                            g.open.data.copy_to(boff, &mut out[at..at + len]);
                        } else if let Some(s) = g.pending.get(&seg) {
                            plan.push((at, len, Source::Memory(s.clone(), boff)));
                        } else {
                            // Coalesce with the previous piece when contiguous in the segment.
                            if let Some((pat, plen, Source::Store(pseg, poff))) = plan.last_mut() {
                                if *pseg == seg
                                    && *pat + *plen == at
                                    && *poff as usize + *plen / 512 == off as usize
                                {
                                    *plen += len;
                                    return;
                                }
                            }
                            plan.push((at, len, Source::Store(seg, off)));
                        }
                    }
                }
            });
        }
        for (at, len, src) in plan {
            let dst = &mut out[at..at + len];
            match src {
                Source::Zeros => dst.fill(0),
                Source::Memory(s, boff) => s.data.copy_to(boff, dst),
                Source::Store(seg, off) => {
                    self.read_stored(seg, off, lba + at as u64 / SECTOR, dst, admit)?
                }
                Source::Parent(plba) => {
                    if let Some(p) = &parent {
                        p.vol.sh.read_sectors_clamped(plba, dst, p.overlap)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Read sectors from this (parent) volume for a child: bytes at or past `limit` (the
    /// overlap) or past this volume's size read as zeros.
    fn read_sectors_clamped(&self, lba: u64, dst: &mut [u8], limit: u64) -> Result<()> {
        let limit = limit.min(lock(&self.inner).size);
        let start = lba * SECTOR;
        let valid = limit.saturating_sub(start).min(dst.len() as u64) as usize;
        let whole = valid.div_ceil(SECTOR as usize);
        if whole > 0 {
            self.read_sectors(lba, whole as u64, &mut dst[..whole * SECTOR as usize])?;
        }
        dst[valid..].fill(0);
        Ok(())
    }

    /// Read from a stored segment (`dst` holds image sectors from `lba` on, stored contiguously
    /// from sector `off_sectors` of the segment's data): through the read cache when there is
    /// one, else fetch the covering pages; verify every page fetched against the segment's
    /// checksums; copy.
    /// The index of stored segment `seq`, refused when a newer writer stored it.
    fn stored_header(&self, seq: u64) -> Result<Arc<segment::Header>> {
        let h = self.index_cache.get(self, seq)?;
        if self.epoch != 0 && h.epoch > self.epoch {
            // A newer writer took the image over and stored its own segment under a number
            // this view knew as a fenced writer's: its bytes are not what this view's map
            // means (their checksums would still verify). A writer has lost the image; a
            // reader's view is out of date (NotFound makes the image layer reload it).
            let what = format!(
                "segment {seq:016x} now holds data of a newer writer (epoch {} > {})",
                h.epoch, self.epoch
            );
            return Err(if self.read_only {
                err!(NotFound, "{what}; the view is out of date")
            } else {
                err!(Fenced, "{what}; this handle has lost the image")
            });
        }
        Ok(h)
    }

    /// Bytes `a..z` (page aligned) of stored segment `seq`'s data area, in one request,
    /// checked against its page checksums.
    fn fetch_pages(&self, seq: u64, h: &segment::Header, a: u64, z: u64) -> Result<bytes::Bytes> {
        let b = self.fetch_unchecked(seq, h, a, z)?;
        segment::verify_pages(h, (a / PAGE as u64) as u32, &b)
            .map_err(|e| e.context(seg_key(&self.prefix, seq)))?;
        Ok(b)
    }

    /// [`fetch_pages`](Self::fetch_pages) without the checksum check: the caller checks the
    /// pages it uses.
    fn fetch_unchecked(
        &self,
        seq: u64,
        h: &segment::Header,
        a: u64,
        z: u64,
    ) -> Result<bytes::Bytes> {
        let key = seg_key(&self.prefix, seq);
        let b = self
            .store
            .get_range(&key, h.header_len + a..h.header_len + z)?;
        lock(&self.inner).stats.store_reads += 1;
        if b.len() as u64 != z - a {
            return Err(shale_error::Error::corruption(format!(
                "{key}: segment object is truncated ({} of {} bytes at data offset {a}); \
                 run `shale check` on the image",
                b.len(),
                z - a
            )));
        }
        Ok(b)
    }

    /// Sectors `lo..hi` of stored segment `seq`'s data area, in one request (GC reads each
    /// victim once instead of extent by extent). Not checked: the caller checks the pages it
    /// uses with [`SegmentSpan::check`] (dead data in between may be anything).
    pub(crate) fn read_segment_span(&self, seq: u64, lo: u64, hi: u64) -> Result<SegmentSpan> {
        let h = self.stored_header(seq)?;
        let (start, end) = (lo * SECTOR, hi * SECTOR);
        if end > h.data_len || start > end {
            return Err(err!(
                Corruption,
                "segment {seq:016x}: extent past the end of its data"
            ));
        }
        let p0 = start / PAGE as u64 * PAGE as u64;
        let p1 = end.div_ceil(PAGE as u64) * PAGE as u64;
        let bytes = self.fetch_unchecked(seq, &h, p0, p1)?;
        Ok(SegmentSpan {
            key: seg_key(&self.prefix, seq),
            checked: vec![false; ((p1 - p0) / PAGE as u64) as usize],
            h,
            p0,
            bytes,
        })
    }

    fn read_stored(
        &self,
        seq: u64,
        off_sectors: u32,
        lba: u64,
        dst: &mut [u8],
        admit: bool,
    ) -> Result<()> {
        let h = self.stored_header(seq)?;
        let start = off_sectors as u64 * SECTOR;
        let end = start + dst.len() as u64;
        if end > h.data_len {
            return Err(err!(
                Corruption,
                "segment {seq:016x}: extent past the end of its data"
            ));
        }
        let fetch = |a: u64, z: u64| -> Result<bytes::Bytes> { self.fetch_pages(seq, &h, a, z) };
        let large = dst.len() >= 1 << 20;
        let cache = self.cfg.cache.as_ref().filter(|_| !large);
        let Some((cache, owner)) = cache else {
            // No cache, or a large read that would only churn it: one ranged GET.
            let p0 = start / PAGE as u64 * PAGE as u64;
            let p1 = end.div_ceil(PAGE as u64) * PAGE as u64;
            let bytes = fetch(p0, p1)?;
            let s = (start - p0) as usize;
            dst.copy_from_slice(&bytes[s..s + dst.len()]);
            return Ok(());
        };
        // The cache's unit is one 4 KiB image page: a piece of `dst` that starts at an image
        // page boundary. Its bytes sit at some sector offset in the segment (records are
        // sector-aligned, not page-aligned), the same offset for every read of that page while
        // the map points there, so the key (segment, sector offset) finds it again. Bytes
        // before the first and after the last whole page of `dst` are not cached.
        let spp = BLOCK as u64 / SECTOR; // sectors per unit
        let n_sec = dst.len() as u64 / SECTOR;
        let first = lba.div_ceil(spp) * spp - lba; // sectors into dst of the first unit
        let units = if first + spp <= n_sec {
            (n_sec - first) / spp
        } else {
            0
        };
        // Pieces of dst: (start, end) in bytes, and the unit key when the piece is one unit.
        let mut pieces: Vec<(usize, usize, Option<BlockKey>)> = Vec::new();
        let unit_end = ((first + units * spp) * SECTOR) as usize;
        if units == 0 {
            pieces.push((0, dst.len(), None));
        } else {
            if first > 0 {
                pieces.push((0, (first * SECTOR) as usize, None));
            }
            for u in 0..units {
                let a = ((first + u * spp) * SECTOR) as usize;
                let seg_byte = start + a as u64;
                // The segment's own checksums of the pages under this unit: they change when
                // the segment's data does (a reused number never matches an old entry).
                let (p0, p1) = (
                    seg_byte / PAGE as u64,
                    (seg_byte + BLOCK as u64 - 1) / PAGE as u64,
                );
                let mut t = Vec::with_capacity(8);
                for p in p0..=p1 {
                    let c = h.page_crcs.get(p as usize).copied().unwrap_or(0);
                    t.extend_from_slice(&c.to_le_bytes());
                }
                let key = BlockKey {
                    owner: *owner,
                    seg: seq,
                    block: (seg_byte / SECTOR) as u32,
                    tag: crc32c::crc32c(&t),
                };
                pieces.push((a, a + BLOCK, Some(key)));
            }
            if unit_end < dst.len() {
                pieces.push((unit_end, dst.len(), None));
            }
        }
        let mut have = vec![false; pieces.len()];
        for (i, (a, z, key)) in pieces.iter().enumerate() {
            if let Some(k) = key {
                have[i] = cache.get(k, &mut dst[*a..*z]);
            }
        }
        // Runs of pieces not served from the cache: one ranged GET each (whole pages,
        // verified), then offer its units.
        let mut i = 0;
        while i < pieces.len() {
            if have[i] {
                i += 1;
                continue;
            }
            let j = have[i..]
                .iter()
                .position(|&x| x)
                .map_or(pieces.len(), |k| i + k);
            let (a, z) = (pieces[i].0, pieces[j - 1].1);
            let (sa, sz) = (start + a as u64, start + z as u64);
            let p0 = sa / PAGE as u64 * PAGE as u64;
            let p1 = sz.div_ceil(PAGE as u64) * PAGE as u64;
            let bytes = fetch(p0, p1)?;
            let s = (sa - p0) as usize;
            dst[a..z].copy_from_slice(&bytes[s..s + (z - a)]);
            for (pa, pz, key) in &pieces[i..j] {
                if let (Some(k), true) = (key, admit) {
                    cache.offer(k, &dst[*pa..*pz], false);
                }
            }
            i = j;
        }
        Ok(())
    }
}
