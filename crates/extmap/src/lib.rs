//! The extent map: for every 512-byte sector of a virtual disk, where its newest data lives.
//!
//! Built to stay small and fast at tens of millions of extents: about 17 bytes of memory per
//! extent and a few hundred nanoseconds per lookup or insert at 10 million extents (see
//! `examples/extmap_stats.rs` and `benches/extmap.rs`).
//!
//! # Layout
//!
//! ```text
//!   firsts:  [ 0      | 9000   | 52000  | ... ]      first lba of each chunk (binary search 1)
//!              |        |        |
//!   chunks:  [ Vec    | Vec    | Vec    | ... ]      each <= `cap` entries (binary search 2)
//!              |
//!              v
//!            [ e0 | e1 | e2 | ... | e(n-1) | spare ]  spare < one `grow` step (plus slack)
//!
//!   entry (16 bytes, see entry.rs):
//!     key = lba:40 | len:24          val = seg:40 | off:24     (seg all-ones = Zero)
//! ```
//!
//! # Invariants (checked by [`ExtentMap::check_invariants`])
//!
//! * Entries, read chunk after chunk, are sorted by lba and never overlap; `len >= 1`.
//! * No chunk is empty, none holds more than `cap` entries, and `firsts[c]` is the lba of
//!   `chunks[c][0]`.
//! * Chunk capacity grows in steps of `grow` entries (not by doubling) and is trimmed after
//!   removals, so memory follows the number of entries, not the B-tree-like fill factor.
//! * Adjacent entries *may* be mergeable (merging is opportunistic, done on insert).
//!
//! # Why this shape
//!
//! A `BTreeMap<u64, 24-byte value>` costs ~60+ bytes per extent. Packed sorted arrays cost
//! 16 bytes plus slack; the chunking bounds the memmove of an insert to one chunk (≤ 8 KiB)
//! and the two-level index keeps searches to ~24 comparisons at 10M extents. Inserting at the
//! very end of a full chunk starts a new chunk instead of splitting, so sequential writes and
//! checkpoint loads leave every chunk full.
//!
//! # Limits
//!
//! Sector addresses satisfy `lba + len <= MAX_LBA` (2^40 sectors, 512 TiB); segments are
//! `<= MAX_SEG`; a Data extent satisfies `off + len <= SEG_SECTORS` (2^24 sectors, 8 GiB of
//! segment data). The engine guarantees these. Violations are `debug_assert`ed; in release
//! builds they never panic: ranges are clipped to `MAX_LBA` and fields are masked.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod entry;

use entry::{encode_target, val_at, Entry, HIGH_MASK, LOW_BITS, MAX_ENTRY_LEN, ZERO_SEG};
use std::collections::HashMap;
use std::fmt;

/// Exclusive upper bound of mapped sectors: every `lba + len` must be `<= MAX_LBA` (2^40).
pub const MAX_LBA: u64 = 1 << 40;
/// Largest valid segment sequence number (2^40 - 2; all-ones is reserved for [`Target::Zero`]).
pub const MAX_SEG: u64 = ZERO_SEG - 1;
/// Largest valid offset in a segment's data area, in sectors (2^24 - 1).
pub const MAX_OFF: u32 = (1 << 24) - 1;
/// A Data extent must satisfy `off + len <= SEG_SECTORS` (2^24 sectors = 8 GiB).
pub const SEG_SECTORS: u64 = 1 << 24;
/// Default maximum number of entries per chunk (8 KiB of entries). Measured at 10M random
/// extents: 256 inserts fastest but its chunk table grows too fast past that; 1024+ pays more
/// memmove per insert.
pub const DEFAULT_CHUNK_ENTRIES: usize = 512;

/// Where a run of sectors lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// In segment `seg` (sequence number, `<= MAX_SEG`), starting `off` sectors into its data
    /// area (`<= MAX_OFF`).
    Data {
        /// Segment sequence number.
        seg: u64,
        /// Offset into the segment's data area, in sectors.
        off: u32,
    },
    /// Explicitly zero (discard / write-zeroes). Distinct from a hole: a hole may fall through
    /// to a parent image later; Zero does not.
    Zero,
}

/// A piece of a lookup result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First sector of the piece.
    pub lba: u64,
    /// Length of the piece in sectors (>= 1).
    pub len: u64,
    /// Where the piece's first sector lives; `None` is a hole (never written).
    pub target: Option<Target>,
}

/// Sector → location map. See the crate docs for the layout and invariants.
#[derive(Clone)]
pub struct ExtentMap {
    /// `firsts[c]` is the lba of `chunks[c][0]`.
    firsts: Vec<u64>,
    chunks: Vec<Vec<Entry>>,
    /// Total number of entries.
    count: usize,
    /// Maximum entries per chunk.
    cap: usize,
    /// Capacity step of a chunk, in entries.
    grow: usize,
}

impl Default for ExtentMap {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ExtentMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExtentMap")
            .field("entries", &self.count)
            .field("chunks", &self.chunks.len())
            .field("mem_bytes", &self.mem_bytes())
            .finish()
    }
}

/// `n` rounded up to a multiple of `step` (`step >= 1`).
#[inline]
fn round_up(n: usize, step: usize) -> usize {
    n.div_ceil(step) * step
}

impl ExtentMap {
    /// An empty map with the default chunk size.
    pub fn new() -> Self {
        Self::with_chunk_capacity(DEFAULT_CHUNK_ENTRIES)
    }

    /// An empty map whose chunks hold at most `entries` entries (at least 4). Small chunks are
    /// for tests that want many chunk boundaries; the default suits large maps.
    pub fn with_chunk_capacity(entries: usize) -> Self {
        let cap = entries.max(4);
        ExtentMap {
            firsts: Vec::new(),
            chunks: Vec::new(),
            count: 0,
            cap,
            grow: (cap / 16).max(1),
        }
    }

    /// Number of stored entries (an extent longer than 2^24 - 1 sectors takes several).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of chunks (for statistics).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Forget every extent and release the memory.
    pub fn clear(&mut self) {
        self.firsts = Vec::new();
        self.chunks = Vec::new();
        self.count = 0;
    }

    /// Heap bytes in use, counting capacities (not lengths) of every allocation.
    pub fn mem_bytes(&self) -> usize {
        let entries: usize = self.chunks.iter().map(Vec::capacity).sum();
        self.firsts.capacity() * std::mem::size_of::<u64>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<Entry>>()
            + entries * std::mem::size_of::<Entry>()
    }

    /// Map `[lba, lba + len)` to `target`, replacing whatever was there. When `target` is Data,
    /// the piece starting `k` sectors into the new extent lives at `off + k`. Contiguous
    /// neighbours (same segment and consecutive offsets, or both Zero) are merged.
    ///
    /// Limits: `lba + len <= MAX_LBA`, `seg <= MAX_SEG`, `off + len <= SEG_SECTORS`.
    /// Violations are debug-asserted; release builds clip the range to `MAX_LBA` and mask the
    /// fields instead of panicking.
    pub fn insert(&mut self, lba: u64, len: u64, target: Target) {
        debug_assert!(
            lba.checked_add(len).is_some_and(|e| e <= MAX_LBA),
            "extent [{lba}, +{len}) beyond MAX_LBA"
        );
        if let Target::Data { seg, off } = target {
            debug_assert!(seg <= MAX_SEG, "segment {seg} beyond MAX_SEG");
            debug_assert!(
                u64::from(off) + len <= SEG_SECTORS,
                "data extent off={off} len={len} beyond SEG_SECTORS"
            );
        }
        let Some((start, end)) = clip(lba, len) else {
            return;
        };
        let val = encode_target(target);
        if self.replace_exact(start, end, val) {
            return;
        }
        let mut hint = self.punch(start, end);
        let mut pos = start;
        let mut v = val;
        while pos < end {
            let n = (end - pos).min(MAX_ENTRY_LEN);
            self.place(pos, n, v, hint.take());
            pos += n;
            v = val_at(v, n);
        }
    }

    /// Make `[lba, lba + len)` a hole again (shrink / truncate).
    pub fn remove(&mut self, lba: u64, len: u64) {
        if let Some((start, end)) = clip(lba, len) {
            let _ = self.punch(start, end);
        }
    }

    /// Cover `[lba, lba + len)` exactly with pieces in ascending order, holes included as
    /// `target: None`. Adjacent pieces are not necessarily merged.
    pub fn lookup(&self, lba: u64, len: u64) -> Vec<Mapping> {
        let mut out = Vec::new();
        self.for_each_in(lba, len, |m| out.push(m));
        out
    }

    /// Like [`lookup`](Self::lookup), calling `f` for each piece without allocating.
    pub fn for_each_in(&self, lba: u64, len: u64, mut f: impl FnMut(Mapping)) {
        if len == 0 {
            return;
        }
        let end = lba.saturating_add(len);
        let mut pos = lba;
        if lba < MAX_LBA && !self.chunks.is_empty() {
            let (mut c, mut i) = self.locate(lba);
            if i > 0 && self.chunks[c][i - 1].end() > lba {
                i -= 1;
            }
            'chunks: while let Some(chunk) = self.chunks.get(c) {
                for &e in &chunk[i..] {
                    let s = e.lba();
                    if s >= end {
                        break 'chunks;
                    }
                    if s > pos {
                        f(hole(pos, s));
                        pos = s;
                    }
                    let stop = e.end().min(end);
                    f(Mapping {
                        lba: pos,
                        len: stop - pos,
                        target: Some(e.target_at(pos - s)),
                    });
                    pos = stop;
                    if pos == end {
                        return;
                    }
                }
                c += 1;
                i = 0;
            }
        }
        if pos < end {
            f(hole(pos, end));
        }
    }

    /// The target of one sector, `None` for a hole.
    pub fn get(&self, lba: u64) -> Option<Target> {
        let mut t = None;
        self.for_each_in(lba, 1, |m| t = m.target);
        t
    }

    /// All stored extents (no holes) as `(lba, len, target)` in lba order, e.g. for writing a
    /// checkpoint. Extents longer than 2^24 - 1 sectors appear as several consecutive items.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, Target)> + '_ {
        self.chunks
            .iter()
            .flatten()
            .map(|e| (e.lba(), e.len(), e.target()))
    }

    /// Sectors mapped to each Data segment (Zero extents are not counted): the live data GC
    /// weighs against a segment's size.
    pub fn live_sectors_by_segment(&self) -> HashMap<u64, u64> {
        let mut live = HashMap::new();
        for e in self.chunks.iter().flatten() {
            if let Target::Data { seg, .. } = e.target() {
                *live.entry(seg).or_insert(0) += e.len();
            }
        }
        live
    }

    /// Verify the structural invariants; a description of the first violation otherwise.
    /// Costs O(entries): meant for tests and debugging.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.firsts.len() != self.chunks.len() {
            return Err(format!(
                "{} firsts for {} chunks",
                self.firsts.len(),
                self.chunks.len()
            ));
        }
        let mut prev_end = 0u64;
        let mut count = 0usize;
        for (c, chunk) in self.chunks.iter().enumerate() {
            let Some(first) = chunk.first() else {
                return Err(format!("chunk {c} is empty"));
            };
            if chunk.len() > self.cap {
                return Err(format!("chunk {c} holds {} > {}", chunk.len(), self.cap));
            }
            if self.firsts[c] != first.lba() {
                return Err(format!(
                    "firsts[{c}]={} but chunk starts at {}",
                    self.firsts[c],
                    first.lba()
                ));
            }
            for (i, e) in chunk.iter().enumerate() {
                if e.len() == 0 {
                    return Err(format!("empty entry at chunk {c} index {i}"));
                }
                if (c, i) != (0, 0) && e.lba() < prev_end {
                    return Err(format!(
                        "entry at lba {} overlaps previous ending at {prev_end}",
                        e.lba()
                    ));
                }
                if e.end() > MAX_LBA {
                    return Err(format!("entry at lba {} beyond MAX_LBA", e.lba()));
                }
                prev_end = e.end();
            }
            count += chunk.len();
        }
        if count != self.count {
            return Err(format!("count {} but {count} entries", self.count));
        }
        Ok(())
    }

    // ----- internals -------------------------------------------------------------------

    /// Position of `lba` (`< MAX_LBA`; map non-empty): `c` is the last chunk whose first lba is
    /// `<= lba` (or 0), `i` the index in it of the first entry with lba `>= lba` (may equal the
    /// chunk's length). An entry containing `lba` can only be at `(c, i)` or `(c, i - 1)`.
    #[inline]
    fn locate(&self, lba: u64) -> (usize, usize) {
        let c = self.firsts.partition_point(|&f| f <= lba).saturating_sub(1);
        let key = lba << LOW_BITS;
        let i = self.chunks[c].partition_point(|e| e.key < key);
        (c, i)
    }

    /// The entry position at or after `(c, i)`, stepping into the next chunk when `i` is past
    /// the end of chunk `c`.
    #[inline]
    fn succ_pos(&self, c: usize, i: usize) -> Option<(usize, usize)> {
        if i < self.chunks[c].len() {
            Some((c, i))
        } else if c + 1 < self.chunks.len() {
            Some((c + 1, 0))
        } else {
            None
        }
    }

    /// Make room for `extra` more entries in chunk `c`, growing in `grow` steps.
    #[inline]
    fn reserve(&mut self, c: usize, extra: usize) {
        let v = &mut self.chunks[c];
        let need = v.len() + extra;
        if need > v.capacity() {
            let target = round_up(need, self.grow).min(self.cap).max(need);
            v.reserve_exact(target - v.len());
        }
    }

    /// Give back spare capacity of chunk `c` beyond two `grow` steps.
    fn trim(&mut self, c: usize) {
        let grow = self.grow;
        let v = &mut self.chunks[c];
        if v.capacity() - v.len() > 2 * grow {
            v.shrink_to(round_up(v.len(), grow));
        }
    }

    /// Insert a new chunk holding just `e` at chunk index `at`.
    fn new_chunk(&mut self, at: usize, e: Entry) {
        let mut v = Vec::with_capacity(self.grow);
        v.push(e);
        self.chunks.insert(at, v);
        self.firsts.insert(at, e.lba());
        self.count += 1;
    }

    /// Insert `e` at index `i` of chunk `c` (the position that keeps the order), splitting the
    /// chunk when it is full.
    fn insert_at(&mut self, c: usize, i: usize, e: Entry) {
        let n = self.chunks[c].len();
        if n < self.cap {
            self.reserve(c, 1);
            self.chunks[c].insert(i, e);
            if i == 0 {
                self.firsts[c] = e.lba();
            }
            self.count += 1;
            return;
        }
        if i == n {
            // Past the end of a full chunk: use the next chunk if it has room, otherwise start
            // a new one so this one stays full (sequential writes fill chunks completely).
            if c + 1 < self.chunks.len() && self.chunks[c + 1].len() < self.cap {
                self.insert_at(c + 1, 0, e);
            } else {
                self.new_chunk(c + 1, e);
            }
            return;
        }
        if i == 0 {
            if c > 0 && self.chunks[c - 1].len() < self.cap {
                let at = self.chunks[c - 1].len();
                self.insert_at(c - 1, at, e);
            } else {
                self.new_chunk(c, e);
            }
            return;
        }
        let mid = n / 2;
        let mut right = Vec::with_capacity(round_up(n - mid + 1, self.grow).min(self.cap));
        right.extend_from_slice(&self.chunks[c][mid..]);
        self.chunks[c].truncate(mid);
        self.trim(c);
        self.firsts.insert(c + 1, right[0].lba());
        self.chunks.insert(c + 1, right);
        if i <= mid {
            self.insert_at(c, i, e);
        } else {
            self.insert_at(c + 1, i - mid, e);
        }
    }

    /// Remove the entry at `(c, i)`, keeping the chunk invariants.
    fn remove_at(&mut self, c: usize, i: usize) {
        self.chunks[c].remove(i);
        self.count -= 1;
        if self.chunks[c].is_empty() {
            self.chunks.remove(c);
            self.firsts.remove(c);
            return;
        }
        if i == 0 {
            self.firsts[c] = self.chunks[c][0].lba();
        }
        let _ = self.settle(c);
    }

    /// After chunk `c` shrank: merge it into a neighbour when it became sparse, else trim its
    /// spare capacity. `c` must be non-empty. Returns whether `c` was merged into `c - 1`
    /// (so its entries moved); merging `c + 1` into `c` moves nothing already in `c`.
    fn settle(&mut self, c: usize) -> bool {
        let n = self.chunks[c].len();
        if n >= (self.cap / 4).max(2) {
            self.trim(c);
            return false;
        }
        let limit = self.cap * 3 / 4;
        if c > 0 && self.chunks[c - 1].len() + n <= limit {
            let moved = self.chunks.remove(c);
            self.firsts.remove(c);
            self.reserve(c - 1, moved.len());
            self.chunks[c - 1].extend_from_slice(&moved);
            return true;
        } else if c + 1 < self.chunks.len() && self.chunks[c + 1].len() + n <= limit {
            let moved = self.chunks.remove(c + 1);
            self.firsts.remove(c + 1);
            self.reserve(c, moved.len());
            self.chunks[c].extend_from_slice(&moved);
        } else {
            self.trim(c);
        }
        false
    }

    /// Make `[start, end)` a hole (`start < end <= MAX_LBA`): trim or split entries overlapping
    /// its edges, drop entries inside it. Returns `locate(start)` when it is still valid (no
    /// entry or chunk was added or removed), sparing [`place`](Self::place) a second search.
    fn punch(&mut self, start: u64, end: u64) -> Option<(usize, usize)> {
        if self.chunks.is_empty() {
            return None;
        }
        let (c0, mut i) = self.locate(start);
        if i > 0 {
            let e = self.chunks[c0][i - 1];
            if e.end() > start {
                self.chunks[c0][i - 1] = e.truncate(start - e.lba());
                if e.end() > end {
                    // The hole is strictly inside one entry: keep both ends.
                    self.insert_at(c0, i, e.skip(end - e.lba()));
                    return None;
                }
            }
        }
        // `end` may be MAX_LBA itself, whose key does not fit; every entry's key is below MAX.
        let key_end = if end < MAX_LBA {
            end << LOW_BITS
        } else {
            u64::MAX
        };
        let i0 = i;
        let mut c = c0;
        let mut removed = false;
        while c < self.chunks.len() {
            let chunk = &mut self.chunks[c];
            let j = i + gallop(&chunk[i..], key_end);
            // Entries i..j start inside the hole; only the last of them can stick out of it.
            let mut k = j;
            let mut done = j < chunk.len();
            if j > i {
                let last = chunk[j - 1];
                if last.end() > end {
                    chunk[j - 1] = last.skip(end - last.lba());
                    k = j - 1;
                    done = true;
                }
            }
            if k > i {
                chunk.drain(i..k);
                self.count -= k - i;
                removed = true;
            }
            if i == 0 {
                if let Some(first) = chunk.first() {
                    self.firsts[c] = first.lba();
                }
            }
            if done {
                break;
            }
            c += 1;
            i = 0;
        }
        if !removed {
            return Some((c0, i0));
        }
        let c1 = c.min(self.chunks.len() - 1);
        // Chunks strictly between c0 and c1 are now empty; c0 and c1 may be.
        let keep0 = !self.chunks[c0].is_empty();
        let keep1 = c1 > c0 && !self.chunks[c1].is_empty();
        let lo = if keep0 { c0 + 1 } else { c0 };
        let hi = if keep1 { c1 } else { c1 + 1 };
        if lo < hi {
            self.chunks.drain(lo..hi);
            self.firsts.drain(lo..hi);
        }
        // Survivors that lost entries, higher index first so settling one cannot move the
        // other: c1's survivor now sits at `lo`. Position (c0, i0) stays valid unless c0 is
        // gone or was merged into its predecessor.
        if keep1 {
            self.settle(lo);
        }
        if keep0 && !self.settle(c0) {
            return Some((c0, i0));
        }
        None
    }

    /// Fast path of an overwrite that exactly covers one stored entry and merges with neither
    /// neighbour: swap the target in place. Returns whether it applied.
    fn replace_exact(&mut self, start: u64, end: u64, val: u64) -> bool {
        let len = end - start;
        if self.chunks.is_empty() || len > MAX_ENTRY_LEN {
            return false;
        }
        let (c, i) = self.locate(start);
        let new = Entry::new(start, len, val);
        if self.chunks[c].get(i).map(|e| e.key) != Some(new.key) {
            return false;
        }
        let pred = if i > 0 {
            self.chunks[c].get(i - 1)
        } else {
            c.checked_sub(1).and_then(|p| self.chunks[p].last())
        };
        if pred.is_some_and(|p| p.continued_by(start, len, val)) {
            return false;
        }
        if let Some((sc, si)) = self.succ_pos(c, i + 1) {
            let s = self.chunks[sc][si];
            if new.continued_by(s.lba(), s.len(), s.val) {
                return false;
            }
        }
        self.chunks[c][i] = new;
        true
    }

    /// Map the hole `[lba, lba + len)` (`1 <= len <= MAX_ENTRY_LEN`) to `val`, merging with a
    /// contiguous neighbour when possible. `at` is `locate(lba)` if the caller knows it.
    fn place(&mut self, lba: u64, len: u64, val: u64, at: Option<(usize, usize)>) {
        if self.chunks.is_empty() {
            self.new_chunk(0, Entry::new(lba, len, val));
            return;
        }
        let (c, i) = match at {
            Some(pos) => pos,
            None => self.locate(lba),
        };
        let succ = self.succ_pos(c, i);
        if i > 0 {
            let p = self.chunks[c][i - 1];
            if p.continued_by(lba, len, val) {
                let merged = Entry::new(p.lba(), p.len() + len, p.val);
                if let Some((sc, si)) = succ {
                    let s = self.chunks[sc][si];
                    if merged.continued_by(s.lba(), s.len(), s.val) {
                        self.chunks[c][i - 1] = Entry::new(p.lba(), merged.len() + s.len(), p.val);
                        self.remove_at(sc, si);
                        return;
                    }
                }
                self.chunks[c][i - 1] = merged;
                return;
            }
        }
        if let Some((sc, si)) = succ {
            let s = self.chunks[sc][si];
            if Entry::new(lba, len, val).continued_by(s.lba(), s.len(), s.val) {
                self.chunks[sc][si] = Entry::new(lba, len + s.len(), val);
                if si == 0 {
                    self.firsts[sc] = lba;
                }
                return;
            }
        }
        self.insert_at(c, i, Entry::new(lba, len, val));
    }
}

/// Number of leading entries of `entries` whose key is below `key`, found by galloping from
/// the front: a punch usually covers few entries, and a binary search over the rest of the
/// chunk would touch cache lines far from the ones the lookup already brought in.
#[inline]
fn gallop(entries: &[Entry], key: u64) -> usize {
    let mut hi = 1;
    while hi <= entries.len() && entries[hi - 1].key < key {
        hi *= 2;
    }
    // entries[..hi / 2] are all below `key`; the boundary lies in [hi / 2, min(hi, len)).
    let lo = hi / 2;
    let hi = hi.min(entries.len());
    lo + entries[lo..hi].partition_point(|e| e.key < key)
}

/// `[lba, lba + len)` clipped to `MAX_LBA`, or `None` when that is empty.
#[inline]
fn clip(lba: u64, len: u64) -> Option<(u64, u64)> {
    let end = lba.saturating_add(len).min(MAX_LBA);
    (lba < end).then_some((lba, end))
}

#[inline]
fn hole(from: u64, to: u64) -> Mapping {
    Mapping {
        lba: from,
        len: to - from,
        target: None,
    }
}

// Keep the 40-bit field width and MAX_LBA in step.
const _: () = assert!(HIGH_MASK + 1 == MAX_LBA);

#[cfg(test)]
mod tests;
