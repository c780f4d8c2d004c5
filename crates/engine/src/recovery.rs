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
use shale_format::segment::EntryKind;
use shale_store::ObjectStore;

use crate::read::load_header;
use crate::upload::{seg_key, store_checkpoint};

pub(crate) struct Recovered {
    pub map: ExtentMap,
    pub next_seq: u64,
    /// Segments replayed on top of the checkpoint (they count toward the next checkpoint).
    pub segs_replayed: u64,
}

fn parse_seq(key: &str, dir: &str) -> Option<u64> {
    let name = key.strip_prefix(dir)?;
    if name.len() != 16 {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

pub(crate) fn recover(store: &dyn ObjectStore, prefix: &str, epoch: u64, read_only: bool) -> Result<Recovered> {
    let ckpt_dir = format!("{prefix}ckpt/");
    let mut ckpts: Vec<u64> = store.list(&ckpt_dir)?.iter().filter_map(|o| parse_seq(&o.key, &ckpt_dir)).collect();
    ckpts.sort_unstable();
    let mut map = ExtentMap::new();
    let mut next = 1u64;
    let mut base_seq = 0u64;
    for &n in ckpts.iter().rev() {
        let key = format!("{ckpt_dir}{n:016x}");
        match store.get(&key).and_then(|(b, _)| checkpoint::decode(&b)) {
            Ok(c) => {
                for e in &c.extents {
                    let t = if e.seg == ZERO_SEG { Target::Zero } else { Target::Data { seg: e.seg, off: e.off } };
                    map.insert(e.lba, e.len as u64, t);
                }
                next = c.next_seq;
                base_seq = c.seq;
                break;
            }
            Err(e) if e.kind() == ErrorKind::Corruption || e.kind() == ErrorKind::NotFound => {
                tracing::warn!("skipping checkpoint {key}: {e}");
            }
            Err(e) => return Err(e),
        }
    }

    let seg_dir = format!("{prefix}seg/");
    let mut segs: Vec<u64> = store.list(&seg_dir)?.iter().filter_map(|o| parse_seq(&o.key, &seg_dir)).collect();
    segs.sort_unstable();
    let max_seen = segs.last().copied().unwrap_or(0);
    let mut replayed = 0u64;
    let mut seq = next;
    let present: std::collections::BTreeSet<u64> = segs.iter().copied().filter(|&s| s >= next).collect();
    while present.contains(&seq) {
        let key = seg_key(prefix, seq);
        let h = load_header(store, &key).map_err(|e| e.context("replaying the log"))?;
        if h.seq != seq {
            return Err(err!(Corruption, "{key}: holds segment {:016x}", h.seq));
        }
        if h.epoch > epoch {
            return Err(err!(Fenced, "{key}: written under epoch {} newer than ours ({epoch})", h.epoch));
        }
        for e in &h.entries {
            match e.kind {
                EntryKind::Data => map.insert(e.lba, e.len as u64, Target::Data { seg: seq, off: e.off }),
                EntryKind::Zero => map.insert(e.lba, e.len as u64, Target::Zero),
                EntryKind::Trim => map.remove(e.lba, e.len as u64),
            }
        }
        replayed += 1;
        seq += 1;
    }
    let orphans: Vec<u64> = present.range(seq..).copied().collect();
    let mut next_seq = seq;
    if !orphans.is_empty() && !read_only {
        // Checkpoint past every orphan first, then delete them (see the module comment).
        next_seq = max_seen + 1;
        let c = Checkpoint {
            seq: seq - 1,
            next_seq,
            epoch,
            journal: Default::default(),
            extents: map
                .iter()
                .map(|(lba, len, t)| match t {
                    Target::Data { seg, off } => checkpoint::Extent { lba, len: len as u32, off, seg },
                    Target::Zero => checkpoint::Extent { lba, len: len as u32, off: 0, seg: ZERO_SEG },
                })
                .collect(),
        };
        store_checkpoint(store, prefix, &c)?;
        for o in &orphans {
            tracing::info!("deleting orphan segment {o:016x} past a gap at {seq:016x}");
            store.delete(&seg_key(prefix, *o))?;
        }
        replayed = 0;
    }
    let _ = base_seq;
    Ok(Recovered { map, next_seq, segs_replayed: replayed })
}
