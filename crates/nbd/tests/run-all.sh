#!/bin/bash
# Runs every NBD client test (t_*.sh, t_*.py) against `shale nbd serve` with real clients
# (nbdinfo, nbdcopy, qemu-img, qemu-io, fio, QEMU, python raw sockets) and prints
# "N passed, M failed" (tests whose client is missing are skipped). Exit status 1 on a failure.
#
# usage: crates/nbd/tests/run-all.sh [PATTERN]
#   SHALE=path/to/shale (default: build it with cargo into $CARGO_TARGET_DIR or target/)
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
if [ -z "${SHALE:-}" ]; then
    (cd "$root" && cargo build -q -p shale-cli) || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
    SHALE=${CARGO_TARGET_DIR:-$root/target}/debug/shale
fi
export SHALE
base=$(mktemp -d /tmp/shale-nbd-tests.XXXXXX)
pass=0 failn=0 skipn=0 failed=()
for t in "$here"/t_*; do
    n=$(basename "$t")
    [ -n "${1:-}" ] && [[ "$n" != *$1* ]] && continue
    export SCRATCH=$base/${n%.*}
    mkdir -p "$SCRATCH"
    start=$(date +%s)
    case $t in
        *.py) out=$(timeout 600 python3 "$t" 2>&1) ;;
        *) out=$(timeout 600 bash "$t" 2>&1) ;;
    esac
    rc=$?
    secs=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); echo "ok   $n (${secs}s)"
    elif [ $rc -eq 77 ]; then
        skipn=$((skipn + 1)); echo "skip $n: $(echo "$out" | grep '^skip' | tail -1)"
    else
        failn=$((failn + 1)); failed+=("$n"); echo "FAIL $n (rc $rc, ${secs}s)"; echo "$out" | tail -40 | sed 's/^/    /'
    fi
    [ -n "${VERBOSE:-}" ] && echo "$out" | sed 's/^/    /'
    rm -rf "$SCRATCH"
done
rm -rf "$base"
[ ${#failed[@]} -gt 0 ] && echo "failed: ${failed[*]}"
echo "$pass passed, $failn failed, $skipn skipped"
[ $failn -eq 0 ]
