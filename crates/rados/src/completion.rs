//! rbd aio completions (`rbd_completion_t`).
//!
//! ```text
//!   aio worker: run the request → finish(c, rval, events):
//!        set rval → call complete_cb(c, arg) with no lock held → if the image had a
//!        notification fd when the request was submitted: queue c for rbd_poll_io_events and
//!        signal the fd → mark done, wake waiters
//! ```
//!
//! Invariants: the worker holds its own `Arc` while it finishes a completion, so the callback
//! may call `rbd_aio_release` (QEMU 7.2 does), `rbd_aio_get_return_value` or
//! `rbd_aio_wait_for_complete` (returns at once) on it; the handle
//! stays valid for the callback and its address cannot be reused before the callback returns.
//! The return value is set before the callback runs; `is_complete` turns true after it.

use crate::aio::Events;
use crate::guard::ffi;
use crate::state::globals;
use crate::types::{rbd_callback_t, rbd_completion_t};
use core::ffi::{c_int, c_void};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

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
    /// The thread running the callback, while it runs.
    in_callback: Option<ThreadId>,
}

impl RbdCompletion {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Complete with `rval` (bytes read, 0, or `-errno`) on the calling (library) thread.
    pub(crate) fn finish(self: Arc<Self>, rval: isize, events: Option<&Events>) {
        {
            let mut st = self.state();
            st.rval = rval;
            st.in_callback = Some(std::thread::current().id());
        }
        let handle = Arc::as_ptr(&self) as rbd_completion_t;
        if let Some(cb) = self.cb {
            // SAFETY: the callback and its argument were given to rbd_aio_create_completion for
            // exactly this call; `handle` stays valid during the call because we hold an Arc.
            unsafe { cb(handle, self.arg as *mut c_void) };
        }
        // Queued before it turns complete (as librbd): a waiter that releases the completion
        // once it is complete can never race with the queueing.
        if let Some(ev) = events {
            ev.notify(handle);
        }
        {
            let mut st = self.state();
            st.completed = true;
            st.in_callback = None;
        }
        self.done.notify_all();
    }
}

fn get(c: rbd_completion_t) -> Option<Arc<RbdCompletion>> {
    globals().completions.get(c)
}

/// The completion behind a live handle.
pub(crate) fn lookup_completion(c: rbd_completion_t) -> Result<Arc<RbdCompletion>, c_int> {
    get(c).ok_or(-libc::EINVAL)
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
        let handle = globals().completions.insert(Arc::new(comp));
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
    ffi("rbd_aio_release", (), || {
        drop(globals().completions.remove(c))
    })
}

/// `ssize_t rbd_aio_get_return_value(rbd_completion_t c)`: `-EINVAL` for an unknown handle.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_get_return_value(c: rbd_completion_t) -> isize {
    ffi("rbd_aio_get_return_value", -(libc::EINVAL as isize), || {
        get(c).map_or(-(libc::EINVAL as isize), |c| c.state().rval)
    })
}

/// `void *rbd_aio_get_arg(rbd_completion_t c)`: NULL for an unknown handle.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_get_arg(c: rbd_completion_t) -> *mut c_void {
    ffi("rbd_aio_get_arg", std::ptr::null_mut(), || {
        get(c).map_or(std::ptr::null_mut(), |c| c.arg as *mut c_void)
    })
}

/// `int rbd_aio_is_complete(rbd_completion_t c)`: 1 once the callback has returned.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_is_complete(c: rbd_completion_t) -> c_int {
    ffi("rbd_aio_is_complete", -libc::EINVAL, || {
        get(c).map_or(-libc::EINVAL, |c| c_int::from(c.state().completed))
    })
}

/// `int rbd_aio_wait_for_complete(rbd_completion_t c)`: blocks until complete. Called from
/// inside the completion's own callback (where librbd would wait forever) it returns 0 at once:
/// the return value is already set. From another completion's callback it waits while the
/// worker pool grows, so the completion it waits for still runs ([`crate::aio::blocking`]).
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_wait_for_complete(c: rbd_completion_t) -> c_int {
    ffi("rbd_aio_wait_for_complete", -libc::EINVAL, || {
        let Some(c) = get(c) else {
            return -libc::EINVAL;
        };
        {
            let st = c.state();
            if st.completed || st.in_callback == Some(std::thread::current().id()) {
                return 0;
            }
        }
        crate::aio::blocking(|| {
            let mut st = c.state();
            while !st.completed {
                st = c.done.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        });
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
        let comp = get(h).expect("live");
        std::thread::spawn(move || comp.finish(4096, None));
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
            get(h).expect("live").finish(-(libc::EIO as isize), None);
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
