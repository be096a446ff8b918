//! The audit trail: one line per administrator log in, per user change and
//! per reload, in a stable `key=value` format, never a password.
//!
//! ```text
//! event=login result=ok user=root peer=127.0.0.1 transport=sctp
//! event=login result=refused user=root peer=uid:1000 transport=unix
//! event=change op=add-user user=bob role=user by=root transport=sctp status=ok
//! event=reload by=sighup status=ok
//! event=login result=left-out count=412 window_s=60 peer=192.0.2.7
//! ```
//!
//! Names are written so that they stay one token and cannot fake a line
//! ([`crate::users::write_log_safe`]). Refused log ins are what anyone can
//! cause, so each source may have [`REFUSALS_PER_SOURCE`] of them written
//! per [`WINDOW`]; the rest are counted, and a `result=left-out` line says
//! how many, before that source's next line or when socks5d stops.
//!
//! Lines go with the diagnostics (standard error) by default, or to
//! standard output, a file (`--audit-log`), or nowhere.

use std::fmt::{self, Write as _};
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use super::wire::Status;
use crate::logfmt::{LogSafe, Quoted};
use crate::metrics::quiet::Windows;
use crate::metrics::write_rfc3339;
use crate::users::penalty::{Peer, Source};
use crate::users::store::UserChange;
use crate::users::{Role, write_log_safe};

/// Refused log-in lines one source may have written per window.
pub const REFUSALS_PER_SOURCE: u32 = 10;
/// The window they are counted over (the access log's).
pub use crate::metrics::quiet::WINDOW;

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    /// With the diagnostics, on standard error (the default).
    Diagnostics,
    /// Standard output.
    Stdout,
    /// Appended to this file (reopened on SIGHUP).
    File(PathBuf),
    /// Nowhere.
    Off,
}

/// How a log in ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// Logged in.
    Ok,
    /// Wrong name or password, or not an administrator.
    Refused,
    /// Refused unchecked: its source serves a penalty.
    Penalised,
    /// Good credentials, but --max-admin-sessions were open.
    NoRoom,
}

impl Login {
    fn word(self) -> &'static str {
        match self {
            Login::Ok => "ok",
            Login::Refused => "refused",
            Login::Penalised => "penalised",
            Login::NoRoom => "no-room",
        }
    }
}

/// A name, written as one safe token.
struct Name<'a>(&'a [u8]);

impl fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_log_safe(f, &String::from_utf8_lossy(self.0))
    }
}

/// A peer as a token: an address, or `uid:N`, or `-`.
struct PeerToken(Option<Peer>);

impl fmt::Display for PeerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(Peer::Addr(ip)) => match ip {
                std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => write!(f, "{v4}"),
                    None => write!(f, "{v6}"),
                },
                v4 => write!(f, "{v4}"),
            },
            Some(Peer::Uid(uid)) => write!(f, "uid:{uid}"),
            None => f.write_str("-"),
        }
    }
}

/// The status word of a change's response.
fn status_word(s: Status) -> String {
    match s {
        Status::Success => "ok".into(),
        Status::UnsupportedVersion => "unsupported-version".into(),
        Status::UnknownCommand => "unknown-command".into(),
        Status::Malformed => "malformed".into(),
        Status::UserExists => "user-exists".into(),
        Status::NoSuchUser => "no-such-user".into(),
        Status::Forbidden => "forbidden".into(),
        Status::ServerError => "server-error".into(),
        Status::LimitReached => "limit-reached".into(),
        Status::Unknown(b) => format!("x{b:02x}"),
    }
}

/// What a change was, for its audit line (no password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeLine {
    op: &'static str,
    user: Option<Vec<u8>>,
    role: Option<Role>,
}

impl ChangeLine {
    /// The audit view of `change`.
    pub fn of(change: &UserChange) -> Self {
        match change {
            UserChange::Add { name, role, .. } => ChangeLine {
                op: "add-user",
                user: Some(name.clone()),
                role: Some(*role),
            },
            UserChange::Delete { name } => ChangeLine {
                op: "del-user",
                user: Some(name.clone()),
                role: None,
            },
            UserChange::SetPassword { name, .. } => ChangeLine {
                op: "set-password",
                user: Some(name.clone()),
                role: None,
            },
            UserChange::Reload => ChangeLine {
                op: "reload",
                user: None,
                role: None,
            },
        }
    }
}

/// The audit trail's sink.
pub struct Audit {
    dest: Dest,
    out: Mutex<Option<Box<dyn Write + Send>>>,
    refusals: Mutex<Windows>,
}

impl fmt::Debug for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit").field("dest", &self.dest).finish()
    }
}

fn open(dest: &Dest) -> io::Result<Option<Box<dyn Write + Send>>> {
    Ok(match dest {
        Dest::Stdout => Some(Box::new(io::stdout())),
        Dest::File(p) => Some(Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(p)?,
        )),
        Dest::Diagnostics | Dest::Off => None,
    })
}

impl Audit {
    /// An audit trail to `dest` (a file is opened now).
    pub fn new(dest: Dest) -> io::Result<Audit> {
        Ok(Audit {
            out: Mutex::new(open(&dest)?),
            dest,
            refusals: Mutex::new(Windows::new(REFUSALS_PER_SOURCE)),
        })
    }

    /// Opens the file again (after log rotation); keeps the old one on error.
    pub fn reopen(&self) {
        if let Dest::File(p) = &self.dest {
            match open(&self.dest) {
                Ok(w) => *self.out.lock().unwrap_or_else(|e| e.into_inner()) = w,
                Err(e) => log::error!(
                    "audit log not reopened: path={} error={}",
                    LogSafe(p.display()),
                    Quoted(e)
                ),
            }
        }
    }

    fn write(&self, body: &str) {
        match &self.dest {
            Dest::Off => {}
            Dest::Diagnostics => log::info!("audit: {body}"),
            Dest::Stdout | Dest::File(_) => {
                let mut line = String::new();
                let _ = write!(line, "{}", Stamp(SystemTime::now()));
                line.push(' ');
                line.push_str(body);
                line.push('\n');
                let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(w) = out.as_mut()
                    && let Err(e) = w.write_all(line.as_bytes()).and_then(|()| w.flush())
                {
                    log::error!("audit line not written: error={}", Quoted(e));
                }
            }
        }
    }

    /// A log in ended with `result`; `name` is the name that was tried.
    pub fn login(
        &self,
        result: Login,
        name: &[u8],
        peer: Option<Peer>,
        transport: &str,
        now: Instant,
    ) {
        if matches!(result, Login::Refused | Login::Penalised) && !self.admit(peer, now) {
            return;
        }
        self.write(&format!(
            "event=login result={} user={} peer={} transport={transport}",
            result.word(),
            Name(name),
            PeerToken(peer)
        ));
    }

    /// An administrator's change finished with `status`.
    pub fn change(&self, by: &str, what: &ChangeLine, transport: &str, status: Status) {
        let mut body = format!("event=change op={}", what.op);
        if let Some(u) = &what.user {
            let _ = write!(body, " user={}", Name(u));
        }
        if let Some(r) = what.role {
            body.push_str(match r {
                Role::Admin => " role=admin",
                Role::Proxy => " role=user",
            });
        }
        let _ = write!(
            body,
            " by={} transport={transport} status={}",
            Name(by.as_bytes()),
            status_word(status)
        );
        self.write(&body);
    }

    /// A reload asked for by a signal ended.
    pub fn reload(&self, by: &str, ok: bool) {
        self.write(&format!(
            "event=reload by={by} status={}",
            if ok { "ok" } else { "server-error" }
        ));
    }

    /// Whether a refused log in from `peer` is written; counts it if not.
    /// Writes the summary of an ended window first.
    fn admit(&self, peer: Option<Peer>, now: Instant) -> bool {
        // Peers of unknown address share one window, that of 0.0.0.0.
        let source = peer.map_or(Source::of(Ipv4Addr::UNSPECIFIED.into()), Peer::source);
        let a = self
            .refusals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(source, now);
        if let Some((source, n)) = a.ended {
            self.left_out(source, n);
        }
        a.write
    }

    fn left_out(&self, source: Option<Source>, n: u64) {
        let peer = match source {
            Some(s) => s.to_string(),
            None => "*".to_owned(),
        };
        self.write(&format!(
            "event=login result=left-out count={n} window_s={} peer={peer}",
            WINDOW.as_secs()
        ));
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let ended = self
            .refusals
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .flush();
        for (source, n) in ended {
            self.left_out(source, n);
        }
    }
}

/// A wall-clock time as RFC 3339, for lines in a file of their own.
struct Stamp(SystemTime);

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_rfc3339(f, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines written to a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn audit() -> (Audit, Buf) {
        let buf = Buf::default();
        let a = Audit {
            dest: Dest::Stdout,
            out: Mutex::new(Some(Box::new(buf.clone()))),
            refusals: Mutex::new(Windows::new(REFUSALS_PER_SOURCE)),
        };
        (a, buf)
    }

    fn lines(buf: &Buf) -> Vec<String> {
        String::from_utf8(buf.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            // Drop the time stamp.
            .map(|l| l.split_once(' ').unwrap().1.to_owned())
            .collect()
    }

    #[test]
    fn lines_are_key_value_and_names_one_token() {
        let (a, buf) = audit();
        let t = Instant::now();
        let ip = Some(Peer::Addr("::ffff:127.0.0.1".parse().unwrap()));
        a.login(Login::Ok, b"root", ip, "sctp", t);
        a.login(
            Login::Refused,
            b"ev il\nx",
            Some(Peer::Uid(1000)),
            "unix",
            t,
        );
        let add = UserChange::Add {
            name: b"bob".to_vec(),
            password: b"secret-pw".to_vec(),
            role: Role::Proxy,
        };
        a.change("root", &ChangeLine::of(&add), "sctp", Status::Success);
        let del = UserChange::Delete {
            name: b"zed".to_vec(),
        };
        a.change("root", &ChangeLine::of(&del), "unix", Status::NoSuchUser);
        a.reload("sighup", true);
        assert_eq!(
            lines(&buf),
            [
                "event=login result=ok user=root peer=127.0.0.1 transport=sctp",
                "event=login result=refused user=ev\\u{20}il\\u{a}x peer=uid:1000 transport=unix",
                "event=change op=add-user user=bob role=user by=root transport=sctp status=ok",
                "event=change op=del-user user=zed by=root transport=unix status=no-such-user",
                "event=reload by=sighup status=ok",
            ]
        );
        assert!(
            !String::from_utf8(buf.0.lock().unwrap().clone())
                .unwrap()
                .contains("secret")
        );
    }

    #[test]
    fn refusals_per_source_are_bounded_and_summarised() {
        let (a, buf) = audit();
        let t = Instant::now();
        let flood = Some(Peer::Addr("192.0.2.7".parse().unwrap()));
        for _ in 0..100 {
            a.login(Login::Refused, b"root", flood, "sctp", t);
        }
        // Another source and successes are not held back.
        a.login(Login::Refused, b"root", Some(Peer::Uid(5)), "unix", t);
        a.login(Login::Ok, b"root", flood, "sctp", t);
        let got = lines(&buf);
        assert_eq!(got.len(), 12, "{got:?}");
        // The next window starts with the summary of the last.
        a.login(Login::Refused, b"root", flood, "sctp", t + WINDOW);
        let got = lines(&buf);
        assert_eq!(
            got[12],
            "event=login result=left-out count=90 window_s=60 peer=192.0.2.7"
        );
        assert!(got[13].starts_with("event=login result=refused"));
        // What is left when socks5d stops is summarised too.
        for _ in 0..20 {
            a.login(Login::Penalised, b"root", flood, "sctp", t + WINDOW);
        }
        drop(a);
        let got = lines(&buf);
        assert_eq!(
            got.last().unwrap(),
            "event=login result=left-out count=11 window_s=60 peer=192.0.2.7"
        );
    }
}
