//! The processes of a sweep: a `ringway` started on a config and stopped with SIGTERM, a
//! `ringload` run against it, the proxy's CPU time read from /proc around the measured window.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value as Json;

/// How long `ringway` may take to say it is ready (a debug build with many workers is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped `ringway` may take to drain and exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// ringload opens its connections during this lead before the load (and the warm-up) starts.
const LOAD_LEAD: Duration = Duration::from_millis(100);

/// Finds a program: the path given, else `target/release/NAME` or `target/debug/NAME` under the
/// current directory, else NAME on the PATH.
pub fn find_binary(given: Option<&str>, name: &str) -> Result<PathBuf, String> {
    if let Some(given) = given {
        let p = PathBuf::from(given);
        if p.components().count() > 1 {
            return if p.is_file() {
                Ok(p)
            } else {
                Err(format!("{given}: no such program"))
            };
        }
        return on_path(given).ok_or_else(|| format!("{given}: not found on the PATH"));
    }
    for dir in ["target/release", "target/debug"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    on_path(name).ok_or_else(|| {
        format!(
            "cannot find {name}: not in target/release or target/debug, nor on the PATH (build \
             it with cargo build --release -p ringway -p ringway-loadgen, or pass --{name} BIN)"
        )
    })
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A loopback port nothing listens on at this moment.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A running `ringway run`.
pub struct Proxy {
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts `ringway run --config CONFIG`, copying its stderr to `log`, and waits for its
    /// `ringway: ready` line.
    pub fn start(bin: &Path, config: &Path, log: &Path) -> Result<Proxy, String> {
        let mut child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stderr = child.stderr.take().expect("piped");
        let mut file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let reader = {
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || {
                let mut ready = Some(ready_tx);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(file, "{line}");
                    if line.starts_with("ringway: ready") {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                    }
                    let mut t = tail.lock().expect("tail");
                    if t.len() == 20 {
                        t.pop_front();
                    }
                    t.push_back(line);
                }
            })
        };
        let mut proxy = Proxy {
            child,
            tail,
            reader: Some(reader),
        };
        let started = Instant::now();
        loop {
            match ready_rx.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => return Ok(proxy),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = proxy.child.wait().ok();
                    proxy.join_reader();
                    return Err(format!(
                        "ringway exited before it was ready ({}): {}",
                        status.map_or("?".to_string(), |s| s.to_string()),
                        proxy.tail()
                    ));
                }
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                proxy.join_reader();
                return Err(format!(
                    "ringway exited before it was ready ({status}): {}",
                    proxy.tail()
                ));
            }
            if started.elapsed() > READY_TIMEOUT {
                let tail = proxy.tail();
                proxy.stop();
                return Err(format!(
                    "ringway did not say it was ready within {}s: {tail}",
                    READY_TIMEOUT.as_secs()
                ));
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its last lines on stderr, joined.
    pub fn tail(&self) -> String {
        let t = self.tail.lock().expect("tail");
        t.iter().cloned().collect::<Vec<_>>().join(" | ")
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within the stop timeout.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            self.join_reader();
            return Some(status);
        }
        // SAFETY: kill(2) on the pid of a child this process has not yet waited for.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    break self.child.wait().ok();
                }
            }
        };
        self.join_reader();
        status
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// `ringway check FILE`: Ok, or the errors it printed.
pub fn check(bin: &Path, config: &Path) -> Result<(), String> {
    let out = Command::new(bin)
        .arg("check")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {} check: {e}", bin.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        let text = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(if text.is_empty() {
            format!("ringway check failed ({})", out.status)
        } else {
            text
        })
    }
}

/// The CPU time (user and system, every thread, in microseconds) a process has used, from
/// /proc/PID/stat.
pub fn cpu_us(pid: u32) -> Result<f64, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| format!("/proc/{pid}/stat: unexpected format"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks = |i: usize| -> Result<u64, String> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("/proc/{pid}/stat: no field {}", i + 3))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(total as f64 * 1e6 / clock_ticks())
}

/// Clock ticks a second (the unit of /proc/PID/stat's times).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// What one load run against the proxy gave.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Responses of any status in the measured window.
    pub requests: u64,
    /// ringload's errors (connect, timeout, reset, parse).
    pub errors: u64,
    /// Responses whose status was not 2xx.
    pub non_2xx: u64,
    pub rps: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Proxy CPU time over the CPU window.
    pub cpu_us: f64,
    /// The wall time the CPU was read over: from the end of the warm-up to the end of the
    /// measured window.
    pub cpu_window_s: f64,
    /// Proxy CPU per second of the window divided by the requests per second.
    pub cpu_us_per_request: Option<f64>,
    /// ringload's exit status, when it was not a success.
    pub exit: Option<String>,
    /// ringload's whole JSON document.
    pub load: Json,
}

impl Measured {
    /// Why this run does not count, if it does not.
    pub fn failure(&self) -> Option<String> {
        if self.requests == 0 {
            Some("no responses".into())
        } else if self.errors > 0 || self.non_2xx > 0 {
            Some(format!(
                "{} and {} (status {})",
                super::stats::count(self.errors as usize, "error"),
                super::stats::count(self.non_2xx as usize, "non-2xx answer"),
                self.load["status"]
            ))
        } else {
            self.exit
                .as_ref()
                .map(|status| format!("ringload exited with {status}"))
        }
    }
}

/// How ringload is run.
pub struct Load<'a> {
    pub bin: &'a Path,
    pub url: &'a str,
    pub duration: Duration,
    pub warmup: Duration,
    pub rate: Option<&'a str>,
    pub insecure: bool,
    pub extra: &'a [String],
}

/// Runs ringload against the proxy `pid`, reading the proxy's CPU time at the end of the
/// warm-up and at the end of the measured window. `tick` is called about twice a second while
/// it waits.
pub fn measure(
    load: &Load,
    pid: u32,
    json_path: &Path,
    log: &Path,
    tick: &mut dyn FnMut(),
) -> Result<Measured, String> {
    let mut cmd = Command::new(load.bin);
    cmd.args(load.extra);
    if load.insecure {
        cmd.arg("-k");
    }
    if let Some(rate) = load.rate {
        cmd.arg("-R").arg(rate);
    }
    cmd.arg("-d")
        .arg(format!("{}ms", load.duration.as_millis()))
        .arg("--warmup")
        .arg(format!("{}ms", load.warmup.as_millis()))
        .arg("--json")
        .arg(json_path)
        .arg(load.url);
    let _ = std::fs::remove_file(json_path);
    let out = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("{}: {e}", log.display()))?;
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", load.bin.display()))?;
    let window_start = started + LOAD_LEAD + load.warmup;
    let window_end = window_start + load.duration;
    let mut first: Option<(f64, Instant)> = None;
    let mut last: Option<(f64, Instant)> = None;
    let mut next_tick = Instant::now();
    let status = loop {
        let now = Instant::now();
        if now >= next_tick {
            tick();
            next_tick = now + Duration::from_millis(500);
        }
        if first.is_none() && now >= window_start {
            first = Some((cpu_us(pid)?, Instant::now()));
        }
        if last.is_none() && now >= window_end {
            last = Some((cpu_us(pid)?, Instant::now()));
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for ringload: {e}")),
        }
        let wake = [window_start, window_end, next_tick]
            .into_iter()
            .filter(|t| *t > now)
            .min()
            .unwrap_or(now + Duration::from_millis(5));
        std::thread::sleep(
            wake.saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(1), Duration::from_millis(20)),
        );
    };
    let text = std::fs::read_to_string(json_path).map_err(|_| {
        format!(
            "ringload wrote no results ({status}): {}",
            last_lines(log, 3)
        )
    })?;
    let json: Json =
        serde_json::from_str(&text).map_err(|e| format!("ringload's JSON does not parse: {e}"))?;
    // A run that ended before its window did (an error, or -n) is read up to its end.
    let (cpu0, t0) = first.ok_or_else(|| {
        format!(
            "ringload ended before its warm-up did ({status}): {}",
            last_lines(log, 3)
        )
    })?;
    let (cpu1, t1) = match last {
        Some(l) => l,
        None => (cpu_us(pid)?, Instant::now()),
    };
    let requests = json["requests"].as_u64().unwrap_or(0);
    let ok: u64 = json["status"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(code, _)| code.starts_with('2'))
                .filter_map(|(_, n)| n.as_u64())
                .sum()
        })
        .unwrap_or(0);
    let rps = json["rps"].as_f64().unwrap_or(0.0);
    let window = t1.saturating_duration_since(t0).as_secs_f64();
    let cpu = (cpu1 - cpu0).max(0.0);
    let cpu_us_per_request = (rps > 0.0 && window > 0.0).then(|| cpu / window / rps);
    let latency = |name: &str| json["latency_us"][name].as_f64();
    Ok(Measured {
        requests,
        errors: json["errors"]["total"].as_u64().unwrap_or(0),
        non_2xx: requests.saturating_sub(ok),
        rps,
        p50_us: latency("p50"),
        p99_us: latency("p99"),
        cpu_us: cpu,
        cpu_window_s: window,
        cpu_us_per_request,
        // ringload's own verdict (say, --max-error-rate) stands even when the numbers look fine.
        exit: (!status.success()).then(|| status.to_string()),
        load: json,
    })
}

fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}
