//! A minimal blocking HTTP/1.1 GET (over TLS for the `-tls` contenders), to know that a
//! started server answers what it should before any load is sent at it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringway_core::http1::{parse_response, Limits, ResponseHead};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::process::{self, Managed};
use super::Error;

/// GETs `path` on 127.0.0.1:`port`; returns the status and the body's length.
pub fn get(port: u16, path: &str) -> Result<(u16, usize), String> {
    get_over(port, path, None)
}

/// The same over TLS when `tls` is given (the certificate verified for 127.0.0.1).
pub fn get_over(
    port: u16,
    path: &str,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(u16, usize), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    match tls {
        None => exchange(stream, port, path),
        Some(config) => {
            let name = ServerName::from(std::net::IpAddr::from(Ipv4Addr::LOCALHOST));
            let conn =
                ClientConnection::new(Arc::clone(config), name).map_err(|e| format!("TLS: {e}"))?;
            exchange(StreamOwned::new(conn, stream), port, path)
        }
    }
}

fn exchange<S: Read + Write>(mut stream: S, port: u16, path: &str) -> Result<(u16, usize), String> {
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let mut head = ResponseHead::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_len = loop {
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before a whole response head".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_response(&buf, &Limits::default(), &mut head) {
            Ok(Some(len)) => break len,
            Ok(None) => continue,
            Err(e) => return Err(format!("bad response head: {e}")),
        }
    };
    let want = head
        .content_length()
        .ok_or("the response has no Content-Length")? as usize;
    while buf.len() < head_len + want {
        let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok((head.status(), buf.len() - head_len))
}

/// Waits until `path` on `port` answers 200 with a body of `body_len` bytes. Fails when `child`
/// exits first, or after 10 s.
pub fn wait_ready(
    child: &mut Managed,
    port: u16,
    path: &str,
    body_len: usize,
) -> Result<(), Error> {
    wait_ready_over(child, port, path, body_len, None)
}

/// [`wait_ready`], over TLS when `tls` is given.
pub fn wait_ready_over(
    child: &mut Managed,
    port: u16,
    path: &str,
    body_len: usize,
    tls: Option<&Arc<ClientConfig>>,
) -> Result<(), Error> {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let last = match get_over(port, path, tls) {
            Ok((200, n)) if n == body_len => return Ok(()),
            Ok((status, n)) => format!("answered {status} with {n} body bytes"),
            Err(e) => e,
        };
        if let Some(status) = child.try_wait() {
            return Err(Error::Failed(format!(
                "{} exited ({status}) before answering:\n{}",
                child.name,
                child.log_tail()
            )));
        }
        if Instant::now() > end {
            return Err(Error::Failed(format!(
                "{} on port {port}: GET {path} should answer 200 with {body_len} bytes; \
                 last try: {last}\n{}",
                child.name,
                child.log_tail()
            )));
        }
        process::sleep(Duration::from_millis(50))?;
    }
}

/// A free loopback port (bound and released: good enough for a benchmark on its own machine).
pub fn free_port() -> Result<u16, Error> {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Failed(format!("cannot find a free port: {e}")))
}
