//! Mirroring queries, answered as librbd 16.2 answers them for a pool and images that are
//! not mirrored (measured on Ceph 16.2.15): mode DISABLED, image state DISABLED with an empty
//! global id, a global status whose only (local) site status is UNKNOWN "status not found",
//! empty pool-wide lists. Shale does no mirroring: the calls that would start it stay
//! unimplemented, and `rbd_mirror_image_get_instance_id` is `-EINVAL` as on Ceph.

use crate::cstr;
use crate::guard::ffi;
use crate::image::{put, with_image};
use crate::pools::lookup_ioctx;
use crate::types::{
    rados_ioctx_t, rbd_image_t, rbd_mirror_image_global_status_t, rbd_mirror_image_info_t,
    rbd_mirror_image_mode_t, rbd_mirror_image_status_state_t, rbd_mirror_mode_t,
};
use core::ffi::{c_char, c_int};

/// `RBD_MIRROR_IMAGE_DISABLED` of `rbd_mirror_image_state_t`.
const IMAGE_DISABLED: c_int = 2;
/// `MIRROR_IMAGE_STATUS_STATE_UNKNOWN`.
const STATUS_UNKNOWN: c_int = 0;

/// `rbd_mirror_image_info_t`.
#[repr(C)]
struct ImageInfo {
    global_id: *mut c_char,
    state: c_int,
    primary: bool,
}

/// `rbd_mirror_image_site_status_t`.
#[repr(C)]
struct SiteStatus {
    mirror_uuid: *mut c_char,
    state: rbd_mirror_image_status_state_t,
    description: *mut c_char,
    last_update: libc::time_t,
    up: bool,
}

/// `rbd_mirror_image_global_status_t`.
#[repr(C)]
struct GlobalStatus {
    name: *mut c_char,
    info: ImageInfo,
    site_statuses_count: u32,
    site_statuses: *mut SiteStatus,
}

fn disabled_info() -> ImageInfo {
    ImageInfo {
        global_id: cstr::malloc_str(""),
        state: IMAGE_DISABLED,
        primary: false,
    }
}

/// `int rbd_mirror_mode_get(rados_ioctx_t io_ctx, rbd_mirror_mode_t *mirror_mode)`:
/// `RBD_MIRROR_MODE_DISABLED`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_mode_get(
    io_ctx: rados_ioctx_t,
    mirror_mode: *mut rbd_mirror_mode_t,
) -> c_int {
    ffi("rbd_mirror_mode_get", -libc::EFAULT, || {
        if let Err(e) = lookup_ioctx(io_ctx) {
            return e;
        }
        // SAFETY: NULL or writable (caller contract).
        match unsafe { put(mirror_mode, 0) } {
            Ok(()) => 0,
            Err(e) => e,
        }
    })
}

/// `int rbd_mirror_image_get_info(rbd_image_t image, rbd_mirror_image_info_t *info,
/// size_t info_size)`: global id "", state DISABLED, not primary.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_get_info(
    image: rbd_image_t,
    mirror_image_info: *mut rbd_mirror_image_info_t,
    info_size: usize,
) -> c_int {
    ffi("rbd_mirror_image_get_info", -libc::EFAULT, || {
        with_image(image, |_| {
            if info_size < std::mem::size_of::<ImageInfo>() {
                return Err(-libc::ERANGE);
            }
            // SAFETY: NULL or room for an rbd_mirror_image_info_t (checked size).
            unsafe { put(mirror_image_info.cast::<ImageInfo>(), disabled_info()) }
        })
    })
}

/// `void rbd_mirror_image_get_info_cleanup(rbd_mirror_image_info_t *info)`.
///
/// # Safety
/// NULL, zeroed or filled by `rbd_mirror_image_get_info`.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_get_info_cleanup(
    mirror_image_info: *mut rbd_mirror_image_info_t,
) {
    ffi("rbd_mirror_image_get_info_cleanup", (), || {
        let p = mirror_image_info.cast::<ImageInfo>();
        if !p.is_null() {
            // SAFETY: malloc'd or NULL (caller contract); reset after freeing.
            unsafe {
                libc::free((*p).global_id.cast());
                (*p).global_id = std::ptr::null_mut();
            }
        }
    })
}

/// `int rbd_mirror_image_get_mode(rbd_image_t image, rbd_mirror_image_mode_t *mode)`:
/// `RBD_MIRROR_IMAGE_MODE_JOURNAL` (0), as librbd reports for a non-mirrored image.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_get_mode(
    image: rbd_image_t,
    mode: *mut rbd_mirror_image_mode_t,
) -> c_int {
    ffi("rbd_mirror_image_get_mode", -libc::EFAULT, || {
        // SAFETY: NULL or writable (caller contract).
        with_image(image, |_| unsafe { put(mode, 0) })
    })
}

/// `int rbd_mirror_image_get_global_status(rbd_image_t image,
/// rbd_mirror_image_global_status_t *status, size_t status_size)`: the image's name, the
/// disabled info, one local site status UNKNOWN "status not found".
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_get_global_status(
    image: rbd_image_t,
    mirror_image_global_status: *mut rbd_mirror_image_global_status_t,
    status_size: usize,
) -> c_int {
    ffi("rbd_mirror_image_get_global_status", -libc::EFAULT, || {
        with_image(image, |img| {
            if status_size < std::mem::size_of::<GlobalStatus>() {
                return Err(-libc::ERANGE);
            }
            let out = mirror_image_global_status.cast::<GlobalStatus>();
            if out.is_null() {
                return Err(-libc::EINVAL);
            }
            // SAFETY: malloc'd array of one entry, freed by the cleanup below.
            let site =
                unsafe { libc::calloc(1, std::mem::size_of::<SiteStatus>()) }.cast::<SiteStatus>();
            if site.is_null() {
                return Err(-libc::ENOMEM);
            }
            // SAFETY: `site` is a fresh allocation of one entry; `out` has room (checked).
            unsafe {
                site.write(SiteStatus {
                    mirror_uuid: cstr::malloc_str(""),
                    state: STATUS_UNKNOWN,
                    description: cstr::malloc_str("status not found"),
                    last_update: 0,
                    up: false,
                });
                out.write(GlobalStatus {
                    name: cstr::malloc_str(&img.head().name()),
                    info: disabled_info(),
                    site_statuses_count: 1,
                    site_statuses: site,
                });
            }
            Ok(())
        })
    })
}

/// `void rbd_mirror_image_global_status_cleanup(rbd_mirror_image_global_status_t *status)`.
///
/// # Safety
/// NULL, zeroed or filled by `rbd_mirror_image_get_global_status`.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_global_status_cleanup(
    mirror_image_global_status: *mut rbd_mirror_image_global_status_t,
) {
    ffi("rbd_mirror_image_global_status_cleanup", (), || {
        let p = mirror_image_global_status.cast::<GlobalStatus>();
        if p.is_null() {
            return;
        }
        // SAFETY: every pointer is malloc'd by us or NULL (caller contract); reset after.
        unsafe {
            let s = &mut *p;
            libc::free(s.name.cast());
            libc::free(s.info.global_id.cast());
            if !s.site_statuses.is_null() {
                for i in 0..s.site_statuses_count as usize {
                    let e = &mut *s.site_statuses.add(i);
                    libc::free(e.mirror_uuid.cast());
                    libc::free(e.description.cast());
                }
                libc::free(s.site_statuses.cast());
            }
            p.write_bytes(0, 1);
        }
    })
}

/// `int rbd_mirror_image_get_instance_id(rbd_image_t image, char *instance_id,
/// size_t *id_max_length)`: `-EINVAL` (the image is not mirrored), as librbd.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_get_instance_id(
    image: rbd_image_t,
    instance_id: *mut c_char,
    id_max_length: *mut usize,
) -> c_int {
    ffi("rbd_mirror_image_get_instance_id", -libc::EFAULT, || {
        let _ = instance_id;
        with_image(image, |_| {
            // SAFETY: NULL or writable (caller contract).
            unsafe { put(id_max_length, 0)? };
            Err(-libc::EINVAL)
        })
    })
}

/// An empty pool-wide mirroring list: `*len` = 0, success.
fn empty_list(io_ctx: rados_ioctx_t, len: *mut usize) -> c_int {
    if let Err(e) = lookup_ioctx(io_ctx) {
        return e;
    }
    // SAFETY: NULL or writable (caller contract).
    match unsafe { put(len, 0) } {
        Ok(()) => 0,
        Err(e) => e,
    }
}

/// `int rbd_mirror_image_global_status_list(rados_ioctx_t io_ctx, const char *start_id,
/// size_t max, char **image_ids, rbd_mirror_image_global_status_t *images, size_t *len)`:
/// no mirrored image.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_global_status_list(
    io_ctx: rados_ioctx_t,
    _start_id: *const c_char,
    _max: usize,
    _image_ids: *mut *mut c_char,
    _images: *mut rbd_mirror_image_global_status_t,
    len: *mut usize,
) -> c_int {
    ffi("rbd_mirror_image_global_status_list", -libc::EFAULT, || {
        empty_list(io_ctx, len)
    })
}

/// `void rbd_mirror_image_global_status_list_cleanup(char **image_ids,
/// rbd_mirror_image_global_status_t *images, size_t len)`.
///
/// # Safety
/// Entries filled by the list call (there are none) or zeroed.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_global_status_list_cleanup(
    image_ids: *mut *mut c_char,
    images: *mut rbd_mirror_image_global_status_t,
    len: usize,
) {
    ffi("rbd_mirror_image_global_status_list_cleanup", (), || {
        for i in 0..len {
            // SAFETY: `len` entries (caller contract), NULL or ours.
            unsafe {
                if !image_ids.is_null() {
                    libc::free((*image_ids.add(i)).cast());
                }
                if !images.is_null() {
                    shale_rbd_mirror_image_global_status_cleanup(
                        images.cast::<GlobalStatus>().add(i).cast(),
                    );
                }
            }
        }
    })
}

/// `int rbd_mirror_image_info_list(...)`: no mirrored image.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_info_list(
    io_ctx: rados_ioctx_t,
    _mode_filter: *mut rbd_mirror_image_mode_t,
    _start_id: *const c_char,
    _max: usize,
    _image_ids: *mut *mut c_char,
    _mode_entries: *mut rbd_mirror_image_mode_t,
    _info_entries: *mut rbd_mirror_image_info_t,
    num_entries: *mut usize,
) -> c_int {
    ffi("rbd_mirror_image_info_list", -libc::EFAULT, || {
        empty_list(io_ctx, num_entries)
    })
}

/// `void rbd_mirror_image_info_list_cleanup(char **image_ids,
/// rbd_mirror_image_info_t *info_entries, size_t num_entries)`.
///
/// # Safety
/// Entries filled by the list call (there are none) or zeroed.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_info_list_cleanup(
    image_ids: *mut *mut c_char,
    info_entries: *mut rbd_mirror_image_info_t,
    num_entries: usize,
) {
    ffi("rbd_mirror_image_info_list_cleanup", (), || {
        for i in 0..num_entries {
            // SAFETY: `num_entries` entries (caller contract), NULL or ours.
            unsafe {
                if !image_ids.is_null() {
                    libc::free((*image_ids.add(i)).cast());
                }
                if !info_entries.is_null() {
                    shale_rbd_mirror_image_get_info_cleanup(
                        info_entries.cast::<ImageInfo>().add(i).cast(),
                    );
                }
            }
        }
    })
}

/// `int rbd_mirror_image_instance_id_list(...)`: no mirrored image.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_instance_id_list(
    io_ctx: rados_ioctx_t,
    _start_id: *const c_char,
    _max: usize,
    _image_ids: *mut *mut c_char,
    _instance_ids: *mut *mut c_char,
    len: *mut usize,
) -> c_int {
    ffi("rbd_mirror_image_instance_id_list", -libc::EFAULT, || {
        empty_list(io_ctx, len)
    })
}

/// `void rbd_mirror_image_instance_id_list_cleanup(char **image_ids, char **instance_ids,
/// size_t len)`.
///
/// # Safety
/// Entries filled by the list call (there are none) or zeroed.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_instance_id_list_cleanup(
    image_ids: *mut *mut c_char,
    instance_ids: *mut *mut c_char,
    len: usize,
) {
    ffi("rbd_mirror_image_instance_id_list_cleanup", (), || {
        for i in 0..len {
            // SAFETY: `len` entries (caller contract), NULL or malloc'd.
            unsafe {
                for a in [image_ids, instance_ids] {
                    if !a.is_null() {
                        libc::free((*a.add(i)).cast());
                    }
                }
            }
        }
    })
}

/// `int rbd_mirror_image_status_summary(rados_ioctx_t io_ctx,
/// rbd_mirror_image_status_state_t *states, int *counts, size_t *maxlen)`: no state.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_mirror_image_status_summary(
    io_ctx: rados_ioctx_t,
    _states: *mut rbd_mirror_image_status_state_t,
    _counts: *mut c_int,
    maxlen: *mut usize,
) -> c_int {
    ffi("rbd_mirror_image_status_summary", -libc::EFAULT, || {
        empty_list(io_ctx, maxlen)
    })
}
