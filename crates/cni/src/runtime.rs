//! The runtime side of CNI (what containerd and CRI-O get from libcni): run a
//! network configuration list for an attachment: ADD in order, DEL in reverse
//! with the final ADD result, CHECK, STATUS, GC and VERSION validation, with a
//! libcni-compatible result cache.
//!
//! Unlike libcni, DEL and CHECK run the configuration cached at ADD, not
//! today's file: an operator's edit never breaks DEL, and CHECK reports it.

use crate::cache::{Cache, CachedAttachment, CACHE_KIND};
use crate::config::NetworkConfigList;
use crate::error::{code, CniError, CniResult};
use crate::invoke::{self, Args};
use crate::{validate, version};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// Per-attachment parameters (SPEC.md section 3, "Attachment Parameters").
#[derive(Debug, Clone, Default)]
pub struct RuntimeConf {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    /// CNI_ARGS as key/value pairs.
    pub args: Vec<(String, String)>,
    /// Capability arguments; each reaches `runtimeConfig` of the plugins that declare it.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    fn validate(&self, network: &str) -> CniResult<()> {
        validate::network_name(network)?;
        validate::container_id(&self.container_id)?;
        validate::interface_name(&self.ifname)
    }

    fn cni_args(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }
}

/// An attachment the runtime still considers valid, for GC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    #[serde(rename = "ifname")]
    pub ifname: String,
}

/// A runtime: where plugins live and where results are cached.
#[derive(Debug, Clone)]
pub struct CniConfig {
    pub plugin_paths: Vec<PathBuf>,
    pub cache: Cache,
}

/// Prefixes an error's message with which plugin and verb failed, keeping its code.
fn in_plugin<'a>(plugin_type: &'a str, verb: &'a str) -> impl Fn(CniError) -> CniError + 'a {
    move |e| CniError {
        msg: format!("plugin type={plugin_type:?} failed ({verb}): {}", e.msg),
        ..e
    }
}

impl CniConfig {
    pub fn new(plugin_paths: Vec<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        CniConfig {
            plugin_paths,
            cache: Cache::new(cache_dir),
        }
    }

    fn args(&self, command: &str, rt: &RuntimeConf) -> Args {
        Args {
            command: command.to_string(),
            container_id: rt.container_id.clone(),
            netns: rt.netns.clone(),
            ifname: rt.ifname.clone(),
            args: rt.cni_args(),
            path: invoke::join_paths(&self.plugin_paths),
        }
    }

    /// The request for one plugin (SPEC.md "Deriving request configuration"):
    /// name and cniVersion inserted, runtimeConfig from declared capabilities,
    /// prevResult when given, `capabilities` removed, every other key untouched.
    pub fn build_request(
        list: &NetworkConfigList,
        plugin: &crate::config::PluginConf,
        prev_result: Option<&Value>,
        rt: &RuntimeConf,
    ) -> Vec<u8> {
        let mut conf = plugin.raw.clone();
        conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
        conf.insert("name".into(), Value::String(list.name.clone()));
        let runtime_config: Map<String, Value> = plugin
            .capabilities()
            .into_iter()
            .filter_map(|cap| rt.capability_args.get(&cap).map(|v| (cap, v.clone())))
            .collect();
        conf.remove("capabilities");
        if !runtime_config.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(runtime_config));
        }
        match prev_result {
            Some(prev) => {
                conf.insert("prevResult".into(), prev.clone());
            }
            None => {
                conf.remove("prevResult");
            }
        }
        serde_json::to_vec(&Value::Object(conf)).unwrap_or_default()
    }

    fn run_plugin(
        &self,
        list: &NetworkConfigList,
        index: usize,
        verb: &str,
        prev_result: Option<&Value>,
        rt: &RuntimeConf,
    ) -> CniResult<Vec<u8>> {
        let plugin = &list.plugins[index];
        let wrap = in_plugin(&plugin.plugin_type, verb);
        let path = invoke::find_in_path(&plugin.plugin_type, &self.plugin_paths).map_err(&wrap)?;
        let request = Self::build_request(list, plugin, prev_result, rt);
        invoke::exec_plugin(&path, &request, &self.args(verb, rt)).map_err(&wrap)
    }

    /// Decodes a plugin's ADD output as a result of the list's version.
    fn decode_result(
        list: &NetworkConfigList,
        plugin_type: &str,
        stdout: &[u8],
    ) -> CniResult<Value> {
        let wrap = in_plugin(plugin_type, "ADD");
        let value: Value = serde_json::from_slice(stdout).map_err(|e| {
            wrap(CniError::decoding(format!(
                "result is not JSON ({e}): {:?}",
                String::from_utf8_lossy(stdout)
            )))
        })?;
        crate::result::convert_with_fallback(&value, &list.cni_version, &list.cni_version)
            .map_err(wrap)
    }

    fn version_at_least(list: &NetworkConfigList, min: &str) -> CniResult<bool> {
        Ok(version::parse(&list.cni_version)? >= version::parse(min)?)
    }

    fn check_supported(list: &NetworkConfigList) -> CniResult<()> {
        version::parse(&list.cni_version)?;
        if !version::is_supported(&list.cni_version) {
            return Err(CniError::incompatible_version(format!(
                "network {:?} has cniVersion {:?}; Ferry supports {:?}",
                list.name,
                list.cni_version,
                version::SUPPORTED
            )));
        }
        Ok(())
    }

    /// ADD every plugin in order, each given the previous one's result; cache
    /// the config first and the final result after.
    pub fn add_network_list(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> CniResult<Value> {
        rt.validate(&list.name)?;
        Self::check_supported(list)?;
        list.ensure_plugins()?;
        let mut entry = CachedAttachment {
            kind: CACHE_KIND.to_string(),
            container_id: rt.container_id.clone(),
            config: serde_json::to_vec(&list.effective())?,
            if_name: rt.ifname.clone(),
            network_name: list.name.clone(),
            netns: rt.netns.clone(),
            cni_args: rt
                .args
                .iter()
                .map(|(k, v)| [k.clone(), v.clone()])
                .collect(),
            capability_args: rt.capability_args.clone(),
            result: None,
        };
        self.cache.put(&entry)?;
        let mut result: Option<Value> = None;
        for (i, plugin) in list.plugins.iter().enumerate() {
            let stdout = self.run_plugin(list, i, "ADD", result.as_ref(), rt)?;
            result = Some(Self::decode_result(list, &plugin.plugin_type, &stdout)?);
        }
        let result = result.unwrap_or(Value::Null);
        entry.result = Some(result.clone());
        self.cache.put(&entry)?;
        Ok(result)
    }

    /// The list DEL and CHECK run: the one cached at ADD when readable, else
    /// `current`; after the runtime config is validated, and only a list of
    /// a supported version.
    fn attachment_list(
        &self,
        network: &str,
        current: Option<&NetworkConfigList>,
        rt: &RuntimeConf,
    ) -> CniResult<(NetworkConfigList, Option<CachedAttachment>)> {
        rt.validate(network)?;
        let cached = self.cache.get(network, &rt.container_id, &rt.ifname);
        let from_cache = cached
            .as_ref()
            .and_then(|c| NetworkConfigList::from_bytes(&c.config).ok())
            .filter(|l| !l.plugins.is_empty());
        let list = match (from_cache, current) {
            (Some(list), _) => list,
            (None, Some(list)) => list.clone(),
            (None, None) => return Err(CniError::invalid_config(format!(
                "network {network:?}: no configuration file and no cached configuration for container {:?} interface {:?}",
                rt.container_id, rt.ifname
            ))),
        };
        Self::check_supported(&list)?;
        Ok((list, cached))
    }

    /// DEL every plugin in reverse order with the final ADD result, then drop
    /// the cache entry. `current` is today's config, used only when nothing is cached.
    pub fn del_network_list(
        &self,
        network: &str,
        current: Option<&NetworkConfigList>,
        rt: &RuntimeConf,
    ) -> CniResult<()> {
        let (list, cached) = self.attachment_list(network, current, rt)?;
        // Cached results on DEL came with CNI 0.4.0.
        let prev = if Self::version_at_least(&list, "0.4.0")? {
            cached
                .and_then(|c| c.result)
                .filter(|r| !r.is_null())
                .and_then(|r| crate::result::convert(&r, &list.cni_version).ok())
        } else {
            None
        };
        for i in (0..list.plugins.len()).rev() {
            self.run_plugin(&list, i, "DEL", prev.as_ref(), rt)?;
        }
        self.cache.delete(network, &rt.container_id, &rt.ifname)
    }

    /// CHECK every plugin in order against the cached ADD result, then report
    /// whether today's config (`current`) has drifted from the one ADD ran.
    pub fn check_network_list(
        &self,
        network: &str,
        current: Option<&NetworkConfigList>,
        rt: &RuntimeConf,
    ) -> CniResult<()> {
        let (list, cached) = self.attachment_list(network, current, rt)?;
        if !Self::version_at_least(&list, "0.4.0")? {
            return Err(CniError::incompatible_version(format!(
                "configuration version {:?} does not support the CHECK command",
                list.cni_version
            )));
        }
        if list.disable_check {
            return Ok(());
        }
        let prev = cached
            .and_then(|c| c.result)
            .filter(|r| !r.is_null())
            .ok_or_else(|| {
                CniError::new(
                    code::UNKNOWN_CONTAINER,
                    format!("network {network:?}: no cached ADD result"),
                    format!(
                        "container {:?} interface {:?} has not been added (or its cache entry is gone)",
                        rt.container_id, rt.ifname
                    ),
                )
            })?;
        let prev = crate::result::convert(&prev, &list.cni_version)?;
        for i in 0..list.plugins.len() {
            self.run_plugin(&list, i, "CHECK", Some(&prev), rt)?;
        }
        if let Some(current) = current {
            let changes = json_diff(&list.effective(), &current.effective());
            if !changes.is_empty() {
                return Err(CniError::invalid_config(format!(
                    "network {network:?} configuration changed since ADD: {}",
                    changes.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// STATUS of every plugin, stopping at the first error (needs 1.1.0).
    pub fn status_network_list(&self, list: &NetworkConfigList) -> CniResult<()> {
        Self::check_supported(list)?;
        if !Self::version_at_least(list, "1.1.0")? {
            return Ok(());
        }
        for i in 0..list.plugins.len() {
            let plugin = &list.plugins[i];
            let wrap = in_plugin(&plugin.plugin_type, "STATUS");
            let path =
                invoke::find_in_path(&plugin.plugin_type, &self.plugin_paths).map_err(&wrap)?;
            let request = Self::build_request(list, plugin, None, &RuntimeConf::default());
            let args = Args {
                command: "STATUS".into(),
                path: invoke::join_paths(&self.plugin_paths),
                ..Args::default()
            };
            invoke::exec_plugin(&path, &request, &args).map_err(&wrap)?;
        }
        Ok(())
    }

    /// GC as libcni: DEL every cached attachment of this network that is not in
    /// `valid`, then (1.1.0+) send GC with `cni.dev/valid-attachments` (and the
    /// legacy `cni.dev/attachments`) to every plugin, carrying on past errors.
    pub fn gc_network_list(
        &self,
        list: &NetworkConfigList,
        valid: Option<&[Attachment]>,
    ) -> CniResult<()> {
        if list.disable_gc {
            return Ok(());
        }
        Self::check_supported(list)?;
        let mut errors: Vec<CniError> = Vec::new();
        let valid_set: std::collections::HashSet<&Attachment> =
            valid.unwrap_or_default().iter().collect();
        self.cache.remove_dead_writers_temps();
        for cached in self.cache.list(None) {
            if cached.network_name != list.name {
                continue;
            }
            let key = Attachment {
                container_id: cached.container_id.clone(),
                ifname: cached.if_name.clone(),
            };
            if valid.is_some() && valid_set.contains(&key) {
                continue;
            }
            if valid.is_none() {
                // Without a valid list every attachment is presumed live.
                continue;
            }
            let rt = RuntimeConf {
                container_id: cached.container_id.clone(),
                netns: cached.netns.clone(),
                ifname: cached.if_name.clone(),
                args: cached
                    .cni_args
                    .iter()
                    .map(|[k, v]| (k.clone(), v.clone()))
                    .collect(),
                capability_args: cached.capability_args.clone(),
            };
            if let Err(e) = self.del_network_list(&list.name, Some(list), &rt) {
                errors.push(CniError {
                    msg: format!(
                        "failed to delete stale attachment {} {}: {}",
                        rt.container_id, rt.ifname, e.msg
                    ),
                    ..e
                });
            }
        }
        if Self::version_at_least(list, "1.1.0")? {
            let attachments = serde_json::to_value(valid.unwrap_or_default())?;
            for plugin in &list.plugins {
                let wrap = in_plugin(&plugin.plugin_type, "GC");
                let run = || -> CniResult<()> {
                    let path = invoke::find_in_path(&plugin.plugin_type, &self.plugin_paths)?;
                    let mut conf = plugin.raw.clone();
                    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
                    conf.insert("name".into(), Value::String(list.name.clone()));
                    conf.remove("capabilities");
                    if valid.is_some() {
                        conf.insert("cni.dev/valid-attachments".into(), attachments.clone());
                        conf.insert("cni.dev/attachments".into(), attachments.clone());
                    }
                    let args = Args {
                        command: "GC".into(),
                        path: invoke::join_paths(&self.plugin_paths),
                        ..Args::default()
                    };
                    invoke::exec_plugin(&path, &serde_json::to_vec(&Value::Object(conf))?, &args)?;
                    Ok(())
                };
                if let Err(e) = run() {
                    errors.push(wrap(e));
                }
            }
        }
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => {
                let first = errors[0].code;
                Err(CniError::new(
                    first,
                    format!("{} errors during GC", errors.len()),
                    errors
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join("; "),
                ))
            }
        }
    }

    /// Asks a plugin which versions it speaks (VERSION).
    pub fn version_info(&self, plugin_type: &str, cni_version: &str) -> CniResult<Value> {
        let path = invoke::find_in_path(plugin_type, &self.plugin_paths)?;
        let args = Args {
            command: "VERSION".into(),
            path: invoke::join_paths(&self.plugin_paths),
            ..Args::default()
        };
        let stdin = serde_json::to_vec(&serde_json::json!({ "cniVersion": cni_version }))?;
        let out =
            invoke::exec_plugin(&path, &stdin, &args).map_err(in_plugin(plugin_type, "VERSION"))?;
        serde_json::from_slice(&out).map_err(|e| {
            CniError::decoding(format!(
                "plugin {plugin_type:?} VERSION output is not JSON: {e}"
            ))
        })
    }

    /// Checks that every plugin of the list (and its IPAM plugin) exists and
    /// speaks the list's version; returns the capabilities the list declares.
    pub fn validate_network_list(&self, list: &NetworkConfigList) -> CniResult<Vec<String>> {
        Self::check_supported(list)?;
        list.ensure_plugins()?;
        let mut caps = Vec::new();
        for plugin in &list.plugins {
            let mut types = vec![plugin.plugin_type.as_str()];
            types.extend(plugin.ipam_type());
            for t in types {
                let info = self.version_info(t, &list.cni_version)?;
                let supported: Vec<&str> = info
                    .get("supportedVersions")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if !supported.contains(&list.cni_version.as_str()) {
                    return Err(CniError::incompatible_version(format!(
                        "plugin type={t:?}: network {:?} needs cniVersion {:?}, plugin supports {supported:?}",
                        list.name, list.cni_version
                    )));
                }
            }
            for c in plugin.capabilities() {
                if !caps.contains(&c) {
                    caps.push(c);
                }
            }
        }
        Ok(caps)
    }
}

/// Paths at which two JSON documents differ, e.g. `plugins[0].ipam.subnet`.
pub fn json_diff(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into(old, new, String::new(), &mut out);
    out
}

fn diff_into(old: &Value, new: &Value, at: String, out: &mut Vec<String>) {
    let name = |at: &str| {
        if at.is_empty() {
            "(root)".to_string()
        } else {
            at.to_string()
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_into(x, y, path, out),
                    (Some(_), None) => out.push(format!("{path} removed")),
                    (None, Some(_)) => out.push(format!("{path} added")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_into(x, y, format!("{at}[{i}]"), out);
            }
        }
        (a, b) if a != b => out.push(format!("{}: {a} -> {b}", name(&at))),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_gets_name_version_runtime_config_and_prev_result() {
        let list = NetworkConfigList::from_bytes(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[
                {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false},"snat":true}]}"#,
        )
        .unwrap();
        let mut rt = RuntimeConf::default();
        rt.capability_args
            .insert("portMappings".into(), json!([{"hostPort": 8080}]));
        rt.capability_args
            .insert("bandwidth".into(), json!({"ingressRate": 1}));
        rt.capability_args.insert("mac".into(), json!("x"));
        let prev = json!({"cniVersion":"1.0.0"});
        let req: Value = serde_json::from_slice(&CniConfig::build_request(
            &list,
            &list.plugins[0],
            Some(&prev),
            &rt,
        ))
        .unwrap();
        assert_eq!(req["name"], "n");
        assert_eq!(req["cniVersion"], "1.0.0");
        assert_eq!(req["snat"], true);
        assert_eq!(
            req["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080}]})
        );
        assert_eq!(req["prevResult"], prev);
        assert!(req.get("capabilities").is_none());
    }

    #[test]
    fn diff_names_changed_paths() {
        let a = json!({"plugins":[{"type":"bridge","ipam":{"subnet":"198.18.0.0/24"}}],"x":1});
        let b = json!({"plugins":[{"type":"bridge","ipam":{"subnet":"198.18.1.0/24"}}],"y":1});
        let d = json_diff(&a, &b);
        assert_eq!(
            d,
            vec![
                "plugins[0].ipam.subnet: \"198.18.0.0/24\" -> \"198.18.1.0/24\"".to_string(),
                "x removed".to_string(),
                "y added".to_string()
            ]
        );
        assert!(json_diff(&a, &a).is_empty());
    }
}
