//! Response and value caching: cache-lookup, cache-store and the value cache.
//!
//! Each worker core owns its caches ([`CacheStore`] for responses, [`ValueStore`] for values,
//! [`Coalescer`] for fetches in flight) and touches them without locks; nothing here is shared
//! between cores except the [`PurgeHub`], which posts purges to every core's inbox. A response
//! cached on one core is a miss on the others: the price of a hot path with no cross-core
//! traffic, paid once per core per key.
//!
//! On a request the integrator checks the method ([`cacheable_method`]) and its own rules
//! (`Authorization` unless `allow_private`), builds the key ([`build_key`], [`key_hash`]),
//! looks it up, and on a miss joins the key's flight. On the response it asks [`store_ttl`]
//! (and [`status_storable`]) whether and for how long to store. Nothing here does I/O or
//! reads a clock: time is passed in, so every rule is tested on a fake clock.

mod coalesce;
mod control;
mod key;
mod lru;
mod node;
mod purge;
mod store;
mod value;

pub use coalesce::{Coalescer, Leader, Role, Waiter, DEFAULT_MAX_WAITERS};
pub use control::{status_storable, store_ttl, vary_covered, RequestControl, ResponseControl};
pub use key::{build_key, build_prefix, cacheable_method, key_hash, KeyParts, PATH_END};
pub use node::{Filled, NodeFlight, NodeFlights, NodeLeader, NodeRole};
pub use purge::{Purge, PurgeHub, PurgeInbox, PurgeTarget, PurgeTicket, Scope};
pub use store::{CacheStore, Hit};
pub use value::ValueStore;

/// The `X-Cache` header a response carries: how the cache took part in answering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XCache {
    /// Answered from the store.
    Hit,
    /// Looked up, not found: answered by the origin (and perhaps stored).
    Miss,
    /// Not looked up (a method, an `Authorization` header, or a client directive ruled it
    /// out): answered by the origin and not stored.
    Bypass,
}

impl XCache {
    pub const HEADER: &'static str = "X-Cache";

    /// The header's value.
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            XCache::Hit => b"HIT",
            XCache::Miss => b"MISS",
            XCache::Bypass => b"BYPASS",
        }
    }
}
