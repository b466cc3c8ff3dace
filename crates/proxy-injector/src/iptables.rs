//! `proxy-init` and `network-validator`, with the flags of linkerd2-proxy-init and
//! linkerd2-network-validator so the arguments injection renders work verbatim.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args};

use crate::logging::LogArgs;

#[derive(Debug, Args)]
pub struct ProxyInitArgs {
    /// Port the proxy listens on for inbound traffic
    #[arg(short = 'p', long, allow_hyphen_values = true)]
    incoming_proxy_port: Option<i64>,
    /// Port the proxy listens on for outbound traffic
    #[arg(short = 'o', long, allow_hyphen_values = true)]
    outgoing_proxy_port: Option<i64>,
    /// User id of the proxy, whose traffic is not redirected (-1: none)
    #[arg(short = 'u', long, default_value_t = -1, allow_hyphen_values = true)]
    proxy_uid: i64,
    /// Group id of the proxy, whose traffic is not redirected (-1: none)
    #[arg(short = 'g', long, default_value_t = -1, allow_hyphen_values = true)]
    proxy_gid: i64,
    /// Inbound ports to redirect (default: all)
    #[arg(short = 'r', long)]
    ports_to_redirect: Vec<String>,
    /// Inbound ports and ranges that bypass the proxy
    #[arg(long)]
    inbound_ports_to_ignore: Vec<String>,
    /// Outbound ports and ranges that bypass the proxy
    #[arg(long)]
    outbound_ports_to_ignore: Vec<String>,
    /// Source subnets (CIDR) whose inbound traffic bypasses the proxy
    #[arg(long)]
    subnets_to_ignore: Vec<String>,
    /// Print the rules instead of applying them
    #[arg(long)]
    simulate: bool,
    /// Network namespace to program (a path such as /var/run/netns/NAME)
    #[arg(long)]
    netns: Option<PathBuf>,
    /// Wait for the xtables lock instead of failing
    #[arg(short = 'w', long)]
    use_wait_flag: bool,
    /// Conntrack close-wait timeout to set, in seconds (0: leave it)
    #[arg(long, default_value_t = 0)]
    timeout_close_wait_secs: u64,
    /// iptables implementation: nft, legacy or plain
    #[arg(long)]
    iptables_mode: Option<String>,
    /// Also program IPv6 (ip6tables)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "true", default_missing_value = "true")]
    ipv6: bool,
    /// iptables binary; its name implies the mode when --iptables-mode is not given
    #[arg(long)]
    firewall_bin_path: Option<String>,
    /// Accepted for compatibility: the save binary always follows the mode
    #[arg(long)]
    firewall_save_bin_path: Option<String>,
    /// Remove the chains and jumps instead of installing them
    #[arg(long)]
    cleanup: bool,
    #[command(flatten)]
    log: LogArgs,
}

pub fn proxy_init(args: &ProxyInitArgs) -> anyhow::Result<()> {
    args.log.init()?;
    if let Some(save) = &args.firewall_save_bin_path {
        tracing::debug!(%save, "--firewall-save-bin-path is ignored; the save binary follows the mode");
    }
    let config = proxy_init::config::Flags {
        incoming_proxy_port: args.incoming_proxy_port,
        outgoing_proxy_port: args.outgoing_proxy_port,
        proxy_uid: args.proxy_uid,
        proxy_gid: args.proxy_gid,
        ports_to_redirect: args.ports_to_redirect.clone(),
        inbound_ports_to_ignore: args.inbound_ports_to_ignore.clone(),
        outbound_ports_to_ignore: args.outbound_ports_to_ignore.clone(),
        subnets_to_ignore: args.subnets_to_ignore.clone(),
        iptables_mode: args.iptables_mode.clone(),
        firewall_bin_path: args.firewall_bin_path.clone(),
        ipv6: args.ipv6,
        simulate: args.simulate,
        netns: args.netns.clone(),
        use_wait_flag: args.use_wait_flag,
        timeout_close_wait_secs: args.timeout_close_wait_secs,
    }
    .validate()?;
    let applied = if args.cleanup { proxy_init::apply::cleanup(&config)? } else { proxy_init::apply::apply(&config)? };
    for family in applied {
        if config.simulate {
            print!("{}", family.restore_input);
        } else {
            tracing::info!(family = ?family.family, mode = family.mode.as_str(), rules = %family.after, "iptables programmed");
        }
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ValidatorArgs {
    /// Address to connect to; the redirect must bring the connection back to --listen-addr
    #[arg(long, default_value = "1.1.1.1:20001")]
    connect_addr: SocketAddr,
    /// Where the outbound redirect delivers connections (the proxy's outbound port)
    #[arg(long, default_value = "0.0.0.0:4140")]
    listen_addr: SocketAddr,
    /// How long to wait for the round trip
    #[arg(long, default_value = "10s", value_parser = crate::serve::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    log: LogArgs,
}

/// Exits 95 on any failure, including SIGINT or SIGTERM, so a repair controller can recognise
/// a pod whose traffic would bypass the proxy.
pub fn network_validator(args: &ValidatorArgs) -> ! {
    let code = proxy_init::validator::FAILURE_EXIT_CODE;
    if let Err(error) = args.log.init() {
        eprintln!("Error: {error:#}");
        std::process::exit(code);
    }
    let _ = ctrlc::set_handler(move || std::process::exit(code));
    let validator = proxy_init::validator::Validator {
        connect_addr: args.connect_addr,
        listen_addr: args.listen_addr,
        timeout: args.timeout,
    };
    match validator.run() {
        Ok(()) => {
            tracing::info!(connect = %args.connect_addr, listen = %args.listen_addr, "traffic is redirected to the proxy");
            std::process::exit(0)
        }
        Err(error) => {
            tracing::error!(%error, "network validation failed");
            std::process::exit(code)
        }
    }
}
