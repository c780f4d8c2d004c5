//! Error-safe list outputs: librbd's C callers (python3-rbd first) allocate an array of
//! `*max` entries without initialising it and, when the call fails, still hand the array and
//! its count to the matching `*_cleanup` function. A failed list call therefore leaves every
//! entry the caller gave room for zeroed (each cleanup frees NULL as nothing) and, unless the
//! error is `-ERANGE` (which reports the size needed), a count of zero.

use core::ffi::c_int;

/// A count type of a list call (`size_t *` or `int *`).
pub(crate) trait Count: Copy {
    fn to_usize(self) -> usize;
    fn zero() -> Self;
}

impl Count for usize {
    fn to_usize(self) -> usize {
        self
    }
    fn zero() -> Self {
        0
    }
}

impl Count for c_int {
    fn to_usize(self) -> usize {
        usize::try_from(self).unwrap_or(0)
    }
    fn zero() -> Self {
        0
    }
}

/// Run the list call `body` (its return value is the C result); on an error, zero the
/// `*count` entries of `items` the caller had given room for and, unless `-ERANGE`, the count.
///
/// # Safety
/// `items` is NULL or has room for `*count` entries; `count` is NULL or valid (caller
/// contract of the list call).
pub(crate) unsafe fn guarded<T, C: Count, R: Copy + Into<i64>>(
    items: *mut T,
    count: *mut C,
    body: impl FnOnce() -> R,
) -> R {
    // SAFETY: `count` is NULL or valid (caller contract).
    let cap = if count.is_null() {
        0
    } else {
        unsafe { *count }.to_usize()
    };
    let r = body();
    let v: i64 = r.into();
    if v < 0 {
        // SAFETY: `items` has room for `cap` entries and `count` is valid (caller contract);
        // all-zero bytes are a valid value of every C entry struct (NULL pointers, zero ints).
        unsafe {
            if !items.is_null() && cap > 0 {
                std::ptr::write_bytes(items, 0, cap);
            }
            if !count.is_null() && v != -i64::from(libc::ERANGE) {
                *count = C::zero();
            }
        }
    }
    r
}
