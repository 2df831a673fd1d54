//! Quota counters across restarts: one JSON file holding, per quota policy, the current
//! period's non-zero lines of its shared table.
//!
//! The file is replaced atomically: written to a temporary file in the same directory, synced,
//! renamed over the old one, and the directory synced, so a crash leaves the old file or the
//! new one, never half of one. Usage counted after the last save is lost in a crash. A record
//! only means something to a table laid out like the one that saved it: the same policy id,
//! number of lines, period and first period start, all checked by [`StateFile::records`], and
//! keys hashed to the same `u64`, which the caller's hasher must keep stable across restarts
//! (fixed seeds). Rate windows and concurrency are not saved: they empty within a period.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::quota::{QuotaRecord, SharedQuota};

/// The file format's version; a file of another version is refused, not guessed at.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Body {
    version: u32,
    saved_unix_ms: u64,
    quotas: Vec<PolicyState>,
}

/// One quota policy's saved lines, with the layout they are valid for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyState {
    pub policy: String,
    pub slots: u64,
    pub period_ms: u64,
    pub first_period_start_ms: u64,
    pub records: Vec<QuotaRecord>,
}

/// A loaded state file; empty when there was none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateFile {
    pub saved_unix_ms: u64,
    pub quotas: Vec<PolicyState>,
}

impl StateFile {
    /// The saved records of `policy_id`, for [`SharedQuota::import`]; none when the policy was
    /// not saved or `quota` is laid out differently (its `max_keys`, period or first period
    /// start changed), since its lines would then hold other keys' counts.
    pub fn records(&self, policy_id: &str, quota: &SharedQuota) -> &[QuotaRecord] {
        self.quotas
            .iter()
            .find(|saved| saved.policy == policy_id)
            .filter(|saved| {
                saved.slots == quota.slots() as u64
                    && saved.period_ms == quota.period_ms()
                    && saved.first_period_start_ms == quota.first_period_start_ms()
            })
            .map_or(&[], |saved| &saved.records)
    }

    pub fn is_empty(&self) -> bool {
        self.quotas.is_empty()
    }
}

/// Saves the current period's counters of `quotas`, each under its policy id, to `path`,
/// replacing the file atomically. Tick every core first so that their unpublished bytes are
/// included; their leased calls are included as used.
pub fn save_state(
    path: &Path,
    quotas: &[(&str, &SharedQuota)],
    now_unix_ms: u64,
) -> io::Result<()> {
    let body = Body {
        version: VERSION,
        saved_unix_ms: now_unix_ms,
        quotas: quotas
            .iter()
            .map(|&(policy, quota)| PolicyState {
                policy: policy.to_owned(),
                slots: quota.slots() as u64,
                period_ms: quota.period_ms(),
                first_period_start_ms: quota.first_period_start_ms(),
                records: quota.export(now_unix_ms),
            })
            .collect(),
    };
    let json = serde_json::to_vec(&body).map_err(|e| at(path, "encoding", e.into()))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| at(path, "not a file name", io::ErrorKind::InvalidInput.into()))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = File::create(&tmp).and_then(|mut file| {
        file.write_all(&json)?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(at(path, "writing", e));
    }
    // The rename is durable only once the directory entry is.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| at(dir, "syncing the directory", e))
}

/// Loads a state file written by [`save_state`]. A missing file is an empty state (the first
/// start); an unreadable or corrupt one is an error naming the file and what is wrong with it.
pub fn load_state(path: &Path) -> io::Result<StateFile> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StateFile::default()),
        Err(e) => return Err(at(path, "reading", e)),
    };
    let body: Body = serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: not a valid limit state file ({e}); remove it to start every quota from zero",
                path.display()
            ),
        )
    })?;
    if body.version != VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: limit state file version {}, this build reads version {VERSION}; remove \
                 it to start every quota from zero",
                path.display(),
                body.version
            ),
        ));
    }
    Ok(StateFile {
        saved_unix_ms: body.saved_unix_ms,
        quotas: body.quotas,
    })
}

fn at(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::limit::quota::{LocalQuota, QuotaSpec};
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    const DAY: u64 = 86_400_000;

    /// A fresh directory under the system's temporary one, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("ringway-limit-state-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn spec(max_keys: usize) -> QuotaSpec {
        QuotaSpec {
            calls: Some(1000),
            bandwidth: Some(10_000_000),
            period: Duration::from_millis(DAY),
            first_period_start_ms: 1_700_000_000_000,
            workers: 2,
            max_keys,
        }
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = TempDir::new("round-trip");
        let path = dir.0.join("limits.json");
        let now = 1_700_000_000_000 + 3 * DAY + 1234;
        let (orders, billing) = (
            Arc::new(SharedQuota::new(&spec(100))),
            Arc::new(SharedQuota::new(&spec(5000))),
        );
        let mut core = LocalQuota::new(orders.clone(), &spec(100));
        for key in [1u64, 2, 3] {
            for _ in 0..key * 7 {
                assert!(core.acquire(key, now).admitted);
            }
            core.add_bytes(key, 1_000_000, now);
        }
        let mut core = LocalQuota::new(billing.clone(), &spec(5000));
        assert!(core.acquire(99, now).admitted);

        save_state(&path, &[("orders", &orders), ("billing", &billing)], now).unwrap();
        // Saving again replaces the file and leaves no temporary behind.
        save_state(
            &path,
            &[("orders", &orders), ("billing", &billing)],
            now + 1,
        )
        .unwrap();
        let names: Vec<_> = fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["limits.json"]);

        let state = load_state(&path).unwrap();
        assert_eq!(state.saved_unix_ms, now + 1);
        let restarted = SharedQuota::new(&spec(100));
        assert_eq!(
            state.records("orders", &restarted),
            orders.export(now).as_slice()
        );
        restarted.import(state.records("orders", &restarted), now + 2);
        assert_eq!(restarted.export(now + 2), orders.export(now + 2));
        assert_eq!(state.records("billing", &billing).len(), 1);
        assert!(state.records("nobody", &restarted).is_empty());
    }

    #[test]
    fn records_need_the_same_layout() {
        let dir = TempDir::new("layout");
        let path = dir.0.join("limits.json");
        let now = 1_700_000_000_000;
        let quota = SharedQuota::new(&spec(100));
        let record = QuotaRecord {
            slot: 1,
            period: 0,
            calls: 5,
            bytes: 0,
        };
        quota.import(&[record], now);
        save_state(&path, &[("orders", &quota)], now).unwrap();
        let state = load_state(&path).unwrap();
        assert_eq!(state.records("orders", &quota).len(), 1);
        let bigger = SharedQuota::new(&spec(5000));
        assert!(state.records("orders", &bigger).is_empty(), "other slots");
        let shifted = SharedQuota::new(&QuotaSpec {
            first_period_start_ms: 1_700_000_000_000 + 1000,
            ..spec(100)
        });
        assert!(
            state.records("orders", &shifted).is_empty(),
            "other periods"
        );
    }

    #[test]
    fn a_missing_file_is_an_empty_state() {
        let dir = TempDir::new("missing");
        let state = load_state(&dir.0.join("absent.json")).unwrap();
        assert!(state.is_empty());
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = TempDir::new("corrupt");
        let path = dir.0.join("limits.json");
        fs::write(
            &path,
            b"{\"version\":1,\"saved_unix_ms\":5,\"quotas\":[{\"policy\":",
        )
        .unwrap();
        let e = load_state(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let message = e.to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert!(
            message.contains("not a valid limit state file"),
            "{message}"
        );
        assert!(message.contains("line 1"), "{message}");

        fs::write(&path, b"{\"version\":9,\"saved_unix_ms\":5,\"quotas\":[]}").unwrap();
        let message = load_state(&path).unwrap_err().to_string();
        assert!(message.contains("version 9"), "{message}");
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_the_file() {
        let dir = TempDir::new("unwritable");
        let path = dir.0.join("no-such-dir").join("limits.json");
        let quota = SharedQuota::new(&spec(100));
        let message = save_state(&path, &[("orders", &quota)], 0)
            .unwrap_err()
            .to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
    }
}
