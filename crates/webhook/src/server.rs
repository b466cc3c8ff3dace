//! The HTTPS admission listener and the plain-HTTP admin listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::admission;
use crate::handler::Handler;
use crate::metrics::Metrics;

/// Request bodies above this are refused (HTTP 413), as the reference caps them.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// The apiserver's own default when the request carries no `timeout` parameter.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AdmissionServer {
    pub handler: Handler,
    /// Bounds the admissions answered at once; beyond it requests are refused at once (503), so
    /// the apiserver applies its failurePolicy immediately instead of waiting for its timeout.
    pub limit: Arc<Semaphore>,
}

type Body = Full<Bytes>;

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(message.into())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The `timeout=10s` query parameter the apiserver adds to every webhook call.
fn deadline_from_query(query: Option<&str>) -> Duration {
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("timeout="))
        .and_then(inject::annotation::parse_go_duration)
        .filter(|n| *n > 0)
        .map(|n| Duration::from_nanos(n as u64))
        .unwrap_or(DEFAULT_DEADLINE)
}

struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

impl AdmissionServer {
    async fn respond(&self, request: Request<Incoming>) -> Response<Body> {
        let metrics = &self.handler.metrics;
        let Ok(_permit) = self.limit.clone().try_acquire_owned() else {
            metrics.reject("overload");
            let mut response = text(StatusCode::SERVICE_UNAVAILABLE, "proxy injector overloaded; retry later\n");
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return response;
        };
        metrics.in_flight.inc();
        let _in_flight = InFlight(metrics);
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + deadline_from_query(request.uri().query());
        let body = match Limited::new(request.into_body(), MAX_BODY_BYTES).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<http_body_util::LengthLimitError>() => {
                metrics.reject("body_too_large");
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body larger than {MAX_BODY_BYTES} bytes\n"),
                );
            }
            Err(error) => {
                metrics.reject("bad_request");
                return text(StatusCode::BAD_REQUEST, format!("cannot read the request body: {error}\n"));
            }
        };
        let review = match admission::decode(&body) {
            Ok(review) => review,
            Err(error) => {
                metrics.reject("bad_request");
                tracing::warn!(%error, "bad AdmissionReview");
                return text(StatusCode::BAD_REQUEST, format!("{error}\n"));
            }
        };
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
            uid = %request.uid,
            namespace = %request.namespace,
            kind = %request.kind.kind,
            owner = %handled.owner.as_ref().map(|o| format!("{}/{}", o.kind, o.name)).unwrap_or_default(),
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
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let server = server.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => return tracing::debug!(%peer, %error, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let service = service_fn(move |request| {
                let server = server.clone();
                async move { Ok::<_, Infallible>(server.respond(request).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(tls), service).into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing in-flight admissions");
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("in-flight admissions did not finish within {grace:?}");
    }
}

/// `/metrics`, `/ping` and `/ready` over plain HTTP.
pub async fn serve_admin(listener: TcpListener, metrics: Arc<Metrics>, ready: Arc<dyn Fn() -> bool + Send + Sync>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        let ready = ready.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = match request.uri().path() {
                    "/metrics" => {
                        let mut r = text(StatusCode::OK, metrics.render());
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
