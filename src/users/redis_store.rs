//! Users kept in Redis (`--users-redis`), shared by several instances.
//!
//! The layout (docs/fleet.md, "Users shared through Redis"), under a
//! prefix (`socks5d:` by default):
//!
//! ```text
//! HASH    {prefix}users           field: the user name (bytes)
//!                                 value: ROLE SP PHC, ROLE `admin` or `user`,
//!                                        PHC the Argon2id hash of the users file
//! CHANNEL {prefix}users:changes   message: the name of the user that changed;
//!                                 one that is no user name (`:all`): everything
//! ```
//!
//! Every change is one Lua script ([`SCRIPT`]) that checks, writes and
//! publishes atomically; only after Redis said yes is the local table
//! changed. Every instance's subscriber ([`super::redis_sync`]) reads what
//! a message names and applies it.
//!
//! The URL may hold a password: it is never shown, in a log line or an
//! error ([`RedisUsers`] shows `redis://HOST:PORT/DB`).

use std::fmt;
use std::time::Duration;

use redis::Value;

use super::change::UserChange;
use super::file::{self, HashError, PasswordHash, Record};
use super::{Role, Secret, UserError, UserTable, valid_name};
use crate::logfmt::{LogSafe, Quoted};

/// `--users-redis-prefix` when not given.
pub const DEFAULT_PREFIX: &str = "socks5d:";

/// The message that asks every instance to read the whole table: it
/// holds ':', which no user name does.
pub const EVERYTHING: &str = ":all";

/// How long connecting to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one command's answer may take (HGETALL of the largest table
/// included) before the connection counts as lost.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the users are: the server's URL and the prefix of the key and
/// channel.
#[derive(Clone)]
pub struct RedisUsers {
    client: redis::Client,
    shown: String,
    prefix: String,
}

impl fmt::Debug for RedisUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUsers")
            .field("url", &self.shown)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// `redis://HOST:PORT/DB`: the URL without its user name and password.
impl fmt::Display for RedisUsers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl RedisUsers {
    /// `url` is `redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]`; `prefix` is
    /// printable ASCII without spaces, at most 100 bytes. An error never
    /// quotes the URL (it may hold a password).
    pub fn new(url: &str, prefix: &str) -> Result<RedisUsers, String> {
        const FORM: &str = "not a redis://[:PASSWORD@]HOST:PORT/DB URL";
        if !url.starts_with("redis://") {
            return Err(FORM.into());
        }
        let client = redis::Client::open(url).map_err(|_| FORM.to_owned())?;
        let info = client.get_connection_info();
        let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
            return Err(FORM.into());
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let shown = format!("redis://{host}:{port}/{}", info.redis_settings().db());
        if prefix.len() > 100 || !prefix.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "the prefix '{}' is not printable ASCII without spaces, at most 100 bytes",
                prefix.escape_default()
            ));
        }
        Ok(RedisUsers {
            client,
            shown,
            prefix: prefix.to_owned(),
        })
    }

    /// The hash of the users: `{prefix}users`.
    pub fn key(&self) -> String {
        format!("{}users", self.prefix)
    }

    /// The channel of the changes: `{prefix}users:changes`.
    pub fn channel(&self) -> String {
        format!("{}users:changes", self.prefix)
    }

    /// A new connection, with timeouts on every read and write.
    pub(crate) fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }
}

// ------------------------------------------------------------ the values

/// The value of a user's field: `ROLE SP PHC`.
pub fn value(role: Role, hash: &PasswordHash) -> String {
    format!("{} {}", file::role_name(role), hash.as_str())
}

/// A user's field and value as a record, or why they are not one (a
/// fixed reason that never quotes the value).
pub fn parse_entry(name: &[u8], value: &[u8]) -> Result<Record, &'static str> {
    if !valid_name(name) {
        return Err("invalid user name");
    }
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return Err("expected ROLE HASH");
    };
    let role = file::parse_role(&value[..space]).ok_or("unknown role (expected admin or user)")?;
    let hash =
        std::str::from_utf8(&value[space + 1..]).map_err(|_| HashError::Malformed.reason())?;
    let hash = PasswordHash::parse(hash).map_err(HashError::reason)?;
    Ok(Record {
        name: name.to_vec(),
        role,
        hash,
    })
}

/// What HGETALL found: the users, and the entries that are none (name,
/// reason).
#[derive(Debug, Default)]
pub struct Loaded {
    /// The well-formed users.
    pub records: Vec<Record>,
    /// The malformed entries, skipped: the name (lossy) and why.
    pub skipped: Vec<(String, &'static str)>,
}

/// Reads every user (HGETALL: one atomic snapshot).
pub(crate) fn load(con: &mut redis::Connection, at: &RedisUsers) -> redis::RedisResult<Loaded> {
    let v: Value = redis::cmd("HGETALL").arg(at.key()).query(con)?;
    Ok(loaded(v))
}

/// The fields and values of an HGETALL answer (a flat array in RESP2, a
/// map in RESP3), sorted into users and skipped entries.
fn loaded(v: Value) -> Loaded {
    let pairs: Vec<(Value, Value)> = match v {
        Value::Array(items) => {
            let mut it = items.into_iter();
            let mut pairs = Vec::new();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            pairs
        }
        Value::Map(pairs) => pairs,
        _ => Vec::new(),
    };
    let mut out = Loaded::default();
    for (k, v) in pairs {
        let (Value::BulkString(name), Value::BulkString(value)) = (k, v) else {
            continue;
        };
        match parse_entry(&name, &value) {
            Ok(r) => out.records.push(r),
            Err(why) => out
                .skipped
                .push((String::from_utf8_lossy(&name).into_owned(), why)),
        }
    }
    out
}

/// Reads the values of `names` (one HMGET), in their order: `None` for
/// a user there is not.
pub(crate) fn load_some(
    con: &mut redis::Connection,
    at: &RedisUsers,
    names: &[Vec<u8>],
) -> redis::RedisResult<Vec<Option<Vec<u8>>>> {
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(at.key());
    for n in names {
        cmd.arg(&n[..]);
    }
    cmd.query(con)
}

// ------------------------------------------------------------ the changes

/// One change, checked, made and published at once. KEYS[1] is the hash;
/// ARGV: the operation (`add`, `set`, `del`), the user name, the value
/// (`ROLE HASH` for `add`, the new hash for `set`), the most users the
/// hash may hold, the channel. It answers `{'ok', NEW-VALUE}` (`{'ok'}`
/// for `del`) or `{REASON}`. An administrator is a value that starts with
/// `admin `.
pub const SCRIPT: &str = r"-- socks5d: one user change, checked, made and published atomically
local key, op, name = KEYS[1], ARGV[1], ARGV[2]
local cur = redis.call('HGET', key, name)
local new
if op == 'add' then
  if cur then return {'exists'} end
  if redis.call('HLEN', key) >= tonumber(ARGV[4]) then return {'full'} end
  new = ARGV[3]
elseif op == 'set' then
  local role = cur and string.match(cur, '^(%l+) ')
  if role ~= 'admin' and role ~= 'user' then return {'no-such-user'} end
  new = role .. ' ' .. ARGV[3]
elseif op == 'del' then
  if not cur then return {'no-such-user'} end
  if string.sub(cur, 1, 6) == 'admin ' then
    local admins = 0
    for _, v in ipairs(redis.call('HVALS', key)) do
      if string.sub(v, 1, 6) == 'admin ' then admins = admins + 1 end
    end
    if admins < 2 then return {'last-admin'} end
  end
else
  return {'unknown-operation'}
end
if new then redis.call('HSET', key, name, new) else redis.call('HDEL', key, name) end
redis.call('PUBLISH', ARGV[5], name)
return {'ok', new}
";

/// What the script answered: the new value (`None` for a deletion), or
/// the status to answer. An answer it never gives is [`UserError::NotDurable`].
pub fn outcome(v: &Value) -> Result<Option<Vec<u8>>, UserError> {
    let Value::Array(items) = v else {
        return Err(UserError::NotDurable);
    };
    let word = |i: usize| match items.get(i) {
        Some(Value::BulkString(b)) => Some(&b[..]),
        Some(Value::SimpleString(s)) => Some(s.as_bytes()),
        _ => None,
    };
    match (word(0), items.len()) {
        (Some(b"ok"), 1) => Ok(None),
        (Some(b"ok"), 2) => word(1)
            .map(|v| Some(v.to_vec()))
            .ok_or(UserError::NotDurable),
        (Some(b"exists"), 1) => Err(UserError::Exists),
        (Some(b"no-such-user"), 1) => Err(UserError::NoSuchUser),
        (Some(b"last-admin"), 1) => Err(UserError::LastAdmin),
        (Some(b"full"), 1) => Err(UserError::Full),
        _ => Err(UserError::NotDurable),
    }
}

/// A change as the script's operation, name and value; `None` for a
/// reload. New hashes are made at `cost` (Argon2id, the slow part) and
/// returned with the secret they belong to.
pub(crate) struct Prepared<'a> {
    op: &'static str,
    name: &'a [u8],
    arg: String,
    /// The secret of the new password, for the local table.
    pub secret: Option<Secret>,
}

impl<'a> Prepared<'a> {
    /// Checks and hashes `change` (the slow part, before any Redis I/O).
    pub fn new(change: &'a UserChange, cost: file::Cost) -> Result<Option<Self>, UserError> {
        let hash = |p: &[u8]| -> Result<(PasswordHash, Secret), UserError> {
            if !super::valid_password(p) {
                return Err(UserError::InvalidPassword);
            }
            let h = file::hash_password_with(p, cost);
            Ok((h.clone(), Secret::with_hash(p, h)))
        };
        let name_ok = |n: &[u8]| {
            if valid_name(n) {
                Ok(())
            } else {
                Err(UserError::InvalidName)
            }
        };
        Ok(Some(match change {
            UserChange::Add {
                name,
                password,
                role,
            } => {
                name_ok(name)?;
                let (h, s) = hash(password)?;
                Prepared {
                    op: "add",
                    name,
                    arg: value(*role, &h),
                    secret: Some(s),
                }
            }
            UserChange::SetPassword { name, password } => {
                name_ok(name)?;
                let (h, s) = hash(password)?;
                Prepared {
                    op: "set",
                    name,
                    arg: h.as_str().to_owned(),
                    secret: Some(s),
                }
            }
            UserChange::Delete { name } => Prepared {
                op: "del",
                name,
                arg: String::new(),
                secret: None,
            },
            UserChange::Reload => return Ok(None),
        }))
    }

    /// Runs the script (EVALSHA, EVAL when Redis does not know it yet):
    /// the new value, or the status. A Redis error is `Err(Err(..))`.
    pub fn run(
        &self,
        con: &mut redis::Connection,
        at: &RedisUsers,
        max_users: usize,
    ) -> Result<Result<Option<Vec<u8>>, UserError>, redis::RedisError> {
        let v: Value = redis::Script::new(SCRIPT)
            .key(at.key())
            .arg(self.op)
            .arg(self.name)
            .arg(&self.arg)
            .arg(max_users)
            .arg(at.channel())
            .invoke(con)?;
        Ok(outcome(&v))
    }

    /// Makes the change Redis accepted, with `new_value` as the script
    /// answered it, in `t`.
    pub fn apply(&self, t: &mut UserTable, new_value: Option<&[u8]>) {
        match (new_value, &self.secret) {
            (Some(v), Some(secret)) => {
                let role = match parse_entry(self.name, v) {
                    Ok(r) => r.role,
                    Err(_) => return,
                };
                t.insert(self.name, role, secret.clone());
            }
            _ => {
                let _ = t.remove(self.name);
            }
        }
    }
}

// ------------------------------------------------------- offline changes

/// Makes `change` in Redis directly (`socks5d user ... --users-redis`),
/// through the same script as a running server, so that every running
/// instance applies it at once. Returns the table as it is afterwards.
pub fn edit(at: &RedisUsers, change: &UserChange, cost: file::Cost) -> Result<UserTable, String> {
    let prepared = Prepared::new(change, cost).map_err(|e| e.to_string())?;
    let mut con = at.connect().map_err(|e| format!("{at}: {e}"))?;
    if let Some(p) = &prepared {
        p.run(&mut con, at, super::MAX_USERS)
            .map_err(|e| format!("{at}: {e}"))?
            .map_err(|e| match e {
                UserError::NotDurable => "Redis refused the change".to_owned(),
                e => e.to_string(),
            })?;
    }
    let loaded = load(&mut con, at).map_err(|e| format!("{at}: {e}"))?;
    for (name, why) in &loaded.skipped {
        log::warn!(
            "users entry skipped: store={at} user={} reason={}",
            LogSafe(name),
            Quoted(why)
        );
    }
    Ok(UserTable::new().rebuilt(loaded.records))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_no_password() {
        let at = RedisUsers::new("redis://:s3cret@127.0.0.1:6380/2", "app:").unwrap();
        assert_eq!(at.to_string(), "redis://127.0.0.1:6380/2");
        assert!(!format!("{at:?}").contains("s3cret"));
        assert_eq!(at.key(), "app:users");
        assert_eq!(at.channel(), "app:users:changes");
        let at = RedisUsers::new("redis://localhost", DEFAULT_PREFIX).unwrap();
        assert_eq!(at.to_string(), "redis://localhost:6379/0");
        assert_eq!(at.key(), "socks5d:users");
        for bad in [
            "http://:s3cret@x",
            "redis//:s3cret@x",
            "unix:///tmp/s3cret",
            "redis://:s3cret@",
        ] {
            let e = RedisUsers::new(bad, DEFAULT_PREFIX).unwrap_err();
            assert!(!e.contains("s3cret"), "{e}");
        }
        for bad in ["a b", "\u{e9}", &"x".repeat(101)] {
            assert!(RedisUsers::new("redis://h", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_are_role_space_hash() {
        let h = file::hash_password_with(b"pw", file::Cost::CHEAP);
        let v = value(Role::Admin, &h);
        assert_eq!(v, format!("admin {}", h.as_str()));
        let r = parse_entry(b"alice", v.as_bytes()).unwrap();
        assert_eq!((r.name.as_slice(), r.role), (&b"alice"[..], Role::Admin));
        assert!(file::verify_password(&r.hash, b"pw"));
        let user = format!("user {}", h.as_str());
        assert_eq!(
            parse_entry(b"b", user.as_bytes()).unwrap().role,
            Role::Proxy
        );
        for (name, value, why) in [
            (&b"a:b"[..], user.as_str(), "invalid user name"),
            (b"", user.as_str(), "invalid user name"),
            (b"a", h.as_str(), "expected ROLE HASH"),
            (
                b"a",
                "root $argon2id$x",
                "unknown role (expected admin or user)",
            ),
            (b"a", "admin not-a-hash", "malformed password hash"),
            (b"a", "admin  $argon2id", "malformed password hash"),
        ] {
            assert_eq!(parse_entry(name, value.as_bytes()).unwrap_err(), why);
        }
        // A reason never quotes the value.
        let e = parse_entry(b"a", b"admin $argon2id$secret-ish").unwrap_err();
        assert!(!e.contains("secret"));
    }

    #[test]
    fn hgetall_answers_sorted_into_users_and_skipped() {
        let h = file::hash_password_with(b"pw", file::Cost::CHEAP);
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let good = value(Role::Proxy, &h);
        let flat = Value::Array(vec![b("bob"), b(&good), b("bad"), b("user x")]);
        let l = loaded(flat);
        assert_eq!(l.records.len(), 1);
        assert_eq!(l.records[0].name, b"bob");
        assert_eq!(l.skipped, [("bad".to_owned(), "malformed password hash")]);
        let map = Value::Map(vec![(b("carol"), b(&good))]);
        assert_eq!(loaded(map).records[0].name, b"carol");
        assert!(loaded(Value::Nil).records.is_empty());
    }

    #[test]
    fn script_answers_map_to_statuses() {
        let b = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let a = |v: Vec<Value>| Value::Array(v);
        assert_eq!(outcome(&a(vec![b("ok")])), Ok(None));
        assert_eq!(
            outcome(&a(vec![b("ok"), b("user $h")])),
            Ok(Some(b"user $h".to_vec()))
        );
        assert_eq!(outcome(&a(vec![b("exists")])), Err(UserError::Exists));
        assert_eq!(
            outcome(&a(vec![b("no-such-user")])),
            Err(UserError::NoSuchUser)
        );
        assert_eq!(
            outcome(&a(vec![b("last-admin")])),
            Err(UserError::LastAdmin)
        );
        assert_eq!(outcome(&a(vec![b("full")])), Err(UserError::Full));
        for odd in [
            a(vec![b("unknown-operation")]),
            a(vec![b("exists"), b("x")]),
            a(vec![b("ok"), Value::Int(1)]),
            a(vec![]),
            Value::Okay,
            Value::Nil,
            b("ok"),
        ] {
            assert_eq!(outcome(&odd), Err(UserError::NotDurable), "{odd:?}");
        }
    }

    #[test]
    fn changes_are_checked_before_any_io() {
        let add = UserChange::Add {
            name: b"a:b".to_vec(),
            password: b"pw".to_vec(),
            role: Role::Proxy,
        };
        assert_eq!(
            Prepared::new(&add, file::Cost::CHEAP).err(),
            Some(UserError::InvalidName)
        );
        let set = UserChange::SetPassword {
            name: b"a".to_vec(),
            password: b"p\nw".to_vec(),
        };
        assert_eq!(
            Prepared::new(&set, file::Cost::CHEAP).err(),
            Some(UserError::InvalidPassword)
        );
        assert!(
            Prepared::new(&UserChange::Reload, file::Cost::CHEAP)
                .unwrap()
                .is_none()
        );
        let add = UserChange::Add {
            name: b"alice".to_vec(),
            password: b"pw".to_vec(),
            role: Role::Admin,
        };
        let p = Prepared::new(&add, file::Cost::CHEAP).unwrap().unwrap();
        assert_eq!(p.op, "add");
        assert!(p.arg.starts_with("admin $argon2id$"));
        // Applied with the value the script answered.
        let mut t = UserTable::new();
        p.apply(&mut t, Some(p.arg.as_bytes()));
        assert_eq!(t.find(b"alice").unwrap().role, Role::Admin);
        assert!(t.find(b"alice").unwrap().secret.verify(b"pw"));
        let del = UserChange::Delete {
            name: b"alice".to_vec(),
        };
        Prepared::new(&del, file::Cost::CHEAP)
            .unwrap()
            .unwrap()
            .apply(&mut t, None);
        assert!(t.find(b"alice").is_none());
    }
}
