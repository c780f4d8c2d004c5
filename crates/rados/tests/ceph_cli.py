#!/usr/bin/python3
"""Debian's `ceph` CLI (ceph-common 16.2, python3-rados) on Shale's librados.so.2.

Every command runs as `shale run -- ceph ...` on a fresh local-directory store with two pools
and an imported image, and its answer is checked against the store: pools, stored bytes and
objects, fsid (stable, the same through every path), health. When ceph-mini (real Ceph 16.2)
answers, the same commands' `--format json` answers and an unknown command's error are compared
with real Ceph's: same keys, same value types, same errno and status text. Without it that part
prints "skip"; without /usr/bin/ceph everything is skipped.

usage: ceph_cli.py SHALE_BIN SCRATCH_DIR        (run-all.sh stages the libraries first)
Prints "ok NAME" / "FAIL NAME" / "skip NAME" lines; exits nonzero if something failed.
"""
import json
import os
import subprocess
import sys

CEPH = "/usr/bin/ceph"
MINI_CONF = os.path.join(os.environ.get("CEPHMINI_DIR", "/tmp/cephmini"), "ceph.conf")
failed = 0


def ok(name):
    print("ok " + name)


def bad(name, detail=""):
    global failed
    failed += 1
    print("FAIL " + name)
    for line in str(detail).splitlines()[-20:]:
        print("     " + line)


def check(name, cond, detail=""):
    if cond:
        ok(name)
    else:
        bad(name, detail)


def run(cmd, env=None, timeout=120):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


# Objects whose keys are data (pool names, device classes, versions, check codes): only the
# shapes of their values are compared. Mirrors the comparison of crates/rados/src/mon/commands.rs.
MAPS = {"stats_by_class", "application_metadata", "checks", "blocklist",
        "erasure_code_profiles", "mon", "mgr", "osd", "mds", "overall", "options", "services"}


def kind(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    return type(v).__name__


# Keys real Ceph prints only while something happens (client I/O, recovery, degraded or
# misplaced objects): a live cluster may show them, an idle store never does.
ACTIVITY_ONLY = {
    "read_bytes_sec", "write_bytes_sec", "read_op_per_sec", "write_op_per_sec",
    "recovering_objects_per_sec", "recovering_bytes_per_sec", "recovering_keys_per_sec",
    "num_objects_recovered", "num_bytes_recovered", "num_keys_recovered",
    "degraded_objects", "degraded_total", "degraded_ratio", "misplaced_objects",
    "misplaced_total", "misplaced_ratio", "unfound_objects", "unfound_total", "unfound_ratio",
    "inactive_pgs_ratio", "unknown_pgs_ratio", "flush_bytes_sec", "evict_bytes_sec",
    "promote_op_per_sec",
}


def compare(path, ours, theirs, out, top_map=False):
    last = path.rsplit(".", 1)[-1]
    if isinstance(ours, dict) and isinstance(theirs, dict):
        if last in MAPS or top_map:
            if theirs:
                t = next(iter(theirs.values()))
                for k, v in ours.items():
                    compare("%s.%s" % (path, k), v, t, out)
            return
        for k in theirs:
            if k not in ours and k not in ACTIVITY_ONLY:
                out.append("%s.%s: missing" % (path, k))
        for k in ours:
            if k not in theirs:
                out.append("%s.%s: not in Ceph's answer" % (path, k))
            else:
                compare("%s.%s" % (path, k), ours[k], theirs[k], out)
    elif isinstance(ours, list) and isinstance(theirs, list):
        if theirs:
            for i, v in enumerate(ours):
                compare("%s[%d]" % (path, i), v, theirs[0], out)
    elif kind(ours) != kind(theirs):
        out.append("%s: %s where Ceph has %s" % (path, kind(ours), kind(theirs)))


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    shale, scratch = sys.argv[1], sys.argv[2]
    if not os.path.exists(CEPH):
        print("skip %s not installed (Debian package ceph-common)" % CEPH)
        return 0
    os.makedirs(scratch, exist_ok=True)
    store_dir = os.path.join(scratch, "store")
    url = "file://" + store_dir
    env = dict(os.environ, SHALE_STORE=url)
    env.pop("CEPH_CONF", None)
    env.pop("CEPH_ARGS", None)

    def shale_cmd(*args):
        return run([shale] + list(args), env=env)

    def ceph(*args, e=None):
        return run([shale, "run", "--", CEPH] + list(args), env=e or env)

    # ---- a store with two pools and some data
    for a in (("pool", "create", "rbd"), ("pool", "create", "vms")):
        rc, out, err = shale_cmd(*a)
        if rc and "already exists" not in err:
            bad("setup: shale " + " ".join(a), out + err)
            return 1
    data = os.path.join(scratch, "data.raw")
    with open(data, "wb") as f:
        f.write(os.urandom(3 << 20))
    rc, out, err = shale_cmd("import", data, "rbd/disk")
    if rc:
        bad("setup: shale import", out + err)
        return 1

    def store_usage(pool):
        n = size = 0
        for root, _, files in os.walk(os.path.join(store_dir, pool)):
            for name in files:
                n += 1
                size += os.path.getsize(os.path.join(root, name))
        return n, size

    # ---- the commands of issue 9, end to end through the CLI
    rc, fsid_text, err = ceph("fsid")
    fsid = fsid_text.strip()
    check("ceph fsid", rc == 0 and len(fsid) == 36 and fsid.count("-") == 4, fsid_text + err)
    rc, out, err = ceph("fsid")
    check("ceph fsid is stable across runs", rc == 0 and out.strip() == fsid, out + err)
    rc, out, err = ceph("--format", "json", "fsid")
    check("ceph --format json fsid", rc == 0 and json.loads(out)["fsid"] == fsid, out + err)
    rc, out, err = run([shale, "run", "--", "/usr/bin/python3", "-c",
                        "import rados\nwith rados.Rados(conffile='') as c: print(c.get_fsid())"],
                       env=env)
    check("fsid: python3-rados get_fsid agrees", rc == 0 and out.strip() == fsid, out + err)

    rc, out, err = ceph("df")
    check("ceph df (plain)", rc == 0 and "--- RAW STORAGE ---" in out and "--- POOLS ---" in out
          and "\nrbd " in out and "\nvms " in out, out + err)

    rc, out, err = ceph("--format", "json", "df")
    try:
        df = json.loads(out)
        pools = {p["name"]: p for p in df["pools"]}
        n, size = store_usage("rbd")
        good = (rc == 0 and sorted(pools) == ["rbd", "vms"]
                and pools["rbd"]["stats"]["stored"] == size and size > 3 << 20
                and pools["rbd"]["stats"]["objects"] == n
                and pools["vms"]["stats"]["stored"] == 0
                and df["stats"]["total_bytes"] >= df["stats"]["total_avail_bytes"] > 0)
        check("ceph --format json df: pools, stored bytes and objects from the store", good,
              json.dumps(df, indent=1) + "\nstore: %d objects, %d bytes" % (n, size))
    except (ValueError, KeyError) as e:
        bad("ceph --format json df", "%r\n%s%s" % (e, out, err))

    rc, out, err = ceph("-s")
    check("ceph -s", rc == 0 and ("id:     " + fsid) in out and "health: HEALTH_OK" in out
          and "pools:   2 pools" in out, out + err)
    rc, out, err = ceph("--format", "json", "status")
    try:
        st = json.loads(out)
        check("ceph --format json status", rc == 0 and st["fsid"] == fsid
              and st["health"]["status"] == "HEALTH_OK" and st["pgmap"]["num_pools"] == 2,
              out + err)
    except (ValueError, KeyError) as e:
        bad("ceph --format json status", "%r\n%s%s" % (e, out, err))
    rc, out, err = ceph("health")
    check("ceph health", rc == 0 and out == "HEALTH_OK\n", out + err)
    rc, out, err = ceph("health", "detail")
    check("ceph health detail", rc == 0 and out.startswith("HEALTH_OK"), out + err)
    rc, out, err = ceph("mon", "dump")
    check("ceph mon dump", rc == 0 and ("fsid " + fsid) in out and "mon.shale" in out
          and "dumped monmap epoch 1" in err, out + err)
    rc, out, err = ceph("osd", "dump")
    check("ceph osd dump", rc == 0 and "pool 1 'rbd'" in out and "pool 2 'vms'" in out
          and "osd.0 up" in out, out + err)
    rc, out, err = ceph("osd", "pool", "ls")
    check("ceph osd pool ls", rc == 0 and out == "rbd\nvms\n", out + err)
    rc, out, err = ceph("osd", "pool", "ls", "detail")
    check("ceph osd pool ls detail", rc == 0 and "'rbd' replicated size 1" in out, out + err)
    rc, out, err = ceph("osd", "pool", "get", "rbd", "size")
    check("ceph osd pool get rbd size", rc == 0 and out == "size: 1\n", out + err)
    rc, out, err = ceph("osd", "pool", "get", "nope", "size")
    check("ceph osd pool get on a missing pool: ENOENT", rc == 2
          and "unrecognized pool 'nope'" in err, out + err)
    rc, out, err = ceph("osd", "pool", "application", "enable", "rbd", "rbd")
    check("ceph osd pool application enable rbd rbd", rc == 0
          and "enabled application 'rbd' on pool 'rbd'" in err, out + err)
    rc, out, err = ceph("osd", "pool", "application", "enable", "vms", "rgw")
    check("ceph osd pool application enable vms rgw: EPERM", rc == 1 and "Are you SURE?" in err,
          out + err)
    rc, out, err = ceph("--format", "json", "osd", "pool", "application", "get", "vms")
    check("ceph osd pool application get vms", rc == 0 and json.loads(out or "null") == {"rbd": {}},
          out + err)
    rc, out, err = ceph("versions")
    check("ceph versions", rc == 0 and "ceph version 16.2" in out, out + err)
    rc, out, err = ceph("no-such-command")
    check("ceph no-such-command: EINVAL from the CLI's validation", rc == 22
          and "invalid command" in err, out + err)

    # ---- configuration from the command line and CEPH_ARGS (rados_conf_parse_argv_remainder)
    bare = dict(env)
    bare.pop("SHALE_STORE")
    rc, out, err = ceph("--shale-store", url, "fsid", e=bare)
    check("ceph --shale-store URL fsid (conf_parse_argv)", rc == 0 and out.strip() == fsid,
          out + err)
    rc, out, err = ceph("fsid", e=dict(bare, CEPH_ARGS="--shale_store=" + url))
    check("CEPH_ARGS=--shale_store=URL ceph fsid", rc == 0 and out.strip() == fsid, out + err)
    conf = os.path.join(scratch, "shale-ceph.conf")
    with open(conf, "w") as f:
        f.write("[global]\nshale_store = %s\n" % url)
    rc, out, err = ceph("-c", conf, "--id", "foo", "fsid", e=bare)
    check("ceph -c CONF --id foo fsid (store from the conf file)", rc == 0 and out.strip() == fsid,
          out + err)
    rc, out, err = ceph("-c", conf + ".missing", "fsid", e=bare)
    check("ceph -c MISSING: conf_read_file ENOENT as librados", rc == 1
          and "error calling conf_read_file" in err, out + err)
    rc, out, err = ceph("--rbd-cache=maybe", "fsid")
    check("ceph --rbd-cache=maybe: a bad option is refused", rc != 0
          and "parse error setting 'rbd_cache' to 'maybe'" in err, out + err)

    # ---- errors through librados directly (what Ceph 16.2's monitor answers)
    probe = ("import json, rados\n"
             "with rados.Rados(conffile='') as c:\n"
             "    r = c.mon_command(json.dumps({'prefix': 'no such command'}), b'')\n"
             "    m = c.mgr_command(json.dumps({'prefix': 'nosuch'}), b'')\n"
             "    print(json.dumps([r[0], r[1].decode(), r[2], m[0], m[1].decode(), m[2]]))\n")
    rc, out, err = run([shale, "run", "--", "/usr/bin/python3", "-c", probe], env=env)
    shale_unknown = json.loads(out) if rc == 0 and out else None
    check("unknown command: -EINVAL 'command not known' (mgr: 'No handler found')",
          shale_unknown == [-22, "", "command not known", -22, "", "No handler found for 'nosuch'"],
          out + err)
    rc, out, err = ceph("tell", "mon.shale", "health")
    check("ceph tell mon.shale health (mon_command_target)", rc == 0 and out == "HEALTH_OK\n",
          out + err)
    rc, out, err = ceph("tell", "mon.nope", "health")
    check("ceph tell mon.nope health: no such monitor", rc == 2, out + err)

    # ---- health reports a store that goes away under a connected client
    gone_dir = os.path.join(scratch, "gone")
    gone = ("import json, os, rados, sys\n"
            "d = sys.argv[1]\n"
            "with rados.Rados(conffile='') as c:\n"
            "    before = c.mon_command(json.dumps({'prefix': 'health'}), b'')\n"
            "    os.rename(d, d + '.moved')\n"
            "    h = c.mon_command(json.dumps({'prefix': 'health', 'format': 'json'}), b'')\n"
            "    df = c.mon_command(json.dumps({'prefix': 'df'}), b'')\n"
            "    fsid = c.mon_command(json.dumps({'prefix': 'fsid'}), b'')\n"
            "    os.rename(d + '.moved', d)\n"
            "    after = c.mon_command(json.dumps({'prefix': 'health'}), b'')\n"
            "    print(json.dumps([before[1].decode(), json.loads(h[1]), df[0], df[2],\n"
            "                      fsid[0], after[1].decode()]))\n")
    genv = dict(env, SHALE_STORE="file://" + gone_dir)
    run([shale, "pool", "create", "x"], env=genv)
    rc, out, err = run([shale, "run", "--", "/usr/bin/python3", "-c", gone, gone_dir], env=genv)
    try:
        before, h, df_rc, df_outs, fsid_rc, after = json.loads(out)
        check("health: HEALTH_ERR STORE_UNREACHABLE while the store is gone, OK again after",
              before == "HEALTH_OK\n" and h["status"] == "HEALTH_ERR"
              and "STORE_UNREACHABLE" in h["checks"] and after == "HEALTH_OK\n", out + err)
        check("df fails with the store's error while it is gone; fsid still answers",
              df_rc < 0 and "unreachable" in df_outs and fsid_rc == 0, out + err)
    except ValueError as e:
        bad("health with the store gone", "%r\n%s%s" % (e, out, err))

    # ---- live comparison with real Ceph 16.2 (ceph-mini)
    real = dict(os.environ, CEPH_CONF=MINI_CONF)
    for k in ("LD_LIBRARY_PATH", "SHALE_STORE", "CEPH_ARGS"):
        real.pop(k, None)
    alive = False
    if os.path.exists(MINI_CONF):
        try:
            alive = run([CEPH, "--connect-timeout", "5", "fsid"], env=real, timeout=15)[0] == 0
        except subprocess.TimeoutExpired:
            alive = False
    if not alive:
        print("skip live comparison with real Ceph (ceph-mini not running)")
        return 1 if failed else 0
    rc, out, err = run([CEPH, "osd", "pool", "ls"], env=real)
    real_pool = "rbd" if "rbd" in out.split() else (out.split() or ["rbd"])[0]
    for args in (["df"], ["df", "detail"], ["status"], ["health"], ["health", "detail"],
                 ["mon", "dump"], ["osd", "dump"], ["osd", "pool", "ls"],
                 ["osd", "pool", "ls", "detail"], ["osd", "pool", "get", "POOL", "size"],
                 ["osd", "pool", "get", "POOL", "all"], ["fsid"], ["versions"],
                 ["osd", "pool", "application", "get", "POOL"]):
        name = " ".join(args).replace("POOL", "<pool>")
        r_rc, r_out, r_err = run([CEPH, "--format", "json"]
                                 + [real_pool if a == "POOL" else a for a in args], env=real)
        s_rc, s_out, s_err = ceph("--format", "json", *[("rbd" if a == "POOL" else a) for a in args])
        if r_rc or s_rc:
            bad("live: ceph %s (real rc %d, shale rc %d)" % (name, r_rc, s_rc), r_err + s_err)
            continue
        diffs = []
        compare(name.replace(" ", "_"), json.loads(s_out), json.loads(r_out), diffs,
                top_map=args[:4] == ["osd", "pool", "application", "get"])
        check("live: ceph --format json %s has real Ceph's keys and types" % name, not diffs,
              "\n".join(diffs))
    rc, out, err = run(["/usr/bin/python3", "-c", probe], env=real)
    check("live: unknown command answers as real Ceph",
          rc == 0 and json.loads(out) == shale_unknown, out + err)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
