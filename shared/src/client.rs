//! Who the client is, by network address: the direct peer, or, behind a
//! trusted proxy, the address the proxies say they forwarded for.
//!
//! Threat: `x-forwarded-for` and `forwarded` are written by whoever sends
//! the request. They are read only when the direct peer is in
//! `TRUSTED_PROXIES` (empty by default), and then from the right: the
//! right-most hop that is not itself a trusted proxy is the client, since
//! everything left of it was written by the client and may be made up. The
//! address found here is the one that limits, audit rows and logs use.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// A client address for logs, formatted only if a log line is written.
#[derive(Debug, Clone, Copy)]
pub struct Shown(pub Option<SocketAddr>);

impl std::fmt::Display for Shown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{}", addr.ip()),
            None => Ok(()),
        }
    }
}

/// Parses a CIDR (`10.0.0.0/8`) or a single address (`10.0.0.1`).
pub fn cidr(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is neither an address nor a CIDR block"))
}

/// The client's address for a request from `peer`.
pub fn resolve(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<SocketAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(&canonical(ip)));
    if !is_trusted(peer.ip()) {
        return Some(peer);
    }
    // Hops in order, from both headers: `forwarded` (RFC 7239) first when
    // present, else `x-forwarded-for`.
    let hops = forwarded_hops(headers);
    let client = hops
        .iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .or_else(|| hops.first().copied());
    Some(client.map_or(peer, |ip| SocketAddr::new(canonical(ip), 0)))
}

fn forwarded_hops(headers: &HeaderMap) -> Vec<IpAddr> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    };
    let forwarded = values("forwarded");
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.eq_ignore_ascii_case("for")
                        .then(|| parse_node(value))
                        .flatten()
                })
            })
            .collect();
    }
    values("x-forwarded-for")
        .iter()
        .flat_map(|v| v.split(','))
        .filter_map(parse_node)
        .collect()
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:80"`.
fn parse_node(raw: &str) -> Option<IpAddr> {
    let raw = raw.trim().trim_matches('"');
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    raw.strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .and_then(|ip| ip.parse().ok())
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The unit that limits count by: an IPv4 address, or an IPv6 /64 (one
/// subscriber's usual allocation, so a client cannot walk its own prefix).
pub fn limit_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                v.parse().unwrap_or_else(|e| panic!("{e}")),
            );
        }
        h
    }

    fn at(s: &str) -> Option<SocketAddr> {
        s.parse().ok()
    }

    #[test]
    fn headers_count_only_from_trusted_proxies() {
        let trusted = [cidr("10.0.0.0/8").unwrap_or_else(|e| panic!("{e}"))];
        let spoof = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(
            resolve(at("203.0.113.9:4000"), &spoof, &trusted),
            at("203.0.113.9:4000")
        );
        assert_eq!(
            resolve(at("10.1.2.3:4000"), &spoof, &trusted),
            at("198.51.100.7:0")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = [cidr("10.0.0.0/8").unwrap_or_else(|e| panic!("{e}"))];
        // The client wrote the first entry itself; our proxies appended the rest.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.5")]);
        assert_eq!(
            resolve(at("10.0.0.6:1"), &chain, &trusted),
            at("198.51.100.7:0")
        );
        let rfc = headers(&[(
            "forwarded",
            "for=1.1.1.1, for=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.5",
        )]);
        assert_eq!(
            resolve(at("10.0.0.6:1"), &rfc, &trusted),
            at("[2001:db8::7]:0")
        );
    }

    #[test]
    fn ipv6_clients_count_by_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let b: IpAddr = "2001:db8:1:2:bbbb::9"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(limit_key(a), limit_key(b));
        assert_ne!(limit_key(a), limit_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            limit_key(mapped),
            "192.0.2.1"
                .parse::<IpAddr>()
                .unwrap_or_else(|e| panic!("{e}"))
        );
    }
}
