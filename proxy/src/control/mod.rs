//! The control side, outside the worker set: the admin listener and what it serves, and the
//! threads that write the access log and export spans.

pub mod access_log;
pub mod admin;
pub mod analytics;
pub mod edit;
pub mod labels;
pub mod otlp;
pub mod plane;
pub mod portal_admin;
pub mod prometheus;
pub mod routes;
pub mod state;

#[cfg(test)]
mod openapi_tests;
