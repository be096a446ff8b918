//! Hardening of the management side: SIGKILL in the middle of a stream of
//! user changes leaves a users file that loads and holds each change whole
//! or not at all; the cap on logged-in sessions; per-source log-in
//! throttling.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socks5d::mgmt::wire::{self, Request};
use socks5d::users::Role;
use socks5d::users::file::{self, Cost, Record};

use crate::support::*;

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

/// A small xorshift generator: the kill moments vary from run to run, and
/// the seed is in every failure message.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
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

/// Sends changes one at a time over `m` until the association fails (the
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

/// Whatever the folder holds besides the users file must be one of its
/// temporary files (`.users.tmp.PID.N`), never read as the users file.
fn leftovers(dir: &Path) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).expect("read the scratch folder") {
        let name = e.expect("entry").file_name();
        let name = name.to_string_lossy();
        if name == "users" {
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

/// The users file's identity and the temporary files beside it.
#[derive(PartialEq, Eq)]
struct FolderState {
    file: Option<(u64, u64, i64, i64)>,
    temps: Vec<String>,
}

impl FolderState {
    fn of(dir: &Path, path: &Path) -> FolderState {
        let file = fs::metadata(path)
            .ok()
            .map(|m| (m.ino(), m.len(), m.mtime(), m.mtime_nsec()));
        let mut temps: Vec<String> = fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with(".users.tmp."))
                    .collect()
            })
            .unwrap_or_default();
        temps.sort();
        FolderState { file, temps }
    }
}

/// Returns once the folder differs from `before` (a write has begun), or
/// after two seconds.
fn wait_for_a_write(dir: &Path, path: &Path, before: &FolderState) {
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end && FolderState::of(dir, path) == *before {
        // One CPU inside UML: let socks5d run.
        thread::yield_now();
    }
}

/// socks5d SIGKILLed at a random moment during a stream of ADD_USER,
/// SET_PASSWORD and DELETE_USER, twenty times over the same users file:
/// every time the file loads, and holds exactly the state after the last
/// acknowledged change or after the one in flight, never a mix; a user
/// whose password was being changed verifies exactly one of the two.
/// socks5d starts on it again each time (stale temporary files may lie
/// beside it), and at the end its users authenticate through SOCKS.
pub fn sigkill_during_user_changes() {
    const ROUNDS: usize = 20;
    /// The kill comes this long, at most, after the first change went out
    /// (a change takes 100 to 200 ms inside UML, mostly Argon2id).
    const KILL_WITHIN_MS: u64 = 600;
    /// On a slow machine, fewer rounds (but at least half) keep the case
    /// within about a minute.
    const BUDGET: Duration = Duration::from_secs(45);

    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut rng = Rng(seed);
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
    let path_arg = path.to_str().expect("a UTF-8 scratch path").to_owned();

    let started = Instant::now();
    let mut known = Verified::new();
    let mut k = 0;
    let (mut landed, mut acked_total) = (0, 0);
    let mut rounds = 0;
    for round in 0..ROUNDS {
        if round >= ROUNDS / 2 && started.elapsed() > BUDGET {
            break;
        }
        rounds += 1;
        let what = format!("round {round} (seed {seed:#x})");
        let d = Daemon::start(&["--users-file", &path_arg]);
        let before = FolderState::of(&dir.path, &path);
        let m = d.admin();
        let progress = Arc::new(Mutex::new(Progress {
            states: vec![users.clone()],
            ..Progress::default()
        }));
        let shared = Arc::clone(&progress);
        let changer = thread::spawn(move || change_loop(m, k, shared));
        // Even rounds let one change be acknowledged first, so that every
        // run checks acknowledged changes, however slow the machine; odd
        // rounds may kill before anything is answered.
        let need_ack = round % 2 == 0;
        let started_one = poll_until(
            Instant::now() + Duration::from_secs(20),
            Duration::from_millis(1),
            || {
                let p = progress.lock().unwrap_or_else(|e| e.into_inner());
                (if need_ack { p.acked > 0 } else { p.sent > 0 }).then_some(())
            },
        );
        assert!(
            started_one.is_some(),
            "{what}: no change sent (or answered) in 20 s"
        );
        // The moment of the kill is the point of the test, not a wait.
        thread::sleep(Duration::from_millis(rng.below(KILL_WITHIN_MS + 1)));
        if round % 2 == 1 {
            // Every other round, aim at the write itself: kill as soon as
            // a temporary file appears or the users file changes.
            wait_for_a_write(&dir.path, &path, &before);
        }
        drop(d); // SIGKILL, and reaped
        changer.join().expect("the change loop");

        let p = progress.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            p.failure.is_none(),
            "{what}: {}",
            p.failure.as_deref().unwrap_or("")
        );
        let records = file::load(&path)
            .unwrap_or_else(|e| panic!("{what}: the users file does not load after SIGKILL: {e}"));
        assert!(
            records
                .iter()
                .any(|r| r.name == ADMIN.as_bytes() && r.role == Role::Admin),
            "{what}: the administrator is gone"
        );
        // Newest first: the one in flight may have landed.
        let candidates: Vec<&Users> = (p.acked..=p.sent).rev().map(|j| &p.states[j]).collect();
        let Some(i) = matching_state(&records, &candidates, &mut known) else {
            let names: Vec<String> = records
                .iter()
                .map(|r| String::from_utf8_lossy(&r.name).into_owned())
                .collect();
            panic!(
                "{what}: after {} acknowledged changes ({} sent) the file holds {names:?}, \
                 which is neither state (or a hash verifies neither password): {:?}",
                p.acked,
                p.sent,
                candidates
                    .iter()
                    .map(|u| u.keys().collect::<Vec<_>>())
                    .collect::<Vec<_>>()
            );
        };
        users = candidates[i].clone();
        landed += usize::from(p.sent > p.acked && i == 0);
        acked_total += p.acked;
        k += p.sent;
    }
    println!(
        "({rounds} kills in {:.1}s: {acked_total} changes acknowledged, {landed} unanswered \
         ones found in the file, {} stale temporary files) ",
        started.elapsed().as_secs_f64(),
        leftovers(&dir.path)
    );
    assert!(
        acked_total >= rounds / 2,
        "only {acked_total} changes acknowledged in {rounds} rounds: the even rounds each wait for one"
    );

    // The last state serves: every user authenticates with its password.
    let d = Daemon::start(&["--users-file", &path_arg]);
    for (name, pass) in &users {
        assert!(
            socks_auth_ok(d.socks, name, pass),
            "{name} cannot log in with the password of the last state (seed {seed:#x})"
        );
    }
}

/// With `--max-admin-sessions 3`, a fourth administrator's good log in is
/// refused at once with X'03' (server error) and its association closed
/// gracefully, while the three keep working; closing one makes room. The
/// cap is on logged-in sessions: the fourth association itself is taken,
/// and it is not counted as aborted before logging in (METRICS X'85').
pub fn session_cap_refuses_the_fourth_log_in() {
    let d = Daemon::start(&["--max-admin-sessions", "3"]);
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
        || d.warnings().contains("sessions already open").then_some(()),
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

/// With `--max-login-failures 3`: two refusals from 127.0.0.1 still leave
/// the right password working; the third starts a penalty, during which even
/// the right password gets X'01' and a closed association, logged once. From
/// ::1, another source address, it works.
pub fn login_throttle_is_per_source_address() {
    let d = Daemon::start(&["--max-login-failures", "3"]);
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

    let c = Mgmt::connect(d.mgmt());
    assert_eq!(
        c.login(ADMIN, ADMIN_PW),
        [0x01, 0x01],
        "the right password after three refusals from 127.0.0.1"
    );
    c.expect_closed("the throttled log in");
    let warned = poll_until(
        Instant::now() + Duration::from_secs(5),
        Duration::from_millis(5),
        || {
            d.warnings()
                .contains("3 refusals from 127.0.0.1: its log ins are refused unchecked")
                .then_some(())
        },
    );
    assert!(
        warned.is_some(),
        "no warning about the throttle:\n{}",
        d.stderr()
    );

    let v6 = Mgmt::connect(d.mgmt6());
    assert_eq!(v6.login(ADMIN, ADMIN_PW), [0x01, 0x00], "log in from ::1");
    assert!(v6.metrics().len() >= 8, "METRICS from ::1");
}
