"""An OpenStack-style image/volume workflow through Debian's python3-rbd (run with /usr/bin/python3).

usage: openstack.py CONF [QEMU_IMG_OUT_DIR]
  CONF: a ceph.conf whose [global] shale_store names a fresh store (for Shale), or a real
  cluster's ceph.conf with REAL=1 in the environment (pool "rbd" is used; images named os-*).
Prints one "ok NAME" / "FAIL NAME: why" line per check. With QEMU_IMG_OUT_DIR, the boot-disk check
reads a clone with `qemu-img convert rbd:rbd/<vol>` and compares the bytes.

Glance uploads an image and protects a snapshot of it; Cinder/Nova clone volumes from it (with
features), grow them and write; a volume snapshot is cloned again (clone of a clone) and
flattened; diffs between snapshots; then everything is deleted in Cinder's order, checking on
the way every refusal librbd gives (error classes measured on Ceph 16.2.15).
"""
import os
import subprocess
import sys

import rados
import rbd

conf = sys.argv[1]
outdir = sys.argv[2] if len(sys.argv) > 2 else None
REAL = os.environ.get("REAL") == "1"
failures = 0
MB = 1 << 20


def check(name, cond, why=""):
    global failures
    if cond:
        print("ok " + name)
    else:
        failures += 1
        print("FAIL %s: %s" % (name, why))


def raises(name, exc, fn):
    try:
        fn()
    except exc:
        check(name, True)
    except Exception as e:  # noqa: BLE001 - report the wrong class
        check(name, False, "raised %s: %s" % (type(e).__name__, e))
    else:
        check(name, False, "did not raise " + exc.__name__)


def diff(img, from_snap=None, **kw):
    out = []
    img.diff_iterate(0, img.size(), from_snap, lambda o, n, e: out.append((o, n, e)), **kw)
    return out


def covered(extents, off, n):
    """True if [off, off+n) lies inside the union of the reported existing extents."""
    return any(o <= off and off + n <= o + ln and e for o, ln, e in extents)


cluster = rados.Rados(conffile=conf)
cluster.connect()
ioctx = cluster.open_ioctx("rbd")
r = rbd.RBD()
base = os.urandom(4 * MB)

# ---- Glance: upload, snapshot, protect -------------------------------------------------------
r.create(ioctx, "os-glance", 8 * MB, order=22, old_format=False, features=61)
with rbd.Image(ioctx, "os-glance") as im:
    im.write(base, 0)
    im.create_snap("snap")
    check("glance: snapshot listed", [s["name"] for s in im.list_snaps()] == ["snap"])
    raises("glance: snapshot again -> ImageExists", rbd.ImageExists, lambda: im.create_snap("snap"))
    raises("glance: clone before protect -> InvalidArgument", rbd.InvalidArgument,
           lambda: r.clone(ioctx, "os-glance", "snap", ioctx, "os-early"))
    check("glance: not protected yet", im.is_protected_snap("snap") is False)
    im.protect_snap("snap")
    check("glance: protected", im.is_protected_snap("snap") is True)
    raises("glance: protect again -> ImageBusy", rbd.ImageBusy, lambda: im.protect_snap("snap"))
    im.write(b"\xee" * 4096, 0)  # the head moves on; clones see the snapshot
    sid = im.snap_get_id("snap") if hasattr(im, "snap_get_id") else None
with rbd.Image(ioctx, "os-glance", snapshot="snap", read_only=True) as snap:
    check("glance: read at the snapshot", snap.read(0, 4096) == base[:4096])
    raises("glance: write at a snapshot -> ReadOnlyImage", rbd.ReadOnlyImage, lambda: snap.write(b"x", 0))
with rbd.Image(ioctx, "os-glance", snapshot="snap") as snap:
    raises("glance: write on a handle opened at a snapshot -> ReadOnlyImage", rbd.ReadOnlyImage,
           lambda: snap.write(b"x", 0))
    snap.set_snap(None)
    check("glance: set_snap(None) reads the head", snap.read(0, 4096) == b"\xee" * 4096)
    snap.set_snap("snap")
    check("glance: set_snap(name) reads the snapshot", snap.read(0, 4096) == base[:4096])
    raises("glance: set_snap missing -> ImageNotFound", rbd.ImageNotFound, lambda: snap.set_snap("nope"))

# ---- Cinder/Nova: volumes cloned from the image ----------------------------------------------
r.clone(ioctx, "os-glance", "snap", ioctx, "os-vol1", features=rbd.RBD_FEATURE_LAYERING | 4 | 8 | 16)
raises("cinder: clone to an existing name -> ImageExists", rbd.ImageExists,
       lambda: r.clone(ioctx, "os-glance", "snap", ioctx, "os-vol1"))
raises("cinder: clone of a missing snapshot -> ImageNotFound", rbd.ImageNotFound,
       lambda: r.clone(ioctx, "os-glance", "nosnap", ioctx, "os-x"))
raises("cinder: clone without layering -> FunctionNotSupported", rbd.FunctionNotSupported,
       lambda: r.clone(ioctx, "os-glance", "snap", ioctx, "os-x", features=4))
with rbd.Image(ioctx, "os-vol1") as v:
    check("cinder: clone features", v.features() == 29, v.features())
    check("cinder: parent_info", v.parent_info() == ("rbd", "os-glance", "snap"), v.parent_info())
    spec = v.get_parent_image_spec()
    check("cinder: parent image spec", spec["image_name"] == "os-glance" and spec["snap_name"] == "snap", spec)
    check("cinder: overlap", v.overlap() == 8 * MB, v.overlap())
    v.resize(16 * MB)
    check("cinder: resize larger", v.size() == 16 * MB)
    v.write(b"\x11" * 8192, 12 * MB)
    v.write(b"\x22" * 4096, 4096)
    check("cinder: parent data reads through", v.read(0, 4096) == base[:4096])
    check("cinder: own writes", v.read(4096, 4096) == b"\x22" * 4096 and v.read(12 * MB, 8192) == b"\x11" * 8192)
    check("cinder: rest of the parent", v.read(8192, MB) == base[8192:8192 + MB])
    check("cinder: grown part is zero", v.read(9 * MB, 4096) == b"\0" * 4096)
with rbd.Image(ioctx, "os-glance") as im:
    kids = list(im.list_children2())
    check("glance: list_children2", [(k["pool"], k["image"]) for k in kids] == [("rbd", "os-vol1")], kids)
    check("glance: list_children", list(im.list_children()) == [("rbd", "os-vol1")])
    raises("glance: unprotect with clones -> ImageBusy", rbd.ImageBusy, lambda: im.unprotect_snap("snap"))
    raises("glance: remove protected snapshot -> ImageBusy", rbd.ImageBusy, lambda: im.remove_snap("snap"))
raises("glance: remove image with snapshots -> ImageHasSnapshots", rbd.ImageHasSnapshots,
       lambda: r.remove(ioctx, "os-glance"))

# ---- volume snapshot, clone of a clone, flatten ----------------------------------------------
with rbd.Image(ioctx, "os-vol1") as v:
    v.create_snap("vsnap")
    v.protect_snap("vsnap")
    v.write(b"\x33" * 4096, 5 * MB)
    d = diff(v, "vsnap")
    # librbd (and Shale, issue 9) report an object created since the snapshot from the
    # object's start (copy-up) to its last written byte.
    check("diff_iterate since a snapshot: only the new write", covered(d, 5 * MB, 4096)
          and all(4 * MB <= o and o + n <= 8 * MB for o, n, _ in d), d)
    d = diff(v, None, include_parent=False)
    check("diff_iterate without parent: own data", covered(d, 4096, 4096) and covered(d, 12 * MB, 8192)
          and (REAL or not covered(d, 2 * MB, 4096)), d)
    d = diff(v, None)
    check("diff_iterate with parent: parent data too", covered(d, 2 * MB, 4096), d)
    raises("diff_iterate from a missing snapshot -> ImageNotFound", rbd.ImageNotFound, lambda: diff(v, "nope"))
r.clone(ioctx, "os-vol1", "vsnap", ioctx, "os-vol2")
with rbd.Image(ioctx, "os-vol2") as v2:
    check("clone of clone: sees grandparent data", v2.read(0, 4096) == base[:4096])
    check("clone of clone: sees parent data", v2.read(4096, 4096) == b"\x22" * 4096
          and v2.read(12 * MB, 8192) == b"\x11" * 8192)
    check("clone of clone: not the parent's later write", v2.read(5 * MB, 4096) == b"\0" * 4096)
    check("clone of clone: size", v2.size() == 16 * MB)
    v2.write(b"\x44" * 4096, 7 * MB)
    v2.flatten()
    raises("flatten: no parent any more -> ImageNotFound", rbd.ImageNotFound, lambda: v2.parent_info())
    raises("flatten again -> InvalidArgument", rbd.InvalidArgument, lambda: v2.flatten())
    check("flatten: data stays", v2.read(0, 4096) == base[:4096] and v2.read(4096, 4096) == b"\x22" * 4096
          and v2.read(7 * MB, 4096) == b"\x44" * 4096 and v2.read(2 * MB, MB) == base[2 * MB:3 * MB])
with rbd.Image(ioctx, "os-vol1") as v:
    check("flatten: parent snapshot has no children", list(v.list_children2()) == [])

# ---- boot disk: QEMU reads the clone ---------------------------------------------------------
if outdir:
    with rbd.Image(ioctx, "os-vol1", read_only=True) as v:
        want = v.read(0, v.size())
    out = os.path.join(outdir, "os-vol1.raw")
    p = subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "raw", "rbd:rbd/os-vol1", out],
                       capture_output=True, text=True, env=dict(os.environ, CEPH_CONF=conf))
    got = open(out, "rb").read() if p.returncode == 0 else b""
    check("qemu-img convert of a clone matches python reads", got == want and len(got) == 16 * MB,
          p.stderr.strip()[-300:])
    check("qemu-img convert of a clone has the parent's bytes", got[:4096] == base[:4096])

# ---- rollback, rename, limit ------------------------------------------------------------------
with rbd.Image(ioctx, "os-vol2") as v2:
    v2.create_snap("before")
    v2.write(b"\x55" * 4096, 0)
    v2.rollback_to_snap("before")
    check("rollback restores data", v2.read(0, 4096) == base[:4096])
    v2.rename_snap("before", "after")
    check("rename_snap", [s["name"] for s in v2.list_snaps()] == ["after"])
    raises("rename_snap missing -> ImageNotFound", rbd.ImageNotFound, lambda: v2.rename_snap("before", "x"))
    v2.set_snap_limit(1)
    check("snap limit", v2.get_snap_limit() == 1)
    raises("snapshot beyond the limit -> DiskQuotaExceeded", rbd.DiskQuotaExceeded, lambda: v2.create_snap("x"))
    v2.remove_snap_limit()
    check("snap limit removed", v2.get_snap_limit() == 2 ** 64 - 1)
    raises("unprotect an unprotected snapshot -> InvalidArgument", rbd.InvalidArgument,
           lambda: v2.unprotect_snap("after"))
    ts = v2.get_snap_timestamp(v2.snap_get_id("after") if hasattr(v2, "snap_get_id")
                               else list(v2.list_snaps())[0]["id"])
    check("snapshot timestamp", ts.year >= 2024, ts)

# ---- delete in Cinder's order -----------------------------------------------------------------
raises("remove a volume with snapshots -> ImageHasSnapshots", rbd.ImageHasSnapshots,
       lambda: r.remove(ioctx, "os-vol2"))
with rbd.Image(ioctx, "os-vol2") as v2:
    v2.remove_snap("after")
r.remove(ioctx, "os-vol2")
with rbd.Image(ioctx, "os-vol1") as v:
    v.unprotect_snap("vsnap")
    v.remove_snap("vsnap")
r.remove(ioctx, "os-vol1")
with rbd.Image(ioctx, "os-glance") as im:
    check("glance: no children left", list(im.list_children2()) == [])
    im.unprotect_snap("snap")
    raises("glance: remove missing snapshot -> ImageNotFound", rbd.ImageNotFound, lambda: im.remove_snap("zz"))
    im.remove_snap("snap")
r.remove(ioctx, "os-glance")
check("everything deleted", [n for n in r.list(ioctx) if n.startswith("os-")] == [], r.list(ioctx))
ioctx.close()
cluster.shutdown()
sys.exit(1 if failures else 0)
