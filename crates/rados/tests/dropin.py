#!/usr/bin/python3
"""Issue 9 parity checks through python3-rbd, with the answers librbd 16.2.15 gave on ceph-mini:
list_descendants (children of all snapshots, recursively), mirroring queries of a pool and an
image that are not mirrored.  usage: CEPH_CONF=... dropin.py   prints ok/FAIL lines"""
import os

import rados
import rbd


def check(name, got, want):
    print(("ok %s" if got == want else "FAIL %s: got %r, want %r") % ((name,) if got == want else (name, got, want)))


cl = rados.Rados(conffile=os.environ.get("CEPH_CONF"))
cl.connect()
io = cl.open_ioctx("rbd")
r = rbd.RBD()
r.create(io, "d-parent", 8 << 20)
with rbd.Image(io, "d-parent") as p:
    for s in ("s1", "s2"):
        p.create_snap(s)
        p.protect_snap(s)
r.clone(io, "d-parent", "s1", io, "d-child1")
r.clone(io, "d-parent", "s2", io, "d-child2")
with rbd.Image(io, "d-child1") as c:
    c.create_snap("cs")
    c.protect_snap("cs")
r.clone(io, "d-child1", "cs", io, "d-grandchild")
with rbd.Image(io, "d-parent") as p:
    check("list_descendants: children of every snapshot, then theirs",
          [d["image"] for d in p.list_descendants()], ["d-child1", "d-child2", "d-grandchild"])
    check("list_children2 stays one level", sorted(d["image"] for d in p.list_children2()),
          ["d-child1", "d-child2"])
with rbd.Image(io, "d-parent", snapshot="s2") as p:
    check("list_descendants at a snapshot: that snapshot's", [d["image"] for d in p.list_descendants()],
          ["d-child2"])
with rbd.Image(io, "d-grandchild") as g:
    check("list_descendants of a leaf is empty", list(g.list_descendants()), [])
    check("mirror_image_get_info: disabled", g.mirror_image_get_info(),
          {"global_id": "", "state": rbd.RBD_MIRROR_IMAGE_DISABLED, "primary": False})
    check("mirror_image_get_mode", g.mirror_image_get_mode(), 0)
    st = g.mirror_image_get_status()
    check("mirror_image_get_status: unknown, status not found",
          (st["name"], st["info"]["state"], st["state"], st["description"], st["up"], st["remote_statuses"]),
          ("d-grandchild", rbd.RBD_MIRROR_IMAGE_DISABLED, 0, "status not found", False, []))
    try:
        g.mirror_image_get_instance_id()
        check("mirror_image_get_instance_id: EINVAL", "no error", "InvalidArgument")
    except rbd.InvalidArgument:
        check("mirror_image_get_instance_id: EINVAL", 1, 1)
check("mirror_mode_get: disabled", r.mirror_mode_get(io), rbd.RBD_MIRROR_MODE_DISABLED)
check("mirror_image_status_list empty", list(r.mirror_image_status_list(io)), [])
check("mirror_image_info_list empty", list(r.mirror_image_info_list(io)), [])
check("mirror_image_instance_id_list empty", list(r.mirror_image_instance_id_list(io)), [])
check("mirror_image_status_summary empty", r.mirror_image_status_summary(io), [])
# An empty snapshot name: librbd 16.2.15 accepts it, a second one is EEXIST, renaming another
# snapshot to it too (measured on ceph-mini).
r.create(io, "d-emptysnap", 4 << 20)
with rbd.Image(io, "d-emptysnap") as e:
    e.create_snap("")
    check("create_snap(''): listed", [s["name"] for s in e.list_snaps()], [""])
    try:
        e.create_snap("")
        check("create_snap('') twice: EEXIST", "no error", "ImageExists")
    except rbd.ImageExists:
        check("create_snap('') twice: EEXIST", 1, 1)
    e.create_snap("x")
    try:
        e.rename_snap("x", "")
        check("rename_snap to an existing '': EEXIST", "no error", "ImageExists")
    except rbd.ImageExists:
        check("rename_snap to an existing '': EEXIST", 1, 1)
    e.remove_snap("")
    check("remove_snap(''): gone", [s["name"] for s in e.list_snaps()], ["x"])
    e.remove_snap("x")
r.remove(io, "d-emptysnap")
io.close()
cl.shutdown()
