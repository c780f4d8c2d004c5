//! Shale's settings: one name per setting, the same everywhere.
//!
//! | where                | how a setting `segment_size` is written        |
//! |----------------------|------------------------------------------------|
//! | config file (TOML)   | `segment_size = "8M"`                          |
//! | environment          | `SHALE_SEGMENT_SIZE=8M`                        |
//! | ceph.conf / conf_set | `shale_segment_size = 8M` (C interface)        |
//!
//! The file is `$SHALE_CONF`, else `$XDG_CONFIG_HOME/shale/shale.toml` (default
//! `~/.config/shale/shale.toml`), else `/etc/shale/shale.toml`; a missing default file is fine.
//! Later sources override earlier ones: file, then environment, then explicit `set` calls.

use std::path::PathBuf;

use shale_engine::EngineConfig;
use shale_error::{err, Error, Result};

use crate::size::parse_size;

/// Every setting, with its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Store URL (`file:///path`, `s3://bucket/prefix`, `memory://`); None = embedded default.
    pub store: Option<String>,
    /// Bytes of data per segment.
    pub segment_size: u64,
    /// Segment uploads in flight per image.
    pub upload_threads: usize,
    /// Segments between extent-map checkpoints.
    pub checkpoint_interval: u64,
    /// Pool used when a spec names none.
    pub default_pool: String,
}

/// The names `set` accepts, for help texts and the C interface.
pub const NAMES: &[&str] = &["store", "segment_size", "upload_threads", "checkpoint_interval", "default_pool"];

impl Default for Settings {
    fn default() -> Self {
        let e = EngineConfig::default();
        Settings {
            store: None,
            segment_size: e.segment_size,
            upload_threads: e.upload_threads,
            checkpoint_interval: e.checkpoint_interval,
            default_pool: "rbd".into(),
        }
    }
}

impl Settings {
    /// Defaults, then the config file, then `SHALE_*` environment variables.
    pub fn load() -> Result<Settings> {
        let mut s = Settings::default();
        if let Some(path) = Self::config_path() {
            if let Ok(text) = std::fs::read_to_string(&path) {
                s.apply_toml(&text).map_err(|e| e.context(format!("config file {}", path.display())))?;
            } else if std::env::var_os("SHALE_CONF").is_some() {
                return Err(err!(NotFound, "config file {} (from SHALE_CONF) cannot be read", path.display()));
            }
        }
        for name in NAMES {
            let var = format!("SHALE_{}", name.to_ascii_uppercase());
            if let Ok(v) = std::env::var(&var) {
                s.set(name, &v).map_err(|e| e.context(format!("environment variable {var}")))?;
            }
        }
        Ok(s)
    }

    /// The config file consulted by `load`.
    pub fn config_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("SHALE_CONF") {
            return Some(PathBuf::from(p));
        }
        let xdg = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
        if let Some(p) = xdg.map(|d| d.join("shale/shale.toml")) {
            if p.exists() {
                return Some(p);
            }
        }
        Some(PathBuf::from("/etc/shale/shale.toml"))
    }

    /// Apply a TOML document of `name = value` pairs.
    pub fn apply_toml(&mut self, text: &str) -> Result<()> {
        let table: toml::Table = text.parse().map_err(|e| Error::with_source(shale_error::ErrorKind::Invalid, "bad TOML", e))?;
        for (k, v) in table {
            let val = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                other => return Err(err!(Invalid, "setting {k}: expected a string or a number, got {other}")),
            };
            self.set(&k, &val)?;
        }
        Ok(())
    }

    /// Set one setting by name from text. Unknown names and bad values are errors.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let v = value.trim();
        match name {
            "store" => self.store = if v.is_empty() { None } else { Some(v.to_string()) },
            "segment_size" => {
                let n = parse_size(v, 1)?;
                if !(EngineConfig::MIN_SEGMENT_SIZE..=EngineConfig::MAX_SEGMENT_SIZE).contains(&n) {
                    return Err(err!(Invalid, "segment_size {v} must be between 64K and 1G"));
                }
                self.segment_size = n;
            }
            "upload_threads" => {
                self.upload_threads = match v.parse::<usize>() {
                    Ok(n @ 1..=64) => n,
                    _ => return Err(err!(Invalid, "upload_threads {v:?} must be a number from 1 to 64")),
                }
            }
            "checkpoint_interval" => {
                self.checkpoint_interval = match v.parse::<u64>() {
                    Ok(n) if n >= 1 => n,
                    _ => return Err(err!(Invalid, "checkpoint_interval {v:?} must be a positive number of segments")),
                }
            }
            "default_pool" => {
                crate::names::validate_pool_name(v)?;
                self.default_pool = v.to_string();
            }
            _ => return Err(err!(NotFound, "unknown setting {name:?}; known settings: {}", NAMES.join(", "))),
        }
        Ok(())
    }

    /// The store URL in force: the configured one or the embedded default
    /// `file://$XDG_DATA_HOME/shale` (`~/.local/share/shale`).
    pub fn store_url(&self) -> String {
        if let Some(s) = &self.store {
            return s.clone();
        }
        format!("file://{}", Self::default_store_dir().display())
    }

    /// Directory of the embedded default store.
    pub fn default_store_dir() -> PathBuf {
        std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("/var/lib"))
            .join("shale")
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            segment_size: self.segment_size,
            upload_threads: self.upload_threads,
            checkpoint_interval: self.checkpoint_interval,
            ..EngineConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn set_and_toml() {
        let mut s = Settings::default();
        s.apply_toml("segment_size = \"4M\"\nstore = \"memory://\"\nupload_threads = 2").unwrap();
        assert_eq!(s.segment_size, 4 << 20);
        assert_eq!(s.store.as_deref(), Some("memory://"));
        assert_eq!(s.upload_threads, 2);
        assert!(s.set("nope", "1").is_err());
        assert!(s.set("segment_size", "1K").is_err());
        assert!(s.set("upload_threads", "0").is_err());
        assert!(s.apply_toml("segment_size = [1]").is_err());
        assert_eq!(s.segment_size, 4 << 20);
    }
}
