//! What one client may hold: the byte budget for bodies being read and processed, the deadlines
//! on every read, and bounded, rate-limited logs of client-controlled values.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The limits of the admission listener; every one is a flag of `proxy-injector webhook`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Admissions processed at once, counted only once their whole body has arrived.
    pub max_in_flight: usize,
    /// Bytes of request bodies being read or processed at once (each counted
    /// [`BYTES_PER_BODY_BYTE`] times, for its decoded form and the answer).
    pub body_budget: usize,
    /// How long a client may take to send a request's headers (HTTP/1.1).
    pub header_read_timeout: Duration,
    /// A connection without a request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// HTTP/2 keep-alive pings, to find dead peers.
    pub keepalive_interval: Duration,
    pub max_streams_per_connection: u32,
    pub max_connections_per_peer: usize,
    /// Connections the listener holds open, so their buffers stay within the memory limit.
    pub max_connections: usize,
}

/// Memory an admission holds per byte of its body: the body, its decoded JSON and the answer.
pub const BYTES_PER_BODY_BYTE: usize = 4;
/// The apiserver never gives a webhook more than 30 s; a `timeout` asking for more is capped.
pub const MAX_DEADLINE: Duration = Duration::from_secs(30);
/// Budget when the container has no memory limit.
pub const DEFAULT_BODY_BUDGET: usize = 256 * 1024 * 1024;

impl Limits {
    /// The defaults, with the budget derived from the container's memory limit.
    pub fn with_defaults(max_in_flight: usize) -> Limits {
        Limits {
            max_in_flight,
            body_budget: budget_for_memory_limit(cgroup_memory_limit()),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(90),
            keepalive_interval: Duration::from_secs(20),
            max_streams_per_connection: 250,
            max_connections_per_peer: 256,
            max_connections: 1024,
        }
    }
}

/// The cgroup v2 memory limit of this process's container, if it has one.
pub fn cgroup_memory_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok()?;
    text.trim().parse().ok()
}

/// A third of the memory limit goes to request bodies; the rest is the process itself (caches of
/// namespaces and owners, the runtime), the connections' TLS and HTTP buffers, and allocator
/// slack: with 300 connections each holding a body, peak RSS measured budget + 120 MiB.
pub fn budget_for_memory_limit(limit: Option<u64>) -> usize {
    match limit {
        Some(bytes) => usize::try_from(bytes / 3).unwrap_or(usize::MAX).max(16 * 1024 * 1024),
        None => DEFAULT_BODY_BUDGET,
    }
}

/// Bytes of the budget held by one admission; released when dropped.
pub struct Held {
    permits: Vec<OwnedSemaphorePermit>,
}

/// The byte budget, in units of one byte.
#[derive(Debug, Clone)]
pub struct Budget(std::sync::Arc<Semaphore>);

impl Budget {
    pub fn new(bytes: usize) -> Budget {
        Budget(std::sync::Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    /// Takes `bytes` more for `held`, or returns false (nothing taken) when the budget is spent.
    pub fn take(&self, held: &mut Held, bytes: usize) -> bool {
        let Ok(bytes) = u32::try_from(bytes) else { return false };
        match self.0.clone().try_acquire_many_owned(bytes) {
            Ok(permit) => {
                held.permits.push(permit);
                true
            }
            Err(_) => false,
        }
    }

    pub fn hold() -> Held {
        Held { permits: Vec::new() }
    }

    /// Bytes this admission holds.
    pub fn held(held: &Held) -> usize {
        held.permits.iter().map(OwnedSemaphorePermit::num_permits).sum()
    }

    pub fn available(&self) -> usize {
        self.0.available_permits()
    }
}

/// A client-controlled value cut to `max` bytes (on a character boundary), marked when cut.
pub fn bounded(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len()).into()
}

/// How many bytes of a client's value a log line or an answer quotes.
pub const QUOTED_BYTES: usize = 256;

/// Lets one line through per interval; the next one carries how many were held back.
#[derive(Debug)]
pub struct RateLimited {
    interval: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimited {
    pub const fn per_second() -> RateLimited {
        RateLimited { interval: Duration::from_secs(1), state: Mutex::new((None, 0)) }
    }

    /// `Some(suppressed since the last line)` when a line may be written now.
    pub fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < self.interval => {
                state.1 += 1;
                None
            }
            _ => {
                let suppressed = state.1;
                *state = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_a_third_of_the_memory_limit() {
        assert_eq!(budget_for_memory_limit(Some(300 * 1024 * 1024)), 100 * 1024 * 1024);
        assert_eq!(budget_for_memory_limit(None), DEFAULT_BODY_BUDGET);
        assert_eq!(budget_for_memory_limit(Some(1)), 16 * 1024 * 1024, "a floor keeps one large review possible");
    }

    #[test]
    fn budget_refuses_past_its_bytes_and_frees_on_drop() {
        let budget = Budget::new(100);
        let mut first = Budget::hold();
        assert!(budget.take(&mut first, 60));
        let mut second = Budget::hold();
        assert!(!budget.take(&mut second, 60));
        drop(first);
        assert!(budget.take(&mut second, 60));
    }

    #[test]
    fn client_values_are_bounded_and_logs_rate_limited() {
        assert_eq!(bounded("short", 10), "short");
        let long = "é".repeat(1000);
        let cut = bounded(&long, 11);
        assert!(cut.starts_with("ééééé…") && cut.ends_with("(2000 bytes)"), "{cut}");
        let limiter = RateLimited::per_second();
        assert_eq!(limiter.allow(), Some(0));
        assert_eq!(limiter.allow(), None);
        assert_eq!(limiter.allow(), None);
    }
}
