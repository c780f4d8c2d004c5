#!/bin/bash
# fio's nbd engine against three NBD servers, same jobs, one run, one table:
#   shale   `shale nbd serve` on a Shale image (local file store)
#   qemu    `qemu-nbd` on a qcow2 file on the same filesystem (its defaults: writeback cache)
#   qsd     `qemu-storage-daemon` exporting the same Shale image over NBD through QEMU's rbd
#           driver on Shale's librbd
#
#   job                    what
#   randwrite-4k-qd32      4 KiB random writes, iodepth 32 (IOPS)
#   randread-4k-qd32       4 KiB random reads, iodepth 32 (IOPS)
#   write-1m-qd8           1 MiB sequential writes, iodepth 8 (MiB/s)
#   read-1m-qd8            1 MiB sequential reads, iodepth 8 (MiB/s)
#   randwrite-4k-qd1       4 KiB random writes, iodepth 1 (IOPS, p50 and p99 total latency)
#
# Each target is filled first (sequential 1 MiB writes over the whole size) so reads hit data.
# Ratios are Shale / qemu-nbd (above 1 = Shale better; for latency below 1 = Shale better).
#
# usage: bench/nbd.sh [OUT.md]     env: RUNTIME=15 SIZE=1G DIR=/tmp/shale-nbd-bench
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
RUNTIME=${RUNTIME:-15}
SIZE=${SIZE:-1G}
DIR=${DIR:-/tmp/shale-nbd-bench}
out=${1:-}
for t in fio qemu-nbd qemu-img qemu-storage-daemon; do
    command -v $t >/dev/null || { echo "$t is not installed" >&2; exit 1; }
done
fio --enghelp=nbd >/dev/null 2>&1 || { echo "fio has no nbd engine" >&2; exit 1; }
(cd "$root" && cargo build -q --release -p shale-cli -p shale-rados -p shale-rbd)
"$root/scripts/stage-libs.sh" "" release >/dev/null
libs=$CARGO_TARGET_DIR/release/shale-libs
shale=$CARGO_TARGET_DIR/release/shale
rm -rf "$DIR"; mkdir -p "$DIR"
export SHALE_STORE=file://$DIR/store HOME=$DIR/home SHALE_CONF=$DIR/none.toml
mkdir -p "$HOME"; : > "$SHALE_CONF"
printf '[global]\nshale_store = file://%s/store\n' "$DIR" > "$DIR/ceph.conf"
export CEPH_CONF=$DIR/ceph.conf
"$shale" create rbd/bench --size "$SIZE" >/dev/null
qemu-img create -q -f qcow2 "$DIR/q.qcow2" "$SIZE"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start() { # target -> sets URI and PID
    case $1 in
    shale)
        "$shale" nbd serve --socket "$DIR/shale.sock" rbd/bench > "$DIR/shale.out" 2> "$DIR/shale.err" &
        PID=$!; URI="nbd+unix:///rbd/bench?socket=$DIR/shale.sock"; sock=$DIR/shale.sock ;;
    qemu)
        qemu-nbd -f qcow2 --socket "$DIR/qemu.sock" -x bench -e 8 "$DIR/q.qcow2" 2> "$DIR/qemu.err" &
        PID=$!; URI="nbd+unix:///bench?socket=$DIR/qemu.sock"; sock=$DIR/qemu.sock ;;
    qsd)
        LD_LIBRARY_PATH=$libs qemu-storage-daemon \
            --blockdev driver=rbd,pool=rbd,image=bench,conf="$CEPH_CONF",node-name=disk,cache.direct=on \
            --nbd-server addr.type=unix,addr.path="$DIR/qsd.sock" \
            --export type=nbd,id=e0,node-name=disk,name=bench,writable=on 2> "$DIR/qsd.err" &
        PID=$!; URI="nbd+unix:///bench?socket=$DIR/qsd.sock"; sock=$DIR/qsd.sock ;;
    esac
    pids+=("$PID")
    for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
    [ -S "$sock" ] || { echo "$1 did not start" >&2; cat "$DIR/$1.err" >&2; exit 1; }
}
stop() { kill -TERM "$1"; wait "$1" 2>/dev/null || true; }

JOBS="randwrite-4k-qd32 randwrite 4k 32
randread-4k-qd32 randread 4k 32
write-1m-qd8 write 1m 8
read-1m-qd8 read 1m 8
randwrite-4k-qd1 randwrite 4k 1"

metric() { # json rw -> "iops MiB/s p50_us p99_us"
    python3 - "$1" "$2" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0][sys.argv[2]]
p = j.get("lat_ns", {}).get("percentile", {}) or {}
print("%.0f %.1f %.1f %.1f" % (j["iops"], j["bw_bytes"] / 1048576.0,
      p.get("50.000000", 0) / 1000.0, p.get("99.000000", 0) / 1000.0))
PY
}

declare -A res
for tgt in shale qemu qsd; do
    start $tgt
    fio --name=fill --ioengine=nbd --uri="$URI" --rw=write --bs=1M --iodepth=8 --size="$SIZE" --output=/dev/null
    while read -r name rw bs qd; do
        f=$DIR/$tgt-$name.json
        fio --name="$name" --ioengine=nbd --uri="$URI" --rw="$rw" --bs="$bs" --iodepth="$qd" --size="$SIZE" \
            --time_based --runtime="$RUNTIME" --ramp_time=2 --randrepeat=0 --norandommap \
            --lat_percentiles=1 --output-format=json --output="$f"
        res[$tgt,$name]=$(metric "$f" "${rw#rand}")
        echo "$tgt $name: ${res[$tgt,$name]}" >&2
    done <<< "$JOBS"
    stop "$PID"
done

{
    echo "| job | Shale NBD | qemu-nbd (qcow2) | qemu-storage-daemon (rbd on Shale librbd) | Shale / qemu-nbd |"
    echo "|---|---|---|---|---|"
    while read -r name rw bs qd; do
        read -r si sb sp50 sp99 <<< "${res[shale,$name]}"
        read -r qi qb qp50 qp99 <<< "${res[qemu,$name]}"
        read -r di db dp50 dp99 <<< "${res[qsd,$name]}"
        case $name in
        *1m*) awk -v n="$name" -v s="$sb" -v q="$qb" -v d="$db" 'BEGIN {
                printf "| %s | %.0f MiB/s | %.0f MiB/s | %.0f MiB/s | %.2f |\n", n, s, q, d, (q ? s / q : 0) }' ;;
        *qd1) awk -v n="$name" -v s="$si" -v q="$qi" -v d="$di" -v a="$sp50" -v b="$sp99" -v c="$qp50" -v e="$qp99" -v f="$dp50" -v g="$dp99" 'BEGIN {
                printf "| %s | %d IOPS (p50 %.0f µs, p99 %.0f µs) | %d IOPS (p50 %.0f µs, p99 %.0f µs) | %d IOPS (p50 %.0f µs, p99 %.0f µs) | %.2f (p50 %.2f, p99 %.2f) |\n", n, s, a, b, q, c, e, d, f, g, (q ? s / q : 0), (c ? a / c : 0), (e ? b / e : 0) }' ;;
        *) awk -v n="$name" -v s="$si" -v q="$qi" -v d="$di" 'BEGIN {
                printf "| %s | %d IOPS | %d IOPS | %d IOPS | %.2f |\n", n, s, q, d, (q ? s / q : 0) }' ;;
        esac
    done <<< "$JOBS"
} > "$DIR/table.md"
cat "$DIR/table.md"
if [ -n "$out" ]; then
    {
        echo "# fio nbd engine: Shale's NBD server vs qemu-nbd vs qemu-storage-daemon on Shale's librbd"
        echo
        echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') by bench/nbd.sh (RUNTIME=${RUNTIME}s per job after 2 s ramp, ${SIZE} image/file,"
        echo "each target filled first). Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM,"
        echo "$(uname -r), filesystem of $DIR: $(df -T "$DIR" | awk 'NR==2 {print $2}'); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
        echo
        cat "$DIR/table.md"
    } > "$out"
    echo "wrote $out"
fi
rm -rf "$DIR"
