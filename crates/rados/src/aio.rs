//! Asynchronous image I/O (`rbd_aio_*`), the library's worker pool, and fio's event path
//! (`rbd_set_image_notification` + `rbd_poll_io_events`).
//!
//! ```text
//!   rbd_aio_write(image, ..., c) --> engine submit_write --(engine thread: done)--> pool job
//!   rbd_aio_X(image, ..., c)     --> pool job: Op::run
//!   rbd_aio_flush(image, c)      --> deferred until every request before it has ended
//!                                    --> pool job: engine submit_flush --(done)--> pool job
//!   pool job (completion): image in-flight set updated → c.finish(rval): callback; if the
//!       handle had a notification fd at submission, c queued for rbd_poll_io_events and the
//!       fd signalled (eventfd: +1; pipe: one byte); then complete, waiters woken
//! ```
//!
//! Argument errors are returned by the submitting call and nothing is queued; errors of the
//! request itself (range, read-only, store) become the completion's return value, as in
//! librbd. A read completes with the bytes read, everything else with 0. `rbd_aio_flush`
//! completes only after every request submitted before it on the image has completed and
//! what they wrote is durable.
//!
//! No pool job ever waits for another pool job: a flush waits by being deferred
//! ([`crate::state::SharedImage::after`]), never on a thread. Only a completion callback can
//! block a pool thread (by calling `rbd_flush`, `rbd_close` or `rbd_aio_wait_for_complete`);
//! those waits run under [`blocking`], which starts another pool thread meanwhile.

use crate::completion::lookup_completion;
use crate::guard::ffi;
use crate::image::{lookup_image, RbdImage};
use crate::io::Op;
use crate::state::{globals, lock};
use crate::types::{iovec, rbd_completion_t, rbd_image_t};
use core::ffi::{c_char, c_int};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};

pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Worker threads for aio completions and requests: a fixed number of core threads, plus one
/// extra thread for each pool thread that blocks in a call waiting for other pool work.
///
/// No library code blocks a pool thread waiting for another pool job (`rbd_aio_flush` is
/// deferred, see [`crate::state::SharedImage::after`]), but a completion callback may make a
/// blocking call (`rbd_flush`, `rbd_close`, `rbd_aio_wait_for_complete` of another request)
/// that waits for requests whose completions are queued behind it. Such waits run under
/// [`blocking`], which keeps `core` threads free to drain the queue, so they always end.
pub(crate) struct WorkerPool {
    shared: Arc<PoolShared>,
}

struct PoolShared {
    state: Mutex<PoolState>,
    work: Condvar,
    /// Threads that are not blocked, wanted at all times.
    core: usize,
}

#[derive(Default)]
struct PoolState {
    /// Queued jobs, each with whether it may block (see [`WorkerPool::submit`]).
    jobs: VecDeque<(Job, bool)>,
    /// Live pool threads.
    threads: usize,
    /// Pool threads inside [`blocking`].
    blocked: usize,
    /// Threads waiting for work that no wake-up has claimed yet.
    idle: usize,
    /// Wake-ups sent and not yet taken by a waiting thread.
    wakes: usize,
    /// Threads running a job that may block (a store read): they may not come back soon.
    in_eager: usize,
}

impl PoolState {
    /// Threads taking jobs now, or about to (woken): neither idle nor blocked.
    fn running(&self) -> usize {
        self.threads.saturating_sub(self.idle + self.blocked)
    }

    /// Running threads that will come back for the queue soon (not inside a job that may
    /// block).
    fn free(&self) -> usize {
        self.running().saturating_sub(self.in_eager)
    }

    /// Claim one idle thread for the queued jobs; whether one was (then notify one).
    fn claim(&mut self) -> bool {
        if self.idle == 0 || self.jobs.is_empty() {
            return false;
        }
        self.idle -= 1;
        self.wakes += 1;
        true
    }
}

/// At most this many pool threads in all (extra threads included): past it a blocking call
/// just blocks.
const MAX_THREADS: usize = 1024;

thread_local! {
    /// Whether this thread is a pool thread.
    static IN_POOL: Cell<bool> = const { Cell::new(false) };
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
        let shared = Arc::new(PoolShared {
            state: Mutex::new(PoolState::default()),
            work: Condvar::new(),
            core: pool_size(),
        });
        for _ in 0..shared.core {
            shared.spawn_thread();
        }
        let started = lock(&shared.state).threads;
        (started > 0).then_some(WorkerPool { shared })
    }

    /// Queue `job`; it runs on a pool thread. An `eager` job (one that may block, as a read
    /// from the store does) wakes an idle thread whenever there is one; any other job (a
    /// completion: a callback, which may not block without [`blocking`]) wakes one only when
    /// no thread is taking jobs, or the queue is long for the threads that are: a running
    /// thread drains the queue before it waits, so a burst of completions (a group commit
    /// answers dozens of writes at once) costs a wake-up or two instead of one each.
    fn submit(&self, job: Job, eager: bool) {
        let wake = {
            let mut st = lock(&self.shared.state);
            st.jobs.push_back((job, eager));
            (eager || st.jobs.len() > 8 * st.free()) && st.claim()
        };
        if wake {
            self.shared.work.notify_one();
        }
    }
}

impl PoolShared {
    /// Start one more pool thread (counted in `threads` if it started).
    fn spawn_thread(self: &Arc<Self>) {
        let me = self.clone();
        let n = {
            let mut st = lock(&self.state);
            st.threads += 1;
            st.threads
        };
        let spawned = std::thread::Builder::new()
            .name(format!("shale-aio-{}", n - 1))
            .spawn(move || me.run());
        if spawned.is_err() {
            lock(&self.state).threads -= 1;
        }
    }

    fn run(&self) {
        IN_POOL.with(|f| f.set(true));
        let mut st = lock(&self.state);
        loop {
            if let Some((job, eager)) = st.jobs.pop_front() {
                st.in_eager += eager as usize;
                drop(st);
                ffi("rbd aio worker", (), job);
                st = lock(&self.state);
                st.in_eager -= eager as usize;
                continue;
            }
            // A thread started for a blocked one leaves once that one is running again.
            if st.threads > self.core + st.blocked {
                st.threads -= 1;
                return;
            }
            st.idle += 1;
            st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
            if st.wakes > 0 {
                // Claimed by a waker, which counted this thread out of `idle` already.
                st.wakes -= 1;
            } else {
                // A spurious or broadcast wake-up: count itself out.
                st.idle -= 1;
            }
        }
    }
}

/// Run `f`, which may wait for other pool jobs (a completion callback calling `rbd_flush`,
/// `rbd_close`, ...). On a pool thread, another thread is started first if needed so that the
/// pool keeps its full number of unblocked threads while `f` waits.
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    struct Unblock<'a>(&'a Arc<PoolShared>);
    impl Drop for Unblock<'_> {
        fn drop(&mut self) {
            lock(&self.0.state).blocked -= 1;
            // An idle extra thread may now leave.
            self.0.work.notify_all();
        }
    }
    let pool = if IN_POOL.with(Cell::get) {
        globals().workers()
    } else {
        None
    };
    let Some(pool) = pool else {
        return f();
    };
    let shared = &pool.shared;
    let (spawn, wake) = {
        let mut st = lock(&shared.state);
        st.blocked += 1;
        // Jobs queued behind this one (completions wake nobody while it ran) get a thread.
        let wake = st.free() == 0 && st.claim();
        (
            st.threads < shared.core + st.blocked && st.threads < MAX_THREADS,
            wake,
        )
    };
    if wake {
        shared.work.notify_one();
    }
    if spawn {
        shared.spawn_thread();
    }
    let _unblock = Unblock(shared);
    f()
}

/// Run `job` on a pool thread (here if no pool thread could be started). Never blocks.
pub(crate) fn spawn(job: Job) {
    match globals().workers() {
        Some(w) => w.submit(job, true),
        None => job(),
    }
}

/// [`spawn`] for a completion: it wakes a pool thread only if none is taking jobs.
pub(crate) fn spawn_completion(job: Job) {
    match globals().workers() {
        Some(w) => w.submit(job, false),
        None => job(),
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
    if let Op::Flush { barrier } = op {
        async_flush(img, comp, barrier, notify);
        return 0;
    }
    let seq = img.shared.begin();
    spawn(Box::new(move || {
        let rval = match op.run(&img) {
            Ok(n) if is_read => n as isize,
            Ok(_) => 0,
            Err(e) => e as isize,
        };
        img.shared.end(seq);
        comp.finish(rval, notify.then_some(&img.events));
    }));
    0
}

/// Finish request `seq` of `img` with `rval` on a pool thread: it ends (releasing flushes and
/// closes waiting for it), then `comp` completes. Never blocks: safe on engine threads.
fn complete_on_pool(
    img: Arc<RbdImage>,
    comp: Arc<crate::completion::RbdCompletion>,
    seq: u64,
    r: shale_image::Result<()>,
    notify: bool,
) {
    let rval = match r {
        Ok(()) => 0,
        Err(e) => crate::errno::of(&e) as isize,
    };
    spawn_completion(Box::new(move || {
        img.shared.end(seq);
        comp.finish(rval, notify.then_some(&img.events));
    }));
}

/// `rbd_aio_flush` without a thread waiting anywhere: once every request numbered below
/// `barrier` has ended (deferred by [`crate::state::SharedImage::after`]), a pool job starts
/// the engine's asynchronous flush, whose callback hands the completion back to the pool. So
/// the flush completes after every request submitted before it has completed and once
/// everything they wrote is durable; it is itself in flight meanwhile (a later flush or close
/// waits for it).
fn async_flush(
    img: Arc<RbdImage>,
    comp: Arc<crate::completion::RbdCompletion>,
    barrier: u64,
    notify: bool,
) {
    let (seq, alone) = img.shared.begin_alone();
    if alone {
        // Nothing in flight before it (queue depth 1): flushed from this thread; the engine
        // syncs here when its committer is idle. The completion still runs on the pool.
        run_flush(img, comp, seq, notify, true);
        return;
    }
    let shared = img.shared.clone();
    shared.after(
        barrier,
        Box::new(move || spawn(Box::new(move || run_flush(img, comp, seq, notify, false)))),
    );
}

/// Start an `rbd_aio_flush` whose earlier requests have all ended (see [`async_flush`]).
fn run_flush(
    img: Arc<RbdImage>,
    comp: Arc<crate::completion::RbdCompletion>,
    seq: u64,
    notify: bool,
    alone: bool,
) {
    // As a synchronous flush: a writable head handle takes the lock first.
    if img.writable().is_ok() {
        if let Err(e) = img.claim_for_io() {
            spawn_completion(Box::new(move || {
                img.shared.end(seq);
                comp.finish(e as isize, notify.then_some(&img.events));
            }));
            return;
        }
    }
    let image = img.image();
    let done: shale_image::Done = Box::new(move |r| {
        if let Err(e) = &r {
            tracing::warn!(error = %e, "rbd_aio_flush failed");
        }
        complete_on_pool(img, comp, seq, r, notify)
    });
    if alone {
        image.submit_flush_alone(done);
    } else {
        image.submit_flush(done);
    }
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
        (Ok(()), Ok(n)) if n > 0 && img.claim_for_io().is_ok() => n as usize,
        // Refusals complete the request on the pool (Op::run finds them again).
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
    let (seq, alone) = img.shared.begin_alone();
    let (img2, comp) = (img.clone(), comp.clone());
    let done: shale_image::Done = Box::new(move |r| complete_on_pool(img2, comp, seq, r, notify));
    if alone {
        // Nothing else in flight (queue depth 1): the engine may commit it on this thread.
        image.submit_write_alone(off, data, done);
    } else {
        image.submit_write(off, data, done);
    }
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

#[cfg(test)]
mod tests {
    //! aio_write + aio_flush through the C entry points on a local store, each scenario under a
    //! watchdog (a deadlock fails the test instead of hanging it).
    use super::*;
    use crate::state::SharedImage;
    use crate::types::{rados_ioctx_t, rados_t};
    use core::ffi::c_void;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc::{channel, RecvTimeoutError};
    use std::time::Duration;

    /// Run `f` on a thread; fail if it has not returned within `secs`.
    fn within(secs: u64, what: &str, f: impl FnOnce() + Send + 'static) {
        let (tx, rx) = channel();
        let h = std::thread::spawn(move || {
            f();
            let _ = tx.send(());
        });
        match rx.recv_timeout(Duration::from_secs(secs)) {
            Ok(()) => h.join().expect("scenario thread"),
            Err(RecvTimeoutError::Timeout) => panic!("{what}: hung for {secs} s (deadlock)"),
            Err(RecvTimeoutError::Disconnected) => match h.join() {
                Err(p) => std::panic::resume_unwind(p),
                Ok(()) => unreachable!("the scenario sends before it returns"),
            },
        }
    }

    fn c(s: &str) -> std::ffi::CString {
        std::ffi::CString::new(s).expect("no NUL")
    }

    /// A connected cluster, ioctx and open image `name` (16 MiB) on a fresh local store.
    struct TestImage {
        cluster: usize,
        io: usize,
        image: usize,
        dir: std::path::PathBuf,
    }

    impl TestImage {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "shale-rados-aio-{tag}-{}-{:?}",
                std::process::id(),
                std::time::SystemTime::now()
            ));
            std::fs::create_dir_all(&dir).expect("tmp dir");
            let url = format!("file://{}", dir.display());
            let (mut cl, mut io, mut im): (rados_t, rados_ioctx_t, rbd_image_t) = (
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            let mut order: c_int = 0;
            // SAFETY: the C entry points with valid arguments.
            unsafe {
                use crate::cluster::{rados_conf_set, rados_connect, rados_create};
                assert_eq!(rados_create(&mut cl, std::ptr::null()), 0);
                let (k, v) = (c("shale_store"), c(&url));
                assert_eq!(rados_conf_set(cl, k.as_ptr(), v.as_ptr()), 0);
                assert_eq!(rados_connect(cl), 0);
                let pool = c("rbd");
                assert_eq!(
                    crate::pools::rados_ioctx_create(cl, pool.as_ptr(), &mut io),
                    0
                );
                let name = c("img");
                assert_eq!(
                    crate::admin::shale_rbd_create(io, name.as_ptr(), 16 << 20, &mut order),
                    0
                );
                assert_eq!(
                    crate::image::shale_rbd_open(io, name.as_ptr(), &mut im, std::ptr::null()),
                    0
                );
            }
            TestImage {
                cluster: cl as usize,
                io: io as usize,
                image: im as usize,
                dir,
            }
        }

        fn image(&self) -> rbd_image_t {
            self.image as rbd_image_t
        }

        fn close(self) {
            // SAFETY: handles made by `new`, closed once.
            unsafe {
                assert_eq!(crate::image::shale_rbd_close(self.image()), 0);
                crate::pools::rados_ioctx_destroy(self.io as rados_ioctx_t);
                crate::cluster::rados_shutdown(self.cluster as rados_t);
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// What a flush's callback checks: no request numbered below its barrier is in flight.
    struct FlushCheck {
        shared: Arc<SharedImage>,
        barrier: u64,
        early: Arc<AtomicUsize>,
        done: Arc<AtomicUsize>,
    }

    // No assert! in here: a panic cannot unwind out of an extern "C" fn.
    unsafe extern "C" fn on_flush(_c: rbd_completion_t, arg: *mut c_void) {
        // SAFETY: `arg` is the Box<FlushCheck> leaked for exactly this one completion.
        let chk = unsafe { Box::from_raw(arg.cast::<FlushCheck>()) };
        if chk.shared.busy_before(chk.barrier) {
            chk.early.fetch_add(1, Ordering::SeqCst);
        }
        chk.done.fetch_add(1, Ordering::SeqCst);
    }

    fn completion(cb: crate::types::rbd_callback_t, arg: *mut c_void) -> rbd_completion_t {
        let mut h: rbd_completion_t = std::ptr::null_mut();
        // SAFETY: valid out pointer.
        let r = unsafe { crate::completion::shale_rbd_aio_create_completion(arg, cb, &mut h) };
        assert_eq!(r, 0);
        h
    }

    /// `n` pairs of aio_write + aio_flush in flight on one image: all complete, every flush after
    /// the requests before it, and the data reads back.
    fn pairs(n: usize) {
        let t = TestImage::new(&format!("pairs{n}"));
        let im = t.image();
        let shared = lookup_image(im).expect("open").shared.clone();
        let early = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let bufs: Vec<Vec<u8>> = (0..n).map(|i| vec![(i % 251) as u8 + 1; 4096]).collect();
        let mut comps = Vec::new();
        for (i, buf) in bufs.iter().enumerate() {
            let w = completion(None, std::ptr::null_mut());
            let chk = Box::new(FlushCheck {
                shared: shared.clone(),
                barrier: shared.barrier() + 1, // the write below takes the current number
                early: early.clone(),
                done: done.clone(),
            });
            let f = completion(Some(on_flush), Box::into_raw(chk).cast());
            // SAFETY: `buf` outlives the request (waited for below); live handles.
            unsafe {
                assert_eq!(
                    shale_rbd_aio_write(im, (i * 4096) as u64, 4096, buf.as_ptr().cast(), w),
                    0
                );
                assert_eq!(shale_rbd_aio_flush(im, f), 0);
            }
            comps.extend([w, f]);
        }
        for &h in &comps {
            // SAFETY: live completions, released once.
            unsafe {
                assert_eq!(crate::completion::shale_rbd_aio_wait_for_complete(h), 0);
                assert_eq!(crate::completion::shale_rbd_aio_get_return_value(h), 0);
                crate::completion::shale_rbd_aio_release(h);
            }
        }
        assert_eq!(done.load(Ordering::SeqCst), n);
        assert_eq!(
            early.load(Ordering::SeqCst),
            0,
            "a flush completed before a request submitted before it"
        );
        let mut back = vec![0u8; 4096];
        for (i, buf) in bufs.iter().enumerate() {
            // SAFETY: `back` is writable for 4096 bytes.
            let r = unsafe {
                crate::io::shale_rbd_read(im, (i * 4096) as u64, 4096, back.as_mut_ptr().cast())
            };
            assert_eq!(r, 4096);
            assert_eq!(&back, buf, "block {i}");
        }
        drop(shared);
        t.close();
    }

    #[test]
    fn aio_write_flush_pairs_complete_in_order() {
        for n in [1, 8, 32, 64] {
            within(120, &format!("{n} x (aio_write + aio_flush)"), move || {
                pairs(n)
            });
        }
    }

    static NESTED: AtomicUsize = AtomicUsize::new(0);

    // Submits an aio_flush, and waits for its own completion (returns at once).
    unsafe extern "C" fn flush_inside(c: rbd_completion_t, arg: *mut c_void) {
        let f = completion(Some(count_nested), std::ptr::null_mut());
        // SAFETY: `arg` is the image handle, open until every completion has run; `c` is live.
        unsafe {
            if shale_rbd_aio_flush(arg, f) == 0
                && crate::completion::shale_rbd_aio_wait_for_complete(c) == 0
            {
                NESTED.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    unsafe extern "C" fn count_nested(c: rbd_completion_t, _arg: *mut c_void) {
        // SAFETY: releasing the completion being completed is allowed in its callback.
        unsafe { crate::completion::shale_rbd_aio_release(c) };
        NESTED.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn aio_flush_and_wait_inside_callbacks() {
        within(120, "aio_flush inside callbacks", || {
            let t = TestImage::new("nested");
            let im = t.image();
            let buf = vec![7u8; 4096];
            let n = 32;
            let mut comps = Vec::new();
            for i in 0..n {
                let w = completion(Some(flush_inside), im);
                // SAFETY: `buf` outlives the requests; live handles.
                unsafe {
                    assert_eq!(
                        shale_rbd_aio_write(im, (i * 4096) as u64, 4096, buf.as_ptr().cast(), w),
                        0
                    );
                }
                comps.push(w);
            }
            for &h in &comps {
                // SAFETY: live completions, released once.
                unsafe {
                    assert_eq!(crate::completion::shale_rbd_aio_wait_for_complete(h), 0);
                    crate::completion::shale_rbd_aio_release(h);
                }
            }
            // Every write callback counted once, every nested flush once.
            while NESTED.load(Ordering::SeqCst) < 2 * n {
                std::thread::sleep(Duration::from_millis(5));
            }
            t.close();
        });
    }
}
