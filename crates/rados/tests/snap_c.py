"""C-level (ctypes) checks of the snapshot/clone/diff calls: rbd_diff_iterate2 stop codes,
rbd_snap_list buffer rules, the rbd_linked_image_spec_t / rbd_snap_spec_t layouts of
rbd_list_children3 and rbd_get_parent, rbd_features_to/from_string. Values measured on Ceph 16.2.15.

usage: CEPH_CONF=... snap_c.py    (loads librbd.so.1 / librados.so.2 from LD_LIBRARY_PATH; on a real
cluster set REAL=1; images named sc-* in pool rbd are used)
Prints one "ok NAME" / "FAIL NAME: why" line per check.
"""
import ctypes as C
import os
import sys

REAL = os.environ.get("REAL") == "1"
rados = C.CDLL("librados.so.2")
rbd = C.CDLL("librbd.so.1")
failures = 0
MB = 1 << 20
P = C.c_void_p


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why))


class SnapInfo(C.Structure):
    _fields_ = [("id", C.c_uint64), ("size", C.c_uint64), ("name", C.c_char_p)]


class Linked(C.Structure):
    _fields_ = [("pool_id", C.c_int64), ("pool_name", C.c_char_p), ("pool_namespace", C.c_char_p),
                ("image_id", C.c_char_p), ("image_name", C.c_char_p), ("trash", C.c_bool)]


class SnapSpec(C.Structure):
    _fields_ = [("id", C.c_uint64), ("namespace_type", C.c_int), ("name", C.c_char_p)]


DIFFCB = C.CFUNCTYPE(C.c_int, C.c_uint64, C.c_size_t, C.c_int, P)
rbd.rbd_open.argtypes = [P, C.c_char_p, C.POINTER(P), C.c_char_p]
rbd.rbd_diff_iterate2.argtypes = [P, C.c_char_p, C.c_uint64, C.c_uint64, C.c_uint8, C.c_uint8, DIFFCB, P]
rbd.rbd_write.argtypes = [P, C.c_uint64, C.c_size_t, C.c_char_p]
rbd.rbd_write.restype = C.c_ssize_t
rbd.rbd_create.argtypes = [P, C.c_char_p, C.c_uint64, C.POINTER(C.c_int)]
rbd.rbd_clone.argtypes = [P, C.c_char_p, C.c_char_p, P, C.c_char_p, C.c_uint64, C.POINTER(C.c_int)]
rbd.rbd_features_to_string.argtypes = [C.c_uint64, C.c_char_p, C.POINTER(C.c_size_t)]
rbd.rbd_snap_set_by_id.argtypes = [P, C.c_uint64]
rbd.rbd_snap_get_name.argtypes = [P, C.c_uint64, C.c_char_p, C.POINTER(C.c_size_t)]
rbd.rbd_snap_get_namespace_type.argtypes = [P, C.c_uint64, C.POINTER(C.c_int)]
for f in ["rbd_snap_get_group_namespace", "rbd_snap_get_trash_namespace"]:
    getattr(rbd, f).argtypes = [P, C.c_uint64, P, C.c_size_t]

cl, io = P(), P()
rados.rados_create(C.byref(cl), None)
rados.rados_conf_read_file(cl, None)
check("connect", rados.rados_connect(cl) == 0)
rados.rados_ioctx_create(cl, b"rbd", C.byref(io))


def open_image(name, snap=None):
    h = P()
    r = rbd.rbd_open(io, name, C.byref(h), snap)
    return h if r == 0 else r


order = C.c_int(22)
check("create", rbd.rbd_create(io, b"sc-img", 16 * MB, C.byref(order)) == 0)
img = open_image(b"sc-img")
for off in (0, 5 * MB, 10 * MB):
    rbd.rbd_write(img, off, 4096, b"x" * 4096)


def diff(code, fromsnap=None, whole=0):
    calls = []

    def f(o, n, e, _a):
        calls.append((o, n, e))
        return code
    r = rbd.rbd_diff_iterate2(img, fromsnap, 0, 16 * MB, 1, whole, DIFFCB(f), None)
    return r, calls


def covered(calls, off, n):
    return any(o <= off and off + n <= o + ln and e for o, ln, e in calls)


# librbd (fast-diff) reports each object from its start to the end of its data and may run
# the callbacks of a batch of objects after one returned an error; Shale reports exact ranges
# and stops at once.
r, calls = diff(0)
check("diff_iterate2: three extents", r == 0 and len(calls) == 3
      and all(covered(calls, o, 4096) for o in (0, 5 * MB, 10 * MB)), (r, calls))
r, calls = diff(-9000)
check("diff_iterate2: -9000 stops and is returned", r == -9000 and (len(calls) == 1 or REAL), (r, calls))
r, calls = diff(-5)
check("diff_iterate2: any negative value is returned", r == -5 and (len(calls) == 1 or REAL), (r, calls))
r, calls = diff(7)
check("diff_iterate2: a positive value is ignored", r == 0 and len(calls) == 3, (r, calls))
r, calls = diff(0, whole=1)
check("diff_iterate2 whole_object: one object each", r == 0 and [c[:2] for c in calls]
      == [(0, 4 * MB), (4 * MB, 4 * MB), (8 * MB, 4 * MB)], (r, calls))
r, calls = diff(0, fromsnap=b"nope")
check("diff_iterate2 from a missing snapshot: -ENOENT", r == -2, r)

# snap list buffer rules
check("snap_create", rbd.rbd_snap_create(img, b"s1") == 0)
check("snap_create existing: -EEXIST", rbd.rbd_snap_create(img, b"s1") == -17)
check("snap_create2 bad flags: -EINVAL", rbd.rbd_snap_create2(img, b"s2", C.c_uint32(3), None, None) == -22)
check("snap_create2 skip-quiesce", rbd.rbd_snap_create2(img, b"s2", C.c_uint32(1), None, None) == 0)
n = C.c_int(1)
arr = (SnapInfo * 4)()
check("snap_list short: -ERANGE, count+1", rbd.rbd_snap_list(img, arr, C.byref(n)) == -34 and n.value == 3, n.value)
n.value = 4
r = rbd.rbd_snap_list(img, arr, C.byref(n))
check("snap_list: count, entries, terminator", r == 2 and [arr[0].name, arr[1].name] == [b"s1", b"s2"]
      and arr[2].name is None and arr[2].id == 0 and arr[0].size == 16 * MB, (r, arr[0].name))
ids = [arr[0].id, arr[1].id]
rbd.rbd_snap_list_end(arr)
buf = C.create_string_buffer(64)
ln = C.c_size_t(2)
check("snap_get_name short: -ERANGE, size", rbd.rbd_snap_get_name(img, ids[0], buf, C.byref(ln)) == -34
      and ln.value == 3, ln.value)
ln.value = 64
check("snap_get_name", rbd.rbd_snap_get_name(img, ids[0], buf, C.byref(ln)) == 0 and buf.value == b"s1"
      and ln.value == 3)
check("snap_get_name missing id: -ENOENT", rbd.rbd_snap_get_name(img, 999, buf, C.byref(ln)) == -2)
nt = C.c_int(9)
check("snap_get_namespace_type: user", rbd.rbd_snap_get_namespace_type(img, ids[0], C.byref(nt)) == 0
      and nt.value == 0)
gbuf = C.create_string_buffer(64)
check("snap_get_group_namespace of a user snapshot: -EINVAL",
      rbd.rbd_snap_get_group_namespace(img, ids[0], gbuf, 24) == -22)
check("snap_get_trash_namespace of a user snapshot: -EINVAL",
      rbd.rbd_snap_get_trash_namespace(img, ids[0], gbuf, 64) == -22)
check("snap_set_by_id", rbd.rbd_snap_set_by_id(img, ids[0]) == 0)
check("write at a snapshot: -EROFS", rbd.rbd_write(img, 0, 1, b"y") == -30)
check("snap_set(NULL) back to the head", rbd.rbd_snap_set(img, None) == 0
      and rbd.rbd_write(img, 0, 1, b"y") == 1)
check("snap_protect", rbd.rbd_snap_protect(img, b"s1") == 0 and rbd.rbd_snap_protect(img, b"s2") == 0)
check("snap_remove2 UNPROTECT removes a protected snapshot",
      rbd.rbd_snap_remove2(img, b"s2", C.c_uint32(1), None, None) == 0)
check("snap_remove2 unknown flags are ignored", rbd.rbd_snap_create(img, b"s3") == 0
      and rbd.rbd_snap_remove2(img, b"s3", C.c_uint32(4), None, None) == 0)

# clone: rbd_get_parent and rbd_list_children3 layouts
corder = C.c_int(0)
check("rbd_clone (order 0: the parent's; not written back)",
      rbd.rbd_clone(io, b"sc-img", b"s1", io, b"sc-child", 1, C.byref(corder)) == 0 and corder.value == 0)
corder.value = 20
r = rbd.rbd_clone(io, b"sc-img", b"s1", io, b"sc-child2", 1, C.byref(corder))
check("rbd_clone order 20", r == 0, r)
check("rbd_clone without layering: -ENOSYS",
      rbd.rbd_clone(io, b"sc-img", b"s1", io, b"sc-child3", 4, C.byref(corder)) == -38)
check("remove child2", rbd.rbd_remove(io, b"sc-child2") == 0)
child = open_image(b"sc-child")
pi, ps = Linked(), SnapSpec()
r = rbd.rbd_get_parent(child, C.byref(pi), C.byref(ps))
check("rbd_get_parent layout", r == 0 and pi.pool_name == b"rbd" and pi.image_name == b"sc-img"
      and pi.pool_namespace == b"" and pi.pool_id > 0 and ps.name == b"s1" and ps.id == ids[0]
      and ps.namespace_type == 0 and not pi.trash, (r, pi.image_name, ps.name))
rbd.rbd_linked_image_spec_cleanup(C.byref(pi))
rbd.rbd_snap_spec_cleanup(C.byref(ps))
r = rbd.rbd_get_parent(img, C.byref(pi), C.byref(ps))
check("rbd_get_parent without parent: -ENOENT, zeroed", r == -2 and pi.pool_id == 0 and pi.image_name is None)
mx = C.c_size_t(0)
kids = (Linked * 2)()
check("list_children3 short: -ERANGE, count", rbd.rbd_list_children3(img, kids, C.byref(mx)) == -34
      and mx.value == 1, mx.value)
mx.value = 2
r = rbd.rbd_list_children3(img, kids, C.byref(mx))
check("list_children3 layout", r == 0 and mx.value == 1 and kids[0].image_name == b"sc-child"
      and kids[0].pool_name == b"rbd" and len(kids[0].image_id or b"") > 0, (r, kids[0].image_name))
rbd.rbd_linked_image_spec_list_cleanup(kids, mx)
ov = C.c_uint64(0)
check("get_overlap of a clone", rbd.rbd_get_overlap(child, C.byref(ov)) == 0 and ov.value == 16 * MB, ov.value)
check("flatten", rbd.rbd_flatten(child) == 0)
check("flatten a non-clone: -EINVAL", rbd.rbd_flatten(child) == -22)
rbd.rbd_close(child)
check("remove child", rbd.rbd_remove(io, b"sc-child") == 0)

# features strings
sz = C.c_size_t(3)
check("features_to_string short: -ERANGE, size", rbd.rbd_features_to_string(61, buf, C.byref(sz)) == -34
      and sz.value == 58, sz.value)
sz.value = 64
check("features_to_string(61)", rbd.rbd_features_to_string(61, buf, C.byref(sz)) == 0
      and buf.value == b"deep-flatten,exclusive-lock,fast-diff,layering,object-map", buf.value)
fv = C.c_uint64(0)
check("features_from_string", rbd.rbd_features_from_string(b"layering,fast-diff", C.byref(fv)) == 0
      and fv.value == 17)
check("features_from_string unknown: -EINVAL", rbd.rbd_features_from_string(b"bogus", C.byref(fv)) == -22)

rbd.rbd_snap_unprotect(img, b"s1")
rbd.rbd_snap_remove(img, b"s1")
rbd.rbd_close(img)
check("remove", rbd.rbd_remove(io, b"sc-img") == 0)
rados.rados_ioctx_destroy(io)
rados.rados_shutdown(cl)
sys.exit(1 if failures else 0)
