//! Background upload of sealed segments and checkpoints.
//!
//! Workers take sealed segments from a channel, encode and PUT them (create-only: a segment
//! number is written once), then advance `durable` over the longest run of stored numbers.
//! A checkpoint riding on a segment is written once `durable` reaches that segment; older
//! checkpoints are then deleted (the newest two are kept).

use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use shale_error::{ErrorKind, Result};
use shale_extmap::Target;
use shale_format::checkpoint::{self, Checkpoint, Extent, ZERO_SEG};
use shale_format::segment;
use shale_store::PutMode;

use crate::volume::{lock, Sealed, Shared};

pub(crate) enum Job {
    Upload(Arc<Sealed>),
    Stop,
}

pub(crate) fn seg_key(prefix: &str, seq: u64) -> String {
    format!("{prefix}seg/{seq:016x}")
}

pub(crate) fn ckpt_key(prefix: &str, next_seq: u64) -> String {
    format!("{prefix}ckpt/{next_seq:016x}")
}

pub(crate) fn spawn_workers(sh: &Arc<Shared>, rx: Receiver<Job>) -> Result<Vec<JoinHandle<()>>> {
    let rx = Arc::new(Mutex::new(rx));
    let mut out = Vec::new();
    for i in 0..sh.cfg.upload_threads.max(1) {
        let sh = sh.clone();
        let rx = rx.clone();
        let h = std::thread::Builder::new()
            .name(format!("shale-up{i}"))
            .spawn(move || worker(sh, rx))
            .map_err(|e| shale_error::Error::io("cannot start upload thread", e))?;
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
            Ok(Job::Stop) | Err(_) => return,
        }
    }
}

fn upload(sh: &Shared, s: Arc<Sealed>) {
    let res = segment::encode(s.seq, sh.epoch, Default::default(), &s.entries, &s.data).and_then(|obj| {
        let len = obj.len() as u64;
        put_with_retry(sh, &seg_key(&sh.prefix, s.seq), Bytes::from(obj)).map(|_| len)
    });
    let mut g = lock(&sh.inner);
    match res {
        Ok(len) => {
            g.stats.segments_written += 1;
            g.stats.bytes_to_store += len;
            g.pending.remove(&s.seq);
            g.stored_ahead.insert(s.seq);
            loop {
                let next = g.durable + 1;
                if !g.stored_ahead.remove(&next) {
                    break;
                }
                g.durable = next;
            }
        }
        Err(e) => {
            tracing::error!("segment {:016x} of {:?}: {e}", s.seq, sh);
            if g.failed.is_none() {
                g.failed = Some(format!("segment {:016x} could not be stored: {e}", s.seq));
            }
        }
    }
    // Checkpoints ride on segments; write the ones now covered by `durable`. Only the worker
    // that stored the segment writes its checkpoint; if `durable` has not reached it yet, wait.
    if let Some(extents) = &s.checkpoint {
        while g.failed.is_none() && g.durable < s.seq {
            g = sh.progress.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        let ok = g.failed.is_none() && g.durable >= s.seq;
        drop(g);
        sh.progress.notify_all();
        if ok {
            write_checkpoint(sh, s.seq, extents);
        }
        return;
    }
    drop(g);
    sh.progress.notify_all();
}

fn write_checkpoint(sh: &Shared, seq: u64, extents: &[(u64, u64, Target)]) {
    let mut out = Vec::with_capacity(extents.len());
    for &(lba, len, t) in extents {
        // The map's entries are bounded well below u32 sectors; split defensively anyway.
        let mut done = 0;
        while done < len {
            let n = (len - done).min(u32::MAX as u64 / 2);
            let (seg, off) = match t {
                Target::Data { seg, off } => (seg, off + done as u32),
                Target::Zero => (ZERO_SEG, 0),
            };
            out.push(Extent { lba: lba + done, len: n as u32, off, seg });
            done += n;
        }
    }
    let c = Checkpoint { seq, next_seq: seq + 1, epoch: sh.epoch, journal: Default::default(), extents: out };
    if let Err(e) = store_checkpoint(sh.store.as_ref(), &sh.prefix, &c) {
        // A missing checkpoint only makes the next open replay more segments.
        tracing::warn!("checkpoint after segment {seq:016x} of {:?}: {e}", sh);
        return;
    }
    lock(&sh.inner).stats.checkpoints_written += 1;
}

/// Store a checkpoint and delete all but the two newest.
pub(crate) fn store_checkpoint(store: &dyn shale_store::ObjectStore, prefix: &str, c: &Checkpoint) -> Result<()> {
    let key = ckpt_key(prefix, c.next_seq);
    store.put(&key, Bytes::from(checkpoint::encode(c)), PutMode::Overwrite)?;
    let mut all = store.list(&format!("{prefix}ckpt/"))?;
    all.sort_by(|a, b| a.key.cmp(&b.key));
    if all.len() > 2 {
        for o in &all[..all.len() - 2] {
            if o.key < key {
                store.delete(&o.key)?;
            }
        }
    }
    Ok(())
}

fn put_with_retry(sh: &Shared, key: &str, data: Bytes) -> Result<()> {
    let mut delay = Duration::from_millis(50);
    let mut attempt = 1;
    loop {
        match sh.store.put(key, data.clone(), PutMode::Create) {
            Ok(_) => return Ok(()),
            // A retried PUT whose first attempt landed: the object is ours.
            Err(e) if e.kind() == ErrorKind::Exists && attempt > 1 => return Ok(()),
            Err(e) if attempt < sh.cfg.upload_attempts && e.kind() != ErrorKind::Exists => {
                tracing::warn!("PUT {key} failed (attempt {attempt}): {e}; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
