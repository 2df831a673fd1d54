//! CPU time and peak memory of a process tree, read from `/proc`.
//!
//! A contender is a process and its descendants (nginx's master and workers); its CPU over a
//! window is the difference of two samples of utime+stime summed over the tree as it is at each
//! sample. Processes that start and exit inside a window are not counted; none of the
//! contenders fork per request.

use std::fs;

/// The fields of `/proc/PID/stat` the runner uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// User plus system CPU time of all the process's threads, in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses one `/proc/PID/stat` line. The command name (field 2) is in parentheses and may itself
/// hold spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Fields 3.. of proc(5): state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime stime ...
    let fields: Vec<&str> = rest.split_ascii_whitespace().take(13).collect();
    if fields.len() < 13 {
        return None;
    }
    let ppid = fields[1].parse().ok()?;
    let utime: u64 = fields[11].parse().ok()?;
    let stime: u64 = fields[12].parse().ok()?;
    Some(Stat {
        ppid,
        cpu_ticks: utime + stime,
    })
}

/// The peak resident set size (`VmHWM`) in KiB from a `/proc/PID/status` text.
pub fn parse_peak_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line["VmHWM:".len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Every process now running with its parent, as `(pid, stat)`.
fn all_processes() -> Vec<(u32, Stat)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
        Some((pid, stat))
    })
    .collect()
}

/// `root` and all its descendants, from a list of `(pid, stat)`.
pub fn tree_of(root: u32, processes: &[(u32, Stat)]) -> Vec<(u32, Stat)> {
    let mut tree: Vec<(u32, Stat)> = processes
        .iter()
        .filter(|(pid, _)| *pid == root)
        .copied()
        .collect();
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i].0;
        tree.extend(processes.iter().filter(|(_, s)| s.ppid == parent).copied());
        i += 1;
    }
    tree
}

/// What a sample of a process tree holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeSample {
    pub cpu_ticks: u64,
    /// The sum of each process's own peak RSS: an upper bound of the tree's peak.
    pub peak_rss_kib: u64,
    pub processes: usize,
}

/// Samples the tree rooted at `root` now.
pub fn sample(root: u32) -> TreeSample {
    let tree = tree_of(root, &all_processes());
    let peak_rss_kib = tree
        .iter()
        .filter_map(|(pid, _)| {
            parse_peak_rss_kib(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
        })
        .sum();
    TreeSample {
        cpu_ticks: tree.iter().map(|(_, s)| s.cpu_ticks).sum(),
        peak_rss_kib,
        processes: tree.len(),
    }
}

/// Clock ticks per second, the unit of `/proc` CPU times.
pub fn ticks_per_second() -> u64 {
    // SAFETY: sysconf reads a constant of the system and touches no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real nginx worker's line, with a command name holding a space.
    const NGINX_WORKER: &str = "4242 (nginx: worker) S 4241 4241 4241 0 -1 4194624 1810 0 0 0 \
        1234 567 0 0 20 0 1 0 1796 11341824 1009 18446744073709551615 1 1 0 0 0 0 0 \
        1073745920 402745863 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        assert_eq!(
            parse_stat(NGINX_WORKER),
            Some(Stat {
                ppid: 4241,
                cpu_ticks: 1234 + 567
            })
        );
        let odd = NGINX_WORKER.replace("(nginx: worker)", "(a) b) (c)");
        assert_eq!(parse_stat(&odd).map(|s| s.cpu_ticks), Some(1801));
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn peak_rss_comes_from_vm_hwm() {
        let status =
            "Name:\tnginx\nVmPeak:\t   20000 kB\nVmHWM:\t    4036 kB\nVmRSS:\t    3900 kB\n";
        assert_eq!(parse_peak_rss_kib(status), Some(4036));
        assert_eq!(parse_peak_rss_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn a_tree_is_its_root_and_all_descendants() {
        let stat = |ppid, cpu_ticks| Stat { ppid, cpu_ticks };
        let processes = [
            (1, stat(0, 5)),
            (10, stat(1, 1)),
            (11, stat(10, 2)),
            (12, stat(11, 4)),
            (20, stat(1, 8)),
        ];
        let pids: Vec<u32> = tree_of(10, &processes).iter().map(|p| p.0).collect();
        assert_eq!(pids, [10, 11, 12]);
        assert!(tree_of(99, &processes).is_empty());
    }

    #[test]
    fn this_process_samples_itself() {
        let busy: u64 = (0..2_000_000u64).map(|i| i.wrapping_mul(i)).sum();
        std::hint::black_box(busy);
        let s = sample(std::process::id());
        assert!(s.processes >= 1);
        assert!(s.peak_rss_kib > 0);
        assert!(ticks_per_second() > 0);
    }
}
