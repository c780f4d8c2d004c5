"""Multi-conn: writes on one connection, a flush on another, reads on a third see them; FUA
writes are seen by every connection; checked against a model of the disk."""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbdclient import *  # noqa: E402,F401,F403

scratch = os.environ["SCRATCH"]
seed = int(os.environ.get("SEED", random.randrange(1 << 30)))
print("seed", seed)
rng = random.Random(seed)
SIZE = 16 << 20
shale(scratch, "create", "rbd/mc", "--size", "16M")
srv = Server(scratch, "--listen", "127.0.0.1:0", "rbd/mc")
try:
    conns = [Conn.open(srv.addr, "rbd/mc", structured=(i % 2 == 0)) for i in range(4)]
    if not conns[0].flags & (1 << 8):
        fail("no NBD_FLAG_CAN_MULTI_CONN")
    model = bytearray(SIZE)
    for it in range(300):
        w, f, r = rng.randrange(4), rng.randrange(4), rng.randrange(4)
        off = rng.randrange(0, SIZE - 65536)
        n = rng.choice([512, 4096, 4097, 65536, rng.randrange(1, 65536)])
        kind = rng.random()
        if kind < 0.15:
            if conns[w].cmd(WZ, off, n) != 0:
                fail("write-zeroes")
            model[off:off + n] = bytes(n)
        elif kind < 0.25:
            if conns[w].cmd(TRIM, off, n) != 0:
                fail("trim")
            model[off:off + n] = bytes(n)
        else:
            data = rng.randbytes(n)
            fua = FUA if rng.random() < 0.3 else 0
            if conns[w].write(off, data, fua) != 0:
                fail("write")
            model[off:off + n] = data
        if rng.random() < 0.5:
            if conns[f].cmd(FLUSH) != 0:
                fail("flush")
        roff = max(0, off - rng.randrange(0, 4096))
        rn = min(SIZE - roff, n + 8192)
        err, data = conns[r].read(roff, rn)
        if err or data != bytes(model[roff:roff + rn]):
            fail("iteration %d: conn %d read differs from what conn %d wrote (seed %d)" % (it, r, w, seed))
    # Pipelined: many writes in flight on one connection, then a flush on another.
    c = conns[1]
    pend = {}
    for i in range(64):
        off = i * 65536
        data = rng.randbytes(65536)
        c.request(WRITE, off, len(data), cookie=1000 + i, data=data)
        pend[1000 + i] = (off, data)
    for _ in range(64):
        ck, err, _, _ = c.reply()
        if err or ck not in pend:
            fail("pipelined write reply %d err %d" % (ck, err))
        off, data = pend.pop(ck)
        model[off:off + len(data)] = data
    if conns[3].cmd(FLUSH) != 0:
        fail("flush after pipelined writes")
    for i in range(0, SIZE, 1 << 20):
        err, data = conns[2].read(i, 1 << 20)
        if err or data != bytes(model[i:i + (1 << 20)]):
            fail("final read at %d differs" % i)
    for c in conns:
        c.disc()
    rc = srv.stop()
    if rc != 0:
        fail("exit status %d" % rc)
    r = shale(scratch, "export", "rbd/mc", scratch + "/out.raw")
    if open(scratch + "/out.raw", "rb").read() != bytes(model):
        fail("image differs from the model after shutdown")
    print("ok")
finally:
    srv.kill()
