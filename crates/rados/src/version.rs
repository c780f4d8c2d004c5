//! `rados_version` and `rbd_version`: the library versions of Ceph 16.2.15's headers
//! (`LIBRADOS_VER_*` = 3.0.0, `LIBRBD_VER_*` = 1.16.0), which clients compare against.

use crate::guard::ffi;
use core::ffi::c_int;

const LIBRADOS_VERSION: (c_int, c_int, c_int) = (3, 0, 0);
const LIBRBD_VERSION: (c_int, c_int, c_int) = (1, 16, 0);

/// # Safety
/// Each pointer is NULL or writable.
unsafe fn write_version(
    v: (c_int, c_int, c_int),
    major: *mut c_int,
    minor: *mut c_int,
    extra: *mut c_int,
) {
    for (p, x) in [(major, v.0), (minor, v.1), (extra, v.2)] {
        if !p.is_null() {
            // SAFETY: non-NULL, writable by the caller's contract.
            unsafe { p.write(x) };
        }
    }
}

/// `void rados_version(int *major, int *minor, int *extra)`; NULL pointers are skipped.
///
/// # Safety
/// Each pointer is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn rados_version(major: *mut c_int, minor: *mut c_int, extra: *mut c_int) {
    // SAFETY: forwarded caller contract.
    ffi("rados_version", (), || unsafe {
        write_version(LIBRADOS_VERSION, major, minor, extra)
    })
}

/// `void rbd_version(int *major, int *minor, int *extra)`; NULL pointers are skipped.
///
/// # Safety
/// Each pointer is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_version(
    major: *mut c_int,
    minor: *mut c_int,
    extra: *mut c_int,
) {
    // SAFETY: forwarded caller contract.
    ffi("rbd_version", (), || unsafe {
        write_version(LIBRBD_VERSION, major, minor, extra)
    })
}
