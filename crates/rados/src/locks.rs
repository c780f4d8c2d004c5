//! Image locks: the managed exclusive lock (`rbd_lock_acquire` / `rbd_lock_release` /
//! `rbd_lock_get_owners` / `rbd_lock_break`, `rbd_is_exclusive_lock_owner` in image.rs) and
//! librbd's legacy advisory locks (`rbd_lock_exclusive`, `rbd_lock_shared`, `rbd_unlock`,
//! `rbd_list_lockers`, `rbd_break_lock`).
//!
//! Both live in the image layer (`shale_image::lock`), so every process using the store sees
//! them. The exclusive lock is taken on the first write (or at open after an unclean stop),
//! handed over when another client writes, and not handed over while taken explicitly with
//! `rbd_lock_acquire`; a broken owner is fenced (its writes fail with `-ESHUTDOWN`, librbd's
//! `-EBLOCKLISTED`). Return values follow Ceph 16.2.15 as measured on ceph-mini
//! (tests/locks.py, also run there with `REAL=1`):
//!
//! | call | result |
//! |---|---|
//! | lock_acquire / lock_break, mode other than exclusive | `-EOPNOTSUPP` |
//! | lock_acquire / release / get_owners on a read-only handle | `-EINVAL` (no exclusive lock) |
//! | lock_break on a read-only handle | `-EROFS` |
//! | lock_* without the exclusive-lock feature | `-EINVAL` |
//! | lock_release when not the owner | `-EINVAL` |
//! | lock_acquire while another handle or client holds it explicitly | `-EROFS` |
//! | lock_get_owners when unlocked | `-ENOENT`; short array: `-ERANGE`, `*max` = count |
//! | lock_break, unlocked / owner differs | `-ENOENT` / `-EBUSY` |
//! | lock_exclusive / lock_shared, same client+cookie held | `-EEXIST` |
//! | ..., held by others in the other mode or with another tag | `-EBUSY` |
//! | unlock / break_lock of a lock not held | `-ENOENT` |
//! | break_lock with a client that is not `<type>.<id>` | `-EINVAL` |
//! | list_lockers short buffers | `-ERANGE`, every length set to what is needed |

use crate::cstr;
use crate::errno;
use crate::guard::ffi;
use crate::image::{lookup_image, put, with_image, RbdImage};
use crate::types::{rbd_image_t, rbd_lock_mode_t};
use core::ffi::{c_char, c_int};
use shale_image::ErrorKind;
use std::sync::Arc;

const LOCK_MODE_EXCLUSIVE: rbd_lock_mode_t = 0;
use shale_image::features::EXCLUSIVE_LOCK;

/// The head image for the exclusive lock. A read-only handle (or one set to a snapshot) has no
/// exclusive lock in librbd: `-EINVAL`, except for `rbd_lock_break` (`-EROFS`).
fn head_for_lock(img: &RbdImage, read_only: c_int) -> Result<Arc<shale_image::Image>, c_int> {
    img.writable().map_err(|_| read_only)?;
    img.head_rw()
}

/// `-EINVAL` unless the image has the exclusive-lock feature.
fn need_feature(head: &shale_image::Image) -> Result<(), c_int> {
    if head.features() & EXCLUSIVE_LOCK == 0 {
        Err(-libc::EINVAL)
    } else {
        Ok(())
    }
}

/// `int rbd_lock_acquire(rbd_image_t image, rbd_lock_mode_t lock_mode)`: take the exclusive
/// lock explicitly (it is not handed over on request until released); the handle follows
/// librbd's manual policy from then on (see [`crate::owner`]).
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
            if lock_mode != LOCK_MODE_EXCLUSIVE {
                return Err(-libc::EOPNOTSUPP);
            }
            let head = head_for_lock(img, -libc::EINVAL)?;
            need_feature(&head)?;
            img.acquire_explicit(&head)
        })
    })
}

/// `int rbd_lock_release(rbd_image_t image)`: store everything and give the lock up;
/// `-EINVAL` when this handle does not hold it.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_lock_release(image: rbd_image_t) -> c_int {
    ffi("rbd_lock_release", -libc::EFAULT, || {
        with_image(image, |img| {
            let head = head_for_lock(img, -libc::EINVAL)?;
            need_feature(&head)?;
            img.release_explicit(&head)
        })
    })
}

/// `int rbd_lock_get_owners(rbd_image_t image, rbd_lock_mode_t *lock_mode,
/// char **lock_owners, size_t *max_lock_owners)`: the owner strings (malloc'd, freed by
/// `rbd_lock_get_owners_cleanup`); `-ENOENT` when nobody holds the lock.
///
/// # Safety
/// C caller contract of librbd.h: `lock_owners` has room for `*max_lock_owners` pointers.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_lock_get_owners(
    image: rbd_image_t,
    lock_mode: *mut rbd_lock_mode_t,
    lock_owners: *mut *mut c_char,
    max_lock_owners: *mut usize,
) -> c_int {
    let call = || {
        ffi("rbd_lock_get_owners", -libc::EFAULT, || {
            with_image(image, |img| {
                if lock_mode.is_null() || max_lock_owners.is_null() {
                    return Err(-libc::EINVAL);
                }
                if !lock_owners.is_null() {
                    // As librbd, clear the array first: python3-rbd frees `*max` entries through
                    // rbd_lock_get_owners_cleanup whatever the result.
                    // SAFETY: the caller's array holds `*max_lock_owners` pointers.
                    unsafe { std::ptr::write_bytes(lock_owners, 0, *max_lock_owners) };
                }
                img.writable().map_err(|_| -libc::EINVAL)?;
                let head = img.head();
                need_feature(&head)?;
                let owners = head.lock_owners().map_err(|e| errno::of(&e))?;
                if owners.is_empty() {
                    return Err(-libc::ENOENT);
                }
                // SAFETY: non-NULL (checked), readable and writable (caller contract).
                let max = unsafe { &mut *max_lock_owners };
                if *max < owners.len() || lock_owners.is_null() {
                    *max = owners.len();
                    return Err(-libc::ERANGE);
                }
                for (i, o) in owners.iter().enumerate() {
                    // SAFETY: `i < owners.len() <= *max`, the caller's array length.
                    unsafe { *lock_owners.add(i) = cstr::malloc_str(o) };
                }
                *max = owners.len();
                // SAFETY: non-NULL (checked), writable (caller contract).
                unsafe { *lock_mode = LOCK_MODE_EXCLUSIVE };
                Ok(())
            })
        })
    };
    // SAFETY: `lock_owners` has room for `*max_lock_owners` entries (caller contract).
    unsafe { crate::outlist::guarded(lock_owners, max_lock_owners, call) }
}

/// `void rbd_lock_get_owners_cleanup(char **lock_owners, size_t lock_owner_count)`: free the
/// strings `rbd_lock_get_owners` returned.
///
/// # Safety
/// `lock_owners` holds `lock_owner_count` pointers from `rbd_lock_get_owners` (or NULL).
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_lock_get_owners_cleanup(
    lock_owners: *mut *mut c_char,
    lock_owner_count: usize,
) {
    ffi("rbd_lock_get_owners_cleanup", (), || {
        if lock_owners.is_null() {
            return;
        }
        for i in 0..lock_owner_count {
            // SAFETY: `i < lock_owner_count`; each entry is NULL or from `malloc_str`.
            unsafe {
                let p = lock_owners.add(i);
                libc::free((*p).cast());
                *p = std::ptr::null_mut();
            }
        }
    })
}

/// `int rbd_lock_break(rbd_image_t image, rbd_lock_mode_t lock_mode, const char *lock_owner)`:
/// break `lock_owner`'s exclusive lock and fence it. `-ENOENT` when unlocked, `-EBUSY` when
/// someone else holds it (as librbd: "lock owner changed").
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_lock_break(
    image: rbd_image_t,
    lock_mode: rbd_lock_mode_t,
    lock_owner: *const c_char,
) -> c_int {
    ffi("rbd_lock_break", -libc::EFAULT, || {
        with_image(image, |img| {
            if lock_mode != LOCK_MODE_EXCLUSIVE {
                return Err(-libc::EOPNOTSUPP);
            }
            // SAFETY: NULL or a C string (caller contract).
            let owner = unsafe { cstr::arg(lock_owner) }?;
            let head = head_for_lock(img, -libc::EROFS)?;
            need_feature(&head)?;
            let owners = head.lock_owners().map_err(|e| errno::of(&e))?;
            if owners.is_empty() {
                return Err(-libc::ENOENT);
            }
            if !owners.iter().any(|o| o == owner) {
                return Err(-libc::EBUSY);
            }
            head.lock_break(owner).map_err(|e| match e.kind() {
                // The owner changed between the two looks.
                ErrorKind::NotFound => -libc::EBUSY,
                _ => errno::of(&e),
            })
        })
    })
}

// ---- legacy advisory locks ----

/// `int rbd_lock_exclusive(rbd_image_t image, const char *cookie)`.
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
            let cookie = unsafe { cstr::arg(cookie) }?;
            img.head()
                .advisory_lock(cookie, None)
                .map_err(|e| errno::of(&e))
        })
    })
}

/// `int rbd_lock_shared(rbd_image_t image, const char *cookie, const char *tag)`.
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
            let (cookie, tag) = unsafe { (cstr::arg(cookie)?, cstr::arg(tag)?) };
            img.head()
                .advisory_lock(cookie, Some(tag))
                .map_err(|e| errno::of(&e))
        })
    })
}

/// `int rbd_unlock(rbd_image_t image, const char *cookie)`: `-ENOENT` if this client does not
/// hold `cookie`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_unlock(image: rbd_image_t, cookie: *const c_char) -> c_int {
    ffi("rbd_unlock", -libc::EFAULT, || {
        with_image(image, |img| {
            // SAFETY: NULL or a C string (caller contract).
            let cookie = unsafe { cstr::arg(cookie) }?;
            img.head()
                .advisory_unlock(cookie)
                .map_err(|e| errno::of(&e))
        })
    })
}

/// librbd parses the client as an entity name (`<type>.<id>`): anything else is `-EINVAL`.
fn valid_entity(client: &str) -> bool {
    match client.split_once('.') {
        Some((ty, id)) => {
            matches!(ty, "client" | "mon" | "osd" | "mds" | "mgr")
                && !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_alphanumeric())
        }
        None => false,
    }
}

/// `int rbd_break_lock(rbd_image_t image, const char *client, const char *cookie)`.
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
            let (client, cookie) = unsafe { (cstr::arg(client)?, cstr::arg(cookie)?) };
            if !valid_entity(client) {
                return Err(-libc::EINVAL);
            }
            img.head()
                .advisory_break(client, cookie)
                .map_err(|e| errno::of(&e))
        })
    })
}

/// The sizes `rbd_list_lockers` reports: each list is its strings, each followed by a NUL.
fn list_len<'a>(items: impl Iterator<Item = &'a str>) -> usize {
    items.map(|s| s.len() + 1).sum()
}

/// Copy `items` into `buf` as NUL-separated strings.
///
/// # Safety
/// `buf` has room for `list_len(items)` bytes.
unsafe fn put_list<'a>(buf: *mut c_char, items: impl Iterator<Item = &'a str>) {
    let mut p = buf;
    for s in items {
        // SAFETY: within the `list_len` bytes the caller guarantees.
        unsafe {
            cstr::snprintf(p, s.len() + 1, s);
            p = p.add(s.len() + 1);
        }
    }
}

/// `ssize_t rbd_list_lockers(rbd_image_t image, int *exclusive, char *tag, size_t *tag_len,
/// char *clients, size_t *clients_len, char *cookies, size_t *cookies_len, char *addrs,
/// size_t *addrs_len)`: the number of lockers; clients, cookies and addresses as lists of
/// NUL-terminated strings. When a buffer is short: `-ERANGE`, and every length is set to what
/// is needed (the tag needs at least its NUL).
///
/// # Safety
/// C caller contract of librbd.h: each buffer is valid for its `*_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_list_lockers(
    image: rbd_image_t,
    exclusive: *mut c_int,
    tag: *mut c_char,
    tag_len: *mut usize,
    clients: *mut c_char,
    clients_len: *mut usize,
    cookies: *mut c_char,
    cookies_len: *mut usize,
    addrs: *mut c_char,
    addrs_len: *mut usize,
) -> isize {
    ffi("rbd_list_lockers", -(libc::EFAULT as isize), || {
        let run = || -> Result<isize, c_int> {
            let img = lookup_image(image)?;
            if tag_len.is_null()
                || clients_len.is_null()
                || cookies_len.is_null()
                || addrs_len.is_null()
            {
                return Err(-libc::EINVAL);
            }
            let lockers = img.head().advisory_lockers().map_err(|e| errno::of(&e))?;
            let excl = lockers.first().is_some_and(|l| l.exclusive);
            let tag_s = lockers.first().map_or("", |l| l.tag.as_str());
            // SAFETY: NULL-checked by `put`.
            unsafe { put(exclusive, c_int::from(excl)) }?;
            let need_clients = list_len(lockers.iter().map(|l| l.client.as_str()));
            let need_cookies = list_len(lockers.iter().map(|l| l.cookie.as_str()));
            let need_addrs = list_len(lockers.iter().map(|l| l.address.as_str()));
            let need_tag = tag_s.len() + 1;
            // SAFETY: all four are non-NULL (checked) and read/writable (caller contract).
            let (tl, cl, kl, al) = unsafe {
                (
                    &mut *tag_len,
                    &mut *clients_len,
                    &mut *cookies_len,
                    &mut *addrs_len,
                )
            };
            let short =
                need_clients > *cl || need_cookies > *kl || need_addrs > *al || need_tag > *tl;
            *cl = need_clients;
            *kl = need_cookies;
            *al = need_addrs;
            *tl = need_tag;
            if short {
                return Err(-libc::ERANGE);
            }
            if tag.is_null()
                || (need_clients > 0 && (clients.is_null() || cookies.is_null() || addrs.is_null()))
            {
                return Err(-libc::EINVAL);
            }
            // SAFETY: each buffer holds its `*_len` bytes, at least what is needed (checked).
            unsafe {
                cstr::snprintf(tag, need_tag, tag_s);
                put_list(clients, lockers.iter().map(|l| l.client.as_str()));
                put_list(cookies, lockers.iter().map(|l| l.cookie.as_str()));
                put_list(addrs, lockers.iter().map(|l| l.address.as_str()));
            }
            Ok(lockers.len() as isize)
        };
        run().unwrap_or_else(|e| e as isize)
    })
}
