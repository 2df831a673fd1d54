//! Active health checks. Worker 0 runs one task per checked target: every `interval` it sends
//! `GET path` (HTTP/1.1, `Host` the target's authority, `Connection: close`) and reads the
//! status line within `timeout`. When consecutive results cross a threshold it tells every
//! worker, itself included, with a [`HealthChange`] in the worker's inbox; each worker applies
//! its inbox on its tick, into its own per-core table. No lock is taken and no request reads
//! another core's memory.
//!
//! Targets start healthy (traffic flows before the first check). An unhealthy target is
//! skipped like one that is down; when every target of a backend is unhealthy, requests go to
//! them anyway (Envoy's panic mode: a check can be wrong, and a try beats a certain 503). The
//! check does not follow redirects or read the body.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use super::shared::SharedUpstreams;
use crate::config::HealthCheck;
use crate::snapshot::Snapshot;

/// A target crossed a health threshold (`target` is the flattened index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthChange {
    pub target: usize,
    pub healthy: bool,
}

/// Spawns a checking task for every target of every backend with `health_check`, on the
/// calling worker's runtime, each starting from `healthy(target)` (what a reload carried
/// over). They run until the runtime stops or a reload retires `shared`.
pub fn spawn_checks(
    snapshot: &Arc<Snapshot>,
    shared: &Arc<SharedUpstreams>,
    healthy: impl Fn(usize) -> bool,
) {
    for (backend, b) in snapshot.config.backends.iter().enumerate() {
        if b.health_check.is_none() {
            continue;
        }
        for target in snapshot.backend_targets[backend].clone() {
            monoio::spawn(watch(
                Arc::clone(snapshot),
                Arc::clone(shared),
                backend,
                target,
                healthy(target),
            ));
        }
    }
}

async fn watch(
    snapshot: Arc<Snapshot>,
    shared: Arc<SharedUpstreams>,
    backend: usize,
    target: usize,
    healthy: bool,
) {
    let b = &snapshot.config.backends[backend];
    let Some(check) = &b.health_check else {
        return;
    };
    let info = &snapshot.targets[target];
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {}\r\nuser-agent: ringway-health-check\r\nconnection: close\r\n\r\n",
        check.path, info.authority
    )
    .into_bytes();
    let mut tracker = Tracker::new(check);
    tracker.healthy = healthy;
    while !shared.is_retired() {
        let result = probe(info.addr, info.tls.as_ref(), &request, check.timeout).await;
        let passed = matches!(result, Ok(status) if passes(check, status));
        if let Some(healthy) = tracker.observe(passed) {
            let why = match result {
                Ok(status) => format!("status {status}"),
                Err(e) => e,
            };
            if healthy {
                log::info!(
                    "backend {}: target {} is healthy again ({why})",
                    b.name,
                    info.authority
                );
            } else {
                log::warn!(
                    "backend {}: target {} failed {} health checks in a row ({why}); it is skipped until it passes {}",
                    b.name,
                    info.authority,
                    check.unhealthy_threshold,
                    check.healthy_threshold
                );
            }
            shared.broadcast(HealthChange { target, healthy });
        }
        monoio::time::sleep(check.interval).await;
    }
}

fn passes(check: &HealthCheck, status: u16) -> bool {
    check
        .expected_statuses
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&status))
}

/// One check: the status of the answer, or why there was none.
async fn probe(
    addr: SocketAddr,
    tls: Option<&crate::snapshot::TargetTls>,
    request: &[u8],
    timeout: Duration,
) -> Result<u16, String> {
    let exchange = async {
        let mut stream = super::open_addr(addr, tls)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (written, _) = stream.write_all(request.to_vec()).await;
        written.map_err(|e| format!("write: {e}"))?;
        let mut head = Vec::with_capacity(128);
        let mut buf = Vec::with_capacity(512);
        loop {
            let (read, b) = stream.read(buf).await;
            buf = b;
            match read {
                Ok(0) => return Err("closed before a status line".to_string()),
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
            buf.clear();
            if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
                return status_of(&head[..end]).ok_or_else(|| "not an HTTP response".to_string());
            }
            if head.len() > 1024 {
                return Err("no status line in the first 1 KiB".to_string());
            }
        }
    };
    match monoio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// The status of `HTTP/1.x NNN reason`.
fn status_of(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Consecutive results against the thresholds.
struct Tracker {
    healthy: bool,
    /// Results in a row that disagree with `healthy`.
    streak: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl Tracker {
    fn new(check: &HealthCheck) -> Tracker {
        Tracker {
            healthy: true,
            streak: 0,
            healthy_threshold: check.healthy_threshold,
            unhealthy_threshold: check.unhealthy_threshold,
        }
    }

    /// Takes a result; the new state when it changes.
    fn observe(&mut self, passed: bool) -> Option<bool> {
        if passed == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if passed {
            self.healthy_threshold
        } else {
            self.unhealthy_threshold
        };
        if self.streak < needed {
            return None;
        }
        self.healthy = passed;
        self.streak = 0;
        Some(passed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn check(healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            path: "/healthz".into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(200),
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            expected_statuses: vec![(200, 399)],
        }
    }

    #[test]
    fn thresholds_count_results_in_a_row() {
        let mut t = Tracker::new(&check(2, 3));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None, "a pass breaks the run");
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(true), None);
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(status_of(b"HTTP/1.0 503"), Some(503));
        assert_eq!(status_of(b"HTTP/2 200"), None);
        assert_eq!(status_of(b"SSH-2.0-OpenSSH"), None);
        assert!(passes(&check(1, 1), 302));
        assert!(!passes(&check(1, 1), 500));
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn a_probe_sends_the_request_and_reads_the_status_over_a_real_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 512];
            while !got.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
            }
            // The status line in two pieces.
            s.write_all(b"HTTP/1.1 50").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s.write_all(b"3 Service Unavailable\r\n\r\n").unwrap();
            String::from_utf8(got).unwrap()
        });
        let request = b"GET /healthz HTTP/1.1\r\nhost: a:1\r\nconnection: close\r\n\r\n";
        let status = run(probe(addr, None, request, Duration::from_secs(2)));
        assert_eq!(status, Ok(503));
        assert!(server
            .join()
            .unwrap()
            .starts_with("GET /healthz HTTP/1.1\r\nhost: a:1\r\n"));
    }

    #[test]
    fn a_probe_that_gets_no_answer_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepted by the kernel, never answered.
        let result = run(probe(
            addr,
            None,
            b"GET / HTTP/1.1\r\n\r\n",
            Duration::from_millis(100),
        ));
        assert!(result.unwrap_err().starts_with("no answer within"));
        drop(listener);
        let closed = run(probe(
            addr,
            None,
            b"GET / HTTP/1.1\r\n\r\n",
            Duration::from_millis(100),
        ));
        assert!(closed.unwrap_err().starts_with("connect:"));
    }
}
