//! The policy pipeline: APIs' and operations' `inbound`, `backend`, `outbound` and `on_error`
//! sections, compiled once into plain data and run per request without allocation.

pub mod cache;
pub mod limit;
