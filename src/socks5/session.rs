//! The SOCKS5 handshake of one client as a state machine with no I/O.
//!
//! The reactor feeds it the bytes the client sent (`handle_input`), sends what
//! `poll_transmit` returns, and acts on the returned [`Event`]: wait for more
//! bytes, connect to a target, or close. Once the reactor has tried the target it
//! reports back with `connected` or `failed`, which queue the final reply.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

pub use crate::users::{Authenticator, Credentials, Verdict, wipe};

use crate::socks5::wire::{
    self, AuthRequest, Command, Greeting, Method, Reply, Request, Status, TargetAddr, WireError,
};

/// What the reactor must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Every complete message was used; wait for more bytes.
    Partial,
    /// The client asked to CONNECT here. Bytes after the request are payload.
    Connect(TargetAddr),
    /// Send what `poll_transmit` holds, then close the connection.
    Close(Outcome),
    /// Check these credentials with the slow `Authenticator::verify` off the
    /// worker, then call `verified`. Nothing more is read until then.
    Verify(Credentials),
}

/// Why a handshake ended without a tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The greeting or request had a VER other than X'05', or the RFC 1929
    /// request a VER other than X'01'.
    BadVersion,
    /// No method the client offered is acceptable (reply X'FF').
    NoAcceptableMethod,
    /// RFC 1929 authentication failed.
    AuthFailed,
    /// The request was refused with this reply (never `Succeeded`).
    Rejected(Reply),
}

/// Bytes queued for the client: at most a method selection, an RFC 1929
/// status and a reply.
#[derive(Clone, Copy)]
pub struct Transmit {
    buf: [u8; 2 + 2 + wire::MAX_REPLY_LEN],
    len: u8,
}

impl Transmit {
    const EMPTY: Transmit = Transmit {
        buf: [0; 2 + 2 + wire::MAX_REPLY_LEN],
        len: 0,
    };

    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    fn push(&mut self, bytes: &[u8]) {
        let start = self.len as usize;
        self.buf[start..start + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len() as u8;
    }
}

impl fmt::Debug for Transmit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Transmit({:02x?})", self.as_bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Greeting,
    Auth,
    Request,
    /// RFC 1929 credentials are being checked off the worker.
    Verifying,
    /// Request parsed; waiting for `connected` or `failed`.
    Connecting,
    /// Success reply queued: the tunnel is open.
    Established,
    /// A final answer is queued; nothing more is read.
    Closed,
}

/// One client's handshake: greeting, optional RFC 1929 log in, request.
#[derive(Debug)]
pub struct Handshake {
    state: State,
    out: Transmit,
    user: Option<Arc<str>>,
}

impl Default for Handshake {
    fn default() -> Self {
        Self::new()
    }
}

impl Handshake {
    /// A handshake waiting for the client's greeting.
    pub fn new() -> Self {
        Handshake {
            state: State::Greeting,
            out: Transmit::EMPTY,
            user: None,
        }
    }

    /// The authenticated user, or for a failed log in the name that was tried.
    pub fn user(&self) -> Option<&Arc<str>> {
        self.user.as_ref()
    }

    /// Whether the client is still anonymous: no user name has come with
    /// it, neither logged in nor being checked, and it has made no request.
    /// That is its greeting, its log in before the credentials are complete,
    /// or its request when no authentication is required.
    pub fn is_anonymous(&self) -> bool {
        self.user.is_none() && matches!(self.state, State::Greeting | State::Auth | State::Request)
    }

    /// Whether the success reply has been queued.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    /// Takes the bytes queued for the client, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if self.out.len == 0 {
            return None;
        }
        Some(std::mem::replace(&mut self.out, Transmit::EMPTY))
    }

    /// Consumes as many whole messages from `input` as the current state allows.
    ///
    /// Returns the bytes used and what to do next. After `Event::Connect` the
    /// rest of `input` is early payload for the target; after `Event::Close`
    /// nothing more is read.
    pub fn handle_input(&mut self, input: &[u8], auth: &dyn Authenticator) -> (usize, Event) {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let step = match self.state {
                State::Greeting => self.on_greeting(rest, auth),
                State::Auth => self.on_auth(rest, auth),
                State::Request => self.on_request(rest),
                State::Verifying | State::Connecting | State::Established | State::Closed => {
                    return (used, Event::Partial);
                }
            };
            match step {
                Step::Consumed(n) => used += n,
                Step::Partial => return (used, Event::Partial),
                Step::Done(n, event) => return (used + n, event),
            }
        }
    }

    fn on_greeting(&mut self, buf: &[u8], auth: &dyn Authenticator) -> Step {
        let (greeting, n) = match Greeting::parse(buf) {
            Ok(Status::Partial) => return Step::Partial,
            Ok(Status::Complete(g, n)) => (g, n),
            Err(_) => {
                // Not SOCKS5 (a SOCKS4 client, say): a clear "no acceptable
                // method" is the one answer every SOCKS client understands.
                return self.close(
                    &wire::emit_method_selection(Method::NoAcceptable),
                    Outcome::BadVersion,
                    0,
                );
            }
        };
        let wanted = if auth.requires_auth() {
            Method::UsernamePassword
        } else {
            Method::NoAuth
        };
        if !greeting.offers(wanted) {
            // RFC 1928 section 3: "If the selected METHOD is X'FF', none of the
            // methods listed by the client are acceptable, and the client MUST
            // close the connection." We close it too.
            let reply = wire::emit_method_selection(Method::NoAcceptable);
            return self.close(&reply, Outcome::NoAcceptableMethod, n);
        }
        self.out.push(&wire::emit_method_selection(wanted));
        self.state = if wanted == Method::UsernamePassword {
            State::Auth
        } else {
            State::Request
        };
        Step::Consumed(n)
    }

    fn on_auth(&mut self, buf: &[u8], auth: &dyn Authenticator) -> Step {
        let (req, n) = match AuthRequest::parse(buf) {
            Ok(Status::Partial) => return Step::Partial,
            Ok(Status::Complete(r, n)) => (r, n),
            Err(WireError::Version(_) | WireError::AddressType(_)) => {
                return self.close(&wire::emit_auth_status(false), Outcome::BadVersion, 0);
            }
        };
        match auth.check(req.username, req.password) {
            Verdict::Accept(name) => {
                self.user = Some(name);
                self.out.push(&wire::emit_auth_status(true));
                self.state = State::Request;
                Step::Consumed(n)
            }
            Verdict::Reject => {
                self.user = Some(String::from_utf8_lossy(req.username).into());
                self.auth_failed(n)
            }
            Verdict::Defer => {
                self.user = Some(String::from_utf8_lossy(req.username).into());
                self.state = State::Verifying;
                let creds = Credentials {
                    username: req.username.to_vec(),
                    password: req.password.to_vec(),
                };
                Step::Done(n, Event::Verify(creds))
            }
        }
    }

    fn auth_failed(&mut self, used: usize) -> Step {
        // RFC 1929: "If the server returns a `failure' (STATUS value other
        // than X'00') status, it MUST close the connection."
        self.close(&wire::emit_auth_status(false), Outcome::AuthFailed, used)
    }

    /// The answer to `Event::Verify`: the user's name, or `None` when the
    /// credentials are wrong. Returns `Event::Partial` to go on reading, or
    /// `Event::Close` after a failure.
    pub fn verified(&mut self, user: Option<Arc<str>>) -> Event {
        if self.state != State::Verifying {
            return Event::Partial;
        }
        match user {
            Some(name) => {
                self.user = Some(name);
                self.out.push(&wire::emit_auth_status(true));
                self.state = State::Request;
                Event::Partial
            }
            None => match self.auth_failed(0) {
                Step::Done(_, event) => event,
                Step::Consumed(_) | Step::Partial => unreachable!("auth_failed closes"),
            },
        }
    }

    fn on_request(&mut self, buf: &[u8]) -> Step {
        let (req, n) = match Request::parse(buf) {
            Ok(Status::Partial) => return Step::Partial,
            Ok(Status::Complete(r, n)) => (r, n),
            Err(WireError::AddressType(_)) => {
                return self.reject(Reply::AddressTypeNotSupported, 0);
            }
            Err(WireError::Version(_)) => {
                // X'01' tells the client; the outcome is BadVersion, not a
                // refused request (no connect was ever asked for).
                let mut reply = [0u8; wire::MAX_REPLY_LEN];
                let len = wire::emit_reply(Reply::GeneralFailure, wire::UNSPECIFIED, &mut reply);
                return self.close(&reply[..len], Outcome::BadVersion, 0);
            }
        };
        match req.command {
            Command::Connect => {
                self.state = State::Connecting;
                Step::Done(n, Event::Connect(req.target))
            }
            Command::Bind | Command::UdpAssociate | Command::Unknown(_) => {
                self.reject(Reply::CommandNotSupported, n)
            }
        }
    }

    fn reject(&mut self, reply: Reply, used: usize) -> Step {
        let mut buf = [0u8; wire::MAX_REPLY_LEN];
        let len = wire::emit_reply(reply, wire::UNSPECIFIED, &mut buf);
        self.close(&buf[..len], Outcome::Rejected(reply), used)
    }

    fn close(&mut self, reply: &[u8], outcome: Outcome, used: usize) -> Step {
        self.out.push(reply);
        self.state = State::Closed;
        Step::Done(used, Event::Close(outcome))
    }

    /// The target is connected from `bound`: queues the success reply.
    pub fn connected(&mut self, bound: SocketAddr) {
        debug_assert_eq!(self.state, State::Connecting);
        let mut buf = [0u8; wire::MAX_REPLY_LEN];
        let len = wire::emit_reply(Reply::Succeeded, bound, &mut buf);
        self.out.push(&buf[..len]);
        self.state = State::Established;
    }

    /// No target address could be connected: queues the failure reply. The
    /// connection must be closed once it is sent.
    pub fn failed(&mut self, reply: Reply) -> Outcome {
        debug_assert_eq!(self.state, State::Connecting);
        debug_assert_ne!(reply, Reply::Succeeded);
        let mut buf = [0u8; wire::MAX_REPLY_LEN];
        let len = wire::emit_reply(reply, wire::UNSPECIFIED, &mut buf);
        self.out.push(&buf[..len]);
        self.state = State::Closed;
        Outcome::Rejected(reply)
    }
}

enum Step {
    Consumed(usize),
    Partial,
    Done(usize, Event),
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
