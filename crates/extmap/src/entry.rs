//! The packed 16-byte extent entry.
//!
//! ```text
//!            63                         24 23                  0
//!   key    [ lba (40 bits, sectors)      | len (24 bits, >= 1) ]
//!   val    [ seg (40 bits)               | off (24 bits)       ]
//!            seg == ZERO_SEG (all ones) means Target::Zero, off = 0
//! ```
//!
//! Putting the lba in the high bits of `key` makes `key` order equal lba order, and since
//! `len < 2^24`, `e.key < x << 24` exactly when `e.lba() < x`: searches compare one word.

use crate::Target;

/// Bits of the length / offset fields.
pub(crate) const LOW_BITS: u32 = 24;
/// Mask of the length / offset fields.
pub(crate) const LOW_MASK: u64 = (1 << LOW_BITS) - 1;
/// Longest run one entry can describe; longer extents are stored as several entries.
pub(crate) const MAX_ENTRY_LEN: u64 = LOW_MASK;
/// Mask of the lba / segment fields (40 bits).
pub(crate) const HIGH_MASK: u64 = (1 << 40) - 1;
/// Segment field value reserved for [`Target::Zero`].
pub(crate) const ZERO_SEG: u64 = HIGH_MASK;

/// Packed `val` word for a target. Out-of-range fields are masked (the public API documents the
/// limits and debug-asserts them; release builds must not panic).
#[inline]
pub(crate) fn encode_target(t: Target) -> u64 {
    match t {
        Target::Data { seg, off } => ((seg & HIGH_MASK) << LOW_BITS) | (u64::from(off) & LOW_MASK),
        Target::Zero => ZERO_SEG << LOW_BITS,
    }
}

/// `val` advanced by `k` sectors: Data offsets move, Zero stays Zero.
#[inline]
pub(crate) fn val_at(val: u64, k: u64) -> u64 {
    if val >> LOW_BITS == ZERO_SEG {
        val
    } else {
        (val & !LOW_MASK) | ((val & LOW_MASK).wrapping_add(k) & LOW_MASK)
    }
}

/// One stored extent: `[lba, lba + len)` lives at `val`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: u64,
    pub(crate) val: u64,
}

impl Entry {
    /// Callers guarantee `lba < 2^40` and `1 <= len <= MAX_ENTRY_LEN`.
    #[inline]
    pub(crate) fn new(lba: u64, len: u64, val: u64) -> Self {
        debug_assert!(lba <= HIGH_MASK && (1..=MAX_ENTRY_LEN).contains(&len));
        Entry {
            key: (lba << LOW_BITS) | (len & LOW_MASK),
            val,
        }
    }

    #[inline]
    pub(crate) fn lba(self) -> u64 {
        self.key >> LOW_BITS
    }

    #[inline]
    pub(crate) fn len(self) -> u64 {
        self.key & LOW_MASK
    }

    #[inline]
    pub(crate) fn end(self) -> u64 {
        self.lba() + self.len()
    }

    #[inline]
    fn seg_field(self) -> u64 {
        self.val >> LOW_BITS
    }

    /// The target of the entry's first sector.
    #[inline]
    pub(crate) fn target(self) -> Target {
        decode_target(self.val)
    }

    /// The target of the sector `k` sectors into the entry.
    #[inline]
    pub(crate) fn target_at(self, k: u64) -> Target {
        decode_target(val_at(self.val, k))
    }

    /// The entry with its first `k` sectors cut off (`0 < k < len`).
    #[inline]
    pub(crate) fn skip(self, k: u64) -> Self {
        debug_assert!(k > 0 && k < self.len());
        Entry::new(self.lba() + k, self.len() - k, val_at(self.val, k))
    }

    /// The entry cut down to its first `n` sectors (`0 < n <= len`).
    #[inline]
    pub(crate) fn truncate(self, n: u64) -> Self {
        debug_assert!(n > 0 && n <= self.len());
        Entry::new(self.lba(), n, self.val)
    }

    /// Whether an extent at `lba` with target `val` directly continues this one, so the two can
    /// be one entry (same segment and consecutive offsets, or both Zero), length permitting.
    #[inline]
    pub(crate) fn continued_by(self, lba: u64, len: u64, val: u64) -> bool {
        if self.end() != lba || self.len() + len > MAX_ENTRY_LEN {
            return false;
        }
        let seg = val >> LOW_BITS;
        if seg != self.seg_field() {
            return false;
        }
        // Compare offsets as numbers: a carry out of the 24-bit field must not look like the
        // start of the next segment.
        seg == ZERO_SEG || (self.val & LOW_MASK) + self.len() == (val & LOW_MASK)
    }
}

#[inline]
fn decode_target(val: u64) -> Target {
    let seg = val >> LOW_BITS;
    if seg == ZERO_SEG {
        Target::Zero
    } else {
        // The field is 24 bits wide, so the narrowing is lossless.
        Target::Data {
            seg,
            off: (val & LOW_MASK) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_fields() {
        let v = encode_target(Target::Data {
            seg: (1 << 40) - 2,
            off: (1 << 24) - 1,
        });
        let e = Entry::new((1 << 40) - 1, MAX_ENTRY_LEN, v);
        assert_eq!(e.lba(), (1 << 40) - 1);
        assert_eq!(e.len(), MAX_ENTRY_LEN);
        assert_eq!(
            e.target(),
            Target::Data {
                seg: (1 << 40) - 2,
                off: (1 << 24) - 1
            }
        );
        let z = Entry::new(5, 10, encode_target(Target::Zero));
        assert_eq!(z.skip(3).target(), Target::Zero);
        assert_eq!(z.skip(3).lba(), 8);
        assert_eq!(z.skip(3).len(), 7);
    }

    #[test]
    fn continuation_does_not_carry_into_segment() {
        // seg 7 ends exactly at offset 2^24; seg 8 offset 0 must not count as its continuation.
        let a = Entry::new(
            0,
            16,
            encode_target(Target::Data {
                seg: 7,
                off: (1 << 24) - 16,
            }),
        );
        let b = encode_target(Target::Data { seg: 8, off: 0 });
        assert!(!a.continued_by(16, 8, b));
        let c = encode_target(Target::Data { seg: 7, off: 4 });
        let d = Entry::new(0, 4, encode_target(Target::Data { seg: 7, off: 0 }));
        assert!(d.continued_by(4, 8, c));
        assert!(!d.continued_by(5, 8, c));
    }
}
