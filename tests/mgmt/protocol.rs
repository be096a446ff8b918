//! Case 1: every command and every status code of docs/management-protocol.md.

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use socks5d::mgmt::wire::{Request, Response, Status};
use socks5d::users::Role;

use super::support::*;

/// The eight METRICS IDs docs/management-protocol.md section 4 requires.
const METRIC_IDS: std::ops::RangeInclusive<u8> = 1..=8;

fn u64_response(cmd: u8, v: u64) -> Vec<u8> {
    let mut r = vec![0x01, 0x00, cmd];
    r.extend_from_slice(&v.to_be_bytes());
    r
}

/// Parses a METRICS response by hand: N, then N times ID VALUE.
fn metrics_by_hand(reply: &[u8]) -> Vec<(u8, u64)> {
    assert_eq!(
        &reply[..3],
        [0x01, 0x00, 0x04],
        "METRICS header: {reply:02x?}"
    );
    let n = usize::from(reply[3]);
    assert_eq!(
        reply.len(),
        4 + 9 * n,
        "METRICS with N={n} has {} bytes",
        reply.len()
    );
    (0..n)
        .map(|i| {
            let at = 4 + 9 * i;
            (
                reply[at],
                u64::from_be_bytes(reply[at + 1..at + 9].try_into().expect("8 bytes")),
            )
        })
        .collect()
}

/// Log in X'00'; HISTORIC, CONCURRENT, BYTES and METRICS (all 8 IDs), on a
/// fresh server and after one tunnel, agreeing with each other.
pub fn login_success_and_counters(t: &Transport) {
    let started = Instant::now();
    let d = Daemon::start(t, &[]);
    let m = Mgmt::connect(d.mgmt());
    assert_eq!(
        m.login(ADMIN, ADMIN_PW),
        [0x01, 0x00],
        "log in of the administrator"
    );

    // A fresh server: every counter is 0.
    assert_eq!(
        m.raw(&[0x01, 0x01]),
        u64_response(0x01, 0),
        "HISTORIC_CONNECTIONS"
    );
    assert_eq!(
        m.raw(&[0x01, 0x02]),
        u64_response(0x02, 0),
        "CONCURRENT_CONNECTIONS"
    );
    assert_eq!(
        m.raw(&[0x01, 0x03]),
        u64_response(0x03, 0),
        "BYTES_TRANSFERRED"
    );
    let values = metrics_by_hand(&m.raw(&[0x01, 0x04]));
    for id in METRIC_IDS {
        let v = values
            .iter()
            .find(|(i, _)| *i == id)
            .unwrap_or_else(|| panic!("METRICS lacks ID {id}: {values:?}"));
        if id == 8 {
            assert!(
                v.1 <= started.elapsed().as_secs() + 1,
                "uptime {} s, but the server is younger",
                v.1
            );
        } else {
            assert_eq!(v.1, 0, "METRICS ID {id} on a fresh server");
        }
    }
    assert_eq!(
        m.metrics().len(),
        values.len(),
        "the codec reads METRICS as the bytes say"
    );

    // One tunnel: the counter commands must follow, and agree with METRICS.
    let target = Target::banner_echo();
    let mut s =
        socks_connect(d.socks, ADMIN, ADMIN_PW, target.addr).expect("tunnel as the administrator");
    let mut banner = vec![0u8; BANNER.len()];
    std::io::Read::read_exact(&mut s, &mut banner).expect("banner");
    s.write_all(b"0123456789").expect("send");
    let mut echo = [0u8; 10];
    std::io::Read::read_exact(&mut s, &mut echo).expect("echo");
    // While the tunnel is open: CONCURRENT is 1.
    let open = poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(10),
        || (m.counter(Request::ConcurrentConnections) == 1).then_some(()),
    );
    assert!(
        open.is_some(),
        "CONCURRENT_CONNECTIONS never showed the open tunnel"
    );
    drop(s);
    let want_bytes = (BANNER.len() + 10 + 10) as u64;
    let settled = poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(10),
        || {
            let v = m.metrics();
            (v.get(&1) == Some(&1) && v.get(&2) == Some(&0) && v.get(&3) == Some(&want_bytes))
                .then_some(v)
        },
    )
    .unwrap_or_else(|| {
        panic!(
            "METRICS never settled at 1 tunnel, {want_bytes} bytes: {:?}",
            m.metrics()
        )
    });
    assert_eq!(settled[&4], 10, "bytes client to target");
    assert_eq!(
        settled[&5],
        (BANNER.len() + 10) as u64,
        "bytes target to client"
    );
    assert_eq!(
        m.raw(&[0x01, 0x01]),
        u64_response(0x01, 1),
        "HISTORIC_CONNECTIONS after one tunnel"
    );
    assert_eq!(
        m.raw(&[0x01, 0x02]),
        u64_response(0x02, 0),
        "CONCURRENT_CONNECTIONS after it closed"
    );
    assert_eq!(
        m.raw(&[0x01, 0x03]),
        u64_response(0x03, want_bytes),
        "BYTES_TRANSFERRED"
    );
}

/// LIST_USERS over more than 1000 users added over the protocol: TOTAL,
/// COUNT at most 1000 (and as many as fit), name order by bytes, paging,
/// and COUNT 0 at or past TOTAL.
pub fn list_users_paging(t: &Transport) {
    let d = Daemon::start(t, &[]);
    let m = d.admin();
    // Added out of order, with names whose byte order differs from any
    // case-insensitive or locale order.
    let mut names: Vec<Vec<u8>> = (0..1100)
        .rev()
        .map(|i| format!("user{i:04}").into_bytes())
        .collect();
    names.push(b"Zed".to_vec());
    names.push(b"alice".to_vec());
    names.push(b"a b".to_vec());
    names.push("\u{e9}t\u{e9}".as_bytes().to_vec());
    names.push(b"~tilde".to_vec());
    names.push(b"A".to_vec());
    names.push(vec![b'x'; 255]);
    m.add_users_pipelined(&names, b"pw");

    let mut want: Vec<(Role, Vec<u8>)> = names.iter().map(|n| (Role::Proxy, n.clone())).collect();
    want.push((Role::Admin, ADMIN.as_bytes().to_vec()));
    want.sort_by(|a, b| a.1.cmp(&b.1));
    let total = want.len() as u32;

    let (t0, page0) = m.list_page(0);
    assert_eq!(t0, total, "TOTAL");
    assert_eq!(
        page0.len(),
        1000,
        "COUNT of the first page (at most 1000, and all 1000 fit)"
    );
    assert!(
        page0 == want[..1000],
        "first page is not the first 1000 users in byte order"
    );
    let (t1, page1) = m.list_page(1000);
    assert_eq!(t1, total, "TOTAL on the second page");
    assert!(
        page1 == want[1000..],
        "second page: got {} users, want {}",
        page1.len(),
        want.len() - 1000
    );
    let (_, mid) = m.list_page(517);
    assert!(
        mid[..] == want[517..],
        "page at OFFSET 517: {} users, want {}",
        mid.len(),
        want.len() - 517
    );
    let (_, last) = m.list_page(total - 1);
    assert!(last == want[want.len() - 1..], "page at OFFSET TOTAL-1");
    assert!(m.list_all() == want, "all pages together");

    // OFFSET at or past TOTAL: COUNT 0, by the bytes.
    for offset in [total, total + 1, u32::MAX] {
        let mut req = vec![0x01, 0x05];
        req.extend_from_slice(&offset.to_be_bytes());
        let mut expect = vec![0x01, 0x00, 0x05];
        expect.extend_from_slice(&total.to_be_bytes());
        expect.extend_from_slice(&[0, 0]);
        assert_eq!(m.raw(&req), expect, "LIST_USERS at OFFSET {offset}");
    }
}

/// ADD_USER X'00' and X'04', DELETE_USER X'00' and X'05', SET_PASSWORD X'00'
/// and X'05', and X'06' for the last administrator; failures change nothing.
pub fn user_changes_and_their_statuses(t: &Transport) {
    let d = Daemon::start(t, &[]);
    let m = d.admin();
    let add = |name: &str, pw: &str, role: u8| {
        let mut req = vec![0x01, 0x06, role, name.len() as u8];
        req.extend_from_slice(name.as_bytes());
        req.push(pw.len() as u8);
        req.extend_from_slice(pw.as_bytes());
        req
    };
    let one_name = |cmd: u8, name: &str| {
        let mut req = vec![0x01, cmd, name.len() as u8];
        req.extend_from_slice(name.as_bytes());
        req
    };
    let set_pw = |name: &str, pw: &str| {
        let mut req = one_name(0x08, name);
        req.push(pw.len() as u8);
        req.extend_from_slice(pw.as_bytes());
        req
    };

    assert_eq!(
        m.raw(&add("alice", "a-pw", 0x00)),
        [0x01, 0x00, 0x06],
        "ADD_USER alice"
    );
    assert_eq!(
        m.raw(&add("alice", "other", 0x00)),
        [0x01, 0x04, 0x06],
        "ADD_USER alice again"
    );
    assert_eq!(
        m.raw(&add("alice", "other", 0x01)),
        [0x01, 0x04, 0x06],
        "ADD_USER alice again, as admin"
    );
    assert_eq!(
        m.raw(&add(ADMIN, "other", 0x01)),
        [0x01, 0x04, 0x06],
        "ADD_USER of the administrator"
    );
    assert_eq!(
        m.list_all(),
        [
            (Role::Proxy, b"alice".to_vec()),
            (Role::Admin, b"root".to_vec())
        ],
        "users after ADD_USER"
    );
    // The refused ADD_USER did not change alice's password.
    let deadline = Instant::now() + Duration::from_secs(2);
    assert!(
        poll_until(deadline, Duration::from_millis(10), || socks_auth_ok(
            d.socks, "alice", "a-pw"
        )
        .then_some(()))
        .is_some(),
        "alice cannot use the proxy with her password"
    );
    assert!(
        !socks_auth_ok(d.socks, "alice", "other"),
        "a refused ADD_USER changed alice's password"
    );

    assert_eq!(
        m.raw(&set_pw("alice", "b-pw")),
        [0x01, 0x00, 0x08],
        "SET_PASSWORD alice"
    );
    assert_eq!(
        m.raw(&set_pw("nobody", "b-pw")),
        [0x01, 0x05, 0x08],
        "SET_PASSWORD of no user"
    );
    assert_eq!(
        m.raw(&one_name(0x07, "nobody")),
        [0x01, 0x05, 0x07],
        "DELETE_USER of no user"
    );
    assert_eq!(
        m.raw(&one_name(0x07, "alice")),
        [0x01, 0x00, 0x07],
        "DELETE_USER alice"
    );
    assert_eq!(
        m.raw(&one_name(0x07, "alice")),
        [0x01, 0x05, 0x07],
        "DELETE_USER alice again"
    );
    assert_eq!(
        m.raw(&set_pw("alice", "c-pw")),
        [0x01, 0x05, 0x08],
        "SET_PASSWORD of a deleted user"
    );

    // X'06': the only administrator cannot be deleted, even with proxy users left.
    assert_eq!(
        m.raw(&add("carol", "c-pw", 0x00)),
        [0x01, 0x00, 0x06],
        "ADD_USER carol"
    );
    assert_eq!(
        m.raw(&one_name(0x07, ADMIN)),
        [0x01, 0x06, 0x07],
        "DELETE_USER of the last administrator"
    );
    assert!(
        m.list_all().contains(&(Role::Admin, b"root".to_vec())),
        "X'06' must change nothing"
    );
    assert_eq!(
        Mgmt::connect(d.mgmt()).login(ADMIN, ADMIN_PW),
        [0x01, 0x00],
        "root still logs in after X'06'"
    );

    // With a second administrator, the first may go; then the second is the last.
    assert_eq!(
        m.raw(&add("admin2", "adm2-pw", 0x01)),
        [0x01, 0x00, 0x06],
        "ADD_USER admin2 as administrator"
    );
    let m2 = Mgmt::connect(d.mgmt());
    assert_eq!(
        m2.login("admin2", "adm2-pw"),
        [0x01, 0x00],
        "log in of the new administrator"
    );
    assert_eq!(
        m2.raw(&one_name(0x07, ADMIN)),
        [0x01, 0x00, 0x07],
        "DELETE_USER root with admin2 left"
    );
    assert_eq!(
        m2.raw(&one_name(0x07, "admin2")),
        [0x01, 0x06, 0x07],
        "DELETE_USER of admin2, now the last"
    );
    assert_eq!(
        m2.list_all(),
        vec![
            (Role::Admin, b"admin2".to_vec()),
            (Role::Proxy, b"carol".to_vec())
        ],
        "users after the deletions"
    );
    // SET_PASSWORD of an administrator: the new password logs in, the old no more.
    assert_eq!(
        m2.raw(&set_pw("admin2", "adm2-new")),
        [0x01, 0x00, 0x08],
        "SET_PASSWORD admin2"
    );
    assert_eq!(
        Mgmt::connect(d.mgmt()).login("admin2", "adm2-new"),
        [0x01, 0x00],
        "log in with the new password"
    );
    assert_eq!(
        Mgmt::connect(d.mgmt()).login("admin2", "adm2-pw"),
        [0x01, 0x01],
        "log in with the old password"
    );
    assert_eq!(
        Mgmt::connect(d.mgmt()).login(ADMIN, ADMIN_PW),
        [0x01, 0x01],
        "log in of the deleted root"
    );
}

/// X'07': with --users-file on a full file system, ADD_USER, SET_PASSWORD
/// and DELETE_USER answer X'07' and change nothing (table, file, passwords).
pub fn server_error_when_the_users_file_cannot_be_written(t: &Transport) {
    let fs_ = TinyFs::mount("64k");
    let file = fs_.path.join("users");
    let d = Daemon::start(t, &["--users-file", file.to_str().expect("a UTF-8 path")]);
    let m = d.admin();
    assert_eq!(
        m.add_user("bob", "bob-pw", Role::Proxy),
        Status::Success,
        "ADD_USER bob with room on the disk"
    );
    let before_list = m.list_all();
    let before_file = fs::read(&file).expect("read the users file");

    // Fill the file system up.
    let fill = fs_.path.join("fill");
    {
        let mut f = fs::File::create(&fill).expect("create the filler");
        let block = [0u8; 4096];
        let mut wrote = 0usize;
        while f.write_all(&block).is_ok() {
            wrote += block.len();
            assert!(wrote <= 1 << 20, "a 64k tmpfs took a megabyte");
        }
        let _ = f.sync_all();
    }

    let deny = |what: &str, req: Request<'_>| {
        let r = m.request(&req);
        assert_eq!(
            status_of(&r),
            Status::ServerError,
            "{what} on a full disk: {r:?}"
        );
    };
    deny(
        "ADD_USER carol",
        Request::AddUser {
            role: Role::Proxy,
            username: b"carol",
            password: b"carol-pw",
        },
    );
    deny(
        "ADD_USER admin3",
        Request::AddUser {
            role: Role::Admin,
            username: b"admin3",
            password: b"pw",
        },
    );
    deny(
        "SET_PASSWORD bob",
        Request::SetPassword {
            username: b"bob",
            password: b"bob-new",
        },
    );
    deny("DELETE_USER bob", Request::DeleteUser { username: b"bob" });

    assert_eq!(
        m.list_all(),
        before_list,
        "X'07' must leave the user table as it was"
    );
    assert_eq!(
        fs::read(&file).expect("read the users file"),
        before_file,
        "X'07' must leave the file as it was"
    );
    let mut left: Vec<String> = fs::read_dir(&fs_.path)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    // users.lock is the users file's lock, kept on purpose; nothing else.
    assert_eq!(
        left,
        ["fill", "users", "users.lock"],
        "temporary files left behind after X'07'"
    );
    // The refused SET_PASSWORD did not take effect, the refused DELETE_USER neither.
    assert!(
        socks_auth_ok(d.socks, "bob", "bob-pw"),
        "bob's password changed although SET_PASSWORD got X'07'"
    );
    assert!(
        !socks_auth_ok(d.socks, "bob", "bob-new"),
        "bob's new password works although SET_PASSWORD got X'07'"
    );
    assert!(
        !socks_auth_ok(d.socks, "carol", "carol-pw"),
        "carol can use the proxy although ADD_USER got X'07'"
    );

    // Room again: the same change now succeeds.
    fs::remove_file(&fill).expect("remove the filler");
    assert_eq!(
        m.add_user("carol", "carol-pw", Role::Proxy),
        Status::Success,
        "ADD_USER carol with room again"
    );
    drop(m);
    drop(d);
}

/// X'08': --max-users bounds the table.
pub fn limit_reached_with_max_users(t: &Transport) {
    let d = Daemon::start(t, &["--max-users", "3"]);
    let m = d.admin();
    assert_eq!(m.add_user("u1", "pw", Role::Proxy), Status::Success);
    assert_eq!(m.add_user("u2", "pw", Role::Proxy), Status::Success);
    let mut req = Vec::new();
    Request::AddUser {
        role: Role::Proxy,
        username: b"u3",
        password: b"pw",
    }
    .emit(&mut req);
    assert_eq!(
        m.raw(&req),
        [0x01, 0x08, 0x06],
        "ADD_USER past --max-users 3"
    );
    assert_eq!(
        m.add_user("a3", "pw", Role::Admin),
        Status::LimitReached,
        "an administrator past the limit"
    );
    assert_eq!(
        m.add_user("u1", "pw", Role::Proxy),
        Status::UserExists,
        "an existing user at the limit"
    );
    let names: Vec<Vec<u8>> = m.list_all().into_iter().map(|(_, n)| n).collect();
    assert_eq!(
        names,
        [b"root".to_vec(), b"u1".to_vec(), b"u2".to_vec()],
        "X'08' must add nothing"
    );
    assert!(
        !socks_auth_ok(d.socks, "u3", "pw"),
        "u3 can use the proxy although ADD_USER got X'08'"
    );
    assert_eq!(m.delete_user("u1"), Status::Success);
    assert_eq!(
        m.add_user("u3", "pw", Role::Proxy),
        Status::Success,
        "room after a deletion"
    );
}

/// X'01' for a request with VER other than 1, X'02' for unknown commands;
/// the session stays open after each.
pub fn bad_version_and_unknown_commands(t: &Transport) {
    let d = Daemon::start(t, &[]);
    let m = d.admin();
    let cases: &[(&str, &[u8], [u8; 3])] = &[
        ("VER 2 HISTORIC", &[0x02, 0x01], [0x01, 0x01, 0x01]),
        ("VER 0 METRICS", &[0x00, 0x04], [0x01, 0x01, 0x04]),
        (
            "VER 255 LIST_USERS",
            &[0xff, 0x05, 0, 0, 0, 0],
            [0x01, 0x01, 0x05],
        ),
        ("CMD X'0B'", &[0x01, 0x0b], [0x01, 0x02, 0x0b]),
        ("CMD X'80'", &[0x01, 0x80], [0x01, 0x02, 0x80]),
        ("CMD X'7F'", &[0x01, 0x7f], [0x01, 0x02, 0x7f]),
        ("CMD X'FE'", &[0x01, 0xfe], [0x01, 0x02, 0xfe]),
        ("CMD X'00'", &[0x01, 0x00], [0x01, 0x02, 0x00]),
        ("CMD X'FF'", &[0x01, 0xff], [0x01, 0x02, 0xff]),
        (
            "CMD X'0B' with ARGS",
            &[0x01, 0x0b, 1, 2, 3],
            [0x01, 0x02, 0x0b],
        ),
    ];
    for (what, req, want) in cases {
        assert_eq!(m.raw(req), want, "{what}");
        // "The session stays open after any status in this table."
        let v = m.metrics();
        assert!(
            METRIC_IDS.clone().all(|id| v.contains_key(&id)),
            "METRICS after {what}: {v:?}"
        );
    }
}

/// X'03' for every kind of malformed request; the session stays open after
/// each, and none of them changes anything.
pub fn malformed_requests_keep_the_session(t: &Transport) {
    let d = Daemon::start(t, &[]);
    let m = d.admin();
    let mut long_1025 = vec![0x01, 0x04];
    long_1025.resize(1025, 0);
    let mut long_add = vec![0x01, 0x06, 0x00, 1, b'z', 1, b'p'];
    long_add.resize(1025, b'p');
    let mut long_4k = vec![0x01, 0x05, 0, 0, 0, 0];
    long_4k.resize(4096, 0);
    let mut long_64k = vec![0x01, 0x01];
    long_64k.resize(65536, 0xaa);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "truncated: LIST_USERS with a 2-byte OFFSET",
            vec![0x01, 0x05, 0, 0],
        ),
        ("truncated: LIST_USERS with no OFFSET", vec![0x01, 0x05]),
        ("truncated: ADD_USER without ROLE", vec![0x01, 0x06]),
        (
            "truncated: ADD_USER without password",
            vec![0x01, 0x06, 0x00, 1, b'z'],
        ),
        ("truncated: DELETE_USER with no name", vec![0x01, 0x07]),
        (
            "truncated: SET_PASSWORD without password",
            vec![0x01, 0x08, 1, b'z'],
        ),
        ("ULEN past the end", vec![0x01, 0x07, 5, b'a']),
        (
            "PLEN past the end",
            vec![0x01, 0x06, 0x00, 1, b'z', 9, b'x', b'y'],
        ),
        (
            "PLEN short of the end",
            vec![0x01, 0x08, 1, b'z', 1, b'x', b'y'],
        ),
        (
            "trailing byte after DELETE_USER",
            vec![0x01, 0x07, 1, b'z', 0xff],
        ),
        (
            "trailing byte after LIST_USERS",
            vec![0x01, 0x05, 0, 0, 0, 0, 0],
        ),
        (
            "trailing byte after ADD_USER",
            vec![0x01, 0x06, 0x00, 1, b'z', 1, b'p', 0],
        ),
        ("empty name in ADD_USER", vec![0x01, 0x06, 0x00, 0, 1, b'p']),
        ("empty name in DELETE_USER", vec![0x01, 0x07, 0]),
        ("empty name in SET_PASSWORD", vec![0x01, 0x08, 0, 1, b'p']),
        (
            "empty password in ADD_USER",
            vec![0x01, 0x06, 0x00, 1, b'z', 0],
        ),
        (
            "empty password in SET_PASSWORD",
            vec![0x01, 0x08, 4, b'r', b'o', b'o', b't', 0],
        ),
        (
            "name with ':'",
            vec![0x01, 0x06, 0x00, 3, b'a', b':', b'b', 1, b'p'],
        ),
        (
            "name with a control byte",
            vec![0x01, 0x06, 0x00, 3, b'a', 0x01, b'b', 1, b'p'],
        ),
        (
            "name with DEL",
            vec![0x01, 0x06, 0x00, 3, b'a', 0x7f, b'b', 1, b'p'],
        ),
        (
            "name with NUL",
            vec![0x01, 0x06, 0x00, 3, b'a', 0x00, b'b', 1, b'p'],
        ),
        ("name with LF", vec![0x01, 0x07, 2, b'a', b'\n']),
        (
            "password with NUL",
            vec![0x01, 0x06, 0x00, 1, b'z', 3, b'p', 0x00, b'q'],
        ),
        (
            "password with CR",
            vec![0x01, 0x06, 0x00, 1, b'z', 3, b'p', b'\r', b'q'],
        ),
        (
            "password with LF",
            vec![0x01, 0x08, 4, b'r', b'o', b'o', b't', 3, b'p', b'\n', b'q'],
        ),
        ("ROLE 2", vec![0x01, 0x06, 0x02, 1, b'z', 1, b'p']),
        ("ROLE 255", vec![0x01, 0x06, 0xff, 1, b'z', 1, b'p']),
        ("ARGS on HISTORIC_CONNECTIONS", vec![0x01, 0x01, 0x00]),
        (
            "ARGS on CONCURRENT_CONNECTIONS",
            vec![0x01, 0x02, 0x01, 0x02],
        ),
        ("ARGS on BYTES_TRANSFERRED", vec![0x01, 0x03, 0xff]),
        ("ARGS on METRICS", vec![0x01, 0x04, 0xaa]),
        ("1025 bytes", long_1025),
        ("ADD_USER padded to 1025 bytes", long_add),
        ("4096 bytes", long_4k),
        ("65536 bytes", long_64k),
    ];
    for (what, req) in &cases {
        let reply = m.raw(req);
        assert_eq!(reply, [0x01, 0x03, req[1]], "{what} ({} bytes)", req.len());
        let v = m.metrics();
        assert!(
            METRIC_IDS.clone().all(|id| v.contains_key(&id)),
            "METRICS after {what}: {v:?}"
        );
    }
    // A request of VER alone: X'03' too (there is no CMD to echo).
    let reply = m.raw(&[0x01]);
    assert_eq!(
        (reply.len(), reply[0], reply[1]),
        (3, 0x01, 0x03),
        "VER only: {reply:02x?}"
    );
    assert!(m.metrics().len() >= 8, "METRICS after a VER-only request");
    assert_eq!(
        m.list_all(),
        [(Role::Admin, b"root".to_vec())],
        "a malformed request added a user"
    );

    // The limits are not too strict either: these are well formed.
    let long_name = vec![b'n'; 255];
    let long_pw = vec![b'p'; 255];
    let good: &[(&str, &[u8], &[u8])] = &[
        ("name with a space", b"a b", b"pw"),
        ("name of 255 bytes", &long_name, b"pw"),
        (
            "name with bytes over X'7F'",
            "\u{e9}t\u{e9}".as_bytes(),
            b"pw",
        ),
        (
            "password with ':', DEL, tab and X'FF'",
            b"p2",
            b"a:b\x7f\t\xff",
        ),
        ("password of 255 bytes", b"p3", &long_pw),
    ];
    for (what, name, pw) in good {
        let r = m.request(&Request::AddUser {
            role: Role::Proxy,
            username: name,
            password: pw,
        });
        assert_eq!(r, Response::Done { command: 0x06 }, "ADD_USER with {what}");
    }
    assert_eq!(
        m.list_all().len(),
        1 + good.len(),
        "users after the well-formed ADD_USERs"
    );
}
