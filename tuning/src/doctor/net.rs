//! Network sysctls: the accept backlog's caps, the ephemeral port range the upstream pools
//! draw from, and reuse of TIME_WAIT ports.

use super::plan::is_loopback_target;
use super::{Ctx, Finding, Report, SysctlChange, Verdict};

/// The range suggested when the ports run short (leaves the well-known and registered ports
/// below 10000 to services).
const SUGGESTED_LOW_PORT: u64 = 10000;

/// `net.core.somaxconn` caps every `listen()` backlog.
pub fn somaxconn(ctx: &Ctx, report: &mut Report) {
    const CHECK: &str = "somaxconn";
    let backlog = ctx.plan.accept_backlog;
    let Some(v) = ctx.host.read_num::<u64>("/proc/sys/net/core/somaxconn") else {
        report.push(Finding::info(
            CHECK,
            "cannot read /proc/sys/net/core/somaxconn",
        ));
        return;
    };
    if v >= backlog {
        report.push(Finding::ok(
            CHECK,
            format!("net.core.somaxconn = {v}, at least the accept backlog {backlog}"),
        ));
        return;
    }
    let why = format!(
        "the kernel caps listen({backlog}) at net.core.somaxconn ({v} here), so a burst of more \
         than {v} connections that no worker has accepted yet is dropped and clients retry \
         after a second or more"
    );
    report.push(Finding::new(
        CHECK,
        Verdict::Warn,
        format!("net.core.somaxconn = {v}: {why}"),
        Some(format!("sysctl -w net.core.somaxconn={backlog}")),
    ));
    report.sysctl.push(SysctlChange {
        key: "net.core.somaxconn",
        value: backlog.to_string(),
        why: format!("Ringway listens with a backlog of {backlog}; {why}."),
    });
}

/// `net.ipv4.tcp_max_syn_backlog`: half-open connections per listener.
pub fn tcp_max_syn_backlog(ctx: &Ctx, report: &mut Report) {
    const CHECK: &str = "tcp_max_syn_backlog";
    let backlog = ctx.plan.accept_backlog;
    let host = ctx.host;
    let Some(v) = host.read_num::<u64>("/proc/sys/net/ipv4/tcp_max_syn_backlog") else {
        report.push(Finding::info(
            CHECK,
            "cannot read /proc/sys/net/ipv4/tcp_max_syn_backlog",
        ));
        return;
    };
    if v >= backlog {
        report.push(Finding::ok(
            CHECK,
            format!("net.ipv4.tcp_max_syn_backlog = {v}, at least the accept backlog {backlog}"),
        ));
        return;
    }
    let cookies = host.read_num::<u64>("/proc/sys/net/ipv4/tcp_syncookies");
    let overflow = if cookies.is_some_and(|c| c > 0) {
        "answered with SYN cookies (which drop TCP options such as window scaling on those \
         connections)"
    } else {
        "dropped"
    };
    let why = format!(
        "a listener holds at most {v} half-open connections (SYN received, handshake not done), \
         fewer than the accept backlog {backlog}; beyond that new connections are {overflow}"
    );
    report.push(Finding::new(
        CHECK,
        Verdict::Warn,
        format!("net.ipv4.tcp_max_syn_backlog = {v}: {why}"),
        Some(format!("sysctl -w net.ipv4.tcp_max_syn_backlog={backlog}")),
    ));
    report.sysctl.push(SysctlChange {
        key: "net.ipv4.tcp_max_syn_backlog",
        value: backlog.to_string(),
        why: format!("{why}."),
    });
}

/// `net.ipv4.ip_local_port_range` against the upstream pools.
pub fn ip_local_port_range(ctx: &Ctx, report: &mut Report) {
    const CHECK: &str = "ip_local_port_range";
    let plan = ctx.plan;
    let Some((low, high)) = ctx
        .host
        .read("/proc/sys/net/ipv4/ip_local_port_range")
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|n| n.parse::<u64>().ok());
            Some((it.next()??, it.next()??))
        })
        .filter(|(l, h)| l <= h)
    else {
        report.push(Finding::info(
            CHECK,
            "cannot read /proc/sys/net/ipv4/ip_local_port_range",
        ));
        return;
    };
    let ports = high - low + 1;
    let workers = ctx.workers as u64;
    let per_worker = plan.pooled_per_worker() as u64;
    if per_worker == 0 {
        report.push(Finding::ok(
            CHECK,
            format!("{ports} ephemeral ports ({low}-{high}); no upstream pools to fill"),
        ));
        return;
    }
    let pooled = workers.saturating_mul(per_worker);
    // Headroom: connections being opened beyond the idle ones, and the ports of closed
    // connections waiting out TIME_WAIT.
    let wanted = pooled.saturating_mul(2);
    let sums = format!(
        "{workers} worker{} × {per_worker} idle upstream connections (targets × \
         max_idle_per_target) = {pooled}, {wanted} with headroom for connections opening and \
         ports in TIME_WAIT",
        if workers == 1 { "" } else { "s" }
    );
    if ports >= wanted {
        report.push(Finding::ok(
            CHECK,
            format!("{ports} ephemeral ports ({low}-{high}) for {sums}"),
        ));
        return;
    }
    let new_low = if 65535 - SUGGESTED_LOW_PORT + 1 >= wanted {
        low.min(SUGGESTED_LOW_PORT)
    } else {
        low.min(1024)
    };
    let new_high = high.max(65535);
    let still_short = if new_high - new_low + 1 < wanted {
        "; even the widest range is short: lower pool.max_idle_per_target or spread targets \
         over more addresses (ports are per destination)"
    } else {
        ""
    };
    let why = format!(
        "only {ports} ephemeral ports ({low}-{high}) for {sums} (counted as if every target \
         shared one address); when they run out, connect() fails with EADDRNOTAVAIL"
    );
    report.push(Finding::new(
        CHECK,
        Verdict::Warn,
        format!("{why}{still_short}"),
        Some(format!(
            "sysctl -w net.ipv4.ip_local_port_range=\"{new_low} {new_high}\""
        )),
    ));
    report.sysctl.push(SysctlChange {
        key: "net.ipv4.ip_local_port_range",
        value: format!("{new_low} {new_high}"),
        why: format!("{why}."),
    });
}

/// `net.ipv4.tcp_tw_reuse`: lets new upstream connections take ports in TIME_WAIT.
pub fn tcp_tw_reuse(ctx: &Ctx, report: &mut Report) {
    const CHECK: &str = "tcp_tw_reuse";
    let plan = ctx.plan;
    let Some(v) = ctx.host.read_num::<u64>("/proc/sys/net/ipv4/tcp_tw_reuse") else {
        report.push(Finding::info(
            CHECK,
            "cannot read /proc/sys/net/ipv4/tcp_tw_reuse",
        ));
        return;
    };
    let targets: Vec<&str> = plan.targets().collect();
    if targets.is_empty() {
        report.push(Finding::ok(
            CHECK,
            format!("net.ipv4.tcp_tw_reuse = {v}; no upstream targets, so it does not matter"),
        ));
        return;
    }
    let unknown = targets.iter().filter(|t| t.trim().is_empty()).count();
    let remote = targets
        .iter()
        .filter(|t| !t.trim().is_empty() && !is_loopback_target(t))
        .count();
    let why = "every upstream connection Ringway closes first leaves its port in TIME_WAIT for \
               60 s, and without reuse a busy proxy runs out of ports";
    let (verdict, finding) = match v {
        1 => (
            Verdict::Ok,
            "net.ipv4.tcp_tw_reuse = 1: new upstream connections may reuse ports in TIME_WAIT"
                .to_string(),
        ),
        2 if remote + unknown == 0 => (
            Verdict::Ok,
            "net.ipv4.tcp_tw_reuse = 2 (loopback only), and every target is on loopback"
                .to_string(),
        ),
        2 => {
            let which = if remote > 0 {
                format!(
                    "{remote} target{} not on loopback",
                    if remote == 1 { " is" } else { "s are" }
                )
            } else {
                format!(
                    "{unknown} target{} no address in the config (an unset variable?), so may \
                     not be on loopback",
                    if unknown == 1 { " has" } else { "s have" }
                )
            };
            (
                Verdict::Warn,
                format!(
                    "net.ipv4.tcp_tw_reuse = 2 reuses TIME_WAIT ports on loopback only, and \
                     {which}: {why}"
                ),
            )
        }
        _ => (Verdict::Warn, format!("net.ipv4.tcp_tw_reuse = {v}: {why}")),
    };
    if verdict != Verdict::Ok {
        report.sysctl.push(SysctlChange {
            key: "net.ipv4.tcp_tw_reuse",
            value: "1".into(),
            why: format!(
                "{why}; 1 lets a new outgoing connection take a TIME_WAIT port when that is safe \
                 (TCP timestamps tell old segments apart)."
            ),
        });
    }
    report.push(Finding::new(
        CHECK,
        verdict,
        finding,
        Some("sysctl -w net.ipv4.tcp_tw_reuse=1".into()),
    ));
}
