//! `rbd_image_options_t`: the option bag of `rbd_create4` / `rbd_copy3`.
//!
//! Option numbers and types as librbd.h: strings are JOURNAL_POOL (7) and DATA_POOL (10), the
//! rest are uint64; a value of the wrong type or an unknown number is `-EINVAL`, reading an
//! unset option `-ENOENT`, a string that does not fit `-E2BIG`.

use crate::cstr;
use crate::guard::ffi;
use crate::state::{globals, lock};
use crate::types::rbd_image_options_t;
use core::ffi::{c_char, c_int};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

pub(crate) const OPT_FEATURES: c_int = 1;
pub(crate) const OPT_ORDER: c_int = 2;
pub(crate) const OPT_STRIPE_UNIT: c_int = 3;
pub(crate) const OPT_STRIPE_COUNT: c_int = 4;
const OPT_LAST: c_int = 13;
const STRING_OPTS: [c_int; 2] = [7, 10];

#[derive(Debug, Clone, PartialEq)]
enum Val {
    U64(u64),
    Str(String),
}

/// One `rbd_image_options_t`.
#[derive(Debug, Default)]
pub(crate) struct ImageOptions {
    vals: Mutex<BTreeMap<c_int, Val>>,
}

impl ImageOptions {
    pub(crate) fn get_u64(&self, opt: c_int) -> Option<u64> {
        match lock(&self.vals).get(&opt) {
            Some(Val::U64(v)) => Some(*v),
            _ => None,
        }
    }
}

/// The options behind a handle; NULL is "no options" (`Ok(None)`).
pub(crate) fn lookup_opts(opts: rbd_image_options_t) -> Result<Option<Arc<ImageOptions>>, c_int> {
    if opts.is_null() {
        return Ok(None);
    }
    globals().options.get(opts).map(Some).ok_or(-libc::EINVAL)
}

fn with_opts(opts: rbd_image_options_t, f: impl FnOnce(&ImageOptions) -> c_int) -> c_int {
    match globals().options.get(opts) {
        Some(o) => f(&o),
        None => -libc::EINVAL,
    }
}

fn valid(opt: c_int, string: bool) -> bool {
    (0..=OPT_LAST).contains(&opt) && STRING_OPTS.contains(&opt) == string
}

/// `void rbd_image_options_create(rbd_image_options_t* opts)`.
///
/// # Safety
/// `opts` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_options_create(opts: *mut rbd_image_options_t) {
    ffi("rbd_image_options_create", (), || {
        if opts.is_null() {
            return;
        }
        let h = globals().options.insert(Arc::new(ImageOptions::default()));
        // SAFETY: non-NULL and writable (caller contract).
        unsafe { opts.write(h) };
    })
}

/// `void rbd_image_options_destroy(rbd_image_options_t opts)`.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_options_destroy(opts: rbd_image_options_t) {
    ffi("rbd_image_options_destroy", (), || {
        drop(globals().options.remove(opts));
    })
}

/// `int rbd_image_options_set_string(rbd_image_options_t opts, int optname, const char* optval)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_options_set_string(
    opts: rbd_image_options_t,
    optname: c_int,
    optval: *const c_char,
) -> c_int {
    ffi("rbd_image_options_set_string", -libc::EFAULT, || {
        with_opts(opts, |o| {
            // SAFETY: `optval` is NULL or a C string (caller contract).
            let v = match unsafe { cstr::arg(optval) } {
                Ok(v) => v,
                Err(e) => return e,
            };
            if !valid(optname, true) {
                return -libc::EINVAL;
            }
            lock(&o.vals).insert(optname, Val::Str(v.to_string()));
            0
        })
    })
}

/// `int rbd_image_options_set_uint64(rbd_image_options_t opts, int optname, uint64_t optval)`.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_options_set_uint64(
    opts: rbd_image_options_t,
    optname: c_int,
    optval: u64,
) -> c_int {
    ffi("rbd_image_options_set_uint64", -libc::EFAULT, || {
        with_opts(opts, |o| {
            if !valid(optname, false) {
                return -libc::EINVAL;
            }
            lock(&o.vals).insert(optname, Val::U64(optval));
            0
        })
    })
}

/// `int rbd_image_options_get_string(rbd_image_options_t opts, int optname, char* optval,
/// size_t maxlen)`.
///
/// # Safety
/// C caller contract of librbd.h: `optval` is writable for `maxlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_options_get_string(
    opts: rbd_image_options_t,
    optname: c_int,
    optval: *mut c_char,
    maxlen: usize,
) -> c_int {
    ffi("rbd_image_options_get_string", -libc::EFAULT, || {
        with_opts(opts, |o| {
            if !valid(optname, true) {
                return -libc::EINVAL;
            }
            match lock(&o.vals).get(&optname) {
                Some(Val::Str(s)) => {
                    if optval.is_null() || s.len() >= maxlen {
                        return -libc::E2BIG;
                    }
                    // SAFETY: writable for `maxlen` bytes, which hold `s` and its NUL.
                    unsafe { cstr::snprintf(optval, maxlen, s) };
                    0
                }
                _ => -libc::ENOENT,
            }
        })
    })
}

/// `int rbd_image_options_get_uint64(rbd_image_options_t opts, int optname, uint64_t* optval)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_options_get_uint64(
    opts: rbd_image_options_t,
    optname: c_int,
    optval: *mut u64,
) -> c_int {
    ffi("rbd_image_options_get_uint64", -libc::EFAULT, || {
        with_opts(opts, |o| {
            if !valid(optname, false) || optval.is_null() {
                return -libc::EINVAL;
            }
            match o.get_u64(optname) {
                Some(v) => {
                    // SAFETY: non-NULL and writable (caller contract).
                    unsafe { optval.write(v) };
                    0
                }
                None => -libc::ENOENT,
            }
        })
    })
}

/// `int rbd_image_options_is_set(rbd_image_options_t opts, int optname, bool* is_set)`.
///
/// # Safety
/// C caller contract of librbd.h.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_options_is_set(
    opts: rbd_image_options_t,
    optname: c_int,
    is_set: *mut bool,
) -> c_int {
    ffi("rbd_image_options_is_set", -libc::EFAULT, || {
        with_opts(opts, |o| {
            if !(0..=OPT_LAST).contains(&optname) || is_set.is_null() {
                return -libc::EINVAL;
            }
            let set = lock(&o.vals).contains_key(&optname);
            // SAFETY: non-NULL and writable (caller contract).
            unsafe { is_set.write(set) };
            0
        })
    })
}

/// `int rbd_image_options_unset(rbd_image_options_t opts, int optname)`.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_options_unset(
    opts: rbd_image_options_t,
    optname: c_int,
) -> c_int {
    ffi("rbd_image_options_unset", -libc::EFAULT, || {
        with_opts(opts, |o| {
            if !(0..=OPT_LAST).contains(&optname) {
                return -libc::EINVAL;
            }
            lock(&o.vals).remove(&optname);
            0
        })
    })
}

/// `void rbd_image_options_clear(rbd_image_options_t opts)`.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_options_clear(opts: rbd_image_options_t) {
    ffi("rbd_image_options_clear", (), || {
        if let Some(o) = globals().options.get(opts) {
            lock(&o.vals).clear();
        }
    })
}

/// `int rbd_image_options_is_empty(rbd_image_options_t opts)`: 1 if empty.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_image_options_is_empty(opts: rbd_image_options_t) -> c_int {
    ffi("rbd_image_options_is_empty", -libc::EFAULT, || {
        with_opts(opts, |o| c_int::from(lock(&o.vals).is_empty()))
    })
}
