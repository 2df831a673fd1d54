//! The demo origin: a small HTTP/1.1 server on loopback that `ringway` with no arguments puts
//! behind the gateway, so that a first run needs nothing else.
//!
//! Endpoints: `/hello`, `/echo` (the request body back), `/status/{code}`, `/delay/{ms}`,
//! `/bytes/{n}`. It speaks keep-alive and reads Content-Length and chunked bodies with the same
//! codec the gateway uses; it is a demo and a benchmark origin, not a general web server.

use std::net::SocketAddr;
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpListener, TcpStream};
use ringway_core::http1::{parse_request, BodyFraming, ChunkedDecoder, Limits, RequestHead};

use crate::server::RecvBuf;

const MAX_ECHO: u64 = 64 * 1024 * 1024;

/// Starts the demo origin on its own thread; returns the address it listens on.
pub fn start(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    // monoio's epoll driver expects non-blocking sockets.
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new()
        .name("ringway-demo-origin".into())
        .spawn(move || {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .expect("demo origin runtime");
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).expect("demo origin listener");
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    monoio::spawn(serve(stream));
                }
            });
        })?;
    Ok(local)
}

async fn serve(mut stream: TcpStream) {
    let mut rbuf = RecvBuf::with_capacity(16 * 1024);
    let mut head = RequestHead::default();
    let limits = Limits::default();
    loop {
        let head_len = loop {
            if !rbuf.is_empty() {
                match parse_request(rbuf.data(), &limits, &mut head) {
                    Ok(Some(n)) => break n,
                    Ok(None) => {}
                    Err(e) => {
                        let msg = format!("{e}\n");
                        let _ = respond(
                            &mut stream,
                            e.status(),
                            "text/plain",
                            msg.into_bytes(),
                            false,
                        )
                        .await;
                        return;
                    }
                }
            }
            match rbuf.fill(&mut stream, 64 * 1024).await {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        };
        let buf = rbuf.data();
        let path = String::from_utf8_lossy(head.path(buf)).into_owned();
        let keep_alive = head.keep_alive();
        let is_head = head.is_head(buf);
        let framing = head.framing();
        rbuf.consume(head_len);
        let Some(body) = read_body(&mut stream, &mut rbuf, framing).await else {
            return;
        };
        let (status, ctype, payload) = route(&path, body).await;
        let payload = if is_head { Vec::new() } else { payload };
        if respond(&mut stream, status, ctype, payload, keep_alive)
            .await
            .is_err()
            || !keep_alive
        {
            return;
        }
    }
}

async fn read_body(
    stream: &mut TcpStream,
    rbuf: &mut RecvBuf,
    framing: BodyFraming,
) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    match framing {
        BodyFraming::None | BodyFraming::Close => {}
        BodyFraming::Length(n) => {
            if n > MAX_ECHO {
                return None;
            }
            body.reserve(n as usize);
            while (body.len() as u64) < n {
                if rbuf.is_empty() && rbuf.fill(stream, 256 * 1024).await.ok()? == 0 {
                    return None;
                }
                let take = (n as usize - body.len()).min(rbuf.len());
                body.extend_from_slice(&rbuf.data()[..take]);
                rbuf.consume(take);
            }
        }
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new();
            loop {
                let used = decoder.decode(rbuf.data(), &mut body, false).ok()?;
                rbuf.consume(used);
                if decoder.is_done() {
                    break;
                }
                if body.len() as u64 > MAX_ECHO || rbuf.fill(stream, 256 * 1024).await.ok()? == 0 {
                    return None;
                }
            }
        }
    }
    Some(body)
}

async fn route(path: &str, body: Vec<u8>) -> (u16, &'static str, Vec<u8>) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    match (parts.next().unwrap_or(""), parts.next()) {
        ("hello", None) => (200, "text/plain", b"Hello, Ringway!\n".to_vec()),
        ("echo", None) => (200, "application/octet-stream", body),
        ("status", Some(code)) => match code.parse::<u16>() {
            Ok(code @ 200..=599) => (code, "text/plain", format!("status {code}\n").into_bytes()),
            _ => (400, "text/plain", b"status must be 200..=599\n".to_vec()),
        },
        ("delay", Some(ms)) => match ms.parse::<u64>() {
            Ok(ms) if ms <= 60_000 => {
                monoio::time::sleep(Duration::from_millis(ms)).await;
                (200, "text/plain", format!("delayed {ms} ms\n").into_bytes())
            }
            _ => (400, "text/plain", b"delay must be 0..=60000 ms\n".to_vec()),
        },
        ("bytes", Some(n)) => match n.parse::<usize>() {
            Ok(n) if n as u64 <= MAX_ECHO => (
                200,
                "application/octet-stream",
                (0..n).map(|i| b'a' + (i % 26) as u8).collect(),
            ),
            _ => (400, "text/plain", b"bytes must be 0..=67108864\n".to_vec()),
        },
        _ => (
            404,
            "text/plain",
            b"not found: try /hello, /echo, /status/{code}, /delay/{ms}, /bytes/{n}\n".to_vec(),
        ),
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: Vec<u8>,
    keep_alive: bool,
) -> std::io::Result<()> {
    let no_body = status == 204 || status == 304;
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {ctype}\r\n",
        if status < 400 { "OK" } else { "Error" }
    );
    if !no_body {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    if !keep_alive {
        out.push_str("connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !no_body {
        bytes.extend_from_slice(&body);
    }
    let (res, _) = stream.write_all(bytes).await;
    res.map(|_| ())
}
