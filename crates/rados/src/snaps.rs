//! The snapshot, parent and diff calls of an image without snapshots or parent, as QEMU 7.2
//! makes them on open and for block status: `rbd_snap_list` returns 0 snapshots with the
//! terminator entry, `rbd_get_parent*` `-ENOENT`, and `rbd_diff_iterate2` reports the allocated
//! data ranges of the image (`Image::allocated`), rounded out to objects with `whole_object`.

use crate::guard::ffi;
use crate::image::{lookup_image, with_image};
use crate::types::{rbd_image_t, rbd_linked_image_spec_t, rbd_snap_info_t, rbd_snap_spec_t};
use core::ffi::{c_char, c_int, c_void};

/// `int rbd_snap_list(rbd_image_t image, rbd_snap_info_t *snaps, int *max_snaps)`: no
/// snapshots: room for the terminator entry is needed (`-ERANGE`, `*max_snaps` = 1), then the
/// terminator (all zero, name NULL) is written and 0 returned.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_list(
    image: rbd_image_t,
    snaps: *mut rbd_snap_info_t,
    max_snaps: *mut c_int,
) -> c_int {
    ffi("rbd_snap_list", -libc::EFAULT, || {
        with_image(image, |_| {
            if max_snaps.is_null() {
                return Err(-libc::EINVAL);
            }
            // SAFETY: non-NULL, readable and writable (caller contract).
            unsafe {
                if snaps.is_null() || *max_snaps < 1 {
                    *max_snaps = 1;
                    return Err(-libc::ERANGE);
                }
                snaps.write(rbd_snap_info_t {
                    id: 0,
                    size: 0,
                    name: std::ptr::null(),
                });
            }
            Ok(())
        })
    })
}

/// `void rbd_snap_list_end(rbd_snap_info_t *snaps)`: nothing was allocated.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_snap_list_end(_snaps: *mut rbd_snap_info_t) {
    ffi("rbd_snap_list_end", (), || ())
}

/// `rbd_get_parent_info`: `-ENOENT`, there is no parent.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_parent_info(
    image: rbd_image_t,
    _parent_poolname: *mut c_char,
    _ppoolnamelen: usize,
    _parent_name: *mut c_char,
    _pnamelen: usize,
    _parent_snapname: *mut c_char,
    _psnapnamelen: usize,
) -> c_int {
    ffi("rbd_get_parent_info", -libc::EFAULT, || {
        with_image(image, |_| Err(-libc::ENOENT))
    })
}

/// `rbd_get_parent`: `-ENOENT`, there is no parent.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_get_parent(
    image: rbd_image_t,
    _parent_image: *mut rbd_linked_image_spec_t,
    _parent_snap: *mut rbd_snap_spec_t,
) -> c_int {
    ffi("rbd_get_parent", -libc::EFAULT, || {
        with_image(image, |_| Err(-libc::ENOENT))
    })
}

type DiffCb = Option<unsafe extern "C" fn(u64, usize, c_int, *mut c_void) -> c_int>;

/// The allocated byte ranges of [ofs, ofs+len), rounded out to objects if `whole_object`.
fn allocated(img: &shale_image::Image, ofs: u64, len: u64, whole_object: bool) -> Vec<(u64, u64)> {
    let size = img.size();
    let end = ofs.saturating_add(len).min(size);
    if ofs >= end {
        return Vec::new();
    }
    let obj = img.info().object_size.max(512);
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (lba, n) in img.allocated(ofs / 512, (end - ofs).div_ceil(512) + 1) {
        let (mut s, mut e) = (lba * 512, (lba + n) * 512);
        if whole_object {
            s -= s % obj;
            e = e.div_ceil(obj) * obj;
        }
        let (s, e) = (s.max(ofs), e.min(end));
        if s >= e {
            continue;
        }
        match out.last_mut() {
            Some(last) if last.0 + last.1 >= s => last.1 = last.1.max(e - last.0),
            _ => out.push((s, e - s)),
        }
    }
    out
}

fn diff_iterate(
    image: rbd_image_t,
    fromsnap: *const c_char,
    ofs: u64,
    len: u64,
    whole_object: bool,
    cb: DiffCb,
    arg: *mut c_void,
) -> c_int {
    let img = match lookup_image(image) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let Some(cb) = cb else {
        return -libc::EINVAL;
    };
    if !fromsnap.is_null() {
        return -libc::ENOENT;
    }
    for (off, n) in allocated(&img.image(), ofs, len, whole_object) {
        // SAFETY: the caller's callback with its own argument.
        let r = unsafe { cb(off, n as usize, 1, arg) };
        if r < 0 {
            return r;
        }
    }
    0
}

/// `int rbd_diff_iterate2(rbd_image_t image, const char *fromsnapname, uint64_t ofs,
/// uint64_t len, uint8_t include_parent, uint8_t whole_object, cb, void *arg)`: reports the
/// allocated data ranges (exists=1), in order; a negative callback value stops and is returned.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_diff_iterate2(
    image: rbd_image_t,
    fromsnapname: *const c_char,
    ofs: u64,
    len: u64,
    _include_parent: u8,
    whole_object: u8,
    cb: DiffCb,
    arg: *mut c_void,
) -> c_int {
    ffi("rbd_diff_iterate2", -libc::EFAULT, || {
        diff_iterate(image, fromsnapname, ofs, len, whole_object != 0, cb, arg)
    })
}

/// `rbd_diff_iterate`: as `rbd_diff_iterate2` with exact extents.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_diff_iterate(
    image: rbd_image_t,
    fromsnapname: *const c_char,
    ofs: u64,
    len: u64,
    cb: DiffCb,
    arg: *mut c_void,
) -> c_int {
    ffi("rbd_diff_iterate", -libc::EFAULT, || {
        diff_iterate(image, fromsnapname, ofs, len, false, cb, arg)
    })
}
