//! `check` and `repair` of one image's log in a store.
//!
//! check: every checkpoint and snapshot checkpoint decodes; every segment a map names (the
//! head after replay, each checkpoint, each snapshot) exists, its header decodes, every
//! extent lies inside its data and every data page passes its checksum; what nothing names is
//! listed as unreferenced (garbage that GC removes, or leftovers of an interrupted burst).
//! Nothing is changed.
//!
//! repair: rebuild the head's map from the newest checkpoint that still decodes (or none) and
//! every surviving segment after it, in sequence order, skipping missing or undecodable ones,
//! and store it as a new checkpoint past everything. Nothing is deleted. See docs/FORMAT.md,
//! "Repair", for what the result is guaranteed to hold.

use std::collections::{BTreeMap, BTreeSet};

use shale_error::{err, Result};
use shale_extmap::{ExtentMap, Target};
use shale_format::checkpoint::{self, Checkpoint};
use shale_format::segment::{self, EntryKind, JournalMark};
use shale_format::{PAGE, SECTOR};
use shale_store::{ObjectStore, PutMode};

use crate::recovery::{apply_segment, list_checkpoints, list_segments};
use crate::upload::{seg_key, to_extents};

/// One problem `check` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The object concerned (full key).
    pub object: String,
    /// What is wrong with it, and who needs it.
    pub what: String,
}

/// What `check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub checkpoints: usize,
    pub snapshots: usize,
    pub segments: usize,
    /// Segments some map names, all verified page by page.
    pub segments_verified: usize,
    pub bytes_verified: u64,
    pub problems: Vec<Problem>,
    /// Harmless damage: e.g. a damaged checkpoint older than a usable one (it is never read
    /// and rotates away).
    pub warnings: Vec<Problem>,
    /// Objects nothing names (full keys).
    pub unreferenced: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// What `repair` did.
#[derive(Debug, Clone, Default)]
pub struct RepairReport {
    /// The checkpoint it started from (None: from an empty map).
    pub base: Option<String>,
    /// Checkpoints that did not decode and were passed over.
    pub skipped_checkpoints: Vec<String>,
    pub segments_replayed: u64,
    /// Segment numbers missing between the base and the newest segment.
    pub missing_segments: Vec<u64>,
    /// Segments of a fenced writer (left out, as recovery does).
    pub fenced_segments: u64,
    /// Segments whose header did not decode (left out of the map).
    pub damaged_segments: Vec<String>,
    /// The checkpoint written.
    pub checkpoint: String,
}

fn problem(report: &mut CheckReport, object: &str, what: String) {
    report.problems.push(Problem {
        object: object.to_string(),
        what,
    });
}

fn segs_named(map: &ExtentMap, by: &str, into: &mut BTreeMap<u64, Vec<String>>) {
    for (_, _, t) in map.iter() {
        if let Target::Data { seg, .. } = t {
            let v = into.entry(seg).or_default();
            if v.last().map(|s| s.as_str()) != Some(by) {
                v.push(by.to_string());
            }
        }
    }
}

fn map_of(c: &Checkpoint) -> Result<ExtentMap> {
    let mut m = ExtentMap::new();
    crate::recovery::apply_checkpoint(c, &mut m)?;
    Ok(m)
}

/// Check the log under `prefix`. `snapshots` are the snapshot checkpoint keys (relative to the
/// prefix, e.g. `snap/0000000000000004`) the image header names. `progress(done, total)`
/// follows the verification of segments.
pub fn check(
    store: &dyn ObjectStore,
    prefix: &str,
    snapshots: &[String],
    mut progress: impl FnMut(u64, u64),
) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    let mut named: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let ckpts = list_checkpoints(store, prefix)?;
    r.checkpoints = ckpts.len();
    let mut usable_newer = false;
    for (_, _, key) in ckpts.iter().rev() {
        match store
            .get(key)
            .and_then(|(b, _)| checkpoint::decode(&b))
            .and_then(|c| map_of(&c))
        {
            Ok(m) => {
                segs_named(&m, key, &mut named);
                usable_newer = true;
            }
            Err(e) if usable_newer => r.warnings.push(Problem {
                object: key.clone(),
                what: format!("older checkpoint unusable (a newer one serves): {e}"),
            }),
            Err(e) => problem(&mut r, key, format!("checkpoint unusable: {e}")),
        }
    }
    let wanted: BTreeSet<String> = snapshots.iter().map(|s| format!("{prefix}{s}")).collect();
    r.snapshots = wanted.len();
    for key in &wanted {
        match store
            .get(key)
            .and_then(|(b, _)| checkpoint::decode(&b))
            .and_then(|c| map_of(&c))
        {
            Ok(m) => segs_named(&m, key, &mut named),
            Err(e) => problem(
                &mut r,
                key,
                format!("the checkpoint of a snapshot the header names is unusable: {e}"),
            ),
        }
    }
    for o in store.list(&shale_format::keys::snap_dir(prefix))? {
        if !wanted.contains(&o.key) {
            r.unreferenced.push(o.key);
        }
    }
    // The head as a read-only open would see it.
    match crate::recovery::recover(
        store,
        prefix,
        u64::MAX,
        true,
        None,
        &shale_clock::SystemClock,
    ) {
        Ok(rec) => segs_named(&rec.map, "the image head", &mut named),
        Err(e) => problem(
            &mut r,
            &shale_format::keys::ckpt_dir(prefix),
            format!("the image head cannot be recovered: {e}"),
        ),
    }
    let present: BTreeSet<u64> = list_segments(store, prefix)?.into_iter().collect();
    r.segments = present.len();
    let total = named.len() as u64;
    for (i, (seq, by)) in named.iter().enumerate() {
        progress(i as u64 + 1, total);
        let key = seg_key(prefix, *seq);
        let needed_by = by.join(", ");
        if !present.contains(seq) {
            problem(&mut r, &key, format!("missing; needed by {needed_by}"));
            continue;
        }
        match verify_segment(store, &key, *seq) {
            Ok(n) => {
                r.segments_verified += 1;
                r.bytes_verified += n;
            }
            Err(e) => problem(&mut r, &key, format!("{e}; needed by {needed_by}")),
        }
    }
    for seq in &present {
        if !named.contains_key(seq) {
            r.unreferenced.push(seg_key(prefix, *seq));
        }
    }
    Ok(r)
}

/// Read a whole segment and verify its header, its extents and every data page.
fn verify_segment(store: &dyn ObjectStore, key: &str, seq: u64) -> Result<u64> {
    let (b, _) = store.get(key)?;
    let h = segment::decode_header(&b).map_err(|e| e.context("header"))?;
    if h.seq != seq {
        return Err(err!(Corruption, "holds segment {:016x}", h.seq));
    }
    let end = h.header_len.checked_add(h.data_len);
    if end.is_none_or(|e| e > b.len() as u64) {
        return Err(err!(
            Corruption,
            "truncated: {} bytes, the header promises {}",
            b.len(),
            h.header_len.saturating_add(h.data_len)
        ));
    }
    for e in &h.entries {
        if e.kind == EntryKind::Data && (e.off as u64 + e.len as u64) * SECTOR > h.data_len {
            return Err(err!(
                Corruption,
                "extent at lba {} lies past the segment's data",
                e.lba
            ));
        }
    }
    let data = &b[h.header_len as usize..(h.header_len + h.data_len) as usize];
    let whole = data.len() / PAGE * PAGE;
    segment::verify_pages(&h, 0, &data[..whole])?;
    Ok(b.len() as u64)
}

/// Rebuild the head's map from what survives and store it as a new checkpoint of `epoch`.
/// Never deletes anything.
pub fn repair(
    store: &dyn ObjectStore,
    prefix: &str,
    epoch: u64,
    fence: Option<(u64, u64)>,
) -> Result<RepairReport> {
    let mut rep = RepairReport::default();
    let ckpts = list_checkpoints(store, prefix)?;
    let mut map = ExtentMap::new();
    let mut next = 1u64;
    let mut mark = JournalMark::default();
    let mut newest_named = 0u64;
    for (e, n, key) in ckpts.iter().rev() {
        newest_named = newest_named.max(*n);
        if rep.base.is_some() || *e > epoch {
            continue;
        }
        match store
            .get(key)
            .and_then(|(b, _)| checkpoint::decode(&b))
            .and_then(|c| map_of(&c).map(|m| (c, m)))
        {
            Ok((c, m)) => {
                map = m;
                next = c.next_seq;
                mark = c.journal;
                rep.base = Some(key.clone());
            }
            Err(err) => {
                tracing::warn!("repair: passing over checkpoint {key}: {err}");
                rep.skipped_checkpoints.push(key.clone());
            }
        }
    }
    let segs: Vec<u64> = list_segments(store, prefix)?
        .into_iter()
        .filter(|&s| s >= next)
        .collect();
    let mut expect = next;
    for seq in &segs {
        rep.missing_segments.extend(expect..*seq);
        expect = seq + 1;
        let key = seg_key(prefix, *seq);
        match crate::read::load_header(store, &key) {
            Ok(h) if h.seq == *seq && h.epoch > epoch => rep
                .damaged_segments
                .push(format!("{key}: written under a newer epoch {}", h.epoch)),
            Ok(h)
                if h.seq == *seq
                    && fence.is_some_and(|(fe, start)| *seq >= start && h.epoch < fe) =>
            {
                // Written by a writer that had lost the image: never part of the log.
                rep.fenced_segments += 1;
            }
            Ok(h) if h.seq == *seq => match apply_segment(&mut map, *seq, &h) {
                Ok(()) => {
                    mark = h.journal;
                    rep.segments_replayed += 1;
                }
                Err(e) => rep.damaged_segments.push(format!("{key}: {e}")),
            },
            Ok(h) => rep
                .damaged_segments
                .push(format!("{key}: holds segment {:016x}", h.seq)),
            Err(e) => rep.damaged_segments.push(format!("{key}: {e}")),
        }
    }
    let last = segs.last().copied().unwrap_or(next - 1);
    let next_seq = (last + 1).max(newest_named).max(next);
    let c = Checkpoint {
        seq: next_seq - 1,
        next_seq,
        epoch,
        journal: mark,
        extents: to_extents(map.iter()),
    };
    let key = crate::upload::ckpt_key(prefix, epoch, next_seq);
    // A fresh name: never replace an object repair did not write.
    let key = if store.get(&key).is_ok() {
        shale_format::keys::ckpt_copy(&key, 2)
    } else {
        key
    };
    store.put(
        &key,
        bytes::Bytes::from(checkpoint::encode(&c)),
        PutMode::Overwrite,
    )?;
    let (back, _) = store.get(&key)?;
    checkpoint::decode(&back).map_err(|e| e.context("reading the repaired checkpoint back"))?;
    rep.checkpoint = key;
    Ok(rep)
}
