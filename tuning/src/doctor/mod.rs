//! `ringway-tune doctor`: checks the host against what a configuration needs and says what to
//! change, with the command that changes it.
//!
//! Every file is read under `--root` (default `/`), so each check runs on a fake `/proc` and
//! `/sys` in the tests; only the `io_uring_setup` probe touches the real machine, and only when
//! the root is `/`.

mod cpu;
mod host;
mod limits;
mod net;
mod nic;
mod plan;
mod probe;
mod uring;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;

pub use host::{Host, Kernel};
pub use plan::Plan;
pub use probe::Probe;

const USAGE: &str = "\
usage: ringway-tune doctor [--config FILE] [--json] [--root DIR] [--write-sysctl FILE] [--quick]

  --config FILE        the Ringway configuration to check the host against (default: the
                       defaults, one worker per CPU)
  --json               print the findings as a JSON array of {check, verdict, finding, fix}
  --root DIR           read /proc and /sys under DIR (default /); io_uring is only probed at /
  --write-sysctl FILE  write the kernel settings to change as a sysctl.d file
  --quick              only the quick checks (io_uring_disabled, nofile, somaxconn)

exit status: 0 all ok, 1 a warning, 2 a failure (or a usage or configuration error)";

/// How a check came out, from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// Worth knowing; nothing to fix for Ringway to run well.
    Info,
    /// Ringway runs, but slower or less robustly than it could.
    Warn,
    /// Ringway will not run well (or at all) as configured.
    Fail,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Info => "info",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub verdict: Verdict,
    /// One line: what was found.
    pub finding: String,
    /// The exact command (or configuration change) that fixes it, when not ok.
    pub fix: Option<String>,
}

impl Finding {
    pub fn new(
        check: &'static str,
        verdict: Verdict,
        finding: String,
        fix: Option<String>,
    ) -> Self {
        // An ok finding has nothing to fix.
        let fix = if verdict == Verdict::Ok { None } else { fix };
        Finding {
            check,
            verdict,
            finding,
            fix,
        }
    }

    pub fn ok(check: &'static str, finding: impl Into<String>) -> Self {
        Finding::new(check, Verdict::Ok, finding.into(), None)
    }

    pub fn info(check: &'static str, finding: impl Into<String>) -> Self {
        Finding::new(check, Verdict::Info, finding.into(), None)
    }
}

/// A kernel setting to change, for `--write-sysctl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SysctlChange {
    pub key: &'static str,
    pub value: String,
    pub why: String,
}

/// Everything the doctor found.
#[derive(Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub sysctl: Vec<SysctlChange>,
}

impl Report {
    pub fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    pub fn worst(&self) -> Verdict {
        self.findings
            .iter()
            .map(|f| f.verdict)
            .max()
            .unwrap_or(Verdict::Ok)
    }

    /// 0 when everything is ok or info, 1 with a warning, 2 with a failure.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            Verdict::Ok | Verdict::Info => 0,
            Verdict::Warn => 1,
            Verdict::Fail => 2,
        }
    }
}

/// What the checks share: the host, the plan, and what was derived from both once.
pub struct Ctx<'a> {
    pub host: &'a Host,
    pub plan: &'a Plan,
    pub kernel: Option<Kernel>,
    /// The io_uring probe's result (only on the real root).
    pub probe: Option<Probe>,
    pub online: Option<Vec<usize>>,
    /// The CPUs this process may use (`Cpus_allowed_list`, else the online ones).
    pub allowed: Vec<usize>,
    pub workers: usize,
    /// Worker `i` runs on `worker_cpus[i]`.
    pub worker_cpus: Vec<usize>,
}

impl<'a> Ctx<'a> {
    /// Reads what every check needs; probes io_uring when `probe` is set and the root is `/`.
    pub fn new(host: &'a Host, plan: &'a Plan, probe: bool) -> Ctx<'a> {
        let kernel = host
            .read("/proc/sys/kernel/osrelease")
            .and_then(|r| Kernel::parse(&r));
        let online = host.read_cpu_list("/sys/devices/system/cpu/online");
        let allowed = host
            .status_field("Cpus_allowed_list")
            .and_then(|l| ringway_core::runtime::parse_cpu_list(&l).ok())
            .filter(|l| !l.is_empty())
            .or_else(|| online.clone().filter(|l| !l.is_empty()))
            .unwrap_or_else(|| vec![0]);
        // Workers are placed on `cpus` from the configuration, else on the allowed CPUs.
        let cpu_list = match &plan.cpus {
            Some(list) if !list.is_empty() => list.clone(),
            _ => allowed.clone(),
        };
        let workers = plan.workers.unwrap_or(cpu_list.len()).max(1);
        let worker_cpus = (0..workers).map(|i| cpu_list[i % cpu_list.len()]).collect();
        let probe =
            (probe && host.is_real()).then(|| Probe::run(plan.ring_entries, plan.ring_flags));
        Ctx {
            host,
            plan,
            kernel,
            probe,
            online,
            allowed,
            workers,
            worker_cpus,
        }
    }

    /// The distinct CPUs workers run on, sorted.
    pub fn distinct_worker_cpus(&self) -> Vec<usize> {
        let mut cpus = self.worker_cpus.clone();
        cpus.sort_unstable();
        cpus.dedup();
        cpus
    }
}

/// Every check, in the order they are printed.
pub fn run_checks(ctx: &Ctx) -> Report {
    let mut report = Report::default();
    report.push(uring::kernel(ctx));
    report.push(uring::io_uring_disabled(ctx));
    report.push(uring::seccomp(ctx));
    report.push(uring::probe(ctx));
    report.push(limits::memlock(ctx));
    report.push(limits::nofile(ctx));
    net::somaxconn(ctx, &mut report);
    net::tcp_max_syn_backlog(ctx, &mut report);
    net::ip_local_port_range(ctx, &mut report);
    net::tcp_tw_reuse(ctx, &mut report);
    report.push(cpu::cpus(ctx));
    report.push(cpu::smt(ctx));
    report.push(cpu::numa(ctx));
    report.push(nic::nic_queues(ctx));
    report.push(nic::irq_affinity(ctx));
    report.push(limits::thp(ctx));
    report.push(cpu::governor(ctx));
    report
}

/// The checks cheap enough to run at every start: a few file reads, no syscall probes.
fn quick_report(ctx: &Ctx) -> Report {
    let mut report = Report::default();
    report.push(uring::io_uring_disabled(ctx));
    report.push(limits::nofile(ctx));
    net::somaxconn(ctx, &mut report);
    report
}

/// The quick subset (io_uring_disabled, nofile, somaxconn) for a process about to start with
/// `plan` on the host under `root`; see [`Plan::new`] for a plan without a configuration file.
pub fn quick_checks(root: &Path, plan: &Plan) -> Vec<Finding> {
    let host = Host::new(root);
    quick_report(&Ctx::new(&host, plan, false)).findings
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Args {
    config: Option<PathBuf>,
    json: bool,
    root: Option<PathBuf>,
    write_sysctl: Option<PathBuf>,
    quick: bool,
    help: bool,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<PathBuf, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag {
            "--config" => out.config = Some(value("--config")?),
            "--root" => out.root = Some(value("--root")?),
            "--write-sysctl" => out.write_sysctl = Some(value("--write-sysctl")?),
            "--json" if inline.is_none() => out.json = true,
            "--quick" if inline.is_none() => out.quick = true,
            "--help" | "-h" if inline.is_none() => out.help = true,
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(out)
}

/// The CLI: parses `args`, runs the checks, prints, and returns the exit status.
pub fn main(args: &[String]) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    ExitCode::from(run_cli(args, &mut stdout.lock(), &mut stderr.lock()))
}

/// [`main`] with its output streams given (so that tests can read them).
fn run_cli(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let args = match parse_args(args) {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(err, "ringway-tune doctor: {e}\n{USAGE}");
            return 2;
        }
    };
    if args.help {
        let _ = writeln!(out, "{USAGE}");
        return 0;
    }
    if args.quick && args.write_sysctl.is_some() {
        let _ = writeln!(
            err,
            "ringway-tune doctor: --write-sysctl needs the full checks, not --quick"
        );
        return 2;
    }
    let plan = match &args.config {
        None => Plan::new(None, None),
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => match Plan::from_yaml(&text, &path.display().to_string()) {
                Ok(p) => p,
                Err(e) => {
                    let _ = writeln!(err, "ringway-tune doctor: {e}");
                    return 2;
                }
            },
            Err(e) => {
                let _ = writeln!(
                    err,
                    "ringway-tune doctor: cannot read {}: {e}",
                    path.display()
                );
                return 2;
            }
        },
    };
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    if !root.is_dir() {
        let _ = writeln!(
            err,
            "ringway-tune doctor: --root {} is not a directory",
            root.display()
        );
        return 2;
    }
    let host = Host::new(&root);
    let ctx = Ctx::new(&host, &plan, !args.quick);
    let report = if args.quick {
        Report {
            findings: quick_checks(&root, &plan),
            sysctl: Vec::new(),
        }
    } else {
        run_checks(&ctx)
    };
    let written = if args.json {
        render_json(&report, out)
    } else {
        render_human(&ctx, &report, out)
    };
    if let Err(e) = written {
        let _ = writeln!(err, "ringway-tune doctor: cannot write the report: {e}");
        return 2;
    }
    if let Some(path) = &args.write_sysctl {
        let text = sysctl_file(&ctx, &report.sysctl, path);
        if let Err(e) = std::fs::write(path, text) {
            let _ = writeln!(
                err,
                "ringway-tune doctor: cannot write {}: {e}",
                path.display()
            );
            return 2;
        }
        let _ = writeln!(
            err,
            "wrote {} ({} setting{} to change); apply it with: cp {} /etc/sysctl.d/99-ringway.conf && sysctl --system",
            path.display(),
            report.sysctl.len(),
            if report.sysctl.len() == 1 { "" } else { "s" },
            path.display()
        );
    }
    report.exit_code()
}

/// A line per check, then the fixes.
fn render_human(ctx: &Ctx, report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let plan = ctx.plan;
    writeln!(
        out,
        "ringway-tune doctor: root {}, {}",
        ctx.host.root().display(),
        match &plan.source {
            Some(s) => format!("config {s}"),
            None => "no config (the defaults)".into(),
        }
    )?;
    writeln!(
        out,
        "plan: {} worker{} on CPUs {}, driver {}, ring_flags {}, {} ring entries, accept backlog {}",
        ctx.workers,
        if ctx.workers == 1 { "" } else { "s" },
        host::cpu_list_string(&ctx.worker_cpus),
        plan.driver.name(),
        plan.ring_flags.name(),
        plan.ring_entries,
        plan.accept_backlog
    )?;
    writeln!(out)?;
    let width = report
        .findings
        .iter()
        .map(|f| f.check.len())
        .max()
        .unwrap_or(0);
    for f in &report.findings {
        writeln!(
            out,
            "{:<4}  {:<width$}  {}",
            f.verdict.name(),
            f.check,
            f.finding
        )?;
    }
    let fixes: Vec<&Finding> = report.findings.iter().filter(|f| f.fix.is_some()).collect();
    if !fixes.is_empty() {
        writeln!(out, "\nfixes:")?;
        for f in fixes {
            writeln!(
                out,
                "  {} ({}): {}",
                f.check,
                f.verdict.name(),
                f.fix.as_deref().unwrap_or("")
            )?;
        }
    }
    let count = |v: Verdict| report.findings.iter().filter(|f| f.verdict == v).count();
    writeln!(
        out,
        "\n{} ok, {} info, {} warn, {} fail: exit {}",
        count(Verdict::Ok),
        count(Verdict::Info),
        count(Verdict::Warn),
        count(Verdict::Fail),
        report.exit_code()
    )
}

/// `[{check, verdict, finding, fix}, ...]`.
fn render_json(report: &Report, out: &mut dyn Write) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(&report.findings).map_err(std::io::Error::other)?;
    writeln!(out, "{text}")
}

/// A sysctl.d file with the settings to change and why.
fn sysctl_file(ctx: &Ctx, changes: &[SysctlChange], path: &Path) -> String {
    let mut text = String::from(
        "# Kernel settings for Ringway: the ones `ringway-tune doctor` found below what the\n",
    );
    text.push_str(&format!(
        "# configuration needs ({}, {} workers).\n",
        ctx.plan.source.as_deref().unwrap_or("the defaults"),
        ctx.workers
    ));
    text.push_str(&format!(
        "# Install: cp {} /etc/sysctl.d/99-ringway.conf && sysctl --system\n",
        path.display()
    ));
    if changes.is_empty() {
        text.push_str("#\n# Nothing to change: every setting checked already suffices.\n");
    }
    for c in changes {
        text.push('\n');
        let mut why = c.why.clone();
        if let Some(first) = why.get(..1) {
            why.replace_range(..1, &first.to_uppercase());
        }
        for line in wrap(&why, 94) {
            text.push_str(&format!("# {line}\n"));
        }
        text.push_str(&format!("{} = {}\n", c.key, c.value));
    }
    text
}

/// Splits `text` into lines of at most `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
