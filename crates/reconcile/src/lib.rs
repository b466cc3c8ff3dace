//! The reconciler: pods admitted without the proxy (the webhook was down under failurePolicy
//! Ignore, a burst timed out, the namespace was annotated later), pods whose proxy is older than
//! what injection gives now, and pods proxied where injection is now off, found per workload and
//! converged the way `kubectl rollout restart` would, within limits.
//!
//! [`plan`] is pure: observed objects in, a plan out. [`controller`] is the watch loop around it.

pub mod controller;
pub mod lease;
pub mod metrics;
pub mod observe;
pub mod plan;
pub mod report;

#[cfg(test)]
mod tests;

pub use plan::{Limits, Plan, plan};
