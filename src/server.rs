//! Putting it together: listeners, workers, resolver, aggregator.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::{Aggregator, Snapshot, Totals};
use crate::reactor::resolver::Resolver;
use crate::reactor::{Shared, Worker, WorkerConfig, WorkerHandle};
use crate::sys;
use crate::users::{Directory, UserTable};

/// Where access records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// Standard output (the default).
    Stdout,
    /// Appended to this file.
    File(PathBuf),
    /// Nowhere.
    Off,
}

/// Everything needed to start a server.
#[derive(Debug, Clone)]
pub struct Config {
    /// SOCKS listen addresses (port 0: one ephemeral port per address, shared
    /// by all workers).
    pub socks: Vec<SocketAddr>,
    /// The initial users.
    pub users: UserTable,
    /// Worker threads; `None`: one per CPU we may run on.
    pub workers: Option<usize>,
    /// Whether to pin each worker to a CPU.
    pub pin: bool,
    /// Threads that resolve names.
    pub resolver_threads: usize,
    /// Listen backlog.
    pub backlog: i32,
    /// Where access records go.
    pub access_log: AccessLog,
    /// Per-worker settings.
    pub worker: WorkerConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socks: vec!["127.0.0.1:1080".parse().expect("a valid literal")],
            users: UserTable::new(),
            workers: None,
            pin: true,
            resolver_threads: 4,
            backlog: 1024,
            access_log: AccessLog::Stdout,
            worker: WorkerConfig::default(),
        }
    }
}

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    /// A SOCKS address could not be bound.
    Bind(SocketAddr, io::Error),
    /// The access log file could not be opened.
    AccessLog(PathBuf, io::Error),
    /// A thread or poll could not be created.
    Setup(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::AccessLog(p, e) => write!(f, "cannot open access log {}: {e}", p.display()),
            StartError::Setup(e) => write!(f, "cannot start: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// A running server.
#[derive(Debug)]
pub struct Server {
    local: Vec<SocketAddr>,
    users: Arc<Directory>,
    stop: Arc<AtomicBool>,
    workers: Vec<WorkerHandle>,
    aggregator: Aggregator,
}

impl Server {
    /// Binds every address, starts the workers and returns at once.
    pub fn start(cfg: Config) -> Result<Server, StartError> {
        let cpus = sys::cpu::allowed_cpus().unwrap_or_default();
        let n = cfg.workers.unwrap_or(cpus.len()).max(1);

        // Every worker gets its own SO_REUSEPORT listener on every address.
        let mut per_worker: Vec<Vec<TcpListener>> = (0..n).map(|_| Vec::new()).collect();
        let mut local = Vec::new();
        for &addr in &cfg.socks {
            let mut bound = addr;
            for listeners in per_worker.iter_mut() {
                let l = sys::net::reuseport_listener(bound, cfg.backlog)
                    .map_err(|e| StartError::Bind(bound, e))?;
                if bound.port() == 0 {
                    bound = l.local_addr().map_err(StartError::Setup)?;
                }
                listeners.push(l);
            }
            local.push(bound);
        }

        let log: Option<Box<dyn Write + Send>> = match &cfg.access_log {
            AccessLog::Stdout => Some(Box::new(io::stdout())),
            AccessLog::File(p) => Some(Box::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o640)
                    .open(p)
                    .map_err(|e| StartError::AccessLog(p.clone(), e))?,
            )),
            AccessLog::Off => None,
        };
        let mut worker_cfg = cfg.worker.clone();
        worker_cfg.access_log = log.is_some();
        let (aggregator, reports) = Aggregator::start(log).map_err(StartError::Setup)?;
        let resolver = Resolver::start(cfg.resolver_threads).map_err(StartError::Setup)?;
        let users = Directory::new(cfg.users);
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Shared {
            users: Arc::clone(&users),
            reports,
            resolver,
            stop: Arc::clone(&stop),
            config: worker_cfg,
        };

        let mut workers = Vec::with_capacity(n);
        for (i, listeners) in per_worker.into_iter().enumerate() {
            let cpu = if cfg.pin && !cpus.is_empty() {
                Some(cpus[i % cpus.len()])
            } else {
                None
            };
            let w = Worker::new(listeners, shared.clone()).map_err(StartError::Setup)?;
            workers.push(
                w.spawn(format!("worker-{i}"), cpu)
                    .map_err(StartError::Setup)?,
            );
        }
        Ok(Server {
            local,
            users,
            stop,
            workers,
            aggregator,
        })
    }

    /// The SOCKS addresses actually bound (ephemeral ports filled in).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// The user table, shared with the workers.
    pub fn users(&self) -> &Arc<Directory> {
        &self.users
    }

    /// The counters' totals.
    pub fn totals(&self) -> &Arc<Totals> {
        self.aggregator.totals()
    }

    /// The counters now.
    pub fn metrics(&self) -> Snapshot {
        self.aggregator.totals().snapshot()
    }

    /// How many workers run.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Stops accepting, lets open tunnels finish within the grace period,
    /// then returns with every count applied and every access record written.
    pub fn shutdown(self) -> Snapshot {
        self.stop.store(true, Ordering::Release);
        for w in &self.workers {
            w.wake();
        }
        for w in self.workers {
            w.join();
        }
        let totals = Arc::clone(self.aggregator.totals());
        self.aggregator.join();
        totals.snapshot()
    }
}
