"""Image locks through python3-rbd (and ctypes for the buffer rules): the legacy advisory locks
(lock_exclusive / lock_shared / unlock / list_lockers / break_lock) and the managed exclusive
lock (lock_acquire / lock_release / lock_get_owners / lock_break / is_exclusive_lock_owner),
with librbd's error classes. Values measured on Ceph 16.2.15 (ceph-mini).

usage: CEPH_CONF=... locks.py   (REAL=1 on a real cluster; images named lk-* in pool rbd)
Prints one "ok NAME" / "FAIL NAME: why" line per check.
"""
import ctypes as C
import errno
import os
import sys

import rados
import rbd

REAL = os.environ.get("REAL") == "1"
failures = 0
MB = 1 << 20


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why))


def raises(name, exc, f, *a):
    try:
        r = f(*a)
    except exc:
        check(name, True)
        return
    except Exception as e:  # noqa: BLE001
        check(name, False, "raised %r, wanted %s" % (e, exc.__name__))
        return
    check(name, False, "returned %r, wanted %s" % (r, exc.__name__))


conf = os.environ.get("CEPH_CONF")
cl = rados.Rados(conffile=conf)
cl.connect()
io = cl.open_ioctx("rbd")
R = rbd.RBD()
LK_ADV, LK_EX, LK_NOFEAT = ("lk-%s-%d" % (x, os.getpid()) for x in ["adv", "ex", "nofeat"])
for n in [LK_ADV, LK_EX, LK_NOFEAT]:
    try:
        R.remove(io, n)
    except rbd.ImageNotFound:
        pass

# ---- legacy advisory locks ----
R.create(io, LK_ADV, 4 * MB)
img = rbd.Image(io, LK_ADV)
check("list_lockers unlocked is []", img.list_lockers() == [], repr(img.list_lockers()))
img.lock_exclusive("c1")
ll = img.list_lockers()
ok = isinstance(ll, dict) and ll["exclusive"] is True and ll["tag"] == "" and len(ll["lockers"]) == 1
check("lock_exclusive + list_lockers", ok, repr(ll))
if ok:
    client, cookie, addr = ll["lockers"][0]
    check("locker client is client.<id>", client.startswith("client.") and len(client) > 7, client)
    check("locker cookie", cookie == "c1", cookie)
    check("locker address ip:port/nonce", ":" in addr and "/" in addr, addr)
raises("lock_exclusive same cookie -> ImageExists", rbd.ImageExists, img.lock_exclusive, "c1")
raises("lock_exclusive other cookie -> ImageBusy", rbd.ImageBusy, img.lock_exclusive, "c2")
raises("lock_shared while exclusive -> ImageBusy", rbd.ImageBusy, img.lock_shared, "c3", "t")
raises("unlock unknown cookie -> ImageNotFound", rbd.ImageNotFound, img.unlock, "nope")
img.unlock("c1")
check("unlock", img.list_lockers() == [])
img.lock_shared("s1", "tag1")
img.lock_shared("s2", "tag1")
ll = img.list_lockers()
ok = isinstance(ll, dict) and ll["exclusive"] is False and ll["tag"] == "tag1" and len(ll["lockers"]) == 2
check("lock_shared x2 + list_lockers", ok, repr(ll))
raises("lock_shared other tag -> ImageBusy", rbd.ImageBusy, img.lock_shared, "s3", "other")
raises("lock_exclusive while shared -> ImageBusy", rbd.ImageBusy, img.lock_exclusive, "x")
raises("lock_shared same cookie -> ImageExists", rbd.ImageExists, img.lock_shared, "s1", "tag1")
me = ll["lockers"][0][0] if ok else "client.0"

# ctypes: buffer rules of rbd_list_lockers
lib = C.CDLL("librbd.so.1")
P = C.c_void_p
lib.rbd_list_lockers.restype = C.c_ssize_t
lib.rbd_open.argtypes = [P, C.c_char_p, C.POINTER(P), C.c_char_p]
lib.rbd_close.argtypes = [P]
lib.rbd_list_lockers.argtypes = [P, C.POINTER(C.c_int)] + [C.c_char_p, C.POINTER(C.c_size_t)] * 4
lr = C.CDLL("librados.so.2")
ccl, cio, image = P(), P(), P()
lr.rados_create(C.byref(ccl), None)
lr.rados_conf_read_file(ccl, None)
lr.rados_connect(ccl)
lr.rados_ioctx_create(ccl, b"rbd", C.byref(cio))
check("ctypes rbd_open", lib.rbd_open(cio, LK_ADV.encode(), C.byref(image), None) == 0)
ex = C.c_int(-1)
lens = [C.c_size_t(0) for _ in range(4)]
r = lib.rbd_list_lockers(image, C.byref(ex), None, C.byref(lens[0]), None, C.byref(lens[1]),
                         None, C.byref(lens[2]), None, C.byref(lens[3]))
want = [len("tag1") + 1, 2 * (len(me) + 1), len("s1") + len("s2") + 2]
check("rbd_list_lockers short -> -ERANGE", r == -errno.ERANGE, r)
check("rbd_list_lockers sizes needed", [l.value for l in lens[:3]] == want and lens[3].value > 2,
      "%r vs %r" % ([l.value for l in lens], want))
check("rbd_list_lockers exclusive written on -ERANGE", ex.value == 0, ex.value)
bufs = [C.create_string_buffer(l.value) for l in lens]
r = lib.rbd_list_lockers(image, C.byref(ex), bufs[0], C.byref(lens[0]), bufs[1], C.byref(lens[1]),
                         bufs[2], C.byref(lens[2]), bufs[3], C.byref(lens[3]))
check("rbd_list_lockers exact buffers -> 2", r == 2, r)
check("rbd_list_lockers tag / cookies lists",
      bufs[0].value == b"tag1" and bufs[2].raw == b"s1\0s2\0", (bufs[0].raw, bufs[2].raw))
lib.rbd_close(image)
lr.rados_ioctx_destroy(cio)
lr.rados_shutdown(ccl)

raises("break_lock bad client -> InvalidArgument", rbd.InvalidArgument, img.break_lock, "garbage", "s1")
# A second client breaks them (real librbd would blocklist the broken client: turn that off).
cl2 = rados.Rados(conffile=conf, conf={"rbd_blocklist_on_break_lock": "false"})
cl2.connect()
io2 = cl2.open_ioctx("rbd")
img2 = rbd.Image(io2, LK_ADV)
raises("break_lock unknown cookie -> ImageNotFound", rbd.ImageNotFound, img2.break_lock, me, "nope")
img2.break_lock(me, "s1")
img2.break_lock(me, "s2")
check("break_lock", img.list_lockers() == [], repr(img.list_lockers()))
img2.close()
img.close()
ro = rbd.Image(io, LK_ADV, read_only=True)
try:
    ro.lock_exclusive("ro")
    check("lock_exclusive on a read-only handle", ro.list_lockers() != [])
    ro.unlock("ro")
except rbd.ReadOnlyImage:
    check("lock_exclusive on a read-only handle -> ReadOnlyImage", True)
ro.close()

# ---- the managed exclusive lock ----
R.create(io, LK_EX, 4 * MB)
img = rbd.Image(io, LK_EX)
check("fresh handle is not the owner", not img.is_exclusive_lock_owner())
check("lock_get_owners unlocked is []", list(img.lock_get_owners()) == [])
img.write(b"x" * 4096, 0)
check("first write takes the lock", img.is_exclusive_lock_owner())
owners = list(img.lock_get_owners())
check("lock_get_owners after a write", len(owners) == 1 and owners[0]["mode"] == rbd.RBD_LOCK_MODE_EXCLUSIVE
      and owners[0]["owner"] != "", repr(owners))
img.lock_release()
check("lock_release", not img.is_exclusive_lock_owner() and list(img.lock_get_owners()) == [])
raises("lock_release when not owner -> InvalidArgument", rbd.InvalidArgument, img.lock_release)
raises("lock_acquire shared -> OperationNotSupported", rbd.OperationNotSupported,
       img.lock_acquire, rbd.RBD_LOCK_MODE_SHARED)
img.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
check("lock_acquire", img.is_exclusive_lock_owner())
img.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
check("lock_acquire twice", img.is_exclusive_lock_owner())
owner = list(img.lock_get_owners())[0]["owner"]
raises("lock_break shared -> OperationNotSupported", rbd.OperationNotSupported,
       img.lock_break, rbd.RBD_LOCK_MODE_SHARED, owner)
raises("lock_break other owner -> ImageBusy", rbd.ImageBusy,
       img.lock_break, rbd.RBD_LOCK_MODE_EXCLUSIVE, "client.999999")
img.write(b"y" * 4096, 4096)
check("read back", img.read(0, 8192) == b"x" * 4096 + b"y" * 4096)
img.lock_release()
raises("lock_break unlocked -> ImageNotFound", rbd.ImageNotFound,
       img.lock_break, rbd.RBD_LOCK_MODE_EXCLUSIVE, owner)
img.close()
ro = rbd.Image(io, LK_EX, read_only=True)
raises("lock_acquire read-only -> InvalidArgument", rbd.InvalidArgument, ro.lock_acquire, rbd.RBD_LOCK_MODE_EXCLUSIVE)
raises("lock_release read-only -> InvalidArgument", rbd.InvalidArgument, ro.lock_release)
raises("lock_get_owners read-only -> InvalidArgument", rbd.InvalidArgument, lambda: list(ro.lock_get_owners()))
raises("lock_break read-only -> ReadOnlyImage", rbd.ReadOnlyImage, ro.lock_break, rbd.RBD_LOCK_MODE_EXCLUSIVE, owner)
raises("lock_acquire read-only shared -> OperationNotSupported", rbd.OperationNotSupported,
       ro.lock_acquire, rbd.RBD_LOCK_MODE_SHARED)
check("read-only handle is not the owner", not ro.is_exclusive_lock_owner())
ro.close()
R.create(io, LK_NOFEAT, 4 * MB, old_format=False, features=rbd.RBD_FEATURE_LAYERING)
img = rbd.Image(io, LK_NOFEAT)
raises("lock_acquire without exclusive-lock -> InvalidArgument", rbd.InvalidArgument,
       img.lock_acquire, rbd.RBD_LOCK_MODE_EXCLUSIVE)
raises("lock_get_owners without exclusive-lock -> InvalidArgument", rbd.InvalidArgument,
       lambda: list(img.lock_get_owners()))
img.write(b"z" * 512, 0)
check("no exclusive-lock: never the owner", not img.is_exclusive_lock_owner())
img.close()

for n in [LK_ADV, LK_EX, LK_NOFEAT]:
    R.remove(io, n)
io2.close()
cl2.shutdown()
io.close()
cl.shutdown()
sys.exit(1 if failures else 0)
