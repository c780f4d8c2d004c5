#!/usr/bin/env bash
# Issue-12 scaling run: many images open in ONE process (fio --thread, Shale's librbd on the
# embedded local store). For each count N in COUNTS, N images are opened; min(N, ACTIVE) of them
# take 4 KiB random writes at queue depth QD, the others stay open and idle (one write at
# the start).
# Prints the active images' aggregate IOPS (mean of REPEAT runs; its ratio to one image), p50/p99
# latency, the process's threads and resident memory (sampled mid-run), per open image; and,
# where images are idle, the same fio jobs with the idle ones on fio's null engine (fio's own cost
# of that many jobs, so that the difference is Shale's cost of the open, idle images).
#
# usage: bench/scale.sh [OUT.md]   env: RUNTIME=10 SIZE=1G COUNTS="1 8 64" ACTIVE=8 QD=32 REPEAT=3
#        DIR=/tmp/shale-scale  LOCAL_CONF='shale_gc_threshold = 0\n' (extra ceph.conf lines;
#        the default turns GC off so that the run measures sharing, not garbage collection)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
RUNTIME=${RUNTIME:-10}
SIZE=${SIZE:-1G}
COUNTS=${COUNTS:-1 8 64}
ACTIVE=${ACTIVE:-8}
QD=${QD:-32}
REPEAT=${REPEAT:-3}
DIR=${DIR:-/tmp/shale-scale}
LOCAL_CONF=${LOCAL_CONF-shale_gc_threshold = 0\\n}
out=${1:-}
(cd "$root" && cargo build -q --release -p shale-rados -p shale-rbd -p shale-cli)
"$root/scripts/stage-libs.sh" "" release >/dev/null
libs=$CARGO_TARGET_DIR/release/shale-libs
shale=$CARGO_TARGET_DIR/release/shale
rm -rf "$DIR"; mkdir -p "$DIR"
trap 'rm -rf "$DIR/store" "$DIR/cache"' EXIT

# fio_job N ACTIVE IDLE_ENGINE -> the job file: ACTIVE images with I/O, the rest open and idle;
# IDLE_ENGINE=null puts fio's own idle jobs there instead of images (the control: fio's cost of
# running that many jobs, without Shale's cost of that many open images).
fio_job() {
  local n=$1 active=$2 idle_engine=$3
  printf '[global]\nioengine=rbd\nclientname=admin\npool=rbd\nthread\nsize=%s\n' "$SIZE"
  printf 'time_based\nruntime=%s\nramp_time=2\nrw=randwrite\nbs=4k\nrandrepeat=0\nnorandommap\ngroup_reporting\nlat_percentiles=1\n' "$RUNTIME"
  for i in $(seq 0 $((n - 1))); do
    printf '\n[img%s]\n' "$i"
    if [ "$i" -lt "$active" ]; then
      printf 'rbdname=img%s\niodepth=%s\n' "$i" "$QD"
    else
      [ "$i" = "$active" ] && printf 'new_group\n'
      if [ "$idle_engine" = rbd ]; then printf 'rbdname=img%s\n' "$i"; else printf 'ioengine=%s\n' "$idle_engine"; fi
      # One write, then idle for the rest of the run (open, as a VM's idle disk is).
      printf 'iodepth=1\nthinktime=%ss\nthinktime_blocks=1\n' $((RUNTIME + 2))
    fi
  done
}

# run_case N IDLE_ENGINE -> "IOPS P50 P99 THREADS RSS_MIB" (one fio run, fresh store)
run_case() {
  local n=$1 idle_engine=$2 active=$(( $1 < ACTIVE ? $1 : ACTIVE )) made=$1 pid threads rss_kib
  rm -rf "$DIR/store" "$DIR/cache"
  printf '[global]\nshale_store = file://%s/store\nshale_cache_dir = %s/cache\n%b' "$DIR" "$DIR" "$LOCAL_CONF" > "$DIR/ceph.conf"
  [ "$idle_engine" = rbd ] || made=$active
  for i in $(seq 0 $((made - 1))); do
    "$shale" --store "file://$DIR/store" create "rbd/img$i" --size "$SIZE" >/dev/null
  done
  fio_job "$n" "$active" "$idle_engine" > "$DIR/scale.fio"
  LD_LIBRARY_PATH=$libs CEPH_CONF=$DIR/ceph.conf fio --output-format=json --output="$DIR/scale.json" "$DIR/scale.fio" &
  pid=$!
  # Mid-run: the process's threads and resident memory (every image open, I/O running).
  sleep $((RUNTIME / 2 + 2))
  threads=$(ls "/proc/$pid/task" 2>/dev/null | wc -l)
  rss_kib=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  wait "$pid"
  /usr/bin/python3 - "$DIR/scale.json" "$threads" "$rss_kib" <<'PY'
import json, sys
f, threads, rss = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
w = json.load(open(f))["jobs"][0]["write"]  # group 0: the active images (group_reporting)
pct = w.get("lat_ns", {}).get("percentile", {}) or w.get("clat_ns", {}).get("percentile", {}) or {}
print("%.0f %.1f %.1f %d %.0f" % (w["iops"], pct.get("50.000000", 0) / 1e3, pct.get("99.000000", 0) / 1e3, threads, rss / 1024))
PY
  rm -rf "$DIR/store" "$DIR/cache"
}

# mean over REPEAT runs of the IOPS; latency, threads and memory of the last run
measure() { # N IDLE_ENGINE
  local k sum=0 r iops
  for k in $(seq 1 "$REPEAT"); do
    r=$(run_case "$1" "$2")
    read -r iops _ <<< "$r"
    sum=$((sum + iops))
    echo "  $1 images ($2 idle jobs), run $k: $r" >&2
  done
  read -r _ rest <<< "$r"
  echo "$((sum / REPEAT)) $rest"
}

rows=()
for n in $COUNTS; do
  active=$(( n < ACTIVE ? n : ACTIVE ))
  row=$(measure "$n" rbd)
  ctl="-"
  if [ "$n" -gt "$active" ]; then read -r ctl _ <<< "$(measure "$n" null)"; fi
  rows+=("$n $active $row $ctl")
done

{
  echo "# Many images in one process: fio --thread, Shale librbd, local store"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) by bench/scale.sh (RUNTIME=${RUNTIME}s after 2 s ramp, images of $SIZE, 4 KiB random writes at QD$QD on the active images, the others open and idle after one write; ceph.conf extra: '$(printf '%b' "$LOCAL_CONF" | tr '\n' ' ')'); $(nproc) cores, $(uname -r)."
  echo
  echo "| images open | with I/O | aggregate IOPS | vs 1 image | same fio jobs, idle ones without images | p50 / p99 µs | threads | per image | RSS MiB | per image |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  base="" first_n=""
  for r in "${rows[@]}"; do
    read -r n active iops p50 p99 threads rss ctl <<< "$r"
    if [ -z "$first_n" ]; then first_n=$n; base=$iops; first_threads=$threads; first_rss=$rss; fi
    if [ "$n" -gt "$first_n" ]; then
      pt=$(awk -v a="$threads" -v b="$first_threads" -v n="$n" -v m="$first_n" 'BEGIN {printf "%.1f", (a-b)/(n-m)}')
      pr=$(awk -v a="$rss" -v b="$first_rss" -v n="$n" -v m="$first_n" 'BEGIN {printf "%.1f", (a-b)/(n-m)}')
    else pt="-"; pr="-"; fi
    ratio=$(awk -v a="$iops" -v b="$base" 'BEGIN {printf "%.2fx", a/b}')
    [ "$ctl" = "-" ] || ctl="$ctl ($(awk -v a="$iops" -v b="$ctl" 'BEGIN {printf "%.2fx", a/b}') of it)"
    echo "| $n | $active | $iops | $ratio | $ctl | $p50 / $p99 | $threads | $pt | $rss | $pr |"
  done
} | if [ -n "$out" ]; then tee "$out"; else cat; fi
