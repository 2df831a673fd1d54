//! Zero-downtime binary upgrade through the real binary: SIGUSR2, then `ringway upgrade
//! --pid`, under fixed-rate load: no failed request, no refused connection.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ringway_tests::process::ringway_bin;
use ringway_tests::{Client, Origin, Ringway, TempDir};

/// The pid named by the line `ringway: upgraded: process PID serves` after `after` lines of
/// that kind.
fn upgraded_pid(rw: &mut Ringway, nth: usize) -> u32 {
    rw.wait_for_output(Duration::from_secs(40), "the upgrade", |s| {
        s.matches("ringway: upgraded: process ").count() > nth || s.contains("upgrade failed")
    });
    let text = rw.stderr_text();
    assert!(!text.contains("upgrade failed"), "{text}");
    text.lines()
        .filter_map(|l| l.strip_prefix("ringway: upgraded: process "))
        .nth(nth)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|pid| pid.parse().ok())
        .expect("the new process's pid")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.split(") ")
                .nth(1)
                .is_some_and(|rest| rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_upgrades_under_load_fail_no_request() {
    let origin = Origin::start("app");
    let dir = TempDir::new();
    let file = dir.write(
        "gateway.yaml",
        &format!(
            "workers: 2\nlisteners: [{{address: 127.0.0.1:0}}]\nbackends: [{{name: b, targets: [{{url: {}}}]}}]\nroutes: [{{name: all, backend: b}}]\ntimeouts: {{drain: 5s}}\n",
            origin.url()
        ),
    );
    let mut rw = Ringway::start_file(file.to_str().unwrap(), &[]);
    let addr = rw.addr();
    let first = rw.pid();

    let json = dir.path().join("load.json");
    let mut load = Command::new(ringway_tests::ringload_bin())
        .args([
            "-c",
            "16",
            "-w",
            "1",
            "-R",
            "300",
            "-d",
            "9s",
            "--timeout",
            "5s",
        ])
        .arg(format!("--json={}", json.display()))
        .arg(format!("http://{addr}/hello"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringload starts");
    // Meanwhile, new connections one after another: none may be refused.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let connector = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut c =
                    Client::try_connect(addr).expect("a connection refused during an upgrade");
                assert_eq!(c.get("/hello").status, 200);
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        })
    };

    std::thread::sleep(Duration::from_millis(1500));
    rw.signal(libc::SIGUSR2);
    let second = upgraded_pid(&mut rw, 0);
    assert_ne!(second, first);
    wait_gone(first);
    assert!(alive(second));

    // Right after: the new process upgrades too, through `ringway upgrade --pid`.
    std::thread::sleep(Duration::from_millis(1500));
    let out = Command::new(ringway_bin())
        .args(["upgrade", "--pid", &second.to_string()])
        .output()
        .expect("ringway upgrade runs");
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let third = upgraded_pid(&mut rw, 1);
    assert!(said.contains(&format!("process {third} serves")), "{said}");
    wait_gone(second);

    let status = load.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let connections = connector
        .join()
        .expect("no connection refused, every answer a 200");
    let mut stderr = String::new();
    std::io::Read::read_to_string(load.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "ringload failed: {stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["errors"]["total"], 0, "failed requests: {report}");
    assert_eq!(
        report["status"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["200"],
        "{report}"
    );
    assert!(connections > 100, "only {connections} new connections");
    println!(
        "two upgrades under load: {} requests and {connections} new connections, 0 failed",
        report["requests"]
    );

    // The last one serves on; stop it.
    // SAFETY: kill(2) with a signal number has no memory effects.
    unsafe { libc::kill(third as libc::pid_t, libc::SIGTERM) };
    wait_gone(third);
}

#[test]
fn a_new_binary_that_fails_to_start_leaves_the_old_one_serving() {
    let origin = Origin::start("app");
    let dir = TempDir::new();
    let file = dir.write(
        "gateway.yaml",
        &format!(
            "listeners: [{{address: 127.0.0.1:0}}]\nbackends: [{{name: b, targets: [{{url: {}}}]}}]\nroutes: [{{name: all, backend: b}}]\n",
            origin.url()
        ),
    );
    let mut rw = Ringway::start_file(file.to_str().unwrap(), &[]);
    // The configuration the new process would read is broken now.
    std::fs::write(&file, "listeners: [").unwrap();
    rw.signal(libc::SIGUSR2);
    rw.wait_for_output(Duration::from_secs(40), "the failed upgrade", |s| {
        s.contains("upgrade failed")
    });
    assert_eq!(Client::connect(rw.addr()).get("/hello").status, 200);
    assert!(alive(rw.pid()));
}
