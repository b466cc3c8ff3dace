//! The webhook against clients that stall, hoard connections, exhaust descriptors or send huge
//! values: admissions keep being answered, and logs stay bounded.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use serde_json::json;

use crate::harness::*;
use crate::server::{admit, review, server_namespace, stalled_request, stalled_request_of};

fn client_config(webhook: &WebhookProcess, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(webhook.pki.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// An HTTP/2 connection over TLS, as the apiserver opens one.
async fn h2_connection(webhook: &WebhookProcess) -> h2::client::SendRequest<bytes::Bytes> {
    let connector = tokio_rustls::TlsConnector::from(client_config(webhook, b"h2"));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", webhook.port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = connector.connect("127.0.0.1".try_into().unwrap(), tcp).await.unwrap();
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    send
}

fn post_request() -> http::Request<()> {
    http::Request::post("https://127.0.0.1/?timeout=10s").header("content-type", "application/json").body(()).unwrap()
}

/// One admission over an HTTP/2 connection: status and body.
async fn h2_admit(send: &mut h2::client::SendRequest<bytes::Bytes>, body: String) -> (u16, Vec<u8>) {
    let mut ready = send.clone().ready().await.unwrap();
    let (response, mut stream) = ready.send_request(post_request(), false).unwrap();
    stream.send_data(bytes::Bytes::from(body), true).unwrap();
    let response = response.await.unwrap();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    (status, bytes)
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_http2_streams_and_half_sent_bodies_do_not_stop_admissions() {
    let ns = server_namespace("h01").await;
    let webhook = WebhookProcess::start(WebhookOptions { max_in_flight: 4, ..WebhookOptions::default() });
    // Streams that send their headers and `{`, then nothing, on several connections.
    let mut stalled_streams = Vec::new();
    for _ in 0..4 {
        let send = h2_connection(&webhook).await;
        for _ in 0..50 {
            let mut ready = send.clone().ready().await.unwrap();
            let (response, mut stream) = ready.send_request(post_request(), false).unwrap();
            stream.send_data(bytes::Bytes::from_static(b"{"), false).unwrap();
            stalled_streams.push((response, stream));
        }
    }
    let half_sent: Vec<_> = (0..20).map(|_| stalled_request(&webhook)).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut send = h2_connection(&webhook).await;
    let started = Instant::now();
    for i in 0..10 {
        let body = review(&format!("h01-{i}"), &ns, pod_json("p", json!({}))).to_string();
        let (status, answer) = h2_admit(&mut send, body).await;
        assert_eq!(status, 200, "{}\n{}", String::from_utf8_lossy(&answer), webhook.logs());
    }
    assert!(started.elapsed() < Duration::from_secs(2), "admissions waited for the stalled clients");
    assert_eq!(webhook.metric("proxy_injector_requests_rejected_total{reason=\"overload\"}"), 0.0);
    drop((stalled_streams, half_sent));
}

#[tokio::test(flavor = "multi_thread")]
async fn one_http2_connection_with_concurrent_streams_is_answered_without_nagle_delays() {
    let ns = server_namespace("h02").await;
    // No injection: what is measured is the transport, not the engine.
    let webhook =
        WebhookProcess::start(WebhookOptions { extra_args: vec!["--no-op".into()], ..WebhookOptions::default() });
    let send = h2_connection(&webhook).await;
    let body = review("h02", &ns, pod_json("p", json!({}))).to_string();
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let round: Vec<_> = (0..16)
            .map(|_| {
                let (mut send, body) = (send.clone(), body.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let (status, _) = h2_admit(&mut send, body).await;
                    (status, started.elapsed())
                })
            })
            .collect();
        for task in round {
            let (status, latency) = task.await.unwrap();
            assert_eq!(status, 200);
            latencies.push(latency);
        }
    }
    latencies.sort();
    let slow = latencies.iter().filter(|l| **l >= Duration::from_millis(35)).count();
    // Nagle's algorithm with the peer's delayed ACK holds answers for ~40 ms: without
    // TCP_NODELAY, 1,254 of 1,600 were that slow here (p50 45 ms); with it, none (p50 3 ms) on
    // an idle machine, and 16 with two builds and a fuzzer sharing the cores. A quarter tells the
    // two apart without depending on the machine's load.
    assert!(
        slow < 400,
        "{slow} of 1600 answers took 35 ms or more (p50 {:?}, p99 {:?})",
        latencies[800],
        latencies[1584]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let webhook = WebhookProcess::start(WebhookOptions {
        extra_args: vec!["--idle-timeout".into(), "500ms".into()],
        ..WebhookOptions::default()
    });
    let connection =
        rustls::ClientConnection::new(client_config(&webhook, b"http/1.1"), "127.0.0.1".try_into().unwrap()).unwrap();
    let socket = std::net::TcpStream::connect(("127.0.0.1", webhook.port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    stream.flush().unwrap();
    let started = Instant::now();
    let mut buffer = [0u8; 64];
    // The server closes the connection: the read ends (EOF or a reset), and not by our timeout.
    let read = stream.read(&mut buffer);
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(5), "closed after {waited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn out_of_file_descriptors_the_webhook_backs_off_and_frees_idle_connections() {
    let ns = server_namespace("h04").await;
    // A soft limit the process can raise: 300 idle connections are no problem.
    let raised = WebhookProcess::start(WebhookOptions { open_files: Some((256, 4096)), ..WebhookOptions::default() });
    assert!(raised.logs().contains("raised the open-file limit"), "{}", raised.logs());
    let idle: Vec<_> = (0..300).map(|_| std::net::TcpStream::connect(("127.0.0.1", raised.port)).unwrap()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(admit(&raised, "h04-a", &ns, &pod_json("p", json!({})))["response"]["allowed"], true);
    drop(idle);

    // A hard limit of 256: accepting fails, and the webhook closes the longest-idle connections
    // to make room, without spinning or flooding its log.
    let capped = WebhookProcess::start(WebhookOptions { open_files: Some((256, 256)), ..WebhookOptions::default() });
    let mut idle = Vec::new();
    for _ in 0..300 {
        let socket = std::net::TcpStream::connect(("127.0.0.1", capped.port)).unwrap();
        let mut stream = rustls::StreamOwned::new(
            rustls::ClientConnection::new(client_config(&capped, b"http/1.1"), "127.0.0.1".try_into().unwrap())
                .unwrap(),
            socket,
        );
        let _ = stream.flush();
        idle.push(stream);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answer = admit(&capped, "h04-b", &ns, &pod_json("p", json!({})));
    assert_eq!(answer["response"]["allowed"], true);
    let logs = capped.logs();
    let accept_lines = logs.lines().filter(|l| l.contains("accept failed")).count();
    assert!(accept_lines <= 10, "{accept_lines} accept-failure lines in 2 s");
    assert!(logs.len() < 200_000, "the log grew to {} bytes", logs.len());
    drop(idle);
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_client_values_are_logged_and_answered_bounded() {
    let ns = server_namespace("h05").await;
    let webhook = WebhookProcess::start(WebhookOptions::default());
    let uid = "u".repeat(1024 * 1024);
    let answer = admit(&webhook, &uid, &ns, &pod_json("p", json!({})));
    assert_eq!(answer["response"]["uid"].as_str().map(str::len), Some(uid.len()), "the uid is echoed whole");
    let body = serde_json::to_vec(&"x".repeat(1024 * 1024)).unwrap();
    let (status, answer) = crate::server::post(&webhook.agent(), &webhook.url(), &body);
    assert_eq!(status, 400);
    assert!(answer.len() < 1024, "a {} byte 400 answer", answer.len());
    std::thread::sleep(Duration::from_millis(200));
    let longest = webhook.logs().lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "a log line of {longest} bytes");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_bodies_held_at_once_stay_within_the_memory_budget() {
    const BUDGET: u64 = 64 * 1024 * 1024;
    /// The process itself (runtime, TLS, caches) and the 30 connections' buffers, beyond the
    /// budget (456 MiB peak before there was a budget).
    const OVERHEAD: u64 = 80 * 1024 * 1024;
    let ns = server_namespace("h06").await;
    let webhook = WebhookProcess::start(WebhookOptions {
        extra_args: vec!["--body-budget".into(), "64Mi".into()],
        ..WebhookOptions::default()
    });
    let body_bytes = 10 * 1024 * 1024 - 16;
    let held: Vec<_> = (0..30)
        .map(|_| {
            let mut stream = stalled_request_of(&webhook, body_bytes + 1);
            let chunk = vec![b' '; 1024 * 1024];
            for _ in 0..10 {
                if stream.write_all(&chunk[..body_bytes / 10]).is_err() {
                    break;
                }
            }
            let _ = stream.flush();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let peak = webhook.peak_rss();
    assert!(peak < BUDGET + OVERHEAD, "peak RSS {} MiB with 30 x 10 MiB bodies held", peak >> 20);
    assert!(webhook.metric("proxy_injector_requests_rejected_total{reason=\"memory_budget\"}") > 0.0);
    drop(held);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(admit(&webhook, "h06", &ns, &pod_json("p", json!({})))["response"]["allowed"], true);
    // The bodies are gone, and so is their memory: RSS comes back down.
    let after = webhook.rss();
    assert!(after < peak / 2, "RSS {} MiB after the bodies were released (peak {} MiB)", after >> 20, peak >> 20);
}

/// A TLS connection to the webhook that has written `request` and waits for the answer; returns
/// what came back and how long it took.
fn written_and_answered(webhook: &WebhookProcess, request: &str) -> (String, Duration) {
    let connection =
        rustls::ClientConnection::new(client_config(webhook, b"http/1.1"), "127.0.0.1".try_into().unwrap()).unwrap();
    let socket = std::net::TcpStream::connect(("127.0.0.1", webhook.port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    stream.write_all(request.as_bytes()).unwrap();
    stream.flush().unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (String::from_utf8_lossy(&answer).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_that_misses_its_deadline_and_headers_that_never_end_are_dropped() {
    let webhook = WebhookProcess::start(WebhookOptions {
        extra_args: vec!["--header-read-timeout".into(), "500ms".into()],
        ..WebhookOptions::default()
    });
    // The body's deadline is the apiserver's `timeout`.
    let (answer, waited) = written_and_answered(
        &webhook,
        "POST /?timeout=1s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{",
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(waited >= Duration::from_millis(800) && waited < Duration::from_secs(5), "answered after {waited:?}");
    assert_eq!(webhook.metric("proxy_injector_requests_rejected_total{reason=\"body_deadline\"}"), 1.0);
    // Headers that never end: the connection is closed after the header-read timeout.
    let (_, waited) = written_and_answered(&webhook, "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(5), "closed after {waited:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_http2_peer_is_dropped_after_unanswered_keepalive_pings() {
    let webhook = WebhookProcess::start(WebhookOptions {
        extra_args: vec!["--keepalive-interval".into(), "500ms".into(), "--idle-timeout".into(), "60s".into()],
        ..WebhookOptions::default()
    });
    let connector = tokio_rustls::TlsConnector::from(client_config(&webhook, b"h2"));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", webhook.port)).await.unwrap();
    let tls = connector.connect("127.0.0.1".try_into().unwrap(), tcp).await.unwrap();
    let (send, connection) = h2::client::handshake(tls).await.unwrap();
    let mut connection = Box::pin(connection);
    // A request whose body stalls keeps the connection from being idle for a minute.
    let request = http::Request::post("https://127.0.0.1/?timeout=30s").body(()).unwrap();
    let mut ready = send.ready().await.unwrap();
    let (_response, mut stream) = ready.send_request(request, false).unwrap();
    stream.send_data(bytes::Bytes::from_static(b"{"), false).unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(300), &mut connection).await;
    // The peer goes dead: its connection is no longer polled, so no ping is answered.
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Resumed, the connection ends at once: the webhook has closed it.
    let ended = tokio::time::timeout(Duration::from_secs(2), &mut connection).await;
    assert!(ended.is_ok(), "the webhook kept a peer that answered no ping for 3 s");
}
