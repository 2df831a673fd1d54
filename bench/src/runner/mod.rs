//! The runner: whole proxies under load on one machine, measured the same way.
//!
//! - `peers` ([`peers`]): Ringway, nginx and HAProxy, one worker each, in front of one nginx
//!   origin, driven in interleaved rounds; ratios to nginx.
//! - `scaling` ([`scaling`]): Ringway alone at 1, 2, 4, ... workers in front of a Ringway
//!   origin; needs nothing but our own binaries.
//! - TLS: the `ringway-tls` and `nginx-tls` contenders of `peers` terminate TLS with one
//!   certificate made for the run ([`tls`]), measured in the [`TlsMode`]s.
//!
//! Every figure of a run comes from the same window: the load generator's requests and
//! latencies, and the `/proc` CPU time of the proxy's and the origin's process trees sampled
//! just before and after it. Nothing started here outlives the runner ([`process`]).

pub mod contender;
pub mod load;
pub mod peers;
pub mod probe;
pub mod proc_stat;
pub mod process;
pub mod report;
pub mod scaling;
pub mod tls;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use contender::{Binaries, Running};
use load::{Driver, Load, Measured};

/// Why a runner stopped.
#[derive(Debug)]
pub enum Error {
    /// Ctrl-C, SIGTERM or SIGHUP.
    Interrupted,
    /// Bad arguments: the message says which.
    Usage(String),
    Failed(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Interrupted => f.write_str("interrupted; everything it started is stopped"),
            Error::Usage(m) | Error::Failed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// A response body size the origin serves, at its own path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodySize {
    /// `16B`, `1KiB`, `16KiB`.
    pub name: String,
    /// `/16`, `/1k`, `/16k`.
    pub path: String,
    pub bytes: usize,
}

impl BodySize {
    /// `16`, `1k`, `16k` (k = 1024).
    pub fn parse(text: &str) -> Option<BodySize> {
        let (digits, scale, unit) = match text.strip_suffix(['k', 'K']) {
            Some(d) => (d, 1024, "KiB"),
            None => (text, 1, "B"),
        };
        let n: usize = digits.parse().ok().filter(|&n| n > 0)?;
        Some(BodySize {
            name: format!("{n}{unit}"),
            path: format!("/{}", text.to_ascii_lowercase()),
            bytes: n * scale,
        })
    }

    pub fn parse_list(text: &str) -> Result<Vec<BodySize>, Error> {
        text.split(',')
            .map(|b| {
                BodySize::parse(b.trim()).ok_or_else(|| {
                    Error::Usage(format!("--bodies: {b:?} is not a size like 16, 1k or 16k"))
                })
            })
            .collect()
    }
}

/// How the TLS contenders are loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Keep-alive connections, each opened (one handshake) before the measured window.
    KeepAlive,
    /// A new connection per request, offering no session: every handshake is full.
    Full,
    /// A new connection per request, offering the session (TLS 1.3 ticket) an earlier
    /// connection was given.
    Resumed,
}

impl TlsMode {
    pub const ALL: [TlsMode; 3] = [TlsMode::KeepAlive, TlsMode::Full, TlsMode::Resumed];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::KeepAlive => "keepalive",
            TlsMode::Full => "full",
            TlsMode::Resumed => "resumed",
        }
    }

    /// The name in the tables.
    pub fn label(self) -> &'static str {
        match self {
            TlsMode::KeepAlive => "keep-alive",
            TlsMode::Full => "full handshake",
            TlsMode::Resumed => "resumed",
        }
    }

    pub fn parse_list(text: &str) -> Result<Vec<TlsMode>, Error> {
        text.split(',')
            .map(|m| {
                let m = m.trim();
                TlsMode::ALL
                    .into_iter()
                    .find(|t| t.name() == m)
                    .ok_or_else(|| {
                        Error::Usage(format!(
                            "--tls-modes: {m:?} is not keepalive, full or resumed"
                        ))
                    })
            })
            .collect()
    }

    /// A connection per request.
    pub fn new_connection(self) -> bool {
        self != TlsMode::KeepAlive
    }

    /// Whether the client offers sessions to resume.
    pub fn resume(self) -> bool {
        self != TlsMode::Full
    }
}

/// The options both modes share, and each mode's own.
#[derive(Clone, Debug)]
pub struct Options {
    pub quick: bool,
    pub rounds: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub bodies: Vec<BodySize>,
    /// peers: the fixed rate of the open-loop runs (0: none).
    pub rate: u64,
    /// peers: which contenders.
    pub contenders: Vec<contender::Kind>,
    /// peers, TLS contenders: which ways of loading them.
    pub tls_modes: Vec<TlsMode>,
    /// peers, TLS contenders: the fixed rate of the open-loop runs with a connection per
    /// request (0: none).
    pub handshake_rate: u64,
    /// scaling: worker counts (empty: 1, 2, 4, ... up to the machine's CPUs).
    pub workers: Vec<usize>,
    pub driver: DriverChoice,
    pub ringload: Option<PathBuf>,
    pub ringway: Option<PathBuf>,
    pub build: bool,
    pub out: PathBuf,
    /// The command line, for the report.
    pub command: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverChoice {
    Ringload,
    Wrk,
}

/// The workspace root: the current directory when it is one (a checkout copied to another
/// machine with prebuilt binaries), otherwise the one this crate was built in.
pub fn repo_root() -> PathBuf {
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent");
    root_from(std::env::current_dir().ok().as_deref(), built_in)
}

/// `cwd` when it is a checkout (it holds the example config and `bench/`), else `built_in`.
fn root_from(cwd: Option<&Path>, built_in: &Path) -> PathBuf {
    let is_root =
        |dir: &Path| dir.join("examples/basic-proxy.yaml").is_file() && dir.join("bench").is_dir();
    match cwd {
        Some(dir) if is_root(dir) => dir.to_path_buf(),
        _ => built_in.to_path_buf(),
    }
}

/// Builds what the runs need (unless told not to) and says where it is.
pub fn prepare(opts: &Options) -> Result<(Binaries, Driver), Error> {
    let repo = repo_root();
    let release = repo.join("target/release");
    let need_ringload = opts.driver == DriverChoice::Ringload && opts.ringload.is_none();
    if opts.build {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.current_dir(&repo)
            .args(["build", "--release", "-p", "ringway"]);
        if need_ringload {
            cmd.args(["-p", "ringway-loadgen"]);
        }
        eprintln!("building: {cmd:?}");
        let ok = cmd.status().is_ok_and(|s| s.success());
        if !ok {
            return Err(Error::Failed("cargo build failed".into()));
        }
    }
    let ringway = opts
        .ringway
        .clone()
        .unwrap_or_else(|| release.join("ringway"));
    let driver = match opts.driver {
        DriverChoice::Wrk => {
            contender::ensure_installed(&[("wrk", "wrk")])?;
            Driver::Wrk
        }
        DriverChoice::Ringload => Driver::Ringload(
            opts.ringload
                .clone()
                .unwrap_or_else(|| release.join("ringload")),
        ),
    };
    for path in std::iter::once(&ringway).chain(match &driver {
        Driver::Ringload(p) => Some(p),
        Driver::Wrk => None,
    }) {
        if !path.is_file() {
            return Err(Error::Failed(format!(
                "{} is missing: build it (cargo build --release -p ringway -p ringway-loadgen) \
                 or leave out --no-build",
                path.display()
            )));
        }
    }
    Ok((Binaries { repo, ringway }, driver))
}

/// What one measured window gives, besides the load generator's figures.
pub struct Window {
    pub measured: Measured,
    pub proxy_cpu_us: f64,
    pub origin_cpu_us: f64,
}

impl Window {
    /// The proxy's CPU per request divided by the origin's (see [`normalised`]).
    pub fn normalised(&self) -> f64 {
        normalised(self.proxy_cpu_us, self.origin_cpu_us)
    }
}

/// A proxy's CPU per request divided by the origin's in the same window: the figure that host
/// drift cancels out of (0 when the origin's is unknown).
pub fn normalised(proxy_cpu_us: f64, origin_cpu_us: f64) -> f64 {
    if origin_cpu_us > 0.0 {
        proxy_cpu_us / origin_cpu_us
    } else {
        0.0
    }
}

/// Runs `load` against `proxy` and charges the CPU its and the origin's process trees used over
/// the window to the requests the load generator counted.
pub fn measure(
    driver: &Driver,
    load: &Load,
    dir: &process::WorkDir,
    tag: &str,
    proxy: &Running,
    origin: &Running,
) -> Result<Window, Error> {
    let p0 = proc_stat::sample(proxy.pid());
    let o0 = proc_stat::sample(origin.pid());
    let measured = load::run(driver, load, dir, tag)?;
    let p1 = proc_stat::sample(proxy.pid());
    let o1 = proc_stat::sample(origin.pid());
    if p1.processes == 0 {
        return Err(Error::Failed(format!("{} died during the run", proxy.name)));
    }
    let per_request = |ticks: u64| {
        ticks as f64 * 1e6 / proc_stat::ticks_per_second() as f64 / measured.requests.max(1) as f64
    };
    Ok(Window {
        proxy_cpu_us: per_request(p1.cpu_ticks.saturating_sub(p0.cpu_ticks)),
        origin_cpu_us: per_request(o1.cpu_ticks.saturating_sub(o0.cpu_ticks)),
        measured,
    })
}

/// The CPU model, the CPU count and the kernel, in a line.
pub fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_default();
    format!(
        "{} CPUs ({model}), Linux {kernel}",
        ringway_core::runtime::allowed_cpus().len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checkout_is_found_from_the_current_directory() {
        let built_in = repo_root();
        assert!(built_in.join("examples/basic-proxy.yaml").is_file());
        // A copy of the checkout elsewhere is taken when run from it.
        let copy = std::env::temp_dir().join(format!("ringway-root-{}", std::process::id()));
        std::fs::create_dir_all(copy.join("examples")).unwrap();
        std::fs::create_dir_all(copy.join("bench")).unwrap();
        std::fs::write(copy.join("examples/basic-proxy.yaml"), "").unwrap();
        assert_eq!(root_from(Some(&copy), &built_in), copy);
        // Any other directory (bench/ itself, where cargo runs tests) falls back.
        assert_eq!(
            root_from(Some(&built_in.join("bench")), &built_in),
            built_in
        );
        assert_eq!(root_from(None, &built_in), built_in);
        std::fs::remove_dir_all(&copy).unwrap();
    }

    #[test]
    fn body_sizes_parse() {
        let b = BodySize::parse_list("16,1k,16K").unwrap();
        assert_eq!(
            b.iter()
                .map(|b| (b.name.as_str(), b.path.as_str(), b.bytes))
                .collect::<Vec<_>>(),
            [
                ("16B", "/16", 16),
                ("1KiB", "/1k", 1024),
                ("16KiB", "/16k", 16384)
            ]
        );
        assert!(BodySize::parse_list("16,x").is_err());
        assert!(BodySize::parse("0").is_none());
    }

    #[test]
    fn tls_modes_parse() {
        assert_eq!(
            TlsMode::parse_list("keepalive, full,resumed").unwrap(),
            TlsMode::ALL
        );
        assert!(TlsMode::parse_list("full,zero-rtt").is_err());
        assert!(!TlsMode::KeepAlive.new_connection());
        assert!(TlsMode::Full.new_connection() && !TlsMode::Full.resume());
        assert!(TlsMode::Resumed.new_connection() && TlsMode::Resumed.resume());
    }
}
