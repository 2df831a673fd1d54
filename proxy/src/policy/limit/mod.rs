//! Throttling and quotas: rate-limit-by-key ([`window`]), quota-by-key ([`quota`]) and
//! limit-concurrency ([`concurrency`]), with node-wide limits on a thread-per-core server.
//!
//! Each policy has one shared table of atomic counters, held in an `Arc` by every worker, and
//! one local table per core. A core takes tokens from the shared counter of a key in leases,
//! with one compare-and-swap, and spends them from its local table without touching memory
//! another core writes; the lease is the only operation that crosses cores. A lease is checked
//! against the limit with the value the swap itself observed, so the node never admits more
//! than the limit. What it can do is admit less: tokens leased by one core are unavailable to
//! the others until spent or returned. Leases are therefore small, `limit / (20 * workers)`
//! (1 to 1,024), and shrink as the limit runs out, which keeps the tokens held by other cores
//! under 5 % of the limit whenever the limit is at least `20 * workers`.
//!
//! Keys are `u64` hashes made by the caller. Shared tables are indexed by the hash's low bits,
//! one line per key; two keys on one line share one budget, so a collision can only refuse
//! early, never admit more. The tables are sized from `max_keys` and never grow: memory does
//! not depend on how many distinct keys clients send. Time is passed in as milliseconds, so
//! everything here runs on a fake clock in tests. The counters of quotas survive a restart
//! through [`state`]; rate windows and concurrency are short-lived and start empty.

pub mod concurrency;
pub mod quota;
pub mod state;
mod table;
pub mod window;

pub use concurrency::{ConcurrencySpec, ConcurrencyView, LocalConcurrency, SharedConcurrency};
pub use quota::{LocalQuota, QuotaDecision, QuotaRecord, QuotaSpec, QuotaView, SharedQuota};
pub use state::{load_state, save_state, StateFile};
pub use window::{LocalWindow, RateDecision, RateSpec, SharedWindow, WindowView};

/// Largest lease, so that a huge limit still spreads over the cores that need it.
const MAX_LEASE: u64 = 1024;

/// Largest shared table, in lines: a bound on what a mistaken `max_keys` can allocate.
const MAX_LINES: usize = 1 << 24;

/// Tokens a core takes from a shared counter in one lease: `limit / (20 * workers)`, between 1
/// and [`MAX_LEASE`], and no more than a `2 * workers`-th of what is left, so that the last
/// tokens go one by one to whichever core asks.
fn lease_size(limit: u64, workers: u64, remaining: u64) -> u64 {
    let workers = workers.max(1);
    let base = (limit / (20 * workers)).clamp(1, MAX_LEASE);
    base.min((remaining / (2 * workers)).max(1))
}

/// Lines of a shared table for `max_keys` keys: twice as many, a power of two, at least 1,024.
fn shared_lines(max_keys: usize) -> usize {
    max_keys
        .saturating_mul(2)
        .clamp(1024, MAX_LINES)
        .next_power_of_two()
}

/// Types whose every field is an atomic integer, for which all-zero bytes are the value
/// `Default` would make.
///
/// # Safety
/// An implementor must be valid when all its bytes are zero.
unsafe trait Zeroed: Sized {}

// SAFETY: an AtomicU64 is a u64 in memory; zero is a valid value.
unsafe impl Zeroed for std::sync::atomic::AtomicU64 {}

/// `n` zeroed values in one allocation made zeroed: a large shared table costs memory only for
/// the lines keys have touched (fresh pages from the system are zero and are not written).
fn zeroed_table<T: Zeroed>(n: usize) -> Box<[T]> {
    assert!(std::mem::size_of::<T>() > 0, "table entries have a size");
    if n == 0 {
        return Vec::new().into_boxed_slice();
    }
    let layout = std::alloc::Layout::array::<T>(n).expect("table size fits in memory");
    // SAFETY: the layout is not zero-sized (n > 0, and T has a size); the memory is zeroed, which is a
    // valid `T` (the `Zeroed` contract); the box takes the allocation with the same layout.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<T>();
        if ptr.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_size_is_a_twentieth_per_worker_and_shrinks_near_the_end() {
        assert_eq!(lease_size(1000, 1, 1000), 50);
        assert_eq!(lease_size(1000, 4, 1000), 12);
        assert_eq!(lease_size(1_000_000_000, 4, 1_000_000_000), MAX_LEASE);
        assert_eq!(lease_size(10, 4, 10), 1);
        assert_eq!(lease_size(1000, 4, 40), 5);
        assert_eq!(lease_size(1000, 4, 3), 1);
        assert_eq!(lease_size(1000, 0, 1000), 50, "zero workers counts as one");
    }

    #[test]
    fn shared_lines_are_a_power_of_two_at_least_1024() {
        assert_eq!(shared_lines(0), 1024);
        assert_eq!(shared_lines(100), 1024);
        assert_eq!(shared_lines(1000), 2048);
        assert_eq!(shared_lines(10_000), 32_768);
        assert_eq!(shared_lines(usize::MAX), MAX_LINES);
    }
}
