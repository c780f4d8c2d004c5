//! Open = newest valid checkpoint + replay of the longest run of consecutive segments after it.
//!
//! Segments are uploaded concurrently, so after a crash segment n+1 may exist without n. Such
//! segments belong to no acknowledged prefix (a flush waits for every segment before it). A
//! writable open therefore first stores a checkpoint whose `next_seq` lies past every existing
//! segment, and only then deletes the orphans: a crash in between leaves them unreachable, and
//! their numbers are never used again.

use shale_error::{err, ErrorKind, Result};
use shale_extmap::{ExtentMap, Target};
use shale_format::checkpoint::{self, Checkpoint, ZERO_SEG};
use shale_format::keys;

use shale_format::segment::{self, EntryKind, JournalMark};
use shale_store::ObjectStore;

use crate::read::load_header;
use crate::upload::{seg_key, store_checkpoint};

pub(crate) struct Recovered {
    pub map: ExtentMap,
    pub next_seq: u64,
    /// Segments replayed on top of the checkpoint (they count toward the next checkpoint).
    pub segs_replayed: u64,
    /// The log records the recovered state contains.
    pub mark: JournalMark,
}

/// The map stored in one checkpoint object.
pub(crate) fn load_checkpoint_map(store: &dyn ObjectStore, key: &str) -> Result<ExtentMap> {
    let (b, _) = store
        .get(key)
        .map_err(|e| e.context("loading a snapshot"))?;
    let c = checkpoint::decode(&b).map_err(|e| e.context(key))?;
    let mut map = ExtentMap::new();
    apply_checkpoint(&c, &mut map).map_err(|e| e.context(key))?;
    Ok(map)
}

/// Insert a checkpoint's extents into a map. Extents the map cannot hold (a checksum-valid
/// but damaged or foreign checkpoint) are Corruption, never a panic or a silent clip.
pub(crate) fn apply_checkpoint(c: &Checkpoint, map: &mut ExtentMap) -> Result<()> {
    for x in &c.extents {
        let t = if x.seg == ZERO_SEG {
            Target::Zero
        } else {
            Target::Data {
                seg: x.seg,
                off: x.off,
            }
        };
        check_extent(x.lba, x.len as u64, t, "checkpoint")?;
        map.insert(x.lba, x.len as u64, t);
    }
    Ok(())
}

fn check_extent(lba: u64, len: u64, t: Target, what: &str) -> Result<()> {
    let ok = lba
        .checked_add(len)
        .is_some_and(|e| e <= shale_extmap::MAX_LBA)
        && match t {
            Target::Zero => true,
            Target::Data { seg, off } => {
                seg <= shale_extmap::MAX_SEG && off as u64 + len <= shale_extmap::SEG_SECTORS
            }
        };
    if ok {
        Ok(())
    } else {
        Err(err!(
            Corruption,
            "{what} extent lba {lba} len {len} -> {t:?} lies outside what an image can address"
        ))
    }
}

/// How far past a gap segments of an interrupted upload burst may lie: sealed segments not yet
/// stored are bounded by `max_pending` (≤ 64) plus those with the upload workers. Anything
/// further means the log is damaged (a lost checkpoint or segment), not an interrupted burst.
pub(crate) const ORPHAN_WINDOW: u64 = 256;

/// The advice every "cannot find a consistent base" error ends with.
pub(crate) const REPAIR_HINT: &str = "the image was not changed; run `shale check POOL/IMAGE` to \
     see what is damaged and `shale repair POOL/IMAGE` to rebuild it from the surviving segments";

/// Checkpoints under `prefix`, oldest first: (epoch, next_seq, key).
pub(crate) fn list_checkpoints(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Vec<(u64, u64, String)>> {
    let mut ckpts: Vec<(u64, u64, String)> = store
        .list(&keys::ckpt_dir(prefix))?
        .into_iter()
        .filter_map(|o| {
            let (e, n) = keys::parse_ckpt(prefix, &o.key)?;
            Some((e, n, o.key))
        })
        .collect();
    ckpts.sort_unstable();
    Ok(ckpts)
}

/// Numbers of the stored segments under `prefix`, ascending.
pub(crate) fn list_segments(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<u64>> {
    let mut segs: Vec<u64> = store
        .list(&keys::seg_dir(prefix))?
        .iter()
        .filter_map(|o| keys::parse_seg(prefix, &o.key))
        .collect();
    segs.sort_unstable();
    Ok(segs)
}

/// Apply one stored segment's entries to a map (Corruption for entries it cannot hold).
pub(crate) fn apply_segment(map: &mut ExtentMap, seq: u64, h: &segment::Header) -> Result<()> {
    for e in &h.entries {
        let t = match e.kind {
            EntryKind::Data => Target::Data {
                seg: seq,
                off: e.off,
            },
            _ => Target::Zero,
        };
        check_extent(e.lba, e.len as u64, t, &format!("segment {seq:016x}"))?;
    }
    apply_entries(map, seq, &h.entries);
    Ok(())
}

/// Apply the entries of segment `seq` to a map, in order (checked by the caller).
fn apply_entries(map: &mut ExtentMap, seq: u64, entries: &[segment::Entry]) {
    for e in entries {
        match e.kind {
            EntryKind::Data => map.insert(
                e.lba,
                e.len as u64,
                Target::Data {
                    seg: seq,
                    off: e.off,
                },
            ),
            EntryKind::Zero => map.insert(e.lba, e.len as u64, Target::Zero),
            EntryKind::Trim => map.remove(e.lba, e.len as u64),
        }
    }
}

/// Run `f` again while the store answers `Unavailable`, a few times with backoff.
pub(crate) fn with_retries<T>(
    clock: &dyn shale_clock::Clock,
    what: &str,
    mut f: impl FnMut() -> Result<T>,
) -> Result<T> {
    let mut delay = std::time::Duration::from_millis(20);
    for attempt in 1.. {
        match f() {
            Err(e) if e.kind() == ErrorKind::Unavailable && attempt < 8 => {
                tracing::warn!("{what} failed (attempt {attempt}): {e}; retrying");
                clock.sleep(delay);
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
            r => return r,
        }
    }
    unreachable!()
}

pub(crate) fn recover(
    store: &dyn ObjectStore,
    prefix: &str,
    epoch: u64,
    read_only: bool,
    fence: Option<(u64, u64)>,
    clock: &dyn shale_clock::Clock,
) -> Result<Recovered> {
    // Keys are `<epoch>-<next_seq>`: newest epoch first, then newest checkpoint.
    let ckpts = list_checkpoints(store, prefix)?;
    let mut map = ExtentMap::new();
    let mut next = 1u64;
    let mut mark = JournalMark::default();
    let mut base_epoch = 0;
    let mut base: Option<String> = None;
    let mut unusable: Vec<String> = Vec::new();
    for (e, n, key) in ckpts.iter().rev() {
        if *e > epoch {
            if read_only {
                continue;
            }
            return Err(err!(
                Fenced,
                "{key}: another writer (epoch {e}) has taken this image over"
            ));
        }
        if let Some((fe, start)) = fence {
            if *e < fe && *n > start {
                continue; // written by a writer that had already lost the image
            }
        }
        let mut m = ExtentMap::new();
        match store
            .get(key)
            .and_then(|(b, _)| checkpoint::decode(&b))
            .and_then(|c| apply_checkpoint(&c, &mut m).map(|_| c))
        {
            Ok(c) => {
                map = m;
                next = c.next_seq;
                mark = c.journal;
                base_epoch = c.epoch;
                base = Some(key.clone());
                break;
            }
            Err(err)
                if err.kind() == ErrorKind::Corruption || err.kind() == ErrorKind::NotFound =>
            {
                tracing::error!("checkpoint {key} is unusable: {err}; trying an older one");
                unusable.push(format!("{key}: {err}"));
            }
            Err(err) => return Err(err),
        }
    }
    if base.is_none() && !unusable.is_empty() {
        // Never start from an empty map when the image had a checkpoint: segments it covered
        // may have been collected, and an empty base would read (and later delete) as if the
        // image were new.
        return Err(err!(
            Corruption,
            "{prefix}: no usable checkpoint ({}); {REPAIR_HINT}",
            unusable.join("; ")
        ));
    }

    let segs = list_segments(store, prefix)?;
    let max_seen = segs.last().copied().unwrap_or(0);
    let present: std::collections::BTreeSet<u64> =
        segs.iter().copied().filter(|&s| s >= next).collect();
    if base.is_none() && !present.is_empty() && !present.contains(&1) {
        // Every writable open stores a checkpoint before its first segment, so segments
        // without any checkpoint must start at 1.
        let first = *present.iter().next().unwrap_or(&0);
        return Err(err!(
            Corruption,
            "{prefix}: no checkpoint, and the oldest segment is {first:016x}: the checkpoints \
             were lost; {REPAIR_HINT}"
        ));
    }
    let mut replayed = 0u64;
    let mut seq = next;
    while present.contains(&seq) {
        let key = seg_key(prefix, seq);
        let h = load_header(store, &key).map_err(|e| {
            e.context(format!(
                "replaying the log after {}",
                base.as_deref().unwrap_or("the start")
            ))
        })?;
        if h.seq != seq {
            return Err(err!(Corruption, "{key}: holds segment {:016x}", h.seq));
        }
        if h.epoch > epoch {
            if read_only {
                break;
            }
            return Err(err!(
                Fenced,
                "{key}: written under epoch {} newer than ours ({epoch})",
                h.epoch
            ));
        }
        let fenced = fence.is_some_and(|(fe, start)| seq >= start && h.epoch < fe);
        if fenced || h.epoch < base_epoch {
            break; // from a writer that had lost the image: never part of the log
        }
        mark = h.journal;
        apply_segment(&mut map, seq, &h).map_err(|e| e.context(&key))?;
        replayed += 1;
        seq += 1;
    }
    // Segments past the end of the log. A fenced writer's (at or past the fence, of an older
    // epoch) belong to no log: their numbers are free — a segment of ours replaces one
    // (upload::collision, and finish_staged for staging files the fence adopted). Skipping
    // past them would strand what a cooperative handoff left staged. The others are an
    // interrupted upload burst of a log's own writer: skipped, their numbers never reused.
    let orphans: Vec<u64> = present
        .range(seq..)
        .copied()
        .filter(|&o| match fence {
            Some((fe, start)) if o >= start => load_header(store, &seg_key(prefix, o))
                .map(|h| h.epoch >= fe)
                .unwrap_or(true),
            _ => true,
        })
        .collect();
    if base.is_none() && !orphans.is_empty() {
        return Err(err!(
            Corruption,
            "{prefix}: no checkpoint, and segment {seq:016x} is missing while later ones exist; \
             {REPAIR_HINT}"
        ));
    }
    if let Some(&far) = orphans.iter().find(|&&o| o >= seq + ORPHAN_WINDOW) {
        // An interrupted upload burst leaves a few segments past a gap; a log whose segments go
        // on far past one is missing something a checkpoint should have covered.
        return Err(err!(
            Corruption,
            "{}: segment {seq:016x} is missing but segments up to {far:016x} exist (replayed \
             from {}); {REPAIR_HINT}",
            prefix,
            base.as_deref().unwrap_or("the start")
        ));
    }
    let mut next_seq = seq;
    // A writer of a new epoch (a takeover) stores its own base at once: a fenced writer of an
    // older epoch may still rotate that epoch's checkpoints away.
    let takeover = base.is_some() && base_epoch < epoch;
    if !read_only && (base.is_none() || !orphans.is_empty() || takeover) {
        // A checkpoint before anything new is written: the first one of a new image, or one
        // past every orphan of an interrupted upload burst, so their numbers are never used
        // again. The orphans are not deleted here: they belong to no acknowledged prefix and
        // garbage collection removes them once two checkpoints cover them.
        if !orphans.is_empty() {
            next_seq = max_seen + 1;
            tracing::warn!(
                "{prefix}: skipping {} segment(s) past a gap at {seq:016x} (an interrupted \
                 upload burst; never acknowledged)",
                orphans.len()
            );
        }
        let c = Checkpoint {
            seq: seq - 1,
            next_seq,
            epoch,
            journal: mark,
            extents: crate::upload::to_extents(map.iter()),
        };
        with_retries(clock, "storing the recovery checkpoint", || {
            store_checkpoint(store, prefix, &c)?;
            if takeover {
                crate::upload::copy_checkpoint(
                    store,
                    prefix,
                    &crate::upload::ckpt_key(prefix, c.epoch, c.next_seq),
                )?;
            }
            Ok(())
        })?;
        if !orphans.is_empty() {
            // Older checkpoints do not know the orphans were skipped: a recovery from one of
            // them would take the orphans for the log. Only checkpoints past them stay.
            for (_, n, key) in list_checkpoints(store, prefix)? {
                if n < next_seq {
                    store.delete(&key)?;
                }
            }
        }
        replayed = 0;
    }
    Ok(Recovered {
        map,
        next_seq,
        segs_replayed: replayed,
        mark,
    })
}

/// In-place log: turn the staging files left by a crash into segments. The staging file of
/// the next segment number holds records that continue the log; its valid record prefix is
/// that segment's content, so it is published as is (header written into its reserved
/// region). This repeats for the following numbers; whatever staging is left is dropped.
/// With `publish` false (a read-only open), nothing is changed: the records that would be
/// published are returned, to be shown from memory.
pub(crate) fn finish_staged(
    store: &dyn ObjectStore,
    prefix: &str,
    staging: &dyn shale_journal::Staging,
    epoch: u64,
    cfg: &crate::config::EngineConfig,
    rec: &mut Recovered,
    publish: bool,
) -> Result<Vec<Vec<u8>>> {
    let mut shown = Vec::new();
    let (mut next, mut mark) = (rec.next_seq, rec.mark);
    // Staging files of this epoch (a restart after our own crash, or an image without the
    // exclusive lock), and those a takeover adopted from the previous writer (`adopt/`).
    // Staging files of older epochs still in `open/` were written by a fenced writer after
    // the takeover: never part of the log.
    let mut staged: Vec<shale_journal::StagedFile> = Vec::new();
    for f in staging.list()? {
        if f.epoch > epoch {
            if !publish {
                continue;
            }
            return Err(err!(
                Fenced,
                "staging file {f:?}: a newer writer (epoch {}) owns this image",
                f.epoch
            ));
        }
        if !f.adopted && f.epoch < epoch {
            if publish {
                let _ = staging.remove(&f);
            }
            continue;
        }
        staged.push(f);
    }
    staged.sort_by_key(|f| (f.seq, !f.adopted));
    for f in staged {
        let seq = f.seq;
        if seq == next {
            let (file, len) = staging.read(&f)?;
            let recs =
                shale_journal::InPlaceLog::scan(file.as_ref(), len, cfg.header_reserve, None)?;
            let continues = recs.first().is_some_and(|r| {
                (r.journal_id == mark.journal_id && r.seq == mark.jseq + 1)
                    || (r.journal_id != mark.journal_id && r.seq == 1)
            });
            if continues && !publish {
                shown.extend(recs.iter().map(|r| r.bytes.clone()));
                if let Some(r) = recs.last() {
                    mark = JournalMark {
                        journal_id: r.journal_id,
                        jseq: r.seq,
                    };
                }
                next += 1;
                continue;
            }
            if continues {
                let mut entries = Vec::new();
                let mut data = Vec::new();
                let mut last = rec.mark;
                for r in &recs {
                    let h = shale_format::record::decode_header_any(&r.bytes)?;
                    let mut cur = (r.off / 512) as u32 + h.header_sectors;
                    for op in &h.ops {
                        let off = if op.kind == EntryKind::Data { cur } else { 0 };
                        if op.kind == EntryKind::Data {
                            cur += op.len;
                        }
                        entries.push(segment::Entry {
                            lba: op.lba,
                            len: op.len,
                            off,
                            kind: op.kind,
                        });
                    }
                    data.extend_from_slice(&r.bytes);
                    last = JournalMark {
                        journal_id: r.journal_id,
                        jseq: r.seq,
                    };
                }
                let header = segment::encode_header(
                    seq,
                    epoch,
                    last,
                    &entries,
                    &data,
                    Some(cfg.header_reserve as usize),
                )?;
                let mut r = staging.publish(&f, &header, data.len() as u64);
                if r.as_ref().is_err_and(|e| e.kind() == ErrorKind::Exists) {
                    let key = seg_key(prefix, seq);
                    let there = load_header(store, &key)?;
                    if there.epoch < epoch {
                        // Written by the previous owner after our fence was set (its upload
                        // was still under way when it let the lock go): past the fence, so no
                        // reader takes it; these adopted records must be stored under our
                        // epoch instead.
                        tracing::warn!(
                            "{key}: replacing a segment of epoch {} (past the fence) with the \
                             adopted staging file",
                            there.epoch
                        );
                        store.delete(&key)?;
                        r = staging.publish(&f, &header, data.len() as u64);
                    }
                }
                match r {
                    // Published before (an answer lost on the way back): ours if it holds
                    // exactly these records.
                    Err(e) if e.kind() == ErrorKind::Exists => {
                        let there = load_header(store, &seg_key(prefix, seq))?;
                        if there.entries != entries || there.journal != last || there.epoch != epoch
                        {
                            return Err(err!(
                                Corruption,
                                "segment {seq:016x} exists with other content than its staging \
                                 file; {REPAIR_HINT}"
                            ));
                        }
                        staging.remove(&f)?;
                    }
                    r => r?,
                }
                apply_entries(&mut rec.map, seq, &entries);
                tracing::info!(
                    "recovered segment {seq:016x} from its staging file ({} records)",
                    recs.len()
                );
                rec.next_seq += 1;
                rec.segs_replayed += 1;
                rec.mark = last;
                next = rec.next_seq;
                mark = rec.mark;
                continue;
            }
        }
        if !publish {
            continue;
        }
        tracing::info!("dropping staging file {f:?} (nothing to recover)");
        staging.remove(&f)?;
    }
    Ok(shown)
}
