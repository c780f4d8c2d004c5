"""Creation and removal answers as librbd's (issue 9): feature masks, striping, journaling,
removing an image that has snapshots. Every expectation was measured on Ceph 16.2.15
(ceph-mini); run it there with REAL=1.

usage: CEPH_CONF=... create_parity.py   (REAL=1 on a real cluster)
Prints one "ok NAME" / "FAIL NAME: why" line per check.
"""
import ctypes as C
import errno
import os
import sys

import rados
import rbd

MB = 1 << 20
REAL = os.environ.get("REAL") == "1"
failures = 0
F = rbd


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name, flush=True)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why), flush=True)


def create(io, name, **kw):
    """Create, then report (features, stripe_unit, stripe_count) or the errno."""
    try:
        rbd.RBD().create(io, name, 8 * MB, **kw)
    except rbd.Error as e:
        return "errno %s" % getattr(e, "errno", None)
    img = rbd.Image(io, name)
    got = (img.features(), img.stripe_unit(), img.stripe_count())
    img.close()
    rbd.RBD().remove(io, name)
    return got


def main():
    cl = rados.Rados(conffile=os.environ.get("CEPH_CONF"))
    cl.connect()
    io = cl.open_ioctx("rbd")
    n = "cp-%d" % os.getpid()
    obj = 4 * MB
    EXCL, OMAP, FDIFF = F.RBD_FEATURE_EXCLUSIVE_LOCK, F.RBD_FEATURE_OBJECT_MAP, F.RBD_FEATURE_FAST_DIFF
    JOURNAL, STRIPING = F.RBD_FEATURE_JOURNALING, F.RBD_FEATURE_STRIPINGV2
    ENOSYS, EINVAL = "errno %d" % errno.ENOSYS, "errno %d" % errno.EINVAL
    for label, kw, want in [
        ("features EXCL|FAST_DIFF: fast-diff dropped", dict(features=EXCL | FDIFF), (EXCL, obj, 1)),
        ("features FAST_DIFF alone: dropped", dict(features=FDIFF), (0, obj, 1)),
        ("features OBJECT_MAP without EXCL", dict(features=OMAP), EINVAL),
        ("unknown feature bit 40", dict(features=1 | (1 << 40)), ENOSYS),
        ("unknown feature bit 20", dict(features=1 << 20), ENOSYS),
        ("features EXCL|JOURNALING", dict(features=EXCL | JOURNAL), (EXCL | JOURNAL, obj, 1)),
        ("features JOURNALING without EXCL", dict(features=JOURNAL), EINVAL),
        ("features LAYERING|STRIPINGV2, default striping: bit dropped",
         dict(features=1 | STRIPING), (1, obj, 1)),
        ("stripe 64K x 4", dict(features=61, stripe_unit=65536, stripe_count=4), (61 | STRIPING, 65536, 4)),
        ("stripe 4M x 1 (the default)", dict(features=61, stripe_unit=obj, stripe_count=1), (61, obj, 1)),
        ("stripe 64K x 1", dict(features=61, stripe_unit=65536, stripe_count=1), (61 | STRIPING, 65536, 1)),
        ("stripe 1M x 16", dict(features=61, stripe_unit=MB, stripe_count=16), (61 | STRIPING, MB, 16)),
        ("stripe 0 x 0", dict(features=61, stripe_unit=0, stripe_count=0), (61, obj, 1)),
        ("stripe 3000 x 2 (does not divide the object)", dict(features=61, stripe_unit=3000, stripe_count=2), EINVAL),
        ("stripe 64K x 0", dict(features=61, stripe_unit=65536, stripe_count=0), EINVAL),
        ("stripe 8M x 1 (larger than the object)", dict(features=61, stripe_unit=8 * MB, stripe_count=1), EINVAL),
    ]:
        got = create(io, n, **kw)
        check("create, %s -> %r" % (label, want), got == want, repr(got))

    # a striped image still reads back what was written (the layout itself does not matter)
    rbd.RBD().create(io, n, 8 * MB, features=61, stripe_unit=65536, stripe_count=4)
    img = rbd.Image(io, n)
    img.write(b"s" * 300000, 12345)
    check("striped image reads back", img.read(12345, 300000) == b"s" * 300000)
    img.close()
    rbd.RBD().remove(io, n)

    # C: rbd_create3 with striping, reported by rbd_get_stripe_unit / _count
    lib = C.CDLL("librbd.so.1")
    lr = C.CDLL("librados.so.2")
    P = C.c_void_p
    lib.rbd_create3.argtypes = [P, C.c_char_p, C.c_uint64, C.c_uint64, C.POINTER(C.c_int),
                                C.c_uint64, C.c_uint64]
    lib.rbd_create2.argtypes = [P, C.c_char_p, C.c_uint64, C.c_uint64, C.POINTER(C.c_int)]
    lib.rbd_open.argtypes = [P, C.c_char_p, C.POINTER(P), C.c_char_p]
    lib.rbd_remove.argtypes = [P, C.c_char_p]
    ccl, cio, h = P(), P(), P()
    lr.rados_create(C.byref(ccl), None)
    lr.rados_conf_read_file(ccl, None)
    lr.rados_connect(ccl)
    lr.rados_ioctx_create(ccl, b"rbd", C.byref(cio))
    order = C.c_int(0)
    r = lib.rbd_create3(cio, n.encode(), 8 * MB, 61, C.byref(order), 65536, 4)
    check("C: rbd_create3(64K x 4) -> 0", r == 0, r)
    if r == 0:
        lib.rbd_open(cio, n.encode(), C.byref(h), None)
        u, c, f = C.c_uint64(), C.c_uint64(), C.c_uint64()
        lib.rbd_get_stripe_unit(h, C.byref(u))
        lib.rbd_get_stripe_count(h, C.byref(c))
        lib.rbd_get_features(h, C.byref(f))
        check("C: stripe unit/count/features", (u.value, c.value, f.value) == (65536, 4, 63),
              repr((u.value, c.value, f.value)))
        lib.rbd_close(h)
        lib.rbd_remove(cio, n.encode())
    order = C.c_int(0)
    r = lib.rbd_create3(cio, n.encode(), 8 * MB, 61, C.byref(order), 3000, 2)
    check("C: rbd_create3(3000 x 2) -> -EINVAL", r == -errno.EINVAL, r)
    r = lib.rbd_create2(cio, n.encode(), 8 * MB, 1 << 40, C.byref(order))
    check("C: rbd_create2(unknown bit) -> -ENOSYS", r == -errno.ENOSYS, r)
    r = lib.rbd_create2(cio, n.encode(), 8 * MB, EXCL | FDIFF, C.byref(order))
    check("C: rbd_create2(EXCL|FAST_DIFF) -> 0", r == 0, r)
    if r == 0:
        lib.rbd_open(cio, n.encode(), C.byref(h), None)
        f = C.c_uint64()
        lib.rbd_get_features(h, C.byref(f))
        check("C: ... features 0x4", f.value == EXCL, hex(f.value))
        lib.rbd_close(h)
        lib.rbd_remove(cio, n.encode())
    lr.rados_ioctx_destroy(cio)
    lr.rados_shutdown(ccl)

    # journaling can be switched on and off (it needs exclusive-lock)
    rbd.RBD().create(io, n, 8 * MB)
    img = rbd.Image(io, n)
    img.update_features(JOURNAL, True)
    check("update_features +journaling", img.features() == 61 | JOURNAL, hex(img.features()))
    try:
        img.update_features(EXCL, False)
        r = "done"
    except rbd.InvalidArgument:
        r = "EINVAL"
    check("disable exclusive-lock with journaling on -> EINVAL", r == "EINVAL", r)
    img.update_features(JOURNAL, False)
    check("update_features -journaling", img.features() == 61, hex(img.features()))

    # removing an image that has snapshots: ENOTEMPTY, open or not (librbd looks at the
    # snapshots before the watchers)
    img.create_snap("keep")
    for when in ["while open", "after close"]:
        if when == "after close":
            img.close()
        try:
            rbd.RBD().remove(io, n)
            r = "removed"
        except rbd.ImageHasSnapshots:
            r = "ENOTEMPTY"
        except rbd.ImageBusy:
            r = "EBUSY"
        check("remove with a snapshot %s -> ENOTEMPTY" % when, r == "ENOTEMPTY", r)
    img = rbd.Image(io, n)
    img.remove_snap("keep")
    try:
        rbd.RBD().remove(io, n)
        r = "removed"
    except rbd.ImageBusy:
        r = "EBUSY"
    check("remove an open image without snapshots -> EBUSY", r == "EBUSY", r)
    img.close()
    rbd.RBD().remove(io, n)
    io.close()
    cl.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
