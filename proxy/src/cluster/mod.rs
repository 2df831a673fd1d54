//! Cluster mode: nodes that share limit budgets, quotas, cache purges, an optional cache tier
//! and the configuration through Redis.

pub mod limits;
pub mod redis;
