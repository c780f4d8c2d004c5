"""Two servers (two "hosts") export one image: the exclusive lock moves to whichever one writes
(the image layer's handoff), each sees the other's flushed writes, and nothing is lost."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbdclient import *  # noqa: E402,F401,F403

scratch = os.environ["SCRATCH"]
shale(scratch, "create", "rbd/h", "--size", "8M")
a = Server(scratch, "--socket", scratch + "/a.sock", "rbd/h")
os.rename(scratch + "/srv.out", scratch + "/a.out")
b = Server(scratch, "--socket", scratch + "/b.sock", "rbd/h")
try:
    ca = Conn.open(a.addr, "rbd/h")
    cb = Conn.open(b.addr, "rbd/h")
    model = bytearray(8 << 20)
    owners = []
    for rnd in range(6):
        c, other = (ca, cb) if rnd % 2 == 0 else (cb, ca)
        off = random.randrange(0, (8 << 20) - 65536)
        data = random.randbytes(65536)
        t0 = time.time()
        err = c.write(off, data)
        if err:
            fail("round %d: write error %d" % (rnd, err))
        if c.cmd(FLUSH):
            fail("round %d: flush" % rnd)
        model[off:off + len(data)] = data
        owners.append(shale(scratch, "lock", "ls", "rbd/h").stdout.strip())
        print("round %d: write took %.2fs; %s" % (rnd, time.time() - t0, owners[-1]))
        # The other server's view catches up within its refresh interval.
        deadline = time.time() + 10
        while True:
            err, got = other.read(0, 8 << 20)
            if not err and got == bytes(model):
                break
            if time.time() > deadline:
                fail("round %d: the other server does not see the writes" % rnd)
            time.sleep(0.3)
    if len(set(owners)) < 2:
        fail("the lock never moved: %r" % owners)
    ca.disc(); cb.disc()
    if a.stop() != 0 or b.stop() != 0:
        fail("exit status")
    shale(scratch, "export", "rbd/h", scratch + "/out.raw")
    if open(scratch + "/out.raw", "rb").read() != bytes(model):
        fail("image differs after both servers stopped")
    print("ok")
finally:
    a.kill(); b.kill()
