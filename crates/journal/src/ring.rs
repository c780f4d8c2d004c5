//! The ring journal file (used when the object store is remote).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use shale_error::{err, Result};
use shale_format::record::{self, Op, RecordKind};
use shale_format::segment::JournalMark;

use crate::aligned::AlignedBuf;
use crate::file::{DirectFile, LogFile};
use crate::{LogDevice, LogStats, RecordBytes};

const SB_MAGIC: &[u8; 8] = b"SHALEJSB";
const SB_LEN: u64 = 4096;
const SECTOR: u64 = 512;
/// Most lives a superblock remembers (each open of a journal that still holds records starts
/// one; older ones are forgotten once the tail has passed them).
const MAX_LIVES: usize = 128;

/// The id records of life `life` carry: life 0 uses the journal id itself (so version-1
/// superblocks, which have one life, read as before), later lives a mix of both.
fn record_id(id: u64, life: u64) -> u64 {
    if life == 0 {
        id
    } else {
        id ^ life.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0x5A5A_0000_0000_0001
    }
}

/// The lives of a journal: (first record number, life number), in order. Each open starts a
/// new life whose records carry their own id, so a record an earlier life left beyond the
/// point where replay stopped (its writes were lost or reordered by a power loss) never
/// verifies where the new life's record was expected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Lives(Vec<(u64, u64)>);

impl Lives {
    /// The id of the records numbered `seq`.
    fn rec_id(&self, id: u64, seq: u64) -> u64 {
        let life = self
            .0
            .iter()
            .rev()
            .find(|&&(first, _)| first <= seq)
            .or(self.0.first())
            .map_or(0, |&(_, l)| l);
        record_id(id, life)
    }

    /// Forget the lives whose records all precede `tail_seq`.
    fn prune(&mut self, tail_seq: u64) {
        while self.0.len() > 1 && self.0[1].0 <= tail_seq {
            self.0.remove(0);
        }
    }

    fn last_life(&self) -> u64 {
        self.0.last().map_or(0, |&(_, l)| l)
    }
}

/// A record found by replay.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub seq: u64,
    /// The whole record, header and data.
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
struct St {
    head: u64,
    next_seq: u64,
    /// Records not yet released: (seq, offset, length), oldest first.
    live: VecDeque<(u64, u64, u64)>,
    /// The tail remembered in the superblock: (offset, seq).
    persisted: (u64, u64),
    /// The lives whose records may still be replayed; the last is this one.
    lives: Lives,
    /// The id this life's records carry.
    rec_id: u64,
    base: JournalMark,
    buf: AlignedBuf,
    stats: LogStats,
}

/// A journal in a ring file of fixed size, written with O_DIRECT.
#[derive(Debug)]
pub struct RingJournal {
    file: std::sync::Arc<dyn LogFile>,
    path: PathBuf,
    size: u64,
    id: u64,
    owner: u64,
    full_wait: Duration,
    clock: std::sync::Arc<dyn shale_clock::Clock>,
    st: Mutex<St>,
    space: Condvar,
}

#[derive(Clone)]
struct Superblock {
    id: u64,
    owner: u64,
    size: u64,
    base: JournalMark,
    tail_off: u64,
    tail_seq: u64,
    lives: Lives,
}

fn encode_sb(sb: &Superblock) -> Vec<u8> {
    let mut b = Vec::with_capacity(SB_LEN as usize);
    b.extend_from_slice(SB_MAGIC);
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&(sb.lives.0.len() as u32).to_le_bytes());
    for v in [
        sb.id,
        sb.owner,
        sb.size,
        sb.base.journal_id,
        sb.base.jseq,
        sb.tail_off,
        sb.tail_seq,
    ] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for &(first, life) in &sb.lives.0 {
        b.extend_from_slice(&first.to_le_bytes());
        b.extend_from_slice(&life.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.resize(SB_LEN as usize, 0);
    b
}

fn decode_sb(b: &[u8]) -> Option<Superblock> {
    if b.len() < 76 || &b[..8] != SB_MAGIC {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(a)
    };
    let (version, n) = (u32_at(8), u32_at(12) as usize);
    let end = match version {
        1 => 72,
        2 if (1..=MAX_LIVES).contains(&n) => 72 + 16 * n,
        _ => return None,
    };
    if b.len() < end + 4 || crc32c::crc32c(&b[..end]) != u32_at(end) {
        return None;
    }
    let w = |i: usize| u64_at(16 + i * 8);
    let tail_seq = w(6);
    let lives = if version == 1 {
        // One life, numbered 0: its records carry the journal id.
        Lives(vec![(tail_seq, 0)])
    } else {
        Lives(
            (0..n)
                .map(|i| (u64_at(72 + 16 * i), u64_at(80 + 16 * i)))
                .collect(),
        )
    };
    // Lives are in increasing order of first record and life number.
    if lives
        .0
        .windows(2)
        .any(|p| p[0].0 > p[1].0 || p[0].1 >= p[1].1)
    {
        return None;
    }
    Some(Superblock {
        id: w(0),
        owner: w(1),
        size: w(2),
        base: JournalMark {
            journal_id: w(3),
            jseq: w(4),
        },
        tail_off: w(5),
        tail_seq,
        lives,
    })
}

/// What a ring journal takes from its environment.
#[derive(Debug, Clone)]
pub struct RingEnv {
    /// Longest wait for space before an append fails.
    pub full_wait: Duration,
    pub clock: std::sync::Arc<dyn shale_clock::Clock>,
    /// The id of the journal if it has to start afresh (random, odd).
    pub fresh_id: u64,
}

impl RingJournal {
    /// Open (or create) the ring at `path` of `size` bytes for `owner` (a stable hash of the
    /// image). `store` is what the object store already holds; records after it are returned
    /// for re-application. A ring that belongs to another owner, another size, or that the
    /// store has moved past (another journal wrote after this one) is started afresh.
    pub fn open(
        path: &Path,
        size: u64,
        owner: u64,
        store: JournalMark,
        env: RingEnv,
    ) -> Result<(RingJournal, Vec<Replayed>)> {
        let file: std::sync::Arc<dyn LogFile> = std::sync::Arc::new(DirectFile::open(path)?);
        Self::open_file(file, path, size, owner, store, env)
    }

    /// [`Self::open`] on any [`LogFile`] (`path` names it in messages).
    pub fn open_file(
        file: std::sync::Arc<dyn LogFile>,
        path: &Path,
        size: u64,
        owner: u64,
        store: JournalMark,
        env: RingEnv,
    ) -> Result<(RingJournal, Vec<Replayed>)> {
        let RingEnv {
            full_wait,
            clock,
            fresh_id,
        } = env;
        let size = size / SB_LEN * SB_LEN;
        if size < 4 * SB_LEN + (1 << 20) {
            return Err(err!(
                Invalid,
                "journal size {size} is too small (at least 1M + 16K)"
            ));
        }
        let mut sbuf = vec![0u8; SB_LEN as usize];
        let read = file.read_at(&mut sbuf, 0).is_ok();
        let sb = read.then(|| decode_sb(&sbuf)).flatten();
        if read && sb.is_none() && sbuf.iter().any(|&b| b != 0) {
            // Not a new file, and not a superblock we can read: it may hold acknowledged
            // writes the store does not have. Starting afresh would silently drop them.
            return Err(err!(
                Corruption,
                "journal {}: its superblock is damaged or not Shale's; it may hold \
                 acknowledged writes. Move it away to start without them (they are lost), or \
                 keep it for inspection",
                path.display()
            ));
        }
        let usable = sb.as_ref().filter(|sb| {
            sb.owner == owner
                && sb.size == size
                && (store == sb.base || store.journal_id == sb.id)
                && sb.tail_off >= SB_LEN
                // A record may end exactly at the end of the file: the tail is then there
                // (replay continues at the start).
                && sb.tail_off <= size
        });
        let mut replayed = Vec::new();
        let (id, base, head, next_seq, mut lives, live) = match usable {
            Some(sb) => {
                let (recs, head, mut next) = scan(
                    file.as_ref(),
                    size,
                    sb.id,
                    &sb.lives,
                    sb.tail_off,
                    sb.tail_seq,
                )?;
                let mut live = VecDeque::new();
                for (seq, off, bytes) in recs {
                    live.push_back((seq, off, bytes.len() as u64));
                    let already = store.journal_id == sb.id && seq <= store.jseq;
                    if !already
                        && record::decode_header_any(&bytes)
                            .map(|h| h.kind == RecordKind::Ops)
                            .unwrap_or(false)
                    {
                        replayed.push(Replayed { seq, bytes });
                    }
                }
                if store.journal_id == sb.id && next <= store.jseq {
                    // The store holds records this file lost (power loss before a sync):
                    // number on past them, or new records would be taken for stored ones.
                    // Everything left here is in the store; start the ring at the head.
                    next = store.jseq + 1;
                    live.clear();
                }
                (sb.id, sb.base, head, next, sb.lives.clone(), live)
            }
            None => {
                if sb.is_some() {
                    tracing::warn!(
                        "journal {} is stale or foreign; starting it afresh",
                        path.display()
                    );
                }
                (
                    fresh_id | 1,
                    store,
                    SB_LEN,
                    1,
                    Lives::default(),
                    VecDeque::new(),
                )
            }
        };
        // Every open starts a new life: records written from here on carry an id no record
        // an earlier life left in the file has, so one of those (written after the point
        // where replay stopped, and kept by a power loss that dropped its predecessor) can
        // never be taken for a record of this life.
        let life = if lives.0.is_empty() {
            0
        } else {
            lives.last_life() + 1
        };
        lives.0.push((next_seq, life));
        let tail = live
            .front()
            .map(|&(s, o, _)| (o, s))
            .unwrap_or((head, next_seq));
        lives.prune(tail.1);
        if lives.0.len() > MAX_LIVES {
            return Err(err!(
                Unavailable,
                "journal {} has been reopened {} times since the store last took its records; \
                 open the image where the store is reachable so that they are written back",
                path.display(),
                lives.0.len() - 1
            ));
        }
        file.set_len(size)
            .map_err(|e| e.context(format!("cannot size journal {}", path.display())))?;
        let rec_id = record_id(id, life);
        let j = RingJournal {
            file,
            path: path.to_path_buf(),
            size,
            id,
            owner,
            full_wait,
            clock,
            st: Mutex::new(St {
                head,
                next_seq,
                live,
                persisted: tail,
                lives,
                rec_id,
                base,
                buf: AlignedBuf::with_capacity(1 << 20),
                stats: LogStats {
                    capacity: size - SB_LEN,
                    ..Default::default()
                },
            }),
            space: Condvar::new(),
        };
        {
            // The new life is durable before any of its records is written.
            let mut g = j.lock();
            j.persist(&mut g, tail)?;
            j.refresh_used(&mut g);
        }
        Ok((j, replayed))
    }

    /// Find room for a `len`-byte record at the head (waiting for released space, marking a
    /// wrap): on return `g.head` is where it goes.
    fn reserve<'a>(&'a self, mut g: MutexGuard<'a, St>, len: u64) -> Result<MutexGuard<'a, St>> {
        if len > (self.size - SB_LEN) / 2 {
            return Err(err!(
                Invalid,
                "a {len}-byte journal record does not fit a {}-byte journal",
                self.size
            ));
        }
        let started = self.clock.now();
        let mut waited = false;
        let at = loop {
            if let Some(at) = self.fits(&g, len) {
                break at;
            }
            // Free space the released records left, if the superblock still pins it.
            let tail = Self::tail(&g);
            if tail != g.persisted {
                self.persist(&mut g, tail)?;
                continue;
            }
            if !waited {
                g.stats.full_waits += 1;
                waited = true;
            }
            let left = self.full_wait.saturating_sub(self.clock.since(started));
            if left.is_zero() {
                g.stats.full_wait_ns += self.clock.since(started).as_nanos() as u64;
                return Err(err!(
                    Unavailable,
                    "journal {} is full and the store has not taken its data for {:?}",
                    self.path.display(),
                    self.full_wait
                ));
            }
            g = self
                .space
                .wait_timeout(g, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        };
        if waited {
            g.stats.full_wait_ns += self.clock.since(started).as_nanos() as u64;
        }
        if at != g.head && g.head < self.size {
            // Mark the wrap so that replay jumps to the start.
            let seq = g.next_seq;
            let mut w = Vec::with_capacity(SECTOR as usize);
            record::encode_into(&mut w, g.rec_id, seq, RecordKind::Wrap, &[], &[]);
            let head = g.head;
            g.buf.fill(&w, w.len());
            self.file
                .write_at(g.buf.as_slice(), head)
                .map_err(|e| e.context("writing the journal"))?;
            g.live.push_back((seq, head, self.size - head));
            g.next_seq += 1;
        }
        g.head = at;
        Ok(g)
    }

    /// Account for the record numbered `seq` just written at the head.
    fn appended(&self, g: &mut St, seq: u64, len: u64) {
        let head = g.head;
        g.live.push_back((seq, head, len));
        g.next_seq += 1;
        g.head += len;
        g.stats.records += 1;
        g.stats.bytes += len;
        self.refresh_used(g);
    }

    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn tail(g: &St) -> (u64, u64) {
        g.live
            .front()
            .map(|&(s, o, _)| (o, s))
            .unwrap_or((g.head, g.next_seq))
    }

    /// Bytes from `head` (inclusive) up to `limit` going around the ring, where `limit` is an
    /// offset not to be overwritten (the persisted tail). Equal offsets mean "empty ring" only
    /// when nothing is live.
    fn free_until(&self, head: u64, limit: u64, empty: bool) -> u64 {
        if head == limit {
            if empty {
                self.size - SB_LEN
            } else {
                0
            }
        } else if head < limit {
            limit - head
        } else {
            (self.size - head) + (limit - SB_LEN)
        }
    }

    fn refresh_used(&self, g: &mut St) {
        let (toff, _) = Self::tail(g);
        let cap = self.size - SB_LEN;
        g.stats.used = cap - self.free_until(g.head, toff, g.live.is_empty());
    }

    fn persist(&self, g: &mut St, tail: (u64, u64)) -> Result<()> {
        g.lives.prune(tail.1);
        let sb = Superblock {
            id: self.id,
            owner: self.owner,
            size: self.size,
            base: g.base,
            tail_off: tail.0,
            tail_seq: tail.1,
            lives: g.lives.clone(),
        };
        g.buf.fill(&encode_sb(&sb), SB_LEN as usize);
        self.file
            .write_at(g.buf.as_slice(), 0)
            .map_err(|e| e.context("writing the journal superblock"))?;
        self.file
            .sync()
            .map_err(|e| e.context("syncing the journal"))?;
        g.persisted = tail;
        Ok(())
    }

    /// Can `len` bytes be written at `head` (possibly after a wrap) without touching anything
    /// at or after the persisted tail? Returns the offset to write at.
    fn fits(&self, g: &St, len: u64) -> Option<u64> {
        // Empty only if the superblock points exactly at the next record: writing a record of
        // another number where the superblock says replay starts would hide the whole log.
        let empty = g.live.is_empty() && g.persisted == (g.head, g.next_seq);
        let free = self.free_until(g.head, g.persisted.0, empty);
        if g.head + len <= self.size {
            // Contiguous at head.
            (free >= len).then_some(g.head)
        } else {
            // Wrap: lose the rest of the file, write at the start.
            let lost = self.size - g.head;
            (free >= lost + len).then_some(SB_LEN)
        }
    }
}

/// Follow consecutive records from (off, seq). Returns them with the head and next number.
#[allow(clippy::type_complexity)]
fn scan(
    f: &dyn LogFile,
    size: u64,
    id: u64,
    lives: &Lives,
    mut off: u64,
    mut seq: u64,
) -> Result<(Vec<(u64, u64, Vec<u8>)>, u64, u64)> {
    let mut out = Vec::new();
    let mut hdr = vec![0u8; SECTOR as usize * 8];
    let mut steps = 0u64;
    loop {
        steps += 1;
        if steps > size / SECTOR + 2 {
            break; // cannot happen with distinct numbers; a guard against loops
        }
        if off + SECTOR > size {
            off = SB_LEN;
        }
        let n = (hdr.len() as u64).min(size - off) as usize;
        if f.read_at(&mut hdr[..n], off).is_err() {
            break;
        }
        let Some(h) = record::decode_header(&hdr[..n], lives.rec_id(id, seq), seq) else {
            break;
        };
        let total = h.total_len();
        if off + total > size {
            break;
        }
        let mut rec = vec![0u8; total as usize];
        if f.read_at(&mut rec, off).is_err() || !record::verify(&rec) {
            break;
        }
        let kind = h.kind;
        out.push((seq, off, rec));
        seq += 1;
        off = if kind == RecordKind::Wrap {
            SB_LEN
        } else {
            off + total
        };
    }
    Ok((out, off, seq))
}

impl LogDevice for RingJournal {
    fn id(&self) -> u64 {
        self.id
    }

    fn append_record(
        &self,
        ops: &[Op],
        parts: &[&[u8]],
        _place: (u64, u64),
    ) -> Result<(u64, RecordBytes)> {
        let data_len: usize = parts.iter().map(|p| p.len()).sum();
        let len = record::header_sectors(ops.len()) as u64 * SECTOR + data_len as u64;
        let mut g = self.reserve(self.lock(), len)?;
        let seq = g.next_seq;
        let rec = AlignedBuf::build(len as usize, |v| {
            record::encode_parts_into(v, g.rec_id, seq, RecordKind::Ops, ops, parts);
        });
        let head = g.head;
        self.file
            .write_at(rec.as_slice(), head)
            .map_err(|e| e.context("writing the journal"))?;
        self.appended(&mut g, seq, len);
        Ok((seq, crate::keep(rec)))
    }

    fn sync(&self) -> Result<()> {
        self.file
            .sync()
            .map_err(|e| e.context("syncing the journal"))
    }

    fn release(&self, upto: u64) {
        let mut g = self.lock();
        while g.live.front().is_some_and(|&(s, _, _)| s <= upto) {
            g.live.pop_front();
        }
        self.refresh_used(&mut g);
        drop(g);
        self.space.notify_all();
    }

    fn stats(&self) -> LogStats {
        self.lock().stats.clone()
    }
}

/// Counters of a ring journal.
pub type RingStats = LogStats;
