# nbdcopy round trip: file -> export -> file (sparse parts included), and a snapshot export.
. "$(dirname "$0")/lib.sh"
need nbdcopy
"$SHALE" create rbd/c --size 48M >/dev/null || fail create
randfile "$SCRATCH/src.raw" 48
dd if=/dev/zero of="$SCRATCH/src.raw" bs=1M seek=16 count=16 conv=notrunc status=none
start_server s --socket "$SCRATCH/s.sock" rbd/c
U="nbd+unix:///rbd/c?socket=$SRV_ADDR"
nbdcopy --connections=4 "$SCRATCH/src.raw" "$U" || fail "nbdcopy in"
nbdcopy --connections=4 "$U" "$SCRATCH/back.raw" || fail "nbdcopy out"
cmp "$SCRATCH/src.raw" "$SCRATCH/back.raw" || fail "round trip differs"
stop_server "$SRV_PID" || fail "exit status"
"$SHALE" snap create rbd/c@s >/dev/null || fail "snap create"
start_server s2 --socket "$SCRATCH/s2.sock" rbd/c@s rbd/c
nbdcopy "$SCRATCH/src.raw" "nbd+unix:///rbd/c@s?socket=$SRV_ADDR" 2>/dev/null && fail "wrote to a snapshot"
nbdcopy "nbd+unix:///rbd/c@s?socket=$SRV_ADDR" "$SCRATCH/snap.raw" || fail "nbdcopy from snapshot"
cmp "$SCRATCH/src.raw" "$SCRATCH/snap.raw" || fail "snapshot differs"
stop_server "$SRV_PID" || fail "exit status"
echo ok
