//! A tiny netlink attribute (NLA) builder and parser, enough for nf_tables:
//! typed puts, nesting, and a flat parser for one level of attributes.

/// `NLA_F_NESTED`: set on attributes that hold attributes.
const NLA_F_NESTED: u16 = 0x8000;
/// Mask of the type bits (without `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Size of `struct nlattr`.
const NLA_HDRLEN: usize = 4;

/// Rounds `n` up to the 4-byte netlink alignment.
pub(crate) const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A growing buffer of netlink attributes.
#[derive(Debug, Default, Clone)]
pub(crate) struct Attrs {
    buf: Vec<u8>,
    /// An attribute grew past the 64 KiB a netlink attribute can hold.
    overflow: bool,
}

impl Attrs {
    pub(crate) fn new() -> Self {
        Attrs::default()
    }

    /// True when an attribute was too long to encode (the caller must not
    /// send these attributes).
    pub(crate) fn overflowed(&self) -> bool {
        self.overflow
    }

    fn len16(&mut self, len: usize) -> u16 {
        u16::try_from(len).unwrap_or_else(|_| {
            self.overflow = true;
            u16::MAX
        })
    }

    /// The encoded attributes.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Appends one attribute with a raw value, padded to 4 bytes.
    pub(crate) fn put(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        let len = NLA_HDRLEN + value.len();
        let len16 = self.len16(len);
        self.buf.extend_from_slice(&len16.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(value);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// Appends a NUL-terminated string.
    pub(crate) fn put_str(&mut self, kind: u16, s: &str) -> &mut Self {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.put(kind, &v)
    }

    /// Appends a big-endian (network order) u32, as nf_tables wants them.
    pub(crate) fn put_be32(&mut self, kind: u16, v: u32) -> &mut Self {
        self.put(kind, &v.to_be_bytes())
    }

    /// Appends a big-endian u64.
    pub(crate) fn put_be64(&mut self, kind: u16, v: u64) -> &mut Self {
        self.put(kind, &v.to_be_bytes())
    }

    /// Appends a nested attribute whose content `f` writes.
    pub(crate) fn nest(&mut self, kind: u16, f: impl FnOnce(&mut Attrs)) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0; NLA_HDRLEN]);
        f(self);
        let len = self.len16(self.buf.len() - start);
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self.buf[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
        self
    }
}

/// One parsed attribute: its type (flags masked off) and value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attr<'a> {
    pub(crate) kind: u16,
    pub(crate) value: &'a [u8],
}

/// Splits `buf` into its top-level attributes.
pub(crate) fn parse(buf: &[u8]) -> Result<Vec<Attr<'_>>, String> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLA_HDRLEN <= buf.len() {
        let len = u16::from_ne_bytes([buf[off], buf[off + 1]]) as usize;
        let kind = u16::from_ne_bytes([buf[off + 2], buf[off + 3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || off + len > buf.len() {
            return Err(format!(
                "attribute of type {kind} has bad length {len} at offset {off} of {}",
                buf.len()
            ));
        }
        out.push(Attr {
            kind,
            value: &buf[off + NLA_HDRLEN..off + len],
        });
        off += align4(len);
    }
    Ok(out)
}

impl<'a> Attr<'a> {
    /// The value as a NUL-terminated string.
    pub(crate) fn str(&self) -> String {
        let end = self
            .value
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.value.len());
        String::from_utf8_lossy(&self.value[..end]).into_owned()
    }

    /// The value as a big-endian u32.
    pub(crate) fn be32(&self) -> Result<u32, String> {
        match <[u8; 4]>::try_from(self.value) {
            Ok(b) => Ok(u32::from_be_bytes(b)),
            Err(_) => Err(format!(
                "attribute {} should be 4 bytes, is {}",
                self.kind,
                self.value.len()
            )),
        }
    }

    /// The value as a big-endian u64.
    pub(crate) fn be64(&self) -> Result<u64, String> {
        match <[u8; 8]>::try_from(self.value) {
            Ok(b) => Ok(u64::from_be_bytes(b)),
            Err(_) => Err(format!(
                "attribute {} should be 8 bytes, is {}",
                self.kind,
                self.value.len()
            )),
        }
    }

    /// The nested attributes of this attribute.
    pub(crate) fn nested(&self) -> Result<Vec<Attr<'a>>, String> {
        parse(self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_nest_and_parse_round_trip() {
        let mut a = Attrs::new();
        a.put_str(1, "ferry").put_be32(2, 7).nest(3, |n| {
            n.put(1, &[1, 2, 3]);
            n.put_be64(2, 9);
        });
        let top = parse(a.bytes()).unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0].kind, 1);
        assert_eq!(top[0].str(), "ferry");
        // "ferry\0" is 6 bytes, padded to 8.
        assert_eq!(top[0].value.len(), 6);
        assert_eq!(top[1].be32().unwrap(), 7);
        assert_eq!(top[2].kind, 3);
        let inner = top[2].nested().unwrap();
        assert_eq!(inner[0].value, &[1, 2, 3]);
        assert_eq!(inner[1].be64().unwrap(), 9);
        assert_eq!(a.bytes().len() % 4, 0);
    }

    #[test]
    fn overlong_attributes_are_flagged() {
        let mut a = Attrs::new();
        a.nest(1, |n| {
            n.put(2, &vec![0u8; 70_000]);
        });
        assert!(a.overflowed());
        assert!(!Attrs::new().put(1, &[0; 100]).overflowed());
    }

    #[test]
    fn bad_length_is_an_error() {
        let buf = [40u8, 0, 1, 0, 0, 0, 0, 0];
        assert!(parse(&buf).is_err());
    }
}
