//! Property test: the extent map against a per-sector model of a small disk.
//!
//! Small chunk capacities (4..=24 entries) put many chunk boundaries inside the 4096-sector
//! disk, so splits, merges and extents spanning several chunks all get exercised. Failing
//! cases are shrunk and their seeds persisted by proptest (`PROPTEST_*` variables replay).
#![allow(clippy::disallowed_methods)] // tests and tools may use real time

use proptest::prelude::*;
use shale_extmap::{ExtentMap, Mapping, Target};

const DISK: u64 = 4096;

#[derive(Clone, Debug)]
enum Op {
    Insert { lba: u64, len: u64, target: Target },
    Remove { lba: u64, len: u64 },
    Lookup { lba: u64, len: u64 },
}

fn range() -> impl Strategy<Value = (u64, u64)> {
    (0..DISK).prop_flat_map(|lba| {
        let room = DISK - lba;
        // Mostly short writes, some long ones crossing many entries and chunks.
        let len = prop_oneof![4 => 1..=room.min(16), 1 => 1..=room];
        (Just(lba), len)
    })
}

fn op() -> impl Strategy<Value = Op> {
    let insert = (range(), 0u8..6, 1u64..4, 0u32..1000).prop_map(|((lba, len), kind, seg, off)| {
        let target = match kind {
            0 => Target::Zero,
            // Offset equal to the lba makes neighbouring writes contiguous, so they merge.
            1..=3 => Target::Data {
                seg,
                off: lba as u32,
            },
            _ => Target::Data { seg, off },
        };
        Op::Insert { lba, len, target }
    });
    prop_oneof![
        6 => insert,
        2 => range().prop_map(|(lba, len)| Op::Remove { lba, len }),
        2 => (0..DISK + 32, 0..300u64).prop_map(|(lba, len)| Op::Lookup { lba, len }),
    ]
}

fn advance(t: Target, k: u64) -> Target {
    match t {
        Target::Data { seg, off } => Target::Data {
            seg,
            off: off + k as u32,
        },
        Target::Zero => Target::Zero,
    }
}

/// Check that `pieces` covers `[lba, lba + len)` exactly and agrees with the model.
fn check_lookup(model: &[Option<Target>], lba: u64, len: u64, pieces: &[Mapping]) {
    let mut pos = lba;
    for p in pieces {
        assert_eq!(p.lba, pos, "pieces must be contiguous: {pieces:?}");
        assert!(p.len >= 1, "empty piece in {pieces:?}");
        for k in 0..p.len {
            let want = model.get((pos + k) as usize).copied().flatten();
            let got = p.target.map(|t| advance(t, k));
            assert_eq!(got, want, "sector {} in {pieces:?}", pos + k);
        }
        pos += p.len;
    }
    assert_eq!(
        pos,
        lba + len,
        "pieces must end at the range end: {pieces:?}"
    );
}

fn run(cap: usize, ops: &[Op]) {
    let mut map = ExtentMap::with_chunk_capacity(cap);
    let mut model: Vec<Option<Target>> = vec![None; DISK as usize];
    for op in ops {
        match *op {
            Op::Insert { lba, len, target } => {
                map.insert(lba, len, target);
                for k in 0..len {
                    model[(lba + k) as usize] = Some(advance(target, k));
                }
            }
            Op::Remove { lba, len } => {
                map.remove(lba, len);
                for k in 0..len {
                    model[(lba + k) as usize] = None;
                }
            }
            Op::Lookup { lba, len } => {
                let pieces = map.lookup(lba, len);
                check_lookup(&model, lba, len, &pieces);
                let mut streamed = Vec::new();
                map.for_each_in(lba, len, |p| streamed.push(p));
                assert_eq!(streamed, pieces);
            }
        }
        if let Err(e) = map.check_invariants() {
            panic!("after {op:?}: {e}");
        }
    }
    // Whole disk, plus a tail past the end.
    check_lookup(&model, 0, DISK + 8, &map.lookup(0, DISK + 8));
    // iter: ascending, non-overlapping, agrees with the model, and covers every written sector.
    let mut covered = vec![None; DISK as usize];
    let mut prev_end = 0;
    for (lba, len, t) in map.iter() {
        assert!(lba >= prev_end && len >= 1);
        prev_end = lba + len;
        for k in 0..len {
            covered[(lba + k) as usize] = Some(advance(t, k));
        }
    }
    assert_eq!(covered, model);
    assert_eq!(map.iter().count(), map.len());
    // Live sectors per segment agree with the model.
    let live = map.live_sectors_by_segment();
    for seg in 1..4u64 {
        let want = model
            .iter()
            .filter(|t| matches!(t, Some(Target::Data { seg: s, .. }) if *s == seg))
            .count() as u64;
        assert_eq!(live.get(&seg).copied().unwrap_or(0), want, "segment {seg}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn matches_sector_model(cap in 4usize..=24, ops in prop::collection::vec(op(), 1..200)) {
        run(cap, &ops);
    }

    #[test]
    fn matches_sector_model_default_chunks(ops in prop::collection::vec(op(), 1..300)) {
        run(shale_extmap::DEFAULT_CHUNK_ENTRIES, &ops);
    }
}

/// Fill the disk with 1-sector extents (no merging: distinct segments), then punch and rewrite
/// large ranges; exercises whole-chunk removal and sparse-chunk merging.
#[test]
fn dense_then_punched() {
    let mut ops = Vec::new();
    for lba in 0..DISK {
        ops.push(Op::Insert {
            lba,
            len: 1,
            target: Target::Data {
                seg: 1 + lba % 3,
                off: 0,
            },
        });
    }
    for (i, lba) in (0..DISK).step_by(97).enumerate() {
        let len = (31 * i as u64 % 500 + 1).min(DISK - lba);
        ops.push(if i % 2 == 0 {
            Op::Remove { lba, len }
        } else {
            Op::Insert {
                lba,
                len,
                target: Target::Zero,
            }
        });
    }
    ops.push(Op::Remove { lba: 0, len: DISK });
    for cap in [4, 5, 8, 64] {
        run(cap, &ops);
    }
}
