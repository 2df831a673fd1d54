//! Black-box tests: the real `ringload` binary against a real origin on 127.0.0.1.

mod origin;

use std::path::PathBuf;
use std::process::{Command, Output};

use origin::Origin;
use serde_json::Value;

fn ringload(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringload"))
        .args(args)
        .output()
        .expect("ringload runs")
}

/// Runs ringload with `--json` to a temporary file; returns the exit code and the document.
fn run_json(name: &str, args: &[&str]) -> (i32, Value) {
    let path: PathBuf =
        std::env::temp_dir().join(format!("ringload-test-{}-{name}.json", std::process::id()));
    let mut all: Vec<&str> = args.to_vec();
    let p = path.to_str().unwrap().to_string();
    all.extend(["--json", &p]);
    let out = ringload(&all);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let _ = std::fs::remove_file(&path);
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    (out.status.code().unwrap_or(-1), doc)
}

#[test]
fn exact_request_count_with_n() {
    let origin = Origin::start();
    let (code, doc) = run_json(
        "exact",
        &["-n", "1001", "-c", "5", "-w", "2", &origin.url("/")],
    );
    assert_eq!(code, 0, "{doc}");
    assert_eq!(doc["requests"], 1001);
    assert_eq!(doc["status"]["200"], 1001);
    assert_eq!(doc["errors"]["total"], 0);
    assert_eq!(origin.served(), 1001);
    for key in ["duration_s", "rps", "target_rps", "latency_us"] {
        assert!(doc.get(key).is_some(), "{key} missing");
    }
    for p in ["p50", "p90", "p99", "p99.9", "p99.99", "max"] {
        assert!(doc["latency_us"][p].as_u64().unwrap() > 0, "{p}");
    }
}

#[test]
fn the_epoll_driver_works_too() {
    let origin = Origin::start();
    for extra in [
        &["--driver", "epoll"][..],
        &["--driver", "epoll", "--rate", "2000"],
    ] {
        let mut args = vec!["-n", "500", "-c", "3", "-w", "1", "-p", "1"];
        args.extend_from_slice(extra);
        let url = origin.url("/");
        args.push(&url);
        let (code, doc) = run_json("epoll", &args);
        assert_eq!(code, 0, "{doc}");
        assert_eq!(doc["requests"], 500, "{doc}");
        assert_eq!(doc["driver"], "epoll");
    }
}

#[test]
fn pipelining_chunked_and_closing_origins_keep_the_count() {
    let origin = Origin::start();
    let (_, doc) = run_json(
        "pipelined",
        &[
            "-n",
            "997",
            "-c",
            "3",
            "-w",
            "1",
            "-p",
            "8",
            &origin.url("/chunked"),
        ],
    );
    assert_eq!(doc["requests"], 997, "{doc}");
    assert_eq!(doc["errors"]["total"], 0, "{doc}");
    // The origin closes after every response: pipelined requests behind it are sent again.
    let (_, doc) = run_json(
        "closing",
        &[
            "-n",
            "200",
            "-c",
            "2",
            "-w",
            "1",
            "-p",
            "4",
            &origin.url("/close"),
        ],
    );
    assert_eq!(doc["requests"], 200, "{doc}");
    assert_eq!(doc["status"]["200"], 200, "{doc}");
    let (_, doc) = run_json("head", &["-n", "50", "-m", "HEAD", &origin.url("/")]);
    assert_eq!(doc["requests"], 50, "{doc}");
}

#[test]
fn non_2xx_statuses_are_counted() {
    let origin = Origin::start();
    let (code, doc) = run_json(
        "statuses",
        &[
            "-n",
            "300",
            "-c",
            "4",
            "-w",
            "1",
            &origin.url("/"),
            &origin.url("/status/503"),
        ],
    );
    assert_eq!(code, 0);
    let ok = doc["status"]["200"].as_u64().unwrap();
    let bad = doc["status"]["503"].as_u64().unwrap();
    assert_eq!(ok + bad, 300, "{doc}");
    assert!(bad > 50 && ok > 50, "{doc}");
    assert_eq!(doc["errors"]["total"], 0);
}

#[test]
fn connect_errors_against_a_closed_port() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/");
    let (code, doc) = run_json("refused", &["-d", "300ms", "-c", "2", "-w", "1", &url]);
    assert!(doc["errors"]["connect"].as_u64().unwrap() > 0, "{doc}");
    assert_eq!(doc["requests"], 0);
    assert_eq!(code, 1, "nothing answered");
    // With -n, failed connects are charged to the budget, so the run ends.
    let (_, doc) = run_json("refused-n", &["-n", "20", "-c", "2", &url]);
    assert_eq!(doc["errors"]["connect"], 20, "{doc}");
}

#[test]
fn open_loop_honours_the_rate() {
    let origin = Origin::start();
    let (code, doc) = run_json(
        "rate",
        &[
            "--rate",
            "400",
            "-d",
            "2s",
            "--warmup",
            "200ms",
            "-c",
            "4",
            "-w",
            "2",
            &origin.url("/"),
        ],
    );
    assert_eq!(code, 0);
    let n = doc["requests"].as_f64().unwrap();
    assert!(
        (n - 800.0).abs() <= 16.0,
        "{n} requests, expected 800 within 2 %: {doc}"
    );
    assert_eq!(doc["target_rps"], 400.0);
    let rps = doc["rps"].as_f64().unwrap();
    assert!((rps - 400.0).abs() <= 8.0, "{rps}");
    // Open loop with -n sends exactly n.
    let (_, doc) = run_json("rate-n", &["--rate", "1000", "-n", "300", &origin.url("/")]);
    assert_eq!(doc["requests"], 300, "{doc}");
    // More than two connections can carry: requests queue, and still exactly n are sent.
    let (_, doc) = run_json(
        "rate-n-busy",
        &[
            "--rate",
            "20000",
            "-n",
            "2000",
            "-c",
            "2",
            "-w",
            "1",
            &origin.url("/"),
        ],
    );
    assert_eq!(doc["requests"], 2000, "{doc}");
}

#[test]
fn timeouts_and_the_error_rate_limit() {
    let origin = Origin::start();
    let (code, doc) = run_json(
        "timeout",
        &[
            "-d",
            "700ms",
            "-c",
            "2",
            "-w",
            "1",
            "--timeout",
            "200ms",
            "--max-error-rate",
            "0.1",
            &origin.url("/slow"),
        ],
    );
    assert!(doc["errors"]["timeout"].as_u64().unwrap() >= 2, "{doc}");
    assert_eq!(code, 1);
}

#[test]
fn hdr_log_and_json_to_stdout() {
    let origin = Origin::start();
    let log = std::env::temp_dir().join(format!("ringload-test-{}.hlog", std::process::id()));
    let out = ringload(&[
        "-d",
        "1200ms",
        "-c",
        "2",
        "-w",
        "1",
        "--hdr-log",
        log.to_str().unwrap(),
        "--json",
        "-",
        &origin.url("/"),
    ]);
    assert!(out.status.success());
    let doc: Value = serde_json::from_slice(&out.stdout).expect("stdout is the JSON document");
    assert!(doc["requests"].as_u64().unwrap() > 0);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    assert!(text.contains("#[StartTime:"), "{text}");
    let intervals = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('"'))
        .count();
    assert!(intervals >= 2, "{text}");
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    for args in [
        &["--no-such-flag", "http://127.0.0.1:1/"][..],
        &["not a url"],
        &["http://name.that.does.not.exist.invalid/"],
        &["-c", "many", "http://127.0.0.1:1/"],
        &[],
    ] {
        let out = ringload(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}
