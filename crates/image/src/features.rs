//! The RBD image feature bits (librbd.h `RBD_FEATURE_*`), their names as librbd prints them, and
//! the sets librbd's rules use: the one definition every crate uses.

pub const LAYERING: u64 = 1;
pub const STRIPINGV2: u64 = 2;
pub const EXCLUSIVE_LOCK: u64 = 4;
pub const OBJECT_MAP: u64 = 8;
pub const FAST_DIFF: u64 = 16;
pub const DEEP_FLATTEN: u64 = 32;
pub const JOURNALING: u64 = 64;
pub const DATA_POOL: u64 = 128;
pub const OPERATIONS: u64 = 256;
pub const MIGRATING: u64 = 512;
pub const NON_PRIMARY: u64 = 1024;
pub const DIRTY_CACHE: u64 = 2048;

/// Every bit librbd 16 knows.
pub const ALL: u64 = 4095;
/// `RBD_FEATURES_DEFAULT`: layering, exclusive-lock, object-map, fast-diff, deep-flatten.
pub const DEFAULT: u64 = LAYERING | EXCLUSIVE_LOCK | OBJECT_MAP | FAST_DIFF | DEEP_FLATTEN;
/// `RBD_FEATURES_MUTABLE`.
pub const MUTABLE: u64 =
    EXCLUSIVE_LOCK | OBJECT_MAP | FAST_DIFF | JOURNALING | NON_PRIMARY | DIRTY_CACHE;
/// `RBD_FEATURES_MUTABLE_INTERNAL`.
pub const MUTABLE_INTERNAL: u64 = NON_PRIMARY | DIRTY_CACHE;
/// `RBD_FEATURES_DISABLE_ONLY`.
pub const DISABLE_ONLY: u64 = DEEP_FLATTEN;
/// Bits only librbd itself sets.
pub const INTERNAL: u64 = MUTABLE_INTERNAL | MIGRATING | OPERATIONS;

/// librbd's names, in the order it prints them (sorted by name).
pub const NAMES: [(&str, u64); 12] = [
    ("data-pool", DATA_POOL),
    ("deep-flatten", DEEP_FLATTEN),
    ("dirty-cache", DIRTY_CACHE),
    ("exclusive-lock", EXCLUSIVE_LOCK),
    ("fast-diff", FAST_DIFF),
    ("journaling", JOURNALING),
    ("layering", LAYERING),
    ("migrating", MIGRATING),
    ("non-primary", NON_PRIMARY),
    ("object-map", OBJECT_MAP),
    ("operations", OPERATIONS),
    ("striping", STRIPINGV2),
];

/// The names of the bits set in `f`, in librbd's order.
pub fn names(f: u64) -> Vec<&'static str> {
    NAMES
        .iter()
        .filter(|(_, b)| f & b != 0)
        .map(|(n, _)| *n)
        .collect()
}
