//! rbd aio completions (`rbd_completion_t`) and the library thread that completes them.
//!
//! ```text
//!   I/O path --complete(c, rval)--> channel --> "shale-completer" thread:
//!        set rval → call complete_cb(c, arg) with no lock held → mark done, wake waiters
//! ```
//!
//! Invariants: the completer holds its own `Arc` while it runs a completion, so the callback
//! may call `rbd_aio_release` (QEMU 7.2 does) or `rbd_aio_get_return_value` on it; the handle
//! stays valid for the callback and its address cannot be reused before the callback returns.
//! The return value is set before the callback runs; `is_complete` turns true after it.

use crate::guard::ffi;
use crate::handle::Table;
use crate::types::{rbd_callback_t, rbd_completion_t};
use core::ffi::{c_int, c_void};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

/// One `rbd_completion_t`.
pub(crate) struct RbdCompletion {
    /// The caller's `cb_arg`, opaque to us (an address, so the completion is `Send`).
    arg: usize,
    cb: rbd_callback_t,
    state: Mutex<State>,
    done: Condvar,
}

#[derive(Default)]
struct State {
    rval: isize,
    completed: bool,
}

impl RbdCompletion {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(self: Arc<Self>, rval: isize) {
        self.state().rval = rval;
        if let Some(cb) = self.cb {
            let handle = Arc::as_ptr(&self) as rbd_completion_t;
            // SAFETY: the callback and its argument were given to rbd_aio_create_completion for
            // exactly this call; `handle` stays valid during the call because we hold an Arc.
            unsafe { cb(handle, self.arg as *mut c_void) };
        }
        self.state().completed = true;
        self.done.notify_all();
    }
}

/// Every live `rbd_completion_t`.
pub(crate) static COMPLETIONS: Table<RbdCompletion> = Table::new();

type Job = (Arc<RbdCompletion>, isize);

fn completer() -> Option<&'static Mutex<Sender<Job>>> {
    static TX: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("shale-completer".into())
            .spawn(move || {
                for (c, rval) in rx {
                    // A panic here would only come from our own code; keep the thread alive.
                    ffi("rbd completion", (), move || c.run(rval));
                }
            })
            .ok()
            .map(|_| Mutex::new(tx))
    })
    .as_ref()
}

/// Complete `c` with `rval` (bytes read, 0, or `-errno`) on the completer thread.
#[cfg_attr(not(test), allow(dead_code))] // the I/O path of phase 2 calls it
pub(crate) fn complete(c: Arc<RbdCompletion>, rval: isize) {
    let job = (c, rval);
    let job = match completer() {
        Some(tx) => match tx.lock().unwrap_or_else(|e| e.into_inner()).send(job) {
            Ok(()) => return,
            Err(e) => e.0,
        },
        None => job,
    };
    // No thread could be started: complete inline rather than never.
    job.0.run(job.1);
}

/// `int rbd_aio_create_completion(void *cb_arg, rbd_callback_t complete_cb, rbd_completion_t *c)`
///
/// # Safety
/// `c` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_create_completion(
    cb_arg: *mut c_void,
    complete_cb: rbd_callback_t,
    c: *mut rbd_completion_t,
) -> c_int {
    ffi("rbd_aio_create_completion", -libc::ENOMEM, || {
        if c.is_null() {
            return -libc::EINVAL;
        }
        let comp = RbdCompletion {
            arg: cb_arg as usize,
            cb: complete_cb,
            state: Mutex::new(State::default()),
            done: Condvar::new(),
        };
        let handle = COMPLETIONS.insert(Arc::new(comp));
        // SAFETY: `c` is non-NULL and writable (caller contract).
        unsafe { c.write(handle) };
        0
    })
}

/// `void rbd_aio_release(rbd_completion_t c)`: safe inside the completion's own callback.
///
/// # Safety
/// Any value is accepted; unknown handles are ignored.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_release(c: rbd_completion_t) {
    ffi("rbd_aio_release", (), || drop(COMPLETIONS.remove(c)))
}

/// `ssize_t rbd_aio_get_return_value(rbd_completion_t c)`: `-EINVAL` for an unknown handle.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_get_return_value(c: rbd_completion_t) -> isize {
    ffi("rbd_aio_get_return_value", -(libc::EINVAL as isize), || {
        COMPLETIONS
            .get(c)
            .map_or(-(libc::EINVAL as isize), |c| c.state().rval)
    })
}

/// `void *rbd_aio_get_arg(rbd_completion_t c)`: NULL for an unknown handle.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_get_arg(c: rbd_completion_t) -> *mut c_void {
    ffi("rbd_aio_get_arg", std::ptr::null_mut(), || {
        COMPLETIONS
            .get(c)
            .map_or(std::ptr::null_mut(), |c| c.arg as *mut c_void)
    })
}

/// `int rbd_aio_is_complete(rbd_completion_t c)`: 1 once the callback has returned.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_is_complete(c: rbd_completion_t) -> c_int {
    ffi("rbd_aio_is_complete", -libc::EINVAL, || {
        COMPLETIONS
            .get(c)
            .map_or(-libc::EINVAL, |c| c_int::from(c.state().completed))
    })
}

/// `int rbd_aio_wait_for_complete(rbd_completion_t c)`: blocks until complete. Like librbd, a
/// call from inside the completion's own callback would wait forever.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_wait_for_complete(c: rbd_completion_t) -> c_int {
    ffi("rbd_aio_wait_for_complete", -libc::EINVAL, || {
        let Some(c) = COMPLETIONS.get(c) else {
            return -libc::EINVAL;
        };
        let mut st = c.state();
        while !st.completed {
            st = c.done.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

    static SEEN_RVAL: AtomicIsize = AtomicIsize::new(0);
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    static SEEN_ARG: AtomicUsize = AtomicUsize::new(0);

    // No assert! in here: a panic cannot unwind out of an extern "C" fn (it would abort).
    unsafe extern "C" fn release_inside(c: rbd_completion_t, _arg: *mut c_void) {
        // SAFETY: test callback; `c` is the live completion being completed.
        unsafe {
            SEEN_RVAL.store(shale_rbd_aio_get_return_value(c), Ordering::SeqCst);
            SEEN_ARG.store(shale_rbd_aio_get_arg(c) as usize, Ordering::SeqCst);
            shale_rbd_aio_release(c);
        }
        CALLS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn callback_may_release_and_waiters_wake() {
        let mut h: rbd_completion_t = std::ptr::null_mut();
        let arg = 0x1234usize as *mut c_void;
        // SAFETY: test of the C entry points with valid arguments.
        unsafe {
            assert_eq!(
                shale_rbd_aio_create_completion(arg, Some(release_inside), &mut h),
                0
            );
            assert_eq!(shale_rbd_aio_is_complete(h), 0);
            assert_eq!(shale_rbd_aio_get_arg(h), arg);
        }
        let comp = COMPLETIONS.get(h).expect("live");
        complete(comp, 4096);
        for _ in 0..1000 {
            if CALLS.load(Ordering::SeqCst) == 1 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(CALLS.load(Ordering::SeqCst), 1);
        assert_eq!(SEEN_RVAL.load(Ordering::SeqCst), 4096);
        assert_eq!(SEEN_ARG.load(Ordering::SeqCst), 0x1234);
        // Released inside the callback: the handle is gone, and reuse is refused.
        // SAFETY: stale handles are accepted by contract.
        unsafe {
            assert_eq!(shale_rbd_aio_get_return_value(h), -(libc::EINVAL as isize));
            shale_rbd_aio_release(h);
        }
    }

    #[test]
    fn wait_for_complete_without_callback() {
        let mut h: rbd_completion_t = std::ptr::null_mut();
        // SAFETY: test of the C entry points with valid arguments.
        unsafe {
            assert_eq!(
                shale_rbd_aio_create_completion(std::ptr::null_mut(), None, &mut h),
                0
            );
            complete(COMPLETIONS.get(h).expect("live"), -(libc::EIO as isize));
            assert_eq!(shale_rbd_aio_wait_for_complete(h), 0);
            assert_eq!(shale_rbd_aio_is_complete(h), 1);
            assert_eq!(shale_rbd_aio_get_return_value(h), -(libc::EIO as isize));
            shale_rbd_aio_release(h);
            assert_eq!(
                shale_rbd_aio_create_completion(std::ptr::null_mut(), None, std::ptr::null_mut()),
                -libc::EINVAL
            );
        }
    }
}
