//! The HTTPS admission listener and the plain-HTTP admin listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::admission;
use crate::connections::Registry;
use crate::handler::Handler;
use crate::limits::{BYTES_PER_BODY_BYTE, Budget, Held, Limits, MAX_DEADLINE, QUOTED_BYTES, RateLimited, bounded};
use crate::metrics::Metrics;

/// Request bodies above this are refused (HTTP 413), as the reference caps them.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// The apiserver's own default when the request carries no `timeout` parameter; it bounds the
/// body's arrival as well as the answer.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most an HTTP/1.1 connection buffers before its body is read.
const CONNECTION_BUFFER_BYTES: usize = 64 * 1024;

pub struct AdmissionServer {
    pub handler: Handler,
    pub limits: Limits,
    /// Bounds the admissions processed at once; beyond it requests are refused at once (503), so
    /// the apiserver applies its failurePolicy immediately instead of waiting for its timeout.
    /// A request takes its place only once its whole body has arrived.
    pub slots: Arc<Semaphore>,
    pub budget: Budget,
}

type Body = Full<Bytes>;

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(message.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn unavailable(message: &'static str) -> Response<Body> {
    let mut response = text(StatusCode::SERVICE_UNAVAILABLE, message);
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// The `timeout=10s` query parameter the apiserver adds to every webhook call, capped at the
/// apiserver's own maximum.
fn deadline_from_query(query: Option<&str>) -> Duration {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("timeout="))
        .and_then(inject::annotation::parse_go_duration)
        .filter(|n| *n > 0)
        .map(|n| Duration::from_nanos(n as u64).min(MAX_DEADLINE))
        .unwrap_or(DEFAULT_DEADLINE)
}

struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Why a body was not read whole.
enum BodyRefusal {
    TooLarge,
    OverBudget,
    Deadline,
    Broken(String),
}

static BAD_REQUEST_LOG: RateLimited = RateLimited::per_second();
static ACCEPT_LOG: RateLimited = RateLimited::per_second();
static CONNECTION_LOG: RateLimited = RateLimited::per_second();

impl AdmissionServer {
    /// Reads the body by the request's deadline, charging the budget for every byte as it
    /// arrives, so a client that stalls holds almost nothing.
    async fn read_body(
        &self,
        mut body: Incoming,
        declared: Option<u64>,
        deadline: tokio::time::Instant,
        held: &mut Held,
    ) -> Result<Bytes, BodyRefusal> {
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(BodyRefusal::TooLarge);
        }
        // With a declared length the body is copied into one buffer of that capacity, whose
        // pages become resident only as bytes arrive; each frame (and the connection buffer
        // behind it) is then free at once. Without one, frames are kept and joined at the end:
        // growing a buffer would hold up to twice the bytes received, uncounted.
        let mut whole = declared.map(|n| Vec::with_capacity(n as usize));
        let mut frames: Vec<Bytes> = Vec::new();
        let mut received = 0;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return Err(BodyRefusal::Deadline),
                Ok(None) => break,
                Ok(Some(Err(error))) => return Err(BodyRefusal::Broken(error.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            received += data.len();
            if received > MAX_BODY_BYTES {
                return Err(BodyRefusal::TooLarge);
            }
            if !self.budget.take(held, data.len()) {
                return Err(BodyRefusal::OverBudget);
            }
            match whole.as_mut() {
                Some(buffer) => buffer.extend_from_slice(&data),
                None => frames.push(data),
            }
        }
        Ok(match (whole, frames.len()) {
            (Some(buffer), _) => Bytes::from(buffer),
            (None, 1) => frames.pop().unwrap_or_default(),
            (None, _) => Bytes::from(frames.concat()),
        })
    }

    async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        let metrics = &self.handler.metrics;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + deadline_from_query(request.uri().query());
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut held = Budget::hold();
        let body = match self.read_body(request.into_body(), declared, deadline, &mut held).await {
            Ok(body) => body,
            Err(BodyRefusal::TooLarge) => {
                metrics.reject("body_too_large");
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {MAX_BODY_BYTES} bytes\n"),
                );
            }
            Err(BodyRefusal::OverBudget) => {
                metrics.reject("memory_budget");
                return unavailable("proxy injector is holding its memory budget of request bodies; retry later\n");
            }
            Err(BodyRefusal::Deadline) => {
                metrics.reject("body_deadline");
                return text(StatusCode::REQUEST_TIMEOUT, "the request body did not arrive before its deadline\n");
            }
            Err(BodyRefusal::Broken(error)) => {
                metrics.reject("bad_request");
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read the request body: {}\n", bounded(&error, QUOTED_BYTES)),
                );
            }
        };
        // The decoded review and the answer need memory of their own, in proportion to the body.
        if !self.budget.take(&mut held, body.len() * (BYTES_PER_BODY_BYTE - 1)) {
            metrics.reject("memory_budget");
            return unavailable("proxy injector is holding its memory budget of request bodies; retry later\n");
        }
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            metrics.reject("overload");
            return unavailable("proxy injector overloaded; retry later\n");
        };
        metrics.in_flight.inc();
        let _in_flight = InFlight(metrics);
        let review = match admission::decode(&body) {
            Ok(review) => review,
            Err(error) => {
                metrics.reject("bad_request");
                let error = error.to_string();
                let quoted = bounded(&error, QUOTED_BYTES);
                if let Some(suppressed) = BAD_REQUEST_LOG.allow() {
                    tracing::warn!(error = %quoted, suppressed, "bad AdmissionReview");
                }
                return text(StatusCode::BAD_REQUEST, format!("{quoted}\n"));
            }
        };
        drop(body);
        let handled = match tokio::time::timeout_at(deadline, self.handler.handle(&review.request)).await {
            Ok(handled) => handled,
            Err(_) => {
                metrics.reject("deadline");
                self.handler.failed("the request's deadline passed before injection finished".into(), None)
            }
        };
        let elapsed = started.elapsed();
        let decision = handled.decision.as_str();
        metrics.duration.get_or_create(&vec![("outcome", decision.into())]).observe(elapsed.as_secs_f64());
        let request = &review.request;
        tracing::info!(
            uid = %bounded(&request.uid, QUOTED_BYTES),
            namespace = %bounded(&request.namespace, QUOTED_BYTES),
            kind = %bounded(&request.kind.kind, QUOTED_BYTES),
            owner = %handled.owner.as_ref().map(|o| bounded(&format!("{}/{}", o.kind, o.name), QUOTED_BYTES).into_owned()).unwrap_or_default(),
            decision,
            reasons = %handled.reasons,
            dry_run = request.dry_run.unwrap_or(false),
            warnings = handled.answer.warnings.len(),
            duration_us = elapsed.as_micros() as u64,
            "admission"
        );
        let mut response = Response::new(Full::new(Bytes::from(admission::encode(
            &review.api_version,
            &request.uid,
            &handled.answer,
        ))));
        response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
        response
    }
}

/// Whether an accept error means this process is out of file descriptors.
fn out_of_descriptors(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(code) if code == nix::libc::EMFILE || code == nix::libc::ENFILE)
}

/// Serves AdmissionReviews over TLS until `shutdown` resolves, then lets in-flight requests finish
/// (up to `grace`).
pub async fn serve_admission(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    server: Arc<AdmissionServer>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let acceptor = TlsAcceptor::from(tls);
    let limits = server.limits.clone();
    let registry = Registry::new(limits.max_connections_per_peer, limits.max_connections);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Reviews arrive in a few large reads; a small per-connection buffer keeps what hundreds of
    // connections hold in bounds (headers past it get 431).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(CONNECTION_BUFFER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .keep_alive_interval(Some(limits.keepalive_interval))
        .keep_alive_timeout(limits.keepalive_interval);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors: make room by closing the longest-idle connections and
                    // back off, rather than spin on an accept that keeps failing.
                    let closed = if out_of_descriptors(&error) { registry.close_oldest_idle(16) } else { 0 };
                    if let Some(suppressed) = ACCEPT_LOG.allow() {
                        tracing::warn!(%error, closed_idle = closed, open = registry.len(), suppressed, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Admissions are small requests answered at once: Nagle's algorithm would hold each
        // answer back for the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        let Some(registration) = registry.register(peer.ip()) else {
            server.handler.metrics.reject("connections");
            continue;
        };
        let acceptor = acceptor.clone();
        let server = server.clone();
        let builder = builder.clone();
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            let connection = registration.connection.clone();
            let tls = tokio::select! {
                handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => match handshake {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                },
                () = connection.close.notified() => return,
            };
            let service = {
                let connection = connection.clone();
                service_fn(move |request| {
                    let (server, busy) = (server.clone(), connection.request());
                    async move {
                        let response = server.respond(request).await;
                        drop(busy);
                        Ok::<_, Infallible>(response)
                    }
                })
            };
            let serving = builder.serve_connection(TokioIo::new(tls), service);
            tokio::pin!(serving);
            let check_every = (idle_timeout / 4).max(Duration::from_millis(50));
            let mut closing = false;
            let ended = loop {
                tokio::select! {
                    ended = serving.as_mut() => break ended,
                    () = connection.close.notified(), if !closing => {
                        closing = true;
                        serving.as_mut().graceful_shutdown();
                    }
                    () = tokio::time::sleep(check_every), if !closing => {
                        if connection.idle_for().is_some_and(|idle| idle >= idle_timeout) {
                            closing = true;
                            serving.as_mut().graceful_shutdown();
                        }
                    }
                }
            };
            if let Err(error) = ended
                && let Some(suppressed) = CONNECTION_LOG.allow()
            {
                tracing::debug!(%peer, error = %bounded(&error.to_string(), QUOTED_BYTES), suppressed, "connection ended with an error");
            }
            drop(registration);
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight admissions");
    if !registry.close_all(grace).await {
        tracing::warn!("in-flight admissions did not finish within {grace:?}");
    }
}

/// What `/metrics` answers: the metrics rendered in the OpenMetrics text format.
pub type RenderMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// `/metrics`, `/ping` and `/ready` over plain HTTP (the webhook's and the reconciler's).
pub async fn serve_admin(listener: TcpListener, metrics: RenderMetrics, ready: Arc<dyn Fn() -> bool + Send + Sync>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let metrics = metrics.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = match request.uri().path() {
                    "/metrics" => {
                        let mut r = text(StatusCode::OK, metrics());
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            header::HeaderValue::from_static(
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            ),
                        );
                        r
                    }
                    "/ping" => text(StatusCode::OK, "pong\n"),
                    "/ready" if ready() => text(StatusCode::OK, "ok\n"),
                    "/ready" => text(StatusCode::INTERNAL_SERVER_ERROR, "not ready\n"),
                    _ => text(StatusCode::NOT_FOUND, "not found\n"),
                };
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

/// A flag the readiness check reads.
#[derive(Debug, Default)]
pub struct Flag(AtomicBool);

impl Flag {
    pub fn set(&self) {
        self.0.store(true, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

pub fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener.local_addr().expect("a bound listener has an address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_come_from_the_apiserver_query() {
        assert_eq!(deadline_from_query(Some("timeout=3s")), Duration::from_secs(3));
        assert_eq!(deadline_from_query(Some("a=b&timeout=500ms")), Duration::from_millis(500));
        assert_eq!(deadline_from_query(None), DEFAULT_DEADLINE);
        assert_eq!(deadline_from_query(Some("timeout=soon")), DEFAULT_DEADLINE);
    }
}
