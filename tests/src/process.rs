//! Starting and stopping the real `ringway` binary.
//!
//! [`Ringway`] owns one child process: its config lives in a temporary file, its stdout and
//! stderr are collected by reader threads (so the pipes never fill and block the proxy), and
//! it is killed when dropped. Listener addresses come from the `ringway: listening on ...`
//! lines, so configs can use port 0.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a proxy may take to print `ringway: ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The `ringway` binary under test: `$RINGWAY_BIN`, else `<workspace>/target/debug/ringway`.
pub fn ringway_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("RINGWAY_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "RINGWAY_BIN={} does not exist",
            bin.display()
        );
        return bin;
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_dir().join("target"),
    };
    let bin = target.join("debug").join("ringway");
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build -p ringway --bins` before the black-box tests \
         (or set RINGWAY_BIN)",
        bin.display()
    );
    bin
}

/// The `ringload` binary: `$RINGLOAD_BIN`, else `<workspace>/target/debug/ringload`.
pub fn ringload_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("RINGLOAD_BIN") {
        return PathBuf::from(bin);
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => workspace_dir().join("target"),
    };
    let bin = target.join("debug").join("ringload");
    assert!(
        bin.is_file(),
        "{} not found: run scripts/test (it builds ringload) or set RINGLOAD_BIN",
        bin.display()
    );
    bin
}

/// The workspace root (the tests crate's parent folder).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
        .to_path_buf()
}

/// A uniquely named scratch folder, removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringway-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary folder");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `name` in the folder and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a temporary file");
        path
    }
}

impl Default for TempDir {
    fn default() -> TempDir {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Output collected from a child's pipes, with a condition variable to wait on new lines.
#[derive(Default)]
struct Captured {
    text: Mutex<String>,
    changed: Condvar,
}

impl Captured {
    fn collect(self: &Arc<Self>, pipe: impl Read + Send + 'static) -> JoinHandle<()> {
        let captured = Arc::clone(self);
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut line = Vec::new();
            while let Ok(n) = reader.read_until(b'\n', &mut line) {
                if n == 0 {
                    break;
                }
                captured
                    .text
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&line));
                captured.changed.notify_all();
                line.clear();
            }
        })
    }

    fn snapshot(&self) -> String {
        self.text.lock().unwrap().clone()
    }
}

/// A running `ringway` process.
pub struct Ringway {
    child: Option<Child>,
    stderr: Arc<Captured>,
    stdout: Arc<Captured>,
    readers: Vec<JoinHandle<()>>,
    listeners: Vec<(String, SocketAddr)>,
    _dir: Option<TempDir>,
    /// Whether the test checks the output for panics itself (see [`Ringway::report_panics_myself`]).
    panics_reported_by_test: bool,
}

impl Ringway {
    /// Writes `yaml` to a temporary file, runs `ringway run --config FILE` and waits for
    /// `ringway: ready`. Panics (with the proxy's stderr) if it does not get there in 10 s.
    pub fn start(yaml: &str) -> Ringway {
        Ringway::start_with_env(yaml, &[])
    }

    /// As [`Ringway::start`], with extra environment variables for the process.
    pub fn start_with_env(yaml: &str, env: &[(&str, &str)]) -> Ringway {
        let dir = TempDir::new();
        let config = dir.write("ringway.yaml", yaml);
        let mut ringway = Ringway::spawn(
            &["run".as_ref(), "--config".as_ref(), config.as_os_str()],
            env,
            None,
        );
        ringway._dir = Some(dir);
        ringway.wait_ready(READY_TIMEOUT);
        ringway
    }

    /// Runs `ringway run --config PATH` on an existing file (relative paths are relative to
    /// the workspace root) and waits for readiness.
    pub fn start_file(path: &str, env: &[(&str, &str)]) -> Ringway {
        let mut ringway = Ringway::spawn(
            &["run".as_ref(), "--config".as_ref(), path.as_ref()],
            env,
            Some(&workspace_dir()),
        );
        ringway.wait_ready(READY_TIMEOUT);
        ringway
    }

    /// Starts `ringway ARGS...` without waiting for anything. `cwd` defaults to the
    /// workspace root.
    pub fn spawn(args: &[&std::ffi::OsStr], env: &[(&str, &str)], cwd: Option<&Path>) -> Ringway {
        let bin = ringway_bin();
        let mut command = Command::new(&bin);
        command
            .args(args)
            .current_dir(cwd.map(Path::to_path_buf).unwrap_or_else(workspace_dir))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let stderr = Arc::new(Captured::default());
        let stdout = Arc::new(Captured::default());
        let readers = vec![
            stderr.collect(child.stderr.take().expect("piped stderr")),
            stdout.collect(child.stdout.take().expect("piped stdout")),
        ];
        Ringway {
            child: Some(child),
            stderr,
            stdout,
            readers,
            listeners: Vec::new(),
            _dir: None,
            panics_reported_by_test: false,
        }
    }

    /// Waits until stderr has `ringway: ready`, then records the listener addresses.
    pub fn wait_ready(&mut self, timeout: Duration) {
        self.wait_for_output(timeout, "`ringway: ready`", |text| {
            text.lines().any(|l| l.starts_with("ringway: ready"))
        });
        self.listeners = parse_listeners(&self.stderr_text());
        assert!(
            !self.listeners.is_empty(),
            "ringway is ready but printed no `ringway: listening on` line:\n{}",
            self.output_text()
        );
    }

    /// Waits until stdout and stderr together satisfy `done`; panics with the output if the
    /// process exits first or `timeout` passes.
    pub fn wait_for_output(&mut self, timeout: Duration, what: &str, done: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.output_text();
            if done(&text) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                // Let the readers drain the pipes so the message shows everything.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                panic!(
                    "ringway exited ({status}) before {what}:\n{}",
                    self.output_text()
                );
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "ringway did not print {what} within {timeout:?}:\n{}",
                self.output_text()
            );
            let guard = self.stderr.text.lock().unwrap();
            let wait = (deadline - now).min(Duration::from_millis(50));
            drop(self.stderr.changed.wait_timeout(guard, wait).unwrap());
        }
    }

    /// By default a panic message in the proxy's output fails the test when the [`Ringway`] is
    /// dropped; a test that collects and reports panics itself turns that off.
    pub fn report_panics_myself(&mut self) {
        self.panics_reported_by_test = true;
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.listeners.first().expect("ringway has no listener").1
    }

    /// The address of the listener named `name`.
    pub fn addr_of(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no listener named {name:?}: {:?}", self.listeners))
            .1
    }

    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    /// The admin listener's address, from its `ringway: admin listening on` line.
    pub fn admin_addr(&mut self) -> SocketAddr {
        const LINE: &str = "ringway: admin listening on http://";
        self.wait_for_output(Duration::from_secs(10), "the admin line", |s| {
            s.contains(LINE)
        });
        self.stderr_text()
            .lines()
            .find_map(|l| l.strip_prefix(LINE))
            .and_then(|addr| addr.trim().parse().ok())
            .expect("the admin line names an address")
    }

    /// The developer portal's own listener (`portal.listener: ADDRESS`), as bound.
    pub fn portal_addr(&mut self) -> SocketAddr {
        const LINE: &str = "ringway: portal listening on http://";
        self.wait_for_output(Duration::from_secs(10), "the portal line", |s| {
            s.contains(LINE)
        });
        self.stderr_text()
            .lines()
            .find_map(|l| l.strip_prefix(LINE))
            .and_then(|rest| rest.trim().trim_end_matches("/portal/").parse().ok())
            .expect("the portal line names an address")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("ringway was waited for").id()
    }

    /// Everything written to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.snapshot()
    }

    /// Everything written to stdout so far.
    pub fn stdout_text(&self) -> String {
        self.stdout.snapshot()
    }

    /// stdout then stderr.
    pub fn output_text(&self) -> String {
        format!("{}{}", self.stdout_text(), self.stderr_text())
    }

    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits for the process to exit and returns its status and complete stderr. Panics (after
    /// killing it) if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("ringway was already waited for");
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for ringway") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                panic!(
                    "ringway did not exit within {timeout:?}; killed it. Output:\n{}",
                    self.output_text()
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        self.child = None;
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        (status, self.stderr_text())
    }
}

impl Drop for Ringway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let output = self.output_text();
        if thread::panicking() {
            eprintln!("--- ringway output ---\n{output}--- end ---");
        } else if output.contains("panicked at") && !self.panics_reported_by_test {
            // A panic inside the proxy is a bug even when every response looked right.
            panic!("ringway panicked during the test:\n{output}");
        }
    }
}

/// `(listener name, address)` from the `ringway: listening on http://ADDR (listener NAME)`
/// lines, in order.
pub fn parse_listeners(stderr: &str) -> Vec<(String, SocketAddr)> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("ringway: listening on ")?;
            let rest = rest
                .strip_prefix("http://")
                .or_else(|| rest.strip_prefix("https://"))
                .unwrap_or(rest);
            let (addr, name) = rest.split_once(' ')?;
            let name = name
                .trim()
                .strip_prefix("(listener ")?
                .strip_suffix(')')?
                .to_string();
            Some((name, addr.parse().ok()?))
        })
        .collect()
}

/// `worker -> requests` from the `ringway: worker W served N requests` lines.
pub fn parse_worker_counts(stderr: &str) -> HashMap<usize, u64> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("ringway: worker ")?;
            let mut words = rest.split_whitespace();
            let worker = words.next()?.parse().ok()?;
            (words.next()? == "served").then_some(())?;
            let served = words.next()?.parse().ok()?;
            Some((worker, served))
        })
        .collect()
}

/// Runs `ringway ARGS...` to completion (from the workspace root) and returns its output.
/// Panics if it runs longer than `timeout`.
pub fn run_ringway(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Output {
    let os_args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_ref()).collect();
    let mut ringway = Ringway::spawn(&os_args, env, None);
    let (status, stderr) = ringway.wait_exit(timeout);
    Output {
        status,
        stdout: ringway.stdout_text().into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listener_and_worker_lines() {
        let stderr = "ringway: listening on http://127.0.0.1:4321 (listener public)\n\
                      ringway: listening on http://[::1]:80 (listener listener-1)\n\
                      ringway: ready (2 workers)\n\
                      ringway: worker 0 served 12 requests\n\
                      ringway: worker 1 served 0 requests\n\
                      ringway: stopped\n";
        assert_eq!(
            parse_listeners(stderr),
            vec![
                ("public".to_string(), "127.0.0.1:4321".parse().unwrap()),
                ("listener-1".to_string(), "[::1]:80".parse().unwrap()),
            ]
        );
        let counts = parse_worker_counts(stderr);
        assert_eq!(counts.get(&0), Some(&12));
        assert_eq!(counts.get(&1), Some(&0));
    }
}
