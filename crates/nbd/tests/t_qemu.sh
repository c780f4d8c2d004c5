# qemu-img convert/compare/map and qemu-io (write -P, write -z, discard, read -P) over
# nbd+unix:// and nbd://127.0.0.1.
. "$(dirname "$0")/lib.sh"
need qemu-img qemu-io
"$SHALE" create rbd/u --size 32M >/dev/null || fail create
"$SHALE" create rbd/t --size 32M >/dev/null || fail create
start_server unix --socket "$SCRATCH/s.sock" rbd/u
usock=$SRV_ADDR
start_server tcp --listen 127.0.0.1:0 rbd/t
case $SRV_ADDR in 127.0.0.1:*) ;; *) fail "TCP server listens on $SRV_ADDR, not loopback" ;; esac
for U in "nbd+unix:///rbd/u?socket=$usock" "nbd://$SRV_ADDR/rbd/t"; do
    echo "== $U"
    out=$(qemu-io -f raw \
        -c 'write -P 0xa5 0 2M' -c 'write -P 0x5a 3M 4097' -c 'write -z 512k 64k' \
        -c 'write -P 0x77 6M 1M' -c 'discard 6M 512k' -c 'write -P 0x66 31M 1M' \
        -c 'read -P 0xa5 0 512k' -c 'read -P 0 512k 64k' -c 'read -P 0xa5 576k 1472k' \
        -c 'read -P 0x5a 3M 4097' -c 'read -P 0 6M 512k' -c 'read -P 0x77 6656k 512k' \
        -c 'read -P 0x66 31M 1M' -c 'read -P 0 10M 1M' -c flush "$U" 2>&1) || { echo "$out"; fail "qemu-io on $U"; }
    echo "$out" | grep -qi "pattern verification failed\|error\|failed" && { echo "$out"; fail "qemu-io verify on $U"; }
    # Past the end: an error, and the server still serves.
    qemu-io -f raw -c 'write -P 1 32M 4k' "$U" 2>&1 | grep -qi "error\|out of range\|invalid\|space" || fail "write past the end accepted on $U"
    qemu-io -f raw -c 'read -P 0x66 31M 1M' "$U" >/dev/null 2>&1 || fail "server stopped serving after a bad request"
    # qemu-img map: the written zeros and the discard read as zero, the rest as data.
    m=$(qemu-img map -f raw --output=json "$U") || fail "qemu-img map"
    echo "$m" | python3 -c '
import json, sys
m = json.load(sys.stdin)
def state(off):
    for e in m:
        if e["start"] <= off < e["start"] + e["length"]:
            return e["data"], e["zero"]
    raise SystemExit("offset %d not mapped" % off)
for off, want in [(0, (True, False)), (512*1024, (False, True)), (600*1024, (True, False)),
                  (3*1048576, (True, False)), (6*1048576, (False, True)), (6656*1024, (True, False)),
                  (20*1048576, (False, True)), (31*1048576, (True, False))]:
    if state(off) != want:
        raise SystemExit("offset %d: %s, want %s\n%s" % (off, state(off), want, json.dumps(m)))
' || fail "qemu-img map on $U"
done
# convert a file in, compare, convert out, compare.
randfile "$SCRATCH/src.raw" 32
dd if=/dev/zero of="$SCRATCH/src.raw" bs=1M seek=8 count=4 conv=notrunc status=none
U="nbd://$SRV_ADDR/rbd/t"
qemu-img convert -n -f raw -O raw "$SCRATCH/src.raw" "$U" || fail "convert in"
qemu-img compare -f raw -F raw "$SCRATCH/src.raw" "$U" || fail "compare after convert in"
qemu-img convert -f raw -O raw "$U" "$SCRATCH/back.raw" || fail "convert out"
cmp "$SCRATCH/src.raw" "$SCRATCH/back.raw" || fail "convert out differs"
# A one-byte change is seen by compare.
printf '\x01' | dd of="$SCRATCH/src.raw" bs=1 seek=12345 conv=notrunc status=none
qemu-img compare -q -f raw -F raw "$SCRATCH/src.raw" "$U" && fail "compare missed a difference"
stop_server "${SERVER_PIDS[0]}" || fail "unix server exit status"
stop_server "${SERVER_PIDS[1]}" || fail "tcp server exit status"
# After the servers are gone, the image holds what was converted in (shale export).
"$SHALE" export rbd/t "$SCRATCH/exp.raw" >/dev/null || fail export
cmp "$SCRATCH/back.raw" "$SCRATCH/exp.raw" || fail "image differs after shutdown"
echo ok
