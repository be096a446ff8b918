//! Child processes (curl, socks5dctl, mount) and scratch directories.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::*;

/// Runs `cmd` with null stdin and a deadline; returns its output.
pub fn run_child(mut cmd: Command, what: &str) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    wait_output(&mut child, what)
}

/// Reads a child's stdout and stderr to the end and waits for it, killing it
/// after [`CHILD_TIMEOUT`].
pub fn wait_output(child: &mut Child, what: &str) -> Output {
    crate::common::wait_output(child, what, CHILD_TIMEOUT)
}

/// `curl` through the proxy with `user:pass` to `url`: the body on success,
/// the exit code and stderr otherwise. Proxy variables are removed.
pub fn curl(
    proxy: SocketAddr,
    user: &str,
    pass: &str,
    url: &str,
) -> Result<String, (Option<i32>, String)> {
    let mut cmd = Command::new("curl");
    cmd.args(["-q", "-sS", "--max-time", "10", "--socks5"])
        .arg(proxy.to_string())
        .arg("-U")
        .arg(format!("{user}:{pass}"))
        .arg(url);
    crate::common::scrub_env(&mut cmd);
    let out = run_child(cmd, "curl");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err((
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

pub use crate::common::Ctl;

/// Runs `socks5dctl ARGS` with the administrator password (and a new one)
/// in the environment.
pub fn ctl(args: &[&str], password: &str, new_password: Option<&str>) -> Ctl {
    let mut cmd = ctl_command(password, new_password);
    cmd.args(args);
    Ctl::from(run_child(cmd, "socks5dctl"))
}

/// socks5dctl, its environment scrubbed, with the administrator password
/// (and a new one) in it; the arguments are the caller's to add.
pub fn ctl_command(password: &str, new_password: Option<&str>) -> Command {
    let mut cmd = Command::new(SOCKS5DCTL);
    crate::common::scrub_env(&mut cmd).env("SOCKS5DCTL_PASSWORD", password);
    if let Some(p) = new_password {
        cmd.env("SOCKS5DCTL_NEW_PASSWORD", p);
    }
    cmd
}

/// A fresh directory under the target's test scratch folder (seen alike on
/// the host and inside UML, unlike /tmp), removed when dropped.
pub struct ScratchDir {
    /// Its path.
    pub path: PathBuf,
}

impl ScratchDir {
    /// Creates `CARGO_TARGET_TMPDIR/mgmt-NAME-PID`.
    pub fn new(name: &str) -> ScratchDir {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("mgmt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        ScratchDir { path }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A small tmpfs mounted for one test (needs root: the suite runs as root,
/// inside UML and on the host); unmounted when dropped.
pub struct TinyFs {
    /// The mount point.
    pub path: PathBuf,
}

impl TinyFs {
    /// Mounts a tmpfs of `size` (e.g. "64k") on a fresh directory under /tmp.
    pub fn mount(size: &str) -> TinyFs {
        let path = PathBuf::from(format!("/tmp/socks5d-mgmt-tinyfs-{}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let out = run_child(
            {
                let mut c = Command::new("mount");
                c.args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0700"),
                    "tmpfs",
                ])
                .arg(&path);
                c
            },
            "mount",
        );
        assert!(
            out.status.success(),
            "mount -t tmpfs on {} failed ({}): this case needs root, as the suite runs: {}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        TinyFs { path }
    }
}

impl Drop for TinyFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
        let _ = std::fs::remove_dir(&self.path);
    }
}
