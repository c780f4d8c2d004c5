#!/usr/bin/env bash
# Write amplification of garbage collection under a random-overwrite workload.
# One image of SIZE on the local store, written TOTAL bytes of random IO_SIZE writes (several
# times its size), with automatic GC starting at gc_threshold (default 0.7 live). Prints
# client bytes, bytes written to the store (segments + GC relocation), their ratio (the write
# amplification; goal <= 1.5) and the space the store holds at the end.
# Usage: bench/gc-wa.sh   env: SIZE=256M TOTAL=1G IO_SIZE=16K GC=0.7 SEGMENT=4M OUT=file
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-256M} TOTAL=${TOTAL:-1G} IO=${IO_SIZE:-16K} GC=${GC:-0.7} SEG=${SEGMENT:-4M}
TD=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p shale-cli
W=$(mktemp -d /tmp/shale-gcwa.XXXXXX)
trap 'rm -rf "$W"' EXIT
export SHALE_GC_THRESHOLD=$GC SHALE_SEGMENT_SIZE=$SEG
S="$TD/release/shale --store file://$W/store"
$S create rbd/wa --size "$SIZE"
# Fill once sequentially, then overwrite at random.
$S bench rbd/wa --io-type write --io-size 1M --io-threads 2 --io-total "$SIZE" --io-pattern seq --format json > "$W/fill.json"
$S bench rbd/wa --io-type write --io-size "$IO" --io-threads 8 --io-total "$TOTAL" --io-pattern rand --format json > "$W/rand.json"
python3 - "$W" "$GC" "$SIZE" "$TOTAL" "$IO" <<'PY' | tee -a "${OUT:-/dev/null}"
import json, os, sys
w, gc, size, total, io = sys.argv[1:]
f = json.load(open(f"{w}/fill.json")); r = json.load(open(f"{w}/rand.json"))
client = r["ops"] * r["io_size"]
st = r["image_stats"]["store"]; g = r["image_stats"]
stored = sum(os.path.getsize(os.path.join(d, x)) for d, _, xs in os.walk(f"{w}/store") for x in xs)
print(f"## GC write amplification ({size} image, {total} of random {io} overwrites, gc_threshold {gc})\n")
print("| client bytes | bytes to store | write amplification | store size at end | image size |")
print("|---|---|---|---|---|")
print(f"| {client/2**20:.0f} MiB | {st['bytes_written']/2**20:.0f} MiB | {st['bytes_written']/client:.2f} (goal <= 1.5) | {stored/2**20:.0f} MiB | {size} |")
PY
