//! What proxy-init is asked to do, validated before anything is touched (§8.1, §10 row 14).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use inject::annotation::PortRange;

/// Which iptables implementation to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Nft,
    Legacy,
    Plain,
}

impl Mode {
    pub fn parse(value: &str) -> Option<Mode> {
        match value {
            "nft" => Some(Mode::Nft),
            "legacy" => Some(Mode::Legacy),
            "plain" => Some(Mode::Plain),
            _ => None,
        }
    }

    /// The mode a `--firewall-bin-path` implies, as the reference infers it.
    pub fn from_binary(path: &str) -> Option<Mode> {
        match path.rsplit('/').next().unwrap_or(path) {
            "" | "iptables-legacy" => Some(Mode::Legacy),
            "iptables-nft" => Some(Mode::Nft),
            "iptables" => Some(Mode::Plain),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Nft => "nft",
            Mode::Legacy => "legacy",
            Mode::Plain => "plain",
        }
    }
}

/// IPv4 or IPv6: each is programmed by its own binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// (`iptables-restore`-like, `iptables-save`-like) for a mode.
    pub fn binaries(self, mode: Mode) -> (String, String) {
        let base = match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        };
        let infix = match mode {
            Mode::Nft => "-nft",
            Mode::Legacy => "-legacy",
            Mode::Plain => "",
        };
        (format!("{base}{infix}-restore"), format!("{base}{infix}-save"))
    }
}

/// A subnet excluded from redirection (`10.0.0.0/8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(value: &str) -> Option<Cidr> {
        let (address, prefix) = value.trim().split_once('/')?;
        let address: IpAddr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { address, prefix })
    }

    pub fn family(&self) -> Family {
        if self.address.is_ipv4() { Family::V4 } else { Family::V6 }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub incoming_proxy_port: u16,
    pub outgoing_proxy_port: u16,
    pub proxy_uid: Option<u32>,
    pub proxy_gid: Option<u32>,
    /// Empty: redirect every inbound port.
    pub ports_to_redirect: Vec<u16>,
    pub inbound_ports_to_ignore: Vec<PortRange>,
    pub outbound_ports_to_ignore: Vec<PortRange>,
    pub subnets_to_ignore: Vec<Cidr>,
    pub mode: Mode,
    pub ipv6: bool,
    pub simulate: bool,
    pub netns: Option<PathBuf>,
    pub use_wait_flag: bool,
    pub timeout_close_wait_secs: u64,
}

/// A flag whose value cannot be used; nothing has been changed.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid value {value:?} for --{flag}: {expected}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub value: String,
    pub expected: String,
}

fn invalid(flag: &'static str, value: impl Into<String>, expected: impl Into<String>) -> ConfigError {
    ConfigError { flag, value: value.into(), expected: expected.into() }
}

/// The flags as given, before validation.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub incoming_proxy_port: Option<i64>,
    pub outgoing_proxy_port: Option<i64>,
    pub proxy_uid: i64,
    pub proxy_gid: i64,
    pub ports_to_redirect: Vec<String>,
    pub inbound_ports_to_ignore: Vec<String>,
    pub outbound_ports_to_ignore: Vec<String>,
    pub subnets_to_ignore: Vec<String>,
    pub iptables_mode: Option<String>,
    pub firewall_bin_path: Option<String>,
    pub ipv6: bool,
    pub simulate: bool,
    pub netns: Option<PathBuf>,
    pub use_wait_flag: bool,
    pub timeout_close_wait_secs: u64,
}

fn port(flag: &'static str, value: Option<i64>) -> Result<u16, ConfigError> {
    let value = value.ok_or_else(|| invalid(flag, "", "a port number from 1 to 65535 is required"))?;
    u16::try_from(value)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| invalid(flag, value.to_string(), "a port number from 1 to 65535"))
}

fn id(flag: &'static str, value: i64) -> Result<Option<u32>, ConfigError> {
    match value {
        -1 => Ok(None),
        v => u32::try_from(v).map(Some).map_err(|_| invalid(flag, v.to_string(), "a user or group id, or -1 for none")),
    }
}

/// Splits repeated and comma-separated values, dropping empty items.
fn items(values: &[String]) -> impl Iterator<Item = &str> {
    values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|i| !i.is_empty())
}

fn port_ranges(flag: &'static str, values: &[String]) -> Result<Vec<PortRange>, ConfigError> {
    items(values)
        .map(|item| {
            PortRange::parse(item)
                .ok_or_else(|| invalid(flag, item, "ports (0-65535) or ranges like 8000-8100, separated by commas"))
        })
        .collect()
}

impl Flags {
    pub fn validate(&self) -> Result<Config, ConfigError> {
        let mode = match (&self.iptables_mode, &self.firewall_bin_path) {
            (Some(mode), _) => {
                Mode::parse(mode).ok_or_else(|| invalid("iptables-mode", mode.clone(), "legacy, nft or plain"))?
            }
            (None, Some(path)) => Mode::from_binary(path).ok_or_else(|| {
                invalid("firewall-bin-path", path.clone(), "iptables, iptables-legacy or iptables-nft")
            })?,
            (None, None) => Mode::Legacy,
        };
        let ports_to_redirect = items(&self.ports_to_redirect)
            .map(|p| {
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| invalid("ports-to-redirect", p, "port numbers from 1 to 65535"))
            })
            .collect::<Result<_, _>>()?;
        let subnets_to_ignore = items(&self.subnets_to_ignore)
            .map(|s| {
                Cidr::parse(s)
                    .ok_or_else(|| invalid("subnets-to-ignore", s, format!("{s} is not a valid CIDR address")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Config {
            incoming_proxy_port: port("incoming-proxy-port", self.incoming_proxy_port)?,
            outgoing_proxy_port: port("outgoing-proxy-port", self.outgoing_proxy_port)?,
            proxy_uid: id("proxy-uid", self.proxy_uid)?,
            proxy_gid: id("proxy-gid", self.proxy_gid)?,
            ports_to_redirect,
            inbound_ports_to_ignore: port_ranges("inbound-ports-to-ignore", &self.inbound_ports_to_ignore)?,
            outbound_ports_to_ignore: port_ranges("outbound-ports-to-ignore", &self.outbound_ports_to_ignore)?,
            subnets_to_ignore,
            mode,
            ipv6: self.ipv6,
            simulate: self.simulate,
            netns: self.netns.clone(),
            use_wait_flag: self.use_wait_flag,
            timeout_close_wait_secs: self.timeout_close_wait_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags {
            incoming_proxy_port: Some(4143),
            outgoing_proxy_port: Some(4140),
            proxy_uid: 2102,
            proxy_gid: -1,
            inbound_ports_to_ignore: vec!["4190,4191".into(), "4567-4568".into()],
            ..Flags::default()
        }
    }

    #[test]
    fn valid_flags_become_a_config() {
        let config = flags().validate().unwrap();
        assert_eq!(config.proxy_uid, Some(2102));
        assert_eq!(config.proxy_gid, None);
        assert_eq!(config.inbound_ports_to_ignore.len(), 3);
        assert_eq!(config.mode, Mode::Legacy);
        let nft = Flags { firewall_bin_path: Some("iptables-nft".into()), ..flags() }.validate().unwrap();
        assert_eq!(nft.mode, Mode::Nft);
    }

    #[test]
    fn every_bad_value_names_its_flag() {
        let err = |f: Flags| f.validate().unwrap_err();
        assert_eq!(err(Flags { incoming_proxy_port: None, ..flags() }).flag, "incoming-proxy-port");
        assert_eq!(err(Flags { outgoing_proxy_port: Some(70000), ..flags() }).flag, "outgoing-proxy-port");
        assert_eq!(err(Flags { proxy_uid: -5, ..flags() }).flag, "proxy-uid");
        let ports = err(Flags { inbound_ports_to_ignore: vec!["80,http".into()], ..flags() });
        assert_eq!((ports.flag, ports.value.as_str()), ("inbound-ports-to-ignore", "http"));
        assert_eq!(
            err(Flags { outbound_ports_to_ignore: vec!["9-1".into()], ..flags() }).flag,
            "outbound-ports-to-ignore"
        );
        let subnet = err(Flags { subnets_to_ignore: vec!["10.0.0.0/8, 300.1.1.1/8".into()], ..flags() });
        assert_eq!(
            subnet.to_string(),
            "invalid value \"300.1.1.1/8\" for --subnets-to-ignore: 300.1.1.1/8 is not a valid CIDR address"
        );
        assert_eq!(err(Flags { iptables_mode: Some("ebpf".into()), ..flags() }).flag, "iptables-mode");
        assert_eq!(err(Flags { firewall_bin_path: Some("nft".into()), ..flags() }).flag, "firewall-bin-path");
        assert_eq!(err(Flags { ports_to_redirect: vec!["0".into()], ..flags() }).flag, "ports-to-redirect");
    }
}
