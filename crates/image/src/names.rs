//! Names and specs: `pool/image@snap`, validated before anything touches the store.

use shale_error::{err, Result};

/// Longest pool or image name, in bytes (one store key component).
pub const MAX_NAME: usize = 200;

fn validate(kind: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(err!(Invalid, "{kind} name is empty"));
    }
    if name.len() > MAX_NAME {
        return Err(err!(
            Invalid,
            "{kind} name is {} bytes long; the limit is {MAX_NAME}",
            name.len()
        ));
    }
    if name.starts_with('.') {
        return Err(err!(
            Invalid,
            "{kind} name {name:?} must not start with '.'"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, '/' | '@' | '\\') || c.is_control())
    {
        return Err(err!(
            Invalid,
            "{kind} name {name:?} contains {c:?}, which is not allowed in names"
        ));
    }
    Ok(())
}

/// Check an image name: 1..=200 bytes, no '/', '@', '\', control characters, no leading '.'.
pub fn validate_image_name(name: &str) -> Result<()> {
    validate("image", name)
}

/// Check a pool name (same rules as image names).
pub fn validate_pool_name(name: &str) -> Result<()> {
    validate("pool", name)
}

/// A parsed `[pool/]image[@snap]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    pub pool: String,
    pub image: String,
    pub snap: Option<String>,
}

impl ImageSpec {
    /// Parse `[pool/]image[@snap]`; the pool defaults to `default_pool` (`rbd`).
    pub fn parse(spec: &str, default_pool: &str) -> Result<ImageSpec> {
        let (path, snap) = match spec.split_once('@') {
            Some((p, s)) => {
                if s.is_empty() {
                    return Err(err!(
                        Invalid,
                        "image spec {spec:?}: empty snapshot name after '@'"
                    ));
                }
                validate("snapshot", s)?;
                (p, Some(s.to_string()))
            }
            None => (spec, None),
        };
        let parts: Vec<&str> = path.split('/').collect();
        let (pool, image) = match parts.as_slice() {
            [image] => (default_pool, *image),
            [pool, image] => (*pool, *image),
            [_, _, _] => {
                return Err(err!(
                    Invalid,
                    "image spec {spec:?}: namespaces (pool/namespace/image) are not supported; use pool/image"
                ))
            }
            _ => return Err(err!(Invalid, "image spec {spec:?} has too many '/'; use [pool/]image[@snap]")),
        };
        validate_pool_name(pool).map_err(|e| e.context(format!("image spec {spec:?}")))?;
        validate_image_name(image).map_err(|e| e.context(format!("image spec {spec:?}")))?;
        Ok(ImageSpec {
            pool: pool.to_string(),
            image: image.to_string(),
            snap,
        })
    }
}

impl std::fmt::Display for ImageSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.pool, self.image)?;
        if let Some(s) = &self.snap {
            write!(f, "@{s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn specs() {
        let s = ImageSpec::parse("p/img@s1", "rbd").unwrap();
        assert_eq!(
            (s.pool.as_str(), s.image.as_str(), s.snap.as_deref()),
            ("p", "img", Some("s1"))
        );
        assert_eq!(ImageSpec::parse("img", "rbd").unwrap().pool, "rbd");
        let long = "x".repeat(201);
        for bad in [
            "",
            "/",
            "p/",
            "/i",
            "a/b/c",
            "a/b/c/d",
            "../x",
            "p/..",
            "p/.hidden",
            "p/i@",
            "p/a\nb",
            long.as_str(),
        ] {
            assert!(ImageSpec::parse(bad, "rbd").is_err(), "{bad:?}");
        }
    }
}
