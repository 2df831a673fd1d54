//! One request to the admin API: HTTP/1.1 over a `TcpStream`, or over rustls for `https://`,
//! `Connection: close`, the answer read to the end.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub body: Option<(&'static str, Vec<u8>)>,
}

impl Request {
    pub fn new(
        method: &'static str,
        path: String,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Request {
        Request { method, path, body }
    }
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Where the admin API is: `http[s]://host[:port][/prefix]`.
#[derive(Debug, PartialEq, Eq)]
pub struct Endpoint {
    https: bool,
    /// As written, for the Host header.
    authority: String,
    host: String,
    port: u16,
    /// Without a trailing `/`; empty for none.
    prefix: String,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("--admin {url:?} is not a URL (write http://127.0.0.1:9901)"))?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err(format!("--admin {url:?}: use http:// or https://")),
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = match authority.rfind(':') {
            Some(c) if !authority[c..].contains(']') => {
                let port = authority[c + 1..]
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("--admin {url:?}: not a port"))?;
                (&authority[..c], port)
            }
            _ => (authority, if https { 443 } else { 80 }),
        };
        if host.is_empty() {
            return Err(format!("--admin {url:?} has no host"));
        }
        Ok(Endpoint {
            https,
            authority: authority.to_string(),
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
            prefix: prefix.to_string(),
        })
    }

    /// Sends `request` with the bearer `token`; `cacert` is the CA bundle for https.
    pub fn send(
        &self,
        request: &Request,
        token: Option<&str>,
        cacert: Option<&str>,
    ) -> Result<Response, String> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} resolved to no address", self.host))?;
        let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut head = format!(
            "{} {}{} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringway-ctl/{}\r\nAccept: application/json\r\nConnection: close\r\n",
            request.method,
            self.prefix,
            request.path,
            self.authority,
            env!("CARGO_PKG_VERSION"),
        );
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let body: &[u8] = match &request.body {
            Some((kind, bytes)) => {
                head.push_str(&format!("Content-Type: {kind}\r\n"));
                bytes
            }
            None => &[],
        };
        if request.body.is_some() || request.method != "GET" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut message = head.into_bytes();
        message.extend_from_slice(body);
        let raw = if self.https {
            let config = tls_config(cacert)?;
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| format!("{:?} is not a server name: {e}", self.host))?;
            let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
            exchange(rustls::StreamOwned::new(conn, tcp), &message)?
        } else {
            exchange(tcp, &message)?
        };
        parse_response(&raw)
    }
}

fn tls_config(cacert: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = match cacert {
        Some(file) => crate::tls::server::read_roots(std::path::Path::new(file))?,
        None => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no system CA certificates found: give --cacert FILE".into());
            }
            roots
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Writes the request and reads the answer to the end (the server closes: `Connection:
/// close`).
fn exchange(mut stream: impl Read + Write, message: &[u8]) -> Result<Vec<u8>, String> {
    stream.write_all(message).map_err(|e| e.to_string())?;
    stream.flush().map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // A TLS peer that closes without close_notify: what arrived is the answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e.to_string()),
    }
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("the answer ended before its head did")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {status_line:?}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else {
        match length {
            Some(n) if n <= rest.len() => rest[..n].to_vec(),
            Some(_) => return Err("the answer ended before its body did".into()),
            None => rest.to_vec(),
        }
    };
    Ok(Response { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a chunked body ended early")?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("not a chunk size: {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err("a chunked body ended early".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_admin_urls() {
        let e = Endpoint::parse("http://127.0.0.1:9901").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.https),
            ("127.0.0.1", 9901, false)
        );
        let e = Endpoint::parse("https://admin.example/ringway/").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.prefix.as_str()),
            ("admin.example", 443, "/ringway")
        );
        let e = Endpoint::parse("http://[::1]:9901").unwrap();
        assert_eq!(
            (e.host.as_str(), e.authority.as_str()),
            ("::1", "[::1]:9901")
        );
        assert!(Endpoint::parse("127.0.0.1:9901").is_err());
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://x:0").is_err());
    }

    #[test]
    fn reads_answers() {
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}extra")
            .ok()
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, &b"{}"[..]));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=y\r\n\":1}\r\n0\r\n\r\n",
        )
        .ok()
        .unwrap();
        assert_eq!(r.body, br#"{"a":1}"#.to_vec());
        let r = parse_response(b"HTTP/1.1 204 No Content\r\n\r\n")
            .ok()
            .unwrap();
        assert!(r.body.is_empty());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn sends_one_request_over_a_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut chunk = [0u8; 1024];
            while !seen.ends_with(b"{\"key\":\"primary\"}") {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "the request ended early");
                seen.extend_from_slice(&chunk[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}")
                .unwrap();
            String::from_utf8(seen).unwrap()
        });
        let endpoint = Endpoint::parse(&format!("http://{addr}/admin/")).unwrap();
        let request = Request::new(
            "POST",
            "/subscriptions/bob/regenerate".into(),
            Some(("application/json", br#"{"key":"primary"}"#.to_vec())),
        );
        let response = endpoint.send(&request, Some("t0k3n"), None).unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &br#"{"ok":true}"#[..])
        );
        let seen = server.join().unwrap();
        assert!(
            seen.starts_with("POST /admin/subscriptions/bob/regenerate HTTP/1.1\r\n"),
            "{seen}"
        );
        for header in [
            format!("Host: {addr}\r\n"),
            "Authorization: Bearer t0k3n\r\n".to_string(),
            "Connection: close\r\n".to_string(),
            "Content-Type: application/json\r\n".to_string(),
            "Content-Length: 17\r\n".to_string(),
        ] {
            assert!(seen.contains(&header), "{header:?} not in {seen}");
        }
    }
}
