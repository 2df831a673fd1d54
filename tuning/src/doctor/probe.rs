//! An actual `io_uring_setup(2)` on this machine: the only way to know whether io_uring is
//! allowed here (a seccomp filter or `kernel.io_uring_disabled` decide at the syscall, not in
//! any file). Each ring is closed straight away; nothing is mapped.

use super::plan::RingFlags;

const IORING_SETUP_SQPOLL: u32 = 1 << 1;
const IORING_SETUP_COOP_TASKRUN: u32 = 1 << 8;
const IORING_SETUP_SINGLE_ISSUER: u32 = 1 << 12;
const IORING_SETUP_DEFER_TASKRUN: u32 = 1 << 13;

/// The `IORING_FEAT_*` bits, in bit order.
const FEATURES: [&str; 18] = [
    "SINGLE_MMAP",
    "NODROP",
    "SUBMIT_STABLE",
    "RW_CUR_POS",
    "CUR_PERSONALITY",
    "FAST_POLL",
    "POLL_32BITS",
    "SQPOLL_NONFIXED",
    "EXT_ARG",
    "NATIVE_WORKERS",
    "RSRC_TAGS",
    "CQE_SKIP",
    "LINKED_FILE",
    "REG_REG_RING",
    "RECVSEND_BUNDLE",
    "MIN_TIMEOUT",
    "RW_ATTR",
    "NO_IOWAIT",
];

/// What the probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub entries: u32,
    /// A plain ring of `entries`: its `features`, or the errno.
    pub plain: Result<u32, i32>,
    /// Whether COOP_TASKRUN, DEFER_TASKRUN + SINGLE_ISSUER and (when the configuration asks
    /// for it) SQPOLL were accepted; `None` when not tried.
    pub coop_taskrun: Option<Result<(), i32>>,
    pub defer_taskrun: Option<Result<(), i32>>,
    pub sqpoll: Option<Result<(), i32>>,
}

impl Probe {
    /// Tries a ring of `entries`, then the setup flags.
    pub fn run(entries: u32, flags: RingFlags) -> Probe {
        let plain = setup(entries, 0);
        let tried = |f: u32| plain.is_ok().then(|| setup(entries, f).map(|_| ()));
        Probe {
            entries,
            plain,
            coop_taskrun: tried(IORING_SETUP_COOP_TASKRUN),
            defer_taskrun: tried(IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SINGLE_ISSUER),
            sqpoll: if flags == RingFlags::Sqpoll {
                tried(IORING_SETUP_SQPOLL)
            } else {
                None
            },
        }
    }

    /// Whether the configured ring flags would be accepted as they are.
    pub fn accepts(&self, flags: RingFlags) -> Option<bool> {
        let r = match flags {
            RingFlags::None => return Some(self.plain.is_ok()),
            RingFlags::CoopTaskrun => self.coop_taskrun.as_ref(),
            RingFlags::DeferTaskrun => self.defer_taskrun.as_ref(),
            RingFlags::Sqpoll => self.sqpoll.as_ref(),
        };
        r.map(Result::is_ok)
    }
}

/// The names of the feature bits set in `features`.
pub fn feature_names(features: u32) -> Vec<String> {
    (0..32)
        .filter(|bit| features & (1 << bit) != 0)
        .map(|bit| match FEATURES.get(bit) {
            Some(name) => (*name).to_string(),
            None => format!("bit{bit}"),
        })
        .collect()
}

/// The errno's name and what it means for io_uring_setup.
pub fn explain_errno(errno: i32) -> String {
    match errno {
        libc::ENOSYS => {
            "ENOSYS: the kernel has no io_uring, or a seccomp filter answers ENOSYS".into()
        }
        libc::EPERM => {
            "EPERM: refused (kernel.io_uring_disabled, or a seccomp filter / container profile)"
                .into()
        }
        libc::EACCES => "EACCES: refused by a security module (SELinux, AppArmor)".into(),
        libc::ENOMEM => {
            "ENOMEM: no memory for the ring (before Linux 5.12: RLIMIT_MEMLOCK too low)".into()
        }
        libc::EINVAL => "EINVAL: the kernel does not know these setup flags".into(),
        libc::EMFILE | libc::ENFILE => "EMFILE: out of file descriptors".into(),
        other => format!(
            "errno {other}: {}",
            std::io::Error::from_raw_os_error(other)
        ),
    }
}

/// `struct io_uring_params`, as the kernel lays it out (120 bytes). Only `flags`,
/// `sq_thread_idle` and `features` are used here; the rest is there for the layout.
#[repr(C)]
#[derive(Default)]
#[allow(dead_code)]
struct IoUringParams {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    /// `struct io_sqring_offsets` (40 bytes), filled in by the kernel.
    sq_off: [u32; 10],
    /// `struct io_cqring_offsets` (40 bytes), filled in by the kernel.
    cq_off: [u32; 10],
}

const _: () = assert!(std::mem::size_of::<IoUringParams>() == 120);

#[cfg(target_os = "linux")]
fn setup(entries: u32, flags: u32) -> Result<u32, i32> {
    let mut params = IoUringParams {
        flags,
        sq_thread_idle: if flags & IORING_SETUP_SQPOLL != 0 {
            10
        } else {
            0
        },
        ..IoUringParams::default()
    };
    // SAFETY: io_uring_setup reads and writes exactly one io_uring_params, which `params` is
    // and which outlives the call; the descriptor it returns is ours and closed here.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            entries as libc::c_ulong,
            &mut params as *mut IoUringParams,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EINVAL));
    }
    // SAFETY: `fd` is the ring descriptor just returned, owned by nothing else.
    unsafe { libc::close(fd as libc::c_int) };
    Ok(params.features)
}

#[cfg(not(target_os = "linux"))]
fn setup(_entries: u32, _flags: u32) -> Result<u32, i32> {
    Err(libc::ENOSYS)
}
