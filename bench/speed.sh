#!/usr/bin/env bash
# Issue-12 measurements fio cannot make: CPU per write in the engine, many images in one
# process (1, 8, 64 open; I/O on up to 8), and opening an image after a crash with a full
# 1 GiB journal. Uses crates/engine/examples/speed.rs.
# usage: bench/speed.sh   env: DIR=/tmp/shale-speed SECS=5 JOURNAL=1073741824
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
DIR=${DIR:-/tmp/shale-speed}
SECS=${SECS:-5}
JOURNAL=${JOURNAL:-$((1 << 30))}
(cd "$root" && cargo build -q --release -p shale-engine --example speed)
bin=$CARGO_TARGET_DIR/release/examples/speed
trap 'rm -rf "$DIR"' EXIT
ulimit -c 0
echo "load (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)"
echo "## CPU per write (one image, local-directory store, in-place log, 8 writer threads)"
for bs in 4096 1048576; do
  rm -rf "$DIR"; mib=256; [ "$bs" = 4096 ] && mib=64
  "$bin" write "$DIR" $mib $bs
done
echo "## Many images in one process (4 KiB random writes, QD1 per active image)"
for spec in "1 1" "8 8" "64 8"; do
  rm -rf "$DIR"
  # shellcheck disable=SC2086
  "$bin" scale "$DIR" $spec "$SECS"
done
echo "## Open after a crash with a full journal"
rm -rf "$DIR"
"$bin" crash-fill "$DIR" "$JOURNAL" 2>&1 | grep -v "^thread\|^note:\|Aborted" || true
sync
"$bin" crash-open "$DIR" "$JOURNAL"
