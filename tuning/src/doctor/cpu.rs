//! Where the workers run: online CPUs, SMT siblings, NUMA nodes, the CPU quota, and the
//! frequency governor.

use std::collections::{BTreeMap, BTreeSet};

use super::host::cpu_list_string;
use super::{Ctx, Finding, Verdict};

/// The worker CPUs and the CPU list against the online ones, the allowed ones and the quota.
pub fn cpus(ctx: &Ctx) -> Finding {
    const CHECK: &str = "cpus";
    let plan = ctx.plan;
    let host = ctx.host;
    let distinct = ctx.distinct_worker_cpus();
    let mut notes = Vec::new();
    match &ctx.online {
        Some(online) => notes.push(format!(
            "{} CPU{} online ({})",
            online.len(),
            if online.len() == 1 { "" } else { "s" },
            cpu_list_string(online)
        )),
        None => notes.push("the online CPUs are not visible".to_string()),
    }
    if ctx.online.as_ref() != Some(&ctx.allowed) {
        notes.push(format!(
            "this process may use {}",
            cpu_list_string(&ctx.allowed)
        ));
    }
    notes.push(format!(
        "{} worker{} ({}) on CPUs {}",
        ctx.workers,
        if ctx.workers == 1 { "" } else { "s" },
        if plan.workers.is_some() {
            "configured"
        } else {
            "auto"
        },
        cpu_list_string(&ctx.worker_cpus)
    ));
    let mut verdict = Verdict::Ok;
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    if let Some(named) = &plan.cpus {
        let offline: Vec<usize> = match &ctx.online {
            Some(online) => named
                .iter()
                .copied()
                .filter(|c| !online.contains(c))
                .collect(),
            None => Vec::new(),
        };
        let not_allowed: Vec<usize> = named
            .iter()
            .copied()
            .filter(|c| !offline.contains(c) && !ctx.allowed.contains(c))
            .collect();
        if !offline.is_empty() {
            verdict = Verdict::Warn;
            problems.push(format!(
                "cpus names CPU{} {} that {} offline: pinning {} workers fails and they run \
                 unpinned",
                if offline.len() == 1 { "" } else { "s" },
                cpu_list_string(&offline),
                if offline.len() == 1 { "is" } else { "are" },
                if offline.len() == 1 { "its" } else { "their" },
            ));
            let usable: Vec<usize> = named
                .iter()
                .copied()
                .filter(|c| !offline.contains(c))
                .collect();
            let online_cmd = offline
                .iter()
                .map(|c| format!("echo 1 > /sys/devices/system/cpu/cpu{c}/online"))
                .collect::<Vec<_>>()
                .join("; ");
            fixes.push(if usable.is_empty() {
                format!("remove cpus from the config, or bring them online: {online_cmd}")
            } else {
                format!(
                    "cpus: \"{}\" in the config, or bring them online: {online_cmd}",
                    cpu_list_string(&usable)
                )
            });
        }
        if !not_allowed.is_empty() {
            verdict = Verdict::Warn;
            problems.push(format!(
                "cpus names CPUs {} outside this process's CPU set (taskset, cgroup cpuset): \
                 pinning there fails",
                cpu_list_string(&not_allowed)
            ));
            fixes.push(format!(
                "cpus within {} in the config, or widen the CPU set (taskset -c / the cgroup's \
                 cpuset.cpus)",
                cpu_list_string(&ctx.allowed)
            ));
        }
    }
    if ctx.workers > distinct.len() {
        verdict = Verdict::Warn;
        problems.push(format!(
            "{} workers share {} CPU{}: workers on one CPU take turns, adding latency",
            ctx.workers,
            distinct.len(),
            if distinct.len() == 1 { "" } else { "s" }
        ));
        fixes.push(format!("workers: {} in the config", distinct.len()));
    }
    if let Some(quota) = cgroup_quota(host.read_trim("/sys/fs/cgroup/cpu.max").as_deref()) {
        if quota + 1e-9 < ctx.workers as f64 {
            verdict = Verdict::Warn;
            let fit = (quota.ceil() as usize).max(1);
            problems.push(format!(
                "the cgroup's CPU quota (cpu.max) is {quota:.2} CPUs, fewer than {} workers: \
                 they get throttled in bursts",
                ctx.workers
            ));
            fixes.push(format!(
                "workers: {fit} in the config (or raise the container's CPU limit)"
            ));
        }
    }
    let mut finding = notes.join("; ");
    if !problems.is_empty() {
        finding = format!("{finding}: {}", problems.join("; "));
    }
    Finding::new(CHECK, verdict, finding, Some(fixes.join("; ")))
}

/// `cpu.max` (`200000 100000`, or `max 100000`) as a number of CPUs.
fn cgroup_quota(text: Option<&str>) -> Option<f64> {
    let mut it = text?.split_whitespace();
    let quota: f64 = it.next()?.parse().ok()?;
    let period: f64 = it.next()?.parse().ok()?;
    (period > 0.0).then(|| quota / period)
}

/// The SMT siblings of `cpu` (itself included), if the topology is visible.
fn siblings(ctx: &Ctx, cpu: usize) -> Option<Vec<usize>> {
    ctx.host
        .read_cpu_list(&format!(
            "/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"
        ))
        .filter(|s| !s.is_empty())
}

/// Two workers on SMT siblings of one core while other cores are idle.
pub fn smt(ctx: &Ctx) -> Finding {
    const CHECK: &str = "smt";
    // Cores by their first thread, over the CPUs this process may use.
    let candidates: Vec<usize> = match &ctx.online {
        Some(online) => ctx
            .allowed
            .iter()
            .copied()
            .filter(|c| online.contains(c))
            .collect(),
        None => ctx.allowed.clone(),
    };
    let mut core_of: BTreeMap<usize, usize> = BTreeMap::new();
    let mut threads: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let workers = ctx.distinct_worker_cpus();
    for &cpu in candidates.iter().chain(&workers) {
        if core_of.contains_key(&cpu) {
            continue;
        }
        let Some(sib) = siblings(ctx, cpu) else {
            continue;
        };
        let core = sib.iter().copied().min().unwrap_or(cpu);
        core_of.insert(cpu, core);
        threads.insert(core, sib);
    }
    if workers.iter().all(|c| !core_of.contains_key(c)) {
        return Finding::info(
            CHECK,
            "the CPU topology (thread_siblings_list) is not visible",
        );
    }
    let per_core = threads.values().map(Vec::len).max().unwrap_or(1);
    if per_core <= 1 {
        return Finding::ok(CHECK, "no SMT: one thread per core");
    }
    let mut used: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &cpu in &workers {
        if let Some(&core) = core_of.get(&cpu) {
            used.entry(core).or_default().push(cpu);
        }
    }
    let shared: Vec<&Vec<usize>> = used.values().filter(|cpus| cpus.len() > 1).collect();
    let free_cores: BTreeSet<usize> = candidates
        .iter()
        .filter_map(|c| core_of.get(c))
        .copied()
        .filter(|core| !used.contains_key(core))
        .collect();
    if shared.is_empty() {
        return Finding::ok(
            CHECK,
            format!(
                "SMT with {per_core} threads per core; every worker CPU is on a core of its own"
            ),
        );
    }
    let pairs = shared
        .iter()
        .map(|cpus| cpu_list_string(cpus))
        .collect::<Vec<_>>()
        .join(" and ");
    if free_cores.is_empty() {
        return Finding::ok(
            CHECK,
            format!(
                "SMT with {per_core} threads per core; workers share cores ({pairs}), and every \
                 core has workers"
            ),
        );
    }
    let free_text = free_cores
        .iter()
        .map(|core| {
            threads
                .get(core)
                .map_or(core.to_string(), |t| cpu_list_string(t))
        })
        .collect::<Vec<_>>()
        .join("; ");
    let suggested = spread(&workers, &candidates, &core_of);
    Finding::new(
        CHECK,
        Verdict::Warn,
        format!(
            "workers on SMT siblings of one core (CPUs {pairs}) while {} core{} {} no worker \
             (CPUs {free_text}): two busy threads of one core do well under twice the work of \
             one",
            free_cores.len(),
            if free_cores.len() == 1 { "" } else { "s" },
            if free_cores.len() == 1 { "has" } else { "have" },
        ),
        Some(format!(
            "cpus: \"{}\" in the config",
            cpu_list_string(&suggested)
        )),
    )
}

/// As many CPUs as `workers`, one thread per core first (keeping the ones already chosen
/// where they are alone on their core), then second threads.
fn spread(workers: &[usize], candidates: &[usize], core_of: &BTreeMap<usize, usize>) -> Vec<usize> {
    let want = workers.len();
    let mut chosen: Vec<usize> = Vec::new();
    let mut cores: BTreeSet<usize> = BTreeSet::new();
    // Keep a worker CPU if its core is not taken yet.
    for &cpu in workers {
        if let Some(&core) = core_of.get(&cpu) {
            if cores.insert(core) {
                chosen.push(cpu);
            }
        }
    }
    for &cpu in candidates {
        if chosen.len() >= want {
            break;
        }
        if let Some(&core) = core_of.get(&cpu) {
            if cores.insert(core) {
                chosen.push(cpu);
            }
        }
    }
    for &cpu in candidates {
        if chosen.len() >= want {
            break;
        }
        if !chosen.contains(&cpu) {
            chosen.push(cpu);
        }
    }
    chosen.sort_unstable();
    chosen
}

/// NUMA nodes and their CPUs, from `/sys/devices/system/node/node*/cpulist`.
fn nodes(ctx: &Ctx) -> Vec<(usize, Vec<usize>)> {
    ctx.host
        .list_dir("/sys/devices/system/node")
        .iter()
        .filter_map(|name| {
            let id: usize = name.strip_prefix("node")?.parse().ok()?;
            let cpus = ctx
                .host
                .read_cpu_list(&format!("/sys/devices/system/node/{name}/cpulist"))?;
            Some((id, cpus))
        })
        .collect()
}

/// Workers spread over NUMA nodes.
pub fn numa(ctx: &Ctx) -> Finding {
    const CHECK: &str = "numa";
    let nodes = nodes(ctx);
    if nodes.len() <= 1 {
        return Finding::ok(
            CHECK,
            match nodes.first() {
                Some((id, _)) => format!("one NUMA node (node{id})"),
                None => "no NUMA nodes listed: one memory node".to_string(),
            },
        );
    }
    let mut per_node: BTreeMap<usize, usize> = BTreeMap::new();
    for cpu in &ctx.worker_cpus {
        if let Some((id, _)) = nodes.iter().find(|(_, cpus)| cpus.contains(cpu)) {
            *per_node.entry(*id).or_default() += 1;
        }
    }
    if per_node.len() <= 1 {
        let on = per_node
            .keys()
            .next()
            .map_or("an unknown node".to_string(), |n| format!("node{n}"));
        return Finding::ok(
            CHECK,
            format!("{} NUMA nodes; every worker on {on}", nodes.len()),
        );
    }
    let spread = per_node
        .iter()
        .map(|(id, n)| {
            let cpus = nodes
                .iter()
                .find(|(i, _)| i == id)
                .map_or(String::new(), |(_, c)| cpu_list_string(c));
            format!(
                "node{id} (CPUs {cpus}): {n} worker{}",
                if *n == 1 { "" } else { "s" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let nic_nodes = super::nic::nic_numa_nodes(ctx);
    let nic_note = if nic_nodes.is_empty() {
        String::new()
    } else {
        format!(
            "; NICs on {}",
            nic_nodes
                .iter()
                .map(|(nic, node)| format!("{nic}: node{node}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let home = nic_nodes
        .first()
        .map(|(_, n)| *n)
        .or_else(|| per_node.keys().next().copied())
        .unwrap_or(0);
    let home_cpus = nodes
        .iter()
        .find(|(id, _)| *id == home)
        .map_or(String::new(), |(_, c)| cpu_list_string(c));
    Finding::new(
        CHECK,
        Verdict::Warn,
        format!(
            "workers span NUMA nodes: {spread}{nic_note}; memory and NIC interrupts are local \
             to a node, and each crossing costs latency and bandwidth"
        ),
        Some(format!(
            "cpus: \"{home_cpus}\" in the config (node{home} only), or run one Ringway per node: \
             numactl --cpunodebind=N --membind=N ringway run --config FILE, each with cpus set \
             to node N's CPUs"
        )),
    )
}

/// The frequency governor of the worker CPUs.
pub fn governor(ctx: &Ctx) -> Finding {
    const CHECK: &str = "cpu_governor";
    let mut by_governor: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for cpu in ctx.distinct_worker_cpus() {
        if let Some(g) = ctx.host.read_trim(&format!(
            "/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"
        )) {
            by_governor.entry(g).or_default().push(cpu);
        }
    }
    if by_governor.is_empty() {
        return Finding::info(
            CHECK,
            "no cpufreq governor visible for the worker CPUs (a VM, or the firmware sets the \
             frequency)",
        );
    }
    let summary = by_governor
        .iter()
        .map(|(g, cpus)| format!("{g} on CPUs {}", cpu_list_string(cpus)))
        .collect::<Vec<_>>()
        .join(", ");
    match by_governor.get("powersave") {
        Some(cpus) => Finding::new(
            CHECK,
            Verdict::Warn,
            format!(
                "governor {summary}: powersave keeps the worker CPUs{} at low clocks, adding \
                 latency to every request",
                if cpus.len() < ctx.distinct_worker_cpus().len() {
                    " it covers"
                } else {
                    ""
                }
            ),
            Some(
                "cpupower frequency-set -g performance (or: echo performance | tee \
                 /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)"
                    .into(),
            ),
        ),
        None => Finding::ok(CHECK, format!("governor {summary}")),
    }
}
