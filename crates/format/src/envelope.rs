//! Metadata envelope: small, rarely written records (pool entries, name → id, image headers).
//!
//! ```text
//! magic "SHALEMD1" | version u32 | kind u32 | body_len u32 | crc32c(body) u32 | body (UTF-8 JSON)
//! ```
//! The body is JSON so that fields can be added without a format bump (decoders ignore unknown
//! fields and default missing ones); the envelope gives the magic, the kind and the checksum.
//! These objects are replaced only with the store's conditional writes.

use shale_error::{Error, Result};

use crate::wire::{check_magic, put_u32, Reader};

pub const MAGIC: &[u8; 8] = b"SHALEMD1";
pub const VERSION: u32 = 1;

/// What an envelope holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// Store marker: the store was initialised.
    Store = 1,
    /// A pool entry.
    Pool = 2,
    /// An image name → id entry.
    Name = 3,
    /// An image header.
    ImageHeader = 4,
    /// An image's exclusive-lock object.
    Lock = 5,
    /// An image's sync status at one of its locations (`<prefix>loc/<name>`).
    LocationStatus = 6,
    /// A registered location (`.locations/<name>`): name and store URL.
    Location = 7,
    /// An image's I/O and location statistics, written by its lock owner (`<prefix>stats`).
    Stats = 8,
}

pub fn encode(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + body.len());
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, VERSION);
    put_u32(&mut out, kind as u32);
    put_u32(&mut out, body.len() as u32);
    put_u32(&mut out, crc32c::crc32c(body));
    out.extend_from_slice(body);
    out
}

/// Decode and check kind and checksum; returns the body.
pub fn decode(kind: Kind, buf: &[u8]) -> Result<&[u8]> {
    let mut r = Reader::new(buf, "metadata object");
    check_magic(&mut r, MAGIC, VERSION)?;
    let k = r.u32()?;
    if k != kind as u32 {
        return Err(Error::corruption(format!(
            "metadata object: kind {k}, expected {}",
            kind as u32
        )));
    }
    let len = r.u32()? as usize;
    let crc = r.u32()?;
    if r.pos().checked_add(len) != Some(buf.len()) {
        return Err(Error::corruption("metadata object: length mismatch"));
    }
    let body = r.bytes(len)?;
    if crc32c::crc32c(body) != crc {
        return Err(Error::corruption("metadata object: checksum mismatch"));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_damage() {
        let b = encode(Kind::Pool, br#"{"id":1}"#);
        assert_eq!(decode(Kind::Pool, &b).unwrap(), br#"{"id":1}"#);
        assert!(decode(Kind::Name, &b).is_err());
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x10;
            assert!(decode(Kind::Pool, &bad).is_err(), "flip at {i}");
        }
    }
}
