#!/bin/bash
# Locations (issue 10) in one run, fio's rbd engine on Shale's librbd, durability = backend:
#
#   4k randwrite QD32 and 1M seq write QD8 with one location (home), with one extra async
#   location, with one extra sync location (protocol C: a flush waits for it) -> ratios;
#   resync of a SIZE image to a new location (`shale sync`) vs a plain copy of the same objects
#   (cp -r of its data directories);
#   async lag under a steady RATE write load (fio rate-limited; `shale location ls` sampled).
#
# The locations are local directories on the same filesystem (isolates Shale's replication cost
# from a network store's); LOCATION_URL=s3://... with SHALE_LOCATION_EXTRA_* set uses another.
#
# usage: bench/locations.sh [OUT.md]   env: RUNTIME=10 SIZE=1G RATE=50m DIR=/tmp/shale-loc-bench
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
RUNTIME=${RUNTIME:-10}
SIZE=${SIZE:-1G}
RATE=${RATE:-50m}
DIR=${DIR:-/tmp/shale-loc-bench}
out=${1:-}
command -v fio >/dev/null || { echo "fio is not installed" >&2; exit 1; }
(cd "$root" && cargo build -q --release -p shale-rados -p shale-rbd -p shale-cli)
"$root/scripts/stage-libs.sh" "" release >/dev/null
libs=$CARGO_TARGET_DIR/release/shale-libs
shale=$CARGO_TARGET_DIR/release/shale
rm -rf "$DIR"; mkdir -p "$DIR/h"
export HOME=$DIR/h SHALE_CONF=$DIR/shale.toml CEPH_CONF=$DIR/ceph.conf SHALE_DURABILITY=backend
printf 'store = "file://%s/home"\ncache_dir = "%s/cache"\n' "$DIR" "$DIR" > "$SHALE_CONF"
printf '[global]\nshale_store = file://%s/home\n' "$DIR" > "$CEPH_CONF"
EXTRA=${LOCATION_URL:-file://$DIR/extra}
"$shale" location create extra "$EXTRA" >/dev/null
bytes=$(numfmt --from=iec "$SIZE")

mkimg() { LD_LIBRARY_PATH=$libs /usr/bin/python3 -c "
import rados, rbd
with rados.Rados(conffile='$CEPH_CONF') as c, c.open_ioctx('rbd') as io:
    rbd.RBD().create(io, '$1', $bytes)"; }

fio_run() { # image rw bs qd out.json [extra fio args]
    local img=$1 rw=$2 bs=$3 qd=$4 f=$5; shift 5
    LD_LIBRARY_PATH=$libs fio --name="$img-$rw" --ioengine=rbd --clientname=admin --pool=rbd \
        --rbdname="$img" --size="$SIZE" --rw="$rw" --bs="$bs" --iodepth="$qd" --time_based \
        --runtime="$RUNTIME" --ramp_time=2 --randrepeat=0 --norandommap --output-format=json \
        --output="$f" "$@" >/dev/null
}
metric() { # json -> "IOPS MiB/s"
    python3 -c "
import json,sys
j=json.load(open('$1'))['jobs'][0]['write']
print('%.0f %.1f' % (j['iops'], j['bw_bytes']/1048576))"
}

declare -A res
for cfg in one async sync; do
    img=b-$cfg
    mkimg "$img"
    case $cfg in
        async) "$shale" location add "rbd/$img" extra --mode async 2>/dev/null ;;
        sync) "$shale" location add "rbd/$img" extra --mode sync 2>/dev/null ;;
    esac
    fio_run "$img" randwrite 4k 32 "$DIR/$cfg-rw4k.json"
    res[$cfg,rw4k]=$(metric "$DIR/$cfg-rw4k.json")
    fio_run "$img" write 1M 8 "$DIR/$cfg-w1m.json"
    res[$cfg,w1m]=$(metric "$DIR/$cfg-w1m.json")
done

# Resync of a filled image to a new location vs a plain copy of its objects.
mkimg fill
LD_LIBRARY_PATH=$libs fio --name=fill --ioengine=rbd --clientname=admin --pool=rbd \
    --rbdname=fill --size="$SIZE" --rw=write --bs=1M --iodepth=8 --output=/dev/null >/dev/null
id=$(cd "$DIR" && "$shale" info rbd/fill --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$shale" location add rbd/fill extra --mode async 2>/dev/null
sync
t0=$(date +%s.%N)
"$shale" sync rbd/fill --location extra >/dev/null 2>&1
t1=$(date +%s.%N)
data=$(du -sb "$DIR/home/rbd/images/$id/seg" | cut -f1)
rm -rf "$DIR/plain"; mkdir -p "$DIR/plain"
sync
t2=$(date +%s.%N)
cp -r "$DIR/home/rbd/images/$id/seg" "$DIR/home/rbd/images/$id/ckpt" "$DIR/plain/"
sync
t3=$(date +%s.%N)
resync=$(python3 -c "print('%.0f' % ($data / ($t1 - $t0) / 1048576))")
plain=$(python3 -c "print('%.0f' % ($data / ($t3 - $t2) / 1048576))")

# Async lag under a steady write load.
mkimg lag
"$shale" location add rbd/lag extra --mode async 2>/dev/null
LD_LIBRARY_PATH=$libs fio --name=lag --ioengine=rbd --clientname=admin --pool=rbd --rbdname=lag \
    --size="$SIZE" --rw=randwrite --bs=64k --iodepth=8 --rate="$RATE" --time_based \
    --runtime=$((RUNTIME * 2)) --output=/dev/null >/dev/null &
fpid=$!
lags=()
sleep 3
while kill -0 $fpid 2>/dev/null; do
    l=$("$shale" location ls rbd/lag --format json 2>/dev/null | python3 -c '
import json,sys
print([r for r in json.load(sys.stdin) if r["name"]=="extra"][0]["lag_seconds"])' 2>/dev/null || true)
    [ -n "$l" ] && lags+=("$l")
    sleep 1
done
wait $fpid || true
lagstat=$(printf '%s\n' "${lags[@]:-0}" | python3 -c '
import sys
v=[float(x) for x in sys.stdin if x.strip()]
print("mean %.1f s, max %.1f s over %d samples" % (sum(v)/len(v), max(v), len(v)) if v else "no samples")')

ratio() { python3 -c "a,b=float('$1'),float('$2'); print('%.2fx' % (a/b) if b else '-')"; }
{
echo "# Locations: replication cost, resync and async lag (bench/locations.sh)"
echo
echo "Run $(date -u +%Y-%m-%dT%H:%MZ): RUNTIME=${RUNTIME}s per job, image $SIZE, durability = backend,"
echo "extra location $EXTRA; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| job | home only | + async | + sync | async/one | sync/one |"
echo "|---|---|---|---|---|---|"
for j in rw4k w1m; do
    set -- ${res[one,$j]}; o_i=$1 o_b=$2
    set -- ${res[async,$j]}; a_i=$1 a_b=$2
    set -- ${res[sync,$j]}; s_i=$1 s_b=$2
    name=$([ $j = rw4k ] && echo "4k randwrite QD32" || echo "1M seq write QD8")
    echo "| $name | $o_i IOPS ($o_b MiB/s) | $a_i IOPS ($a_b MiB/s) | $s_i IOPS ($s_b MiB/s) | $(ratio "$a_i" "$o_i") | $(ratio "$s_i" "$o_i") |"
done
echo
echo "| resync of $SIZE to a new location | MiB/s |"
echo "|---|---|"
echo "| shale sync | $resync |"
echo "| cp -r of the same objects | $plain |"
echo "| ratio | $(ratio "$resync" "$plain") |"
echo
echo "Async lag under a steady $RATE/s write load: $lagstat."
} | tee ${out:+"$out"}
