# Shared by the NBD client tests: a scratch store, a server to start and stop, checks.
# Sourced by each t_*.sh with SHALE (the binary) and SCRATCH (a private directory) set.
set -u
export SHALE_STORE="file://$SCRATCH/store"
export TESTDIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export HOME=$SCRATCH/home XDG_DATA_HOME=$SCRATCH/xdg SHALE_CONF=$SCRATCH/none.toml
mkdir -p "$HOME" "$XDG_DATA_HOME"
: > "$SHALE_CONF"
SERVER_PIDS=()

fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "skip: $*"; exit 77; }
need() { for t in "$@"; do command -v "$t" >/dev/null || skip "$t not installed"; done; }

# start_server NAME ARGS... : runs `shale nbd serve ARGS` in the background, waits until it
# prints where it listens; sets SRV_PID and SRV_ADDR (the socket path or host:port) and
# METRICS_URL (if --metrics was given).
start_server() {
    local name=$1; shift
    local out=$SCRATCH/$name.out
    "$SHALE" nbd serve "$@" > "$out" 2> "$SCRATCH/$name.err" &
    SRV_PID=$!
    SERVER_PIDS+=("$SRV_PID")
    for _ in $(seq 200); do
        grep -q '^listening on ' "$out" 2>/dev/null && break
        kill -0 "$SRV_PID" 2>/dev/null || { cat "$SCRATCH/$name.err"; fail "server $name exited at start"; }
        sleep 0.05
    done
    SRV_ADDR=$(sed -n 's/^listening on //p' "$out" | head -1)
    METRICS_URL=$(sed -n 's/^metrics on //p' "$out" | head -1)
    [ -n "$SRV_ADDR" ] || fail "server $name did not say where it listens"
}

# stop_server PID : SIGTERM, wait; returns the exit status.
stop_server() {
    local pid=$1 rc
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; echo "server $pid ignored SIGTERM"; return 99; fi
    wait "$pid"; rc=$?
    return $rc
}

cleanup_servers() {
    for p in "${SERVER_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
    return 0
}
trap cleanup_servers EXIT

# A file of N MiB of random bytes.
randfile() { head -c "$(( $2 * 1048576 ))" /dev/urandom > "$1"; }
