#!/usr/bin/env bash
# Issue-4/12 benchmark: the same fio jobs, one invocation, one table with ratios (and the
# device's own sequential O_DIRECT write ceiling, measured first), on
#   raw    fio libaio direct=1 on a raw file of the same filesystem (the physical limit here)
#   local  fio rbd engine on Shale, embedded local store (in-place log, no double write)
#   s3     fio rbd engine on Shale, S3 store (SeaweedFS on loopback) behind the local journal
#   ceph   fio rbd engine on real Ceph RBD (../shared/peers/ceph-mini), when it is installed
# Jobs: 4k randwrite QD32, 4k randread QD32 (cached), 1M seq write QD8, 1M seq read QD8,
# 4k randwrite QD1 (p50/p99), 4k randwrite QD1 with fdatasync after each write.
# CPU per I/O: the user+sys time of the whole fio process tree (every thread: Shale's committer,
# store worker and GC run inside fio) plus, for Ceph, its daemons', over the I/Os of the ramp and
# the measured time (fio counts only the latter: scaled by (ramp+runtime)/runtime). fio's own
# usr_cpu/sys_cpu count only the job's thread, which left Shale's background threads out.
#
# usage: bench/compare.sh [OUT.md]   env: RUNTIME=10 SIZE=1G TARGETS="raw local s3 ceph" DIR=/tmp/shale-cmp
#        LOCAL_CONF='shale_free_segments = 0\n'
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$root/../shared}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
RUNTIME=${RUNTIME:-10}
RAMP=2  # seconds of each job before fio starts counting
SIZE=${SIZE:-1G}
DIR=${DIR:-/tmp/shale-cmp}
TARGETS=${TARGETS:-raw local s3 ceph}
LOCAL_CONF=${LOCAL_CONF:-}  # extra ceph.conf lines for the local target (A/B of a setting)
out=${1:-}
(cd "$root" && cargo build -q --release -p shale-rados -p shale-rbd)
"$root/scripts/stage-libs.sh" "" release >/dev/null
libs=$CARGO_TARGET_DIR/release/shale-libs
rm -rf "$DIR"; mkdir -p "$DIR"
started_s3=0 started_ceph=0
cleanup() {
  [ $started_s3 = 1 ] && S3_DIR=$DIR/s3 bash "$SHARED/peers/s3/stop.sh" >/dev/null 2>&1 || true
  [ $started_ceph = 1 ] && bash "$SHARED/peers/ceph-mini/stop.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT

JOBS="randwrite-4k-qd32 randwrite 4k 32 0
randread-4k-qd32 randread 4k 32 0
write-1m-qd8 write 1M 8 0
read-1m-qd8 read 1M 8 0
randwrite-4k-qd1 randwrite 4k 1 0
randwrite-4k-qd1-fdatasync randwrite 4k 1 1"

conf_for() { # target -> ceph.conf path
  case $1 in
    local) printf '[global]\nshale_store = file://%s/store\nshale_cache_dir = %s/cache\n%b' "$DIR" "$DIR" "$LOCAL_CONF" > "$DIR/local.conf"; echo "$DIR/local.conf" ;;
    s3) printf '[global]\nshale_store = s3://shale-bench/%s\nshale_cache_dir = %s/cache\n' "$$" "$DIR" > "$DIR/s3.conf"; echo "$DIR/s3.conf" ;;
    ceph) echo /tmp/cephmini/ceph.conf ;;
  esac
}

setup() { # target -> 0 if usable
  case $1 in
    raw) fallocate -l "$SIZE" "$DIR/raw.bin" 2>/dev/null || truncate -s "$SIZE" "$DIR/raw.bin" ;;
    s3)
      eval "$(S3_DIR=$DIR/s3 S3_PORT=18500 S3_PORT_BASE=9500 bash "$SHARED/peers/s3/start.sh" | tail -1)" || return 1
      started_s3=1 ;;
    ceph)
      command -v ceph-mon >/dev/null || { echo "ceph-mini is not installed: skipping the ceph column" >&2; return 1; }
      bash "$SHARED/peers/ceph-mini/start.sh" >/dev/null 2>&1 || return 1
      started_ceph=1 ;;
  esac
  case $1 in
    local|s3) LD_LIBRARY_PATH=$libs CEPH_CONF=$(conf_for "$1") qemu-img create -f raw rbd:rbd/bench "$SIZE" >/dev/null ;;
    ceph) CEPH_CONF=/tmp/cephmini/ceph.conf rbd rm bench >/dev/null 2>&1 || true
          CEPH_CONF=/tmp/cephmini/ceph.conf rbd create bench --size "$SIZE" ;;
  esac
}

fio_target() { # target args... (extra fio args)
  local t=$1; shift
  case $t in
    raw) fio --ioengine=libaio --direct=1 --filename="$DIR/raw.bin" --size="$SIZE" "$@" ;;
    local|s3) LD_LIBRARY_PATH=$libs CEPH_CONF=$(conf_for "$t") fio --ioengine=rbd --clientname=admin --pool=rbd --rbdname=bench --size="$SIZE" "$@" ;;
    ceph) CEPH_CONF=/tmp/cephmini/ceph.conf fio --ioengine=rbd --clientname=admin --pool=rbd --rbdname=bench --direct=1 --size="$SIZE" "$@" ;;
  esac
}

daemon_ticks() {
  local t=0 p
  for n in osd.0 mon.a mgr.x; do
    p=$(cat "/tmp/cephmini/run/$n.pid" 2>/dev/null) || continue
    [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat")))
  done
  echo $t
}

# The device's own ceiling for a log: its large sequential O_DIRECT write rate (4 MiB, QD16).
devlimit=""
if [[ " $TARGETS " == *" raw "* ]]; then
  fallocate -l "$SIZE" "$DIR/seq.bin" 2>/dev/null || truncate -s "$SIZE" "$DIR/seq.bin"
  fio --name=devlimit --ioengine=libaio --direct=1 --filename="$DIR/seq.bin" --size="$SIZE" \
      --rw=write --bs=4M --iodepth=16 --time_based --runtime="$RUNTIME" --output-format=json \
      --output="$DIR/devlimit.json" >/dev/null
  devlimit=$(/usr/bin/python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]["write"]; print("%.0f MiB/s = %.0f 4 KiB writes/s" % (j["bw_bytes"]/2**20, j["bw_bytes"]/4096))' "$DIR/devlimit.json")
  rm -f "$DIR/seq.bin"
fi

declare -A R
active=()
for t in $TARGETS; do
  if setup "$t"; then active+=("$t"); else echo "target $t unavailable: skipped" >&2; continue; fi
  # Fill first, so that reads hit written data.
  fio_target "$t" --name=fill --rw=write --bs=1M --iodepth=8 --output=/dev/null
  while read -r name rw bs qd sync; do
    f=$DIR/$t-$name.json
    extra=()
    # fio's rbd engine turns fsync into rbd_aio_flush and has no fdatasync; the raw file gets
    # fdatasync. Both make every write durable before the next.
    if [ "$sync" = 1 ]; then
      if [ "$t" = raw ]; then extra=(--fdatasync=1); else extra=(--fsync=1); fi
    fi
    # "Cached" reads: one pass in 64 KiB reads first (Shale's read cache admits reads below
    # 1 MiB; Ceph and the raw file get the same pass).
    if [ "$name" = randread-4k-qd32 ]; then
      fio_target "$t" --name=warm --rw=read --bs=64k --iodepth=8 --output=/dev/null
    fi
    d0=$(daemon_ticks)
    # bash's `time` reports the user and system time of the whole process tree it waited for.
    { TIMEFORMAT='%U %S'; time fio_target "$t" --name="$name" --rw="$rw" --bs="$bs" --iodepth="$qd" --time_based --runtime="$RUNTIME" \
        --ramp_time="$RAMP" --randrepeat=0 --norandommap --lat_percentiles=1 "${extra[@]}" \
        --output-format=json --output="$f"; } 2> "$f.cpu"
    d1=$(daemon_ticks)
    [ "$t" = ceph ] || { d0=0; d1=0; }
    R[$t,$name]=$(/usr/bin/python3 - "$f" "$rw" "$RUNTIME" "$((d1 - d0))" "$(getconf CLK_TCK)" "$RAMP" <<'PY'
import json, sys
f, rw, runtime, dt, hz, ramp = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
proc = sum(float(x) for x in open(f + ".cpu").read().split()[-2:])
job = json.load(open(f))["jobs"][0]
kind = "read" if "read" in rw else "write"
j = job[kind]
pct = j.get("lat_ns", {}).get("percentile", {}) or {}
ios = max(j["total_ios"], 1) * (runtime + ramp) / runtime  # the ramp's I/Os too
cpu = proc + dt / hz
print("%.0f %.1f %.1f %.1f %.1f" % (j["iops"], j["bw_bytes"] / 2**20, pct.get("50.000000", 0) / 1e3, pct.get("99.000000", 0) / 1e3, cpu / ios * 1e6))
PY
)
  done <<< "$JOBS"
done

{
  echo "# Shale vs raw file vs Ceph RBD: fio, one run"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) by bench/compare.sh (RUNTIME=${RUNTIME}s per job after ${RAMP} s ramp, ${SIZE}); $(nproc) cores, $(uname -r)."
  [ -n "$devlimit" ] && echo "Device sequential O_DIRECT write limit (4 MiB writes, QD16, raw file): $devlimit." && echo
  echo "Load while running (1/5/15 min): $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Cells: IOPS (MiB/s) · p50/p99 latency µs · CPU µs per I/O. Ratios against the raw file (and Ceph)."
  echo
  hdr="| job |"; sep="|---|"
  for t in "${active[@]}"; do hdr="$hdr $t |"; sep="$sep---|"; done
  [[ " ${active[*]} " == *" local "* && " ${active[*]} " == *" raw "* ]] && { hdr="$hdr local/raw |"; sep="$sep---|"; }
  [[ " ${active[*]} " == *" s3 "* && " ${active[*]} " == *" local "* ]] && { hdr="$hdr s3/local |"; sep="$sep---|"; }
  [[ " ${active[*]} " == *" ceph "* && " ${active[*]} " == *" local "* ]] && { hdr="$hdr local/ceph |"; sep="$sep---|"; }
  echo "$hdr"; echo "$sep"
  while read -r name rw bs qd sync; do
    row="| $name |"
    for t in "${active[@]}"; do
      read -r iops mib p50 p99 cpu <<< "${R[$t,$name]}"
      row="$row $iops ($mib MiB/s) · $p50/$p99 µs · $cpu µs |"
    done
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
    [[ -n "${R[local,$name]:-}" && -n "${R[raw,$name]:-}" ]] && row="$row $(ratio "${R[local,$name]%% *}" "${R[raw,$name]%% *}") |"
    [[ -n "${R[s3,$name]:-}" && -n "${R[local,$name]:-}" ]] && row="$row $(ratio "${R[s3,$name]%% *}" "${R[local,$name]%% *}") |"
    [[ -n "${R[ceph,$name]:-}" && -n "${R[local,$name]:-}" ]] && row="$row $(ratio "${R[local,$name]%% *}" "${R[ceph,$name]%% *}") |"
    echo "$row"
  done <<< "$JOBS"
} | tee ${out:+"$out"}
