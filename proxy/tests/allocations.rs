//! Allocations per proxied request, counted on the worker threads in steady state.
//!
//! The proxy runs in this process with a counting global allocator; only allocations made on
//! ringway's worker threads are counted (the test's own client and origin threads are not).
//! The figure is stated in docs/architecture.md; this test keeps it from growing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: defers to the system allocator; the counter has no effect on memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTED.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTED.try_with(Cell::get).unwrap_or(false) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A keep-alive origin answering every request with a 16-byte body.
fn origin() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let stream = stream.unwrap();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                let mut line = String::new();
                loop {
                    // Read one head (GETs only: no body).
                    let mut empty_head = true;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        empty_head = false;
                    }
                    if empty_head {
                        return;
                    }
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 16\r\ncontent-type: text/plain\r\n\r\n0123456789abcdef";
                    if writer.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn get(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>) {
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nhost: example.test\r\nuser-agent: alloc-test\r\naccept: */*\r\n\r\n")
        .unwrap();
    let mut line = String::new();
    let mut length = 0usize;
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap();
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
}

/// Starts the server on `yaml` (with `{origin}` replaced), warms it up, and returns the
/// allocations per GET made on its worker over 20,000 keep-alive requests.
fn allocations_per_get(yaml: &str) -> f64 {
    // One server at a time: the counter is shared by every worker thread in the process.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let origin = origin();
    let yaml = yaml.replace("{origin}", &origin.to_string());
    let config = ringway::config::load_str(&yaml, "alloc.yaml", &|_| None).unwrap();
    let snapshot = ringway::snapshot::Snapshot::build(config).unwrap();
    let hook: ringway::server::ThreadHook = Arc::new(|_| COUNTED.with(|c| c.set(true)));
    let server = ringway::server::Server::start(snapshot, Some(hook)).unwrap();
    let addr = server.listeners[0].1;

    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for _ in 0..2_000 {
        get(&mut stream, &mut reader);
    }
    const N: u64 = 20_000;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..N {
        get(&mut stream, &mut reader);
    }
    let per_request = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / N as f64;
    server.control.drain();
    drop(stream);
    // Wait for the workers to exit, so that none of their allocations count for the next.
    let _ = server.wait(std::time::Duration::from_secs(5));
    per_request
}

const BARE: &str = "workers: 1\nlisteners:\n  - address: 127.0.0.1:0\nbackends:\n  - name: b\n    targets:\n      - url: http://{origin}\nroutes:\n  - backend: b\n";

/// An API whose every request passes a rate limit, a quota and a cache lookup.
fn api(store: bool) -> String {
    let outbound = if store {
        "    outbound:\n      - cache-store: { duration: 1h }\n"
    } else {
        ""
    };
    format!(
        "workers: 1\nlisteners:\n  - address: 127.0.0.1:0\nbackends:\n  - name: b\n    targets:\n      - url: http://{{origin}}\n\
         apis:\n  - name: hello\n    path: /\n    backend: b\n    policies:\n      inbound:\n\
         \x20       - rate-limit-by-key: {{ calls: 1000000000, renewal_period: 1h, counter_key: \"{{ip}}\" }}\n\
         \x20       - quota-by-key: {{ calls: 1000000000, renewal_period: 1h, counter_key: \"{{ip}}\" }}\n\
         \x20       - cache-lookup: {{}}\n  {outbound}"
    )
}

#[test]
fn allocations_per_proxied_get() {
    let per_request = allocations_per_get(BARE);
    println!("allocations per proxied GET on the worker: {per_request:.3}");
    // Steady state allocates nothing per request; the tick timer accounts for the rest.
    assert!(per_request < 0.1, "{per_request} allocations per request");
}

#[test]
fn allocations_per_proxied_get_with_metrics_and_the_access_log() {
    let dir = std::env::temp_dir().join(format!("ringway-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let yaml = format!(
        "{BARE}admin: {{address: 127.0.0.1:0}}\naccess_log: {{path: {}}}\n",
        log.display()
    );
    let per_request = allocations_per_get(&yaml);
    println!("allocations per proxied GET with the access log on: {per_request:.3}");
    let lines = std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(lines > 0, "the access log was written");
    assert!(per_request < 0.1, "{per_request} allocations per request");
}

#[test]
fn allocations_per_get_through_limits_and_a_cache_miss() {
    let per_request = allocations_per_get(&api(false));
    println!("allocations per GET, rate limit + quota + cache miss: {per_request:.3}");
    assert!(per_request <= 4.0, "{per_request} allocations per request");
}

#[test]
fn allocations_per_get_through_limits_and_a_cache_hit() {
    let per_request = allocations_per_get(&api(true));
    println!("allocations per GET, rate limit + quota + cache hit: {per_request:.3}");
    assert!(per_request <= 4.0, "{per_request} allocations per request");
}

/// Versions told apart by a header (here the client's `user-agent`, which the test sends):
/// the version's condition is matched on the request head as it is.
#[test]
fn allocations_per_get_to_a_header_versioned_api() {
    let yaml = "workers: 1\nlisteners:\n  - address: 127.0.0.1:0\nbackends:\n  - name: b\n    targets:\n      - url: http://{origin}\n\
                version_sets:\n  - { name: s, scheme: header, header: user-agent }\n\
                apis:\n  - { name: a1, path: /, version_set: s, version: alloc-test, backend: b }\n  \
                - { name: a2, path: /, version_set: s, version: other, backend: b }\n";
    let per_request = allocations_per_get(yaml);
    println!("allocations per GET to a header-versioned API: {per_request:.3}");
    assert!(per_request < 0.1, "{per_request} allocations per request");
}
