"""Malformed handshakes and requests get the protocol's error or a clean disconnect, never change
data, and never stop the server (checked after every case with a fresh connection)."""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbdclient import *  # noqa: E402,F401,F403

scratch = os.environ["SCRATCH"]
shale(scratch, "create", "rbd/m", "--size", "64M")
pattern = bytes(range(256)) * 16  # 4 KiB
srv = Server(scratch, "--socket", scratch + "/s.sock", "rbd/m")
A = srv.addr
try:
    c = Conn.open(A, "rbd/m")
    assert c.write(0, pattern * 256) == 0  # 1 MiB at 0
    assert c.cmd(FLUSH) == 0
    c.disc()
    c.s.close()

    def intact(why):
        if not srv.alive():
            fail("server died after: " + why)
        c = Conn.open(A, "rbd/m")
        err, data = c.read(0, 1 << 20)
        if err or data != pattern * 256:
            fail("data changed after: " + why)
        err, data = c.read(1 << 20, 4096)
        if err or data != bytes(4096):
            fail("zeros changed after: " + why)
        c.disc()

    def expect_close(c, why):
        if not closed(c.s):
            fail("server kept the connection after " + why)
        intact(why)

    # --- handshake ---
    c = Conn(A); c.client_flags(0x80); expect_close(c, "unknown client flags")
    c = Conn(A); c.client_flags(); c.option(OPT_GO, b"x", magic=0x1234); expect_close(c, "bad option magic")
    c = Conn(A); c.client_flags(); c.option(OPT_GO, length=100 << 20); expect_close(c, "huge option length")
    c = Conn(A); c.client_flags(); c.send(b"IHAVE"); c.s.shutdown(1); expect_close(c, "truncated option")
    c = Conn(A); c.client_flags()
    c.option(99, b"abc")
    if c.opt_reply()[1] != REP_ERR_UNSUP:
        fail("unknown option not answered with ERR_UNSUP")
    c.option(OPT_GO, struct.pack(">I", 100) + b"abc")
    if c.opt_reply()[1] != REP_ERR_INVALID:
        fail("truncated GO payload not ERR_INVALID")
    if c.go("rbd/nope")[-1][1] != REP_ERR_UNKNOWN:
        fail("unknown export not ERR_UNKNOWN")
    if c.set_meta("rbd/m", ["base:allocation"])[-1][1] != REP_ERR_INVALID:
        fail("SET_META_CONTEXT before structured replies accepted")
    c.option(OPT_LIST, b"x")
    if c.opt_reply()[1] != REP_ERR_INVALID:
        fail("LIST with data accepted")
    c.option(OPT_STARTTLS)
    if c.opt_reply()[1] != REP_ERR_UNSUP:
        fail("STARTTLS without TLS settings not ERR_UNSUP")
    # ... and the same connection still negotiates.
    c.structured_replies()
    reps = c.set_meta("rbd/m", ["base:allocation", "other:thing"])
    if [r[1] for r in reps] != [REP_META, REP_ACK]:
        fail("SET_META_CONTEXT replies %r" % reps)
    if c.go("rbd/m")[-1][1] != REP_ACK:
        fail("GO after errors")
    err, data = c.read(0, 4096)
    if err or data != pattern:
        fail("read after a rough handshake")
    c.disc()
    c = Conn(A); c.client_flags(); c.option(OPT_EXPORT_NAME, b"rbd/nope"); expect_close(c, "EXPORT_NAME of an unknown export")
    c = Conn(A); c.client_flags(); c.option(OPT_ABORT)
    if c.opt_reply()[1] != REP_ACK:
        fail("ABORT not acknowledged")
    expect_close(c, "abort")

    # --- transmission, structured and simple ---
    for structured in (True, False):
        tag = " (structured)" if structured else " (simple)"
        c = Conn.open(A, "rbd/m", structured=structured)
        checks = [
            ("unknown command", dict(cmd=42), EINVAL),
            ("read past the end", dict(cmd=READ, off=64 << 20, length=1), EINVAL),
            ("read overflowing u64", dict(cmd=READ, off=(1 << 64) - 1, length=2), EINVAL),
            ("trim past the end", dict(cmd=TRIM, off=(64 << 20) - 512, length=1024), EINVAL),
            ("write-zeroes past the end", dict(cmd=WZ, off=(64 << 20) - 512, length=1024), ENOSPC),
            ("read with FUA", dict(cmd=READ, off=0, length=512, flags=FUA), EINVAL),
            ("flush with a range", dict(cmd=FLUSH, off=4096, length=0), EINVAL),
            ("block status without a context", dict(cmd=BLOCK_STATUS, off=0, length=4096), EINVAL),
            ("read larger than 32 MiB", dict(cmd=READ, off=0, length=48 << 20), EINVAL),
            ("write-zeroes with an unknown flag", dict(cmd=WZ, off=0, length=4096, flags=1 << 9), EINVAL),
        ]
        for i, (why, kw, want) in enumerate(checks):
            cookie = 100 + i
            c.request(cookie=cookie, **kw)
            ck, err, data, _ = c.reply()
            if ck != cookie or err != want:
                fail("%s%s: cookie %d error %d, want %d error %d" % (why, tag, ck, err, cookie, want))
        # Writes whose payload is consumed but refused.
        bad = b"\xee" * 8192
        c.request(WRITE, (64 << 20) - 4096, 8192, cookie=7, data=bad)
        if c.reply()[:2] != (7, ENOSPC):
            fail("write past the end" + tag)
        c.request(WRITE, 0, 8192, flags=1 << 7, cookie=8, data=bad)
        if c.reply()[:2] != (8, EINVAL):
            fail("write with an unknown flag" + tag)
        # The connection is still in step.
        err, data = c.read(0, 4096, cookie=9)
        if err or data != pattern:
            fail("connection out of step after refused writes" + tag)
        c.disc()
        intact("refused requests" + tag)

    # Pipelined garbage after good requests: the good ones are answered, then the close.
    c = Conn.open(A, "rbd/m")
    c.request(READ, 0, 4096, cookie=1)
    c.request(READ, 4096, 4096, cookie=2)
    c.send(b"\x00" * 28)
    got = sorted([c.reply()[0], c.reply()[0]])
    if got != [1, 2]:
        fail("replies before the bad magic: %r" % got)
    expect_close(c, "bad request magic")

    c = Conn.open(A, "rbd/m")
    c.request(WRITE, 0, 64 << 20, data=b"\xee" * 4096)
    expect_close(c, "a 64 MiB write header")
    c = Conn.open(A, "rbd/m")
    c.request(WRITE, 0, 65536, data=b"\xee" * 1000)
    c.s.shutdown(1)
    expect_close(c, "a truncated write payload")
    c = Conn.open(A, "rbd/m")
    c.send(struct.pack(">IHH", REQ_MAGIC, 0, WRITE))
    c.s.close()
    intact("a truncated request header")
    c = Conn.open(A, "rbd/m")
    c.request(WRITE, 0, 4096, data=b"\xee" * 4096)
    c.s.close()  # gone before the reply: the write may land; put the pattern back below
    c = Conn.open(A, "rbd/m")
    assert c.write(0, pattern) == 0 and c.cmd(FLUSH) == 0
    c.disc()
    intact("a client gone before its reply")

    # Read-only snapshot export: writes are EPERM.
    srv.stop()
    shale(scratch, "snap", "create", "rbd/m@s")
    srv = Server(scratch, "--socket", scratch + "/s2.sock", "rbd/m@s", "rbd/m")
    A = srv.addr
    c = Conn.open(A, "rbd/m@s")
    if not c.flags & 2:
        fail("snapshot export without NBD_FLAG_READ_ONLY")
    for cmd, kw in ((WRITE, dict(data=pattern, length=4096)), (TRIM, dict(length=4096)), (WZ, dict(length=4096))):
        c.request(cmd, 0, cookie=5, **kw)
        if c.reply()[:2] != (5, EPERM):
            fail("command %d on a snapshot not EPERM" % cmd)
    c.disc()
    intact("writes to a snapshot")
    rc = srv.stop()
    if rc != 0:
        fail("server exit status %d" % rc)
    print("ok")
finally:
    srv.kill()
