//! The network drivers a Ferry network can use, chosen by option
//! `ferry.driver` (Docker: `-o ferry.driver=macvlan`; Ferry: `--driver`).
//! `bridge` (default): a Linux bridge and a veth per endpoint. `macvlan`: a
//! macvlan on `parent` per endpoint, in `macvlan_mode` (Docker's keys).
//! `null`: endpoints without an interface. `host`: the host's own stack,
//! only for a sandbox that is the host namespace.

use crate::error::{CnmError, Result};
use ferry_drivers::MacvlanMode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const DRIVER_KEY: &str = "ferry.driver";
pub const PARENT_KEY: &str = "parent";
pub const MACVLAN_MODE_KEY: &str = "macvlan_mode";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Driver {
    #[default]
    Bridge,
    Macvlan {
        parent: String,
        mode: String,
    },
    Null,
    Host,
    /// A network of global scope: VXLAN `vni` across the cluster's hosts,
    /// this host's tunnel end at `local`.
    Overlay {
        vni: u32,
        local: std::net::IpAddr,
    },
}

fn text<'a>(generic: Option<&'a Value>, key: &str) -> Option<&'a str> {
    generic?.get(key)?.as_str().filter(|s| !s.is_empty())
}

impl Driver {
    /// Reads the driver from a network's generic options.
    pub fn from_options(generic: Option<&Value>) -> Result<Driver> {
        match text(generic, DRIVER_KEY).unwrap_or("bridge") {
            "bridge" => Ok(Driver::Bridge),
            "null" => Ok(Driver::Null),
            "host" => Ok(Driver::Host),
            "macvlan" => {
                let parent = text(generic, PARENT_KEY).ok_or_else(|| {
                    CnmError::Invalid("the macvlan driver needs -o parent=INTERFACE".into())
                })?;
                let mode = text(generic, MACVLAN_MODE_KEY).unwrap_or("bridge");
                macvlan_mode(mode)?;
                Ok(Driver::Macvlan {
                    parent: parent.to_string(),
                    mode: mode.to_string(),
                })
            }
            "overlay" => Err(CnmError::Invalid(
                "an overlay network is the cluster's: create it by name (ferry network create NAME -d overlay)"
                    .into(),
            )),
            other => Err(CnmError::Invalid(format!(
                "unknown driver {other:?}: use bridge, macvlan, overlay, null or host"
            ))),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Driver::Bridge => "bridge",
            Driver::Macvlan { .. } => "macvlan",
            Driver::Null => "null",
            Driver::Host => "host",
            Driver::Overlay { .. } => "overlay",
        }
    }

    /// Endpoints of this driver have an interface to move into the sandbox.
    pub fn has_interface(&self) -> bool {
        matches!(
            self,
            Driver::Bridge | Driver::Macvlan { .. } | Driver::Overlay { .. }
        )
    }
}

pub fn macvlan_mode(mode: &str) -> Result<MacvlanMode> {
    match mode {
        "bridge" => Ok(MacvlanMode::Bridge),
        "private" => Ok(MacvlanMode::Private),
        "vepa" => Ok(MacvlanMode::Vepa),
        "passthru" => Ok(MacvlanMode::Passthru),
        other => Err(CnmError::Invalid(format!(
            "unknown macvlan_mode {other:?}: use bridge, private, vepa or passthru"
        ))),
    }
}
