//! The admin listener: a small HTTP/1.1 server on its own thread, outside the worker set.
//! It reads only what the workers publish (their metrics, once a second, each into its own
//! slot), so no worker ever waits on it.
//!
//! - `GET /healthz`: 200 while the process runs (no token: for liveness probes).
//! - `GET /readyz`: 200 once every worker serves, 503 before and while draining (no token).
//! - `GET /metrics`: the Prometheus text format; needs the bearer token when one is set.
//!
//! One request per connection (`Connection: close`); requests are served one at a time with
//! read and write timeouts, which is all that probes and a scraper need.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use subtle::ConstantTimeEq;

use crate::config::AdminSettings;
use crate::server::Control;

const MAX_HEAD: usize = 16 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds the admin listener and serves it on a thread of its own. Returns the bound address.
pub fn start(settings: &AdminSettings, control: Arc<Control>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(settings.address)?;
    let addr = listener.local_addr()?;
    let token = settings
        .token
        .as_ref()
        .map(|t| t.expose().as_bytes().to_vec());
    std::thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = serve(stream, token.as_deref(), &control);
            }
        })?;
    Ok(addr)
}

fn serve(mut stream: TcpStream, token: Option<&[u8]>, control: &Control) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if head.len() > MAX_HEAD {
            return answer(
                &mut stream,
                431,
                "headers_too_large",
                "the request head is too large",
                &[],
            );
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&head[..end]);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let authorization = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| value.trim().to_string())
    });
    let known = ["/healthz", "/readyz", "/metrics"];
    if !known.contains(&path) {
        return answer(
            &mut stream,
            404,
            "not_found",
            &format!("no admin route {path}"),
            &[],
        );
    }
    if method != "GET" {
        return answer(
            &mut stream,
            405,
            "method_not_allowed",
            &format!("{path} answers GET"),
            &[("Allow", "GET")],
        );
    }
    match path {
        "/healthz" => reply(
            &mut stream,
            200,
            "application/json",
            "{\"status\":\"alive\"}\n",
        ),
        "/readyz" => {
            if control.ready() {
                let body = format!(
                    "{{\"status\":\"ready\",\"workers\":{}}}\n",
                    control.workers()
                );
                reply(&mut stream, 200, "application/json", &body)
            } else {
                reply(
                    &mut stream,
                    503,
                    "application/json",
                    "{\"status\":\"not_ready\"}\n",
                )
            }
        }
        _ => {
            if let Some(expected) = token {
                let presented = authorization
                    .as_deref()
                    .and_then(|v| {
                        v.strip_prefix("Bearer ")
                            .or_else(|| v.strip_prefix("bearer "))
                    })
                    .map(str::trim)
                    .unwrap_or("");
                if !bool::from(presented.as_bytes().ct_eq(expected)) {
                    return answer(
                        &mut stream,
                        401,
                        "unauthorized",
                        "give the admin token as Authorization: Bearer TOKEN",
                        &[("WWW-Authenticate", "Bearer realm=\"ringway-admin\"")],
                    );
                }
            }
            let (metrics, _) = control.metrics();
            let body = super::prometheus::render(&metrics, control.workers());
            reply(
                &mut stream,
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
        }
    }
}

fn answer(
    stream: &mut TcpStream,
    status: u16,
    code: &str,
    message: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<()> {
    let body = serde_json::json!({ "error": code, "message": message }).to_string() + "\n";
    let mut extra = String::new();
    for (n, v) in headers {
        extra.push_str(&format!("{n}: {v}\r\n"));
    }
    write_response(stream, status, "application/json", &extra, &body)
}

fn reply(stream: &mut TcpStream, status: u16, kind: &str, body: &str) -> std::io::Result<()> {
    write_response(stream, status, kind, "", body)
}

fn write_response(
    stream: &mut TcpStream,
    status: u16,
    kind: &str,
    extra: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = crate::server::reason(status);
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n{extra}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    stream.flush()
}
