//! Hot reload through the real binary: SIGHUP, a change of the file, and `PUT /config`, under
//! load, with every response checked against the configuration in force when it was sent.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringway_tests::{Client, Origin, Ringway, TempDir};

const TOKEN: &str = "reload-admin-token-0123456789";

fn config(origin: &Origin, extra: &str) -> String {
    format!(
        "workers: 2\nadmin:\n  address: 127.0.0.1:0\n  token: {TOKEN}\nlisteners:\n  - name: public\n    address: 127.0.0.1:0\nbackends:\n  - name: app\n    targets: [{{url: {}}}]\nroutes:\n  - name: all\n    backend: app\n{extra}",
        origin.url()
    )
}

fn admin(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> ringway_tests::Response {
    let mut c = Client::connect(addr);
    let auth = format!("Bearer {TOKEN}");
    c.request(method, path, &[("Authorization", &auth)], body)
}

/// Waits for the log line of configuration `generation` (or a refusal, when `refused`).
fn wait_reload(rw: &mut Ringway, generation: u64, refusals: usize) -> Instant {
    let line = format!("configuration {generation} in force");
    rw.wait_for_output(Duration::from_secs(10), &line, |s| {
        s.contains(&line) || s.matches("configuration refused").count() > refusals
    });
    Instant::now()
}

/// A response seen by the checker: when its request was sent, when it came back, and which
/// origin answered.
struct Seen {
    sent: Instant,
    received: Instant,
    origin: String,
}

#[test]
fn twenty_reloads_under_load_lose_nothing_and_switch_origins() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let dir = TempDir::new();
    let file = dir.write("gateway.yaml", &config(&a, ""));
    let mut rw = Ringway::start_file(file.to_str().unwrap(), &[]);
    let addr = rw.addr();
    let t0 = Instant::now();

    // Fixed-rate load for the whole run.
    let json = dir.path().join("load.json");
    let mut load = Command::new(ringway_tests::ringload_bin())
        .args([
            "-c",
            "8",
            "-w",
            "1",
            "-R",
            "400",
            "-d",
            "14s",
            "--timeout",
            "5s",
        ])
        .arg(format!("--json={}", json.display()))
        .arg(format!("http://{addr}/hello"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ringload starts");

    // A checker that notes which origin answered each of its requests, on keep-alive
    // connections (a reload must not disturb them).
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let checker = {
        let (stop, seen) = (Arc::clone(&stop), Arc::clone(&seen));
        std::thread::spawn(move || {
            let mut c = Client::connect(addr);
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let r = c.get("/hello");
                assert_eq!(r.status, 200, "{}", r.text());
                seen.lock().unwrap().push(Seen {
                    sent,
                    received: Instant::now(),
                    origin: r.header("x-origin").unwrap_or("?").to_string(),
                });
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    std::thread::sleep(Duration::from_millis(500));
    // Which origin is in force from when: (the earliest the switch can have happened, the
    // latest, origin). The first configuration is in force from the start.
    let mut eras: Vec<(Instant, Instant, &str)> = vec![(t0, t0, "a")];
    let mut generation = 1;
    let mut refusals = 0;
    for i in 0..20 {
        let asked = Instant::now();
        if i == 9 {
            // An invalid one: refused, and the one in force keeps serving.
            std::fs::write(
                &file,
                config(&a, "  - name: broken\n    backend: nowhere\n"),
            )
            .unwrap();
            rw.signal(libc::SIGHUP);
            wait_reload(&mut rw, generation + 1, refusals);
            // The file watch and the signal may each try it.
            std::thread::sleep(Duration::from_millis(300));
            refusals = rw.stderr_text().matches("configuration refused").count();
            assert!(
                rw.stderr_text().contains("no backend named \"nowhere\""),
                "the refusal names the error:\n{}",
                rw.stderr_text()
            );
        } else {
            let (origin, name) = if generation % 2 == 1 {
                (&b, "b")
            } else {
                (&a, "a")
            };
            std::fs::write(&file, config(origin, "")).unwrap();
            rw.signal(libc::SIGHUP);
            generation += 1;
            let done = wait_reload(&mut rw, generation, refusals);
            assert!(
                rw.stderr_text()
                    .contains(&format!("configuration {generation} in force")),
                "reload {i} did not take:\n{}",
                rw.stderr_text()
            );
            eras.push((asked, done, name));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    checker.join().expect("every checked request got a 200");

    // Every checked response came from an origin that a configuration in force while it was
    // in flight named.
    let seen = seen.lock().unwrap();
    assert!(seen.len() > 200, "only {} checked requests", seen.len());
    let mut per_origin = std::collections::HashMap::new();
    for s in seen.iter() {
        *per_origin.entry(s.origin.as_str()).or_insert(0) += 1;
        let allowed: Vec<&str> = eras
            .iter()
            .enumerate()
            .filter(|(k, (from, _, _))| {
                // Era k runs from its earliest switch to the latest end of era k + 1's switch.
                let until = eras.get(k + 1).map(|e| e.1);
                *from <= s.received && until.is_none_or(|u| s.sent <= u)
            })
            .map(|(_, e)| e.2)
            .collect();
        assert!(
            allowed.contains(&s.origin.as_str()),
            "a response from {} while only {allowed:?} were configured",
            s.origin
        );
    }
    assert!(
        per_origin.get("a").copied().unwrap_or(0) > 10,
        "{per_origin:?}"
    );
    assert!(
        per_origin.get("b").copied().unwrap_or(0) > 10,
        "{per_origin:?}"
    );

    // The load: every request answered, none failed.
    let status = load.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(load.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "ringload failed: {stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["errors"]["total"], 0, "failed requests: {report}");
    let statuses = report["status"].as_object().unwrap();
    assert_eq!(
        statuses.keys().collect::<Vec<_>>(),
        ["200"],
        "only 200s: {report}"
    );
    assert!(report["requests"].as_u64().unwrap() > 3000, "{report}");

    // Reload latency, from the log: the trigger (the signal, or the file watch when it saw the
    // write first) to every worker switched.
    let text = rw.stderr_text();
    let mut latencies: Vec<f64> = text
        .lines()
        .filter_map(|l| {
            let (rest, _) = l.split_once(" ms from the ")?;
            let (_, ms) = rest.rsplit_once('(')?;
            ms.trim().parse().ok()
        })
        .collect();
    assert_eq!(latencies.len(), 19, "{text}");
    latencies.sort_by(f64::total_cmp);
    println!(
        "reload latency (trigger to all workers switched): median {:.1} ms, max {:.1} ms over {} reloads; {} requests under load, 0 failed",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        latencies.len(),
        report["requests"]
    );
}

#[test]
fn a_changed_file_reloads_by_itself() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let dir = TempDir::new();
    let file = dir.write("gateway.yaml", &config(&a, ""));
    let mut rw = Ringway::start_file(file.to_str().unwrap(), &[]);
    let mut c = Client::connect(rw.addr());
    assert_eq!(c.get("/hello").header("x-origin"), Some("a"));
    // Written in place, then as a rename into place (as deploy tools do).
    std::fs::write(&file, config(&b, "")).unwrap();
    wait_reload(&mut rw, 2, 0);
    assert_eq!(c.get("/hello").header("x-origin"), Some("b"));
    let tmp = dir.write("gateway.yaml.new", &config(&a, ""));
    std::fs::rename(tmp, &file).unwrap();
    wait_reload(&mut rw, 3, 0);
    assert_eq!(c.get("/hello").header("x-origin"), Some("a"));
    // A broken file is refused; the configuration in force keeps serving.
    std::fs::write(&file, "listeners: [").unwrap();
    rw.wait_for_output(Duration::from_secs(10), "a refusal", |s| {
        s.contains("configuration refused (file change)")
    });
    assert_eq!(c.get("/hello").header("x-origin"), Some("a"));
}

#[test]
fn listeners_are_added_and_removed_and_a_taken_port_refuses_the_reload() {
    let a = Origin::start("a");
    let dir = TempDir::new();
    let file = dir.write("gateway.yaml", &config(&a, ""));
    let mut rw = Ringway::start_file(file.to_str().unwrap(), &[]);
    let admin_at = rw.admin_addr();
    let first = rw.addr();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let second = free.local_addr().unwrap();
    drop(free);
    let two = config(&a, "").replace(
        "listeners:\n  - name: public\n    address: 127.0.0.1:0\n",
        &format!(
            "listeners:\n  - name: public\n    address: 127.0.0.1:0\n  - name: extra\n    address: {second}\n"
        ),
    );
    let r = admin(admin_at, "PUT", "/config", two.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(Client::connect(second).get("/hello").status, 200);
    assert_eq!(Client::connect(first).get("/hello").status, 200);

    // A listener on a port another socket holds refuses the whole reload.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let bad = two.replace(&second.to_string(), &taken.to_string());
    let r = admin(admin_at, "PUT", "/config", bad.as_bytes());
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("listener extra"), "{}", r.text());
    assert_eq!(Client::connect(second).get("/hello").status, 200);

    // Removing it closes it; the other keeps serving.
    let one = config(&a, "");
    let r = admin(admin_at, "PUT", "/config", one.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(5);
    while Client::try_connect(second).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the removed listener still accepts"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(Client::connect(first).get("/hello").status, 200);
    drop(holder);
}

#[test]
fn put_config_validates_applies_and_persists_across_a_restart() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let dir = TempDir::new();
    let file = dir.write("gateway.yaml", &config(&a, ""));
    let mut rw = Ringway::start_file(file.to_str().unwrap(), &[]);
    let admin_at = rw.admin_addr();

    // Dry run: checked, nothing switched.
    let r = admin(
        admin_at,
        "PUT",
        "/config?dry_run=true",
        config(&b, "").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"dry_run\":true"), "{}", r.text());
    assert_eq!(
        Client::connect(rw.addr()).get("/hello").header("x-origin"),
        Some("a")
    );

    // Invalid: 422 naming the field; nothing switched.
    let r = admin(
        admin_at,
        "PUT",
        "/config",
        config(&b, "  - name: broken\n    backend: nowhere\n").as_bytes(),
    );
    assert_eq!(r.status, 422, "{}", r.text());
    let body: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(body["error"], "invalid_config");
    assert!(
        body["field"].as_str().unwrap().starts_with("routes[1]"),
        "{body}"
    );
    assert_eq!(
        Client::connect(rw.addr()).get("/hello").header("x-origin"),
        Some("a")
    );

    // Applied, then served after a restart too (from the state file beside the config).
    let r = admin(admin_at, "PUT", "/config", config(&b, "").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        Client::connect(rw.addr()).get("/hello").header("x-origin"),
        Some("b")
    );
    let status = admin(admin_at, "GET", "/status", b"");
    let status: serde_json::Value = serde_json::from_str(&status.text()).unwrap();
    assert_eq!(status["config"]["generation"], 2, "{status}");
    assert_eq!(status["last_reload"]["result"], "success", "{status}");
    let config_view = admin(admin_at, "GET", "/config", b"").text();
    assert!(config_view.contains("<redacted>") && !config_view.contains(TOKEN));
    rw.sigterm();
    rw.wait_exit(Duration::from_secs(10));
    assert!(dir.path().join("gateway.yaml.applied").is_file());
    let rw = Ringway::start_file(file.to_str().unwrap(), &[]);
    assert_eq!(
        Client::connect(rw.addr()).get("/hello").header("x-origin"),
        Some("b")
    );
    drop(rw);

    // The file edited since: the file wins, and the state file is set aside.
    std::fs::write(&file, config(&a, "") + "# edited\n").unwrap();
    let rw = Ringway::start_file(file.to_str().unwrap(), &[]);
    assert_eq!(
        Client::connect(rw.addr()).get("/hello").header("x-origin"),
        Some("a")
    );
    assert!(dir.path().join("gateway.yaml.applied.stale").is_file());
}

#[test]
fn admin_api_edits_backends_and_drains_targets() {
    let a = Origin::start("a");
    let b = Origin::start("b");
    let dir = TempDir::new();
    let file = dir.write("gateway.yaml", &config(&a, ""));
    let mut rw = Ringway::start_file(file.to_str().unwrap(), &[]);
    let admin_at = rw.admin_addr();

    let r = admin(admin_at, "GET", "/backends/app", b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // Replace the backend's targets with b.
    let body = format!(
        "{{\"name\": \"app\", \"targets\": [{{\"url\": \"{}\"}}]}}",
        b.url()
    );
    let r = admin(admin_at, "PUT", "/backends/app", body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        Client::connect(rw.addr()).get("/hello").header("x-origin"),
        Some("b")
    );
    // A bad edit names the field, and changes nothing.
    let r = admin(admin_at, "DELETE", "/backends/app", b"");
    assert!(r.status == 422 || r.status == 409, "{}", r.text());
    let r = admin(admin_at, "POST", "/backends", b"{\"targets\": []}");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("body.name"), "{}", r.text());
    assert_eq!(
        Client::connect(rw.addr()).get("/hello").header("x-origin"),
        Some("b")
    );

    // Add a as a second target, then drain b: everything goes to a.
    let body = format!("{{\"url\": \"{}\"}}", a.url());
    let r = admin(admin_at, "POST", "/backends/app/targets", body.as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());
    let target_b = b.addr().to_string();
    let r = admin(
        admin_at,
        "POST",
        &format!("/backends/app/targets/{target_b}/drain"),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut c = Client::connect(rw.addr());
    for _ in 0..10 {
        assert_eq!(c.get("/hello").header("x-origin"), Some("a"));
    }
    let state = admin(admin_at, "GET", "/state/upstreams", b"").text();
    assert!(state.contains("\"drained\":true"), "{state}");
    let r = admin(
        admin_at,
        "POST",
        &format!("/backends/app/targets/{target_b}/undrain"),
        b"",
    );
    assert_eq!(r.status, 200);
    let origins: std::collections::HashSet<String> = (0..10)
        .map(|_| c.get("/hello").header("x-origin").unwrap().to_string())
        .collect();
    assert_eq!(origins.len(), 2, "{origins:?}");
}
