#!/bin/bash
# Live migration of a running guest on a Shale image (issue 9): the test guest (a real kernel on
# a virtio disk) writes and verifies 4 MiB generations through QEMU 7.2's rbd driver on Shale's
# librbd; after generation 3 it is migrated (`migrate tcp:`) to a second QEMU process that opened
# the same image before the switch-over, as QEMU does, and must finish every generation there.
# Then a third boot, after both processes are gone, verifies the last generation is on the disk,
# and `shale check` finds the image whole. Uses ../shared/peers/vm (migrate-guest.sh, boot-guest.sh).
#
# usage: live_migration.sh SHALE SCRATCH   (LD_LIBRARY_PATH must point at Shale's libraries)
# Prints "skip: ..." and exits 0 when qemu-system-x86_64 or the guest scripts are missing.
set -u
shale=$1 scratch=$2
root=$(cd "$(dirname "$0")/../../.." && pwd)
vm=${SHARED:-$root/../shared}/peers/vm
command -v qemu-system-x86_64 >/dev/null || { echo "skip: qemu-system-x86_64 not installed"; exit 0; }
[ -x "$vm/migrate-guest.sh" ] || [ -f "$vm/migrate-guest.sh" ] || { echo "skip: $vm/migrate-guest.sh missing"; exit 0; }
case ${LD_LIBRARY_PATH:-} in *shale*) ;; *) echo "LD_LIBRARY_PATH does not name Shale's libraries"; exit 1 ;; esac
mkdir -p "$scratch"
export SHALE_STORE="file://$scratch/store"
seed=$((1000 + RANDOM % 1000)) gens=6
"$shale" create rbd/vm1 --size 64M >/dev/null || { echo "FAIL: shale create"; exit 1; }
out=$(bash "$vm/migrate-guest.sh" rbd:rbd/vm1 "$seed" "$gens" 2>&1); rc=$?
echo "$out" | sed 's/^/  /'
[ $rc -eq 0 ] || { echo "FAIL: the guest did not finish on the destination (seed $seed)"; exit 1; }
echo "$out" | grep -q "source: Migration status: completed" || { echo "FAIL: migration not completed"; exit 1; }
# Both QEMU processes are gone: the last generation the destination wrote is on the disk.
v=$(bash "$vm/boot-guest.sh" rbd:rbd/vm1 verify $((seed + gens)) 2>&1); rc=$?
echo "  verify boot: $v"
[ $rc -eq 0 ] || { echo "FAIL: generation $gens (seed $((seed + gens))) is not on the disk after the migration"; exit 1; }
c=$("$shale" check rbd/vm1 2>&1) || { echo "FAIL: shale check after the migration"; echo "$c"; exit 1; }
echo "live migration OK (seed $seed, $gens generations)"
