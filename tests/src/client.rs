//! A raw HTTP/1.1 client over `std::net::TcpStream`.
//!
//! It writes exactly the bytes a test gives it (so malformed requests reach the proxy as
//! written) and parses responses strictly, in order, so pipelined responses can be checked one
//! by one. It never reconnects or retries: a test sees what the proxy did on that connection.

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::wire::{self, Headers, Wire};
use crate::IO_TIMEOUT;

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Headers,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Headers,
    /// Whether the body came chunked.
    pub chunked: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        wire::header(&self.headers, name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        wire::header_all(&self.headers, name)
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        wire::header(&self.trailers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `error` code of a gateway JSON error body.
    pub fn json_error(&self) -> Option<String> {
        crate::json_error_code(&self.body)
    }

    /// Whether the response asks for the connection to be closed.
    pub fn closes(&self) -> bool {
        wire::header_has_token(&self.headers, "connection", "close")
    }
}

/// One client connection.
pub struct Client {
    wire: Wire,
    /// Methods of requests sent but not answered yet (a HEAD response has no body).
    in_flight: VecDeque<String>,
    pub max_body: usize,
}

impl Client {
    /// Connects with [`IO_TIMEOUT`] on reads and writes.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            wire: Wire::new(stream),
            in_flight: VecDeque::new(),
            max_body: 64 << 20,
        })
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.wire
            .stream()
            .set_read_timeout(Some(timeout))
            .expect("set read timeout");
    }

    pub fn wire(&mut self) -> &mut Wire {
        &mut self.wire
    }

    /// Writes bytes as given. Responses to them are read with [`Client::read_response`]
    /// (as answers to GET) or [`Client::read_response_to`].
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.wire
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write {} bytes: {e}", bytes.len()));
    }

    /// Writes one request without waiting for its response. Adds `Host: ringway.test` unless
    /// `headers` has a Host, and `Content-Length` when there is a body and no framing header.
    pub fn send_request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) {
        let bytes = build_request(method, target, headers, body);
        self.send_raw(&bytes);
        self.in_flight.push_back(method.to_string());
    }

    /// Sends one request and reads its response.
    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.send_request(method, target, headers, body);
        self.read_response()
    }

    pub fn get(&mut self, target: &str) -> Response {
        self.request("GET", target, &[], b"")
    }

    /// Reads the response to the oldest request sent with [`Client::send_request`] (or, for
    /// raw bytes, a response to a GET).
    pub fn read_response(&mut self) -> Response {
        self.try_read_response()
            .unwrap_or_else(|e| panic!("read response: {e}"))
    }

    pub fn try_read_response(&mut self) -> io::Result<Response> {
        let method = self
            .in_flight
            .pop_front()
            .unwrap_or_else(|| "GET".to_string());
        self.read_response_to(&method)
    }

    /// Reads a response to a request with `method`, skipping any 1xx interim response other
    /// than 101.
    pub fn read_response_to(&mut self, method: &str) -> io::Result<Response> {
        loop {
            let response = self.read_one(method)?;
            if (100..200).contains(&response.status) && response.status != 101 {
                continue;
            }
            return Ok(response);
        }
    }

    fn read_one(&mut self, method: &str) -> io::Result<Response> {
        let head = self.wire.read_head(1 << 20)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before a response",
            )
        })?;
        let (start, headers) = wire::parse_head(&head)?;
        let mut parts = start.splitn(3, ' ');
        let version = parts.next().unwrap_or_default().to_string();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| wire::invalid(format!("bad status line {start:?}")))?;
        let reason = parts.next().unwrap_or_default().to_string();
        if !version.starts_with("HTTP/1.") {
            return Err(wire::invalid(format!("bad status line {start:?}")));
        }
        let mut response = Response {
            version,
            status,
            reason,
            headers,
            body: Vec::new(),
            trailers: Headers::new(),
            chunked: false,
        };
        let no_body = method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304;
        if no_body {
            return Ok(response);
        }
        if wire::header_has_token(&response.headers, "transfer-encoding", "chunked") {
            let (body, trailers) = self.wire.read_chunked(self.max_body)?;
            response.body = body;
            response.trailers = trailers;
            response.chunked = true;
        } else if let Some(len) = response.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| wire::invalid(format!("bad Content-Length {len:?}")))?;
            response.body = self.wire.read_exact_vec(len)?;
        } else {
            response.body = self.wire.read_to_close()?;
        }
        Ok(response)
    }
}

/// Asserts that the peer closes the connection (EOF or reset) within a few seconds and sends
/// nothing more.
pub fn expect_closed(client: &mut Client) {
    assert!(
        client.wire.buffered().is_empty(),
        "unexpected bytes after the response: {:?}",
        String::from_utf8_lossy(client.wire.buffered())
    );
    client.set_read_timeout(Duration::from_secs(5));
    match client.wire.fill() {
        Ok(0) => {}
        Ok(_) => panic!(
            "expected the connection to be closed, got more bytes: {:?}",
            String::from_utf8_lossy(client.wire.buffered())
        ),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
            ) => {}
        Err(e) => panic!("expected the connection to be closed within 5s: {e}"),
    }
}

/// The bytes of a request with default Host and framing (see [`Client::send_request`]).
pub fn build_request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut out = format!("{method} {target} HTTP/1.1\r\n");
    if !has("host") {
        out.push_str("Host: ringway.test\r\n");
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let framed = has("content-length") || has("transfer-encoding");
    if !framed && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// One GET on a fresh connection.
pub fn get(addr: SocketAddr, target: &str) -> Response {
    Client::connect(addr).get(target)
}
