use super::*;

fn run(round: usize, contender: &str, mode: &str, rps: f64, cpu: f64) -> Run {
    Run {
        round,
        contender: contender.into(),
        workers: 1,
        body: "16B".into(),
        mode: mode.into(),
        measured: Measured {
            requests: (rps * 10.0) as u64,
            duration_s: 10.0,
            rps,
            p50_us: 900.0,
            p99_us: 3400.0,
            p999_us: Some(7000.0),
            errors: 1,
            tls: None,
        },
        proxy_cpu_us: cpu,
        origin_cpu_us: 10.0,
        origin_cpus: 1,
        peak_rss_kib: 4096 * round as u64,
    }
}

fn peers() -> Report {
    let mut runs = Vec::new();
    for round in 1..=3 {
        let f = round as f64;
        runs.push(run(round, "ringway", "saturation", 57_000.0 + f, 14.0 + f));
        runs.push(run(round, "ringway", "20000/s", 20_000.0, 18.0));
        runs.push(run(round, "nginx", "saturation", 52_000.0 + f, 16.0 + f));
        runs.push(run(round, "nginx", "20000/s", 20_000.0, 20.0));
        runs.push(run(round, "haproxy", "saturation", 50_000.0, 20.0));
    }
    Report {
        kind: "peers".into(),
        command: "cargo run --release -p ringway-bench -- peers".into(),
        date: "2026-11-26 10:00".into(),
        machine: "2 CPUs <AMD> & co".into(),
        setup: vec!["origin: nginx".into()],
        baseline: Some("nginx".into()),
        tls_baseline: None,
        runs,
    }
}

/// A TLS run: one handshake per request when `handshakes`, `resumed_share` of them resumed.
fn tls_run(contender: &str, mode: &str, rps: f64, cpu: f64, resumed_share: f64) -> Run {
    let mut r = run(1, contender, mode, rps, cpu);
    let keep_alive = mode.starts_with("keep-alive");
    // A keep-alive run opens a few connections late; they are not its point.
    let handshakes = if keep_alive { 3 } else { r.measured.requests };
    r.measured.tls = Some(crate::runner::load::TlsMeasured {
        new_connection: !keep_alive,
        handshakes,
        resumed: (handshakes as f64 * resumed_share) as u64,
        handshakes_per_s: handshakes as f64 / 10.0,
        resumed_per_s: handshakes as f64 * resumed_share / 10.0,
        version: "TLSv1.3".into(),
        cipher_suite: "TLS13_AES_256_GCM_SHA384".into(),
        key_exchange: "X25519".into(),
    });
    r
}

/// nginx and ringway, plain and over TLS, in one run.
fn with_tls() -> Report {
    let mut report = peers();
    report.runs.extend([
        tls_run("ringway-tls", "keep-alive, saturation", 40_000.0, 20.0, 0.0),
        tls_run("nginx-tls", "keep-alive, saturation", 36_000.0, 24.0, 0.0),
        tls_run(
            "ringway-tls",
            "full handshake, saturation",
            4_000.0,
            200.0,
            0.0,
        ),
        tls_run(
            "nginx-tls",
            "full handshake, saturation",
            3_200.0,
            250.0,
            0.0,
        ),
        tls_run("ringway-tls", "resumed, saturation", 8_000.0, 100.0, 0.99),
        tls_run("nginx-tls", "resumed, saturation", 6_000.0, 125.0, 0.98),
    ]);
    report.tls_baseline = Some("nginx-tls".into());
    report
}

#[test]
fn medians_are_taken_per_contender_body_and_mode() {
    assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    assert_eq!(median(&[]), 0.0);
    let rows = summarize(&peers().runs);
    assert_eq!(rows.len(), 5);
    let ringway = &rows[0];
    assert_eq!(
        (ringway.contender.as_str(), ringway.mode.as_str()),
        ("ringway", "saturation")
    );
    assert_eq!(ringway.runs, 3);
    assert_eq!(ringway.rps, 57_002.0);
    assert_eq!(ringway.proxy_cpu_us, 16.0);
    assert!((ringway.normalised - 1.6).abs() < 1e-9);
    assert_eq!(ringway.errors, 3);
    assert_eq!(ringway.peak_rss_kib, 3 * 4096);
}

#[test]
fn ratios_divide_by_the_baseline_of_the_same_body_and_mode() {
    let t = peers().ratio_table().unwrap();
    // ringway and haproxy at saturation, ringway at the fixed rate.
    assert_eq!(t.rows.len(), 3);
    let row = &t.rows[0];
    assert_eq!(&row[..3], ["16B", "saturation", "ringway"]);
    assert_eq!(row[3], format!("{:.3}", 57_002.0 / 52_002.0));
    assert_eq!(row[4], format!("{:.3}", 16.0 / 18.0));
    let mut no_baseline = peers();
    no_baseline.baseline = None;
    assert!(no_baseline.ratio_table().is_none());
}

#[test]
fn tls_runs_have_their_own_baseline_and_handshake_figures() {
    let report = with_tls();
    // The plain ratios are unchanged: no TLS row pairs with nginx's modes.
    assert_eq!(
        report.ratio_table().unwrap().rows,
        peers().ratio_table().unwrap().rows
    );
    let t = report.tls_ratio_table().unwrap();
    assert_eq!(t.rows.len(), 3);
    assert_eq!(
        t.headers[8..],
        [
            "handshakes/s ÷ nginx-tls",
            "CPU/handshake ÷ nginx-tls",
            "resumed/s ÷ nginx-tls"
        ]
    );
    let keep_alive = &t.rows[0];
    assert_eq!(
        &keep_alive[..3],
        ["16B", "keep-alive, saturation", "ringway-tls"]
    );
    assert_eq!(keep_alive[3], format!("{:.3}", 40_000.0 / 36_000.0));
    assert_eq!(keep_alive[4], format!("{:.3}", 20.0 / 24.0));
    assert_eq!(keep_alive[8..], ["-", "-", "-"]);
    let full = &t.rows[1];
    assert_eq!(full[1], "full handshake, saturation");
    assert_eq!(full[8], format!("{:.3}", 4_000.0 / 3_200.0));
    // One request per handshake: CPU per handshake is CPU per request.
    assert_eq!(full[9], format!("{:.3}", 200.0 / 250.0));
    assert_eq!(full[10], "-");
    let resumed = &t.rows[2];
    assert_eq!(
        resumed[10],
        format!("{:.3}", (8_000.0 * 0.99) / (6_000.0 * 0.98))
    );

    let summary = report.summary_table();
    assert_eq!(
        summary.headers[summary.headers.len() - 3..],
        ["handshakes/s", "resumed/s", "CPU µs/handshake"]
    );
    let row = summary
        .rows
        .iter()
        .find(|r| r[0] == "nginx-tls" && r[2] == "full handshake, saturation")
        .unwrap();
    assert_eq!(row[row.len() - 3..], ["3,200", "0", "250.00"]);
    let plain = summary.rows.iter().find(|r| r[0] == "nginx").unwrap();
    assert_eq!(plain[plain.len() - 3..], ["-", "-", "-"]);

    let md = report.markdown();
    assert!(md.contains("TLS, ratios to nginx-tls:"), "{md}");
    assert_eq!(check_markdown_tables(&md), 3);
    assert!(md.contains("full-handshake:saturation"), "{md}");
    let text = report.text();
    assert!(text.contains("TLS, ratios to nginx-tls:"));
    let svg = report.svg();
    check_xml(&svg);
    assert!(svg.contains("TLS handshakes per second"));
    let doc = report.json();
    assert_eq!(doc["tls_baseline"], "nginx-tls");
    assert_eq!(doc["tls_ratios"].as_array().unwrap().len(), 3);
    let run = doc["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["contender"] == "ringway-tls" && r["mode"] == "resumed, saturation")
        .unwrap();
    assert_eq!(run["tls"]["version"], "TLSv1.3");
    assert_eq!(run["tls"]["resumed"], 79_200);

    // A TLS-only run has no plain baseline.
    let mut only_tls = with_tls();
    only_tls.runs.retain(|r| r.contender.ends_with("-tls"));
    only_tls.baseline = None;
    assert!(only_tls.ratio_table().is_none());
    assert_eq!(only_tls.tls_ratio_table().unwrap().rows.len(), 3);
    assert!(!peers()
        .summary_table()
        .headers
        .contains(&"handshakes/s".to_string()));
}

#[test]
fn json_is_valid_and_complete() {
    let report = peers();
    let text = serde_json::to_string_pretty(&report.json()).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["kind"], "peers");
    assert_eq!(doc["runs"].as_array().unwrap().len(), 15);
    assert_eq!(doc["summary"].as_array().unwrap().len(), 5);
    assert_eq!(doc["runs"][0]["latency_us"]["p99_9"], 7000.0);
    assert_eq!(doc["ratios"].as_array().unwrap().len(), 3);
    assert!(doc["scaling"].is_null());
}

/// Every table in `md` has the same number of cells in each of its lines.
fn check_markdown_tables(md: &str) -> usize {
    let mut tables = 0;
    let mut columns = None;
    for line in md.lines() {
        if line.starts_with('|') {
            assert!(line.ends_with('|'), "{line}");
            let cells = line.matches(" | ").count() + 1;
            match columns {
                None => {
                    columns = Some(cells);
                    tables += 1;
                }
                Some(c) => assert_eq!(c, cells, "{line}"),
            }
        } else {
            columns = None;
        }
    }
    tables
}

#[test]
fn markdown_tables_are_well_formed() {
    let md = peers().markdown();
    assert!(md.contains("cargo run --release -p ringway-bench -- peers"));
    assert_eq!(check_markdown_tables(&md), 2);
    assert!(
        md.contains("| ringway | 16B | saturation | 57,002 |"),
        "{md}"
    );
}

/// A small well-formedness check: tags nest and close, attributes are quoted, text has no
/// bare `<` or `&`.
fn check_xml(text: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = text.trim();
    assert!(rest.starts_with("<svg"));
    while let Some(open) = rest.find('<') {
        let text_part = &rest[..open];
        for (i, _) in text_part.match_indices('&') {
            let entity = &text_part[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;"]
                    .iter()
                    .any(|e| entity.starts_with(e)),
                "bare & in {text_part:?}"
            );
        }
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "< inside tag {tag:?}");
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in {tag:?}"
        );
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap().to_string();
            stack.push(name);
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

#[test]
fn svg_is_well_formed() {
    let svg = peers().svg();
    check_xml(&svg);
    assert!(svg.contains("&lt;AMD&gt; &amp; co"));
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    // Three contenders' bars in each of three charts over two groups, but haproxy has no
    // fixed-rate run: 3 × (3 + 2) bars, besides the legend's three squares.
    assert_eq!(svg.matches("<rect x=").count() - 3, 15);
    let empty = render_svg("nothing", &[]);
    check_xml(&empty);
}

#[test]
fn scaling_reports_rps_against_one_worker() {
    let runs: Vec<Run> = [1, 2, 4]
        .iter()
        .map(|&w| Run {
            workers: w,
            ..run(1, "ringway", "saturation", 50_000.0 * w as f64 * 0.9, 15.0)
        })
        .collect();
    let report = Report {
        kind: "scaling".into(),
        baseline: None,
        runs,
        ..peers()
    };
    let t = report.scaling_table().unwrap();
    assert_eq!(t.rows[2][..4], ["4", "180,000", "45,000", "4.00"]);
    // 15 us/req at 180,000 req/s keeps 2.7 CPUs busy of 4; the origin, 10 us/req, 1.8 of 1.
    assert_eq!(t.rows[2][6..], ["2.70 of 4", "1.80 of 1", "origin"]);
    assert_eq!(
        t.rows[0][6..],
        ["0.68 of 1", "0.45 of 1", "load or shared CPUs"]
    );
    assert_eq!(check_markdown_tables(&report.markdown()), 2);
    check_xml(&report.svg());
    assert!(report
        .summary_table()
        .headers
        .contains(&"workers".to_string()));
    assert!(!peers()
        .summary_table()
        .headers
        .contains(&"workers".to_string()));
}

#[test]
fn formats() {
    assert_eq!(thousands(57475.4), "57,475");
    assert_eq!(thousands(999.0), "999");
    assert_eq!(thousands(1_000_000.0), "1,000,000");
    assert_eq!(latency(812.0), "812 µs");
    assert_eq!(latency(3400.0), "3.40 ms");
    assert_eq!(
        utc(1_795_687_200),
        (
            "2026-11-26 10:00".to_string(),
            "20261126-100000".to_string()
        )
    );
    assert_eq!(utc(0).1, "19700101-000000");
}
