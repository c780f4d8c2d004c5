//! `rados_mon_command`: the monitor commands clients ask a Shale store.
//!
//! Only `{"prefix": "df", "format": "json"}` is answered, with Ceph's `ceph df -f json` shape
//! (cinder's RBD driver reads `stats.total_bytes` and per pool `stats.max_avail` and
//! `stats.bytes_used`). Anything else is `-EINVAL` with outs "command not known", as Ceph says
//! for an unknown prefix. Output buffers come from `malloc` and are freed by `rados_buffer_free`.

use crate::cluster::{capacity, connected, pool_usage};
use crate::guard::ffi;
use crate::types::rados_t;
use core::ffi::{c_char, c_int, CStr};
use serde_json::{json, Value};

/// `malloc` a copy of `s` (NUL-terminated) and store it and its length (without the NUL).
///
/// # Safety
/// `out` and `outlen` are NULL or writable.
unsafe fn give(s: &[u8], out: *mut *mut c_char, outlen: *mut usize) {
    if !outlen.is_null() {
        // SAFETY: non-NULL and writable (caller contract).
        unsafe { outlen.write(s.len()) };
    }
    if out.is_null() {
        return;
    }
    let p = if s.is_empty() {
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
    // SAFETY: non-NULL and writable (caller contract).
    unsafe { out.write(p) };
}

fn df(cluster: rados_t) -> Result<Value, c_int> {
    let store = connected(cluster)?;
    let (total, avail) = capacity(&store);
    let usage = pool_usage(&store)?;
    let used: u64 = usage.iter().map(|p| p.2.bytes).sum();
    let ratio = |x: u64| {
        if total == 0 {
            0.0
        } else {
            x as f64 / total as f64
        }
    };
    let pools: Vec<Value> = usage
        .iter()
        .map(|(name, id, st)| {
            let pct = if st.bytes + avail == 0 {
                0.0
            } else {
                st.bytes as f64 / (st.bytes + avail) as f64
            };
            json!({
                "name": name,
                "id": id,
                "stats": {
                    "stored": st.bytes,
                    "objects": st.objects,
                    "kb_used": st.bytes.div_ceil(1024),
                    "bytes_used": st.bytes,
                    "percent_used": pct,
                    "max_avail": avail,
                }
            })
        })
        .collect();
    let totals = json!({
        "total_bytes": total,
        "total_avail_bytes": avail,
        "total_used_bytes": used,
        "total_used_raw_bytes": used,
        "total_used_raw_ratio": ratio(used),
    });
    let mut stats = totals.clone();
    if let Some(m) = stats.as_object_mut() {
        m.insert("num_osds".into(), json!(1));
        m.insert("num_per_pool_osds".into(), json!(1));
        m.insert("num_per_pool_omap_osds".into(), json!(1));
    }
    Ok(json!({ "stats": stats, "stats_by_class": { "ssd": totals }, "pools": pools }))
}

/// Run one command (the concatenation of the `cmd` strings); Ok(outbuf) or Err((errno, outs)).
fn run(cluster: rados_t, cmd: &str) -> Result<String, (c_int, String)> {
    let v: Value = serde_json::from_str(cmd)
        .map_err(|e| (-libc::EINVAL, format!("command is not valid JSON: {e}")))?;
    let prefix = v.get("prefix").and_then(Value::as_str).unwrap_or("");
    match prefix {
        "df" => {
            let out = df(cluster).map_err(|e| (e, String::new()))?;
            let text = if v.get("format").and_then(Value::as_str) == Some("json-pretty") {
                serde_json::to_string_pretty(&out)
            } else {
                serde_json::to_string(&out)
            };
            text.map_err(|e| (-libc::EINVAL, e.to_string()))
        }
        _ => Err((-libc::EINVAL, "command not known".to_string())),
    }
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
        if let Err(e) = connected(cluster) {
            return e;
        }
        if cmd.is_null() && cmdlen > 0 {
            return -libc::EINVAL;
        }
        let mut text = String::new();
        for i in 0..cmdlen {
            // SAFETY: `cmd` holds `cmdlen` entries (caller contract).
            let p = unsafe { *cmd.add(i) };
            if p.is_null() {
                return -libc::EINVAL;
            }
            // SAFETY: each entry is a C string (caller contract).
            text.push_str(&unsafe { CStr::from_ptr(p) }.to_string_lossy());
        }
        let (rc, out, status) = match run(cluster, &text) {
            Ok(out) => (0, out, String::new()),
            Err((rc, s)) => (rc, String::new(), s),
        };
        // SAFETY: the out pointers are NULL or writable (caller contract).
        unsafe {
            give(out.as_bytes(), outbuf, outbuflen);
            give(status.as_bytes(), outs, outslen);
        }
        rc
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
