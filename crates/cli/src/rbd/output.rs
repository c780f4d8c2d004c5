//! Output the way Ceph's `rbd` writes it: JSON objects whose keys keep rbd's order (compact, or
//! indented by four spaces with `--pretty-format`), `TextTable` tables, ctime timestamps, and
//! `(errno) strerror` error text.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON value whose objects keep their keys in insertion order (rbd's order), unlike
/// `serde_json::Value`'s sorted maps.
#[derive(Debug, Clone)]
pub enum J {
    Null,
    Bool(bool),
    U(u64),
    F(f64),
    S(String),
    A(Vec<J>),
    O(Vec<(&'static str, J)>),
    /// An object whose keys are data (image metadata).
    M(Vec<(String, J)>),
}

impl J {
    pub fn s(v: impl Into<String>) -> J {
        J::S(v.into())
    }

    /// rbd writes many booleans as the strings "true" / "false".
    pub fn tf(b: bool) -> J {
        J::S(if b { "true" } else { "false" }.to_string())
    }

    pub fn strs<I: IntoIterator<Item = S>, S: Into<String>>(v: I) -> J {
        J::A(v.into_iter().map(|x| J::S(x.into())).collect())
    }
}

impl Serialize for J {
    fn serialize<Se: Serializer>(&self, s: Se) -> Result<Se::Ok, Se::Error> {
        match self {
            J::Null => s.serialize_unit(),
            J::Bool(b) => s.serialize_bool(*b),
            J::U(n) => s.serialize_u64(*n),
            J::F(f) => s.serialize_f64(*f),
            J::S(t) => s.serialize_str(t),
            J::A(v) => {
                let mut q = s.serialize_seq(Some(v.len()))?;
                for x in v {
                    q.serialize_element(x)?;
                }
                q.end()
            }
            J::O(kv) => {
                let mut m = s.serialize_map(Some(kv.len()))?;
                for (k, v) in kv {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
            J::M(kv) => {
                let mut m = s.serialize_map(Some(kv.len()))?;
                for (k, v) in kv {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
    }
}

/// `v` as rbd prints it: one line, or indented by four spaces when `pretty`.
pub fn json_text(v: &J, pretty: bool) -> String {
    let mut buf = Vec::new();
    let r = if pretty {
        let f = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        v.serialize(&mut serde_json::Serializer::with_formatter(&mut buf, f))
    } else {
        v.serialize(&mut serde_json::Serializer::new(&mut buf))
    };
    match r {
        Ok(()) => String::from_utf8_lossy(&buf).into_owned(),
        Err(_) => String::new(),
    }
}

/// Alignment of a table column's cells.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// Ceph's `TextTable`: headers left-aligned, cells aligned per column, columns padded to their
/// widest entry and separated by two spaces.
pub struct Table {
    cols: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(cols: &[(&'static str, Align)]) -> Table {
        Table {
            cols: cols.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.cols.len())
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .chain([self.cols[i].0.len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: Vec<(&str, Align)>| -> String {
            cells
                .iter()
                .zip(&widths)
                .map(|((c, a), w)| match a {
                    Align::Left => format!("{c:<w$}"),
                    Align::Right => format!("{c:>w$}"),
                })
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut out = line(self.cols.iter().map(|(h, _)| (*h, Align::Left)).collect());
        for r in &self.rows {
            out.push('\n');
            out.push_str(&line(
                self.cols
                    .iter()
                    .enumerate()
                    .map(|(i, (_, a))| (r.get(i).map(String::as_str).unwrap_or(""), *a))
                    .collect(),
            ));
        }
        out
    }
}

/// Seconds since the epoch as ctime(3) writes them in UTC: `Sun Nov 29 13:01:19 2026`.
pub fn ctime(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{} {} {:>2} {:02}:{:02}:{:02} {}",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        y
    )
}

/// strerror(3) for the errnos Shale's error kinds map to.
pub fn strerror(errno: i32) -> &'static str {
    match errno {
        1 => "Operation not permitted",
        2 => "No such file or directory",
        5 => "Input/output error",
        11 => "Resource temporarily unavailable",
        16 => "Device or resource busy",
        17 => "File exists",
        22 => "Invalid argument",
        28 => "No space left on device",
        30 => "Read-only file system",
        38 => "Function not implemented",
        39 => "Directory not empty",
        95 => "Operation not supported",
        108 => "Cannot send after transport endpoint shutdown",
        110 => "Connection timed out",
        _ => "Unknown error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_matches_libc() {
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
        // 2026-11-29 13:01:19 UTC, as recorded from rbd in the fixtures.
        assert_eq!(ctime(1_795_957_279), "Sun Nov 29 13:01:19 2026");
        assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000");
    }

    #[test]
    fn json_keeps_key_order_and_rbd_indent() {
        let v = J::O(vec![("b", J::U(1)), ("a", J::strs(["x"]))]);
        assert_eq!(json_text(&v, false), r#"{"b":1,"a":["x"]}"#);
        assert_eq!(
            json_text(&v, true),
            "{\n    \"b\": 1,\n    \"a\": [\n        \"x\"\n    ]\n}"
        );
    }

    #[test]
    fn table_pads_like_textable() {
        let mut t = Table::new(&[("NAME", Align::Left), ("SIZE", Align::Right)]);
        t.row(vec!["a".into(), "64 MiB".into()]);
        assert_eq!(t.render(), "NAME  SIZE  \na     64 MiB");
    }
}
