//! `ringway-bench`: the peer and scaling runner (see `docs/benchmarks.md`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ringway_bench::runner::contender::Kind;
use ringway_bench::runner::{
    peers, process, report, scaling, BodySize, DriverChoice, Error, Options, TlsMode,
};

const USAGE: &str = "\
usage:
  ringway-bench peers   [OPTIONS]   Ringway, nginx and HAProxy in front of one nginx origin
  ringway-bench scaling [OPTIONS]   Ringway alone at 1, 2, 4, ... workers (own binaries only)

options:
  --quick                 a short run: peers 3 rounds of 1 s runs (under 2 minutes), scaling
                          1 round of 3 s runs
  --rounds N              rounds, contenders interleaved (default 3)
  --duration D            each measured run, e.g. 10s or 500ms (default 10s)
  --warmup D              load before a contender's first measured run (default 2s)
  --connections N         peers: connections (default 64); scaling: per proxy worker (64)
  --bodies LIST           response body sizes (default 16,1k,16k; scaling takes the first: 16)
  --rate RPS              peers: the open-loop runs' fixed rate, 0 for none (default 20000)
  --contenders LIST       peers: of ringway,ringway-api-miss,ringway-api-hit,nginx,haproxy,
                          ringway-tls,nginx-tls (default ringway,nginx,haproxy; the api ones
                          run bench/configs/api-policies.yaml; the tls ones terminate TLS 1.3
                          with one ECDSA P-256 certificate made for the run)
  --tls-modes LIST        peers, tls contenders: of keepalive,full,resumed (default all):
                          keep-alive connections; a new connection per request with a full
                          handshake; the same resuming a TLS 1.3 ticket
  --handshake-rate RPS    peers, tls contenders: the fixed rate of the full and resumed runs,
                          0 for none (default 500)
  --workers LIST          scaling: worker counts (default 1,2,4,... up to the CPUs)
  --driver ringload|wrk   the load generator (default ringload; wrk: closed loop only)
  --ringload PATH         the ringload binary (default target/release/ringload)
  --ringway PATH          the ringway binary (default target/release/ringway)
  --no-build              do not run cargo build --release -p ringway -p ringway-loadgen first
  --out DIR               where results go (default bench/results)

Runs as root where nginx or haproxy must be installed (apt-get). Writes <mode>-<time>.json,
.md and .svg under the results directory.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Usage(m)) => {
            eprintln!("ringway-bench: {m}\n\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Error::Interrupted) => {
            eprintln!("ringway-bench: {}", Error::Interrupted);
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("ringway-bench: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &[String]) -> Result<(), Error> {
    let Some((mode, rest)) = args.split_first() else {
        return Err(Error::Usage("say peers or scaling".into()));
    };
    if matches!(mode.as_str(), "-h" | "--help" | "help") {
        println!("{USAGE}");
        return Ok(());
    }
    if !matches!(mode.as_str(), "peers" | "scaling") {
        return Err(Error::Usage(format!("unknown mode {mode:?}")));
    }
    let opts = parse(mode, rest)?;
    process::catch_interrupts()
        .map_err(|e| Error::Failed(format!("cannot handle signals: {e}")))?;
    let report = if mode == "peers" {
        peers::run(&opts)?
    } else {
        scaling::run(&opts)?
    };
    println!("{}", report.text());
    let (_, stamp) = report::now_utc();
    for path in report.write(&opts.out, &stamp)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

fn parse(mode: &str, args: &[String]) -> Result<Options, Error> {
    let peers = mode == "peers";
    let quick = args.iter().any(|a| a == "--quick");
    let mut o = Options {
        quick,
        // --quick: three rounds still, so that a median drops one disturbed run.
        rounds: match (peers, quick) {
            (true, _) => 3,
            (false, false) => 3,
            (false, true) => 1,
        },
        duration: match (peers, quick) {
            (_, false) => Duration::from_secs(10),
            (true, true) => Duration::from_secs(1),
            (false, true) => Duration::from_secs(3),
        },
        warmup: if quick {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(2)
        },
        connections: 64,
        bodies: BodySize::parse_list(if peers { "16,1k,16k" } else { "16" })?,
        rate: 20_000,
        contenders: vec![Kind::Ringway, Kind::Nginx, Kind::Haproxy],
        tls_modes: TlsMode::ALL.to_vec(),
        handshake_rate: 500,
        workers: Vec::new(),
        driver: DriverChoice::Ringload,
        ringload: None,
        ringway: None,
        build: true,
        out: ringway_bench::runner::repo_root().join("bench/results"),
        command: std::iter::once(format!("cargo run --release -p ringway-bench -- {mode}"))
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| Error::Usage(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--quick" => {}
            "--no-build" => o.build = false,
            "--rounds" => o.rounds = number(flag, value()?)?.max(1),
            "--duration" => o.duration = duration(flag, value()?)?,
            "--warmup" => o.warmup = duration(flag, value()?)?,
            "--connections" => o.connections = number(flag, value()?)?.max(1),
            "--bodies" => o.bodies = BodySize::parse_list(value()?)?,
            "--rate" if peers => o.rate = number(flag, value()?)? as u64,
            "--contenders" if peers => {
                o.contenders = value()?
                    .split(',')
                    .map(|c| {
                        Kind::parse(c.trim()).ok_or_else(|| {
                            let names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
                            Error::Usage(format!(
                                "{flag}: {c:?} is not one of {}",
                                names.join(", ")
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--tls-modes" if peers => o.tls_modes = TlsMode::parse_list(value()?)?,
            "--handshake-rate" if peers => o.handshake_rate = number(flag, value()?)? as u64,
            "--workers" if !peers => {
                o.workers = value()?
                    .split(',')
                    .map(|w| number(flag, w.trim()))
                    .collect::<Result<_, _>>()?;
            }
            "--driver" => {
                o.driver = match value()? {
                    "ringload" => DriverChoice::Ringload,
                    "wrk" => DriverChoice::Wrk,
                    other => return Err(Error::Usage(format!("{flag}: unknown driver {other:?}"))),
                }
            }
            "--ringload" => o.ringload = Some(PathBuf::from(value()?)),
            "--ringway" => o.ringway = Some(PathBuf::from(value()?)),
            "--out" => o.out = PathBuf::from(value()?),
            other => return Err(Error::Usage(format!("unknown option {other:?} for {mode}"))),
        }
    }
    if o.duration.is_zero() {
        return Err(Error::Usage("--duration must be more than 0".into()));
    }
    Ok(o)
}

fn number(flag: &str, text: &str) -> Result<usize, Error> {
    text.parse()
        .map_err(|_| Error::Usage(format!("{flag}: {text:?} is not a number")))
}

/// `10s`, `500ms`, `2m`, or bare seconds.
fn duration(flag: &str, text: &str) -> Result<Duration, Error> {
    ringway::config::parse_duration(text)
        .or_else(|_| text.parse::<u64>().map(Duration::from_secs).map_err(|_| ()))
        .map_err(|_| Error::Usage(format!("{flag}: {text:?} is not a duration like 10s")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn quick_sets_short_runs_and_options_override_it() {
        let o = parse("peers", &args("--quick")).unwrap();
        assert_eq!((o.rounds, o.duration), (3, Duration::from_secs(1)));
        assert_eq!(o.bodies.len(), 3);
        assert_eq!(
            o.command,
            "cargo run --release -p ringway-bench -- peers --quick"
        );
        let o = parse("peers", &args("--quick --rounds 5 --duration 3s --rate 0")).unwrap();
        assert_eq!(
            (o.rounds, o.duration, o.rate),
            (5, Duration::from_secs(3), 0)
        );
        let o = parse(
            "peers",
            &args(
                "--contenders ringway-tls,nginx-tls --tls-modes full,resumed --handshake-rate 250",
            ),
        )
        .unwrap();
        assert_eq!(o.contenders, [Kind::RingwayTls, Kind::NginxTls]);
        assert_eq!(o.tls_modes, [TlsMode::Full, TlsMode::Resumed]);
        assert_eq!(o.handshake_rate, 250);
        let o = parse("peers", &args("--quick")).unwrap();
        assert_eq!(o.tls_modes, TlsMode::ALL);
        assert_eq!(o.handshake_rate, 500);
        let o = parse("scaling", &args("--workers 1,2,8 --bodies 1k --no-build")).unwrap();
        assert_eq!(o.workers, [1, 2, 8]);
        assert_eq!(o.bodies[0].bytes, 1024);
        assert!(!o.build);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        for (mode, line) in [
            ("peers", "--workers 2"),
            ("scaling", "--rate 100"),
            ("peers", "--contenders ringway,envoy"),
            ("peers", "--duration"),
            ("peers", "--duration 0s"),
            ("peers", "--driver curl"),
            ("peers", "--tls-modes full,0rtt"),
            ("scaling", "--tls-modes full"),
            ("scaling", "--handshake-rate 10"),
        ] {
            assert!(
                matches!(parse(mode, &args(line)), Err(Error::Usage(_))),
                "{mode} {line}"
            );
        }
    }
}
