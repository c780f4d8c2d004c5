"""Two processes sharing one image through python3-rbd: the exclusive lock moves to whoever
writes (cooperative hand-over) and nothing is lost; a broken owner is fenced.

  A opens and writes (takes the lock); B opens and writes: the lock moves to B, both writes are
  intact. A writes again (takes it back). A is stopped (SIGSTOP); B breaks A's lock and writes;
  A is resumed: its next write or flush fails with ESHUTDOWN (librbd's EBLOCKLISTED; python
  raises rbd.ConnectionShutdown) and what A wrote after the break is never visible.

usage: CEPH_CONF=... lock_two_proc.py   (REAL=1 on a real cluster)
Prints one "ok NAME" / "FAIL NAME: why" line per check.
"""
import os
import signal
import subprocess
import sys
import time

import rados
import rbd

MB = 1 << 20
REAL = os.environ.get("REAL") == "1"


def child(name):
    """Serve commands from stdin: w OFF BYTE | f | o | owners | brk | r OFF LEN | q."""
    cl = rados.Rados(conffile=os.environ.get("CEPH_CONF"))
    cl.connect()
    io = cl.open_ioctx("rbd")
    img = rbd.Image(io, name)
    print("ready", flush=True)
    for line in sys.stdin:
        cmd = line.split()
        try:
            if cmd[0] == "w":
                img.write(bytes([int(cmd[2])]) * 65536, int(cmd[1]))
                out = "done"
            elif cmd[0] == "f":
                img.flush()
                out = "done"
            elif cmd[0] == "o":
                out = "owner %d" % img.is_exclusive_lock_owner()
            elif cmd[0] == "owners":
                out = "owners " + "|".join(o["owner"] for o in img.lock_get_owners())
            elif cmd[0] == "brk":
                img.lock_break(rbd.RBD_LOCK_MODE_EXCLUSIVE, line.split(" ", 1)[1].rstrip("\n"))
                out = "done"
            elif cmd[0] == "r":
                data = img.read(int(cmd[1]), int(cmd[2]))
                out = "data " + ",".join(sorted("%d" % b for b in set(data)))
            elif cmd[0] == "q":
                try:
                    img.close()
                except Exception:  # noqa: BLE001 (a fenced handle may fail to close)
                    pass
                print("bye", flush=True)
                os._exit(0)
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

    def send(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()

    def ask(self, cmd):
        self.send(cmd)
        return self.p.stdout.readline().strip()


failures = 0


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name, flush=True)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why), flush=True)


def main():
    cl = rados.Rados(conffile=os.environ.get("CEPH_CONF"))
    cl.connect()
    io = cl.open_ioctx("rbd")
    name = "lk2-%d" % os.getpid()
    rbd.RBD().create(io, name, 8 * MB)
    a, b = Proc(name), Proc(name)
    try:
        r = a.ask("w 0 65")  # 'A' at 0
        check("A writes", r == "done", r)
        check("A owns the lock", a.ask("o") == "owner 1")
        r = b.ask("w %d 66" % MB)  # 'B' at 1 MiB
        check("B writes (A hands the lock over)", r == "done", r)
        check("B owns the lock", b.ask("o") == "owner 1")
        check("A no longer owns it", a.ask("o") == "owner 0")
        check("B reads A's write", b.ask("r 0 65536") == "data 65", b.ask("r 0 65536"))
        check("B reads its write", b.ask("r %d 65536" % MB) == "data 66")
        r = a.ask("r %d 65536" % MB)
        print("info A reads B's unflushed write: %s" % r, flush=True)
        b.ask("f")
        # A reader that does not hold the lock reloads its view at most once a second; on a
        # remote store the writer's data reaches the store once its segment is sealed (within
        # a second of going idle) and uploaded.
        time.sleep(4.0)
        r = a.ask("r %d 65536" % MB)
        check("A reads B's write after B's flush", r == "data 66", r)
        r = a.ask("w %d 67" % (2 * MB))  # 'C' at 2 MiB: A takes the lock back
        check("A writes again (B hands over)", r == "done", r)
        r = a.ask("f")
        check("A flushes", r == "done", r)
        owners = a.ask("owners")
        check("A owns the lock again", a.ask("o") == "owner 1" and owners.startswith("owners "), owners)
        owner = owners.split(" ", 1)[1]
        b_owners = b.ask("owners")
        check("B sees A as the owner", b_owners == owners, "%s vs %s" % (b_owners, owners))

        os.kill(a.p.pid, signal.SIGSTOP)
        r = b.ask("brk " + owner)
        check("B breaks A's lock while A is stopped", r == "done", r)
        r = b.ask("w %d 68" % (3 * MB))  # 'D' at 3 MiB
        check("B writes after the break", r == "done", r)
        r = b.ask("f")
        check("B flushes", r == "done", r)
        check("B owns the lock", b.ask("o") == "owner 1")
        os.kill(a.p.pid, signal.SIGCONT)
        if not REAL:
            # Shale: A notices the break at its next lease renewal (every 0.5 s).
            time.sleep(1.5)
        w = a.ask("w %d 69" % (4 * MB))  # 'E' at 4 MiB: must never appear
        f = a.ask("f")
        fenced = [x for x in (w, f) if x.startswith("error")]
        check("A's write/flush after the break fails", fenced != [], "write: %s, flush: %s" % (w, f))
        if fenced:
            print("info fenced A: write -> %s, flush -> %s" % (w, f), flush=True)
            check("A fails with ConnectionShutdown (errno 108, ESHUTDOWN)",
                  fenced[0] == "error ConnectionShutdown 108", fenced[0])
        check("B still owns the lock", b.ask("o") == "owner 1")
        b.ask("q")
        a.ask("q")
        img = rbd.Image(io, name, read_only=True)
        got = [set(img.read(i * MB, 65536)) for i in range(5)]
        img.close()
        check("final image: A, B, C, D intact", got[:4] == [{65}, {66}, {67}, {68}], repr(got[:4]))
        check("final image: A's write after the break is absent", got[4] == {0}, repr(got[4]))
    finally:
        for p in (a, b):
            try:
                os.kill(p.p.pid, signal.SIGCONT)
                p.p.kill()
            except OSError:
                pass
            p.p.wait()
    try:
        rbd.RBD().remove(io, name)
    except Exception:  # noqa: BLE001 (real Ceph: A's blocklisted watch may linger)
        pass
    io.close()
    cl.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "child":
        child(sys.argv[2])
    else:
        sys.exit(main())
