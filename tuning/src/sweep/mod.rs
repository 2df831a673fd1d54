//! `ringway-tune sweep`.

use std::process::ExitCode;

pub fn main(_args: &[String]) -> ExitCode {
    eprintln!("ringway-tune sweep: not built yet");
    ExitCode::from(2)
}
