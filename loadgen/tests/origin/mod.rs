//! A small HTTP/1.1 origin for the black-box tests: std threads, one per connection,
//! keep-alive and pipelining, and a few paths with special answers:
//!
//! - `/` : 200, a 16-byte body
//! - `/status/NNN` : that status
//! - `/chunked` : 200 with a chunked body
//! - `/close` : 200 and `Connection: close`
//! - `/slow` : answers after 2 s
//!
//! It counts the requests it answered.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Origin {
    pub port: u16,
    pub served: Arc<AtomicU64>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let served = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&served);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || serve(stream, &counter));
            }
        });
        Origin { port, served }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: TcpStream, served: &AtomicU64) {
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Answer every whole request in the buffer, then write the answers at once.
        let mut out = Vec::new();
        let mut close = false;
        while let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let body_len = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() < end + 4 + body_len {
                break;
            }
            buf.drain(..end + 4 + body_len);
            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
            let head_only = head.starts_with("HEAD ");
            close |= respond(&path, head_only, &mut out);
            served.fetch_add(1, Ordering::SeqCst);
            if close {
                break;
            }
        }
        if !out.is_empty() && stream.write_all(&out).is_err() {
            return;
        }
        if close {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Appends the answer to `path`; true when the connection closes after it.
fn respond(path: &str, head_only: bool, out: &mut Vec<u8>) -> bool {
    let body: &[u8] = if head_only { b"" } else { b"0123456789abcdef" };
    if let Some(code) = path.strip_prefix("/status/") {
        let code: u16 = code.parse().unwrap_or(500);
        out.extend_from_slice(
            format!("HTTP/1.1 {code} X\r\nContent-Length: 4\r\n\r\nnope").as_bytes(),
        );
        return false;
    }
    match path {
        "/chunked" => {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
            out.extend_from_slice(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
            false
        }
        "/close" => {
            out.extend_from_slice(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 16\r\n\r\n",
            );
            out.extend_from_slice(body);
            true
        }
        "/slow" => {
            std::thread::sleep(Duration::from_secs(2));
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            false
        }
        _ => {
            out.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n");
            out.extend_from_slice(body);
            false
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
