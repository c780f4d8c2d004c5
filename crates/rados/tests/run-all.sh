#!/bin/bash
# End-to-end tests of Shale's librados.so.2 / librbd.so.1 with the real, unchanged clients:
# QEMU 7.2 (qemu-img, qemu-io), fio 3.33's rbd engine, Debian's python3-rbd / python3-rados,
# the shale CLI, and a C-level (ctypes) bad-input test whose expected values were measured on
# Ceph 16.2.15 (README.md).
#
# Builds the release libraries and the shale CLI, stages the libraries, and runs every test on a
# fresh local store; the store-sensitive tests run again on S3 when SHALE_TEST_S3=s3://bucket/prefix
# and the AWS_* variables are set (see /work/shared/peers/s3/start.sh), else they print "skipped".
# A missing client (qemu-img, fio, python3-rbd) is skipped. Ends with "N passed, M failed" and
# exits nonzero if anything failed.
#
# usage: crates/rados/tests/run-all.sh       (honours CARGO_TARGET_DIR; SHALE_TEST_KEEP=1 keeps
#                                              the scratch directory)
set -u
root=$(cd "$(dirname "$0")/../../.." && pwd)
tests=$root/crates/rados/tests
abi=$root/crates/rados/abi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | tail -n 25 | sed 's/^/     /'; }
skipped() { skip=$((skip + 1)); echo "skip $1"; }
# check NAME WANT CMD...: passes if CMD exits 0 and its output contains WANT.
check() {
    local name=$1 want=$2 out rc; shift 2
    out=$("$@" 2>&1); rc=$?
    if [ $rc -eq 0 ] && case $out in *"$want"*) true ;; *) false ;; esac; then ok "$name"; else bad "$name (rc=$rc)" "$out"; fi
}
# refute NAME BAD CMD...: passes if CMD exits 0 and its output does NOT contain BAD.
refute() {
    local name=$1 badword=$2 out rc; shift 2
    out=$("$@" 2>&1); rc=$?
    if [ $rc -eq 0 ] && case $out in *"$badword"*) false ;; *) true ;; esac; then ok "$name"; else bad "$name (rc=$rc)" "$out"; fi
}
finish() { echo "$pass passed, $fail failed, $skip skipped"; [ "$fail" -eq 0 ]; exit $?; }

cd "$root" || exit 1
check "generated tables are current" "up to date" python3 scripts/gen-ffi.py --check
if ! cargo build -q --release -p shale-rados -p shale-rbd -p shale-cli; then
    bad "cargo build --release"; finish
fi
libs=$CARGO_TARGET_DIR/release/shale-libs
scripts/stage-libs.sh "" release >/dev/null || { bad "stage-libs.sh"; finish; }
shale=$CARGO_TARGET_DIR/release/shale
scratch=$(mktemp -d /tmp/shale-rados-tests.XXXXXX)
[ "${SHALE_TEST_KEEP:-0}" = 1 ] || trap 'rm -rf "$scratch"' EXIT
unset SHALE_STORE SHALE_CONF CEPH_CONF
export HOME=$scratch/home XDG_DATA_HOME=$scratch/xdg SHALE_CONF=$scratch/none.toml
mkdir -p "$HOME"
: > "$SHALE_CONF"

# ---- ABI ---------------------------------------------------------------------------------
for pair in "librados.so.2 librados.so.2.exports.txt" "librbd.so.1 librbd.so.1.exports.txt"; do
    set -- $pair
    nm -D --defined-only "$libs/$1" | awk '{sub(/@.*/, "", $3); print $3}' | sort -u > "$scratch/defined"
    missing=$(cut -f1 "$abi/$2" | sort -u | comm -23 - "$scratch/defined")
    n=$(cut -f1 "$abi/$2" | sort -u | wc -l)
    if [ -z "$missing" ]; then ok "nm -D: $1 exports all $n functions"; else bad "$1 lacks symbols" "$missing"; fi
done
check "rados_ioctx_pool_stat@@LIBRADOS_14.2.0" "LIBRADOS_14.2.0 rados_ioctx_pool_stat" objdump -T "$libs/librados.so.2"
export LD_LIBRARY_PATH=$libs
have_py=0
if /usr/bin/python3 -c 'import rados, rbd' 2>/dev/null; then have_py=1; fi
if [ $have_py = 1 ]; then
    check "python3: import rados, rbd (our libraries)" "$libs/librbd.so.1" /usr/bin/python3 -c \
        "import rados, rbd; print(open('/proc/self/maps').read())"
else
    skipped "python3-rados/rbd not installed"
fi

# ---- per-store tests ---------------------------------------------------------------------
n=0
new_store() { # $1 = local|s3: sets $url to a fresh store URL (not in a subshell: $n counts)
    n=$((n + 1))
    if [ "$1" = local ]; then url="file://$scratch/store$n"; else url="${SHALE_TEST_S3%/}/rados-test-$$-$n"; fi
}
write_conf() { # $1 = store URL, $2 = conf path
    printf '[global]\nshale_store = %s\n' "$1" > "$2"
}

run_store_tests() { # $1 = local|s3
    local kind=$1 url conf raw rc
    # qemu-img / qemu-io, store from SHALE_STORE
    if command -v qemu-img >/dev/null && command -v qemu-io >/dev/null; then
        new_store "$kind"
        check "[$kind] qemu-img create" "Formatting" env SHALE_STORE="$url" qemu-img create -f raw rbd:rbd/img 64M
        check "[$kind] qemu-img info" "virtual size: 64 MiB" env SHALE_STORE="$url" qemu-img info rbd:rbd/img
        refute "[$kind] qemu-io write -P 0xab / read -P 0xab" "verification failed" env SHALE_STORE="$url" \
            qemu-io -f raw -c 'write -P 0xab 0 1M' -c 'write -P 0xcd 3M 64k' -c 'read -P 0xab 0 1M' \
            -c 'read -P 0xcd 3M 64k' -c 'read -P 0 1M 2M' rbd:rbd/img
        check "[$kind] qemu-io read -P after reopen" "read 1048576/1048576" env SHALE_STORE="$url" \
            qemu-io -f raw -c 'read -P 0xab 0 1M' rbd:rbd/img
        check "[$kind] qemu-img resize" "Image resized" env SHALE_STORE="$url" qemu-img resize -f raw rbd:rbd/img 128M
        check "[$kind] qemu-img info after resize" "virtual size: 128 MiB" env SHALE_STORE="$url" qemu-img info rbd:rbd/img
        raw=$scratch/rand-$kind.raw
        head -c $((20 * 1024 * 1024 + 4096)) /dev/urandom > "$raw"
        dd if=/dev/zero of="$raw" bs=1M seek=4 count=4 conv=notrunc status=none  # a zero hole
        check "[$kind] qemu-img convert raw -> rbd" "" env SHALE_STORE="$url" qemu-img convert -f raw -O raw "$raw" rbd:rbd/conv
        check "[$kind] qemu-img convert rbd -> raw" "" env SHALE_STORE="$url" qemu-img convert -f raw -O raw rbd:rbd/conv "$raw.back"
        check "[$kind] convert round trip is byte-identical" "" cmp "$raw" "$raw.back"
        # the store given as a conf key inside the rbd: spec, as QEMU passes it to rados_conf_set
        new_store "$kind"
        local spec="rbd:rbd/specimg:shale_store=${url//:/\\:}"
        check "[$kind] qemu-img create with :shale_store= in the spec" "Formatting" qemu-img create -f raw "$spec" 8M
        check "[$kind] qemu-io with :shale_store= in the spec" "read 4096/4096" \
            qemu-io -f raw -c 'write -P 0x5a 4k 4k' -c 'read -P 0x5a 4k 4k' "$spec"
        check "[$kind] a bad shale_ setting is refused at connect" "error connecting: Invalid argument" \
            sh -c "qemu-img info 'rbd:rbd/x:shale_segment_size=1' 2>&1; true"
        # snapshots through QEMU: qemu-img snapshot -c/-l/-a/-d, info, convert of img@snap
        new_store "$kind"
        local q="env SHALE_STORE=$url"
        $q qemu-img create -f raw rbd:rbd/snapimg 16M >/dev/null
        $q qemu-io -f raw -c 'write -P 0xa1 0 1M' rbd:rbd/snapimg >/dev/null
        check "[$kind] qemu-img snapshot -c" "" $q qemu-img snapshot -c s1 rbd:rbd/snapimg
        $q qemu-io -f raw -c 'write -P 0xb2 0 1M' rbd:rbd/snapimg >/dev/null
        check "[$kind] qemu-img snapshot -l" "s1" $q qemu-img snapshot -l rbd:rbd/snapimg
        check "[$kind] qemu-img info lists the snapshot" "Snapshot list:" $q qemu-img info rbd:rbd/snapimg
        check "[$kind] qemu-img convert rbd:rbd/img@snap" "" $q qemu-img convert -f raw -O raw \
            rbd:rbd/snapimg@s1 "$scratch/snap-$kind.raw"
        check "[$kind] ... has the snapshot's bytes" "read 1048576/1048576" \
            qemu-io -f raw -r -c 'read -P 0xa1 0 1M' "$scratch/snap-$kind.raw"
        check "[$kind] the head kept its own bytes" "read 1048576/1048576" \
            $q qemu-io -f raw -r -c 'read -P 0xb2 0 1M' rbd:rbd/snapimg
        check "[$kind] qemu-img snapshot -a (rollback)" "" $q qemu-img snapshot -a s1 rbd:rbd/snapimg
        check "[$kind] ... the head has the snapshot's bytes again" "read 1048576/1048576" \
            $q qemu-io -f raw -r -c 'read -P 0xa1 0 1M' rbd:rbd/snapimg
        check "[$kind] qemu-img snapshot -d" "" $q qemu-img snapshot -d s1 rbd:rbd/snapimg
        refute "[$kind] ... and it is gone" "s1" $q qemu-img snapshot -l rbd:rbd/snapimg
        if [ "$kind" = local ]; then
            # A truncated segment: the write's read-modify-write hits it. It must fail with an
            # error, never panic or hang the client (it used to hang qemu-io).
            local store_dir=${url#file://} seg out rc
            $q qemu-img create -f raw rbd:rbd/trunc 8M >/dev/null
            $q qemu-io -f raw -c 'write -P 0x33 0 8M' rbd:rbd/trunc >/dev/null
            local tid
            tid=$(SHALE_STORE="$url" "$shale" info rbd/trunc --format json 2>/dev/null \
                | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2>/dev/null)
            seg=$(ls "$store_dir/rbd/images/$tid/seg/"* 2>/dev/null | head -1)
            if [ -n "$seg" ]; then
                truncate -s 100000 "$seg"
                out=$(timeout 120 env SHALE_STORE="$url" qemu-io -f raw -c 'write -P 0x11 3000100 1000' rbd:rbd/trunc 2>&1); rc=$?
                if [ $rc -ne 124 ] && ! printf '%s' "$out" | grep -q panicked \
                    && printf '%s' "$out" | grep -qi "error\|failed"; then
                    ok "[$kind] qemu-io on a truncated segment fails cleanly (no hang, no panic)"
                else
                    bad "[$kind] qemu-io on a truncated segment (rc=$rc)" "$out"
                fi
                check "[$kind] shale check reports the truncated segment" "PROBLEM" \
                    sh -c "SHALE_STORE=$url $shale check rbd/trunc; true"
            else
                bad "[$kind] truncated segment: no segment file found"
            fi
        fi
    else
        skipped "[$kind] qemu tests (qemu-img/qemu-io not installed)"
    fi

    # fio's rbd engine; the store comes from ceph.conf (fio needs one: it fails if
    # rados_conf_read_file(NULL) finds none, as with real librados)
    if command -v fio >/dev/null; then
        new_store "$kind"; conf=$scratch/fio-$kind.conf
        write_conf "$url" "$conf"
        if [ $have_py = 1 ]; then
            CEPH_CONF=$conf /usr/bin/python3 -c "
import rados, rbd
with rados.Rados(conffile='$conf') as c, c.open_ioctx('rbd') as io:
    rbd.RBD().create(io, 'fioimg', 64 << 20)" || bad "[$kind] create fio image"
        else
            CEPH_CONF=$conf SHALE_STORE=$url qemu-img create -f raw rbd:rbd/fioimg 64M >/dev/null
        fi
        local fio_common="--ioengine=rbd --clientname=admin --pool=rbd --rbdname=fioimg --bs=4k --size=64M"
        refute "[$kind] fio rbd: randwrite QD32 64 MiB, verify=crc32c" "verify: bad" env -C "$scratch" CEPH_CONF=$conf \
            fio --name=vw $fio_common --rw=randwrite --iodepth=32 --verify=crc32c --do_verify=1 \
            --verify_fatal=1 --randrepeat=0 --output-format=normal
        refute "[$kind] fio rbd: randrw mix QD16 with verify" "verify: bad" env -C "$scratch" CEPH_CONF=$conf \
            fio --name=mix $fio_common --rw=randrw --rwmixread=50 --iodepth=16 --io_size=16M \
            --verify=crc32c --verify_fatal=1
        # cross-client: qemu-io writes a pattern, fio and the shale CLI read it back
        if command -v qemu-io >/dev/null; then
            check "[$kind] cross: qemu-io writes 0x3c over 8 MiB" "wrote 8388608/8388608" env CEPH_CONF=$conf \
                qemu-io -f raw -c 'write -P 0x3c 0 8M' rbd:rbd/fioimg
            check "[$kind] cross: fio reads it back (verify_pattern)" "fio-" env -C "$scratch" CEPH_CONF=$conf \
                fio --name=rd --ioengine=rbd --clientname=admin --pool=rbd --rbdname=fioimg --rw=read \
                --bs=64k --size=8M --verify=pattern --verify_pattern=0x3c --verify_only=1 --verify_fatal=1
            if [ -x "$shale" ]; then
                head -c $((8 * 1024 * 1024)) /dev/zero | tr '\0' '\074' > "$scratch/expect-$kind"
                SHALE_STORE=$url "$shale" export rbd/fioimg "$scratch/export-$kind" >/dev/null 2>&1
                check "[$kind] cross: shale export matches the bytes qemu-io wrote" "" \
                    cmp -n $((8 * 1024 * 1024)) "$scratch/expect-$kind" "$scratch/export-$kind"
            else
                skipped "[$kind] cross: shale export (no CLI binary)"
            fi
        fi
    else
        skipped "[$kind] fio tests (fio not installed)"
    fi

    # python3-rbd / python3-rados, and the C-level bad-input test
    if [ $have_py = 1 ]; then
        new_store "$kind"; conf=$scratch/py-$kind.conf
        write_conf "$url" "$conf"
        local out
        out=$(CEPH_CONF=$conf /usr/bin/python3 "$tests/python_rbd.py" "$conf" 2>&1)
        count_py "[$kind] python3-rbd" "$out"
        # aio_flush liveness/ordering and calls from completion callbacks (a deadlock regression
        # test: its own watchdog turns a hang into FAIL; timeout is the backstop)
        new_store "$kind"; conf=$scratch/af-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf timeout 600 /usr/bin/python3 "$tests/aio_flush.py" "$conf" 2>&1)
        rc=$?
        count_py "[$kind] aio flush" "$out"
        [ $rc -eq 124 ] && bad "[$kind] aio flush: timed out (deadlock)" "$out"
        # log lines reach stderr at the level SHALE_LOG / ceph.conf names
        new_store "$kind"
        out=$(timeout 300 /usr/bin/python3 "$tests/log_levels.py" "$url" 2>&1)
        count_py "[$kind] log levels" "$out"
        new_store "$kind"; conf=$scratch/bad-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf /usr/bin/python3 "$tests/bad_input.py" 2>&1)
        count_py "[$kind] C bad input" "$out"
        new_store "$kind"; conf=$scratch/os-$kind.conf
        write_conf "$url" "$conf"
        mkdir -p "$scratch/os-$kind"
        if command -v qemu-img >/dev/null; then
            out=$(CEPH_CONF=$conf /usr/bin/python3 "$tests/openstack.py" "$conf" "$scratch/os-$kind" 2>&1)
        else
            out=$(CEPH_CONF=$conf /usr/bin/python3 "$tests/openstack.py" "$conf" 2>&1)
        fi
        count_py "[$kind] openstack workflow" "$out"
        new_store "$kind"; conf=$scratch/sc-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf /usr/bin/python3 "$tests/snap_c.py" 2>&1)
        count_py "[$kind] C snapshots/clones/diff" "$out"
        new_store "$kind"; conf=$scratch/lk-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf timeout 300 /usr/bin/python3 "$tests/locks.py" 2>&1)
        count_py "[$kind] locks" "$out"
        new_store "$kind"; conf=$scratch/ds-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf DS_OUTAGE=$([ "$kind" = s3 ] && echo 1 || echo 0) timeout 600 \
            /usr/bin/python3 "$tests/data_safety.py" 2>&1)
        count_py "[$kind] data safety" "$out"
        new_store "$kind"; conf=$scratch/lk2-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf timeout 300 /usr/bin/python3 "$tests/lock_two_proc.py" 2>&1)
        count_py "[$kind] exclusive lock, two processes" "$out"
        printf '%s\n' "$out" | grep '^info' | sed "s/^/     [$kind] /"
        # exclusive-lock ownership per handle (one process, three processes, ctypes)
        new_store "$kind"; conf=$scratch/lkh-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf timeout 600 /usr/bin/python3 "$tests/lock_handles.py" 2>&1)
        count_py "[$kind] exclusive lock per handle" "$out"
        printf '%s\n' "$out" | grep '^info' | sed "s/^/     [$kind] /"
        # creation/removal answers as librbd's: features, striping, journaling, ENOTEMPTY
        new_store "$kind"; conf=$scratch/cp-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf timeout 300 /usr/bin/python3 "$tests/create_parity.py" 2>&1)
        count_py "[$kind] create parity" "$out"
        # QEMU's live-migration protocol: two processes, invalidate_cache, the lock moving
        new_store "$kind"; conf=$scratch/mig-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf timeout 300 /usr/bin/python3 "$tests/live_migration.py" 2>&1)
        count_py "[$kind] live migration" "$out"
        # issue 9: no binding path crashes the client; diff_iterate2 as librbd; parity answers
        new_store "$kind"; conf=$scratch/sw-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf timeout 900 /usr/bin/python3 "$tests/binding_sweep.py" 2>&1)
        count_py "[$kind] binding sweep" "$out"
        new_store "$kind"; conf=$scratch/di-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf timeout 300 /usr/bin/python3 "$tests/diff_iterate.py" 2>&1)
        count_py "[$kind] diff_iterate2 vs librbd" "$out"
        new_store "$kind"; conf=$scratch/di-$kind.conf
        write_conf "$url" "$conf"
        out=$(CEPH_CONF=$conf timeout 300 /usr/bin/python3 "$tests/dropin.py" 2>&1)
        count_py "[$kind] drop-in parity" "$out"
    fi
    if [ "$kind" = local ]; then
        out=$(timeout 600 "$tests/qemu_block_status.sh" "$scratch/qbs" 2>&1)
        case $out in
            skip*) skipped "QEMU block status (${out#skip })" ;;
            *) count_py "[$kind] QEMU block status" "$out" ;;
        esac
        # live migration of a running guest between two QEMU processes (~40 s)
        out=$(timeout 600 "$tests/live_migration.sh" "$shale" "$scratch/migrate" 2>&1); rc=$?
        case $out in
            skip:*) skipped "live migration (${out#skip: })" ;;
            *) if [ $rc -eq 0 ]; then ok "[$kind] live migration of a running guest (QEMU 7.2, migrate tcp:)"
               else bad "[$kind] live migration of a running guest" "$out"; fi ;;
        esac
    fi
}

# count_py PREFIX OUTPUT: counts the "ok"/"FAIL" lines a python test prints
count_py() {
    local prefix=$1 out=$2 line
    if ! printf '%s\n' "$out" | grep -q '^ok '; then bad "$prefix: no test ran" "$out"; return; fi
    while IFS= read -r line; do
        case $line in
            "ok "*) ok "$prefix: ${line#ok }" ;;
            "FAIL "*) bad "$prefix: ${line#FAIL }" ;;
        esac
    done <<< "$out"
    if printf '%s\n' "$out" | grep -q '^Traceback'; then bad "$prefix: crashed" "$out"; fi
}

run_store_tests local
# export-diff / import-diff against real Ceph (ceph-mini); skipped without Ceph
out=$(timeout 900 "$tests/ceph_interop.sh" "$shale" "$libs" "$scratch/interop" 2>&1)
case $out in
    skipped:*) skipped "Ceph interop (${out#skipped: })" ;;
    *) count_py "Ceph interop" "$out" ;;
esac
# the ceph CLI (ceph-common) on Shale's librados; compared live with ceph-mini when it runs
out=$(timeout 600 /usr/bin/python3 "$tests/ceph_cli.py" "$shale" "$scratch/ceph-cli" 2>&1)
case $out in
    skip*) skipped "ceph CLI (${out#skip })" ;;
    *) count_py "ceph CLI" "$out"; printf '%s\n' "$out" | grep '^skip' | sed 's/^/     /' ;;
esac
# rados_conf_parse_argv(_remainder) / _env at the C level, compared with the real librados
out=$(timeout 300 /usr/bin/python3 "$tests/conf_argv.py" "$libs/librados.so.2" 2>&1)
count_py "conf argv" "$out"
printf '%s\n' "$out" | grep '^skip' | sed 's/^/     /'
if [ -n "${SHALE_TEST_S3:-}" ] && [ -n "${AWS_ACCESS_KEY_ID:-}" ]; then
    run_store_tests s3
else
    skipped "S3 variants (set SHALE_TEST_S3=s3://bucket/prefix and AWS_*)"
fi
finish
