//! Ringway's engine: how bytes move fast, with no gateway knowledge.
//!
//! - [`runtime`]: the thread-per-core launcher (one pinned monoio runtime per worker).
//! - [`buf`]: the read buffer heads are parsed from.
//! - [`http1`]: the zero-copy HTTP/1.1 codec.
//! - [`timer`]: the coarse per-core timer wheel.
//! - [`metrics`]: per-core counters and latency histograms, and their merge.

pub mod buf;
pub mod http1;
pub mod metrics;
pub mod runtime;
pub mod timer;
