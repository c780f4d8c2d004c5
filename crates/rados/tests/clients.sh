#!/bin/sh
# Load tests of Shale's librados.so.2 / librbd.so.1 against real Ceph clients (Debian 12):
#  - the generated tables are current (scripts/gen-ffi.py --check);
#  - nm -D shows every rados_* / rbd_* symbol of Ceph 16.2.15's libraries, and the versioned
#    rados_ioctx_pool_stat@@LIBRADOS_14.2.0;
#  - python3-rados/-rbd import and report the versions; fio --version / --enghelp=rbd start
#    (BIND_NOW); qemu-img's rbd driver loads and the error comes from our library (on an empty
#    store in the scratch directory). End-to-end tests: run-all.sh.
# A client that is not installed is skipped. Ends with "N passed, N failed".
#
# usage: crates/rados/tests/clients.sh      (honours CARGO_TARGET_DIR; builds the debug libs)
set -u
root=$(cd "$(dirname "$0")/../../.." && pwd)
abi=$root/crates/rados/abi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
pass=0 fail=0 skip=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | sed 's/^/     /'; }
check() { # name, expected-substring, command...
    name=$1 want=$2; shift 2
    out=$("$@" 2>&1); rc=$?
    case $out in *"$want"*) ok "$name" ;; *) bad "$name (rc=$rc)" "$out" ;; esac
}
have() { command -v "$1" >/dev/null 2>&1 || { skip=$((skip + 1)); echo "skip $2 ($1 not installed)"; return 1; }; }

cd "$root" || exit 1
if command -v python3 >/dev/null 2>&1; then
    check "generated tables are current" "up to date" python3 scripts/gen-ffi.py --check
fi
cargo build -q -p shale-rados -p shale-rbd || { echo "0 passed, 1 failed"; exit 1; }
libs=$(mktemp -d)
trap 'rm -rf "$libs"' EXIT
scripts/stage-libs.sh "$libs" debug >/dev/null || { echo "0 passed, 1 failed"; exit 1; }

for pair in "librados.so.2 librados.so.2.exports.txt" "librbd.so.1 librbd.so.1.exports.txt"; do
    set -- $pair
    missing=$(cut -f1 "$abi/$2" | sort -u | comm -23 - "$(nm -D --defined-only "$libs/$1" \
        | awk '{sub(/@.*/, "", $3); print $3}' | sort -u > "$libs/defined"; echo "$libs/defined")")
    n=$(cut -f1 "$abi/$2" | sort -u | wc -l)
    if [ -z "$missing" ]; then ok "$1 exports all $n symbols"; else bad "$1 lacks symbols" "$missing"; fi
done
check "rados_ioctx_pool_stat@@LIBRADOS_14.2.0" "LIBRADOS_14.2.0 rados_ioctx_pool_stat" \
    objdump -T "$libs/librados.so.2"
check "librbd.so.1 NEEDED librados.so.2" "[librados.so.2]" readelf -d "$libs/librbd.so.1"

export LD_LIBRARY_PATH=$libs
if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import rbd' 2>/dev/null; then
    check "python3: import rados, rbd; versions" "(1, 16, 0) 3.0.0" /usr/bin/python3 -c \
        'import rados, rbd; print(rbd.RBD().version(), rados.Rados(conffile="/dev/null").version())'
    check "python3: our libraries are the ones loaded" "$libs/librbd.so.1" /usr/bin/python3 -c \
        "import rbd; print(open('/proc/self/maps').read())"
else
    skip=$((skip + 1)); echo "skip python3-rbd (not installed)"
fi
if have fio fio; then
    check "fio --version" "fio-" fio --version
    check "fio --enghelp=rbd" "rbdname" fio --enghelp=rbd
fi
if have qemu-img qemu-img; then
    check "qemu-img info rbd: reaches our library" "error reading header from foo: No such file" \
        env SHALE_STORE="file://$libs/store" qemu-img info rbd:rbd/foo
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
