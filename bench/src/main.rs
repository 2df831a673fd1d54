//! The peer runner: see docs/benchmarks.md.

fn main() {
    eprintln!("ringway-bench: not built yet");
    std::process::exit(2);
}
