"""Locations end to end with real clients: python3-rbd on Shale's librbd, the `shale` CLI, a
local directory (home) and two SeaweedFS S3 servers (dc2, dc3) as three locations.

Environment (set by run-all.sh): SHALE (the CLI), CEPH_CONF (shale_store = home), SHALE_CONF,
SCRATCH, HOME_DIR (the home store's directory), S3A_DIR/S3B_DIR + S3A_PORT/S3B_PORT +
S3A_BASE/S3B_BASE (to stop and restart each server), SHARED (for the peers' scripts),
SHALE_LOCATION_DC2_*/DC3_* (endpoints and keys of this host).

Prints "ok NAME" / "FAIL NAME: why" per check.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import rados
import rbd

MB = 1 << 20
BLOCK = 64 * 1024
SHALE = os.environ["SHALE"]
HOME_DIR = os.environ["HOME_DIR"]
failures = 0


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok   " + name, flush=True)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why), flush=True)


def shale(*args, env=None, timeout=300):
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run([SHALE, *args], capture_output=True, text=True, env=e, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def shale_json(*args, env=None):
    rc, out, err = shale(*args, "--format", "json", env=env)
    if rc != 0:
        raise RuntimeError("shale %s: %s" % (" ".join(args), err.strip()))
    return json.loads(out)


def report(spec):
    return {r["name"]: r for r in shale_json("location", "ls", spec)}


def s3(which, action):
    env = dict(os.environ)
    env["S3_DIR"] = os.environ["S3%s_DIR" % which]
    env["S3_PORT"] = os.environ["S3%s_PORT" % which]
    env["S3_PORT_BASE"] = os.environ["S3%s_BASE" % which]
    subprocess.run(["bash", os.path.join(os.environ["SHARED"], "peers/s3/%s.sh" % action)],
                   env=env, capture_output=True, check=action == "start", timeout=120)


def pattern(i, salt=0):
    b = bytes([(i * 7 + salt) & 0xFF]) * 16 + i.to_bytes(8, "little") + bytes([salt & 0xFF]) * 8
    return (b * (BLOCK // len(b) + 1))[:BLOCK]


def connect(env=None):
    old = {}
    for k, v in (env or {}).items():
        old[k] = os.environ.get(k)
        os.environ[k] = v
    try:
        cl = rados.Rados(conffile=os.environ["CEPH_CONF"])
        cl.connect()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return cl, cl.open_ioctx("rbd")


def wait_for(what, f, timeout=60):
    t = time.time()
    last = None
    while time.time() - t < timeout:
        try:
            last = f()
            if last is True:
                return True
        except Exception as e:  # noqa: BLE001
            last = e
        time.sleep(0.5)
    print("     (timed out waiting for %s: %r)" % (what, last), flush=True)
    return False


def verify_child(name, blocks, env, salt=0, extra=""):
    """Read and check `blocks` blocks in a fresh process (its own settings in env)."""
    code = """
import os, rados, rbd, sys
sys.path.insert(0, %r)
from locations_e2e import pattern
cl = rados.Rados(conffile=os.environ["CEPH_CONF"]); cl.connect()
io = cl.open_ioctx("rbd")
img = rbd.Image(io, %r, read_only=True)
bad = [i for i in range(%d) if img.read(i * %d, %d) != pattern(i, %d)]
print("bad", len(bad), bad[:5])
if bad:
    got = img.read(bad[0] * %d, %d)
    print("block", bad[0], "holds salt", [s for s in range(8) if got == pattern(bad[0], s)],
          "zero" if got == bytes(len(got)) else "", got[:32].hex())
""" % (os.path.dirname(os.path.abspath(__file__)), name, blocks, BLOCK, BLOCK, salt, BLOCK, BLOCK)
    e = dict(os.environ)
    e.update(env)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=e,
                       timeout=300)
    ok = p.returncode == 0 and "bad 0 []" in p.stdout
    return ok, (p.stdout + p.stderr)[-800:]


def hide_home_data(img_id):
    """Move the home store's data objects of an image away (reads must come from elsewhere)."""
    d = os.path.join(HOME_DIR, "rbd/images", img_id)
    moved = []
    for sub in ("seg", "ckpt", "snap"):
        p = os.path.join(d, sub)
        if os.path.exists(p):
            os.rename(p, p + ".hidden")
            moved.append(p)
    return moved


def unhide(moved):
    for p in moved:
        if os.path.exists(p):
            shutil.rmtree(p)
        os.rename(p + ".hidden", p)


def image_id(name):
    return shale_json("info", "rbd/" + name)["id"]


def main():
    # ---- registry and refusals
    rc, _, err = shale("location", "create", "dc2", "s3://shale-loc/dc2")
    check("location create dc2 (S3 A)", rc == 0, err)
    rc, _, err = shale("location", "create", "dc3", "s3://shale-loc/dc3")
    check("location create dc3 (S3 B)", rc == 0, err)
    rc, _, err = shale("location", "create", "dc4", "s3://ak:sk@bucket/x")
    check("a URL with credentials is refused", rc != 0 and "credentials" in err, err)
    rc, _, err = shale("location", "create", "dc4", "s3://shale-loc/dc4",
                       env={"SHALE_LOCATION_DC4_ENDPOINT": "http://127.0.0.1:1"})
    check("an unreachable location is not registered", rc != 0 and "reached" in err, err)
    names = [e["name"] for e in shale_json("location", "list")]
    check("location list", names == ["home", "dc2", "dc3"], names)
    listing = json.dumps(shale_json("location", "list"))
    check("no credentials in the store's registry", "shalesecret" not in listing and
          os.environ["SHALE_LOCATION_DC2_SECRET_KEY"] not in listing, listing)

    # ---- protocol C: a flushed write is at the sync location when the flush returns
    cl, io = connect()
    rbd.RBD().create(io, "vm", 64 * MB)
    rc, _, err = shale("location", "add", "rbd/vm", "dc2", "--mode", "sync")
    check("location add dc2 sync", rc == 0, err)
    rc, _, err = shale("location", "add", "rbd/vm", "dc3", "--mode", "async")
    check("location add dc3 async", rc == 0, err)
    rc, _, err = shale("location", "delete", "dc2")
    check("location delete refused while used", rc != 0 and "used by" in err, err)
    rc, _, err = shale("location", "add", "rbd/vm", "dc2")
    check("adding a location twice is refused", rc != 0, err)
    code = """
import os, rados, rbd, sys
sys.path.insert(0, %r)
from locations_e2e import pattern
cl = rados.Rados(conffile=os.environ["CEPH_CONF"]); cl.connect()
img = rbd.Image(cl.open_ioctx("rbd"), "vm")
for i in range(256):
    img.write(pattern(i), i * %d)
img.flush()
os.kill(os.getpid(), 9)
""" % (os.path.dirname(os.path.abspath(__file__)), BLOCK)
    e = dict(os.environ, SHALE_DURABILITY="backend")
    subprocess.run([sys.executable, "-c", code], env=e, timeout=300)
    vid = image_id("vm")
    s3("B", "stop")  # dc3 (async) gone too: only dc2 can serve
    moved = hide_home_data(vid)
    ok, out = verify_child("vm", 256, {"SHALE_LOCATION_PREFERENCE": "dc2"})
    check("sync: every flushed write readable from dc2 alone after SIGKILL", ok, out)
    unhide(moved)
    s3("B", "start")

    # ---- async: dc3 catches up in the background, lag reported
    outcome = {}

    def writer(stop, salt):
        """Write blocks 0..255 with `salt`, round and round, until stopped (at least once)."""
        try:
            cl2, io2 = connect()
            img = rbd.Image(io2, "vm")
            i = 0
            while not stop.is_set() or i < 256:
                img.write(pattern(i % 256, salt), (i % 256) * BLOCK)
                i += 1
                if i % 64 == 0:
                    img.flush()
            img.flush()
            img.close()
            outcome[salt] = ("ok", i)
        except Exception as e:  # noqa: BLE001
            outcome[salt] = ("error", repr(e))

    stop = threading.Event()
    t = threading.Thread(target=writer, args=(stop, 1))
    t.start()
    time.sleep(3)
    rep = report("rbd/vm")
    stop.set()
    t.join()
    check("async writer", outcome.get(1, ("none",))[0] == "ok", outcome.get(1))
    check("async location reported while writes go on", "dc3" in rep and rep["dc3"]["mode"] == "async",
          rep)
    # The writer closed: `shale sync` finishes what the background copier had not.
    rc, _, err = shale("sync", "rbd/vm")
    check("shale sync", rc == 0, err)
    rep = report("rbd/vm")
    check("all in sync after shale sync",
          all(r["objects_behind"] == 0 and r["state"] == "ok" for r in rep.values()), rep)

    # ---- degrade: dc2 stops during writes; writes go on; resync afterwards; nothing lost
    stop = threading.Event()
    t = threading.Thread(target=writer, args=(stop, 2))
    t.start()
    time.sleep(1.5)
    s3("A", "stop")
    time.sleep(3)
    rep = report("rbd/vm")
    check("degrade: dc2 reported failing", rep["dc2"]["state"] in ("error", "degraded") and
          rep["dc2"]["objects_behind"] > 0, rep["dc2"])
    s3("A", "start")
    time.sleep(2)
    stop.set()
    t.join()
    check("degrade: writes never failed", outcome.get(2, ("none",))[0] == "ok", outcome.get(2))
    rc, _, err = shale("sync", "rbd/vm")
    check("degrade: resync after restart", rc == 0, err)
    s3("B", "stop")
    moved = hide_home_data(vid)
    ok, out = verify_child("vm", 256, {"SHALE_LOCATION_PREFERENCE": "dc2"}, salt=2)
    check("degrade: dc2 holds every acknowledged write after resync", ok, out)
    unhide(moved)
    s3("B", "start")

    # ---- block: I/O waits while the sync location is down (a client of its own, so that
    # its settings are read at connect)
    code = """
import os, rados, rbd, sys, time
sys.path.insert(0, %r)
from locations_e2e import pattern
cl = rados.Rados(conffile=os.environ["CEPH_CONF"]); cl.connect()
img = rbd.Image(cl.open_ioctx("rbd"), "vm")
img.write(pattern(0, 3), 0)
img.flush()
print("ready", flush=True)
sys.stdin.readline()
img.write(pattern(1, 3), %d)
img.flush()
print("flushed", flush=True)
img.close()
""" % (os.path.dirname(os.path.abspath(__file__)), BLOCK)
    e = dict(os.environ, SHALE_ON_LOCATION_FAILURE="block", SHALE_DURABILITY="backend")
    p = subprocess.Popen([sys.executable, "-c", code], env=e, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    check("block: client ready", p.stdout.readline().strip() == "ready")
    s3("A", "stop")
    p.stdin.write("go\n")
    p.stdin.flush()
    got = []
    tr = threading.Thread(target=lambda: got.append(p.stdout.readline().strip()))
    tr.start()
    tr.join(4)
    check("block: the flush waits while dc2 is down", not got, got)
    s3("A", "start")
    tr.join(90)
    check("block: the flush completes when dc2 is back", got == ["flushed"], got)
    p.wait(60)

    # ---- reads fall back when the preferred location dies
    ok, out = verify_child("vm", 1, {"SHALE_LOCATION_PREFERENCE": "dc2,home"}, salt=3)
    s3("A", "stop")
    ok2, out2 = verify_child("vm", 1, {"SHALE_LOCATION_PREFERENCE": "dc2,home"}, salt=3)
    s3("A", "start")
    check("reads fall back to home when dc2 dies", ok and ok2, out + out2)

    # ---- SIGKILL during resync, then resync resumes
    rbd.RBD().create(io, "big", 128 * MB)
    img = rbd.Image(io, "big")
    for i in range(1024):
        img.write(pattern(i, 5), i * BLOCK)
    img.close()
    rc, _, err = shale("location", "add", "rbd/big", "dc3", "--mode", "async")
    check("location add (big)", rc == 0, err)
    env = dict(os.environ, SHALE_RESYNC_RATE="8M")
    p = subprocess.Popen([SHALE, "sync", "rbd/big"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(3)
    p.send_signal(signal.SIGKILL)
    p.wait()
    rep = report("rbd/big")
    partial = rep["dc3"]["objects_behind"] > 0
    check("SIGKILL during resync: dc3 still behind, never claimed in sync", partial, rep["dc3"])
    rc, _, err = shale("sync", "rbd/big", "--location", "dc3")
    check("resync resumes after SIGKILL", rc == 0, err)
    rep = report("rbd/big")
    check("dc3 in sync after the resumed resync", rep["dc3"]["objects_behind"] == 0, rep["dc3"])
    bid = image_id("big")
    moved = hide_home_data(bid)
    ok, out = verify_child("big", 1024, {"SHALE_LOCATION_PREFERENCE": "dc3"}, salt=5)
    check("dc3 alone serves the resynced image", ok, out)
    unhide(moved)

    # ---- UKAI: host A writes near home; dc2 added and synced; host B takes over from dc2;
    # home removed; A cannot write any more
    rbd.RBD().create(io, "mig", 32 * MB)
    a = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--host"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=dict(os.environ))

    def ask(proc, line):
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        return proc.stdout.readline().strip()

    check("A ready", a.stdout.readline().strip() == "ready")
    check("A writes 128 blocks", ask(a, "w 0 128 7") == "done")
    rc, _, err = shale("location", "add", "rbd/mig", "dc2", "--mode", "sync")
    check("location add dc2 while A writes (run by A, the lock owner)", rc == 0, err)
    check("A writes 128 more", ask(a, "w 128 128 7") == "done")
    rc, _, err = shale("sync", "rbd/mig", "--location", "dc2")
    check("sync dc2", rc == 0, err)
    b = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--host"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, SHALE_LOCATION_PREFERENCE="dc2,home"))
    check("B ready", b.stdout.readline().strip() == "ready")
    check("B takes the lock (explicitly)", ask(b, "lock") == "done")
    check("B reads A's data", ask(b, "v 0 256 7") == "ok")
    rc, _, err = shale("location", "rm", "rbd/mig", "home")
    check("location rm home (run by B, the owner)", rc == 0, err)
    mid = image_id("mig")
    left = os.listdir(os.path.join(HOME_DIR, "rbd/images", mid, "seg")) \
        if os.path.exists(os.path.join(HOME_DIR, "rbd/images", mid, "seg")) else []
    check("home holds no data of the image any more", left == [], left)
    check("B writes and reads from dc2", ask(b, "w 256 16 9") == "done" and ask(b, "v 256 16 9") == "ok")
    check("A cannot write any more", ask(a, "w 0 1 1").startswith("error"))
    check("B verifies everything", ask(b, "v 0 256 7") == "ok")
    ask(a, "q")
    ask(b, "q")
    rep = report("rbd/mig")
    check("mig lives at dc2 only", list(rep) == ["dc2"], rep)
    rc, out, err = shale("check", "rbd/mig")
    check("shale check on the migrated image", rc == 0 and "0 problem(s)" in out, out + err)
    rc, out, err = shale("location", "rm", "rbd/mig", "dc2")
    check("the last location cannot be removed", rc != 0, err)

    # ---- errors and stats
    rc, out, err = shale("errors")
    check("shale errors: all reachable", rc == 0, out + err)
    s3("B", "stop")
    rc, out, err = shale("errors", "--format", "json")
    bad = json.loads(out)["unreachable"] if out.strip() else []
    check("shale errors lists the stopped location", rc != 0 and bad == ["dc3"], out + err)
    s3("B", "start")
    st = shale_json("stats", "rbd/vm")
    check("shale stats: ops and bytes stored by the writer",
          st["write"]["ops"] > 0 and st["write"]["bytes"] > 0 and len(st["locations"]) == 3, st)

    print("%d failed" % failures)
    return 1 if failures else 0


def host():
    """A client process: w FIRST N SALT | v FIRST N SALT | lock | q."""
    cl, io = connect()
    img = rbd.Image(io, "mig")
    print("ready", flush=True)
    for line in sys.stdin:
        c = line.split()
        try:
            if c[0] == "w":
                for i in range(int(c[1]), int(c[1]) + int(c[2])):
                    img.write(pattern(i, int(c[3])), i * BLOCK)
                img.flush()
                out = "done"
            elif c[0] == "v":
                bad = [i for i in range(int(c[1]), int(c[1]) + int(c[2]))
                       if img.read(i * BLOCK, BLOCK) != pattern(i, int(c[3]))]
                out = "ok" if not bad else "bad %s" % bad[:5]
            elif c[0] == "lock":
                img.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
                out = "done"
            elif c[0] == "q":
                print("bye", flush=True)
                os._exit(0)
            else:
                out = "bad command"
        except Exception as e:  # noqa: BLE001
            out = "error %s" % e
        print(out, flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["--host"]:
        host()
    else:
        sys.exit(main())
