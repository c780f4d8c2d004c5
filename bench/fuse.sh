#!/usr/bin/env bash
# `shale mount` (the FUSE file view) against a raw file of the same filesystem: the same fio
# jobs (libaio, direct=1) on MOUNT/bench and on DIR/raw.bin.
# Jobs: 4 KiB random write QD32, 1 MiB sequential write QD8, 4 KiB random write QD1.
# The Shale store is a local directory in DIR (in-place log), as in bench/compare.sh's "local".
#
# usage: bench/fuse.sh [OUT.md]   env: RUNTIME=15 SIZE=1G DIR=/tmp/shale-fuse-bench
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
RUNTIME=${RUNTIME:-15}
SIZE=${SIZE:-1G}
DIR=${DIR:-/tmp/shale-fuse-bench}
out=${1:-}
(cd "$root" && cargo build -q --release -p shale-cli)
shale=$CARGO_TARGET_DIR/release/shale
rm -rf "$DIR"; mkdir -p "$DIR/mnt"
scratch=$DIR
. "$root/crates/fuse/tests/lib.sh"
trap 'cleanup_mounts; rm -rf "$DIR"' EXIT
export SHALE_CONF=$DIR/shale.toml
printf 'store = "file://%s/store"\n' "$DIR" >"$SHALE_CONF"
"$shale" create rbd/bench --size "$SIZE"
mount_pool "$DIR/mnt" || { echo "mount failed"; cat "$DIR/mount.log"; exit 1; }
fallocate -l "$SIZE" "$DIR/raw.bin" 2>/dev/null || truncate -s "$SIZE" "$DIR/raw.bin"

JOBS="randwrite-4k-qd32 randwrite 4k 32
write-1m-qd8 write 1M 8
randwrite-4k-qd1 randwrite 4k 1"

run() { # file job rw bs qd -> one line: iops MiB/s p50 p99 (µs)
    fio --name="$2" --filename="$1" --ioengine=libaio --direct=1 --rw="$3" --bs="$4" \
        --iodepth="$5" --size="$SIZE" --time_based --runtime="$RUNTIME" --ramp_time=2 \
        --randrepeat=0 --output-format=json --output="$DIR/$2.json" >/dev/null
    python3 - "$DIR/$2.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]["write"]
p = j["clat_ns"]["percentile"]
print(f'{j["iops"]:.0f} {j["bw_bytes"] / 2**20:.1f} {p["50.000000"] / 1000:.1f} {p["99.000000"] / 1000:.1f}')
PY
}

rows=""
while read -r name rw bs qd; do
    read -r fi fm f50 f99 < <(run "$DIR/mnt/bench" "$name" "$rw" "$bs" "$qd")
    read -r ri rm r50 r99 < <(run "$DIR/raw.bin" "$name" "$rw" "$bs" "$qd")
    ratio=$(python3 -c "print(f'{$fi / max($ri, 1):.2f}x')")
    rows+="| $name | $fi ($fm MiB/s) · $f50/$f99 µs | $ri ($rm MiB/s) · $r50/$r99 µs | $ratio |"$'\n'
    echo "$name: fuse $fi IOPS ($fm MiB/s), raw $ri IOPS ($rm MiB/s): $ratio"
done <<<"$JOBS"
stop_mount "$mpid" "$DIR/mnt"
[ "$mrc" = 0 ] || echo "warning: shale mount exited $mrc"

report="# fio through \`shale mount\` (FUSE) vs a raw file

Run $(date -u +%Y-%m-%dT%H:%MZ) by bench/fuse.sh (RUNTIME=${RUNTIME}s per job after 2 s ramp, $SIZE,
libaio, direct=1); $(nproc) cores, $(uname -r); filesystem of $DIR: $(df -T "$DIR" | awk 'NR==2{print $2}').
Cells: IOPS (MiB/s) · completion latency p50/p99 µs. The machine is shared with other builds:
treat the figures as rough.

| job | shale mount | raw file | fuse/raw |
|---|---|---|---|
$rows"
if [ -n "$out" ]; then printf '%s' "$report" >"$out"; else printf '%s' "$report"; fi
