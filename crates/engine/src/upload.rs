//! Background storing of sealed segments and checkpoints.
//!
//! Workers take sealed segments from a channel and store them create-only (a segment number
//! is written once): encoded and PUT, or — with the in-place log — published from the staging
//! file that already holds their records (one worker, in order, so that a published segment
//! implies every earlier one is published). `durable` then advances over the longest run of
//! stored numbers; log records up to the newest durable segment are released; flushes waiting
//! for the store are answered. A checkpoint riding on a segment is written once `durable`
//! reaches it; older checkpoints are then deleted (the newest two are kept).

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use shale_error::{err, Error, ErrorKind, Result};
use shale_extmap::Target;
use shale_format::checkpoint::{self, Checkpoint, Extent, ZERO_SEG};
use shale_format::segment::{self, JournalMark};
use shale_store::PutMode;

use crate::config::LogConfig;
use crate::volume::{lock, Done, Sealed, Shared};

pub(crate) enum Job {
    Upload(Arc<Sealed>),
    /// Store a checkpoint of segments ≤ seq under `key` once they are durable.
    Checkpoint {
        seq: u64,
        mark: JournalMark,
        key: String,
        extents: Vec<(u64, u64, Target)>,
        /// A snapshot (counted in `maps_in_flight`), not a regular checkpoint.
        snap: bool,
        done: Done,
    },
    Stop,
}

pub(crate) use shale_format::keys::{ckpt as ckpt_key, seg as seg_key};

pub(crate) fn spawn_workers(sh: &Arc<Shared>, rx: Receiver<Job>) -> Result<Vec<JoinHandle<()>>> {
    let rx = Arc::new(Mutex::new(rx));
    let n = if matches!(sh.cfg.log, LogConfig::InPlace(_)) {
        1
    } else {
        sh.cfg.upload_threads.max(1)
    };
    let mut out = Vec::new();
    for i in 0..n {
        let sh = sh.clone();
        let rx = rx.clone();
        let h = std::thread::Builder::new()
            .name(format!("shale-up{i}"))
            .spawn(move || worker(sh, rx))
            .map_err(|e| Error::io("cannot start upload thread", e))?;
        out.push(h);
    }
    Ok(out)
}

fn worker(sh: Arc<Shared>, rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = {
            let r = rx.lock().unwrap_or_else(|p| p.into_inner());
            r.recv()
        };
        match job {
            Ok(Job::Upload(s)) => upload(&sh, s),
            Ok(Job::Checkpoint {
                seq,
                mark,
                key,
                extents,
                snap,
                done,
            }) => {
                let mut g = lock(&sh.inner);
                while g.failed.is_none() && g.durable < seq {
                    g = sh.progress.wait(g).unwrap_or_else(|p| p.into_inner());
                }
                let failed = g.failed.clone();
                drop(g);
                let r = match failed {
                    Some(f) => Err(crate::volume::failed_error(&f)),
                    None => {
                        let c = Checkpoint {
                            seq,
                            next_seq: seq + 1,
                            epoch: sh.epoch,
                            journal: mark,
                            extents: to_extents(extents.into_iter()),
                        };
                        if key.starts_with(&shale_format::keys::ckpt_dir(&sh.prefix)) {
                            sh.check_lease("storing a checkpoint")
                                .and_then(|_| store_checkpoint(sh.uploads.as_ref(), &sh.prefix, &c))
                        } else {
                            // A snapshot's checkpoint: its key is unique to the snapshot, so
                            // an existing object is never someone else's to replace.
                            let b = Bytes::from(checkpoint::encode(&c));
                            match sh.uploads.put(&key, b, PutMode::Create) {
                                Err(e) if e.kind() == ErrorKind::Exists => Err(err!(
                                    Exists,
                                    "{key}: a snapshot checkpoint with this name exists"
                                )),
                                r => r.map(|_| ()),
                            }
                        }
                    }
                };
                if snap {
                    lock(&sh.inner).maps_in_flight -= 1;
                    sh.progress.notify_all();
                }
                done(r);
            }
            Ok(Job::Stop) | Err(_) => return,
        }
    }
}

fn store_segment(sh: &Shared, s: &Sealed) -> Result<u64> {
    // An in-place segment's header fills the region reserved before its records.
    let reserved = match &sh.cfg.log {
        LogConfig::InPlace(_) => Some(sh.cfg.header_reserve as usize),
        _ => None,
    };
    let header = segment::encode_header_with_crcs(
        s.seq,
        sh.epoch,
        s.mark,
        &s.entries,
        s.data.len(),
        &s.data.page_crcs(s.seq),
        reserved,
    )?;
    if let LogConfig::InPlace(staging) = &sh.cfg.log {
        let key = seg_key(&sh.prefix, s.seq);
        let staged = shale_journal::StagedFile {
            epoch: sh.epoch,
            seq: s.seq,
            adopted: false,
        };
        create_segment(sh, &key, s, || {
            staging.0.publish(&staged, &header, s.data.len() as u64)
        })?;
        return Ok(header.len() as u64 + s.data.len() as u64);
    }
    let mut obj = header;
    let header_len = obj.len();
    s.data.append_to(&mut obj);
    obj.resize(
        header_len + s.data.len().div_ceil(shale_format::PAGE) * shale_format::PAGE,
        0,
    );
    let obj = Bytes::from(obj);
    let len = obj.len() as u64;
    let key = seg_key(&sh.prefix, s.seq);
    // `uploads` retries an unreachable store (see `Shared::uploads`).
    create_segment(sh, &key, s, || {
        sh.uploads
            .put(&key, obj.clone(), PutMode::Create)
            .map(|_| ())
    })?;
    Ok(len)
}

/// A segment number we are about to write exists already. Written under our epoch: it is
/// ours (a retried PUT whose first attempt landed). Under an older epoch: a writer that lost
/// the image wrote it after we took over — it is not part of the log, so it is deleted and
/// the PUT retried. Under a newer epoch: we have lost the image.
fn collision(sh: &Shared, key: &str, ours: &Sealed) -> Result<()> {
    let h = crate::read::load_header(sh.store.as_ref(), key)?;
    if h.epoch == sh.epoch {
        // Ours only if it holds exactly what we were storing: another writer of the same
        // epoch (an image without the exclusive lock, opened writable twice) must never have
        // its segment taken for ours — that would be wrong data with valid checksums.
        let crcs = ours.data.page_crcs(ours.seq);
        if h.entries == ours.entries && h.journal == ours.mark && h.page_crcs == crcs {
            return Ok(());
        }
        let mut g = lock(&sh.inner);
        g.fenced = true;
        return Err(err!(
            Fenced,
            "{key} was written by another writer of this image at the same time; an image \
             written by two clients needs the exclusive-lock feature (`shale` enables it by \
             default)"
        ));
    }
    if h.epoch < sh.epoch {
        tracing::warn!(
            "{key}: removing a segment of fenced epoch {} (ours is {})",
            h.epoch,
            sh.epoch
        );
        sh.store.delete(key)?;
        return Err(err!(
            Unavailable,
            "{key} was held by a fenced writer; retrying"
        ));
    }
    let mut g = lock(&sh.inner);
    g.fenced = true;
    Err(err!(
        Fenced,
        "{key} was written under epoch {} by the writer that took this image over",
        h.epoch
    ))
}

/// Store a new segment object with `put` (create-only). A segment of that number already
/// there is resolved by [`collision`]: ours (a retried PUT whose first answer was lost), a
/// fenced writer's (deleted, then the PUT is tried again), or a newer writer's (fenced).
fn create_segment(
    sh: &Shared,
    key: &str,
    s: &Sealed,
    mut put: impl FnMut() -> Result<()>,
) -> Result<()> {
    for _ in 0..4 {
        match put() {
            Err(e) if e.kind() == ErrorKind::Exists => match collision(sh, key, s) {
                Err(e) if e.kind() == ErrorKind::Unavailable => continue,
                r => return r,
            },
            r => return r,
        }
    }
    Err(err!(
        Busy,
        "{key}: could not be stored after repeated collisions"
    ))
}

fn upload(sh: &Shared, s: Arc<Sealed>) {
    let (fenced, failed) = {
        let g = lock(&sh.inner);
        (g.fenced, g.failed.clone())
    };
    let res = if fenced {
        Err(err!(
            Fenced,
            "not storing segment {:016x}: this writer was fenced",
            s.seq
        ))
    } else if let (Some(f), LogConfig::InPlace(_)) = (failed, &sh.cfg.log) {
        // Publishing a staging file removes it: a segment published past one that could not
        // be would be the only copy of its records, yet recovery skips segments past a gap
        // (they look like an interrupted upload burst). Keep it staged: the next open
        // publishes the staging files in order.
        Err(err!(
            Unavailable,
            "not publishing segment {:016x} past an earlier one that failed ({f})",
            s.seq
        ))
    } else {
        store_segment(sh, &s)
    };
    let mut ready: Vec<Done> = Vec::new();
    let mut failed: Vec<Done> = Vec::new();
    let mut release = None;
    let mut g = lock(&sh.inner);
    match res {
        Ok(len) => {
            g.stats.segments_written += 1;
            g.stats.bytes_to_store += len;
            g.pending.remove(&s.seq);
            g.stored_ahead.insert(s.seq, s.mark.jseq);
            loop {
                let next = g.durable + 1;
                let Some(jseq) = g.stored_ahead.remove(&next) else {
                    break;
                };
                g.durable = next;
                release = Some(jseq);
            }
            let durable = g.durable;
            let (r, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut g.durable_waiters)
                .into_iter()
                .partition(|(t, _)| *t <= durable);
            g.durable_waiters = keep;
            ready = r.into_iter().map(|(_, d)| d).collect();
        }
        Err(e) => {
            tracing::error!("segment {:016x} of {:?}: {e}", s.seq, sh);
            if g.failed.is_none() {
                g.failed = Some(format!("segment {:016x} could not be stored: {e}", s.seq));
            }
            failed = sh.fail_waiters(&mut g);
        }
    }
    // Checkpoints ride on segments; write the ones now covered by `durable`. Only the worker
    // that stored the segment writes its checkpoint; if `durable` has not reached it yet, wait
    // (the earlier segments are with other workers and will get there).
    let mut write_ckpt = false;
    if s.checkpoint.is_some() {
        while g.failed.is_none() && g.durable < s.seq {
            g = sh.progress.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        write_ckpt = g.failed.is_none() && g.durable >= s.seq;
    }
    drop(g);
    sh.progress.notify_all();
    if let Some(j) = release {
        sh.log.release(j);
    }
    for d in ready {
        d(Ok(()));
    }
    for d in failed {
        d(Err(err!(Io, "segment {:016x} could not be stored", s.seq)));
    }
    if let (true, Some(extents)) = (write_ckpt, &s.checkpoint) {
        write_checkpoint(sh, s.seq, s.mark, extents);
    }
    if s.checkpoint.is_some() {
        lock(&sh.inner).maps_in_flight -= 1;
        sh.progress.notify_all();
    }
}

fn write_checkpoint(sh: &Shared, seq: u64, mark: JournalMark, extents: &[(u64, u64, Target)]) {
    let c = Checkpoint {
        seq,
        next_seq: seq + 1,
        epoch: sh.epoch,
        journal: mark,
        extents: to_extents(extents.iter().copied()),
    };
    // A writer without a lease stores no checkpoint (and so rotates nothing away).
    if let Err(e) = sh
        .check_lease("storing a checkpoint")
        .and_then(|_| store_checkpoint(sh.uploads.as_ref(), &sh.prefix, &c))
    {
        // A missing checkpoint only makes the next open replay more segments.
        tracing::warn!("checkpoint after segment {seq:016x} of {:?}: {e}", sh);
        return;
    }
    lock(&sh.inner).stats.checkpoints_written += 1;
}

/// Map entries → checkpoint extents (entries are bounded well below u32 sectors; split anyway).
pub(crate) fn to_extents(it: impl Iterator<Item = (u64, u64, Target)>) -> Vec<Extent> {
    let mut out = Vec::new();
    for (lba, len, t) in it {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(u32::MAX as u64 / 2);
            let (seg, off) = match t {
                Target::Data { seg, off } => (seg, off + done as u32),
                Target::Zero => (ZERO_SEG, 0),
            };
            out.push(Extent {
                lba: lba + done,
                len: n as u32,
                off,
                seg,
            });
            done += n;
        }
    }
    out
}

/// Store a checkpoint, read it back, and only then delete all but the two newest: a lost or
/// damaged newest checkpoint always leaves the previous one to recover from.
pub(crate) fn store_checkpoint(
    store: &dyn shale_store::ObjectStore,
    prefix: &str,
    c: &Checkpoint,
) -> Result<()> {
    let key = ckpt_key(prefix, c.epoch, c.next_seq);
    store.put(&key, Bytes::from(checkpoint::encode(c)), PutMode::Overwrite)?;
    let back = match store.get(&key) {
        // Rotated away already by two newer checkpoints stored meanwhile: superseded.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        r => r?.0,
    };
    let back = checkpoint::decode(&back).map_err(|e| e.context("reading a new checkpoint back"))?;
    if back.next_seq != c.next_seq || back.extents.len() != c.extents.len() {
        return Err(err!(
            Corruption,
            "{key}: the checkpoint read back differs from the one written"
        ));
    }
    rotate_checkpoints(store, prefix, &key)
}

/// Delete all checkpoints but the two newest (never `newest` itself or anything after it).
fn rotate_checkpoints(
    store: &dyn shale_store::ObjectStore,
    prefix: &str,
    newest: &str,
) -> Result<()> {
    let all = crate::recovery::list_checkpoints(store, prefix)?;
    if all.len() > 2 {
        for (_, _, k) in &all[..all.len() - 2] {
            if k.as_str() < newest {
                store.delete(k)?;
            }
        }
    }
    Ok(())
}

/// Store a second copy of the checkpoint `key` (as `key-1`), read it back, then rotate: the
/// two kept checkpoints are then both this one.
pub(crate) fn copy_checkpoint(
    store: &dyn shale_store::ObjectStore,
    prefix: &str,
    key: &str,
) -> Result<()> {
    let b = match store.get(key) {
        // Superseded: two newer checkpoints were stored meanwhile and rotated it away.
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        r => r?.0,
    };
    checkpoint::decode(&b).map_err(|e| e.context(key))?;
    let copy = shale_format::keys::ckpt_copy(key, 1);
    store.put(&copy, b, PutMode::Overwrite)?;
    let back = match store.get(&copy) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        r => r?.0,
    };
    checkpoint::decode(&back).map_err(|e| e.context("reading a checkpoint copy back"))?;
    rotate_checkpoints(store, prefix, &copy)
}
