//! Reading C strings and filling caller buffers, with the error codes librados uses.

use core::ffi::{c_char, c_int, CStr};

/// Read a NUL-terminated argument; NULL is `-EINVAL`, non-UTF-8 too.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives `'a`.
pub(crate) unsafe fn arg<'a>(p: *const c_char) -> Result<&'a str, c_int> {
    if p.is_null() {
        return Err(-libc::EINVAL);
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|_| -libc::EINVAL)
}

/// Like [`arg`], but NULL is `None`.
///
/// # Safety
/// As for [`arg`].
pub(crate) unsafe fn opt_arg<'a>(p: *const c_char) -> Result<Option<&'a str>, c_int> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded from the caller.
        unsafe { arg(p) }.map(Some)
    }
}

/// `snprintf(buf, len, "%s", s)`: copy what fits, always NUL-terminate when `len > 0`.
/// Returns whether all of `s` plus its NUL fit.
///
/// # Safety
/// `buf` is valid for `len` bytes of writes (it may be NULL only when `len` is 0).
pub(crate) unsafe fn snprintf(buf: *mut c_char, len: usize, s: &str) -> bool {
    if len == 0 || buf.is_null() {
        return s.len() < len;
    }
    let n = s.len().min(len - 1);
    // SAFETY: `n + 1 <= len` bytes of `buf` are writable, and `s` does not overlap a C buffer
    // we were handed (it is Rust-owned).
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
    s.len() < len
}

/// A `malloc`ed NUL-terminated copy of `s` (for strings the C caller frees with `free` or a
/// `*_cleanup` call); NULL if out of memory.
pub(crate) fn malloc_str(s: &str) -> *mut c_char {
    // SAFETY: plain allocation, checked for NULL.
    let p = unsafe { libc::malloc(s.len() + 1) }.cast::<c_char>();
    if !p.is_null() {
        // SAFETY: `p` has room for `s` and its NUL.
        unsafe { snprintf(p, s.len() + 1, s) };
    }
    p
}
