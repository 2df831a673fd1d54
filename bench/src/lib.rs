//! Ringway's benchmark rig: the inputs of the criterion micro-benchmarks (`benches/`) and the
//! runner that measures whole proxies against each other (`ringway-bench peers|scaling`).

pub mod fixtures;
pub mod runner;
