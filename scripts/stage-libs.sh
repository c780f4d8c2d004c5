#!/bin/sh
# Stage Shale's drop-in Ceph client libraries into one directory:
#   OUTDIR/librados.so.2  <- libshale_rados.so     OUTDIR/librados.so -> librados.so.2
#   OUTDIR/librbd.so.1    <- libshale_rbd.so       OUTDIR/librbd.so   -> librbd.so.1
# Then run any Ceph client against them with LD_LIBRARY_PATH=OUTDIR, e.g.
#   LD_LIBRARY_PATH=OUTDIR qemu-img info rbd:rbd/foo
#
# usage: scripts/stage-libs.sh [OUTDIR] [PROFILE]     (PROFILE: debug (default) or release)
# OUTDIR defaults (also when given as "") to <target dir>/PROFILE/shale-libs, next to the
# `shale` binary, where `shale run -- CMD` looks for them.
# The libraries are taken from ${CARGO_TARGET_DIR:-<workspace>/target}/PROFILE; build them first:
#   cargo build -p shale-rados -p shale-rbd [--release]
set -eu
out=${1:-}
profile=${2:-debug}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
src=$target/$profile
[ -n "$out" ] || out=$src/shale-libs
for f in libshale_rados.so libshale_rbd.so; do
    [ -f "$src/$f" ] || { echo "$0: $src/$f not found (build first)" >&2; exit 1; }
done
mkdir -p "$out"
# install to a temporary name and rename: a running process keeps its mapped copy intact
for pair in "libshale_rados.so librados.so.2" "libshale_rbd.so librbd.so.1"; do
    set -- $pair
    install -m 0755 "$src/$1" "$out/.$2.tmp"
    mv -f "$out/.$2.tmp" "$out/$2"
done
ln -sf librados.so.2 "$out/librados.so"
ln -sf librbd.so.1 "$out/librbd.so"
echo "staged librados.so.2 and librbd.so.1 from $src in $out"
