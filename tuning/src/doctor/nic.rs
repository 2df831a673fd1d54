//! NIC receive queues and where their interrupts land, against the worker CPUs. Informational:
//! what is best depends on the NIC and the traffic, but it is worth seeing.

use std::collections::BTreeSet;

use super::host::cpu_list_string;
use super::{Ctx, Finding, Verdict};

/// Interfaces backed by a device (not loopback, bridges, veth or ifb).
fn physical_nics(ctx: &Ctx) -> Vec<String> {
    ctx.host
        .list_dir("/sys/class/net")
        .into_iter()
        .filter(|n| {
            let dev = format!("/sys/class/net/{n}/device");
            ctx.host.read_link(&dev).is_some() || ctx.host.exists(&dev)
        })
        .collect()
}

/// The NUMA node of each NIC that reports one (`-1` = none is left out).
pub fn nic_numa_nodes(ctx: &Ctx) -> Vec<(String, usize)> {
    physical_nics(ctx)
        .into_iter()
        .filter_map(|nic| {
            let node = ["device/numa_node", "device/../numa_node"]
                .iter()
                .find_map(|p| {
                    ctx.host
                        .read_num::<i64>(&format!("/sys/class/net/{nic}/{p}"))
                })?;
            usize::try_from(node).ok().map(|n| (nic, n))
        })
        .collect()
}

fn queues(ctx: &Ctx, nic: &str, prefix: &str) -> usize {
    ctx.host
        .list_dir(&format!("/sys/class/net/{nic}/queues"))
        .iter()
        .filter(|q| q.starts_with(prefix))
        .count()
}

/// A CPU bitmask as `rps_cpus` takes it: hex words of 32 CPUs, comma-separated.
fn rps_mask(cpus: &[usize]) -> String {
    let top = cpus.iter().copied().max().unwrap_or(0);
    let mut words = vec![0u32; top / 32 + 1];
    for &c in cpus {
        words[c / 32] |= 1 << (c % 32);
    }
    let mut parts: Vec<String> = words.iter().rev().map(|w| format!("{w:08x}")).collect();
    if let Some(first) = parts.first_mut() {
        let trimmed = first.trim_start_matches('0');
        *first = if trimmed.is_empty() {
            "0".into()
        } else {
            trimmed.into()
        };
    }
    parts.join(",")
}

/// RX queues per NIC against the workers.
pub fn nic_queues(ctx: &Ctx) -> Finding {
    const CHECK: &str = "nic_queues";
    let nics = physical_nics(ctx);
    if nics.is_empty() {
        return Finding::info(
            CHECK,
            "no physical network interface visible (only loopback or virtual ones)",
        );
    }
    let workers = ctx.workers;
    let mut parts = Vec::new();
    let mut fixes = Vec::new();
    let mut short = false;
    for nic in &nics {
        let rx = queues(ctx, nic, "rx-");
        let tx = queues(ctx, nic, "tx-");
        parts.push(format!(
            "{nic}: {rx} RX / {tx} TX queue{}",
            if rx.max(tx) == 1 { "" } else { "s" }
        ));
        if rx < workers {
            short = true;
            let mask = rps_mask(&ctx.distinct_worker_cpus());
            let rps = (0..rx.max(1))
                .map(|q| format!("echo {mask} > /sys/class/net/{nic}/queues/rx-{q}/rps_cpus"))
                .collect::<Vec<_>>()
                .join("; ");
            fixes.push(format!(
                "ethtool -L {nic} combined {workers} (if ethtool -l {nic} shows that many \
                 channels), or spread receive work with RPS: {rps}"
            ));
        }
    }
    let finding = parts.join(", ");
    if short {
        Finding::new(
            CHECK,
            Verdict::Info,
            format!(
                "{finding} for {workers} workers: with fewer RX queues than workers, the \
                 receive work of all connections lands on the CPUs that take those queues' \
                 interrupts"
            ),
            Some(fixes.join("; ")),
        )
    } else {
        Finding::ok(
            CHECK,
            format!("{finding}, at least one RX queue per worker ({workers})"),
        )
    }
}

/// One line of `/proc/interrupts`.
struct Irq {
    number: u32,
    /// Interrupts taken per CPU (indexed like the header's CPU columns).
    counts: Vec<(usize, u64)>,
    desc: String,
}

fn parse_interrupts(text: &str) -> Vec<Irq> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cpus: Vec<usize> = header
        .split_whitespace()
        .filter_map(|c| c.strip_prefix("CPU")?.parse().ok())
        .collect();
    lines
        .filter_map(|line| {
            let (number, rest) = line.trim_start().split_once(':')?;
            let number: u32 = number.trim().parse().ok()?;
            let mut fields = rest.split_whitespace();
            let counts: Vec<(usize, u64)> = cpus
                .iter()
                .map_while(|&cpu| Some((cpu, fields.next()?.parse().ok()?)))
                .collect();
            let desc = fields.collect::<Vec<_>>().join(" ");
            Some(Irq {
                number,
                counts,
                desc,
            })
        })
        .collect()
}

/// Whether `token` appears in `text` as a whole name (`virtio2` does not match `virtio20`).
fn names(text: &str, token: &str) -> bool {
    if token.is_empty() {
        return false;
    }
    text.match_indices(token).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + token.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// The IRQs of a NIC: listed under its device's `msi_irqs`, or named after the interface, its
/// device or the device's parent (a PCI address) in `/proc/interrupts`.
fn nic_irqs<'a>(ctx: &Ctx, nic: &str, irqs: &'a [Irq]) -> Vec<&'a Irq> {
    let host = ctx.host;
    let mut tokens = vec![nic.to_string()];
    if let Some(link) = host.read_link(&format!("/sys/class/net/{nic}/device")) {
        tokens.extend(link.file_name().map(|n| n.to_string_lossy().into_owned()));
        tokens.extend(
            link.parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .filter(|n| n.contains(':')),
        );
    }
    let mut msi: BTreeSet<u32> = BTreeSet::new();
    for dir in ["device/msi_irqs", "device/../msi_irqs"] {
        msi.extend(
            host.list_dir(&format!("/sys/class/net/{nic}/{dir}"))
                .iter()
                .filter_map(|n| n.parse::<u32>().ok()),
        );
    }
    irqs.iter()
        .filter(|irq| !irq.desc.ends_with("config"))
        .filter(|irq| msi.contains(&irq.number) || tokens.iter().any(|t| names(&irq.desc, t)))
        .collect()
}

/// Whether an interrupt's name looks like a queue's (`eth0-TxRx-3`, `virtio2-input.0`,
/// `mlx5_comp4`, `ens5-Tx-Rx-0`), not a device's control vector.
fn is_queue(desc: &str) -> bool {
    let name = desc
        .split_whitespace()
        .last()
        .unwrap_or("")
        .to_ascii_lowercase();
    ["rx", "tx", "input", "output", "comp", "queue", "-q"]
        .iter()
        .any(|m| name.contains(m))
}

/// Which CPUs take the NICs' interrupts, against the worker CPUs.
pub fn irq_affinity(ctx: &Ctx) -> Finding {
    const CHECK: &str = "irq_affinity";
    let nics = physical_nics(ctx);
    if nics.is_empty() {
        return Finding::info(CHECK, "no physical network interface, so no NIC interrupts");
    }
    let Some(text) = ctx.host.read("/proc/interrupts") else {
        return Finding::info(CHECK, "/proc/interrupts is not visible");
    };
    let irqs = parse_interrupts(&text);
    let workers = ctx.distinct_worker_cpus();
    let mut parts = Vec::new();
    let mut fixes = Vec::new();
    for nic in &nics {
        let mine = nic_irqs(ctx, nic, &irqs);
        if mine.is_empty() {
            parts.push(format!("{nic}: no interrupts found for it"));
            continue;
        }
        let mut described = Vec::new();
        let mut affinities = Vec::new();
        for irq in &mine {
            let affinity = ctx
                .host
                .read_cpu_list(&format!("/proc/irq/{}/smp_affinity_list", irq.number));
            let taken: Vec<usize> = irq
                .counts
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(c, _)| *c)
                .collect();
            let name = irq.desc.split_whitespace().last().unwrap_or("?");
            described.push(format!(
                "IRQ {} ({name}) → CPUs {}, taken on {}",
                irq.number,
                affinity.as_deref().map_or("?".to_string(), cpu_list_string),
                if taken.is_empty() {
                    "none yet".to_string()
                } else {
                    cpu_list_string(&taken)
                }
            ));
            affinities.push(affinity);
        }
        parts.push(format!("{nic}: {}", described.join(", ")));
        // One queue interrupt per worker CPU, unless each already has a CPU of its own (other
        // vectors, such as link status, do not matter).
        let queue_irqs: Vec<(&Irq, &Option<Vec<usize>>)> = mine
            .iter()
            .copied()
            .zip(&affinities)
            .filter(|(irq, _)| is_queue(&irq.desc))
            .collect();
        let aligned = queue_irqs.iter().all(|(_, a)| {
            a.as_ref()
                .is_some_and(|a| a.len() == 1 && workers.contains(&a[0]))
        });
        if queue_irqs.len() >= 2 && workers.len() >= 2 && !aligned {
            let pins = queue_irqs
                .iter()
                .map(|(irq, _)| irq)
                .zip(workers.iter().cycle())
                .take(8)
                .map(|(irq, cpu)| {
                    format!("echo {cpu} > /proc/irq/{}/smp_affinity_list", irq.number)
                })
                .collect::<Vec<_>>()
                .join("; ");
            fixes.push(format!(
                "{pins} (one {nic} queue interrupt per worker CPU; stop irqbalance first, or it \
                 moves them back)"
            ));
        }
    }
    let fix = (!fixes.is_empty()).then(|| fixes.join("; "));
    Finding::new(
        CHECK,
        Verdict::Info,
        format!(
            "{}; workers on CPUs {}",
            parts.join("; "),
            cpu_list_string(&workers)
        ),
        fix,
    )
}
