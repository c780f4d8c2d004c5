//! Unit tests of the extent map's edge cases; the model-based property test lives in
//! `tests/model.rs`.

use super::*;

fn d(seg: u64, off: u32) -> Target {
    Target::Data { seg, off }
}

fn m(lba: u64, len: u64, target: Option<Target>) -> Mapping {
    Mapping { lba, len, target }
}

fn ok(map: &ExtentMap) {
    if let Err(e) = map.check_invariants() {
        panic!("invariant broken: {e}");
    }
}

#[test]
fn empty_map_is_one_hole() {
    let map = ExtentMap::new();
    assert!(map.is_empty());
    assert_eq!(map.lookup(10, 5), vec![m(10, 5, None)]);
    assert_eq!(map.lookup(10, 0), vec![]);
    assert_eq!(map.mem_bytes(), 0);
    assert_eq!(map.iter().count(), 0);
}

#[test]
fn insert_and_lookup_with_holes() {
    let mut map = ExtentMap::new();
    map.insert(8, 8, d(1, 0));
    map.insert(24, 8, Target::Zero);
    ok(&map);
    assert_eq!(
        map.lookup(0, 40),
        vec![
            m(0, 8, None),
            m(8, 8, Some(d(1, 0))),
            m(16, 8, None),
            m(24, 8, Some(Target::Zero)),
            m(32, 8, None),
        ]
    );
    // Starting mid-extent adjusts the offset.
    assert_eq!(
        map.lookup(11, 3),
        vec![m(11, 3, Some(d(1, 3)))],
        "offset follows the piece start"
    );
    assert_eq!(map.get(15), Some(d(1, 7)));
    assert_eq!(map.get(16), None);
    assert_eq!(map.get(24), Some(Target::Zero));
}

#[test]
fn overwrite_middle_splits_and_keeps_offsets() {
    let mut map = ExtentMap::new();
    map.insert(0, 100, d(1, 0));
    map.insert(40, 10, d(2, 5));
    ok(&map);
    assert_eq!(
        map.iter().collect::<Vec<_>>(),
        vec![(0, 40, d(1, 0)), (40, 10, d(2, 5)), (50, 50, d(1, 50))]
    );
    assert_eq!(map.len(), 3);
}

#[test]
fn overwrite_spanning_several_extents_trims_both_ends() {
    let mut map = ExtentMap::new();
    for i in 0..10 {
        map.insert(i * 10, 10, d(i + 1, 0));
    }
    map.insert(15, 60, Target::Zero);
    ok(&map);
    assert_eq!(
        map.iter().collect::<Vec<_>>(),
        vec![
            (0, 10, d(1, 0)),
            (10, 5, d(2, 0)),
            (15, 60, Target::Zero),
            (75, 5, d(8, 5)),
            (80, 10, d(9, 0)),
            (90, 10, d(10, 0)),
        ]
    );
}

#[test]
fn contiguous_writes_merge() {
    let mut map = ExtentMap::new();
    map.insert(0, 8, d(3, 0));
    map.insert(8, 8, d(3, 8));
    map.insert(24, 8, d(3, 24));
    assert_eq!(map.len(), 2);
    // Filling the gap joins all three.
    map.insert(16, 8, d(3, 16));
    assert_eq!(map.iter().collect::<Vec<_>>(), vec![(0, 32, d(3, 0))]);
    // Same lba contiguity but another segment or a jump in offset does not merge.
    map.insert(32, 8, d(4, 32));
    map.insert(40, 8, d(4, 41));
    assert_eq!(map.len(), 3);
    // Zero merges with Zero regardless of offsets.
    map.insert(100, 4, Target::Zero);
    map.insert(104, 4, Target::Zero);
    map.insert(96, 4, Target::Zero);
    assert_eq!(map.lookup(96, 12), vec![m(96, 12, Some(Target::Zero))]);
    ok(&map);
}

#[test]
fn remove_makes_holes() {
    let mut map = ExtentMap::new();
    map.insert(0, 100, d(1, 0));
    map.remove(10, 10);
    map.remove(90, 1000);
    ok(&map);
    assert_eq!(
        map.lookup(0, 100),
        vec![
            m(0, 10, Some(d(1, 0))),
            m(10, 10, None),
            m(20, 70, Some(d(1, 20))),
            m(90, 10, None),
        ]
    );
    map.remove(0, MAX_LBA);
    assert!(map.is_empty());
    assert_eq!(map.chunk_count(), 0);
    ok(&map);
}

#[test]
fn long_extents_are_split_into_entries() {
    let mut map = ExtentMap::new();
    let big = 3 * MAX_ENTRY_LEN + 7;
    map.insert(5, big, Target::Zero);
    ok(&map);
    assert_eq!(map.len(), 4);
    let total: u64 = map.iter().map(|(_, len, _)| len).sum();
    assert_eq!(total, big);
    assert_eq!(map.lookup(0, big + 10).len(), 6); // hole + 4 entries + hole
                                                  // Data up to a whole segment: offsets continue across the internal split.
    map.insert(0, SEG_SECTORS, d(9, 0));
    ok(&map);
    let items: Vec<_> = map.iter().take(2).collect();
    assert_eq!(
        items,
        vec![
            (0, MAX_ENTRY_LEN, d(9, 0)),
            (MAX_ENTRY_LEN, 1, d(9, MAX_OFF)),
        ]
    );
}

#[test]
fn top_of_the_address_space() {
    let mut map = ExtentMap::new();
    map.insert(MAX_LBA - 8, 8, d(MAX_SEG, MAX_OFF - 7));
    ok(&map);
    assert_eq!(map.get(MAX_LBA - 1), Some(d(MAX_SEG, MAX_OFF)));
    assert_eq!(
        map.lookup(MAX_LBA - 8, 16),
        vec![
            m(MAX_LBA - 8, 8, Some(d(MAX_SEG, MAX_OFF - 7))),
            m(MAX_LBA, 8, None)
        ]
    );
    assert_eq!(map.lookup(u64::MAX - 1, 5), vec![m(u64::MAX - 1, 1, None)]);
}

#[test]
fn sequential_appends_fill_chunks() {
    let mut map = ExtentMap::with_chunk_capacity(64);
    for i in 0..64 * 10 {
        map.insert(i * 16, 8, d(1 + i, 0));
    }
    ok(&map);
    assert_eq!(map.chunk_count(), 10);
    // Descending writes also fill chunks.
    let mut map = ExtentMap::with_chunk_capacity(64);
    for i in (0..64 * 10).rev() {
        map.insert(i * 16, 8, d(1 + i, 0));
    }
    ok(&map);
    assert_eq!(map.chunk_count(), 10);
}

#[test]
fn random_inserts_stay_compact() {
    // Deterministic shuffle of 200k distinct 8-sector extents.
    let n = 200_000u64;
    let mut order: Vec<u64> = (0..n).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for k in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(k, (x % (k as u64 + 1)) as usize);
    }
    let mut map = ExtentMap::new();
    for &i in &order {
        map.insert(i * 16, 8, d(1 + i, 0));
    }
    ok(&map);
    assert_eq!(map.len(), n as usize);
    let per = map.mem_bytes() as f64 / n as f64;
    assert!(per <= 24.0, "{per} bytes per extent");
    // Removing most of them gives memory back.
    for &i in order.iter().take(190_000) {
        map.remove(i * 16, 8);
    }
    ok(&map);
    let per = map.mem_bytes() as f64 / map.len() as f64;
    assert!(per <= 32.0, "{per} bytes per extent after removals");
}

#[test]
fn live_sectors_count_data_only() {
    let mut map = ExtentMap::new();
    map.insert(0, 10, d(1, 0));
    map.insert(10, 10, d(2, 0));
    map.insert(20, 10, d(1, 10));
    map.insert(30, 10, Target::Zero);
    map.insert(5, 10, d(3, 0));
    let live = map.live_sectors_by_segment();
    assert_eq!(live.get(&1), Some(&15));
    assert_eq!(live.get(&2), Some(&5));
    assert_eq!(live.get(&3), Some(&10));
    assert_eq!(live.len(), 3);
}

#[test]
fn sparse_chunks_merge_after_removal() {
    let mut map = ExtentMap::with_chunk_capacity(16);
    for i in 0..16 * 8 {
        map.insert(i * 4, 2, d(1, 0));
    }
    let before = map.chunk_count();
    // Keep one entry in eight: chunks thin out and merge.
    for i in 0..16 * 8 {
        if i % 8 != 0 {
            map.remove(i * 4, 2);
            ok(&map);
        }
    }
    assert!(
        map.chunk_count() < before,
        "{} >= {before}",
        map.chunk_count()
    );
    assert_eq!(map.len(), 16);
}

#[test]
fn clone_and_clear() {
    let mut map = ExtentMap::new();
    map.insert(0, 8, Target::Zero);
    let copy = map.clone();
    map.clear();
    assert!(map.is_empty());
    assert_eq!(copy.len(), 1);
    assert!(format!("{copy:?}").contains("entries: 1"));
}

#[test]
fn exact_overwrite_swaps_in_place_or_merges() {
    let mut map = ExtentMap::new();
    map.insert(0, 8, d(1, 0));
    map.insert(8, 8, d(2, 0));
    map.insert(16, 8, d(3, 0));
    // Exact cover, no contiguous neighbour: replaced in place.
    map.insert(8, 8, d(4, 0));
    assert_eq!(map.len(), 3);
    assert_eq!(map.get(9), Some(d(4, 1)));
    // Exact cover that continues its predecessor: merged.
    map.insert(8, 8, d(1, 8));
    ok(&map);
    assert_eq!(
        map.iter().collect::<Vec<_>>(),
        vec![(0, 16, d(1, 0)), (16, 8, d(3, 0))]
    );
    // ... or is continued by its successor.
    map.insert(0, 8, d(5, 0));
    map.insert(8, 8, d(6, 0));
    map.insert(16, 8, d(6, 8));
    ok(&map);
    assert_eq!(
        map.iter().collect::<Vec<_>>(),
        vec![(0, 8, d(5, 0)), (8, 16, d(6, 0))]
    );
}
