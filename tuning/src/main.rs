//! `ringway-tune`: checks a host against what a Ringway configuration needs (`doctor`), and
//! finds the settings that serve best on it by measuring them (`sweep`).

mod doctor;
mod sweep;

use std::process::ExitCode;

const USAGE: &str = "\
usage:
  ringway-tune doctor [--config FILE] [--json] [--quick] [--root DIR] [--write-sysctl FILE]
  ringway-tune sweep --config FILE --param NAME=V1,V2,... [--param ...]
                     [--objective cpu-per-request|rps|p99] [--rate R] [--rounds N]
                     [--duration D] [--warmup D] [--path P] [--origin builtin|URL]
                     [--out DIR] [--ringway BIN] [--ringload BIN] [-- RINGLOAD ARGS]
  ringway-tune --help";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("doctor") => doctor::main(&args[1..]),
        Some("sweep") => sweep::main(&args[1..]),
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
