//! systemd's notify protocol (`sd_notify(3)`), written by hand: one
//! datagram of `KEY=VALUE` lines to the socket named by `NOTIFY_SOCKET`.
//! Both daemons (ferryd and the DHCP daemon) use it for `Type=notify`
//! units: `READY=1` once they serve, `STOPPING=1` when they stop,
//! `STATUS=...`, and `WATCHDOG=1` every half `WATCHDOG_USEC`. It lives here,
//! beside the kernel layer, because both daemons depend on ferry-linux.
//! Without `NOTIFY_SOCKET` there is no [`Notifier`] and nothing is sent.

use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to systemd's notify socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The notifier of `NOTIFY_SOCKET`; `Ok(None)` when it is unset or
    /// empty (not started by systemd as `Type=notify`).
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var("NOTIFY_SOCKET") {
            Ok(target) if !target.is_empty() => Notifier::new(&target).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier sending to `target`, as `NOTIFY_SOCKET` spells it.
    pub fn new(target: &str) -> io::Result<Notifier> {
        let addr = address(target)?;
        let socket = UnixDatagram::unbound()?;
        // A full queue at systemd must not stall a daemon's thread (the
        // watchdog ping runs on ferryd's runtime): the send fails instead.
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket, addr })
    }

    /// Sends `state`: newline-separated assignments (`READY=1\nSTATUS=...`).
    pub fn send(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.addr)?;
        Ok(())
    }
}

/// The socket address of a `NOTIFY_SOCKET` value: an absolute path, or
/// `@name` for a name in the abstract namespace (systemd's own notation).
pub fn address(target: &str) -> io::Result<SocketAddr> {
    if let Some(name) = target.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if target.starts_with('/') {
        SocketAddr::from_pathname(target)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("NOTIFY_SOCKET {target:?}: neither an absolute path nor an @abstract name"),
        ))
    }
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, when it is set
/// and `WATCHDOG_PID` is unset or names `pid` (the variables may have been
/// inherited from a parent the watchdog is meant for).
pub fn watchdog_interval(env: impl Fn(&str) -> Option<String>, pid: u32) -> Option<Duration> {
    let usec: u64 = env("WATCHDOG_USEC")?.trim().parse().ok()?;
    if let Some(p) = env("WATCHDOG_PID") {
        if p.trim().parse::<u32>().ok()? != pid {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_path_and_abstract() {
        let a = address("@ferry/notify").unwrap();
        assert_eq!(a.as_abstract_name(), Some(&b"ferry/notify"[..]));
        assert_eq!(a.as_pathname(), None);
        let p = address("/run/systemd/notify").unwrap();
        assert_eq!(
            p.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        assert_eq!(p.as_abstract_name(), None);
        for bad in ["relative/notify", "vsock:2:1", ""] {
            assert!(address(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_datagram_reaches_an_abstract_socket() {
        let name = format!("ferry-notify-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        Notifier::new(&format!("@{name}"))
            .unwrap()
            .send("READY=1\nSTATUS=test")
            .unwrap();
        let mut buf = [0u8; 64];
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=test");
    }

    #[test]
    fn watchdog_half_the_period_and_only_for_us() {
        let env = |usec: Option<&'static str>, pid: Option<&'static str>| {
            move |k: &str| match k {
                "WATCHDOG_USEC" => usec.map(str::to_string),
                "WATCHDOG_PID" => pid.map(str::to_string),
                _ => None,
            }
        };
        assert_eq!(
            watchdog_interval(env(Some("30000000"), None), 7),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            watchdog_interval(env(Some("200000"), Some("7")), 7),
            Some(Duration::from_millis(100))
        );
        assert_eq!(watchdog_interval(env(Some("200000"), Some("8")), 7), None);
        assert_eq!(watchdog_interval(env(Some("0"), None), 7), None);
        assert_eq!(watchdog_interval(env(Some("x"), None), 7), None);
        assert_eq!(watchdog_interval(env(None, Some("7")), 7), None);
    }
}
