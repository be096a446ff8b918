//! The management and monitoring protocol over SCTP and over a Unix-domain
//! SOCK_SEQPACKET socket (docs/management-protocol.md).
//!
//! A message enters in [`endpoint`] (an SCTP one-to-many socket, a Unix
//! socket or both, on the management thread of [`service`]), is
//! reassembled per association (SCTP), parsed by [`wire`] and answered by
//! the [`session`] state machine; user changes go to the users' writer thread
//! (`crate::users::store`) and their answers come back to the management
//! thread's inbox. Associations that have not logged in are kept in order
//! of arrival by [`arrivals`], which bounds them in number and in time.

pub mod arrivals;
pub mod endpoint;
pub mod service;
pub mod session;
pub mod wire;
