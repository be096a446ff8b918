//! Management protocol messages (docs/management-protocol.md):
//! parse and emit, with no I/O.
//!
//! SCTP delivers whole messages (the transport reassembles a message sent in
//! parts), and so does a Unix-domain SOCK_SEQPACKET socket (one packet, one
//! message), so every parser here takes one complete message and there is no
//! partial state: a message is valid exactly as it stands or it is not. Parsers
//! read untrusted bytes through a small cursor whose every access is checked, so no
//! input can make them panic.
//!
//! The server side uses [`Login::parse`], [`emit_login_reply`],
//! [`Request::parse`] and the `emit_*` response writers; the client side
//! (socks5dctl, tests) uses [`Login::emit`], [`parse_login_reply`],
//! [`Request::emit`] and [`Response::parse`].

use std::fmt;

use crate::users::{Role, valid_name, valid_password};

/// The protocol version, X'01', in VER of every message.
pub const VERSION: u8 = 0x01;
/// The largest request, in bytes. "A longer request is malformed."
pub const MAX_REQUEST: usize = 1024;
/// The largest response, in bytes (one SCTP message).
pub const MAX_RESPONSE: usize = 65535;
/// The most users one LIST_USERS response carries.
pub const MAX_LIST: usize = 1000;

/// VER STATUS CMD: the part of every response before DATA.
const RESPONSE_HEADER_LEN: usize = 3;
/// TOTAL (u32) and COUNT (u16) at the start of LIST_USERS DATA.
const LIST_HEADER_LEN: usize = 4 + 2;
/// Where COUNT sits in a LIST_USERS response, from its first byte.
const LIST_COUNT: std::ops::Range<usize> = RESPONSE_HEADER_LEN + 4..RESPONSE_HEADER_LEN + 6;

// ------------------------------------------------------------------ reader

/// A checked cursor over one untrusted message. Every read is bounds-checked
/// and answers `None` when the bytes are not there, so parsers built on it
/// cannot panic.
#[derive(Debug)]
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { rest: buf }
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.bytes(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    /// LEN then LEN bytes. "Strings ... are written as LEN (1 byte, 1 to 255)":
    /// LEN 0 is malformed, so it reads as nothing.
    fn string(&mut self) -> Option<&'a [u8]> {
        match self.u8()? {
            0 => None,
            len => self.bytes(usize::from(len)),
        }
    }

    /// A string that is a valid user name: "A user name must not contain NUL,
    /// ':' or any byte below X'20' or equal to X'7F'."
    fn name(&mut self) -> Option<&'a [u8]> {
        self.string().filter(|s| valid_name(s))
    }

    /// A string that is a valid password: "a password must not contain NUL, CR
    /// or LF."
    fn password(&mut self) -> Option<&'a [u8]> {
        self.string().filter(|s| valid_password(s))
    }

    /// Whether every byte was used: lengths must add up to the message length
    /// exactly, so trailing bytes are as malformed as missing ones.
    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// `value` if the message is used up, else `None`.
    fn finish<T>(self, value: T) -> Option<T> {
        self.is_empty().then_some(value)
    }
}

/// Writes LEN then `s`.
///
/// # Panics
/// If `s` is longer than 255 bytes.
fn emit_string(s: &[u8], out: &mut Vec<u8>) {
    let len = u8::try_from(s.len()).expect("a string of at most 255 bytes");
    out.push(len);
    out.extend_from_slice(s);
}

/// Bytes a string takes on the wire: LEN and the string.
fn string_len(s: &[u8]) -> usize {
    1 + s.len()
}

/// Writes `bytes` for a Debug impl: escaped and never raw, since they come from
/// the network.
fn debug_bytes(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

// ------------------------------------------------------------------ log in

/// The log-in request, the first message of every association (section 2).
///
/// ```text
/// +-----+------+----------+------+----------+
/// | VER | ULEN |  UNAME   | PLEN |  PASSWD  |
/// +-----+------+----------+------+----------+
/// |  1  |  1   | 1 to 255 |  1   | 1 to 255 |
/// +-----+------+----------+------+----------+
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Login<'a> {
    /// UNAME as sent, 1 to 255 bytes. Its content is not checked here: section 2
    /// only makes the lengths malformed, and a name no user can have is simply
    /// denied.
    pub username: &'a [u8],
    /// PASSWD as sent, 1 to 255 bytes.
    pub password: &'a [u8],
}

// Passwords never appear in any log (section 5), so not in Debug either.
impl fmt::Debug for Login<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &debug_bytes(self.username))
            .field("password", &"<redacted>")
            .finish()
    }
}

impl<'a> Login<'a> {
    /// Parses a whole log-in message.
    ///
    /// The error is the status to reply with: [`LoginStatus::BadVersion`] when
    /// VER is not X'01', [`LoginStatus::Malformed`] otherwise.
    pub fn parse(msg: &'a [u8]) -> Result<Self, LoginStatus> {
        let mut r = Reader::new(msg);
        let ver = r.u8().ok_or(LoginStatus::Malformed)?;
        // X'02': "invalid version (VER is not X'01')", checked before anything else.
        if ver != VERSION {
            return Err(LoginStatus::BadVersion);
        }
        // X'04': "ULEN or PLEN is 0, or the lengths do not add up to the message
        // length" — `string` refuses LEN 0 and `finish` refuses trailing bytes.
        Self::parse_fields(r).ok_or(LoginStatus::Malformed)
    }

    /// ULEN UNAME PLEN PASSWD, and nothing after.
    fn parse_fields(mut r: Reader<'a>) -> Option<Self> {
        let username = r.string()?;
        let password = r.string()?;
        r.finish(Login { username, password })
    }

    /// Bytes this message takes on the wire.
    pub fn buffer_len(&self) -> usize {
        1 + string_len(self.username) + string_len(self.password)
    }

    /// Appends this message to `out`.
    ///
    /// # Panics
    /// If the user name or the password is longer than 255 bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        out.push(VERSION);
        emit_string(self.username, out);
        emit_string(self.password, out);
    }
}

/// The STATUS of the log-in reply (section 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginStatus {
    /// X'00' success: the session is established.
    Success,
    /// X'01' incorrect user or password, or the user is not an administrator.
    Denied,
    /// X'02' invalid version (VER is not X'01').
    BadVersion,
    /// X'03' server error.
    ServerError,
    /// X'04' malformed log-in message.
    Malformed,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for LoginStatus {
    fn from(b: u8) -> Self {
        match b {
            0x00 => LoginStatus::Success,
            0x01 => LoginStatus::Denied,
            0x02 => LoginStatus::BadVersion,
            0x03 => LoginStatus::ServerError,
            0x04 => LoginStatus::Malformed,
            other => LoginStatus::Unknown(other),
        }
    }
}

impl From<LoginStatus> for u8 {
    fn from(s: LoginStatus) -> u8 {
        match s {
            LoginStatus::Success => 0x00,
            LoginStatus::Denied => 0x01,
            LoginStatus::BadVersion => 0x02,
            LoginStatus::ServerError => 0x03,
            LoginStatus::Malformed => 0x04,
            LoginStatus::Unknown(b) => b,
        }
    }
}

impl fmt::Display for LoginStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginStatus::Success => f.write_str("success"),
            LoginStatus::Denied => {
                f.write_str("incorrect user or password, or not an administrator")
            }
            LoginStatus::BadVersion => f.write_str("invalid version"),
            LoginStatus::ServerError => f.write_str("server error"),
            LoginStatus::Malformed => f.write_str("malformed log-in message"),
            LoginStatus::Unknown(b) => write!(f, "unknown log-in status X'{b:02X}'"),
        }
    }
}

/// The log-in reply: VER X'01', STATUS.
pub fn emit_login_reply(status: LoginStatus) -> [u8; 2] {
    [VERSION, status.into()]
}

/// Parses a log-in reply: `None` unless it is exactly VER X'01' and a STATUS.
pub fn parse_login_reply(msg: &[u8]) -> Option<LoginStatus> {
    match *msg {
        [VERSION, status] => Some(LoginStatus::from(status)),
        _ => None,
    }
}

// ---------------------------------------------------------------- commands

/// The CMD of a request (section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// X'01' HISTORIC_CONNECTIONS.
    HistoricConnections,
    /// X'02' CONCURRENT_CONNECTIONS.
    ConcurrentConnections,
    /// X'03' BYTES_TRANSFERRED.
    BytesTransferred,
    /// X'04' METRICS.
    Metrics,
    /// X'05' LIST_USERS.
    ListUsers,
    /// X'06' ADD_USER.
    AddUser,
    /// X'07' DELETE_USER.
    DeleteUser,
    /// X'08' SET_PASSWORD.
    SetPassword,
    /// X'09' USER_METRICS.
    UserMetrics,
    /// X'0A' RELOAD.
    Reload,
    /// Any other value: X'0B' to X'7F' reserved, X'80' to X'FE' private, and
    /// X'00' and X'FF', which the protocol never assigns.
    Unknown(u8),
}

impl From<u8> for Command {
    fn from(b: u8) -> Self {
        match b {
            0x01 => Command::HistoricConnections,
            0x02 => Command::ConcurrentConnections,
            0x03 => Command::BytesTransferred,
            0x04 => Command::Metrics,
            0x05 => Command::ListUsers,
            0x06 => Command::AddUser,
            0x07 => Command::DeleteUser,
            0x08 => Command::SetPassword,
            0x09 => Command::UserMetrics,
            0x0A => Command::Reload,
            other => Command::Unknown(other),
        }
    }
}

impl From<Command> for u8 {
    fn from(c: Command) -> u8 {
        match c {
            Command::HistoricConnections => 0x01,
            Command::ConcurrentConnections => 0x02,
            Command::BytesTransferred => 0x03,
            Command::Metrics => 0x04,
            Command::ListUsers => 0x05,
            Command::AddUser => 0x06,
            Command::DeleteUser => 0x07,
            Command::SetPassword => 0x08,
            Command::UserMetrics => 0x09,
            Command::Reload => 0x0A,
            Command::Unknown(b) => b,
        }
    }
}

/// The STATUS of a response (section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// X'00' success.
    Success,
    /// X'01' unsupported version (VER is not X'01').
    UnsupportedVersion,
    /// X'02' unknown command.
    UnknownCommand,
    /// X'03' malformed request.
    Malformed,
    /// X'04' user already exists (ADD_USER).
    UserExists,
    /// X'05' no such user (DELETE_USER, SET_PASSWORD).
    NoSuchUser,
    /// X'06' forbidden: the change would leave the server without an administrator.
    Forbidden,
    /// X'07' server error: the change could not be made durable; nothing was changed.
    ServerError,
    /// X'08' limit reached: the user table is full.
    LimitReached,
    /// Any other value.
    Unknown(u8),
}

impl From<u8> for Status {
    fn from(b: u8) -> Self {
        match b {
            0x00 => Status::Success,
            0x01 => Status::UnsupportedVersion,
            0x02 => Status::UnknownCommand,
            0x03 => Status::Malformed,
            0x04 => Status::UserExists,
            0x05 => Status::NoSuchUser,
            0x06 => Status::Forbidden,
            0x07 => Status::ServerError,
            0x08 => Status::LimitReached,
            other => Status::Unknown(other),
        }
    }
}

impl From<Status> for u8 {
    fn from(s: Status) -> u8 {
        match s {
            Status::Success => 0x00,
            Status::UnsupportedVersion => 0x01,
            Status::UnknownCommand => 0x02,
            Status::Malformed => 0x03,
            Status::UserExists => 0x04,
            Status::NoSuchUser => 0x05,
            Status::Forbidden => 0x06,
            Status::ServerError => 0x07,
            Status::LimitReached => 0x08,
            Status::Unknown(b) => b,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Success => "success",
            Status::UnsupportedVersion => "unsupported version",
            Status::UnknownCommand => "unknown command",
            Status::Malformed => "malformed request",
            Status::UserExists => "user already exists",
            Status::NoSuchUser => "no such user",
            Status::Forbidden => "forbidden: the server would be left without an administrator",
            Status::ServerError => "server error: the change could not be made durable",
            Status::LimitReached => "limit reached: the user table is full",
            Status::Unknown(b) => return write!(f, "unknown status X'{b:02X}'"),
        })
    }
}

/// ROLE on the wire: X'00' proxy user, X'01' administrator.
pub fn role_to_wire(role: Role) -> u8 {
    match role {
        Role::Proxy => 0x00,
        Role::Admin => 0x01,
    }
}

/// The role for a ROLE byte; `None` for any other value, which "is malformed".
pub fn role_from_wire(b: u8) -> Option<Role> {
    match b {
        0x00 => Some(Role::Proxy),
        0x01 => Some(Role::Admin),
        _ => None,
    }
}

/// METRICS IDs (section 3). A client ignores IDs it does not know.
pub mod metric {
    /// X'01' historic connections (as CMD X'01').
    pub const HISTORIC: u8 = 0x01;
    /// X'02' concurrent connections (as CMD X'02').
    pub const CONCURRENT: u8 = 0x02;
    /// X'03' bytes transferred (as CMD X'03').
    pub const BYTES: u8 = 0x03;
    /// X'04' bytes relayed client to target.
    pub const BYTES_UP: u8 = 0x04;
    /// X'05' bytes relayed target to client.
    pub const BYTES_DOWN: u8 = 0x05;
    /// X'06' SOCKS authentications that failed.
    pub const AUTH_FAILED: u8 = 0x06;
    /// X'07' CONNECT requests that failed (any reply other than succeeded).
    pub const CONNECT_FAILED: u8 = 0x07;
    /// X'08' seconds since the server started.
    pub const UPTIME: u8 = 0x08;
    /// X'09' UDP associations since start.
    pub const UDP_ASSOCIATIONS: u8 = 0x09;
    /// X'0A' UDP datagrams relayed, both directions.
    pub const UDP_DATAGRAMS: u8 = 0x0A;
    /// X'0B' UDP datagrams dropped (fragmented, from an unexpected source,
    /// denied, or over a limit).
    pub const UDP_DROPPED: u8 = 0x0B;
    /// X'0C' requests denied by the access rules.
    pub const DENIED: u8 = 0x0C;
    /// X'0D' BIND requests accepted since start.
    pub const BINDS: u8 = 0x0D;
    /// X'80' (private range): clients closed at once because the server's
    /// connection limit (--max-connections) was reached.
    pub const REFUSED: u8 = 0x80;
    /// X'81' (private): SOCKS authentications refused unchecked while their
    /// source was penalised.
    pub const AUTH_PENALISED: u8 = 0x81;
    /// X'82' (private): per-source penalties started for failed SOCKS
    /// authentications.
    pub const PENALTIES: u8 = 0x82;
    /// X'83' (private): SOCKS password checks refused because too many were
    /// waiting for their source or in all.
    pub const CHECKS_REFUSED: u8 = 0x83;
    /// X'84' (private range): handshakes nobody had logged in on, closed to
    /// make room for new clients when accepting ran out of descriptors.
    pub const EVICTED: u8 = 0x84;
    /// X'85' (private range): management associations aborted before they
    /// logged in (log-in grace time over, or pushed out by newer ones past
    /// --max-mgmt-unauthenticated).
    pub const MGMT_ABORTED: u8 = 0x85;
    /// X'86' (private): access-log lines of failed handshakes left out and
    /// summarised.
    pub const LOG_SUPPRESSED: u8 = 0x86;
    /// X'87' (private): clients closed at accept past
    /// --max-sessions-per-client, and requests refused (X'02') past
    /// --max-sessions-per-user.
    pub const SESSION_LIMIT: u8 = 0x87;
    /// X'88' (private): connections closed for a PROXY header: one from a
    /// source not in --proxy-protocol-from, or none or a malformed one from
    /// a source in it.
    pub const PROXY_REFUSED: u8 = 0x88;
    /// X'89' (private): 1 while the user table is stale (its Redis store,
    /// --users-redis, unreachable), 0 otherwise.
    pub const USERS_STORE_STALE: u8 = 0x89;
    /// X'8A' (private): times the connection to the Redis user store was
    /// lost.
    pub const USERS_STORE_LOST: u8 = 0x8A;
}

/// USER_METRICS IDs (section 3), per user. A client ignores IDs it does not
/// know.
pub mod user_metric {
    /// X'01' SOCKS sessions the user opened since start.
    pub const SESSIONS: u8 = 0x01;
    /// X'02' the user's SOCKS sessions open now.
    pub const OPEN: u8 = 0x02;
    /// X'03' bytes relayed client to target.
    pub const BYTES_UP: u8 = 0x03;
    /// X'04' bytes relayed target to client.
    pub const BYTES_DOWN: u8 = 0x04;
    /// X'05' failed authentications with the user's name.
    pub const AUTH_FAILED: u8 = 0x05;
    /// X'06' requests of the user denied by the access rules.
    pub const DENIED: u8 = 0x06;
}

// ---------------------------------------------------------------- requests

/// A request after log in (section 3).
///
/// ```text
/// +-----+-----+------------------+
/// | VER | CMD |       ARGS       |
/// +-----+-----+------------------+
/// |  1  |  1  | 0 to 1022 bytes  |
/// +-----+-----+------------------+
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// X'01' HISTORIC_CONNECTIONS, no ARGS.
    HistoricConnections,
    /// X'02' CONCURRENT_CONNECTIONS, no ARGS.
    ConcurrentConnections,
    /// X'03' BYTES_TRANSFERRED, no ARGS.
    BytesTransferred,
    /// X'04' METRICS, no ARGS.
    Metrics,
    /// X'05' LIST_USERS: OFFSET (u32).
    ListUsers {
        /// The index, in name order, of the first user wanted.
        offset: u32,
    },
    /// X'06' ADD_USER: ROLE ULEN UNAME PLEN PASSWD.
    AddUser {
        /// The new user's role.
        role: Role,
        /// A valid user name (see [`valid_name`]).
        username: &'a [u8],
        /// A valid password (see [`valid_password`]).
        password: &'a [u8],
    },
    /// X'07' DELETE_USER: ULEN UNAME.
    DeleteUser {
        /// A valid user name.
        username: &'a [u8],
    },
    /// X'08' SET_PASSWORD: ULEN UNAME PLEN PASSWD.
    SetPassword {
        /// A valid user name.
        username: &'a [u8],
        /// A valid password.
        password: &'a [u8],
    },
    /// X'09' USER_METRICS: OFFSET (u32).
    UserMetrics {
        /// The index, in name order, of the first user wanted.
        offset: u32,
    },
    /// X'0A' RELOAD, no ARGS.
    Reload,
}

// "Passwords never appear in any log, reply or error message."
impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::HistoricConnections => f.write_str("HistoricConnections"),
            Request::ConcurrentConnections => f.write_str("ConcurrentConnections"),
            Request::BytesTransferred => f.write_str("BytesTransferred"),
            Request::Metrics => f.write_str("Metrics"),
            Request::ListUsers { offset } => {
                f.debug_struct("ListUsers").field("offset", offset).finish()
            }
            Request::AddUser { role, username, .. } => f
                .debug_struct("AddUser")
                .field("role", role)
                .field("username", &debug_bytes(username))
                .field("password", &"<redacted>")
                .finish(),
            Request::DeleteUser { username } => f
                .debug_struct("DeleteUser")
                .field("username", &debug_bytes(username))
                .finish(),
            Request::SetPassword { username, .. } => f
                .debug_struct("SetPassword")
                .field("username", &debug_bytes(username))
                .field("password", &"<redacted>")
                .finish(),
            Request::UserMetrics { offset } => f
                .debug_struct("UserMetrics")
                .field("offset", offset)
                .finish(),
            Request::Reload => f.write_str("Reload"),
        }
    }
}

/// Why a request was refused: the response to send is `status` with `command`
/// echoed in CMD and no DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestError {
    /// The status to answer with (never [`Status::Success`]).
    pub status: Status,
    /// The CMD byte to echo: the message's second byte, or 0 when it has fewer
    /// than two bytes.
    pub command: u8,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (CMD X'{:02X}')", self.status, self.command)
    }
}

impl std::error::Error for RequestError {}

impl<'a> Request<'a> {
    /// Parses a whole request message.
    pub fn parse(msg: &'a [u8]) -> Result<Self, RequestError> {
        // "CMD echoes the request's CMD", whatever else is wrong with it.
        let command = msg.get(1).copied().unwrap_or(0);
        let fail = |status| RequestError { status, command };
        // "Largest message: requests 1024 bytes ... A longer request is malformed."
        if msg.len() > MAX_REQUEST {
            return Err(fail(Status::Malformed));
        }
        let mut r = Reader::new(msg);
        // X'03' covers "empty": no VER at all.
        let ver = r.u8().ok_or(fail(Status::Malformed))?;
        // X'01' "unsupported version (VER is not X'01')".
        if ver != VERSION {
            return Err(fail(Status::UnsupportedVersion));
        }
        let cmd = r.u8().ok_or(fail(Status::Malformed))?;
        // X'0B' to X'7F' are reserved and X'80' to X'FE' private; X'00' and X'FF'
        // are assigned to nothing either: all are "unknown command" (X'02').
        if let Command::Unknown(_) = Command::from(cmd) {
            return Err(fail(Status::UnknownCommand));
        }
        // Strings: "empty or forbidden string ... is malformed (X'03')"; and the
        // lengths must add up exactly, with no trailing bytes.
        Self::parse_args(Command::from(cmd), r).ok_or(fail(Status::Malformed))
    }

    /// The ARGS of a known `command`, and nothing after them.
    fn parse_args(command: Command, mut r: Reader<'a>) -> Option<Self> {
        let req = match command {
            // "ARGS: none" — any byte after CMD makes the lengths not add up.
            Command::HistoricConnections => Request::HistoricConnections,
            Command::ConcurrentConnections => Request::ConcurrentConnections,
            Command::BytesTransferred => Request::BytesTransferred,
            Command::Metrics => Request::Metrics,
            Command::ListUsers => Request::ListUsers { offset: r.u32()? },
            Command::AddUser => Request::AddUser {
                // "Any other ROLE is malformed."
                role: role_from_wire(r.u8()?)?,
                username: r.name()?,
                password: r.password()?,
            },
            Command::DeleteUser => Request::DeleteUser {
                username: r.name()?,
            },
            Command::SetPassword => Request::SetPassword {
                username: r.name()?,
                password: r.password()?,
            },
            Command::UserMetrics => Request::UserMetrics { offset: r.u32()? },
            Command::Reload => Request::Reload,
            // Refused as X'02' by `parse` before it gets here.
            Command::Unknown(_) => return None,
        };
        r.finish(req)
    }

    /// The CMD of this request.
    pub fn command(&self) -> Command {
        match self {
            Request::HistoricConnections => Command::HistoricConnections,
            Request::ConcurrentConnections => Command::ConcurrentConnections,
            Request::BytesTransferred => Command::BytesTransferred,
            Request::Metrics => Command::Metrics,
            Request::ListUsers { .. } => Command::ListUsers,
            Request::AddUser { .. } => Command::AddUser,
            Request::DeleteUser { .. } => Command::DeleteUser,
            Request::SetPassword { .. } => Command::SetPassword,
            Request::UserMetrics { .. } => Command::UserMetrics,
            Request::Reload => Command::Reload,
        }
    }

    /// Bytes this request takes on the wire.
    pub fn buffer_len(&self) -> usize {
        2 + match self {
            Request::HistoricConnections
            | Request::ConcurrentConnections
            | Request::BytesTransferred
            | Request::Metrics
            | Request::Reload => 0,
            Request::ListUsers { .. } | Request::UserMetrics { .. } => 4,
            Request::AddUser {
                username, password, ..
            } => 1 + string_len(username) + string_len(password),
            Request::DeleteUser { username } => string_len(username),
            Request::SetPassword { username, password } => {
                string_len(username) + string_len(password)
            }
        }
    }

    /// Appends this request to `out`.
    ///
    /// Strings are written as given; check them with [`valid_name`] and
    /// [`valid_password`] first, or the server answers X'03'.
    ///
    /// # Panics
    /// If a string is longer than 255 bytes.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.reserve(self.buffer_len());
        out.push(VERSION);
        out.push(self.command().into());
        match self {
            Request::HistoricConnections
            | Request::ConcurrentConnections
            | Request::BytesTransferred
            | Request::Metrics
            | Request::Reload => {}
            Request::ListUsers { offset } | Request::UserMetrics { offset } => {
                out.extend_from_slice(&offset.to_be_bytes())
            }
            Request::AddUser {
                role,
                username,
                password,
            } => {
                out.push(role_to_wire(*role));
                emit_string(username, out);
                emit_string(password, out);
            }
            Request::DeleteUser { username } => emit_string(username, out),
            Request::SetPassword { username, password } => {
                emit_string(username, out);
                emit_string(password, out);
            }
        }
    }
}

// --------------------------------------------------------------- responses

/// Appends a response: VER STATUS CMD DATA.
///
/// ```text
/// +-----+--------+-----+------------------+
/// | VER | STATUS | CMD |       DATA       |
/// +-----+--------+-----+------------------+
/// |  1  |   1    |  1  |     variable     |
/// +-----+--------+-----+------------------+
/// ```
///
/// `command` is the request's CMD byte as received, known or not.
pub fn emit_response(status: Status, command: u8, data: &[u8], out: &mut Vec<u8>) {
    // "DATA is present only when STATUS is X'00'."
    debug_assert!(
        status == Status::Success || data.is_empty(),
        "DATA with status {status:?}"
    );
    debug_assert!(RESPONSE_HEADER_LEN + data.len() <= MAX_RESPONSE);
    out.reserve(RESPONSE_HEADER_LEN + data.len());
    out.extend_from_slice(&[VERSION, status.into(), command]);
    out.extend_from_slice(data);
}

/// Appends the success response of a counter command (X'01' to X'03'): DATA is
/// one u64.
pub fn emit_counter(command: Command, value: u64, out: &mut Vec<u8>) {
    emit_response(Status::Success, command.into(), &value.to_be_bytes(), out);
}

/// Appends the success response of METRICS: N, then N times ID (1 byte) VALUE
/// (u64).
///
/// # Panics
/// If there are more than 255 values.
pub fn emit_metrics(values: &[(u8, u64)], out: &mut Vec<u8>) {
    let n = u8::try_from(values.len()).expect("at most 255 metrics");
    out.reserve(RESPONSE_HEADER_LEN + 1 + values.len() * 9);
    emit_response(Status::Success, Command::Metrics.into(), &[n], out);
    for (id, value) in values {
        out.push(*id);
        out.extend_from_slice(&value.to_be_bytes());
    }
}

/// Appends the success response of LIST_USERS: TOTAL, COUNT, then COUNT times
/// ROLE ULEN UNAME, and returns COUNT.
///
/// `users` are the users from the requested OFFSET on, in name order. Entries
/// are written "as many as fit in one response and at most 1000": COUNT stops
/// before the first entry that would take the message past [`MAX_RESPONSE`]
/// bytes, counted from where the message starts in `out`.
///
/// # Panics
/// If a name is empty or longer than 255 bytes (the user table holds only
/// valid names).
pub fn emit_list_users<'u>(
    total: u32,
    users: impl Iterator<Item = (Role, &'u [u8])>,
    out: &mut Vec<u8>,
) -> u16 {
    let start = out.len();
    out.reserve(RESPONSE_HEADER_LEN + LIST_HEADER_LEN);
    emit_response(Status::Success, Command::ListUsers.into(), &[], out);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // COUNT, written below
    let mut count: u16 = 0;
    for (role, name) in users.take(MAX_LIST) {
        debug_assert!(!name.is_empty(), "an empty user name");
        let entry = 1 + string_len(name);
        if out.len() - start + entry > MAX_RESPONSE {
            break;
        }
        out.push(role_to_wire(role));
        emit_string(name, out);
        count += 1;
    }
    let at = start + LIST_COUNT.start..start + LIST_COUNT.end;
    out[at].copy_from_slice(&count.to_be_bytes());
    count
}

/// A user's name and its USER_METRICS (ID, VALUE) pairs, as
/// [`emit_user_metrics`] takes them.
pub type UserEntry<'u> = (&'u [u8], &'u [(u8, u64)]);

/// Appends the success response of USER_METRICS: TOTAL, COUNT, then COUNT
/// times ULEN UNAME N and N times ID VALUE; returns COUNT.
///
/// Paged "exactly like LIST_USERS": `users` are the users from the
/// requested OFFSET on, in name order, each with its (ID, VALUE) pairs; COUNT
/// stops at 1000 or before the first entry that would take the message past
/// [`MAX_RESPONSE`] bytes.
///
/// # Panics
/// If a name is empty or longer than 255 bytes, or a user has more than 255
/// values.
pub fn emit_user_metrics<'u>(
    total: u32,
    users: impl Iterator<Item = UserEntry<'u>>,
    out: &mut Vec<u8>,
) -> u16 {
    let start = out.len();
    out.reserve(RESPONSE_HEADER_LEN + LIST_HEADER_LEN);
    emit_response(Status::Success, Command::UserMetrics.into(), &[], out);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // COUNT, written below
    let mut count: u16 = 0;
    for (name, values) in users.take(MAX_LIST) {
        debug_assert!(!name.is_empty(), "an empty user name");
        let n = u8::try_from(values.len()).expect("at most 255 values per user");
        let entry = string_len(name) + 1 + values.len() * 9;
        if out.len() - start + entry > MAX_RESPONSE {
            break;
        }
        emit_string(name, out);
        out.push(n);
        for (id, value) in values {
            out.push(*id);
            out.extend_from_slice(&value.to_be_bytes());
        }
        count += 1;
    }
    let at = start + LIST_COUNT.start..start + LIST_COUNT.end;
    out[at].copy_from_slice(&count.to_be_bytes());
    count
}

/// One user's entry in a USER_METRICS response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserMetrics {
    /// The user's name.
    pub name: Vec<u8>,
    /// (ID, VALUE) pairs in the order sent, unknown IDs included.
    pub values: Vec<(u8, u64)>,
}

/// A response, as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A non-zero STATUS, with no DATA.
    Failed {
        /// Why.
        status: Status,
        /// The echoed CMD.
        command: u8,
    },
    /// Success of a command without DATA (ADD_USER, DELETE_USER, SET_PASSWORD,
    /// RELOAD).
    Done {
        /// The echoed CMD.
        command: u8,
    },
    /// Success of a counter command (X'01' to X'03').
    Counter {
        /// The echoed CMD.
        command: u8,
        /// The counter.
        value: u64,
    },
    /// Success of METRICS: (ID, VALUE) pairs in the order sent, unknown IDs
    /// included (the caller ignores those it does not know).
    Metrics(Vec<(u8, u64)>),
    /// Success of LIST_USERS.
    Users {
        /// How many users the server has.
        total: u32,
        /// The users in this page, in name order.
        users: Vec<(Role, Vec<u8>)>,
    },
    /// Success of USER_METRICS.
    UserMetrics {
        /// How many users the server has.
        total: u32,
        /// The users in this page, in name order, with their values.
        users: Vec<UserMetrics>,
    },
}

impl Response {
    /// Parses a whole response to a request of command `expected`; `None` for
    /// anything that is not a well-formed answer to it.
    pub fn parse(msg: &[u8], expected: Command) -> Option<Response> {
        if msg.len() > MAX_RESPONSE {
            return None;
        }
        let mut r = Reader::new(msg);
        if r.u8()? != VERSION {
            return None;
        }
        let status = Status::from(r.u8()?);
        let command = r.u8()?;
        // "CMD echoes the request's CMD."
        if command != u8::from(expected) {
            return None;
        }
        // "DATA is present only when STATUS is X'00'."
        if status != Status::Success {
            return r.finish(Response::Failed { status, command });
        }
        let resp = match expected {
            Command::HistoricConnections
            | Command::ConcurrentConnections
            | Command::BytesTransferred => Response::Counter {
                command,
                value: r.u64()?,
            },
            Command::Metrics => {
                let n = r.u8()?;
                let mut values = Vec::with_capacity(usize::from(n));
                for _ in 0..n {
                    values.push((r.u8()?, r.u64()?));
                }
                Response::Metrics(values)
            }
            Command::ListUsers => {
                let total = r.u32()?;
                let count = r.u16()?;
                // "at most 1000", and a page never holds more users than exist.
                if usize::from(count) > MAX_LIST || u32::from(count) > total {
                    return None;
                }
                let mut users = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    let role = role_from_wire(r.u8()?)?;
                    let name = r.name()?;
                    users.push((role, name.to_vec()));
                }
                Response::Users { total, users }
            }
            Command::UserMetrics => {
                let total = r.u32()?;
                let count = r.u16()?;
                // Paged like LIST_USERS: at most 1000, never more than exist.
                if usize::from(count) > MAX_LIST || u32::from(count) > total {
                    return None;
                }
                let mut users = Vec::with_capacity(usize::from(count));
                for _ in 0..count {
                    let name = r.name()?.to_vec();
                    let n = r.u8()?;
                    let mut values = Vec::with_capacity(usize::from(n));
                    for _ in 0..n {
                        values.push((r.u8()?, r.u64()?));
                    }
                    users.push(UserMetrics { name, values });
                }
                Response::UserMetrics { total, users }
            }
            Command::AddUser | Command::DeleteUser | Command::SetPassword | Command::Reload => {
                Response::Done { command }
            }
            // No DATA layout is defined for a command we do not know.
            Command::Unknown(_) => return None,
        };
        r.finish(resp)
    }
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
