#!/bin/bash
# fio through the rbd engine on Shale (our librbd.so.1 + librados.so.2, local file store) next to
# fio libaio direct on a raw file on the same filesystem: same jobs, one run each, one table.
#
#   job                      Shale rbd engine            raw file (libaio, direct=1)
#   4k randwrite QD32        IOPS                        IOPS
#   4k randread  QD32        IOPS                        IOPS
#   4k randwrite QD1         IOPS, p50 latency           IOPS, p50 latency
#
# Latency is fio's total `lat` (submission to completion), which is what the rbd engine
# reports meaningfully (its `clat` starts late). Ratio = Shale / raw file.
#
# usage: bench/fio-rbd.sh [OUT.md]      env: RUNTIME=15 SIZE=1G DIR=/tmp/shale-fio-bench
# Builds the release libraries (CARGO_TARGET_DIR honoured) and stages them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
RUNTIME=${RUNTIME:-15}
SIZE=${SIZE:-1G}
DIR=${DIR:-/tmp/shale-fio-bench}
out=${1:-}
command -v fio >/dev/null || { echo "fio is not installed" >&2; exit 1; }
(cd "$root" && cargo build -q --release -p shale-rados -p shale-rbd)
libs=$CARGO_TARGET_DIR/release/shale-libs
"$root/scripts/stage-libs.sh" "" release >/dev/null
rm -rf "$DIR"; mkdir -p "$DIR"
printf '[global]\nshale_store = file://%s/store\n' "$DIR" > "$DIR/ceph.conf"
export CEPH_CONF=$DIR/ceph.conf
raw=$DIR/raw.bin
# Create the image (through our librbd, with python3-rbd if present, else qemu-img).
if LD_LIBRARY_PATH=$libs /usr/bin/python3 -c 'import rbd' 2>/dev/null; then
    LD_LIBRARY_PATH=$libs /usr/bin/python3 -c "
import rados, rbd
with rados.Rados(conffile='$CEPH_CONF') as c, c.open_ioctx('rbd') as io:
    rbd.RBD().create(io, 'bench', $(numfmt --from=iec "$SIZE"))"
else
    LD_LIBRARY_PATH=$libs qemu-img create -f raw rbd:rbd/bench "$SIZE" >/dev/null
fi
fallocate -l "$SIZE" "$raw" 2>/dev/null || truncate -s "$SIZE" "$raw"

JOBS="randwrite-4k-qd32 randwrite 32
randread-4k-qd32 randread 32
randwrite-4k-qd1 randwrite 1"

run() { # target name rw depth -> json file
    local tgt=$1 name=$2 rw=$3 qd=$4 f=$DIR/$1-$2.json
    local common="--name=$name --rw=$rw --bs=4k --iodepth=$qd --time_based --runtime=$RUNTIME \
        --ramp_time=2 --randrepeat=0 --norandommap --lat_percentiles=1 --output-format=json --output=$f"
    if [ "$tgt" = shale ]; then
        LD_LIBRARY_PATH=$libs fio $common --ioengine=rbd --clientname=admin --pool=rbd \
            --rbdname=bench --size="$SIZE"
    else
        fio $common --ioengine=libaio --direct=1 --filename="$raw" --size="$SIZE"
    fi
    echo "$f"
}

# Fill both targets first so that reads hit written data (an unwritten image reads as zeros
# without touching the store, which would flatter the read numbers).
LD_LIBRARY_PATH=$libs fio --name=fill --ioengine=rbd --clientname=admin --pool=rbd --rbdname=bench \
    --rw=write --bs=1M --iodepth=8 --size="$SIZE" --output=/dev/null
fio --name=fill --ioengine=libaio --direct=1 --filename="$raw" --rw=write --bs=1M --iodepth=8 \
    --size="$SIZE" --output=/dev/null

metric() { # json rw -> "iops p50_us"
    /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0][sys.argv[2]]
lat = j.get("lat_ns", {}).get("percentile", {}) or {}
p50 = lat.get("50.000000")
if p50 is None:  # without --lat_percentiles fio has none on lat: fall back to the mean
    p50 = j["lat_ns"].get("mean", 0)
print("%.0f %.1f" % (j["iops"], p50 / 1000.0))
PY
}

rows=()
while read -r name rw qd; do
    kind=${rw#rand}
    s=$(metric "$(run shale "$name" "$rw" "$qd")" "$kind")
    r=$(metric "$(run file "$name" "$rw" "$qd")" "$kind")
    rows+=("$name $s $r")
done <<< "$JOBS"

{
    echo "| job | Shale rbd IOPS | raw file IOPS | IOPS ratio | Shale p50 lat (µs) | raw p50 lat (µs) | lat ratio |"
    echo "|---|---|---|---|---|---|---|"
    for row in "${rows[@]}"; do
        set -- $row
        awk -v n="$1" -v si="$2" -v sl="$3" -v ri="$4" -v rl="$5" 'BEGIN {
            printf "| %s | %d | %d | %.2f | %.1f | %.1f | %.1f |\n", n, si, ri, (ri ? si / ri : 0), sl, rl, (rl ? sl / rl : 0) }'
    done
} > "$DIR/table.md"
cat "$DIR/table.md"
if [ -n "$out" ]; then
    {
        echo "# fio: Shale rbd engine vs raw file (libaio, direct)"
        echo
        echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') by bench/fio-rbd.sh (RUNTIME=${RUNTIME}s per job, image/file ${SIZE}, bs 4k)."
        echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, $(uname -r);"
        echo "filesystem of $DIR: $(df -T "$DIR" | awk 'NR==2 {print $2}'). Shale uses a local file store in the same directory."
        echo "Latency is fio's total \`lat\` p50 (for the rbd engine \`clat\` is not meaningful)."
        echo
        cat "$DIR/table.md"
    } > "$out"
    echo "wrote $out"
fi
