//! Response and value caching: cache-lookup, cache-store and the value cache.
