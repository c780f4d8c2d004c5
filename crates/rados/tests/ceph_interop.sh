#!/bin/bash
# export-diff / import-diff interop between real Ceph (ceph-mini, the real librbd: no
# LD_LIBRARY_PATH) and Shale, both directions, with "rbd diff v1" streams:
#   (a) Ceph image: random writes, snap s1, more writes + a discard, snap s2;
#       rbd export-diff @s1 / --from-snap s1 @s2  ->  shale import-diff x2 into a new image;
#       shale export @s1 / @s2 == rbd export @s1 / @s2 byte for byte, Shale has s1 and s2.
#   (b) the same on Shale (written through Shale's librbd), shale export-diff  ->  rbd import-diff
#       into a fresh Ceph image; exports equal, Ceph has s1 and s2.
# Without Ceph (CI) it prints "skipped: ceph-mini not installed" and succeeds. It starts
# ceph-mini when it is not running and stops it at the end (only if it started it).
#
# usage: ceph_interop.sh SHALE_BIN SHALE_LIBS [SCRATCH]
# Prints "ok NAME" / "FAIL NAME" lines; exits nonzero if something failed.
set -u
shale=${1:?shale binary} libs=${2:?staged Shale libraries}
mini=${CEPHMINI_SCRIPTS:-/work/shared/peers/ceph-mini}
if ! command -v ceph-mon >/dev/null || ! command -v rbd >/dev/null || [ ! -f "$mini/start.sh" ]; then
    echo "skipped: ceph-mini not installed"
    exit 0
fi
scratch=${3:-$(mktemp -d /tmp/shale-interop.XXXXXX)}
mkdir -p "$scratch"
unset LD_LIBRARY_PATH
export CEPH_CONF=${CEPHMINI_DIR:-/tmp/cephmini}/ceph.conf
fail=0
ok() { echo "ok $1"; }
bad() { fail=1; echo "FAIL $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | tail -n 15 | sed 's/^/     /'; }
run() { # run NAME CMD...: ok when CMD succeeds
    local name=$1 out; shift
    if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi
}

started=0
if [ -f "$CEPH_CONF" ] && timeout 10 ceph --connect-timeout 5 -s >/dev/null 2>&1; then
    :
else
    if ! out=$(bash "$mini/start.sh" 2>&1); then
        echo "skipped: ceph-mini could not be started"
        printf '%s\n' "$out" | tail -n 5 | sed 's/^/     /'
        exit 0
    fi
    started=1
fi
cleanup() {
    for i in "${ceph_images[@]}"; do
        rbd snap purge "rbd/$i" >/dev/null 2>&1
        rbd rm "rbd/$i" >/dev/null 2>&1
    done
    [ $started = 1 ] && bash "$mini/stop.sh" >/dev/null 2>&1
}
ceph_images=()
trap cleanup EXIT

# write_random CONF IMAGE SEED [LIBS]: random data at random offsets (sizes 512 B .. 300 KB), and
# with an even seed a 1 MiB discard, through the real librbd or the one in LIBS.
write_random() {
    env ${4:+LD_LIBRARY_PATH=$4} /usr/bin/python3 - "$1" "$2" "$3" <<'EOF'
import random, sys
import rados, rbd
conf, name, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = random.Random(seed)
cl = rados.Rados(conffile=conf)
cl.connect()
io = cl.open_ioctx("rbd")
img = rbd.Image(io, name)
size = img.size()
for _ in range(40):
    n = r.choice([512, 4096, 65536, 300000])
    img.write(r.randbytes(n), r.randrange(0, size - n))
if seed % 2 == 0:
    img.discard(r.randrange(0, size // 2), 1 << 20)
img.close()
io.close()
cl.shutdown()
EOF
}

store=file://$scratch/store
shale_conf=$scratch/shale.conf
printf '[global]\nshale_store = %s\n' "$store" > "$shale_conf"
S() { "$shale" "$@" --store "$store"; }
size=$((64 * 1024 * 1024 + 4096))
tag=$$

# ---- (a) Ceph -> Shale -----------------------------------------------------------------------
ci=interop-a-$tag; ceph_images+=("$ci")
run "(a) rbd create (real Ceph)" rbd create "rbd/$ci" --size "$((size / 1024 / 1024 + 1))M"
run "(a) random writes on Ceph (real librbd)" write_random "$CEPH_CONF" "$ci" 1
run "(a) rbd snap create @s1" rbd snap create "rbd/$ci@s1"
run "(a) more writes + discard on Ceph" write_random "$CEPH_CONF" "$ci" 2
run "(a) rbd snap create @s2" rbd snap create "rbd/$ci@s2"
run "(a) rbd export-diff @s1" rbd export-diff "rbd/$ci@s1" "$scratch/a-d1"
run "(a) rbd export-diff --from-snap s1 @s2" rbd export-diff --from-snap s1 "rbd/$ci@s2" "$scratch/a-d2"
csize=$(rbd info "rbd/$ci" --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["size"])')
run "(a) shale create (same size)" S create rbd/imp --size "$((csize / 1024))K"
run "(a) shale import-diff d1" S import-diff "$scratch/a-d1" rbd/imp
run "(a) shale import-diff d2" S import-diff "$scratch/a-d2" rbd/imp
snaps=$(S snap ls rbd/imp 2>&1)
if grep -qw s1 <<< "$snaps" && grep -qw s2 <<< "$snaps"; then ok "(a) Shale has snapshots s1 and s2"; else bad "(a) Shale has snapshots s1 and s2" "$snaps"; fi
for s in s1 s2; do
    rbd export "rbd/$ci@$s" "$scratch/a-ceph-$s" >/dev/null 2>&1
    S export "rbd/imp@$s" "$scratch/a-shale-$s" >/dev/null 2>&1
    if [ -s "$scratch/a-ceph-$s" ] && cmp "$scratch/a-ceph-$s" "$scratch/a-shale-$s" >/dev/null 2>&1; then
        ok "(a) shale export @$s == rbd export @$s"
    else
        bad "(a) shale export @$s == rbd export @$s" "$(cmp "$scratch/a-ceph-$s" "$scratch/a-shale-$s" 2>&1; ls -l "$scratch"/a-*-"$s")"
    fi
done

# ---- (b) Shale -> Ceph -----------------------------------------------------------------------
run "(b) shale create" S create rbd/src --size "$((size / 1024))K"
run "(b) random writes on Shale (Shale's librbd)" write_random "$shale_conf" src 3 "$libs"
run "(b) shale snap create @s1" S snap create rbd/src@s1
run "(b) more writes + discard on Shale" write_random "$shale_conf" src 4 "$libs"
run "(b) shale snap create @s2" S snap create rbd/src@s2
run "(b) shale export-diff @s1" S export-diff rbd/src@s1 "$scratch/b-d1"
run "(b) shale export-diff --from-snap s1 @s2" S export-diff --from-snap s1 rbd/src@s2 "$scratch/b-d2"
ci=interop-b-$tag; ceph_images+=("$ci")
run "(b) rbd create (fresh Ceph image)" rbd create "rbd/$ci" --size "$((size / 1024))K"
run "(b) rbd import-diff d1" rbd import-diff "$scratch/b-d1" "rbd/$ci"
run "(b) rbd import-diff d2" rbd import-diff "$scratch/b-d2" "rbd/$ci"
snaps=$(rbd snap ls "rbd/$ci" 2>&1)
if grep -qw s1 <<< "$snaps" && grep -qw s2 <<< "$snaps"; then ok "(b) Ceph has snapshots s1 and s2"; else bad "(b) Ceph has snapshots s1 and s2" "$snaps"; fi
for s in s1 s2; do
    rbd export "rbd/$ci@$s" "$scratch/b-ceph-$s" >/dev/null 2>&1
    S export "rbd/src@$s" "$scratch/b-shale-$s" >/dev/null 2>&1
    if [ -s "$scratch/b-shale-$s" ] && ! cmp -s -n "$(stat -c %s "$scratch/b-shale-$s")" "$scratch/b-shale-$s" /dev/zero && cmp "$scratch/b-ceph-$s" "$scratch/b-shale-$s" >/dev/null 2>&1; then
        ok "(b) rbd export @$s == shale export @$s"
    else
        bad "(b) rbd export @$s == shale export @$s" "$(cmp "$scratch/b-ceph-$s" "$scratch/b-shale-$s" 2>&1; ls -l "$scratch"/b-*-"$s")"
    fi
done
[ -z "${3:-}" ] && rm -rf "$scratch"
exit $fail
