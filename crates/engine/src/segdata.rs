//! The data area of a segment held in memory (the open segment, and sealed segments until
//! stored) as the log records it is made of, each kept in the buffer it was written from:
//! appending a record costs no copy.
//!
//! ```text
//!  parts:  [ record 1 ][ record 2 ][ record 3 ] ...      (headers and data, as on the device)
//!  starts:  0           r1.len      r1.len+r2.len
//! ```

use shale_format::segment::page_crc;
use shale_format::PAGE;
use shale_journal::RecordBytes;

#[derive(Default)]
pub(crate) struct SegData {
    parts: Vec<RecordBytes>,
    /// Byte offset of each part in the data area.
    starts: Vec<usize>,
    len: usize,
}

impl std::fmt::Debug for SegData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SegData({} bytes in {} records)",
            self.len,
            self.parts.len()
        )
    }
}

impl SegData {
    pub fn len(&self) -> usize {
        self.len
    }

    /// Append one record's bytes.
    pub fn push(&mut self, rec: RecordBytes) {
        let n = (*rec).as_ref().len();
        if n == 0 {
            return;
        }
        self.starts.push(self.len);
        self.parts.push(rec);
        self.len += n;
    }

    /// Copy `dst.len()` bytes from offset `off` (which must lie inside the data area).
    pub fn copy_to(&self, off: usize, dst: &mut [u8]) {
        assert!(off + dst.len() <= self.len, "read past a segment's data");
        let mut i = self.starts.partition_point(|&s| s <= off).saturating_sub(1);
        let mut done = 0;
        while done < dst.len() {
            let part = (*self.parts[i]).as_ref();
            let at = off + done - self.starts[i];
            let n = (part.len() - at).min(dst.len() - done);
            dst[done..done + n].copy_from_slice(&part[at..at + n]);
            done += n;
            i += 1;
        }
    }

    /// The checksum of every page of the data area (the last one zero-padded), as the
    /// segment header records them.
    pub fn page_crcs(&self, seq: u64) -> Vec<u32> {
        let pages = self.len.div_ceil(PAGE);
        let mut out = Vec::with_capacity(pages);
        let mut page = vec![0u8; PAGE];
        let mut i = 0;
        for p in 0..pages {
            let start = p * PAGE;
            let end = (start + PAGE).min(self.len);
            while self.starts[i] + (*self.parts[i]).as_ref().len() <= start {
                i += 1;
            }
            let part = (*self.parts[i]).as_ref();
            let at = start - self.starts[i];
            let crc = if end - start == PAGE && at + PAGE <= part.len() {
                page_crc(seq, p as u32, &part[at..at + PAGE])
            } else {
                page[..end - start].fill(0);
                self.copy_to(start, &mut page[..end - start]);
                page[end - start..].fill(0);
                page_crc(seq, p as u32, &page)
            };
            out.push(crc);
        }
        out
    }

    /// Append the whole data area to `out`.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        out.reserve(self.len);
        for p in &self.parts {
            out.extend_from_slice((**p).as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope(sizes: &[usize]) -> (SegData, Vec<u8>) {
        let mut d = SegData::default();
        let mut flat = Vec::new();
        for (k, &n) in sizes.iter().enumerate() {
            let part: Vec<u8> = (0..n).map(|i| (i * 7 + k * 13) as u8).collect();
            flat.extend_from_slice(&part);
            d.push(Box::new(part));
        }
        (d, flat)
    }

    #[test]
    fn reads_across_records_match_the_flat_bytes() {
        let (d, flat) = rope(&[512, 4608, 0, 1024, 131072, 512]);
        assert_eq!(d.len(), flat.len());
        for (off, len) in [
            (0, 512),
            (100, 5000),
            (5119, 2),
            (0, flat.len()),
            (6000, 131072),
        ] {
            let mut b = vec![0u8; len];
            d.copy_to(off, &mut b);
            assert_eq!(b, flat[off..off + len], "at {off}+{len}");
        }
        let mut all = Vec::new();
        d.append_to(&mut all);
        assert_eq!(all, flat);
    }

    #[test]
    fn page_checksums_match_the_flat_bytes() {
        for sizes in [
            &[512usize, 4608, 1024, 131072, 512][..],
            &[4096, 4096],
            &[512],
            &[],
        ] {
            let (d, flat) = rope(sizes);
            let want: Vec<u32> = flat
                .chunks(PAGE)
                .enumerate()
                .map(|(i, pg)| {
                    let mut p = pg.to_vec();
                    p.resize(PAGE, 0);
                    page_crc(9, i as u32, &p)
                })
                .collect();
            assert_eq!(d.page_crcs(9), want, "{sizes:?}");
        }
    }
}
