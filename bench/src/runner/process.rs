//! Child processes the runner starts, and how it stops them on every way out.
//!
//! Each child runs in a process group of its own, so that a Ctrl-C in the terminal reaches only
//! the runner, which then stops its children in order rather than leaving them half-killed. A
//! [`Managed`] child is stopped when it is dropped (a normal end, an error, a panic, or an
//! interrupt noticed by [`interrupted`]): SIGTERM to its whole group, then SIGKILL for what is
//! left after a grace period.

use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::Error;

static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Makes SIGINT, SIGTERM and SIGHUP set a flag instead of killing the runner, so that it can
/// stop its children; [`interrupted`] reads the flag.
pub fn catch_interrupts() -> io::Result<()> {
    let flag = INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(flag))?;
    }
    Ok(())
}

/// Whether the runner was asked to stop.
pub fn interrupted() -> bool {
    INTERRUPTED
        .get()
        .is_some_and(|flag| flag.load(Ordering::Relaxed))
}

/// Fails with [`Error::Interrupted`] once the runner was asked to stop.
pub fn check_interrupt() -> Result<(), Error> {
    if interrupted() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Sleeps `d`, waking early (with an error) when interrupted.
pub fn sleep(d: Duration) -> Result<(), Error> {
    let end = Instant::now() + d;
    loop {
        check_interrupt()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// A command line to start: the program, its arguments, its environment, and the CPUs it may
/// run on (through `taskset`, which every Linux has; empty = anywhere).
pub struct Spec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cpus: Vec<usize>,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
}

impl Spec {
    pub fn new(name: &str, program: impl Into<PathBuf>, log: &Path) -> Spec {
        Spec {
            name: name.to_string(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cpus: Vec::new(),
            log: log.to_path_buf(),
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Spec {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Spec {
        self.env.push((name.to_string(), value.into()));
        self
    }

    pub fn cpus(mut self, cpus: &[usize]) -> Spec {
        self.cpus = cpus.to_vec();
        self
    }

    fn command(&self) -> io::Result<Command> {
        let mut cmd = if self.cpus.is_empty() {
            Command::new(&self.program)
        } else {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu_list(&self.cpus)).arg(&self.program);
            c
        };
        // Both streams into one file, in the order written.
        let log = File::options()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&self.log)?;
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        Ok(cmd)
    }

    /// Starts the command.
    pub fn start(&self) -> Result<Managed, Error> {
        let child = self.command().and_then(|mut c| c.spawn()).map_err(|e| {
            Error::Failed(format!(
                "cannot start {} ({}): {e}",
                self.name,
                self.program.display()
            ))
        })?;
        Ok(Managed {
            name: self.name.clone(),
            log: self.log.clone(),
            child: Some(child),
        })
    }
}

/// `0,2-4` for `[0, 2, 3, 4]`; what `taskset -c` takes.
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    parts.join(",")
}

/// A started child; stopped with its whole process group when dropped.
pub struct Managed {
    pub name: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Managed {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status if it has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits for it to end by itself, at most `limit`; stops it (and fails) when interrupted or
    /// past the limit.
    pub fn wait(&mut self, limit: Duration) -> Result<ExitStatus, Error> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                self.child = None;
                return Ok(status);
            }
            if interrupted() {
                self.stop();
                return Err(Error::Interrupted);
            }
            if Instant::now() > end {
                self.stop();
                return Err(Error::Failed(format!(
                    "{} did not finish within {limit:?}; see {}",
                    self.name,
                    self.log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of what it printed, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }

    /// SIGTERM to its process group, up to 5 s for all of it to go, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = child.id() as i32;
        signal_group(group, libc::SIGTERM);
        let end = Instant::now() + Duration::from_secs(5);
        let mut reaped = false;
        while Instant::now() < end {
            if !reaped {
                reaped = matches!(child.try_wait(), Ok(Some(_)));
            }
            if reaped && !group_alive(group) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} did not stop on SIGTERM within 5 s: killing it",
            self.name
        );
        signal_group(group, libc::SIGKILL);
        let _ = child.wait();
    }
}

impl Drop for Managed {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal_group(group: i32, signal: i32) {
    if group > 0 {
        // SAFETY: kill(2) takes no pointers; a negative pid names the process group that was
        // created for this child (process_group(0)), so nothing else is signalled.
        unsafe {
            libc::kill(-group, signal);
        }
    }
}

/// Whether any process of the group is left.
fn group_alive(group: i32) -> bool {
    // SAFETY: as in signal_group; signal 0 only checks for existence.
    let r = unsafe { libc::kill(-group, 0) };
    r == 0
}

/// The last 20 lines of a log file.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A directory for generated configs and logs, removed when dropped.
pub struct WorkDir {
    pub path: PathBuf,
}

impl WorkDir {
    pub fn new(prefix: &str) -> Result<WorkDir, Error> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|e| Error::Failed(format!("cannot create {}: {e}", path.display())))?;
        Ok(WorkDir { path })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `name` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> Result<PathBuf, Error> {
        let path = self.file(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::Failed(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, contents)
            .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_collapse_runs() {
        assert_eq!(cpu_list(&[0]), "0");
        assert_eq!(cpu_list(&[3, 0, 1, 2, 5]), "0-3,5");
        assert_eq!(cpu_list(&[1, 3, 5]), "1,3,5");
    }

    #[test]
    fn a_dropped_child_is_stopped_with_its_group() {
        let dir = WorkDir::new("ringway-bench-test").unwrap();
        // A shell that starts a grandchild: both must go.
        let spec = Spec::new("sleeper", "sh", &dir.file("sleeper.log"))
            .args(["-c", "sleep 30 & sleep 30; wait"]);
        let child = spec.start().unwrap();
        let group = child.pid() as i32;
        std::thread::sleep(Duration::from_millis(100));
        assert!(group_alive(group));
        let started = Instant::now();
        drop(child);
        assert!(!group_alive(group));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_work_dir_is_removed_when_dropped() {
        let dir = WorkDir::new("ringway-bench-test").unwrap();
        let file = dir.write("a/b.conf", "x").unwrap();
        assert!(file.exists());
        let path = dir.path.clone();
        drop(dir);
        assert!(!path.exists());
    }
}
