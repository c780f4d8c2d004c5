"""Exclusive-lock ownership per open image handle, with librbd's rules, through python3-rbd:
the same scenario runs with three handles in one process (two rados connections), then with
three processes; a ctypes part checks the C return values. Every expectation was measured on
Ceph 16.2.15 (ceph-mini): run it there with REAL=1.

  automatic transitions: a write, discard or flush moves the lock to the handle doing it;
  rbd_lock_acquire (even a failed one) switches a handle to the manual policy: while it holds
  the lock every other handle's write, discard, flush, lock_acquire, snap_rollback and
  snap_set_limit is EROFS, and its own writes are EROFS whenever it does not hold the lock;
  lock_release by a non-owner is EINVAL; maintenance (snap create/protect, resize, metadata)
  from a non-owner succeeds without moving the lock; a read-only or snapshot handle is never
  the owner; closing the owner lets the lock go; a handle whose snapshot was removed (or
  removed and created again) reads ENOENT.

usage: CEPH_CONF=... lock_handles.py   (REAL=1 on a real cluster)
Prints one "ok NAME" / "FAIL NAME: why" line per check.
"""
import ctypes as C
import errno
import os
import subprocess
import sys
import time

import rados
import rbd

MB = 1 << 20
REAL = os.environ.get("REAL") == "1"
CONF = os.environ.get("CEPH_CONF")
failures = 0


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name, flush=True)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why), flush=True)


def run(img, cmd, arg):
    """One operation on an Image: returns "ok", "ok <value>" or "err <errno>"."""
    try:
        if cmd == "w":
            img.write(bytes([int(arg[1])]) * 4096, int(arg[0]))
        elif cmd == "discard":
            img.discard(int(arg[0]), 4096)
        elif cmd == "flush":
            img.flush()
        elif cmd == "owner":
            return "ok %d" % int(img.is_exclusive_lock_owner())
        elif cmd == "owners":
            return "ok %d" % len(list(img.lock_get_owners()))
        elif cmd == "acq":
            img.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
        elif cmd == "rel":
            img.lock_release()
        elif cmd == "r":
            return "ok %s" % ",".join(str(b) for b in sorted(set(img.read(int(arg[0]), 4096))))
        elif cmd == "snap":
            img.create_snap(arg[0])
        elif cmd == "rmsnap":
            img.remove_snap(arg[0])
        elif cmd == "protect":
            img.protect_snap(arg[0])
        elif cmd == "unprotect":
            img.unprotect_snap(arg[0])
        elif cmd == "rollback":
            img.rollback_to_snap(arg[0])
        elif cmd == "limit":
            img.set_snap_limit(int(arg[0]))
        elif cmd == "resize":
            img.resize(int(arg[0]))
        elif cmd == "meta":
            img.metadata_set(arg[0], arg[1])
        elif cmd == "setsnap":
            img.set_snap(arg[0] if arg[0] != "-" else None)
        elif cmd == "snapsize":
            return "ok %d" % [x["size"] for x in img.list_snaps() if x["name"] == arg[0]][0]
        elif cmd == "size":
            return "ok %d" % img.size()
        elif cmd == "flatten":
            img.flatten()
        elif cmd == "parent":
            return "ok %s" % img.get_parent_image_spec()["image_name"]
        elif cmd == "inv":
            img.invalidate_cache()
        elif cmd == "close":
            img.close()
        else:
            return "bad command"
        return "ok"
    except rbd.Error as e:
        return "err %s" % getattr(e, "errno", None)


def child(name):
    """A handle in a process of its own, serving commands from stdin."""
    cl = rados.Rados(conffile=CONF)
    cl.connect()
    io = cl.open_ioctx("rbd")
    img = rbd.Image(io, name)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if words[0] == "quit":
            try:
                img.close()
            except rbd.Error:
                pass
            io.close()
            cl.shutdown()
            os._exit(0)
        print(run(img, words[0], words[1:]), flush=True)


class Local:
    """A handle in this process, on a rados connection of its own."""

    def __init__(self, name):
        self.cl = rados.Rados(conffile=CONF)
        self.cl.connect()
        self.io = self.cl.open_ioctx("rbd")
        self.img = rbd.Image(self.io, name)

    def do(self, cmd, *arg):
        return run(self.img, cmd, [str(a) for a in arg])

    def end(self):
        try:
            self.img.close()
        except rbd.Error:
            pass  # closed by the scenario
        self.io.close()
        self.cl.shutdown()


class Remote:
    """A handle in a child process."""

    def __init__(self, name):
        self.p = subprocess.Popen([sys.executable, "-u", __file__, "child", name],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def do(self, cmd, *arg):
        self.p.stdin.write(" ".join([cmd] + [str(a) for a in arg]) + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def end(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
        except OSError:
            pass
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


EROFS = "err %d" % errno.EROFS
EINVAL = "err %d" % errno.EINVAL
ENOENT = "err %d" % errno.ENOENT


def owners(where, hs, want):
    got = [h.do("owner") for h in hs]
    check("%s: owner flags %s" % (where, want), got == ["ok %d" % w for w in want], repr(got))


def scenario(kind, make, io):
    name = "lkh-%s-%d" % (kind, os.getpid())
    rbd.RBD().create(io, name, 8 * MB)
    a, b, c = make(name), make(name), make(name)
    k = "[%s]" % kind

    def expect(what, got, want):
        check("%s %s -> %s" % (k, what, want), got == want, repr(got))

    try:
        owners(k + " fresh handles", [a, b, c], [0, 0, 0])
        expect("a writes", a.do("w", 0, 65), "ok")
        owners(k + " after a's write", [a, b, c], [1, 0, 0])
        expect("b writes (the lock moves)", b.do("w", 4096, 66), "ok")
        owners(k + " after b's write", [a, b, c], [0, 1, 0])
        expect("b reads a's write", b.do("r", 0), "ok 65")
        expect("a flushes (the lock moves back)", a.do("flush"), "ok")
        owners(k + " after a's flush", [a, b, c], [1, 0, 0])
        expect("a discards", a.do("discard", 8192), "ok")
        expect("a creates snapshot s0", a.do("snap", "s0"), "ok")
        # maintenance from a non-owner while the owner is automatic: the owner runs it (in
        # another process too), the lock stays with it
        expect("b creates snapshot sb while a owns the lock", b.do("snap", "sb"), "ok")
        expect("b resizes while a owns the lock", b.do("resize", 12 * MB), "ok")
        owners(k + " after b's maintenance (the lock stays with a)", [a, b, c], [1, 0, 0])
        expect("b's snapshot exists", a.do("snapsize", "sb"), "ok %d" % (8 * MB))
        expect("a sees b's resize", a.do("size"), "ok %d" % (12 * MB))

        # a takes the lock explicitly: transitions stop
        expect("a lock_acquire", a.do("acq"), "ok")
        owners(k + " after a's lock_acquire", [a, b, c], [1, 0, 0])
        expect("c writes while a holds it explicitly", c.do("w", 0, 67), EROFS)
        expect("c discards", c.do("discard", 0), EROFS)
        expect("c flushes", c.do("flush"), EROFS)
        expect("c lock_release (not the owner)", c.do("rel"), EINVAL)
        expect("c snap_set_limit", c.do("limit", 10), EROFS)
        # librbd forwards these to the owner (Shale too, through the lock object)
        expect("c creates a snapshot (the owner does it)", c.do("snap", "s1"), "ok")
        expect("c resizes (the owner does it)", c.do("resize", 16 * MB), "ok")
        expect("c's snapshot exists", c.do("snapsize", "s1"), "ok %d" % (12 * MB))
        expect("the size changed", a.do("size"), "ok %d" % (16 * MB))
        expect("c rolls back", c.do("rollback", "s0"), EROFS)
        expect("c protects the snapshot", c.do("protect", "s0"), "ok")
        expect("c unprotects it", c.do("unprotect", "s0"), "ok")
        expect("c sets metadata", c.do("meta", "k", "v"), "ok")
        owners(k + " after c's maintenance", [a, b, c], [1, 0, 0])
        expect("b lock_acquire (b becomes manual)", b.do("acq"), EROFS)
        expect("a still writes", a.do("w", 0, 68), "ok")
        expect("a flushes", a.do("flush"), "ok")
        # Another process's handle sees a flushed write once it reloads its view (at most a
        # second later, or at once after rbd_invalidate_cache; librbd reads the OSDs).
        expect("c invalidates its cache", c.do("inv"), "ok")
        expect("c reads a's data", c.do("r", 0), "ok 68")
        expect("a lock_release", a.do("rel"), "ok")
        owners(k + " after a's release", [a, b, c], [0, 0, 0])
        expect("lock_get_owners after the release", c.do("owners"), "ok 0")

        # manual handles (a, b) never take the lock by writing; automatic c does
        expect("b (manual) writes, lock free", b.do("w", 0, 69), EROFS)
        expect("c (automatic) writes, lock free", c.do("w", 0, 70), "ok")
        owners(k + " after c's write", [a, b, c], [0, 0, 1])
        expect("a (manual) writes, c owns", a.do("w", 0, 71), EROFS)
        expect("a (manual) rolls back, c owns", a.do("rollback", "s0"), EROFS)
        expect("a lock_acquire, c (automatic) owns", a.do("acq"), "ok")
        owners(k + " after a takes it from c", [a, b, c], [1, 0, 0])
        expect("c writes, a manual owner", c.do("w", 0, 72), EROFS)
        expect("a closes (holding the lock)", a.do("close"), "ok")
        expect("c writes after a closed", c.do("w", 0, 73), "ok")
        owners(k + " after c's write", [b, c], [0, 1])
        expect("b (manual) rolls back, c owns", b.do("rollback", "s0"), EROFS)

        # a handle at a snapshot is never the owner; it gives the lock up
        expect("c sets itself to s0", c.do("setsnap", "s0"), "ok")
        owners(k + " c at a snapshot", [c], [0])
        expect("c writes at a snapshot", c.do("w", 0, 74), EROFS)
        expect("c back at the head", c.do("setsnap", "-"), "ok")
        owners(k + " c back at the head", [c], [0])
        expect("c writes again", c.do("w", 0, 75), "ok")
        owners(k + " after that write", [c], [1])
    finally:
        for h in (a, b, c):
            h.end()
    img = rbd.Image(io, name)
    for s in list(img.list_snaps()):
        img.remove_snap(s["name"])
    img.close()
    rbd.RBD().remove(io, name)


def forwarded_flatten(io):
    """A flatten from another process while the owner holds the lock explicitly is run by
    the owner (librbd forwards it); the clone then has no parent."""
    parent, clone = "lkh-par-%d" % os.getpid(), "lkh-cln-%d" % os.getpid()
    R = rbd.RBD()
    R.create(io, parent, 4 * MB)
    with rbd.Image(io, parent) as p:
        p.write(b"p" * 4096, 0)
        p.create_snap("base")
        p.protect_snap("base")
    R.clone(io, parent, "base", io, clone)
    a, b = Remote(clone), Remote(clone)
    try:
        check("[flatten] a lock_acquire", a.do("acq") == "ok")
        check("[flatten] b sees the parent", b.do("parent") == "ok " + parent)
        r = b.do("flatten")
        check("[flatten] b flattens (the owner does it)", r == "ok", r)
        r = b.do("parent")
        check("[flatten] the clone has no parent any more", r == "err %d" % errno.ENOENT, r)
        check("[flatten] a still owns the lock", a.do("owner") == "ok 1")
        check("[flatten] the data stayed", b.do("r", 0) == "ok 112")
    finally:
        a.end()
        b.end()
    R.remove(io, clone)
    with rbd.Image(io, parent) as p:
        p.unprotect_snap("base")
        p.remove_snap("base")
    R.remove(io, parent)


def removed_snapshot(io):
    """A handle whose snapshot was removed reads ENOENT; so when one of the same name is
    created again. librbd 16.2.15 may still answer the first read after the removal from its
    cache (measured: b'aa', then ENOENT), so the second read is checked."""
    name = "lkh-snap-%d" % os.getpid()
    rbd.RBD().create(io, name, 4 * MB)
    head = rbd.Image(io, name)
    head.write(b"a" * 4096, 0)
    head.create_snap("s")
    at = rbd.Image(io, name, snapshot="s")
    check("reading the snapshot", at.read(0, 2) == b"aa")
    head.remove_snap("s")
    for i in range(2):
        try:
            r = at.read(0, 2)
        except rbd.ImageNotFound:
            r = "ENOENT"
    check("read after the snapshot was removed -> ENOENT", r == "ENOENT", repr(r))
    at.close()
    head.create_snap("t")
    at = rbd.Image(io, name, snapshot="t")
    head.remove_snap("t")
    head.create_snap("t")
    for i in range(2):
        try:
            r = at.read(0, 2)
        except rbd.ImageNotFound:
            r = "ENOENT"
    check("read after the snapshot was removed and created again -> ENOENT", r == "ENOENT", repr(r))
    at.close()
    # removed by another process: noticed within a second or so (librbd: at its next refresh)
    head.create_snap("u")
    at = rbd.Image(io, name, snapshot="u")
    other = Remote(name)
    check("another process removes the snapshot", other.do("rmsnap", "u") == "ok")
    other.end()
    deadline = time.time() + 5
    while True:
        try:
            r = at.read(0, 2)
        except rbd.ImageNotFound:
            r = "ENOENT"
        if r == "ENOENT" or time.time() > deadline:
            break
        time.sleep(0.1)
    check("read after another process removed the snapshot -> ENOENT (within 5 s)", r == "ENOENT", repr(r))
    at.close()
    ro = rbd.Image(io, name, read_only=True)
    check("a read-only handle is never the owner", not ro.is_exclusive_lock_owner())
    ro.close()
    head.remove_snap("t")
    head.close()
    rbd.RBD().remove(io, name)


def c_level(io_handle):
    """rbd_is_exclusive_lock_owner / rbd_lock_acquire / rbd_lock_release / rbd_write return
    values on two handles of one ioctx."""
    lib = C.CDLL("librbd.so.1")
    lr = C.CDLL("librados.so.2")
    P = C.c_void_p
    lib.rbd_open.argtypes = [P, C.c_char_p, C.POINTER(P), C.c_char_p]
    lib.rbd_close.argtypes = [P]
    lib.rbd_write.argtypes = [P, C.c_uint64, C.c_size_t, C.c_char_p]
    lib.rbd_write.restype = C.c_ssize_t
    lib.rbd_is_exclusive_lock_owner.argtypes = [P, C.POINTER(C.c_int)]
    lib.rbd_lock_acquire.argtypes = [P, C.c_int]
    lib.rbd_lock_release.argtypes = [P]
    lib.rbd_flush.argtypes = [P]
    cl, io = P(), P()
    lr.rados_create(C.byref(cl), None)
    lr.rados_conf_read_file(cl, None)
    lr.rados_connect(cl)
    lr.rados_ioctx_create(cl, b"rbd", C.byref(io))
    name = "lkh-c-%d" % os.getpid()
    rbd.RBD().create(io_handle, name, 4 * MB)
    h1, h2 = P(), P()
    check("C: two rbd_open", lib.rbd_open(io, name.encode(), C.byref(h1), None) == 0
          and lib.rbd_open(io, name.encode(), C.byref(h2), None) == 0)

    def owner(h):
        v = C.c_int(-1)
        r = lib.rbd_is_exclusive_lock_owner(h, C.byref(v))
        return (r, v.value)

    buf = C.create_string_buffer(b"q" * 4096)
    check("C: rbd_write h1", lib.rbd_write(h1, 0, 4096, buf) == 4096)
    check("C: owners after h1's write", (owner(h1), owner(h2)) == ((0, 1), (0, 0)),
          repr((owner(h1), owner(h2))))
    check("C: rbd_write h2 moves the lock", lib.rbd_write(h2, 0, 4096, buf) == 4096)
    check("C: owners after h2's write", (owner(h1), owner(h2)) == ((0, 0), (0, 1)),
          repr((owner(h1), owner(h2))))
    check("C: rbd_lock_acquire h1", lib.rbd_lock_acquire(h1, 0) == 0)
    r = lib.rbd_lock_acquire(h2, 0)
    check("C: rbd_lock_acquire h2 -> -EROFS", r == -errno.EROFS, r)
    r = lib.rbd_write(h2, 0, 4096, buf)
    check("C: rbd_write h2 -> -EROFS", r == -errno.EROFS, r)
    r = lib.rbd_flush(h2)
    check("C: rbd_flush h2 -> -EROFS", r == -errno.EROFS, r)
    r = lib.rbd_lock_release(h2)
    check("C: rbd_lock_release h2 -> -EINVAL", r == -errno.EINVAL, r)
    r = lib.rbd_lock_release(h1)
    check("C: rbd_lock_release h1 -> 0", r == 0, r)
    check("C: nobody owns it", (owner(h1), owner(h2)) == ((0, 0), (0, 0)),
          repr((owner(h1), owner(h2))))
    lib.rbd_close(h1)
    lib.rbd_close(h2)
    lr.rados_ioctx_destroy(io)
    lr.rados_shutdown(cl)
    rbd.RBD().remove(io_handle, name)


def main():
    cl = rados.Rados(conffile=CONF)
    cl.connect()
    io = cl.open_ioctx("rbd")
    scenario("one process", Local, io)
    scenario("three processes", Remote, io)
    forwarded_flatten(io)
    removed_snapshot(io)
    c_level(io)
    io.close()
    cl.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        child(sys.argv[2])
    else:
        sys.exit(main())
