//! The SSRF guard: which IP addresses the server may connect to when a tenant chose where
//! (a webhook URL, a notification provider's base URL or SMTP server), and the resolver that
//! enforces it as the clients connect.
//!
//! Guarantees: [`AddressPolicy::check`] accepts only public unicast addresses, plus whatever the
//! operator explicitly allowed. Everything else (loopback, private, link-local and the cloud
//! metadata endpoints, documentation and benchmarking ranges, multicast, reserved space) is
//! refused with a message naming the category. IPv6 forms that carry an IPv4 address
//! (IPv4-mapped, NAT64, 6to4) are judged by that IPv4 address, so `::ffff:10.0.0.1` cannot slip
//! past a rule written for `10.0.0.0/8`.
//!
//! The check is on resolved addresses, which is what the connector must call it with: a host name
//! can resolve to anything, and a second resolution can differ from the first. [`GuardedResolver`]
//! is that resolver: an HTTP client built with it as its `dns_resolver` connects only to
//! addresses that passed, and a client that resolves on its own (lettre) is handed an address
//! that passed instead of the name.
//!
//! A refusal says only that the address is not allowed: naming the address a host resolved to,
//! or its kind, would let a tenant map our internal network through the error messages. The
//! detail goes to the log.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Name, Resolve, Resolving};
use url::{Host, Url};

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

const fn v6(s: [u16; 8], prefix: u8) -> Ipv6Net {
    Ipv6Net::new_assert(
        Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]),
        prefix,
    )
}

/// First match wins, so the narrow entries sit before the ranges that contain them.
const V4_NOT_PUBLIC: &[(Ipv4Net, &str)] = &[
    (
        v4(0, 0, 0, 0, 8),
        "an unspecified (\"this network\") address",
    ),
    (v4(127, 0, 0, 0, 8), "a loopback address"),
    (v4(10, 0, 0, 0, 8), "a private address"),
    (v4(172, 16, 0, 0, 12), "a private address"),
    (v4(192, 168, 0, 0, 16), "a private address"),
    // Named apart: credentials are what an SSRF attempt is usually after.
    (v4(169, 254, 169, 254, 32), "the cloud metadata address"),
    (v4(169, 254, 0, 0, 16), "a link-local address"),
    (
        v4(100, 64, 0, 0, 10),
        "a carrier-grade NAT (shared) address",
    ),
    (v4(192, 0, 0, 0, 24), "an IETF protocol assignment address"),
    (v4(192, 0, 2, 0, 24), "a documentation (TEST-NET-1) address"),
    (
        v4(198, 51, 100, 0, 24),
        "a documentation (TEST-NET-2) address",
    ),
    (
        v4(203, 0, 113, 0, 24),
        "a documentation (TEST-NET-3) address",
    ),
    (v4(198, 18, 0, 0, 15), "a benchmarking address"),
    (v4(224, 0, 0, 0, 4), "a multicast address"),
    (v4(255, 255, 255, 255, 32), "the broadcast address"),
    (v4(240, 0, 0, 0, 4), "a reserved address"),
];

const V6_NOT_PUBLIC: &[(Ipv6Net, &str)] = &[
    (v6([0; 8], 128), "the unspecified address"),
    (v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "the loopback address"),
    (v6([0; 8], 96), "a deprecated IPv4-compatible address"),
    // Local-use NAT64 (RFC 8215) places the IPv4 address at an operator-chosen offset, so it
    // cannot be read back out; the prefix is not routed on the internet anyway.
    (
        v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "a local-use NAT64 address",
    ),
    (
        v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "a discard-only address",
    ),
    // Teredo hides its IPv4 addresses behind a relay and obfuscation; refused outright.
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 32), "a Teredo address"),
    (
        v6([0x2001, 2, 0, 0, 0, 0, 0, 0], 48),
        "a benchmarking address",
    ),
    (
        v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "a documentation address",
    ),
    (
        v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        "a documentation address",
    ),
    (
        v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
        "the cloud metadata address",
    ),
    (
        v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "a unique-local address",
    ),
    (
        v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "a link-local address",
    ),
    (
        v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "a deprecated site-local address",
    ),
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "a multicast address"),
];

/// Everything public in IPv6 is allocated from here; what lies outside is reserved or special.
const V6_GLOBAL_UNICAST: Ipv6Net = v6([0x2000, 0, 0, 0, 0, 0, 0, 0], 3);

/// The addresses the server may reach where a tenant chooses the destination.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// `allowed` networks are reachable even when not public, e.g. an internal receiver.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// `Ok` when the server may connect to `ip`; otherwise says what kind of address it is.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        match ip {
            IpAddr::V4(ip) => self.check_v4(ip),
            IpAddr::V6(ip) => self.check_v6(ip),
        }
    }

    fn is_allowed(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&ip))
    }

    fn check_v4(&self, ip: Ipv4Addr) -> Result<(), String> {
        if self.is_allowed(IpAddr::V4(ip)) {
            return Ok(());
        }
        match V4_NOT_PUBLIC.iter().find(|(net, _)| net.contains(&ip)) {
            Some((_, category)) => Err(format!("{ip} is {category}")),
            None => Ok(()),
        }
    }

    fn check_v6(&self, ip: Ipv6Addr) -> Result<(), String> {
        if self.is_allowed(IpAddr::V6(ip)) {
            return Ok(());
        }
        if let Some((form, embedded)) = embedded_v4(ip) {
            // The packets end up at the IPv4 address, so its verdict, allowances included, is
            // the verdict.
            return self
                .check_v4(embedded)
                .map_err(|reason| format!("{ip} is {form} and {reason}"));
        }
        if let Some((_, category)) = V6_NOT_PUBLIC.iter().find(|(net, _)| net.contains(&ip)) {
            return Err(format!("{ip} is {category}"));
        }
        if !V6_GLOBAL_UNICAST.contains(&ip) {
            return Err(format!(
                "{ip} is a reserved address (outside global unicast 2000::/3)"
            ));
        }
        Ok(())
    }
}

/// What a refusal of an address says, whatever the address.
const NOT_ALLOWED: &str = "the address is not allowed";

/// Why [`GuardedResolver`] handed out no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GuardError {
    /// The name does not resolve, or to nothing: perhaps only for now.
    Unresolved(String),
    /// The host is, or resolves to, an address the policy forbids: the same next time.
    NotAllowed(String),
}

impl fmt::Display for GuardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unresolved(message) | Self::NotAllowed(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for GuardError {}

/// Resolves host names and refuses any whose addresses include one the [`AddressPolicy`]
/// forbids. One is built from the settings and shared by every client that connects where a
/// tenant points it.
#[derive(Debug, Default)]
pub(crate) struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl GuardedResolver {
    pub(crate) fn new(policy: AddressPolicy) -> Self {
        Self {
            policy: Arc::new(policy),
        }
    }

    /// Checks a literal address.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), GuardError> {
        self.policy.check(ip).map_err(|reason| {
            tracing::info!(%reason, "address refused by the guard");
            GuardError::NotAllowed(NOT_ALLOWED.into())
        })
    }

    /// Every address of `host` (a name or a literal address), when all of them pass.
    pub(crate) async fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, GuardError> {
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| GuardError::Unresolved(format!("`{host}` does not resolve: {error}")))?
            .collect();
        if addresses.is_empty() {
            return Err(GuardError::Unresolved(format!("`{host}` has no addresses")));
        }
        for address in &addresses {
            self.policy.check(address.ip()).map_err(|reason| {
                tracing::info!(host, %reason, "address refused by the guard");
                GuardError::NotAllowed(format!(
                    "`{host}` resolves to an address that is not allowed"
                ))
            })?;
        }
        Ok(addresses)
    }

    /// Checks `url`'s host when it is a literal address. A client never resolves a literal,
    /// so its guarded resolver never sees one: this is the check the connection would miss.
    pub(crate) fn check_literal_host(&self, url: &Url) -> Result<(), GuardError> {
        match url.host() {
            Some(Host::Ipv4(ip)) => self.check(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => Ok(()),
            None => Err(GuardError::NotAllowed("the URL has no host".into())),
        }
    }

    /// Checks `url`'s host now: a literal address against the policy, a name by resolving it
    /// and checking every address it has. For refusing a URL when it is saved.
    pub(crate) async fn check_url(&self, url: &Url) -> Result<(), GuardError> {
        match url.host() {
            Some(Host::Domain(domain)) => {
                let port = url.port_or_known_default().unwrap_or(443);
                self.lookup(domain, port).await.map(drop)
            }
            _ => self.check_literal_host(url),
        }
    }
}

/// An HTTP client's resolver: it connects only to what [`GuardedResolver::lookup`] handed out.
impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let resolver = GuardedResolver { policy };
            // The port is replaced by the connector with the URL's own.
            let addresses = resolver
                .lookup(name.as_str(), 0)
                .await
                .map_err(|error| -> Box<dyn std::error::Error + Send + Sync> { Box::new(error) })?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Whether `error`, or any error under it, is the guard refusing an address: a client's
/// connection error carries the resolver's error as its source.
pub(crate) fn refused_by_guard(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if matches!(error.downcast_ref(), Some(GuardError::NotAllowed(_))) {
            return true;
        }
        current = error.source();
    }
    false
}

/// The IPv4 address an IPv6 address stands for, with the name of the form.
fn embedded_v4(ip: Ipv6Addr) -> Option<(&'static str, Ipv4Addr)> {
    let s = ip.segments();
    let from = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match s {
        [0, 0, 0, 0, 0, 0xffff, high, low] => Some(("an IPv4-mapped address", from(high, low))),
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => Some(("a NAT64 address", from(high, low))),
        [0x2002, high, low, ..] => Some(("a 6to4 address", from(high, low))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("a valid address in the test")
    }

    fn refusal(policy: &AddressPolicy, text: &str) -> String {
        match policy.check(ip(text)) {
            Ok(()) => panic!("{text} was accepted"),
            Err(reason) => reason,
        }
    }

    fn assert_refused_as(cases: &[(&str, &str)]) {
        let policy = AddressPolicy::default();
        for (address, category) in cases {
            assert_eq!(
                refusal(&policy, address),
                format!("{address} is {category}"),
                "{address}"
            );
        }
    }

    #[test]
    fn every_ipv4_category_is_refused_by_name() {
        assert_refused_as(&[
            ("0.0.0.0", "an unspecified (\"this network\") address"),
            ("0.1.2.3", "an unspecified (\"this network\") address"),
            ("127.0.0.1", "a loopback address"),
            ("127.255.255.254", "a loopback address"),
            ("10.0.0.5", "a private address"),
            ("172.16.0.1", "a private address"),
            ("172.31.255.255", "a private address"),
            ("192.168.1.1", "a private address"),
            ("169.254.169.254", "the cloud metadata address"),
            ("169.254.0.1", "a link-local address"),
            ("100.64.0.1", "a carrier-grade NAT (shared) address"),
            ("100.127.255.255", "a carrier-grade NAT (shared) address"),
            ("192.0.0.8", "an IETF protocol assignment address"),
            ("192.0.2.1", "a documentation (TEST-NET-1) address"),
            ("198.51.100.7", "a documentation (TEST-NET-2) address"),
            ("203.0.113.9", "a documentation (TEST-NET-3) address"),
            ("198.18.0.1", "a benchmarking address"),
            ("198.19.255.255", "a benchmarking address"),
            ("224.0.0.1", "a multicast address"),
            ("239.255.255.250", "a multicast address"),
            ("240.0.0.1", "a reserved address"),
            ("255.255.255.254", "a reserved address"),
            ("255.255.255.255", "the broadcast address"),
        ]);
    }

    #[test]
    fn every_ipv6_category_is_refused_by_name() {
        assert_refused_as(&[
            ("::", "the unspecified address"),
            ("::1", "the loopback address"),
            ("::a00:1", "a deprecated IPv4-compatible address"),
            ("::808:808", "a deprecated IPv4-compatible address"),
            ("64:ff9b:1::a00:1", "a local-use NAT64 address"),
            ("100::1", "a discard-only address"),
            ("2001::1", "a Teredo address"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a Teredo address"),
            ("2001:2::1", "a benchmarking address"),
            ("2001:db8::1", "a documentation address"),
            ("3fff::1", "a documentation address"),
            ("fd00:ec2::254", "the cloud metadata address"),
            ("fd12:3456::1", "a unique-local address"),
            ("fc00::1", "a unique-local address"),
            ("fe80::1", "a link-local address"),
            ("fec0::1", "a deprecated site-local address"),
            ("ff02::1", "a multicast address"),
            (
                "4000::1",
                "a reserved address (outside global unicast 2000::/3)",
            ),
        ]);
    }

    #[test]
    fn ipv6_forms_carrying_ipv4_are_judged_by_the_ipv4_address() {
        assert_refused_as(&[
            (
                "::ffff:10.0.0.5",
                "an IPv4-mapped address and 10.0.0.5 is a private address",
            ),
            (
                "::ffff:169.254.169.254",
                "an IPv4-mapped address and 169.254.169.254 is the cloud metadata address",
            ),
            (
                "64:ff9b::7f00:1",
                "a NAT64 address and 127.0.0.1 is a loopback address",
            ),
            (
                "2002:c0a8:101::1",
                "a 6to4 address and 192.168.1.1 is a private address",
            ),
        ]);
        let policy = AddressPolicy::default();
        for public in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert_eq!(policy.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn public_addresses_are_accepted() {
        let policy = AddressPolicy::default();
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.215.14",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(policy.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn the_edges_of_refused_ranges_are_public() {
        let policy = AddressPolicy::default();
        for public in [
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.0.3.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "203.0.112.255",
            "223.255.255.255",
            "2001:1::1",
            "2001:db7:ffff::1",
            "2003::1",
        ] {
            assert_eq!(policy.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn allowed_networks_exempt_exactly_what_they_list() {
        let allowed = nets(&["127.0.0.0/8"]);
        let policy = AddressPolicy::new(allowed);
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("64:ff9b::7f00:1")), Ok(()));
        assert_eq!(
            refusal(&policy, "10.0.0.1"),
            "10.0.0.1 is a private address"
        );
        assert_eq!(
            refusal(&policy, "169.254.169.254"),
            "169.254.169.254 is the cloud metadata address"
        );
        assert_eq!(refusal(&policy, "::1"), "::1 is the loopback address");
    }

    #[test]
    fn allowed_bare_addresses_and_ipv6_networks_work() {
        let allowed = nets(&["10.1.2.3/32", "fd00:1::/32"]);
        let policy = AddressPolicy::new(allowed);
        assert_eq!(policy.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(policy.check(ip("fd00:1::9")), Ok(()));
        assert_eq!(
            refusal(&policy, "10.1.2.4"),
            "10.1.2.4 is a private address"
        );
        assert_eq!(
            refusal(&policy, "fd00:ec2::254"),
            "fd00:ec2::254 is the cloud metadata address"
        );
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|net| net.parse().expect("valid network"))
            .collect()
    }
}
