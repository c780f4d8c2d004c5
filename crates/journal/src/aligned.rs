//! Page-aligned byte buffers for O_DIRECT, without unsafe code: over-allocate and use the
//! aligned window.

/// Alignment of every buffer (and of every O_DIRECT offset and length used here).
pub const ALIGN: usize = 4096;

/// A growable buffer whose contents start at a 4096-byte aligned address.
#[derive(Debug, Default)]
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    pub fn with_capacity(cap: usize) -> Self {
        let mut b = AlignedBuf::default();
        b.reserve(cap);
        b
    }

    fn reserve(&mut self, cap: usize) {
        if self.raw.len() >= self.start + cap && self.raw.len() - self.start >= cap {
            return;
        }
        let mut raw = vec![0u8; cap + ALIGN];
        let start = (ALIGN - raw.as_ptr() as usize % ALIGN) % ALIGN;
        raw[start..start + self.len].copy_from_slice(&self.raw[self.start..self.start + self.len]);
        self.raw = raw;
        self.start = start;
    }

    /// Set the contents to `data` followed by zeros up to `padded_len`.
    pub fn fill(&mut self, data: &[u8], padded_len: usize) {
        let n = padded_len.max(data.len());
        self.reserve(n);
        self.len = n;
        let s = self.start;
        self.raw[s..s + data.len()].copy_from_slice(data);
        self.raw[s + data.len()..s + n].fill(0);
    }

    /// A buffer holding what `fill` appends to an empty vector (at most `max` bytes), built
    /// in place: the bytes are written once, already aligned.
    pub fn build(max: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Self {
        let mut raw = Vec::with_capacity(max + ALIGN);
        let start = (ALIGN - raw.as_ptr() as usize % ALIGN) % ALIGN;
        raw.resize(start, 0);
        fill(&mut raw);
        let len = raw.len() - start;
        let b = AlignedBuf { raw, start, len };
        debug_assert_eq!(
            b.as_slice().as_ptr() as usize % ALIGN,
            0,
            "grown past `max`"
        );
        b
    }

    /// The contents as a vector of their own size (the aligned buffer's slack dropped).
    pub fn into_compact(self) -> Vec<u8> {
        self.as_slice().to_vec()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn aligned_and_padded() {
        let mut b = AlignedBuf::with_capacity(10);
        b.fill(b"abc", 512);
        assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
        assert_eq!(b.len(), 512);
        assert_eq!(&b.as_slice()[..3], b"abc");
        b.fill(&vec![7u8; 9000], 12288);
        assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
        assert_eq!(b.as_slice()[8999], 7);
        assert_eq!(b.as_slice()[9000], 0);
    }

    #[test]
    fn built_in_place_and_aligned() {
        let b = AlignedBuf::build(8192, |v| v.extend_from_slice(&[5u8; 8192]));
        assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
        assert_eq!(b.len(), 8192);
        assert!(b.as_slice().iter().all(|&x| x == 5));
        assert_eq!(b.into_compact(), vec![5u8; 8192]);
    }
}
