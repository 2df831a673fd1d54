//! The cache purge entry point: a purge posted from any thread reaches every worker's cache,
//! and the ticket says when it has. (The admin API exposes this; here it is driven through
//! the server's own handle.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringway::policy::cache::build_prefix;

/// A keep-alive origin whose body is the number of requests it has served.
fn origin(served: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            let served = Arc::clone(&served);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                loop {
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                    let body = format!("n={n:04}");
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if writer.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// GET `path` on a new connection (so that both workers take some); the body.
fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: shop.test\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_purge_reaches_every_workers_cache() {
    let served = Arc::new(AtomicUsize::new(0));
    let origin = origin(Arc::clone(&served));
    let yaml = format!(
        "workers: 2\nlisteners:\n  - address: 127.0.0.1:0\nbackends:\n  - name: b\n    targets:\n      - url: http://{origin}\nroutes:\n  - backend: b\npolicies:\n  inbound:\n    - cache-lookup: {{}}\n  outbound:\n    - cache-store: {{ duration: 1h }}\n"
    );
    let config = ringway::config::load_str(&yaml, "purge.yaml", &|_| None).unwrap();
    let snapshot = ringway::snapshot::Snapshot::build(config).unwrap();
    let server = ringway::server::Server::start(snapshot, None).unwrap();
    let addr = server.listeners[0].1;

    // Fill both workers' caches: many connections spread over both.
    for _ in 0..40 {
        get(addr, "/catalog/a");
        get(addr, "/catalog/b");
        get(addr, "/other");
    }
    let filled = served.load(Ordering::SeqCst);
    assert!(
        filled <= 6,
        "each worker fetches each path once: {filled} fetches"
    );
    for _ in 0..20 {
        get(addr, "/catalog/a");
    }
    assert_eq!(served.load(Ordering::SeqCst), filled, "all hits");

    // Purge everything under /catalog on every core.
    let mut prefix = Vec::new();
    build_prefix(&mut prefix, b"shop.test", b"/catalog/");
    let ticket = server.policies.purge.purge_prefix(&prefix);
    assert!(
        ticket.wait(Duration::from_secs(5)),
        "every core applied the purge"
    );
    assert_eq!(ticket.cores_done(), 2);
    assert!(ticket.removed() >= 2, "removed {}", ticket.removed());

    let before = served.load(Ordering::SeqCst);
    let fresh = get(addr, "/catalog/a");
    assert_ne!(
        served.load(Ordering::SeqCst),
        before,
        "purged: fetched again ({fresh})"
    );
    let before = served.load(Ordering::SeqCst);
    for _ in 0..20 {
        get(addr, "/other");
    }
    assert_eq!(
        served.load(Ordering::SeqCst),
        before,
        "outside the prefix: still cached"
    );
    server.control.drain();
}
