//! The management and monitoring protocol over SCTP (docs/management-protocol.md).
//!
//! A message enters in [`endpoint`] (one SCTP one-to-many socket per worker),
//! is reassembled per association, parsed by [`wire`] and answered by the
//! [`session`] state machine; user changes go to the users' writer thread
//! (`crate::users::store`) and their answers come back through the worker.

pub mod endpoint;
pub mod session;
pub mod wire;
