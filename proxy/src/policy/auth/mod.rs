//! Identity and access policies: subscription keys, JWT, IP filter, header checks, CORS.

pub mod access;
pub mod fetch;
pub mod jwks;
pub mod jwt;
pub mod keys;
pub mod subscription;
