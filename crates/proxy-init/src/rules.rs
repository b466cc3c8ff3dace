//! The rules, as `iptables-restore` input for the `nat` table of one family (§8.2): the same
//! chains, rules and `proxy-init/...` comments as linkerd2-proxy-init, so tooling that reads them
//! keeps working, but applied in one transaction per table and family.

use std::fmt::Write;

use inject::annotation::PortRange;

use crate::config::{Config, Family};

pub const REDIRECT_CHAIN: &str = "PROXY_INIT_REDIRECT";
pub const OUTPUT_CHAIN: &str = "PROXY_INIT_OUTPUT";
const PREROUTING_JUMP: &str =
    "-A PREROUTING -j PROXY_INIT_REDIRECT -m comment --comment proxy-init/install-proxy-init-prerouting";
const OUTPUT_JUMP: &str = "-A OUTPUT -j PROXY_INIT_OUTPUT -m comment --comment proxy-init/install-proxy-init-output";

/// What the table holds already, read from `iptables-save -t nat`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    pub redirect_chain: bool,
    pub output_chain: bool,
    pub prerouting_jump: bool,
    pub output_jump: bool,
}

impl Existing {
    pub fn read(save_output: &str) -> Existing {
        let mut existing = Existing::default();
        for line in save_output.lines() {
            existing.redirect_chain |= line.starts_with(&format!(":{REDIRECT_CHAIN} "));
            existing.output_chain |= line.starts_with(&format!(":{OUTPUT_CHAIN} "));
            existing.prerouting_jump |=
                line.starts_with("-A PREROUTING ") && line.contains(&format!("-j {REDIRECT_CHAIN}"));
            existing.output_jump |= line.starts_with("-A OUTPUT ") && line.contains(&format!("-j {OUTPUT_CHAIN}"));
        }
        existing
    }
}

/// Multiport takes at most 15 port slots per rule; a range takes two.
pub fn multiport_groups(ports: &[PortRange]) -> Vec<String> {
    let mut groups = Vec::new();
    let (mut current, mut slots) = (Vec::new(), 0);
    for range in ports {
        let cost = if range.low == range.high { 1 } else { 2 };
        if slots + cost > 15 {
            groups.push(current.join(","));
            (current, slots) = (Vec::new(), 0);
        }
        current.push(if range.low == range.high {
            range.low.to_string()
        } else {
            format!("{}:{}", range.low, range.high)
        });
        slots += cost;
    }
    if !current.is_empty() {
        groups.push(current.join(","));
    }
    groups
}

/// The restore input that (re)programs both chains: declaring a chain creates or flushes it, so a
/// second run replaces the rules instead of adding to them; jumps are added only if missing.
pub fn program(config: &Config, family: Family, existing: Existing) -> String {
    let mut out = String::from("*nat\n");
    let _ = writeln!(out, ":{REDIRECT_CHAIN} - [0:0]");
    let _ = writeln!(out, ":{OUTPUT_CHAIN} - [0:0]");
    for group in multiport_groups(&config.inbound_ports_to_ignore) {
        let _ = writeln!(
            out,
            "-A {REDIRECT_CHAIN} -p tcp --match multiport --dports {group} -j RETURN -m comment --comment proxy-init/ignore-port-{group}"
        );
    }
    for subnet in config.subnets_to_ignore.iter().filter(|s| s.family() == family) {
        let _ = writeln!(
            out,
            "-A {REDIRECT_CHAIN} -p all -j RETURN -s {subnet} -m comment --comment proxy-init/ignore-subnet-{subnet}"
        );
    }
    let incoming = config.incoming_proxy_port;
    if config.ports_to_redirect.is_empty() {
        let _ = writeln!(
            out,
            "-A {REDIRECT_CHAIN} -p tcp -j REDIRECT --to-port {incoming} -m comment --comment proxy-init/redirect-all-incoming-to-proxy-port"
        );
    } else {
        for port in &config.ports_to_redirect {
            let _ = writeln!(
                out,
                "-A {REDIRECT_CHAIN} -p tcp --destination-port {port} -j REDIRECT --to-port {incoming} -m comment --comment proxy-init/redirect-port-{port}-to-proxy-port"
            );
        }
    }
    if !existing.prerouting_jump {
        let _ = writeln!(out, "{PREROUTING_JUMP}");
    }
    if let Some(uid) = config.proxy_uid.filter(|u| *u > 0) {
        let _ = writeln!(
            out,
            "-A {OUTPUT_CHAIN} -m owner --uid-owner {uid} -j RETURN -m comment --comment proxy-init/ignore-proxy-user-id"
        );
    }
    if let Some(gid) = config.proxy_gid.filter(|g| *g > 0) {
        let _ = writeln!(
            out,
            "-A {OUTPUT_CHAIN} -m owner --gid-owner {gid} -j RETURN -m comment --comment proxy-init/ignore-proxy-group-id"
        );
    }
    let _ = writeln!(out, "-A {OUTPUT_CHAIN} -o lo -j RETURN -m comment --comment proxy-init/ignore-loopback");
    for group in multiport_groups(&config.outbound_ports_to_ignore) {
        let _ = writeln!(
            out,
            "-A {OUTPUT_CHAIN} -p tcp --match multiport --dports {group} -j RETURN -m comment --comment proxy-init/ignore-port-{group}"
        );
    }
    let _ = writeln!(
        out,
        "-A {OUTPUT_CHAIN} -p tcp -j REDIRECT --to-port {} -m comment --comment proxy-init/redirect-all-outgoing-to-proxy-port",
        config.outgoing_proxy_port
    );
    if !existing.output_jump {
        let _ = writeln!(out, "{OUTPUT_JUMP}");
    }
    out.push_str("COMMIT\n");
    out
}

/// The restore input that removes everything [`program`] adds; `None` when nothing is there.
pub fn cleanup(existing: Existing) -> Option<String> {
    if existing == Existing::default() {
        return None;
    }
    let mut out = String::from("*nat\n");
    if existing.prerouting_jump {
        let _ = writeln!(out, "{}", PREROUTING_JUMP.replacen("-A", "-D", 1));
    }
    if existing.output_jump {
        let _ = writeln!(out, "{}", OUTPUT_JUMP.replacen("-A", "-D", 1));
    }
    for (present, chain) in [(existing.output_chain, OUTPUT_CHAIN), (existing.redirect_chain, REDIRECT_CHAIN)] {
        if present {
            let _ = writeln!(out, "-F {chain}\n-X {chain}");
        }
    }
    out.push_str("COMMIT\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Flags;

    fn default_injected() -> Config {
        Flags {
            incoming_proxy_port: Some(4143),
            outgoing_proxy_port: Some(4140),
            proxy_uid: 2102,
            proxy_gid: -1,
            inbound_ports_to_ignore: vec!["4190,4191,4567,4568".into()],
            outbound_ports_to_ignore: vec!["4567,4568".into()],
            iptables_mode: Some("nft".into()),
            ..Flags::default()
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn default_injected_program() {
        assert_eq!(
            program(&default_injected(), Family::V4, Existing::default()),
            "*nat\n\
             :PROXY_INIT_REDIRECT - [0:0]\n\
             :PROXY_INIT_OUTPUT - [0:0]\n\
             -A PROXY_INIT_REDIRECT -p tcp --match multiport --dports 4190,4191,4567,4568 -j RETURN -m comment --comment proxy-init/ignore-port-4190,4191,4567,4568\n\
             -A PROXY_INIT_REDIRECT -p tcp -j REDIRECT --to-port 4143 -m comment --comment proxy-init/redirect-all-incoming-to-proxy-port\n\
             -A PREROUTING -j PROXY_INIT_REDIRECT -m comment --comment proxy-init/install-proxy-init-prerouting\n\
             -A PROXY_INIT_OUTPUT -m owner --uid-owner 2102 -j RETURN -m comment --comment proxy-init/ignore-proxy-user-id\n\
             -A PROXY_INIT_OUTPUT -o lo -j RETURN -m comment --comment proxy-init/ignore-loopback\n\
             -A PROXY_INIT_OUTPUT -p tcp --match multiport --dports 4567,4568 -j RETURN -m comment --comment proxy-init/ignore-port-4567,4568\n\
             -A PROXY_INIT_OUTPUT -p tcp -j REDIRECT --to-port 4140 -m comment --comment proxy-init/redirect-all-outgoing-to-proxy-port\n\
             -A OUTPUT -j PROXY_INIT_OUTPUT -m comment --comment proxy-init/install-proxy-init-output\n\
             COMMIT\n"
        );
    }

    #[test]
    fn reruns_do_not_add_jumps_again() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:PROXY_INIT_REDIRECT - [0:0]\n\
            -A PREROUTING -m comment --comment \"proxy-init/install-proxy-init-prerouting\" -j PROXY_INIT_REDIRECT\n\
            -A OUTPUT -m comment --comment \"proxy-init/install-proxy-init-output\" -j PROXY_INIT_OUTPUT\nCOMMIT\n";
        let existing = Existing::read(save);
        assert!(existing.prerouting_jump && existing.output_jump && existing.redirect_chain && !existing.output_chain);
        let text = program(&default_injected(), Family::V4, existing);
        assert!(!text.contains("-A PREROUTING") && !text.contains("-A OUTPUT "));
    }

    #[test]
    fn multiport_groups_hold_fifteen_slots() {
        let ranges: Vec<PortRange> = (1..=20).map(|p| PortRange { low: p, high: p }).collect();
        assert_eq!(multiport_groups(&ranges), ["1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", "16,17,18,19,20"]);
        let mixed = [PortRange { low: 1, high: 1 }, PortRange { low: 10, high: 20 }];
        assert_eq!(multiport_groups(&mixed), ["1,10:20"]);
        let many_ranges: Vec<PortRange> = (0..8).map(|i| PortRange { low: i * 10, high: i * 10 + 5 }).collect();
        assert_eq!(multiport_groups(&many_ranges).len(), 2, "seven ranges fill 14 slots; the eighth starts a group");
    }

    #[test]
    fn subnets_follow_their_family_and_listed_ports_redirect_one_by_one() {
        let mut config = default_injected();
        config.subnets_to_ignore =
            vec![crate::config::Cidr::parse("10.1.0.0/16").unwrap(), crate::config::Cidr::parse("fd00::/8").unwrap()];
        config.ports_to_redirect = vec![80, 443];
        let v4 = program(&config, Family::V4, Existing::default());
        assert!(v4.contains("-s 10.1.0.0/16") && !v4.contains("fd00::/8"));
        assert!(v4.contains("--destination-port 443 -j REDIRECT --to-port 4143 -m comment --comment proxy-init/redirect-port-443-to-proxy-port"));
        assert!(!v4.contains("redirect-all-incoming"));
        assert!(program(&config, Family::V6, Existing::default()).contains("-s fd00::/8"));
    }

    #[test]
    fn cleanup_removes_only_what_exists() {
        assert_eq!(cleanup(Existing::default()), None);
        let text =
            cleanup(Existing { redirect_chain: true, output_chain: true, prerouting_jump: true, output_jump: false })
                .unwrap();
        assert_eq!(
            text,
            "*nat\n-D PREROUTING -j PROXY_INIT_REDIRECT -m comment --comment proxy-init/install-proxy-init-prerouting\n\
             -F PROXY_INIT_OUTPUT\n-X PROXY_INIT_OUTPUT\n-F PROXY_INIT_REDIRECT\n-X PROXY_INIT_REDIRECT\nCOMMIT\n"
        );
    }
}
