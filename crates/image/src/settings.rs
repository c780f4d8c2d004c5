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

use std::collections::BTreeMap;
use std::path::PathBuf;

use shale_engine::{Durability, EngineConfig, LogConfig};
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
    /// Directory of the local journal (for stores that are not local directories); empty
    /// disables it.
    pub cache_dir: Option<PathBuf>,
    /// Bytes of journal per open image.
    pub cache_size: u64,
    /// When a flush returns: `journal` (durable on the local device) or `backend` (in the store).
    pub durability: Durability,
    /// Which log device: `auto` (open segments written in place on a local-directory store, a
    /// ring journal in `cache_dir` otherwise), `ring` (always the ring journal), `none`.
    pub journal: JournalMode,
    /// Bytes of local read cache (in `cache_dir`) for stores that are not local directories;
    /// 0 disables it.
    pub read_cache_size: u64,
    /// Garbage collection rewrites segments less live than this fraction (0 disables it).
    pub gc_threshold: f64,
    /// Files of collected segments an image keeps on a local store for new segments to be
    /// written over instead of allocated (0: delete them).
    pub free_segments: usize,
    /// Locations to read from first, nearest first (`dc2,home`).
    pub location_preference: Vec<String>,
    /// What a write does when a `sync` location fails: `degrade` (go on without it, resync
    /// later) or `block` (wait for it: I/O is suspended).
    pub on_location_failure: shale_locations::OnFailure,
    /// Resync bytes per second per image (0: unlimited).
    pub resync_rate: u64,
    /// This host's endpoint and credentials per location (`[location.NAME]` in the config
    /// file, `SHALE_LOCATION_<NAME>_<KEY>` in the environment). Never stored nor logged.
    pub location_hosts: BTreeMap<String, LocationHost>,
}

/// How this host reaches one location: `[location.NAME]` keys.
#[derive(Clone, Default, PartialEq)]
pub struct LocationHost {
    /// S3 endpoint (`http://127.0.0.1:18334`).
    pub endpoint: Option<String>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub region: Option<String>,
    /// Plain HTTP allowed (default: when the endpoint is `http://`).
    pub allow_http: Option<bool>,
}

/// Keys of a `[location.NAME]` table.
pub const LOCATION_KEYS: &[&str] = &[
    "endpoint",
    "access_key",
    "secret_key",
    "region",
    "allow_http",
];

impl std::fmt::Debug for LocationHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials never reach a log line.
        f.debug_struct("LocationHost")
            .field("endpoint", &self.endpoint)
            .field("access_key", &self.access_key.as_ref().map(|_| "<set>"))
            .field("secret_key", &self.secret_key.as_ref().map(|_| "<set>"))
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl LocationHost {
    /// Set one key from text.
    pub fn set(&mut self, key: &str, v: &str) -> Result<()> {
        let opt = |v: &str| (!v.is_empty()).then(|| v.to_string());
        match key {
            "endpoint" => {
                if !(v.is_empty() || v.starts_with("http://") || v.starts_with("https://")) {
                    return Err(err!(
                        Invalid,
                        "location endpoint {v:?} must be an http:// or https:// URL"
                    ));
                }
                self.endpoint = opt(v)
            }
            "access_key" => self.access_key = opt(v),
            "secret_key" => self.secret_key = opt(v),
            "region" => self.region = opt(v),
            "allow_http" => {
                self.allow_http = match v {
                    "" => None,
                    "true" | "1" | "yes" => Some(true),
                    "false" | "0" | "no" => Some(false),
                    _ => return Err(err!(Invalid, "allow_http {v:?} must be true or false")),
                }
            }
            _ => {
                return Err(err!(
                    NotFound,
                    "unknown location setting {key:?}; known: {}",
                    LOCATION_KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// The `SHALE_LOCATION_<NAME>_<KEY>` variables for `name`, over these values.
    pub fn with_env(mut self, name: &str) -> Result<LocationHost> {
        let norm: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        for key in LOCATION_KEYS {
            let var = format!("SHALE_LOCATION_{norm}_{}", key.to_ascii_uppercase());
            if let Ok(v) = std::env::var(&var) {
                self.set(key, &v)
                    .map_err(|e| e.context(format!("environment variable {var}")))?;
            }
        }
        Ok(self)
    }
}

/// The `journal` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JournalMode {
    Auto,
    Ring,
    None,
}

/// The names `set` accepts, for help texts and the C interface.
pub const NAMES: &[&str] = &[
    "store",
    "segment_size",
    "upload_threads",
    "checkpoint_interval",
    "default_pool",
    "cache_dir",
    "cache_size",
    "durability",
    "journal",
    "read_cache_size",
    "gc_threshold",
    "free_segments",
    "location_preference",
    "on_location_failure",
    "resync_rate",
];

impl Default for Settings {
    fn default() -> Self {
        let e = EngineConfig::default();
        Settings {
            store: None,
            segment_size: e.segment_size,
            upload_threads: e.upload_threads,
            checkpoint_interval: e.checkpoint_interval,
            default_pool: "rbd".into(),
            cache_dir: Some(Self::default_cache_dir()),
            cache_size: 1 << 30,
            durability: Durability::Journal,
            journal: JournalMode::Auto,
            read_cache_size: 1 << 30,
            gc_threshold: 0.7,
            free_segments: shale_journal::FREE_FILES,
            location_preference: Vec::new(),
            on_location_failure: shale_locations::OnFailure::Degrade,
            resync_rate: 0,
            location_hosts: BTreeMap::new(),
        }
    }
}

impl Settings {
    /// Defaults, then the config file, then `SHALE_*` environment variables.
    pub fn load() -> Result<Settings> {
        let mut s = Settings::default();
        if let Some(path) = Self::config_path() {
            if let Ok(text) = std::fs::read_to_string(&path) {
                s.apply_toml(&text)
                    .map_err(|e| e.context(format!("config file {}", path.display())))?;
            } else if std::env::var_os("SHALE_CONF").is_some() {
                return Err(err!(
                    NotFound,
                    "config file {} (from SHALE_CONF) cannot be read",
                    path.display()
                ));
            }
        }
        for name in NAMES {
            let var = format!("SHALE_{}", name.to_ascii_uppercase());
            if let Ok(v) = std::env::var(&var) {
                s.set(name, &v)
                    .map_err(|e| e.context(format!("environment variable {var}")))?;
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
        let table: toml::Table = text
            .parse()
            .map_err(|e| Error::with_source(shale_error::ErrorKind::Invalid, "bad TOML", e))?;
        // All or nothing: a bad value anywhere leaves the settings as they were.
        let mut next = self.clone();
        for (k, v) in table {
            if k == "location" {
                let toml::Value::Table(locs) = v else {
                    return Err(err!(
                        Invalid,
                        "`location` must be a table of tables: [location.NAME] endpoint = ..."
                    ));
                };
                for (name, t) in locs {
                    let toml::Value::Table(t) = t else {
                        return Err(err!(Invalid, "[location.{name}] must be a table"));
                    };
                    for (key, v) in t {
                        let val = match v {
                            toml::Value::String(s) => s,
                            toml::Value::Boolean(b) => b.to_string(),
                            toml::Value::Integer(i) => i.to_string(),
                            other => {
                                return Err(err!(
                                    Invalid,
                                    "[location.{name}] {key}: expected a string, got {}",
                                    other.type_str()
                                ))
                            }
                        };
                        next.set(&format!("location.{name}.{key}"), &val)?;
                    }
                }
                continue;
            }
            let val = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => {
                    return Err(err!(
                        Invalid,
                        "setting {k}: expected a string, number or boolean, got {other}"
                    ))
                }
            };
            next.set(&k, &val)?;
        }
        *self = next;
        Ok(())
    }

    /// Set one setting by name from text. Unknown names and bad values are errors.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let v = value.trim();
        if let Some(rest) = name.strip_prefix("location.") {
            let Some((loc, key)) = rest.rsplit_once('.') else {
                return Err(err!(
                    Invalid,
                    "setting {name:?}: expected location.NAME.KEY (keys: {})",
                    LOCATION_KEYS.join(", ")
                ));
            };
            crate::locations::validate_location_name(loc)?;
            let mut host = self.location_hosts.get(loc).cloned().unwrap_or_default();
            host.set(key, v)
                .map_err(|e| e.context(format!("[location.{loc}]")))?;
            self.location_hosts.insert(loc.to_string(), host);
            return Ok(());
        }
        match name {
            "location_preference" => {
                let names: Vec<String> = v
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect();
                for n in &names {
                    crate::locations::validate_location_name(n)?;
                }
                self.location_preference = names;
            }
            "on_location_failure" => {
                self.on_location_failure = shale_locations::OnFailure::parse(v)?;
            }
            "resync_rate" => {
                self.resync_rate = parse_size(v.trim_end_matches("/s"), 1)?;
            }
            "store" => {
                self.store = if v.is_empty() {
                    None
                } else {
                    Some(v.to_string())
                }
            }
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
                    _ => {
                        return Err(err!(
                            Invalid,
                            "upload_threads {v:?} must be a number from 1 to 64"
                        ))
                    }
                }
            }
            "free_segments" => {
                self.free_segments = match v.parse::<usize>() {
                    Ok(n @ 0..=4096) => n,
                    _ => {
                        return Err(err!(
                            Invalid,
                            "free_segments {v:?} must be a number from 0 (off) to 4096"
                        ))
                    }
                }
            }
            "checkpoint_interval" => {
                self.checkpoint_interval = match v.parse::<u64>() {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(err!(
                            Invalid,
                            "checkpoint_interval {v:?} must be a positive number of segments"
                        ))
                    }
                }
            }
            "default_pool" => {
                crate::names::validate_pool_name(v)?;
                self.default_pool = v.to_string();
            }
            "cache_dir" => {
                self.cache_dir = if v.is_empty() {
                    None
                } else {
                    Some(PathBuf::from(v))
                }
            }
            "cache_size" => {
                let n = parse_size(v, 1)?;
                if n < (2 << 20) {
                    return Err(err!(Invalid, "cache_size {v} is too small (at least 2M)"));
                }
                // (Records are split to a quarter of the journal, so any accepted size holds one.)
                self.cache_size = n;
            }
            "durability" => {
                self.durability = match v {
                    "journal" => Durability::Journal,
                    "backend" => Durability::Backend,
                    _ => {
                        return Err(err!(
                            Invalid,
                            "durability {v:?} must be `journal` or `backend`"
                        ))
                    }
                }
            }
            "gc_threshold" => {
                self.gc_threshold = match v.parse::<f64>() {
                    Ok(f) if (0.0..1.0).contains(&f) => f,
                    _ => {
                        return Err(err!(
                            Invalid,
                            "gc_threshold {v:?} must be a fraction from 0 (off) to below 1"
                        ))
                    }
                }
            }
            "read_cache_size" => {
                let n = parse_size(v, 1)?;
                if n != 0 && n < (256 << 10) {
                    return Err(err!(
                        Invalid,
                        "read_cache_size {v} is too small (0 to disable, else at least 256K)"
                    ));
                }
                self.read_cache_size = n;
            }
            "journal" => {
                self.journal = match v {
                    "auto" => JournalMode::Auto,
                    "ring" => JournalMode::Ring,
                    "none" => JournalMode::None,
                    _ => {
                        return Err(err!(
                            Invalid,
                            "journal {v:?} must be `auto`, `ring` or `none`"
                        ))
                    }
                }
            }
            _ => {
                return Err(err!(
                    NotFound,
                    "unknown setting {name:?}; known settings: {}",
                    NAMES.join(", ")
                ))
            }
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

    /// Directory of the journal by default: `$XDG_CACHE_HOME/shale` (`~/.cache/shale`).
    pub fn default_cache_dir() -> PathBuf {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/var/cache"))
            .join("shale")
    }

    /// The ring journal file of the image named `key` in this store, and its owner hash.
    pub fn journal_file(&self, key: &str) -> Option<(PathBuf, u64)> {
        let dir = self.cache_dir.as_ref()?;
        let owner = (crc32c::crc32c(self.store_url().as_bytes()) as u64) << 32
            | crc32c::crc32c(key.as_bytes()) as u64;
        let name: String = key
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        Some((
            dir.join("journal").join(format!("{name}{owner:016x}.jnl")),
            owner,
        ))
    }

    /// The engine configuration for one image. `local` says the store keeps objects as local
    /// files (then open segments are written in place: no separate journal, no double write);
    /// `key` names the image in the journal directory.
    pub fn engine_config(
        &self,
        staging: Option<shale_engine::StagingRef>,
        key: &str,
    ) -> EngineConfig {
        let local = staging.is_some();
        let base = EngineConfig {
            segment_size: self.segment_size,
            upload_threads: self.upload_threads,
            checkpoint_interval: self.checkpoint_interval,
            durability: self.durability,
            ..EngineConfig::default()
        };
        let in_memory_store = self.store_url().starts_with("memory://");
        let log = match self.journal_file(key) {
            _ if self.journal == JournalMode::None || in_memory_store => LogConfig::Memory,
            _ if local && self.journal == JournalMode::Auto => match staging {
                Some(s) => LogConfig::InPlace(s),
                None => LogConfig::Memory,
            },
            Some((path, owner)) => LogConfig::Ring {
                place: shale_engine::LogPlaceRef::file(path),
                size: self.cache_size,
                owner,
            },
            None => LogConfig::Memory,
        };
        // Write-back backlog held in memory: as much as the journal holds, within reason.
        let max_pending = match log {
            LogConfig::Ring { size, .. } => (size / self.segment_size).clamp(8, 64) as usize,
            _ => base.max_pending,
        };
        EngineConfig {
            log,
            max_pending,
            gc_threshold: self.gc_threshold,
            ..base
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn set_and_toml() {
        let mut s = Settings::default();
        s.apply_toml("segment_size = \"4M\"\nstore = \"memory://\"\nupload_threads = 2")
            .unwrap();
        assert_eq!(s.segment_size, 4 << 20);
        assert_eq!(s.store.as_deref(), Some("memory://"));
        assert_eq!(s.upload_threads, 2);
        assert!(s.set("nope", "1").is_err());
        assert!(s.set("segment_size", "1K").is_err());
        assert!(s.set("upload_threads", "0").is_err());
        assert!(s.apply_toml("segment_size = [1]").is_err());
        assert_eq!(s.segment_size, 4 << 20);
        // Floats and booleans where the README documents them.
        s.apply_toml("gc_threshold = 0.7").unwrap();
        assert_eq!(s.gc_threshold, 0.7);
        s.apply_toml("gc_threshold = 0").unwrap();
        assert_eq!(s.gc_threshold, 0.0);
        // All or nothing.
        assert!(s
            .apply_toml("upload_threads = 3\ngc_threshold = 1.5")
            .is_err());
        assert_eq!(s.upload_threads, 2);
        // Freed segment files kept per image: a count, 0 turns it off.
        assert_eq!(s.free_segments, shale_journal::FREE_FILES);
        s.set("free_segments", "0").unwrap();
        assert_eq!(s.free_segments, 0);
        s.apply_toml("free_segments = 64").unwrap();
        assert_eq!(s.free_segments, 64);
        for bad in ["-1", "x", "1.5", "5000"] {
            let e = s.set("free_segments", bad).unwrap_err();
            assert!(e.to_string().contains("free_segments"), "{e}");
        }
        assert_eq!(s.free_segments, 64);
    }
}
