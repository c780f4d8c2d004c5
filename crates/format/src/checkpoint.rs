//! Checkpoints: a snapshot of an image's whole extent map after segment `seq`.
//!
//! ```text
//! magic "SHALECKP" | version u32 | reserved u32 | seq u64 | next_seq u64 | epoch u64
//! journal_id u64 | jseq u64 | n u64
//! n x { lba u64 | len u32 | off u32 | seg u64 }        (seg = u64::MAX: explicit zeros)
//! crc32c u32 over everything before it
//! ```
//! Recovery loads the newest checkpoint that verifies and replays segments from `next_seq` on.
//! `next_seq` may be larger than `seq + 1` when recovery discarded segments past a gap: the
//! numbers in between are never used again.

use shale_error::{Error, Result};

use crate::segment::JournalMark;
use crate::wire::{check_magic, put_u32, put_u64, Reader};

pub const MAGIC: &[u8; 8] = b"SHALECKP";
pub const VERSION: u32 = 1;
const FIXED_LEN: usize = 64;
const EXTENT_LEN: usize = 24;
/// `seg` value of an explicit-zero extent.
pub const ZERO_SEG: u64 = u64::MAX;

/// One extent: sectors [lba, lba+len) live at sector `off` of segment `seg`'s data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub lba: u64,
    pub len: u32,
    pub off: u32,
    pub seg: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every segment with a number ≤ seq is included.
    pub seq: u64,
    /// The first segment number replay should look for.
    pub next_seq: u64,
    pub epoch: u64,
    /// The journal records reflected (see `segment::JournalMark`).
    pub journal: JournalMark,
    pub extents: Vec<Extent>,
}

pub fn encode(c: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_LEN + c.extents.len() * EXTENT_LEN + 4);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, VERSION);
    put_u32(&mut out, 0);
    put_u64(&mut out, c.seq);
    put_u64(&mut out, c.next_seq);
    put_u64(&mut out, c.epoch);
    put_u64(&mut out, c.journal.journal_id);
    put_u64(&mut out, c.journal.jseq);
    put_u64(&mut out, c.extents.len() as u64);
    for e in &c.extents {
        put_u64(&mut out, e.lba);
        put_u32(&mut out, e.len);
        put_u32(&mut out, e.off);
        put_u64(&mut out, e.seg);
    }
    let crc = crc32c::crc32c(&out);
    put_u32(&mut out, crc);
    out
}

pub fn decode(buf: &[u8]) -> Result<Checkpoint> {
    let mut r = Reader::new(buf, "checkpoint");
    check_magic(&mut r, MAGIC, VERSION)?;
    let _ = r.u32()?;
    let seq = r.u64()?;
    let next_seq = r.u64()?;
    let epoch = r.u64()?;
    let journal = JournalMark {
        journal_id: r.u64()?,
        jseq: r.u64()?,
    };
    let n = r.u64()?;
    let expect = (n as u128) * EXTENT_LEN as u128 + FIXED_LEN as u128 + 4;
    if expect != buf.len() as u128 {
        return Err(Error::corruption(format!(
            "checkpoint {seq:016x}: length {} does not match {n} extents",
            buf.len()
        )));
    }
    let body = buf.len() - 4;
    let stored = u32::from_le_bytes([buf[body], buf[body + 1], buf[body + 2], buf[body + 3]]);
    if crc32c::crc32c(&buf[..body]) != stored {
        return Err(Error::corruption(format!(
            "checkpoint {seq:016x}: checksum mismatch"
        )));
    }
    if next_seq <= seq {
        return Err(Error::corruption(format!(
            "checkpoint {seq:016x}: next_seq {next_seq} not after seq"
        )));
    }
    let mut extents = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let lba = r.u64()?;
        let len = r.u32()?;
        let off = r.u32()?;
        let seg = r.u64()?;
        if len == 0 || lba.checked_add(len as u64).is_none() {
            return Err(Error::corruption(format!(
                "checkpoint {seq:016x}: empty or overflowing extent ({lba}, +{len})"
            )));
        }
        extents.push(Extent { lba, len, off, seg });
    }
    Ok(Checkpoint {
        seq,
        next_seq,
        epoch,
        journal,
        extents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage() {
        let c = Checkpoint {
            seq: 5,
            next_seq: 9,
            epoch: 2,
            journal: JournalMark {
                journal_id: 5,
                jseq: 77,
            },
            extents: vec![
                Extent {
                    lba: 0,
                    len: 8,
                    off: 16,
                    seg: 3,
                },
                Extent {
                    lba: 8,
                    len: 100,
                    off: 0,
                    seg: ZERO_SEG,
                },
            ],
        };
        let b = encode(&c);
        assert_eq!(decode(&b).unwrap(), c);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 1;
            assert!(decode(&bad).is_err(), "flip at {i}");
        }
        assert!(decode(&b[..b.len() - 1]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }
}
