//! A private `dockerd` for a test: its own data root, exec root, pid file and
//! API socket, no default bridge and no iptables rules (so other tests on the
//! machine are not affected), stopped and cleaned up on drop; and `ferryd`
//! serving Docker's remote drivers under a driver name of its own.
//!
//! Both start in their own process group, so a Ctrl-C on the terminal reaches
//! only the caller, which then stops them in order. The `try_` constructors
//! return errors instead of panicking (for `ferry-bench`, whose release
//! profile aborts on panic).

use crate::sh_ok;
use serde_json::Value;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's docker.io installs the daemon.
pub const DOCKERD: &str = "/usr/sbin/dockerd";

pub struct Dockerd {
    child: Child,
    pub dir: PathBuf,
    /// For `DOCKER_HOST`.
    pub host: String,
}

impl Dockerd {
    /// Starts dockerd under `dir` and waits until it answers (fails naming the
    /// Debian package when dockerd is missing).
    pub fn start(dir: &Path) -> Dockerd {
        Dockerd::try_start(dir, &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Dockerd::start`] with `extra` daemon arguments, returning errors.
    pub fn try_start(dir: &Path, extra: &[&str]) -> Result<Dockerd, String> {
        Dockerd::try_start_in(None, dir, extra)
    }

    /// [`Dockerd::try_start`] inside network namespace `netns` (a name
    /// under /run/netns) when given: the daemon and its containers then see
    /// that namespace's links and routes, not the host's.
    pub fn try_start_in(
        netns: Option<&str>,
        dir: &Path,
        extra: &[&str],
    ) -> Result<Dockerd, String> {
        if !Path::new(DOCKERD).exists() {
            return Err("dockerd missing: install the Debian package docker.io".into());
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let sock = dir.join("docker.sock");
        let log_path = dir.join("dockerd.log");
        let log = std::fs::File::create(&log_path).map_err(|e| format!("dockerd log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("dockerd log: {e}"))?;
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/run/netns/{ns}")).arg(DOCKERD);
                c
            }
            None => Command::new(DOCKERD),
        };
        let child = cmd
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start dockerd: {e}"))?;
        let d = Dockerd {
            child,
            dir: dir.to_path_buf(),
            host: format!("unix://{}", sock.display()),
        };
        let start = Instant::now();
        while !d.ok("info") {
            if start.elapsed() > Duration::from_secs(60) {
                return Err(format!(
                    "dockerd did not answer within 60s; log: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(d)
    }

    fn cmd(&self, args: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("docker {args}"))
            .env("DOCKER_HOST", &self.host);
        c
    }

    /// The `docker` client talking to this daemon, without a shell.
    pub fn command(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", &self.host);
        c
    }

    /// Runs `docker ARGS`, returning stdout; panics with stderr on failure.
    pub fn run(&self, args: &str) -> String {
        let out = self.cmd(args).output().expect("docker");
        assert!(
            out.status.success(),
            "`docker {args}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `docker ARGS` and returns (success, stdout+stderr).
    pub fn try_run(&self, args: &str) -> (bool, String) {
        match self.cmd(args).output() {
            Ok(out) => (
                out.status.success(),
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            ),
            Err(e) => (false, format!("cannot run docker: {e}")),
        }
    }

    pub fn ok(&self, args: &str) -> bool {
        self.cmd(&format!("{args} >/dev/null 2>&1"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Imports a tiny image from Debian's busybox-static with the applets tests use.
    pub fn import_busybox(&self, name: &str) {
        self.try_import_busybox(name)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Dockerd::import_busybox`], returning errors.
    pub fn try_import_busybox(&self, name: &str) -> Result<(), String> {
        if !Path::new("/bin/busybox").exists() {
            return Err("/bin/busybox missing: install the Debian package busybox-static".into());
        }
        let root = self.dir.join("image-root");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).map_err(|e| format!("image root: {e}"))?;
        std::fs::copy("/bin/busybox", bin.join("busybox"))
            .map_err(|e| format!("copy busybox: {e}"))?;
        for applet in [
            "sh", "ping", "sleep", "ip", "httpd", "wget", "cat", "nc", "echo", "true",
        ] {
            let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
        }
        let ok = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "tar -C {} -c . | docker import - {name} >/dev/null",
                root.display()
            ))
            .env("DOCKER_HOST", &self.host)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            Ok(())
        } else {
            Err(format!("docker import of {name} failed"))
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.cmd("rm -f $(docker ps -aq) >/dev/null 2>&1").status();
        // Networks too, while their plugin is still up to tear them down.
        let _ = self.cmd("network prune -f >/dev/null 2>&1").status();
        // SIGTERM lets dockerd unmount its layers and remove its sockets.
        let _ = sigterm(self.child.id());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = sh_ok(&format!(
            "grep -o ' {}[^ ]*' /proc/mounts | sort -r | xargs -r -n1 umount -l",
            self.dir.display()
        ));
    }
}

fn sigterm(pid: u32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
}

/// `ferryd` under a driver name of its own (its socket in
/// /run/docker/plugins, shared with every other dockerd and plugin on the
/// node: only this socket is removed), its state and API socket under a
/// directory of the caller's. Killed (SIGKILL) on drop.
pub struct Ferryd {
    bin: PathBuf,
    pools: Vec<String>,
    /// The namespace it runs in (`nsenter --net=`), the caller's when `None`.
    netns: Option<String>,
    /// More arguments.
    extra: Vec<String>,
    child: Option<Child>,
    pub plugin_socket: PathBuf,
    pub api_socket: PathBuf,
    pub state: PathBuf,
}

impl Ferryd {
    /// Starts `bin` as driver `name` with these `--default-address-pool`s and
    /// waits until its plugin socket answers.
    pub fn start(bin: &Path, dir: &Path, name: &str, pools: &[&str]) -> Ferryd {
        Ferryd::try_start(bin, dir, name, pools).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Ferryd::start`], returning errors.
    pub fn try_start(bin: &Path, dir: &Path, name: &str, pools: &[&str]) -> Result<Ferryd, String> {
        Ferryd::try_start_in(bin, dir, name, pools, None, &[])
    }

    /// [`Ferryd::try_start`] with more ferryd arguments, kept for restarts.
    pub fn try_start_with(
        bin: &Path,
        dir: &Path,
        name: &str,
        pools: &[&str],
        args: &[&str],
    ) -> Result<Ferryd, String> {
        Ferryd::try_start_in(bin, dir, name, pools, None, args)
    }

    /// [`Ferryd::start`] inside the namespace at `netns` (a test's "host":
    /// its bridges and nftables tables go with the namespace), with `extra`
    /// arguments.
    pub fn start_in(
        bin: &Path,
        dir: &Path,
        name: &str,
        pools: &[&str],
        netns: &str,
        extra: &[&str],
    ) -> Ferryd {
        Ferryd::try_start_in(bin, dir, name, pools, Some(netns), extra)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start_in(
        bin: &Path,
        dir: &Path,
        name: &str,
        pools: &[&str],
        netns: Option<&str>,
        extra: &[&str],
    ) -> Result<Ferryd, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut f = Ferryd {
            bin: bin.to_path_buf(),
            pools: pools.iter().map(|p| p.to_string()).collect(),
            netns: netns.map(str::to_string),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            child: None,
            plugin_socket: PathBuf::from(format!("/run/docker/plugins/{name}.sock")),
            api_socket: dir.join("api.sock"),
            state: dir.join("ferryd.redb"),
        };
        f.try_spawn()?;
        Ok(f)
    }

    /// Starts the daemon again (after [`Ferryd::kill9`]); panics on failure.
    pub fn spawn(&mut self) {
        self.try_spawn().unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn try_spawn(&mut self) -> Result<(), String> {
        let log_path = self.state.with_extension("log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("ferryd log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("ferryd log: {e}"))?;
        // nsenter execs the daemon: the child's PID is ferryd's.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={ns}")).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(&self.extra)
            .arg("--plugin-socket")
            .arg(&self.plugin_socket)
            .arg("--api-socket")
            .arg(&self.api_socket)
            .arg("--state")
            .arg(&self.state);
        for p in &self.pools {
            cmd.args(["--default-address-pool", p]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log2)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("start {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        let start = Instant::now();
        while !self.plugin_socket.exists() || UnixStream::connect(&self.plugin_socket).is_err() {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "ferryd did not start within 10s; log: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Stops the daemon with SIGTERM (a clean shutdown) and waits for it.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// A raw plugin-protocol call: (HTTP status, JSON body).
    pub fn call(&self, method: &str, body: &str) -> (u16, Value) {
        http(&self.plugin_socket, "POST", &format!("/{method}"), body)
    }

    /// [`Ferryd::call`], returning errors.
    pub fn try_call(&self, method: &str, body: &str) -> Result<(u16, Value), String> {
        try_http(&self.plugin_socket, "POST", &format!("/{method}"), body)
    }

    pub fn api(&self, path: &str) -> Value {
        http(&self.api_socket, "GET", path, "").1
    }

    /// A plugin call that must succeed: HTTP 200 and no `Err` (network
    /// driver) or `Error` (IPAM driver); panics with the answer otherwise.
    pub fn call_ok(&self, method: &str, body: &Value) -> Value {
        let (status, v) = self
            .try_call(method, &body.to_string())
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        let err = v["Err"].as_str().or(v["Error"].as_str()).unwrap_or("");
        assert!(
            status == 200 && err.is_empty(),
            "{method} {body} failed: {status} {v}"
        );
        v
    }

    /// What dockerd sends before it creates a network on `pool` (a CIDR):
    /// RequestPool, then RequestAddress of the gateway. Returns (pool ID,
    /// gateway address with its prefix).
    pub fn request_pool_and_gateway(&self, pool: &str) -> (String, String) {
        let req = serde_json::json!({"AddressSpace": "local", "Pool": pool});
        let p = self.call_ok("IpamDriver.RequestPool", &req);
        let pool_id = p["PoolID"].as_str().expect("PoolID").to_string();
        let gateway_type = "com.docker.network.gateway";
        let req =
            serde_json::json!({"PoolID": pool_id, "Options": {"RequestAddressType": gateway_type}});
        let gw = self.call_ok("IpamDriver.RequestAddress", &req);
        (
            pool_id,
            gw["Address"].as_str().expect("gateway").to_string(),
        )
    }

    /// What dockerd sends to remove one of its networks: DeleteNetwork,
    /// then the release of the gateway and of the pool.
    pub fn remove_docker_network(&self, network_id: &str, pool_id: &str, gateway: &str) {
        let net = serde_json::json!({"NetworkID": network_id});
        self.call_ok("NetworkDriver.DeleteNetwork", &net);
        let gw = serde_json::json!({"PoolID": pool_id, "Address": gateway});
        self.call_ok("IpamDriver.ReleaseAddress", &gw);
        let pool = serde_json::json!({"PoolID": pool_id});
        self.call_ok("IpamDriver.ReleasePool", &pool);
    }
}

impl Drop for Ferryd {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_file(&self.plugin_socket);
    }
}

/// A minimal HTTP/1.1 client over a unix socket (one request per connection).
pub fn http(socket: &Path, verb: &str, path: &str, body: &str) -> (u16, Value) {
    try_http(socket, verb, path, body).unwrap_or_else(|e| panic!("{e}"))
}

/// [`http`], returning errors (a JSON body that does not parse is `Null`).
pub fn try_http(socket: &Path, verb: &str, path: &str, body: &str) -> Result<(u16, Value), String> {
    let io = |e: std::io::Error| format!("{verb} {path} on {}: {e}", socket.display());
    let mut s = UnixStream::connect(socket).map_err(io)?;
    write!(
        s,
        "{verb} {path} HTTP/1.1\r\nHost: ferry\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(io)?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(io)?;
    let status: u16 = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let json = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    Ok((status, serde_json::from_str(json).unwrap_or(Value::Null)))
}
