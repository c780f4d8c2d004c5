"""Log lines of librados.so.2 / librbd.so.1 reach stderr, at the level SHALE_LOG or ceph.conf
(`shale_log` / `debug_shale`, Ceph-style levels) names. Runs python3-rados/-rbd children on the
staged libraries (LD_LIBRARY_PATH) and reads their stderr.

usage: log_levels.py STORE_URL      (a fresh store; run with /usr/bin/python3)
Prints one "ok NAME" / "FAIL NAME: why" line per check.
"""
import os
import subprocess
import sys
import tempfile

url = sys.argv[1]
failures = 0
tmp = tempfile.mkdtemp(prefix="shale-log-levels-")

# A connect refused for a bad setting: the reason is a warning (the C caller only sees EINVAL).
BAD_CONNECT = """
import rados, sys
c = rados.Rados(conffile=sys.argv[1])
try:
    c.connect()
    print("connected")
except rados.Error as e:
    print("refused:", type(e).__name__)
"""
# A lookup of a missing image: its error message is a debug line.
MISSING = """
import rados, rbd, sys
with rados.Rados(conffile=sys.argv[1]) as c, c.open_ioctx("rbd") as io:
    try:
        rbd.Image(io, "no-such-image")
    except rbd.ImageNotFound:
        print("not found")
"""


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why))


def run(script, conf_lines, shale_log=None):
    conf = os.path.join(tmp, "c%d.conf" % run.n)
    run.n += 1
    with open(conf, "w") as f:
        f.write("[global]\nshale_store = %s\n%s\n" % (url, "\n".join(conf_lines)))
    env = dict(os.environ)
    env.pop("SHALE_LOG", None)
    env.pop("SHALE_FFI_LOG", None)
    if shale_log is not None:
        env["SHALE_LOG"] = shale_log
    p = subprocess.run([sys.executable, "-c", script, conf], env=env, capture_output=True,
                       text=True, timeout=120)
    return p.stdout, p.stderr


run.n = 0
WARN = "bad setting shale_segment_size"

out, err = run(BAD_CONNECT, ["shale_segment_size = 1"])
check("a refused connect says why on stderr (WARN, default level)",
      "refused" in out and WARN in err and " WARN " in err, (out, err))
check("... as plain text (no colour codes)", "\x1b[" not in err, repr(err))
out, err = run(BAD_CONNECT, ["shale_segment_size = 1"], shale_log="error")
check("SHALE_LOG=error suppresses the warning", "refused" in out and WARN not in err, (out, err))
out, err = run(BAD_CONNECT, ["shale_segment_size = 1", "debug_shale = 0/5"])
check("ceph.conf debug_shale = 0/5 (error) suppresses it", "refused" in out and WARN not in err,
      (out, err))
out, err = run(BAD_CONNECT, ["shale_segment_size = 1", "shale_log = error"])
check("ceph.conf shale_log = error suppresses it", "refused" in out and WARN not in err, (out, err))
out, err = run(BAD_CONNECT, ["shale_log = warn"])
check("shale_log is not passed on as a store setting (connect works)", "connected" in out,
      (out, err))
out, err = run(BAD_CONNECT, ["shale_log = very-loud"])
check("a bad shale_log value is reported, connect still works",
      "connected" in out and "shale_log" in err, (out, err))

out, err = run(MISSING, [])
check("no debug lines by default", "not found" in out and " DEBUG " not in err, (out, err))
out, err = run(MISSING, ["debug_shale = 10"])
check("ceph.conf debug_shale = 10 shows the error behind ENOENT (DEBUG)",
      "not found" in out and " DEBUG " in err, (out, err))
out, err = run(MISSING, ["debug_shale = 20"], shale_log="warn")
check("SHALE_LOG wins over ceph.conf", "not found" in out and " DEBUG " not in err, (out, err))
out, err = run(MISSING, [], shale_log="debug")
check("SHALE_LOG=debug alone", "not found" in out and " DEBUG " in err, (out, err))
sys.exit(1 if failures else 0)
