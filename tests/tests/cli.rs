//! The command line: `ringway check`, and the demo started with no arguments.

use std::time::Duration;

use ringway_tests::{run_ringway, Client, Ringway, TempDir};

const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

fn output_of(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn check_reports_every_error_with_its_path() {
    let dir = TempDir::new();
    let path = dir.write(
        "bad.yaml",
        "listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: a\n    targets:\n      - url: http://127.0.0.1:9\n\
         routes:\n  - backend: x\n  - backend: y\n",
    );
    let path = path.to_str().unwrap();
    let output = run_ringway(&["check", path], &[], CHECK_TIMEOUT);
    let text = output_of(&output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "exit status; output:\n{text}"
    );
    let first = format!(r#"{path}: routes[0].backend: no backend named "x" (known: a)"#);
    let second = format!(r#"{path}: routes[1].backend: no backend named "y" (known: a)"#);
    assert!(
        text.lines().any(|l| l.trim() == first),
        "missing line {first:?} in:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.trim() == second),
        "missing line {second:?} in:\n{text}"
    );
}

#[test]
fn check_rejects_an_unknown_key() {
    let dir = TempDir::new();
    let path = dir.write(
        "typo.yaml",
        "listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: a\n    balanse: weighted\n    targets:\n      - url: http://127.0.0.1:9\n",
    );
    let path = path.to_str().unwrap();
    let output = run_ringway(&["check", path], &[], CHECK_TIMEOUT);
    let text = output_of(&output);
    assert_eq!(output.status.code(), Some(1), "output:\n{text}");
    let line = text
        .lines()
        .find(|l| l.contains("balanse"))
        .unwrap_or_else(|| panic!("no error names the unknown key:\n{text}"));
    assert!(line.starts_with(&format!("{path}:")), "{line}");
    assert!(
        line.contains("backends[0]"),
        "the error names no path: {line}"
    );
}

#[test]
fn check_rejects_an_unset_variable() {
    let dir = TempDir::new();
    let path = dir.write(
        "env.yaml",
        "listeners:\n  - address: ${RW_TEST_SURELY_UNSET_VARIABLE}\n",
    );
    let path = path.to_str().unwrap();
    let output = run_ringway(&["check", path], &[], CHECK_TIMEOUT);
    let text = output_of(&output);
    assert_eq!(output.status.code(), Some(1), "output:\n{text}");
    assert!(
        text.contains("RW_TEST_SURELY_UNSET_VARIABLE"),
        "the error does not name the variable:\n{text}"
    );
    assert!(
        text.contains(path),
        "the error does not name the file:\n{text}"
    );
}

#[test]
fn check_accepts_a_good_config() {
    let dir = TempDir::new();
    let path = dir.write(
        "good.yaml",
        "listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: a\n    targets:\n      - url: http://127.0.0.1:9\n\
         routes:\n  - backend: a\n",
    );
    let path = path.to_str().unwrap();
    let output = run_ringway(&["check", path], &[], CHECK_TIMEOUT);
    let text = output_of(&output);
    assert!(output.status.success(), "output:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("{path}:")) && l.trim_end().ends_with("ok")),
        "no `{path}: ... ok` line:\n{text}"
    );
}

#[test]
fn check_accepts_the_basic_proxy_example() {
    let output = run_ringway(
        &["check", "examples/basic-proxy.yaml"],
        &[("RINGWAY_BACKEND", "http://127.0.0.1:9")],
        CHECK_TIMEOUT,
    );
    let text = output_of(&output);
    assert!(output.status.success(), "output:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("examples/basic-proxy.yaml:") && l.trim_end().ends_with("ok")),
        "no `examples/basic-proxy.yaml: ... ok` line:\n{text}"
    );
}

#[test]
fn run_refuses_a_bad_config() {
    let dir = TempDir::new();
    let path = dir.write(
        "bad.yaml",
        "listeners:\n  - address: 127.0.0.1:0\nroutes:\n  - backend: missing\n",
    );
    let output = run_ringway(
        &["run", "--config", path.to_str().unwrap()],
        &[],
        CHECK_TIMEOUT,
    );
    let text = output_of(&output);
    assert!(
        !output.status.success(),
        "run started on a bad config:\n{text}"
    );
    assert!(text.contains("routes[0].backend"), "{text}");
}

/// The first `http://HOST:PORT` in the demo's curl lines.
fn demo_address(output: &str) -> Option<std::net::SocketAddr> {
    output.lines().filter(|l| l.contains("curl")).find_map(|l| {
        let rest = &l[l.find("http://")? + "http://".len()..];
        let end = rest
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    })
}

#[test]
fn demo_serves_and_prints_curl_commands() {
    // No arguments. RINGWAY_LISTEN only moves the demo off its default port (8080) so a busy
    // port on the test machine cannot fail the test; the curl lines must show the real one.
    let mut demo = Ringway::spawn(&[], &[("RINGWAY_LISTEN", "127.0.0.1:0")], None);
    let endpoints = ["/hello", "/echo", "/status/", "/delay/", "/bytes/"];
    demo.wait_for_output(
        Duration::from_secs(10),
        "curl lines for /hello, /echo, /status/, /delay/ and /bytes/",
        |text| {
            demo_address(text).is_some()
                && text.contains("ringway: ready")
                && endpoints
                    .iter()
                    .all(|e| text.lines().any(|l| l.contains("curl") && l.contains(e)))
        },
    );
    let addr = demo_address(&demo.output_text()).expect("demo address");
    let mut client = Client::connect(addr);
    let hello = client.get("/hello");
    assert_eq!(hello.status, 200, "{}", hello.text());
    assert!(!hello.body.is_empty());
    let echo = client.request("POST", "/echo", &[], b"echo me");
    assert_eq!((echo.status, echo.body.as_slice()), (200, &b"echo me"[..]));
    assert_eq!(client.get("/status/418").status, 418);
    assert_eq!(client.get("/bytes/1000").body.len(), 1000);
    demo.sigterm();
    let (status, stderr) = demo.wait_exit(Duration::from_secs(12));
    assert!(status.success(), "demo exit {status}:\n{stderr}");
}

#[test]
fn check_names_the_path_of_each_kind_of_mistake() {
    const BASE: &str = "listeners:\n  - address: 127.0.0.1:0\n";
    const BACKEND: &str = "backends:\n  - name: a\n    targets:\n      - url: http://127.0.0.1:9\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("{BASE}backends:\n  - name: a\n    targets:\n      - {{ url: http://127.0.0.1:9, weight: x }}\n"),
            "backends[0].targets[0].weight",
        ),
        (
            format!("{BASE}backends:\n  - name: a\n    targets:\n      - {{ url: http://127.0.0.1:9, weight: 0 }}\n"),
            "backends[0].targets[0].weight",
        ),
        (format!("{BASE}timeouts:\n  idle: 5\n"), "timeouts.idle"),
        (format!("{BASE}runtime:\n  ring_entries: 3\n"), "runtime.ring_entries"),
        (format!("{BASE}limits:\n  max_body_bytes: 10XB\n"), "limits.max_body_bytes"),
        ("listeners: []\n".to_string(), "listeners"),
        (
            format!("{BASE}{BACKEND}  - name: a\n    targets:\n      - url: http://127.0.0.1:9\n"),
            "backends[1].name",
        ),
        (
            format!("{BASE}routes:\n  - return_response: {{ status: 99 }}\n"),
            "routes[0].return_response.status",
        ),
        (
            format!("{BASE}routes:\n  - redirect: {{ status: 300 }}\n"),
            "routes[0].redirect.status",
        ),
        (
            format!("{BASE}{BACKEND}routes:\n  - backend: a\n    redirect: {{ path: /x }}\n"),
            "routes[0]",
        ),
        (
            format!(
                "{BASE}{BACKEND}routes:\n  - matches: [{{ path: {{ type: regex, value: \"(\" }} }}]\n    backend: a\n"
            ),
            "routes[0].matches[0].path",
        ),
        (
            format!(
                "{BASE}{BACKEND}routes:\n  - matches: [{{ path: {{ type: exact, value: /x }} }}]\n    filters: {{ rewrite: {{ prefix: /y }} }}\n    backend: a\n"
            ),
            "routes[0].filters.rewrite",
        ),
    ];
    let dir = TempDir::new();
    let mut failures = Vec::new();
    for (i, (yaml, path)) in cases.iter().enumerate() {
        let file = dir.write(&format!("case{i}.yaml"), yaml);
        let file = file.to_str().unwrap();
        let output = run_ringway(&["check", file], &[], CHECK_TIMEOUT);
        let text = output_of(&output);
        let named = text
            .lines()
            .any(|l| l.starts_with(&format!("{file}:")) && l.contains(path));
        if output.status.code() != Some(1) || !named {
            failures.push(format!(
                "case {i} (expected an error at {path}, exit 1): exit {:?}, output {text:?}\n  config: {yaml:?}",
                output.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
