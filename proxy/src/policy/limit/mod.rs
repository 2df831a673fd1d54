//! Throttling and quotas: rate-limit-by-key, quota-by-key, limit-concurrency.
