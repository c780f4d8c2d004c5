#!/usr/bin/env python3
"""Checks run on a mounted Shale pool (see run-all.sh). Each subcommand prints what it found and
exits 0 when everything matched, 1 otherwise.

  seek FILE            SEEK_DATA / SEEK_HOLE and st_blocks against the writes that made the map
  falloc FILE          fallocate punch-hole / zero-range read back, allocation, refused modes
  bad MOUNT IMG SNAP   bad requests get the right errno and change nothing
  pattern write|verify FILE OFF LEN SEED
  fsync-writer FILE LOG   write 64 KiB blocks with fsync, logging each fsynced one, until killed
  fsync-verify FILE LOG   every logged block is on the disk
"""
import errno
import hashlib
import os
import random
import subprocess
import sys

SECTOR = 512
failures = []


def check(what, got, want):
    if got == want:
        print(f"ok   {what}")
    else:
        print(f"FAIL {what}: got {got!r}, want {want!r}")
        failures.append(what)


def pattern(seed, n):
    return random.Random(seed).randbytes(n)


def lseek(fd, off, whence):
    try:
        return os.lseek(fd, off, whence)
    except OSError as e:
        return "ENXIO" if e.errno == errno.ENXIO else f"errno {e.errno}"


def model_seek(written, size, off, whence):
    """written: set of allocated sectors."""
    if off >= size:
        return "ENXIO"
    b = off
    if whence == os.SEEK_DATA:
        while b < size:
            if b // SECTOR in written:
                return b
            b = (b // SECTOR + 1) * SECTOR
        return "ENXIO"
    while b < size:
        if b // SECTOR not in written:
            return b
        b = (b // SECTOR + 1) * SECTOR
    return size


def cmd_seek(path):
    size = os.stat(path).st_size
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    check("fresh image: st_blocks", os.fstat(fd).st_blocks, 0)
    check("fresh image: SEEK_DATA 0", lseek(fd, 0, os.SEEK_DATA), "ENXIO")
    check("fresh image: SEEK_HOLE 0", lseek(fd, 0, os.SEEK_HOLE), 0)
    os.close(fd)
    writes = [(0, 4096), (65536, 8192), (1 << 20, 4096), (3 << 20, 512), (size - 4096, 4096)]
    fd = os.open(path, os.O_RDWR)
    written = set()
    for i, (off, n) in enumerate(writes):
        os.pwrite(fd, pattern(i + 1, n), off)
        written.update(range(off // SECTOR, (off + n) // SECTOR))
    os.fsync(fd)
    check("st_blocks after writes", os.fstat(fd).st_blocks, len(written))
    probes = sorted({0, 1, 4095, 4096, 5000, 65535, 65536, 70000, 73727, 73728, (1 << 20) - 1,
                     1 << 20, (1 << 20) + 4096, 3 << 20, (3 << 20) + 511, (3 << 20) + 512,
                     size - 4097, size - 4096, size - 1, size, size + 4096})
    for off in probes:
        for whence, name in ((os.SEEK_DATA, "SEEK_DATA"), (os.SEEK_HOLE, "SEEK_HOLE")):
            check(f"{name} {off}", lseek(fd, off, whence), model_seek(written, size, off, whence))
    # Walking data runs with SEEK_DATA/SEEK_HOLE gives back exactly the writes.
    runs, off = [], 0
    while True:
        d = lseek(fd, off, os.SEEK_DATA)
        if d == "ENXIO":
            break
        h = lseek(fd, d, os.SEEK_HOLE)
        runs.append((d, h - d))
        off = h
    want = [(0, 4096), (65536, 8192), (1 << 20, 4096), (3 << 20, 512), (size - 4096, 4096)]
    check("data runs walked with lseek", runs, want)
    os.close(fd)


def cmd_falloc(path):
    size = os.stat(path).st_size
    mib = 1 << 20
    data = bytearray(pattern(7, size))
    fd = os.open(path, os.O_RDWR)
    for off in range(0, size, mib):
        os.pwrite(fd, bytes(data[off:off + mib]), off)
    os.fsync(fd)
    full = os.fstat(fd).st_blocks
    check("fully written: st_blocks", full, size // SECTOR)

    def run(*args):
        r = subprocess.run(["fallocate", *args, path], capture_output=True, text=True)
        return r.returncode, r.stderr.strip()

    # Punch [1 MiB, 2 MiB): reads zeros, a hole there, blocks freed.
    check("punch 1M+1M", run("-p", "-o", str(mib), "-l", str(mib))[0], 0)
    data[mib:2 * mib] = bytes(mib)
    check("punched range reads zeros", os.pread(fd, mib, mib) == bytes(mib), True)
    check("punch: st_blocks", os.fstat(fd).st_blocks, full - mib // SECTOR)
    check("punch: SEEK_HOLE 0", lseek(fd, 0, os.SEEK_HOLE), mib)
    check("punch: SEEK_DATA 1M", lseek(fd, mib, os.SEEK_DATA), 2 * mib)
    # Zero range, unaligned: exactly those bytes become zero, the neighbours stay.
    check("zero 3M+100, 5000 bytes", run("-z", "-o", str(3 * mib + 100), "-l", "5000")[0], 0)
    data[3 * mib + 100:3 * mib + 5100] = bytes(5000)
    check("zero range reads back", os.pread(fd, 8192, 3 * mib) == bytes(data[3 * mib:3 * mib + 8192]), True)
    # Zero range, aligned and large: reads zeros and is no longer allocated.
    check("zero 4M+2M", run("-z", "-o", str(4 * mib), "-l", str(2 * mib))[0], 0)
    data[4 * mib:6 * mib] = bytes(2 * mib)
    # Whole sectors inside a zeroed range are holes; the partial ones at its edges hold data.
    inner = (3 * mib + 5100) // SECTOR - -(-(3 * mib + 100) // SECTOR)
    check("zero: st_blocks", os.fstat(fd).st_blocks, full - 3 * mib // SECTOR - inner)
    # Punch with KEEP_SIZE across the end: clipped to the end; size unchanged.
    check("punch across the end", run("-p", "-o", str(size - 4096), "-l", str(mib))[0], 0)
    data[size - 4096:] = bytes(4096)
    check("size unchanged", os.fstat(fd).st_size, size)
    # Refused: plain allocation, collapse, insert, zero range that would grow the file.
    before = hashlib.sha256(read_all(fd, size)).hexdigest()
    for args, name in ((["-o", "0", "-l", "4096"], "mode 0 (allocate)"),
                       (["-c", "-o", "0", "-l", str(mib)], "collapse range"),
                       (["-i", "-o", "0", "-l", str(mib)], "insert range")):
        rc, err = run(*args)
        check(f"fallocate {name} refused", (rc != 0, "not supported" in err), (True, True))
    rc, err = run("-z", "-o", str(size - 4096), "-l", str(mib))
    check("zero range growing the file refused", (rc != 0, "No space" in err), (True, True))
    after = hashlib.sha256(read_all(fd, size)).hexdigest()
    check("refused requests changed nothing", after, before)
    check("whole file matches the model", read_all(fd, size) == bytes(data), True)
    os.close(fd)


def read_all(fd, size):
    out = bytearray()
    for off in range(0, size, 1 << 20):
        out += os.pread(fd, min(1 << 20, size - off), off)
    return bytes(out)


def expect_errno(what, want, f, *args):
    try:
        f(*args)
        got = "success"
    except OSError as e:
        got = errno.errorcode.get(e.errno, e.errno)
    check(what, got, want)


def cmd_bad(mount, img, snap):
    path = os.path.join(mount, img)
    spath = os.path.join(mount, f"{img}@{snap}")
    size = os.stat(path).st_size
    fd = os.open(path, os.O_RDWR)
    before = hashlib.sha256(read_all(fd, size)).hexdigest()
    sbefore = hashlib.sha256(open(spath, "rb").read()).hexdigest()
    listing = sorted(os.listdir(mount))
    expect_errno("open snapshot for writing", "EROFS", os.open, spath, os.O_WRONLY)
    expect_errno("open snapshot read-write", "EROFS", os.open, spath, os.O_RDWR)
    expect_errno("write past the end", "ENOSPC", os.pwrite, fd, b"x" * 4096, size)
    expect_errno("write across the end", "ENOSPC", os.pwrite, fd, b"x" * 8192, size - 4096)
    expect_errno("truncate smaller", "EPERM", os.ftruncate, fd, size // 2)
    expect_errno("truncate larger", "EPERM", os.ftruncate, fd, size * 2)
    expect_errno("create a file", "EPERM", os.open, os.path.join(mount, "new"), os.O_CREAT | os.O_WRONLY)
    expect_errno("unlink an image", "EPERM", os.unlink, path)
    expect_errno("rename an image", "EPERM", os.rename, path, os.path.join(mount, "other"))
    expect_errno("mkdir", "EPERM", os.mkdir, os.path.join(mount, "d"))
    expect_errno("symlink", "EPERM", os.symlink, "x", os.path.join(mount, "l"))
    expect_errno("chmod", "EPERM", os.chmod, path, 0o600)
    expect_errno("hidden name", "ENOENT", os.stat, os.path.join(mount, ".x"))
    expect_errno("missing snapshot", "ENOENT", os.stat, os.path.join(mount, f"{img}@nosuch"))
    expect_errno("missing image", "ENOENT", os.stat, os.path.join(mount, "nosuch"))
    check("image unchanged", hashlib.sha256(read_all(fd, size)).hexdigest(), before)
    check("snapshot unchanged", hashlib.sha256(open(spath, "rb").read()).hexdigest(), sbefore)
    check("listing unchanged", sorted(os.listdir(mount)), listing)
    check("snapshot mode is read-only", oct(os.stat(spath).st_mode & 0o777), "0o444")
    os.close(fd)


def cmd_pattern(mode, path, off, n, seed):
    off, n, seed = int(off), int(n), int(seed)
    want = pattern(seed, n)
    if mode == "write":
        fd = os.open(path, os.O_RDWR)
        os.pwrite(fd, want, off)
        os.fsync(fd)
        os.close(fd)
        return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as e:  # tmpfs has no O_DIRECT
        if e.errno != errno.EINVAL:
            raise
        fd = os.open(path, os.O_RDONLY)
    # O_DIRECT wants aligned buffers: mmap-backed.
    import mmap
    buf = mmap.mmap(-1, n)
    got = os.preadv(fd, [buf], off)
    os.close(fd)
    check(f"pattern {seed} at {off} in {os.path.basename(path)}", (got, bytes(buf) == want), (n, True))


BLOCK = 65536


def cmd_fsync_writer(path, log):
    size = os.stat(path).st_size
    fd = os.open(path, os.O_RDWR)
    lf = open(log, "a")
    i = 0
    while (i + 1) * BLOCK <= size:
        try:
            os.pwrite(fd, pattern(1000 + i, BLOCK), i * BLOCK)
            os.fsync(fd)
        except OSError as e:
            print(f"writer stopped at block {i}: {e}")
            return
        lf.write(f"{i}\n")
        lf.flush()
        os.fsync(lf.fileno())
        i += 1
    print(f"writer wrote all {i} blocks")


def cmd_fsync_verify(path, log):
    blocks = [int(x) for x in open(log).read().split()]
    fd = os.open(path, os.O_RDONLY)
    bad = [i for i in blocks if os.pread(fd, BLOCK, i * BLOCK) != pattern(1000 + i, BLOCK)]
    os.close(fd)
    check(f"{len(blocks)} fsynced blocks present", bad, [])
    if not blocks:
        failures.append("no block was fsynced")
        print("FAIL no block was fsynced before the stop")


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    {"seek": cmd_seek, "falloc": cmd_falloc, "bad": cmd_bad, "pattern": cmd_pattern,
     "fsync-writer": cmd_fsync_writer, "fsync-verify": cmd_fsync_verify}[cmd](*args)
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
