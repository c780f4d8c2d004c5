//! Garbage collection: stored segments whose live fraction fell below a threshold (in an
//! automatic run, the emptiest of them, up to what was written since the previous run) have
//! their live data written again (each victim read in one request, a group of victims at a time;
//! in LBA order within a group; through the committer, only where no client write came in
//! meanwhile); then every stored segment that neither the map, a snapshot nor the newest
//! checkpoint still needs is deleted.
//!
//! Order of the steps, and why it is crash safe:
//! 1. seal and wait until every segment so far is stored;
//! 2. relocate the victims' live extents (new segments), seal and store them;
//! 3. store a fresh checkpoint and a copy of it, each read back before older ones are rotated
//!    away (two are always kept) — after a crash, recovery starts from either and never reads
//!    a victim;
//! 4. wait for snapshot checkpoints still being stored, then delete segments no map refers
//!    to (the head, each kept checkpoint, each snapshot) and that lie before the oldest kept
//!    checkpoint's replay start. A crash between 3 and 4 only leaves garbage for the next run.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use shale_error::{err, Result};
use shale_extmap::Target;
use shale_format::segment::EntryKind;
use shale_format::SECTOR;

use crate::volume::{lock, Relocation, Req, Shared};

/// What a run did (also accumulated in `Stats::gc`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcReport {
    pub runs: u64,
    pub segments_examined: u64,
    pub segments_relocated: u64,
    pub bytes_relocated: u64,
    pub segments_deleted: u64,
    pub bytes_deleted: u64,
}

fn segs_of(map: &shale_extmap::ExtentMap, into: &mut HashSet<u64>) {
    for (_, _, t) in map.iter() {
        if let Target::Data { seg, .. } = t {
            into.insert(seg);
        }
    }
}

/// Victims read into memory at once (each at most a segment: bounds what a run holds).
const GC_READ_GROUP: usize = 4;

/// Bytes of victims' spans a batch of relocations may keep in memory through its views, past
/// the group being read: the batch is relocated at the end of a group that reaches it.
const GC_HELD_MAX: usize = 64 << 20;

/// One collection. `budget`: the most live bytes to relocate (automatic runs); victims are
/// then taken emptiest first, and the rest wait for a later run. `None`: every victim.
pub(crate) fn run(sh: &Arc<Shared>, threshold: f64, budget: Option<u64>) -> Result<GcReport> {
    if sh.read_only {
        return Err(err!(ReadOnly, "image is open read-only"));
    }
    let _one = sh.gc_one.lock().unwrap_or_else(|p| p.into_inner());
    let mut rep = GcReport {
        runs: 1,
        ..Default::default()
    };
    sh.flush_to_store()?;
    let stored: Vec<(u64, u64)> = sh
        .store
        .list(&shale_format::keys::seg_dir(&sh.prefix))?
        .iter()
        .filter_map(|o| shale_format::keys::parse_seg(&sh.prefix, &o.key).map(|s| (s, o.size)))
        .collect();
    // A copy of the map, taken under the engine lock (a copy of its chunks), walked without
    // it: writes wait for that lock, and the walks below hash every entry. What the copy
    // misses (writes after it) only makes a victim look fuller, or names extents that are no
    // longer live: relocation writes a sector only where the map still points at the victim.
    let (map, durable) = {
        let g = lock(&sh.inner);
        (g.map.clone(), g.durable)
    };
    let live = map.live_sectors_by_segment();
    // Victims: stored, durable segments mostly dead.
    let mut candidates: Vec<(f64, u64, u64)> = Vec::new();
    for &(seq, _) in stored.iter().filter(|s| s.0 <= durable) {
        rep.segments_examined += 1;
        let h = sh.index_cache.get(sh, seq)?;
        let total: u64 = h
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Data)
            .map(|e| e.len as u64)
            .sum();
        let l = live.get(&seq).copied().unwrap_or(0);
        if total == 0 || (l as f64) < threshold * total as f64 {
            let frac = if total == 0 {
                0.0
            } else {
                l as f64 / total as f64
            };
            candidates.push((frac, seq, l * SECTOR));
        }
    }
    // Within a budget, the emptiest first: they free the most for what they cost. The others
    // get emptier meanwhile, and cheaper to collect.
    if budget.is_some() {
        candidates.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    }
    let mut victims = HashSet::new();
    let mut cost = 0u64;
    for (_, seq, live_bytes) in candidates {
        if let Some(b) = budget {
            if !victims.is_empty() && cost + live_bytes > b {
                break;
            }
        }
        cost += live_bytes;
        victims.insert(seq);
    }
    if victims.is_empty() {
        return Ok(rep);
    }
    // Their live extents, in LBA order.
    let extents: Vec<(u64, u64, u64, u32)> = map
        .iter()
        .filter_map(|(lba, len, t)| match t {
            Target::Data { seg, off } if victims.contains(&seg) => Some((lba, len, seg, off)),
            _ => None,
        })
        .collect();
    drop(map);
    // Victims are read whole (the span of their live data, one request each) a group at a
    // time, and each group's extents relocated in LBA order: live data scattered by random
    // writes would otherwise cost one small read per extent. The pages of live data are
    // checked as before; damaged dead data stays harmless.
    let mut order: Vec<u64> = victims.iter().copied().collect();
    order.sort_unstable();
    let group_of: HashMap<u64, usize> = order
        .iter()
        .enumerate()
        .map(|(i, &seg)| (seg, i / GC_READ_GROUP))
        .collect();
    let mut groups: Vec<Vec<(u64, u64, u64, u32)>> =
        vec![Vec::new(); order.len().div_ceil(GC_READ_GROUP)];
    for e in extents {
        groups[group_of[&e.2]].push(e);
    }
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    // Bytes of the spans read for the groups the batch has views into: a batch of little live
    // data from nearly empty victims would otherwise keep many whole spans in memory.
    let mut held = 0usize;
    for extents in groups {
        let mut spans: HashMap<u64, (u64, u64)> = HashMap::new();
        for &(_, len, seg, off) in &extents {
            let (lo, hi) = (off as u64, off as u64 + len);
            let e = spans.entry(seg).or_insert((lo, hi));
            e.0 = e.0.min(lo);
            e.1 = e.1.max(hi);
        }
        let mut read: HashMap<u64, crate::read::SegmentSpan> = HashMap::new();
        for (&seg, &(lo, hi)) in &spans {
            let span = sh.read_segment_span(seg, lo, hi)?;
            held += span.len();
            read.insert(seg, span);
        }
        for &(lba, len, seg, off) in &extents {
            let Some(span) = read.get_mut(&seg) else {
                continue;
            };
            // Only the pages of live data are checked (dead data may be anything).
            let data = span.check(off as u64, len)?;
            bytes += data.len();
            rep.bytes_relocated += data.len() as u64;
            batch.push(Relocation {
                lba,
                seg,
                off,
                data,
            });
            if bytes >= 4 << 20 {
                sh.call(Req::Relocate {
                    items: std::mem::take(&mut batch),
                })?;
                bytes = 0;
                // What is left held: the current group's spans.
                held = read.values().map(|s| s.len()).sum();
            }
        }
        if batch.is_empty() {
            held = 0;
        } else if held >= GC_HELD_MAX {
            sh.call(Req::Relocate {
                items: std::mem::take(&mut batch),
            })?;
            bytes = 0;
            held = 0;
        }
    }
    if !batch.is_empty() {
        sh.call(Req::Relocate { items: batch })?;
    }
    rep.segments_relocated = victims.len() as u64;
    // A checkpoint past the relocations, so recovery from it never needs a victim.
    let out = Arc::new(std::sync::Mutex::new(None));
    sh.call(Req::Snapshot {
        key: None,
        out: out.clone(),
    })?;
    let ckpt_seq = out.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(0);
    // ... and a second copy of it, read back, which rotates the pre-GC checkpoint away: both
    // kept checkpoints then lie past every victim, and either alone is a complete base.
    crate::upload::copy_checkpoint(
        sh.store.as_ref(),
        &sh.prefix,
        &crate::upload::ckpt_key(&sh.prefix, sh.epoch, ckpt_seq + 1),
    )?;
    // The head's map first: a checkpoint captured after this names only segments live now
    // or newer ones (which lie past the bound below), so none of them is doomed.
    let mut needed = HashSet::new();
    let head = lock(&sh.inner).map.clone();
    segs_of(&head, &mut needed);
    drop(head);
    // Snapshot and regular checkpoints still being stored were captured before the
    // relocation and may name victims: wait for them to land so the listing below sees them.
    {
        let mut g = lock(&sh.inner);
        while g.maps_in_flight > 0 && g.failed.is_none() && !g.closing {
            g = sh
                .progress
                .wait_timeout(g, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if let Some(f) = &g.failed {
            return Err(crate::volume::failed_error(f));
        }
        if g.maps_in_flight > 0 {
            return Err(err!(Unavailable, "closing: garbage collection stopped"));
        }
    }
    // Needed also: every kept checkpoint (each must read back: recovery may start from any
    // of them), every snapshot's map. Nothing at or past the oldest kept checkpoint's first
    // replayed segment is deleted: recovery from that checkpoint replays them. A checkpoint
    // or snapshot deleted between the listing and the read (rotated away after a newer one
    // was read back; a removed snapshot) needs nothing any more.
    let mut bound = ckpt_seq + 1;
    let gone = |r: &Result<shale_extmap::ExtentMap>| matches!(r, Err(e) if e.kind() == shale_error::ErrorKind::NotFound);
    for (_, n, key) in crate::recovery::list_checkpoints(sh.store.as_ref(), &sh.prefix)? {
        let m = crate::recovery::load_checkpoint_map(sh.store.as_ref(), &key);
        if gone(&m) {
            continue;
        }
        segs_of(&m?, &mut needed);
        bound = bound.min(n);
    }
    for o in sh.store.list(&shale_format::keys::snap_dir(&sh.prefix))? {
        let m = crate::recovery::load_checkpoint_map(sh.store.as_ref(), &o.key);
        if gone(&m) {
            continue;
        }
        segs_of(&m?, &mut needed);
    }
    let sizes: HashMap<u64, u64> = stored.iter().copied().collect();
    let doomed: Vec<u64> = stored
        .iter()
        .map(|s| s.0)
        .filter(|s| *s < bound && !needed.contains(s))
        .collect();
    // Wait for reads planned before the relocation (a barrier: taken and released). Reads
    // that start after it plan from a map that names no doomed segment (see `needed`), so
    // they need not wait for the deletions.
    drop(sh.gc_guard.write().unwrap_or_else(|p| p.into_inner()));
    for seq in doomed {
        sh.check_lease("deleting collected segments")?;
        // On a local store the file is kept to be written over by a later open segment.
        let kept = match &sh.cfg.log {
            crate::config::LogConfig::InPlace(staging) => staging.0.retire(seq)?,
            _ => false,
        };
        if !kept {
            sh.store.delete(&crate::upload::seg_key(&sh.prefix, seq))?;
        }
        rep.segments_deleted += 1;
        rep.bytes_deleted += sizes.get(&seq).copied().unwrap_or(0);
    }
    let mut g = lock(&sh.inner);
    let s = &mut g.stats.gc;
    s.runs += 1;
    s.segments_examined += rep.segments_examined;
    s.segments_relocated += rep.segments_relocated;
    s.bytes_relocated += rep.bytes_relocated;
    s.segments_deleted += rep.segments_deleted;
    s.bytes_deleted += rep.bytes_deleted;
    Ok(rep)
}

/// Background trigger: after every `every` stored segments, one run.
pub(crate) fn spawn(
    sh: &Arc<Shared>,
    threshold: f64,
    every: u64,
) -> Result<std::thread::JoinHandle<()>> {
    let sh = sh.clone();
    std::thread::Builder::new()
        .name("shale-gc".into())
        .spawn(move || {
            let mut last = 0u64;
            loop {
                let (stop, written) = {
                    let mut g = lock(&sh.inner);
                    while !g.closing
                        && g.failed.is_none()
                        && g.stats.segments_written < last + every
                    {
                        g = sh
                            .progress
                            .wait_timeout(g, Duration::from_millis(500))
                            .unwrap_or_else(|p| p.into_inner())
                            .0;
                    }
                    (g.closing || g.failed.is_some(), g.stats.segments_written)
                };
                if stop {
                    return;
                }
                let since = written - last;
                last = written;
                // Relocate at most what the writes since the last run stored: garbage
                // collection then costs the foreground at most one byte per byte written,
                // and settles where its victims are about half dead (a write
                // amplification near 2), instead of chasing every segment the moment it
                // falls below the threshold (3.3 at 0.7).
                let budget = since.max(every) * sh.cfg.segment_size;
                if let Err(e) = run(&sh, threshold, Some(budget)) {
                    let closing = lock(&sh.inner).closing
                        || sh.queue.lock().unwrap_or_else(|p| p.into_inner()).stop;
                    if closing {
                        // Cut short by close: the next run picks it up.
                        tracing::debug!("garbage collection of {:?} stopped by close: {e}", sh);
                    } else {
                        tracing::warn!("garbage collection of {:?}: {e}", sh);
                    }
                }
            }
        })
        .map_err(|e| shale_error::Error::io("cannot start the gc thread", e))
}
