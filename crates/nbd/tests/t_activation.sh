# Socket activation (LISTEN_PID/LISTEN_FDS, fd 3): nbdinfo and nbdcopy start the server
# themselves with `[ shale nbd serve ... ]`.
. "$(dirname "$0")/lib.sh"
need nbdinfo nbdcopy
"$SHALE" create rbd/sa --size 4M >/dev/null || fail create
[ "$(nbdinfo --size -- [ "$SHALE" nbd serve rbd/sa ])" = 4194304 ] || fail "nbdinfo --size via socket activation"
nbdinfo --can write -- [ "$SHALE" nbd serve rbd/sa ] || fail "cannot write"
nbdinfo --can write -- [ "$SHALE" nbd serve --read-only rbd/sa ] && fail "--read-only export can write"
randfile "$SCRATCH/src.raw" 4
nbdcopy "$SCRATCH/src.raw" -- [ "$SHALE" nbd serve rbd/sa ] || fail "nbdcopy in"
nbdcopy -- [ "$SHALE" nbd serve rbd/sa ] "$SCRATCH/back.raw" || fail "nbdcopy out"
cmp "$SCRATCH/src.raw" "$SCRATCH/back.raw" || fail "round trip through socket-activated servers"
nbdinfo --map -- [ "$SHALE" nbd serve rbd/sa ] | grep -q data || fail "map"
echo ok
