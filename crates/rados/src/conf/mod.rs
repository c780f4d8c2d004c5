//! The configuration of one cluster handle: what `rados_conf_*` set and read.
//!
//! Values come in levels like Ceph's (a higher level wins whatever the order of calls):
//!
//! ```text
//!   Override  rados_conf_set
//!   File      rados_conf_read_file: [global] < [client] < [client.<id>]
//!   (unset)   ""  -- Ceph's built-in defaults are not modelled yet
//! ```
//!
//! Names are normalized (spaces → underscores). Only names of real Ceph options and
//! `shale_*` names are accepted; others are `-ENOENT`, as librados does. Values read back
//! have the metavariables `$cluster $type $id $name $host $pid` expanded, as in Ceph.

pub(crate) mod argv;
pub(crate) mod file;
pub(crate) mod options;

use core::ffi::c_int;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The identity a handle was created with, e.g. cluster `ceph`, entity `client.admin`.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) cluster: String,
    pub(crate) entity_type: String,
    pub(crate) id: String,
}

impl Identity {
    /// `client.<id>` from `rados_create`'s bare id (NULL → `admin`).
    pub(crate) fn client(cluster: Option<&str>, id: Option<&str>) -> Self {
        Self {
            cluster: cluster
                .filter(|c| !c.is_empty())
                .unwrap_or("ceph")
                .to_string(),
            entity_type: "client".to_string(),
            id: id.unwrap_or("admin").to_string(),
        }
    }

    /// From `rados_create2`'s full entity name `type.id` (NULL → `client.admin`).
    pub(crate) fn from_entity_name(
        cluster: Option<&str>,
        name: Option<&str>,
    ) -> Result<Self, c_int> {
        let Some(name) = name else {
            return Ok(Self::client(cluster, None));
        };
        let (ty, id) = name.split_once('.').ok_or(-libc::EINVAL)?;
        if !matches!(ty, "client" | "mon" | "osd" | "mds" | "mgr" | "auth") || id.is_empty() {
            return Err(-libc::EINVAL);
        }
        let mut me = Self::client(cluster, Some(id));
        me.entity_type = ty.to_string();
        Ok(me)
    }

    pub(crate) fn name(&self) -> String {
        format!("{}.{}", self.entity_type, self.id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    File,
    Override,
}

/// The configuration of one cluster handle.
#[derive(Debug)]
pub(crate) struct Conf {
    identity: Identity,
    values: BTreeMap<String, BTreeMap<Level, String>>,
    /// The file `read_file` used last, if any.
    pub(crate) path: Option<PathBuf>,
}

impl Conf {
    pub(crate) fn new(identity: Identity) -> Self {
        Self {
            identity,
            values: BTreeMap::new(),
            path: None,
        }
    }

    /// `rados_conf_set`: `-ENOENT` for a name librados does not know.
    pub(crate) fn set(&mut self, name: &str, value: &str) -> Result<(), c_int> {
        let key = options::normalize(name);
        if key.is_empty() {
            return Err(-libc::EINVAL);
        }
        if !options::is_known(&key) {
            return Err(-libc::ENOENT);
        }
        self.values
            .entry(key)
            .or_default()
            .insert(Level::Override, value.to_string());
        Ok(())
    }

    /// Apply the options of a command line (see [`argv`]) and return the indices of the
    /// arguments that remain. A bad argument is `-EINVAL` with librados's message on stderr,
    /// and changes nothing.
    pub(crate) fn parse_args(&mut self, args: &[&str]) -> Result<Vec<usize>, c_int> {
        let parsed = argv::parse(args).map_err(|msg| {
            // librados prints these too: the caller has no other way to learn which argument.
            eprintln!("{msg}");
            -libc::EINVAL
        })?;
        for (name, _) in &parsed.settings {
            let key = options::normalize(name);
            if !options::is_known(&key) {
                return Err(-libc::EINVAL); // unreachable: argv only yields known names
            }
        }
        for (name, value) in parsed.settings {
            self.set(&name, &value)?;
        }
        Ok(parsed.remaining)
    }

    /// `rados_conf_get`: the value with metavariables expanded, or `-ENOENT`.
    pub(crate) fn get(&self, name: &str) -> Result<String, c_int> {
        let key = options::normalize(name);
        if key.is_empty() {
            return Err(-libc::EINVAL);
        }
        if !options::is_known(&key) {
            return Err(-libc::ENOENT);
        }
        let raw = self
            .values
            .get(&key)
            .and_then(|levels| levels.values().next_back())
            .map(String::as_str)
            .unwrap_or("");
        Ok(self.expand(raw))
    }

    /// Every `shale_<name>` option in force, as (`<name>`, expanded value), for
    /// `shale_image::Settings::set` at connect time.
    pub(crate) fn shale_values(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .filter_map(|(k, levels)| {
                let name = k.strip_prefix(options::SHALE_PREFIX)?;
                let v = levels.values().next_back()?;
                Some((name.to_string(), self.expand(v)))
            })
            .collect()
    }

    /// The config files `read_file(NULL)` tries, in order: `$CEPH_CONF` if set, else
    /// /etc/ceph/$cluster.conf, ~/.ceph/$cluster.conf, ~/.ceph/config, ./$cluster.conf.
    pub(crate) fn default_search_path(&self) -> String {
        if let Some(p) = std::env::var_os("CEPH_CONF") {
            return p.to_string_lossy().into_owned();
        }
        let mut paths = vec!["/etc/ceph/$cluster.conf".to_string()];
        if let Some(home) = std::env::var_os("HOME") {
            let home = home.to_string_lossy();
            paths.push(format!("{home}/.ceph/$cluster.conf"));
            paths.push(format!("{home}/.ceph/config"));
        }
        paths.push("$cluster.conf".to_string());
        paths.join(", ")
    }

    /// `rados_conf_read_file`: `list` is one or more paths separated by `,`, `;` or blanks
    /// (NULL: [`Self::default_search_path`]). The first file that exists is parsed and replaces
    /// the file level; unknown names in it are ignored, as Ceph does. `-ENOENT` if no file
    /// exists, `-EINVAL` if the file is malformed.
    pub(crate) fn read_file(&mut self, list: Option<&str>) -> Result<(), c_int> {
        let list = match list {
            Some(l) => l.to_string(),
            None => self.default_search_path(),
        };
        let expanded = self.expand(&list);
        for path in expanded
            .split([',', ';', ' ', '\t'])
            .filter(|p| !p.is_empty())
        {
            let text = match std::fs::read(path) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => continue,
            };
            let sections = file::parse(&text).map_err(|_| -libc::EINVAL)?;
            self.apply_file(&sections);
            self.path = Some(PathBuf::from(path));
            return Ok(());
        }
        Err(-libc::ENOENT)
    }

    fn apply_file(&mut self, sections: &file::Sections) {
        for levels in self.values.values_mut() {
            levels.remove(&Level::File);
        }
        let me = self.identity.name();
        // Least specific first, so that more specific sections overwrite.
        for section in ["global", self.identity.entity_type.as_str(), me.as_str()] {
            let Some(kv) = sections.get(section) else {
                continue;
            };
            for (key, value) in kv {
                if options::is_known(key) {
                    self.values
                        .entry(key.clone())
                        .or_default()
                        .insert(Level::File, value.clone());
                }
            }
        }
    }

    /// Expand Ceph's metavariables (`$name` or `${name}`); unknown ones stay as written.
    fn expand(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(pos) = rest.find('$') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            let (var, len) = match after.strip_prefix('{') {
                Some(inner) => match inner.find('}') {
                    Some(end) => (&inner[..end], end + 2),
                    None => ("", 0),
                },
                None => {
                    let end = after
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(after.len());
                    (&after[..end], end)
                }
            };
            match self.metavariable(var) {
                Some(v) if len > 0 => {
                    out.push_str(&v);
                    rest = &after[len..];
                }
                _ => {
                    out.push('$');
                    rest = after;
                }
            }
        }
        out.push_str(rest);
        out
    }

    fn metavariable(&self, var: &str) -> Option<String> {
        let id = &self.identity;
        Some(match var {
            "cluster" => id.cluster.clone(),
            "type" => id.entity_type.clone(),
            "id" => id.id.clone(),
            "name" => id.name(),
            "pid" => std::process::id().to_string(),
            "host" => hostname(),
            _ => return None,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> Conf {
        Conf::new(Identity::client(None, Some("qemu")))
    }

    #[test]
    fn set_get_and_unknown_names() {
        let mut c = conf();
        assert_eq!(c.set("rbd cache", "false"), Ok(()));
        assert_eq!(c.get("rbd_cache").as_deref(), Ok("false"));
        assert_eq!(c.set("rbd-cache", "false"), Err(-libc::ENOENT));
        assert_eq!(c.set("no_such_option", "1"), Err(-libc::ENOENT));
        assert_eq!(c.get("no_such_option"), Err(-libc::ENOENT));
        assert_eq!(c.set("shale_data_dir", "/d"), Ok(()));
        assert_eq!(c.get("shale_data_dir").as_deref(), Ok("/d"));
        assert_eq!(c.get("keyring").as_deref(), Ok(""));
        assert_eq!(c.get(""), Err(-libc::EINVAL));
    }

    #[test]
    fn file_sections_levels_and_metavariables() {
        let dir = std::env::temp_dir().join(format!("shale-conf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("ceph.conf");
        std::fs::write(
            &path,
            "[global]\nmon host = g\nkeyring = /etc/ceph/$cluster.$name.keyring\nlog file = x\n\
             bogus = 1\n[client]\nmon host = c\n[client.qemu]\nlog_file = q\n[client.other]\nlog file = o\n",
        )
        .expect("write conf");
        let mut c = conf();
        c.set("log file", "set-before-read").expect("set");
        let list = format!("/nonexistent/ceph.conf, {}", path.display());
        assert_eq!(c.read_file(Some(&list)), Ok(()));
        assert_eq!(c.get("mon_host").as_deref(), Ok("c"));
        assert_eq!(c.get("log_file").as_deref(), Ok("set-before-read"));
        assert_eq!(
            c.get("keyring").as_deref(),
            Ok("/etc/ceph/ceph.client.qemu.keyring")
        );
        assert_eq!(c.read_file(Some("/nonexistent/a.conf")), Err(-libc::ENOENT));
        std::fs::write(&path, "[global\n").expect("write conf");
        assert_eq!(
            c.read_file(Some(&path.to_string_lossy())),
            Err(-libc::EINVAL)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn entity_names() {
        let id = Identity::from_entity_name(Some(""), Some("client.cinder")).expect("valid");
        assert_eq!(
            (id.cluster.as_str(), id.name().as_str()),
            ("ceph", "client.cinder")
        );
        assert_eq!(
            Identity::from_entity_name(None, Some("cinder")).err(),
            Some(-libc::EINVAL)
        );
        assert_eq!(
            Identity::from_entity_name(None, None).map(|i| i.name()),
            Ok("client.admin".into())
        );
    }
}
