//! Journal records: one group commit of client operations, written with O_DIRECT.
//!
//! ```text
//! header (header_sectors x 512 bytes)
//!   0  magic "SHALEREC"      8   version u32     12  header_sectors u32
//!  16  journal_id u64       24   seq u64          32  kind u32 (1 ops, 2 wrap)
//!  36  n_entries u32        40   data_sectors u32 44  crc32c u32
//!  48  entries: n x { lba u64 | len u32 (sectors) | kind u32 (1 Data, 2 Zero, 3 Trim) }
//!      zero padding to the end of the header sectors
//! data (data_sectors x 512 bytes): the Data entries' sectors, in entry order
//! ```
//! The CRC covers header (with the crc field zero) and data. It includes the journal's random
//! id and the record number, so a stale record left from an earlier pass over the same space,
//! or from another journal, can never verify where a new one is expected; a torn record fails
//! it too. Records are numbered consecutively; replay stops at the first record that does not
//! verify with the expected number.
//!
//! The same byte layout is used in a ring journal file and inside an open segment written in
//! place (local store): a segment's data area may contain record headers, which no segment
//! entry references.

use shale_error::{Error, Result};

use crate::segment::EntryKind;
use crate::wire::{check_magic, put_u32, put_u64, Reader};
use crate::SECTOR;

pub const MAGIC: &[u8; 8] = b"SHALEREC";
/// Data is copied into a record and checksummed in slices of this size, each while it is
/// still in the cache.
pub const CHECKSUM_SLICE: usize = 64 << 10;
pub const VERSION: u32 = 1;
const FIXED_LEN: usize = 48;
const ENTRY_LEN: usize = 16;

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Client operations.
    Ops = 1,
    /// Nothing more fits before the end of a ring file: the next record is at its start.
    Wrap = 2,
}

/// One operation in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub lba: u64,
    pub len: u32,
    pub kind: EntryKind,
}

/// A decoded record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub journal_id: u64,
    pub seq: u64,
    pub kind: RecordKind,
    pub header_sectors: u32,
    pub data_sectors: u32,
    pub ops: Vec<Op>,
}

impl RecordHeader {
    /// Total bytes of the record on disk.
    pub fn total_len(&self) -> u64 {
        (self.header_sectors as u64 + self.data_sectors as u64) * SECTOR
    }
}

/// Sectors the header of a record with `n_ops` operations occupies.
pub fn header_sectors(n_ops: usize) -> u32 {
    // In u64: a decoder passes any u32 count; the result (< 2^28 for those) fits in u32.
    (FIXED_LEN as u64 + n_ops as u64 * ENTRY_LEN as u64).div_ceil(SECTOR) as u32
}

/// Encode a record into `out` (appended): header sectors, then `data` (whole sectors: the
/// Data ops' sectors in order). Returns the byte offset of the data within `out`.
pub fn encode_into(
    out: &mut Vec<u8>,
    journal_id: u64,
    seq: u64,
    kind: RecordKind,
    ops: &[Op],
    data: &[u8],
) -> usize {
    encode_parts_into(out, journal_id, seq, kind, ops, &[data])
}

/// [`encode_into`] with the data given in pieces (concatenated in order): each byte is copied
/// once, and checksummed while it is still in the cache.
pub fn encode_parts_into(
    out: &mut Vec<u8>,
    journal_id: u64,
    seq: u64,
    kind: RecordKind,
    ops: &[Op],
    parts: &[&[u8]],
) -> usize {
    let data_len: usize = parts.iter().map(|p| p.len()).sum();
    let start = out.len();
    out.reserve(header_sectors(ops.len()) as usize * SECTOR as usize + data_len);
    let mut crc = encode_header_into(out, journal_id, seq, kind, ops, data_len);
    let data_at = out.len();
    for part in parts {
        for piece in part.chunks(CHECKSUM_SLICE) {
            let at = out.len();
            out.extend_from_slice(piece);
            crc = crc32c::crc32c_append(crc, &out[at..]);
        }
    }
    set_crc(&mut out[start..], crc);
    data_at - start
}

/// A record's header alone, appended to `out` (its sectors, the CRC field zero), for a writer
/// that copies the data itself: returns the CRC so far, to be continued over the data with
/// `crc32c::crc32c_append` in order and stored with [`set_crc`]. `data_len` is the data's
/// length in bytes (whole sectors).
pub fn encode_header_into(
    out: &mut Vec<u8>,
    journal_id: u64,
    seq: u64,
    kind: RecordKind,
    ops: &[Op],
    data_len: usize,
) -> u32 {
    debug_assert_eq!(data_len as u64 % SECTOR, 0);
    let start = out.len();
    let hs = header_sectors(ops.len());
    out.extend_from_slice(MAGIC);
    put_u32(out, VERSION);
    put_u32(out, hs);
    put_u64(out, journal_id);
    put_u64(out, seq);
    put_u32(out, kind as u32);
    put_u32(out, ops.len() as u32);
    put_u32(out, (data_len as u64 / SECTOR) as u32);
    put_u32(out, 0); // crc, filled by set_crc
    for op in ops {
        put_u64(out, op.lba);
        put_u32(out, op.len);
        put_u32(out, op.kind as u32);
    }
    out.resize(start + hs as usize * SECTOR as usize, 0);
    crc32c::crc32c(&out[start..])
}

/// Store a record's CRC in its header (`header` starts at the record's first byte).
pub fn set_crc(header: &mut [u8], crc: u32) {
    header[44..48].copy_from_slice(&crc.to_le_bytes());
}

/// Decode the header of a record from its first sector(s); `None` when the bytes are not a
/// record of journal `journal_id` numbered `seq` (end of the log). Call [`verify`] with the
/// whole record before trusting its data.
pub fn decode_header(buf: &[u8], journal_id: u64, seq: u64) -> Option<RecordHeader> {
    let h = decode_header_any(buf).ok()?;
    (h.journal_id == journal_id && h.seq == seq).then_some(h)
}

/// Decode a record header without expectations (for tools and tests).
pub fn decode_header_any(buf: &[u8]) -> Result<RecordHeader> {
    let mut r = Reader::new(buf, "journal record");
    check_magic(&mut r, MAGIC, VERSION)?;
    let header_sectors = r.u32()?;
    let journal_id = r.u64()?;
    let seq = r.u64()?;
    let kind = match r.u32()? {
        1 => RecordKind::Ops,
        2 => RecordKind::Wrap,
        k => {
            return Err(Error::corruption(format!(
                "journal record: unknown kind {k}"
            )))
        }
    };
    let n = r.u32()? as usize;
    let data_sectors = r.u32()?;
    let _crc = r.u32()?;
    if header_sectors != self::header_sectors(n) {
        return Err(Error::corruption(
            "journal record: header size does not match its entries",
        ));
    }
    let mut ops = Vec::with_capacity(n.min(4096));
    let mut data_needed = 0u64;
    for _ in 0..n {
        let lba = r.u64()?;
        let len = r.u32()?;
        let kind = match r.u32()? {
            1 => EntryKind::Data,
            2 => EntryKind::Zero,
            3 => EntryKind::Trim,
            k => {
                return Err(Error::corruption(format!(
                    "journal record: unknown op kind {k}"
                )))
            }
        };
        if len == 0 || lba.checked_add(len as u64).is_none() {
            return Err(Error::corruption(format!(
                "journal record: empty or overflowing op ({lba}, +{len})"
            )));
        }
        if kind == EntryKind::Data {
            data_needed += len as u64;
        }
        ops.push(Op { lba, len, kind });
    }
    if data_needed != data_sectors as u64 {
        return Err(Error::corruption(
            "journal record: data size does not match its ops",
        ));
    }
    Ok(RecordHeader {
        journal_id,
        seq,
        kind,
        header_sectors,
        data_sectors,
        ops,
    })
}

/// Decode and check a whole record: `buf` must be exactly the `total_len` bytes its header
/// declares (shorter or longer is `Corruption`) and must verify.
pub fn decode(buf: &[u8]) -> Result<RecordHeader> {
    let h = decode_header_any(buf)?;
    if h.total_len() != buf.len() as u64 {
        return Err(Error::corruption(format!(
            "journal record {}: {} bytes, the header declares {}",
            h.seq,
            buf.len(),
            h.total_len()
        )));
    }
    if !verify(buf) {
        return Err(Error::corruption(format!(
            "journal record {}: checksum mismatch",
            h.seq
        )));
    }
    Ok(h)
}

/// Check a whole record (`buf` = exactly `total_len` bytes) against its CRC.
pub fn verify(buf: &[u8]) -> bool {
    if buf.len() < 48 {
        return false;
    }
    let stored = u32::from_le_bytes([buf[44], buf[45], buf[46], buf[47]]);
    let mut c = crc32c::crc32c(&buf[..44]);
    c = crc32c::crc32c_append(c, &[0u8; 4]);
    crc32c::crc32c_append(c, &buf[48..]) == stored
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_verify_and_salt() {
        let ops = [
            Op {
                lba: 8,
                len: 2,
                kind: EntryKind::Data,
            },
            Op {
                lba: 100,
                len: 50,
                kind: EntryKind::Zero,
            },
            Op {
                lba: 1,
                len: 1,
                kind: EntryKind::Data,
            },
        ];
        let data = vec![0x33u8; 3 * 512];
        let mut out = vec![0xEE; 7]; // encode appends
        let at = encode_into(&mut out, 42, 9, RecordKind::Ops, &ops, &data);
        let rec = &out[7..];
        assert_eq!(at, 512);
        let h = decode_header(rec, 42, 9).unwrap();
        assert_eq!(h.ops, ops);
        assert_eq!(h.total_len() as usize, rec.len());
        assert!(verify(rec));
        assert!(
            decode_header(rec, 43, 9).is_none(),
            "another journal's record"
        );
        assert!(decode_header(rec, 42, 10).is_none(), "a stale record");
        for i in [0, 20, 30, 45, 60, 600, rec.len() - 1] {
            let mut bad = rec.to_vec();
            bad[i] ^= 4;
            assert!(
                !verify(&bad) || decode_header(&bad, 42, 9).is_none(),
                "flip at {i}"
            );
        }
        assert!(!verify(&rec[..rec.len() - 512]), "torn record");
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000)) {
            let _ = decode_header_any(&bytes);
            let _ = verify(&bytes);
        }
    }
}
