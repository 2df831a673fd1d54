//! Access policies that need no identity: `ip-filter` (with the client address taken from
//! `X-Forwarded-For` only through trusted proxies), `check-header`, `cors` and
//! `request-size-limit`. Compiled once; evaluated per request without allocation.

use std::net::IpAddr;

/// An address or a CIDR block, v4 or v6 (an IPv4-mapped v6 address counts as its v4 one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// `10.0.0.1`, `10.0.0.0/8`, `2001:db8::/32`.
    pub fn parse(text: &str) -> Result<IpNet, String> {
        let bad = || format!("{text:?} is not an address or a CIDR block (like 10.0.0.0/8)");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (text, None),
        };
        let addr = canonical(addr.trim().parse::<IpAddr>().map_err(|_| bad())?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(format!(
                "{text:?}: a prefix of /{prefix} is longer than the address"
            ));
        }
        Ok(IpNet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, what a dual-stack listener reports) as the
/// IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn any(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// The client's address: the peer's, unless the peer is a trusted proxy; then the right-most
/// address of `X-Forwarded-For` that is not a trusted proxy (each trusted hop vouches for the
/// one before it; an untrusted one may have written anything to its left). An entry that is
/// not an address ends the walk at the last address known good.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&[u8]>, trusted: &[IpNet]) -> IpAddr {
    let mut client = canonical(peer);
    if trusted.is_empty() || !any(trusted, client) {
        return client;
    }
    let Some(list) = forwarded_for else {
        return client;
    };
    for hop in list.rsplit(|&b| b == b',') {
        let Some(ip) = std::str::from_utf8(hop)
            .ok()
            .and_then(|h| h.trim().parse::<IpAddr>().ok())
        else {
            return client;
        };
        client = canonical(ip);
        if !any(trusted, client) {
            return client;
        }
    }
    client
}

/// `ip-filter`: whether a client address may pass.
#[derive(Clone, Debug)]
pub struct IpFilter {
    /// `allow`: only listed addresses pass; `forbid`: listed addresses are refused.
    pub allow: bool,
    pub nets: Vec<IpNet>,
    pub trusted_proxies: Vec<IpNet>,
}

impl IpFilter {
    pub fn admits(&self, client: IpAddr) -> bool {
        any(&self.nets, client) == self.allow
    }
}

/// `check-header`: a header that must be present, and optionally hold one of some values.
#[derive(Clone, Debug)]
pub struct CheckHeader {
    /// Lower case.
    pub name: Box<[u8]>,
    pub values: Vec<Box<[u8]>>,
    pub ignore_case: bool,
    pub status: u16,
    pub message: Box<str>,
}

impl CheckHeader {
    pub fn passes(&self, value: Option<&[u8]>) -> bool {
        let Some(value) = value else {
            return false;
        };
        self.values.is_empty()
            || self.values.iter().any(|v| {
                if self.ignore_case {
                    v.eq_ignore_ascii_case(value)
                } else {
                    **v == *value
                }
            })
    }
}

/// `cors`: which cross-origin requests browsers may make, answered at the gateway for
/// preflights.
#[derive(Clone, Debug)]
pub struct Cors {
    /// Exact origins (`https://app.example.com`), or any with `*`.
    pub origins: Vec<Box<[u8]>>,
    pub any_origin: bool,
    /// Upper case; any with `*`.
    pub methods: Vec<Box<[u8]>>,
    pub any_method: bool,
    /// Lower case; any (the requested ones echoed) with `*`.
    pub headers: Vec<Box<[u8]>>,
    pub any_header: bool,
    /// As written, joined for `Access-Control-Expose-Headers`.
    pub expose: Box<[u8]>,
    pub credentials: bool,
    pub max_age: Option<u64>,
    /// A preflight whose origin or method is not allowed is answered (200, no CORS headers)
    /// rather than passed to the backend.
    pub terminate_unmatched: bool,
    /// `Access-Control-Allow-Methods` and `-Headers` as sent, precomputed.
    pub methods_text: Box<[u8]>,
    pub headers_text: Box<[u8]>,
}

impl Cors {
    pub fn origin_allowed(&self, origin: &[u8]) -> bool {
        self.any_origin || self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    pub fn method_allowed(&self, method: &[u8]) -> bool {
        self.any_method
            || matches!(method, b"GET" | b"HEAD" | b"POST")
            || self.methods.iter().any(|m| **m == *method)
    }

    /// Whether every header a preflight asks for (a comma-separated list) is allowed.
    pub fn headers_allowed(&self, requested: &[u8]) -> bool {
        self.any_header
            || requested
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .filter(|h| !h.is_empty())
                .all(|h| self.headers.iter().any(|a| a.eq_ignore_ascii_case(h)))
    }

    /// The `Access-Control-Allow-Origin` value for `origin`: the origin itself, or `*` when
    /// any origin is allowed and credentials are not (a credentialed answer must name it).
    pub fn allow_origin_value<'a>(&self, origin: &'a [u8]) -> &'a [u8] {
        if self.any_origin && !self.credentials {
            b"*"
        } else {
            origin
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_blocks_match_v4_v6_and_mapped() {
        let net = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.255.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(
            net.contains(ip("::ffff:10.1.2.3")),
            "a mapped address is its v4 one"
        );
        let one = IpNet::parse("192.0.2.7").unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.1.2.3")));
        assert!(IpNet::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(IpNet::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_counts_only_through_trusted_proxies() {
        let trusted = [IpNet::parse("10.0.0.0/8").unwrap()];
        let xff = Some(&b"203.0.113.9, 198.51.100.4, 10.0.0.2"[..]);
        // The peer is a trusted proxy: the right-most untrusted hop is the client.
        assert_eq!(
            client_address(ip("10.0.0.1"), xff, &trusted),
            ip("198.51.100.4")
        );
        // An untrusted peer's header is ignored: it may have written anything.
        assert_eq!(
            client_address(ip("198.51.100.7"), xff, &trusted),
            ip("198.51.100.7")
        );
        // No trusted proxies configured: always the peer.
        assert_eq!(client_address(ip("10.0.0.1"), xff, &[]), ip("10.0.0.1"));
        // Every hop trusted: the left-most.
        let all = Some(&b"10.0.0.9, 10.0.0.8"[..]);
        assert_eq!(
            client_address(ip("10.0.0.1"), all, &trusted),
            ip("10.0.0.9")
        );
        // Garbage stops the walk at the last good address.
        let junk = Some(&b"203.0.113.9, junk, 10.0.0.2"[..]);
        assert_eq!(
            client_address(ip("10.0.0.1"), junk, &trusted),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn filters_allow_or_forbid() {
        let nets = vec![IpNet::parse("192.0.2.0/24").unwrap()];
        let allow = IpFilter {
            allow: true,
            nets: nets.clone(),
            trusted_proxies: Vec::new(),
        };
        let forbid = IpFilter {
            allow: false,
            nets,
            trusted_proxies: Vec::new(),
        };
        assert!(allow.admits(ip("192.0.2.1")) && !allow.admits(ip("198.51.100.1")));
        assert!(!forbid.admits(ip("192.0.2.1")) && forbid.admits(ip("198.51.100.1")));
    }
}
