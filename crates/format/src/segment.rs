//! Segments: the immutable objects that hold an image's writes, in log order.
//!
//! ```text
//! +-------------------- header (header_len bytes, a multiple of 4096) --------------------+
//! | magic "SHALESEG" | version | header_len | seq | epoch | n_entries | n_pages | data_len |
//! | journal_id | jseq | entries[n_entries] (24 B each) | page_crcs[n_pages] | header_crc | pad |
//! +----------------------------------------- data ----------------------------------------+
//! | n_pages pages of 4096 bytes; Data entries point into it by sector offset               |
//! +----------------------------------------------------------------------------------------+
//! ```
//! Entries are applied in order on replay: a later entry wins over an earlier one for the same
//! sectors. Each data page has its own CRC-32C salted with (seq, page index), so a page that
//! landed in the wrong segment or at the wrong place never verifies.

use shale_error::{Error, Result};

use crate::wire::{check_magic, put_u32, put_u64, Reader};
use crate::{PAGE, SECTOR};

pub const MAGIC: &[u8; 8] = b"SHALESEG";
pub const VERSION: u32 = 1;
/// Fixed part of the header before the entries.
pub const FIXED_LEN: usize = 64;
/// Bytes per entry.
pub const ENTRY_LEN: usize = 24;

/// What an entry does to its sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// The sectors' new contents are at `off` in the data area.
    Data = 1,
    /// The sectors now read as zeros (discard, write-zeroes).
    Zero = 2,
    /// The sectors become unwritten again (shrink): they read as zeros and hold no state.
    Trim = 3,
}

/// One logged change: sectors [lba, lba+len).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub lba: u64,
    pub len: u32,
    /// Sector offset into the data area (Data only; 0 otherwise).
    pub off: u32,
    pub kind: EntryKind,
}

/// Which journal records a segment (or checkpoint) contains: every record of journal
/// `journal_id` with a number ≤ `jseq`. Zero id: written without a journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalMark {
    pub journal_id: u64,
    pub jseq: u64,
}

/// A decoded segment header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub epoch: u64,
    pub journal: JournalMark,
    pub entries: Vec<Entry>,
    pub page_crcs: Vec<u32>,
    /// Byte offset of the data area in the object.
    pub header_len: u64,
    /// Bytes in the data area (n_pages * 4096).
    pub data_len: u64,
}

/// CRC of one data page, salted with the segment's sequence number and the page index.
pub fn page_crc(seq: u64, index: u32, page: &[u8]) -> u32 {
    let mut salt = [0u8; 12];
    salt[..8].copy_from_slice(&seq.to_le_bytes());
    salt[8..].copy_from_slice(&index.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&salt), page)
}

/// Bytes a header needs for this many entries and data bytes (before rounding to a page).
pub fn raw_header_len(n_entries: usize, data_len: usize) -> usize {
    FIXED_LEN + n_entries * ENTRY_LEN + data_len.div_ceil(PAGE) * 4 + 4
}

/// Encode a whole segment object. `data` holds whole sectors; it is padded to whole pages.
pub fn encode(
    seq: u64,
    epoch: u64,
    journal: JournalMark,
    entries: &[Entry],
    data: &[u8],
) -> Result<Vec<u8>> {
    let mut out = encode_header(seq, epoch, journal, entries, data, None)?;
    let header_len = out.len();
    out.extend_from_slice(data);
    out.resize(header_len + data.len().div_ceil(PAGE) * PAGE, 0);
    Ok(out)
}

/// Encode only the header (exactly `header_len` bytes if given, which must be a multiple of
/// the page size and large enough; else the smallest page multiple). The data area that
/// follows it must be `data` padded with zeros to whole pages.
pub fn encode_header(
    seq: u64,
    epoch: u64,
    journal: JournalMark,
    entries: &[Entry],
    data: &[u8],
    header_len: Option<usize>,
) -> Result<Vec<u8>> {
    let n_pages = data.len().div_ceil(PAGE);
    let mut page = [0u8; PAGE];
    let crcs: Vec<u32> = (0..n_pages)
        .map(|i| {
            let start = i * PAGE;
            let end = (start + PAGE).min(data.len());
            if end - start == PAGE {
                page_crc(seq, i as u32, &data[start..end])
            } else {
                page[..end - start].copy_from_slice(&data[start..end]);
                page[end - start..].fill(0);
                page_crc(seq, i as u32, &page)
            }
        })
        .collect();
    encode_header_with_crcs(seq, epoch, journal, entries, data.len(), &crcs, header_len)
}

/// [`encode_header`] for `data_len` bytes of data whose page checksums ([`page_crc`], the
/// last page zero-padded) the caller computed.
pub fn encode_header_with_crcs(
    seq: u64,
    epoch: u64,
    journal: JournalMark,
    entries: &[Entry],
    data_len: usize,
    page_crcs: &[u32],
    header_len: Option<usize>,
) -> Result<Vec<u8>> {
    if !(data_len as u64).is_multiple_of(SECTOR) {
        return Err(Error::invalid("segment data must be whole sectors"));
    }
    let n_pages = data_len.div_ceil(PAGE);
    if page_crcs.len() != n_pages {
        return Err(Error::invalid(format!(
            "{} page checksums for {n_pages} pages",
            page_crcs.len()
        )));
    }
    let raw_header = raw_header_len(entries.len(), data_len);
    let header_len = match header_len {
        None => raw_header.div_ceil(PAGE) * PAGE,
        Some(h) if h >= raw_header && h % PAGE == 0 => h,
        Some(h) => {
            return Err(Error::invalid(format!(
                "segment header needs {raw_header} bytes, {h} reserved"
            )))
        }
    };
    let mut out = Vec::with_capacity(header_len);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, VERSION);
    put_u32(&mut out, header_len as u32);
    put_u64(&mut out, seq);
    put_u64(&mut out, epoch);
    put_u32(&mut out, entries.len() as u32);
    put_u32(&mut out, n_pages as u32);
    put_u64(&mut out, (n_pages * PAGE) as u64);
    put_u64(&mut out, journal.journal_id);
    put_u64(&mut out, journal.jseq);
    debug_assert_eq!(out.len(), FIXED_LEN);
    for e in entries {
        put_u64(&mut out, e.lba);
        put_u32(&mut out, e.len);
        put_u32(&mut out, e.off);
        put_u32(&mut out, e.kind as u32);
        put_u32(&mut out, 0);
    }
    for crc in page_crcs {
        put_u32(&mut out, *crc);
    }
    let crc = crc32c::crc32c(&out);
    put_u32(&mut out, crc);
    out.resize(header_len, 0);
    Ok(out)
}

/// How many bytes of the object's start hold the header, read from its first 16 bytes.
pub fn header_len(prefix: &[u8]) -> Result<u64> {
    let mut r = Reader::new(prefix, "segment header");
    check_magic(&mut r, MAGIC, VERSION)?;
    let len = r.u32()? as u64;
    if len < PAGE as u64 || !len.is_multiple_of(PAGE as u64) {
        return Err(Error::corruption(format!(
            "segment header: bad header length {len}"
        )));
    }
    Ok(len)
}

/// Decode a header from the first `header_len` (or more) bytes of a segment object.
pub fn decode_header(buf: &[u8]) -> Result<Header> {
    let mut r = Reader::new(buf, "segment header");
    check_magic(&mut r, MAGIC, VERSION)?;
    let header_len = r.u32()? as u64;
    let seq = r.u64()?;
    let epoch = r.u64()?;
    let n_entries = r.u32()? as usize;
    let n_pages = r.u32()? as usize;
    let data_len = r.u64()?;
    let journal = JournalMark {
        journal_id: r.u64()?,
        jseq: r.u64()?,
    };
    if header_len < PAGE as u64 || !header_len.is_multiple_of(PAGE as u64) {
        return Err(Error::corruption(format!(
            "segment {seq:016x}: bad header length {header_len}"
        )));
    }
    let needed = FIXED_LEN as u64 + n_entries as u64 * ENTRY_LEN as u64 + n_pages as u64 * 4 + 4;
    if needed > header_len
        || header_len as usize > buf.len()
        || data_len != n_pages as u64 * PAGE as u64
    {
        return Err(Error::corruption(format!(
            "segment {seq:016x}: inconsistent header (entries {n_entries}, pages {n_pages}, header {header_len} B, have {} B)",
            buf.len()
        )));
    }
    let body_end = needed as usize - 4;
    let stored = u32::from_le_bytes([
        buf[body_end],
        buf[body_end + 1],
        buf[body_end + 2],
        buf[body_end + 3],
    ]);
    if crc32c::crc32c(&buf[..body_end]) != stored {
        return Err(Error::corruption(format!(
            "segment {seq:016x}: header checksum mismatch"
        )));
    }
    let data_sectors = data_len / SECTOR;
    let mut entries = Vec::with_capacity(n_entries);
    for _ in 0..n_entries {
        let lba = r.u64()?;
        let len = r.u32()?;
        let off = r.u32()?;
        let kind = match r.u32()? {
            1 => EntryKind::Data,
            2 => EntryKind::Zero,
            3 => EntryKind::Trim,
            k => {
                return Err(Error::corruption(format!(
                    "segment {seq:016x}: unknown entry kind {k}"
                )))
            }
        };
        let _ = r.u32()?;
        if len == 0
            || lba.checked_add(len as u64).is_none()
            || (kind == EntryKind::Data && off as u64 + len as u64 > data_sectors)
        {
            return Err(Error::corruption(format!(
                "segment {seq:016x}: entry out of bounds"
            )));
        }
        entries.push(Entry {
            lba,
            len,
            off,
            kind,
        });
    }
    let mut page_crcs = Vec::with_capacity(n_pages);
    for _ in 0..n_pages {
        page_crcs.push(r.u32()?);
    }
    Ok(Header {
        seq,
        epoch,
        journal,
        entries,
        page_crcs,
        header_len,
        data_len,
    })
}

/// Decode a whole segment object: its header, then exactly `data_len` bytes of data whose pages
/// all verify. A truncated (or extended) object is `Corruption`. Returns the header and the
/// data area.
pub fn decode(obj: &[u8]) -> Result<(Header, &[u8])> {
    let h = decode_header(obj)?;
    // decode_header checked header_len <= obj.len().
    let data = &obj[h.header_len as usize..];
    if data.len() as u64 != h.data_len {
        return Err(Error::corruption(format!(
            "segment {:016x}: {} bytes of data, the header declares {}",
            h.seq,
            data.len(),
            h.data_len
        )));
    }
    verify_pages(&h, 0, data)?;
    Ok((h, data))
}

/// Verify bytes `start..end` of a segment's data area as read from the store (both page
/// boundaries, `end <= data_len`). Unlike [`verify_pages`] this knows how many bytes were asked
/// for, so a short read of a truncated object is `Corruption` too, never a short buffer handed
/// on.
pub fn verify_data(h: &Header, start: u64, end: u64, data: &[u8]) -> Result<()> {
    let sane = start <= end
        && end <= h.data_len
        && start.is_multiple_of(PAGE as u64)
        && end.is_multiple_of(PAGE as u64);
    if !sane {
        return Err(Error::invalid(format!(
            "segment {:016x}: bad data range {start}..{end} (data area is {} bytes)",
            h.seq, h.data_len
        )));
    }
    if data.len() as u64 != end - start {
        return Err(Error::corruption(format!(
            "segment {:016x}: data bytes {start}..{end} read as {} bytes (object truncated?)",
            h.seq,
            data.len()
        )));
    }
    // start / PAGE < n_pages, which fits in u32.
    verify_pages(h, (start / PAGE as u64) as u32, data)
}

/// Verify data pages `first_page..` of a segment against its header. `data.len()` must be a
/// multiple of the page size.
pub fn verify_pages(h: &Header, first_page: u32, data: &[u8]) -> Result<()> {
    for (i, page) in data.chunks(PAGE).enumerate() {
        let idx = first_page as usize + i;
        let ok = page.len() == PAGE
            && h.page_crcs
                .get(idx)
                .is_some_and(|&c| c == page_crc(h.seq, idx as u32, page));
        if !ok {
            return Err(Error::corruption(format!(
                "segment {:016x}: checksum mismatch in data page {idx} (byte offset {})",
                h.seq,
                h.header_len + idx as u64 * PAGE as u64
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<Entry>, Vec<u8>) {
        let entries = vec![
            Entry {
                lba: 10,
                len: 3,
                off: 0,
                kind: EntryKind::Data,
            },
            Entry {
                lba: 100,
                len: 8,
                off: 0,
                kind: EntryKind::Zero,
            },
            Entry {
                lba: 1 << 30,
                len: 9,
                off: 3,
                kind: EntryKind::Data,
            },
        ];
        let data: Vec<u8> = (0..12 * 512).map(|i| (i % 251) as u8).collect();
        (entries, data)
    }

    #[test]
    fn roundtrip() {
        let (entries, data) = sample();
        let obj = encode(
            7,
            3,
            JournalMark {
                journal_id: 9,
                jseq: 4,
            },
            &entries,
            &data,
        )
        .unwrap();
        assert_eq!(header_len(&obj[..16]).unwrap(), 4096);
        let h = decode_header(&obj).unwrap();
        assert_eq!(h.seq, 7);
        assert_eq!(h.epoch, 3);
        assert_eq!(
            h.journal,
            JournalMark {
                journal_id: 9,
                jseq: 4
            }
        );
        assert_eq!(h.entries, entries);
        assert_eq!(h.data_len, 8192);
        verify_pages(&h, 0, &obj[4096..]).unwrap();
        assert_eq!(&obj[4096..4096 + data.len()], &data[..]);
    }

    #[test]
    fn flipped_bytes_detected() {
        let (entries, data) = sample();
        let obj = encode(
            7,
            3,
            JournalMark {
                journal_id: 9,
                jseq: 4,
            },
            &entries,
            &data,
        )
        .unwrap();
        for pos in [0usize, 20, 60, 100, 4096, 4096 + 5000] {
            let mut bad = obj.clone();
            bad[pos] ^= 0x40;
            let res = decode_header(&bad).and_then(|h| verify_pages(&h, 0, &bad[4096..]));
            assert!(res.is_err(), "flip at {pos} not detected");
        }
    }

    #[test]
    fn page_of_other_segment_rejected() {
        let (entries, data) = sample();
        let a = encode(
            7,
            3,
            JournalMark {
                journal_id: 9,
                jseq: 4,
            },
            &entries,
            &data,
        )
        .unwrap();
        let b = encode(8, 3, JournalMark::default(), &entries, &data).unwrap();
        let (ha, hb) = (decode_header(&a).unwrap(), decode_header(&b).unwrap());
        // Same bytes, different segment: the salted checksums differ, so a stale or misplaced
        // page can only verify where it was written.
        assert_ne!(ha.page_crcs, hb.page_crcs);
        let mut moved = a[4096..].to_vec();
        moved.swap(0, PAGE);
        assert!(verify_pages(&ha, 0, &moved).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6000)) {
            let _ = decode_header(&bytes);
            let _ = header_len(&bytes);
        }
    }
}
