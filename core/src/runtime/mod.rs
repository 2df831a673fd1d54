//! The thread-per-core launcher. TODO
use std::time::Duration;

/// Which I/O driver a worker's runtime uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Driver {
    /// io_uring, falling back to epoll where io_uring is refused.
    #[default]
    Auto,
    /// io_uring or refuse to start.
    IoUring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

/// io_uring setup flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RingFlags {
    None,
    /// IORING_SETUP_COOP_TASKRUN.
    #[default]
    CoopTaskrun,
    /// IORING_SETUP_DEFER_TASKRUN with IORING_SETUP_SINGLE_ISSUER (Linux 6.1+).
    DeferTaskrun,
}

/// How each worker's runtime is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuntimeSettings {
    pub driver: Driver,
    pub ring_entries: u32,
    pub ring_flags: RingFlags,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            driver: Driver::Auto,
            ring_entries: 1024,
            ring_flags: RingFlags::CoopTaskrun,
        }
    }
}

#[allow(dead_code)]
const _UNUSED: Option<Duration> = None;
