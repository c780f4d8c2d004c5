"""SIGTERM (and SIGINT) with clients connected: acknowledged writes (never flushed) are stored,
the exclusive lock is released, the exit status is 0; another server can take the image."""
import os
import random
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbdclient import *  # noqa: E402,F401,F403

scratch = os.environ["SCRATCH"]
shale(scratch, "create", "rbd/st", "--size", "8M")
expect = bytearray(8 << 20)
for sig in (signal.SIGTERM, signal.SIGINT):
    srv = Server(scratch, "--socket", scratch + "/s.sock", "rbd/st")
    try:
        c = Conn.open(srv.addr, "rbd/st")
        idle = Conn.open(srv.addr, "rbd/st")
        for i in range(32):
            off = random.randrange(0, (8 << 20) - 65536)
            data = random.randbytes(65536)
            if c.write(off, data) != 0:
                fail("write")
            expect[off:off + len(data)] = data
        owners = shale(scratch, "lock", "ls", "rbd/st").stdout
        rc = srv.stop(sig)
        if rc != 0:
            fail("exit status %d after signal %d" % (rc, sig))
        if not closed(c.s) or not closed(idle.s):
            fail("connections not closed at shutdown")
        after = shale(scratch, "lock", "ls", "rbd/st").stdout
        print("lock while serving:", owners.strip(), "| after:", after.strip())
        if after == owners:
            fail("the lock listing did not change at shutdown: %r" % after)
        shale(scratch, "export", "rbd/st", scratch + "/out.raw")
        if open(scratch + "/out.raw", "rb").read() != bytes(expect):
            fail("acknowledged writes lost at signal %d" % sig)
        os.unlink(scratch + "/out.raw")
    finally:
        srv.kill()
print("ok")
