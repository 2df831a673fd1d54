//! Ringway, the gateway: configuration, routing, upstream pools and the proxy server.

pub mod cluster;
pub mod config;
pub mod control;
pub mod ctl;
pub mod demo;
pub mod import;
pub mod logging;
pub mod policy;
pub mod portal;
pub mod route;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod upstream;
