#!/bin/sh
# Stage Shale's drop-in Ceph client libraries into one directory:
#   OUTDIR/librados.so.2  <- libshale_rados.so     OUTDIR/librados.so -> librados.so.2
#   OUTDIR/librbd.so.1    <- libshale_rbd.so       OUTDIR/librbd.so   -> librbd.so.1
# Then run any Ceph client against them with LD_LIBRARY_PATH=OUTDIR, e.g.
#   LD_LIBRARY_PATH=OUTDIR qemu-img info rbd:rbd/foo
#
# usage: scripts/stage-libs.sh OUTDIR [PROFILE]     (PROFILE: debug (default) or release)
# The libraries are taken from ${CARGO_TARGET_DIR:-<workspace>/target}/PROFILE; build them first:
#   cargo build -p shale-rados -p shale-rbd [--release]
set -eu
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR [debug|release]" >&2; exit 2; }
out=$1
profile=${2:-debug}
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
src=$target/$profile
for f in libshale_rados.so libshale_rbd.so; do
    [ -f "$src/$f" ] || { echo "$0: $src/$f not found (build first)" >&2; exit 1; }
done
mkdir -p "$out"
install -m 0755 "$src/libshale_rados.so" "$out/librados.so.2"
install -m 0755 "$src/libshale_rbd.so" "$out/librbd.so.1"
ln -sf librados.so.2 "$out/librados.so"
ln -sf librbd.so.1 "$out/librbd.so"
echo "staged librados.so.2 and librbd.so.1 from $src in $out"
