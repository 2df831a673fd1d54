//! Keeping quota counters across restarts: loaded before the workers start, saved every
//! `state.persist_interval` by a thread of its own, and once more when the server stops.
//!
//! The counters live in the node-wide tables, which any thread may read, so saving never
//! involves a worker. What a crash loses is bounded by the interval (plus the bytes a core
//! has not yet published, at most 100 ms of them).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::policy::limit::{load_state, save_state};
use crate::policy::run::{unix_ms, NodePolicies};

/// Where the state of `config` is kept: `state.path`, else beside the configuration file
/// (`gateway.yaml.state`). None when there are no quotas, or no file to put it beside.
pub fn state_path(config: &Config) -> Option<PathBuf> {
    if config.policy_tables.quota.is_empty() {
        return None;
    }
    if let Some(path) = &config.state.path {
        return Some(path.clone());
    }
    let source = Path::new(&config.source);
    if !source.is_file() {
        log::warn!("quota counters will not survive a restart: set state.path to keep them");
        return None;
    }
    let mut name = source.as_os_str().to_owned();
    name.push(".state");
    Some(PathBuf::from(name))
}

/// Loads saved quota counters into the node's tables. A file that cannot be read is moved
/// aside (kept, for a person to look at) and every quota starts from zero.
pub fn restore(path: &Path, node: &NodePolicies) {
    let state = match load_state(path) {
        Ok(state) => state,
        Err(e) => {
            let aside = path.with_extension(format!("unreadable-{}", unix_ms() / 1000));
            let moved = std::fs::rename(path, &aside).is_ok();
            log::error!(
                "{e}{}",
                if moved {
                    format!(
                        "; moved to {} and starting every quota from zero",
                        aside.display()
                    )
                } else {
                    "; starting every quota from zero".to_string()
                }
            );
            return;
        }
    };
    let now = unix_ms();
    let mut restored = 0;
    for (shared, _, id) in &node.quota {
        let records = state.records(id, shared);
        restored += records.len();
        shared.import(records, now);
    }
    if restored > 0 {
        log::info!("restored {restored} quota counters from {}", path.display());
    }
}

fn save(path: &Path, node: &NodePolicies) {
    let quotas: Vec<(&str, &crate::policy::limit::SharedQuota)> = node
        .quota
        .iter()
        .map(|(shared, _, id)| (id.as_str(), &**shared))
        .collect();
    if let Err(e) = save_state(path, &quotas, unix_ms()) {
        log::error!("cannot save quota counters: {e}");
    }
}

fn current(control: &super::Control) -> Arc<NodePolicies> {
    Arc::clone(&control.node.lock().unwrap_or_else(|e| e.into_inner()))
}

/// The thread that saves the counters every `interval`, and once more when stopped.
pub struct Keeper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    /// Saves the counters of the tables `control` serves (a reload may replace them).
    pub fn start(path: PathBuf, control: Arc<super::Control>, interval: Duration) -> Keeper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ringway-state".into())
            .spawn(move || {
                let mut next = Instant::now() + interval;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20).min(interval));
                    if Instant::now() >= next {
                        save(&path, &current(&control));
                        next = Instant::now() + interval;
                    }
                }
                save(&path, &current(&control));
            })
            .ok();
        if thread.is_none() {
            log::error!("cannot start the thread that saves quota counters; they will not survive a restart");
        }
        Keeper { stop, thread }
    }

    /// Saves once more and stops (after the workers have finished).
    pub fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
