//! `base:allocation` from the extent map: which bytes of a range hold data and which read as
//! zeros (never written, discarded, or written as zeros). Pure interval arithmetic over sector
//! runs; the server feeds it the image's answers.
//!
//! A sector is *data* if the image's own map points at data, or if it is a clone's sector
//! below the parent overlap that the clone never wrote (it reads through to the parent, which
//! is reported as data). Everything else is `HOLE | ZERO`.

use crate::proto::{STATE_HOLE, STATE_ZERO};

const SECTOR: u64 = 512;

/// Sorted, disjoint runs (start, len) of sectors.
pub type Runs = Vec<(u64, u64)>;

/// `a` minus `b` (both sorted and disjoint).
pub fn subtract(a: &[(u64, u64)], b: &[(u64, u64)]) -> Runs {
    let mut out = Vec::new();
    let mut j = 0;
    for &(s, l) in a {
        let mut cur = s;
        let end = s + l;
        while j < b.len() && b[j].0 + b[j].1 <= cur {
            j += 1;
        }
        let mut k = j;
        while cur < end && k < b.len() && b[k].0 < end {
            let (bs, bl) = b[k];
            if bs > cur {
                out.push((cur, bs - cur));
            }
            cur = cur.max(bs + bl);
            k += 1;
        }
        if cur < end {
            out.push((cur, end - cur));
        }
    }
    out
}

/// Union of two sorted, disjoint run lists (adjacent runs merged).
pub fn union(a: &[(u64, u64)], b: &[(u64, u64)]) -> Runs {
    let mut all: Vec<(u64, u64)> = a.iter().chain(b.iter()).copied().collect();
    all.sort_unstable();
    let mut out: Runs = Vec::new();
    for (s, l) in all {
        match out.last_mut() {
            Some(last) if s <= last.0 + last.1 => {
                let end = (last.0 + last.1).max(s + l);
                last.1 = end - last.0;
            }
            _ => out.push((s, l)),
        }
    }
    out
}

/// Data sectors: `allocated` ∪ (`with_parent` − `written`). `allocated` is what the image's
/// map holds as data, `with_parent` adds a clone's read-through range, `written` is everything
/// the image's map holds (data or zeros).
pub fn data_runs(
    allocated: &[(u64, u64)],
    with_parent: &[(u64, u64)],
    written: &[(u64, u64)],
) -> Runs {
    union(allocated, &subtract(with_parent, written))
}

/// Descriptors (length, flags) covering exactly the bytes [off, off+len), from data sector
/// runs. A partly covered sector takes that sector's state. With `one`, only the first
/// descriptor. Lengths are cut to fit u32 (the last descriptor may then end early, which the
/// protocol allows: the client asks again).
pub fn descriptors(off: u64, len: u32, data: &[(u64, u64)], one: bool) -> Vec<(u32, u32)> {
    let end = off + len as u64;
    let mut out: Vec<(u32, u32)> = Vec::new();
    let mut cur = off;
    let push = |from: u64, to: u64, flags: u32, out: &mut Vec<(u32, u32)>| {
        if to <= from {
            return;
        }
        let n = (to - from).min(u32::MAX as u64) as u32;
        match out.last_mut() {
            Some(l) if l.1 == flags && (l.0 as u64 + n as u64) <= u32::MAX as u64 => l.0 += n,
            _ => out.push((n, flags)),
        }
    };
    for &(s, l) in data {
        let (ds, de) = ((s * SECTOR).max(off), ((s + l) * SECTOR).min(end));
        if de <= cur || ds >= end {
            continue;
        }
        push(cur, ds.max(cur), STATE_HOLE | STATE_ZERO, &mut out);
        push(ds.max(cur), de, 0, &mut out);
        cur = de;
    }
    push(cur, end, STATE_HOLE | STATE_ZERO, &mut out);
    if one {
        out.truncate(1);
    }
    out
}

/// Sector range [lba, lba+n) covering bytes [off, off+len).
pub fn sectors(off: u64, len: u32) -> (u64, u64) {
    let lba = off / SECTOR;
    let end = (off + len as u64).div_ceil(SECTOR);
    (lba, end - lba)
}

#[cfg(test)]
mod tests {
    use super::*;
    const HZ: u32 = STATE_HOLE | STATE_ZERO;

    #[test]
    fn subtract_union() {
        assert_eq!(
            subtract(&[(0, 10)], &[(2, 3), (7, 1)]),
            vec![(0, 2), (5, 2), (8, 2)]
        );
        assert_eq!(subtract(&[(0, 10)], &[]), vec![(0, 10)]);
        assert_eq!(subtract(&[(5, 5)], &[(0, 20)]), vec![]);
        assert_eq!(subtract(&[(0, 4), (6, 4)], &[(2, 6)]), vec![(0, 2), (8, 2)]);
        assert_eq!(
            union(&[(0, 2), (8, 2)], &[(2, 1), (20, 1)]),
            vec![(0, 3), (8, 2), (20, 1)]
        );
    }

    #[test]
    fn clone_zeroed_inside_overlap_is_zero() {
        // Clone overlap covers sectors 0..100; clone wrote data at 10..20 and zeros at 50..60.
        let allocated = vec![(10, 10)];
        let with_parent = vec![(0, 100)];
        let written = vec![(10, 10), (50, 10)];
        let d = data_runs(&allocated, &with_parent, &written);
        assert_eq!(d, vec![(0, 50), (60, 40)]);
    }

    #[test]
    fn descriptors_cover_exactly() {
        let d = vec![(2, 2)]; // bytes 1024..2048
        assert_eq!(
            descriptors(0, 4096, &d, false),
            vec![(1024, HZ), (1024, 0), (2048, HZ)]
        );
        assert_eq!(descriptors(1500, 100, &d, false), vec![(100, 0)]);
        assert_eq!(descriptors(0, 4096, &d, true), vec![(1024, HZ)]);
        assert_eq!(descriptors(0, 512, &[], false), vec![(512, HZ)]);
        // Unaligned start inside a data sector.
        assert_eq!(
            descriptors(1100, 2000, &d, false),
            vec![(948, 0), (1052, HZ)]
        );
        let total: u64 = descriptors(3, 70000, &[(1, 3), (9, 100)], false)
            .iter()
            .map(|x| x.0 as u64)
            .sum();
        assert_eq!(total, 70000);
    }

    #[test]
    fn sector_range() {
        assert_eq!(sectors(0, 512), (0, 1));
        assert_eq!(sectors(511, 2), (0, 2));
        assert_eq!(sectors(1024, 1), (2, 1));
    }
}
