//! `ringway-tune sweep`: its pure parts (the dotted-path setter, the combinations, the order of
//! a round, the winner rule) and a short real sweep against the real `ringway` and `ringload`
//! (`$RINGWAY_BIN` / `$RINGLOAD_BIN`, else `<workspace>/target/debug/`: build them first with
//! `cargo build -p ringway -p ringway-loadgen --bins`).

#[allow(dead_code)]
#[path = "../src/sweep/params.rs"]
mod params;
#[allow(dead_code)]
#[path = "../src/sweep/stats.rs"]
mod stats;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use params::{cartesian, round_order, set, Param};
use serde_yaml_ng::Value;
use stats::{verdict, Contender, Objective, Spread, Verdict};

fn yaml(text: &str) -> Value {
    serde_yaml_ng::from_str(text).unwrap()
}

fn path(name: &str) -> Vec<String> {
    params::parse_path(name).unwrap()
}

#[test]
fn setter_creates_missing_mappings() {
    let mut doc = yaml("workers: 2\nlisteners: [{address: 127.0.0.1:80}]");
    assert_eq!(set(&mut doc, &path("workers"), &yaml("4")).unwrap(), 1);
    assert_eq!(
        set(&mut doc, &path("runtime.ring_flags"), &yaml("sqpoll")).unwrap(),
        1
    );
    assert_eq!(
        set(&mut doc, &path("runtime.ring_entries"), &yaml("256")).unwrap(),
        1
    );
    assert_eq!(doc["workers"], yaml("4"));
    assert_eq!(doc["runtime"]["ring_flags"], Value::String("sqpoll".into()));
    assert_eq!(doc["runtime"]["ring_entries"], yaml("256"));
    // A list index.
    assert_eq!(
        set(&mut doc, &path("listeners.0.max_connections"), &yaml("10")).unwrap(),
        1
    );
    assert_eq!(doc["listeners"][0]["max_connections"], yaml("10"));
    assert!(set(&mut doc, &path("listeners.3.address"), &yaml("x")).is_err());
    // Into a scalar: refused.
    assert!(set(&mut doc, &path("workers.x"), &yaml("1")).is_err());
}

#[test]
fn setter_star_applies_to_every_element() {
    let mut doc = yaml(
        "backends:\n\
         - {name: a, targets: [{url: http://127.0.0.1:1}], pool: {max_idle_per_target: 1, idle_timeout: 5s}}\n\
         - {name: b, targets: [{url: http://127.0.0.1:2}]}\n\
         - {name: c, targets: [{url: http://127.0.0.1:3}], pool: {}}\n",
    );
    let n = set(
        &mut doc,
        &path("backends.*.pool.max_idle_per_target"),
        &yaml("16"),
    )
    .unwrap();
    assert_eq!(n, 3);
    for b in doc["backends"].as_sequence().unwrap() {
        assert_eq!(b["pool"]["max_idle_per_target"], yaml("16"));
    }
    // What was there beside it stays.
    assert_eq!(
        doc["backends"][0]["pool"]["idle_timeout"],
        Value::String("5s".into())
    );
    // Nested stars.
    let n = set(
        &mut doc,
        &path("backends.*.targets.*.url"),
        &yaml("http://127.0.0.1:9"),
    )
    .unwrap();
    assert_eq!(n, 3);
    // A star over nothing would change nothing: an error, not a silent no-op.
    let mut empty = yaml("backends: []");
    assert!(set(
        &mut empty,
        &path("backends.*.pool.max_idle_per_target"),
        &yaml("1")
    )
    .is_err());
    let mut missing = yaml("workers: 1");
    let e = set(
        &mut missing,
        &path("backends.*.pool.max_idle_per_target"),
        &yaml("1"),
    )
    .unwrap_err();
    assert!(e.contains("backends"), "{e}");
}

#[test]
fn params_parse_yaml_scalars_and_quoted_commas() {
    let p = Param::parse("runtime.ring_entries=256,1024").unwrap();
    assert_eq!(p.name, "runtime.ring_entries");
    assert_eq!(p.values.len(), 2);
    assert_eq!(p.values[0].1, yaml("256"));
    assert!(p.values[0].1.is_u64());
    let p = Param::parse("runtime.buffer_size=4KiB, 16KiB ,64KiB").unwrap();
    assert_eq!(p.values[1].0, "16KiB");
    assert_eq!(p.values[1].1, Value::String("16KiB".into()));
    let p = Param::parse(r#"cpus="0,1",'1'"#).unwrap();
    assert_eq!(p.values[0].1, Value::String("0,1".into()));
    assert_eq!(p.values[1].1, Value::String("1".into()));
    for bad in [
        "workers",
        "workers=",
        "workers=1,,2",
        "workers=1,1",
        "a..b=1",
        "a.b*=1",
        "workers=[1,2]",
        r#"cpus="0,1"#,
    ] {
        assert!(Param::parse(bad).is_err(), "{bad} was accepted");
    }
}

#[test]
fn cartesian_product_has_every_combination_once() {
    let all = cartesian(&[2, 3, 2]);
    assert_eq!(all.len(), 12);
    let unique: HashSet<Vec<usize>> = all.iter().cloned().collect();
    assert_eq!(unique.len(), 12);
    // The last setting varies fastest.
    assert_eq!(all[0], vec![0, 0, 0]);
    assert_eq!(all[1], vec![0, 0, 1]);
    assert_eq!(all[2], vec![0, 1, 0]);
    assert_eq!(all[11], vec![1, 2, 1]);
    assert_eq!(cartesian(&[3]), vec![vec![0], vec![1], vec![2]]);
    assert!(cartesian(&[2, 0]).is_empty());
}

#[test]
fn rounds_are_interleaved_and_balanced() {
    for m in 1..=7 {
        let period = if m % 2 == 0 { m } else { 2 * m };
        let mut at_position = vec![vec![0; m]; m];
        let mut follows = vec![vec![0; m]; m];
        for round in 0..period {
            let order = round_order(m, round);
            // Each round runs every combination once.
            let mut sorted = order.clone();
            sorted.sort();
            assert_eq!(sorted, (0..m).collect::<Vec<_>>(), "m={m} round={round}");
            for (pos, &c) in order.iter().enumerate() {
                at_position[c][pos] += 1;
            }
            for w in order.windows(2) {
                follows[w[0]][w[1]] += 1;
            }
        }
        let per = period / m;
        for (c, positions) in at_position.iter().enumerate() {
            assert!(
                positions.iter().all(|&n| n == per),
                "m={m}: combination {c} by position {positions:?}"
            );
        }
        // Every ordered pair is adjacent equally often (a balanced Latin square).
        for (a, row) in follows.iter().enumerate() {
            for (b, &n) in row.iter().enumerate() {
                if a != b {
                    assert_eq!(n, per, "m={m}: {b} after {a} {n} times");
                }
            }
        }
    }
    // Consecutive rounds do not start with the same combination.
    assert_ne!(round_order(4, 0)[0], round_order(4, 1)[0]);
    // The pattern repeats after its period.
    assert_eq!(round_order(4, 5), round_order(4, 1));
}

fn contender(label: &str, values: &[f64]) -> Contender {
    Contender {
        label: label.into(),
        spread: Spread::of(values),
    }
}

#[test]
fn spread_median_and_mad() {
    let s = Spread::of(&[10.0, 12.0, 11.0, 30.0]).unwrap();
    assert_eq!(s.median, 11.5);
    assert_eq!(s.min, 10.0);
    assert_eq!(s.max, 30.0);
    // |x - 11.5| = 1.5, 0.5, 0.5, 18.5: median 1.0.
    assert_eq!(s.mad, 1.0);
    assert_eq!(Spread::of(&[5.0]).unwrap().mad, 0.0);
    assert!(Spread::of(&[]).is_none());
}

#[test]
fn winner_when_clear_of_the_noise() {
    let c = [
        contender("workers=1", &[20.0, 21.0, 20.5]),
        contender("workers=2", &[14.0, 14.6, 14.2]),
        contender("workers=3", &[17.0, 17.5, 16.9]),
    ];
    let v = verdict(Objective::CpuPerRequest, &c, 3);
    assert_eq!(v.winner(), Some(1), "{v:?}");
    assert!(v.reason().contains("workers=2 wins"), "{}", v.reason());
    // The closest rival is named.
    assert!(v.reason().contains("workers=3"), "{}", v.reason());
    // Higher is better for rps.
    let v = verdict(Objective::Rps, &c, 3);
    assert_eq!(v.winner(), Some(0), "{v:?}");
}

#[test]
fn no_winner_within_the_noise() {
    // Medians 14.2 and 14.9 differ by 0.7, but the second's rounds spread over 2.0.
    let c = [
        contender("ring_flags=defer_taskrun", &[14.0, 14.6, 14.2]),
        contender("ring_flags=coop_taskrun", &[13.9, 14.9, 15.9]),
        contender("ring_flags=none", &[19.0, 19.2, 19.1]),
    ];
    let v = verdict(Objective::CpuPerRequest, &c, 3);
    assert_eq!(v.winner(), None);
    assert!(
        v.reason().starts_with("no winner beyond the noise"),
        "{}",
        v.reason()
    );
    // One round measures no noise.
    let c = [contender("a", &[10.0]), contender("b", &[20.0])];
    assert_eq!(verdict(Objective::CpuPerRequest, &c, 1).winner(), None);
    // Equal medians.
    let c = [contender("a", &[10.0, 10.0]), contender("b", &[10.0, 10.0])];
    assert_eq!(verdict(Objective::P99, &c, 2).winner(), None);
}

#[test]
fn failed_combinations_cannot_win() {
    let failed = Contender {
        label: "workers=8".into(),
        spread: None,
    };
    // The failed one would have had the best median; it is left out.
    let c = [
        contender("workers=1", &[20.0, 20.2]),
        failed.clone(),
        contender("workers=2", &[10.0, 10.3]),
    ];
    assert_eq!(verdict(Objective::CpuPerRequest, &c, 2).winner(), Some(2));
    let c = [failed.clone(), contender("workers=1", &[20.0, 20.5])];
    let v = verdict(Objective::CpuPerRequest, &c, 2);
    assert_eq!(v.winner(), Some(1));
    let c = [failed.clone(), failed];
    assert!(matches!(
        verdict(Objective::CpuPerRequest, &c, 2),
        Verdict::NoWinner { .. }
    ));
}

// The real sweep.

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tuning crate sits inside the workspace")
        .to_path_buf()
}

fn binary(env: &str, name: &str) -> PathBuf {
    if let Some(bin) = std::env::var_os(env) {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "{env}={} does not exist", bin.display());
        return bin;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    let bin = target.join("debug").join(name);
    assert!(
        bin.is_file(),
        "{} not found: run `cargo build -p ringway -p ringway-loadgen --bins` first (or set {env})",
        bin.display()
    );
    bin
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringway-tune-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_short_real_sweep() {
    let ringway = binary("RINGWAY_BIN", "ringway");
    let ringload = binary("RINGLOAD_BIN", "ringload");
    let dir = scratch_dir("sweep");
    let config = dir.join("proxy.yaml");
    std::fs::write(
        &config,
        "# the proxy under test\n\
         workers: 1\n\
         listeners: [{address: \"127.0.0.1:8080\"}]\n\
         backends: [{name: origin, targets: [{url: \"http://127.0.0.1:9\"}]}]\n\
         routes: [{backend: origin}]\n",
    )
    .unwrap();
    let out = dir.join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_ringway-tune"))
        .arg("sweep")
        .arg("--config")
        .arg(&config)
        .args(["--param", "runtime.ring_entries=256,1024"])
        .args(["--rounds", "1", "--duration", "1s", "--warmup", "500ms"])
        .args(["--origin", "builtin", "--rate", "500"])
        .arg("--out")
        .arg(&out)
        .arg("--ringway")
        .arg(&ringway)
        .arg("--ringload")
        .arg(&ringload)
        .args(["--", "-c", "8", "-w", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sweep failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // The progress line.
    assert!(stderr.contains("round 1/1, combination 2/2"), "{stderr}");
    assert!(stderr.contains("ETA"), "{stderr}");

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("| runtime.ring_entries=256 |"), "{md}");
    assert!(md.contains("| runtime.ring_entries=1024 |"), "{md}");
    // One round: no noise measured, no winner.
    assert!(md.contains("no winner beyond the noise"), "{md}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        assert_eq!(run["ok"], true, "{run}");
        assert!(run["requests"].as_u64().unwrap() > 0, "{run}");
        assert_eq!(run["non_2xx"], 0, "{run}");
        assert!(run["rps"].as_f64().unwrap() > 0.0, "{run}");
        assert!(run["p99_us"].as_f64().unwrap() > 0.0, "{run}");
        assert!(run["cpu_us_per_request"].as_f64().is_some(), "{run}");
        assert_eq!(run["ringload"]["target_rps"], 500.0, "{run}");
    }
    assert_eq!(json["combinations"].as_array().unwrap().len(), 2);
    assert!(json["winner"].is_null());

    let svg = std::fs::read_to_string(out.join("chart.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("runtime.ring_entries=1024"));

    let tuned = out.join("tuned.yaml");
    let text = std::fs::read_to_string(&tuned).unwrap();
    assert!(text.starts_with('#'), "{text}");
    assert!(text.contains("# the proxy under test"), "{text}");
    let check = Command::new(&ringway)
        .arg("check")
        .arg(&tuned)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "ringway check tuned.yaml: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    // No config of a run is left behind beside the input.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("ringway-tune"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_combination_that_does_not_validate_is_refused_before_measuring() {
    let ringway = binary("RINGWAY_BIN", "ringway");
    let ringload = binary("RINGLOAD_BIN", "ringload");
    let dir = scratch_dir("refused");
    let config = dir.join("proxy.yaml");
    std::fs::write(
        &config,
        "listeners: [{address: \"127.0.0.1:8080\"}]\n\
         routes: [{return_response: {status: 200, body: ok}}]\n",
    )
    .unwrap();
    let out = dir.join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_ringway-tune"))
        .arg("sweep")
        .arg("--config")
        .arg(&config)
        // 3 is not a power of two.
        .args(["--param", "runtime.ring_entries=3,64"])
        .args(["--rounds", "1", "--duration", "300ms", "--warmup", "0s"])
        .args(["--rate", "200"])
        .arg("--out")
        .arg(&out)
        .arg("--ringway")
        .arg(&ringway)
        .arg("--ringload")
        .arg(&ringload)
        .args(["--", "-c", "2", "-w", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("runtime.ring_entries=3 is refused by ringway check"),
        "{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let refused = &json["combinations"][0]["refused"];
    assert!(
        refused.as_str().unwrap().contains("ring_entries"),
        "{refused}"
    );
    // Only the valid one ran; it wins by default, the other being refused.
    let runs = json["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["label"], "runtime.ring_entries=64");
    assert_eq!(json["winner"], 1);
    let tuned = std::fs::read_to_string(out.join("tuned.yaml")).unwrap();
    let doc: Value = serde_yaml_ng::from_str(&tuned).unwrap();
    assert_eq!(doc["runtime"]["ring_entries"], yaml("64"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_are_refused() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_ringway-tune"))
            .arg("sweep")
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["--param", "workers=1,2"][..],
        &["--config", "x.yaml"],
        &["--config", "x.yaml", "--param", "workers"],
        &[
            "--config",
            "x.yaml",
            "--param",
            "workers=1",
            "--objective",
            "speed",
        ],
        &[
            "--config",
            "x.yaml",
            "--param",
            "workers=1",
            "--",
            "-d",
            "5s",
        ],
        &[
            "--config",
            "x.yaml",
            "--param",
            "workers=1",
            "--rounds",
            "0",
        ],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty());
    }
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("backends.*.pool.max_idle_per_target"),
        "{help}"
    );
}
