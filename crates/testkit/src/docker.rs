//! A private `dockerd` for a test: its own data root, exec root, pid file and
//! API socket, no default bridge and no iptables rules (so other tests on the
//! machine are not affected), stopped and cleaned up on drop.

use crate::sh_ok;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        assert!(
            Path::new("/usr/sbin/dockerd").exists(),
            "dockerd missing: install the Debian package docker.io"
        );
        std::fs::create_dir_all(dir).expect("docker dir");
        let sock = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("dockerd log");
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let d = Dockerd {
            child,
            dir: dir.to_path_buf(),
            host: format!("unix://{}", sock.display()),
        };
        let start = Instant::now();
        while !d.ok("info") {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "dockerd did not answer within 60s; log: {}",
                std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    fn cmd(&self, args: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("docker {args}"))
            .env("DOCKER_HOST", &self.host);
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
        let out = self.cmd(args).output().expect("docker");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    pub fn ok(&self, args: &str) -> bool {
        self.cmd(&format!("{args} >/dev/null 2>&1"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Imports a tiny image from Debian's busybox-static with the applets tests use.
    pub fn import_busybox(&self, name: &str) {
        assert!(
            Path::new("/bin/busybox").exists(),
            "/bin/busybox missing: install the Debian package busybox-static"
        );
        let root = self.dir.join("image-root");
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("image root");
        std::fs::copy("/bin/busybox", bin.join("busybox")).expect("copy busybox");
        for applet in [
            "sh", "ping", "sleep", "ip", "httpd", "wget", "cat", "nc", "echo",
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
        assert!(ok, "docker import of {name} failed");
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.cmd("rm -f $(docker ps -aq) >/dev/null 2>&1").status();
        // Networks too, while their plugin is still up to tear them down.
        let _ = self.cmd("network prune -f >/dev/null 2>&1").status();
        // SIGTERM lets dockerd unmount its layers and remove its sockets.
        let _ = nix_kill(self.child.id());
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

fn nix_kill(pid: u32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
}
