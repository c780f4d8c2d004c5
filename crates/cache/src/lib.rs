//! The read cache: 64 KiB blocks of stored segments, kept in a local file, so that data read
//! from a slow or remote store is served locally the next time.
//!
//! ```text
//!  rcache-N.data  [ slot 0 | slot 1 | ... ]   64 KiB each; slot i holds one (owner, seg, block)
//!  rcache-N.idx   which key each slot holds (written on close and every 1024 admissions)
//!  rcache-N.lock  flock: one process per cache file; a second process takes N+1
//! ```
//! Keys are (owner, segment, block): the owner names the image's log (a hash of store and
//! prefix), so images that read the same segments — a clone and its parent — share entries.
//! The cache never decides what is correct: the engine verifies every block it gets from here
//! against the segment's page checksums and invalidates a block that fails. A stale index after
//! a crash is therefore harmless. Admission is scan-resistant: a block is cached on its second
//! miss within a window (a "ghost" list), and large sequential reads bypass the cache, so a
//! one-pass scan cannot evict the working set. Eviction is CLOCK.
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // a front end / tool / device layer: real time is fine here
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use shale_error::{err, Error, Result};

/// Bytes per cached block.
pub const BLOCK: usize = 64 << 10;

/// What a block is: block `block` (64 KiB units) of segment `seg`'s data area in log `owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub owner: u64,
    pub seg: u64,
    pub block: u32,
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
    /// Fill `out` (at most `BLOCK` bytes) with the cached block; false on a miss.
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
    slots: Vec<Option<(BlockKey, u32)>>,
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

const IDX_MAGIC: &[u8; 8] = b"SHALERCI";

impl FileCache {
    /// Open (or create) a cache of `size` bytes in `dir`, reusing what a previous process left
    /// there.
    pub fn open(dir: &Path, size: u64) -> Result<FileCache> {
        let n = (size / BLOCK as u64) as usize;
        if n < 4 {
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
                .filter_map(|(i, s)| s.map(|(k, _)| (k, i as u32)))
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
        let mut b = Vec::with_capacity(16 + slots.len() * 24);
        b.extend_from_slice(IDX_MAGIC);
        b.extend_from_slice(&(slots.len() as u64).to_le_bytes());
        for s in &slots {
            let (k, len) = s.unwrap_or((
                BlockKey {
                    owner: 0,
                    seg: 0,
                    block: 0,
                },
                0,
            ));
            b.extend_from_slice(&k.owner.to_le_bytes());
            b.extend_from_slice(&k.seg.to_le_bytes());
            b.extend_from_slice(&k.block.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
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

fn load_index(path: &Path, slots: &mut [Option<(BlockKey, u32)>]) {
    let Ok(b) = std::fs::read(path) else { return };
    let n = slots.len();
    if b.len() != 16 + n * 24 + 8 || &b[..8] != IDX_MAGIC || b[8..16] != (n as u64).to_le_bytes() {
        return;
    }
    let body = b.len() - 8;
    if crc(&b[..body]).to_le_bytes() != b[body..] {
        return;
    }
    let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or([0; 4]));
    for (i, s) in slots.iter_mut().enumerate() {
        let at = 16 + i * 24;
        let len = u32_at(at + 20);
        if len > 0 && len as usize <= BLOCK {
            *s = Some((
                BlockKey {
                    owner: u64_at(at),
                    seg: u64_at(at + 8),
                    block: u32_at(at + 16),
                },
                len,
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
        let slot = {
            let mut g = self.lock();
            match g.index.get(key).copied() {
                Some(s)
                    if g.slots[s as usize].is_some_and(|(_, len)| len as usize >= out.len()) =>
                {
                    g.refbit[s as usize] = true;
                    g.stats.hits += 1;
                    s
                }
                _ => {
                    g.stats.misses += 1;
                    return false;
                }
            }
        };
        // Read outside the lock; if the slot is reused meanwhile, the engine's checksum check
        // catches it and invalidates.
        self.data
            .read_exact_at(out, slot as u64 * BLOCK as u64)
            .is_ok()
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
            if let Some((old, _)) = g.slots[s].take() {
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
                g.slots[slot] = Some((*key, data.len() as u32));
                g.refbit[slot] = true;
                g.index.insert(*key, slot as u32);
                // Processes that never drop the cache (a C client) still leave a usable index.
                let due = g.since_save >= 1024
                    || (g.since_save > 0 && g.last_save.elapsed().as_secs() >= 2);
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
