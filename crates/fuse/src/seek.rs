//! SEEK_DATA / SEEK_HOLE and `st_blocks` from an image's allocation map.
//!
//! The map is a sorted list of allocated runs in 512-byte sectors `(lba, count)` (what
//! `Image::allocated_deep` returns). Everything else reads as zeros and is a hole; the
//! end of the file is a hole too (as lseek(2) defines it).

/// Which way `lseek` looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    Data,
    Hole,
}

const SECTOR: u64 = 512;

/// Result of `lseek(off, whence)` on a file of `size` bytes whose allocated sector runs are
/// `runs` (sorted, not overlapping; adjacent runs may be split). `None` is ENXIO: `off` is at
/// or past the end, or (SEEK_DATA) no data follows `off`.
pub fn seek(runs: &[(u64, u64)], size: u64, off: u64, whence: Whence) -> Option<u64> {
    if off >= size {
        return None;
    }
    let merged = merge(runs);
    match whence {
        Whence::Data => merged
            .iter()
            .map(|&(a, n)| (a * SECTOR, (a + n) * SECTOR))
            .find(|&(_, end)| end > off)
            .map(|(start, _)| start.max(off))
            .filter(|&d| d < size),
        Whence::Hole => {
            let inside = merged
                .iter()
                .map(|&(a, n)| (a * SECTOR, (a + n) * SECTOR))
                .find(|&(start, end)| start <= off && off < end);
            Some(match inside {
                Some((_, end)) => end.min(size),
                None => off,
            })
        }
    }
}

/// Allocated 512-byte blocks (`st_blocks`).
pub fn blocks(runs: &[(u64, u64)]) -> u64 {
    runs.iter().map(|r| r.1).sum()
}

fn merge(runs: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for &(a, n) in runs.iter().filter(|r| r.1 > 0) {
        match out.last_mut() {
            Some(l) if l.0 + l.1 >= a => l.1 = l.1.max(a + n - l.0),
            _ => out.push((a, n)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use Whence::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn empty_image_is_one_hole() {
        assert_eq!(seek(&[], MIB, 0, Data), None);
        assert_eq!(seek(&[], MIB, 0, Hole), Some(0));
        assert_eq!(seek(&[], MIB, 4096, Hole), Some(4096));
        assert_eq!(seek(&[], MIB, MIB, Hole), None);
        assert_eq!(seek(&[], MIB, MIB + 1, Data), None);
    }

    #[test]
    fn data_and_holes_between_runs() {
        // Data at [4 KiB, 8 KiB) and [64 KiB, 64 KiB + 512).
        let runs = [(8, 8), (128, 1)];
        assert_eq!(seek(&runs, MIB, 0, Data), Some(4096));
        assert_eq!(seek(&runs, MIB, 5000, Data), Some(5000));
        assert_eq!(seek(&runs, MIB, 8192, Data), Some(65536));
        assert_eq!(seek(&runs, MIB, 65536 + 512, Data), None);
        assert_eq!(seek(&runs, MIB, 0, Hole), Some(0));
        assert_eq!(seek(&runs, MIB, 4096, Hole), Some(8192));
        assert_eq!(seek(&runs, MIB, 8191, Hole), Some(8192));
        assert_eq!(seek(&runs, MIB, 65536, Hole), Some(65536 + 512));
    }

    #[test]
    fn split_runs_count_as_one_and_end_is_a_hole() {
        let runs = [(0, 8), (8, 8), (16, 2040)];
        assert_eq!(seek(&runs, MIB, 0, Hole), Some(MIB));
        assert_eq!(seek(&runs, MIB, 100, Data), Some(100));
        // A size that is not a multiple of the sector: the hole at the end is at the size.
        assert_eq!(seek(&[(0, 3)], 1000, 10, Hole), Some(1000));
        assert_eq!(blocks(&runs), 2056);
    }

    /// Check against a byte-by-byte model on every offset of a small file.
    #[test]
    fn agrees_with_a_model() {
        let size = 40 * 512;
        let runs = [(1, 2), (3, 1), (10, 5), (30, 10)];
        let alloc = |b: u64| runs.iter().any(|&(a, n)| b / 512 >= a && b / 512 < a + n);
        for off in (0..size + 600).step_by(97) {
            let data = (off..size).find(|&b| alloc(b));
            let hole = (off..size).find(|&b| !alloc(b)).unwrap_or(size);
            assert_eq!(seek(&runs, size, off, Data), data, "data at {off}");
            let want = (off < size).then_some(hole);
            assert_eq!(seek(&runs, size, off, Hole), want, "hole at {off}");
        }
    }
}
