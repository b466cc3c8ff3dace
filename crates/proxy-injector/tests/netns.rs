//! proxy-init with real iptables and real traffic, in network namespaces made by the test: a
//! "client" namespace and a "pod" namespace joined by a veth pair. Needs root (CI runs as root);
//! a developer without root may set PROXY_INJECTOR_SKIP_NETNS=1, which CI never does.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use nix::sys::socket::{getsockopt, sockopt};

static NEXT_SUBNET: AtomicU8 = AtomicU8::new(10);

/// `true` when the tests may run; panics (never skips silently) when they cannot.
fn prerequisites() -> bool {
    let opted_out = std::env::var("PROXY_INJECTOR_SKIP_NETNS").as_deref() == Ok("1");
    if opted_out && std::env::var("CI").is_err() {
        eprintln!("PROXY_INJECTOR_SKIP_NETNS=1: network-namespace tests not run");
        return false;
    }
    assert!(
        nix::unistd::geteuid().is_root(),
        "the proxy-init tests create network namespaces and need root; run as root (CI does), or set \
         PROXY_INJECTOR_SKIP_NETNS=1 to leave them out on a developer machine"
    );
    for tool in ["ip", "nsenter", "setpriv", "iptables-nft-save", "iptables-legacy-save"] {
        let found =
            ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().any(|dir| std::path::Path::new(dir).join(tool).exists());
        assert!(
            found,
            "{tool} is missing: install iproute2, util-linux and iptables (apt-get install iproute2 util-linux iptables)"
        );
    }
    true
}

fn sh(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// Two namespaces: client 10.77.N.1 and pod 10.77.N.2.
struct Net {
    client: String,
    pod: String,
    subnet: u8,
}

impl Net {
    fn new() -> Net {
        let subnet = NEXT_SUBNET.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{}-{subnet}", std::process::id());
        let net = Net { client: format!("pic-{tag}"), pod: format!("pip-{tag}"), subnet };
        let (vc, vp) = (
            format!("vc{subnet}x{}", std::process::id() % 10000),
            format!("vp{subnet}x{}", std::process::id() % 10000),
        );
        sh(&["ip", "netns", "add", &net.client]);
        sh(&["ip", "netns", "add", &net.pod]);
        sh(&["ip", "link", "add", &vc, "type", "veth", "peer", "name", &vp]);
        sh(&["ip", "link", "set", &vc, "netns", &net.client]);
        sh(&["ip", "link", "set", &vp, "netns", &net.pod]);
        for (ns, dev, host) in [(&net.client, &vc, 1), (&net.pod, &vp, 2)] {
            sh(&["ip", "-n", ns, "addr", "add", &format!("10.77.{subnet}.{host}/24"), "dev", dev]);
            sh(&["ip", "-n", ns, "addr", "add", &format!("fd77:{subnet}::{host}/64"), "dev", dev, "nodad"]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 1)
    }

    fn pod_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.subnet, 2)
    }

    fn pod_path(&self) -> String {
        format!("/var/run/netns/{}", self.pod)
    }

    /// `proxy-injector proxy-init --netns <pod> <args>`, with `path` as PATH when given.
    fn run(&self, args: &[&str], path: Option<&std::path::Path>) -> std::process::Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_proxy-injector"));
        command.args(["proxy-init", "--netns", &self.pod_path()]).args(args);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        command.output().unwrap()
    }

    /// proxy-init with the arguments a default injected pod gets, plus `extra`.
    fn proxy_init(&self, mode: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec!["--iptables-mode", mode, "--ipv6=false"];
        args.extend(["--incoming-proxy-port", "4143", "--outgoing-proxy-port", "4140", "--proxy-uid", "2102"]);
        args.extend(["--inbound-ports-to-ignore", "4190,4191,4567,4568", "--outbound-ports-to-ignore", "4567,4568"]);
        args.extend(extra);
        self.run(&args, None)
    }

    /// The proxy-init rules as `iptables-save` prints them, without counters.
    fn saved_rules(&self, mode: &str) -> Vec<String> {
        let save = format!("iptables-{mode}-save");
        sh(&["ip", "netns", "exec", &self.pod, &save, "-t", "nat"])
            .lines()
            .filter(|l| l.contains("PROXY_INIT"))
            .map(|l| l.split(" [").next().unwrap_or(l).to_string())
            .collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.client]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.pod]).status();
    }
}

/// Runs `f` on a thread that has entered namespace `ns`; sockets it makes live there.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn listen(ns: &str, addr: &str) -> TcpListener {
    let addr = addr.to_string();
    in_ns(ns, move || {
        let listener = TcpListener::bind(&addr).unwrap();
        listener.set_nonblocking(true).unwrap();
        listener
    })
}

/// The next connection on `listener` within a second, with its original destination.
fn accepted(listener: &TcpListener) -> Option<SocketAddr> {
    for _ in 0..100 {
        match listener.accept() {
            Ok((stream, _)) => {
                let original = getsockopt(&stream, sockopt::OriginalDst).ok().map(|addr| {
                    SocketAddr::V4(SocketAddrV4::new(
                        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                        u16::from_be(addr.sin_port),
                    ))
                });
                return Some(original.unwrap_or_else(|| stream.local_addr().unwrap()));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    None
}

fn connect(ns: &str, to: SocketAddr) {
    in_ns(ns, move || {
        let mut stream =
            TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap_or_else(|e| panic!("connect {to}: {e}"));
        let _ = stream.write_all(b"x");
    });
}

fn redirects_real_traffic(mode: &str) {
    if !prerequisites() {
        return;
    }
    let net = Net::new();
    let output = net.proxy_init(mode, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let (pod, client) = (net.pod.clone(), net.client.clone());
    let inbound_proxy = listen(&pod, "0.0.0.0:4143");
    let outbound_proxy = listen(&pod, "127.0.0.1:4140");
    let app = listen(&pod, "0.0.0.0:8080");
    let control = listen(&pod, "0.0.0.0:4190");
    let pod_loopback = listen(&pod, "127.0.0.1:7070");
    let remote = listen(&client, &format!("{}:9090", net.client_ip()));
    let remote_ignored = listen(&client, &format!("{}:4567", net.client_ip()));

    // Inbound TCP lands on the inbound proxy port, original destination preserved.
    connect(&client, SocketAddr::from((net.pod_ip(), 8080)));
    assert_eq!(accepted(&inbound_proxy), Some(SocketAddr::from((net.pod_ip(), 8080))));
    assert_eq!(accepted(&app), None);
    // Ignored inbound ports pass untouched.
    connect(&client, SocketAddr::from((net.pod_ip(), 4190)));
    assert!(accepted(&control).is_some());
    assert_eq!(accepted(&inbound_proxy), None);
    // Outbound TCP lands on the outbound proxy port, original destination preserved.
    connect(&pod, SocketAddr::from((net.client_ip(), 9090)));
    assert_eq!(accepted(&outbound_proxy), Some(SocketAddr::from((net.client_ip(), 9090))));
    assert_eq!(accepted(&remote), None);
    // Ignored outbound ports pass untouched.
    connect(&pod, SocketAddr::from((net.client_ip(), 4567)));
    assert!(accepted(&remote_ignored).is_some());
    // Loopback is not redirected.
    connect(&pod, SocketAddr::from(([127, 0, 0, 1], 7070)));
    assert!(accepted(&pod_loopback).is_some());
    assert_eq!(accepted(&outbound_proxy), None);
    // The proxy's own user is not redirected.
    let script = format!("echo x > /dev/tcp/{}/9090", net.client_ip());
    sh(&[
        "ip",
        "netns",
        "exec",
        &pod,
        "setpriv",
        "--reuid=2102",
        "--regid=2102",
        "--clear-groups",
        "bash",
        "-c",
        &script,
    ]);
    assert!(accepted(&remote).is_some());
    assert_eq!(accepted(&outbound_proxy), None);
    // UDP is untouched.
    let udp = in_ns(&pod, || UdpSocket::bind("0.0.0.0:8080").unwrap());
    udp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let target = SocketAddr::from((net.pod_ip(), 8080));
    in_ns(&client, move || UdpSocket::bind("0.0.0.0:0").unwrap().send_to(b"u", target).unwrap());
    assert_eq!(udp.recv(&mut [0; 4]).unwrap(), 1);

    // The rules are the reference's, and a second run leaves the same rules.
    let first = net.saved_rules(mode);
    assert_eq!(
        first,
        [
            ":PROXY_INIT_OUTPUT -",
            ":PROXY_INIT_REDIRECT -",
            "-A PREROUTING -m comment --comment \"proxy-init/install-proxy-init-prerouting\" -j PROXY_INIT_REDIRECT",
            "-A OUTPUT -m comment --comment \"proxy-init/install-proxy-init-output\" -j PROXY_INIT_OUTPUT",
            "-A PROXY_INIT_OUTPUT -m owner --uid-owner 2102 -m comment --comment \"proxy-init/ignore-proxy-user-id\" -j RETURN",
            "-A PROXY_INIT_OUTPUT -o lo -m comment --comment \"proxy-init/ignore-loopback\" -j RETURN",
            "-A PROXY_INIT_OUTPUT -p tcp -m multiport --dports 4567,4568 -m comment --comment \"proxy-init/ignore-port-4567,4568\" -j RETURN",
            "-A PROXY_INIT_OUTPUT -p tcp -m comment --comment \"proxy-init/redirect-all-outgoing-to-proxy-port\" -j REDIRECT --to-ports 4140",
            "-A PROXY_INIT_REDIRECT -p tcp -m multiport --dports 4190,4191,4567,4568 -m comment --comment \"proxy-init/ignore-port-4190,4191,4567,4568\" -j RETURN",
            "-A PROXY_INIT_REDIRECT -p tcp -m comment --comment \"proxy-init/redirect-all-incoming-to-proxy-port\" -j REDIRECT --to-ports 4143",
        ]
    );
    let again = net.proxy_init(mode, &[]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(net.saved_rules(mode), first);

    // Ignored subnets (as the source of inbound traffic) pass untouched.
    let subnet = format!("{}/32", net.client_ip());
    let with_subnet = net.proxy_init(mode, &["--subnets-to-ignore", &subnet]);
    assert!(with_subnet.status.success(), "{}", String::from_utf8_lossy(&with_subnet.stderr));
    connect(&client, SocketAddr::from((net.pod_ip(), 8080)));
    assert!(accepted(&app).is_some(), "traffic from an ignored subnet reaches the app directly");
    assert_eq!(accepted(&inbound_proxy), None);

    // Cleanup removes every chain and jump.
    let cleaned = net.run(&["--cleanup", "--iptables-mode", mode, "--ipv6=false", "-p", "4143", "-o", "4140"], None);
    assert!(cleaned.status.success(), "{}", String::from_utf8_lossy(&cleaned.stderr));
    assert!(net.saved_rules(mode).is_empty(), "{:?}", net.saved_rules(mode));
}

#[test]
fn nft_mode_redirects_real_traffic() {
    redirects_real_traffic("nft");
}

#[test]
fn legacy_mode_redirects_real_traffic() {
    redirects_real_traffic("legacy");
}

#[test]
fn the_network_validator_proves_the_redirect() {
    if !prerequisites() {
        return;
    }
    let net = Net::new();
    let validate = |net: &Net| {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &net.pod, env!("CARGO_BIN_EXE_proxy-injector"), "network-validator"]);
        command.args([
            "--connect-addr",
            &format!("{}:20001", net.client_ip()),
            "--listen-addr",
            "0.0.0.0:4140",
            "--timeout",
            "2s",
        ]);
        command.status().unwrap().code()
    };
    assert_eq!(validate(&net), Some(95), "without the redirect the validator fails with 95");
    let output = net.proxy_init("nft", &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(validate(&net), Some(0));
}

#[test]
fn invalid_arguments_change_nothing() {
    if !prerequisites() {
        return;
    }
    let net = Net::new();
    let output = net.proxy_init("nft", &["--outbound-ports-to-ignore", "http"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value \"http\" for --outbound-ports-to-ignore"), "{stderr}");
    assert!(net.saved_rules("nft").is_empty());
}

#[test]
fn ipv6_is_programmed_and_redirected_too() {
    if !prerequisites() {
        return;
    }
    let net = Net::new();
    let args = ["--iptables-mode", "nft", "--ipv6", "-p", "4143", "-o", "4140", "-u", "2102"];
    let output = net.run(&[&args[..], &["--subnets-to-ignore", "10.9.0.0/16,fd99::/16"]].concat(), None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let v6_rules = sh(&["ip", "netns", "exec", &net.pod, "ip6tables-nft-save", "-t", "nat"]);
    assert!(v6_rules.contains("-s fd99::/16") && !v6_rules.contains("10.9.0.0/16"), "{v6_rules}");
    let pod_v6: SocketAddr = format!("[fd77:{}::2]:8080", net.subnet).parse().unwrap();
    let inbound_proxy = in_ns(&net.pod, || {
        let listener = TcpListener::bind("[::]:4143").unwrap();
        listener.set_nonblocking(true).unwrap();
        listener
    });
    connect(&net.client, pod_v6);
    let original = (0..100).find_map(|_| match inbound_proxy.accept() {
        Ok((stream, _)) => Some(getsockopt(&stream, sockopt::Ip6tOriginalDst).unwrap()),
        Err(_) => {
            std::thread::sleep(Duration::from_millis(10));
            None
        }
    });
    let original = original.expect("the IPv6 connection reached the inbound proxy port");
    assert_eq!(u16::from_be(original.sin6_port), 8080);
    assert_eq!(
        std::net::Ipv6Addr::from(original.sin6_addr.s6_addr),
        pod_v6.ip().to_string().parse::<std::net::Ipv6Addr>().unwrap()
    );
}

#[test]
fn close_wait_timeout_is_set_in_the_pod_namespace() {
    if !prerequisites() {
        return;
    }
    let net = Net::new();
    let output = net.proxy_init("legacy", &["--timeout-close-wait-secs", "77"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let value =
        sh(&["ip", "netns", "exec", &net.pod, "cat", "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait"]);
    assert_eq!(value.trim(), "77");
    let host =
        std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_close_wait").unwrap_or_default();
    assert_ne!(host.trim(), "77", "the host's own setting is not touched");
}

#[test]
fn a_missing_mode_falls_back_to_the_binaries_that_exist() {
    if !prerequisites() {
        return;
    }
    let net = Net::new();
    let bin = tempfile::tempdir().unwrap();
    for tool in ["iptables-legacy-restore", "iptables-legacy-save", "nsenter"] {
        let target = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists())
            .unwrap();
        std::os::unix::fs::symlink(target, bin.path().join(tool)).unwrap();
    }
    let output = net.run(&["--iptables-mode", "nft", "--ipv6=false", "-p", "4143", "-o", "4140"], Some(bin.path()));
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!net.saved_rules("legacy").is_empty(), "programmed with the legacy binaries");
    assert!(net.saved_rules("nft").is_empty());

    let empty = tempfile::tempdir().unwrap();
    let output = net.run(&["--ipv6=false", "-p", "4143", "-o", "4140"], Some(empty.path()));
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("none of the iptables binaries"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
