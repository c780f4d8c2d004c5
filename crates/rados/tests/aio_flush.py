"""aio_flush liveness and ordering through python3-rbd (run with /usr/bin/python3 on the staged
libraries), and the calls a completion callback may make without deadlocking the library.

Regression test of a deadlock: rbd_aio_flush used to park a worker-pool thread until the writes
before it had completed, while those writes' completions queued behind it on the same fixed pool,
so 8 pairs of aio_write + aio_flush in flight never completed. Every scenario runs under a
watchdog: a hang prints "FAIL NAME: hung ..." and exits at once (nonzero) instead of hanging.

usage: CEPH_CONF=... aio_flush.py CONF   (CONF: a ceph.conf whose [global] shale_store names a
                                          fresh store; SHALE_TEST_HANG=seconds, default 60;
                                          SHALE_TEST_ONLY=substring of the checks to run)
Prints one "ok NAME" / "FAIL NAME: why" line per check.
"""
import ctypes as C
import os
import sys
import threading

import rados
import rbd

conf = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("CEPH_CONF")
HANG = float(os.environ.get("SHALE_TEST_HANG", "60"))
ONLY = os.environ.get("SHALE_TEST_ONLY", "")  # run only the checks whose name contains this
BS = 4096
failures = 0


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why))
    sys.stdout.flush()


def watched(name, fn):
    """Run fn() -> (cond, why) in a thread; a hang is a failure that ends the process."""
    if ONLY not in name:
        return
    out = {}

    def body():
        try:
            out["r"] = fn()
        except Exception as e:  # noqa: BLE001 - reported as the check's failure
            out["r"] = (False, "raised %s: %s" % (type(e).__name__, e))

    t = threading.Thread(target=body, daemon=True)
    t.start()
    t.join(HANG)
    if t.is_alive():
        check(name, False, "hung for %.0f s (deadlock)" % HANG)
        sys.stdout.flush()
        os._exit(1)
    check(name, *out["r"])


def pattern(i):
    return bytes([(i * 7 + 1) & 0xFF]) * BS


class Counter:
    """Counts callbacks; wait(n) returns whether n arrived within the hang limit."""

    def __init__(self):
        self.cv = threading.Condition()
        self.n = 0
        self.rvals = []

    def hit(self, comp=None):
        with self.cv:
            self.n += 1
            if comp is not None:
                self.rvals.append(comp.get_return_value())
            self.cv.notify_all()

    def wait(self, n):
        with self.cv:
            return self.cv.wait_for(lambda: self.n >= n, HANG)


cluster = rados.Rados(conffile=conf, rados_id="admin")
cluster.connect()
ioctx = cluster.open_ioctx("rbd")
R = rbd.RBD()
SIZE = 64 << 20
R.create(ioctx, "flushimg", SIZE)


def pairs(n):
    """n pairs of aio_write + aio_flush in flight on one image."""
    def run():
        img = rbd.Image(ioctx, "flushimg")
        w, f = Counter(), Counter()
        base = n * 1000
        comps = []
        for i in range(n):
            comps.append(img.aio_write(pattern(base + i), i * BS, w.hit))
            comps.append(img.aio_flush(f.hit))
        ok = w.wait(n) and f.wait(n)
        if not ok:
            return False, "%d/%d writes and %d/%d flushes completed" % (w.n, n, f.n, n)
        bad = [c.get_return_value() for c in comps if c.get_return_value() != 0]
        data_ok = all(img.read(i * BS, BS) == pattern(base + i) for i in range(n))
        img.close()
        return (not bad and data_ok), "nonzero returns %r, data ok %s" % (bad[:5], data_ok)
    return run


for n in (1, 8, 32, 64):
    watched("%d x (aio_write + aio_flush) in flight on one image complete" % n, pairs(n))


def flush_in_callback(n):
    """Each write's callback submits an aio_flush (QEMU-style re-entry)."""
    def run():
        img = rbd.Image(ioctx, "flushimg")
        w, f = Counter(), Counter()
        flushes = []
        lock = threading.Lock()

        def on_write(comp):
            c = img.aio_flush(f.hit)
            with lock:
                flushes.append(c)
            w.hit()

        for i in range(n):
            img.aio_write(pattern(i), i * BS, on_write)
        ok = w.wait(n) and f.wait(n)
        why = "%d/%d writes, %d/%d flushes" % (w.n, n, f.n, n)
        if ok:
            bad = [c.get_return_value() for c in flushes if c.get_return_value() != 0]
            ok, why = not bad, "flush returns %r" % bad[:5]
        img.close()
        return ok, why
    return run


watched("aio_flush inside 32 aio_write callbacks completes", flush_in_callback(32))


def sync_flush_in_callback(n):
    """Each write's callback makes a synchronous rbd_flush: it waits for the requests before it,
    whose completions may be queued behind every pool thread."""
    def run():
        img = rbd.Image(ioctx, "flushimg")
        w = Counter()
        errs = []

        def on_write(comp):
            try:
                img.flush()
            except Exception as e:  # noqa: BLE001
                errs.append(e)
            w.hit()

        for i in range(n):
            img.aio_write(pattern(i), i * BS, on_write)
        ok = w.wait(n)
        img.close()
        return ok and not errs, "%d/%d callbacks returned, errors %r" % (w.n, n, errs[:3])
    return run


watched("rbd_flush inside 64 aio_write callbacks returns", sync_flush_in_callback(64))


# ---- C level (ctypes), for the calls python3-rbd does not expose: rbd_aio_wait_for_complete
# and rbd_aio_release from inside callbacks
crados = C.CDLL("librados.so.2")
crbd = C.CDLL("librbd.so.1")
CB = C.CFUNCTYPE(None, C.c_void_p, C.c_void_p)
crbd.rbd_aio_create_completion.argtypes = [C.c_void_p, CB, C.POINTER(C.c_void_p)]
crbd.rbd_aio_write.argtypes = [C.c_void_p, C.c_uint64, C.c_size_t, C.c_char_p, C.c_void_p]
crbd.rbd_aio_flush.argtypes = [C.c_void_p, C.c_void_p]
crbd.rbd_aio_wait_for_complete.argtypes = [C.c_void_p]
crbd.rbd_aio_is_complete.argtypes = [C.c_void_p]
crbd.rbd_aio_release.argtypes = [C.c_void_p]
crbd.rbd_aio_get_return_value.argtypes = [C.c_void_p]
crbd.rbd_aio_get_return_value.restype = C.c_ssize_t
crbd.rbd_open.argtypes = [C.c_void_p, C.c_char_p, C.POINTER(C.c_void_p), C.c_char_p]
crbd.rbd_close.argtypes = [C.c_void_p]
ccl, cio = C.c_void_p(), C.c_void_p()
assert crados.rados_create(C.byref(ccl), b"admin") == 0
assert crados.rados_conf_read_file(ccl, conf.encode()) == 0
assert crados.rados_connect(ccl) == 0
assert crados.rados_ioctx_create(ccl, b"rbd", C.byref(cio)) == 0
BUF = C.create_string_buffer(b"\x5c" * BS, BS)
keep = []  # ctypes callbacks must outlive every request that may call them


def c_open():
    im = C.c_void_p()
    r = crbd.rbd_open(cio, b"flushimg", C.byref(im), None)
    if r != 0:
        raise OSError(-r, "rbd_open")
    return im


def c_completion(fn):
    cb = CB(fn)
    keep.append(cb)
    c = C.c_void_p()
    if crbd.rbd_aio_create_completion(None, cb, C.byref(c)) != 0:
        raise OSError("rbd_aio_create_completion")
    return c


def wait_own_in_callback():
    """rbd_aio_wait_for_complete on the completion whose callback is running returns (librbd
    would wait forever), and the value is already set."""
    def run():
        im = c_open()
        w = Counter()
        seen = []

        def cb(c, _arg):
            seen.append((crbd.rbd_aio_wait_for_complete(c), crbd.rbd_aio_get_return_value(c)))
            w.hit()

        comps = [c_completion(cb) for _ in range(2)]
        crbd.rbd_aio_write(im, 0, BS, BUF, comps[0])
        crbd.rbd_aio_flush(im, comps[1])
        ok = w.wait(2)
        for c in comps:
            crbd.rbd_aio_release(c)
        crbd.rbd_close(im)
        return ok and seen == [(0, 0), (0, 0)], "%d/2 callbacks returned, seen %r" % (w.n, seen)
    return run


watched("rbd_aio_wait_for_complete inside its own callback returns", wait_own_in_callback())


def wait_next_in_callback(n):
    """Callback i waits for request i+1 to complete: up to n-1 pool threads block at once."""
    def run():
        im = c_open()
        w = Counter()
        comps = []
        submitted = threading.Event()

        def make(i):
            def cb(c, _arg):
                if i + 1 < n:
                    submitted.wait(HANG)
                    crbd.rbd_aio_wait_for_complete(comps[i + 1])
                w.hit()
            return cb

        comps.extend(c_completion(make(i)) for i in range(n))
        for i in range(n):
            crbd.rbd_aio_write(im, i * BS, BS, BUF, comps[i])
        submitted.set()
        ok = w.wait(n)
        done = sum(crbd.rbd_aio_is_complete(c) == 1 for c in comps)
        for c in comps:
            crbd.rbd_aio_wait_for_complete(c)
            crbd.rbd_aio_release(c)
        crbd.rbd_close(im)
        return ok, "%d/%d callbacks returned, %d complete" % (w.n, n, done)
    return run


watched("rbd_aio_wait_for_complete of the next request in 32 callbacks", wait_next_in_callback(32))


def release_in_callback(n):
    """Every callback releases its own completion (QEMU does), with n write + flush pairs."""
    def run():
        im = c_open()
        w = Counter()

        def cb(c, _arg):
            crbd.rbd_aio_release(c)
            w.hit()

        for i in range(n):
            crbd.rbd_aio_write(im, i * BS, BS, BUF, c_completion(cb))
            crbd.rbd_aio_flush(im, c_completion(cb))
        ok = w.wait(2 * n)
        crbd.rbd_close(im)
        return ok, "%d/%d callbacks returned" % (w.n, 2 * n)
    return run


watched("rbd_aio_release inside 128 callbacks (64 write + flush pairs)", release_in_callback(64))


def close_in_callback(n, k):
    """k other handles of the image are closed from inside write callbacks (rbd_close waits for
    the image's requests in flight)."""
    def run():
        img = rbd.Image(ioctx, "flushimg")
        others = [rbd.Image(ioctx, "flushimg") for _ in range(k)]
        w = Counter()
        errs = []

        def make(i):
            def cb(comp):
                if i < k:
                    try:
                        others[i].close()
                    except Exception as e:  # noqa: BLE001
                        errs.append(e)
                w.hit()
            return cb

        for i in range(n):
            img.aio_write(pattern(i), i * BS, make(i))
            img.aio_flush(w.hit)
        ok = w.wait(2 * n)
        img.close()
        return ok and not errs, "%d/%d callbacks returned, errors %r" % (w.n, 2 * n, errs[:3])
    return run


watched("rbd_close of 16 handles inside callbacks, 64 requests in flight", close_in_callback(64, 16))


def data_after_reopen():
    def run():
        img = rbd.Image(ioctx, "flushimg")
        w, f = Counter(), Counter()
        for i in range(16):
            img.aio_write(pattern(900 + i), (1000 + i) * BS, w.hit)
        img.aio_flush(f.hit)
        ok = f.wait(1) and w.wait(16)
        img.close()
        img = rbd.Image(ioctx, "flushimg", read_only=True)
        same = all(img.read((1000 + i) * BS, BS) == pattern(900 + i) for i in range(16))
        img.close()
        return ok and same, "flush and %d/16 writes done %s, data same %s" % (w.n, ok, same)
    return run


watched("the writes before an aio_flush are done when it completes, and read back", data_after_reopen())

R.remove(ioctx, "flushimg")
crados.rados_ioctx_destroy(cio)
crados.rados_shutdown(ccl)
ioctx.close()
cluster.shutdown()
print("%d failed" % failures)
sys.exit(1 if failures else 0)
