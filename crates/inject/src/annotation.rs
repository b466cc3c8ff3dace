//! Annotation keys, and parsers for the value formats annotations use. Every parser returns the
//! typed value or `None`; the caller turns `None` into a [`Warning`] naming the accepted form.

use std::fmt;
use std::net::IpAddr;

pub const INJECT: &str = "linkerd.io/inject";
pub const CREATED_BY: &str = "linkerd.io/created-by";
pub const PROXY_VERSION_STATUS: &str = "linkerd.io/proxy-version";
pub const TRUST_ROOT_SHA256: &str = "linkerd.io/trust-root-sha256";

pub const PROXY_IMAGE: &str = "config.linkerd.io/proxy-image";
pub const PROXY_VERSION: &str = "config.linkerd.io/proxy-version";
pub const IMAGE_PULL_POLICY: &str = "config.linkerd.io/image-pull-policy";
pub const DEBUG_IMAGE: &str = "config.linkerd.io/debug-image";
pub const DEBUG_IMAGE_VERSION: &str = "config.linkerd.io/debug-image-version";
pub const DEBUG_IMAGE_PULL_POLICY: &str = "config.linkerd.io/debug-image-pull-policy";
pub const ENABLE_DEBUG_SIDECAR: &str = "config.linkerd.io/enable-debug-sidecar";
pub const CONTROL_PORT: &str = "config.linkerd.io/control-port";
pub const ADMIN_PORT: &str = "config.linkerd.io/admin-port";
pub const INBOUND_PORT: &str = "config.linkerd.io/inbound-port";
pub const OUTBOUND_PORT: &str = "config.linkerd.io/outbound-port";
pub const POD_INBOUND_PORTS: &str = "config.linkerd.io/pod-inbound-ports";
pub const SKIP_INBOUND_PORTS: &str = "config.linkerd.io/skip-inbound-ports";
pub const SKIP_OUTBOUND_PORTS: &str = "config.linkerd.io/skip-outbound-ports";
pub const SKIP_SUBNETS: &str = "config.linkerd.io/skip-subnets";
pub const OPAQUE_PORTS: &str = "config.linkerd.io/opaque-ports";
pub const PROXY_CPU_REQUEST: &str = "config.linkerd.io/proxy-cpu-request";
pub const PROXY_CPU_LIMIT: &str = "config.linkerd.io/proxy-cpu-limit";
pub const PROXY_CPU_RATIO_LIMIT: &str = "config.linkerd.io/proxy-cpu-ratio-limit";
pub const PROXY_MEMORY_REQUEST: &str = "config.linkerd.io/proxy-memory-request";
pub const PROXY_MEMORY_LIMIT: &str = "config.linkerd.io/proxy-memory-limit";
pub const PROXY_EPHEMERAL_STORAGE_REQUEST: &str = "config.linkerd.io/proxy-ephemeral-storage-request";
pub const PROXY_EPHEMERAL_STORAGE_LIMIT: &str = "config.linkerd.io/proxy-ephemeral-storage-limit";
pub const PROXY_UID: &str = "config.linkerd.io/proxy-uid";
pub const PROXY_GID: &str = "config.linkerd.io/proxy-gid";
pub const PROXY_LOG_LEVEL: &str = "config.linkerd.io/proxy-log-level";
pub const PROXY_LOG_FORMAT: &str = "config.linkerd.io/proxy-log-format";
pub const PROXY_LOG_HTTP_HEADERS: &str = "config.linkerd.io/proxy-log-http-headers";
pub const PROXY_ADMIN_SHUTDOWN: &str = "config.linkerd.io/proxy-admin-shutdown";
pub const ENABLE_EXTERNAL_PROFILES: &str = "config.linkerd.io/enable-external-profiles";
pub const REQUIRE_IDENTITY_INBOUND_PORTS: &str = "config.linkerd.io/proxy-require-identity-inbound-ports";
pub const METRICS_HOSTNAME_LABELS: &str = "config.linkerd.io/proxy-metrics-hostname-labels";
pub const OUTBOUND_CONNECT_TIMEOUT: &str = "config.linkerd.io/proxy-outbound-connect-timeout";
pub const INBOUND_CONNECT_TIMEOUT: &str = "config.linkerd.io/proxy-inbound-connect-timeout";
pub const OUTBOUND_DISCOVERY_IDLE_TIMEOUT: &str = "config.linkerd.io/proxy-outbound-discovery-cache-unused-timeout";
pub const INBOUND_DISCOVERY_IDLE_TIMEOUT: &str = "config.linkerd.io/proxy-inbound-discovery-cache-unused-timeout";
pub const DISABLE_OUTBOUND_DETECT_TIMEOUT: &str = "config.linkerd.io/proxy-disable-outbound-protocol-detect-timeout";
pub const DISABLE_INBOUND_DETECT_TIMEOUT: &str = "config.linkerd.io/proxy-disable-inbound-protocol-detect-timeout";
pub const SHUTDOWN_GRACE_PERIOD: &str = "config.linkerd.io/shutdown-grace-period";
pub const DEFAULT_INBOUND_POLICY: &str = "config.linkerd.io/default-inbound-policy";
pub const ACCESS_LOG: &str = "config.linkerd.io/access-log";
pub const PROXY_AWAIT: &str = "config.linkerd.io/proxy-await";
pub const ENABLE_GATEWAY: &str = "config.linkerd.io/enable-gateway";
pub const CLOSE_WAIT_TIMEOUT: &str = "config.linkerd.io/close-wait-timeout";
pub const NATIVE_SIDECAR: &str = "config.linkerd.io/proxy-enable-native-sidecar";
pub const NATIVE_SIDECAR_BETA: &str = "config.beta.linkerd.io/proxy-enable-native-sidecar";
pub const NATIVE_SIDECAR_ALPHA: &str = "config.alpha.linkerd.io/proxy-enable-native-sidecar";
pub const WAIT_BEFORE_EXIT_SECONDS: &str = "config.alpha.linkerd.io/proxy-wait-before-exit-seconds";
pub const ADDITIONAL_ENV: &str = "config.linkerd.io/proxy-additional-env";
pub const OPENTELEMETRY_PREFIX: &str = "resource.opentelemetry.io/";

/// Keys the webhook copies from the namespace onto pods that do not set them (§3.5), in the
/// reference's order; `linkerd.io/inject` is handled by the decision.
pub const INHERITED: &[&str] = &[
    PROXY_IMAGE,
    PROXY_VERSION,
    IMAGE_PULL_POLICY,
    ENABLE_DEBUG_SIDECAR,
    CONTROL_PORT,
    ADMIN_PORT,
    INBOUND_PORT,
    OUTBOUND_PORT,
    POD_INBOUND_PORTS,
    SKIP_INBOUND_PORTS,
    SKIP_OUTBOUND_PORTS,
    SKIP_SUBNETS,
    OPAQUE_PORTS,
    PROXY_CPU_REQUEST,
    PROXY_CPU_LIMIT,
    PROXY_MEMORY_REQUEST,
    PROXY_MEMORY_LIMIT,
    PROXY_EPHEMERAL_STORAGE_REQUEST,
    PROXY_EPHEMERAL_STORAGE_LIMIT,
    PROXY_UID,
    PROXY_GID,
    PROXY_LOG_LEVEL,
    PROXY_LOG_FORMAT,
    PROXY_LOG_HTTP_HEADERS,
    PROXY_ADMIN_SHUTDOWN,
    ENABLE_EXTERNAL_PROFILES,
    REQUIRE_IDENTITY_INBOUND_PORTS,
    METRICS_HOSTNAME_LABELS,
    OUTBOUND_CONNECT_TIMEOUT,
    INBOUND_CONNECT_TIMEOUT,
    OUTBOUND_DISCOVERY_IDLE_TIMEOUT,
    INBOUND_DISCOVERY_IDLE_TIMEOUT,
    DISABLE_OUTBOUND_DETECT_TIMEOUT,
    DISABLE_INBOUND_DETECT_TIMEOUT,
    SHUTDOWN_GRACE_PERIOD,
    DEFAULT_INBOUND_POLICY,
    ACCESS_LOG,
    PROXY_AWAIT,
    NATIVE_SIDECAR,
    ADDITIONAL_ENV,
    WAIT_BEFORE_EXIT_SECONDS,
    NATIVE_SIDECAR_ALPHA,
];

/// The per-annotation labels of the reference's admission metrics (§3.7), in its order.
pub const METRIC_LABELLED: &[&str] = &[
    ADMIN_PORT,
    CONTROL_PORT,
    ENABLE_DEBUG_SIDECAR,
    ENABLE_EXTERNAL_PROFILES,
    IMAGE_PULL_POLICY,
    INBOUND_PORT,
    OUTBOUND_PORT,
    POD_INBOUND_PORTS,
    PROXY_CPU_LIMIT,
    PROXY_CPU_REQUEST,
    PROXY_IMAGE,
    PROXY_ADMIN_SHUTDOWN,
    PROXY_LOG_FORMAT,
    PROXY_LOG_LEVEL,
    PROXY_LOG_HTTP_HEADERS,
    PROXY_MEMORY_LIMIT,
    PROXY_MEMORY_REQUEST,
    PROXY_EPHEMERAL_STORAGE_LIMIT,
    PROXY_EPHEMERAL_STORAGE_REQUEST,
    PROXY_UID,
    PROXY_GID,
    PROXY_VERSION,
    REQUIRE_IDENTITY_INBOUND_PORTS,
    SKIP_INBOUND_PORTS,
    OPAQUE_PORTS,
    SKIP_OUTBOUND_PORTS,
    METRICS_HOSTNAME_LABELS,
    OUTBOUND_CONNECT_TIMEOUT,
    INBOUND_CONNECT_TIMEOUT,
    PROXY_AWAIT,
    DEFAULT_INBOUND_POLICY,
    SKIP_SUBNETS,
    ACCESS_LOG,
    SHUTDOWN_GRACE_PERIOD,
    OUTBOUND_DISCOVERY_IDLE_TIMEOUT,
    INBOUND_DISCOVERY_IDLE_TIMEOUT,
    DISABLE_OUTBOUND_DETECT_TIMEOUT,
    DISABLE_INBOUND_DETECT_TIMEOUT,
    NATIVE_SIDECAR,
    ADDITIONAL_ENV,
];

/// A problem with one annotation (or flag) the person who applied it should hear about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub key: String,
    pub value: String,
    pub message: String,
}

impl Warning {
    /// The value could not be parsed; `expected` is the accepted form, `kept` what is used instead.
    pub fn invalid(key: &str, value: &str, expected: &str, kept: impl fmt::Display) -> Self {
        Warning {
            key: key.into(),
            value: value.into(),
            message: format!("invalid value {value:?}: expected {expected}; using {kept} instead"),
        }
    }

    pub fn ignored(key: &str, value: &str, why: impl Into<String>) -> Self {
        Warning { key: key.into(), value: value.into(), message: why.into() }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "annotation {}: {}", self.key, self.message)
    }
}

pub const BOOL_FORM: &str = "true or false (also 1, t, T, TRUE, True, 0, f, F, FALSE, False)";

/// Go's `strconv.ParseBool`, which the reference uses for every boolean annotation.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub const PORT_FORM: &str = "a port number from 1 to 65535";

pub fn parse_port(value: &str) -> Option<u16> {
    match value.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(port) => Some(port),
    }
}

/// A Go `time.Duration` string (`300ms`, `1m30s`, `0`), as nanoseconds.
pub fn parse_go_duration(value: &str) -> Option<i128> {
    let (negative, mut rest) = match value.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, value.strip_prefix('+').unwrap_or(value)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let number_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
        let mut part = whole.checked_mul(unit_nanos)?;
        let mut scale = unit_nanos;
        for digit in fraction.bytes().take(30) {
            scale /= 10;
            part += i128::from(digit - b'0') * scale;
        }
        total = total.checked_add(part)?;
        if total > i128::from(i64::MAX) {
            return None;
        }
        rest = after;
    }
    Some(if negative { -total } else { total })
}

pub const DURATION_FORM: &str = "a duration such as 500ms, 10s or 1m30s";

/// A Kubernetes resource quantity (`100m`, `1.5`, `64Mi`, `1e3`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantity {
    /// Decimal digits of the number without its point, and the power of ten to apply.
    mantissa: u128,
    exponent: i32,
    /// A binary suffix multiplies by a power of 1024.
    binary_factor: u128,
}

pub const QUANTITY_FORM: &str = "a Kubernetes quantity such as 100m, 0.5, 64Mi or 1Gi";

impl Quantity {
    pub fn parse(value: &str) -> Option<Quantity> {
        let body = value.strip_prefix('+').unwrap_or(value);
        if body.starts_with('-') {
            return None;
        }
        let digits_end = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
        let (number, suffix) = body.split_at(digits_end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') || number.len() > 30 {
            return None;
        }
        let mantissa: u128 = format!("{whole}{fraction}").parse().ok()?;
        let mut exponent = -i32::try_from(fraction.len()).ok()?;
        let mut binary_factor = 1u128;
        match suffix {
            "" => {}
            "n" => exponent -= 9,
            "u" => exponent -= 6,
            "m" => exponent -= 3,
            "k" => exponent += 3,
            "M" => exponent += 6,
            "G" => exponent += 9,
            "T" => exponent += 12,
            "P" => exponent += 15,
            "E" => exponent += 18,
            "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
                let power = "KMGTPE".find(&suffix[..1]).map(|i| i as u32 + 1)?;
                binary_factor = 1024u128.pow(power);
            }
            scientific if scientific.starts_with(['e', 'E']) => {
                let power: i32 = scientific[1..].parse().ok()?;
                if power.abs() > 30 {
                    return None;
                }
                exponent += power;
            }
            _ => return None,
        }
        Some(Quantity { mantissa, exponent, binary_factor })
    }

    /// The quantity in base units, for comparisons (bounds), where rounding does not matter.
    pub fn approximate(&self) -> f64 {
        self.mantissa as f64 * self.binary_factor as f64 * 10f64.powi(self.exponent)
    }

    /// The quantity rounded up to whole units (CPU cores), as the reference's `ToWholeCPUCores`.
    pub fn ceil_whole(&self) -> Option<i64> {
        let scaled = self.mantissa.checked_mul(self.binary_factor)?;
        let whole = if self.exponent >= 0 {
            scaled.checked_mul(10u128.checked_pow(self.exponent as u32)?)?
        } else {
            let divisor = 10u128.checked_pow(self.exponent.unsigned_abs()).unwrap_or(u128::MAX);
            scaled.div_ceil(divisor)
        };
        i64::try_from(whole).ok()
    }
}

/// One entry of a port list: a single port or an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    /// `N` or `LOW-HIGH`, surrounding spaces allowed.
    pub fn parse(item: &str) -> Option<PortRange> {
        let item = item.trim();
        match item.split_once('-') {
            Some((low, high)) => {
                let (low, high) = (parse_port_or_zero(low.trim())?, parse_port_or_zero(high.trim())?);
                (low <= high).then_some(PortRange { low, high })
            }
            None => parse_port_or_zero(item).map(|port| PortRange { low: port, high: port }),
        }
    }

    pub fn contains(&self, port: u16) -> bool {
        self.low <= port && port <= self.high
    }
}

/// Ranges like `0-1023` are meaningful in ignore lists, so 0 is accepted inside lists.
fn parse_port_or_zero(value: &str) -> Option<u16> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high { write!(f, "{}", self.low) } else { write!(f, "{}-{}", self.low, self.high) }
    }
}

pub const PORT_LIST_FORM: &str = "a comma-separated list of ports and ranges such as 25,443,8000-8080";

/// A comma-separated list of ports and ranges; empty items are allowed (trailing commas).
pub fn parse_port_list(value: &str) -> Option<Vec<PortRange>> {
    value.split(',').filter(|item| !item.trim().is_empty()).map(PortRange::parse).collect()
}

pub const CIDR_LIST_FORM: &str = "a comma-separated list of CIDRs such as 10.0.0.0/8,fd00::/8";

pub fn is_cidr(value: &str) -> bool {
    let Some((address, prefix)) = value.trim().split_once('/') else { return false };
    let Ok(address) = address.parse::<IpAddr>() else { return false };
    let max = if address.is_ipv4() { 32 } else { 128 };
    prefix.bytes().all(|b| b.is_ascii_digit()) && prefix.parse::<u8>().is_ok_and(|p| p <= max)
}

pub fn is_cidr_list(value: &str) -> bool {
    value.split(',').filter(|item| !item.trim().is_empty()).all(is_cidr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_bools() {
        for t in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in ["yes", "on", "", "tRue", " true"] {
            assert_eq!(parse_bool(bad), None, "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("6s5ms"), Some(6_005_000_000));
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("300us"), Some(300_000));
        assert_eq!(parse_go_duration("2h"), Some(7_200_000_000_000));
        assert_eq!(parse_go_duration("-1s"), Some(-1_000_000_000));
        for bad in ["6000", "", "s", "1x", "1.2.3s", ".s", "10 s", "99999999999999h"] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn quantities_round_up_to_whole_cores() {
        let cores = |q: &str| Quantity::parse(q).and_then(|q| q.ceil_whole());
        assert_eq!(cores("1m"), Some(1));
        assert_eq!(cores("1000m"), Some(1));
        assert_eq!(cores("1001m"), Some(2));
        assert_eq!(cores("0.15"), Some(1));
        assert_eq!(cores("1.5"), Some(2));
        assert_eq!(cores("2"), Some(2));
        assert_eq!(cores("0"), Some(0));
        assert_eq!(cores("1e3"), Some(1000));
        assert_eq!(cores("1Ki"), Some(1024));
        for bad in ["", "abc", "1.5.5", "-1", "1Qi", "m", "1e99"] {
            assert!(Quantity::parse(bad).and_then(|q| q.ceil_whole()).is_none(), "{bad}");
        }
    }

    #[test]
    fn port_lists() {
        assert_eq!(
            parse_port_list("25, 8000-8080,"),
            Some(vec![PortRange { low: 25, high: 25 }, PortRange { low: 8000, high: 8080 }])
        );
        assert_eq!(parse_port_list(""), Some(vec![]));
        assert_eq!(parse_port_list("80,http"), None);
        assert_eq!(parse_port_list("90-80"), None);
        assert_eq!(parse_port_list("70000"), None);
        assert_eq!(PortRange::parse("10-20").unwrap().to_string(), "10-20");
    }

    #[test]
    fn cidrs() {
        assert!(is_cidr_list("10.0.0.0/8, fd00::/8"));
        assert!(is_cidr_list(""));
        assert!(!is_cidr_list("10.0.0.0"));
        assert!(!is_cidr_list("10.0.0.0/33"));
        assert!(!is_cidr_list("fd00::/129"));
        assert!(!is_cidr_list("banana/8"));
    }
}
