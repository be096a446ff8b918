//! The access log: one line per client connection, written when it closes.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::socks5::wire::{Command, Reply, TargetAddr, write_log_safe};

/// How a client connection ended, as the access log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Result {
    /// The request was answered with this reply (X'00': a tunnel was open).
    Reply(Reply),
    /// RFC 1929 authentication failed.
    AuthFailed,
    /// No offered method was acceptable.
    NoAcceptableMethod,
    /// A version byte was wrong.
    BadVersion,
    /// The client went away or timed out before its request was answered.
    Incomplete,
    /// Closed in its handshake, before anyone logged in on it, to make room
    /// for a new client when accept(2) ran out of descriptors.
    Evicted,
    /// A balancer's connection (`--proxy-protocol-from`) closed without a
    /// valid PROXY header.
    BadProxyHeader,
}

/// One closed client connection. Holds no password, ever.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// When the connection was accepted.
    pub start: SystemTime,
    /// The client's address (behind a balancer, the one its PROXY header
    /// named).
    pub client: SocketAddr,
    /// The balancer the connection came through, when its PROXY header
    /// named the client.
    pub via: Option<SocketAddr>,
    /// The authenticated user (or the name tried, when authentication failed).
    pub user: Option<Arc<str>>,
    /// CMD of the request, if one came.
    pub command: Option<Command>,
    /// The target as the client asked for it (UDP ASSOCIATE: where the
    /// client said it would send from; BIND: the peer it expected).
    pub target: Option<TargetAddr>,
    /// The address socks5d connected to (BIND: the peer that connected).
    pub connected: Option<SocketAddr>,
    /// How it ended.
    pub result: Result,
    /// Payload bytes client to target (UDP: datagram payloads).
    pub bytes_up: u64,
    /// Payload bytes target to client.
    pub bytes_down: u64,
    /// A UDP association's datagram totals.
    pub datagrams: Option<Datagrams>,
    /// The rule that denied the request (`FILE:LINE`, `default:REASON`).
    pub rule: Option<Box<str>>,
    /// How long the connection lived.
    pub duration: Duration,
}

/// The datagrams of one UDP association.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Datagrams {
    /// Relayed client to target.
    pub up: u64,
    /// Relayed target to client.
    pub down: u64,
    /// Dropped, either way, for any reason.
    pub dropped: u64,
}

impl fmt::Display for AccessRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_rfc3339(f, self.start)?;
        write!(f, " client={}", self.client)?;
        if let Some(via) = self.via {
            write!(f, " via={via}")?;
        }
        match &self.user {
            Some(u) => {
                f.write_str(" user=")?;
                write_log_safe(f, u)?;
            }
            None => f.write_str(" user=-")?,
        }
        f.write_str(match self.command {
            Some(Command::Connect) => " cmd=connect",
            Some(Command::Bind) => " cmd=bind",
            Some(Command::UdpAssociate) => " cmd=udp",
            Some(Command::Unknown(_)) => " cmd=unknown",
            None => " cmd=-",
        })?;
        match &self.target {
            Some(t) => write!(f, " target={t}")?,
            None => f.write_str(" target=-")?,
        }
        match &self.connected {
            Some(a) => write!(f, " connected={a}")?,
            None => f.write_str(" connected=-")?,
        }
        match self.result {
            Result::Reply(r) => write!(f, " reply={:02x}", u8::from(r))?,
            Result::AuthFailed => f.write_str(" reply=auth-failed")?,
            Result::NoAcceptableMethod => f.write_str(" reply=no-method")?,
            Result::BadVersion => f.write_str(" reply=bad-version")?,
            Result::Incomplete => f.write_str(" reply=-")?,
            Result::Evicted => f.write_str(" reply=evicted")?,
            Result::BadProxyHeader => f.write_str(" reply=bad-proxy-header")?,
        }
        if let Some(rule) = &self.rule {
            f.write_str(" rule=")?;
            write_log_safe(f, rule)?;
        }
        write!(f, " up={} down={}", self.bytes_up, self.bytes_down)?;
        if let Some(d) = self.datagrams {
            write!(
                f,
                " datagrams_up={} datagrams_down={} dropped={}",
                d.up, d.down, d.dropped
            )?;
        }
        write!(f, " duration_ms={}", self.duration.as_millis())
    }
}

/// Writes `t` as an RFC 3339 UTC time with milliseconds.
pub fn write_rfc3339(f: &mut fmt::Formatter<'_>, t: SystemTime) -> fmt::Result {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    write!(
        f,
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_783), (2026, 11, 26));
    }

    #[test]
    fn line() {
        let rec = AccessRecord {
            start: UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            client: "127.0.0.1:4000".parse().unwrap(),
            via: None,
            user: Some("al ice".into()),
            command: Some(Command::Connect),
            target: Some(TargetAddr::Domain((*b"ex\nample.com").into(), 80)),
            connected: Some("[::1]:80".parse().unwrap()),
            result: Result::Reply(Reply::Succeeded),
            bytes_up: 10,
            bytes_down: 20,
            datagrams: None,
            rule: None,
            duration: Duration::from_millis(1500),
        };
        assert_eq!(
            rec.to_string(),
            "2026-11-18T11:06:40.123Z client=127.0.0.1:4000 user=al\\u{20}ice cmd=connect \
             target=ex\\u{a}ample.com:80 connected=[::1]:80 reply=00 up=10 down=20 duration_ms=1500"
        );
    }

    #[test]
    fn udp_association_line() {
        let rec = AccessRecord {
            start: UNIX_EPOCH,
            client: "127.0.0.1:4000".parse().unwrap(),
            via: None,
            user: Some("bob".into()),
            command: Some(Command::UdpAssociate),
            target: Some(TargetAddr::Ip("0.0.0.0:0".parse().unwrap())),
            connected: None,
            result: Result::Reply(Reply::Succeeded),
            bytes_up: 640,
            bytes_down: 600,
            datagrams: Some(Datagrams {
                up: 10,
                down: 9,
                dropped: 2,
            }),
            rule: None,
            duration: Duration::from_millis(30),
        };
        assert_eq!(
            rec.to_string(),
            "1970-01-01T00:00:00.000Z client=127.0.0.1:4000 user=bob cmd=udp target=0.0.0.0:0 \
             connected=- reply=00 up=640 down=600 datagrams_up=10 datagrams_down=9 dropped=2 \
             duration_ms=30"
        );
    }

    #[test]
    fn denied_line_names_the_rule() {
        let rec = AccessRecord {
            start: UNIX_EPOCH,
            client: "127.0.0.1:4000".parse().unwrap(),
            via: None,
            user: None,
            command: Some(Command::Connect),
            target: Some(TargetAddr::Ip("127.0.0.1:22".parse().unwrap())),
            connected: None,
            result: Result::Reply(Reply::NotAllowed),
            bytes_up: 0,
            bytes_down: 0,
            datagrams: None,
            rule: Some("default:loopback".into()),
            duration: Duration::from_millis(1),
        };
        assert_eq!(
            rec.to_string(),
            "1970-01-01T00:00:00.000Z client=127.0.0.1:4000 user=- cmd=connect \
             target=127.0.0.1:22 connected=- reply=02 rule=default:loopback up=0 down=0 \
             duration_ms=1"
        );
    }

    #[test]
    fn evicted_line() {
        let rec = AccessRecord {
            start: UNIX_EPOCH,
            client: "127.0.0.1:4000".parse().unwrap(),
            via: None,
            user: None,
            command: None,
            target: None,
            connected: None,
            result: Result::Evicted,
            bytes_up: 0,
            bytes_down: 0,
            datagrams: None,
            rule: None,
            duration: Duration::from_millis(7),
        };
        assert_eq!(
            rec.to_string(),
            "1970-01-01T00:00:00.000Z client=127.0.0.1:4000 user=- cmd=- target=- connected=- \
             reply=evicted up=0 down=0 duration_ms=7"
        );
    }

    #[test]
    fn a_balancer_connection_names_the_client_and_the_balancer() {
        let mut rec = AccessRecord {
            start: UNIX_EPOCH,
            client: "[2001:db8::7]:4000".parse().unwrap(),
            via: Some("10.0.0.2:51000".parse().unwrap()),
            user: None,
            command: Some(Command::Connect),
            target: Some(TargetAddr::Ip("192.0.2.1:80".parse().unwrap())),
            connected: Some("192.0.2.1:80".parse().unwrap()),
            result: Result::Reply(Reply::Succeeded),
            bytes_up: 1,
            bytes_down: 2,
            datagrams: None,
            rule: None,
            duration: Duration::from_millis(3),
        };
        assert_eq!(
            rec.to_string(),
            "1970-01-01T00:00:00.000Z client=[2001:db8::7]:4000 via=10.0.0.2:51000 user=- \
             cmd=connect target=192.0.2.1:80 connected=192.0.2.1:80 reply=00 up=1 down=2 \
             duration_ms=3"
        );
        rec.via = None;
        rec.command = None;
        rec.target = None;
        rec.connected = None;
        rec.result = Result::BadProxyHeader;
        assert_eq!(
            rec.to_string(),
            "1970-01-01T00:00:00.000Z client=[2001:db8::7]:4000 user=- cmd=- target=- \
             connected=- reply=bad-proxy-header up=1 down=2 duration_ms=3"
        );
    }
}
