//! What a run measured: each worker's own [`Stats`], and their merge.
//!
//! A worker records into its `Stats` alone (one `RefCell` borrow per response, memory no other
//! core touches). The only shared state is [`Live`]: relaxed atomic stores of a worker's own
//! running totals that the progress thread reads once a second. Stats cross threads only when
//! a worker hands its final copy (and, with `--hdr-log`, each second's histogram) to the main
//! thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::client::Handshake;

/// Highest latency tracked, in microseconds (one hour).
const MAX_LATENCY_US: u64 = 3_600_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Why a request got no response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// TCP connect or TLS handshake failed.
    Connect,
    /// No whole response within `--timeout`.
    Timeout,
    /// The connection failed or closed before the response was whole.
    Reset,
    /// The response was not valid HTTP/1.1.
    Parse,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 4] = [
        ErrorKind::Connect,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Parse,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Reset => "reset",
            ErrorKind::Parse => "parse",
        }
    }
}

/// Counts and latencies of one worker, or of several merged.
#[derive(Clone, Debug)]
pub struct Stats {
    pub responses: u64,
    pub bytes: u64,
    /// Responses by status code (index = code, 100..=599; others counted at 0).
    pub status: Vec<u64>,
    pub errors: [u64; 4],
    pub latency_us: Histogram<u64>,
    pub connections: Connections,
}

/// The connections opened during measurement, and their TLS handshakes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Connections {
    pub opened: u64,
    /// TLS handshakes: full ones and resumed ones.
    pub full: u64,
    pub resumed: u64,
    /// Handshakes by the TLS version they negotiated (`TLSv1.3`, `TLSv1.2`), in order.
    pub versions: Vec<(&'static str, u64)>,
    /// What the handshakes negotiated (the first one seen).
    pub cipher_suite: Option<&'static str>,
    pub key_exchange: Option<&'static str>,
}

impl Connections {
    pub fn handshakes(&self) -> u64 {
        self.full + self.resumed
    }

    fn count_version(&mut self, version: &'static str, n: u64) {
        match self.versions.iter_mut().find(|(v, _)| *v == version) {
            Some((_, count)) => *count += n,
            None => {
                self.versions.push((version, n));
                self.versions.sort_by(|a, b| b.0.cmp(a.0));
            }
        }
    }

    fn merge(&mut self, other: &Connections) {
        self.opened += other.opened;
        self.full += other.full;
        self.resumed += other.resumed;
        for &(v, n) in &other.versions {
            self.count_version(v, n);
        }
        self.cipher_suite = self.cipher_suite.or(other.cipher_suite);
        self.key_exchange = self.key_exchange.or(other.key_exchange);
    }
}

/// `TLSv1.3` for rustls's `TLSv1_3`.
fn version_name(v: Option<rustls::ProtocolVersion>) -> &'static str {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "other",
    }
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            responses: 0,
            bytes: 0,
            status: vec![0; 600],
            errors: [0; 4],
            latency_us: new_histogram(),
            connections: Connections::default(),
        }
    }
}

impl Stats {
    #[inline]
    pub fn response(&mut self, status: u16, latency: Duration) {
        self.responses += 1;
        let code = status as usize;
        self.status[if code < 600 { code } else { 0 }] += 1;
        let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        self.latency_us.saturating_record(us);
    }

    #[inline]
    pub fn error(&mut self, kind: ErrorKind) {
        self.errors[kind as usize] += 1;
    }

    /// A connection opened, with its TLS handshake if it has one.
    pub fn opened(&mut self, handshake: Option<Handshake>) {
        let c = &mut self.connections;
        c.opened += 1;
        if let Some(h) = handshake {
            if h.resumed {
                c.resumed += 1;
            } else {
                c.full += 1;
            }
            c.count_version(version_name(h.version), 1);
            c.cipher_suite = c.cipher_suite.or(h.suite);
            c.key_exchange = c.key_exchange.or(h.group);
        }
    }

    pub fn total_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    pub fn merge(&mut self, other: &Stats) {
        self.responses += other.responses;
        self.bytes += other.bytes;
        for (a, b) in self.status.iter_mut().zip(&other.status) {
            *a += b;
        }
        for (a, b) in self.errors.iter_mut().zip(other.errors) {
            *a += b;
        }
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms share bounds");
        self.connections.merge(&other.connections);
    }

    /// Status codes that were seen, with their counts, in order.
    pub fn statuses(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.status
            .iter()
            .enumerate()
            .filter(|&(_, &n)| n > 0)
            .map(|(code, &n)| (code as u16, n))
    }

    /// Errors over all outcomes (0 when nothing happened).
    pub fn error_rate(&self) -> f64 {
        let errors = self.total_errors();
        let all = self.responses + errors;
        if all == 0 {
            0.0
        } else {
            errors as f64 / all as f64
        }
    }
}

/// One worker's running totals for the progress line.
#[derive(Default)]
pub struct Live {
    pub responses: AtomicU64,
    pub errors: AtomicU64,
}

impl Live {
    /// A worker publishes its own totals (it is the only writer, so a store suffices).
    #[inline]
    pub fn publish(&self, stats: &Stats) {
        self.responses.store(stats.responses, Ordering::Relaxed);
        self.errors.store(stats.total_errors(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_merges() {
        let mut a = Stats::default();
        let mut b = Stats::default();
        for i in 0..100 {
            a.response(200, Duration::from_micros(100 + i));
        }
        b.response(404, Duration::from_millis(5));
        b.error(ErrorKind::Timeout);
        a.merge(&b);
        assert_eq!(a.responses, 101);
        assert_eq!(a.statuses().collect::<Vec<_>>(), vec![(200, 100), (404, 1)]);
        assert_eq!(a.errors[ErrorKind::Timeout as usize], 1);
        assert!((a.error_rate() - 1.0 / 102.0).abs() < 1e-9);
        assert!(a.latency_us.max() >= 4_990);
    }

    #[test]
    fn connections_and_handshakes_add_up() {
        let full = Handshake {
            resumed: false,
            version: Some(rustls::ProtocolVersion::TLSv1_3),
            suite: Some("TLS13_AES_256_GCM_SHA384"),
            group: Some("X25519"),
        };
        let resumed = Handshake {
            resumed: true,
            ..full
        };
        let mut a = Stats::default();
        a.opened(Some(full));
        a.opened(Some(resumed));
        a.opened(Some(resumed));
        let mut b = Stats::default();
        b.opened(None);
        b.opened(Some(Handshake {
            version: Some(rustls::ProtocolVersion::TLSv1_2),
            ..full
        }));
        a.merge(&b);
        let c = &a.connections;
        assert_eq!((c.opened, c.full, c.resumed, c.handshakes()), (5, 2, 2, 4));
        assert_eq!(c.versions, vec![("TLSv1.3", 3), ("TLSv1.2", 1)]);
        assert_eq!(c.cipher_suite, Some("TLS13_AES_256_GCM_SHA384"));
        assert_eq!(c.key_exchange, Some("X25519"));
    }
}
