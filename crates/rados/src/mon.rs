//! `rados_mon_command` & co.: the monitor commands clients (the `ceph` CLI, cinder, proxmox)
//! send, answered from the Shale store the handle is connected to.
//!
//! ```text
//!   rados_mon_command(_target)            rados_mgr_command(_target)
//!        |  cmd strings concatenated         |  no modules: "No handler found"
//!        v  into one JSON command            v  (commands::run_mgr)
//!   commands::run ── get_command_descriptions → descriptions.rs (what the CLI validates)
//!        |           fsid, status, health, df, versions, mon dump, osd dump,
//!        |           osd pool ls/get/application enable|get
//!        v
//!   facts.rs (pools, usage, health from the store) → JSON (Ceph's keys) or text.rs (plain)
//! ```
//!
//! Unknown prefixes are `-EINVAL` with outs "command not known", as Ceph's monitor says.
//! Output buffers come from `malloc` and are freed by `rados_buffer_free`; outputs a failing
//! call does not fill read as empty (NULL, length 0).

mod commands;
mod descriptions;
mod facts;
mod osdmap;
mod text;

use crate::cluster::connected;
use crate::cstr;
use crate::guard::ffi;
use crate::types::rados_t;
use core::ffi::{c_char, c_int, CStr};
use std::sync::OnceLock;

/// When this process first answered a command: the "since" of Shale's in-process daemons.
pub(crate) fn started_secs() -> u64 {
    static STARTED: OnceLock<u64> = OnceLock::new();
    *STARTED.get_or_init(commands::now_secs)
}

/// `malloc` a copy of `s` (NUL-terminated) and store it and its length (without the NUL);
/// an empty `s` is stored as NULL, length 0.
///
/// # Safety
/// `out` and `outlen` are NULL or writable.
unsafe fn give(s: &[u8], out: *mut *mut c_char, outlen: *mut usize) {
    let p = if s.is_empty() || out.is_null() {
        std::ptr::null_mut()
    } else {
        // SAFETY: plain allocation; checked for NULL below.
        let p = unsafe { libc::malloc(s.len() + 1) }.cast::<c_char>();
        if !p.is_null() {
            // SAFETY: `p` has room for `s` and a NUL.
            unsafe {
                std::ptr::copy_nonoverlapping(s.as_ptr(), p.cast::<u8>(), s.len());
                *p.add(s.len()) = 0;
            }
        }
        p
    };
    if !outlen.is_null() {
        let n = if p.is_null() { 0 } else { s.len() };
        // SAFETY: non-NULL and writable (caller contract).
        unsafe { outlen.write(n) };
    }
    if !out.is_null() {
        // SAFETY: non-NULL and writable (caller contract).
        unsafe { out.write(p) };
    }
}

/// Which daemon a command is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Daemon {
    Mon,
    Mgr,
}

/// The body shared by the four entry points.
///
/// # Safety
/// C caller contract of librados.h: `cmd` holds `cmdlen` C strings; `name` is NULL or a C
/// string; the out pointers are NULL or writable.
#[allow(clippy::too_many_arguments)]
unsafe fn command(
    cluster: rados_t,
    daemon: Daemon,
    name: *const c_char,
    named: bool,
    cmd: *mut *const c_char,
    cmdlen: usize,
    outbuf: *mut *mut c_char,
    outbuflen: *mut usize,
    outs: *mut *mut c_char,
    outslen: *mut usize,
) -> c_int {
    let result = (|| {
        connected(cluster).map_err(|e| (e, String::new()))?;
        if named {
            // SAFETY: `name` is NULL or a C string (caller contract); NULL is refused.
            let n = unsafe { cstr::arg(name) }.map_err(|e| (e, String::new()))?;
            // The monitor by name or rank; any name reaches the one manager, as in Ceph.
            if daemon == Daemon::Mon && n != facts::MON_NAME && n != "0" {
                return Err((-libc::ENOENT, "mon dne".to_string()));
            }
        }
        if cmd.is_null() && cmdlen > 0 {
            return Err((-libc::EINVAL, String::new()));
        }
        let mut text = String::new();
        for i in 0..cmdlen {
            // SAFETY: `cmd` holds `cmdlen` entries (caller contract).
            let p = unsafe { *cmd.add(i) };
            if p.is_null() {
                return Err((-libc::EINVAL, String::new()));
            }
            // SAFETY: each entry is a C string (caller contract).
            text.push_str(&unsafe { CStr::from_ptr(p) }.to_string_lossy());
        }
        if daemon == Daemon::Mgr {
            return commands::run_mgr(&text);
        }
        commands::run(&text, |pools| {
            connected(cluster).map(|store| facts::Facts::gather(&store, pools))
        })
    })();
    let (rc, out, status) = match result {
        Ok(r) => (0, r.out, r.status),
        Err((rc, s)) => (rc, Vec::new(), s),
    };
    // SAFETY: the out pointers are NULL or writable (caller contract).
    unsafe {
        give(&out, outbuf, outbuflen);
        give(status.as_bytes(), outs, outslen);
    }
    rc
}

/// `int rados_mon_command(rados_t cluster, const char **cmd, size_t cmdlen, const char *inbuf,
/// size_t inbuflen, char **outbuf, size_t *outbuflen, char **outs, size_t *outslen)`.
///
/// # Safety
/// C caller contract of librados.h: `cmd` holds `cmdlen` C strings; the out pointers are NULL
/// or writable.
#[no_mangle]
pub unsafe extern "C" fn rados_mon_command(
    cluster: rados_t,
    cmd: *mut *const c_char,
    cmdlen: usize,
    _inbuf: *const c_char,
    _inbuflen: usize,
    outbuf: *mut *mut c_char,
    outbuflen: *mut usize,
    outs: *mut *mut c_char,
    outslen: *mut usize,
) -> c_int {
    ffi("rados_mon_command", -libc::EFAULT, || {
        // SAFETY: forwarded caller contract.
        unsafe {
            command(
                cluster,
                Daemon::Mon,
                std::ptr::null(),
                false,
                cmd,
                cmdlen,
                outbuf,
                outbuflen,
                outs,
                outslen,
            )
        }
    })
}

/// `int rados_mon_command_target(rados_t cluster, const char *name, ...)`: as
/// [`rados_mon_command`], sent to the monitor `name`; Shale's one monitor is `shale` (rank
/// `0`), others are `-ENOENT` "mon dne" as in Ceph.
///
/// # Safety
/// As for [`rados_mon_command`]; `name` is a C string.
#[no_mangle]
pub unsafe extern "C" fn rados_mon_command_target(
    cluster: rados_t,
    name: *const c_char,
    cmd: *mut *const c_char,
    cmdlen: usize,
    _inbuf: *const c_char,
    _inbuflen: usize,
    outbuf: *mut *mut c_char,
    outbuflen: *mut usize,
    outs: *mut *mut c_char,
    outslen: *mut usize,
) -> c_int {
    ffi("rados_mon_command_target", -libc::EFAULT, || {
        // SAFETY: forwarded caller contract.
        unsafe {
            command(
                cluster,
                Daemon::Mon,
                name,
                true,
                cmd,
                cmdlen,
                outbuf,
                outbuflen,
                outs,
                outslen,
            )
        }
    })
}

/// `int rados_mgr_command(rados_t cluster, const char **cmd, ...)`: Shale's manager has no
/// modules: it describes no commands and answers every one `-EINVAL` "No handler found for
/// '<prefix>'", as Ceph's manager does for a command it does not know.
///
/// # Safety
/// As for [`rados_mon_command`].
#[no_mangle]
pub unsafe extern "C" fn rados_mgr_command(
    cluster: rados_t,
    cmd: *mut *const c_char,
    cmdlen: usize,
    _inbuf: *const c_char,
    _inbuflen: usize,
    outbuf: *mut *mut c_char,
    outbuflen: *mut usize,
    outs: *mut *mut c_char,
    outslen: *mut usize,
) -> c_int {
    ffi("rados_mgr_command", -libc::EFAULT, || {
        // SAFETY: forwarded caller contract.
        unsafe {
            command(
                cluster,
                Daemon::Mgr,
                std::ptr::null(),
                false,
                cmd,
                cmdlen,
                outbuf,
                outbuflen,
                outs,
                outslen,
            )
        }
    })
}

/// `int rados_mgr_command_target(rados_t cluster, const char *name, ...)`: as
/// [`rados_mgr_command`] (any name reaches the one manager, as in Ceph).
///
/// # Safety
/// As for [`rados_mon_command_target`].
#[no_mangle]
pub unsafe extern "C" fn rados_mgr_command_target(
    cluster: rados_t,
    name: *const c_char,
    cmd: *mut *const c_char,
    cmdlen: usize,
    _inbuf: *const c_char,
    _inbuflen: usize,
    outbuf: *mut *mut c_char,
    outbuflen: *mut usize,
    outs: *mut *mut c_char,
    outslen: *mut usize,
) -> c_int {
    ffi("rados_mgr_command_target", -libc::EFAULT, || {
        // SAFETY: forwarded caller contract.
        unsafe {
            command(
                cluster,
                Daemon::Mgr,
                name,
                true,
                cmd,
                cmdlen,
                outbuf,
                outbuflen,
                outs,
                outslen,
            )
        }
    })
}

/// `void rados_buffer_free(char *buf)`: frees what `rados_mon_command` & co. returned.
///
/// # Safety
/// `buf` is NULL or a buffer this library returned and has not been freed.
#[no_mangle]
pub unsafe extern "C" fn rados_buffer_free(buf: *mut c_char) {
    // SAFETY: forwarded caller contract; the buffers come from malloc.
    ffi("rados_buffer_free", (), || unsafe {
        libc::free(buf.cast())
    })
}
