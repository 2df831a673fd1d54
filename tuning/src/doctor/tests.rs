//! Every check on fake `/proc` and `/sys` trees, the CLI's output and exit codes, and one run
//! on this machine.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::host::{cpu_list_string, parse_limit, Kernel};
use super::plan::{is_loopback_target, substitute, Driver, Plan, RingFlags};
use super::*;

/// Every check's name, in the order a full run prints them.
const CHECKS: [&str; 17] = [
    "kernel",
    "io_uring_disabled",
    "seccomp",
    "io_uring_probe",
    "memlock",
    "nofile",
    "somaxconn",
    "tcp_max_syn_backlog",
    "ip_local_port_range",
    "tcp_tw_reuse",
    "cpus",
    "smt",
    "numa",
    "nic_queues",
    "irq_affinity",
    "thp",
    "cpu_governor",
];

/// A fake root in a temporary directory, removed on drop.
struct Tree {
    dir: PathBuf,
}

impl Tree {
    fn empty(name: &str) -> Tree {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringway-doctor-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tree { dir }
    }

    fn root(&self) -> &Path {
        &self.dir
    }

    fn file(&self, rel: &str, content: &str) -> &Tree {
        let path = self.dir.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    fn dir(&self, rel: &str) -> &Tree {
        std::fs::create_dir_all(self.dir.join(rel.trim_start_matches('/'))).unwrap();
        self
    }

    fn link(&self, rel: &str, target: &str) -> &Tree {
        let path = self.dir.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
        self
    }

    /// A healthy 4-core host without SMT on Linux 6.6, with one 4-queue NIC.
    fn good(name: &str) -> Tree {
        let t = Tree::empty(name);
        t.file("/proc/sys/kernel/osrelease", "6.6.15-amd64\n")
            .file("/proc/sys/kernel/io_uring_disabled", "0\n")
            .file("/proc/self/status", &status(0, "0-3"))
            .file(
                "/proc/self/limits",
                &limits_file(8 << 20, 1_048_576, 1_048_576),
            )
            .file("/proc/sys/fs/nr_open", "1048576\n")
            .file("/proc/sys/fs/file-max", "9223372036854775807\n")
            .file("/proc/sys/net/core/somaxconn", "4096\n")
            .file("/proc/sys/net/ipv4/tcp_max_syn_backlog", "4096\n")
            .file("/proc/sys/net/ipv4/tcp_syncookies", "1\n")
            .file("/proc/sys/net/ipv4/ip_local_port_range", "10000\t65535\n")
            .file("/proc/sys/net/ipv4/tcp_tw_reuse", "1\n")
            .file("/proc/1/cgroup", "0::/init.scope\n")
            .file("/sys/devices/system/cpu/online", "0-3\n")
            .file("/sys/devices/system/node/node0/cpulist", "0-3\n")
            .file(
                "/sys/kernel/mm/transparent_hugepage/enabled",
                "always [madvise] never\n",
            );
        for cpu in 0..4 {
            t.file(
                &format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"),
                &format!("{cpu}\n"),
            )
            .file(
                &format!("/sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
                "performance\n",
            );
        }
        // eth0 on PCI device 0000:3b:00.0, one combined queue (IRQ 40 + q) per CPU.
        t.dir("/sys/devices/pci0000:00/0000:3b:00.0/msi_irqs/39")
            .file("/sys/devices/pci0000:00/0000:3b:00.0/numa_node", "0\n")
            .link(
                "/sys/class/net/eth0/device",
                "../../../devices/pci0000:00/0000:3b:00.0",
            )
            .dir("/sys/class/net/lo/queues/rx-0");
        let mut interrupts = String::from("           CPU0       CPU1       CPU2       CPU3\n");
        interrupts.push_str(" 39:          1          0          0          0  IR-PCI-MSI-0000:3b:00.0    0-edge      eth0\n");
        for q in 0..4 {
            t.dir(&format!("/sys/class/net/eth0/queues/rx-{q}"))
                .dir(&format!("/sys/class/net/eth0/queues/tx-{q}"))
                .file(
                    &format!("/proc/irq/{}/smp_affinity_list", 40 + q),
                    &format!("{q}\n"),
                );
            let mut counts = [0u64; 4];
            counts[q] = 1000;
            interrupts.push_str(&format!(
                " {}: {:>10} {:>10} {:>10} {:>10}  IR-PCI-MSI-0000:3b:00.0   {}-edge      eth0-TxRx-{q}\n",
                40 + q,
                counts[0],
                counts[1],
                counts[2],
                counts[3],
                q + 1
            ));
        }
        interrupts.push_str(
            "NMI:          0          0          0          0   Non-maskable interrupts\n",
        );
        t.file("/proc/irq/39/smp_affinity_list", "0-3\n")
            .file("/proc/interrupts", &interrupts);
        t
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn status(seccomp: u32, cpus: &str) -> String {
    format!(
        "Name:\tringway\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t1000 27\n\
         Seccomp:\t{seccomp}\nSeccomp_filters:\t{}\nCpus_allowed:\tf\nCpus_allowed_list:\t{cpus}\n",
        u32::from(seccomp == 2)
    )
}

fn limits_file(memlock: u64, nofile_soft: u64, nofile_hard: u64) -> String {
    format!(
        "Limit                     Soft Limit           Hard Limit           Units     \n\
         Max cpu time              unlimited            unlimited            seconds   \n\
         Max open files            {nofile_soft:<20} {nofile_hard:<20} files     \n\
         Max locked memory         {memlock:<20} {memlock:<20} bytes     \n"
    )
}

fn plan(yaml: &str) -> Plan {
    Plan::from_yaml(yaml, "test.yaml").unwrap()
}

/// All findings for `tree` with `plan`.
fn check_all(tree: &Tree, plan: &Plan) -> Vec<Finding> {
    let host = Host::new(tree.root());
    let ctx = Ctx::new(&host, plan, true);
    assert!(ctx.probe.is_none(), "a fake root is never probed");
    run_checks(&ctx).findings
}

fn find<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.check == check)
        .unwrap_or_else(|| panic!("no {check} finding in {findings:#?}"))
}

fn verdict_of(tree: &Tree, plan: &Plan, check: &str) -> (Verdict, Finding) {
    let findings = check_all(tree, plan);
    let f = find(&findings, check).clone();
    (f.verdict, f)
}

/// Runs the CLI; returns (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (u8, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run_cli(&args, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

const BACKENDS: &str = "
listeners: [{address: 0.0.0.0:8080}]
backends:
  - name: orders
    targets: [{url: http://10.0.0.5:8080}, {url: http://10.0.0.6:8080}]
  - name: local
    targets: [{url: http://127.0.0.1:9000}]
    pool: {max_idle_per_target: 16}
";

#[test]
fn a_healthy_host_is_all_ok() {
    let t = Tree::good("healthy");
    let findings = check_all(&t, &plan(BACKENDS));
    let names: Vec<&str> = findings.iter().map(|f| f.check).collect();
    assert_eq!(names, CHECKS);
    for f in &findings {
        assert!(f.verdict <= Verdict::Info, "{f:#?}");
        if f.verdict == Verdict::Ok {
            assert!(f.fix.is_none(), "{f:#?}");
        }
    }
    assert_eq!(find(&findings, "io_uring_probe").verdict, Verdict::Info);
    let kernel = find(&findings, "kernel");
    assert!(kernel.finding.contains("Linux 6.6.15"), "{kernel:?}");
    assert!(
        kernel.finding.contains("DEFER_TASKRUN (6.1) yes"),
        "{kernel:?}"
    );
    let irq = find(&findings, "irq_affinity");
    assert_eq!(irq.verdict, Verdict::Info);
    assert!(
        irq.finding
            .contains("IRQ 40 (eth0-TxRx-0) → CPUs 0, taken on 0"),
        "{irq:?}"
    );
    assert!(irq.finding.contains("IRQ 39 (eth0)"), "msi_irqs: {irq:?}");
    assert!(
        irq.fix.is_none(),
        "already one queue per worker CPU: {irq:?}"
    );
    assert!(find(&findings, "nic_queues")
        .finding
        .contains("eth0: 4 RX / 4 TX queues"));
    let (code, out, _) = cli(&["--root", t.root().to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("fixes:"), "{out}");
}

#[test]
fn kernel_versions() {
    let t = Tree::good("kernel");
    t.file("/proc/sys/kernel/osrelease", "6.6.0\n");
    assert_eq!(verdict_of(&t, &plan(""), "kernel").0, Verdict::Ok);

    // 5.15: DEFER_TASKRUN (6.1) and COOP_TASKRUN (5.19) are both missing.
    t.file("/proc/sys/kernel/osrelease", "5.15.0-91-generic\n");
    let (v, f) = verdict_of(&t, &plan(""), "kernel");
    assert_eq!(v, Verdict::Warn);
    assert!(f.finding.contains("falls back to none"), "{f:?}");
    assert_eq!(
        f.fix.as_deref(),
        Some("set runtime.ring_flags: none in the config, or upgrade to Linux 6.1 or newer")
    );
    assert_eq!(
        verdict_of(&t, &plan("runtime: {ring_flags: none}"), "kernel").0,
        Verdict::Ok
    );

    // 5.4: io_uring without the network operations; what that means depends on the driver.
    t.file("/proc/sys/kernel/osrelease", "5.4.0-150-generic\n");
    let (v, f) = verdict_of(&t, &plan(""), "kernel");
    assert_eq!(v, Verdict::Warn, "{f:?}");
    assert!(f.finding.contains("falls back to epoll"), "{f:?}");
    assert_eq!(
        verdict_of(&t, &plan("runtime: {driver: io_uring}"), "kernel").0,
        Verdict::Fail
    );
    let (v, f) = verdict_of(&t, &plan("runtime: {driver: epoll}"), "kernel");
    assert_eq!(v, Verdict::Ok);
    assert!(f.fix.is_none());

    t.file("/proc/sys/kernel/osrelease", "4.19.0\n");
    let (v, f) = verdict_of(&t, &plan(""), "kernel");
    assert_eq!(v, Verdict::Warn);
    assert!(f.finding.contains("has no io_uring"), "{f:?}");
}

#[test]
fn memlock_only_matters_before_5_12() {
    let t = Tree::good("memlock");
    t.file(
        "/proc/self/limits",
        &limits_file(65536, 1_048_576, 1_048_576),
    );
    // 6.6 does not charge rings to memlock.
    assert_eq!(verdict_of(&t, &plan(""), "memlock").0, Verdict::Ok);
    t.file("/proc/sys/kernel/osrelease", "5.10.0\n");
    let (v, f) = verdict_of(&t, &plan(""), "memlock");
    assert_eq!(v, Verdict::Warn, "{f:?}");
    // 4 rings of 1024 entries: 4 × (64 + 4 + 32) KiB-ish + headers.
    assert!(f.finding.contains("4 rings of 1024 entries"), "{f:?}");
    assert!(f.fix.as_deref().unwrap().starts_with("ulimit -l "), "{f:?}");
    assert_eq!(
        verdict_of(&t, &plan("runtime: {driver: io_uring}"), "memlock").0,
        Verdict::Fail
    );
    assert_eq!(
        verdict_of(&t, &plan("runtime: {ring_entries: 64}"), "memlock").0,
        Verdict::Ok
    );
}

#[test]
fn io_uring_disabled_values() {
    let t = Tree::good("disabled");
    t.file("/proc/sys/kernel/io_uring_disabled", "2\n");
    let (v, f) = verdict_of(&t, &plan(""), "io_uring_disabled");
    assert_eq!(v, Verdict::Warn);
    assert!(f.finding.contains("falls back to epoll"), "{f:?}");
    assert!(f
        .fix
        .as_deref()
        .unwrap()
        .starts_with("sysctl -w kernel.io_uring_disabled=0"));
    assert_eq!(
        verdict_of(
            &t,
            &plan("runtime: {driver: io_uring}"),
            "io_uring_disabled"
        )
        .0,
        Verdict::Fail
    );
    assert_eq!(
        verdict_of(&t, &plan("runtime: {driver: epoll}"), "io_uring_disabled").0,
        Verdict::Ok
    );

    // 1: only a group; this user (groups 1000 27) is not in group 50, then is in 27.
    t.file("/proc/sys/kernel/io_uring_disabled", "1\n")
        .file("/proc/sys/kernel/io_uring_group", "50\n");
    let (v, f) = verdict_of(&t, &plan(""), "io_uring_disabled");
    assert_eq!(v, Verdict::Warn, "{f:?}");
    assert!(f.finding.contains("group 50"), "{f:?}");
    t.file("/proc/sys/kernel/io_uring_group", "27\n");
    assert_eq!(
        verdict_of(&t, &plan(""), "io_uring_disabled").0,
        Verdict::Info
    );

    // Kernels before 6.6 have no such sysctl.
    std::fs::remove_file(t.root().join("proc/sys/kernel/io_uring_disabled")).unwrap();
    assert_eq!(
        verdict_of(&t, &plan(""), "io_uring_disabled").0,
        Verdict::Ok
    );
}

#[test]
fn seccomp_in_a_container() {
    let t = Tree::good("seccomp");
    t.file("/proc/self/status", &status(2, "0-3"))
        .file("/.dockerenv", "");
    let (v, f) = verdict_of(&t, &plan(""), "seccomp");
    assert_eq!(v, Verdict::Warn, "{f:?}");
    assert!(f.finding.contains("Docker: /.dockerenv"), "{f:?}");
    assert!(f.finding.contains("since Docker 25.0"), "{f:?}");
    assert!(f
        .fix
        .as_deref()
        .unwrap()
        .starts_with("docker run --security-opt seccomp="));
    assert_eq!(
        verdict_of(&t, &plan("runtime: {driver: epoll}"), "seccomp").0,
        Verdict::Ok
    );

    // Kubernetes, seen through /proc/1/cgroup.
    std::fs::remove_file(t.root().join(".dockerenv")).unwrap();
    t.file(
        "/proc/1/cgroup",
        "0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-0123.scope\n",
    );
    let (_, f) = verdict_of(&t, &plan(""), "seccomp");
    assert!(f.finding.contains("/proc/1/cgroup names kubepods"), "{f:?}");

    // A filter outside a container.
    t.file("/proc/1/cgroup", "0::/init.scope\n");
    let (v, f) = verdict_of(&t, &plan(""), "seccomp");
    assert_eq!(v, Verdict::Warn);
    assert!(
        f.fix.as_deref().unwrap().contains("SystemCallFilter="),
        "{f:?}"
    );

    // In a container without a filter.
    t.file("/proc/self/status", &status(0, "0-3"))
        .file("/run/.containerenv", "");
    let (v, f) = verdict_of(&t, &plan(""), "seccomp");
    assert_eq!(v, Verdict::Ok);
    assert!(f.finding.contains("Podman"), "{f:?}");
}

#[test]
fn nofile_against_connections() {
    let t = Tree::good("nofile");
    let config = "workers: 4\nlimits: {max_connections_per_worker: 10000}\n";
    // 4 × (20000 + 0 pooled) + 64 + 4 × 5 = 80084.
    assert_eq!(verdict_of(&t, &plan(config), "nofile").0, Verdict::Ok);

    // A hard limit of 65536 is below 80084 but not far below.
    t.file("/proc/self/limits", &limits_file(8 << 20, 1024, 65536));
    let (v, f) = verdict_of(&t, &plan(config), "nofile");
    assert_eq!(v, Verdict::Warn, "{f:?}");
    assert!(f.finding.contains("= 80084 descriptors"), "{f:?}");
    assert!(
        f.fix.as_deref().unwrap().starts_with("ulimit -n 131072"),
        "{f:?}"
    );

    // 1024 / 4096 is far below: Ringway would not run well.
    t.file("/proc/self/limits", &limits_file(8 << 20, 1024, 4096));
    let (v, f) = verdict_of(&t, &plan(config), "nofile");
    assert_eq!(v, Verdict::Fail, "{f:?}");
    assert!(f.finding.contains("far below"), "{f:?}");

    // Derived connection limits: 4 workers from a 4096 hard limit get about 500 each.
    let (v, f) = verdict_of(&t, &plan(""), "nofile");
    assert_eq!(v, Verdict::Warn, "{f:?}");
    assert!(
        f.finding.contains("derived from the hard limit: 504 here"),
        "{f:?}"
    );

    // Past fs.nr_open, the fix raises it first.
    t.file("/proc/sys/fs/nr_open", "65536\n");
    let (_, f) = verdict_of(&t, &plan(config), "nofile");
    assert!(
        f.fix
            .as_deref()
            .unwrap()
            .starts_with("sysctl -w fs.nr_open=131072; ulimit -n 131072"),
        "{f:?}"
    );
}

#[test]
fn net_sysctls_low() {
    let t = Tree::good("net");
    t.file("/proc/sys/net/core/somaxconn", "128\n")
        .file("/proc/sys/net/ipv4/tcp_max_syn_backlog", "512\n")
        .file("/proc/sys/net/ipv4/ip_local_port_range", "60000 60999\n")
        .file("/proc/sys/net/ipv4/tcp_tw_reuse", "0\n");
    let p = plan(BACKENDS);
    let findings = check_all(&t, &p);
    let f = find(&findings, "somaxconn");
    assert_eq!(f.verdict, Verdict::Warn);
    assert!(f
        .finding
        .contains("caps listen(4096) at net.core.somaxconn (128 here)"));
    assert_eq!(f.fix.as_deref(), Some("sysctl -w net.core.somaxconn=4096"));
    let f = find(&findings, "tcp_max_syn_backlog");
    assert_eq!(f.verdict, Verdict::Warn);
    assert!(f.finding.contains("SYN cookies"), "{f:?}");
    assert_eq!(
        f.fix.as_deref(),
        Some("sysctl -w net.ipv4.tcp_max_syn_backlog=4096")
    );
    // 4 workers × (2 × 64 + 1 × 16) = 576 pooled, 1152 wanted, 1000 ports.
    let f = find(&findings, "ip_local_port_range");
    assert_eq!(f.verdict, Verdict::Warn, "{f:?}");
    assert!(f.finding.contains("only 1000 ephemeral ports"), "{f:?}");
    assert!(f.finding.contains("= 576, 1152 with headroom"), "{f:?}");
    assert_eq!(
        f.fix.as_deref(),
        Some("sysctl -w net.ipv4.ip_local_port_range=\"10000 65535\"")
    );
    let f = find(&findings, "tcp_tw_reuse");
    assert_eq!(f.verdict, Verdict::Warn);
    assert_eq!(f.fix.as_deref(), Some("sysctl -w net.ipv4.tcp_tw_reuse=1"));

    // A configured backlog changes what is wanted.
    let small = plan("limits: {accept_backlog: 128}\n");
    assert_eq!(verdict_of(&t, &small, "somaxconn").0, Verdict::Ok);

    // Without backends the port range and TIME_WAIT reuse do not matter.
    assert_eq!(
        verdict_of(&t, &plan(""), "ip_local_port_range").0,
        Verdict::Ok
    );
    assert_eq!(verdict_of(&t, &plan(""), "tcp_tw_reuse").0, Verdict::Ok);
}

#[test]
fn tw_reuse_loopback_only() {
    let t = Tree::good("tw");
    t.file("/proc/sys/net/ipv4/tcp_tw_reuse", "2\n");
    let local = plan("backends: [{name: a, targets: [{url: 'http://127.0.0.1:9000'}, {url: 'http://[::1]:9001'}, {url: 'http://localhost:9002'}]}]");
    assert_eq!(verdict_of(&t, &local, "tcp_tw_reuse").0, Verdict::Ok);
    let (v, f) = verdict_of(&t, &plan(BACKENDS), "tcp_tw_reuse");
    assert_eq!(v, Verdict::Warn);
    assert!(f.finding.contains("2 targets are not on loopback"), "{f:?}");
    // A target whose URL is an unset variable may be anywhere.
    let (v, f) = verdict_of(
        &t,
        &plan("backends: [{name: a, targets: [{url: '${UNSET_FOR_TEST}'}]}]"),
        "tcp_tw_reuse",
    );
    assert_eq!(v, Verdict::Warn);
    assert!(f.finding.contains("1 target has no address"), "{f:?}");
}

/// 4 cores × 2 threads: CPU i and i + 4 are siblings.
fn smt_tree(name: &str) -> Tree {
    let t = Tree::good(name);
    t.file("/sys/devices/system/cpu/online", "0-7\n")
        .file("/proc/self/status", &status(0, "0-7"))
        .file("/sys/devices/system/node/node0/cpulist", "0-7\n");
    for cpu in 0..8 {
        t.file(
            &format!("/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list"),
            &format!("{},{}\n", cpu % 4, cpu % 4 + 4),
        );
    }
    t
}

#[test]
fn smt_siblings_pinned_together() {
    let t = smt_tree("smt");
    let (v, f) = verdict_of(&t, &plan("workers: 2\ncpus: \"0,4\"\n"), "smt");
    assert_eq!(v, Verdict::Warn, "{f:?}");
    assert!(f.finding.contains("CPUs 0,4"), "{f:?}");
    assert!(
        f.finding
            .contains("3 cores have no worker (CPUs 1,5; 2,6; 3,7)"),
        "{f:?}"
    );
    assert_eq!(f.fix.as_deref(), Some("cpus: \"0-1\" in the config"));

    // One thread per core: fine.
    assert_eq!(
        verdict_of(&t, &plan("cpus: \"0-3\"\n"), "smt").0,
        Verdict::Ok
    );
    // Every thread busy: the siblings share, but no core is idle.
    let (v, f) = verdict_of(&t, &plan(""), "smt");
    assert_eq!(v, Verdict::Ok);
    assert!(f.finding.contains("every core has workers"), "{f:?}");
    // No SMT at all.
    let plain = Tree::good("nosmt");
    let (v, f) = verdict_of(&plain, &plan(""), "smt");
    assert_eq!(v, Verdict::Ok);
    assert_eq!(f.finding, "no SMT: one thread per core");
}

#[test]
fn offline_and_oversubscribed_cpus() {
    let t = Tree::good("offline");
    let (v, f) = verdict_of(&t, &plan("cpus: \"0-5\"\n"), "cpus");
    assert_eq!(v, Verdict::Warn, "{f:?}");
    assert!(
        f.finding.contains("cpus names CPUs 4-5 that are offline"),
        "{f:?}"
    );
    assert!(
        f.fix.as_deref().unwrap().starts_with(
            "cpus: \"0-3\" in the config, or bring them online: echo 1 > \
             /sys/devices/system/cpu/cpu4/online"
        ),
        "{f:?}"
    );

    let (v, f) = verdict_of(&t, &plan("workers: 8\n"), "cpus");
    assert_eq!(v, Verdict::Warn);
    assert!(f.finding.contains("8 workers share 4 CPUs"), "{f:?}");
    assert_eq!(f.fix.as_deref(), Some("workers: 4 in the config"));

    // A container's CPU quota of 1.5 CPUs against 4 workers.
    t.file("/sys/fs/cgroup/cpu.max", "150000 100000\n");
    let (v, f) = verdict_of(&t, &plan(""), "cpus");
    assert_eq!(v, Verdict::Warn);
    assert!(
        f.finding.contains("1.50 CPUs, fewer than 4 workers"),
        "{f:?}"
    );
    t.file("/sys/fs/cgroup/cpu.max", "max 100000\n");
    assert_eq!(verdict_of(&t, &plan(""), "cpus").0, Verdict::Ok);
}

#[test]
fn numa_span() {
    let t = Tree::good("numa");
    t.file("/sys/devices/system/node/node0/cpulist", "0-1\n")
        .file("/sys/devices/system/node/node1/cpulist", "2-3\n")
        .file("/sys/devices/pci0000:00/0000:3b:00.0/numa_node", "1\n");
    let (v, f) = verdict_of(&t, &plan(""), "numa");
    assert_eq!(v, Verdict::Warn, "{f:?}");
    assert!(f
        .finding
        .contains("node0 (CPUs 0-1): 2 workers, node1 (CPUs 2-3): 2 workers"));
    assert!(f.finding.contains("NICs on eth0: node1"), "{f:?}");
    assert!(f
        .fix
        .as_deref()
        .unwrap()
        .starts_with("cpus: \"2-3\" in the config (node1 only)"));
    let (v, f) = verdict_of(&t, &plan("cpus: \"2-3\"\n"), "numa");
    assert_eq!(v, Verdict::Ok);
    assert!(f.finding.contains("every worker on node1"), "{f:?}");
}

#[test]
fn nic_queues_and_interrupts() {
    let t = Tree::empty("nic");
    // A virtio NIC as a VM shows it: eth0 → virtio2 under PCI 0000:00:03.0, one queue pair.
    t.file("/sys/devices/system/cpu/online", "0-1\n")
        .dir("/sys/devices/pci0000:00/0000:00:03.0/virtio2")
        .dir("/sys/devices/pci0000:00/0000:00:03.0/msi_irqs/37")
        .link(
            "/sys/class/net/eth0/device",
            "../../../devices/pci0000:00/0000:00:03.0/virtio2",
        )
        .dir("/sys/class/net/eth0/queues/rx-0")
        .dir("/sys/class/net/eth0/queues/tx-0")
        .dir("/sys/class/net/lo/queues/rx-0")
        .dir("/sys/class/net/ifb0/queues/rx-0")
        .file(
            "/proc/interrupts",
            "           CPU0       CPU1       \n \
             37:          0          0 PCI-MSIX-0000:00:03.0   0-edge      virtio2-config\n \
             38:          0       4530 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0\n \
             39:       3131          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0\n \
             41:      13930          0 PCI-MSIX-0000:00:04.0   1-edge      virtio20-rx\n\
             LOC:   14006511    9613985   Local timer interrupts\n",
        )
        .file("/proc/irq/38/smp_affinity_list", "0-1\n")
        .file("/proc/irq/39/smp_affinity_list", "0-1\n");
    let findings = check_all(&t, &plan(""));
    let f = find(&findings, "nic_queues");
    assert_eq!(f.verdict, Verdict::Info, "{f:?}");
    assert!(
        f.finding
            .starts_with("eth0: 1 RX / 1 TX queue for 2 workers"),
        "{f:?}"
    );
    assert!(
        f.fix.as_deref().unwrap().starts_with(
            "ethtool -L eth0 combined 2 (if ethtool -l eth0 shows that many channels), or \
             spread receive work with RPS: echo 3 > /sys/class/net/eth0/queues/rx-0/rps_cpus"
        ),
        "{f:?}"
    );
    let f = find(&findings, "irq_affinity");
    assert_eq!(f.verdict, Verdict::Info);
    assert_eq!(
        f.finding,
        "eth0: IRQ 38 (virtio2-input.0) → CPUs 0-1, taken on 1, IRQ 39 (virtio2-output.0) → \
         CPUs 0-1, taken on 0; workers on CPUs 0-1"
    );
    assert!(
        f.fix.as_deref().unwrap().starts_with(
            "echo 0 > /proc/irq/38/smp_affinity_list; echo 1 > /proc/irq/39/smp_affinity_list \
             (one eth0 queue"
        ),
        "{f:?}"
    );
    // Everything else on an almost empty tree is reported, not a panic.
    assert_eq!(findings.len(), CHECKS.len());

    let none = Tree::empty("nonic");
    none.dir("/sys/class/net/lo/queues/rx-0");
    let findings = check_all(&none, &plan(""));
    assert!(find(&findings, "nic_queues")
        .finding
        .starts_with("no physical network interface"));
}

#[test]
fn thp_and_governor() {
    let t = Tree::good("thp");
    t.file(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never\n",
    )
    .file(
        "/sys/devices/system/cpu/cpu2/cpufreq/scaling_governor",
        "powersave\n",
    );
    let findings = check_all(&t, &plan(""));
    let f = find(&findings, "thp");
    assert_eq!(f.verdict, Verdict::Warn);
    assert!(f
        .fix
        .as_deref()
        .unwrap()
        .starts_with("echo madvise > /sys/kernel/mm/transparent_hugepage/enabled"));
    let f = find(&findings, "cpu_governor");
    assert_eq!(f.verdict, Verdict::Warn);
    assert!(
        f.finding
            .starts_with("governor performance on CPUs 0-1,3, powersave on CPUs 2"),
        "{f:?}"
    );
    assert!(f
        .fix
        .as_deref()
        .unwrap()
        .starts_with("cpupower frequency-set -g performance"));
    t.file(
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "always madvise [never]\n",
    );
    assert_eq!(verdict_of(&t, &plan(""), "thp").0, Verdict::Ok);
}

#[test]
fn an_empty_tree_reports_every_check() {
    let t = Tree::empty("bare");
    let findings = check_all(&t, &plan(""));
    let names: Vec<&str> = findings.iter().map(|f| f.check).collect();
    assert_eq!(names, CHECKS);
    let (code, out, _) = cli(&["--root", t.root().to_str().unwrap()]);
    assert!(code <= 1, "{out}");
}

#[test]
fn exit_codes() {
    let t = Tree::good("exit");
    let root = t.root().to_str().unwrap().to_string();
    assert_eq!(cli(&["--root", &root]).0, 0);
    t.file("/proc/sys/net/core/somaxconn", "128\n");
    let (code, out, _) = cli(&["--root", &root]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("\nfixes:\n  somaxconn (warn): sysctl -w net.core.somaxconn=4096\n"),
        "{out}"
    );
    assert!(out.ends_with("0 fail: exit 1\n"), "{out}");
    t.file("/proc/sys/kernel/io_uring_disabled", "2\n");
    assert_eq!(cli(&["--root", &root]).0, 1);
    let config = t.root().join("ringway.yaml");
    std::fs::write(&config, "runtime: {driver: io_uring}\n").unwrap();
    let (code, out, _) = cli(&["--root", &root, "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("fail  io_uring_disabled"), "{out}");
    assert!(out.contains("driver io_uring"), "{out}");

    // Usage and configuration errors.
    assert_eq!(cli(&["--bogus"]).0, 2);
    assert_eq!(cli(&["--root"]).0, 2);
    let (code, _, err) = cli(&["--root", &root, "--config", "/nonexistent/ringway.yaml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read /nonexistent/ringway.yaml"),
        "{err}"
    );
    std::fs::write(&config, "workers: many\n").unwrap();
    let (code, _, err) = cli(&["--root", &root, "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("workers: must be a number"), "{err}");
    let (code, out, _) = cli(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("usage: ringway-tune doctor"));
}

#[test]
fn json_shape() {
    let t = Tree::good("json");
    t.file("/proc/sys/net/ipv4/tcp_tw_reuse", "0\n");
    let config = t.root().join("ringway.yaml");
    std::fs::write(&config, BACKENDS).unwrap();
    let (code, out, _) = cli(&[
        "--json",
        "--root",
        t.root().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    let items = value.as_array().unwrap();
    assert_eq!(items.len(), CHECKS.len());
    for (item, name) in items.iter().zip(CHECKS) {
        let obj = item.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys, ["check", "verdict", "finding", "fix"]);
        assert_eq!(obj["check"], name);
        let verdict = obj["verdict"].as_str().unwrap();
        assert!(["ok", "info", "warn", "fail"].contains(&verdict), "{item}");
        assert!(obj["finding"].is_string());
        if verdict == "ok" {
            assert!(obj["fix"].is_null(), "{item}");
        }
    }
    let tw = items.iter().find(|i| i["check"] == "tcp_tw_reuse").unwrap();
    assert_eq!(tw["verdict"], "warn");
    assert_eq!(tw["fix"], "sysctl -w net.ipv4.tcp_tw_reuse=1");
}

#[test]
fn write_sysctl() {
    let t = Tree::good("sysctl");
    t.file("/proc/sys/net/core/somaxconn", "128\n")
        .file("/proc/sys/net/ipv4/tcp_max_syn_backlog", "512\n")
        .file("/proc/sys/net/ipv4/ip_local_port_range", "60000 60999\n")
        .file("/proc/sys/net/ipv4/tcp_tw_reuse", "0\n");
    let config = t.root().join("ringway.yaml");
    std::fs::write(&config, BACKENDS).unwrap();
    let out_file = t.root().join("99-ringway.conf");
    let (code, _, err) = cli(&[
        "--root",
        t.root().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--write-sysctl",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("(4 settings to change)"), "{err}");
    let text = std::fs::read_to_string(&out_file).unwrap();
    let settings: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    assert_eq!(
        settings,
        [
            "net.core.somaxconn = 4096",
            "net.ipv4.tcp_max_syn_backlog = 4096",
            "net.ipv4.ip_local_port_range = 10000 65535",
            "net.ipv4.tcp_tw_reuse = 1",
        ]
    );
    // Every setting has a reason above it, wrapped (the header names paths, which may be long).
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate().skip(3) {
        if settings.contains(line) {
            assert!(lines[i - 1].starts_with("# "), "{text}");
        }
        assert!(line.len() <= 100, "{line}");
    }
    assert!(
        lines[2].starts_with(&format!(
            "# Install: cp {} /etc/sysctl.d/",
            out_file.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("# Ringway listens with a backlog of 4096"),
        "{text}"
    );

    // A host that needs nothing gets a file that says so.
    let good = Tree::good("sysctl-good");
    let out_file = good.root().join("99-ringway.conf");
    let (code, _, _) = cli(&[
        "--root",
        good.root().to_str().unwrap(),
        "--write-sysctl",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let text = std::fs::read_to_string(&out_file).unwrap();
    assert!(text.lines().all(|l| l.starts_with('#')), "{text}");
    assert!(text.contains("Nothing to change"), "{text}");
    // --quick cannot write one.
    assert_eq!(
        cli(&["--quick", "--write-sysctl", out_file.to_str().unwrap()]).0,
        2
    );
}

#[test]
fn the_shipped_sysctl_file_sets_what_the_doctor_checks() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy/99-ringway.conf");
    let text = std::fs::read_to_string(&path).unwrap();
    let keys: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split('=').next().unwrap().trim())
        .collect();
    assert_eq!(
        keys,
        [
            "net.core.somaxconn",
            "net.ipv4.tcp_max_syn_backlog",
            "net.ipv4.ip_local_port_range",
            "net.ipv4.tcp_tw_reuse",
        ]
    );
}

#[test]
fn quick_checks_on_a_fake_root() {
    let t = Tree::good("quick");
    t.file("/proc/sys/net/core/somaxconn", "128\n")
        .file("/proc/self/limits", &limits_file(8 << 20, 1024, 2048));
    let findings = quick_checks(t.root(), &Plan::new(Some(4), Some(5000)));
    let names: Vec<&str> = findings.iter().map(|f| f.check).collect();
    assert_eq!(names, ["io_uring_disabled", "nofile", "somaxconn"]);
    assert_eq!(findings[0].verdict, Verdict::Ok);
    assert_eq!(findings[1].verdict, Verdict::Fail);
    assert_eq!(findings[2].verdict, Verdict::Warn);
    // Without a configuration the connection limit is derived: fewer connections, a warning.
    let (code, out, _) = cli(&["--quick", "--root", t.root().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        !out.lines()
            .any(|l| l.split_whitespace().nth(1) == Some("kernel")),
        "{out}"
    );
}

#[test]
fn plan_from_yaml() {
    let p = plan(
        "workers: 6\ncpus: \"0-2,8\"\nlimits: {max_connections_per_worker: 20000, accept_backlog: 8192}\n\
         listeners: [{address: 0.0.0.0:80}, {address: 0.0.0.0:443}]\n\
         backends:\n  - name: a\n    targets: [{url: http://10.0.0.1:80}, http://10.0.0.2:80]\n    pool: {max_idle_per_target: 10}\n\
         runtime: {driver: io_uring, ring_entries: 256, ring_flags: coop_taskrun}\n",
    );
    assert_eq!(p.workers, Some(6));
    assert_eq!(p.cpus, Some(vec![0, 1, 2, 8]));
    assert_eq!(p.max_connections_per_worker, Some(20000));
    assert_eq!(p.accept_backlog, 8192);
    assert_eq!(p.listeners, 2);
    assert_eq!(p.pooled_per_worker(), 20);
    assert_eq!(p.driver, Driver::IoUring);
    assert_eq!(p.ring_entries, 256);
    assert_eq!(p.ring_flags, RingFlags::CoopTaskrun);

    let d = plan(
        "listeners: [{address: 0.0.0.0:80}]\nbackends: [{name: b, targets: [{url: http://x:1}]}]\n",
    );
    assert_eq!(d.workers, None);
    assert_eq!(d.accept_backlog, 4096);
    assert_eq!(d.ring_entries, 1024);
    assert_eq!(d.ring_flags, RingFlags::DeferTaskrun);
    assert_eq!(d.driver, Driver::Auto);
    assert_eq!(d.pooled_per_worker(), 64);
    assert_eq!(plan("workers: auto\n").workers, None);

    // Every example configuration in the repository reads.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for entry in std::fs::read_dir(examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            Plan::from_yaml(&text, &path.display().to_string()).unwrap();
        }
    }

    for (bad, error) in [
        ("workers: 0\n", "workers: must be a number"),
        ("cpus: \"3-1\"\n", "cpus: range"),
        ("runtime: {driver: uring}\n", "runtime.driver"),
        ("runtime: {ring_entries: 1000}\n", "runtime.ring_entries"),
        ("runtime: {ring_flags: fast}\n", "runtime.ring_flags"),
        ("backends: {a: 1}\n", "backends: must be a list"),
        ("- 1\n", "not a mapping"),
        ("a: [\n", "not YAML"),
    ] {
        let e = Plan::from_yaml(bad, "t.yaml").unwrap_err();
        assert!(e.contains(error), "{bad:?}: {e}");
    }
}

#[test]
fn substitution() {
    let env = |name: &str| (name == "SET").then(|| "4".to_string());
    assert_eq!(
        substitute(
            "workers: ${SET}\nx: ${UNSET:-auto} ${UNSET} $${SET} $5",
            &env
        ),
        "workers: 4\nx: auto  ${SET} $5"
    );
    assert_eq!(substitute("a: ${OPEN\nb", &env), "a: ${OPEN\nb");
}

#[test]
fn parsers() {
    assert_eq!(Kernel::parse("6.18.44-fc-v657"), Some(Kernel(6, 18, 44)));
    assert_eq!(Kernel::parse("5.4.0-150-generic"), Some(Kernel(5, 4, 0)));
    assert_eq!(Kernel::parse("6.1"), Some(Kernel(6, 1, 0)));
    assert_eq!(Kernel::parse("x"), None);
    assert!(Kernel(5, 19, 0).at_least(5, 19) && !Kernel(5, 18, 9).at_least(5, 19));
    let text = limits_file(65536, 1024, 524288);
    assert_eq!(parse_limit(&text, "Max open files"), Some((1024, 524288)));
    assert_eq!(
        parse_limit(&text, "Max cpu time"),
        Some((u64::MAX, u64::MAX))
    );
    assert_eq!(cpu_list_string(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
    assert_eq!(cpu_list_string(&[]), "");
    assert!(is_loopback_target("http://127.0.0.1:80"));
    assert!(is_loopback_target("https://[::1]:443/x"));
    assert!(!is_loopback_target("http://10.0.0.1:80"));
    assert_eq!(limits::ring_bytes(1024), 110592);
    assert_eq!(
        probe::feature_names(0b101),
        ["SINGLE_MMAP", "SUBMIT_STABLE"]
    );
    assert_eq!(probe::feature_names(1 << 31), ["bit31"]);
    assert_eq!(host::fmt_bytes(8 << 20), "8 MiB");
    assert_eq!(host::fmt_bytes(110592), "108 KiB");
    assert_eq!(host::fmt_bytes(1536), "1.5 KiB");
}

#[test]
fn args() {
    let a = parse_args(&[
        "--config=x.yaml".to_string(),
        "--json".to_string(),
        "--root".to_string(),
        "/tmp".to_string(),
    ])
    .unwrap();
    assert_eq!(a.config, Some(PathBuf::from("x.yaml")));
    assert!(a.json);
    assert_eq!(a.root, Some(PathBuf::from("/tmp")));
    assert!(parse_args(&["--json=1".to_string()]).is_err());
    assert!(parse_args(&["--config".to_string()]).is_err());
}

/// The real host: every check prints, whatever the verdicts, and the probe runs.
#[test]
fn this_machine() {
    let (code, out, err) = cli(&["--root", "/"]);
    assert!(code <= 2, "{err}");
    for check in CHECKS {
        assert!(
            out.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(check)),
            "{check} missing from:\n{out}"
        );
    }
    let host = Host::new(Path::new("/"));
    assert!(host.is_real());
    let p = Plan::new(None, None);
    let ctx = Ctx::new(&host, &p, true);
    assert!(ctx.probe.is_some());
    let report = run_checks(&ctx);
    assert_eq!(report.findings.len(), CHECKS.len());
    let (code, out, _) = cli(&["--root", "/", "--json"]);
    assert!(code <= 2);
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(value.as_array().unwrap().len(), CHECKS.len());
    println!("{}", cli(&["--root", "/"]).1);
}
