//! Governance: the rules platform teams set on what workloads may override
//! (`proxyInjector.policy`), and the advice given at apply time to whoever applies a workload.
//! Pure, like the engine it builds on: the webhook and the command line call it with what they
//! know of the namespace.

#![forbid(unsafe_code)]

pub mod advice;
pub mod policy;
pub mod selector;

pub use advice::{Surroundings, advise};
pub use policy::{Mode, Namespace, Policy, PolicyError, Rule, Subject, Violation};

#[cfg(test)]
mod tests;
