//! `ringway-tune sweep`: measures a Ringway config over combinations of settings, rounds
//! interleaved, and names a winner only when it stands clear of the noise.
//!
//! `params` (the settings, their combinations and order) and `stats` (medians, spreads, the
//! winner rule) start no process; `run` starts `ringway` and `ringload` and reads /proc;
//! `report` writes the outputs.

mod params;
mod report;
mod run;
mod stats;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_yaml_ng::{Mapping, Value};

use params::Param;
use report::{Combination, Context, Outputs, RunRecord, Summary};
use run::{Load, Proxy};
use stats::{Contender, Objective};

const USAGE: &str = "\
usage: ringway-tune sweep --config FILE --param NAME=V1,V2,... [--param ...]
         [--objective cpu-per-request|rps|p99] [--rate R] [--rounds N]
         [--duration D] [--warmup D] [--path P] [--origin builtin|URL]
         [--out DIR] [--ringway BIN] [--ringload BIN] [-- RINGLOAD ARGS]

Runs the config once per combination of the --param values (their cartesian product) in each
of N rounds (default 3), the rounds interleaved, each run a fresh `ringway run` on a free
loopback port driven by ringload (-d D, default 10s, after --warmup, default 1s; -R R with
--rate). Reports each combination's median and spread, and names a winner only when it beats
every other by more than the noise. Writes report.md, report.json, chart.svg and tuned.yaml to
--out (default ./ringway-tune-out).

  --param NAME=V1,V2     a dotted path into the config and YAML scalars; * applies to every
                         element of a list; quote a value holding a comma: cpus=\"0,2\",1
  --objective O          cpu-per-request (default: proxy CPU µs per request, lower wins),
                         rps (higher wins), p99 (lower wins)
  --origin builtin       start a ringway answering 1 KiB as the origin and point every backend
                         target at it (--origin http://HOST:PORT points them there instead)
  --path P               the request path (default /)
  --ringway, --ringload  the programs (default target/release, then target/debug, then PATH)

settings meant for sweeping:";

/// Set by SIGINT or SIGTERM: the sweep stops after the run in progress and reports the runs so
/// far.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn catch_stop_signals() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int);
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(signal, handler as libc::sighandler_t);
        }
    }
}

/// The body the built-in origin answers with.
const ORIGIN_BODY_BYTES: usize = 1024;

struct Options {
    config: PathBuf,
    params: Vec<Param>,
    objective: Objective,
    rate: Option<String>,
    rounds: usize,
    duration: Duration,
    warmup: Duration,
    path: String,
    origin: Option<String>,
    out: PathBuf,
    ringway: Option<String>,
    ringload: Option<String>,
    extra: Vec<String>,
}

pub fn main(args: &[String]) -> ExitCode {
    let options = match parse_args(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{}", usage());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ringway-tune sweep: {e}\n{}", usage());
            return ExitCode::from(2);
        }
    };
    match sweep(&options, args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringway-tune sweep: {e}");
            ExitCode::from(1)
        }
    }
}

fn usage() -> String {
    let mut s = USAGE.to_string();
    for (name, what) in params::SWEEPABLE {
        s.push_str(&format!("\n  {name:<38} {what}"));
    }
    s
}

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options {
        config: PathBuf::new(),
        params: Vec::new(),
        objective: Objective::CpuPerRequest,
        rate: None,
        rounds: 3,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        path: "/".into(),
        origin: None,
        out: PathBuf::from("ringway-tune-out"),
        ringway: None,
        ringload: None,
        extra: Vec::new(),
    };
    let mut config = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            o.extra = args[i..].to_vec();
            break;
        }
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || -> Result<String, String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            let v = args
                .get(i)
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))?;
            i += 1;
            Ok(v)
        };
        match flag {
            "--config" | "-c" => config = Some(PathBuf::from(value()?)),
            "--param" | "-p" => {
                let p = Param::parse(&value()?)?;
                if o.params.iter().any(|q| q.name == p.name) {
                    return Err(format!("--param {} is given twice", p.name));
                }
                o.params.push(p);
            }
            "--objective" => o.objective = Objective::parse(&value()?)?,
            "--rate" | "-R" => {
                let r = value()?;
                match r.parse::<f64>() {
                    Ok(v) if v.is_finite() && v > 0.0 => o.rate = Some(r),
                    _ => return Err(format!("--rate {r:?}: expected requests a second, > 0")),
                }
            }
            "--rounds" => {
                let r = value()?;
                o.rounds = r
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| format!("--rounds {r:?}: expected a whole number, ≥ 1"))?;
            }
            "--duration" | "-d" => {
                o.duration = parse_duration(&value()?)?;
                if o.duration.is_zero() {
                    return Err("--duration must be more than 0".into());
                }
            }
            "--warmup" => o.warmup = parse_duration(&value()?)?,
            "--path" => {
                o.path = value()?;
                if !o.path.starts_with('/') {
                    return Err(format!("--path {:?}: must start with /", o.path));
                }
            }
            "--origin" => {
                let v = value()?;
                if v != "builtin" && !v.starts_with("http://") {
                    return Err(format!(
                        "--origin {v:?}: expected builtin or an http://HOST:PORT URL"
                    ));
                }
                o.origin = Some(v);
            }
            "--out" | "-o" => o.out = PathBuf::from(value()?),
            "--ringway" => o.ringway = Some(value()?),
            "--ringload" => o.ringload = Some(value()?),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    o.config = config.ok_or("--config FILE is required")?;
    if o.params.is_empty() {
        return Err("at least one --param NAME=V1,V2,... is required".into());
    }
    for a in &o.extra {
        let flag = a.split_once('=').map_or(a.as_str(), |(f, _)| f);
        if matches!(
            flag,
            "-d" | "--duration" | "-n" | "--requests" | "-R" | "--rate" | "--warmup" | "--json"
        ) {
            return Err(format!(
                "ringload's {flag} is set by the sweep (use the sweep's own --duration, \
                 --warmup, --rate)"
            ));
        }
        if a.starts_with("http://") || a.starts_with("https://") {
            return Err(format!(
                "{a}: the sweep gives ringload its URL (the first listener, with --path)"
            ));
        }
    }
    if o.objective == Objective::Rps && o.rate.is_some() {
        eprintln!(
            "ringway-tune sweep: warning: with --rate the rate is fixed by ringload, so \
             --objective rps compares only how close each combination came to it"
        );
    }
    Ok(Some(o))
}

/// ringload's duration grammar: a number and a unit (`ns`, `us`, `ms`, `s`, `m`, `h`); a bare
/// number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("duration {text:?}: use ms, s, m or h, e.g. 10s")),
    };
    match number.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 && n * scale < 1e7 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(format!("duration {text:?}: expected e.g. 10s or 500ms")),
    }
}

/// The progress line on stderr, redrawn in place.
struct Progress {
    started: Instant,
    tty: bool,
    total_runs: usize,
    done_runs: usize,
    run_started: Instant,
    /// A guess at one run's length until one has been timed.
    run_estimate: f64,
    line: String,
}

impl Progress {
    fn draw(&mut self, text: Option<String>) {
        if let Some(text) = text {
            self.line = text;
        } else if !self.tty {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        // The runs so far took the time up to the start of this one.
        let per_run = if self.done_runs > 0 {
            self.run_started.duration_since(self.started).as_secs_f64() / self.done_runs as f64
        } else {
            self.run_estimate
        };
        let this_run = self.run_started.elapsed().as_secs_f64();
        let left = self.total_runs.saturating_sub(self.done_runs) as f64 * per_run - this_run;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r{}, elapsed {}, ETA {}{}",
            self.line,
            report::clock(elapsed),
            report::clock(left.max(0.0)),
            if self.tty { "\x1b[K" } else { "" }
        );
        let _ = err.flush();
    }

    /// A message on a line of its own, the progress line drawn again below it.
    fn say(&mut self, message: &str) {
        {
            let mut err = std::io::stderr().lock();
            let _ = if self.tty {
                write!(err, "\r\x1b[K")
            } else {
                writeln!(err)
            };
            let _ = writeln!(err, "{message}");
        }
        if !self.line.is_empty() && self.tty {
            self.draw(None);
        }
    }

    fn finish(&self) {
        if !self.line.is_empty() {
            eprintln!();
        }
    }
}

/// Where the config of one run is written: beside the input, so that the paths in it (TLS
/// files, an access log, the state file) resolve as they do for the input; in `fallback` when
/// that directory cannot be written.
struct Scratch {
    dir: PathBuf,
    /// Whether the input's directory could not be written.
    fell_back: bool,
    stem: String,
    counter: usize,
    written: Vec<PathBuf>,
}

impl Scratch {
    fn new(input: &Path, fallback: &Path) -> Scratch {
        let stem = input
            .file_name()
            .map_or("config".into(), |n| n.to_string_lossy().into_owned());
        let dir = input
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let probe = dir.join(format!(".{stem}.ringway-tune-{}-probe", std::process::id()));
        let writable = std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(&probe);
        Scratch {
            dir: if writable {
                dir
            } else {
                fallback.to_path_buf()
            },
            fell_back: !writable,
            stem,
            counter: 0,
            written: Vec::new(),
        }
    }

    fn write(&mut self, doc: &Value) -> Result<PathBuf, String> {
        self.counter += 1;
        let path = self.dir.join(format!(
            ".{}.ringway-tune-{}-{}.yaml",
            self.stem,
            std::process::id(),
            self.counter
        ));
        let text = serde_yaml_ng::to_string(doc).map_err(|e| format!("cannot write YAML: {e}"))?;
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        self.written.push(path.clone());
        Ok(path)
    }

    fn remove(&mut self, path: &Path) {
        let _ = std::fs::remove_file(path);
        let _ = std::fs::remove_file(run_applied(path));
        self.written.retain(|p| p != path);
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in std::mem::take(&mut self.written) {
            let _ = std::fs::remove_file(&p);
            let _ = std::fs::remove_file(run_applied(&p));
        }
    }
}

/// The file `ringway run` keeps what the admin API applied in, beside its config.
fn run_applied(config: &Path) -> PathBuf {
    let mut name = config.as_os_str().to_owned();
    name.push(".applied");
    PathBuf::from(name)
}

/// A run's config: the combination's document with every listener (and the admin listener) on
/// a free loopback port, and the backends' targets on the origin when one is given. Returns it
/// with the URL load goes to.
fn run_config(
    doc: &Value,
    origin: Option<&str>,
    url_path: &str,
) -> Result<(Value, String, bool), String> {
    let mut doc = doc.clone();
    let port = || run::free_port().map_err(|e| format!("no free loopback port: {e}"));
    let mut url = None;
    let mut tls = false;
    if let Some(Value::Sequence(listeners)) = doc.get_mut("listeners") {
        for listener in listeners.iter_mut() {
            if let Value::Mapping(m) = listener {
                let address = format!("127.0.0.1:{}", port()?);
                if url.is_none() {
                    tls = m.contains_key("tls");
                    url = Some(format!(
                        "{}://{address}{url_path}",
                        if tls { "https" } else { "http" }
                    ));
                }
                m.insert("address".into(), Value::String(address));
            }
        }
    }
    let url = url.ok_or("the config has no listeners to send load to")?;
    if let Some(Value::Mapping(admin)) = doc.get_mut("admin") {
        admin.insert(
            "address".into(),
            Value::String(format!("127.0.0.1:{}", port()?)),
        );
    }
    if let Some(origin) = origin {
        if let Some(Value::Sequence(backends)) = doc.get_mut("backends") {
            for backend in backends.iter_mut() {
                if let Some(Value::Sequence(targets)) = backend.get_mut("targets") {
                    for t in targets.iter_mut() {
                        if let Value::Mapping(t) = t {
                            t.insert("url".into(), Value::String(origin.to_string()));
                        }
                    }
                }
            }
        }
    }
    Ok((doc, url, tls))
}

/// The built-in origin's config: one worker (on CPU 0 when there are others) answering 1 KiB.
fn origin_config(port: u16) -> Value {
    let mut response = Mapping::new();
    response.insert("status".into(), 200.into());
    response.insert("body".into(), Value::String("x".repeat(ORIGIN_BODY_BYTES)));
    let mut route = Mapping::new();
    route.insert("return_response".into(), Value::Mapping(response));
    let mut listener = Mapping::new();
    listener.insert("address".into(), Value::String(format!("127.0.0.1:{port}")));
    let mut doc = Mapping::new();
    doc.insert("workers".into(), 1.into());
    if run::cpus() >= 2 {
        doc.insert("cpus".into(), Value::String("0".into()));
    }
    doc.insert(
        "listeners".into(),
        Value::Sequence(vec![Value::Mapping(listener)]),
    );
    doc.insert(
        "routes".into(),
        Value::Sequence(vec![Value::Mapping(route)]),
    );
    Value::Mapping(doc)
}

fn host_line() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| std::env::consts::OS.to_string());
    let model = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
    });
    let n = run::cpus();
    match model {
        Some(m) => format!("{} ({m}), {kernel}", stats::count(n, "CPU")),
        None => format!("{}, {kernel}", stats::count(n, "CPU")),
    }
}

fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn sweep(o: &Options, args: &[String]) -> Result<ExitCode, String> {
    let started = Instant::now();
    let input_text = std::fs::read_to_string(&o.config)
        .map_err(|e| format!("{}: cannot read the file: {e}", o.config.display()))?;
    let input: Value = serde_yaml_ng::from_str(&input_text).map_err(|e| {
        format!(
            "{}: not YAML as written ({e}); quote any ${{VAR}} that stands in a flow \
             collection",
            o.config.display()
        )
    })?;
    if !input.is_mapping() {
        return Err(format!("{}: not a YAML mapping", o.config.display()));
    }
    let ringway = run::find_binary(o.ringway.as_deref(), "ringway")?;
    let ringload = run::find_binary(o.ringload.as_deref(), "ringload")?;

    let sizes: Vec<usize> = o.params.iter().map(|p| p.values.len()).collect();
    let mut combinations = Vec::new();
    for indices in params::cartesian(&sizes) {
        let doc = params::apply(&input, &o.params, &indices)?;
        combinations.push(Combination {
            label: params::label(&o.params, &indices),
            values: o
                .params
                .iter()
                .zip(&indices)
                .map(|(p, &v)| (p.name.clone(), p.values[v].0.clone()))
                .collect(),
            doc,
            refused: None,
        });
    }

    let logs = o.out.join("logs");
    let configs = o.out.join("configs");
    for d in [&o.out, &logs, &configs] {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let mut scratch = Scratch::new(&o.config, &configs);
    catch_stop_signals();
    let mut progress = Progress {
        started,
        tty: std::io::stderr().is_terminal(),
        total_runs: 0,
        done_runs: 0,
        run_started: started,
        run_estimate: (o.duration + o.warmup).as_secs_f64() + 1.5,
        line: String::new(),
    };

    if scratch.fell_back {
        progress.say(&format!(
            "ringway-tune sweep: warning: cannot write beside {}; the runs' configs go to {}, \
             where relative paths in them (TLS files, logs) do not resolve as in the input",
            o.config.display(),
            configs.display()
        ));
    }

    // The origin.
    let mut origin_proxy = None;
    let (origin_url, origin_text) = match o.origin.as_deref() {
        Some("builtin") => {
            let port = run::free_port().map_err(|e| format!("no free loopback port: {e}"))?;
            let path = o.out.join("origin.yaml");
            let text = serde_yaml_ng::to_string(&origin_config(port)).expect("YAML");
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            let proxy = Proxy::start(&ringway, &path, &logs.join("origin.log"))
                .map_err(|e| format!("the built-in origin: {e}"))?;
            origin_proxy = Some(proxy);
            (
                Some(format!("http://127.0.0.1:{port}")),
                format!(
                    "built-in: ringway answering {ORIGIN_BODY_BYTES} B on 127.0.0.1:{port}, one worker{}",
                    if run::cpus() >= 2 {
                        " pinned to CPU 0"
                    } else {
                        ""
                    }
                ),
            )
        }
        Some(url) => (
            Some(url.to_string()),
            format!("{url} (every backend target)"),
        ),
        None => (None, "the config's own backends".to_string()),
    };
    let has_backends = input
        .get("backends")
        .and_then(Value::as_sequence)
        .is_some_and(|b| !b.is_empty());
    if origin_url.is_some() && !has_backends {
        progress.say(
            "ringway-tune sweep: warning: --origin given, but the config has no backends to \
             point at it",
        );
    }

    // Refuse, before measuring anything, the combinations whose config does not validate.
    for (i, comb) in combinations.iter_mut().enumerate() {
        let saved = configs.join(format!("combination-{}.yaml", i + 1));
        let text = serde_yaml_ng::to_string(&comb.doc).expect("YAML");
        let _ = std::fs::write(&saved, format!("# {}\n{text}", comb.label));
        let (doc, _, _) = run_config(&comb.doc, origin_url.as_deref(), &o.path)?;
        let path = scratch.write(&doc)?;
        if let Err(e) = run::check(&ringway, &path) {
            let e = e.replace(&path.display().to_string(), &o.config.display().to_string());
            progress.say(&format!(
                "ringway-tune sweep: {} is refused by ringway check: {}",
                comb.label,
                e.replace('\n', "; ")
            ));
            comb.refused = Some(e);
        }
        scratch.remove(&path);
    }
    let valid: Vec<usize> = (0..combinations.len())
        .filter(|&i| combinations[i].refused.is_none())
        .collect();

    let mut runs: Vec<RunRecord> = Vec::new();
    progress.total_runs = valid.len() * o.rounds;
    let mut aborted = None;
    'rounds: for round in 0..o.rounds {
        for (position, k) in params::round_order(valid.len(), round)
            .into_iter()
            .enumerate()
        {
            let index = valid[k];
            let label = combinations[index].label.clone();
            if STOP.load(Ordering::Relaxed) {
                aborted = Some("interrupted".to_string());
                break 'rounds;
            }
            if let Some(origin) = origin_proxy.as_mut() {
                if !origin.alive() {
                    aborted = Some(format!("the built-in origin exited: {}", origin.tail()));
                    break 'rounds;
                }
            }
            progress.run_started = Instant::now();
            progress.draw(Some(format!(
                "ringway-tune sweep: round {}/{}, combination {}/{} ({label})",
                round + 1,
                o.rounds,
                position + 1,
                valid.len()
            )));
            let name = format!("round-{}-combination-{}", round + 1, index + 1);
            let result = one_run(
                o,
                &ringway,
                &ringload,
                &combinations[index].doc,
                origin_url.as_deref(),
                &mut scratch,
                &logs,
                &name,
                &mut progress,
            );
            if STOP.load(Ordering::Relaxed) {
                // The signal reached ringload and the proxy too: this run does not count.
                aborted = Some("interrupted".to_string());
                break 'rounds;
            }
            let record = RunRecord {
                round: round + 1,
                position: position + 1,
                combination: index,
                started_s: progress.run_started.duration_since(started).as_secs_f64(),
                result,
            };
            if let Some(why) = record.failure() {
                progress.say(&format!(
                    "ringway-tune sweep: round {}, {label}: failed: {why}",
                    round + 1
                ));
            }
            runs.push(record);
            progress.done_runs += 1;
        }
    }
    progress.finish();
    if let Some(mut origin) = origin_proxy.take() {
        origin.stop();
    }

    let summaries: Vec<Summary> = (0..combinations.len())
        .map(|i| Summary::of(o.objective, i, &runs))
        .collect();
    let contenders: Vec<Contender> = combinations
        .iter()
        .zip(&summaries)
        .map(|(c, s)| Contender {
            label: c.label.clone(),
            spread: if c.refused.is_none() && s.eligible() {
                s.spread.clone()
            } else {
                None
            },
        })
        .collect();
    let verdict = if aborted.is_some() {
        stats::Verdict::NoWinner {
            reason: format!(
                "no winner: the sweep was cut short ({})",
                aborted.as_deref().unwrap_or("")
            ),
        }
    } else {
        stats::verdict(o.objective, &contenders, o.rounds)
    };
    let mut command = vec!["ringway-tune".to_string(), "sweep".to_string()];
    command.extend(args.iter().cloned());
    let context = Context {
        command: shell_words(&command),
        config: o.config.display().to_string(),
        objective: o.objective,
        rounds: o.rounds,
        duration_s: o.duration.as_secs_f64(),
        warmup_s: o.warmup.as_secs_f64(),
        rate: o.rate.clone(),
        url_path: o.path.clone(),
        origin: origin_text,
        ringload_args: o.extra.clone(),
        ringway: ringway.display().to_string(),
        ringload: ringload.display().to_string(),
        host: host_line(),
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    let param_list: Vec<(String, Vec<String>)> = o
        .params
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.values.iter().map(|(raw, _)| raw.clone()).collect(),
            )
        })
        .collect();
    let outputs = Outputs {
        context: &context,
        params: &param_list,
        combinations: &combinations,
        summaries: &summaries,
        runs: &runs,
        verdict: &verdict,
        input_text: &input_text,
    };
    outputs.write(&o.out)?;
    println!("{}", outputs.markdown());
    println!(
        "written: {} (report.md, report.json, chart.svg, tuned.yaml; logs/ and configs/)",
        o.out.display()
    );
    if let Some(why) = aborted {
        return Err(why);
    }
    if valid.is_empty() {
        return Err("every combination was refused by ringway check".into());
    }
    if runs.iter().all(|r| r.ok().is_none()) {
        return Err("no run completed without errors".into());
    }
    Ok(ExitCode::SUCCESS)
}

/// One run: the proxy started on the combination's config, the load, the proxy stopped.
#[allow(clippy::too_many_arguments)]
fn one_run(
    o: &Options,
    ringway: &Path,
    ringload: &Path,
    doc: &Value,
    origin: Option<&str>,
    scratch: &mut Scratch,
    logs: &Path,
    name: &str,
    progress: &mut Progress,
) -> Result<run::Measured, String> {
    // A port found free may be taken before the proxy binds it: try again on fresh ones.
    let mut attempt = 0;
    let (mut proxy, url, tls, path) = loop {
        attempt += 1;
        let (doc, url, tls) = run_config(doc, origin, &o.path)?;
        let path = scratch.write(&doc)?;
        match Proxy::start(ringway, &path, &logs.join(format!("{name}.ringway.log"))) {
            Ok(p) => break (p, url, tls, path),
            Err(e) => {
                scratch.remove(&path);
                if attempt >= 3 || !e.contains("in use") {
                    return Err(e);
                }
            }
        }
    };
    let load = Load {
        bin: ringload,
        url: &url,
        duration: o.duration,
        warmup: o.warmup,
        rate: o.rate.as_deref(),
        insecure: tls,
        extra: &o.extra,
    };
    let result = run::measure(
        &load,
        proxy.pid(),
        &logs.join(format!("{name}.ringload.json")),
        &logs.join(format!("{name}.ringload.log")),
        &mut || progress.draw(None),
    );
    let died = !proxy.alive();
    let tail = proxy.tail();
    proxy.stop();
    scratch.remove(&path);
    let measured = result?;
    if died {
        return Err(format!("ringway exited during the load: {tail}"));
    }
    Ok(measured)
}
