//! What checking a log in needs, whoever asks: the credentials a client
//! sent (wiped when dropped, never printed), and the [`Authenticator`] a
//! protocol state machine asks about them.

use std::fmt;
use std::sync::Arc;

/// What the handshake needs to know about users.
pub trait Authenticator {
    /// Whether clients must authenticate (some user exists). RFC 1928 leaves the
    /// choice to the server; socks5d offers X'00' only when no user is configured.
    fn requires_auth(&self) -> bool;

    /// Checks a username and password in constant time with respect to the
    /// password; returns the user's name on success. May be slow (a stored
    /// Argon2id hash): a worker calls `check` instead.
    fn verify(&self, username: &[u8], password: &[u8]) -> Option<Arc<str>>;

    /// Checks a username and password if that is quick; `Verdict::Defer`
    /// when only the slow `verify` can tell, which then runs off the worker.
    fn check(&self, username: &[u8], password: &[u8]) -> Verdict {
        match self.verify(username, password) {
            Some(name) => Verdict::Accept(name),
            None => Verdict::Reject,
        }
    }
}

/// The quick answer to a log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The password is right.
    Accept(Arc<str>),
    /// The password is wrong (or the user unknown).
    Reject,
    /// Only the slow check can tell.
    Defer,
}

/// A user name and password waiting for a slow check. The password is
/// wiped when this is dropped and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name as sent.
    pub username: Vec<u8>,
    /// The password as sent.
    pub password: Vec<u8>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &String::from_utf8_lossy(&self.username))
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Drop for Credentials {
    fn drop(&mut self) {
        wipe(&mut self.password);
    }
}

/// Zeroes a password buffer before it is freed; `black_box` keeps the
/// compiler from skipping writes to memory that is about to die.
pub fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(bytes);
}
