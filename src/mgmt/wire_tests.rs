//! Byte fixtures for every management message (docs/management-protocol.md): parse,
//! emit, every truncation, every error, and a sweep of short and mutated
//! messages that no parser may panic on.

use super::*;

// ---------------------------------------------------------------- fixtures

/// Log in: VER 1, "admin" / "secret".
const LOGIN_ADMIN: &[u8] = b"\x01\x05admin\x06secret";
/// Log in: one-byte name and password, the shortest valid message.
const LOGIN_SHORTEST: &[u8] = &[0x01, 0x01, b'a', 0x01, b'p'];

/// Log-in replies, one per STATUS of section 2.
const LOGIN_REPLY_SUCCESS: [u8; 2] = [0x01, 0x00];
const LOGIN_REPLY_DENIED: [u8; 2] = [0x01, 0x01];
const LOGIN_REPLY_BAD_VERSION: [u8; 2] = [0x01, 0x02];
const LOGIN_REPLY_SERVER_ERROR: [u8; 2] = [0x01, 0x03];
const LOGIN_REPLY_MALFORMED: [u8; 2] = [0x01, 0x04];

/// HISTORIC_CONNECTIONS.
const REQ_HISTORIC: &[u8] = &[0x01, 0x01];
/// CONCURRENT_CONNECTIONS.
const REQ_CONCURRENT: &[u8] = &[0x01, 0x02];
/// BYTES_TRANSFERRED.
const REQ_BYTES: &[u8] = &[0x01, 0x03];
/// METRICS.
const REQ_METRICS: &[u8] = &[0x01, 0x04];
/// LIST_USERS from OFFSET 0.
const REQ_LIST_0: &[u8] = &[0x01, 0x05, 0x00, 0x00, 0x00, 0x00];
/// LIST_USERS from OFFSET 1000 (the second page of a long list).
const REQ_LIST_1000: &[u8] = &[0x01, 0x05, 0x00, 0x00, 0x03, 0xE8];
/// LIST_USERS from OFFSET 2^32 - 1.
const REQ_LIST_MAX: &[u8] = &[0x01, 0x05, 0xFF, 0xFF, 0xFF, 0xFF];
/// ADD_USER administrator "bob" / "hunter2".
const REQ_ADD_ADMIN: &[u8] = b"\x01\x06\x01\x03bob\x07hunter2";
/// ADD_USER proxy user "carol" / "p:w d" (':' and space are fine in a password).
const REQ_ADD_PROXY: &[u8] = b"\x01\x06\x00\x05carol\x05p:w d";
/// DELETE_USER "bob".
const REQ_DELETE: &[u8] = b"\x01\x07\x03bob";
/// SET_PASSWORD "bob" / "s3cr3t".
const REQ_SET_PASSWORD: &[u8] = b"\x01\x08\x03bob\x06s3cr3t";
/// USER_METRICS from OFFSET 0.
const REQ_USER_METRICS_0: &[u8] = &[0x01, 0x09, 0x00, 0x00, 0x00, 0x00];
/// USER_METRICS from OFFSET 1000.
const REQ_USER_METRICS_1000: &[u8] = &[0x01, 0x09, 0x00, 0x00, 0x03, 0xE8];
/// RELOAD.
const REQ_RELOAD: &[u8] = &[0x01, 0x0A];

/// HISTORIC_CONNECTIONS = 42.
const RESP_HISTORIC: &[u8] = &[0x01, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 42];
/// CONCURRENT_CONNECTIONS = 0.
const RESP_CONCURRENT: &[u8] = &[0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0];
/// BYTES_TRANSFERRED = 2^64 - 1.
const RESP_BYTES: &[u8] = &[
    0x01, 0x00, 0x03, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
];
/// METRICS with N = 2: historic 1, uptime 258.
const RESP_METRICS_2: &[u8] = &[
    0x01, 0x00, 0x04, 0x02, //
    0x01, 0, 0, 0, 0, 0, 0, 0, 1, //
    0x08, 0, 0, 0, 0, 0, 0, 1, 2,
];
/// METRICS with N = 0.
const RESP_METRICS_0: &[u8] = &[0x01, 0x00, 0x04, 0x00];
/// LIST_USERS: TOTAL 2, COUNT 2, administrator "alice", proxy user "bob".
const RESP_LIST: &[u8] = b"\x01\x00\x05\x00\x00\x00\x02\x00\x02\x01\x05alice\x00\x03bob";
/// LIST_USERS past the end: TOTAL 2, COUNT 0.
const RESP_LIST_EMPTY: &[u8] = &[0x01, 0x00, 0x05, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00];
/// ADD_USER succeeded.
const RESP_ADD_DONE: &[u8] = &[0x01, 0x00, 0x06];
/// DELETE_USER succeeded.
const RESP_DELETE_DONE: &[u8] = &[0x01, 0x00, 0x07];
/// SET_PASSWORD succeeded.
const RESP_SET_PASSWORD_DONE: &[u8] = &[0x01, 0x00, 0x08];
/// ADD_USER: user already exists.
const RESP_ADD_EXISTS: &[u8] = &[0x01, 0x04, 0x06];
/// DELETE_USER: no such user.
const RESP_DELETE_NO_SUCH_USER: &[u8] = &[0x01, 0x05, 0x07];
/// DELETE_USER: forbidden (the last administrator).
const RESP_DELETE_FORBIDDEN: &[u8] = &[0x01, 0x06, 0x07];
/// SET_PASSWORD: server error.
const RESP_SET_PASSWORD_SERVER_ERROR: &[u8] = &[0x01, 0x07, 0x08];
/// ADD_USER: limit reached.
const RESP_ADD_LIMIT: &[u8] = &[0x01, 0x08, 0x06];
/// LIST_USERS: malformed request.
const RESP_LIST_MALFORMED: &[u8] = &[0x01, 0x03, 0x05];
/// USER_METRICS: TOTAL 3, COUNT 2; "alice" with sessions 2 and bytes up
/// 258, "bob" with no value.
const RESP_USER_METRICS: &[u8] = &[
    0x01, 0x00, 0x09, 0x00, 0x00, 0x00, 0x03, 0x00, 0x02, //
    0x05, b'a', b'l', b'i', b'c', b'e', 0x02, //
    0x01, 0, 0, 0, 0, 0, 0, 0, 2, //
    0x03, 0, 0, 0, 0, 0, 0, 1, 2, //
    0x03, b'b', b'o', b'b', 0x00,
];
/// USER_METRICS past the end: TOTAL 3, COUNT 0.
const RESP_USER_METRICS_EMPTY: &[u8] = &[0x01, 0x00, 0x09, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00];
/// RELOAD succeeded.
const RESP_RELOAD_DONE: &[u8] = &[0x01, 0x00, 0x0A];
/// RELOAD: server error (the users file is bad; nothing changed).
const RESP_RELOAD_SERVER_ERROR: &[u8] = &[0x01, 0x07, 0x0A];
/// CMD X'0B', the first reserved one: unknown command.
const RESP_UNKNOWN_COMMAND: &[u8] = &[0x01, 0x02, 0x0B];
/// A request with VER X'02' and CMD X'01': unsupported version.
const RESP_UNSUPPORTED_VERSION: &[u8] = &[0x01, 0x01, 0x01];
/// A request of one byte: malformed, CMD echoed as 0.
const RESP_MALFORMED_NO_CMD: &[u8] = &[0x01, 0x03, 0x00];

/// Every command, and unknown ones at both ends and in each range.
const COMMANDS: [Command; 14] = [
    Command::HistoricConnections,
    Command::ConcurrentConnections,
    Command::BytesTransferred,
    Command::Metrics,
    Command::ListUsers,
    Command::AddUser,
    Command::DeleteUser,
    Command::SetPassword,
    Command::UserMetrics,
    Command::Reload,
    Command::Unknown(0x00),
    Command::Unknown(0x0B),
    Command::Unknown(0x80),
    Command::Unknown(0xFF),
];

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn bytes(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::new();
    f(&mut out);
    out
}

/// Every request fixture with the request it holds.
fn request_fixtures() -> Vec<(&'static [u8], Request<'static>)> {
    vec![
        (REQ_HISTORIC, Request::HistoricConnections),
        (REQ_CONCURRENT, Request::ConcurrentConnections),
        (REQ_BYTES, Request::BytesTransferred),
        (REQ_METRICS, Request::Metrics),
        (REQ_LIST_0, Request::ListUsers { offset: 0 }),
        (REQ_LIST_1000, Request::ListUsers { offset: 1000 }),
        (REQ_LIST_MAX, Request::ListUsers { offset: u32::MAX }),
        (
            REQ_ADD_ADMIN,
            Request::AddUser {
                role: Role::Admin,
                username: b"bob",
                password: b"hunter2",
            },
        ),
        (
            REQ_ADD_PROXY,
            Request::AddUser {
                role: Role::Proxy,
                username: b"carol",
                password: b"p:w d",
            },
        ),
        (REQ_DELETE, Request::DeleteUser { username: b"bob" }),
        (
            REQ_SET_PASSWORD,
            Request::SetPassword {
                username: b"bob",
                password: b"s3cr3t",
            },
        ),
        (REQ_USER_METRICS_0, Request::UserMetrics { offset: 0 }),
        (REQ_USER_METRICS_1000, Request::UserMetrics { offset: 1000 }),
        (REQ_RELOAD, Request::Reload),
    ]
}

/// Every response fixture, the command it answers, and what it holds.
fn response_fixtures() -> Vec<(&'static [u8], Command, Response)> {
    let failed = |status, command| Response::Failed { status, command };
    vec![
        (
            RESP_HISTORIC,
            Command::HistoricConnections,
            Response::Counter {
                command: 0x01,
                value: 42,
            },
        ),
        (
            RESP_CONCURRENT,
            Command::ConcurrentConnections,
            Response::Counter {
                command: 0x02,
                value: 0,
            },
        ),
        (
            RESP_BYTES,
            Command::BytesTransferred,
            Response::Counter {
                command: 0x03,
                value: u64::MAX,
            },
        ),
        (
            RESP_METRICS_2,
            Command::Metrics,
            Response::Metrics(vec![(metric::HISTORIC, 1), (metric::UPTIME, 258)]),
        ),
        (RESP_METRICS_0, Command::Metrics, Response::Metrics(vec![])),
        (
            RESP_LIST,
            Command::ListUsers,
            Response::Users {
                total: 2,
                users: vec![
                    (Role::Admin, b"alice".to_vec()),
                    (Role::Proxy, b"bob".to_vec()),
                ],
            },
        ),
        (
            RESP_LIST_EMPTY,
            Command::ListUsers,
            Response::Users {
                total: 2,
                users: vec![],
            },
        ),
        (
            RESP_ADD_DONE,
            Command::AddUser,
            Response::Done { command: 0x06 },
        ),
        (
            RESP_DELETE_DONE,
            Command::DeleteUser,
            Response::Done { command: 0x07 },
        ),
        (
            RESP_SET_PASSWORD_DONE,
            Command::SetPassword,
            Response::Done { command: 0x08 },
        ),
        (
            RESP_ADD_EXISTS,
            Command::AddUser,
            failed(Status::UserExists, 0x06),
        ),
        (
            RESP_DELETE_NO_SUCH_USER,
            Command::DeleteUser,
            failed(Status::NoSuchUser, 0x07),
        ),
        (
            RESP_DELETE_FORBIDDEN,
            Command::DeleteUser,
            failed(Status::Forbidden, 0x07),
        ),
        (
            RESP_SET_PASSWORD_SERVER_ERROR,
            Command::SetPassword,
            failed(Status::ServerError, 0x08),
        ),
        (
            RESP_ADD_LIMIT,
            Command::AddUser,
            failed(Status::LimitReached, 0x06),
        ),
        (
            RESP_LIST_MALFORMED,
            Command::ListUsers,
            failed(Status::Malformed, 0x05),
        ),
        (
            RESP_USER_METRICS,
            Command::UserMetrics,
            Response::UserMetrics {
                total: 3,
                users: vec![
                    UserMetrics {
                        name: b"alice".to_vec(),
                        values: vec![(user_metric::SESSIONS, 2), (user_metric::BYTES_UP, 258)],
                    },
                    UserMetrics {
                        name: b"bob".to_vec(),
                        values: vec![],
                    },
                ],
            },
        ),
        (
            RESP_USER_METRICS_EMPTY,
            Command::UserMetrics,
            Response::UserMetrics {
                total: 3,
                users: vec![],
            },
        ),
        (
            RESP_RELOAD_DONE,
            Command::Reload,
            Response::Done { command: 0x0A },
        ),
        (
            RESP_RELOAD_SERVER_ERROR,
            Command::Reload,
            failed(Status::ServerError, 0x0A),
        ),
        (
            RESP_UNKNOWN_COMMAND,
            Command::Unknown(0x0B),
            failed(Status::UnknownCommand, 0x0B),
        ),
        (
            RESP_UNSUPPORTED_VERSION,
            Command::HistoricConnections,
            failed(Status::UnsupportedVersion, 0x01),
        ),
        (
            RESP_MALFORMED_NO_CMD,
            Command::Unknown(0x00),
            failed(Status::Malformed, 0x00),
        ),
    ]
}

/// Writes `resp` back with the server's emitters: what `Response::parse`
/// accepts must be exactly what they write.
fn emit_parsed(resp: &Response) -> Vec<u8> {
    bytes(|out| match resp {
        Response::Failed { status, command } => emit_response(*status, *command, &[], out),
        Response::Done { command } => emit_response(Status::Success, *command, &[], out),
        Response::Counter { command, value } => emit_counter(Command::from(*command), *value, out),
        Response::Metrics(values) => emit_metrics(values, out),
        Response::Users { total, users } => {
            let count = emit_list_users(*total, users.iter().map(|(r, n)| (*r, &n[..])), out);
            assert_eq!(usize::from(count), users.len());
        }
        Response::UserMetrics { total, users } => {
            let entries = users.iter().map(|u| (&u.name[..], &u.values[..]));
            let count = emit_user_metrics(*total, entries, out);
            assert_eq!(usize::from(count), users.len());
        }
    })
}

/// The error `Request::parse` gives for `msg`.
fn request_error(msg: &[u8]) -> RequestError {
    match Request::parse(msg) {
        Ok(req) => panic!("{msg:02x?} parsed as {req:?}"),
        Err(e) => e,
    }
}

fn malformed(command: u8) -> RequestError {
    RequestError {
        status: Status::Malformed,
        command,
    }
}

// ------------------------------------------------------------------ log in

#[test]
fn constants() {
    assert_eq!(VERSION, 0x01);
    assert_eq!(MAX_REQUEST, 1024);
    assert_eq!(MAX_RESPONSE, 65535);
    assert_eq!(MAX_LIST, 1000);
}

#[test]
fn login_fixtures_parse_and_emit() {
    let cases: [(&[u8], &[u8], &[u8]); 2] = [
        (LOGIN_ADMIN, b"admin", b"secret"),
        (LOGIN_SHORTEST, b"a", b"p"),
    ];
    for (fixture, username, password) in cases {
        let login = Login { username, password };
        assert_eq!(Login::parse(fixture), Ok(login));
        assert_eq!(login.buffer_len(), fixture.len());
        assert_eq!(bytes(|out| login.emit(out)), fixture);
    }
}

#[test]
fn login_with_255_byte_fields() {
    let username = [b'u'; 255];
    let password = [0xFF; 255];
    let fixture = cat(&[&[0x01, 0xFF], &username, &[0xFF], &password]);
    assert_eq!(fixture.len(), 513);
    let login = Login {
        username: &username,
        password: &password,
    };
    assert_eq!(Login::parse(&fixture), Ok(login));
    assert_eq!(bytes(|out| login.emit(out)), fixture);
}

#[test]
fn login_emit_appends() {
    let mut out = vec![0xEE];
    Login {
        username: b"admin",
        password: b"secret",
    }
    .emit(&mut out);
    assert_eq!(out, cat(&[&[0xEE], LOGIN_ADMIN]));
}

#[test]
fn login_content_is_left_to_authentication() {
    // Section 2 makes only the lengths malformed. A name or password no user can
    // have parses, and is then denied like any wrong password.
    let odd = b"\x01\x03a:b\x03x\ny";
    let login = Login::parse(odd).expect("lengths add up");
    assert_eq!(login.username, b"a:b");
    assert_eq!(login.password, b"x\ny");
}

#[test]
fn login_version_is_checked_first() {
    // X'02' "invalid version", whatever follows, even nothing.
    for ver in [0x00, 0x02, 0x05, 0xFF] {
        assert_eq!(Login::parse(&[ver]), Err(LoginStatus::BadVersion));
        assert_eq!(Login::parse(&[ver, 0x00]), Err(LoginStatus::BadVersion));
        let bad = cat(&[&[ver], &LOGIN_ADMIN[1..]]);
        assert_eq!(Login::parse(&bad), Err(LoginStatus::BadVersion));
    }
}

#[test]
fn login_malformed() {
    let cases: [&[u8]; 12] = [
        // Empty: not even VER.
        &[],
        // VER only; VER and ULEN only.
        &[0x01],
        &[0x01, 0x05],
        // ULEN 0.
        &[0x01, 0x00, 0x01, b'p'],
        &[0x01, 0x00, 0x00],
        // PLEN 0.
        &[0x01, 0x01, b'a', 0x00],
        // PLEN missing.
        &[0x01, 0x01, b'a'],
        // ULEN claims more than there is.
        b"\x01\x09admin\x06secret",
        // PLEN claims more than there is.
        b"\x01\x05admin\x07secret",
        // PLEN claims less: a trailing byte.
        b"\x01\x05admin\x05secret",
        // Trailing bytes after a whole message.
        b"\x01\x05admin\x06secret\x00",
        b"\x01\x05admin\x06secret\x01\x05admin\x06secret",
    ];
    for msg in cases {
        assert_eq!(Login::parse(msg), Err(LoginStatus::Malformed), "{msg:02x?}");
    }
}

#[test]
fn login_reply_fixtures() {
    let cases = [
        (LOGIN_REPLY_SUCCESS, LoginStatus::Success),
        (LOGIN_REPLY_DENIED, LoginStatus::Denied),
        (LOGIN_REPLY_BAD_VERSION, LoginStatus::BadVersion),
        (LOGIN_REPLY_SERVER_ERROR, LoginStatus::ServerError),
        (LOGIN_REPLY_MALFORMED, LoginStatus::Malformed),
    ];
    for (fixture, status) in cases {
        assert_eq!(emit_login_reply(status), fixture);
        assert_eq!(parse_login_reply(&fixture), Some(status));
    }
    assert_eq!(
        parse_login_reply(&[0x01, 0x05]),
        Some(LoginStatus::Unknown(0x05))
    );
    assert_eq!(emit_login_reply(LoginStatus::Unknown(0xFF)), [0x01, 0xFF]);
}

#[test]
fn login_reply_malformed() {
    let cases: [&[u8]; 6] = [
        &[],
        &[0x01],
        &[0x02, 0x00],
        &[0x05, 0x00],
        &[0x01, 0x00, 0x00],
        &[0x01, 0x00, 0x01, 0x00, 0x00],
    ];
    for msg in cases {
        assert_eq!(parse_login_reply(msg), None, "{msg:02x?}");
    }
}

#[test]
fn login_status_codes() {
    assert_eq!(LoginStatus::from(0x00), LoginStatus::Success);
    assert_eq!(LoginStatus::from(0x01), LoginStatus::Denied);
    assert_eq!(LoginStatus::from(0x02), LoginStatus::BadVersion);
    assert_eq!(LoginStatus::from(0x03), LoginStatus::ServerError);
    assert_eq!(LoginStatus::from(0x04), LoginStatus::Malformed);
    assert_eq!(LoginStatus::from(0x05), LoginStatus::Unknown(0x05));
    for b in 0..=255u8 {
        assert_eq!(u8::from(LoginStatus::from(b)), b);
    }
    assert_eq!(
        LoginStatus::Unknown(0xAB).to_string(),
        "unknown log-in status X'AB'"
    );
}

#[test]
fn login_debug_never_shows_the_password() {
    let login = Login::parse(LOGIN_ADMIN).expect("fixture");
    for text in [format!("{login:?}"), format!("{login:#?}")] {
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        assert!(text.contains("admin"), "{text}");
    }
}

// ------------------------------------------------------------------- codes

#[test]
fn command_codes() {
    let known = [
        (0x01, Command::HistoricConnections),
        (0x02, Command::ConcurrentConnections),
        (0x03, Command::BytesTransferred),
        (0x04, Command::Metrics),
        (0x05, Command::ListUsers),
        (0x06, Command::AddUser),
        (0x07, Command::DeleteUser),
        (0x08, Command::SetPassword),
        (0x09, Command::UserMetrics),
        (0x0A, Command::Reload),
    ];
    for (b, c) in known {
        assert_eq!(Command::from(b), c);
        assert_eq!(u8::from(c), b);
    }
    for b in [0x00, 0x0B, 0x7F, 0x80, 0xFE, 0xFF] {
        assert_eq!(Command::from(b), Command::Unknown(b));
    }
    for b in 0..=255u8 {
        assert_eq!(u8::from(Command::from(b)), b);
    }
}

#[test]
fn status_codes() {
    let known = [
        (0x00, Status::Success),
        (0x01, Status::UnsupportedVersion),
        (0x02, Status::UnknownCommand),
        (0x03, Status::Malformed),
        (0x04, Status::UserExists),
        (0x05, Status::NoSuchUser),
        (0x06, Status::Forbidden),
        (0x07, Status::ServerError),
        (0x08, Status::LimitReached),
    ];
    for (b, s) in known {
        assert_eq!(Status::from(b), s);
        assert_eq!(u8::from(s), b);
    }
    assert_eq!(Status::from(0x09), Status::Unknown(0x09));
    for b in 0..=255u8 {
        assert_eq!(u8::from(Status::from(b)), b);
    }
    assert_eq!(Status::Unknown(0x09).to_string(), "unknown status X'09'");
    assert_eq!(Status::NoSuchUser.to_string(), "no such user");
}

#[test]
fn role_codes() {
    assert_eq!(role_to_wire(Role::Proxy), 0x00);
    assert_eq!(role_to_wire(Role::Admin), 0x01);
    assert_eq!(role_from_wire(0x00), Some(Role::Proxy));
    assert_eq!(role_from_wire(0x01), Some(Role::Admin));
    for b in 0x02..=0xFF {
        assert_eq!(role_from_wire(b), None, "ROLE X'{b:02X}'");
    }
}

#[test]
fn metric_ids() {
    use metric::*;
    let ids = [
        HISTORIC,
        CONCURRENT,
        BYTES,
        BYTES_UP,
        BYTES_DOWN,
        AUTH_FAILED,
        CONNECT_FAILED,
        UPTIME,
    ];
    assert_eq!(ids, [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08]);
}

// ---------------------------------------------------------------- requests

#[test]
fn request_fixtures_parse_and_emit() {
    for (fixture, req) in request_fixtures() {
        assert_eq!(Request::parse(fixture), Ok(req), "{fixture:02x?}");
        assert_eq!(bytes(|out| req.emit(out)), fixture, "{req:?}");
        assert_eq!(req.buffer_len(), fixture.len(), "{req:?}");
        assert_eq!(u8::from(req.command()), fixture[1], "{req:?}");
    }
}

#[test]
fn request_emit_appends() {
    let mut out = vec![0xEE, 0xEE];
    Request::DeleteUser { username: b"bob" }.emit(&mut out);
    assert_eq!(out, cat(&[&[0xEE, 0xEE], REQ_DELETE]));
}

#[test]
fn request_with_255_byte_strings() {
    let username = [b'n'; 255];
    let password = [b'p'; 255];
    let add = cat(&[&[0x01, 0x06, 0x01, 0xFF], &username, &[0xFF], &password]);
    let set = cat(&[&[0x01, 0x08, 0xFF], &username, &[0xFF], &password]);
    let del = cat(&[&[0x01, 0x07, 0xFF], &username]);
    let cases = [
        (
            add,
            Request::AddUser {
                role: Role::Admin,
                username: &username,
                password: &password,
            },
        ),
        (
            set,
            Request::SetPassword {
                username: &username,
                password: &password,
            },
        ),
        (
            del,
            Request::DeleteUser {
                username: &username,
            },
        ),
    ];
    for (fixture, req) in cases {
        assert!(fixture.len() <= MAX_REQUEST);
        assert_eq!(Request::parse(&fixture), Ok(req));
        assert_eq!(bytes(|out| req.emit(out)), fixture);
        assert_eq!(req.buffer_len(), fixture.len());
    }
}

#[test]
fn request_string_content_at_the_edges() {
    // A name may hold X'20', X'7E' and any byte from X'80' (UTF-8); a password
    // anything but NUL, CR and LF.
    let name = cat(&[b" ~", "ñandú".as_bytes(), &[0x80, 0xFF]]);
    let password: Vec<u8> = (0x01..=0xFF)
        .filter(|b| ![b'\r', b'\n'].contains(b))
        .collect();
    let name_len = u8::try_from(name.len()).unwrap();
    let password_len = u8::try_from(password.len()).unwrap();
    let msg = cat(&[&[0x01, 0x08, name_len], &name, &[password_len], &password]);
    assert_eq!(
        Request::parse(&msg),
        Ok(Request::SetPassword {
            username: &name,
            password: &password,
        })
    );
}

#[test]
fn request_empty_is_malformed() {
    assert_eq!(request_error(&[]), malformed(0));
}

#[test]
fn request_too_long_is_malformed() {
    // "A longer request is malformed", checked before anything else: even a bad
    // VER or an unknown CMD get X'03' when the message is too long.
    for head in [[0x01, 0x01], [0x01, 0x0B], [0x02, 0x01], [0x01, 0x06]] {
        let msg = cat(&[&head, &[0u8; MAX_REQUEST - 1]]);
        assert_eq!(msg.len(), MAX_REQUEST + 1);
        assert_eq!(request_error(&msg), malformed(head[1]), "{head:02x?}");
    }
    assert_eq!(request_error(&[0x01; 65535]), malformed(0x01));
    // 1024 bytes is not too long: the other rules decide.
    let unknown = cat(&[&[0x01, 0x0B], &[0u8; MAX_REQUEST - 2]]);
    assert_eq!(
        request_error(&unknown),
        RequestError {
            status: Status::UnknownCommand,
            command: 0x0B
        }
    );
}

#[test]
fn request_wrong_version() {
    let unsupported = |command| RequestError {
        status: Status::UnsupportedVersion,
        command,
    };
    // With no CMD byte, 0 is echoed.
    assert_eq!(request_error(&[0x02]), unsupported(0x00));
    assert_eq!(request_error(&[0x00]), unsupported(0x00));
    for ver in [0x00, 0x02, 0x05, 0xFF] {
        for (fixture, _) in request_fixtures() {
            let msg = cat(&[&[ver], &fixture[1..]]);
            assert_eq!(request_error(&msg), unsupported(fixture[1]), "{msg:02x?}");
        }
        // Version before command: an unknown CMD with a bad VER is X'01'.
        assert_eq!(request_error(&[ver, 0x0B]), unsupported(0x0B));
    }
    // A SOCKS5 greeting sent to the management port.
    assert_eq!(request_error(&[0x05, 0x01, 0x00]), unsupported(0x01));
}

#[test]
fn request_without_cmd_is_malformed() {
    assert_eq!(request_error(&[0x01]), malformed(0));
}

#[test]
fn request_unknown_command() {
    for cmd in [0x00, 0x0B, 0x10, 0x7F, 0x80, 0xFE, 0xFF] {
        let want = RequestError {
            status: Status::UnknownCommand,
            command: cmd,
        };
        assert_eq!(request_error(&[0x01, cmd]), want);
        // ARGS of an unknown command are not looked at.
        assert_eq!(request_error(&[0x01, cmd, 0x00, 0x01]), want);
        assert_eq!(request_error(&cat(&[&[0x01, cmd], &[0xFF; 1022]])), want);
    }
}

#[test]
fn request_no_argument_commands_refuse_args() {
    for cmd in [0x01, 0x02, 0x03, 0x04, 0x0A] {
        for args in [&[0x00][..], &[0x01, 0x02], &[0xFF; 1022]] {
            let msg = cat(&[&[0x01, cmd], args]);
            assert_eq!(request_error(&msg), malformed(cmd), "{msg:02x?}");
        }
    }
}

#[test]
fn request_list_users_needs_exactly_four_offset_bytes() {
    for args in [
        &[][..],
        &[0x00],
        &[0x00, 0x00, 0x00],
        &[0x00; 5],
        &[0x00; 8],
    ] {
        let msg = cat(&[&[0x01, 0x05], args]);
        assert_eq!(request_error(&msg), malformed(0x05), "{msg:02x?}");
    }
}

/// Names that are not valid user names: empty is tested through LEN 0.
const BAD_NAMES: [&[u8]; 8] = [
    b"a:b", b":", b"a\x00b", b"a\x1fb", b"a\x7fb", b"a\nb", b"a\rb", b"\ta",
];

/// Passwords that are not valid passwords.
const BAD_PASSWORDS: [&[u8]; 4] = [b"a\x00b", b"a\rb", b"a\nb", b"\r\n"];

fn string(s: &[u8]) -> Vec<u8> {
    cat(&[&[u8::try_from(s.len()).unwrap()], s])
}

#[test]
fn request_add_user_malformed() {
    let add = |parts: &[&[u8]]| cat(&[&[0x01, 0x06], &parts.concat()]);
    let mut cases = vec![
        // No ARGS; ROLE only; no password.
        add(&[]),
        add(&[&[0x01]]),
        add(&[&[0x01], &string(b"bob")]),
        // "Any other ROLE is malformed."
        add(&[&[0x02], &string(b"bob"), &string(b"pw")]),
        add(&[&[0xFF], &string(b"bob"), &string(b"pw")]),
        // ULEN 0, PLEN 0.
        add(&[&[0x01, 0x00], &string(b"pw")]),
        add(&[&[0x01], &string(b"bob"), &[0x00]]),
        // Lengths that do not add up: short, long, trailing.
        add(&[&[0x01, 0x04], b"bob", &string(b"pw")]),
        add(&[&[0x01], &string(b"bob"), &[0x03], b"pw"]),
        add(&[&[0x01], &string(b"bob"), &[0x01], b"pw"]),
        add(&[&[0x01], &string(b"bob"), &string(b"pw"), &[0x00]]),
    ];
    for name in BAD_NAMES {
        cases.push(add(&[&[0x00], &string(name), &string(b"pw")]));
    }
    for password in BAD_PASSWORDS {
        cases.push(add(&[&[0x00], &string(b"bob"), &string(password)]));
    }
    for msg in cases {
        assert_eq!(request_error(&msg), malformed(0x06), "{msg:02x?}");
    }
}

#[test]
fn request_delete_user_malformed() {
    let del = |parts: &[&[u8]]| cat(&[&[0x01, 0x07], &parts.concat()]);
    let mut cases = vec![
        del(&[]),
        del(&[&[0x00]]),
        del(&[&[0x04], b"bob"]),
        del(&[&[0x02], b"bob"]),
        del(&[&string(b"bob"), &[0x00]]),
        // A password after the name is a trailing string.
        del(&[&string(b"bob"), &string(b"pw")]),
    ];
    for name in BAD_NAMES {
        cases.push(del(&[&string(name)]));
    }
    for msg in cases {
        assert_eq!(request_error(&msg), malformed(0x07), "{msg:02x?}");
    }
}

#[test]
fn request_set_password_malformed() {
    let set = |parts: &[&[u8]]| cat(&[&[0x01, 0x08], &parts.concat()]);
    let mut cases = vec![
        set(&[]),
        set(&[&string(b"bob")]),
        set(&[&[0x00], &string(b"pw")]),
        set(&[&string(b"bob"), &[0x00]]),
        set(&[&[0x04], b"bob", &string(b"pw")]),
        set(&[&string(b"bob"), &[0x03], b"pw"]),
        set(&[&string(b"bob"), &string(b"pw"), &[0x00]]),
        // A ROLE in front (ADD_USER's layout) shifts every length.
        set(&[&[0x01], &string(b"bob"), &string(b"pw")]),
    ];
    for name in BAD_NAMES {
        cases.push(set(&[&string(name), &string(b"pw")]));
    }
    for password in BAD_PASSWORDS {
        cases.push(set(&[&string(b"bob"), &string(password)]));
    }
    for msg in cases {
        assert_eq!(request_error(&msg), malformed(0x08), "{msg:02x?}");
    }
}

#[test]
fn request_fixture_truncations_and_trailing_bytes_are_malformed() {
    for (fixture, _) in request_fixtures() {
        for cut in 0..fixture.len() {
            let msg = &fixture[..cut];
            // The CMD byte is echoed once it is in.
            let command = if cut >= 2 { fixture[1] } else { 0 };
            assert_eq!(request_error(msg), malformed(command), "{msg:02x?}");
        }
        for trailer in [&[0x00][..], &[0xFF; 3], fixture] {
            let msg = cat(&[fixture, trailer]);
            assert_eq!(request_error(&msg), malformed(fixture[1]), "{msg:02x?}");
        }
    }
}

#[test]
fn request_debug_never_shows_passwords() {
    for (fixture, req) in request_fixtures() {
        let parsed = Request::parse(fixture).expect("fixture");
        for text in [format!("{req:?}"), format!("{parsed:#?}")] {
            for password in ["hunter2", "p:w d", "s3cr3t"] {
                assert!(!text.contains(password), "{text}");
            }
            if matches!(req, Request::AddUser { .. } | Request::SetPassword { .. }) {
                assert!(text.contains("<redacted>"), "{text}");
            }
        }
    }
    let add = format!("{:?}", Request::parse(REQ_ADD_ADMIN).expect("fixture"));
    assert!(add.contains("bob") && add.contains("Admin"), "{add}");
    let list = format!("{:?}", Request::ListUsers { offset: 7 });
    assert_eq!(list, "ListUsers { offset: 7 }");
}

#[test]
fn request_error_display() {
    let e = request_error(&[0x01, 0x0C]);
    assert_eq!(e.to_string(), "unknown command (CMD X'0C')");
}

// --------------------------------------------------------------- responses

#[test]
fn response_fixtures_parse_and_emit() {
    for (fixture, expected, resp) in response_fixtures() {
        assert_eq!(
            Response::parse(fixture, expected),
            Some(resp.clone()),
            "{fixture:02x?}"
        );
        assert_eq!(emit_parsed(&resp), fixture, "{resp:?}");
    }
}

#[test]
fn response_emitters_write_the_fixtures() {
    let e = |status, command, data: &[u8]| bytes(|out| emit_response(status, command, data, out));
    assert_eq!(e(Status::Success, 0x06, &[]), RESP_ADD_DONE);
    assert_eq!(e(Status::UserExists, 0x06, &[]), RESP_ADD_EXISTS);
    assert_eq!(e(Status::UnknownCommand, 0x0B, &[]), RESP_UNKNOWN_COMMAND);
    assert_eq!(e(Status::Malformed, 0x00, &[]), RESP_MALFORMED_NO_CMD);
    assert_eq!(
        e(Status::Success, 0x01, &42u64.to_be_bytes()),
        RESP_HISTORIC
    );
    let counter = |c, v| bytes(|out| emit_counter(c, v, out));
    assert_eq!(counter(Command::HistoricConnections, 42), RESP_HISTORIC);
    assert_eq!(counter(Command::ConcurrentConnections, 0), RESP_CONCURRENT);
    assert_eq!(counter(Command::BytesTransferred, u64::MAX), RESP_BYTES);
    let metrics = |v: &[(u8, u64)]| bytes(|out| emit_metrics(v, out));
    assert_eq!(
        metrics(&[(metric::HISTORIC, 1), (metric::UPTIME, 258)]),
        RESP_METRICS_2
    );
    assert_eq!(metrics(&[]), RESP_METRICS_0);
    let mut out = Vec::new();
    let users: [(Role, &[u8]); 2] = [(Role::Admin, b"alice"), (Role::Proxy, b"bob")];
    assert_eq!(emit_list_users(2, users.into_iter(), &mut out), 2);
    assert_eq!(out, RESP_LIST);
    out.clear();
    assert_eq!(emit_list_users(2, std::iter::empty(), &mut out), 0);
    assert_eq!(out, RESP_LIST_EMPTY);
    out.clear();
    let alice = [(user_metric::SESSIONS, 2), (user_metric::BYTES_UP, 258)];
    let entries: [UserEntry<'_>; 2] = [(b"alice", &alice), (b"bob", &[])];
    assert_eq!(emit_user_metrics(3, entries.into_iter(), &mut out), 2);
    assert_eq!(out, RESP_USER_METRICS);
    out.clear();
    assert_eq!(emit_user_metrics(3, std::iter::empty(), &mut out), 0);
    assert_eq!(out, RESP_USER_METRICS_EMPTY);
}

#[test]
fn response_emitters_append() {
    let mut out = vec![0xEE];
    emit_counter(Command::HistoricConnections, 42, &mut out);
    let users: [(Role, &[u8]); 2] = [(Role::Admin, b"alice"), (Role::Proxy, b"bob")];
    assert_eq!(emit_list_users(2, users.into_iter(), &mut out), 2);
    emit_response(Status::UserExists, 0x06, &[], &mut out);
    assert_eq!(
        out,
        cat(&[&[0xEE], RESP_HISTORIC, RESP_LIST, RESP_ADD_EXISTS])
    );
}

#[test]
fn all_eight_metrics() {
    let values: Vec<(u8, u64)> = (metric::HISTORIC..=metric::UPTIME)
        .map(|id| (id, u64::from(id) << 40))
        .collect();
    let msg = bytes(|out| emit_metrics(&values, out));
    assert_eq!(msg.len(), 3 + 1 + 8 * 9);
    assert_eq!(msg[3], 8);
    assert_eq!(
        Response::parse(&msg, Command::Metrics),
        Some(Response::Metrics(values))
    );
    // Unknown IDs are passed through for the caller to ignore.
    let odd = bytes(|out| emit_metrics(&[(0xF0, 1)], out));
    assert_eq!(
        Response::parse(&odd, Command::Metrics),
        Some(Response::Metrics(vec![(0xF0, 1)]))
    );
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "DATA with status")]
fn response_data_only_with_success() {
    emit_response(Status::NoSuchUser, 0x07, &[0x00], &mut Vec::new());
}

#[test]
fn response_wrong_version_or_command() {
    for (fixture, expected, _) in response_fixtures() {
        for ver in [0x00, 0x02, 0x05, 0xFF] {
            let msg = cat(&[&[ver], &fixture[1..]]);
            assert_eq!(Response::parse(&msg, expected), None, "{msg:02x?}");
        }
        // "CMD echoes the request's CMD": an answer to another request is wrong.
        for other in COMMANDS {
            if other != expected {
                assert_eq!(Response::parse(fixture, other), None, "{fixture:02x?}");
            }
        }
    }
}

#[test]
fn response_data_of_the_wrong_length() {
    let cases: [(&[u8], Command); 14] = [
        // Counters: no DATA, 7 bytes, 9 bytes.
        (&[0x01, 0x00, 0x01], Command::HistoricConnections),
        (
            &[0x01, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 1],
            Command::ConcurrentConnections,
        ),
        (
            &[0x01, 0x00, 0x03, 0, 0, 0, 0, 0, 0, 0, 1, 0],
            Command::BytesTransferred,
        ),
        // METRICS: no N; N = 1 with nothing; N = 0 with a pair; half a pair.
        (&[0x01, 0x00, 0x04], Command::Metrics),
        (&[0x01, 0x00, 0x04, 0x01], Command::Metrics),
        (
            &[0x01, 0x00, 0x04, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 1],
            Command::Metrics,
        ),
        (&[0x01, 0x00, 0x04, 0x01, 0x01, 0, 0, 0], Command::Metrics),
        // LIST_USERS: no DATA; TOTAL but no COUNT.
        (&[0x01, 0x00, 0x05], Command::ListUsers),
        (&[0x01, 0x00, 0x05, 0, 0, 0, 2], Command::ListUsers),
        // DATA where there is none.
        (&[0x01, 0x00, 0x06, 0x00], Command::AddUser),
        (&[0x01, 0x00, 0x07, 0x00], Command::DeleteUser),
        (&[0x01, 0x00, 0x08, 0x00], Command::SetPassword),
        // "DATA is present only when STATUS is X'00'."
        (&[0x01, 0x04, 0x06, 0x00], Command::AddUser),
        (
            &[0x01, 0x03, 0x01, 0, 0, 0, 0, 0, 0, 0, 1],
            Command::HistoricConnections,
        ),
    ];
    for (msg, expected) in cases {
        assert_eq!(Response::parse(msg, expected), None, "{msg:02x?}");
    }
}

#[test]
fn response_list_users_malformed() {
    let list = |total: u32, count: u16, entries: &[u8]| {
        cat(&[
            &[0x01, 0x00, 0x05],
            &total.to_be_bytes(),
            &count.to_be_bytes(),
            entries,
        ])
    };
    let alice = b"\x01\x05alice";
    let cases = [
        // COUNT not matching the entries.
        list(2, 2, alice),
        list(2, 1, &cat(&[alice, alice])),
        list(2, 0, alice),
        // Unknown ROLE.
        list(1, 1, b"\x02\x05alice"),
        list(1, 1, b"\xFF\x05alice"),
        // ULEN 0, ULEN past the end, a forbidden name.
        list(1, 1, b"\x01\x00"),
        list(1, 1, b"\x01\x06alice"),
        list(1, 1, b"\x01\x03a:b"),
        list(1, 1, b"\x01\x03a\x00b"),
        // More users in the page than the server has, or than a page holds.
        list(0, 1, alice),
        list(5000, 1001, &alice.repeat(1001)),
    ];
    for msg in cases {
        assert_eq!(
            Response::parse(&msg, Command::ListUsers),
            None,
            "{:02x?}",
            &msg[..msg.len().min(16)]
        );
    }
    // The largest well-formed shapes still parse.
    let full = list(5000, 1000, &alice.repeat(1000));
    assert!(matches!(
        Response::parse(&full, Command::ListUsers),
        Some(Response::Users { total: 5000, ref users }) if users.len() == 1000
    ));
}

#[test]
fn response_user_metrics_malformed() {
    let page = |total: u32, count: u16, entries: &[u8]| {
        cat(&[
            &[0x01, 0x00, 0x09],
            &total.to_be_bytes(),
            &count.to_be_bytes(),
            entries,
        ])
    };
    let bob = b"\x03bob\x00";
    let one = b"\x03bob\x01\x01\x00\x00\x00\x00\x00\x00\x00\x07";
    let cases = [
        // No DATA; TOTAL but no COUNT.
        cat(&[&[0x01, 0x00, 0x09]]),
        cat(&[&[0x01, 0x00, 0x09], &[0, 0, 0, 1]]),
        // COUNT not matching the entries.
        page(2, 2, bob),
        page(2, 1, &cat(&[bob, bob])),
        page(2, 0, bob),
        // N not matching the values: one missing, half a value, one too many.
        page(1, 1, b"\x03bob\x01"),
        page(1, 1, &one[..one.len() - 3]),
        page(1, 1, &cat(&[one, &[0x02]])),
        // ULEN 0, ULEN past the end, a forbidden name, no N.
        page(1, 1, b"\x00\x00"),
        page(1, 1, b"\x09bob\x00"),
        page(1, 1, b"\x03a:b\x00"),
        page(1, 1, b"\x03bob"),
        // More users in the page than the server has, or than a page holds.
        page(0, 1, bob),
        page(5000, 1001, &bob.repeat(1001)),
    ];
    for msg in cases {
        assert_eq!(
            Response::parse(&msg, Command::UserMetrics),
            None,
            "{:02x?}",
            &msg[..msg.len().min(16)]
        );
    }
    let full = page(5000, 1000, &bob.repeat(1000));
    assert!(matches!(
        Response::parse(&full, Command::UserMetrics),
        Some(Response::UserMetrics { total: 5000, ref users }) if users.len() == 1000
    ));
    // Unknown IDs are passed through for the caller to ignore.
    let odd = page(1, 1, b"\x03bob\x01\xF0\x00\x00\x00\x00\x00\x00\x00\x01");
    assert_eq!(
        Response::parse(&odd, Command::UserMetrics),
        Some(Response::UserMetrics {
            total: 1,
            users: vec![UserMetrics {
                name: b"bob".to_vec(),
                values: vec![(0xF0, 1)]
            }]
        })
    );
}

/// USER_METRICS is paged as LIST_USERS is: at most 1000 entries, and never
/// past 65535 bytes, counted from where the message starts.
#[test]
fn user_metrics_pages_like_list_users() {
    let values: Vec<(u8, u64)> = (1..=6).map(|id| (id, u64::from(id))).collect();
    let short = names(1200, 3);
    let mut out = Vec::new();
    let entries = short.iter().map(|n| (&n[..], &values[..]));
    assert_eq!(emit_user_metrics(1200, entries, &mut out), 1000);
    assert_eq!(out.len(), 9 + 1000 * (4 + 1 + 6 * 9));
    // Each entry is ULEN, 255 bytes, N and 6 values: 311. (65535 - 9) / 311
    // = 210.7.
    let long = names(300, 255);
    let mut out = vec![0xEE; 100];
    let entries = long.iter().map(|n| (&n[..], &values[..]));
    assert_eq!(emit_user_metrics(300, entries, &mut out), 210);
    assert_eq!(out.len(), 100 + 9 + 210 * 311);
    let Some(Response::UserMetrics { total, users }) =
        Response::parse(&out[100..], Command::UserMetrics)
    else {
        panic!("a full page must parse");
    };
    assert_eq!((total, users.len()), (300, 210));
    assert_eq!(users[209].name, long[209]);
    assert_eq!(users[209].values, values);
}

#[test]
fn response_success_to_an_unknown_command_is_not_understood() {
    for cmd in [0x00, 0x0B, 0x80, 0xFF] {
        let done = [0x01, 0x00, cmd];
        assert_eq!(Response::parse(&done, Command::Unknown(cmd)), None);
    }
}

#[test]
fn response_longer_than_max_is_refused() {
    let long = cat(&[&[0x01, 0x07, 0x07], &[0u8; MAX_RESPONSE - 2]]);
    assert_eq!(Response::parse(&long, Command::DeleteUser), None);
}

#[test]
fn response_fixture_truncations_and_trailing_bytes_are_refused() {
    for (fixture, expected, _) in response_fixtures() {
        for cut in 0..fixture.len() {
            let msg = &fixture[..cut];
            assert_eq!(Response::parse(msg, expected), None, "{msg:02x?}");
        }
        for trailer in [&[0x00][..], &[0xFF; 9], fixture] {
            let msg = cat(&[fixture, trailer]);
            assert_eq!(Response::parse(&msg, expected), None, "{msg:02x?}");
        }
    }
}

// ------------------------------------------------------------- list paging

/// `n` distinct names of `len` bytes (len >= 3).
fn names(n: usize, len: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut name = format!("{i:03}").into_bytes();
            name.resize(len, b'x');
            name
        })
        .collect()
}

/// Emits a page of `names` and checks it against `Response::parse`.
fn page(total: u32, names: &[Vec<u8>]) -> (u16, Vec<u8>) {
    let mut out = Vec::new();
    let users = names.iter().map(|n| (Role::Proxy, &n[..]));
    let count = emit_list_users(total, users, &mut out);
    assert!(out.len() <= MAX_RESPONSE, "{} bytes", out.len());
    let Some(Response::Users { total: t, users }) = Response::parse(&out, Command::ListUsers)
    else {
        panic!("a page of {count} users must parse");
    };
    assert_eq!(t, total);
    assert_eq!(users.len(), usize::from(count));
    for ((role, got), want) in users.iter().zip(names) {
        assert_eq!(*role, Role::Proxy);
        assert_eq!(got, want);
    }
    (count, out)
}

#[test]
fn list_users_stops_at_1000() {
    let short = names(1200, 3);
    let (count, msg) = page(1200, &short[..1000]);
    assert_eq!(count, 1000);
    assert_eq!(msg.len(), 9 + 1000 * 5);
    let (count, _) = page(1200, &short);
    assert_eq!(count, 1000, "at most 1000 even when more fit");
    // The client asks again from OFFSET + COUNT.
    let (count, _) = page(1200, &short[1000..]);
    assert_eq!(count, 200);
}

#[test]
fn list_users_stops_where_the_next_entry_would_not_fit() {
    // Each entry is ROLE ULEN and 255 bytes: 257. (65535 - 9) / 257 = 254.96.
    let long = names(300, 255);
    let (count, msg) = page(300, &long);
    assert_eq!(count, 254);
    assert_eq!(msg.len(), 9 + 254 * 257);
    assert!(msg.len() + 257 > MAX_RESPONSE);
    // The next page starts at 254 and holds the rest.
    let (count, _) = page(300, &long[254..]);
    assert_eq!(count, 46);
}

#[test]
fn list_users_fills_the_message_exactly() {
    // 9 + 254 * 257 = 65287 leaves 248 bytes: a 246-byte name fits exactly, a
    // 247-byte one does not, and nothing after it is written.
    let mut users = names(254, 255);
    users.push(names(1, 246).remove(0));
    let (count, msg) = page(300, &users);
    assert_eq!((count, msg.len()), (255, MAX_RESPONSE));

    let mut users = names(254, 255);
    users.push(names(1, 247).remove(0));
    users.push(b"z".to_vec());
    let (count, msg) = page(300, &users);
    assert_eq!((count, msg.len()), (254, 9 + 254 * 257));
}

#[test]
fn list_users_counts_from_where_the_message_starts() {
    // Bytes already in `out` belong to other messages and do not count.
    let long = names(300, 255);
    let mut out = vec![0xEE; 1000];
    let users = long.iter().map(|n| (Role::Admin, &n[..]));
    assert_eq!(emit_list_users(300, users, &mut out), 254);
    assert_eq!(out.len(), 1000 + 9 + 254 * 257);
    assert!(Response::parse(&out[1000..], Command::ListUsers).is_some());
}

// ----------------------------------------------------------- never panics

/// Every parser on `msg`, with the contracts that hold for any input: an
/// accepted message is exactly what the emitters write, and a refused request
/// names the right CMD and a failure status.
fn parse_everything(msg: &[u8], expected: &[Command]) {
    match Login::parse(msg) {
        Ok(login) => assert_eq!(bytes(|out| login.emit(out)), msg),
        Err(status) => assert!(matches!(
            status,
            LoginStatus::BadVersion | LoginStatus::Malformed
        )),
    }
    if let Some(status) = parse_login_reply(msg) {
        assert_eq!(emit_login_reply(status), msg);
    }
    match Request::parse(msg) {
        Ok(req) => assert_eq!(bytes(|out| req.emit(out)), msg),
        Err(e) => {
            assert_ne!(e.status, Status::Success);
            assert_eq!(e.command, msg.get(1).copied().unwrap_or(0));
        }
    }
    for &command in expected {
        if let Some(resp) = Response::parse(msg, command) {
            assert_eq!(emit_parsed(&resp), msg, "{msg:02x?} as {resp:?}");
        }
    }
}

#[test]
fn short_messages_never_panic() {
    parse_everything(&[], &COMMANDS);
    for a in 0..=255u8 {
        parse_everything(&[a], &COMMANDS);
        for b in 0..=255u8 {
            parse_everything(&[a, b], &COMMANDS);
        }
    }
    // Three bytes: every value. A response can only go past its header when CMD
    // is the expected one, so that is the command to try.
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            for c in 0..=255u8 {
                let msg = [a, b, c];
                parse_everything(&msg, &[Command::from(c)]);
            }
        }
    }
}

fn all_fixtures() -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = vec![LOGIN_ADMIN.to_vec(), LOGIN_SHORTEST.to_vec()];
    all.extend(request_fixtures().into_iter().map(|(f, _)| f.to_vec()));
    all.extend(response_fixtures().into_iter().map(|(f, _, _)| f.to_vec()));
    all
}

#[test]
fn truncated_fixtures_never_panic() {
    for fixture in all_fixtures() {
        for cut in 0..=fixture.len() {
            parse_everything(&fixture[..cut], &COMMANDS);
        }
    }
}

#[test]
fn mutated_fixtures_never_panic() {
    // Every single-byte substitution of every fixture: lengths that claim too
    // much or too little, bad roles, forbidden bytes, foreign commands.
    for fixture in all_fixtures() {
        for at in 0..fixture.len() {
            let mut msg = fixture.clone();
            for b in 0..=255u8 {
                msg[at] = b;
                parse_everything(&msg, &COMMANDS);
            }
        }
    }
}
