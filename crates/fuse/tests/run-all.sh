#!/bin/bash
# End-to-end tests of `shale mount` (the FUSE file view of a pool) with real clients: qemu-img,
# QEMU booting the test guest with cache=none, fio (libaio, O_DIRECT, verify), python (lseek
# SEEK_DATA/SEEK_HOLE, errno checks), util-linux fallocate, and two mounts of one pool.
# Every test runs on a fresh local-directory store under a scratch directory.
#
# usage: crates/fuse/tests/run-all.sh    (honours CARGO_TARGET_DIR; SHALE_FUSE_PROFILE=debug
#                                         uses a debug build, SHALE_BIN=PATH a prebuilt shale;
#                                         SHALE_TEST_KEEP=1 keeps the scratch directory)
# Prints "skip" and exits 0 without /dev/fuse; a missing client skips its test. Ends with
# "N passed, M failed, K skipped" and exits nonzero if anything failed.
set -u
root=$(cd "$(dirname "$0")/../../.." && pwd)
tests=$root/crates/fuse/tests
vm=${SHARED:-$root/../shared}/peers/vm
[ -d "$vm" ] || vm=/work/shared/peers/vm
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
profile=${SHALE_FUSE_PROFILE:-release}
pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | tail -n 30 | sed 's/^/     /'; }
skipped() { skip=$((skip + 1)); echo "skip $1"; }
finish() { echo "$pass passed, $fail failed, $skip skipped"; [ "$fail" -eq 0 ]; exit $?; }
# check NAME CMD...: passes if CMD exits 0 (its output is shown on failure).
check() {
    local name=$1 out rc; shift
    out=$("$@" 2>&1); rc=$?
    if [ $rc -eq 0 ]; then ok "$name"; else bad "$name (rc=$rc)" "$out"; fi
}

if [ ! -c /dev/fuse ]; then
    skipped "/dev/fuse is missing: no FUSE tests"
    finish
fi
cd "$root" || exit 1
if [ -n "${SHALE_BIN:-}" ]; then
    shale=$SHALE_BIN # a prebuilt binary
else
    if [ "$profile" = release ]; then flag=--release; else flag=; fi
    if ! cargo build -q $flag -p shale-cli; then bad "cargo build $flag -p shale-cli"; finish; fi
    shale=$CARGO_TARGET_DIR/$profile/shale
fi
scratch=$(mktemp -d /tmp/shale-fuse-tests.XXXXXX)
. "$tests/lib.sh"
trap 'cleanup_mounts; [ "${SHALE_TEST_KEEP:-0}" = 1 ] || rm -rf "$scratch"' EXIT
unset SHALE_STORE
export HOME=$scratch/home SHALE_CONF=$scratch/shale.toml
mkdir -p "$HOME"
py() { python3 "$tests/fusecheck.py" "$@"; }
n=0
new_store() { # a fresh store in the config; sets $mnt to a fresh mount point
    n=$((n + 1))
    printf 'store = "file://%s/store%d"\n' "$scratch" "$n" >"$SHALE_CONF"
    mnt=$scratch/mnt$n
}

# ---- basics: a file per image, its size, data through the file, images coming and going
new_store
"$shale" create rbd/a --size 64M && "$shale" create rbd/b --size 10M
if mount_pool "$mnt" --metrics 127.0.0.1:0; then
    ok "mount"
    maddr=$(grep -o 'metrics at http://[0-9.:]*' "$scratch/mount.log" | tail -1 | sed 's|.*http://||')
    check "ls shows the images" bash -c "[ \"\$(ls '$mnt' | tr '\n' ' ')\" = 'a b ' ]"
    check "st_size is the image size" bash -c "[ \$(stat -c %s '$mnt/a') = 67108864 ] && [ \$(stat -c %s '$mnt/b') = 10485760 ]"
    head -c 3000000 /dev/urandom >"$scratch/r1"
    check "dd O_DIRECT write + read back" bash -c "dd if='$scratch/r1' of='$mnt/a' bs=64k seek=3 oflag=direct,seek_bytes conv=notrunc,fsync status=none && cmp <(dd if='$mnt/a' bs=1 skip=3 count=3000000 iflag=skip_bytes,count_bytes status=none) '$scratch/r1'"
    # The counters survive the file's closes: dd above wrote 3000000 bytes and fsynced.
    check "--metrics: per-image write ops, bytes and flushes" python3 - "$maddr" <<'PY'
import re, sys, urllib.request
t = urllib.request.urlopen(f"http://{sys.argv[1]}/metrics", timeout=10).read().decode()
def v(name, op):
    m = re.search(rf'^{name}{{pool="rbd",image="a",op="{op}"}} (\S+)$', t, re.M)
    return float(m.group(1)) if m else None
got = (v("shale_image_bytes_total", "write"), v("shale_image_ops_total", "write") or 0,
       (v("shale_image_ops_total", "flush") or 0) > 0, v("shale_image_latency_seconds_count", "write"))
print(got)
sys.exit(0 if got[0] == 3000000 and got[1] >= 46 and got[2] and got[3] == got[1] else 1)
PY
    "$shale" create rbd/new --size 1M
    sleep 1.2
    check "an image created while mounted appears" bash -c "ls '$mnt' | grep -qx new && [ \$(stat -c %s '$mnt/new') = 1048576 ]"
    "$shale" rm rbd/new >/dev/null 2>&1
    sleep 1.2
    check "an image removed while mounted disappears" bash -c "! ls '$mnt' | grep -qx new && ! stat '$mnt/new' 2>/dev/null"
    # qemu-img: info, convert out and back in, compare.
    if command -v qemu-img >/dev/null; then
        check "qemu-img info" bash -c "qemu-img info '$mnt/a' | grep -q 'virtual size: 64 MiB'"
        check "qemu-img convert out (-O raw)" qemu-img convert -O raw "$mnt/a" "$scratch/a.raw"
        check "qemu-img compare file vs converted copy" qemu-img compare -f raw -F raw "$mnt/a" "$scratch/a.raw"
        head -c 10485760 /dev/urandom >"$scratch/b.raw"
        dd if=/dev/zero of="$scratch/b.raw" bs=1M seek=4 count=2 conv=notrunc status=none
        check "qemu-img convert back in (-n, cache=none)" qemu-img convert -n -t none -O raw "$scratch/b.raw" "$mnt/b"
        check "qemu-img compare after convert in" qemu-img compare -f raw -F raw "$scratch/b.raw" "$mnt/b"
        rm -f "$scratch/a.raw"
    else
        skipped "qemu-img not installed"
    fi
    stop_mount "$mpid" "$mnt"; rc=$mrc
    check "SIGTERM: exits 0 and unmounts" bash -c "[ '$rc' = 0 ] && ! grep -q ' $mnt fuse' /proc/mounts"
    check "data kept after the unmount (shale export)" bash -c "'$shale' export rbd/b '$scratch/b.out' >/dev/null && cmp '$scratch/b.out' '$scratch/b.raw'"
    check "no exclusive-lock owner left" bash -c "! '$shale' lock ls rbd/b | grep -qi client"
    rm -f "$scratch/b.out" "$scratch/b.raw" "$scratch/r1"
else
    bad "mount" "$(tail -5 "$scratch/mount.log")"
fi

# ---- SEEK_DATA / SEEK_HOLE and st_blocks, fallocate, bad requests, snapshots, clones
new_store
"$shale" create rbd/s --size 16M && "$shale" create rbd/f --size 8M && "$shale" create rbd/c --size 8M
if mount_pool "$mnt"; then
    check "lseek SEEK_DATA/SEEK_HOLE + st_blocks vs the extent map" py seek "$mnt/s"
    check "fallocate punch-hole / zero-range / refused modes" py falloc "$mnt/f"
    py pattern write "$mnt/c" 0 1048576 11 >/dev/null
    "$shale" snap create rbd/c@one
    py pattern write "$mnt/c" 0 1048576 12 >/dev/null
    sleep 1.2
    check "a snapshot appears as IMAGE@SNAP" bash -c "ls '$mnt' | grep -qx 'c@one'"
    check "the snapshot file shows the snapshot's data" py pattern verify "$mnt/c@one" 0 1048576 11
    check "the head shows the new data" py pattern verify "$mnt/c" 0 1048576 12
    check "bad requests: right errno, nothing changed" py bad "$mnt" c one
    # A clone: its data read through from the parent counts as data for SEEK_DATA.
    "$shale" snap protect rbd/c@one && "$shale" clone rbd/c@one rbd/cl >/dev/null
    sleep 1.2
    check "a clone reads its parent's data" py pattern verify "$mnt/cl" 0 1048576 11
    check "a clone: lseek sees the parent's data, st_blocks only its own" python3 - "$mnt/cl" <<'PY'
import errno, os, sys
M = 1 << 20
def seek(fd, off, w):
    try:
        return os.lseek(fd, off, w)
    except OSError as e:
        return "ENXIO" if e.errno == errno.ENXIO else e.errno
fd = os.open(sys.argv[1], os.O_RDWR)
got = [seek(fd, 0, os.SEEK_DATA), seek(fd, 0, os.SEEK_HOLE), seek(fd, M, os.SEEK_DATA), os.fstat(fd).st_blocks]
os.pwrite(fd, b"z" * 4096, 2 * M)
os.fsync(fd)
got += [seek(fd, M, os.SEEK_DATA), seek(fd, 2 * M, os.SEEK_HOLE), os.fstat(fd).st_blocks]
# Zeroing part of the parent's data in the clone makes a hole there.
os.system(f"fallocate -z -o 4096 -l 4096 {sys.argv[1]}")
got += [seek(fd, 4096, os.SEEK_HOLE), seek(fd, 4096, os.SEEK_DATA)]
want = [0, M, "ENXIO", 0, 2 * M, 2 * M + 4096, 8, 4096, 8192]
print(got, want)
sys.exit(0 if got == want else 1)
PY
    stop_mount "$mpid" "$mnt"; rc=$mrc
    check "SIGTERM: exits 0" test "$rc" = 0
else
    bad "mount (2)" "$(tail -5 "$scratch/mount.log")"
fi
# A read-only mount: nothing opens for writing.
if mount_pool "$mnt" --read-only; then
    check "--read-only: open for writing is EROFS" python3 -c "
import os,errno,sys
try: os.open('$mnt/s', os.O_RDWR)
except OSError as e: sys.exit(0 if e.errno==errno.EROFS else 1)
sys.exit(1)"
    check "--read-only: reads work" py pattern verify "$mnt/c" 0 1048576 12
    check "fusermount -u (or umount)" fuse_umount "$mnt"
    wait_mount "$mpid"
    check "unmounted from outside: the server exits 0" test "$mrc" = 0
fi

# ---- fio libaio O_DIRECT with verify
new_store
"$shale" create rbd/fio --size 64M
if ! command -v fio >/dev/null; then
    skipped "fio not installed"
elif mount_pool "$mnt"; then
    check "fio libaio direct=1 randwrite QD16 + verify" fio --name=v --filename="$mnt/fio" --ioengine=libaio \
        --direct=1 --rw=randwrite --bs=4k --iodepth=16 --size=32M --verify=crc32c --do_verify=1 \
        --verify_fatal=1 --output="$scratch/fio.out"
    check "fio libaio direct=1 1M sequential write + verify" fio --name=s --filename="$mnt/fio" --ioengine=libaio \
        --direct=1 --rw=write --bs=1M --iodepth=4 --size=64M --verify=md5 --do_verify=1 --verify_fatal=1 \
        --output="$scratch/fio.out"
    stop_mount "$mpid" "$mnt"
fi

# ---- the test guest boots from a FUSE file with cache=none (QEMU TCG)
new_store
"$shale" create rbd/g --size 64M
if ! command -v qemu-system-x86_64 >/dev/null || [ ! -f "$vm/boot-guest.sh" ]; then
    skipped "qemu-system-x86_64 or $vm/boot-guest.sh missing"
elif mount_pool "$mnt"; then
    seed=$((RANDOM % 1000 + 1))
    check "guest boots from a FUSE file (cache=none), writes and verifies (seed $seed)" bash "$vm/boot-guest.sh" "$mnt/g" write "$seed"
    stop_mount "$mpid" "$mnt"; rc=$mrc
    if mount_pool "$mnt"; then
        check "after a remount the guest verifies its data" bash "$vm/boot-guest.sh" "$mnt/g" verify "$seed"
        stop_mount "$mpid" "$mnt"
    fi
fi

# ---- unmount under load: everything fsynced survives a SIGTERM while fio hammers another image
new_store
"$shale" create rbd/load --size 64M && "$shale" create rbd/sync --size 64M
if mount_pool "$mnt"; then
    fio_pid=
    if command -v fio >/dev/null; then
        fio --name=load --filename="$mnt/load" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
            --iodepth=32 --size=64M --time_based --runtime=60 >"$scratch/fio-load.out" 2>&1 &
        fio_pid=$!
    fi
    py fsync-writer "$mnt/sync" "$scratch/synced.log" >"$scratch/writer.out" 2>&1 &
    writer=$!
    sleep 4
    stop_mount "$mpid" "$mnt"; rc=$mrc
    check "SIGTERM under load: the server exits 0" test "$rc" = 0
    wait "$writer"
    [ -n "$fio_pid" ] && { kill "$fio_pid" 2>/dev/null; wait "$fio_pid" 2>/dev/null; }
    check "SIGTERM under load: the mount is gone" bash -c "! grep -q ' $mnt fuse' /proc/mounts"
    if mount_pool "$mnt"; then
        check "after a remount every fsynced block is there ($(wc -l <"$scratch/synced.log") blocks)" py fsync-verify "$mnt/sync" "$scratch/synced.log"
        stop_mount "$mpid" "$mnt"
    fi
    check "shale check after the stop under load" "$shale" check rbd/load
fi

# ---- two mounts of one pool: the second writer takes the lock over; the first sees its data
new_store
"$shale" create rbd/two --size 16M
m1=$mnt-1 m2=$mnt-2
if mount_pool "$m1"; then
    p1=$mpid
    if mount_pool "$m2"; then
        p2=$mpid
        check "mount 1 writes (and holds the lock)" py pattern write "$m1/two" 0 1048576 21
        check "mount 2 writes: takes the lock over" py pattern write "$m2/two" 0 1048576 22
        sleep 1.5
        check "mount 1 sees mount 2's data" py pattern verify "$m1/two" 0 1048576 22
        check "mount 1 writes again: takes it back" py pattern write "$m1/two" 1048576 1048576 23
        sleep 1.5
        check "mount 2 sees both writes" bash -c "python3 '$tests/fusecheck.py' pattern verify '$m2/two' 0 1048576 22 && python3 '$tests/fusecheck.py' pattern verify '$m2/two' 1048576 1048576 23"
        stop_mount "$p2" "$m2"; r2=$mrc
        check "mount 2 exits 0" test "$r2" = 0
    fi
    stop_mount "$p1" "$m1"; r1=$mrc
    check "mount 1 exits 0" test "$r1" = 0
    check "shale check after two writers" "$shale" check rbd/two
    check "final contents (shale export)" bash -c "'$shale' export rbd/two '$scratch/two.raw' >/dev/null && python3 '$tests/fusecheck.py' pattern verify '$scratch/two.raw' 0 1048576 22 && python3 '$tests/fusecheck.py' pattern verify '$scratch/two.raw' 1048576 1048576 23"
fi

# ---- two mounts under load: fio (with verify) on mount 1 while mount 2 takes the lock over
# and writes elsewhere in the image, three times: every handoff happens under queued I/O
new_store
"$shale" create rbd/hl --size 64M
m1=$mnt-1 m2=$mnt-2
if ! command -v fio >/dev/null; then
    skipped "fio not installed"
elif mount_pool "$m1"; then
    p1=$mpid
    if mount_pool "$m2"; then
        p2=$mpid
        fio --name=hl --filename="$m1/hl" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k \
            --iodepth=16 --size=16M --loops=10 --verify=crc32c --do_verify=1 --verify_fatal=1 \
            --output="$scratch/fio-hl.out" &
        fio_pid=$!
        sleep 2
        wr=0
        for i in 1 2 3; do
            py pattern write "$m2/hl" $((48 << 20)) 1048576 $((40 + i)) >/dev/null || wr=1
            sleep 1
        done
        check "mount 2 writes three times while fio runs on mount 1" test "$wr" = 0
        wait "$fio_pid"; frc=$?
        check "fio on mount 1 through three handoffs: no error, data verified" bash -c "[ $frc = 0 ] && grep -q 'err= 0' '$scratch/fio-hl.out'" 
        check "mount 1 sees mount 2's last write" py pattern verify "$m1/hl" $((48 << 20)) 1048576 43
        stop_mount "$p2" "$m2"; check "mount 2 exits 0" test "$mrc" = 0
    fi
    stop_mount "$p1" "$m1"; check "mount 1 exits 0" test "$mrc" = 0
    check "shale check after the handoffs under load" "$shale" check rbd/hl
fi

# ---- bad command lines change nothing and say why
check "mount on a missing directory fails" bash -c "! timeout 20 '$shale' mount '$scratch/nope'"
mkdir -p "$scratch/empty"
check "mount of a missing pool fails" bash -c "! timeout 20 '$shale' mount '$scratch/empty' --pool nosuch"

finish
