//! Reloading listener certificates while serving: on SIGHUP, and when a watched file changes
//! (polled once a second by modification time, which also sees a file replaced by a rename or
//! a symlink swap, as secret managers do).
//!
//! Each reload is all or nothing per listener (see [`ServerTls::reload`]); a failure is
//! reported with the file and the reason, and the certificates in force keep serving. A change
//! that failed is not retried until the files change again, so a half-written pair is
//! reported once and picked up as soon as it is whole.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::ServerTls;

const POLL: Duration = Duration::from_secs(1);

struct Watched {
    listener: String,
    tls: Arc<ServerTls>,
    /// The file times of the last reload that failed.
    failed: Option<Vec<Option<SystemTime>>>,
}

pub struct CertWatch {
    watched: Vec<Watched>,
    next_poll: Instant,
}

impl CertWatch {
    pub fn new(config: &crate::config::Config) -> CertWatch {
        CertWatch {
            watched: config
                .listeners
                .iter()
                .filter_map(|l| {
                    l.tls.as_ref().map(|tls| Watched {
                        listener: l.name.clone(),
                        tls: Arc::clone(tls),
                        failed: None,
                    })
                })
                .collect(),
            next_poll: Instant::now() + POLL,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }

    /// Reloads every TLS listener's certificates (SIGHUP).
    pub fn reload_all(&mut self, why: &str) {
        for w in &mut self.watched {
            reload(w, why);
        }
    }

    /// Reloads the listeners whose watched files changed; cheap when called more often than
    /// once a second.
    pub fn poll(&mut self, now: Instant) {
        if now < self.next_poll {
            return;
        }
        self.next_poll = now + POLL;
        for w in &mut self.watched {
            if !w.tls.spec.watch || !w.tls.files_changed() {
                continue;
            }
            if w.failed.as_ref() == Some(&w.tls.file_times()) {
                continue;
            }
            reload(w, "a certificate file changed");
        }
    }
}

fn reload(w: &mut Watched, why: &str) {
    match w.tls.reload() {
        Ok(()) => {
            w.failed = None;
            eprintln!(
                "ringway: listener {}: certificates reloaded ({why})",
                w.listener
            );
        }
        Err(e) => {
            w.failed = Some(w.tls.file_times());
            eprintln!(
                "ringway: error: listener {}: certificates not reloaded ({why}): {e}; \
                 the previous certificates keep serving",
                w.listener
            );
        }
    }
}
