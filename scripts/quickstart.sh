#!/usr/bin/env bash
# Quick start: build Shale, stage its drop-in librbd/librados, and let a real Ceph client
# (qemu-img / qemu-io 7.2) use an image on the embedded local store:
#   1. qemu-img convert a random 64 MiB raw file into rbd:rbd/<image> (qemu creates the image),
#   2. qemu-io writes a pattern and reads it back verified,
#   3. `shale info`, then `shale export` the image and compare it with what was written.
# Installs qemu-utils 7.2 + qemu-block-extra (Debian bookworm) first if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
QEMU_V=1:7.2+dfsg-7+deb12u18+b3
if [ "$(dpkg-query -W -f '${Version}' qemu-block-extra 2>/dev/null)" != "$QEMU_V" ] ||
   [ "$(dpkg-query -W -f '${Version}' qemu-utils 2>/dev/null)" != "$QEMU_V" ]; then
  echo "installing qemu-utils/qemu-block-extra 7.2 (the rbd driver)..."
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades \
      qemu-utils=$QEMU_V qemu-block-extra=$QEMU_V >/dev/null
fi
TD=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -q -p shale-cli -p shale-rados -p shale-rbd
scripts/stage-libs.sh "$TD/release/shale-libs" release >/dev/null
SHALE=$TD/release/shale
IMG=quickstart-$$
W=$(mktemp -d /tmp/shale-quickstart.XXXXXX)
trap 'rm -rf "$W"; "$SHALE" rm "rbd/$IMG" 2>/dev/null || true' EXIT

head -c 64M /dev/urandom > "$W/disk.raw"
"$SHALE" run -- qemu-img convert -p -f raw -O raw "$W/disk.raw" "rbd:rbd/$IMG"
"$SHALE" run -- qemu-img info "rbd:rbd/$IMG"
"$SHALE" run -- qemu-io -f raw -c 'write -P 0x5a 1M 64k' -c 'read -P 0x5a 1M 64k' "rbd:rbd/$IMG"
"$SHALE" info "rbd/$IMG"
"$SHALE" export "rbd/$IMG" "$W/back.raw"
python3 -c "import sys; f=open(sys.argv[1],'r+b'); f.seek(1<<20); f.write(b'\x5a'*65536)" "$W/disk.raw"
cmp "$W/disk.raw" "$W/back.raw"
echo "quickstart OK: qemu-img and qemu-io used rbd:rbd/$IMG on $("$SHALE" config | sed -n 's/^store = //p')"
