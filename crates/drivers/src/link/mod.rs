//! Building blocks the network drivers share: a veth pair ([`veth`]), an
//! interface's addresses and routes inside a namespace ([`iface`]), deletes
//! that do not wait for the kernel ([`detach`]), and link attributes and
//! generated names ([`attr`]).

pub mod attr;
pub mod detach;
pub mod iface;
pub mod veth;
