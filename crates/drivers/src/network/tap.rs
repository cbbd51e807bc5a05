//! The tap driver: a persistent TAP device (for a VMM in the sandbox),
//! optionally multi-queue, owned by a user and group, with a MAC and MTU,
//! and a port of a bridge that already exists in the sandbox, as the
//! reference `tap` plugin makes it. Created under a temporary name and
//! renamed ([`Placement::Netns`]), or left on the host under a generated
//! name ([`Placement::Host`], without a bridge). A tap has no carrier until
//! a VMM opens it, so its addresses go on without IPv6 DAD.

use super::single::{self, JoinOptions};
use super::{
    Endpoint, EndpointSpec, NetworkDriver, NetworkKind, NetworkSpec, Placement, TapConfig,
};
use crate::kernel;
use crate::link::attr;
use crate::link::detach::{Deleter, Pending};
use crate::link::iface::{self, InterfaceConfig};
use crate::{Error, Result};
use ferry_linux::{Link, Netlink, Netns, TapSpec};
use std::path::PathBuf;

/// The tap driver.
pub struct TapDriver {
    pub deleter: Deleter,
    pub state_dir: PathBuf,
}

impl TapDriver {
    pub fn new(deleter: Deleter, state_dir: PathBuf) -> Self {
        TapDriver { deleter, state_dir }
    }
}

fn config(net: &NetworkSpec) -> Result<&TapConfig> {
    match &net.kind {
        NetworkKind::Tap(c) => Ok(c),
        _ => Err(net.wrong_kind("tap")),
    }
}

/// The bridge `name` in `nl`'s namespace (the sandbox's).
fn bridge(nl: &mut Netlink, name: &str) -> Result<Link> {
    match nl.link_by_name(name) {
        Ok(b) if b.kind.as_deref() == Some("bridge") => Ok(b),
        Ok(b) => Err(Error::Invalid(format!(
            "{name:?} in the container is not a bridge (kind {:?})",
            b.kind
        ))),
        Err(e) if e.is_not_found() => Err(Error::Invalid(format!(
            "failed to get bridge {name}: no bridge {name:?} in the container's namespace: {e}"
        ))),
        Err(e) => Err(kernel(format!("failed to get bridge {name}"))(e)),
    }
}

/// Deletes the tap when a later step of its creation fails.
struct Guard<'a> {
    nl: &'a mut Netlink,
    index: Option<u32>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.index {
            let _ = self.nl.delete_link(i);
        }
    }
}

impl NetworkDriver for TapDriver {
    fn name(&self) -> &'static str {
        "tap"
    }

    fn validate(&self, net: &NetworkSpec) -> Result<()> {
        let cfg = config(net)?;
        if let Some(mtu) = net.mtu {
            if mtu == 0 || mtu > 65535 {
                return Err(Error::Invalid(format!("invalid MTU {mtu}")));
            }
        }
        if let Some(b) = &cfg.bridge {
            ferry_linux::check_ifname(b)
                .map_err(|e| Error::Invalid(format!("bridge name {b:?}: {e}")))?;
        }
        Ok(())
    }

    fn create_endpoint(
        &self,
        net: &NetworkSpec,
        ep: &EndpointSpec,
        place: Placement<'_>,
    ) -> Result<Endpoint> {
        let cfg = config(net)?;
        let (ns, final_name) = match place {
            Placement::Netns { netns, ifname } => (single::open_netns(netns)?, Some(ifname)),
            Placement::Host => {
                if cfg.bridge.is_some() {
                    return Err(Error::Unsupported(
                        "a tap on a bridge in the sandbox cannot be made on the host".into(),
                    ));
                }
                let ns = Netns::current().map_err(kernel("failed to open the host namespace"))?;
                (ns, None)
            }
        };
        let mut nl = single::netlink_in(&ns)?;
        if let Some(ifname) = final_name {
            single::ensure_free(&mut nl, ifname)?;
        }
        let br = match &cfg.bridge {
            Some(b) => Some(bridge(&mut nl, b)?),
            None => None,
        };

        // A TUNSETIFF on the name of an existing tap would attach to it
        // rather than fail: use a fresh name nobody has.
        let mut tmp = attr::random_name("veth")?;
        for _ in 0..5 {
            if nl.link_by_name(&tmp).is_err() {
                break;
            }
            tmp = attr::random_name("veth")?;
        }
        let spec = TapSpec {
            name: tmp.clone(),
            multi_queue: cfg.multi_queue,
            owner: cfg.owner,
            group: cfg.group,
        };
        ferry_linux::create_tap(&spec, Some(&ns)).map_err(kernel("failed to create tap"))?;
        let link = nl
            .link_by_name(&tmp)
            .map_err(kernel(format!("failed to look up new tap {tmp}")))?;
        let index = link.index;
        let g = Guard {
            nl: &mut nl,
            index: Some(index),
        };
        if let Some(mtu) = net.mtu {
            g.nl.set_mtu(index, mtu)
                .map_err(kernel(format!("failed to set MTU {mtu} on the tap")))?;
        }
        if let Some(m) = ep.mac {
            g.nl.set_mac(index, m)
                .map_err(kernel(format!("failed to set MAC {m} on the tap")))?;
        }
        let name = match final_name {
            Some(ifname) => {
                single::rename(g.nl, index, ifname, "tap")?;
                if let (Some(b), Some(bname)) = (&br, &cfg.bridge) {
                    g.nl.set_master(index, b.index).map_err(kernel(format!(
                        "failed to set tap {ifname} as a port of bridge {bname}"
                    )))?;
                }
                g.nl.set_up(index)
                    .map_err(kernel("failed to set tap interface up"))?;
                ifname.to_string()
            }
            None => tmp,
        };
        let link =
            g.nl.link_by_index(index)
                .map_err(kernel(format!("failed to refetch tap {name:?}")))?;
        let mut g = g;
        g.index = None;
        Ok(Endpoint {
            id: ep.id.clone(),
            ifname: name,
            netns: match place {
                Placement::Netns { netns, .. } => Some(netns.to_string()),
                Placement::Host => None,
            },
            mac: link.mac,
            addresses: ep.addresses.clone(),
            ..Endpoint::default()
        })
    }

    /// Deletes the tap wherever it is: in `ep.netns` (a namespace already
    /// gone took it along), or on the host.
    fn delete_endpoint(&self, _net: &NetworkSpec, ep: &Endpoint) -> Result<Pending> {
        single::delete(self.deleter, ep)
    }

    fn join(
        &self,
        _net: &NetworkSpec,
        ep: &Endpoint,
        netns: &str,
        ifname: &str,
        cfg: &InterfaceConfig,
    ) -> Result<Endpoint> {
        let opts = JoinOptions {
            arp_notify: true,
            ndisc_notify: false,
            iface: iface::Options {
                nodad: true,
                ..iface::Options::default()
            },
        };
        single::join(ep, netns, ifname, cfg, opts)
    }

    fn check(&self, _net: &NetworkSpec, ep: &Endpoint, cfg: &InterfaceConfig) -> Result<()> {
        single::check(ep, Some("tun"), cfg).map(|_| ())
    }
}
