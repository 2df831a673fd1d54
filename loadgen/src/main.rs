//! `ringload`: Ringway's HTTP/1.1 load generator (see docs/loadgen.md).
//!
//! Exit status: 0 after a run, 1 when the run's error rate is above `--max-error-rate` or no
//! request got a response at all, 2 for bad input (a one-line message on stderr).

mod cli;
mod client;
mod pacer;
mod plan;
mod progress;
mod report;
mod run;
mod stats;
mod target;
mod worker;

use std::path::Path;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(cli::Command::Run(o)) => o,
        Ok(cli::Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(cli::Command::Version) => {
            println!("ringload {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => return bad_input(&e),
    };
    let finished = match run::run(&options) {
        Ok(f) => f,
        Err(e) => return bad_input(&e),
    };
    let summary = &finished.summary;
    let json_to_stdout = options.json.as_deref() == Some(Path::new("-"));
    if !json_to_stdout {
        print!("{}", summary.text());
    }
    if let Some(path) = &options.json {
        let mut text = serde_json::to_string_pretty(&summary.json()).expect("serializable");
        text.push('\n');
        if let Err(e) = report::write_file(path, &text) {
            eprintln!("ringload: --json {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    if let Some(path) = &options.hdr_log {
        let written = report::write_hdr_log(
            path,
            finished.started,
            &finished.intervals,
            summary.duration,
        );
        if let Err(e) = written {
            eprintln!("ringload: --hdr-log {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    let stats = &summary.stats;
    if stats.responses == 0 && stats.total_errors() > 0 {
        eprintln!("ringload: no request got a response");
        return ExitCode::from(1);
    }
    if let Some(max) = options.max_error_rate {
        let rate = stats.error_rate();
        if rate > max {
            eprintln!("ringload: error rate {rate:.4} is above --max-error-rate {max}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

fn bad_input(message: &str) -> ExitCode {
    eprintln!("ringload: {message}");
    ExitCode::from(2)
}
