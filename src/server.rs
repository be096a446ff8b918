//! Putting it together: listeners, workers, blocking pool, aggregator,
//! users' writer.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use crate::blocking::{HostMap, Pool};
use crate::logfmt::{LogSafe, Quoted};
use crate::metrics::exposition::{self, Limits, Sources};
use crate::metrics::{Aggregator, Report, Snapshot, Totals};
use crate::mgmt::audit::{self, Audit};
use crate::mgmt::endpoint;
use crate::mgmt::service::Service;
use crate::reactor::limits::SessionLimits;
use crate::reactor::{Shared, Worker, WorkerConfig, WorkerHandle};
use crate::rules::{self, Rules};
use crate::sys;
use crate::sys::sctp::{PathParams, SctpSocket};
use crate::sys::seqpacket::{self, BindError, Listener};
use crate::users::file::{self, Cost};
use crate::users::penalty::{Penalties, PenaltyConfig};
use crate::users::redis_store::RedisUsers;
use crate::users::redis_sync::{self, Live, Pending, Subscriber};
use crate::users::store::{ChangeRequest, Store, UserChange};
use crate::users::{Directory, Role, Secret, UserTable};

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
    pub pool_threads: usize,
    /// Threads that check passwords against stored hashes, each with its
    /// own Argon2id memory.
    pub check_threads: usize,
    /// When failed authentications from one source earn it a penalty
    /// (SOCKS; the management endpoint uses its own threshold).
    pub penalty: PenaltyConfig,
    /// Names answered from here before the system resolver is asked.
    pub hosts: HostMap,
    /// Listen backlog.
    pub backlog: i32,
    /// Where access records go.
    pub access_log: AccessLog,
    /// Where the audit trail goes (log ins, user changes, reloads).
    pub audit_log: audit::Dest,
    /// Per-worker settings.
    pub worker: WorkerConfig,
    /// The management endpoint, if it is to be served.
    pub mgmt: Option<MgmtConfig>,
    /// The users file: loaded at start, rewritten on every change.
    pub users_file: Option<PathBuf>,
    /// The users in Redis instead (`--users-redis`): loaded at start,
    /// followed, changed there first.
    pub users_redis: Option<RedisUsers>,
    /// The Argon2id cost of hashes written to the users file.
    pub hash_cost: Cost,
    /// The most users the table may hold (ADD_USER beyond it: X'08').
    pub max_users: usize,
    /// The access rules file (`None`: the safe default).
    pub rules_file: Option<PathBuf>,
    /// The Prometheus endpoint, if it is to be served.
    pub metrics: Option<MetricsConfig>,
}

/// Where and how the Prometheus endpoint listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Its address (port 0: an ephemeral one).
    pub addr: SocketAddr,
    /// The most users with series of their own; the rest are summed into
    /// `user="other"`.
    pub max_users: usize,
    /// Its connection limit and timeouts.
    pub limits: Limits,
}

impl MetricsConfig {
    /// `--metrics-max-users` when not given.
    pub const DEFAULT_MAX_USERS: usize = 100;

    /// The defaults on `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        MetricsConfig {
            addr,
            max_users: MetricsConfig::DEFAULT_MAX_USERS,
            limits: Limits::default(),
        }
    }
}

/// Where and how the management endpoint listens.
#[derive(Debug, Clone)]
pub struct MgmtConfig {
    /// Addresses, all bound to one socket (multi-homing).
    pub addrs: Vec<IpAddr>,
    /// The SCTP port (0: an ephemeral one).
    pub port: u16,
    /// Whether a kernel without SCTP stops the server instead of a warning.
    pub required: bool,
    /// The most associations not logged in at once; past it the oldest is
    /// aborted.
    pub max_unauthenticated: usize,
    /// How long an association may take to log in before it is aborted.
    pub login_grace: Duration,
    /// The most management sessions logged in at once.
    pub max_sessions: usize,
    /// Refused log ins from one source (an address, or a local uid) within
    /// a minute that start a penalty (its length and the exempt networks
    /// are those of [`Config::penalty`]).
    pub max_failures: u32,
    /// The Unix-domain socket to serve the protocol on too, if any.
    pub unix: Option<UnixSocket>,
    /// Heartbeats and retransmission timeouts of the SCTP associations
    /// (how soon a session leaves a dead path, and finds a dead peer).
    pub paths: PathParams,
}

/// The management protocol's Unix-domain SOCK_SEQPACKET socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocket {
    /// Where its file is.
    pub path: PathBuf,
    /// The file's permission bits (0o600 by default: its owner only).
    pub mode: u32,
    /// The file's group, when not socks5d's own.
    pub group: Option<u32>,
}

impl UnixSocket {
    /// The socket at `path`, for its owner only.
    pub fn new(path: PathBuf) -> Self {
        UnixSocket {
            path,
            mode: 0o600,
            group: None,
        }
    }
}

impl MgmtConfig {
    /// The defaults on `addrs` and `port`.
    pub fn new(addrs: Vec<IpAddr>, port: u16) -> Self {
        MgmtConfig {
            addrs,
            port,
            required: false,
            max_unauthenticated: 32,
            login_grace: Duration::from_secs(10),
            max_sessions: 64,
            max_failures: 10,
            unix: None,
            paths: PathParams::LAN,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socks: vec!["127.0.0.1:1080".parse().expect("a valid literal")],
            users: UserTable::new(),
            workers: None,
            pin: true,
            pool_threads: 4,
            check_threads: 2,
            penalty: PenaltyConfig::default(),
            hosts: HostMap::new(),
            backlog: 1024,
            access_log: AccessLog::Stdout,
            audit_log: audit::Dest::Diagnostics,
            worker: WorkerConfig::default(),
            mgmt: None,
            users_file: None,
            users_redis: None,
            hash_cost: Cost::DEFAULT,
            max_users: crate::users::store::MAX_USERS,
            rules_file: None,
            metrics: None,
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
    /// The audit log file could not be opened.
    AuditLog(PathBuf, io::Error),
    /// A thread or poll could not be created.
    Setup(io::Error),
    /// The users file could not be read or written.
    UsersFile(PathBuf, String),
    /// The Redis store of the users could not be read, or holds no user.
    UsersRedis(String),
    /// The management socket could not be opened (and it is required).
    Management(io::Error),
    /// The management Unix socket could not be made.
    ManagementUnix(BindError),
    /// The rules file could not be read or has an error (its text names
    /// the file and line).
    Rules(String),
    /// The metrics endpoint's address could not be bound.
    Metrics(SocketAddr, io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind(a, e) => write!(f, "cannot listen on {a}: {e}"),
            StartError::AccessLog(p, e) => write!(f, "cannot open access log {}: {e}", p.display()),
            StartError::AuditLog(p, e) => write!(f, "cannot open audit log {}: {e}", p.display()),
            StartError::Setup(e) => write!(f, "cannot start: {e}"),
            StartError::UsersFile(p, e) => write!(f, "users file {}: {e}", p.display()),
            StartError::UsersRedis(e) => write!(f, "users in redis: {e}"),
            StartError::Management(e) => match sys::sctp::unsupported_hint(e) {
                Some(hint) => write!(f, "management endpoint: {e}: {hint}"),
                None => write!(f, "management endpoint: {e}"),
            },
            StartError::ManagementUnix(e) => write!(f, "management socket {e}"),
            StartError::Rules(e) => write!(f, "rules: {e}"),
            StartError::Metrics(a, e) => write!(f, "metrics endpoint: cannot listen on {a}: {e}"),
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
    mgmt_port: Option<u16>,
    mgmt_unix: Option<PathBuf>,
    mgmt: Option<Service>,
    /// The Prometheus endpoint.
    metrics_http: Option<exposition::Service>,
    writer: Option<thread::JoinHandle<()>>,
    /// The users' subscriber (`--users-redis`).
    follower: Option<Subscriber>,
    /// The users' writer, for SIGHUP's reload.
    changes: crossbeam_channel::Sender<ChangeRequest>,
    reports: crossbeam_channel::Sender<Report>,
    access_log: AccessLog,
    audit: Arc<Audit>,
    users_file: Option<PathBuf>,
    /// Whether the users are in Redis (SIGHUP reads them again).
    users_redis: bool,
    /// The rules file, read again with the users file.
    rules_file: Option<PathBuf>,
}

fn open_access_log(p: &std::path::Path) -> io::Result<Box<dyn Write + Send>> {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(p)?;
    Ok(Box::new(f))
}

/// The users at start: the users file (if any), then the command line's
/// users over it. When a file is kept, every user gets a stored hash; the
/// second value says whether the merged table must be written back, which
/// [`Server::start`] does only once everything else has started, so that a
/// start that fails leaves the file as it was.
fn initial_users(cfg: &Config) -> Result<(UserTable, bool), StartError> {
    let Some(path) = &cfg.users_file else {
        return Ok((cfg.users.clone(), false));
    };
    let err = |e: String| StartError::UsersFile(path.clone(), e);
    let records = match file::load(path) {
        Ok(r) => r,
        Err(file::FileError::Missing) => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            if !dir.is_dir() {
                return Err(err(format!(
                    "the folder {} does not exist; create it first",
                    dir.display()
                )));
            }
            file::create_new(path).map_err(|e| err(e.to_string()))?;
            log::info!("users file created: path={}", LogSafe(path.display()));
            Vec::new()
        }
        Err(e) => return Err(err(e.to_string())),
    };
    let mut table = UserTable::new();
    for r in records {
        table.insert(&r.name, r.role, Secret::from_stored(r.hash));
    }
    for (name, u) in cfg.users.entries() {
        if u.secret.stored().is_none() {
            log::warn!(
                "user not written to the users file: user={} reason=no-stored-hash",
                LogSafe(&u.name)
            );
        }
        table.insert(name, u.role, u.secret.clone());
    }
    Ok((table, !cfg.users.is_empty()))
}

/// The users at start from Redis, with the subscriber that follows them
/// from then on (subscribed before it read them). An empty table would let
/// every client in without authentication: it is refused.
fn redis_users(
    at: &RedisUsers,
    order: redis_sync::Order,
) -> Result<(UserTable, Pending), StartError> {
    let (pending, loaded) = Pending::open(at.clone(), order)
        .map_err(|e| StartError::UsersRedis(format!("cannot read the users: {e}")))?;
    if loaded.records.is_empty() {
        return Err(StartError::UsersRedis(format!(
            "{at} holds no valid user under {}: add the first administrator with \
             'socks5d user add NAME --admin --users-redis URL'",
            at.key()
        )));
    }
    let mut table = UserTable::new();
    table.set_auth_always(true);
    Ok((table.rebuilt(loaded.records), pending))
}

/// The management sockets: the Unix one when asked for (any failure is
/// fatal: the operator named it), and the SCTP one bound to every
/// management address (a kernel without SCTP gives none and a warning,
/// unless the endpoint is required). With no administrator, neither.
fn mgmt_sockets(
    m: &MgmtConfig,
    users: &Directory,
) -> Result<(Option<SctpSocket>, Option<Listener>), StartError> {
    if let Some(ip) = m.addrs.iter().find(|ip| !ip.is_loopback()) {
        log::warn!(
            "management listens beyond loopback: addr={ip} hint=\"log ins and passwords \
             cross the network unencrypted; keep it on a trusted network\""
        );
    }
    if users.snapshot().count(Role::Admin) == 0 {
        log::warn!(
            "management endpoint closed: admins=0 hint=\"add one with --admin \
             USER:PASS or with role 'admin' in the users file\""
        );
        return Ok((None, None));
    }
    let unix = match &m.unix {
        Some(u) => {
            let access = seqpacket::Access {
                mode: u.mode,
                group: u.group,
            };
            let l = Listener::bind(&u.path, access).map_err(StartError::ManagementUnix)?;
            if u.mode & 0o007 != 0 {
                log::warn!(
                    "management socket open to every local user: path={} mode={:04o} \
                     hint=\"they still have to log in\"",
                    LogSafe(u.path.display()),
                    u.mode
                );
            }
            Some(l)
        }
        None => None,
    };
    match SctpSocket::listen_many(&m.addrs, m.port, &m.paths) {
        Ok(s) => Ok((Some(s), unix)),
        Err(e) if !m.required => {
            let hint = sys::sctp::unsupported_hint(&e).unwrap_or("check -L and -P");
            match &m.unix {
                Some(u) => log::error!(
                    "management endpoint not served over sctp: port={} error={} hint={} \
                     unix={} socks=serving",
                    m.port,
                    Quoted(&e),
                    Quoted(hint),
                    LogSafe(u.path.display())
                ),
                None => log::error!(
                    "management endpoint not served: port={} error={} hint={} socks=serving",
                    m.port,
                    Quoted(&e),
                    Quoted(hint)
                ),
            }
            Ok((None, unix))
        }
        Err(e) => Err(StartError::Management(e)),
    }
}

/// Binds the Prometheus endpoint's address, warning when it is not loopback.
fn metrics_listener(m: &MetricsConfig) -> Result<TcpListener, StartError> {
    if !m.addr.ip().is_loopback() {
        log::warn!(
            "metrics endpoint listens beyond loopback: addr={} hint=\"anyone who reaches it \
             reads the counters and the user names, over plain HTTP; keep it on a trusted \
             network\"",
            m.addr.ip()
        );
    }
    TcpListener::bind(m.addr).map_err(|e| StartError::Metrics(m.addr, e))
}

/// Reads and compiles a rules file; the error names the file and line.
fn load_rules(path: &std::path::Path) -> Result<Rules, String> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    Rules::parse(&name, &text).map_err(|e| e.to_string())
}

impl Server {
    /// Binds every address, starts the workers and returns at once.
    pub fn start(cfg: Config) -> Result<Server, StartError> {
        let order = redis_sync::Order::default();
        let (mut table, write_back, pending) = match &cfg.users_redis {
            Some(at) => {
                let (table, pending) = redis_users(at, Arc::clone(&order))?;
                (table, false, Some(pending))
            }
            None => {
                let (table, write_back) = initial_users(&cfg)?;
                (table, write_back, None)
            }
        };
        table.set_refusal_cost(cfg.hash_cost);
        if cfg.users_file.is_none() && cfg.users_redis.is_none() {
            log::info!(
                "no users file: hint=\"user changes will not survive a restart (see \
                 --users-file)\""
            );
        }
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
            AccessLog::File(p) => {
                Some(open_access_log(p).map_err(|e| StartError::AccessLog(p.clone(), e))?)
            }
            AccessLog::Off => None,
        };
        let mut worker_cfg = cfg.worker.clone();
        worker_cfg.access_log = log.is_some();
        let audit = Arc::new(Audit::new(cfg.audit_log.clone()).map_err(
            |e| match &cfg.audit_log {
                audit::Dest::File(p) => StartError::AuditLog(p.clone(), e),
                _ => StartError::Setup(e),
            },
        )?);
        let (aggregator, reports) = Aggregator::start(log).map_err(StartError::Setup)?;
        let users = Directory::new(table);
        // The counters of a deleted user go once its sessions have closed.
        let reader = std::sync::Mutex::new(users.reader());
        aggregator.totals().set_user_filter(Box::new(move |name| {
            let mut r = reader.lock().unwrap_or_else(|e| e.into_inner());
            r.table().find(name.as_bytes()).is_some()
        }));
        let pool = Pool::start(
            cfg.pool_threads,
            cfg.check_threads,
            Arc::clone(&users),
            cfg.hosts.clone(),
        )
        .map_err(StartError::Setup)?;
        let stop = Arc::new(AtomicBool::new(false));

        let metrics_sock = cfg.metrics.as_ref().map(metrics_listener).transpose()?;
        let (mgmt_sock, mgmt_listener) = match &cfg.mgmt {
            Some(m) => mgmt_sockets(m, &users)?,
            None => (None, None),
        };
        let mgmt_unix = mgmt_listener.as_ref().map(|l| l.path().to_owned());
        let mgmt_port = match &mgmt_sock {
            Some(s) => Some(s.local_port().map_err(StartError::Management)?),
            None => None,
        };
        let rules = match &cfg.rules_file {
            Some(path) => load_rules(path).map_err(StartError::Rules)?,
            None => {
                let mut own = local.clone();
                if let (Some(m), Some(port)) = (&cfg.mgmt, mgmt_port) {
                    own.extend(m.addrs.iter().map(|&a| SocketAddr::new(a, port)));
                }
                let host = sys::net::host_addrs().unwrap_or_else(|e| {
                    log::warn!(
                        "host addresses not listed for the default rules: error={}",
                        Quoted(e)
                    );
                    Vec::new()
                });
                Rules::default_for(&own, &host)
            }
        };
        match &cfg.rules_file {
            Some(p) => log::info!(
                "rules loaded: path={} rules={}",
                LogSafe(p.display()),
                rules.len()
            ),
            None => log::info!("default rules loaded: rules={}", rules.len()),
        }
        let rules = rules::Shared::new(rules);
        let (changes_tx, changes_rx) = crossbeam_channel::unbounded();
        let mut store = Store::new(Arc::clone(&users), cfg.users_file.clone())
            .with_cost(cfg.hash_cost)
            .with_max_users(cfg.max_users);
        if let Some(at) = &cfg.users_redis {
            store = store.with_redis(at.clone(), Arc::clone(&order));
        }
        if let Some(path) = cfg.rules_file.clone() {
            let shared = Arc::clone(&rules);
            // RELOAD and SIGHUP read the rules with the users file, on the
            // users' writer: a bad file changes nothing, and the answer says so.
            store = store.with_reload(Box::new(move || {
                let rules = load_rules(&path).map_err(|e| {
                    log::error!("rules not reloaded: error={}", Quoted(e));
                })?;
                let n = rules.len();
                shared.replace(rules);
                log::info!("rules reloaded: path={} rules={n}", LogSafe(path.display()));
                Ok(())
            }));
        }
        let writer = store.spawn(changes_rx).map_err(StartError::Setup)?;
        let mgmt = match (mgmt_sock, mgmt_listener, cfg.mgmt.as_ref()) {
            (None, None, _) | (_, _, None) => None,
            (sock, listener, Some(m)) => {
                let shared = endpoint::Shared {
                    audit: Arc::clone(&audit),
                    totals: Arc::clone(aggregator.totals()),
                    users: Arc::clone(&users),
                    changes: changes_tx.clone(),
                    pool: pool.clone(),
                    max_unauthenticated: m.max_unauthenticated,
                    login_grace: m.login_grace,
                    max_sessions: m.max_sessions,
                    penalties: Arc::new(Penalties::new(PenaltyConfig {
                        threshold: m.max_failures,
                        ..cfg.penalty.clone()
                    })),
                };
                Some(Service::start(sock, listener, shared).map_err(StartError::Setup)?)
            }
        };
        let metrics_http = match (metrics_sock, &cfg.metrics) {
            (Some(l), Some(m)) => {
                let sources = Sources {
                    totals: Arc::clone(aggregator.totals()),
                    users: Arc::clone(&users),
                    workers: n,
                };
                Some(
                    exposition::Service::start(l, sources, m.max_users, m.limits)
                        .map_err(StartError::Setup)?,
                )
            }
            _ => None,
        };
        let shared = Shared {
            users: Arc::clone(&users),
            rules,
            reports: reports.clone(),
            pool,
            stop: Arc::clone(&stop),
            config: worker_cfg,
            open: Arc::new(AtomicUsize::new(0)),
            udp_open: Arc::new(AtomicUsize::new(0)),
            rates: Arc::default(),
            limits: Arc::new(SessionLimits::new(
                cfg.worker.max_sessions_per_user,
                cfg.worker.max_sessions_per_client,
            )),
            penalties: Arc::new(Penalties::new(cfg.penalty.clone())),
        };

        // Every socket is bound and every thread but the workers runs: the
        // command line's users may now go into the users file.
        if write_back && let Some(path) = &cfg.users_file {
            file::save(path, &users.snapshot().records())
                .map_err(|e| StartError::UsersFile(path.clone(), e.to_string()))?;
        }

        let follower = pending.map(|p| {
            p.run(Live {
                dir: Arc::clone(&users),
                health: Arc::clone(aggregator.totals().users_store()),
            })
        });

        let mut workers = Vec::with_capacity(n);
        for (i, listeners) in per_worker.into_iter().enumerate() {
            let cpu = if cfg.pin && !cpus.is_empty() {
                Some(cpus[i % cpus.len()])
            } else {
                None
            };
            let w = Worker::new(i, listeners, shared.clone()).map_err(StartError::Setup)?;
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
            mgmt_port,
            mgmt_unix,
            mgmt,
            metrics_http,
            writer: Some(writer),
            follower,
            changes: changes_tx,
            reports,
            access_log: cfg.access_log,
            audit,
            users_file: cfg.users_file,
            users_redis: cfg.users_redis.is_some(),
            rules_file: cfg.rules_file,
        })
    }

    /// What SIGHUP does: reopens the access log file (for log rotation) and
    /// loads the users file again, as RELOAD does over the management
    /// protocol. Open tunnels are not touched; a user whose stored hash did
    /// not change keeps its verified password; a bad file changes nothing.
    pub fn reload(&self) {
        self.audit.reopen();
        if let AccessLog::File(p) = &self.access_log {
            match open_access_log(p) {
                Ok(w) => {
                    let _ = self.reports.send(Report::Reopen(w));
                    log::info!("access log reopened: path={}", LogSafe(p.display()));
                }
                Err(e) => log::error!(
                    "access log not reopened: path={} error={}",
                    LogSafe(p.display()),
                    Quoted(e)
                ),
            }
        }
        if self.users_file.is_none() && !self.users_redis && self.rules_file.is_none() {
            log::info!("no users file or rules file to reload");
            self.audit.reload("sighup", true);
            return;
        }
        // Through the users' writer, so that the reload does not interleave
        // with a change made over the management protocol; it logs the
        // outcome itself.
        let (tx, rx) = crossbeam_channel::bounded(1);
        let req = ChangeRequest {
            change: UserChange::Reload,
            answer: Box::new(move |result| {
                let _ = tx.send(result);
            }),
        };
        let ok = match self.changes.send(req).map(|()| rx.recv()) {
            Ok(Ok(result)) => result.is_ok(),
            _ => {
                log::error!("users not reloaded: reason=writer-gone");
                false
            }
        };
        self.audit.reload("sighup", ok);
    }

    /// The management SCTP port, when the endpoint is served over SCTP.
    pub fn mgmt_port(&self) -> Option<u16> {
        self.mgmt_port
    }

    /// The management Unix socket's path, when it is served.
    pub fn mgmt_unix(&self) -> Option<&std::path::Path> {
        self.mgmt_unix.as_deref()
    }

    /// The Prometheus endpoint's address (an ephemeral port filled in),
    /// when it is served.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_http
            .as_ref()
            .map(exposition::Service::local_addr)
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
        if let Some(m) = self.mgmt {
            m.stop();
        }
        if let Some(m) = self.metrics_http {
            m.stop();
        }
        if let Some(f) = self.follower {
            f.stop();
        }
        // The aggregator ends when the workers' senders and this one are gone.
        drop(self.reports);
        // The writer ends when the management thread's sender and this one
        // are gone.
        drop(self.changes);
        for w in &self.workers {
            w.wake();
        }
        for w in self.workers {
            w.join();
        }
        if let Some(w) = self.writer {
            let _ = w.join();
        }
        let totals = Arc::clone(self.aggregator.totals());
        self.aggregator.join();
        totals.snapshot()
    }
}
