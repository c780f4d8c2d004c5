//! `base:allocation` descriptors from the extent map: which bytes of a range hold data and
//! which read as zeros (never written, discarded, or written as zeros). Pure; the server feeds
//! it `Image::allocated_deep` (data runs in sectors, a clone's parent chain included, zeros a
//! clone wrote over its parent excluded). Everything that is not data is `HOLE | ZERO`.

use crate::proto::{STATE_HOLE, STATE_ZERO};

const SECTOR: u64 = 512;

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
