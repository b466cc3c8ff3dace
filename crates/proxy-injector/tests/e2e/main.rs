//! End-to-end: a real kube-apiserver calls the real webhook and stores the injected pod.
//! Run with `cargo xtask e2e`, which starts etcd and kube-apiserver for it.

mod admission_policy;
mod chart;
mod controllers;
mod governance;
mod harness;
mod hostile;
mod install;
mod late_webhook;
mod reconcile;
mod scenarios;
mod server;
