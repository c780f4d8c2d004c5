//! Little-endian cursor helpers shared by the decoders. Reads past the end are errors, not panics.

use shale_error::{Error, Result};

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                Error::corruption(format!(
                    "{}: truncated at byte {} (need {n} more)",
                    self.what, self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    pub(crate) fn u32(&mut self) -> Result<u32> {
        let b = self.bytes(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self) -> Result<u64> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
}

pub(crate) fn put_u32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}
pub(crate) fn put_u64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_le_bytes());
}

/// Check magic and version; returns the version.
pub(crate) fn check_magic(r: &mut Reader<'_>, magic: &[u8; 8], max_version: u32) -> Result<u32> {
    let m = r.bytes(8)?;
    if m != magic {
        return Err(Error::corruption(format!(
            "{}: bad magic {:?} (expected {:?})",
            r.what,
            String::from_utf8_lossy(m),
            String::from_utf8_lossy(magic)
        )));
    }
    let v = r.u32()?;
    if v == 0 || v > max_version {
        return Err(Error::corruption(format!(
            "{}: unsupported version {v} (this build reads up to {max_version})",
            r.what
        )));
    }
    Ok(v)
}
