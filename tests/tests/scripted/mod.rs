//! A loopback origin whose answers a test can change while it runs: the status of `/healthz`
//! and of every other path, an extra header, and a delay. Shared by the resilience tests
//! (`breaker`, `health`, `balancing_hash`); the common [`ringway_tests::Origin`] has fixed
//! endpoints. Every other path answers with the origin's name as the body.

#![allow(dead_code)] // each test file uses a different part

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    /// 0 means 200.
    status: AtomicU16,
    health: AtomicU16,
    delay_ms: AtomicU64,
    header: Mutex<Option<(String, String)>>,
    requests: AtomicUsize,
    health_checks: AtomicUsize,
}

pub struct Scripted {
    name: String,
    addr: SocketAddr,
    state: Arc<State>,
}

impl Scripted {
    pub fn start(name: &str) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a scripted origin");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (shared, body) = (Arc::clone(&state), name.to_string());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (state, body) = (Arc::clone(&shared), body.clone());
                std::thread::spawn(move || serve(stream, &state, &body));
            }
        });
        Scripted {
            name: name.to_string(),
            addr,
            state,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The status of every path but `/healthz` (200 at first).
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, SeqCst);
    }

    /// The status of `/healthz` (200 at first).
    pub fn set_health(&self, status: u16) {
        self.state.health.store(status, SeqCst);
    }

    /// A header added to every response but `/healthz`'s.
    pub fn set_header(&self, name: &str, value: &str) {
        *self.state.header.lock().unwrap() = Some((name.into(), value.into()));
    }

    /// How long every answer but `/healthz`'s waits.
    pub fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, SeqCst);
    }

    /// Requests for paths other than `/healthz`.
    pub fn requests(&self) -> usize {
        self.state.requests.load(SeqCst)
    }

    pub fn health_checks(&self) -> usize {
        self.state.health_checks.load(SeqCst)
    }
}

fn serve(stream: TcpStream, state: &State, name: &str) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut close = false;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            let lower = header.to_ascii_lowercase();
            close |= lower.starts_with("connection:") && lower.contains("close");
        }
        let (status, extra) = if path == "/healthz" {
            state.health_checks.fetch_add(1, SeqCst);
            (state.health.load(SeqCst), None)
        } else {
            state.requests.fetch_add(1, SeqCst);
            let delay = state.delay_ms.load(SeqCst);
            if delay > 0 {
                std::thread::sleep(Duration::from_millis(delay));
            }
            (
                state.status.load(SeqCst),
                state.header.lock().unwrap().clone(),
            )
        };
        let status = if status == 0 { 200 } else { status };
        let mut response = format!(
            "HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\nx-origin: {name}\r\n",
            name.len()
        );
        if let Some((n, v)) = extra {
            response.push_str(&format!("{n}: {v}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(name);
        if out.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}
