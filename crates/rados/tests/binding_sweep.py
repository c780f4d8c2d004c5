#!/usr/bin/python3
"""Crash-free binding sweep (issue 9): every public method of rbd.RBD, rbd.Image, rados.Rados
and rados.Ioctx is called with valid and with invalid arguments in a child process; the parent
fails on any crash (a signal) of the child. A crashed child is restarted with the method that
killed it skipped, so one run names every crashing method.

Python exceptions are expected (most calls with bad arguments raise): only a signal counts.

usage: CEPH_CONF=... binding_sweep.py   (with Shale's libraries on LD_LIBRARY_PATH)
Prints "ok NAME" / "FAIL NAME" lines.
"""
import json
import os
import re
import subprocess
import sys

CONF = os.environ.get("CEPH_CONF", "")

# Image methods are wrapped (no signature): their parameters, by name.
IMAGE_PARAMS = {
    "aio_discard": "offset length oncomplete",
    "aio_flush": "oncomplete",
    "aio_mirror_image_create_snapshot": "flags oncomplete",
    "aio_mirror_image_get_info": "oncomplete",
    "aio_mirror_image_get_mode": "oncomplete",
    "aio_read": "offset length oncomplete",
    "aio_write": "data offset oncomplete",
    "aio_write_zeroes": "offset length oncomplete",
    "break_lock": "client cookie",
    "config_get": "key",
    "config_remove": "key",
    "config_set": "key value",
    "copy": "dest_ioctx dest_name",
    "create_snap": "snap_name",
    "deep_copy": "dest_ioctx dest_name",
    "diff_iterate": "offset length from_snapshot iterate_cb",
    "discard": "offset length",
    "encryption_format": "format passphrase",
    "encryption_load": "format passphrase",
    "flatten": "",
    "get_snap_timestamp": "snap_id",
    "is_protected_snap": "snap_name",
    "lock_acquire": "lock_mode",
    "lock_break": "lock_mode lock_owner",
    "lock_exclusive": "cookie",
    "lock_shared": "cookie tag",
    "metadata_get": "key",
    "metadata_remove": "key",
    "metadata_set": "key value",
    "mirror_image_create_snapshot": "",
    "mirror_image_disable": "force",
    "mirror_image_promote": "force",
    "protect_snap": "snap_name",
    "read": "offset length",
    "remove_snap": "snap_name",
    "remove_snap2": "snap_name flags",
    "remove_snap_by_id": "snap_id",
    "rename_snap": "snap_name dest_name",
    "resize": "size",
    "rollback_to_snap": "snap_name",
    "set_snap": "snap_name",
    "set_snap_by_id": "snap_id",
    "set_snap_limit": "limit",
    "snap_exists": "snap_name",
    "snap_get_group_namespace": "snap_id",
    "snap_get_id": "snap_name",
    "snap_get_mirror_namespace": "snap_id",
    "snap_get_name": "snap_id",
    "snap_get_namespace_type": "snap_id",
    "snap_get_trash_namespace": "snap_id",
    "sparsify": "sparse_size",
    "unlock": "cookie",
    "unprotect_snap": "snap_name",
    "update_features": "features enabled",
    "write": "data offset",
    "write_zeroes": "offset length",
}
# Never called in the sweep loop (they end the object, block on a peer, or are not methods).
SKIP = {
    "Rados": {"shutdown", "connect", "conf_read_file", "require_state", "wait_for_latest_osdmap"},
    "Ioctx": {"close", "require_ioctx_open", "watch", "notify", "aio_notify"},
    "Image": {"close", "aio_close", "require_not_closed"},
    "RBD": set(),
}


def child(skip):
    import rados
    import rbd

    def say(label):
        sys.stdout.write("CALL %s\n" % label)
        sys.stdout.flush()

    cl = rados.Rados(conffile=CONF)
    cl.connect()
    io = cl.open_ioctx("rbd")
    r = rbd.RBD()
    sfx = "-%d" % os.getpid()  # a restarted child works on fresh images
    r.create(io, "sweep-parent" + sfx, 8 << 20)
    p = rbd.Image(io, "sweep-parent" + sfx)
    p.write(b"p" * 4096, 0)
    p.create_snap("s1")
    p.protect_snap("s1")
    r.clone(io, "sweep-parent" + sfx, "s1", io, "sweep-child" + sfx)
    ch = rbd.Image(io, "sweep-child" + sfx)
    ch.create_snap("cs")
    ch.protect_snap("cs")
    r.clone(io, "sweep-child" + sfx, "cs", io, "sweep-grandchild" + sfx)
    r.create(io, "sweep-img" + sfx, 8 << 20)
    img = rbd.Image(io, "sweep-img" + sfx)
    img.write(b"i" * 8192, 4096)
    img.create_snap("s1")

    cb = lambda *a, **k: 0  # noqa: E731
    good = {
        "ioctx": io, "p_ioctx": io, "c_ioctx": io, "dest_ioctx": io,
        "name": "sweep-img" + sfx, "image_name": "sweep-img" + sfx, "p_name": "sweep-parent" + sfx,
        "c_name": "sweep-new" + sfx, "dest_name": "sweep-copy" + sfx, "dest_image_name": "sweep-mig" + sfx,
        "src": "sweep-img" + sfx, "dest": "sweep-renamed" + sfx, "snap_name": "s1", "p_snapname": "s1",
        "from_snapshot": None, "snapshot": None, "offset": 0, "length": 4096, "size": 8 << 20,
        "data": b"x" * 4096, "to_write": b"x" * 16, "to_append": b"x" * 16, "cmp_buf": b"x",
        "oncomplete": cb, "onsafe": cb, "iterate_cb": cb, "callback": cb, "on_progress": cb,
        "key": "k", "value": "v", "features": 1, "enabled": True, "flags": 0, "force": False,
        "snap_id": 1, "limit": 10, "lock_mode": 1, "lock_owner": "x", "cookie": "c", "tag": "t",
        "client": "client.1", "sparse_size": 4096, "format": 0, "passphrase": "pw",
        "mirror_mode": 0, "mode_filter": None, "image_id": "nope", "id": "nope",
        "pool_name": "sweep-pool" + sfx, "ioctx_name": "rbd", "pool_id": 1, "option": "mon_host",
        "val": "x", "cmd": json.dumps({"prefix": "df", "format": "json"}), "inbuf": b"",
        "osdid": 0, "pgid": "1.0", "mon_id": "a", "service": "s", "daemon": "d",
        "metadata": {}, "status": {}, "args": ["--debug-ms", "0"], "var": "CEPH_ARGS",
        "object_name": "obj", "obj": "obj", "oid": "obj", "xattr_name": "user.a",
        "xattr_value": b"v", "cls": "rbd", "method": "get_size", "write_len": 16,
        "app_name": "rbd", "loc_key": "", "nspace": "", "keys": ["a"], "values": [b"b"],
        "snaps": [], "str_features": "layering", "site_name": "site", "client_name": "c",
        "direction": 0, "token": "tok", "uuid": "u", "source_spec": "{}", "start_after": "",
        "filter_prefix": "", "max_return": 10, "key_begin": "a", "key_end": "b",
        "client_address": "127.0.0.1:0/1", "level": "info", "timeout": 1, "srcname": "s1",
    }
    bad_values = ["", "no-such-thing", -1, 1 << 62, None, b"", 0]

    def params_of(cls_name, meth):
        if cls_name == "Image":
            return IMAGE_PARAMS.get(meth.__name__, "").split()
        doc = (meth.__doc__ or "").strip().split("\n")[0]
        m = re.match(r"[\w.]+\((.*)\)", doc)
        if not m:
            return []
        names = []
        for part in re.split(r",\s*(?![^\[]*\])", m.group(1)):
            part = part.split("=")[0].split(":")[0].strip().split(" ")[-1]
            if part and part not in ("self", "*args", "**kwargs"):
                if "=" in m.group(1).split(part, 1)[1].split(",")[0]:
                    break  # only the required ones
                names.append(part)
        return names

    def variants(names):
        v = [tuple(good.get(n, "x") for n in names)]
        for i in range(len(names)):
            for b in bad_values:
                a = list(v[0])
                if a[i] is not b:
                    a[i] = b
                    v.append(tuple(a))
        v.append(())  # missing arguments
        return v

    for op, make in (("write_op", io.create_write_op), ("read_op", io.create_read_op)):
        try:
            good[op] = make()
        except Exception:
            good[op] = "x"
    objs = [("Rados", cl, rados.Rados), ("Ioctx", io, rados.Ioctx), ("Image", img, rbd.Image),
            ("Image@clone", ch, rbd.Image), ("RBD", r, rbd.RBD)]
    n = 0
    for label, obj, cls in objs:
        base = label.split("@")[0]
        for name in sorted(dir(cls)):
            if name.startswith("_") or name in SKIP[base]:
                continue
            meth = getattr(cls, name)
            if not callable(meth) or isinstance(meth, type):
                continue
            for k, args in enumerate(variants(params_of(base, meth))):
                tag = "%s.%s#%d" % (label, name, k)
                if tag in skip or "%s.%s" % (label, name) in skip:
                    continue
                say(tag)
                try:
                    res = getattr(obj, name)(*args)
                    # iterators (list, list_snaps, trash_list...) are walked
                    if hasattr(res, "__iter__") and not isinstance(res, (str, bytes, dict)):
                        for _ in res:
                            pass
                except BaseException:  # noqa: BLE001 - any Python-level failure is fine
                    pass
                n += 1
        # the image may have been resized away or closed: reopen a fresh one
        if base == "Image":
            try:
                obj.close()
            except Exception:
                pass
    for tag, fn in [("Image.close-twice", lambda: img.close()),
                    ("Ioctx.close", io.close), ("Rados.shutdown", cl.shutdown)]:
        say(tag)
        try:
            fn()
        except Exception:
            pass
    print("DONE %d" % n)


def parent():
    skip, crashes, total = [], [], 0
    for _ in range(40):
        p = subprocess.run([sys.executable, __file__, "--child", json.dumps(skip)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=900)
        calls = [line[5:] for line in p.stdout.splitlines() if line.startswith("CALL ")]
        done = [line for line in p.stdout.splitlines() if line.startswith("DONE ")]
        if p.returncode < 0:
            last = calls[-1] if calls else "(before the first call)"
            crashes.append("%s (signal %d)" % (last, -p.returncode))
            skip.append(last.split("#")[0])  # skip the whole method next time
            continue
        if p.returncode != 0 or not done:
            print("FAIL binding sweep: child exited %d" % p.returncode)
            print(p.stderr[-3000:])
            return
        total = int(done[0].split()[1])
        break
    if crashes:
        for c in crashes:
            print("FAIL binding sweep: the client crashed in %s" % c)
    else:
        print("ok binding sweep: %d calls of rbd.RBD/Image, rados.Rados/Ioctx, no crash" % total)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(set(json.loads(sys.argv[2])))
    else:
        parent()
