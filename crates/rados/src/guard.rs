//! The panic barrier of the C ABI and the "not implemented" values of the generated stubs.
//!
//! A Rust panic must never unwind into C: every exported body runs inside [`ffi`], which turns a
//! panic into the function's error value. Stubs log their name at debug level, and on stderr
//! when `SHALE_FFI_LOG` is set (to any value), which shows which missing function a client
//! called. Other log output goes through `tracing` (see [`crate::logging`]).

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// Run `body`, returning `on_panic` if it panics.
pub(crate) fn ffi<T>(name: &'static str, on_panic: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(v) => v,
        Err(_) => {
            log(format_args!("shale: panic in {name}, returning an error"));
            on_panic
        }
    }
}

/// The value an unimplemented function returns, per C return type.
pub(crate) trait NotImplemented {
    fn not_implemented() -> Self;
}

macro_rules! enosys {
    ($($t:ty),*) => {$(
        impl NotImplemented for $t {
            fn not_implemented() -> Self {
                -(libc::ENOSYS as $t)
            }
        }
    )*};
}
enosys!(i32, i64, isize);

macro_rules! zero {
    ($($t:ty),*) => {$(
        impl NotImplemented for $t {
            fn not_implemented() -> Self {
                0
            }
        }
    )*};
}
zero!(u32, u64);

impl NotImplemented for () {
    fn not_implemented() -> Self {}
}

impl<T> NotImplemented for *mut T {
    fn not_implemented() -> Self {
        std::ptr::null_mut()
    }
}

/// Body of every generated stub.
pub(crate) fn not_implemented<T: NotImplemented>(name: &'static str) -> T {
    ffi(name, T::not_implemented(), || {
        tracing::debug!("{name} is not implemented");
        if log_enabled() {
            log(format_args!("shale: {name} is not implemented"));
        }
        T::not_implemented()
    })
}

fn log_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SHALE_FFI_LOG").is_some())
}

/// An error that becomes an errno (the C ABI has no room for its message): logged at debug
/// level (`SHALE_LOG=debug`, or `debug_shale = 10` in ceph.conf), and written to stderr when
/// `SHALE_FFI_LOG` is set.
pub(crate) fn log_error(e: &dyn std::fmt::Display) {
    tracing::debug!("{e}");
    if log_enabled() && !tracing::enabled!(tracing::Level::DEBUG) {
        log(format_args!("shale: {e}"));
    }
}

fn log(args: std::fmt::Arguments<'_>) {
    // Never panic here (eprintln! would, on a closed stderr).
    let _ = writeln!(std::io::stderr(), "{args}");
}

/// Zero a count output of a stub (NULL is left alone).
///
/// # Safety
/// `p` is NULL or writable.
pub(crate) unsafe fn zero_out<T: Default>(p: *mut T) {
    if !p.is_null() {
        // SAFETY: non-NULL and writable (caller contract).
        unsafe { p.write(T::default()) };
    }
}
