//! Plain-text answers (no `format` in the command), laid out as Ceph 16.2's monitor prints them
//! (`tests/fixtures/ceph/*.txt` are real examples).

use super::commands::{now_secs, stamp};
use super::facts::{Facts, Pool, MON_NAME};
use serde_json::Value;

/// A JSON scalar as text (strings without quotes).
pub(crate) fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Ceph's byte sizes: `0 B`, `52 KiB`, `1.5 GiB`, `16 GiB` (at most three digits, units of
/// 1024; exact multiples print without decimals).
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut i = 0;
    while i + 1 < UNITS.len() && n >> (10 * (i + 1)) > 0 {
        i += 1;
    }
    if i == 0 || n.is_multiple_of(1u64 << (10 * i)) {
        return format!("{} {}", n >> (10 * i), UNITS[i]);
    }
    let x = n as f64 / (1u64 << (10 * i)) as f64;
    for precision in [2usize, 1] {
        let s = format!("{x:.precision$}");
        if s.len() <= 3 {
            return format!("{s} {}", UNITS[i]);
        }
    }
    format!("{x:.0} {}", UNITS[i])
}

/// Ceph's age layout: `42s`, `3m`, `2h`, `5d`.
fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A table as Ceph's TextTable draws it: first column left-aligned, the others right-aligned,
/// two spaces between columns.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c == 0 {
                    format!("{s:<w$}", w = width[c])
                } else {
                    format!("{s:>w$}", w = width[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A percentage as Ceph's `df` prints it: two decimals, `0` below 0.01.
fn percent(x: u64, of: u64) -> String {
    let pct = if of == 0 {
        0.0
    } else {
        x as f64 * 100.0 / of as f64
    };
    if pct < 0.01 {
        "0".into()
    } else {
        format!("{pct:.2}")
    }
}

pub(crate) fn health(facts: &Facts, detail: bool) -> String {
    let mut out = facts.status().to_string();
    if !facts.checks.is_empty() {
        let summaries: Vec<&str> = facts.checks.iter().map(|c| c.summary.as_str()).collect();
        out.push(' ');
        out.push_str(&summaries.join("; "));
    }
    out.push('\n');
    if detail {
        for c in &facts.checks {
            let tag = if c.severity == "HEALTH_ERR" {
                "ERR"
            } else {
                "WRN"
            };
            out.push_str(&format!("[{tag}] {}: {}\n", c.code, c.summary));
            for d in &c.detail {
                out.push_str(&format!("    {d}\n"));
            }
        }
    }
    out
}

pub(crate) fn status(facts: &Facts) -> String {
    let since = super::started_secs();
    let up_for = age(now_secs().saturating_sub(since));
    let mut out = String::from("  cluster:\n");
    out.push_str(&format!("    id:     {}\n", facts.fsid));
    out.push_str(&format!("    health: {}\n", facts.status()));
    for c in &facts.checks {
        out.push_str(&format!("            {}\n", c.summary));
    }
    out.push_str(" \n  services:\n");
    out.push_str(&format!(
        "    mon: 1 daemons, quorum {MON_NAME} (age {up_for})\n"
    ));
    out.push_str(&format!("    mgr: {MON_NAME}(active, since {up_for})\n"));
    let up = u32::from(facts.up);
    out.push_str(&format!(
        "    osd: 1 osds: {up} up, 1 in (the store: {})\n",
        facts.url
    ));
    out.push_str(" \n  data:\n");
    let pools = facts.pools.len();
    out.push_str(&format!("    pools:   {pools} pools, {pools} pgs\n"));
    out.push_str(&format!(
        "    objects: {} objects, {}\n",
        facts.objects(),
        bytes(facts.stored())
    ));
    out.push_str(&format!(
        "    usage:   {} used, {} / {} avail\n",
        bytes(facts.stored()),
        bytes(facts.avail),
        bytes(facts.total)
    ));
    if pools > 0 {
        out.push_str(&format!("    pgs:     {pools} active+clean\n"));
    } else {
        out.push_str("    pgs:     \n");
    }
    out.push_str(" \n");
    out
}

pub(crate) fn df(facts: &Facts, detail: bool) -> String {
    let (total, avail, used) = (facts.total, facts.avail, facts.stored());
    let raw = |class: &str| {
        vec![
            class.to_string(),
            bytes(total),
            bytes(avail),
            bytes(used),
            bytes(used),
            percent(used, total),
        ]
    };
    let mut out = String::from("--- RAW STORAGE ---\n");
    out.push_str(&table(&[
        ["CLASS", "SIZE", "AVAIL", "USED", "RAW USED", "%RAW USED"]
            .map(String::from)
            .to_vec(),
        raw("ssd"),
        raw("TOTAL"),
    ]));
    out.push_str(" \n--- POOLS ---\n");
    let mut head: Vec<&str> = vec!["POOL", "ID", "PGS", "STORED"];
    if detail {
        head.extend(["(DATA)", "(OMAP)"]);
    }
    head.push("OBJECTS");
    head.push("USED");
    if detail {
        head.extend(["(DATA)", "(OMAP)"]);
    }
    head.extend(["%USED", "MAX AVAIL"]);
    if detail {
        head.extend([
            "QUOTA OBJECTS",
            "QUOTA BYTES",
            "DIRTY",
            "USED COMPR",
            "UNDER COMPR",
        ]);
    }
    let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
    for p in &facts.pools {
        rows.push(pool_row(p, avail, detail));
    }
    out.push_str(&table(&rows));
    out
}

fn pool_row(p: &Pool, avail: u64, detail: bool) -> Vec<String> {
    let mut r = vec![p.name.clone(), p.id.to_string(), "1".into(), bytes(p.bytes)];
    if detail {
        r.extend([bytes(p.bytes), bytes(0)]);
    }
    r.push(p.objects.to_string());
    r.push(bytes(p.bytes));
    if detail {
        r.extend([bytes(p.bytes), bytes(0)]);
    }
    r.push(percent(p.bytes, p.bytes + avail));
    r.push(bytes(avail));
    if detail {
        r.extend(["N/A", "N/A", "N/A"].map(String::from));
        r.extend([bytes(0), bytes(0)]);
    }
    r
}

pub(crate) fn mon_dump(facts: &Facts) -> String {
    let t = stamp(super::started_secs(), 0);
    format!(
        "epoch 1\nfsid {}\nlast_changed {t}\ncreated {t}\nmin_mon_release 16 (pacific)\n\
         election_strategy: 1\n0: [any:0.0.0.0:0/0] mon.{MON_NAME}\n",
        facts.fsid
    )
}

/// One line of `osd pool ls detail` / `osd dump`.
fn pool_line(p: &Pool) -> String {
    format!(
        "pool {} '{}' replicated size 1 min_size 1 crush_rule 0 object_hash rjenkins pg_num 1 \
         pgp_num 1 autoscale_mode off last_change 1 flags hashpspool,selfmanaged_snaps \
         stripe_width 0 application rbd\n",
        p.id, p.name
    )
}

pub(crate) fn pool_ls(facts: &Facts, detail: bool) -> String {
    let mut out = String::new();
    for p in &facts.pools {
        if detail {
            out.push_str(&pool_line(p));
        } else {
            out.push_str(&p.name);
            out.push('\n');
        }
    }
    if detail && !facts.pools.is_empty() {
        out.push('\n');
    }
    out
}

pub(crate) fn osd_dump(facts: &Facts) -> String {
    let t = stamp(super::started_secs(), 0);
    let mut out = format!(
        "epoch 1\nfsid {}\ncreated {t}\nmodified {t}\n\
         flags sortbitwise,recovery_deletes,purged_snapdirs,pglog_hardlimit\ncrush_version 1\n\
         full_ratio 0.95\nbackfillfull_ratio 0.9\nnearfull_ratio 0.85\n\
         require_min_compat_client luminous\nmin_compat_client jewel\n\
         require_osd_release pacific\nstretch_mode_enabled false\n",
        facts.fsid
    );
    for p in &facts.pools {
        out.push_str(&pool_line(p));
    }
    out.push_str("\nmax_osd 1\n");
    let (state, word) = if facts.up {
        ("exists,up", "up  ")
    } else {
        ("exists", "down")
    };
    out.push_str(&format!(
        "osd.0 {word} in  weight 1 up_from 1 up_thru 1 down_at 0 last_clean_interval [0,0) \
         [any:0.0.0.0:0/0] [any:0.0.0.0:0/0] {state} {} (the store: {})\n",
        facts.fsid, facts.url
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_as_ceph() {
        // Values and renderings from Ceph 16.2 `ceph df` / `ceph -s` on ceph-mini.
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1000), "1000 B");
        assert_eq!(bytes(53_711), "52 KiB");
        assert_eq!(bytes(98_168), "96 KiB");
        assert_eq!(bytes(308_400_128), "294 MiB");
        assert_eq!(bytes(17_179_869_184), "16 GiB");
        assert_eq!(bytes(16_871_469_056), "16 GiB");
        assert_eq!(bytes(16_012_475_392), "15 GiB");
        assert_eq!(bytes(3 << 29), "1.5 GiB");
    }

    #[test]
    fn tables_align_like_ceph() {
        let t = table(&[
            vec!["POOL".into(), "ID".into()],
            vec!["device_health_metrics".into(), "1".into()],
        ]);
        assert_eq!(t, "POOL                   ID\ndevice_health_metrics   1\n");
    }

    #[test]
    fn ages() {
        assert_eq!(age(42), "42s");
        assert_eq!(age(180), "3m");
        assert_eq!(age(3 * 3600), "3h");
    }
}
