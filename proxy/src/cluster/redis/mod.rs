//! A Redis client: the RESP codec, and connections to a single server, a Sentinel-watched
//! master, or a Redis Cluster.
//!
//! Cluster mode shares limit leases, quotas and cache purges through Redis. The workers reach
//! it on the request path (a limit policy awaits a lease), so the client is our own RESP over
//! monoio rather than a tokio-based crate: one [`RedisClient`] per core, pipelining every
//! caller's commands on one connection per node, with no lock, no cross-core traffic and no
//! allocation per call beyond the reply. The control side (threads outside the workers) uses
//! [`BlockingClient`], which shares everything but the I/O and adds pub/sub.
//!
//! - [`resp`]: the codec. Commands are encoded into reused buffers; replies are parsed
//!   incrementally, with limits that a hostile server cannot get past.
//! - [`topology`]: [`RedisSettings`], parsed from a `redis://`, `rediss://`,
//!   `redis+sentinel://` or `redis+cluster://` URL, and the Sentinel replies.
//! - [`slots`]: key slots (CRC16 and hash tags), which key a command is routed by, the slot
//!   map, and what to do with `MOVED`, `ASK`, `TRYAGAIN` and `CLUSTERDOWN`.
//! - `link`: one pipelined connection on a worker: a writer task, a reader task matching
//!   replies to waiting calls in order, a bounded queue.
//! - [`client`]: [`RedisClient`], routing over links (Sentinel discovery, cluster slots).
//! - [`blocking`]: [`BlockingClient`] and [`Subscription`] over std sockets.
//! - [`script`]: [`Script`], a Lua script run by SHA-1 with an `EVAL` fallback.
//!
//! Failure behaviour, in short: a call always ends within the command timeout. A connection
//! that fails fails every call waiting on it at once (none hangs) and is made again by a later
//! call, after a back-off if connecting failed; while a node backs off, calls to it fail at
//! once with [`RedisError::Unavailable`], so a worker whose Redis is gone pays nothing per
//! request and can fall back to its local limits. [`RedisClient::is_available`] says so
//! without I/O. A connection whose oldest command got no byte back for a whole command
//! timeout is replaced, so one stuck server cannot hold a worker's queue. Which errors leave
//! a command possibly run is said on each [`RedisError`] variant.
//!
//! Making a client on a worker:
//!
//! ```text
//! // Control side, once: parse and validate (reads the TLS CA file, if any).
//! let settings = RedisSettings::parse("redis+cluster://10.0.0.1:7000,10.0.0.2:7000", None)?;
//! // Each worker, inside its runtime (which has monoio's timer enabled); settings are
//! // Clone + Send, the client is neither and stays on the runtime it first ran on:
//! let redis = RedisClient::new(&settings);
//! let n = redis.call(&[b"INCRBY", b"quota:alice", b"10"]).await?.as_int();
//! ```
//!
//! Not here: RESP3 as the spoken protocol (its replies are read, but the clients ask for
//! RESP2), transactions and blocking commands on the shared pipeline, reads from replicas,
//! client certificates for TLS. The tests start real `redis-server`, `redis-sentinel` and
//! Redis Cluster processes on loopback (`testing`), as other tests of the crate may too.

pub mod blocking;
pub mod client;
mod error;
mod link;
pub mod resp;
pub mod script;
pub mod slots;
pub mod topology;

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod blocking_tests;
#[cfg(test)]
mod client_tests;

pub use blocking::{BlockingClient, Subscription};
pub use client::RedisClient;
pub use error::RedisError;
pub use resp::{ProtocolError, Value};
pub use script::Script;
pub use topology::{Endpoint, RedisSettings, RedisTls, Target};
