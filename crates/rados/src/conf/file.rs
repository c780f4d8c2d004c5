//! The ceph.conf parser: an ini file with `[section]` headers and `key = value` lines.
//!
//! Accepted like Ceph does: `#` and `;` comments (whole-line, or after a value), values in double
//! quotes (which may contain comment characters, `\"` and `\\`), a trailing `\` continuing a line,
//! leading/trailing blanks ignored, keys normalized (spaces → underscores). A key before the
//! first section header and any malformed line are errors (`-EINVAL`), as in Ceph 16.2.15.
//! (Ceph refuses `#`/`;` inside quotes; we accept them.)

use super::options::normalize;
use std::collections::BTreeMap;

/// section name → (normalized key → value); later lines win.
pub(crate) type Sections = BTreeMap<String, BTreeMap<String, String>>;

/// A parse error: the 1-based line number and what was wrong.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ParseError {
    pub(crate) line: usize,
    pub(crate) what: &'static str,
}

pub(crate) fn parse(text: &str) -> Result<Sections, ParseError> {
    let mut sections = Sections::new();
    let mut current: Option<String> = None;
    let mut pending = String::new();
    let mut start_line = 0;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start_line = i + 1;
        }
        if let Some(cont) = raw.strip_suffix('\\') {
            pending.push_str(cont);
            continue;
        }
        pending.push_str(raw);
        let line = std::mem::take(&mut pending);
        let err = |what| ParseError {
            line: start_line,
            what,
        };
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix('[') {
            let end = rest
                .find(']')
                .ok_or_else(|| err("section header without ']'"))?;
            let after = rest[end + 1..].trim();
            if !(after.is_empty() || after.starts_with('#') || after.starts_with(';')) {
                return Err(err("text after a section header"));
            }
            let name = rest[..end].trim();
            if name.is_empty() {
                return Err(err("empty section name"));
            }
            current = Some(name.to_string());
            sections.entry(name.to_string()).or_default();
            continue;
        }
        let eq = trimmed
            .find('=')
            .ok_or_else(|| err("line is neither a section nor key = value"))?;
        let key = normalize(&trimmed[..eq]);
        if key.is_empty() {
            return Err(err("empty key"));
        }
        let value = parse_value(trimmed[eq + 1..].trim()).ok_or_else(|| err("bad quoted value"))?;
        let section = current
            .clone()
            .ok_or_else(|| err("key before the first section"))?;
        sections.entry(section).or_default().insert(key, value);
    }
    Ok(sections)
}

fn parse_value(v: &str) -> Option<String> {
    if let Some(rest) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = rest.chars();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => out.push(chars.next()?),
                c => out.push(c),
            }
        }
        let tail = chars.as_str().trim();
        return (tail.is_empty() || tail.starts_with('#') || tail.starts_with(';')).then_some(out);
    }
    let end = v.find(['#', ';']).unwrap_or(v.len());
    Some(v[..end].trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sections_comments_quotes_continuations() {
        let text = "# c\n[global]\ntop = 1\n  mon host = a;b ; x\n\
                    [client.admin]\nkeyring = \"/k;#\\\"q\" # c\nlong = a\\\nb\n\n; end\n";
        let s = parse(text).expect("parses");
        assert_eq!(s["global"]["top"], "1");
        assert_eq!(s["global"]["mon_host"], "a");
        assert_eq!(s["client.admin"]["keyring"], "/k;#\"q");
        assert_eq!(s["client.admin"]["long"], "ab");
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse("[global\n").unwrap_err().line, 1);
        assert_eq!(parse("[global]\nnonsense\n").unwrap_err().line, 2);
        assert!(parse("[global]\na = \"open\n").is_err());
        assert_eq!(parse("a = 1\n[global]\n").unwrap_err().line, 1);
    }
}
