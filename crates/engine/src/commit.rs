//! The committer: the one thread that turns queued requests into log records (group commit),
//! applies them to the open segment and the map in record order, seals segments and answers
//! flushes.
//!
//! A batch is everything queued when the thread wakes. Aligned writes and zeroings of a batch
//! share one record; a partial-sector write first commits what came before it, then reads the
//! sectors it patches (which now reflect every earlier write) — this makes read-modify-write
//! atomic without a lock around client writes.

use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;

use shale_error::{err, Error, ErrorKind, Result};
use shale_extmap::Target;
use shale_format::record::{self, Op};
use shale_format::segment::{self, Entry, EntryKind, JournalMark};
use shale_format::SECTOR;

use crate::config::{Durability, LogConfig};
use crate::upload::Job;
use crate::volume::{lock, Done, Inner, OpenSeg, Pending, Req, Sealed, Shared};

/// Largest record: bigger client writes are split (a crash may then keep a prefix of them,
/// as with any disk).
const MAX_RECORD: usize = 4 << 20;

/// Most operations in one record: its header, and the header of the in-place segment that
/// holds it, stay small (a record of thousands of tiny writes must never overflow an in-place
/// segment's reserved header space).
const MAX_RECORD_OPS: usize = 1024;

/// Most bytes a segment may hold before a record is placed in it: its size, plus room for
/// the headers of the records in it (1/128 of the size: a 512-byte header per 64 KiB
/// record), so that client data that adds up to the segment size fills one segment. A
/// segment is sealed as soon as it holds its size.
fn segment_limit(sh: &Shared) -> usize {
    let size = sh.cfg.segment_size as usize;
    size + size / 128
}

/// Largest record for this log device: a quarter of a bounded device at most, so one record
/// always fits in a ring journal however small it was configured.
fn max_record(sh: &Shared) -> usize {
    let cap = sh.log.stats().capacity;
    if cap == 0 {
        return MAX_RECORD;
    }
    ((cap / 4) as usize / (64 << 10) * (64 << 10)).clamp(64 << 10, MAX_RECORD)
}

pub(crate) fn spawn(sh: &Arc<Shared>) -> Result<JoinHandle<()>> {
    let sh = sh.clone();
    std::thread::Builder::new()
        .name("shale-commit".into())
        .spawn(move || {
            if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&sh))) {
                sh.died("committer", p.as_ref());
            }
        })
        .map_err(|e| Error::io("cannot start the committer thread", e))
}

fn in_range(sh: &Shared, off: u64, len: u64) -> Result<()> {
    let size = lock(&sh.inner).size;
    crate::volume::Volume::check_range(size, off, len)
}

/// The record being built.
#[derive(Default)]
struct Batch {
    ops: Vec<Op>,
    /// The Data ops' sectors, in order, in the buffers they came in (a request's own buffer
    /// is never copied here: the log device copies each byte once, into the record).
    data: Vec<Bytes>,
    /// Bytes in `data`.
    len: usize,
    done: Vec<Done>,
    /// [`max_record`] of the log device (fixed for its lifetime).
    max_record: usize,
    /// Bytes the open segment had left when this record started (looked up once per record).
    seg_room: Option<usize>,
}

fn run(sh: &Shared) {
    let max_rec = max_record(sh);
    loop {
        {
            let mut q = sh.queue.lock().unwrap_or_else(|p| p.into_inner());
            while q.reqs.is_empty() && !q.stop {
                let (g, t) = sh
                    .queue_cv
                    .wait_timeout(
                        q,
                        sh.cfg.seal_after.max(std::time::Duration::from_millis(10)) / 4,
                    )
                    .unwrap_or_else(|p| p.into_inner());
                q = g;
                if t.timed_out() {
                    // Lock order: the commit lock before the queue (see `write_now`).
                    drop(q);
                    {
                        let _c = sh.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
                        seal_if_old(sh);
                    }
                    q = sh.queue.lock().unwrap_or_else(|p| p.into_inner());
                }
            }
        }
        // Requests are taken with the commit lock held, so that a write committed by its own
        // submitter (`write_now`) never overtakes one queued before it.
        let _commit = sh.commit_lock.lock().unwrap_or_else(|p| p.into_inner());
        let reqs: Vec<Pending> = {
            let mut q = sh.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.reqs.is_empty() {
                if q.stop {
                    return;
                }
                continue;
            }
            q.reqs.drain(..).collect()
        };
        let mut b = Batch {
            max_record: max_rec,
            ..Batch::default()
        };
        let mut flushes: Vec<Done> = Vec::new();
        for p in reqs {
            match p.req {
                // Checked again here: a shrink may have come between submission and now, and
                // nothing may land past the new end.
                Req::Write { off, data } => match in_range(sh, off, data.len() as u64) {
                    Ok(()) => add_owned_write(sh, &mut b, off, data, p.done),
                    Err(e) => (p.done)(Err(e)),
                },
                Req::Zero { off, len, trim } => match trim {
                    false => match in_range(sh, off, len) {
                        Ok(()) => add_zero(sh, &mut b, off, len, trim, p.done),
                        Err(e) => (p.done)(Err(e)),
                    },
                    true => add_zero(sh, &mut b, off, len, trim, p.done),
                },
                Req::Flush => {
                    commit(sh, &mut b);
                    match sh.durability() {
                        Durability::Journal => flushes.push(p.done),
                        Durability::Backend => {
                            let mut g = lock(&sh.inner);
                            seal(sh, &mut g);
                            let target = g.open.seq - 1;
                            if let Some(f) = &g.failed {
                                let e = crate::volume::failed_error(f);
                                drop(g);
                                (p.done)(Err(e));
                            } else if g.durable >= target {
                                drop(g);
                                (p.done)(Ok(()));
                            } else {
                                g.durable_waiters.push((target, p.done));
                            }
                        }
                    }
                }
                Req::Seal => {
                    commit(sh, &mut b);
                    seal(sh, &mut lock(&sh.inner));
                    (p.done)(Ok(()));
                }
                Req::Relocate { items } => {
                    // Everything before it is applied first, so the map shows what a client
                    // wrote meanwhile.
                    commit(sh, &mut b);
                    // The runs still where GC read them (only this thread changes the map, so
                    // they stay so while the records below are written).
                    let mut runs: Vec<(u64, Bytes)> = Vec::new();
                    {
                        let g = lock(&sh.inner);
                        for it in &items {
                            let n = it.data.len() as u64 / SECTOR;
                            g.map.for_each_in(it.lba, n, |m| {
                                let k = m.lba - it.lba;
                                let still = Target::Data {
                                    seg: it.seg,
                                    off: it.off + k as u32,
                                };
                                if m.target == Some(still) {
                                    let at = (k * SECTOR) as usize;
                                    runs.push((
                                        m.lba,
                                        it.data.slice(at..at + (m.len * SECTOR) as usize),
                                    ));
                                }
                            });
                        }
                    }
                    // In records no bigger than the log device takes.
                    match runs
                        .into_iter()
                        .try_for_each(|(lba, data)| add_data(sh, &mut b, lba, data))
                    {
                        Ok(()) => {
                            b.done.push(p.done);
                            commit(sh, &mut b);
                        }
                        Err(e) => (p.done)(Err(e)),
                    }
                }
                Req::Snapshot { key, out } => {
                    commit(sh, &mut b);
                    let mut g = lock(&sh.inner);
                    seal(sh, &mut g);
                    let seq = g.open.seq - 1;
                    let extents: Vec<_> = g.map.iter().collect();
                    let mark = JournalMark {
                        journal_id: sh.log.id(),
                        jseq: g.open.jseq,
                    };
                    *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(seq);
                    g.segs_since_ckpt = 0;
                    let snap = key.is_some();
                    if snap {
                        g.maps_in_flight += 1;
                    }
                    let key = match key {
                        Some(k) => format!("{}{k}", sh.prefix),
                        None => crate::upload::ckpt_key(&sh.prefix, sh.epoch, seq + 1),
                    };
                    let job = Job::Checkpoint {
                        seq,
                        mark,
                        key,
                        extents,
                        snap,
                        done: p.done,
                    };
                    let tx = sh.jobs.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(std::sync::mpsc::SendError(Job::Checkpoint { done, .. })) =
                        tx.send(job)
                    {
                        drop(tx);
                        if snap {
                            g.maps_in_flight -= 1;
                        }
                        drop(g);
                        done(Err(err!(Io, "upload workers are gone")));
                    }
                }
            }
        }
        commit(sh, &mut b);
        seal_if_old(sh);
        if !flushes.is_empty() {
            // One device sync answers every flush of the batch.
            let r = sync_log(sh);
            for d in flushes {
                d(r.as_ref()
                    .map(|_| ())
                    .map_err(|e| Error::new(e.kind(), e.to_string())));
            }
        }
    }
}

impl Batch {
    fn push(&mut self, data: Bytes) {
        self.len += data.len();
        self.data.push(data);
    }

    /// Data bytes one more operation may bring to this record, in whole sectors: what is left
    /// of the record's limits and of the open segment (with the record's header).
    fn room(&mut self, sh: &Shared) -> usize {
        if self.ops.len() >= MAX_RECORD_OPS {
            return 0;
        }
        let seg_room = *self.seg_room.get_or_insert_with(|| {
            let g = lock(&sh.inner);
            if g.open.entries.is_empty() {
                segment_limit(sh)
            } else {
                segment_limit(sh).saturating_sub(g.open.data.len())
            }
        });
        let header = record::header_sectors(self.ops.len() + 1) as usize * SECTOR as usize;
        let left = seg_room
            .saturating_sub(header + self.len)
            .min(self.max_record.saturating_sub(self.len));
        left / SECTOR as usize * SECTOR as usize
    }
}

/// Add aligned `data` (whole sectors) at sector `lba` as Data operations, committing records
/// as they fill. A record ends before a write that would take it past the record's limits or
/// past the end of the open segment: segments fill to within one write of their size, so
/// fewer are published per byte written and the files of collected ones are reused at the
/// size they had. A write is never split for that: one that fits a record stays atomic
/// across a crash. Only a write larger than a record is split, at multiples of the record
/// size. The caller answers its request afterwards. An error is that of a record committed
/// here (one holding part of `data`, or the batch before it): the write must then not be
/// acknowledged.
fn add_data(sh: &Shared, b: &mut Batch, mut lba: u64, mut data: Bytes) -> Result<()> {
    while !data.is_empty() {
        let room = b.room(sh);
        let n = if data.len() <= room {
            data.len()
        } else if b.ops.is_empty() {
            // A record of its own: it starts the next segment (the open one is too full), and
            // what follows it in the batch is measured against that one.
            b.seg_room = Some(segment_limit(sh));
            data.len().min(b.max_record)
        } else {
            commit_checked(sh, b)?;
            continue;
        };
        let part = data.split_to(n);
        b.ops.push(Op {
            lba,
            len: (n as u64 / SECTOR) as u32,
            kind: EntryKind::Data,
        });
        b.push(part);
        lba += n as u64 / SECTOR;
    }
    Ok(())
}

/// Commit one aligned write on the submitter's own thread, with the commit lock held by the
/// caller and nothing queued (see `Shared::submit`): at queue depth 1 this saves the
/// hand-off to the committer and back. The caller answers the request after releasing the
/// commit lock (an answer may submit again, even synchronously).
pub(crate) fn write_now(sh: &Shared, off: u64, data: Vec<u8>) -> Result<()> {
    // Checked again under the commit lock, as the committer does: a shrink may have come.
    in_range(sh, off, data.len() as u64)?;
    let ops = [Op {
        lba: off / SECTOR,
        len: (data.len() as u64 / SECTOR) as u32,
        kind: EntryKind::Data,
    }];
    let len = data.len();
    write_and_apply(sh, &ops, &[Bytes::from(data)], len)
}

/// A flush with `durability = journal`: one device sync, refused when fenced or failed (what
/// it covers may never reach the store). Committer thread or `flush_now`.
fn sync_log(sh: &Shared) -> Result<()> {
    let mut r = sh.log.sync();
    let g = lock(&sh.inner);
    if g.fenced {
        r = Err(err!(Fenced, "another client has taken this image over"));
    } else if let Some(f) = &g.failed {
        r = Err(crate::volume::failed_error(f));
    }
    r.map_err(|e| Error::new(e.kind(), format!("flush: {e}")))
}

/// A flush (`durability = journal`) answered on the submitter's thread: the caller holds the
/// commit lock and nothing is queued, so every write acknowledged before it is in the log.
pub(crate) fn flush_now(sh: &Shared) -> Result<()> {
    sync_log(sh)
}

/// Whether a write can be committed by its submitter (`write_now`): aligned, not empty, one
/// record.
pub(crate) fn fits_one_record(sh: &Shared, off: u64, len: usize) -> bool {
    off.is_multiple_of(SECTOR)
        && (len as u64).is_multiple_of(SECTOR)
        && len > 0
        && len <= max_record(sh)
}

/// Add a write in the request's own buffer: aligned, it joins the batch as it is (no copy
/// here; the log device copies it once, into the record; see [`add_data`]).
fn add_owned_write(sh: &Shared, b: &mut Batch, off: u64, data: Vec<u8>, done: Done) {
    if off.is_multiple_of(SECTOR) && (data.len() as u64).is_multiple_of(SECTOR) {
        // (An empty write adds no operation: a zero-length entry is invalid.)
        match add_data(sh, b, off / SECTOR, Bytes::from(data)) {
            Ok(()) => b.done.push(done),
            Err(e) => done(Err(e)),
        }
        return;
    }
    add_unaligned_write(sh, b, off, &data, done)
}

/// A write with partial sectors: read-modify-write against everything before it.
fn add_unaligned_write(sh: &Shared, b: &mut Batch, off: u64, data: &[u8], done: Done) {
    commit(sh, b);
    let first = off / SECTOR;
    let end = (off + data.len() as u64).div_ceil(SECTOR);
    let mut buf = vec![0u8; ((end - first) * SECTOR) as usize];
    let head = (off - first * SECTOR) as usize;
    let mut r = sh.read_sectors(first, 1, &mut buf[..SECTOR as usize]);
    if r.is_ok() && end - first > 1 {
        let tail = buf.len() - SECTOR as usize;
        r = sh.read_sectors(end - 1, 1, &mut buf[tail..]);
    }
    if let Err(e) = r {
        return done(Err(e.context("reading the sectors a partial write patches")));
    }
    buf[head..head + data.len()].copy_from_slice(data);
    add_owned_write(sh, b, first * SECTOR, buf, done);
}

#[allow(clippy::too_many_arguments)]
fn add_zero(sh: &Shared, b: &mut Batch, off: u64, len: u64, trim: bool, done: Done) {
    if len == 0 {
        return done(Ok(()));
    }
    let end = off + len;
    let first_full = off.div_ceil(SECTOR);
    let end_full = end / SECTOR;
    let kind = if trim {
        EntryKind::Trim
    } else {
        EntryKind::Zero
    };
    // Partial edge sectors become rewritten sectors; read them against everything before.
    let mut patches: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut edges: Vec<(u64, u64)> = Vec::new();
    if first_full > end_full {
        edges.push((off, end));
    } else {
        if !off.is_multiple_of(SECTOR) {
            edges.push((off, first_full * SECTOR));
        }
        if !end.is_multiple_of(SECTOR) {
            edges.push((end_full * SECTOR, end));
        }
    }
    if !edges.is_empty() {
        commit(sh, b);
    }
    for (a, z) in edges {
        let lba = a / SECTOR;
        let mut s = vec![0u8; SECTOR as usize];
        if let Err(e) = sh.read_sectors(lba, 1, &mut s) {
            return done(Err(e));
        }
        let at = (a - lba * SECTOR) as usize;
        s[at..at + (z - a) as usize].fill(0);
        patches.push((lba, s));
    }
    for (lba, s) in patches {
        b.ops.push(Op {
            lba,
            len: 1,
            kind: EntryKind::Data,
        });
        b.push(Bytes::from(s));
    }
    let mut lba = first_full;
    while lba < end_full {
        let n = (end_full - lba).min(u32::MAX as u64 / 2);
        b.ops.push(Op {
            lba,
            len: n as u32,
            kind,
        });
        lba += n;
    }
    b.done.push(done);
    if b.ops.len() >= MAX_RECORD_OPS {
        commit(sh, b);
    }
}

/// Write the batch as one record and apply it; answer its requests.
fn commit(sh: &Shared, b: &mut Batch) {
    // The outcome went to the requests of the record.
    let _ = commit_checked(sh, b);
}

/// [`commit`], also returning the record's outcome.
fn commit_checked(sh: &Shared, b: &mut Batch) -> Result<()> {
    b.seg_room = None;
    if b.ops.is_empty() {
        for d in b.done.drain(..) {
            d(Ok(()));
        }
        return Ok(());
    }
    let res = write_and_apply(sh, &b.ops, &b.data, b.len);
    b.ops.clear();
    b.data.clear();
    b.len = 0;
    for d in b.done.drain(..) {
        d(res
            .as_ref()
            .map(|_| ())
            .map_err(|e| Error::new(e.kind(), e.to_string())));
    }
    res
}

fn write_and_apply(sh: &Shared, ops: &[Op], data: &[Bytes], len: usize) -> Result<()> {
    let rec_len = record::header_sectors(ops.len()) as usize * SECTOR as usize + len;
    let place = {
        let mut g = wait_for_room(sh)?;
        make_room(sh, &mut g, ops.len(), rec_len);
        (g.open.seq, g.open.data.len() as u64)
    };
    let parts: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
    let (seq, rec) = match sh.log.append_record(ops, &parts, place) {
        Ok(s) => s,
        Err(e) => {
            if e.kind() != ErrorKind::Unavailable {
                let mut g = lock(&sh.inner);
                if g.failed.is_none() {
                    g.failed = Some(format!("log device: {e}"));
                }
            }
            return Err(e);
        }
    };
    let mut g = lock(&sh.inner);
    apply(sh, &mut g, ops, rec, seq);
    Ok(())
}

/// Block while too many sealed segments wait for upload (bounded by `full_wait`).
fn wait_for_room(sh: &Shared) -> Result<std::sync::MutexGuard<'_, Inner>> {
    let started = sh.cfg.clock.now();
    let mut g = lock(&sh.inner);
    let mut counted = false;
    loop {
        if let Some(f) = &g.failed {
            return Err(crate::volume::failed_error(f));
        }
        if g.pending.len() < sh.cfg.max_pending {
            return Ok(g);
        }
        if !counted {
            g.stats.room_waits += 1;
            counted = true;
        }
        let left = sh.cfg.full_wait.saturating_sub(sh.cfg.clock.since(started));
        if left.is_zero() {
            return Err(err!(
                Unavailable,
                "the store has not taken sealed segments for {:?}",
                sh.cfg.full_wait
            ));
        }
        g = sh
            .progress
            .wait_timeout(g, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

/// Seal the open segment first if the record would not fit in it.
fn make_room(sh: &Shared, g: &mut Inner, n_ops: usize, rec_len: usize) {
    if g.open.entries.is_empty() {
        return;
    }
    let data_after = g.open.data.len() + rec_len;
    let too_big = data_after > segment_limit(sh);
    let header_full = matches!(sh.cfg.log, LogConfig::InPlace(_))
        && segment::raw_header_len(g.open.entries.len() + n_ops, data_after) as u64
            > sh.cfg.header_reserve;
    if too_big || header_full || g.open.entries.len() + n_ops > 1 << 16 {
        seal(sh, g);
    }
}

/// Apply one encoded record (`rec`, header and data) to the open segment and the map.
fn apply(sh: &Shared, g: &mut Inner, ops: &[Op], rec: shale_journal::RecordBytes, seq: u64) {
    let base = g.open.data.len() as u64 / SECTOR + record::header_sectors(ops.len()) as u64;
    let mut cur = 0u64;
    let segno = g.open.seq;
    for op in ops {
        let len = op.len as u64;
        match op.kind {
            EntryKind::Data => {
                let off = (base + cur) as u32;
                g.open.entries.push(Entry {
                    lba: op.lba,
                    len: op.len,
                    off,
                    kind: EntryKind::Data,
                });
                g.map.insert(op.lba, len, Target::Data { seg: segno, off });
                cur += len;
            }
            EntryKind::Zero => {
                g.open.entries.push(Entry {
                    lba: op.lba,
                    len: op.len,
                    off: 0,
                    kind: EntryKind::Zero,
                });
                g.map.insert(op.lba, len, Target::Zero);
            }
            EntryKind::Trim => {
                g.open.entries.push(Entry {
                    lba: op.lba,
                    len: op.len,
                    off: 0,
                    kind: EntryKind::Trim,
                });
                g.map.remove(op.lba, len);
            }
        }
    }
    // The record joins the open segment in the buffer it was written from.
    g.open.data.push(rec);
    g.open.jseq = seq;
    if g.open_since.is_none() {
        g.open_since = Some(sh.cfg.clock.now());
    }
    if g.open.data.len() as u64 >= sh.cfg.segment_size {
        seal(sh, g);
    }
}

/// Re-apply a record the log kept across a restart (before the committer starts).
pub(crate) fn apply_record(sh: &Shared, rec: Vec<u8>) -> Result<()> {
    let h = record::decode_header_any(&rec)?;
    let mut g = lock(&sh.inner);
    make_room(sh, &mut g, h.ops.len(), rec.len());
    apply(sh, &mut g, &h.ops, Box::new(rec), h.seq);
    Ok(())
}

/// Seal the open segment once it has waited `seal_after`: bounds how long written data stays
/// out of the store (what other clients can see, and the write-back lag).
fn seal_if_old(sh: &Shared) {
    let mut g = lock(&sh.inner);
    if g.open_since
        .is_some_and(|t0| sh.cfg.clock.since(t0) >= sh.cfg.seal_after)
    {
        seal(sh, &mut g);
    }
}

/// Seal the open segment (if it has anything) and queue its upload.
pub(crate) fn seal(sh: &Shared, g: &mut Inner) {
    // A read-only view holds replayed records in memory only; it never stores anything.
    if g.open.entries.is_empty() || sh.read_only {
        return;
    }
    let next = g.open.seq + 1;
    let jseq = g.open.jseq;
    g.open_since = None;
    let open = std::mem::replace(
        &mut g.open,
        OpenSeg {
            seq: next,
            entries: Vec::new(),
            data: Default::default(),
            jseq,
        },
    );
    g.segs_since_ckpt += 1;
    let checkpoint = if g.segs_since_ckpt >= sh.cfg.checkpoint_interval {
        g.segs_since_ckpt = 0;
        g.maps_in_flight += 1;
        Some(g.map.iter().collect())
    } else {
        None
    };
    let mark = JournalMark {
        journal_id: sh.log.id(),
        jseq: open.jseq,
    };
    let sealed = Arc::new(Sealed {
        seq: open.seq,
        entries: open.entries,
        data: open.data,
        mark,
        checkpoint,
    });
    g.pending.insert(sealed.seq, sealed.clone());
    let tx = sh.jobs.lock().unwrap_or_else(|p| p.into_inner());
    if tx.send(Job::Upload(sealed)).is_err() {
        g.failed = Some("upload workers are gone".into());
    }
}
