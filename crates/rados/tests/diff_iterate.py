#!/usr/bin/python3
"""rbd_diff_iterate2 as librbd (issue 9): a table of (image, range, whole_object,
include_parent, from_snapshot) answers, compared with the answers librbd 16.2 gave on
ceph-mini for the same writes (recorded in diff_iterate.expected.json; regenerate with
`diff_iterate.py --record` on real Ceph: CEPH_CONF of ceph-mini, no LD_LIBRARY_PATH).

The writes: a 64 MiB image (object size 4 MiB) gets 4 KiB at 0 and at 5 MiB + 8 KiB, snapshot
s1, then 4 KiB at 9 MiB + 512 and object 3 (12..16 MiB) written then discarded whole, plus
64 KiB at 20 MiB; the same on an image without fast-diff (layering only), and a clone of s1
with 4 KiB written at 1 MiB.

usage: CEPH_CONF=... diff_iterate.py [--record]     prints ok/FAIL lines
"""
import json
import os
import sys

import rados
import rbd

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = os.path.join(HERE, "diff_iterate.expected.json")
M = 1 << 20
RANGES = [(0, M), (4096, 8192), (M, 6 * M), (0, 64 * M), (5 * M, 1), (4 * M - 1, 2),
          (3 * M, 10 * M), (12 * M, 4 * M), (8 * M + 4096, 12 * M), (60 * M, 4 * M)]


def scenario(io, tag):
    r = rbd.RBD()
    names = {}
    for kind, feats in (("fast", None), ("plain", rbd.RBD_FEATURE_LAYERING)):
        name = "diffit-%s-%s" % (kind, tag)
        if feats is None:
            r.create(io, name, 64 * M, old_format=False)
        else:
            r.create(io, name, 64 * M, old_format=False, features=feats)
        with rbd.Image(io, name) as img:
            img.write(b"a" * 4096, 0)
            img.write(b"b" * 4096, 5 * M + 8192)
            img.write(b"d" * 4096, 12 * M)
            img.create_snap("s1")
            img.write(b"c" * 4096, 9 * M + 512)
            img.write(b"e" * (4 * M), 12 * M)
            img.discard(12 * M, 4 * M)
            img.write(b"f" * 65536, 20 * M)
            if kind == "fast":
                img.protect_snap("s1")
        names[kind] = name
    child = "diffit-clone-" + tag
    r.clone(io, names["fast"], "s1", io, child)
    with rbd.Image(io, child) as img:
        img.write(b"g" * 4096, M)
    names["clone"] = child
    return names


def table(io, names):
    out = {}
    for kind, name in sorted(names.items()):
        with rbd.Image(io, name) as img:
            for off, length in RANGES:
                for whole in (False, True):
                    for parent in (False, True):
                        for snap in ((None,) if kind == "clone" else (None, "s1")):
                            got = []
                            img.diff_iterate(off, length, snap,
                                             lambda o, n, e: got.append([o, n, bool(e)]),
                                             include_parent=parent, whole_object=whole)
                            key = "%s off=%d len=%d whole=%d parent=%d from=%s" % (
                                kind, off, length, whole, parent, snap)
                            out[key] = got
    return out


def cleanup(io, names):
    r = rbd.RBD()
    try:
        r.remove(io, names["clone"])
    except Exception:
        pass
    for kind in ("fast", "plain"):
        try:
            with rbd.Image(io, names[kind]) as img:
                for s in list(img.list_snaps()):
                    try:
                        img.unprotect_snap(s["name"])
                    except Exception:
                        pass
                    img.remove_snap(s["name"])
            r.remove(io, names[kind])
        except Exception:
            pass


def main():
    conf = os.environ.get("CEPH_CONF")
    cl = rados.Rados(conffile=conf)
    cl.connect()
    io = cl.open_ioctx("rbd")
    names = scenario(io, str(os.getpid()))
    try:
        got = table(io, names)
    finally:
        cleanup(io, names)
    if "--record" in sys.argv:
        with open(EXPECTED, "w") as f:
            json.dump(got, f, indent=0, sort_keys=True)
        print("ok recorded %d cases from this librbd" % len(got))
        return
    want = json.load(open(EXPECTED))
    bad = [k for k in sorted(want) if want[k] != got.get(k)]
    for k in bad[:15]:
        print("FAIL diff_iterate %s: librbd %s, got %s" % (k, want[k], got.get(k)))
    if not bad:
        print("ok diff_iterate: %d combinations of range, whole_object, include_parent and "
              "from-snapshot answer as librbd 16.2" % len(want))
    # the issue's own cases, spelled out
    cases = {
        "fast off=0 len=1048576 whole=1 parent=1 from=None": [[0, M, True]],
        "fast off=4096 len=8192 whole=1 parent=1 from=None": [[4096, 8192, True]],
        "fast off=1048576 len=6291456 whole=1 parent=1 from=None":
            [[M, 3 * M, True], [4 * M, 3 * M, True]],
    }
    for k, v in cases.items():
        if got.get(k) == v:
            print("ok diff_iterate whole_object clipped: %s" % k)
        else:
            print("FAIL diff_iterate whole_object clipped: %s: want %s, got %s"
                  % (k, v, got.get(k)))
    io.close()
    cl.shutdown()


if __name__ == "__main__":
    main()
