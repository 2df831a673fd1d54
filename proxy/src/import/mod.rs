//! Bringing definitions teams already have into a Ringway configuration: OpenAPI documents
//! (an API's operations) and Kubernetes Gateway API manifests (routes and backends).

pub mod cli;
pub mod gateway_api;
pub mod openapi;
