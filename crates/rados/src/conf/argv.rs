//! Command-line configuration: what `rados_conf_parse_argv(_remainder)` and `rados_conf_parse_env`
//! take out of an argument list, measured against Ceph 16.2.15's librados.
//!
//! ```text
//!   --name value, --name=value   any option librados knows (dashes read as underscores;
//!                                names are case-sensitive), and Shale's shale_* options
//!   --flag, --flag=B, --flag B   a boolean option; B (true/false or an integer) is taken
//!                                only when it parses as a boolean, else the flag means true
//!   --no-flag                    a boolean option set to false
//!   -m HOST, -m=HOST             mon_host          -k FILE   keyring
//!   -d, -f, --foreground         consumed (daemon switches, meaningless for a client)
//!   --setuser U, --setgroup G, --keyfile F    consumed with their value
//!   --                           ends parsing; it and everything after it remain
//! ```
//!
//! Everything else remains, in order: unknown options (and the word after them), positional
//! words, and the identity options `--id/-i`, `--name/-n`, `--cluster`, `-c/--conf`, `--user`,
//! which librados handles when the handle is created, not here (the real
//! `rados_conf_parse_argv_remainder` hands them back too). A value of the form `debug_x = N`
//! is stored as `N/N`, as Ceph does.
//!
//! Differences from librados, on purpose: an option missing its value is an error (librados
//! prints "Option --x requires an argument." and exits the process), and a bad value changes
//! nothing (librados keeps the options before it).

use super::options;
use std::collections::BTreeSet;
use std::sync::OnceLock;

const CEPH_BOOL_OPTIONS: &str = include_str!("../../abi/ceph-config-bool-options.txt");

/// What parsing an argument list produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// (option name, value) in argument order, for `Conf::set`.
    pub(crate) settings: Vec<(String, String)>,
    /// Indices of the arguments that remain, in order.
    pub(crate) remaining: Vec<usize>,
}

fn bool_names() -> &'static BTreeSet<&'static str> {
    static NAMES: OnceLock<BTreeSet<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        CEPH_BOOL_OPTIONS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    })
}

/// Ceph's `strict_strtob`: `true`/`false` in any case, or an integer (nonzero is true).
fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        s.parse::<i64>().ok().map(|n| n != 0)
    }
}

fn value_of(name: &str, value: &str) -> String {
    if name.starts_with("debug_") && !value.is_empty() && !value.contains('/') {
        format!("{value}/{value}")
    } else {
        value.to_string()
    }
}

/// Parse `args` (all of them: the caller drops `argv[0]` where librados does).
/// `Err` carries the message librados prints for the same mistake.
pub(crate) fn parse(args: &[&str]) -> Result<Parsed, String> {
    let mut out = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        if arg == "--" {
            out.remaining.extend(i..args.len());
            break;
        }
        let mut taken = 1;
        match arg {
            "-d" | "-f" | "--foreground" => {}
            "-m" | "-k" | "--setuser" | "--setgroup" | "--keyfile" => {
                let Some(v) = args.get(i + 1) else {
                    return Err(format!("Option {arg} requires an argument."));
                };
                match arg {
                    "-m" => out.settings.push(("mon_host".into(), v.to_string())),
                    "-k" => out.settings.push(("keyring".into(), v.to_string())),
                    _ => {}
                }
                taken = 2;
            }
            _ if arg.starts_with("-m=") => {
                out.settings.push(("mon_host".into(), arg[3..].to_string()));
            }
            _ => match long_option(arg, args.get(i + 1).copied())? {
                Some((name, value, n)) => {
                    if !matches!(name.as_str(), "keyfile" | "setuser" | "setgroup") {
                        let v = value_of(&name, &value);
                        out.settings.push((name, v));
                    }
                    taken = n;
                }
                None => out.remaining.push(i),
            },
        }
        i += taken;
    }
    Ok(out)
}

/// A `--name[=value]` argument of a known option: (name, value, arguments used), or None
/// when it is not one (it then remains).
fn long_option(arg: &str, next: Option<&str>) -> Result<Option<(String, String, usize)>, String> {
    let Some(body) = arg.strip_prefix("--") else {
        return Ok(None);
    };
    let (raw, inline) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    };
    let name = raw.replace('-', "_");
    if name.is_empty() || name.starts_with('_') || name.contains(' ') {
        return Ok(None);
    }
    if matches!(name.as_str(), "id" | "name" | "cluster" | "conf" | "user") {
        return Ok(None);
    }
    let bad = |v: &str| format!("parse error setting '{name}' to '{v}'");
    if bool_names().contains(name.as_str()) {
        return match inline {
            Some(v) => match parse_bool(v) {
                Some(b) => Ok(Some((name.clone(), b.to_string(), 1))),
                None => Err(bad(v)),
            },
            None => match next.and_then(parse_bool) {
                Some(b) => Ok(Some((name, b.to_string(), 2))),
                None => Ok(Some((name, "true".into(), 1))),
            },
        };
    }
    if inline.is_none() {
        if let Some(flag) = name.strip_prefix("no_") {
            if bool_names().contains(flag) {
                return Ok(Some((flag.to_string(), "false".into(), 1)));
            }
        }
    }
    if !options::is_known(&name) && !matches!(name.as_str(), "keyfile" | "setuser" | "setgroup") {
        return Ok(None);
    }
    let (value, used) = match (inline, next) {
        (Some(v), _) => (v, 1),
        (None, Some(v)) => (v, 2),
        (None, None) => return Err(format!("Option {arg} requires an argument.")),
    };
    if name == "fsid" && !is_uuid(value) {
        return Err(bad(value));
    }
    Ok(Some((name, value.to_string(), used)))
}

/// `8-4-4-4-12` hexadecimal digits, the form Ceph's `fsid` option takes.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rest<'a>(args: &[&'a str]) -> Vec<&'a str> {
        let p = parse(args).expect("parses");
        p.remaining.iter().map(|&i| args[i]).collect()
    }

    fn set(args: &[&str]) -> Vec<(String, String)> {
        parse(args).expect("parses").settings
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    // Each case below was run against Ceph 16.2.15's rados_conf_parse_argv_remainder.
    #[test]
    fn remainder_as_librados() {
        assert_eq!(rest(&["prog", "df"]), ["prog", "df"]);
        assert_eq!(
            rest(&["-m", "1.2.3.4", "osd", "pool", "ls"]),
            ["osd", "pool", "ls"]
        );
        assert_eq!(
            rest(&["--mon-host=5.6.7.8", "x", "--rbd-cache", "false", "y"]),
            ["x", "y"]
        );
        assert_eq!(
            rest(&["--rbd_cache=false", "--", "--mon-host", "9"]),
            ["--", "--mon-host", "9"]
        );
        assert_eq!(rest(&["-k", "/k", "--keyring", "/k2", "z"]), ["z"]);
        assert_eq!(
            rest(&["--unknown-opt", "v", "w"]),
            ["--unknown-opt", "v", "w"]
        );
        assert_eq!(
            rest(&["--log-file", "/tmp/lf", "-n", "client.bar", "q"]),
            ["-n", "client.bar", "q"]
        );
        assert_eq!(
            rest(&["--name", "client.baz", "--cluster", "other", "r"]),
            ["--name", "client.baz", "--cluster", "other", "r"]
        );
        assert_eq!(rest(&["-c", "/x.conf", "s"]), ["-c", "/x.conf", "s"]);
        assert_eq!(rest(&["--conf=/x.conf", "s"]), ["--conf=/x.conf", "s"]);
        assert_eq!(rest(&["--id", "foo", "df"]), ["--id", "foo", "df"]);
        assert_eq!(rest(&["--id=foo", "t"]), ["--id=foo", "t"]);
        assert_eq!(rest(&["-i", "foo", "t"]), ["-i", "foo", "t"]);
        assert_eq!(
            rest(&["--format", "json", "df"]),
            ["--format", "json", "df"]
        );
        assert_eq!(rest(&["-f", "json", "df"]), ["json", "df"]);
        assert_eq!(rest(&["-d", "e"]), ["e"]);
        assert_eq!(rest(&["--rbd-cache"]), Vec::<&str>::new());
        assert_eq!(rest(&["--rbd-cache", "maybe", "d"]), ["maybe", "d"]);
        assert_eq!(rest(&["--setuser", "u", "--setgroup", "g", "t"]), ["t"]);
        assert_eq!(rest(&["--keyfile", "/kf", "e"]), ["e"]);
        assert_eq!(rest(&["-s"]), ["-s"]);
        assert_eq!(rest(&["-", "b"]), ["-", "b"]);
        assert_eq!(rest(&["--no-mon-host", "x"]), ["--no-mon-host", "x"]);
        assert_eq!(rest(&["---mon-host", "q", "x"]), ["---mon-host", "q", "x"]);
        assert_eq!(rest(&["--Mon-Host", "q", "x"]), ["--Mon-Host", "q", "x"]);
        assert_eq!(rest(&["--mon host", "a", "z"]), ["--mon host", "a", "z"]);
        assert_eq!(rest(&["-mfoo", "x"]), ["-mfoo", "x"]);
        assert_eq!(rest(&[]), Vec::<&str>::new());
    }

    #[test]
    fn values_as_librados() {
        assert_eq!(set(&["-m", "1.2.3.4"]), [kv("mon_host", "1.2.3.4")]);
        assert_eq!(set(&["-m=foo", "x"]), [kv("mon_host", "foo")]);
        assert_eq!(set(&["--mon-host=a=b"]), [kv("mon_host", "a=b")]);
        assert_eq!(set(&["--rbd-cache", "0", "x"]), [kv("rbd_cache", "false")]);
        assert_eq!(set(&["--rbd-cache=1"]), [kv("rbd_cache", "true")]);
        assert_eq!(set(&["--no-rbd-cache"]), [kv("rbd_cache", "false")]);
        assert_eq!(
            set(&["--rbd-cache", "--mon-host", "1"]),
            [kv("rbd_cache", "true"), kv("mon_host", "1")]
        );
        assert_eq!(set(&["--debug-ms", "1"]), [kv("debug_ms", "1/1")]);
        assert_eq!(set(&["--debug_ms=1/5"]), [kv("debug_ms", "1/5")]);
        assert_eq!(
            set(&["--shale-store", "file:///s"]),
            [kv("shale_store", "file:///s")]
        );
        assert_eq!(
            set(&["--mon-host", "a", "--mon-host", "b"]),
            [kv("mon_host", "a"), kv("mon_host", "b")]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(&["--rbd-cache=maybe"]),
            Err("parse error setting 'rbd_cache' to 'maybe'".into())
        );
        assert_eq!(
            parse(&["--mon-host"]),
            Err("Option --mon-host requires an argument.".into())
        );
        assert_eq!(
            parse(&["-m"]),
            Err("Option -m requires an argument.".into())
        );
    }
}
