# Shared helpers of the FUSE tests (sourced by run-all.sh and bench/fuse.sh).
# Needs: $shale (the binary), $scratch (a scratch directory), SHALE_CONF pointing at a store.

# mount_pool DIR [ARGS...]: start `shale mount DIR ARGS` in the background; sets $mpid. Waits
# until DIR is a FUSE mount (10 s at most).
mount_pool() {
    local dir=$1; shift
    mkdir -p "$dir"
    "$shale" mount "$dir" "$@" >>"$scratch/mount.log" 2>&1 &
    mpid=$!
    echo "$mpid $dir" >>"$scratch/mounts"
    for _ in $(seq 100); do
        if grep -q " $dir fuse" /proc/mounts; then return 0; fi
        kill -0 "$mpid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# stop_mount PID DIR: SIGTERM the server and wait for it (60 s at most); sets $mrc to its exit
# status (124 when it did not exit). Not in a subshell: the server is this shell's child.
stop_mount() {
    local pid=$1 dir=$2
    kill -TERM "$pid" 2>/dev/null
    wait_mount "$pid"
    for _ in $(seq 50); do grep -q " $dir fuse" /proc/mounts || break; sleep 0.1; done
}

# wait_mount PID: wait for the server to exit (60 s at most); sets $mrc.
wait_mount() {
    local pid=$1
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then mrc=124; return; fi
    wait "$pid"; mrc=$?
}

# fuse_umount [-z] DIR: unmount with fusermount3 or fusermount (Debian fuse3 / fuse), else
# umount (as root).
fuse_umount() {
    local lazy=
    [ "$1" = -z ] && { lazy=1; shift; }
    if command -v fusermount3 >/dev/null; then fusermount3 -u ${lazy:+-z} "$1"
    elif command -v fusermount >/dev/null; then fusermount -u ${lazy:+-z} "$1"
    else umount ${lazy:+-l} "$1"
    fi
}

# Unmount and stop everything still mounted (EXIT trap).
cleanup_mounts() {
    [ -f "$scratch/mounts" ] || return 0
    while read -r pid dir; do
        kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
        grep -q " $dir fuse" /proc/mounts && fuse_umount -z "$dir" 2>/dev/null
    done <"$scratch/mounts"
    : >"$scratch/mounts"
}
