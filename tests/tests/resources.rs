//! Resource bounds through the real binary: the memory an idle keep-alive connection costs.
//!
//! Ten thousand clients each make one request and then sit idle on their connection. The
//! gateway's resident memory (VmRSS from /proc) grows by at most 4 KiB per connection: the
//! large read and write buffers go back to the worker's pool when a request ends, and an idle
//! connection waits in a 1 KiB buffer of its own.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringway_tests::{Origin, Ringway};

const IDLE: usize = 10_000;
const MAX_BYTES_PER_IDLE: usize = 4096;

fn rss_bytes(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// One GET on `s`, reading the whole response (the origin's /hello: 16 bytes).
fn hello(s: &mut TcpStream) {
    s.write_all(b"GET /hello HTTP/1.1\r\nHost: ringway.test\r\nUser-Agent: idle-test\r\nAccept: */*\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !(got.windows(4).any(|w| w == b"\r\n\r\n") && got.ends_with(b"Hello, Ringway!\n")) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200 "));
}

fn raise_nofile() {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: get/setrlimit on a struct owned by this frame.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
    }
    assert!(
        rl.rlim_cur as usize > IDLE + 200,
        "this test needs RLIMIT_NOFILE above {} (it is {})",
        IDLE + 200,
        rl.rlim_cur
    );
}

#[test]
fn an_idle_keep_alive_connection_costs_at_most_4_kib() {
    raise_nofile();
    let origin = Origin::start("a");
    let proxy = Ringway::start(&ringway_tests::forward_all_config(
        1,
        &[&origin.url()],
        "limits:\n  max_connections_per_worker: 20000\n",
    ));
    let addr = proxy.addr();
    // Warm up: the worker's pools, the upstream connection, the allocator's first pages.
    let mut warm: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    for s in &mut warm {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        hello(s);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let before = rss_bytes(proxy.pid());

    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        hello(&mut s);
        idle.push(s);
    }
    // Let the worker's tick return what the burst borrowed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = rss_bytes(proxy.pid());
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        after = rss_bytes(proxy.pid());
    }
    let per_connection = after.saturating_sub(before) / IDLE;
    println!(
        "RSS {} KiB -> {} KiB with {IDLE} idle connections: {per_connection} bytes each",
        before / 1024,
        after / 1024
    );
    assert!(
        per_connection <= MAX_BYTES_PER_IDLE,
        "{per_connection} bytes of RSS per idle connection (at most {MAX_BYTES_PER_IDLE})"
    );
    // Every idle connection is still served.
    for s in idle.iter_mut().step_by(997) {
        hello(s);
    }
    drop(warm);
}
