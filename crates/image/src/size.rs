//! Human sizes: `10G`, `512M`, `4096`, `1.5T`, `4k`; binary units (K = 1024), as `rbd` takes.

use shale_error::{err, Result};

/// Parse a size. A bare number means `default_unit` bytes (rbd's `--size` defaults to MiB).
pub fn parse_size(s: &str, default_unit: u64) -> Result<u64> {
    let t = s.trim();
    if t.is_empty() {
        return Err(err!(Invalid, "empty size"));
    }
    let t = t.strip_suffix(['B', 'b']).unwrap_or(t);
    let t = t.strip_suffix(['i']).unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some(c) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'P' => 1 << 50,
                _ => {
                    return Err(err!(
                        Invalid,
                        "size {s:?}: unknown unit {c:?} (use K, M, G, T or P)"
                    ))
                }
            };
            (&t[..t.len() - 1], m)
        }
        _ => (t, default_unit),
    };
    if num.starts_with('-') {
        return Err(err!(Invalid, "size {s:?} is negative"));
    }
    let bytes = if let Ok(n) = num.parse::<u64>() {
        n.checked_mul(mult)
    } else {
        match num.parse::<f64>() {
            Ok(f) if f.is_finite() && f >= 0.0 && f * (mult as f64) < u64::MAX as f64 => {
                Some((f * mult as f64) as u64)
            }
            _ => None,
        }
    };
    bytes.ok_or_else(|| {
        err!(
            Invalid,
            "size {s:?} is not a number of bytes this system can hold"
        )
    })
}

/// Format bytes the way `rbd info` does: `10 GiB`, `512 MiB`, `1.5 KiB`, `17 B`.
pub fn format_size(b: u64) -> String {
    const U: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if v.fract() == 0.0 {
        format!("{} {}", v as u64, U[i])
    } else {
        format!("{:.1} {}", v, U[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sizes() {
        assert_eq!(parse_size("10G", 1 << 20).unwrap(), 10 << 30);
        assert_eq!(parse_size("10GiB", 1).unwrap(), 10 << 30);
        assert_eq!(parse_size("100", 1 << 20).unwrap(), 100 << 20);
        assert_eq!(parse_size("4k", 1).unwrap(), 4096);
        assert_eq!(parse_size("1.5K", 1).unwrap(), 1536);
        assert_eq!(parse_size("1000", 1).unwrap(), 1000);
        for bad in ["", "-1", "-5G", "abc", "10X", "99999999999P", "1e400"] {
            assert!(parse_size(bad, 1).is_err(), "{bad}");
        }
        assert_eq!(format_size(10 << 30), "10 GiB");
        assert_eq!(format_size(1536), "1.5 KiB");
    }
}
