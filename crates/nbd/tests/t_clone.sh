# base:allocation on a clone: what reads through to the parent is data, what the clone zeroed
# (write-zeroes or trim) is a hole reading zeros, past the parent overlap is a hole.
. "$(dirname "$0")/lib.sh"
need nbdinfo qemu-io
"$SHALE" create rbd/base --size 8M >/dev/null || fail create
start_server b --socket "$SCRATCH/b.sock" rbd/base
qemu-io -f raw -c 'write -P 0x61 0 4M' "nbd+unix:///rbd/base?socket=$SRV_ADDR" >/dev/null || fail "write base"
stop_server "$SRV_PID" || fail "exit status"
"$SHALE" snap create rbd/base@g >/dev/null && "$SHALE" snap protect rbd/base@g >/dev/null || fail snap
"$SHALE" clone rbd/base@g rbd/kid >/dev/null || fail clone
"$SHALE" resize rbd/kid --size 12M >/dev/null || fail resize
start_server k --socket "$SCRATCH/k.sock" rbd/kid
U="nbd+unix:///rbd/kid?socket=$SRV_ADDR"
qemu-io -f raw -c 'write -z 1M 1M' -c 'discard 3M 512k' -c 'write -P 0x62 9M 1M' -c 'read -P 0x61 0 1M' -c 'read -P 0 1M 1M' -c 'read -P 0x61 2M 1M' -c 'read -P 0 3M 512k' "$U" > "$SCRATCH/io.txt" 2>&1 || { cat "$SCRATCH/io.txt"; fail qemu-io; }
grep -qi "fail\|error" "$SCRATCH/io.txt" && { cat "$SCRATCH/io.txt"; fail "qemu-io verify"; }
M=$(nbdinfo --map "$U") || fail map
echo "$M"
state() { echo "$M" | awk -v o="$1" '$1 <= o && o < $1 + $2 { print $3 }'; }
for c in "0 0" "1048576 3" "2097152 0" "3145728 3" "3670016 0" "6291456 3" "8388608 3" "9437184 0" "11534336 3"; do
    set -- $c
    [ "$(state "$1")" = "$2" ] || fail "offset $1: state $(state "$1"), want $2"
done
stop_server "$SRV_PID" || fail "exit status"
echo ok
