//! Settings every bench shares: short measurements, so that the whole suite runs in a few
//! minutes on a small shared machine. Pass criterion's own flags to measure longer.

use std::time::Duration;

use criterion::Criterion;

pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30)
}
