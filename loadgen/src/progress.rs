//! The live progress line: once a second, when stdout is a terminal, the requests and errors
//! so far and the last second's rate, read from each worker's [`Live`] counters.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::stats::Live;

pub fn spawn(
    live: Vec<Arc<Live>>,
    measure_from: Instant,
    done: Arc<AtomicBool>,
) -> Option<JoinHandle<()>> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return None;
    }
    std::thread::Builder::new()
        .name("ringload-progress".into())
        .spawn(move || run(&live, measure_from, &done))
        .ok()
}

fn run(live: &[Arc<Live>], measure_from: Instant, done: &AtomicBool) {
    let mut last = 0u64;
    let mut tick = Instant::now() + Duration::from_secs(1);
    while !done.load(Ordering::Relaxed) {
        // Sleep in short steps so the line is cleared promptly at the end.
        std::thread::sleep(Duration::from_millis(50));
        if Instant::now() < tick {
            continue;
        }
        tick += Duration::from_secs(1);
        let responses: u64 = live
            .iter()
            .map(|l| l.responses.load(Ordering::Relaxed))
            .sum();
        let errors: u64 = live.iter().map(|l| l.errors.load(Ordering::Relaxed)).sum();
        let phase = if Instant::now() < measure_from {
            "warm-up"
        } else {
            "running"
        };
        let elapsed = Instant::now()
            .saturating_duration_since(measure_from)
            .as_secs();
        let mut out = std::io::stdout().lock();
        let _ = write!(
            out,
            "\r\x1b[2K[{phase} {elapsed:>4}s] {responses} requests, {} req/s, {errors} errors",
            responses.saturating_sub(last)
        );
        let _ = out.flush();
        last = responses;
    }
    let _ = write!(std::io::stdout().lock(), "\r\x1b[2K");
}
