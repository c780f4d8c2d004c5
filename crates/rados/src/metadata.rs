//! Image metadata (`rbd_metadata_*`): key/value pairs kept in the image header.
//!
//! As measured on Ceph 16.2.15: `get` with a short buffer is `-ERANGE` with `*vallen` = the size
//! needed (and leaves `*vallen` alone on success); `list` is `-ERANGE` with both sizes set when
//! either buffer is short, and sets both on success; a missing key is `-ENOENT`; changes on a
//! read-only handle are `-EROFS`.

use crate::cstr;
use crate::errno;
use crate::guard::ffi;
use crate::image::lookup_image;
use crate::types::rbd_image_t;
use core::ffi::{c_char, c_int};

fn status(r: Result<(), c_int>) -> c_int {
    r.err().unwrap_or(0)
}

/// `int rbd_metadata_get(rbd_image_t image, const char *key, char *value, size_t *val_len)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_metadata_get(
    image: rbd_image_t,
    key: *const c_char,
    value: *mut c_char,
    val_len: *mut usize,
) -> c_int {
    ffi("rbd_metadata_get", -libc::EFAULT, || {
        status((|| {
            let img = lookup_image(image)?;
            // SAFETY: `key` is NULL or a C string (caller contract).
            let key = unsafe { cstr::arg(key) }?;
            if val_len.is_null() {
                return Err(-libc::EINVAL);
            }
            let v = img.image().metadata_get(key).map_err(|e| errno::of(&e))?;
            // SAFETY: `val_len` is non-NULL and read/writable; `value` writable for *val_len.
            unsafe {
                if value.is_null() || *val_len <= v.len() {
                    *val_len = v.len() + 1;
                    return Err(-libc::ERANGE);
                }
                cstr::snprintf(value, *val_len, &v);
            }
            Ok(())
        })())
    })
}

/// `int rbd_metadata_set(rbd_image_t image, const char *key, const char *value)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_metadata_set(
    image: rbd_image_t,
    key: *const c_char,
    value: *const c_char,
) -> c_int {
    ffi("rbd_metadata_set", -libc::EFAULT, || {
        status((|| {
            let img = lookup_image(image)?;
            // SAFETY: C strings or NULL (caller contract).
            let (key, value) = unsafe { (cstr::arg(key)?, cstr::arg(value)?) };
            img.writable()?;
            img.image()
                .metadata_set(key, value)
                .map_err(|e| errno::of(&e))
        })())
    })
}

/// `int rbd_metadata_remove(rbd_image_t image, const char *key)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_metadata_remove(
    image: rbd_image_t,
    key: *const c_char,
) -> c_int {
    ffi("rbd_metadata_remove", -libc::EFAULT, || {
        status((|| {
            let img = lookup_image(image)?;
            // SAFETY: `key` is NULL or a C string (caller contract).
            let key = unsafe { cstr::arg(key) }?;
            img.writable()?;
            img.image().metadata_remove(key).map_err(|e| errno::of(&e))
        })())
    })
}

/// Copy NUL-separated `items` to `buf`.
///
/// # Safety
/// `buf` is writable for the total length of the items and their NULs.
unsafe fn pack(items: &[&str], buf: *mut c_char) {
    let mut at = 0;
    for s in items {
        // SAFETY: the caller checked the buffer holds every item and its NUL.
        unsafe { cstr::snprintf(buf.add(at), s.len() + 1, s) };
        at += s.len() + 1;
    }
}

/// `int rbd_metadata_list(rbd_image_t image, const char *start, uint64_t max, char *keys,
/// size_t *key_len, char *values, size_t *vals_len)`: the pairs after key `start` (at most
/// `max`, 0 = all) as NUL-separated keys and values.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_metadata_list(
    image: rbd_image_t,
    start: *const c_char,
    max: u64,
    keys: *mut c_char,
    key_len: *mut usize,
    values: *mut c_char,
    vals_len: *mut usize,
) -> c_int {
    ffi("rbd_metadata_list", -libc::EFAULT, || {
        status((|| {
            let img = lookup_image(image)?;
            // SAFETY: `start` is NULL or a C string (caller contract).
            let start = unsafe { cstr::opt_arg(start) }?.unwrap_or("");
            if key_len.is_null() || vals_len.is_null() {
                return Err(-libc::EINVAL);
            }
            let all = img.image().metadata_list();
            let limit = if max == 0 { usize::MAX } else { max as usize };
            let pairs: Vec<(&str, &str)> = all
                .iter()
                .filter(|(k, _)| start.is_empty() || k.as_str() > start)
                .take(limit)
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let ktotal: usize = pairs.iter().map(|p| p.0.len() + 1).sum();
            let vtotal: usize = pairs.iter().map(|p| p.1.len() + 1).sum();
            // SAFETY: both lengths are non-NULL and read/writable; the buffers are writable for
            // their lengths (caller contract), which we check hold everything.
            unsafe {
                let short = |buf: *mut c_char, have: usize, need: usize| {
                    need > 0 && (buf.is_null() || have < need)
                };
                if short(keys, *key_len, ktotal) || short(values, *vals_len, vtotal) {
                    *key_len = ktotal;
                    *vals_len = vtotal;
                    return Err(-libc::ERANGE);
                }
                let ks: Vec<&str> = pairs.iter().map(|p| p.0).collect();
                let vs: Vec<&str> = pairs.iter().map(|p| p.1).collect();
                pack(&ks, keys);
                pack(&vs, values);
                *key_len = ktotal;
                *vals_len = vtotal;
            }
            Ok(())
        })())
    })
}
