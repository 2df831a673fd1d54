//! Ringway, the gateway: configuration, routing, upstream pools and the proxy server.

pub mod config;
pub mod route;
