"""Data-safety regressions through python3-rbd (the reproductions of the data-safety issue):

- four handles creating the same snapshot at once: exactly one wins, the others get
  ImageExists, and the snapshot the winner created opens and reads (a loser's error path
  used to delete the winner's checkpoint);
- a writer killed (SIGKILL) after write + flush: a read-only open afterwards shows the
  flushed data (it used to show zeros until a writable open replayed the journal);
- with an S3 store (SHALE_TEST_S3 and AWS_* set): the store goes away behind a TCP proxy;
  write + flush are still acknowledged (journal), and Image.close() returns within a bound
  (it used to block forever); the data is there after the store comes back.

usage: CEPH_CONF=... data_safety.py
Prints one "ok NAME" / "FAIL NAME: why" line per check.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import rados
import rbd

failures = 0
MB = 1 << 20


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name, flush=True)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why), flush=True)


def connect():
    c = rados.Rados(conffile=os.environ.get("CEPH_CONF", ""))
    c.connect()
    return c, c.open_ioctx("rbd")


def concurrent_snapshots():
    cluster, io = connect()
    rbd.RBD().create(io, "ds-snap", 16 * MB)
    with rbd.Image(io, "ds-snap") as img:
        img.write(b"\x07" * 4096, 0)
        img.flush()
    results = []
    barrier = threading.Barrier(4)

    def one():
        img = rbd.Image(io, "ds-snap")
        try:
            barrier.wait()
            img.create_snap("s")
            results.append("ok")
        except rbd.ImageExists:
            results.append("exists")
        except Exception as e:  # noqa: BLE001
            results.append(repr(e))
        finally:
            img.close()

    ts = [threading.Thread(target=one) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    check("concurrent create_snap: exactly one wins", results.count("ok") == 1, results)
    check("concurrent create_snap: the others get ImageExists",
          results.count("exists") == 3, results)
    with rbd.Image(io, "ds-snap", snapshot="s", read_only=True) as snap:
        check("concurrent create_snap: the snapshot opens and reads",
              snap.read(0, 4096) == b"\x07" * 4096)
    with rbd.Image(io, "ds-snap") as img:
        names = [s["name"] for s in img.list_snaps()]
        check("concurrent create_snap: listed once", names == ["s"], names)
    io.close()
    cluster.shutdown()


CHILD = r"""
import os, signal, sys, rados, rbd
c = rados.Rados(conffile=os.environ.get("CEPH_CONF", "")); c.connect()
io = c.open_ioctx("rbd")
img = rbd.Image(io, sys.argv[1])
img.write(b"\x5a" * 65536, 1 << 20)
img.flush()
print("flushed", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def killed_writer_then_read_only():
    cluster, io = connect()
    rbd.RBD().create(io, "ds-crash", 16 * MB)
    p = subprocess.run([sys.executable, "-c", CHILD, "ds-crash"], capture_output=True,
                       text=True, timeout=120)
    check("killed writer: flushed before the kill", "flushed" in p.stdout, p.stdout + p.stderr)
    with rbd.Image(io, "ds-crash", read_only=True) as img:
        data = img.read(1 << 20, 65536)
        check("killed writer: a read-only open shows the flushed write",
              data == b"\x5a" * 65536, "read %r..." % data[:8])
    with rbd.Image(io, "ds-crash") as img:
        check("killed writer: and so does a writable open",
              img.read(1 << 20, 65536) == b"\x5a" * 65536)
    io.close()
    cluster.shutdown()


class Proxy:
    """A TCP forwarder to the S3 endpoint that can be cut (the store "goes away")."""

    def __init__(self, host, port):
        self.target = (host, port)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.up = True
        self.conns = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if not self.up:
                c.close()
                continue
            try:
                s = socket.create_connection(self.target)
            except OSError:
                c.close()
                continue
            self.conns += [c, s]
            for a, b in ((c, s), (s, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    def pipe(self, a, b):
        try:
            while self.up:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.close()
            except OSError:
                pass

    def cut(self):
        self.up = False
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.conns = []

    def restore(self):
        self.up = True


def close_during_an_outage(url):
    ep = os.environ.get("AWS_ENDPOINT_URL", "")
    hostport = ep.split("//", 1)[-1].rstrip("/")
    host, _, port = hostport.partition(":")
    proxy = Proxy(host or "127.0.0.1", int(port or 80))
    os.environ["AWS_ENDPOINT_URL"] = "http://127.0.0.1:%d" % proxy.port
    conf = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ds-outage-%d.conf" % os.getpid())
    with open(conf, "w") as f:
        f.write("[global]\nshale_store = %s/outage-%d\nshale_journal = ring\n" % (url, os.getpid()))
    c = rados.Rados(conffile=conf)
    c.connect()
    io = c.open_ioctx("rbd")
    rbd.RBD().create(io, "ds-outage", 16 * MB)
    img = rbd.Image(io, "ds-outage")
    img.write(b"\x11" * 65536, 0)
    img.flush()
    proxy.cut()
    t0 = time.time()
    img.write(b"\x22" * 65536, 65536)
    img.flush()
    check("outage: write + flush acknowledged from the journal", time.time() - t0 < 30)
    t0 = time.time()
    done = []

    def closer():
        try:
            img.close()
            done.append("ok")
        except Exception as e:  # noqa: BLE001
            done.append(repr(e))

    t = threading.Thread(target=closer, daemon=True)
    t.start()
    t.join(90)
    check("outage: Image.close() returns within 90 s", bool(done),
          "still blocked after %.0f s" % (time.time() - t0))
    proxy.restore()
    if done:
        with rbd.Image(io, "ds-outage") as img2:
            check("outage: both writes are there after the store is back",
                  img2.read(0, 65536) == b"\x11" * 65536
                  and img2.read(65536, 65536) == b"\x22" * 65536)
        io.close()
        c.shutdown()
    os.unlink(conf)


concurrent_snapshots()
killed_writer_then_read_only()
s3 = os.environ.get("SHALE_TEST_S3")
if s3 and os.environ.get("AWS_ENDPOINT_URL") and os.environ.get("DS_OUTAGE") == "1":
    close_during_an_outage(s3.rstrip("/"))
sys.exit(1 if failures else 0)
