//! Ethernet (MAC) addresses.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A 48-bit Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The all-zero address (used by VXLAN default FDB entries).
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// Builds an address from a 6-byte slice, `None` for any other length.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(b).ok().map(MacAddr)
    }

    /// The address bytes.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// As text (`02:42:ac:11:00:02`), the form every config and API uses.
impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom(format!("invalid MAC address {text:?}")))
    }
}

impl FromStr for MacAddr {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || Error::InvalidArgument(format!("{s:?} is not a MAC address like 02:00:00:aa:bb:cc"));
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let p = parts.next().ok_or_else(bad)?;
            if p.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let m: MacAddr = "02:AB:cd:00:01:ff".parse().unwrap();
        assert_eq!(m.0, [0x02, 0xab, 0xcd, 0, 1, 0xff]);
        assert_eq!(m.to_string(), "02:ab:cd:00:01:ff");
        assert!("02:ab:cd:00:01".parse::<MacAddr>().is_err());
        assert!("02:ab:cd:00:01:ff:00".parse::<MacAddr>().is_err());
        assert!("zz:ab:cd:00:01:ff".parse::<MacAddr>().is_err());
    }
}
