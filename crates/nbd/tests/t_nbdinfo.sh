# nbdinfo --list / --can / --map / --size against a writable image and a snapshot export.
. "$(dirname "$0")/lib.sh"
need nbdinfo qemu-io
"$SHALE" create rbd/a --size 16M >/dev/null || fail create
"$SHALE" create p2/b --size 8M >/dev/null 2>&1 || { "$SHALE" pool create p2 >/dev/null && "$SHALE" create p2/b --size 8M >/dev/null; } || fail "create p2/b"
qemu-io -f raw -c 'write -P 0x11 0 1M' "nbd+unix:///rbd/a?socket=$SCRATCH/none" >/dev/null 2>&1 && fail "a client reached a server that does not exist"
"$SHALE" snap create rbd/a@s1 >/dev/null || fail "snap create"
start_server s --socket "$SCRATCH/s.sock" rbd/a p2/b rbd/a@s1
U="nbd+unix:///rbd/a?socket=$SCRATCH/s.sock"
L=$(nbdinfo --list "nbd+unix:///?socket=$SCRATCH/s.sock") || fail "nbdinfo --list"
for e in 'export="rbd/a"' 'export="p2/b"' 'export="rbd/a@s1"'; do
    echo "$L" | grep -qF "$e" || { echo "$L"; fail "--list lacks $e"; }
done
[ "$(nbdinfo --size "$U")" = 16777216 ] || fail "size of rbd/a"
[ "$(nbdinfo --size "nbd+unix:///p2/b?socket=$SCRATCH/s.sock")" = 8388608 ] || fail "size of p2/b"
for c in write trim zero fast-zero flush fua multi-conn cache df; do
    nbdinfo --can "$c" "$U" || fail "rbd/a cannot $c"
done
nbdinfo --can structured-reply "$U" || fail "no structured replies"
nbdinfo "$U" | grep -q "base:allocation" || fail "no base:allocation"
S="nbd+unix:///rbd/a@s1?socket=$SCRATCH/s.sock"
nbdinfo --is read-only "$S" || fail "snapshot export is not read-only"
nbdinfo --can write "$S" && fail "snapshot export can write"
nbdinfo --can write "nbd+unix:///rbd/zzz?socket=$SCRATCH/s.sock" 2>/dev/null && fail "unknown export accepted"
# The empty export name selects the first export.
[ "$(nbdinfo --size "nbd+unix:///?socket=$SCRATCH/s.sock")" = 16777216 ] || fail "default export"
# --map: data, written zeros and discards exact.
qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x22 4M 512k' -c 'write -z 4M 256k' -c 'write -P 0x33 8M 1M' -c 'discard 8M 1M' "$U" >/dev/null || fail qemu-io
M=$(nbdinfo --map "$U") || fail "nbdinfo --map"
echo "$M"
exp='0 1048576 0 data
1048576 3145728 3 hole,zero
4194304 262144 3 hole,zero
4456448 262144 0 data
4718592 12058624 3 hole,zero'
got=$(echo "$M" | awk '{print $1, $2, $3, $4}')
# Adjacent runs of one state may be merged or not; compare the byte-level states.
norm() { awk '{ s=$1; n=$2; t=$3; if (t == last && s == end) { end += n } else { if (NR > 1) print st, end, last; st = s; end = s + n; last = t } } END { print st, end, last }'; }
[ "$(echo "$got" | norm)" = "$(echo "$exp" | norm)" ] || { echo "want:"; echo "$exp"; fail "--map differs"; }
# The snapshot shows none of the later writes.
[ "$(nbdinfo --map "$S" | awk '{print $3}' | sort -u)" = 3 ] || fail "snapshot map shows data"
stop_server "$SRV_PID" || fail "server exit status $?"
echo ok
