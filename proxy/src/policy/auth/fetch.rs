//! A small blocking HTTP/1.1 client for one thing: `GET` a document (a JWK set, an OpenID
//! Connect discovery document) from an `http` or `https` URL, off the worker cores.
//!
//! It sends `Connection: close` and reads one response: `Content-Length`, chunked, or up to
//! the close. Only `200` is accepted; redirects are not followed. Everything is bounded: the
//! connect, each read and write, the whole exchange, and the body's size. `https` goes through
//! rustls (ring) with the system's root certificates or a configured bundle.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

/// An `http` or `https` URL, split for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// As written, for messages.
    text: String,
    pub https: bool,
    /// The host name or address (an IPv6 address without its brackets).
    pub host: String,
    pub port: u16,
    /// The path and query (`/` at least), without any fragment.
    pub target: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let (https, rest) = if let Some(rest) = strip_prefix_ignore_case(text, "https://") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ignore_case(text, "http://") {
            (false, rest)
        } else {
            return Err(format!("{text:?} is not an http:// or https:// URL"));
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(end);
        if authority.contains('@') {
            return Err(format!(
                "{text:?}: user names and passwords in the URL are not supported"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: unclosed [ in the host"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(format!("{text:?}: {host:?} is not an IPv6 address"));
            }
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("{text:?}: unexpected text after the host")),
                },
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        let name_ok = |h: &str| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        };
        if host.is_empty() || !(authority.starts_with('[') || name_ok(host)) {
            return Err(format!("{text:?}: no valid host"));
        }
        let port = match port {
            None => {
                if https {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n != 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("{text:?}: {p:?} is not a port")),
            },
        };
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "{text:?}: spaces and control characters must be percent-encoded"
            ));
        }
        let target = if target.starts_with('/') {
            target.to_string()
        } else {
            format!("/{target}")
        };
        Ok(Url {
            text: text.to_string(),
            https,
            host: host.to_ascii_lowercase(),
            port,
            target,
        })
    }

    /// The `Host` header's value: the port only when it is not the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.https { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// How long and how much.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub connect: Duration,
    /// Each read or write.
    pub io: Duration,
    /// The whole exchange, from connecting to the last byte.
    pub total: Duration,
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            connect: Duration::from_secs(5),
            io: Duration::from_secs(10),
            total: Duration::from_secs(30),
            max_body: 1 << 20,
        }
    }
}

/// The largest response head read.
const MAX_HEAD: usize = 16 * 1024;

/// A TLS client configuration trusting `roots`, or the system's root certificates.
pub fn tls_config(
    roots: Option<&[CertificateDer<'static>]>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Some(roots) => {
            for cert in roots {
                store
                    .add(cert.clone())
                    .map_err(|e| format!("a certificate of ca_file cannot be used: {e}"))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why = found
                    .errors
                    .first()
                    .map_or(String::new(), |e| format!(" ({e})"));
                return Err(format!(
                    "no trusted root certificates were found on this system{why}; give ca_file"
                ));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(store)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificates of a PEM bundle.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate bundle: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (BEGIN CERTIFICATE)".into());
    }
    Ok(certs)
}

/// `GET url`: the body of a `200` answer. `tls` is required for `https`.
pub fn get(
    url: &Url,
    tls: Option<&Arc<rustls::ClientConfig>>,
    limits: Limits,
) -> Result<Vec<u8>, String> {
    let started = Instant::now();
    let tcp = connect(url, limits)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: ringway/{}\r\n\
         Connection: close\r\n\r\n",
        url.target,
        url.authority(),
        env!("CARGO_PKG_VERSION")
    );
    if url.https {
        let tls = tls.ok_or("no TLS configuration for an https URL")?;
        let name = ServerName::try_from(url.host.clone())
            .map_err(|_| format!("{:?} is not a host name TLS can check", url.host))?;
        let conn = rustls::ClientConnection::new(Arc::clone(tls), name)
            .map_err(|e| format!("TLS: {e}"))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        exchange(&mut stream, request.as_bytes(), started, limits, |s| {
            &s.sock
        })
    } else {
        let mut stream = tcp;
        exchange(&mut stream, request.as_bytes(), started, limits, |s| s)
    }
}

fn connect(url: &Url, limits: Limits) -> Result<TcpStream, String> {
    let addrs = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, limits.connect) {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
        }
    }
    Err(last.unwrap_or_else(|| format!("{} has no address", url.host)))
}

fn exchange<S: Read + Write>(
    stream: &mut S,
    request: &[u8],
    started: Instant,
    limits: Limits,
    tcp: impl Fn(&S) -> &TcpStream,
) -> Result<Vec<u8>, String> {
    let timed = |stream: &S| -> Result<(), String> {
        let left = limits
            .total
            .checked_sub(started.elapsed())
            .filter(|d| !d.is_zero())
            .ok_or("timed out")?;
        let each = limits.io.min(left);
        let s = tcp(stream);
        s.set_read_timeout(Some(each))
            .and_then(|()| s.set_write_timeout(Some(each)))
            .map_err(|e| format!("socket: {e}"))
    };
    timed(stream)?;
    stream
        .write_all(request)
        .and_then(|()| stream.flush())
        .map_err(|e| io_error("sending the request", &e))?;
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let cap = limits.max_body + MAX_HEAD;
    loop {
        timed(stream)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A TLS peer that closes without close_notify: the end of the data all the same
            // (the body must still be complete by its framing, and parse).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(io_error("reading the response", &e)),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(body) = parse_response(&buf, n == 0, limits.max_body)? {
            return Ok(body);
        }
        if buf.len() > cap {
            return Err(format!(
                "the response is larger than {} bytes",
                limits.max_body
            ));
        }
    }
}

fn io_error(doing: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => format!("timed out {doing}"),
        _ => format!("{doing}: {e}"),
    }
}

/// The body of the response in `buf`, once it is complete: `Ok(None)` while more is needed
/// (`eof`: nothing more will come). Only a `200` answer has a body to give; anything else is
/// an error as soon as its head is in.
pub fn parse_response(buf: &[u8], eof: bool, max_body: usize) -> Result<Option<Vec<u8>>, String> {
    let mut at = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(&buf[at..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if eof => {
                return Err("the connection closed before the response head was complete".into())
            }
            Ok(httparse::Status::Partial) if buf.len() - at > MAX_HEAD => {
                return Err("the response head is too large".into())
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(format!("not an HTTP/1.1 response: {e}")),
        };
        let code = response.code.unwrap_or_default();
        if (100..200).contains(&code) && code != 101 {
            // An interim answer (103 Early Hints): the real one follows.
            at += head_len;
            continue;
        }
        if code != 200 {
            return Err(format!(
                "answered {code} {}",
                response.reason.unwrap_or_default()
            ));
        }
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut encoded = false;
        for h in response.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                encoded = true;
                let value = String::from_utf8_lossy(h.value);
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                let value = std::str::from_utf8(h.value)
                    .ok()
                    .map(str::trim)
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .ok_or("a Content-Length that is not a number")?;
                if length.is_some_and(|l| l != value) {
                    return Err("two different Content-Length values".into());
                }
                length = Some(value);
            }
        }
        let body = &buf[at + head_len..];
        if chunked {
            return match dechunk(body, max_body)? {
                Some(body) => Ok(Some(body)),
                None if eof => Err("the connection closed inside a chunked body".into()),
                None => Ok(None),
            };
        }
        if let (Some(length), false) = (length, encoded) {
            if length > max_body {
                return Err(format!("the response is larger than {max_body} bytes"));
            }
            return if body.len() >= length {
                Ok(Some(body[..length].to_vec()))
            } else if eof {
                Err(format!(
                    "the connection closed after {} of {length} body bytes",
                    body.len()
                ))
            } else {
                Ok(None)
            };
        }
        // Neither: the body runs to the close.
        if body.len() > max_body {
            return Err(format!("the response is larger than {max_body} bytes"));
        }
        return Ok(eof.then(|| body.to_vec()));
    }
}

/// A whole chunked body's data, or `None` while it is incomplete.
fn dechunk(mut body: &[u8], max_body: usize) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find_crlf(body) else {
            if body.len() > 1024 {
                return Err("a chunk size line is too long".into());
            }
            return Ok(None);
        };
        let line = &body[..eol];
        let size = line
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if size.is_empty() || size.len() > 8 || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err("a chunk size that is not hexadecimal".into());
        }
        let size = usize::from_str_radix(std::str::from_utf8(size).expect("hex digits"), 16)
            .expect("at most 8 hex digits");
        body = &body[eol + 2..];
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(eol) = find_crlf(body) else {
                    return Ok(None);
                };
                body = &body[eol + 2..];
                if eol == 0 {
                    return Ok(Some(out));
                }
            }
        }
        if out.len() + size > max_body {
            return Err(format!("the response is larger than {max_body} bytes"));
        }
        if body.len() < size + 2 {
            return Ok(None);
        }
        if &body[size..size + 2] != b"\r\n" {
            return Err("a chunk does not end with CRLF".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    fn whole(text: &[u8]) -> Result<Option<Vec<u8>>, String> {
        parse_response(text, false, MAX)
    }

    #[test]
    fn urls_split_into_host_port_and_target() {
        let u = Url::parse("https://IdP.example/.well-known/jwks.json?x=1#frag").unwrap();
        assert!(u.https);
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("idp.example", 443, "/.well-known/jwks.json?x=1")
        );
        assert_eq!(u.authority(), "idp.example");
        assert_eq!(
            u.to_string(),
            "https://IdP.example/.well-known/jwks.json?x=1#frag"
        );
        let u = Url::parse("http://127.0.0.1:8081").unwrap();
        assert_eq!((u.port, u.target.as_str()), (8081, "/"));
        assert_eq!(u.authority(), "127.0.0.1:8081");
        let u = Url::parse("HTTP://[::1]:9000?q").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("::1", 9000, "/?q")
        );
        assert_eq!(u.authority(), "[::1]:9000");
        assert_eq!(Url::parse("http://h:80/").unwrap().authority(), "h");
        for bad in [
            "ftp://idp.example/jwks",
            "idp.example/jwks",
            "https://",
            "https://user:pw@idp.example/",
            "https://idp.example:0/",
            "https://idp.example:99999/",
            "https://idp.example:+80/",
            "https://[::1/",
            "https://[nothost]/",
            "https://idp.example/a b",
            "https://idp example/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn content_length_bodies() {
        let r =
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\nhello";
        assert_eq!(whole(r).unwrap().unwrap(), b"hello");
        // Bytes past the length are not the body.
        let mut more = r.to_vec();
        more.extend_from_slice(b"junk");
        assert_eq!(whole(&more).unwrap().unwrap(), b"hello");
        // Incomplete: wait, unless the connection closed.
        assert_eq!(whole(&r[..r.len() - 1]).unwrap(), None);
        assert!(parse_response(&r[..r.len() - 1], true, MAX)
            .unwrap_err()
            .contains("4 of 5"));
        assert_eq!(whole(b"HTTP/1.1 200 OK\r\nContent-Len").unwrap(), None);
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n", true, MAX).is_err());
        // Repeated and equal is fine; different is not.
        let twice = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(whole(twice).unwrap().unwrap(), b"ok");
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        ] {
            assert!(whole(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn chunked_bodies() {
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5;ext=1\r\nhello\r\n1A\r\n abcdefghijklmnopqrstuvwxy\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(
            whole(r).unwrap().unwrap(),
            b"hello abcdefghijklmnopqrstuvwxy"
        );
        // Every prefix is incomplete, not wrong.
        for end in 0..r.len() {
            assert_eq!(whole(&r[..end]).unwrap(), None, "{end}");
        }
        assert!(parse_response(&r[..r.len() - 2], true, MAX).is_err());
        // Chunked wins over Content-Length.
        let both = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert_eq!(whole(both).unwrap().unwrap(), b"ok");
        for bad in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n123456789\r\n",
        ] {
            assert!(whole(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn bodies_to_the_close_and_interim_answers() {
        let r = b"HTTP/1.1 200 OK\r\n\r\n{\"keys\":[]}";
        assert_eq!(whole(r).unwrap(), None);
        assert_eq!(
            parse_response(r, true, MAX).unwrap().unwrap(),
            b"{\"keys\":[]}"
        );
        // A transfer coding other than chunked also runs to the close.
        let gz = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 1\r\n\r\nabc";
        assert_eq!(parse_response(gz, true, MAX).unwrap().unwrap(), b"abc");
        let early = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(whole(early).unwrap().unwrap(), b"ok");
    }

    #[test]
    fn only_200_is_accepted() {
        for (r, says) in [
            (
                &b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"[..],
                "500",
            ),
            (
                b"HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\n\r\n",
                "301",
            ),
            (b"HTTP/1.1 404 Not Found\r\n\r\n", "404 Not Found"),
            (b"HTTP/1.1 204 No Content\r\n\r\n", "204"),
        ] {
            let e = whole(r).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        assert!(whole(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
    }

    #[test]
    fn bodies_are_capped() {
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n";
        assert!(parse_response(big, false, 10)
            .unwrap_err()
            .contains("larger"));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\nabcdef\r\n";
        assert!(parse_response(chunked, false, 10)
            .unwrap_err()
            .contains("larger"));
        let close = b"HTTP/1.1 200 OK\r\n\r\nabcdefghijk";
        assert!(parse_response(close, false, 10)
            .unwrap_err()
            .contains("larger"));
        let head = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD + 1));
        assert!(whole(head.as_bytes()).unwrap_err().contains("head"));
    }

    /// One connection on loopback: answers with `response` in two writes 20 ms apart, and
    /// closes. Returns the address and what the client sent.
    fn serve_once(response: Vec<u8>) -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<u8>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut b = [0u8; 1024];
            while !got.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&b[..n]);
            }
            let (head, body) = response.split_at(response.len() / 2);
            s.write_all(head).unwrap();
            s.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.write_all(body).unwrap();
            got
        });
        (addr, t)
    }

    #[test]
    fn gets_over_plain_http() {
        let (addr, t) = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
        );
        let url = Url::parse(&format!("http://{addr}/keys?a=1")).unwrap();
        assert_eq!(get(&url, None, Limits::default()).unwrap(), b"abc");
        let sent = String::from_utf8(t.join().unwrap()).unwrap();
        assert!(sent.starts_with("GET /keys?a=1 HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains(&format!("\r\nHost: {addr}\r\n")), "{sent}");
        assert!(sent.contains("\r\nConnection: close\r\n"), "{sent}");

        // A server that never answers: bounded by the read timeout.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/", silent.local_addr().unwrap())).unwrap();
        let limits = Limits {
            io: Duration::from_millis(200),
            ..Limits::default()
        };
        let started = Instant::now();
        let e = get(&url, None, limits).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(silent);
        let e = get(&url, None, limits).unwrap_err();
        assert!(e.contains("cannot connect"), "{e}");
    }

    #[test]
    fn gets_over_https_with_a_ca_bundle() {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
        )
        .unwrap();
        let server = Arc::new(server);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            // Two connections: the trusted client's, then the one that refuses the certificate.
            for _ in 0..2 {
                let (tcp, _) = listener.accept().unwrap();
                let conn = rustls::ServerConnection::new(Arc::clone(&server)).unwrap();
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let mut got = Vec::new();
                let mut b = [0u8; 1024];
                while !got.ends_with(b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.extend_from_slice(&b[..n]),
                    }
                }
                if got.is_empty() {
                    continue;
                }
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n{\"keys\":[]}");
                s.conn.send_close_notify();
                let _ = s.flush();
            }
        });
        let pem = ca.pem();
        let roots = pem_certificates(pem.as_bytes()).unwrap();
        let tls = tls_config(Some(&roots)).unwrap();
        let url = Url::parse(&format!("https://localhost:{}/jwks", addr.port())).unwrap();
        assert_eq!(
            get(&url, Some(&tls), Limits::default()).unwrap(),
            b"{\"keys\":[]}"
        );
        // The same server is not trusted with another bundle.
        let other_key = KeyPair::generate().unwrap();
        let other = CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&other_key)
            .unwrap();
        let untrusted = tls_config(Some(&[other.der().clone()])).unwrap();
        let e = get(&url, Some(&untrusted), Limits::default()).unwrap_err();
        assert!(
            e.contains("certificate") || e.contains("Certificate"),
            "{e}"
        );
        t.join().unwrap();

        assert!(pem_certificates(b"not pem").is_err());
    }
}
