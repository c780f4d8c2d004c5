"""python3-rbd / python3-rados on Shale's librbd.so.1 + librados.so.2 (run with /usr/bin/python3).

usage: python_rbd.py CONF      (CONF: a ceph.conf whose [global] shale_store names a fresh store)
Prints one "ok NAME" / "FAIL NAME: why" line per check.
"""
import errno
import json
import os
import sys
import threading

import rados
import rbd

conf = sys.argv[1]
failures = 0


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


cluster = rados.Rados(conffile=conf, rados_id="admin")
cluster.connect()
check("rados: connect + version", cluster.version().major == 3)
check("rados: fsid looks like a uuid", len(cluster.get_fsid()) == 36)
check("rados: instance id", cluster.get_instance_id() > 0)
check("rados: default pool rbd listed", "rbd" in cluster.list_pools())
cluster.create_pool("p2")
check("rados: pool create + exists", cluster.pool_exists("p2"))
raises("rados: create existing pool -> ObjectExists", rados.ObjectExists, lambda: cluster.create_pool("p2"))
raises("rados: open missing pool -> ObjectNotFound", rados.ObjectNotFound, lambda: cluster.open_ioctx("nopool"))
st = cluster.get_cluster_stats()
check("rados: cluster stats", st["kb"] > 0 and st["kb_avail"] > 0, st)
ret, out, outs = cluster.mon_command(json.dumps({"prefix": "df", "format": "json"}), b"")
df = json.loads(out) if ret == 0 else {}
pools = {p["name"]: p for p in df.get("pools", [])}
check("rados: mon_command df", ret == 0 and "rbd" in pools and "max_avail" in pools["rbd"]["stats"]
      and df["stats"]["total_bytes"] > 0, (ret, outs))
ret, out, outs = cluster.mon_command(json.dumps({"prefix": "no such"}), b"")
check("rados: unknown mon command -> EINVAL", ret == -errno.EINVAL and outs, (ret, outs))

ioctx = cluster.open_ioctx("rbd")
check("rados: ioctx pool name / id", ioctx.get_pool_name() == "rbd" and ioctx.get_pool_id() > 0)
r = rbd.RBD()
check("rbd: version", r.version() == (1, 16, 0), r.version())
r.create(ioctx, "img", 8 << 20, order=22)
raises("rbd: create existing -> ImageExists", rbd.ImageExists, lambda: r.create(ioctx, "img", 1 << 20))
raises("rbd: create empty name -> InvalidArgument", rbd.InvalidArgument, lambda: r.create(ioctx, "", 1 << 20))
raises("rbd: create order 5 -> ArgumentOutOfRange", rbd.ArgumentOutOfRange,
       lambda: r.create(ioctx, "o5", 1 << 20, order=5))
r.create(ioctx, "img2", 1 << 20)
check("rbd: list", sorted(r.list(ioctx)) == ["img", "img2"], r.list(ioctx))
check("rbd: list2", sorted(i["name"] for i in r.list2(ioctx)) == ["img", "img2"])
raises("rbd: open missing -> ImageNotFound", rbd.ImageNotFound, lambda: rbd.Image(ioctx, "nope"))
raises("rbd: open missing snapshot -> ImageNotFound", rbd.ImageNotFound,
       lambda: rbd.Image(ioctx, "img", snapshot="s1"))

with rbd.Image(ioctx, "img") as im:
    check("rbd: size", im.size() == 8 << 20)
    s = im.stat()
    check("rbd: stat", s["size"] == 8 << 20 and s["order"] == 22 and s["obj_size"] == 4 << 20
          and s["num_objs"] == 2 and s["block_name_prefix"].startswith("rbd_data."), s)
    data = os.urandom(1 << 20)
    check("rbd: write", im.write(data, 4096) == len(data))
    check("rbd: read back", im.read(4096, len(data)) == data)
    check("rbd: unaligned write/read", im.write(b"xyz", 5) == 3 and im.read(4, 5) == b"\0xyz\0")
    raises("rbd: read past end -> InvalidArgument", rbd.InvalidArgument, lambda: im.read(9 << 20, 10))
    raises("rbd: write crossing end -> IncompleteWriteError", rbd.IncompleteWriteError,
           lambda: im.write(b"a" * 10, (8 << 20) - 5))
    check("rbd: read crossing end is short", len(im.read((8 << 20) - 5, 10)) == 5)
    im.discard(4096, 4096)
    check("rbd: discard reads zeros", im.read(4096, 4096) == b"\0" * 4096)
    im.flush()
    check("rbd: features", im.features() == 61, im.features())
    check("rbd: id / block_name_prefix", im.block_name_prefix() == "rbd_data." + im.id())
    check("rbd: no snapshots", list(im.list_snaps()) == [])
    raises("rbd: parent_info -> ImageNotFound", rbd.ImageNotFound, lambda: im.parent_info())
    im.metadata_set("k1", "v1")
    im.metadata_set("k2", "v2")
    check("rbd: metadata get", im.metadata_get("k1") == "v1")
    check("rbd: metadata list", dict(im.metadata_list()) == {"k1": "v1", "k2": "v2"})
    im.metadata_remove("k1")
    raises("rbd: metadata get removed -> KeyError", KeyError, lambda: im.metadata_get("k1"))
    check("rbd: watchers lists this handle", len(list(im.watchers_list())) == 1)
    # aio with callbacks, from python
    done = threading.Event()
    got = {}

    def cb(comp, buf):
        got["buf"] = buf
        done.set()

    c = im.aio_read(4096 * 2, 4096, cb)
    check("rbd: aio_read callback", done.wait(10) and got.get("buf") == data[4096:8192])
    wdone = threading.Event()
    c = im.aio_write(b"\x11" * 4096, 0, lambda comp: wdone.set())
    check("rbd: aio_write callback", wdone.wait(10) and c.get_return_value() == 0)
    im.resize(16 << 20)
    check("rbd: resize grow", im.size() == 16 << 20)
    raises("rbd: resize shrink without allow_shrink -> InvalidArgument", rbd.InvalidArgument,
           lambda: im.resize(1 << 20, allow_shrink=False))
    im.resize(4 << 20)
    check("rbd: resize shrink", im.size() == 4 << 20)
    raises("rbd: remove while open -> ImageBusy", rbd.ImageBusy, lambda: r.remove(ioctx, "img"))
    with rbd.Image(ioctx, "img", read_only=True) as ro:
        check("rbd: second (read-only) handle sees the data", ro.read(0, 4096) == b"\x11" * 4096)
        raises("rbd: write on read-only -> ReadOnlyImage", rbd.ReadOnlyImage, lambda: ro.write(b"x", 0))
    im.copy(ioctx, "copy")

with rbd.Image(ioctx, "copy") as cp:
    check("rbd: copy has the data", cp.size() == 4 << 20 and cp.read(0, 4096) == b"\x11" * 4096)
r.rename(ioctx, "img2", "img3")
raises("rbd: rename to existing -> ImageExists", rbd.ImageExists, lambda: r.rename(ioctx, "img3", "img"))
raises("rbd: rename missing -> ImageNotFound", rbd.ImageNotFound, lambda: r.rename(ioctx, "nope", "x"))
for name in ["img", "img3", "copy"]:
    r.remove(ioctx, name)
check("rbd: remove", r.list(ioctx) == [])
raises("rbd: remove missing -> ImageNotFound", rbd.ImageNotFound, lambda: r.remove(ioctx, "img"))
check("rados: pool stats", "num_bytes" in ioctx.get_stats())
ioctx.close()
cluster.delete_pool("p2")
check("rados: pool delete", not cluster.pool_exists("p2"))
cluster.shutdown()

# fork: a child starts with fresh library state and can connect and do I/O on its own
pid = os.fork()
if pid == 0:
    try:
        with rados.Rados(conffile=conf) as c, c.open_ioctx("rbd") as io:
            rbd.RBD().create(io, "forked", 1 << 20)
            with rbd.Image(io, "forked") as im:
                im.write(b"f" * 512, 0)
                ok = im.read(0, 512) == b"f" * 512
            rbd.RBD().remove(io, "forked")
        os._exit(0 if ok else 1)
    except Exception:  # noqa: BLE001
        os._exit(2)
_, status = os.waitpid(pid, 0)
check("fork: child connects and does I/O", status == 0, status)
sys.exit(1 if failures else 0)
