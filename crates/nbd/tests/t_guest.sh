# A guest (a real kernel on a virtio disk, QEMU under TCG) boots from nbd:// and writes and
# verifies a 4 MiB pattern; a second boot (after a server restart) verifies it again.
. "$(dirname "$0")/lib.sh"
need qemu-system-x86_64
root=$(cd "$TESTDIR/../../.." && pwd)
vm=${SHARED:-$root/../shared}/peers/vm
[ -f "$vm/boot-guest.sh" ] || skip "$vm/boot-guest.sh missing"
"$SHALE" create rbd/g --size 64M >/dev/null || fail create
seed=$((2000 + RANDOM % 1000))
start_server s --listen 127.0.0.1:0 rbd/g
v=$(bash "$vm/boot-guest.sh" "nbd://$SRV_ADDR/rbd/g" write "$seed" 2>&1); rc=$?
echo "write boot: $v"
[ $rc -eq 0 ] || fail "guest write boot (seed $seed)"
stop_server "$SRV_PID" || fail "exit status"
start_server s2 --listen 127.0.0.1:0 rbd/g
v=$(bash "$vm/boot-guest.sh" "nbd://$SRV_ADDR/rbd/g" verify "$seed" 2>&1); rc=$?
echo "verify boot: $v"
[ $rc -eq 0 ] || fail "guest verify boot (seed $seed)"
stop_server "$SRV_PID" || fail "exit status"
c=$("$SHALE" check rbd/g 2>&1) || { echo "$c"; fail "shale check"; }
echo ok
