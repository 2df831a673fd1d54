//! What is loaded: each URL parsed, resolved once, and turned into the exact request bytes
//! every connection writes, and the share of connections each URL gets.
//!
//! The invariant: a request is built once, before any worker starts, and never again; the hot
//! path writes `&'static` slices of it (a batch of `pipeline` copies, of which a prefix is written
//! when fewer requests are wanted). Nothing here resolves names after start-up: a name that
//! does not resolve is bad input, reported before the run.

use std::net::{SocketAddr, ToSocketAddrs};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// A parsed `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// Without brackets for IPv6 literals.
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub target: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let bad = |why: &str| format!("URL {text:?}: {why}");
        let (scheme, rest) = if let Some(rest) = text.strip_prefix("http://") {
            (Scheme::Http, rest)
        } else if let Some(rest) = text.strip_prefix("https://") {
            (Scheme::Https, rest)
        } else {
            return Err(bad("expected http:// or https://"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        if authority.contains('@') {
            return Err(bad("user information is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:%".contains(&b))
        {
            return Err(bad("no valid host"));
        }
        let port = match port {
            None => match scheme {
                Scheme::Http => 80,
                Scheme::Https => 443,
            },
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(bad("the port is not a number from 1 to 65535")),
            },
        };
        // The fragment never goes on the wire.
        let tail = tail.split('#').next().unwrap_or_default();
        if tail.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("spaces or control characters in the path"));
        }
        let target = match tail.strip_prefix('?') {
            Some(_) => format!("/{tail}"),
            None if tail.is_empty() => "/".to_string(),
            None => tail.to_string(),
        };
        Ok(Url {
            scheme,
            host: host.to_string(),
            port,
            target,
        })
    }

    /// The Host header's value: the port only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// One URL ready to load: where to connect and what to write.
#[derive(Debug)]
pub struct Target {
    pub url: Url,
    pub addr: SocketAddr,
    /// The request, `pipeline` times over; a prefix of `k` requests is `request_len * k` bytes.
    pub batch: &'static [u8],
    pub request_len: usize,
    pub is_head: bool,
}

impl Target {
    /// The bytes of `k` back-to-back requests (`k` at most the pipeline depth).
    #[inline]
    pub fn requests(&self, k: usize) -> &'static [u8] {
        &self.batch[..self.request_len * k]
    }
}

/// What every request carries besides its URL.
pub struct RequestTemplate<'a> {
    pub method: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub pipeline: usize,
    /// Ask the server to close after the response (`Connection: close`, unless a `Connection`
    /// header is given).
    pub close: bool,
}

/// Builds the request bytes of `url`.
pub fn build_request(url: &Url, t: &RequestTemplate<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + t.body.len());
    out.extend_from_slice(t.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(url.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let has = |name: &str| t.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(url.host_header().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in t.headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if t.close && !has("connection") {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    if !t.body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        out.extend_from_slice(format!("Content-Length: {}\r\n", t.body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(t.body);
    out
}

/// Parses, resolves and builds every URL. A name that does not resolve is an error.
pub fn prepare(urls: &[String], template: &RequestTemplate<'_>) -> Result<Vec<Target>, String> {
    let mut targets = Vec::with_capacity(urls.len());
    for text in urls {
        let url = Url::parse(text)?;
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|e| format!("{}: cannot resolve {:?}: {e}", text, url.host))?
            .next()
            .ok_or_else(|| format!("{text}: {:?} has no address", url.host))?;
        let one = build_request(&url, template);
        let batch = one.repeat(template.pipeline.max(1));
        targets.push(Target {
            is_head: template.method.eq_ignore_ascii_case("HEAD"),
            addr,
            request_len: one.len(),
            // The requests live as long as the run, which is the life of the process.
            batch: Box::leak(batch.into_boxed_slice()),
            url,
        });
    }
    Ok(targets)
}

/// Which URL each of `connections` connections loads, by weight, interleaved so that any run of
/// consecutive connections gets close to the weighted mix (smooth weighted round-robin).
pub fn assign(connections: usize, weights: &[u32]) -> Vec<usize> {
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    (0..connections)
        .map(|_| {
            for (c, &w) in current.iter_mut().zip(weights) {
                *c += w as i64;
            }
            let (best, _) = current
                .iter()
                .enumerate()
                .max_by_key(|&(i, &c)| (c, std::cmp::Reverse(i)))
                .expect("at least one URL");
            current[best] -= total;
            best
        })
        .collect()
}

/// `total` split over parts in proportion to `shares`, exactly (largest remainder).
pub fn split(total: u64, shares: &[usize]) -> Vec<u64> {
    let sum: u128 = shares.iter().map(|&s| s as u128).sum();
    if sum == 0 {
        return vec![0; shares.len()];
    }
    let mut parts: Vec<u64> = shares
        .iter()
        .map(|&s| (total as u128 * s as u128 / sum) as u64)
        .collect();
    let mut left = total - parts.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..shares.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((total as u128 * shares[i] as u128) % sum));
    for i in order {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://example.com:8080/a/b?x=1#frag").unwrap();
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, 8080);
        assert_eq!(u.target, "/a/b?x=1");
        assert_eq!(u.host_header(), "example.com:8080");
        let u = Url::parse("https://[::1]/").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 443));
        assert_eq!(u.host_header(), "[::1]");
        assert_eq!(Url::parse("http://h?q").unwrap().target, "/?q");
        for bad in [
            "ftp://x/",
            "http://",
            "http://h:0/",
            "http://h:99999/",
            "http://u@h/",
            "x",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_bytes() {
        let url = Url::parse("http://h:81/p").unwrap();
        let headers = vec![("X-A".to_string(), "1".to_string())];
        let t = RequestTemplate {
            method: "POST",
            headers: &headers,
            body: b"hello",
            pipeline: 1,
            close: false,
        };
        assert_eq!(
            build_request(&url, &t),
            b"POST /p HTTP/1.1\r\nHost: h:81\r\nX-A: 1\r\nContent-Length: 5\r\n\r\nhello"
        );
        let t = RequestTemplate {
            method: "GET",
            body: b"",
            close: true,
            ..t
        };
        assert_eq!(
            build_request(&url, &t),
            b"GET /p HTTP/1.1\r\nHost: h:81\r\nX-A: 1\r\nConnection: close\r\n\r\n"
        );
        let own = vec![("Connection".to_string(), "keep-alive".to_string())];
        let t = RequestTemplate { headers: &own, ..t };
        assert_eq!(
            build_request(&url, &t),
            b"GET /p HTTP/1.1\r\nHost: h:81\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn weighted_assignment_is_smooth_and_exact() {
        let a = assign(8, &[3, 1]);
        assert_eq!(a.iter().filter(|&&i| i == 0).count(), 6);
        assert_eq!(a[..4].iter().filter(|&&i| i == 1).count(), 1);
        assert_eq!(assign(3, &[1, 1, 1]), vec![0, 1, 2]);
        assert_eq!(assign(2, &[0, 1]), vec![1, 1]);
    }

    #[test]
    fn splits_add_up() {
        assert_eq!(split(10, &[1, 1, 1]), vec![4, 3, 3]);
        assert_eq!(split(100, &[32, 32]), vec![50, 50]);
        assert_eq!(split(7, &[3, 1]).iter().sum::<u64>(), 7);
    }
}
