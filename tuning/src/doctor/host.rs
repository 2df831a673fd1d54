//! Reading the host: every path is taken under a root (`/` on a real host, a fake tree in
//! tests), and every parser here is lenient: a missing or odd file is `None`, never a panic.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The host under `root`.
pub struct Host {
    root: PathBuf,
    /// Whether `root` is this machine's `/` (only then are syscalls probed).
    real: bool,
}

impl Host {
    pub fn new(root: &Path) -> Host {
        let real = fs::canonicalize(root).is_ok_and(|p| p == Path::new("/"));
        Host {
            root: root.to_path_buf(),
            real,
        }
    }

    pub fn is_real(&self) -> bool {
        self.real
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `rel` (written as an absolute path, e.g. `/proc/sys/...`) under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel.trim_start_matches('/'))
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        fs::read_to_string(self.path(rel)).ok()
    }

    /// The file's text, trimmed.
    pub fn read_trim(&self, rel: &str) -> Option<String> {
        self.read(rel).map(|s| s.trim().to_string())
    }

    pub fn read_num<T: FromStr>(&self, rel: &str) -> Option<T> {
        self.read_trim(rel)?.parse().ok()
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// The names in a directory, sorted naturally (`cpu2` before `cpu10`); empty if unreadable.
    pub fn list_dir(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.path(rel))
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort_by_key(|a| natural_key(a));
        names
    }

    /// Where a symbolic link points, as written in the link.
    pub fn read_link(&self, rel: &str) -> Option<PathBuf> {
        fs::read_link(self.path(rel)).ok()
    }

    /// A CPU list file (`0-3,6`) parsed.
    pub fn read_cpu_list(&self, rel: &str) -> Option<Vec<usize>> {
        let text = self.read_trim(rel)?;
        if text.is_empty() {
            return Some(Vec::new());
        }
        ringway_core::runtime::parse_cpu_list(&text).ok()
    }

    /// A field of `/proc/self/status` (`Seccomp`, `Cpus_allowed_list`, `Groups`, ...).
    pub fn status_field(&self, name: &str) -> Option<String> {
        let status = self.read("/proc/self/status")?;
        status.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    }

    /// A soft and hard limit from `/proc/self/limits` (`u64::MAX` = unlimited).
    pub fn limit(&self, name: &str) -> Option<(u64, u64)> {
        parse_limit(&self.read("/proc/self/limits")?, name)
    }
}

/// Sort key that orders `cpu2` before `cpu10` and `rx-2` before `rx-10`.
fn natural_key(name: &str) -> (String, u64, String) {
    let start = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    let end = name[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(name.len(), |n| start + n);
    (
        name[..start].to_string(),
        name[start..end].parse().unwrap_or(0),
        name[end..].to_string(),
    )
}

/// One line of `/proc/PID/limits`: `Max open files   1024   524288   files`.
pub fn parse_limit(text: &str, name: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let mut fields = line[name.len()..].split_whitespace();
    let value = |s: Option<&str>| match s? {
        "unlimited" => Some(u64::MAX),
        n => n.parse().ok(),
    };
    Some((value(fields.next())?, value(fields.next())?))
}

/// A kernel release such as `6.6.15-amd64` or `5.4.0-150-generic`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Kernel(pub u32, pub u32, pub u32);

impl Kernel {
    pub fn parse(release: &str) -> Option<Kernel> {
        let numeric: String = release
            .trim()
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = numeric.split('.').filter(|p| !p.is_empty());
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let patch = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        Some(Kernel(major, minor, patch))
    }

    pub fn at_least(self, major: u32, minor: u32) -> bool {
        (self.0, self.1) >= (major, minor)
    }
}

impl std::fmt::Display for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// A sorted CPU list written compactly, as the kernel and `taskset -c` write it: `0-3,6`.
pub fn cpu_list_string(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i;
        while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
            j += 1;
        }
        out.push(if j == i {
            sorted[i].to_string()
        } else {
            format!("{}-{}", sorted[i], sorted[j])
        });
        i = j + 1;
    }
    out.join(",")
}

/// Bytes for people: `8 MiB`, `96 KiB`, `512 B`.
pub fn fmt_bytes(n: u64) -> String {
    if n == u64::MAX {
        return "unlimited".into();
    }
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 || value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A limit for people: a number, or `unlimited`.
pub fn fmt_limit(n: u64) -> String {
    if n == u64::MAX {
        "unlimited".into()
    } else {
        n.to_string()
    }
}
