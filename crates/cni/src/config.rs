//! Network configurations as the runtime sees them (SPEC.md section 1), loaded
//! the way libcni does: `*.conflist` in sorted order, legacy `*.conf`/`*.json`
//! up-converted to lists, `cniVersions` selection and drop-in plugin files.

use crate::error::{CniError, CniResult};
use crate::{validate, version};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// One plugin configuration object. All keys, known or not, are kept in `raw`
/// so they reach the plugin untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConf {
    pub plugin_type: String,
    pub raw: Map<String, Value>,
}

impl PluginConf {
    pub fn from_value(value: Value) -> CniResult<Self> {
        let Value::Object(raw) = value else {
            return Err(CniError::decoding(
                "a plugin configuration must be a JSON object",
            ));
        };
        let plugin_type = match raw.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(other) => {
                return Err(CniError::decoding(format!(
                    "plugin \"type\" must be a string, got {other}"
                )))
            }
            None => String::new(),
        };
        validate::plugin_type(&plugin_type)?;
        Ok(PluginConf { plugin_type, raw })
    }

    /// Capabilities the plugin declares as enabled (`"capabilities": {"portMappings": true}`).
    pub fn capabilities(&self) -> Vec<String> {
        match self.raw.get("capabilities") {
            Some(Value::Object(caps)) => caps
                .iter()
                .filter(|(_, v)| v.as_bool() == Some(true))
                .map(|(k, _)| k.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The delegated IPAM plugin type, if the config has one.
    pub fn ipam_type(&self) -> Option<&str> {
        self.raw.get("ipam")?.get("type")?.as_str()
    }
}

/// A network configuration list (a `.conflist`, or a `.conf` up-converted to one).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    /// The version selected for execution (highest supported of `cniVersion` and `cniVersions`).
    pub cni_version: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub load_only_inlined_plugins: bool,
    pub plugins: Vec<PluginConf>,
    /// The list as loaded, every key kept (plugins not expanded from drop-ins).
    pub raw: Map<String, Value>,
}

fn bool_key(raw: &Map<String, Value>, key: &str) -> CniResult<bool> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        // libcni accepts the strings "true"/"false" for disableCheck.
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        Some(other) => Err(CniError::decoding(format!(
            "{key:?} must be a boolean, got {other}"
        ))),
    }
}

fn string_key(raw: &Map<String, Value>, key: &str) -> CniResult<String> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(CniError::decoding(format!(
            "{key:?} must be a string, got {other}"
        ))),
    }
}

/// Picks the version to run a list with: the highest of `cniVersion` and the
/// `cniVersions` entries that Ferry supports. Unknown versions are skipped in
/// `cniVersions` (newer configs may list versions we do not know yet), but a
/// lone unknown `cniVersion` is kept so the plugins and the runtime reject it with code 1.
fn select_version(raw: &Map<String, Value>) -> CniResult<String> {
    let primary = string_key(raw, "cniVersion")?;
    let mut candidates = Vec::new();
    if let Some(list) = raw.get("cniVersions") {
        let Value::Array(items) = list else {
            return Err(CniError::decoding(
                "\"cniVersions\" must be a list of strings",
            ));
        };
        for item in items {
            let Value::String(v) = item else {
                return Err(CniError::decoding(
                    "\"cniVersions\" must be a list of strings",
                ));
            };
            version::parse(v)?;
            candidates.push(v.clone());
        }
    }
    if !primary.is_empty() {
        candidates.push(primary.clone());
    }
    Ok(version::pick_highest(&candidates, version::SUPPORTED).unwrap_or(primary))
}

impl NetworkConfigList {
    /// Parses a `.conflist` (libcni `ConfListFromBytes`).
    pub fn from_bytes(bytes: &[u8]) -> CniResult<Self> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decoding(format!("error parsing configuration list: {e}")))?;
        let Value::Object(raw) = value else {
            return Err(CniError::decoding(
                "error parsing configuration list: not a JSON object",
            ));
        };
        let name = string_key(&raw, "name")?;
        validate::network_name(&name)?;
        let cni_version = select_version(&raw)?;
        let disable_check = bool_key(&raw, "disableCheck")?;
        let disable_gc = bool_key(&raw, "disableGC")?;
        let load_only_inlined_plugins = bool_key(&raw, "loadOnlyInlinedPlugins")?;
        let plugins = match raw.get("plugins") {
            None | Some(Value::Null) => {
                if load_only_inlined_plugins {
                    return Err(CniError::invalid_config(format!(
                        "network {name:?}: loadOnlyInlinedPlugins is true but there is no \"plugins\" list"
                    )));
                }
                Vec::new()
            }
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    PluginConf::from_value(p.clone()).map_err(|e| CniError {
                        details: format!("network {name:?} plugin {i}: {}", e.details),
                        ..e
                    })
                })
                .collect::<CniResult<Vec<_>>>()?,
            Some(_) => {
                return Err(CniError::decoding(format!(
                    "network {name:?}: \"plugins\" must be a list"
                )))
            }
        };
        Ok(NetworkConfigList {
            name,
            cni_version,
            disable_check,
            disable_gc,
            load_only_inlined_plugins,
            plugins,
            raw,
        })
    }

    /// Up-converts a single-plugin `.conf` to a list (libcni `ConfListFromConf`).
    pub fn from_single_conf(bytes: &[u8]) -> CniResult<Self> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decoding(format!("error parsing configuration: {e}")))?;
        let Value::Object(conf) = value else {
            return Err(CniError::decoding(
                "error parsing configuration: not a JSON object",
            ));
        };
        let mut list = Map::new();
        for key in ["cniVersion", "name", "disableCheck", "disableGC"] {
            if let Some(v) = conf.get(key) {
                list.insert(key.to_string(), v.clone());
            }
        }
        list.insert("plugins".into(), Value::Array(vec![Value::Object(conf)]));
        let bytes = serde_json::to_vec(&Value::Object(list)).map_err(CniError::from)?;
        Self::from_bytes(&bytes)
    }

    /// The list as it runs: the selected version and every plugin (drop-ins
    /// included) inlined. This is what the result cache stores, so DEL and CHECK
    /// replay exactly what ADD ran.
    pub fn effective(&self) -> Value {
        let mut raw = self.raw.clone();
        raw.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        raw.insert(
            "plugins".into(),
            Value::Array(
                self.plugins
                    .iter()
                    .map(|p| Value::Object(p.raw.clone()))
                    .collect(),
            ),
        );
        raw.insert("loadOnlyInlinedPlugins".into(), Value::Bool(true));
        Value::Object(raw)
    }

    /// Appends drop-in plugin objects from `<dir>/<network>/*.conf` (sorted),
    /// unless `loadOnlyInlinedPlugins` is set.
    pub fn load_drop_in_plugins(&mut self, dir: &Path) -> CniResult<()> {
        if self.load_only_inlined_plugins {
            return Ok(());
        }
        let plugin_dir = dir.join(&self.name);
        if !plugin_dir.is_dir() {
            return Ok(());
        }
        for file in conf_files(&plugin_dir, &["conf"])? {
            let bytes = std::fs::read(&file)
                .map_err(|e| CniError::io(format!("reading {}: {e}", file.display())))?;
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                CniError::decoding(format!("error parsing plugin file {}: {e}", file.display()))
            })?;
            let plugin = PluginConf::from_value(value).map_err(|e| CniError {
                details: format!("{}: {}", file.display(), e.details),
                ..e
            })?;
            self.plugins.push(plugin);
        }
        Ok(())
    }

    /// A list is runnable only with at least one plugin.
    pub fn ensure_plugins(&self) -> CniResult<()> {
        if self.plugins.is_empty() {
            return Err(CniError::invalid_config(format!(
                "network {:?} has no plugins",
                self.name
            )));
        }
        Ok(())
    }
}

/// Files in `dir` with one of `extensions`, sorted by name (libcni `ConfFiles`).
/// A missing directory yields an empty list.
pub fn conf_files(dir: &Path, extensions: &[&str]) -> CniResult<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CniError::io(format!("reading {}: {e}", dir.display()))),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| CniError::io(format!("reading {}: {e}", dir.display())))?;
        let path = entry.path();
        if path.is_dir() {
            continue;
        }
        let matches = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e));
        if matches {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A network found in a configuration directory, or the reason a file was skipped.
#[derive(Debug)]
pub enum Found {
    Network {
        file: PathBuf,
        list: Box<NetworkConfigList>,
    },
    Invalid {
        file: PathBuf,
        error: CniError,
    },
}

/// Every network in `dir`: `*.conflist` first, then legacy `*.conf`/`*.json`,
/// each in sorted order. A name seen twice keeps its first file, as libcni's lookup does.
pub fn load_all(dir: &Path) -> CniResult<Vec<Found>> {
    let mut found = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let lists = conf_files(dir, &["conflist"])?;
    let singles = conf_files(dir, &["conf", "json"])?;
    let sources = lists
        .into_iter()
        .map(|f| (f, true))
        .chain(singles.into_iter().map(|f| (f, false)));
    for (file, is_list) in sources {
        let parsed = std::fs::read(&file)
            .map_err(|e| CniError::io(format!("reading {}: {e}", file.display())))
            .and_then(|bytes| {
                if is_list {
                    NetworkConfigList::from_bytes(&bytes)
                } else {
                    NetworkConfigList::from_single_conf(&bytes)
                }
            })
            .and_then(|mut list| {
                list.load_drop_in_plugins(dir)?;
                Ok(list)
            });
        match parsed {
            Ok(list) => {
                if seen.insert(list.name.clone()) {
                    found.push(Found::Network {
                        file,
                        list: Box::new(list),
                    });
                }
            }
            Err(error) => found.push(Found::Invalid { file, error }),
        }
    }
    Ok(found)
}

/// Loads the network named `name` from `dir` (libcni `LoadConfList`), with drop-ins.
pub fn load_network(dir: &Path, name: &str) -> CniResult<NetworkConfigList> {
    validate::network_name(name)?;
    let mut invalid: Vec<(PathBuf, CniError)> = Vec::new();
    for found in load_all(dir)? {
        match found {
            Found::Network { list, .. } if list.name == name => {
                list.ensure_plugins()?;
                return Ok(*list);
            }
            Found::Network { .. } => {}
            Found::Invalid { file, error } => invalid.push((file, error)),
        }
    }
    // As libcni, a file that cannot be read is the answer (it may be the network
    // asked for): its own code (6 for bad JSON) and its name.
    if let Some((file, error)) = invalid.into_iter().next() {
        return Err(CniError {
            details: format!(
                "no readable network configuration named {name:?} in {}; {}: {}",
                dir.display(),
                file.display(),
                error.details
            ),
            ..error
        });
    }
    Err(CniError::invalid_config(format!(
        "no network configuration named {name:?} in {}",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    #[test]
    fn unknown_keys_are_kept_and_version_selected() {
        let list = NetworkConfigList::from_bytes(
            br#"{"cniVersion":"0.4.0","cniVersions":["0.3.1","1.0.0","1.1.0","9.9.9"],"name":"n",
                "plugins":[{"type":"bridge","keyA":["x"],"capabilities":{"mac":true,"ips":false}}]}"#,
        )
        .unwrap();
        assert_eq!(list.cni_version, "1.1.0");
        assert_eq!(list.plugins[0].raw["keyA"], serde_json::json!(["x"]));
        assert_eq!(list.plugins[0].capabilities(), vec!["mac".to_string()]);
    }

    #[test]
    fn bad_lists_are_refused_with_codes() {
        let cases: &[(&[u8], u32)] = &[
            (b"{not json", 6),
            (
                br#"{"cniVersion":"1.0.0","name":"bad/name","plugins":[]}"#,
                7,
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../x"}]}"#,
                7,
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"ipam":{}}]}"#,
                7,
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"n","loadOnlyInlinedPlugins":true}"#,
                7,
            ),
            (br#"{"cniVersion":"1.0.0","name":"n","plugins":{}}"#, 6),
        ];
        for (bytes, code) in cases {
            let err = NetworkConfigList::from_bytes(bytes).unwrap_err();
            assert_eq!(err.code, *code, "{}: {err}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn loads_lists_before_confs_in_sorted_order_with_drop_ins() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "20-a.conflist",
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"}]}"#,
        );
        write(
            d,
            "10-a.conflist",
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"ptp"}]}"#,
        );
        write(
            d,
            "05-b.conf",
            r#"{"cniVersion":"0.4.0","name":"b","type":"macvlan","master":"x"}"#,
        );
        write(
            d,
            "06-c.json",
            r#"{"cniVersion":"0.4.0","name":"c","type":"loopback"}"#,
        );
        write(d, "07-broken.conflist", "{");
        std::fs::create_dir(d.join("a")).unwrap();
        write(&d.join("a"), "2.conf", r#"{"type":"tuning"}"#);
        write(&d.join("a"), "1.conf", r#"{"type":"portmap"}"#);
        write(&d.join("a"), "ignored.txt", r#"{"type":"nope"}"#);

        let a = load_network(d, "a").unwrap();
        let types: Vec<_> = a.plugins.iter().map(|p| p.plugin_type.as_str()).collect();
        assert_eq!(types, ["ptp", "portmap", "tuning"]);
        let b = load_network(d, "b").unwrap();
        assert_eq!(b.plugins[0].raw["master"], "x");
        assert_eq!(b.cni_version, "0.4.0");
        assert!(load_network(d, "c").is_ok());
        let missing = load_network(d, "zzz").unwrap_err();
        assert_eq!(missing.code, 6);
        assert!(missing.details.contains("07-broken.conflist"), "{missing}");
    }

    #[test]
    fn only_inlined_plugins_skips_drop_ins() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "a.conflist",
            r#"{"cniVersion":"1.1.0","name":"a","loadOnlyInlinedPlugins":true,"plugins":[{"type":"ptp"}]}"#,
        );
        std::fs::create_dir(d.join("a")).unwrap();
        write(&d.join("a"), "1.conf", r#"{"type":"portmap"}"#);
        assert_eq!(load_network(d, "a").unwrap().plugins.len(), 1);
    }

    #[test]
    fn effective_list_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "a.conflist",
            r#"{"cniVersion":"1.0.0","name":"a","x":1,"plugins":[{"type":"ptp"}]}"#,
        );
        std::fs::create_dir(d.join("a")).unwrap();
        write(&d.join("a"), "1.conf", r#"{"type":"portmap"}"#);
        let list = load_network(d, "a").unwrap();
        let bytes = serde_json::to_vec(&list.effective()).unwrap();
        let again = NetworkConfigList::from_bytes(&bytes).unwrap();
        assert_eq!(again.plugins, list.plugins);
        assert_eq!(again.raw["x"], 1);
    }
}
