//! The read cache: 4 KiB units of stored segments, kept in a local file, so that data read
//! from a slow or remote store is served locally the next time.
//!
//! ```text
//!  rcache-N.data  [ slot 0 | slot 1 | ... ]   4 KiB each; slot i holds one key's unit
//!  rcache-N.idx   which key (and data checksum) each slot holds (on close, at most every 2 s)
//!  rcache-N.lock  flock: one process per cache file; a second process takes N+1
//! ```
//! Keys are (owner, segment, sector offset, tag): the owner names the image's log (a hash of
//! store and prefix), so images that read the same segments — a clone and its parent — share
//! entries; the engine picks the offsets (where 4 KiB image pages start inside the segment, so
//! one cached unit is one image page however the log packed it) and the tag (a digest of the
//! segment's own page checksums over the unit, so a segment number reused for other data
//! never matches an old entry).
//!
//! The unit is 4 KiB, not a larger block: random writes scatter an image over many segments in
//! 4 KiB pieces, and a cache of larger segment blocks then holds mostly bytes nobody reads
//! (neighbours in the log, dead data) and thrashes; 4 KiB units hold as much live data as the
//! cache's size, however fragmented the log is.
//!
//! Every unit's CRC-32C is recorded when it is admitted and checked on every hit: a damaged or
//! stale slot (a crash between writing a slot and saving the index, a scribbled file) is a
//! miss and is dropped, never data. Admission is scan-resistant: once the cache is full, a
//! unit is cached on its second miss within a window (a "ghost" list), and large sequential
//! reads bypass the cache, so a one-pass scan cannot evict the working set. Eviction is CLOCK.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // a front end / tool / device layer: real time is fine here
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use shale_error::{err, Error, Result};

/// Bytes per cached block: one image page.
pub const BLOCK: usize = 4096;

/// Smallest cache size accepted.
pub const MIN_SIZE: u64 = 256 << 10;

/// What a block is: the `BLOCK` bytes at sector offset `block` of segment `seg`'s data area in
/// log `owner`, as identified by `tag` (the engine's digest of the segment's checksums there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BlockKey {
    pub owner: u64,
    pub seg: u64,
    pub block: u32,
    pub tag: u32,
}

/// Counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub capacity: u64,
    pub hits: u64,
    pub misses: u64,
    pub admitted: u64,
    pub bypassed: u64,
    pub evicted: u64,
    pub invalidated: u64,
}

impl CacheStats {
    pub fn hit_ratio(&self) -> f64 {
        let t = self.hits + self.misses;
        if t == 0 {
            0.0
        } else {
            self.hits as f64 / t as f64
        }
    }
}

/// The cache as the engine sees it.
pub trait BlockCache: Send + Sync + std::fmt::Debug {
    /// Fill `out` (at most `BLOCK` bytes) with the cached block; false on a miss (also when
    /// the slot's bytes no longer match the checksum recorded at admission).
    fn get(&self, key: &BlockKey, out: &mut [u8]) -> bool;
    /// Offer a block just read from the store; `large` marks part of a big sequential read.
    fn offer(&self, key: &BlockKey, data: &[u8], large: bool);
    /// Forget a block (it failed verification).
    fn invalidate(&self, key: &BlockKey);
    fn stats(&self) -> CacheStats;
}

#[derive(Debug)]
struct St {
    index: HashMap<BlockKey, u32>,
    /// Per slot: its key, its length and the CRC-32C of its bytes.
    slots: Vec<Option<(BlockKey, u32, u32)>>,
    refbit: Vec<bool>,
    hand: usize,
    ghost: HashSet<BlockKey>,
    ghost_order: VecDeque<BlockKey>,
    stats: CacheStats,
    since_save: u32,
    last_save: std::time::Instant,
}

/// A cache in files under a directory.
#[derive(Debug)]
pub struct FileCache {
    data: File,
    idx_path: PathBuf,
    _lock: File,
    st: Mutex<St>,
}

// Version 2: 4 KiB slots, keys with a tag, a checksum per slot (version 1 held 64 KiB
// blocks; its index is ignored).
const IDX_MAGIC: &[u8; 8] = b"SHALERC2";
/// Bytes per slot in the index: owner, seg, block, tag, len, crc.
const ENTRY: usize = 8 + 8 + 4 + 4 + 4 + 4;

impl FileCache {
    /// Open (or create) a cache of `size` bytes in `dir`, reusing what a previous process left
    /// there.
    pub fn open(dir: &Path, size: u64) -> Result<FileCache> {
        let n = (size / BLOCK as u64) as usize;
        if size < MIN_SIZE {
            return Err(err!(
                Invalid,
                "read cache size {size} is too small (at least 256K)"
            ));
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        for i in 0..64 {
            let lock_path = dir.join(format!("rcache-{i}.lock"));
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| Error::io(format!("cannot open {}", lock_path.display()), e))?;
            if fs4::FileExt::try_lock(&lock).is_err() {
                continue; // another process has this one
            }
            let data_path = dir.join(format!("rcache-{i}.data"));
            let data = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&data_path)
                .map_err(|e| Error::io(format!("cannot open {}", data_path.display()), e))?;
            data.set_len(n as u64 * BLOCK as u64)
                .map_err(|e| Error::io("sizing the read cache", e))?;
            let idx_path = dir.join(format!("rcache-{i}.idx"));
            let mut slots = vec![None; n];
            load_index(&idx_path, &mut slots);
            let index = slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.map(|(k, _, _)| (k, i as u32)))
                .collect();
            let st = St {
                index,
                slots,
                refbit: vec![false; n],
                hand: 0,
                ghost: HashSet::new(),
                ghost_order: VecDeque::new(),
                stats: CacheStats {
                    capacity: n as u64 * BLOCK as u64,
                    ..Default::default()
                },
                since_save: 0,
                last_save: std::time::Instant::now(),
            };
            return Ok(FileCache {
                data,
                idx_path,
                _lock: lock,
                st: Mutex::new(st),
            });
        }
        Err(err!(
            Busy,
            "all 64 read cache files in {} are in use",
            dir.display()
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write the index now (also done on drop).
    pub fn save(&self) {
        let slots = self.lock().slots.clone();
        let mut b = Vec::with_capacity(16 + slots.len() * ENTRY);
        b.extend_from_slice(IDX_MAGIC);
        b.extend_from_slice(&(slots.len() as u64).to_le_bytes());
        for s in &slots {
            let (k, len, sum) = s.unwrap_or_default();
            b.extend_from_slice(&k.owner.to_le_bytes());
            b.extend_from_slice(&k.seg.to_le_bytes());
            b.extend_from_slice(&k.block.to_le_bytes());
            b.extend_from_slice(&k.tag.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&sum.to_le_bytes());
        }
        let crc = crc(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let tmp = self.idx_path.with_extension("idx.tmp");
        if std::fs::write(&tmp, &b)
            .and_then(|_| std::fs::rename(&tmp, &self.idx_path))
            .is_err()
        {
            tracing::warn!("cannot save read cache index {}", self.idx_path.display());
        }
    }
}

fn crc(b: &[u8]) -> u64 {
    // FNV-1a: the index only needs to detect a torn or foreign file; the data is verified by
    // the engine against segment checksums anyway.
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn load_index(path: &Path, slots: &mut [Option<(BlockKey, u32, u32)>]) {
    let Ok(b) = std::fs::read(path) else { return };
    let n = slots.len();
    if b.len() != 16 + n * ENTRY + 8 || &b[..8] != IDX_MAGIC || b[8..16] != (n as u64).to_le_bytes()
    {
        return;
    }
    let body = b.len() - 8;
    if crc(&b[..body]).to_le_bytes() != b[body..] {
        return;
    }
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
    for (i, s) in slots.iter_mut().enumerate() {
        let at = 16 + i * ENTRY;
        let len = u32_at(at + 24);
        if len > 0 && len as usize <= BLOCK {
            *s = Some((
                BlockKey {
                    owner: u64_at(at),
                    seg: u64_at(at + 8),
                    block: u32_at(at + 16),
                    tag: u32_at(at + 20),
                },
                len,
                u32_at(at + 28),
            ));
        }
    }
}

impl Drop for FileCache {
    fn drop(&mut self) {
        self.save();
    }
}

impl BlockCache for FileCache {
    fn get(&self, key: &BlockKey, out: &mut [u8]) -> bool {
        let (slot, sum) = {
            let mut g = self.lock();
            let found = g.index.get(key).copied().and_then(|s| {
                g.slots[s as usize]
                    .filter(|&(_, len, _)| len as usize == out.len())
                    .map(|(_, _, sum)| (s, sum))
            });
            match found {
                Some((s, sum)) => {
                    g.refbit[s as usize] = true;
                    (s, sum)
                }
                None => {
                    g.stats.misses += 1;
                    return false;
                }
            }
        };
        // Read outside the lock; a slot reused or torn meanwhile fails its checksum.
        let ok = self
            .data
            .read_exact_at(out, slot as u64 * BLOCK as u64)
            .is_ok()
            && crc32c::crc32c(out) == sum;
        let mut g = self.lock();
        if ok {
            g.stats.hits += 1;
        } else {
            g.stats.misses += 1;
            // Drop it, unless the slot already holds something else.
            if g.index.get(key) == Some(&slot)
                && g.slots[slot as usize].is_some_and(|(_, _, s)| s == sum)
            {
                g.index.remove(key);
                g.slots[slot as usize] = None;
                g.stats.invalidated += 1;
            }
        }
        ok
    }

    fn offer(&self, key: &BlockKey, data: &[u8], large: bool) {
        if data.is_empty() || data.len() > BLOCK {
            return;
        }
        let slot = {
            let mut g = self.lock();
            if large {
                g.stats.bypassed += 1;
                return;
            }
            if g.index.contains_key(key) {
                return;
            }
            // While there is free room, caching costs no eviction: admit at once. Once full,
            // a block must be missed twice in a while to displace another.
            let has_room = g.index.len() < g.slots.len();
            if !g.ghost.remove(key) && !has_room {
                // First miss: remember it; cache it if it is missed again soon.
                g.ghost.insert(*key);
                g.ghost_order.push_back(*key);
                let cap = g.slots.len();
                while g.ghost_order.len() > cap {
                    if let Some(old) = g.ghost_order.pop_front() {
                        g.ghost.remove(&old);
                    }
                }
                g.stats.bypassed += 1;
                return;
            }
            // CLOCK: find a slot whose reference bit is clear.
            let n = g.slots.len();
            let mut s = g.hand;
            loop {
                if g.slots[s].is_none() || !g.refbit[s] {
                    break;
                }
                g.refbit[s] = false;
                s = (s + 1) % n;
            }
            g.hand = (s + 1) % n;
            if let Some((old, _, _)) = g.slots[s].take() {
                g.index.remove(&old);
                g.stats.evicted += 1;
            }
            g.stats.admitted += 1;
            g.since_save += 1;
            s
        };
        if self
            .data
            .write_all_at(data, slot as u64 * BLOCK as u64)
            .is_ok()
        {
            let save = {
                let mut g = self.lock();
                g.slots[slot] = Some((*key, data.len() as u32, crc32c::crc32c(data)));
                g.refbit[slot] = true;
                g.index.insert(*key, slot as u32);
                // Processes that never drop the cache (a C client) still leave a usable index.
                // Time-bounded rather than every N admissions: the index of a 1 GiB cache is
                // 8 MiB, and a warm-up admits thousands of units a second.
                let due = g.since_save > 0 && g.last_save.elapsed().as_secs() >= 2;
                if due {
                    g.since_save = 0;
                    g.last_save = std::time::Instant::now();
                }
                due
            };
            if save {
                self.save();
            }
        }
    }

    fn invalidate(&self, key: &BlockKey) {
        let mut g = self.lock();
        if let Some(s) = g.index.remove(key) {
            g.slots[s as usize] = None;
            g.stats.invalidated += 1;
        }
    }

    fn stats(&self) -> CacheStats {
        self.lock().stats.clone()
    }
}
