//! ringload against a small rustls server on 127.0.0.1 (ECDSA P-256 certificate, TLS 1.3
//! tickets and TLS 1.2 session ids): keep-alive, a new connection per request, with and
//! without resumption; the server's own count of full and resumed handshakes must agree with
//! ringload's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{HandshakeKind, ServerConfig, ServerConnection, StreamOwned};
use serde_json::Value;

#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    full: AtomicU64,
    resumed: AtomicU64,
    requests: AtomicU64,
}

struct TlsOrigin {
    port: u16,
    counts: Arc<Counts>,
}

impl TlsOrigin {
    fn start() -> TlsOrigin {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        config.ticketer = rustls::crypto::ring::Ticketer::new().unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let shared = Arc::clone(&counts);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (config, counts) = (Arc::clone(&config), Arc::clone(&shared));
                std::thread::spawn(move || serve(stream, config, &counts));
            }
        });
        TlsOrigin { port, counts }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }

    fn count(&self, which: fn(&Counts) -> &AtomicU64) -> u64 {
        which(&self.counts).load(Ordering::SeqCst)
    }
}

/// Answers each request with 16 bytes; closes after one that asked for it.
fn serve(tcp: TcpStream, config: Arc<ServerConfig>, counts: &Counts) {
    let _ = tcp.set_nodelay(true);
    counts.connections.fetch_add(1, Ordering::SeqCst);
    let Ok(conn) = ServerConnection::new(config) else {
        return;
    };
    let mut tls = StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut counted = false;
    loop {
        let n = match tls.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if !counted {
            counted = true;
            match tls.conn.handshake_kind() {
                Some(HandshakeKind::Resumed) => &counts.resumed,
                _ => &counts.full,
            }
            .fetch_add(1, Ordering::SeqCst);
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            buf.drain(..end + 4);
            counts.requests.fetch_add(1, Ordering::SeqCst);
            let close = head.contains("\r\nconnection: close");
            let answer: &[u8] = if close {
                b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\nConnection: close\r\n\r\n0123456789abcdef"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n0123456789abcdef"
            };
            if tls.write_all(answer).and_then(|()| tls.flush()).is_err() {
                return;
            }
            if close {
                tls.conn.send_close_notify();
                let _ = tls.flush();
                return;
            }
        }
    }
}

fn run_json(name: &str, args: &[&str]) -> Value {
    let path: PathBuf =
        std::env::temp_dir().join(format!("ringload-tls-{}-{name}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_ringload"))
        .args(args)
        .args(["--json", path.to_str().unwrap()])
        .output()
        .expect("ringload runs");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "{name}: {text}");
    serde_json::from_str(&text).expect("valid JSON")
}

#[test]
fn keep_alive_over_tls_opens_each_connection_once() {
    let origin = TlsOrigin::start();
    let url = origin.url();
    let doc = run_json(
        "keepalive",
        &["-n", "300", "-c", "3", "-w", "1", "-k", &url],
    );
    assert_eq!(doc["requests"], 300, "{doc}");
    assert_eq!(doc["errors"]["total"], 0, "{doc}");
    assert_eq!(doc["new_connection"], false);
    // Opened before the measured window, and never again.
    assert_eq!(doc["connections_opened"], 0, "{doc}");
    assert_eq!(doc["tls"]["handshakes"], 0, "{doc}");
    assert_eq!(origin.count(|c| &c.connections), 3);
    assert_eq!(origin.count(|c| &c.requests), 300);
}

#[test]
fn a_new_connection_per_request_without_resumption_is_all_full_handshakes() {
    let origin = TlsOrigin::start();
    let url = origin.url();
    let doc = run_json(
        "full",
        &[
            "-n",
            "60",
            "-c",
            "2",
            "-w",
            "1",
            "-k",
            "--new-connection",
            "--tls-resume",
            "off",
            &url,
        ],
    );
    assert_eq!(doc["requests"], 60, "{doc}");
    assert_eq!(doc["errors"]["total"], 0, "{doc}");
    assert_eq!(doc["connections_opened"], 60, "{doc}");
    let tls = &doc["tls"];
    assert_eq!(tls["resumption"], "off");
    assert_eq!(
        (&tls["handshakes"], &tls["full"]),
        (&60.into(), &60.into()),
        "{doc}"
    );
    assert_eq!(tls["resumed"], 0, "{doc}");
    assert_eq!(tls["versions"]["TLSv1.3"], 60, "{doc}");
    assert!(tls["cipher_suite"].as_str().unwrap().starts_with("TLS13_"));
    assert_eq!(origin.count(|c| &c.connections), 60);
    assert_eq!(origin.count(|c| &c.full), 60);
    assert_eq!(origin.count(|c| &c.resumed), 0);
}

#[test]
fn a_new_connection_per_request_resumes_with_tls13_tickets() {
    let origin = TlsOrigin::start();
    let url = origin.url();
    let doc = run_json(
        "resumed",
        &[
            "-n",
            "60",
            "-c",
            "2",
            "-w",
            "1",
            "-k",
            "--new-connection",
            "--tls-version",
            "1.3",
            &url,
        ],
    );
    assert_eq!(doc["requests"], 60, "{doc}");
    assert_eq!(doc["errors"]["total"], 0, "{doc}");
    let tls = &doc["tls"];
    assert_eq!(tls["resumption"], "on");
    assert_eq!(tls["handshakes"], 60, "{doc}");
    // Only each connection slot's first handshake has nothing to resume.
    assert!(tls["full"].as_u64().unwrap() <= 2, "{doc}");
    assert!(tls["resumed"].as_u64().unwrap() >= 58, "{doc}");
    assert_eq!(tls["versions"]["TLSv1.3"], 60, "{doc}");
    // The server agrees.
    assert_eq!(
        origin.count(|c| &c.resumed),
        tls["resumed"].as_u64().unwrap()
    );
    assert_eq!(origin.count(|c| &c.full), tls["full"].as_u64().unwrap());
}

#[test]
fn tls12_resumes_too() {
    let origin = TlsOrigin::start();
    let url = origin.url();
    let doc = run_json(
        "tls12",
        &[
            "-n",
            "40",
            "-c",
            "1",
            "-w",
            "1",
            "-k",
            "--new-connection",
            "--tls-version",
            "1.2",
            &url,
        ],
    );
    assert_eq!(doc["requests"], 40, "{doc}");
    let tls = &doc["tls"];
    assert_eq!(tls["versions"]["TLSv1.2"], 40, "{doc}");
    assert_eq!(tls["full"], 1, "{doc}");
    assert_eq!(tls["resumed"], 39, "{doc}");
    assert_eq!(origin.count(|c| &c.resumed), 39);
}

#[test]
fn open_loop_with_a_new_connection_per_request() {
    let origin = TlsOrigin::start();
    let url = origin.url();
    let doc = run_json(
        "open",
        &[
            "--rate",
            "200",
            "-n",
            "100",
            "-c",
            "4",
            "-w",
            "1",
            "-k",
            "--new-connection",
            &url,
        ],
    );
    assert_eq!(doc["requests"], 100, "{doc}");
    assert_eq!(doc["tls"]["handshakes"], 100, "{doc}");
    assert_eq!(origin.count(|c| &c.requests), 100);
}

#[test]
fn many_connections_reopened_at_once_all_resume() {
    // More connections than rustls's own cache keeps tickets for one server (8): each
    // connection's first handshake is full, every later one resumes.
    let origin = TlsOrigin::start();
    let url = origin.url();
    let doc = run_json(
        "many",
        &[
            "-n",
            "640",
            "-c",
            "32",
            "-w",
            "1",
            "-k",
            "--new-connection",
            &url,
        ],
    );
    assert_eq!(doc["requests"], 640, "{doc}");
    let tls = &doc["tls"];
    assert!(tls["full"].as_u64().unwrap() <= 32, "{doc}");
    assert!(tls["resumed"].as_u64().unwrap() >= 608, "{doc}");
    assert_eq!(
        origin.count(|c| &c.resumed),
        tls["resumed"].as_u64().unwrap()
    );
}
