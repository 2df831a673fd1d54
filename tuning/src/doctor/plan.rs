//! What a configuration asks of the host: the few keys the doctor needs, read from the YAML
//! without the proxy's full model (and so without depending on the proxy crate).

use serde_yaml_ng::Value;

/// The accept backlog Ringway's listeners ask for when the configuration does not say.
pub const DEFAULT_ACCEPT_BACKLOG: u64 = 4096;
/// `runtime.ring_entries` by default.
pub const DEFAULT_RING_ENTRIES: u32 = 1024;
/// `pool.max_idle_per_target` by default.
pub const DEFAULT_MAX_IDLE_PER_TARGET: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    Auto,
    IoUring,
    Epoll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingFlags {
    None,
    CoopTaskrun,
    DeferTaskrun,
    Sqpoll,
}

impl RingFlags {
    pub fn name(self) -> &'static str {
        match self {
            RingFlags::None => "none",
            RingFlags::CoopTaskrun => "coop_taskrun",
            RingFlags::DeferTaskrun => "defer_taskrun",
            RingFlags::Sqpoll => "sqpoll",
        }
    }
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Auto => "auto",
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    /// Target URLs (or whatever the configuration wrote).
    pub targets: Vec<String>,
    pub max_idle_per_target: usize,
}

/// What the configuration needs of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Where it came from (`None` = no configuration: the defaults).
    pub source: Option<String>,
    /// `None` = `auto`: one worker per CPU of `cpus` (or of the CPUs the process may use).
    pub workers: Option<usize>,
    pub cpus: Option<Vec<usize>>,
    /// `None` = derived from RLIMIT_NOFILE at start.
    pub max_connections_per_worker: Option<usize>,
    pub accept_backlog: u64,
    pub listeners: usize,
    pub backends: Vec<Backend>,
    pub ring_entries: u32,
    pub ring_flags: RingFlags,
    pub driver: Driver,
}

impl Plan {
    /// The defaults, with `workers` (None = auto) and a per-worker connection limit (None =
    /// derived from RLIMIT_NOFILE).
    pub fn new(workers: Option<usize>, max_connections_per_worker: Option<usize>) -> Plan {
        Plan {
            source: None,
            workers,
            cpus: None,
            max_connections_per_worker,
            accept_backlog: DEFAULT_ACCEPT_BACKLOG,
            listeners: 1,
            backends: Vec::new(),
            ring_entries: DEFAULT_RING_ENTRIES,
            ring_flags: RingFlags::DeferTaskrun,
            driver: Driver::Auto,
        }
    }

    /// Idle pooled upstream connections one worker may keep, all backends together.
    pub fn pooled_per_worker(&self) -> usize {
        self.backends
            .iter()
            .map(|b| b.targets.len().saturating_mul(b.max_idle_per_target))
            .fold(0usize, usize::saturating_add)
    }

    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.backends
            .iter()
            .flat_map(|b| b.targets.iter().map(String::as_str))
    }

    /// Reads a configuration's text (after `${VAR}` substitution from the environment).
    pub fn from_yaml(text: &str, source: &str) -> Result<Plan, String> {
        let text = substitute(text, &|name| std::env::var(name).ok());
        let doc: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| format!("{source}: not YAML: {e}"))?;
        if !doc.is_mapping() && !doc.is_null() {
            return Err(format!("{source}: the document is not a mapping"));
        }
        let mut plan = Plan::new(None, None);
        plan.source = Some(source.to_string());
        let err = |path: &str, what: &str| format!("{source}: {path}: {what}");

        match doc.get("workers") {
            None | Some(Value::Null) => {}
            Some(v) if v.as_str() == Some("auto") => {}
            Some(v) => match number(v) {
                Some(n) if n >= 1 => plan.workers = Some(n as usize),
                _ => return Err(err("workers", "must be a number (at least 1) or auto")),
            },
        }
        if let Some(v) = doc.get("cpus").filter(|v| !v.is_null()) {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(err("cpus", "must be a CPU list such as \"0-3\"")),
            };
            let cpus = ringway_core::runtime::parse_cpu_list(&text).map_err(|e| err("cpus", &e))?;
            plan.cpus = Some(cpus);
        }
        if let Some(limits) = doc.get("limits") {
            if let Some(v) = limits.get("max_connections_per_worker") {
                match number(v) {
                    Some(n) if n >= 1 => plan.max_connections_per_worker = Some(n as usize),
                    _ => {
                        return Err(err(
                            "limits.max_connections_per_worker",
                            "must be a number of at least 1",
                        ))
                    }
                }
            }
            if let Some(v) = limits.get("accept_backlog") {
                match number(v) {
                    Some(n) if n >= 1 => plan.accept_backlog = n,
                    _ => {
                        return Err(err(
                            "limits.accept_backlog",
                            "must be a number of at least 1",
                        ))
                    }
                }
            }
        }
        match doc.get("listeners") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(list)) => plan.listeners = list.len().max(1),
            Some(_) => return Err(err("listeners", "must be a list")),
        }
        match doc.get("backends") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(list)) => {
                for (i, b) in list.iter().enumerate() {
                    plan.backends
                        .push(backend(b, i).map_err(|e| format!("{source}: {e}"))?);
                }
            }
            Some(_) => return Err(err("backends", "must be a list")),
        }
        if let Some(runtime) = doc.get("runtime").filter(|v| !v.is_null()) {
            if let Some(v) = runtime.get("ring_entries") {
                match number(v) {
                    Some(n) if (2..=32768).contains(&n) && n.is_power_of_two() => {
                        plan.ring_entries = n as u32
                    }
                    _ => {
                        return Err(err(
                            "runtime.ring_entries",
                            "must be a power of two from 2 to 32768",
                        ))
                    }
                }
            }
            if let Some(v) = runtime.get("ring_flags") {
                plan.ring_flags = match v.as_str() {
                    Some("none") => RingFlags::None,
                    Some("coop_taskrun") => RingFlags::CoopTaskrun,
                    Some("defer_taskrun") => RingFlags::DeferTaskrun,
                    Some("sqpoll") => RingFlags::Sqpoll,
                    _ => {
                        return Err(err(
                            "runtime.ring_flags",
                            "must be none, coop_taskrun, defer_taskrun or sqpoll",
                        ))
                    }
                };
            }
            if let Some(v) = runtime.get("driver") {
                plan.driver = match v.as_str() {
                    Some("auto") => Driver::Auto,
                    Some("io_uring") => Driver::IoUring,
                    Some("epoll") => Driver::Epoll,
                    _ => return Err(err("runtime.driver", "must be auto, io_uring or epoll")),
                };
            }
        }
        Ok(plan)
    }
}

fn backend(b: &Value, i: usize) -> Result<Backend, String> {
    let path = format!("backends[{i}]");
    let name = b
        .get("name")
        .and_then(Value::as_str)
        .map_or_else(|| format!("backend-{i}"), str::to_string);
    let targets = match b.get("targets") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(list)) => list
            .iter()
            .map(|t| match t {
                Value::String(s) => s.clone(),
                // No URL (an unset variable, say): counted, its address unknown.
                other => other
                    .get("url")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            })
            .collect(),
        Some(_) => return Err(format!("{path}.targets: must be a list")),
    };
    let max_idle_per_target = match b.get("pool").and_then(|p| p.get("max_idle_per_target")) {
        None | Some(Value::Null) => DEFAULT_MAX_IDLE_PER_TARGET,
        Some(v) => match number(v) {
            Some(n) => n as usize,
            None => return Err(format!("{path}.pool.max_idle_per_target: must be a number")),
        },
    };
    Ok(Backend {
        name,
        targets,
        max_idle_per_target,
    })
}

/// A non-negative integer, written as a number or as a string of digits.
fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Whether a target URL names this machine (`127.0.0.0/8`, `::1`, `localhost`).
pub fn is_loopback_target(target: &str) -> bool {
    let rest = target.split_once("://").map_or(target, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost" || host == "::1" || host.starts_with("127.")
}

/// `${VAR}` and `${VAR:-default}` substitution as the proxy does it; `$${` writes `${`. Unlike
/// the proxy, an unset variable without a default becomes empty instead of an error.
pub fn substitute(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            match after.find(['}', '\n']) {
                Some(close) if after.as_bytes()[close] == b'}' => {
                    let inner = &after[..close];
                    let (name, default) = match inner.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (inner, None),
                    };
                    let value = env(name).filter(|v| !v.is_empty() || default.is_none());
                    out.push_str(&value.unwrap_or_else(|| default.unwrap_or("").to_string()));
                    rest = &after[close + 1..];
                }
                _ => {
                    out.push_str("${");
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}
