//! proxy-init: programs iptables so all TCP in and out of a pod goes through the proxy, and the
//! network validator that proves, in CNI mode, that something else already did.

#![forbid(unsafe_code)]

pub mod apply;
pub mod config;
pub mod rules;
pub mod validator;
