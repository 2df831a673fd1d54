//! Whether io_uring can be used here: the kernel version, `kernel.io_uring_disabled`, seccomp
//! and containers, and an actual `io_uring_setup` on the real host.

use super::plan::{Driver, RingFlags};
use super::probe::{explain_errno, feature_names};
use super::{Ctx, Finding, Host, Verdict};

/// What losing io_uring means for this configuration: a verdict, and why.
fn without_uring(driver: Driver) -> (Verdict, &'static str) {
    match driver {
        Driver::Epoll => (
            Verdict::Ok,
            "runtime.driver is epoll, so io_uring is not needed",
        ),
        Driver::Auto => (
            Verdict::Warn,
            "Ringway falls back to epoll (driver: auto), which costs more CPU per request",
        ),
        Driver::IoUring => (
            Verdict::Fail,
            "runtime.driver is io_uring, so Ringway refuses to start",
        ),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The kernel version against what Ringway's io_uring use needs.
pub fn kernel(ctx: &Ctx) -> Finding {
    const CHECK: &str = "kernel";
    let plan = ctx.plan;
    let Some(k) = ctx.kernel else {
        return Finding::info(CHECK, "cannot read /proc/sys/kernel/osrelease");
    };
    let upgrade = "upgrade to Linux 6.1 or newer, or set runtime.driver: epoll in the config";
    if !k.at_least(5, 1) {
        let (v, why) = without_uring(plan.driver);
        return Finding::new(
            CHECK,
            v,
            format!("Linux {k} has no io_uring (it came in 5.1): {why}"),
            Some(upgrade.into()),
        );
    }
    if !k.at_least(5, 6) {
        let (v, why) = without_uring(plan.driver);
        return Finding::new(
            CHECK,
            v,
            format!(
                "Linux {k}'s io_uring lacks the network operations Ringway submits (accept and \
                 connect came in 5.5, send and recv in 5.6): {why}"
            ),
            Some(upgrade.into()),
        );
    }
    let features = format!(
        "provided buffers (5.7) {}, COOP_TASKRUN (5.19) {}, multishot accept (5.19) {}, \
         DEFER_TASKRUN (6.1) {}",
        yes_no(k.at_least(5, 7)),
        yes_no(k.at_least(5, 19)),
        yes_no(k.at_least(5, 19)),
        yes_no(k.at_least(6, 1)),
    );
    if plan.driver == Driver::Epoll {
        return Finding::ok(
            CHECK,
            format!("Linux {k}: {features}; runtime.driver is epoll"),
        );
    }
    let older = if k.at_least(5, 19) {
        "coop_taskrun"
    } else {
        "none"
    };
    // Distribution kernels backport io_uring features: what the probe saw beats the version.
    let version_ok = match plan.ring_flags {
        RingFlags::DeferTaskrun => k.at_least(6, 1),
        RingFlags::CoopTaskrun => k.at_least(5, 19),
        RingFlags::Sqpoll => k.at_least(5, 11),
        RingFlags::None => true,
    };
    if !version_ok && ctx.probe.as_ref().and_then(|p| p.accepts(plan.ring_flags)) == Some(true) {
        return Finding::ok(
            CHECK,
            format!(
                "Linux {k}: io_uring with {features}; ring_flags {} is backported here (the \
                 probe accepted it)",
                plan.ring_flags.name()
            ),
        );
    }
    match plan.ring_flags {
        RingFlags::DeferTaskrun if !k.at_least(6, 1) => Finding::new(
            CHECK,
            Verdict::Warn,
            format!(
                "Linux {k}: ring_flags defer_taskrun needs 6.1, so every worker falls back to \
                 {older} with a warning (5-10 % more CPU per request); {features}"
            ),
            Some(format!(
                "set runtime.ring_flags: {older} in the config, or upgrade to Linux 6.1 or newer"
            )),
        ),
        RingFlags::CoopTaskrun if !k.at_least(5, 19) => Finding::new(
            CHECK,
            Verdict::Warn,
            format!(
                "Linux {k}: ring_flags coop_taskrun needs 5.19, so every worker falls back to \
                 none with a warning; {features}"
            ),
            Some(
                "set runtime.ring_flags: none in the config, or upgrade to Linux 6.1 or newer"
                    .into(),
            ),
        ),
        RingFlags::Sqpoll if !k.at_least(5, 11) => Finding::new(
            CHECK,
            Verdict::Warn,
            format!(
                "Linux {k}: ring_flags sqpoll needs 5.11 for an unprivileged process without \
                 registered files, so workers fall back to coop_taskrun or none; {features}"
            ),
            Some(format!(
                "set runtime.ring_flags: {older} in the config, or upgrade to Linux 6.1 or newer"
            )),
        ),
        _ => Finding::ok(CHECK, format!("Linux {k}: io_uring with {features}")),
    }
}

/// `kernel.io_uring_disabled` (Linux 6.6+): 0 on, 1 only a group, 2 off.
pub fn io_uring_disabled(ctx: &Ctx) -> Finding {
    const CHECK: &str = "io_uring_disabled";
    let host = ctx.host;
    let plan = ctx.plan;
    let Some(text) = host.read_trim("/proc/sys/kernel/io_uring_disabled") else {
        return Finding::ok(
            CHECK,
            "no kernel.io_uring_disabled here (kernels before 6.6 have none): not switched off by \
             sysctl",
        );
    };
    match text.parse::<i64>() {
        Ok(0) => Finding::ok(
            CHECK,
            "kernel.io_uring_disabled = 0: every process may create rings",
        ),
        Ok(1) => {
            let group = host
                .read_num::<i64>("/proc/sys/kernel/io_uring_group")
                .unwrap_or(-1);
            let uid = first_number(host.status_field("Uid").as_deref());
            let mut groups: Vec<i64> = host
                .status_field("Groups")
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect();
            groups.extend(first_number(host.status_field("Gid").as_deref()));
            let qualifies = uid == Some(0) || (group >= 0 && groups.contains(&group));
            let group_text = if group >= 0 {
                format!("group {group} (kernel.io_uring_group)")
            } else {
                "no group (kernel.io_uring_group = -1)".into()
            };
            let who = if qualifies {
                "this user qualifies; the user Ringway runs as must too"
            } else {
                "this user does not"
            };
            let finding = format!(
                "kernel.io_uring_disabled = 1: only CAP_SYS_ADMIN and {group_text} may create \
                 rings; {who}"
            );
            let fix = "sysctl -w kernel.io_uring_disabled=0, or sysctl -w \
                       kernel.io_uring_group=GID with Ringway's user in group GID"
                .to_string();
            if plan.driver == Driver::Epoll {
                Finding::ok(CHECK, format!("{finding}; runtime.driver is epoll"))
            } else if qualifies {
                Finding::new(CHECK, Verdict::Info, finding, Some(fix))
            } else {
                let (v, why) = without_uring(plan.driver);
                Finding::new(CHECK, v, format!("{finding}: {why}"), Some(fix))
            }
        }
        Ok(2) => {
            let (v, why) = without_uring(plan.driver);
            Finding::new(
                CHECK,
                v,
                format!("kernel.io_uring_disabled = 2: io_uring is off for every process: {why}"),
                Some(
                    "sysctl -w kernel.io_uring_disabled=0 (and keep it in /etc/sysctl.d/), or set \
                     runtime.driver: epoll in the config"
                        .into(),
                ),
            )
        }
        _ => Finding::info(
            CHECK,
            format!("kernel.io_uring_disabled = {text:?}, a value this check does not know"),
        ),
    }
}

fn first_number(field: Option<&str>) -> Option<i64> {
    field?.split_whitespace().next()?.parse().ok()
}

/// Signs of a container: which marker was seen.
pub fn container(host: &Host) -> Option<String> {
    if host.exists("/.dockerenv") {
        return Some("Docker: /.dockerenv".into());
    }
    if host.exists("/run/.containerenv") {
        return Some("Podman: /run/.containerenv".into());
    }
    let cgroup = host.read("/proc/1/cgroup")?;
    ["kubepods", "docker", "containerd", "libpod"]
        .into_iter()
        .find(|m| cgroup.contains(m))
        .map(|m| format!("/proc/1/cgroup names {m}"))
}

/// A seccomp filter, and containers whose default profiles block io_uring.
pub fn seccomp(ctx: &Ctx) -> Finding {
    const CHECK: &str = "seccomp";
    let host = ctx.host;
    let plan = ctx.plan;
    let container = container(host);
    let in_container = container
        .as_ref()
        .map_or(String::new(), |c| format!(" (in a container: {c})"));
    let mode = host.status_field("Seccomp");
    match mode.as_deref() {
        None => Finding::info(
            CHECK,
            format!("no Seccomp field in /proc/self/status{in_container}"),
        ),
        Some("0") => Finding::ok(
            CHECK,
            format!("no seccomp filter on this process{in_container}"),
        ),
        Some("2") => {
            let base = match &container {
                Some(c) => format!(
                    "a seccomp filter in a container ({c}): Docker's default profile blocks \
                     io_uring_setup, io_uring_enter and io_uring_register since Docker 25.0, and \
                     containerd's and Kubernetes' RuntimeDefault profiles do too"
                ),
                None => "a seccomp filter is on (systemd SystemCallFilter=, a sandbox): it may \
                         block io_uring_setup, io_uring_enter and io_uring_register"
                    .to_string(),
            };
            let fix = if container.is_some() {
                "docker run --security-opt seccomp=/etc/docker/seccomp-ringway.json ... (Docker's \
                 default profile with io_uring_setup, io_uring_enter and io_uring_register added \
                 to the allowed syscalls; in Kubernetes: securityContext.seccompProfile {type: \
                 Localhost, localhostProfile: ...}), or set runtime.driver: epoll in the config"
            } else {
                "allow io_uring_setup io_uring_enter io_uring_register in the filter (systemd: \
                 SystemCallFilter=io_uring_setup io_uring_enter io_uring_register), or set \
                 runtime.driver: epoll in the config"
            };
            match ctx.probe.as_ref().map(|p| p.plain) {
                Some(Ok(_)) => Finding::ok(
                    CHECK,
                    format!("{base}; but io_uring_setup succeeded here, so this filter allows it"),
                ),
                Some(Err(e)) if [libc::EPERM, libc::ENOSYS, libc::EACCES].contains(&e) => {
                    let (v, why) = without_uring(plan.driver);
                    Finding::new(
                        CHECK,
                        v,
                        format!(
                            "{base}; io_uring_setup failed ({}): {why}",
                            explain_errno(e)
                        ),
                        Some(fix.into()),
                    )
                }
                Some(Err(e)) => Finding::ok(
                    CHECK,
                    format!(
                        "{base}; io_uring_setup got past it (it failed for another reason: {}; \
                         see io_uring_probe)",
                        explain_errno(e)
                    ),
                ),
                None => {
                    let (v, _) = without_uring(plan.driver);
                    let v = v.min(Verdict::Warn);
                    Finding::new(
                        CHECK,
                        v,
                        format!(
                            "{base}; io_uring was not probed (--root is not /), so whether it \
                             does is unknown"
                        ),
                        Some(fix.into()),
                    )
                }
            }
        }
        Some(other) => Finding::info(
            CHECK,
            format!("Seccomp: {other} (strict mode or unknown){in_container}"),
        ),
    }
}

/// An actual `io_uring_setup` on this machine, and the ring features it reports.
pub fn probe(ctx: &Ctx) -> Finding {
    const CHECK: &str = "io_uring_probe";
    let plan = ctx.plan;
    let Some(p) = &ctx.probe else {
        return Finding::info(
            CHECK,
            "not probed: --root is not /, and io_uring_setup only tells about this machine",
        );
    };
    let forced = std::env::var_os("MONOIO_FORCE_LEGACY_DRIVER").is_some_and(|v| !v.is_empty());
    let forced_note = if forced {
        "; note: MONOIO_FORCE_LEGACY_DRIVER is set in this environment, which forces epoll"
    } else {
        ""
    };
    match p.plain {
        Ok(features) => {
            let names = feature_names(features);
            let flag = |r: &Option<Result<(), i32>>| match r {
                Some(Ok(())) => "accepted".to_string(),
                Some(Err(e)) => format!("refused ({})", explain_errno(*e)),
                None => "not tried".to_string(),
            };
            let mut finding = format!(
                "io_uring_setup({} entries) succeeded; features: {}; COOP_TASKRUN {}; \
                 DEFER_TASKRUN+SINGLE_ISSUER {}",
                p.entries,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(" ")
                },
                flag(&p.coop_taskrun),
                flag(&p.defer_taskrun),
            );
            if p.sqpoll.is_some() {
                finding.push_str(&format!("; SQPOLL {}", flag(&p.sqpoll)));
            }
            finding.push_str(forced_note);
            if plan.driver != Driver::Epoll && p.accepts(plan.ring_flags) == Some(false) {
                let best = [
                    (RingFlags::DeferTaskrun, &p.defer_taskrun),
                    (RingFlags::CoopTaskrun, &p.coop_taskrun),
                ]
                .into_iter()
                .find(|(_, r)| matches!(r, Some(Ok(()))))
                .map_or(RingFlags::None, |(f, _)| f);
                return Finding::new(
                    CHECK,
                    Verdict::Warn,
                    format!(
                        "{finding}: ring_flags {} is refused, so every worker falls back with a \
                         warning",
                        plan.ring_flags.name()
                    ),
                    Some(format!(
                        "set runtime.ring_flags: {} in the config",
                        best.name()
                    )),
                );
            }
            Finding::ok(CHECK, finding)
        }
        Err(errno) => {
            let (v, why) = without_uring(plan.driver);
            let fix = match errno {
                libc::ENOMEM => "raise RLIMIT_MEMLOCK (see the memlock check)",
                libc::ENOSYS => {
                    "run a kernel built with CONFIG_IO_URING=y (Linux 6.1 or newer), allow \
                     io_uring in the seccomp profile, or set runtime.driver: epoll in the config"
                }
                _ => {
                    "sysctl -w kernel.io_uring_disabled=0, or allow io_uring_setup, \
                     io_uring_enter and io_uring_register in the seccomp profile (see the seccomp \
                     check), or set runtime.driver: epoll in the config"
                }
            };
            Finding::new(
                CHECK,
                v,
                format!(
                    "io_uring_setup({} entries) failed: {}: {why}{forced_note}",
                    p.entries,
                    explain_errno(errno)
                ),
                Some(fix.into()),
            )
        }
    }
}
