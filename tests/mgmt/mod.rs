//! The management protocol suite: its cases by topic and their support
//! library (on tests/common).

pub mod admin;
pub mod clients;
pub mod ctl;
pub mod effects;
pub mod faults;
pub mod login;
pub mod protocol;
pub mod support;
pub mod unauth;
