//! Hardening of the management side: SIGKILL in the middle of saving a user
//! change leaves a users file that loads and holds the change whole or not at
//! all; the cap on logged-in sessions; per-source log-in throttling (a
//! source is an address over SCTP, a local user over Unix).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use socks5d::mgmt::wire::{self, Request};
use socks5d::users::Role;
use socks5d::users::file::{self, Cost, Record};

use super::support::*;

/// Users and their passwords, as the test set them (the administrator is
/// left out: the command line re-adds it at every start).
type Users = BTreeMap<String, String>;

/// The states the users went through: `states[j]` after `j` changes; a
/// change is counted as sent before it goes out and as acknowledged once
/// its success answer is in.
#[derive(Default)]
struct Progress {
    states: Vec<Users>,
    sent: usize,
    acked: usize,
    failure: Option<String>,
}

/// The `k`-th change, applied to `users`: ADD_USER, SET_PASSWORD, and
/// DELETE_USER of the oldest added user, in turn.
fn next_change(k: usize, users: &mut Users) -> Vec<u8> {
    let mut out = Vec::new();
    let oldest_added = users.keys().find(|n| n.starts_with('a')).cloned();
    match (k % 3, oldest_added) {
        (0, _) => {
            let (name, pass) = (format!("a{k}"), format!("a{k}-pw"));
            Request::AddUser {
                role: Role::Proxy,
                username: name.as_bytes(),
                password: pass.as_bytes(),
            }
            .emit(&mut out);
            users.insert(name, pass);
        }
        (2, Some(name)) => {
            Request::DeleteUser {
                username: name.as_bytes(),
            }
            .emit(&mut out);
            users.remove(&name);
        }
        _ => {
            let (name, pass) = (format!("u{}", k % 4), format!("u{}-{k}", k % 4));
            Request::SetPassword {
                username: name.as_bytes(),
                password: pass.as_bytes(),
            }
            .emit(&mut out);
            users.insert(name, pass);
        }
    }
    out
}

/// Sends changes one at a time over `m` until the session fails (the
/// daemon was killed) or a change is refused.
fn change_loop(m: Mgmt, first_k: usize, progress: Arc<Mutex<Progress>>) {
    let lock = || progress.lock().unwrap_or_else(|e| e.into_inner());
    let mut users = lock().states.last().cloned().expect("a first state");
    for k in first_k.. {
        let msg = next_change(k, &mut users);
        {
            let mut p = lock();
            p.states.push(users.clone());
            p.sent += 1;
        }
        if m.sock.send_message(&msg).is_err() {
            return;
        }
        match m.sock.recv_message(wire::MAX_RESPONSE + 1) {
            Ok(Some(reply)) if reply.len() == 3 && reply[..2] == [0x01, 0x00] => lock().acked += 1,
            Ok(Some(reply)) => {
                lock().failure = Some(format!("change {k} answered {reply:02x?}"));
                return;
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Hashes already verified: user name to (PHC string, password). A hash
/// string seen before verifies the same password again, so only new hashes
/// pay for Argon2id (slow inside UML).
type Verified = BTreeMap<String, (String, String)>;

/// Which of `candidates` the loaded records are: the same names, and each
/// hash verifies that user's password. Returns its index.
fn matching_state(
    records: &[Record],
    candidates: &[&Users],
    known: &mut Verified,
) -> Option<usize> {
    let users: Vec<(String, &Record)> = records
        .iter()
        .map(|r| (String::from_utf8_lossy(&r.name).into_owned(), r))
        .filter(|(n, _)| n != ADMIN)
        .collect();
    candidates.iter().position(|want| {
        users.len() == want.len()
            && users.iter().all(|(name, r)| {
                let Some(pass) = want.get(name) else {
                    return false;
                };
                if r.role != Role::Proxy {
                    return false;
                }
                let hash = r.hash.as_str();
                if known.get(name).is_some_and(|(h, p)| h == hash && p == pass) {
                    return true;
                }
                let ok = file::verify_password(&r.hash, pass.as_bytes());
                if ok {
                    known.insert(name.clone(), (hash.to_owned(), pass.clone()));
                }
                ok
            })
    })
}

/// Whatever the folder holds besides the users file and its lock
/// (`users.lock`, kept on purpose) must be one of its temporary files
/// (`.users.tmp.PID.N`), never read as the users file.
fn leftovers(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).expect("read the scratch folder") {
        let name = e.expect("entry").file_name();
        let name = name.to_string_lossy();
        if name == "users" || name == "users.lock" {
            continue;
        }
        assert!(
            name.starts_with(".users.tmp."),
            "unexpected file {name:?} beside the users file"
        );
        n += 1;
    }
    n
}

/// What socks5d's test hook (`SOCKS5D_TEST_SAVE_DELAY_MS`, debug builds)
/// announces when a save pauses: the temporary file is written and fsynced
/// and not yet renamed.
const PAUSED: &str = "users save paused before rename: tmp=";

/// The temporary file named by a [`PAUSED`] line.
fn paused_temp(line: &str) -> PathBuf {
    let rest = &line[line.find(PAUSED).expect("a hook line") + PAUSED.len()..];
    let (path, _) = rest
        .split_once(" pause_ms=")
        .unwrap_or_else(|| panic!("unexpected hook line {line:?}"));
    PathBuf::from(path)
}

/// socks5d SIGKILLed in the middle of saving a user change, twelve times
/// over the same users file. socks5d runs with its test hook, which pauses
/// every save for half a second between the fsync of the temporary file and
/// its rename; each round but the first lets one change be acknowledged,
/// waits for the pause of the next save to be announced, and kills socks5d
/// then. The change in flight cycles through ADD_USER, SET_PASSWORD and
/// DELETE_USER.
///
/// Every kill is shown to have landed in the save: the temporary file it
/// announced is still there after socks5d is reaped (a save that went on
/// would have renamed it away). The users file then loads and holds exactly
/// the table of the last acknowledged change, the temporary file exactly the
/// table with the change in flight: old or new, each whole, never a mix.
/// Each round starts on the folder its predecessors left, stale temporary
/// files included (and one torn one planted at the start); at the end
/// socks5d starts without the hook, every user authenticates through SOCKS
/// with the password of the last state, and a further change is saved.
pub fn sigkill_during_user_changes(t: &Transport) {
    const ROUNDS: usize = 12;
    /// Long enough for the test to see the announcement and kill, even on a
    /// loaded machine; a kill that comes too late fails the round.
    const PAUSE_MS: u64 = 500;

    let dir = ScratchDir::new("faults-kill");
    let path = dir.path.join("users");
    let cheap = Cost {
        m_kib: 8,
        t: 1,
        p: 1,
    };
    let mut users: Users = (0..4)
        .map(|i| (format!("u{i}"), format!("u{i}-0")))
        .collect();
    let seeded: Vec<Record> = users
        .iter()
        .map(|(n, p)| Record {
            name: n.as_bytes().to_vec(),
            role: Role::Proxy,
            hash: file::hash_password_with(p.as_bytes(), cheap),
        })
        .collect();
    file::save(&path, &seeded).expect("seed the users file");
    // A torn temporary file, as a kill in the middle of writing one leaves
    // (PID 1 is never socks5d's, so no save of ours will pick its name).
    let whole = fs::read(&path).expect("read the seeded file");
    fs::write(dir.path.join(".users.tmp.1.0"), &whole[..whole.len() / 2])
        .expect("plant a torn temporary file");
    let path_arg = path.to_str().expect("a UTF-8 scratch path").to_owned();
    let pause = PAUSE_MS.to_string();

    let started = Instant::now();
    let mut known = Verified::new();
    let mut k = 0;
    let mut acked_total = 0;
    let mut slowest_kill = Duration::ZERO;
    for round in 0..ROUNDS {
        // The change in flight, the (k + acks)-th, is of kind round % 3
        // (see next_change): 0 acknowledged in round 0, 1 in every later one.
        let acks = (round + 3 - k % 3) % 3;
        let what = format!(
            "round {round} (kill during change {} after {acks} acknowledged)",
            k + acks
        );
        assert_eq!(
            leftovers(&dir.path),
            round + 1,
            "{what}: the stale temporary files before the start (one per kill and the torn one)"
        );
        let mut d = Daemon::start_with_env(
            t,
            &[("SOCKS5D_TEST_SAVE_DELAY_MS", &pause)],
            &["--users-file", &path_arg],
        );
        let m = d.admin();
        let progress = Arc::new(Mutex::new(Progress {
            states: vec![users.clone()],
            ..Progress::default()
        }));
        let shared = Arc::clone(&progress);
        let changer = thread::spawn(move || change_loop(m, k, shared));
        let line = d
            .wait_for_line(PAUSED, acks + 1, Duration::from_secs(30))
            .unwrap_or_else(|| {
                panic!(
                    "{what}: save {} did not announce its pause within 30 s; stderr:\n{}",
                    acks + 1,
                    d.stderr()
                )
            });
        let announced = Instant::now();
        let tmp = paused_temp(&line);
        assert!(
            tmp.exists(),
            "{what}: the announced {} is not there",
            tmp.display()
        );
        d.kill(); // SIGKILL, and reaped
        let took = announced.elapsed();
        slowest_kill = slowest_kill.max(took);
        changer.join().expect("the change loop");
        // The proof that the kill landed in the save: not renamed away.
        assert!(
            tmp.exists(),
            "{what}: {} was renamed before the kill ({took:?} after the pause was announced): \
             the kill did not land in the save",
            tmp.display()
        );

        let p = progress.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            p.failure.is_none(),
            "{what}: {}",
            p.failure.as_deref().unwrap_or("")
        );
        assert_eq!(
            (p.acked, p.sent),
            (acks, acks + 1),
            "{what}: (acknowledged, sent) changes when the save paused"
        );
        let records = file::load(&path)
            .unwrap_or_else(|e| panic!("{what}: the users file does not load after SIGKILL: {e}"));
        assert!(
            records
                .iter()
                .any(|r| r.name == ADMIN.as_bytes() && r.role == Role::Admin),
            "{what}: the administrator is gone"
        );
        let names = |rs: &[Record]| -> Vec<String> {
            rs.iter()
                .map(|r| String::from_utf8_lossy(&r.name).into_owned())
                .collect()
        };
        let (old, new) = (&p.states[p.acked], &p.states[p.sent]);
        assert!(
            matching_state(&records, &[old], &mut known).is_some(),
            "{what}: the users file holds {:?}, not the table of the last acknowledged change \
             {:?} (or a hash verifies another password)",
            names(&records),
            old.keys().collect::<Vec<_>>()
        );
        let pending = file::load(&tmp).unwrap_or_else(|e| {
            panic!("{what}: the temporary file of the save in flight does not load: {e}")
        });
        assert!(
            matching_state(&pending, &[new], &mut known).is_some(),
            "{what}: the temporary file holds {:?}, not the table with the change in flight {:?}",
            names(&pending),
            new.keys().collect::<Vec<_>>()
        );
        users = old.clone();
        acked_total += p.acked;
        k += p.acked;
    }
    println!(
        "({ROUNDS} kills in {:.1}s, each while a save paused before its rename, at most \
         {:.1} ms after the pause was announced; {acked_total} changes acknowledged before them) ",
        started.elapsed().as_secs_f64(),
        slowest_kill.as_secs_f64() * 1e3
    );

    // The last state serves: every user authenticates with its password,
    // and socks5d still saves beside the stale temporary files.
    let d = Daemon::start(t, &["--users-file", &path_arg]);
    for (name, pass) in &users {
        assert!(
            socks_auth_ok(d.socks, name, pass),
            "{name} cannot log in with the password of the last state"
        );
    }
    assert_eq!(
        d.admin().add_user("after", "after-pw", Role::Proxy),
        wire::Status::Success,
        "ADD_USER beside {} stale temporary files",
        leftovers(&dir.path)
    );
    users.insert("after".into(), "after-pw".into());
    let records = file::load(&path).expect("the users file after the last change");
    assert!(
        matching_state(&records, &[&users], &mut known).is_some(),
        "the users file after the last change holds {:?}",
        records.len()
    );
}

/// With `--max-admin-sessions 3`, a fourth administrator's good log in is
/// refused at once with X'03' (server error) and its association closed
/// gracefully, while the three keep working; closing one makes room. The
/// cap is on logged-in sessions: the fourth association itself is taken,
/// and it is not counted as aborted before logging in (METRICS X'85').
pub fn session_cap_refuses_the_fourth_log_in(t: &Transport) {
    let d = Daemon::start(t, &["--max-admin-sessions", "3"]);
    let mut three: Vec<Mgmt> = (0..3).map(|_| d.admin()).collect();

    let t0 = Instant::now();
    let fourth = Mgmt::try_connect(d.mgmt())
        .unwrap_or_else(|e| panic!("fourth association: connect failed: {e}"));
    let sent = fourth
        .sock
        .send_message(&login_bytes(ADMIN.as_bytes(), ADMIN_PW.as_bytes()));
    match (sent, fourth.sock.recv_message(wire::MAX_RESPONSE + 1)) {
        (Ok(()), Ok(Some(reply))) => assert_eq!(
            reply,
            [0x01, 0x03],
            "fourth log in: want X'03' (server error)"
        ),
        (Err(e), _) | (Ok(()), Err(e)) => {
            panic!("fourth log in: want the reply X'03', got {e}")
        }
        (Ok(()), Ok(None)) => panic!("fourth log in: closed with no reply"),
    }
    fourth.expect_closed("after the refused fourth log in");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "the refusal took {took:?}");
    // The warning is written just after the refusal: it may trail behind.
    let warned = poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(5),
        || {
            d.warnings()
                .contains(" reason=sessions-full ")
                .then_some(())
        },
    );
    assert!(
        warned.is_some(),
        "no warning about the cap:\n{}",
        d.stderr()
    );
    for (i, m) in three.iter().enumerate() {
        let v = m.metrics();
        assert!(v.len() >= 8, "session {i} after the refusal");
        assert_eq!(
            v.get(&0x85),
            Some(&0),
            "a refused log in is no abort before log in"
        );
    }

    drop(three.pop());
    let again = poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            let c = Mgmt::try_connect(d.mgmt()).ok()?;
            let ok = c
                .sock
                .send_message(&login_bytes(ADMIN.as_bytes(), ADMIN_PW.as_bytes()))
                .is_ok()
                && matches!(c.sock.recv_message(64), Ok(Some(r)) if r == [0x01, 0x00]);
            ok.then_some(c)
        },
    );
    let fresh = again.expect("no session within 5 s of one of the three closing");
    assert!(fresh.metrics().len() >= 8);
    for m in &three {
        assert!(m.metrics().len() >= 8);
    }
}

/// With `--max-login-failures 3`: two refusals from this process's source
/// (127.0.0.1 over SCTP, its uid over Unix) still leave the right password
/// working; the third starts a penalty, during which even the right
/// password gets X'01' and a closed session, logged once naming the
/// source. From another source (::1 over SCTP, another local user over
/// Unix) it works.
pub fn login_throttle_is_per_source(t: &Transport) {
    let d = Daemon::start(
        t,
        &[&["--max-login-failures", "3"], t.open_to_others()].concat(),
    );
    let refused = |n: usize| {
        let c = Mgmt::connect(d.mgmt());
        assert_eq!(c.login(ADMIN, "wrong"), [0x01, 0x01], "wrong password {n}");
        c.expect_closed(&format!("after wrong password {n}"));
    };
    refused(1);
    refused(2);
    let ok = Mgmt::admin(d.mgmt());
    assert!(ok.metrics().len() >= 8, "after two refusals");
    drop(ok);
    refused(3);

    let source = t.this_source();
    let c = Mgmt::connect(d.mgmt());
    assert_eq!(
        c.login(ADMIN, ADMIN_PW),
        [0x01, 0x01],
        "the right password after three refusals from {source}"
    );
    c.expect_closed("the throttled log in");
    let warned = poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(5),
        || {
            d.warnings()
                .contains(&format!(
                    "management log ins refused unchecked: source={source} failures=3 "
                ))
                .then_some(())
        },
    );
    assert!(
        warned.is_some(),
        "no warning about the throttle of {source}:\n{}",
        d.stderr()
    );

    let c = d.ctl_from_elsewhere(&["-U", ADMIN, "metrics"], ADMIN_PW);
    assert_eq!(c.code, 0, "socks5dctl metrics from another source: {c:?}");
    assert!(
        c.stdout.contains("uptime seconds: "),
        "socks5dctl metrics from another source:\n{}",
        c.stdout
    );
}
