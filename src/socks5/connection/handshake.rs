//! The RFC 1928 and RFC 1929 messages of a connection's handshake:
//! greeting, log in, request, parsed as they arrive (httparse-style: an
//! incomplete message is kept and parsed again with more bytes); before
//! them, a balancer's PROXY protocol header.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Connection, Context, Outcome, Peer, ProxyRefusal, State};
use crate::socks5::proxy_protocol::{self, Parse};
use crate::socks5::wire::{
    self, AuthRequest, Command, Greeting, Method, Reply, Request, Status, WireError,
};
use crate::users::{Authenticator, Credentials, Verdict};

impl Connection {
    /// Client bytes that cannot be used yet are kept, within the limit;
    /// after a refusal they are dropped.
    pub(super) fn keep(&mut self, bytes: &[u8]) {
        if matches!(self.state, State::Lingering { .. } | State::Closed) {
            self.unparsed = Vec::new();
            return;
        }
        if self.unparsed.len() + bytes.len() > self.config.max_unparsed {
            return self.close();
        }
        self.unparsed.extend_from_slice(bytes);
    }

    /// Consumes as many whole messages from `input` as the state allows;
    /// returns the bytes used. `log_in`: the greeting and the log in may be
    /// among them (not after a slow check: only the request is left then).
    pub(super) fn parse(
        &mut self,
        now: Instant,
        input: &[u8],
        ctx: &dyn Context,
        log_in: bool,
    ) -> usize {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            let step = match (&self.state, log_in) {
                (State::Greeting, true) => self.on_greeting(now, rest, ctx),
                (State::Auth, true) => self.on_auth(now, rest, ctx),
                (State::Request, _) => self.on_request(now, rest, ctx),
                _ => return used,
            };
            match step {
                Some(n) => used += n,
                None => return used,
            }
        }
    }

    /// Bytes of a balancer's connection before its PROXY header is
    /// complete. The header's parser bounds what is kept: it refuses a
    /// header longer than [`proxy_protocol::MAX_HEADER_LEN`] as soon as it
    /// can tell. What follows the header is the client's, kept for
    /// `handle_proxied`.
    pub(super) fn on_proxy_header(&mut self, balancer: SocketAddr, data: &[u8]) {
        let mut buf = std::mem::take(&mut self.unparsed);
        buf.extend_from_slice(data);
        match proxy_protocol::parse(&buf) {
            Parse::Incomplete => self.unparsed = buf,
            Parse::Complete { consumed, header } => {
                buf.drain(..consumed);
                self.unparsed = buf;
                // A header that names the connection's own source is the
                // balancer speaking for itself, as with LOCAL (HAProxy's
                // version 1 health checks send one).
                let own = |a: SocketAddr| {
                    a.port() == balancer.port()
                        && a.ip().to_canonical() == balancer.ip().to_canonical()
                };
                let client = match header.source() {
                    Some(source) if !own(source) => {
                        self.rare.get_or_insert_default().via = Some(balancer);
                        source
                    }
                    // LOCAL (a health check), no address, or its own: the
                    // balancer's.
                    _ => balancer,
                };
                self.state = State::Proxied { client, ask: true };
                self.keep(&[]);
            }
            Parse::Invalid(why) => self.drop_balancer(ProxyRefusal::Invalid(why)),
        }
    }

    /// `None`: incomplete. `Some(n)`: the state moved on after `n` bytes.
    fn on_greeting(&mut self, now: Instant, buf: &[u8], auth: &dyn Authenticator) -> Option<usize> {
        let (greeting, n) = match Greeting::parse(buf) {
            Ok(Status::Partial) => return None,
            Ok(Status::Complete(g, n)) => (g, n),
            Err(_) => {
                // Not SOCKS5 (a SOCKS4 client, say): a clear "no acceptable
                // method" is the one answer every SOCKS client understands.
                // A PROXY header from a peer that is not a balancer is one
                // too, and told apart: nobody may name their own client.
                self.out
                    .push(&wire::emit_method_selection(Method::NoAcceptable));
                let outcome =
                    if self.peer == Peer::Client && proxy_protocol::starts_like_header(buf) {
                        Outcome::ProxyHeader(ProxyRefusal::Untrusted)
                    } else {
                        Outcome::BadVersion
                    };
                self.refuse(now, outcome);
                return Some(0);
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
            self.out
                .push(&wire::emit_method_selection(Method::NoAcceptable));
            self.refuse(now, Outcome::NoAcceptableMethod);
            return Some(n);
        }
        self.out.push(&wire::emit_method_selection(wanted));
        self.state = if wanted == Method::UsernamePassword {
            State::Auth
        } else {
            State::Request
        };
        Some(n)
    }

    fn on_auth(&mut self, now: Instant, buf: &[u8], auth: &dyn Authenticator) -> Option<usize> {
        let (req, n) = match AuthRequest::parse(buf) {
            Ok(Status::Partial) => return None,
            Ok(Status::Complete(r, n)) => (r, n),
            Err(WireError::Version(_) | WireError::AddressType(_)) => {
                self.out.push(&wire::emit_auth_status(false));
                self.refuse(now, Outcome::BadVersion);
                return Some(0);
            }
        };
        match auth.check(req.username, req.password) {
            Verdict::Accept(name) => {
                self.user = Some(name);
                self.out.push(&wire::emit_auth_status(true));
                self.state = State::Request;
            }
            Verdict::Reject => {
                self.user = Some(String::from_utf8_lossy(req.username).into());
                self.auth_failed(now);
            }
            Verdict::Defer => {
                self.user = Some(String::from_utf8_lossy(req.username).into());
                let creds = Credentials {
                    username: req.username.to_vec(),
                    password: req.password.to_vec(),
                };
                self.state = State::Verifying {
                    ask: Some(Box::new(creds)),
                };
            }
        }
        Some(n)
    }

    pub(super) fn auth_failed(&mut self, now: Instant) {
        // RFC 1929: "If the server returns a `failure' (STATUS value other
        // than X'00') status, it MUST close the connection."
        self.out.push(&wire::emit_auth_status(false));
        self.refuse(now, Outcome::AuthFailed);
    }

    fn on_request(&mut self, now: Instant, buf: &[u8], ctx: &dyn Context) -> Option<usize> {
        let (req, n) = match Request::parse(buf) {
            Ok(Status::Partial) => return None,
            Ok(Status::Complete(r, n)) => (r, n),
            Err(WireError::AddressType(_)) => {
                self.fail(now, Reply::AddressTypeNotSupported);
                return Some(0);
            }
            Err(WireError::Version(_)) => {
                // X'01' tells the client; the outcome is BadVersion, not a
                // refused request (no connect was ever asked for).
                self.out
                    .push_reply(Reply::GeneralFailure, wire::UNSPECIFIED);
                self.refuse(now, Outcome::BadVersion);
                return Some(0);
            }
        };
        self.command = Some(req.command);
        if matches!(req.command, Command::Unknown(_)) {
            self.fail(now, Reply::CommandNotSupported);
            return Some(n);
        }
        if !self.admit_user(now, ctx) {
            self.target = Some(req.target);
            return Some(n);
        }
        match req.command {
            Command::Connect | Command::Bind => self.request(now, req.target, ctx),
            Command::UdpAssociate => self.associate(req.target),
            Command::Unknown(_) => self.fail(now, Reply::CommandNotSupported),
        }
        Some(n)
    }
}
