//! Network namespaces of a test's own (the suite runs as root): each one a
//! thread that left the suite's namespace and runs what it is given, so
//! that sockets it opens and processes it starts (socks5d, `ip`, `tc`) live
//! there.

use std::panic::{self, AssertUnwindSafe};
use std::process::Command;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use nix::sched::CloneFlags;

use super::*;

/// What a namespace's thread runs.
type Job = Box<dyn FnOnce() + Send>;

/// A network namespace with only `lo`, up, until dropped.
pub struct NetNs {
    name: &'static str,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    tid: i32,
}

impl NetNs {
    /// A new namespace; `name` names its thread in failures.
    pub fn new(name: &'static str) -> NetNs {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (told, tid) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(format!("netns-{name}"))
            .spawn(move || {
                let entered = nix::sched::unshare(CloneFlags::CLONE_NEWNET)
                    .map_err(|e| e.to_string())
                    .and_then(|()| this_thread_id());
                let ok = entered.is_ok();
                let _ = told.send(entered);
                if ok {
                    for job in queue {
                        job();
                    }
                }
            })
            .unwrap_or_else(|e| panic!("cannot start the thread of namespace {name}: {e}"));
        let tid = match tid.recv() {
            Ok(Ok(tid)) => tid,
            Ok(Err(e)) => panic!("a network namespace of its own (the suite runs as root): {e}"),
            Err(_) => panic!("the thread of namespace {name} ended at once"),
        };
        let ns = NetNs {
            name,
            jobs: Some(jobs),
            thread: Some(thread),
            tid,
        };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The id of its thread, which `ip link ... netns ID` takes.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Runs `f` in the namespace and returns what it returns; a panic in
    /// `f` goes on in the caller.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(panic::catch_unwind(AssertUnwindSafe(f)));
        });
        let sent = self.jobs.as_ref().map(|j| j.send(job));
        assert!(
            matches!(sent, Some(Ok(()))),
            "namespace {} is gone",
            self.name
        );
        match rx.recv() {
            Ok(Ok(v)) => v,
            Ok(Err(p)) => panic::resume_unwind(p),
            Err(_) => panic!("namespace {}: its thread died", self.name),
        }
    }

    /// Runs `PROGRAM ARGS` in the namespace; it must succeed.
    pub fn cmd(&self, program: &str, args: &[&str]) {
        let program = program.to_owned();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let name = self.name;
        self.run(move || {
            let mut c = Command::new(&program);
            c.args(&args);
            let out = run_child(c, &program);
            assert!(
                out.status.success(),
                "{program} {args:?} in namespace {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        });
    }

    /// `ip ARGS` in the namespace; it must succeed.
    pub fn ip(&self, args: &[&str]) {
        self.cmd("ip", args);
    }
}

/// The calling thread's id, from /proc/thread-self ("PID/task/TID").
fn this_thread_id() -> Result<i32, String> {
    let link = std::fs::read_link("/proc/thread-self")
        .map_err(|e| format!("read /proc/thread-self: {e}"))?;
    link.file_name()
        .and_then(|t| t.to_str())
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("/proc/thread-self is {}", link.display()))
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // The thread ends when its queue closes; the namespace goes with
        // the last process in it.
        self.jobs.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
