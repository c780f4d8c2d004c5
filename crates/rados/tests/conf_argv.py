#!/usr/bin/python3
"""rados_conf_parse_argv(_remainder) and rados_conf_parse_env of Shale's librados.so.2, at the
C level (ctypes), against the real librados.so.2 of Ceph 16.2 on this machine when it is
installed (it needs no cluster): same return code, same remainder, same values read back with
rados_conf_get; and Shale's own guarantees: the remainder array is never written past argc
entries, bad pointers and counts are -EINVAL, never a crash.

usage: conf_argv.py SHALE_LIBRADOS [REAL_LIBRADOS]
  (REAL_LIBRADOS defaults to /usr/lib/x86_64-linux-gnu/librados.so.2; without it the
   comparison is skipped and only Shale's own checks run)
Prints "ok NAME" / "FAIL NAME" / "skip NAME" lines; exits nonzero if something failed.
"""
import ctypes
import json
import os
import subprocess
import sys

REAL = "/usr/lib/x86_64-linux-gnu/librados.so.2"
OPTIONS = ["mon_host", "keyring", "log_file", "rbd_cache", "key", "client_mount_timeout",
           "debug_ms", "admin_socket", "rbd_default_features"]

# Each case: argv, and which function ("rem", "plain" or "env": then argv[0] is the value of
# the environment variable CEPH_ARGS). Real librados exits the process on an option missing its
# value, so those cases are Shale-only (below).
CASES = [
    (["prog", "df"], "rem"),
    (["df"], "rem"),
    (["--id", "foo", "df"], "rem"),
    (["-m", "1.2.3.4", "osd", "pool", "ls"], "rem"),
    (["--mon-host=5.6.7.8", "x", "--rbd-cache", "false", "y"], "rem"),
    (["--rbd_cache=false", "--", "--mon-host", "9"], "rem"),
    (["-k", "/k", "--keyring", "/k2", "z"], "rem"),
    (["--unknown-opt", "v", "w"], "rem"),
    (["--log-file", "/tmp/lf", "-n", "client.bar", "q"], "rem"),
    (["--name", "client.baz", "--cluster", "other", "r"], "rem"),
    (["-c", "/nonexistent.conf", "s"], "rem"),
    (["--conf=/nonexistent.conf", "s"], "rem"),
    (["--format", "json", "df"], "rem"),
    (["-f", "json", "df"], "rem"),
    (["--rbd-cache"], "rem"),
    (["--rbd-cache", "maybe", "d"], "rem"),
    (["--rbd-cache", "0", "x"], "rem"),
    (["--rbd-cache=1", "x"], "rem"),
    (["--no-rbd-cache", "d"], "rem"),
    (["--rbd-cache", "--mon-host", "1"], "rem"),
    (["--rbd-cache=maybe", "x"], "rem"),
    (["--rbd-cache=", "c"], "rem"),
    (["--client-mount-timeout=12", "y"], "rem"),
    (["--debug-ms", "1", "u"], "rem"),
    (["--debug_ms=1/5", "u"], "rem"),
    (["--fsid", "bad", "d"], "rem"),
    (["--key", "AQxx", "e"], "rem"),
    (["--keyfile", "/kf", "e"], "rem"),
    (["--admin-socket", "/as", "e"], "rem"),
    (["-d", "e"], "rem"),
    (["--foreground", "e"], "rem"),
    (["--setuser", "u", "--setgroup", "g", "t"], "rem"),
    (["--rbd_default_features", "3", "t"], "rem"),
    (["--mon-host", "a", "--mon-host", "b"], "rem"),
    (["--mon host", "a", "z"], "rem"),
    (["---mon-host", "q", "x"], "rem"),
    (["--Mon-Host", "q", "x"], "rem"),
    (["--no-mon-host", "x"], "rem"),
    (["-mfoo", "x"], "rem"),
    (["-m=foo", "x"], "rem"),
    (["-s"], "rem"),
    (["-", "b"], "rem"),
    ([], "rem"),
    (["prog", "--mon-host", "1", "x"], "plain"),
    (["--mon-host", "1", "x"], "plain"),
    (["--mon-host 7.7.7.7 leftover --rbd-cache=false"], "env"),
    (["--keyring /kk"], "env"),
    (["--id foo --conf /x"], "env"),
]

CHILD = r'''
import ctypes, json, os, sys
lib = ctypes.CDLL(sys.argv[1])
args, mode = json.loads(sys.argv[2])
opts = json.loads(sys.argv[3])
c = ctypes.c_void_p()
assert lib.rados_create2(ctypes.byref(c), b"ceph", b"client.admin", 0) == 0
n = len(args)
argv = (ctypes.c_char_p * (n + 1))(*[a.encode() for a in args], b"AFTER")
rem = (ctypes.c_char_p * (n + 2))(*([b"SENTINEL"] * (n + 2)))
if mode == "rem":
    r = lib.rados_conf_parse_argv_remainder(c, n, argv, rem)
elif mode == "plain":
    r = lib.rados_conf_parse_argv(c, n, argv)
else:
    os.environ["CEPH_ARGS"] = args[0]
    r = lib.rados_conf_parse_env(c, None)
buf = ctypes.create_string_buffer(512)
vals = {}
for k in opts:
    rr = lib.rados_conf_get(c, k.encode(), buf, 512)
    vals[k] = buf.value.decode() if rr == 0 else rr
print(json.dumps([r, [None if x is None else x.decode() for x in rem], vals]))
'''

failed = 0


def ok(name):
    print("ok " + name)


def bad(name, detail=""):
    global failed
    failed += 1
    print("FAIL " + name)
    for line in str(detail).splitlines()[-15:]:
        print("     " + line)


def probe(lib, args, mode):
    env = dict(os.environ, CEPH_CONF="/nonexistent/ceph.conf")
    env.pop("CEPH_ARGS", None)
    env.pop("LD_LIBRARY_PATH", None)  # each library is loaded by its path
    p = subprocess.run([sys.executable, "-c", CHILD, lib, json.dumps([args, mode]),
                        json.dumps(OPTIONS)], capture_output=True, text=True, env=env, timeout=60)
    if p.returncode:
        return None, p.stderr
    return json.loads(p.stdout), p.stderr


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    shale = sys.argv[1]
    real = sys.argv[2] if len(sys.argv) > 2 else REAL

    # ---- Shale's own guarantees, at the C level
    lib = ctypes.CDLL(shale)
    c = ctypes.c_void_p()
    if lib.rados_create2(ctypes.byref(c), b"ceph", b"client.admin", 0) != 0:
        bad("rados_create2")
        return 1
    argv = (ctypes.c_char_p * 4)(b"-m", b"h", b"df", b"AFTER")
    rem = (ctypes.c_char_p * 4)(b"S0", b"S1", b"S2", b"SENTINEL")
    r = lib.rados_conf_parse_argv_remainder(c, 3, argv, rem)
    got = [None if x is None else x.decode() for x in rem]
    if r == 0 and got == ["df", None, None, "SENTINEL"]:
        ok("remainder: argc entries written (rest NULL), nothing past argc")
    else:
        bad("remainder layout", "%d %r" % (r, got))
    if ctypes.cast(rem[0], ctypes.c_void_p).value == ctypes.cast(argv[2], ctypes.c_void_p).value:
        ok("remainder: the caller's own argv pointers")
    else:
        bad("remainder: not the caller's pointers")
    rem2 = (ctypes.c_char_p * 2)(b"S0", b"S1")
    for name, call in [
        ("NULL remargv", lambda: lib.rados_conf_parse_argv_remainder(c, 1, argv, None)),
        ("NULL argv", lambda: lib.rados_conf_parse_argv_remainder(c, 1, None, rem2)),
        ("negative argc", lambda: lib.rados_conf_parse_argv_remainder(c, -1, argv, rem2)),
        ("NULL entry", lambda: lib.rados_conf_parse_argv_remainder(
            c, 2, (ctypes.c_char_p * 2)(b"-m", None), rem2)),
        ("missing value", lambda: lib.rados_conf_parse_argv_remainder(
            c, 1, (ctypes.c_char_p * 1)(b"--mon-host"), rem2)),
        ("parse_argv NULL argv", lambda: lib.rados_conf_parse_argv(c, 2, None)),
        ("bad handle", lambda: lib.rados_conf_parse_argv_remainder(None, 1, argv, rem2)),
    ]:
        r = call()
        if r == -22 and [x for x in rem2] == [b"S0", b"S1"]:
            ok("remainder, %s: -EINVAL, output untouched" % name)
        else:
            bad("remainder, %s" % name, "%r %r" % (r, list(rem2)))
    buf = ctypes.create_string_buffer(64)
    lib.rados_conf_set(c, b"mon_host", b"before")
    bad_argv = (ctypes.c_char_p * 4)(b"--mon-host", b"a", b"--rbd-cache=maybe", b"x")
    r = lib.rados_conf_parse_argv_remainder(c, 4, bad_argv, (ctypes.c_char_p * 4)())
    lib.rados_conf_get(c, b"mon_host", buf, 64)
    if r == -22 and buf.value == b"before":
        ok("a bad option changes nothing (not even the options before it)")
    else:
        bad("bad option atomicity", "%r %r" % (r, buf.value))
    if lib.rados_conf_parse_env(c, b"SHALE_TEST_UNSET_VARIABLE") == 0:
        ok("parse_env of an unset variable: 0")
    else:
        bad("parse_env of an unset variable")
    if lib.rados_conf_parse_env(c, b"") == -22:
        ok("parse_env of an empty name: -EINVAL")
    else:
        bad("parse_env of an empty name")
    lib.rados_shutdown(c)

    # ---- the same cases on the real librados
    if not os.path.exists(real):
        print("skip comparison with the real librados (%s not installed)" % real)
        return 1 if failed else 0
    defaults, err = probe(real, [], "rem")
    if defaults is None:
        bad("probe of the real librados", err)
        return 1
    for args, mode in CASES:
        name = "%s %s" % (mode, " ".join(args) or "(no arguments)")
        theirs, terr = probe(real, args, mode)
        ours, oerr = probe(shale, args, mode)
        if theirs is None or ours is None:
            bad(name + ": probe failed", terr + oerr)
            continue
        (trc, trem, tvals), (orc, orem, ovals) = theirs, ours
        if mode == "env" and trc == 0 and orc == -22:
            trc = orc  # a bad CEPH_ARGS: librados prints the error and returns 0
        if trc != 0:
            # On error Shale applies nothing; librados keeps the options before the bad one.
            tvals = ovals = None
        # Shale does not model Ceph's built-in defaults: an option the arguments left alone
        # reads back "" there, its default in librados.
        if tvals:
            for k in list(tvals):
                if ovals.get(k) == "" and tvals[k] == defaults[2].get(k):
                    del tvals[k], ovals[k]
        if (trc, trem, tvals) == (orc, orem, ovals):
            ok("as librados: " + name)
        else:
            bad("as librados: " + name,
                "librados: %r\nshale:    %r" % ([trc, trem, tvals], [orc, orem, ovals]))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
