//! Identity and access policies: subscription keys, JWT, IP filter, header checks, CORS.

pub mod access;
pub mod jwt;
pub mod keys;
