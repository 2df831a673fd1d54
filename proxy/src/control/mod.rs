//! The control side, outside the worker set: the admin listener and what it serves.

pub mod admin;
pub mod prometheus;
pub mod routes;
