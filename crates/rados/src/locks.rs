//! Image locks: librbd's legacy advisory locks (`rbd_lock_exclusive`, `rbd_lock_shared`,
//! `rbd_unlock`, `rbd_list_lockers`, `rbd_break_lock`) and the managed exclusive lock
//! (`rbd_lock_acquire` / `rbd_lock_release`).
//!
//! Advisory locks must be visible to every process using the store, so they belong in the
//! image layer (the header or an object next to it). Until `shale_image` has them, the
//! legacy calls check their arguments and return `-ENOSYS`. The API they will call:
//!
//! ```text
//! Image::lock_add(cookie: &str, tag: Option<&str>, exclusive: bool, owner: &LockOwner) -> Result<()>
//!     Exists  (-EEXIST) the same owner+cookie holds it already, or an exclusive lock is held
//!     Busy    (-EBUSY)  held by others in the other mode, or shared with a different tag
//! Image::lock_remove(cookie: &str, owner: &LockOwner) -> Result<()>      NotFound (-ENOENT)
//! Image::lock_break(client: &str, cookie: &str) -> Result<()>            NotFound (-ENOENT)
//! Image::lockers() -> Result<(bool exclusive, String tag, Vec<Locker{client, cookie, addr}>)>
//! LockOwner { client: "client.<instance id>", addr: "<ip>:0/<nonce>" }
//! ```
//!
//! The managed exclusive lock: a writable Shale handle is the owner
//! (`rbd_is_exclusive_lock_owner`), so acquiring the exclusive mode succeeds on a writable
//! handle, the shared mode is `-EOPNOTSUPP` (as librbd), and releasing is a no-op.

use crate::cstr;
use crate::guard::ffi;
use crate::image::with_image;
use crate::types::{rbd_image_t, rbd_lock_mode_t};
use core::ffi::{c_char, c_int};

const LOCK_MODE_EXCLUSIVE: rbd_lock_mode_t = 0;
const LOCK_MODE_SHARED: rbd_lock_mode_t = 1;
const EXCLUSIVE_LOCK: u64 = 4;

/// `int rbd_lock_exclusive(rbd_image_t image, const char *cookie)`: `-ENOSYS` (see module).
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_lock_exclusive(
    image: rbd_image_t,
    cookie: *const c_char,
) -> c_int {
    ffi("rbd_lock_exclusive", -libc::EFAULT, || {
        with_image(image, |img| {
            // SAFETY: NULL or a C string (caller contract).
            unsafe { cstr::arg(cookie) }?;
            img.writable()?;
            Err(-libc::ENOSYS)
        })
    })
}

/// `int rbd_lock_shared(rbd_image_t image, const char *cookie, const char *tag)`: `-ENOSYS`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_lock_shared(
    image: rbd_image_t,
    cookie: *const c_char,
    tag: *const c_char,
) -> c_int {
    ffi("rbd_lock_shared", -libc::EFAULT, || {
        with_image(image, |img| {
            // SAFETY: NULL or C strings (caller contract).
            unsafe { (cstr::arg(cookie)?, cstr::arg(tag)?) };
            img.writable()?;
            Err(-libc::ENOSYS)
        })
    })
}

/// `int rbd_unlock(rbd_image_t image, const char *cookie)`: `-ENOSYS`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_unlock(image: rbd_image_t, cookie: *const c_char) -> c_int {
    ffi("rbd_unlock", -libc::EFAULT, || {
        with_image(image, |img| {
            // SAFETY: NULL or a C string (caller contract).
            unsafe { cstr::arg(cookie) }?;
            img.writable()?;
            Err(-libc::ENOSYS)
        })
    })
}

/// `int rbd_break_lock(rbd_image_t image, const char *client, const char *cookie)`: `-ENOSYS`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_break_lock(
    image: rbd_image_t,
    client: *const c_char,
    cookie: *const c_char,
) -> c_int {
    ffi("rbd_break_lock", -libc::EFAULT, || {
        with_image(image, |img| {
            // SAFETY: NULL or C strings (caller contract).
            unsafe { (cstr::arg(client)?, cstr::arg(cookie)?) };
            img.writable()?;
            Err(-libc::ENOSYS)
        })
    })
}

/// `ssize_t rbd_list_lockers(...)`: `-ENOSYS` (see module).
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_list_lockers(
    image: rbd_image_t,
    _exclusive: *mut c_int,
    _tag: *mut c_char,
    _tag_len: *mut usize,
    _clients: *mut c_char,
    _clients_len: *mut usize,
    _cookies: *mut c_char,
    _cookies_len: *mut usize,
    _addrs: *mut c_char,
    _addrs_len: *mut usize,
) -> isize {
    ffi("rbd_list_lockers", -(libc::EFAULT as isize), || {
        with_image(image, |_| Err(-libc::ENOSYS)) as isize
    })
}

/// `int rbd_lock_acquire(rbd_image_t image, rbd_lock_mode_t lock_mode)`: exclusive on a
/// writable handle with the exclusive-lock feature is 0 (it owns the image already); shared
/// `-EOPNOTSUPP`; without the feature `-EINVAL`; read-only `-EROFS`.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_lock_acquire(
    image: rbd_image_t,
    lock_mode: rbd_lock_mode_t,
) -> c_int {
    ffi("rbd_lock_acquire", -libc::EFAULT, || {
        with_image(image, |img| {
            match lock_mode {
                LOCK_MODE_EXCLUSIVE => {}
                LOCK_MODE_SHARED => return Err(-libc::EOPNOTSUPP),
                _ => return Err(-libc::EINVAL),
            }
            img.writable()?;
            if img.image().features() & EXCLUSIVE_LOCK == 0 {
                return Err(-libc::EINVAL);
            }
            Ok(())
        })
    })
}

/// `int rbd_lock_release(rbd_image_t image)`: nothing to release; `-EINVAL` without the
/// exclusive-lock feature, `-EROFS` on read-only handles.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_lock_release(image: rbd_image_t) -> c_int {
    ffi("rbd_lock_release", -libc::EFAULT, || {
        with_image(image, |img| {
            img.writable()?;
            if img.image().features() & EXCLUSIVE_LOCK == 0 {
                return Err(-libc::EINVAL);
            }
            Ok(())
        })
    })
}
