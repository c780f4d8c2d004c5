//! File names of the view: `IMAGE` for an image's head, `IMAGE@SNAP` for one of its
//! snapshots (read-only). Image and snapshot names never contain '@' or '/', so the split is
//! unambiguous; anything else (hidden names, empty parts, non-UTF-8) names no file.

use std::ffi::OsStr;

use shale_image::validate_image_name;

/// Longest file name the kernel passes (NAME_MAX); longer `IMAGE@SNAP` names are not listed.
pub const NAME_MAX: usize = 255;

/// What a file name refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName {
    pub image: String,
    pub snap: Option<String>,
}

impl FileName {
    /// Parse a name looked up in the mount's root; None when it cannot name an image file.
    pub fn parse(name: &OsStr) -> Option<FileName> {
        let name = name.to_str()?;
        if name.len() > NAME_MAX {
            return None;
        }
        let (image, snap) = match name.split_once('@') {
            Some((i, s)) => {
                // Snapshot names follow the image-name rules (and the empty name is only
                // reachable by id, so it has no file).
                validate_image_name(s).ok()?;
                (i, Some(s.to_string()))
            }
            None => (name, None),
        };
        validate_image_name(image).ok()?;
        Some(FileName {
            image: image.to_string(),
            snap,
        })
    }

    /// The file name shown in the directory; None when it cannot be represented.
    pub fn render(&self) -> Option<String> {
        let s = match &self.snap {
            Some(s) if s.is_empty() => return None,
            Some(s) => format!("{}@{s}", self.image),
            None => self.image.clone(),
        };
        (s.len() <= NAME_MAX && !s.contains('/')).then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<FileName> {
        FileName::parse(OsStr::new(s))
    }

    #[test]
    fn heads_and_snapshots() {
        assert_eq!(
            p("vm1"),
            Some(FileName {
                image: "vm1".into(),
                snap: None
            })
        );
        assert_eq!(
            p("vm1@gold"),
            Some(FileName {
                image: "vm1".into(),
                snap: Some("gold".into())
            })
        );
    }

    #[test]
    fn rejects_what_no_image_is_called() {
        for bad in ["", "@s", "img@", ".hidden", "a@b@c", "img@.s", "a\nb"] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
        assert_eq!(p(&"x".repeat(256)), None);
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(FileName::parse(OsStr::from_bytes(b"a\xffb")), None);
    }

    #[test]
    fn render_round_trips_and_skips_unrepresentable() {
        for s in ["vm1", "vm1@gold", "a-b.c@snap_1"] {
            assert_eq!(p(s).unwrap().render().as_deref(), Some(s));
        }
        let long = FileName {
            image: "i".repeat(200),
            snap: Some("s".repeat(100)),
        };
        assert_eq!(long.render(), None);
        let empty = FileName {
            image: "i".into(),
            snap: Some(String::new()),
        };
        assert_eq!(empty.render(), None);
    }
}
