//! One management association as a state machine with no I/O: log in, then
//! requests (docs/management-protocol.md).
//!
//! The endpoint feeds whole messages (`handle_message`) and carries out the
//! [`Action`]s from `poll_action`: send a message, close, or hand slow work
//! (a password check, a user change) to another thread, whose answer comes
//! back through `login_checked` or `change_done`. While such work is under
//! way later messages wait in order, so responses keep request order.
//!
//! Good credentials do not make a session by themselves: the session asks
//! the endpoint for one of the server's session places
//! ([`Action::ClaimSlot`], answered with `slot_claimed`), since only the
//! endpoint knows how many sessions are open.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::metrics::Snapshot;
use crate::mgmt::wire::{
    self, Command, Login, LoginStatus, MAX_LIST, Request, RequestError, Status, metric,
};
pub use crate::users::store::UserChange;
use crate::users::{Credentials, Role, UserError, UserTable};

/// Requests a client may send ahead of the responses before its association
/// is aborted: enough for any honest pipelining, a bound for the rest.
pub const MAX_PENDING: usize = 256;

/// What the session reads from the server.
pub trait Backend {
    /// The counters now.
    fn metrics(&self) -> Snapshot;
    /// The user table now.
    fn users(&self) -> Arc<UserTable>;
    /// The per-user counters of `user` (USER_METRICS IDs and values), as
    /// many as the server keeps.
    fn user_metrics(&self, user: &[u8]) -> Vec<(u8, u64)>;
}

/// The command a user change answers.
pub fn command_of(change: &UserChange) -> Command {
    match change {
        UserChange::Add { .. } => Command::AddUser,
        UserChange::Delete { .. } => Command::DeleteUser,
        UserChange::SetPassword { .. } => Command::SetPassword,
        UserChange::Reload => Command::Reload,
    }
}

/// The response status for the users' writer's answer (section 4).
pub fn status_of(result: Result<(), UserError>) -> Status {
    match result {
        Ok(()) => Status::Success,
        Err(UserError::Exists) => Status::UserExists,
        Err(UserError::NoSuchUser) => Status::NoSuchUser,
        Err(UserError::LastAdmin) => Status::Forbidden,
        // RELOAD: "on a bad file nothing changes and the status is X'07'".
        Err(UserError::NotDurable | UserError::Unreadable) => Status::ServerError,
        Err(UserError::Full) => Status::LimitReached,
        Err(UserError::InvalidName | UserError::InvalidPassword) => Status::Malformed,
    }
}

/// What the endpoint must do.
#[derive(Debug)]
pub enum Action {
    /// Send one message on `stream`.
    Send {
        /// The stream the request came on.
        stream: u16,
        /// One whole message.
        message: Vec<u8>,
    },
    /// Shut the association down gracefully once everything before it is sent.
    Shutdown,
    /// Check a log in on the blocking pool; answer with `login_checked`.
    CheckLogin(Credentials),
    /// Apply a user change on the users' writer; answer with `change_done`.
    Change(UserChange),
    /// The log in is good: take one of the server's session places if one
    /// is free (--max-admin-sessions); answer with `slot_claimed`.
    ClaimSlot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the log-in message.
    LoggingIn,
    /// A log in is being checked.
    Checking { stream: u16 },
    /// The log in is good; waiting for a session place.
    Claiming { stream: u16 },
    /// Logged in.
    Established,
    /// A user change is being made.
    Changing { stream: u16, command: u8 },
    /// Closed: every later message is ignored.
    Closed,
}

/// The client pipelined more than [`MAX_PENDING`] requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyPending;

/// One association's session.
#[derive(Debug)]
pub struct Session {
    state: State,
    admin: Option<Arc<str>>,
    pending: VecDeque<(u16, Vec<u8>)>,
    out: VecDeque<Action>,
    throttled: bool,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A session waiting for its log in.
    pub fn new() -> Self {
        Session {
            state: State::LoggingIn,
            admin: None,
            pending: VecDeque::new(),
            out: VecDeque::new(),
            throttled: false,
        }
    }

    /// The administrator whose good log in waits for a session place
    /// (`Action::ClaimSlot`), if any.
    pub fn claiming(&self) -> Option<&Arc<str>> {
        match self.state {
            State::Claiming { .. } => self.admin.as_ref(),
            _ => None,
        }
    }

    /// The administrator logged in, if any.
    pub fn admin(&self) -> Option<&Arc<str>> {
        match self.state {
            State::Established | State::Changing { .. } => self.admin.as_ref(),
            _ => None,
        }
    }

    /// Whether the next message is the log in.
    pub fn awaits_login(&self) -> bool {
        self.state == State::LoggingIn
    }

    /// Refuses the coming log in without checking it (its source address
    /// has had too many refusals). The answer is the same X'01' as for a
    /// wrong password: it tells nothing about the user.
    pub fn throttle(&mut self) {
        self.throttled = true;
    }

    /// Whether a log in has arrived and is being checked (or its session
    /// place claimed).
    pub fn is_checking(&self) -> bool {
        matches!(self.state, State::Checking { .. } | State::Claiming { .. })
    }

    /// Whether the session has closed (after a failed log in).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether nothing is under way: no log in or change waits for an
    /// answer, no request waits behind one, and no action waits to be
    /// taken. A peer that has sent its last message may be closed then.
    pub fn is_idle(&self) -> bool {
        matches!(
            self.state,
            State::LoggingIn | State::Established | State::Closed
        ) && self.pending.is_empty()
            && self.out.is_empty()
    }

    /// The next thing to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// Takes one whole message that arrived on `stream`.
    pub fn handle_message(
        &mut self,
        stream: u16,
        msg: &[u8],
        backend: &dyn Backend,
    ) -> Result<(), TooManyPending> {
        match self.state {
            State::Closed => Ok(()),
            State::Checking { .. } | State::Claiming { .. } | State::Changing { .. } => {
                if self.pending.len() >= MAX_PENDING {
                    return Err(TooManyPending);
                }
                self.pending.push_back((stream, msg.to_vec()));
                Ok(())
            }
            State::LoggingIn => {
                self.on_login(stream, msg, backend);
                Ok(())
            }
            State::Established => {
                self.on_request(stream, msg, backend);
                Ok(())
            }
        }
    }

    fn on_login(&mut self, stream: u16, msg: &[u8], backend: &dyn Backend) {
        let login = match Login::parse(msg) {
            Ok(l) => l,
            Err(status) => return self.refuse(stream, status),
        };
        if self.throttled {
            return self.refuse(stream, LoginStatus::Denied);
        }
        let users = backend.users();
        // A correct password of a known administrator is accepted at once;
        // everything else takes the slow path, so that a wrong password, an
        // unknown user and a non-administrator all look alike, in time too.
        if let Some(user) = users.find(login.username)
            && user.role == Role::Admin
            && user.secret.quick(login.password) == Some(true)
        {
            return self.claim(stream, Arc::clone(&user.name));
        }
        self.state = State::Checking { stream };
        self.out.push_back(Action::CheckLogin(Credentials {
            username: login.username.to_vec(),
            password: login.password.to_vec(),
        }));
    }

    /// The answer to `Action::CheckLogin`: the administrator's name, or
    /// `None` when the log in is refused. (`_backend` is unused since a
    /// good log in claims its session place first; it stays until the
    /// endpoint's log-in throttle, which calls this, is reworked.)
    pub fn login_checked(&mut self, admin: Option<Arc<str>>, _backend: &dyn Backend) {
        let State::Checking { stream } = self.state else {
            return;
        };
        match admin {
            Some(name) => self.claim(stream, name),
            None => self.refuse(stream, LoginStatus::Denied),
        }
    }

    fn claim(&mut self, stream: u16, admin: Arc<str>) {
        self.admin = Some(admin);
        self.state = State::Claiming { stream };
        self.out.push_back(Action::ClaimSlot);
    }

    /// The answer to `Action::ClaimSlot`: whether the session got a place.
    ///
    /// Without one the log in is refused with X'03' (server error) and the
    /// association closed gracefully (docs/management-protocol.md section 3), not aborted: the
    /// administrator learns why, and the answer comes only after good
    /// credentials, so an unauthenticated peer cannot tell from it how many
    /// sessions are open, and a wrong password still gets X'01' alone.
    pub fn slot_claimed(&mut self, granted: bool, backend: &dyn Backend) {
        let State::Claiming { stream } = self.state else {
            return;
        };
        if !granted {
            self.admin = None;
            return self.refuse(stream, LoginStatus::ServerError);
        }
        self.state = State::Established;
        self.send(
            stream,
            wire::emit_login_reply(LoginStatus::Success).to_vec(),
        );
        self.run_pending(backend);
    }

    /// docs/management-protocol.md section 3: "After any status other than X'00' the server
    /// sends the reply and then closes the association gracefully."
    fn refuse(&mut self, stream: u16, status: LoginStatus) {
        self.send(stream, wire::emit_login_reply(status).to_vec());
        self.out.push_back(Action::Shutdown);
        self.state = State::Closed;
        self.pending.clear();
    }

    fn on_request(&mut self, stream: u16, msg: &[u8], backend: &dyn Backend) {
        let req = match Request::parse(msg) {
            Ok(r) => r,
            // Section 6: a malformed request does not close the session.
            Err(RequestError { status, command }) => {
                return self.respond(stream, status, command, &[]);
            }
        };
        let cmd = u8::from(req.command());
        match req {
            Request::HistoricConnections => self.counter(
                stream,
                Command::HistoricConnections,
                backend.metrics().historic,
            ),
            Request::ConcurrentConnections => self.counter(
                stream,
                Command::ConcurrentConnections,
                backend.metrics().concurrent,
            ),
            Request::BytesTransferred => {
                self.counter(stream, Command::BytesTransferred, backend.metrics().bytes())
            }
            Request::Metrics => {
                let m = backend.metrics();
                let values = [
                    (metric::HISTORIC, m.historic),
                    (metric::CONCURRENT, m.concurrent),
                    (metric::BYTES, m.bytes()),
                    (metric::BYTES_UP, m.bytes_up),
                    (metric::BYTES_DOWN, m.bytes_down),
                    (metric::AUTH_FAILED, m.auth_failed),
                    (metric::CONNECT_FAILED, m.connect_failed),
                    (metric::UPTIME, m.uptime_secs),
                    (metric::UDP_ASSOCIATIONS, m.udp_associations),
                    (metric::UDP_DATAGRAMS, m.udp_datagrams),
                    (metric::UDP_DROPPED, m.udp_dropped),
                    (metric::DENIED, m.denied),
                    (metric::BINDS, m.binds),
                    (metric::REFUSED, m.refused),
                    (metric::AUTH_PENALISED, m.auth_penalised),
                    (metric::PENALTIES, m.penalties),
                    (metric::CHECKS_REFUSED, m.checks_refused),
                    (metric::EVICTED, m.evicted),
                    (metric::MGMT_ABORTED, m.mgmt_aborted),
                    (metric::LOG_SUPPRESSED, m.log_suppressed),
                    (metric::SESSION_LIMIT, m.session_limit),
                    (metric::PROXY_REFUSED, m.proxy_refused),
                    (metric::USERS_STORE_STALE, m.users_store_stale),
                    (metric::USERS_STORE_LOST, m.users_store_lost),
                ];
                let mut out = Vec::with_capacity(4 + values.len() * 9);
                wire::emit_metrics(&values, &mut out);
                self.send(stream, out);
            }
            Request::ListUsers { offset } => {
                let users = backend.users();
                let total = u32::try_from(users.len()).unwrap_or(u32::MAX);
                let list = users
                    .entries()
                    .skip(offset as usize)
                    .take(MAX_LIST)
                    .map(|(name, u)| (u.role, name));
                let mut out = Vec::new();
                wire::emit_list_users(total, list, &mut out);
                self.send(stream, out);
            }
            Request::AddUser {
                role,
                username,
                password,
            } => self.change(
                stream,
                cmd,
                UserChange::Add {
                    name: username.to_vec(),
                    password: password.to_vec(),
                    role,
                },
            ),
            Request::DeleteUser { username } => self.change(
                stream,
                cmd,
                UserChange::Delete {
                    name: username.to_vec(),
                },
            ),
            Request::SetPassword { username, password } => self.change(
                stream,
                cmd,
                UserChange::SetPassword {
                    name: username.to_vec(),
                    password: password.to_vec(),
                },
            ),
            Request::UserMetrics { offset } => {
                // "sorted and paged exactly like LIST_USERS".
                let users = backend.users();
                let total = u32::try_from(users.len()).unwrap_or(u32::MAX);
                let page: Vec<_> = users
                    .entries()
                    .skip(offset as usize)
                    .take(MAX_LIST)
                    .map(|(name, _)| (name, backend.user_metrics(name)))
                    .collect();
                let mut out = Vec::new();
                let entries = page.iter().map(|(name, values)| (*name, &values[..]));
                wire::emit_user_metrics(total, entries, &mut out);
                self.send(stream, out);
            }
            // The users' writer reads the file, so that a reload never
            // interleaves with a user change.
            Request::Reload => self.change(stream, cmd, UserChange::Reload),
        }
    }

    fn change(&mut self, stream: u16, command: u8, change: UserChange) {
        self.state = State::Changing { stream, command };
        self.out.push_back(Action::Change(change));
    }

    /// The answer to `Action::Change`.
    pub fn change_done(&mut self, status: Status, backend: &dyn Backend) {
        let State::Changing { stream, command } = self.state else {
            return;
        };
        self.state = State::Established;
        self.respond(stream, status, command, &[]);
        self.run_pending(backend);
    }

    fn run_pending(&mut self, backend: &dyn Backend) {
        while self.state == State::Established {
            let Some((stream, msg)) = self.pending.pop_front() else {
                return;
            };
            self.on_request(stream, &msg, backend);
        }
    }

    fn counter(&mut self, stream: u16, command: Command, value: u64) {
        let mut out = Vec::with_capacity(11);
        wire::emit_counter(command, value, &mut out);
        self.send(stream, out);
    }

    fn respond(&mut self, stream: u16, status: Status, command: u8, data: &[u8]) {
        let mut out = Vec::with_capacity(3 + data.len());
        wire::emit_response(status, command, data, &mut out);
        self.send(stream, out);
    }

    fn send(&mut self, stream: u16, message: Vec<u8>) {
        self.out.push_back(Action::Send { stream, message });
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
