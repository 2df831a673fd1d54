//! Process limits (RLIMIT_MEMLOCK, RLIMIT_NOFILE) and transparent huge pages.

use super::host::{fmt_bytes, fmt_limit};
use super::plan::Driver;
use super::{Ctx, Finding, Verdict};

const MIB: u64 = 1 << 20;
/// Client connections per worker assumed when `max_connections_per_worker` is derived.
pub const NOMINAL_CONNECTIONS_PER_WORKER: u64 = 4096;

/// Memory of one ring of `entries`: 64-byte SQEs, the SQ index array, a CQ twice as large of
/// 16-byte CQEs, and the two ring headers; rounded up to pages.
pub fn ring_bytes(entries: u32) -> u64 {
    let e = u64::from(entries);
    let bytes = e * 64 + e * 4 + 2 * e * 16 + 2 * 4096;
    bytes.div_ceil(4096) * 4096
}

/// RLIMIT_MEMLOCK against the rings' memory (charged to it before Linux 5.12).
pub fn memlock(ctx: &Ctx) -> Finding {
    const CHECK: &str = "memlock";
    let plan = ctx.plan;
    let workers = ctx.workers as u64;
    let need = workers * ring_bytes(plan.ring_entries);
    let rings = format!(
        "{} ring{} of {} entries need about {}",
        workers,
        if workers == 1 { "" } else { "s" },
        plan.ring_entries,
        fmt_bytes(need)
    );
    if plan.driver == Driver::Epoll {
        return Finding::ok(CHECK, "runtime.driver is epoll: no rings to lock");
    }
    let limit = ctx.host.limit("Max locked memory");
    let limit_text = limit.map_or("unknown".into(), |(soft, _)| fmt_bytes(soft));
    if let Some(k) = ctx.kernel.filter(|k| k.at_least(5, 12)) {
        return Finding::ok(
            CHECK,
            format!(
                "Linux {k} charges ring memory to the memory cgroup, not RLIMIT_MEMLOCK \
                 ({limit_text}); {rings}"
            ),
        );
    }
    let Some((soft, hard)) = limit else {
        return Finding::info(
            CHECK,
            format!("cannot read Max locked memory from /proc/self/limits; {rings}"),
        );
    };
    let kernel = ctx
        .kernel
        .map_or("this kernel (version unknown)".into(), |k| {
            format!("Linux {k}")
        });
    if soft >= need {
        return Finding::ok(
            CHECK,
            format!(
                "{kernel} charges ring memory to RLIMIT_MEMLOCK: {rings}, the limit is {}",
                fmt_bytes(soft)
            ),
        );
    }
    let suggest = (need * 2).div_ceil(MIB) * MIB;
    let verdict = if plan.driver == Driver::IoUring {
        Verdict::Fail
    } else {
        Verdict::Warn
    };
    let consequence = if plan.driver == Driver::IoUring {
        "workers past the limit get ENOMEM and Ringway refuses to start"
    } else {
        "workers past the limit get ENOMEM and fall back to epoll"
    };
    let raise_hard = if hard < suggest {
        " (as root: the hard limit is lower)"
    } else {
        ""
    };
    Finding::new(
        CHECK,
        verdict,
        format!(
            "{kernel} charges ring memory to RLIMIT_MEMLOCK: {rings}, but the limit is {}: \
             {consequence}",
            fmt_bytes(soft)
        ),
        Some(format!(
            "ulimit -l {}{raise_hard}, or LimitMEMLOCK={suggest} in the systemd unit, or docker \
             run --ulimit memlock={suggest}:{suggest}",
            suggest / 1024
        )),
    )
}

/// RLIMIT_NOFILE against client, upstream and pooled connections.
pub fn nofile(ctx: &Ctx) -> Finding {
    const CHECK: &str = "nofile";
    let plan = ctx.plan;
    let host = ctx.host;
    let Some((soft, hard)) = host.limit("Max open files") else {
        return Finding::info(CHECK, "cannot read Max open files from /proc/self/limits");
    };
    let workers = ctx.workers as u64;
    let pooled = plan.pooled_per_worker() as u64;
    // Listener sockets (one per listener per worker), each worker's ring and timer
    // descriptors, and the process's own files.
    let reserve = 64 + workers * (plan.listeners as u64 + 4);
    let (per_worker, how) = match plan.max_connections_per_worker {
        Some(m) => (m as u64, "max_connections_per_worker".to_string()),
        None => {
            // As the proxy derives it: half of what is left after a reserve for pooled
            // connections, divided among the workers.
            let pooled_all = pooled.saturating_mul(workers);
            let usable = hard.saturating_sub(64 + pooled_all.min(hard / 2));
            let derived = (usable / 2 / workers).max(1);
            (
                NOMINAL_CONNECTIONS_PER_WORKER,
                format!(
                    "a nominal {NOMINAL_CONNECTIONS_PER_WORKER} (max_connections_per_worker is \
                     derived from the hard limit: {} here)",
                    fmt_limit(derived)
                ),
            )
        }
    };
    let need = workers
        .saturating_mul(per_worker.saturating_mul(2).saturating_add(pooled))
        .saturating_add(reserve);
    let sums = format!(
        "{workers} worker{} × ({per_worker} client + {per_worker} upstream + {pooled} pooled) + \
         {reserve} reserve = {need} descriptors, for {how}",
        if workers == 1 { "" } else { "s" }
    );
    let limits = format!(
        "RLIMIT_NOFILE {} soft / {} hard (Ringway raises the soft limit to the hard one at start)",
        fmt_limit(soft),
        fmt_limit(hard)
    );
    let file_max = host.read_num::<u64>("/proc/sys/fs/file-max");
    let nr_open = host
        .read_num::<u64>("/proc/sys/fs/nr_open")
        .unwrap_or(1 << 20);
    let suggest = need.next_power_of_two().max(65536);
    let mut fix = Vec::new();
    if suggest > nr_open {
        fix.push(format!("sysctl -w fs.nr_open={suggest}"));
    }
    fix.push(format!(
        "ulimit -n {suggest} (raising the hard limit needs root), or LimitNOFILE={suggest} in \
         the systemd unit, or docker run --ulimit nofile={suggest}:{suggest}"
    ));
    let mut fix = fix.join("; ");
    let system_low = file_max.filter(|&m| m < need);
    if hard >= need {
        if let Some(m) = system_low {
            return Finding::new(
                CHECK,
                Verdict::Warn,
                format!("{sums}; {limits}; but fs.file-max is {m} for the whole system"),
                Some(format!("sysctl -w fs.file-max={}", suggest.max(m * 2))),
            );
        }
        return Finding::ok(CHECK, format!("{sums}; {limits}"));
    }
    if let Some(m) = system_low {
        fix = format!("sysctl -w fs.file-max={}; {fix}", suggest.max(m * 2));
    }
    // A derived limit adapts to the descriptors there are: fewer connections, not failures.
    let (verdict, how_bad) =
        if hard.saturating_mul(2) < need && plan.max_connections_per_worker.is_some() {
            (Verdict::Fail, "far below")
        } else {
            (Verdict::Warn, "below")
        };
    Finding::new(
        CHECK,
        verdict,
        format!("{sums}; {limits}: {how_bad} what the configuration needs"),
        Some(fix),
    )
}

/// Transparent huge pages: `always` adds latency spikes to a proxy's allocation pattern.
pub fn thp(ctx: &Ctx) -> Finding {
    const CHECK: &str = "thp";
    let Some(text) = ctx
        .host
        .read_trim("/sys/kernel/mm/transparent_hugepage/enabled")
    else {
        return Finding::info(CHECK, "no transparent huge page setting visible");
    };
    let mode = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .unwrap_or(text.as_str())
        .to_string();
    match mode.as_str() {
        "always" => Finding::new(
            CHECK,
            Verdict::Warn,
            "transparent huge pages are [always]: faulting in and compacting 2 MiB pages adds \
             latency spikes to a process that allocates and frees as much as a proxy"
                .into(),
            Some(
                "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (and add \
                 transparent_hugepage=madvise to the kernel command line to keep it)"
                    .into(),
            ),
        ),
        "madvise" => Finding::ok(
            CHECK,
            "transparent huge pages are [madvise]: only where a program asks for them",
        ),
        "never" => Finding::ok(CHECK, "transparent huge pages are [never]"),
        other => Finding::info(CHECK, format!("transparent huge pages: {other:?}")),
    }
}
