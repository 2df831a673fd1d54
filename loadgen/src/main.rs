//! `ringload`: see docs/loadgen.md.

fn main() {
    eprintln!("ringload: not built yet");
    std::process::exit(2);
}
