//! Which address a request comes from, when load balancers stand between
//! the client and the gateway.
//!
//! `X-Forwarded-For` is a list anyone can write to: only the entries that
//! trusted proxies appended can be believed. So the client is the peer,
//! unless the peer is a trusted proxy (`trusted_proxies`); then it is the
//! rightmost `X-Forwarded-For` entry that is not itself a trusted proxy.
//! With no trusted proxies (the default), the header is ignored: a client
//! cannot pick the address its rate limit is counted under.

use std::net::IpAddr;

use axum::http::HeaderMap;

/// Trusted proxy addresses and networks (CIDR).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Parses a comma-separated list of addresses and CIDR networks
    /// (`10.0.0.0/8, 192.168.1.7, fd00::/8`); the error names the bad entry.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut networks = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (address, prefix) = match entry.split_once('/') {
                Some((address, prefix)) => (address, Some(prefix)),
                None => (entry, None),
            };
            let address: IpAddr = address
                .parse()
                .map_err(|_| format!("`{entry}` is not an IP address or CIDR network"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(prefix) => prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|prefix| *prefix <= max)
                    .ok_or_else(|| format!("`{entry}` has a prefix outside 0 to {max}"))?,
            };
            networks.push((address, prefix));
        }
        Ok(Self { networks })
    }

    /// Whether `address` is a trusted proxy.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.networks
            .iter()
            .any(|&(network, prefix)| in_network(address, network, prefix))
    }

    /// The client a request from `peer` with `headers` comes from.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for entry in forwarded.iter().rev() {
            match entry.parse::<IpAddr>() {
                Ok(address) if self.contains(address) => continue,
                Ok(address) => return address,
                // Garbage where a proxy should have written an address:
                // the proxy in front of it is the last thing we know.
                Err(_) => return peer,
            }
        }
        peer
    }
}

fn in_network(address: IpAddr, network: IpAddr, prefix: u8) -> bool {
    let (address, network, bits) = match (address, network) {
        (IpAddr::V4(address), IpAddr::V4(network)) => (
            u128::from(address.to_bits()),
            u128::from(network.to_bits()),
            32,
        ),
        (IpAddr::V6(address), IpAddr::V6(network)) => (address.to_bits(), network.to_bits(), 128),
        (IpAddr::V6(address), IpAddr::V4(network)) => match address.to_ipv4_mapped() {
            Some(address) => (
                u128::from(address.to_bits()),
                u128::from(network.to_bits()),
                32,
            ),
            None => return false,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => return false,
    };
    let shift = bits - u32::from(prefix);
    shift >= bits || (address >> shift) == (network >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(forwarded: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", forwarded.parse().unwrap());
        headers
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let proxies = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        // From a stranger the header is ignored: it could say anything.
        assert_eq!(proxies.client(stranger, &headers("1.2.3.4")), stranger);
        // Behind the proxy: the rightmost untrusted entry; what the client
        // prepended itself is left of it and ignored.
        assert_eq!(
            proxies.client(proxy, &headers("6.6.6.6, 198.51.100.4, 192.168.1.7")),
            "198.51.100.4".parse::<IpAddr>().unwrap()
        );
        assert_eq!(proxies.client(proxy, &HeaderMap::new()), proxy);
        assert_eq!(proxies.client(proxy, &headers("not-an-ip")), proxy);
        // No trusted proxies: never believed.
        assert_eq!(
            TrustedProxies::default().client(proxy, &headers("1.2.3.4")),
            proxy
        );
    }

    #[test]
    fn networks_parse_and_match_both_families() {
        let proxies = TrustedProxies::parse("fd00::/8,0.0.0.0/0").unwrap();
        assert!(proxies.contains("fd12::1".parse().unwrap()));
        assert!(proxies.contains("8.8.8.8".parse().unwrap()));
        assert!(proxies.contains("::ffff:8.8.8.8".parse().unwrap()));
        assert!(!proxies.contains("2001:db8::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "not-an-ip", "fd00::/129", "10.0.0.1/x"] {
            assert!(TrustedProxies::parse(bad).is_err(), "{bad}");
        }
    }
}
