//! A change to the user table, as the management protocol, SIGHUP and
//! `socks5d user` ask for it: made by the users' writer (`store`) in the
//! users file or in Redis (`redis_store`).

use std::fmt;

use super::{Role, wipe};

/// A change to the user table, made by the users' writer.
pub enum UserChange {
    /// ADD_USER.
    Add {
        /// Name.
        name: Vec<u8>,
        /// Password (wiped on drop).
        password: Vec<u8>,
        /// Role.
        role: Role,
    },
    /// DELETE_USER.
    Delete {
        /// Name.
        name: Vec<u8>,
    },
    /// SET_PASSWORD.
    SetPassword {
        /// Name.
        name: Vec<u8>,
        /// New password (wiped on drop).
        password: Vec<u8>,
    },
    /// RELOAD (and SIGHUP): the users file read again.
    Reload,
}

impl Drop for UserChange {
    fn drop(&mut self) {
        match self {
            UserChange::Add { password, .. } | UserChange::SetPassword { password, .. } => {
                wipe(password)
            }
            UserChange::Delete { .. } | UserChange::Reload => {}
        }
    }
}

impl fmt::Debug for UserChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (cmd, name) = match self {
            UserChange::Add { name, .. } => ("Add", name),
            UserChange::Delete { name } => ("Delete", name),
            UserChange::SetPassword { name, .. } => ("SetPassword", name),
            UserChange::Reload => return f.write_str("UserChange::Reload"),
        };
        write!(f, "UserChange::{cmd}({:?})", String::from_utf8_lossy(name))
    }
}

/// `op=add-user user=NAME`, the way log lines name a change (no password).
impl fmt::Display for UserChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, name) = match self {
            UserChange::Add { name, .. } => ("add-user", name),
            UserChange::Delete { name } => ("del-user", name),
            UserChange::SetPassword { name, .. } => ("set-password", name),
            UserChange::Reload => return f.write_str("op=reload"),
        };
        write!(f, "op={op} user=")?;
        super::write_log_safe(f, &String::from_utf8_lossy(name))
    }
}
