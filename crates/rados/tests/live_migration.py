"""QEMU's live-migration protocol on one image, in two processes, through python3-rbd.

  source S opens the image and writes; destination D opens its handle before the switch-over
  (QEMU opens the disk when the incoming VM is set up), S writes more and flushes (QEMU
  inactivates its disks), D calls rbd_invalidate_cache (QEMU activates its disks) and must
  read every write S made; D's first write moves the exclusive lock to it; S is then no
  longer the owner, and a write by S takes the lock back, as librbd's automatic policy does
  (measured on Ceph 16.2.15: S's late write succeeds and S owns the lock again), then D's
  next write takes it once more. Nothing is lost: a fresh handle reads every last write.

Deterministic: no sleeps; each step waits for the other process's answer. Run it on real
Ceph with REAL=1 (it passes there).

usage: CEPH_CONF=... live_migration.py   (REAL=1 on a real cluster)
Prints one "ok NAME" / "FAIL NAME: why" line per check.
"""
import os
import subprocess
import sys

import rados
import rbd

MB = 1 << 20
K64 = 65536
CONF = os.environ.get("CEPH_CONF")
failures = 0


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name, flush=True)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why), flush=True)


def child(name):
    """Serve: w OFF LEN BYTE | r OFF LEN | f | inv | o | q."""
    cl = rados.Rados(conffile=CONF)
    cl.connect()
    io = cl.open_ioctx("rbd")
    img = rbd.Image(io, name)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        try:
            if cmd[0] == "w":
                off, n, b = int(cmd[1]), int(cmd[2]), int(cmd[3])
                for at in range(off, off + n, K64):
                    img.write(bytes([b]) * min(K64, off + n - at), at)
                out = "done"
            elif cmd[0] == "r":
                data = img.read(int(cmd[1]), int(cmd[2]))
                # runs of equal bytes: "byte*count,..."
                runs, prev, count = [], None, 0
                for x in data:
                    if x == prev:
                        count += 1
                    else:
                        if prev is not None:
                            runs.append("%d*%d" % (prev, count))
                        prev, count = x, 1
                runs.append("%d*%d" % (prev, count))
                out = "data " + ",".join(runs)
            elif cmd[0] == "f":
                img.flush()
                out = "done"
            elif cmd[0] == "inv":
                img.invalidate_cache()
                out = "done"
            elif cmd[0] == "o":
                out = "owner %d" % img.is_exclusive_lock_owner()
            elif cmd[0] == "q":
                img.close()
                io.close()
                cl.shutdown()
                print("bye", flush=True)
                return
            else:
                out = "bad command"
        except Exception as e:  # noqa: BLE001
            out = "error %s %s" % (type(e).__name__, getattr(e, "errno", None))
        print(out, flush=True)


class Proc:
    def __init__(self, name):
        self.p = subprocess.Popen([sys.executable, "-u", __file__, "child", name],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def ask(self, *cmd):
        self.p.stdin.write(" ".join(str(c) for c in cmd) + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def end(self):
        if self.p.poll() is None:
            try:
                self.ask("q")
            except OSError:
                pass
        try:
            self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


def main():
    cl = rados.Rados(conffile=CONF)
    cl.connect()
    io = cl.open_ioctx("rbd")
    name = "migr-%d" % os.getpid()
    rbd.RBD().create(io, name, 8 * MB)
    src = Proc(name)
    dst = None
    try:
        check("S writes 0x11 over 1 MiB", src.ask("w", 0, MB, 0x11) == "done")
        check("S owns the lock", src.ask("o") == "owner 1")
        dst = Proc(name)  # the destination opens before the switch-over
        check("D (opened, not written) is not the owner", dst.ask("o") == "owner 0")
        r = dst.ask("r", 0, 4096)
        print("info D reads before S's flush: %s" % r, flush=True)
        check("S writes 0x22 over [1, 2) MiB", src.ask("w", MB, MB, 0x22) == "done")
        check("S overwrites [0, 64K) with 0x33", src.ask("w", 0, K64, 0x33) == "done")
        check("S flushes (QEMU inactivates the disk)", src.ask("f") == "done")
        check("D rbd_invalidate_cache", dst.ask("inv") == "done")
        want = "data 51*65536,17*983040,34*1048576,0*1048576"
        r = dst.ask("r", 0, 3 * MB)
        check("D reads every write S made", r == want, r)
        check("D is still not the owner", dst.ask("o") == "owner 0")
        check("D's first write (0x44 at 3 MiB)", dst.ask("w", 3 * MB, K64, 0x44) == "done")
        check("the lock moved to D", dst.ask("o") == "owner 1")
        check("S is no longer the owner", src.ask("o") == "owner 0")
        r = dst.ask("r", 0, 4 * MB)
        want = "data 51*65536,17*983040,34*1048576,0*1048576,68*65536,0*983040"
        check("D reads S's writes and its own", r == want, r)
        # A source that writes after the switch-over takes the lock back (librbd: automatic
        # policy), and the destination's next write takes it again.
        r = src.ask("w", 5 * MB, K64, 0x55)
        check("S writes after the switch-over: the lock comes back (as librbd)", r == "done", r)
        check("S owns the lock again", src.ask("o") == "owner 1")
        check("D is not the owner any more", dst.ask("o") == "owner 0")
        check("D writes 0x66 at 6 MiB", dst.ask("w", 6 * MB, K64, 0x66) == "done")
        check("D owns the lock", dst.ask("o") == "owner 1")
        check("D flushes", dst.ask("f") == "done")
        r = dst.ask("r", 5 * MB, K64)
        check("D reads S's late write", r == "data 85*65536", r)
    finally:
        src.end()
        if dst is not None:
            dst.end()
    img = rbd.Image(io, name, read_only=True)
    got = [img.read(o, 1)[0] for o in (0, K64, MB, 3 * MB, 5 * MB, 6 * MB, 7 * MB)]
    img.close()
    check("a fresh handle reads every last write", got == [0x33, 0x11, 0x22, 0x44, 0x55, 0x66, 0], repr(got))
    rbd.RBD().remove(io, name)
    io.close()
    cl.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        child(sys.argv[2])
    else:
        sys.exit(main())
