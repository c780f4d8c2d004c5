//! The one mapping from Shale errors to the negative errno values the C interface returns.
//!
//! It is `shale_error::ErrorKind::errno()` unchanged (NotFound → ENOENT, Exists → EEXIST,
//! Invalid → EINVAL, Busy → EBUSY, ReadOnly → EROFS, Unavailable → EAGAIN, Corruption/Io → EIO,
//! Fenced → ESHUTDOWN, NoSpace → ENOSPC, Unsupported → ENOSYS). The message of every error that
//! becomes an errno is logged at debug level (and written to stderr with `SHALE_FFI_LOG` set):
//! the C ABI has no room for it otherwise.

use core::ffi::c_int;
use shale_image::Error;

/// `-errno` for `e`.
pub(crate) fn of(e: &Error) -> c_int {
    crate::guard::log_error(e);
    -e.kind().errno()
}
