"""C-level checks of librbd.so.1 / librados.so.2 return values for bad input (ctypes).

The expected values were measured on real Ceph 16.2.15 (ceph-mini) with the same calls; see the
table in crates/rados/README.md. Where Shale deliberately differs (NULL pointers that crash
librbd, infosize), the expectation says so. Run with CEPH_CONF naming a conf whose [global]
shale_store points at a fresh store. Prints "ok NAME" / "FAIL NAME: ..." per check.
"""
import ctypes as C
import errno as E
import os
import struct
import sys

rados = C.CDLL("librados.so.2")
rbd = C.CDLL("librbd.so.1")
for f in ["rbd_read", "rbd_write", "rbd_write_zeroes", "rbd_writesame"]:
    getattr(rbd, f).restype = C.c_ssize_t
rbd.rbd_aio_get_return_value.restype = C.c_ssize_t
rados.rados_pool_lookup.restype = C.c_int64
failures = 0
# On real Ceph (REAL=1) the calls that crash librbd and Shale-only details are skipped.
REAL = os.environ.get("REAL") == "1"


def shale_only(name, fn, want):
    """A call where Shale answers an error and librbd crashes (NULL pointers) or differs."""
    if not REAL:
        expect(name, fn(), want)


def expect(name, got, want):
    global failures
    if got == want:
        print("ok %s = %r" % (name, want))
    else:
        failures += 1
        print("FAIL %s: got %r, want %r" % (name, got, want))


cl = C.c_void_p()
expect("rados_create", rados.rados_create(C.byref(cl), b"admin"), 0)
expect("rados_conf_read_file(NULL)", rados.rados_conf_read_file(cl, None), 0)
io = C.c_void_p()
expect("rados_ioctx_create before connect", rados.rados_ioctx_create(cl, b"rbd", C.byref(io)), -E.ENOTCONN)
expect("rados_connect", rados.rados_connect(cl), 0)
expect("rados_connect again", rados.rados_connect(cl), -E.EISCONN)
expect("rados_ioctx_create(missing pool)", rados.rados_ioctx_create(cl, b"nopool", C.byref(io)), -E.ENOENT)
expect("rados_pool_lookup(missing)", rados.rados_pool_lookup(cl, b"nopool"), -E.ENOENT)
expect("rados_pool_delete(missing)", rados.rados_pool_delete(cl, b"nopool"), -E.ENOENT)
expect("rados_pool_create(existing rbd)", rados.rados_pool_create(cl, b"rbd"), -E.EEXIST)
buf = C.create_string_buffer(256)
expect("rados_pool_reverse_lookup(9999)", rados.rados_pool_reverse_lookup(cl, 9999, buf, 256), -E.ENOENT)
expect("rados_cluster_fsid(buf 10)", rados.rados_cluster_fsid(cl, buf, 10), -E.ERANGE)
expect("rados_cluster_fsid(buf 256)", rados.rados_cluster_fsid(cl, buf, 256), 36)
expect("rados_pool_list(NULL, 0) = needed", rados.rados_pool_list(cl, None, 0), len(b"rbd\0") + 1)
expect("rados_ioctx_create(rbd)", rados.rados_ioctx_create(cl, b"rbd", C.byref(io)), 0)
expect("rados_ioctx_get_pool_name(buf 2)", rados.rados_ioctx_get_pool_name(io, buf, 2), -E.ERANGE)
expect("rados_ioctx_get_pool_name(buf 256)", rados.rados_ioctx_get_pool_name(io, buf, 256), 3)
rados.rados_ioctx_set_namespace(io, b"")
expect("rados_ioctx_get_namespace", rados.rados_ioctx_get_namespace(io, buf, 256), 0)
ex = C.c_bool(True)
expect("rbd_namespace_exists('')", rbd.rbd_namespace_exists(io, b"", C.byref(ex)), -E.EINVAL)
expect("rbd_namespace_exists('nons')", (rbd.rbd_namespace_exists(io, b"nons", C.byref(ex)), ex.value), (0, False))

name = b"bad%d" % os.getpid()
size = (1 << 20) + 512
order = C.c_int(0)
expect("rbd_create(order 0) -> order", (rbd.rbd_create(io, name, size, C.byref(order)), order.value), (0, 22))
expect("rbd_create(existing)", rbd.rbd_create(io, name, 1 << 20, C.byref(order)), -E.EEXIST)
for o in (5, 27):
    order = C.c_int(o)
    expect("rbd_create(order %d)" % o, rbd.rbd_create(io, name + b"o", 1 << 20, C.byref(order)), -E.EDOM)
order = C.c_int(0)
expect("rbd_create(empty name)", rbd.rbd_create(io, b"", 1 << 20, C.byref(order)), -E.EINVAL)
shale_only("rbd_create(NULL name) [librbd crashes]", lambda: rbd.rbd_create(io, None, 1 << 20, C.byref(order)), -E.EINVAL)
shale_only("rbd_create(NULL order) [librbd crashes]", lambda: rbd.rbd_create(io, name + b"n", 1 << 20, None), -E.EINVAL)
expect("rbd_create(size 0)", rbd.rbd_create(io, name + b"z", 0, C.byref(order)), 0)
expect("rbd_remove(size 0 image)", rbd.rbd_remove(io, name + b"z"), 0)
im = C.c_void_p()
expect("rbd_open(missing)", rbd.rbd_open(io, b"missing-img", C.byref(im), None), -E.ENOENT)
expect("rbd_open(missing snapshot)", rbd.rbd_open(io, name, C.byref(im), b"nosnap"), -E.ENOENT)
expect("rbd_open_by_id(missing id)", rbd.rbd_open_by_id(io, b"deadbeef", C.byref(im), None), -E.ENOENT)
shale_only("rbd_open(NULL out) [librbd crashes]", lambda: rbd.rbd_open(io, name, None, None), -E.EINVAL)
expect("rbd_remove(missing)", rbd.rbd_remove(io, b"missing-img"), -E.ENOENT)
expect("rbd_rename(missing)", rbd.rbd_rename(io, b"missing-img", b"x"), -E.ENOENT)
expect("rbd_open", rbd.rbd_open(io, name, C.byref(im), None), 0)
expect("rbd_remove(open image)", rbd.rbd_remove(io, name), -E.EBUSY)

info = C.create_string_buffer(b"\xee" * 200, 200)
expect("rbd_stat(159) [librbd ignores infosize]", rbd.rbd_stat(im, info, 159), 0)
shale_only("  ... writes only 159 bytes", lambda: info.raw[159:161], b"\xee\xee")
expect("rbd_stat(160)", rbd.rbd_stat(im, info, 160), 0)
sz, objsz, nobj, order_ = struct.unpack_from("<QQQi", info.raw)
ppool = struct.unpack_from("<q", info.raw, 56)[0]
expect("  stat fields", (sz, objsz, nobj, order_, info.raw[28:37], ppool, info.raw[64]),
       (size, 4 << 20, 1, 22, b"rbd_data.", -1, 0))
data = C.create_string_buffer(b"\xab" * 8192, 8192)
rb = C.create_string_buffer(8192)
for desc, got, want in [
    ("rbd_write(0,4096)", lambda: rbd.rbd_write(im, 0, 4096, data), 4096),
    ("rbd_write(len 0 at end)", lambda: rbd.rbd_write(im, size, 0, data), 0),
    ("rbd_write(len 0 past end)", lambda: rbd.rbd_write(im, size + 4096, 0, data), 0),
    ("rbd_write(crossing end)", lambda: rbd.rbd_write(im, size - 100, 4096, data), 100),
    ("rbd_write(at end)", lambda: rbd.rbd_write(im, size, 4096, data), -E.EINVAL),
    ("rbd_write(past end)", lambda: rbd.rbd_write(im, size + 4096, 4096, data), -E.EINVAL),
    ("rbd_write(unaligned 3,100)", lambda: rbd.rbd_write(im, 3, 100, data), 100),
    ("rbd_read(crossing end)", lambda: rbd.rbd_read(im, size - 100, 4096, rb), 100),
    ("rbd_read(at end)", lambda: rbd.rbd_read(im, size, 4096, rb), -E.EINVAL),
    ("rbd_read(past end)", lambda: rbd.rbd_read(im, size + 1, 4096, rb), -E.EINVAL),
    ("rbd_read(len 0 past end)", lambda: rbd.rbd_read(im, size + 4096, 0, rb), 0),
    ("rbd_read(0,4096)", lambda: rbd.rbd_read(im, 0, 4096, rb), 4096),
    ("rbd_discard(0,4096)", lambda: rbd.rbd_discard(im, 0, 4096), 4096),
    ("rbd_discard(crossing end)", lambda: rbd.rbd_discard(im, size - 100, 4096), 100),
    ("rbd_discard(past end)", lambda: rbd.rbd_discard(im, size + 4096, 4096), -E.EINVAL),
    ("rbd_discard(len 0)", lambda: rbd.rbd_discard(im, 0, 0), 0),
    ("rbd_write_zeroes(0,4096)", lambda: rbd.rbd_write_zeroes(im, 0, 4096, 0, 0), 4096),
    ("rbd_write_zeroes(crossing end)", lambda: rbd.rbd_write_zeroes(im, size - 100, 4096, 0, 0), 100),
    ("rbd_write_zeroes(past end)", lambda: rbd.rbd_write_zeroes(im, size + 4096, 4096, 0, 0), -E.EINVAL),
    ("rbd_writesame(0,8192,512)", lambda: rbd.rbd_writesame(im, 0, 8192, data, 512, 0), 8192),
    ("rbd_writesame(len not multiple)", lambda: rbd.rbd_writesame(im, 0, 1000, data, 512, 0), -E.EINVAL),
    ("rbd_writesame(data_len 0)", lambda: rbd.rbd_writesame(im, 0, 1024, data, 0, 0), -E.EINVAL),
    ("rbd_writesame(crossing end)", lambda: rbd.rbd_writesame(im, size - 512, 4096, data, 512, 0), 512),
    ("rbd_flush", lambda: rbd.rbd_flush(im), 0),
    ("rbd_invalidate_cache", lambda: rbd.rbd_invalidate_cache(im), 0),
]:
    expect(desc, got(), want)
expect("  writesame pattern read back", (rbd.rbd_read(im, 0, 8192, rb), rb.raw[:8192] == b"\xab" * 8192), (8192, True))
u = C.c_uint64()
for fn, want in [("rbd_get_size", size), ("rbd_get_features", 61), ("rbd_get_flags", 0),
                 ("rbd_get_op_features", 0), ("rbd_get_stripe_unit", 4 << 20),
                 ("rbd_get_stripe_count", 1), ("rbd_get_overlap", 0)]:
    expect(fn, (getattr(rbd, fn)(im, C.byref(u)), u.value), (0, want))
shale_only("rbd_get_size(NULL) [librbd crashes]", lambda: rbd.rbd_get_size(im, None), -E.EINVAL)
expect("rbd_get_id(buf 2)", rbd.rbd_get_id(im, buf, 2), -E.ERANGE)
expect("rbd_get_id(buf 256)", rbd.rbd_get_id(im, buf, 256), 0)
expect("rbd_get_block_name_prefix(buf 2)", rbd.rbd_get_block_name_prefix(im, buf, 2), -E.ERANGE)
expect("rbd_get_block_name_prefix(256)", (rbd.rbd_get_block_name_prefix(im, buf, 256), buf.value[:9]), (0, b"rbd_data."))
n = C.c_size_t(2)
expect("rbd_get_name(len 2) -> needed", (rbd.rbd_get_name(im, buf, C.byref(n)), n.value), (-E.ERANGE, len(name) + 1))
n = C.c_size_t(256)
expect("rbd_get_name(len 256) -> len", (rbd.rbd_get_name(im, buf, C.byref(n)), n.value, buf.value), (0, len(name) + 1, name))
ms = C.c_int(0)
snaps = C.create_string_buffer(b"\xee" * 96, 96)
expect("rbd_snap_list(max 0)", (rbd.rbd_snap_list(im, snaps, C.byref(ms)), ms.value), (-E.ERANGE, 1))
ms = C.c_int(4)
expect("rbd_snap_list(max 4)", (rbd.rbd_snap_list(im, snaps, C.byref(ms)), ms.value, snaps.raw[:24]), (0, 4, b"\0" * 24))
expect("rbd_get_parent_info", rbd.rbd_get_parent_info(im, buf, 256, buf, 256, buf, 256), -E.ENOENT)
expect("rbd_get_parent", rbd.rbd_get_parent(im, snaps, snaps), -E.ENOENT)
expect("rbd_metadata_set(k,value)", rbd.rbd_metadata_set(im, b"k", b"value"), 0)
n = C.c_size_t(2)
expect("rbd_metadata_get(len 2) -> needed", (rbd.rbd_metadata_get(im, b"k", buf, C.byref(n)), n.value), (-E.ERANGE, 6))
n = C.c_size_t(256)
expect("rbd_metadata_get(len 256)", (rbd.rbd_metadata_get(im, b"k", buf, C.byref(n)), n.value, buf.value), (0, 256, b"value"))
expect("rbd_metadata_get(missing)", rbd.rbd_metadata_get(im, b"nokey", buf, C.byref(n)), -E.ENOENT)
kl, vl = C.c_size_t(0), C.c_size_t(0)
expect("rbd_metadata_list(0,0) -> needed",
       (rbd.rbd_metadata_list(im, b"", 0, None, C.byref(kl), None, C.byref(vl)), kl.value, vl.value), (-E.ERANGE, 2, 6))
kb, vb = C.create_string_buffer(256), C.create_string_buffer(256)
kl, vl = C.c_size_t(256), C.c_size_t(256)
expect("rbd_metadata_list(256)",
       (rbd.rbd_metadata_list(im, b"", 0, kb, C.byref(kl), vb, C.byref(vl)), kl.value, vl.value, kb.raw[:2], vb.raw[:6]),
       (0, 2, 6, b"k\0", b"value\0"))
expect("rbd_metadata_remove(missing)", rbd.rbd_metadata_remove(im, b"nokey"), -E.ENOENT)
expect("rbd_metadata_remove(k)", rbd.rbd_metadata_remove(im, b"k"), 0)
mw = C.c_size_t(0)
w = C.create_string_buffer(24 * 4)
expect("rbd_watchers_list(max 0)", (rbd.rbd_watchers_list(im, w, C.byref(mw)), mw.value), (-E.ERANGE, 1))
mw = C.c_size_t(4)
expect("rbd_watchers_list(max 4)", (rbd.rbd_watchers_list(im, w, C.byref(mw)), mw.value), (0, 1))
rbd.rbd_watchers_list_cleanup(w, mw)
expect("rbd_resize(smaller)", rbd.rbd_resize(im, 1 << 20), 0)
expect("rbd_resize2(larger, no shrink)", rbd.rbd_resize2(im, 2 << 20, False, None, None), 0)
expect("rbd_resize2(smaller, no shrink)", rbd.rbd_resize2(im, 1 << 20, False, None, None), -E.EINVAL)
sz_ = C.c_size_t(0)
expect("rbd_list(NULL, 0) -> needed", (rbd.rbd_list(io, None, C.byref(sz_)), sz_.value), (-E.ERANGE, len(name) + 1))
big, sz_ = C.create_string_buffer(4096), C.c_size_t(4096)
expect("rbd_list(big) = bytes, size unchanged", (rbd.rbd_list(io, big, C.byref(sz_)), sz_.value), (len(name) + 1, 4096))
mi = C.c_size_t(0)
expect("rbd_list2(max 0)", (rbd.rbd_list2(io, None, C.byref(mi)), mi.value), (-E.ERANGE, 1))

size = 2 << 20


def aio(desc, fn, want):
    comp = C.c_void_p()
    rbd.rbd_aio_create_completion(None, None, C.byref(comp))
    r = fn(comp)
    rv = None
    if r == 0:
        rbd.rbd_aio_wait_for_complete(comp)
        rv = rbd.rbd_aio_get_return_value(comp)
    rbd.rbd_aio_release(comp)
    expect(desc, (r, rv), want)


aio("aio_write(0,4096)", lambda c: rbd.rbd_aio_write(im, 0, 4096, data, c), (0, 0))
aio("aio_write(crossing)", lambda c: rbd.rbd_aio_write(im, size - 100, 4096, data, c), (0, 0))
aio("aio_write(past end)", lambda c: rbd.rbd_aio_write(im, size + 4096, 4096, data, c), (0, -E.EINVAL))
aio("aio_read(0,4096)", lambda c: rbd.rbd_aio_read(im, 0, 4096, rb, c), (0, 4096))
aio("aio_read(crossing)", lambda c: rbd.rbd_aio_read(im, size - 100, 4096, rb, c), (0, 100))
aio("aio_read(past end)", lambda c: rbd.rbd_aio_read(im, size + 4096, 4096, rb, c), (0, -E.EINVAL))
aio("aio_discard(0,4096)", lambda c: rbd.rbd_aio_discard(im, 0, 4096, c), (0, 0))
aio("aio_discard(past end)", lambda c: rbd.rbd_aio_discard(im, size + 4096, 4096, c), (0, -E.EINVAL))
aio("aio_write_zeroes(0,4096)", lambda c: rbd.rbd_aio_write_zeroes(im, 0, 4096, c, 0, 0), (0, 0))
aio("aio_flush", lambda c: rbd.rbd_aio_flush(im, c), (0, 0))
shale_only("aio_write(bad completion) [librbd crashes]", lambda: rbd.rbd_aio_write(im, 0, 4096, data, C.c_void_p(0x1234)), -E.EINVAL)
shale_only("rbd_write(NULL buf) [librbd crashes]", lambda: rbd.rbd_write(im, 0, 4096, None), -E.EINVAL)

# Lengths rbd_discard cannot return as an int: librbd 16.2.15 refuses them and changes nothing
# (measured: 3 GiB and 2 GiB -> -EINVAL, data intact; 2 GiB - 512 -> 2147483136).
rbd.rbd_discard.argtypes = [C.c_void_p, C.c_uint64, C.c_uint64]
rbd.rbd_resize.argtypes = [C.c_void_p, C.c_uint64]
expect("rbd_resize(4 GiB)", rbd.rbd_resize(im, 4 << 30), 0)
expect("rbd_write(marker)", rbd.rbd_write(im, 0, 4096, data), 4096)
expect("rbd_discard(0, 3 GiB)", rbd.rbd_discard(im, 0, 3 << 30), -E.EINVAL)
expect("rbd_discard(0, 2 GiB)", rbd.rbd_discard(im, 0, 2 << 30), -E.EINVAL)
expect("  ... nothing discarded", (rbd.rbd_read(im, 0, 4096, rb), rb.raw[:4096] == b"\xab" * 4096), (4096, True))
expect("rbd_discard(0, 2 GiB - 512)", rbd.rbd_discard(im, 0, (2 << 30) - 512), (2 << 30) - 512)
expect("  ... discarded", (rbd.rbd_read(im, 0, 4096, rb), rb.raw[:4096] == bytes(4096)), (4096, True))
expect("rbd_write(marker again)", rbd.rbd_write(im, 0, 4096, data), 4096)
rbd.rbd_writesame.argtypes = [C.c_void_p, C.c_uint64, C.c_size_t, C.c_char_p, C.c_size_t, C.c_int]
expect("rbd_writesame(NULL, len 0, data_len 0)", rbd.rbd_writesame(im, 0, 0, None, 0, 0), -E.EINVAL)
shale_only("rbd_writesame(NULL, len 0, data_len 512) [librbd crashes]",
           lambda: rbd.rbd_writesame(im, 0, 0, None, 512, 0), -E.EINVAL)
shale_only("rbd_writesame(NULL, 4096, 512) [librbd crashes]",
           lambda: rbd.rbd_writesame(im, 0, 4096, None, 512, 0), -E.EINVAL)
if not REAL:
    aio("aio_writesame(NULL, len 0, data_len 512) [librbd crashes]",
        lambda c: rbd.rbd_aio_writesame(im, 0, 0, None, 512, c, 0), (-E.EINVAL, None))
expect("  ... marker intact", (rbd.rbd_read(im, 0, 4096, rb), rb.raw[:4096] == b"\xab" * 4096), (4096, True))
expect("rbd_resize(back)", rbd.rbd_resize(im, size), 0)

# eventfd notification + poll (fio's path)
efd = os.eventfd(0)
expect("rbd_set_image_notification(eventfd)", rbd.rbd_set_image_notification(im, efd, 2), 0)
comps = []
for i in range(4):
    comp = C.c_void_p()
    rbd.rbd_aio_create_completion(C.c_void_p(100 + i), None, C.byref(comp))
    rbd.rbd_aio_write(im, i * 4096, 4096, data, comp)
    comps.append(comp)
got = []
while len(got) < 4:
    os.eventfd_read(efd)
    arr = (C.c_void_p * 8)()
    k = rbd.rbd_poll_io_events(im, arr, 8)
    got += [arr[j] for j in range(k)]
rbd.rbd_aio_get_arg.restype = C.c_void_p
expect("rbd_poll_io_events returns every completion", sorted(rbd.rbd_aio_get_arg(C.c_void_p(c)) for c in got), [100, 101, 102, 103])
for c in comps:
    rbd.rbd_aio_release(c)
os.close(efd)

ro = C.c_void_p()
expect("rbd_open_read_only", rbd.rbd_open_read_only(io, name, C.byref(ro), None), 0)
expect("rbd_write on read-only", rbd.rbd_write(ro, 0, 4096, data), -E.EROFS)
expect("rbd_resize on read-only", rbd.rbd_resize(ro, 1 << 20), -E.EROFS)
expect("rbd_metadata_set on read-only", rbd.rbd_metadata_set(ro, b"a", b"b"), -E.EROFS)
expect("rbd_close(read-only)", rbd.rbd_close(ro), 0)
expect("rbd_close", rbd.rbd_close(im), 0)
shale_only("rbd_close(closed handle) [librbd crashes]", lambda: rbd.rbd_close(im), -E.EINVAL)
shale_only("rbd_read(closed handle) [librbd crashes]", lambda: rbd.rbd_read(im, 0, 4096, rb), -E.EINVAL)
shale_only("rbd_get_size(closed handle) [librbd crashes]", lambda: rbd.rbd_get_size(im, C.byref(u)), -E.EINVAL)
expect("rbd_rename(to existing)", rbd.rbd_rename(io, name, name), -E.EEXIST)
expect("rbd_rename", rbd.rbd_rename(io, name, name + b"r"), 0)
expect("rbd_remove", rbd.rbd_remove(io, name + b"r"), 0)
rados.rados_ioctx_destroy(io)
shale_only("rbd_create(destroyed ioctx) [librbd crashes]", lambda: rbd.rbd_create(io, name, 1 << 20, C.byref(order)), -E.EINVAL)
rados.rados_shutdown(cl)
sys.exit(1 if failures else 0)
