//! Dropping root after the sockets are bound.

use std::ffi::CString;
use std::io;

use nix::unistd::{Gid, Uid, User, initgroups, setgid, setuid};

/// Becomes `name` (its uid, its primary gid and its supplementary groups).
/// Fails unless running as root, and verifies that root cannot be regained.
pub fn drop_to(name: &str) -> io::Result<()> {
    let user = User::from_name(name)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no user '{name}'")))?;
    if !Uid::effective().is_root() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "--run-as needs root",
        ));
    }
    let cname = CString::new(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // Groups first: once the uid is gone, they cannot be changed.
    initgroups(&cname, user.gid)?;
    setgid(user.gid)?;
    setuid(user.uid)?;
    if setuid(Uid::from_raw(0)).is_ok() || setgid(Gid::from_raw(0)).is_ok() {
        return Err(io::Error::other("root could be regained after dropping it"));
    }
    Ok(())
}
