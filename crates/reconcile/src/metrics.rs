//! The reconciler's Prometheus metrics: what it sees (pods by state, workloads by step) and what
//! it does (restarts, failures, leadership).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::plan::{Kind, Plan, Step};

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    pods: Family<Labels, Gauge>,
    workloads: Family<Labels, Gauge>,
    restarts: Family<Labels, Counter>,
    pub restart_errors: Counter,
    pub config_errors: Counter,
    pub leader: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let pods = Family::<Labels, Gauge>::default();
        registry.register(
            "proxy_injector_reconcile_pods",
            "Pods by state: meshed, unmeshed, stale, unwanted (a proxy injection no longer gives), plain",
            pods.clone(),
        );
        let workloads = Family::<Labels, Gauge>::default();
        registry.register("proxy_injector_reconcile_workloads", "Workloads by planned step", workloads.clone());
        let restarts = Family::<Labels, Counter>::default();
        registry.register("proxy_injector_reconcile_restarts", "Workloads restarted, by kind", restarts.clone());
        let restart_errors = Counter::default();
        registry.register(
            "proxy_injector_reconcile_restart_errors",
            "Restarts the apiserver refused",
            restart_errors.clone(),
        );
        let config_errors = Counter::default();
        registry.register(
            "proxy_injector_reconcile_config_errors",
            "Passes skipped because the injector's configuration did not load",
            config_errors.clone(),
        );
        let leader = Gauge::default();
        registry.register("proxy_injector_reconcile_leader", "1 while this replica holds the Lease", leader.clone());
        Metrics { registry, pods, workloads, restarts, restart_errors, config_errors, leader }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    pub fn observe(&self, plan: &Plan) {
        let totals = plan.totals();
        for (state, n) in [
            ("meshed", totals.meshed),
            ("unmeshed", totals.unmeshed),
            ("stale", totals.stale),
            ("unwanted", totals.unwanted),
            ("plain", totals.plain),
        ] {
            self.pods.get_or_create(&vec![("state", state.to_string())]).set(n as i64);
        }
        let mut steps = [("none", 0), ("restart", 0), ("held", 0), ("report", 0)];
        for workload in &plan.workloads {
            let index = match workload.step {
                Step::Nothing => 0,
                Step::Restart(_) => 1,
                Step::Held(_) => 2,
                Step::Report(_) => 3,
            };
            steps[index].1 += 1;
        }
        for (step, n) in steps {
            self.workloads.get_or_create(&vec![("step", step.to_string())]).set(n);
        }
    }

    pub fn restarted(&self, kind: Kind) {
        self.restarts.get_or_create(&vec![("kind", kind.to_string())]).inc();
    }
}
