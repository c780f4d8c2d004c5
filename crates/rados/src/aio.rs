//! Asynchronous image I/O (`rbd_aio_*`), the library's worker pool, and fio's event path
//! (`rbd_set_image_notification` + `rbd_poll_io_events`).
//!
//! ```text
//!   rbd_aio_X(image, ..., c) --checks--> queue --> worker thread:
//!       Op::run → image in-flight set updated → c.finish(rval): callback; if the handle had
//!       a notification fd at submission, c queued for rbd_poll_io_events and the fd
//!       signalled (eventfd: +1; pipe: one byte); then complete, waiters woken
//! ```
//!
//! Argument errors are returned by the submitting call and nothing is queued; errors of the
//! request itself (range, read-only, store) become the completion's return value, as in
//! librbd. A read completes with the bytes read, everything else with 0. `rbd_aio_flush`
//! completes only after every request submitted before it on the image has completed.

use crate::completion::lookup_completion;
use crate::guard::ffi;
use crate::image::{lookup_image, RbdImage};
use crate::io::Op;
use crate::state::{globals, lock};
use crate::types::{iovec, rbd_completion_t, rbd_image_t};
use core::ffi::{c_char, c_int};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// Worker threads for aio requests (a fixed number; requests queue up behind them).
pub(crate) struct WorkerPool {
    tx: Sender<Job>,
}

/// Threads in the pool: `SHALE_AIO_THREADS` (1..=64), default 8 (store reads block).
fn pool_size() -> usize {
    std::env::var("SHALE_AIO_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(8)
}

impl WorkerPool {
    pub(crate) fn start() -> Option<WorkerPool> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..pool_size() {
            let rx: Arc<Mutex<Receiver<Job>>> = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("shale-aio-{i}"))
                .spawn(move || loop {
                    let job = lock(&rx).recv();
                    match job {
                        Ok(job) => ffi("rbd aio worker", (), job),
                        Err(_) => return,
                    }
                });
            if spawned.is_ok() {
                started += 1;
            }
        }
        (started > 0).then_some(WorkerPool { tx })
    }

    fn submit(&self, job: Job) -> Result<(), Job> {
        self.tx.send(job).map_err(|e| e.0)
    }
}

/// RBD's `EVENT_TYPE_PIPE` and `EVENT_TYPE_EVENTFD`.
const EVENT_TYPE_PIPE: c_int = 1;
const EVENT_TYPE_EVENTFD: c_int = 2;

/// The completion queue of one image handle for `rbd_poll_io_events`.
#[derive(Default)]
pub(crate) struct Events {
    /// The notification fd, -1 for none.
    fd: AtomicI32,
    kind: AtomicI32,
    queue: Mutex<VecDeque<usize>>,
}

impl Events {
    /// (fd, type) once a notification is set (`kind` is stored last, so `fd` is valid).
    fn fd(&self) -> Option<(c_int, c_int)> {
        let kind = self.kind.load(Ordering::Acquire);
        (kind != 0).then(|| (self.fd.load(Ordering::Acquire), kind))
    }

    /// Whether a notification is set (decided per request at submission, as librbd does).
    fn enabled(&self) -> bool {
        self.fd().is_some()
    }

    /// Queue a finished completion and signal the fd.
    pub(crate) fn notify(&self, c: rbd_completion_t) {
        let Some((fd, kind)) = self.fd() else {
            return;
        };
        lock(&self.queue).push_back(c as usize);
        let one = 1u64;
        let (buf, n) = if kind == EVENT_TYPE_EVENTFD {
            ((&one as *const u64).cast::<libc::c_void>(), 8)
        } else {
            (b"i".as_ptr().cast::<libc::c_void>(), 1)
        };
        // SAFETY: `buf` points to `n` readable bytes; a bad fd only makes write fail.
        let _ = unsafe { libc::write(fd, buf, n) };
    }
}

/// Queue `op` on the image behind `image`, completing `c`.
fn submit(image: rbd_image_t, c: rbd_completion_t, make: impl FnOnce(&RbdImage) -> Op) -> c_int {
    let (img, comp) = match (lookup_image(image), lookup_completion(c)) {
        (Ok(i), Ok(c)) => (i, c),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let op = make(&img);
    if let Err(e) = op.check() {
        return e;
    }
    let is_read = matches!(op, Op::Read { .. });
    let notify = img.events.enabled();
    let op = match async_write(&img, &comp, op, notify) {
        Ok(()) => return 0,
        Err(op) => op,
    };
    let seq = img.shared.begin();
    let job: Job = Box::new(move || {
        let rval = match op.run(&img) {
            Ok(n) if is_read => n as isize,
            Ok(_) => 0,
            Err(e) => e as isize,
        };
        img.shared.end(seq);
        comp.finish(rval, notify.then_some(&img.events));
    });
    let job = match globals().workers() {
        Some(w) => match w.submit(job) {
            Ok(()) => return 0,
            Err(job) => job,
        },
        None => job,
    };
    // No worker could be started: run it here rather than never.
    job();
    0
}

/// Writes go to the engine's asynchronous path: no pool thread waits for the commit, and
/// concurrent writes share one journal record (group commit). The completion is still run
/// on a pool thread, so a callback may call back into the library, even synchronously.
/// Returns the op untouched when it is not a plain write on a writable handle.
fn async_write(
    img: &Arc<RbdImage>,
    comp: &Arc<crate::completion::RbdCompletion>,
    op: Op,
    notify: bool,
) -> Result<(), Op> {
    let Op::Write { off, iov } = op else {
        return Err(op);
    };
    let image = img.image();
    let total: u64 = iov.iter().map(|v| v.1 as u64).sum();
    let n = match (img.writable(), crate::io::clip(image.size(), off, total)) {
        (Ok(()), Ok(n)) if n > 0 => n as usize,
        _ => return Err(Op::Write { off, iov }),
    };
    let mut data = Vec::with_capacity(n);
    for &(p, len) in &iov {
        let k = len.min(n - data.len());
        // SAFETY: each iovec buffer is readable for its length >= k until completion (librbd
        // contract); it is copied here, before this call returns.
        data.extend_from_slice(unsafe { std::slice::from_raw_parts(p as *const u8, k) });
        if data.len() == n {
            break;
        }
    }
    let seq = img.shared.begin();
    let (img2, comp) = (img.clone(), comp.clone());
    image.submit_write(
        off,
        data,
        Box::new(move |r| {
            let rval = match r {
                Ok(()) => 0,
                Err(e) => crate::errno::of(&e) as isize,
            };
            let job: Job = Box::new(move || {
                img2.shared.end(seq);
                comp.finish(rval, notify.then_some(&img2.events));
            });
            match globals().workers() {
                Some(w) => {
                    if let Err(job) = w.submit(job) {
                        job();
                    }
                }
                None => job(),
            }
        }),
    );
    Ok(())
}

/// The (address, length) pairs of a caller's iovec array (copied: the array itself need not
/// outlive the call).
///
/// # Safety
/// `iov` holds `iovcnt` entries.
unsafe fn iovecs(iov: *const iovec, iovcnt: c_int) -> Option<Vec<(usize, usize)>> {
    if iovcnt < 0 || (iov.is_null() && iovcnt > 0) {
        return None;
    }
    // SAFETY: `iov` holds `iovcnt` entries (caller contract).
    let v = unsafe { std::slice::from_raw_parts(iov, iovcnt as usize) };
    Some(v.iter().map(|e| (e.iov_base as usize, e.iov_len)).collect())
}

/// `int rbd_aio_read(rbd_image_t image, uint64_t off, size_t len, char *buf, rbd_completion_t c)`.
///
/// # Safety
/// C caller contract of librbd.h: `buf` stays writable for `len` bytes until completion.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_read(
    image: rbd_image_t,
    off: u64,
    len: usize,
    buf: *mut c_char,
    c: rbd_completion_t,
) -> c_int {
    ffi("rbd_aio_read", -libc::EFAULT, || {
        submit(image, c, |_| Op::Read {
            off,
            iov: vec![(buf as usize, len)],
        })
    })
}

/// `rbd_aio_read2`: `rbd_aio_read` with ignored op flags.
///
/// # Safety
/// As `rbd_aio_read`.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_read2(
    image: rbd_image_t,
    off: u64,
    len: usize,
    buf: *mut c_char,
    c: rbd_completion_t,
    _op_flags: c_int,
) -> c_int {
    ffi("rbd_aio_read2", -libc::EFAULT, || {
        submit(image, c, |_| Op::Read {
            off,
            iov: vec![(buf as usize, len)],
        })
    })
}

/// `int rbd_aio_readv(rbd_image_t image, const struct iovec *iov, int iovcnt, uint64_t off,
/// rbd_completion_t c)`.
///
/// # Safety
/// C caller contract of librbd.h: the buffers stay writable until completion.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_readv(
    image: rbd_image_t,
    iov: *const iovec,
    iovcnt: c_int,
    off: u64,
    c: rbd_completion_t,
) -> c_int {
    ffi("rbd_aio_readv", -libc::EFAULT, || {
        // SAFETY: forwarded caller contract.
        let Some(iov) = (unsafe { iovecs(iov, iovcnt) }) else {
            return -libc::EINVAL;
        };
        submit(image, c, |_| Op::Read { off, iov })
    })
}

/// `int rbd_aio_write(rbd_image_t image, uint64_t off, size_t len, const char *buf,
/// rbd_completion_t c)`.
///
/// # Safety
/// C caller contract of librbd.h: `buf` stays readable for `len` bytes until completion.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_write(
    image: rbd_image_t,
    off: u64,
    len: usize,
    buf: *const c_char,
    c: rbd_completion_t,
) -> c_int {
    ffi("rbd_aio_write", -libc::EFAULT, || {
        submit(image, c, |_| Op::Write {
            off,
            iov: vec![(buf as usize, len)],
        })
    })
}

/// `rbd_aio_write2`: `rbd_aio_write` with ignored op flags.
///
/// # Safety
/// As `rbd_aio_write`.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_write2(
    image: rbd_image_t,
    off: u64,
    len: usize,
    buf: *const c_char,
    c: rbd_completion_t,
    _op_flags: c_int,
) -> c_int {
    ffi("rbd_aio_write2", -libc::EFAULT, || {
        submit(image, c, |_| Op::Write {
            off,
            iov: vec![(buf as usize, len)],
        })
    })
}

/// `int rbd_aio_writev(rbd_image_t image, const struct iovec *iov, int iovcnt, uint64_t off,
/// rbd_completion_t c)`.
///
/// # Safety
/// C caller contract of librbd.h: the buffers stay readable until completion.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_writev(
    image: rbd_image_t,
    iov: *const iovec,
    iovcnt: c_int,
    off: u64,
    c: rbd_completion_t,
) -> c_int {
    ffi("rbd_aio_writev", -libc::EFAULT, || {
        // SAFETY: forwarded caller contract.
        let Some(iov) = (unsafe { iovecs(iov, iovcnt) }) else {
            return -libc::EINVAL;
        };
        submit(image, c, |_| Op::Write { off, iov })
    })
}

/// `int rbd_aio_discard(rbd_image_t image, uint64_t off, uint64_t len, rbd_completion_t c)`.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_discard(
    image: rbd_image_t,
    off: u64,
    len: u64,
    c: rbd_completion_t,
) -> c_int {
    ffi("rbd_aio_discard", -libc::EFAULT, || {
        submit(image, c, |_| Op::Discard { off, len })
    })
}

/// `int rbd_aio_write_zeroes(rbd_image_t image, uint64_t off, size_t len, rbd_completion_t c,
/// int zero_flags, int op_flags)`.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_write_zeroes(
    image: rbd_image_t,
    off: u64,
    len: usize,
    c: rbd_completion_t,
    _zero_flags: c_int,
    _op_flags: c_int,
) -> c_int {
    ffi("rbd_aio_write_zeroes", -libc::EFAULT, || {
        submit(image, c, |_| Op::Zeroes {
            off,
            len: len as u64,
        })
    })
}

/// `int rbd_aio_writesame(rbd_image_t image, uint64_t off, size_t len, const char *buf,
/// size_t data_len, rbd_completion_t c, int op_flags)`.
///
/// # Safety
/// C caller contract of librbd.h: `buf` stays readable for `data_len` bytes until completion.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_writesame(
    image: rbd_image_t,
    off: u64,
    len: usize,
    buf: *const c_char,
    data_len: usize,
    c: rbd_completion_t,
    _op_flags: c_int,
) -> c_int {
    ffi("rbd_aio_writesame", -libc::EFAULT, || {
        submit(image, c, |_| Op::WriteSame {
            off,
            len: len as u64,
            data: buf as usize,
            data_len,
        })
    })
}

/// `int rbd_aio_flush(rbd_image_t image, rbd_completion_t c)`.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_aio_flush(image: rbd_image_t, c: rbd_completion_t) -> c_int {
    ffi("rbd_aio_flush", -libc::EFAULT, || {
        submit(image, c, |img| Op::Flush {
            barrier: img.shared.barrier(),
        })
    })
}

/// `int rbd_set_image_notification(rbd_image_t image, int fd, int type)`: from now on, every
/// aio completion of this handle is queued for `rbd_poll_io_events` and `fd` is signalled.
///
/// # Safety
/// Any value is accepted (`fd` is only written to).
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_set_image_notification(
    image: rbd_image_t,
    fd: c_int,
    type_: c_int,
) -> c_int {
    ffi("rbd_set_image_notification", -libc::EFAULT, || {
        let img = match lookup_image(image) {
            Ok(i) => i,
            Err(e) => return e,
        };
        if fd < 0 || !matches!(type_, EVENT_TYPE_PIPE | EVENT_TYPE_EVENTFD) {
            return -libc::EINVAL;
        }
        img.events.fd.store(fd, Ordering::Release);
        img.events.kind.store(type_, Ordering::Release);
        0
    })
}

/// `int rbd_poll_io_events(rbd_image_t image, rbd_completion_t *comps, int numcomp)`: up to
/// `numcomp` completed requests, oldest first; returns how many.
///
/// # Safety
/// C caller contract of librbd.h: `comps` is writable for `numcomp` entries.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_poll_io_events(
    image: rbd_image_t,
    comps: *mut rbd_completion_t,
    numcomp: c_int,
) -> c_int {
    ffi("rbd_poll_io_events", -libc::EFAULT, || {
        let img = match lookup_image(image) {
            Ok(i) => i,
            Err(e) => return e,
        };
        if numcomp <= 0 || comps.is_null() {
            return -libc::EINVAL;
        }
        let mut q = lock(&img.events.queue);
        let n = q.len().min(numcomp as usize);
        for (i, c) in q.drain(..n).enumerate() {
            // SAFETY: `comps` is writable for `numcomp > i` entries (caller contract).
            unsafe { comps.add(i).write(c as rbd_completion_t) };
        }
        n as c_int
    })
}
