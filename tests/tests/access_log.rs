//! The JSON access log through the real binary: one line per answered request with the
//! request's facts, sampling that still keeps every error, an API that opts out, rotation by
//! rename and SIGUSR1, and a path that cannot be opened refusing the start.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringway_tests::{Client, Origin, Ringway, TempDir};
use serde_json::Value;

/// One worker (so lines come in the order requests were answered), the APIs `orders` (with
/// two operations) and `quiet` (`access_log: false`), a route `plain` and a catch-all route.
/// `log` is the `access_log` block's extra lines.
fn config(origin: &Origin, path: &Path, log: &str) -> String {
    format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: orders\n    targets: [{{url: {url}}}]\n\
         access_log:\n  path: {path}\n{log}\
         apis:\n\
         \x20 - name: orders\n    path: /orders\n    backend: orders\n    operations:\n\
         \x20     - {{id: get-order, method: GET, url_template: \"/{{id}}\"}}\n\
         \x20     - {{id: add-note, method: POST, url_template: \"/{{id}}/notes\"}}\n\
         \x20 - name: quiet\n    path: /quiet\n    backend: orders\n    access_log: false\n\
         routes:\n\
         \x20 - name: plain\n    matches: [{{path: {{value: /plain}}}}]\n    backend: orders\n\
         \x20 - name: rest\n    backend: orders\n",
        url = origin.url(),
        path = path.display(),
    )
}

/// The log's lines, parsed, once it has at least `n` (waiting up to 10 s).
fn wait_lines(path: &Path, n: usize) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let complete = text.ends_with('\n') || text.is_empty();
        let lines: Vec<&str> = text.lines().collect();
        if complete && lines.len() >= n {
            return lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
        }
        assert!(
            Instant::now() < until,
            "{} has {} lines, expected {n}:\n{text}",
            path.display(),
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_path(dir: &TempDir) -> PathBuf {
    dir.path().join("access.log")
}

#[test]
fn every_answered_request_is_one_json_line() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let path = log_path(&dir);
    let rw = Ringway::start(&config(&origin, &path, ""));
    let mut c = Client::connect(rw.addr());
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    let get = c.request(
        "GET",
        "/orders/7?expand=items",
        &[("User-Agent", "probe/1.0"), ("traceparent", incoming)],
        b"",
    );
    assert_eq!(get.status, 200);
    let post = c.request("POST", "/orders/7/notes", &[], b"hello notes");
    assert_eq!(post.status, 200);
    assert_eq!(c.get("/plain/x").status, 200);
    // Under the API's path but no operation: the gateway's own 404.
    let missing = c.request("DELETE", "/orders/7", &[], b"");
    assert_eq!(missing.status, 404);

    let lines = wait_lines(&path, 4);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let seen = origin.request_log();
    assert_eq!(seen.len(), 3);

    let l = &lines[0];
    let time = l["time"].as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    assert_eq!(l["request_id"], seen[0].header("x-request-id").unwrap());
    assert_eq!(l["client"], "127.0.0.1");
    assert_eq!(l["method"], "GET");
    assert_eq!(l["host"], "ringway.test");
    assert_eq!(l["path"], "/orders/7?expand=items");
    assert_eq!(l["status"], 200);
    assert_eq!(l["bytes_in"], 0);
    let out = l["bytes_out"].as_u64().unwrap() as usize;
    assert!(
        out > get.body.len() + 17 && out < get.body.len() + 2048,
        "bytes_out {out} for a body of {}",
        get.body.len()
    );
    assert!(l["duration_ms"].as_f64().unwrap() > 0.0);
    let upstream = l["upstream_ms"].as_f64().unwrap();
    assert!(upstream <= l["duration_ms"].as_f64().unwrap());
    assert_eq!(l["api"], "orders");
    assert_eq!(l["operation"], "get-order");
    assert_eq!(l["backend"], "orders");
    assert_eq!(l["target"], origin.addr().to_string());
    assert!(l["subscription"].is_null());
    assert!(l["cache"].is_null());
    let sent = seen[0].header("traceparent").unwrap();
    assert_eq!(l["trace_id"], &sent[3..35]);
    assert_eq!(l["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(l["user_agent"], "probe/1.0");

    let l = &lines[1];
    assert_eq!(l["request_id"], seen[1].header("x-request-id").unwrap());
    assert_eq!(l["method"], "POST");
    assert_eq!(l["operation"], "add-note");
    assert_eq!(l["bytes_in"], 11);
    assert!(l["bytes_out"].as_u64().unwrap() as usize > post.body.len());
    assert!(l["user_agent"].is_null());

    let l = &lines[2];
    assert_eq!(l["request_id"], seen[2].header("x-request-id").unwrap());
    assert_eq!(l["api"], "plain");
    assert!(l["operation"].is_null());
    assert_eq!(l["status"], 200);

    let l = &lines[3];
    assert_eq!(l["status"], 404);
    assert_eq!(l["api"], "orders");
    assert!(l["target"].is_null());
    assert!(l["upstream_ms"].is_null());
    assert!(l["request_id"].is_string());
}

#[test]
fn sample_zero_logs_only_errors() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let path = log_path(&dir);
    let rw = Ringway::start(&config(&origin, &path, "  sample: 0\n"));
    let mut c = Client::connect(rw.addr());
    for _ in 0..5 {
        assert_eq!(c.get("/hello").status, 200);
    }
    assert_eq!(c.get("/status/503").status, 503);
    for _ in 0..5 {
        assert_eq!(c.get("/hello").status, 200);
    }
    assert_eq!(c.get("/status/404").status, 404);
    // Lines come in order: a logged 200 would sit before the 404's line.
    let lines = wait_lines(&path, 2);
    let statuses: Vec<&Value> = lines.iter().map(|l| &l["status"]).collect();
    assert_eq!(statuses, [503, 404], "{lines:#?}");
    assert_eq!(lines[0]["path"], "/status/503");
}

#[test]
fn sample_zero_without_errors_always_logs_nothing() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let path = log_path(&dir);
    let rw = Ringway::start(&config(
        &origin,
        &path,
        "  sample: 0\n  errors_always: false\n",
    ));
    let mut c = Client::connect(rw.addr());
    assert_eq!(c.get("/hello").status, 200);
    assert_eq!(c.get("/status/500").status, 500);
    // Long enough for several ticks' flushes and the writer.
    std::thread::sleep(Duration::from_millis(600));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, "", "the log was opened at start and stays empty");
}

#[test]
fn an_api_with_access_log_false_is_not_logged() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let path = log_path(&dir);
    let rw = Ringway::start(&config(&origin, &path, ""));
    let mut c = Client::connect(rw.addr());
    assert_eq!(c.get("/quiet/a").status, 200);
    assert_eq!(c.get("/quiet/status").status, 200);
    assert_eq!(c.get("/orders/1").status, 200);
    let lines = wait_lines(&path, 1);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["path"], "/orders/1");
    assert_eq!(origin.requests(), 3);
}

#[test]
fn sigusr1_reopens_the_log_after_a_rename() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let path = log_path(&dir);
    let rw = Ringway::start(&config(&origin, &path, ""));
    let mut c = Client::connect(rw.addr());
    assert_eq!(c.get("/before").status, 200);
    wait_lines(&path, 1);
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    rw.signal(libc::SIGUSR1);
    // The writer opens the path again at once, creating the file.
    let until = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < until,
            "no new log file after SIGUSR1:\n{}",
            rw.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(c.get("/after").status, 200);
    let new = wait_lines(&path, 1);
    assert_eq!(new.len(), 1);
    assert_eq!(new[0]["path"], "/after");
    let old = wait_lines(&rotated, 1);
    assert_eq!(old.len(), 1);
    assert_eq!(old[0]["path"], "/before");
}

#[test]
fn a_log_path_that_cannot_be_opened_stops_the_start() {
    let origin = Origin::start("o");
    let dir = TempDir::new();
    let path = dir.path().join("missing-folder").join("access.log");
    let config_path = dir.write("ringway.yaml", &config(&origin, &path, ""));
    let mut rw = Ringway::spawn(
        &["run".as_ref(), "--config".as_ref(), config_path.as_os_str()],
        &[],
        None,
    );
    let (status, stderr) = rw.wait_exit(Duration::from_secs(10));
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("access_log.path") && stderr.contains(&path.display().to_string()),
        "{stderr}"
    );
}
