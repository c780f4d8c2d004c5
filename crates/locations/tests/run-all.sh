#!/bin/bash
# Locations end to end: python3-rbd on Shale's librbd and the shale CLI, with a local directory
# (home) and two SeaweedFS S3 servers of our own (dc2, dc3) as three locations. Starts and stops
# its servers (by PID); prints "N passed, M failed"; exits nonzero on failure.
#
# usage: crates/locations/tests/run-all.sh   (SHARED=../shared; ports 18433/18533, bases 9433/9533)
set -u
root=$(cd "$(dirname "$0")/../../.." && pwd)
SHARED=${SHARED:-$root/../shared}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
if ! /usr/bin/python3 -c 'import rados, rbd' 2>/dev/null; then
    echo "skip: python3-rbd is not installed"; echo "0 passed, 0 failed"; exit 0
fi
cd "$root" || exit 1
cargo build -q --release -p shale-rados -p shale-rbd -p shale-cli || { echo "0 passed, 1 failed"; exit 1; }
scripts/stage-libs.sh "" release >/dev/null || { echo "0 passed, 1 failed"; exit 1; }
scratch=$(mktemp -d /tmp/shale-loc-tests.XXXXXX)
# The peers' venv stays where start.sh puts it by default (HOME changes below).
export S3_VENV=${S3_VENV:-$HOME/.cache/shale-peers/s3venv}
export S3A_DIR=$scratch/s3a S3A_PORT=18433 S3A_BASE=9433
export S3B_DIR=$scratch/s3b S3B_PORT=18533 S3B_BASE=9533
stop_all() {
    S3_DIR=$S3A_DIR bash "$SHARED/peers/s3/stop.sh" >/dev/null 2>&1
    S3_DIR=$S3B_DIR bash "$SHARED/peers/s3/stop.sh" >/dev/null 2>&1
    [ "${SHALE_TEST_KEEP:-0}" = 1 ] || rm -rf "$scratch"
}
trap stop_all EXIT
for w in A B; do
    d=S3${w}_DIR p=S3${w}_PORT b=S3${w}_BASE
    if ! S3_DIR=${!d} S3_PORT=${!p} S3_PORT_BASE=${!b} bash "$SHARED/peers/s3/start.sh" > "$scratch/s3$w.env" 2> "$scratch/s3$w.err"; then
        echo "FAIL S3 server $w did not start"; tail -5 "$scratch/s3$w.err"; echo "0 passed, 1 failed"; exit 1
    fi
done
export SHARED SHALE=$CARGO_TARGET_DIR/release/shale
export LD_LIBRARY_PATH=$CARGO_TARGET_DIR/release/shale-libs
export HOME_DIR=$scratch/home SCRATCH=$scratch HOME=$scratch/h XDG_DATA_HOME=$scratch/xdg
mkdir -p "$HOME"
export SHALE_CONF=$scratch/shale.toml CEPH_CONF=$scratch/ceph.conf
printf 'store = "file://%s"\ncache_dir = "%s/cache"\nsegment_size = "1M"\n' "$HOME_DIR" "$scratch" > "$SHALE_CONF"
printf '[global]\nshale_store = file://%s\n' "$HOME_DIR" > "$CEPH_CONF"
# This host's endpoints and keys of the two locations (never stored).
export SHALE_LOCATION_DC2_ENDPOINT=http://127.0.0.1:$S3A_PORT SHALE_LOCATION_DC2_ACCESS_KEY=shale SHALE_LOCATION_DC2_SECRET_KEY=shalesecret
export SHALE_LOCATION_DC3_ENDPOINT=http://127.0.0.1:$S3B_PORT SHALE_LOCATION_DC3_ACCESS_KEY=shale SHALE_LOCATION_DC3_SECRET_KEY=shalesecret
unset AWS_ENDPOINT_URL AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY SHALE_STORE
out=$(/usr/bin/python3 "$root/crates/locations/tests/locations_e2e.py" 2>&1); rc=$?
printf '%s\n' "$out"
pass=$(printf '%s\n' "$out" | grep -c '^ok ')
fail=$(printf '%s\n' "$out" | grep -c '^FAIL')
[ $rc -ne 0 ] && [ "$fail" -eq 0 ] && fail=1
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
