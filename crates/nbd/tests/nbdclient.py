"""A small raw-socket NBD client for the tests (written from the protocol description): it
sends exactly the bytes a test asks for, malformed ones included."""
import os
import socket
import struct
import subprocess
import sys
import time

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3E889045565A9
REQ_MAGIC = 0x25609513
SIMPLE = 0x67446698
STRUCT = 0x668E33EF
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED, OPT_LIST_META, OPT_SET_META = 8, 9, 10
REP_ACK, REP_SERVER, REP_INFO, REP_META = 1, 2, 3, 4
ERR = 1 << 31
REP_ERR_UNSUP, REP_ERR_INVALID, REP_ERR_TLS_REQD, REP_ERR_UNKNOWN = ERR | 1, ERR | 3, ERR | 5, ERR | 6
READ, WRITE, DISC, FLUSH, TRIM, CACHE, WZ, BLOCK_STATUS = 0, 1, 2, 3, 4, 5, 6, 7
FUA, NO_HOLE, DF, REQ_ONE, FAST_ZERO = 1, 2, 4, 8, 16
EPERM, EIO, EINVAL, ENOSPC = 1, 5, 22, 28


class Closed(Exception):
    pass


def recvn(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise Closed("closed after %d of %d bytes" % (len(b), n))
        b += c
    return b


def closed(s, timeout=5.0):
    """True if the server closes the connection (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


class Conn:
    def __init__(self, addr):
        if isinstance(addr, str) and addr.startswith("/"):
            self.s = socket.socket(socket.AF_UNIX)
            self.s.connect(addr)
        else:
            host, port = addr.rsplit(":", 1)
            self.s = socket.create_connection((host, int(port)))
        self.s.settimeout(30)
        magic, opt, flags = struct.unpack(">QQH", recvn(self.s, 18))
        assert magic == NBDMAGIC and opt == IHAVEOPT, "bad greeting"
        assert flags & 1, "no fixed newstyle"
        self.structured = False

    def send(self, b):
        self.s.sendall(b)

    def client_flags(self, f=3):
        self.send(struct.pack(">I", f))

    def option(self, opt, data=b"", magic=IHAVEOPT, length=None):
        self.send(struct.pack(">QII", magic, opt, len(data) if length is None else length) + data)

    def opt_reply(self):
        magic, opt, typ, n = struct.unpack(">QIII", recvn(self.s, 20))
        assert magic == REPLY_MAGIC, "bad option reply magic %x" % magic
        return opt, typ, recvn(self.s, n)

    def opt_replies(self):
        """Replies up to the final one (ACK or an error)."""
        out = []
        while True:
            r = self.opt_reply()
            out.append(r)
            if r[1] == REP_ACK or r[1] & ERR:
                return out

    def structured_replies(self):
        self.option(OPT_STRUCTURED)
        assert self.opt_reply()[1] == REP_ACK
        self.structured = True

    def set_meta(self, export, queries):
        d = struct.pack(">I", len(export)) + export.encode() + struct.pack(">I", len(queries))
        for q in queries:
            d += struct.pack(">I", len(q)) + q.encode()
        self.option(OPT_SET_META, d)
        return self.opt_replies()

    def go(self, export, infos=(3,)):
        d = struct.pack(">I", len(export)) + export.encode() + struct.pack(">H", len(infos))
        d += b"".join(struct.pack(">H", i) for i in infos)
        self.option(OPT_GO, d)
        reps = self.opt_replies()
        if reps[-1][1] != REP_ACK:
            return reps
        for _, typ, data in reps:
            if typ == REP_INFO and struct.unpack(">H", data[:2])[0] == 0:
                self.size, self.flags = struct.unpack(">QH", data[2:12])
        return reps

    @classmethod
    def open(cls, addr, export, structured=True, meta=False):
        c = cls(addr)
        c.client_flags()
        if structured:
            c.structured_replies()
        if meta:
            c.set_meta(export, ["base:allocation"])
        reps = c.go(export)
        assert reps[-1][1] == REP_ACK, "GO %s failed: %r" % (export, reps[-1])
        return c

    def request(self, cmd, off=0, length=0, flags=0, cookie=1, data=b"", magic=REQ_MAGIC):
        self.send(struct.pack(">IHHQQI", magic, flags, cmd, cookie, off, length) + data)

    def reply(self):
        """(cookie, error, data, chunks) of one whole reply."""
        magic = struct.unpack(">I", recvn(self.s, 4))[0]
        if magic == SIMPLE:
            err, cookie = struct.unpack(">IQ", recvn(self.s, 12))
            return cookie, err, None, []
        assert magic == STRUCT, "bad reply magic %x" % magic
        chunks, err, data = [], 0, b""
        while True:
            flags, typ, cookie, n = struct.unpack(">HHQI", recvn(self.s, 16))
            payload = recvn(self.s, n)
            chunks.append((typ, payload))
            if typ == 1:
                data += payload[8:]
            elif typ & 0x8000:
                err = struct.unpack(">I", payload[:4])[0]
            if flags & 1:
                return cookie, err, data, chunks
            magic = struct.unpack(">I", recvn(self.s, 4))[0]
            assert magic == STRUCT

    def read(self, off, n, cookie=1):
        self.request(READ, off, n, cookie=cookie)
        if not self.structured:
            c, err, _, _ = self.reply()
            return err, (recvn(self.s, n) if err == 0 else b"")
        c, err, data, _ = self.reply()
        return err, data

    def cmd(self, cmd, off=0, n=0, flags=0, data=b"", cookie=1):
        self.request(cmd, off, n, flags, cookie, data)
        c, err, _, chunks = self.reply()
        assert c == cookie, "reply for cookie %d, want %d" % (c, cookie)
        return err

    def write(self, off, data, flags=0):
        return self.cmd(WRITE, off, len(data), flags, data)

    def disc(self):
        self.request(DISC)
        self.s.close()


def shale_env(scratch):
    env = dict(os.environ)
    env.update(SHALE_STORE="file://%s/store" % scratch, HOME=scratch + "/home",
               XDG_DATA_HOME=scratch + "/xdg", SHALE_CONF=scratch + "/none.toml")
    os.makedirs(scratch + "/home", exist_ok=True)
    open(scratch + "/none.toml", "w").close()
    return env


def shale(scratch, *args, check=True):
    r = subprocess.run([os.environ["SHALE"], *args], env=shale_env(scratch),
                       capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit("FAIL: shale %s: %s" % (" ".join(args), r.stderr))
    return r


class Server:
    def __init__(self, scratch, *args):
        self.out = open(scratch + "/srv.out", "w+")
        self.p = subprocess.Popen([os.environ["SHALE"], "nbd", "serve", *args], env=shale_env(scratch),
                                  stdout=self.out, stderr=open(scratch + "/srv.err", "w"))
        for _ in range(400):
            self.out.seek(0)
            for line in self.out.read().splitlines():
                if line.startswith("listening on "):
                    self.addr = line[len("listening on "):]
                    return
            if self.p.poll() is not None:
                raise SystemExit("FAIL: server exited: " + open(scratch + "/srv.err").read())
            time.sleep(0.05)
        raise SystemExit("FAIL: server did not start")

    def stop(self, sig=15, timeout=30):
        self.p.send_signal(sig)
        return self.p.wait(timeout)

    def alive(self):
        return self.p.poll() is None

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def fail(msg):
    print("FAIL:", msg)
    sys.exit(1)
