//! A Redis client: the RESP codec, and connections to a single server, a Sentinel-watched
//! master, or a Redis Cluster.
