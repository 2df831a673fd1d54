//! `ringway-tune doctor`.

use std::process::ExitCode;

pub fn main(_args: &[String]) -> ExitCode {
    eprintln!("ringway-tune doctor: not built yet");
    ExitCode::from(2)
}
