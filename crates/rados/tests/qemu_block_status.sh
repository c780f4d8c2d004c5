#!/bin/bash
# QEMU's users of rbd_diff_iterate2 (issue 9): qemu-storage-daemon (QEMU 7.2) exports a Shale
# image over NBD through its rbd driver; `nbdinfo --map` (block status: it used to abort QEMU with
# "qemu_rbd_co_block_status: Assertion 'req.bytes <= bytes' failed") must list the data at
# unaligned offsets, nbdcopy and `qemu-img convert` must copy the same bytes, `qemu-img map`
# must report the written objects. Needs LD_LIBRARY_PATH on Shale's libraries.
# usage: qemu_block_status.sh SCRATCH      prints ok/FAIL lines ("skip" when a tool is missing)
set -u
dir=${1:?scratch dir}
for t in qemu-storage-daemon nbdinfo nbdcopy qemu-img qemu-io; do
    command -v $t >/dev/null || { echo "skip $t not installed"; exit 0; }
done
mkdir -p "$dir"
export SHALE_STORE=file://$dir/store
ok() { echo "ok $1"; }
bad() { echo "FAIL $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | tail -n 15 | sed 's/^/     /'; }
qemu-img create -f raw rbd:rbd/q 64M >/dev/null
qemu-io -f raw -c 'write -P 0xaa 0 4k' -c 'write -P 0xbb 5251072 4k' \
    -c 'write -P 0xcc 9437696 4k' -c 'write -P 0xdd 62914560 1M' rbd:rbd/q >/dev/null
sock=$dir/nbd.sock
qemu-storage-daemon --blockdev driver=rbd,pool=rbd,image=q,node-name=d0 \
    --nbd-server addr.type=unix,addr.path="$sock" --export type=nbd,id=e0,node-name=d0,name=q \
    > "$dir/qsd.log" 2>&1 &
qpid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
uri="nbd+unix:///q?socket=$sock"
map=$(timeout 60 nbdinfo --map "$uri" 2>&1); rc=$?
if [ $rc -eq 0 ] && grep -q "data" <<< "$map" && kill -0 $qpid 2>/dev/null; then
    ok "nbdinfo --map through qemu-storage-daemon (QEMU alive)"
else
    bad "nbdinfo --map through qemu-storage-daemon (rc=$rc)" "$map
$(cat "$dir/qsd.log")"
fi
# every written byte lies inside a range the map calls data
if python3 - "$map" <<'PY'
import sys
data = []
for line in sys.argv[1].splitlines():
    f = line.split()
    if len(f) >= 4 and f[3] == "data":
        data.append((int(f[0]), int(f[0]) + int(f[1])))
for off, n in ((0, 4096), (5251072, 4096), (9437696, 4096), (62914560, 1 << 20)):
    assert any(a <= off and off + n <= z for a, z in data), (off, data)
PY
then ok "the NBD map covers every write (unaligned offsets)"; else bad "the NBD map covers every write" "$map"; fi
if timeout 120 nbdcopy "$uri" "$dir/nbd.raw" && qemu-img convert -f raw -O raw rbd:rbd/q "$dir/conv.raw" \
    && cmp "$dir/nbd.raw" "$dir/conv.raw"; then
    ok "nbdcopy of the export == qemu-img convert of the image"
else
    bad "nbdcopy of the export == qemu-img convert of the image" "$(cat "$dir/qsd.log")"
fi
kill $qpid 2>/dev/null; wait $qpid 2>/dev/null
m=$(qemu-img map --output=json -f raw rbd:rbd/q 2>&1)
if grep -q '"start": 0, "length": 12582912, .*"data": true' <<< "$m" \
    && grep -q '"start": 62914560, "length": 4194304, .*"data": true' <<< "$m"; then
    ok "qemu-img map: the written objects are data, the rest zero"
else
    bad "qemu-img map" "$m"
fi
