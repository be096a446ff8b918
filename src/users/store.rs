//! The users' writer: the one thread that changes the user table at run
//! time, and keeps the users file in step with it.
//!
//! Hashing a password (Argon2id) and making the file durable (fsync) take
//! milliseconds, so they never run on a worker. A change is written to the
//! file before it is published to the workers and before the success
//! response; if the write fails, nothing changes and the answer is X'07'
//! (PROTOCOL section 5).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::Receiver;

use super::file::{self, Record};
use super::{Directory, Role, Secret, UserTable};
use crate::mgmt::endpoint::{ChangeRequest, Reply};
use crate::mgmt::session::UserChange;
use crate::mgmt::wire::Status;
use crate::reactor::Inbound;

/// The most users the table holds; ADD_USER beyond it answers X'08'.
pub const MAX_USERS: usize = 100_000;

/// The writer's state.
#[derive(Debug)]
pub struct Store {
    dir: Arc<Directory>,
    path: Option<PathBuf>,
    max_users: usize,
    /// Test hook: the cost of new hashes.
    cost: file::Cost,
}

impl Store {
    /// A writer for `dir`, persisting to `path` when given.
    pub fn new(dir: Arc<Directory>, path: Option<PathBuf>) -> Self {
        Store {
            dir,
            path,
            max_users: MAX_USERS,
            cost: file::Cost::DEFAULT,
        }
    }

    /// Uses `cost` for new password hashes (tests use a cheap one).
    pub fn with_cost(mut self, cost: file::Cost) -> Self {
        self.cost = cost;
        self
    }

    /// Limits the table to `n` users.
    pub fn with_max_users(mut self, n: usize) -> Self {
        self.max_users = n;
        self
    }

    /// Starts the writer thread; it ends when every sender is dropped.
    pub fn spawn(self, rx: Receiver<ChangeRequest>) -> io::Result<thread::JoinHandle<()>> {
        thread::Builder::new()
            .name("users-writer".into())
            .spawn(move || {
                while let Ok(req) = rx.recv() {
                    let status = self.apply(&req.change);
                    let reply = Inbound::Mgmt(Reply::ChangeDone {
                        assoc: req.assoc,
                        status,
                    });
                    if req.reply.send(reply).is_ok() {
                        let _ = req.waker.wake();
                    }
                }
            })
    }

    fn secret(&self, password: &[u8]) -> Secret {
        match self.path {
            Some(_) => Secret::with_hash(password, file::hash_password_with(password, self.cost)),
            None => Secret::new(password),
        }
    }

    /// Applies one change and answers with its status. On any failure the
    /// table and the file are as before.
    pub fn apply(&self, change: &UserChange) -> Status {
        // Hash outside the table update: it is the slow part.
        let secret = match change {
            UserChange::Add { password, .. } | UserChange::SetPassword { password, .. } => {
                Some(self.secret(password))
            }
            UserChange::Delete { .. } => None,
        };
        let result = self.dir.update(|t: &mut UserTable| -> Result<(), Status> {
            match change {
                UserChange::Add { name, role, .. } => {
                    if t.find(name).is_some() {
                        return Err(Status::UserExists);
                    }
                    if t.len() >= self.max_users {
                        return Err(Status::LimitReached);
                    }
                    t.insert(name, *role, secret.clone().expect("a secret for ADD_USER"));
                }
                UserChange::Delete { name } => {
                    let user = t.find(name).ok_or(Status::NoSuchUser)?;
                    // PROTOCOL X'06': "the change would leave the server
                    // without an administrator".
                    if user.role == Role::Admin && t.count(Role::Admin) == 1 {
                        return Err(Status::Forbidden);
                    }
                    t.remove(name).map_err(|_| Status::NoSuchUser)?;
                }
                UserChange::SetPassword { name, .. } => {
                    t.set_secret(name, secret.clone().expect("a secret for SET_PASSWORD"))
                        .map_err(|_| Status::NoSuchUser)?;
                }
            }
            self.persist(t)
        });
        match result {
            Ok(()) => {
                log::info!("users: {change:?} done");
                Status::Success
            }
            Err(status) => {
                log::info!("users: {change:?} refused: {status}");
                status
            }
        }
    }

    fn persist(&self, t: &UserTable) -> Result<(), Status> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let records: Vec<Record> = t.records();
        file::save(path, &records).map_err(|e| {
            log::error!("users file {}: {e}; the change is not made", path.display());
            Status::ServerError
        })
    }
}
