//! Users shared through Redis (`--users-redis`), through the binary: two
//! socks5d instances on one redis-server of the test's own (on loopback),
//! changed over their management Unix sockets, over `socks5d user`, and
//! in Redis directly with redis-cli; Redis stopped and started again.
//!
//! The cases run one at a time: one measures how soon a change made on
//! one instance is in force on the other, which other cases' daemons
//! would disturb.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::{BIN, Instance, RedisServer, add_proxy_user, dial_proxy, run_brief, user_value};
use socks5d::mgmt::wire::Request;

/// Held by the case that runs.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The administrator every store starts with.
const ADMIN: &str = "root";
/// Its password.
const ADMIN_PW: &str = "root-pw-R7k";
/// A proxy user.
const BOB_PW: &str = "bob-pw-R7k";
/// The password of the Redis server that wants one.
const REDIS_PW: &str = "redis-pw-Q2z";
/// How long a change may take to show when the tests wait for it.
const SETTLE: Duration = Duration::from_secs(10);
/// How long socks5d may take to notice Redis gone or back.
const RECONNECT: Duration = Duration::from_secs(15);

/// METRICS X'89': 1 while the user table is stale.
const M_STALE: u8 = 0x89;
/// METRICS X'8A': times the Redis store was lost.
const M_LOST: u8 = 0x8A;

/// STATUS X'00' success.
const OK: u8 = 0x00;
/// X'04' the user exists.
const EXISTS: u8 = 0x04;
/// X'05' no such user.
const NO_SUCH_USER: u8 = 0x05;
/// X'06' the change would leave no administrator.
const LAST_ADMIN: u8 = 0x06;
/// X'07' the change could not be made durable; nothing changed.
const NOT_DURABLE: u8 = 0x07;

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// One socks5d on `redis`, managed over a Unix socket of its own; the
/// tests poll with wrong passwords: no penalty for that.
fn instance(redis: &RedisServer, tag: &str) -> Instance {
    Instance::start(
        redis,
        tag,
        (ADMIN, ADMIN_PW),
        &["--auth-penalty-exempt", "127.0.0.0/8"],
    )
}

/// A user added, given a new password or deleted over instance A's
/// management socket is in force on instance B within 100 ms (the
/// median of five; the slowest must be within 2 s on a loaded machine);
/// the script's refusals come back as the statuses of the users file;
/// no password of Redis shows in `ps` or in a log line.
#[test]
fn a_change_made_on_one_instance_is_in_force_on_the_other() {
    let _turn = turn();
    let redis = RedisServer::start_with_password(REDIS_PW);
    redis.seed(ADMIN, ADMIN_PW, true);
    let a = instance(&redis, "redis-a");
    let b = instance(&redis, "redis-b");
    let sa = a.session();
    let mut took = Vec::new();
    for i in 0..5 {
        let name = format!("user{i}");
        assert_eq!(
            sa.status(&add_proxy_user(&name, BOB_PW)),
            OK,
            "ADD_USER {name}"
        );
        took.push(b.wait_login(&name, BOB_PW, true, SETTLE));
    }
    let set = Request::SetPassword {
        username: b"user0",
        password: b"new-pw-R7k",
    };
    assert_eq!(sa.status(&set), OK, "SET_PASSWORD");
    took.push(b.wait_login("user0", "new-pw-R7k", true, SETTLE));
    assert!(!b.logs_in("user0", BOB_PW), "the old password still works");
    let del = Request::DeleteUser { username: b"user1" };
    assert_eq!(sa.status(&del), OK, "DELETE_USER");
    took.push(b.wait_login("user1", BOB_PW, false, SETTLE));
    let mut sorted = took.clone();
    sorted.sort();
    eprintln!("propagation from A's reply to B: {took:?}");
    assert!(
        sorted[sorted.len() / 2] < Duration::from_millis(100),
        "median propagation over 100 ms: {took:?}"
    );
    assert!(
        sorted[sorted.len() - 1] < Duration::from_secs(2),
        "{took:?}"
    );

    // The script's checks, on the other instance.
    let sb = b.session();
    assert_eq!(sb.status(&add_proxy_user("user0", "x")), EXISTS);
    assert_eq!(
        sb.status(&Request::DeleteUser { username: b"user1" }),
        NO_SUCH_USER
    );
    let set = Request::SetPassword {
        username: b"nobody",
        password: b"x",
    };
    assert_eq!(sb.status(&set), NO_SUCH_USER);
    assert_eq!(
        sb.status(&Request::DeleteUser {
            username: ADMIN.as_bytes()
        }),
        LAST_ADMIN
    );
    assert!(a.logs_in(ADMIN, ADMIN_PW), "the administrator was deleted");
    // What Redis holds: one field per user, ROLE HASH.
    let held = redis.cli(&["HGET", "socks5d:users", "user2"]);
    assert!(
        held.starts_with("user $argon2id$v=19$m=64,t=1,p=1$"),
        "{held}"
    );
    assert_eq!(redis.cli(&["HLEN", "socks5d:users"]), "5");

    // The password of the URL is hidden from ps, and in no line.
    for i in [&a, &b] {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", i.daemon.pid())).unwrap();
        let cmdline = String::from_utf8_lossy(&cmdline);
        assert!(!cmdline.contains(REDIS_PW), "{cmdline}");
        assert!(cmdline.contains("127.0.0.1"), "{cmdline}");
        let err = i.daemon.stderr();
        for secret in [REDIS_PW, BOB_PW, ADMIN_PW] {
            assert!(!err.contains(secret), "{secret} in:\n{err}");
        }
        assert!(
            err.contains("users loaded from redis: store=redis://127.0.0.1:"),
            "{err}"
        );
    }
}

/// Redis stopped: both instances keep the last table (known users log in,
/// METRICS X'89' = 1 and a line says the table is stale), and a change is
/// refused with X'07'. Redis back, with a change made meanwhile directly
/// in it (a user added, one deleted, without a message): both reload the
/// whole table, X'89' = 0, X'8A' counted the loss, and changes work again.
#[test]
fn redis_lost_then_back() {
    let _turn = turn();
    let mut redis = RedisServer::start();
    redis.seed(ADMIN, ADMIN_PW, true);
    redis.seed("bob", BOB_PW, false);
    let a = instance(&redis, "redis-lost-a");
    let b = instance(&redis, "redis-lost-b");
    let store = format!("store=redis://127.0.0.1:{}/0", redis.port());

    redis.stop();
    for i in [&a, &b] {
        i.wait_metric(M_STALE, 1, RECONNECT);
        let line = i.daemon.stderr_line("user table stale: ", SETTLE);
        assert!(line.contains(&store), "{line}");
        assert!(i.logs_in("bob", BOB_PW), "bob refused while Redis is away");
        assert!(i.logs_in(ADMIN, ADMIN_PW));
        let s = i.session();
        assert_eq!(s.status(&add_proxy_user("carol", "carol-pw")), NOT_DURABLE);
        assert_eq!(
            s.status(&Request::DeleteUser { username: b"bob" }),
            NOT_DURABLE
        );
        assert_eq!(s.metrics().get(&M_LOST), Some(&1));
    }
    assert!(!a.logs_in("carol", "carol-pw"), "a refused change was made");
    assert!(a.logs_in("bob", BOB_PW), "a refused deletion was made");

    // Meanwhile, in Redis directly: dave added, bob deleted, no message.
    let dave = user_value("user", "dave-pw");
    redis.edit_stopped(&[
        &["HSET", "socks5d:users", "dave", &dave],
        &["HDEL", "socks5d:users", "bob"],
    ]);
    redis.restart();
    for i in [&a, &b] {
        i.wait_metric(M_STALE, 0, RECONNECT);
        let line = i.daemon.stderr_line("user table fresh: ", SETTLE);
        assert!(
            line.contains(&store) && line.contains(" lost_ms="),
            "{line}"
        );
        assert_eq!(i.session().metrics().get(&M_LOST), Some(&1));
        assert!(i.logs_in("dave", "dave-pw"), "dave, added meanwhile");
        assert!(!i.logs_in("bob", BOB_PW), "bob, deleted meanwhile");
    }
    assert_eq!(a.session().status(&add_proxy_user("carol", "carol-pw")), OK);
    b.wait_login("carol", "carol-pw", true, SETTLE);
    // One line when lost, one when back: no line per attempt.
    let err = a.daemon.stderr();
    assert_eq!(err.matches("user table stale: ").count(), 1, "{err}");
}

/// A user changed with redis-cli as README says (HSET, then PUBLISH its
/// name; or `:all` for everything) is applied; a malformed value is
/// skipped with a line, at start and later, and takes the user out; RELOAD
/// reads the whole table; emptied, the table refuses every client rather
/// than letting them in without authentication.
#[test]
fn changes_made_in_redis_directly_and_malformed_values() {
    let _turn = turn();
    let redis = RedisServer::start();
    redis.seed(ADMIN, ADMIN_PW, true);
    redis.cli(&["HSET", "socks5d:users", "eve", "admin not-a-hash"]);
    redis.cli(&[
        "HSET",
        "socks5d:users",
        "bad:name",
        &user_value("user", "x"),
    ]);
    let a = instance(&redis, "redis-direct");
    a.daemon
        .stderr_line("user=eve reason=\"malformed password hash\"", SETTLE);
    a.daemon
        .stderr_line("user=bad:name reason=\"invalid user name\"", SETTLE);
    a.daemon.stderr_line(" users=1 skipped=2", SETTLE);
    assert!(a.logs_in(ADMIN, ADMIN_PW));

    // HSET then PUBLISH.
    redis.cli(&[
        "HSET",
        "socks5d:users",
        "frank",
        &user_value("user", "frank-pw"),
    ]);
    redis.cli(&["PUBLISH", "socks5d:users:changes", "frank"]);
    a.wait_login("frank", "frank-pw", true, SETTLE);
    // Made malformed: skipped with a line, and no longer a user.
    redis.cli(&["HSET", "socks5d:users", "frank", "user garbage"]);
    redis.cli(&["PUBLISH", "socks5d:users:changes", "frank"]);
    a.wait_login("frank", "frank-pw", false, SETTLE);
    a.daemon
        .stderr_line("user=frank reason=\"malformed password hash\"", SETTLE);
    // Everything at once.
    redis.cli(&[
        "HSET",
        "socks5d:users",
        "gina",
        &user_value("user", "gina-pw"),
    ]);
    redis.cli(&["PUBLISH", "socks5d:users:changes", ":all"]);
    a.wait_login("gina", "gina-pw", true, SETTLE);
    // No message at all: RELOAD reads the table.
    redis.cli(&[
        "HSET",
        "socks5d:users",
        "hugo",
        &user_value("user", "hugo-pw"),
    ]);
    assert!(!a.logs_in("hugo", "hugo-pw"));
    assert_eq!(a.session().status(&Request::Reload), OK);
    assert!(a.logs_in("hugo", "hugo-pw"), "RELOAD did not read Redis");

    // Emptied in Redis: every client is refused, none let in without
    // authentication (method X'00' is not offered).
    redis.cli(&["DEL", "socks5d:users"]);
    redis.cli(&["PUBLISH", "socks5d:users:changes", ":all"]);
    a.wait_login("gina", "gina-pw", false, SETTLE);
    let mut s = dial_proxy(a.daemon.addr);
    s.write_all(&[0x05, 0x01, 0x00]).unwrap();
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0x05, 0xFF], "no authentication with an empty table");
}

/// socks5d does not start when Redis cannot be reached, nor on an empty
/// store (an empty table would let everyone in): one clear line, exit 1.
/// `socks5d user` adds the first administrator to an empty store, and
/// lists the users.
#[test]
fn start_needs_a_reachable_store_with_users() {
    let _turn = turn();
    let mut redis = RedisServer::start();
    let url = redis.url();
    let base = ["-l", "127.0.0.1", "-p", "0", "--users-redis", &url];
    let out = run_brief(&base);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("socks5d: not started: error=\"users in redis: ")
            && out
                .stderr
                .contains("holds no valid user under socks5d:users"),
        "{}",
        out.stderr
    );
    redis.seed(ADMIN, ADMIN_PW, true);
    let (ok, err) = redis.user_command(&["add", ADMIN], "again");
    assert!(!ok && err.contains("user already exists"), "{err}");
    let list = Command::new(BIN)
        .args(["user", "list", "--users-redis", &url])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout), "admin\troot\n");

    redis.stop();
    let out = run_brief(&base);
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("not started: error=\"users in redis: cannot read the users: ")
            && out
                .stderr
                .contains(&format!("redis://127.0.0.1:{}/0", redis.port())),
        "{}",
        out.stderr
    );
    let (ok, err) = redis.user_command(&["add", "bob"], BOB_PW);
    assert!(!ok && err.contains("users store not changed: "), "{err}");
}

/// --users-redis goes with neither a users file nor users on the command
/// line; its prefix needs it; errors never show the URL's password.
#[test]
fn exclusive_options_are_refused() {
    let url = format!("redis://:{REDIS_PW}@127.0.0.1:1/0");
    for (extra, says) in [
        (&["--users-file", "/nonexistent/users"][..], "not both"),
        (&["-u", "a:b"], "come from Redis alone"),
        (&["--admin", "a:b"], "come from Redis alone"),
    ] {
        let mut args = vec!["-l", "127.0.0.1", "--users-redis", &url];
        args.extend_from_slice(extra);
        let out = run_brief(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", out.stderr);
        assert!(out.stderr.contains(says), "{extra:?}: {}", out.stderr);
        assert!(!out.stderr.contains(REDIS_PW), "{}", out.stderr);
    }
    let out = run_brief(&["-l", "127.0.0.1", "--users-redis-prefix", "x:"]);
    assert_eq!(out.status.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("needs --users-redis"), "{}", out.stderr);
}

/// A burst of changes published at once, as a script changing many users
/// sends them, is applied whole to a table of 100,000 users, whose copy is
/// slow enough that socks5d gathers what comes behind the first change:
/// adds, deletions and a name changed twice, under the batch size
/// (applied together) and past it (the whole table read again).
#[test]
fn a_burst_of_changes_is_applied_whole() {
    let _turn = turn();
    let redis = RedisServer::start();
    redis.seed(ADMIN, ADMIN_PW, true);
    let value = user_value("user", "burst-pw");
    let other = user_value("user", "other-pw");
    let cmd = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let key = "socks5d:users";
    let channel = "socks5d:users:changes";
    let base = 100_000 - 1;
    let table: Vec<Vec<String>> = (0..base)
        .map(|i| cmd(&["HSET", key, &format!("s{i}"), &value]))
        .collect();
    redis.pipe(&table);
    let a = instance(&redis, "redis-burst");
    let mut users = 1 + base;
    for n in [300, 3000] {
        let mut burst = Vec::new();
        for i in 0..n {
            let name = format!("b{n}-{i}");
            burst.push(cmd(&["HSET", key, &name, &value]));
            burst.push(cmd(&["PUBLISH", channel, &name]));
        }
        // One added and deleted again, one given a second password.
        burst.push(cmd(&["HDEL", key, &format!("b{n}-0")]));
        burst.push(cmd(&["PUBLISH", channel, &format!("b{n}-0")]));
        burst.push(cmd(&["HSET", key, &format!("b{n}-1"), &other]));
        burst.push(cmd(&["PUBLISH", channel, &format!("b{n}-1")]));
        let last = format!("b{n}-last");
        burst.push(cmd(&["HSET", key, &last, &value]));
        burst.push(cmd(&["PUBLISH", channel, &last]));
        redis.pipe(&burst);
        a.wait_login(&last, "burst-pw", true, Duration::from_secs(60));
        users += n;
        assert!(a.logs_in(&format!("b{n}-2"), "burst-pw"));
        assert!(!a.logs_in(&format!("b{n}-0"), "burst-pw"), "deleted");
        assert!(a.logs_in(&format!("b{n}-1"), "other-pw"), "changed");
        assert!(!a.logs_in(&format!("b{n}-1"), "burst-pw"), "changed");
        let table = common::unix_user_metrics(&a.mgmt.socket, ADMIN, ADMIN_PW);
        assert_eq!(table.len(), users, "users in the table after {n}");
    }
}
