//! Image I/O: the requests shared by the synchronous calls (`rbd_read`, `rbd_write`, ...) and
//! the aio ones ([`crate::aio`]), with librbd's range rules, measured on Ceph 16.2.15:
//!
//! * a zero-length request is valid anywhere and does nothing (returns 0);
//! * a request starting at or past the end is `-EINVAL`;
//! * one crossing the end is clipped to it: reads, writes, discards, write-zeroes and
//!   write-same return the clipped length (a short write, as librbd);
//! * write-same needs a pattern buffer, `data_len > 0` and `len % data_len == 0` (else
//!   `-EINVAL`), checked first;
//! * writes on a read-only handle are `-EROFS`; a write, discard, write-zeroes or flush first
//!   makes the handle the exclusive-lock owner ([`crate::owner`]), or fails with `-EROFS`;
//! * reads through a handle whose snapshot was removed are `-ENOENT`.
//!
//! Every request is registered in the image's in-flight set while it runs, so that a flush (or
//! close) waits for the requests submitted before it. `Op::Flush` here is the synchronous
//! `rbd_flush`; `rbd_aio_flush` never waits on a thread (see [`crate::aio`]).

use crate::errno;
use crate::guard::ffi;
use crate::image::{lookup_image, RbdImage};
use crate::types::rbd_image_t;
use core::ffi::{c_char, c_int};

/// One I/O request. Buffers are (address, length) pairs the caller keeps valid until the
/// request completes (the C contract of librbd).
pub(crate) enum Op {
    Read {
        off: u64,
        iov: Vec<(usize, usize)>,
    },
    Write {
        off: u64,
        iov: Vec<(usize, usize)>,
    },
    Discard {
        off: u64,
        len: u64,
    },
    Zeroes {
        off: u64,
        len: u64,
    },
    WriteSame {
        off: u64,
        len: u64,
        data: usize,
        data_len: usize,
    },
    /// Flush after every request numbered below `barrier` has ended.
    Flush {
        barrier: u64,
    },
}

/// Clip [off, off+len) to the image size (see the module docs).
pub(crate) fn clip(size: u64, off: u64, len: u64) -> Result<u64, c_int> {
    if len == 0 {
        return Ok(0);
    }
    if off >= size {
        return Err(-libc::EINVAL);
    }
    Ok(len.min(size - off))
}

/// Largest piece of a write-same or gathered write kept in memory at once.
const CHUNK: u64 = 4 << 20;

impl Op {
    /// Argument checks that need no image state; done at submission, before any effect.
    pub(crate) fn check(&self) -> Result<(), c_int> {
        let bad = match self {
            Op::Read { iov, .. } | Op::Write { iov, .. } => {
                iov.iter().any(|&(p, n)| p == 0 && n > 0)
            }
            Op::WriteSame {
                len,
                data,
                data_len,
                ..
            } => *data_len == 0 || len % *data_len as u64 != 0 || *data == 0,
            _ => false,
        };
        if bad {
            Err(-libc::EINVAL)
        } else {
            Ok(())
        }
    }

    fn is_write(&self) -> bool {
        !matches!(self, Op::Read { .. } | Op::Flush { .. })
    }

    /// Run on `img`: the bytes transferred (clipped), or `-errno`.
    pub(crate) fn run(self, img: &RbdImage) -> Result<u64, c_int> {
        self.check()?;
        if self.is_write() {
            img.writable()?;
            img.claim_for_io()?;
        } else if matches!(self, Op::Flush { .. }) {
            // A flush through a writable head handle takes the lock as a write does (librbd).
            if img.writable().is_ok() {
                img.claim_for_io()?;
            }
        } else {
            img.check_snap()?;
        }
        let image = img.image();
        let size = image.size();
        let fail = |e: shale_image::Error| errno::of(&e);
        match self {
            Op::Read { off, iov } => {
                let total: u64 = iov.iter().map(|v| v.1 as u64).sum();
                let n = clip(size, off, total)? as usize;
                if n == 0 {
                    return Ok(0);
                }
                if iov.len() == 1 {
                    // SAFETY: the caller's buffer, writable for its length >= n until the
                    // request completes (librbd contract).
                    let buf = unsafe { std::slice::from_raw_parts_mut(iov[0].0 as *mut u8, n) };
                    return image.read(off, buf).map(|r| r as u64).map_err(fail);
                }
                let mut tmp = vec![0u8; n];
                let got = image.read(off, &mut tmp).map_err(fail)?;
                let mut at = 0;
                for &(p, len) in &iov {
                    let k = len.min(got - at);
                    // SAFETY: each iovec buffer is writable for its length >= k (contract).
                    unsafe { std::ptr::copy_nonoverlapping(tmp[at..].as_ptr(), p as *mut u8, k) };
                    at += k;
                    if at == got {
                        break;
                    }
                }
                Ok(got as u64)
            }
            Op::Write { off, iov } => {
                let total: u64 = iov.iter().map(|v| v.1 as u64).sum();
                let n = clip(size, off, total)? as usize;
                if n == 0 {
                    return Ok(0);
                }
                if iov.len() == 1 {
                    // SAFETY: the caller's buffer, readable for its length >= n (contract).
                    let data = unsafe { std::slice::from_raw_parts(iov[0].0 as *const u8, n) };
                    image.write(off, data).map_err(fail)?;
                    return Ok(n as u64);
                }
                let mut data = Vec::with_capacity(n);
                for &(p, len) in &iov {
                    let k = len.min(n - data.len());
                    // SAFETY: each iovec buffer is readable for its length >= k (contract).
                    data.extend_from_slice(unsafe {
                        std::slice::from_raw_parts(p as *const u8, k)
                    });
                }
                image.write(off, &data).map_err(fail)?;
                Ok(n as u64)
            }
            Op::Discard { off, len } => {
                let n = clip(size, off, len)?;
                if n > 0 {
                    image.discard(off, n).map_err(fail)?;
                }
                Ok(n)
            }
            Op::Zeroes { off, len } => {
                let n = clip(size, off, len)?;
                if n > 0 {
                    image.write_zeroes(off, n).map_err(fail)?;
                }
                Ok(n)
            }
            Op::WriteSame {
                off,
                len,
                data,
                data_len,
            } => {
                let n = clip(size, off, len)?;
                // SAFETY: the pattern is readable for `data_len` bytes (contract).
                let pat = unsafe { std::slice::from_raw_parts(data as *const u8, data_len) };
                if pat.iter().all(|&b| b == 0) {
                    if n > 0 {
                        image.write_zeroes(off, n).map_err(fail)?;
                    }
                    return Ok(n);
                }
                let per = (CHUNK / data_len as u64).max(1) * data_len as u64;
                let chunk: Vec<u8> = pat
                    .iter()
                    .copied()
                    .cycle()
                    .take(per.min(n) as usize)
                    .collect();
                let mut done = 0;
                while done < n {
                    let k = (n - done).min(per) as usize;
                    image.write(off + done, &chunk[..k]).map_err(fail)?;
                    done += k as u64;
                }
                Ok(n)
            }
            Op::Flush { barrier } => {
                img.shared.wait_before(barrier);
                image.flush().map_err(fail)?;
                Ok(0)
            }
        }
    }
}

/// Run `op` now on the calling thread, registered as in flight.
fn run_sync(image: rbd_image_t, make: impl FnOnce(&RbdImage) -> Op) -> Result<u64, c_int> {
    let img = lookup_image(image)?;
    let op = make(&img);
    op.check()?;
    let seq = img.shared.begin();
    let r = op.run(&img);
    img.shared.end(seq);
    r
}

fn ssize(r: Result<u64, c_int>) -> isize {
    match r {
        Ok(n) => n as isize,
        Err(e) => e as isize,
    }
}

/// `ssize_t rbd_read(rbd_image_t image, uint64_t ofs, size_t len, char *buf)`.
///
/// # Safety
/// C caller contract of librbd.h: `buf` is writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_read(
    image: rbd_image_t,
    ofs: u64,
    len: usize,
    buf: *mut c_char,
) -> isize {
    ffi("rbd_read", -(libc::EFAULT as isize), || {
        ssize(run_sync(image, |_| Op::Read {
            off: ofs,
            iov: vec![(buf as usize, len)],
        }))
    })
}

/// `ssize_t rbd_read2(..., int op_flags)`: the flags are hints and ignored.
///
/// # Safety
/// C caller contract of librbd.h: `buf` is writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_read2(
    image: rbd_image_t,
    ofs: u64,
    len: usize,
    buf: *mut c_char,
    _op_flags: c_int,
) -> isize {
    ffi("rbd_read2", -(libc::EFAULT as isize), || {
        ssize(run_sync(image, |_| Op::Read {
            off: ofs,
            iov: vec![(buf as usize, len)],
        }))
    })
}

/// `ssize_t rbd_write(rbd_image_t image, uint64_t ofs, size_t len, const char *buf)`.
///
/// # Safety
/// C caller contract of librbd.h: `buf` is readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_write(
    image: rbd_image_t,
    ofs: u64,
    len: usize,
    buf: *const c_char,
) -> isize {
    ffi("rbd_write", -(libc::EFAULT as isize), || {
        ssize(run_sync(image, |_| Op::Write {
            off: ofs,
            iov: vec![(buf as usize, len)],
        }))
    })
}

/// `ssize_t rbd_write2(..., int op_flags)`: the flags are hints and ignored.
///
/// # Safety
/// C caller contract of librbd.h: `buf` is readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_write2(
    image: rbd_image_t,
    ofs: u64,
    len: usize,
    buf: *const c_char,
    _op_flags: c_int,
) -> isize {
    ffi("rbd_write2", -(libc::EFAULT as isize), || {
        ssize(run_sync(image, |_| Op::Write {
            off: ofs,
            iov: vec![(buf as usize, len)],
        }))
    })
}

/// `int rbd_discard(rbd_image_t image, uint64_t ofs, uint64_t len)`: the length discarded;
/// `-EINVAL` (nothing discarded) for a length above `INT_MAX`, as librbd 16.2.15 (measured:
/// 2 GiB and 3 GiB are `-EINVAL`, 2 GiB - 512 is discarded).
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_discard(image: rbd_image_t, ofs: u64, len: u64) -> c_int {
    ffi("rbd_discard", -libc::EFAULT, || {
        // The result is the length as an int: librbd refuses what it cannot return.
        if len > c_int::MAX as u64 {
            return -libc::EINVAL;
        }
        ssize(run_sync(image, |_| Op::Discard { off: ofs, len })) as c_int
    })
}

/// `ssize_t rbd_write_zeroes(rbd_image_t image, uint64_t ofs, size_t len, int zero_flags,
/// int op_flags)`: the length zeroed.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_write_zeroes(
    image: rbd_image_t,
    ofs: u64,
    len: usize,
    _zero_flags: c_int,
    _op_flags: c_int,
) -> isize {
    ffi("rbd_write_zeroes", -(libc::EFAULT as isize), || {
        ssize(run_sync(image, |_| Op::Zeroes {
            off: ofs,
            len: len as u64,
        }))
    })
}

/// `ssize_t rbd_writesame(rbd_image_t image, uint64_t ofs, size_t len, const char *buf,
/// size_t data_len, int op_flags)`.
///
/// # Safety
/// C caller contract of librbd.h: `buf` is readable for `data_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_writesame(
    image: rbd_image_t,
    ofs: u64,
    len: usize,
    buf: *const c_char,
    data_len: usize,
    _op_flags: c_int,
) -> isize {
    ffi("rbd_writesame", -(libc::EFAULT as isize), || {
        ssize(run_sync(image, |_| Op::WriteSame {
            off: ofs,
            len: len as u64,
            data: buf as usize,
            data_len,
        }))
    })
}

/// `int rbd_flush(rbd_image_t image)`: after the requests submitted before it (aio included)
/// have completed, makes everything written durable.
///
/// # Safety
/// Any value is accepted.
#[no_mangle]
pub unsafe extern "C" fn shale_rbd_flush(image: rbd_image_t) -> c_int {
    ffi("rbd_flush", -libc::EFAULT, || {
        ssize(run_sync(image, |img| Op::Flush {
            barrier: img.shared.barrier(),
        })) as c_int
    })
}
