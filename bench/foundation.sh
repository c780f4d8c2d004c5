#!/usr/bin/env bash
# Foundation benchmark, one invocation, one table:
#  - extent map: bytes per extent, insert and lookup time at 10 million extents;
#  - `shale bench` 4 KiB random write and 1 MiB sequential write on the embedded local store,
#    next to the very same load written to a plain file on the same filesystem (`--target-file`),
#    both ending with a flush (fdatasync for the file), as ratios.
# Usage: bench/foundation.sh [WORKDIR]   (default: a fresh directory under /tmp; needs ~3 GiB)
# Env: TOTAL (default 1G), EXTENTS (default 10000000), OUT (also append the table to this file).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${1:-$(mktemp -d /tmp/shale-bench.XXXXXX)}
TOTAL=${TOTAL:-1G}
EXTENTS=${EXTENTS:-10000000}
TD=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p shale-cli
cargo build --release -q -p shale-extmap --example extmap_stats
SHALE="$TD/release/shale --store file://$WORK/store"

ext=$("$TD/release/examples/extmap_stats" "$EXTENTS" 2>/dev/null | sed -n 1p)
get() { grep -o "$1=[0-9.]*" <<<"$ext" | head -1 | cut -d= -f2; }

$SHALE create rbd/bench --size 4G
run() { # label shale-args...
  local label=$1 s f
  shift
  s=$($SHALE bench rbd/bench --format json "$@" | sed -n 's/.*"bytes_per_sec":\([0-9.e+]*\).*/\1/p')
  f=$($SHALE bench rbd/bench --format json "$@" --target-file "$WORK/raw.img" | sed -n 's/.*"bytes_per_sec":\([0-9.e+]*\).*/\1/p')
  awk -v l="$label" -v s="$s" -v f="$f" 'BEGIN { printf "| %s | %.1f MiB/s | %.1f MiB/s | %.2fx |\n", l, s/1048576, f/1048576, s/f }'
}
{
  echo "## Foundation benchmark — $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $(uname -r)"
  echo
  echo "| extent map at $(get extents) extents | value | goal |"
  echo "|---|---|---|"
  echo "| bytes per extent | $(get bytes/extent) | ≤ 24 |"
  echo "| insert (ns/op, random order) | $(get insert_ns) | ≤ 1000 |"
  echo "| lookup (ns/op) | $(get lookup_ns) | ≤ 1000 |"
  echo
  echo "| load ($TOTAL, then flush) | shale, local store | same load on a raw file | ratio |"
  echo "|---|---|---|---|"
  run "4 KiB random write, 16 threads" --io-type write --io-size 4K --io-threads 16 --io-total "$TOTAL" --io-pattern rand
  run "1 MiB sequential write, 4 threads" --io-type write --io-size 1M --io-threads 4 --io-total "$TOTAL" --io-pattern seq
  run "4 KiB random read, 16 threads" --io-type read --io-size 4K --io-threads 16 --io-total 256M --io-pattern rand
  run "1 MiB sequential read, 4 threads" --io-type read --io-size 1M --io-threads 4 --io-total "$TOTAL" --io-pattern seq
} | tee -a "${OUT:-/dev/null}"
rm -rf "$WORK"
