//! Every open admission connection, so that idle ones can be closed: after the idle timeout, when
//! file descriptors run out (oldest first), and at shutdown; and so one peer cannot hold more
//! than its share of connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// One connection's activity, shared between its task and the registry.
#[derive(Debug)]
pub struct Connection {
    id: u64,
    peer: IpAddr,
    requests: AtomicUsize,
    /// Milliseconds since the registry started, at the last request's start or end.
    last_active_ms: AtomicU64,
    epoch: Instant,
    /// Asks the connection's task to shut the connection down gracefully.
    pub close: Notify,
}

impl Connection {
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Marks a request as started; the guard marks it finished.
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.last_active_ms.store(self.now_ms(), Ordering::Release);
        RequestGuard(self.clone())
    }

    /// How long the connection has been without a request in flight (`None` while one is).
    pub fn idle_for(&self) -> Option<Duration> {
        if self.requests.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_ms = self.now_ms().saturating_sub(self.last_active_ms.load(Ordering::Acquire));
        Some(Duration::from_millis(idle_ms))
    }
}

pub struct RequestGuard(Arc<Connection>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.last_active_ms.store(self.0.now_ms(), Ordering::Release);
        self.0.requests.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
pub struct Registry {
    max_per_peer: usize,
    max_total: usize,
    epoch: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Connection>>>,
    /// Woken whenever a connection ends, for shutdown to wait on.
    ended: Notify,
}

/// Removes the connection from the registry when its task ends.
pub struct Registration {
    registry: Arc<Registry>,
    pub connection: Arc<Connection>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.open.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.connection.id);
        self.registry.ended.notify_waiters();
    }
}

impl Registry {
    pub fn new(max_per_peer: usize, max_total: usize) -> Arc<Registry> {
        Arc::new(Registry {
            max_per_peer: max_per_peer.max(1),
            max_total: max_total.max(1),
            epoch: Instant::now(),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            ended: Notify::new(),
        })
    }

    /// Registers a new connection from `peer`. A peer at its maximum makes room by closing its
    /// own longest-idle connection, and so does the whole listener at its maximum; `None` when
    /// every connection that could make room is busy.
    pub fn register(self: &Arc<Self>, peer: IpAddr) -> Option<Registration> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let make_room = |candidates: &mut dyn Iterator<Item = &Arc<Connection>>| {
            let longest_idle = candidates.filter_map(|c| c.idle_for().map(|d| (d, c))).max_by_key(|(d, _)| *d);
            longest_idle.map(|(_, connection)| connection.close.notify_one())
        };
        if open.values().filter(|c| c.peer == peer).count() >= self.max_per_peer {
            make_room(&mut open.values().filter(|c| c.peer == peer))?;
        } else if open.len() >= self.max_total {
            make_room(&mut open.values())?;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            id,
            peer,
            requests: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            epoch: self.epoch,
            close: Notify::new(),
        });
        open.insert(id, connection.clone());
        Some(Registration { registry: self.clone(), connection })
    }

    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Asks the `count` connections idle the longest to close; returns how many were asked.
    pub fn close_oldest_idle(&self, count: usize) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mut idle: Vec<(Duration, &Arc<Connection>)> =
            open.values().filter_map(|c| c.idle_for().map(|d| (d, c))).collect();
        idle.sort_by_key(|(idle_for, _)| std::cmp::Reverse(*idle_for));
        idle.iter().take(count).for_each(|(_, c)| c.close.notify_one());
        idle.len().min(count)
    }

    /// Asks every connection to close, then waits until all have ended or `grace` passes.
    pub async fn close_all(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let ended = self.ended.notified();
            {
                let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
                if open.is_empty() {
                    return true;
                }
                open.values().for_each(|c| c.close.notify_one());
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                return self.is_empty();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_limited_and_idle_connections_close_oldest_first() {
        let registry = Registry::new(2, 3);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("10.1.1.1".parse().unwrap(), "10.1.1.2".parse().unwrap(), "10.1.1.3".parse().unwrap());
        let first = registry.register(a).unwrap();
        let second = registry.register(a).unwrap();
        let third = registry.register(b).unwrap();
        let busy = [first.connection.request(), second.connection.request(), third.connection.request()];
        assert!(registry.register(a).is_none(), "a busy peer at its maximum is refused");
        assert!(registry.register(c).is_none(), "a listener at its maximum, every connection busy, refuses");
        let [busy_first, busy_second, busy_third] = busy;
        drop(busy_first);
        assert_eq!(second.connection.idle_for(), None);
        assert!(registry.register(c).is_some(), "at the maximum, an idle connection makes room");
        assert!(registry.register(a).is_some(), "a peer at its maximum makes room by closing its idle one");
        assert_eq!(registry.close_oldest_idle(5), 1, "only idle connections are asked to close");
        drop((busy_second, busy_third));
        assert!(second.connection.idle_for().is_some());
    }
}
