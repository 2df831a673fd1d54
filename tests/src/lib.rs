//! Black-box test harness for Ringway.
//!
//! Everything here drives the real `ringway` binary through real sockets: [`Ringway`] starts
//! the process from a YAML string, [`Origin`] is a small HTTP/1.1 server on loopback that the
//! proxy forwards to, and [`Client`] is a raw HTTP/1.1 client that can send arbitrary bytes.
//! Nothing is mocked. Every blocking read has a timeout, so a hung proxy fails a test rather
//! than hanging the run.
//!
//! The binary is not built here: run `cargo build -p ringway --bins` first (or point
//! `RINGWAY_BIN` at a binary).

pub mod client;
pub mod origin;
pub mod process;
pub mod recording;
pub mod redis;
pub mod tls;
pub mod websocket;
pub mod wire;

pub use client::{expect_closed, Client, Response};
pub use origin::{Origin, RequestHead, HELLO};
pub use process::{
    parse_worker_counts, ringload_bin, run_ringway, workspace_dir, Ringway, TempDir,
};

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// How long any single read or write may block before a test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// An address on loopback where nothing listens (bound once, then released).
pub fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address")
}

/// A loopback port that refuses connections and stays reserved while the value lives: a
/// socket bound to it that never listens. Unlike [`closed_port`], nothing else (another test's
/// listener, or the proxy under test itself) can be given the port meanwhile.
pub struct Refusing {
    pub addr: SocketAddr,
    _socket: std::os::fd::OwnedFd,
}

pub fn refusing_port() -> Refusing {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: plain socket calls on a descriptor this function owns; the address structure
    // lives on this frame for the duration of each call.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let socket = OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::bind(fd, (&addr as *const libc::sockaddr_in).cast(), len);
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let mut bound: libc::sockaddr_in = std::mem::zeroed();
        let mut blen = len;
        let rc = libc::getsockname(fd, (&mut bound as *mut libc::sockaddr_in).cast(), &mut blen);
        assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
        Refusing {
            addr: SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, u16::from_be(bound.sin_port))),
            _socket: socket,
        }
    }
}

/// A loopback address where connecting hangs: a listener whose accept queue is full and that
/// never accepts, so the kernel drops further SYNs. Keep the returned value alive while it is
/// used.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<std::net::TcpStream>,
}

pub fn blackhole() -> Blackhole {
    use std::os::fd::AsRawFd;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the blackhole");
    // SAFETY: listen(2) on a socket this function owns; Linux accepts a second listen() to
    // change the backlog.
    let rc = unsafe { libc::listen(listener.as_raw_fd(), 0) };
    assert_eq!(rc, 0, "listen(fd, 0)");
    let addr = listener.local_addr().expect("blackhole address");
    let mut queued = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => queued.push(stream),
            Err(_) => {
                return Blackhole {
                    addr,
                    _listener: listener,
                    _queued: queued,
                }
            }
        }
    }
    panic!("the accept queue of {addr} never filled; cannot make a blackhole here");
}

/// The code of a gateway JSON error body `{"error":"<code>","message":"..."}`, if the body is
/// one. A deliberately small reader: tests only need the two string fields.
pub fn json_error_code(body: &[u8]) -> Option<String> {
    json_string_field(body, "error")
}

/// The value of a top-level string field in a flat JSON object (no nesting, simple escapes).
pub fn json_string_field(body: &[u8], field: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?.trim();
    if !text.starts_with('{') || !text.ends_with('}') {
        return None;
    }
    let key = format!("\"{field}\"");
    let after_key = &text[text.find(&key)? + key.len()..];
    let after_colon = after_key.trim_start().strip_prefix(':')?.trim_start();
    let mut chars = after_colon.strip_prefix('"')?.chars();
    let mut value = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
}

/// Deterministic test bytes: position `i` holds `i % 251` (a prime, so the pattern does not
/// line up with power-of-two buffer sizes and a dropped or repeated chunk shows).
pub fn pattern_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A config with one listener on `127.0.0.1:0`, one backend `origin` with `targets`, and a
/// catch-all route to it. `extra` is appended at top level (limits, timeouts, more routes
/// must not be given twice).
pub fn forward_all_config(workers: usize, targets: &[&str], extra: &str) -> String {
    let mut yaml = format!(
        "workers: {workers}\n\
         listeners:\n  - name: main\n    address: 127.0.0.1:0\n\
         backends:\n  - name: origin\n    targets:\n"
    );
    for url in targets {
        yaml.push_str(&format!("      - url: {url}\n"));
    }
    yaml.push_str("routes:\n  - backend: origin\n");
    yaml.push_str(extra);
    yaml
}

/// A proxy with one worker forwarding everything to `origin`.
pub fn proxy_to(origin: &Origin) -> Ringway {
    Ringway::start(&forward_all_config(1, &[&origin.url()], ""))
}

/// Asserts a 200 with the body of the origin's `/hello`.
pub fn assert_hello(response: &Response) {
    assert_eq!(
        response.status,
        200,
        "{:?} {}",
        response.headers,
        response.text()
    );
    assert_eq!(response.body, HELLO, "body of /hello");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_error_code_reads_the_code() {
        let body = br#"{"error":"no_route","message":"no route matches GET /x"}"#;
        assert_eq!(json_error_code(body).as_deref(), Some("no_route"));
        assert_eq!(
            json_string_field(body, "message").as_deref(),
            Some("no route matches GET /x")
        );
        assert_eq!(
            json_error_code(b"{ \"error\" : \"a\\\"b\" }").as_deref(),
            Some("a\"b")
        );
        assert_eq!(json_error_code(b"not json"), None);
    }
}
