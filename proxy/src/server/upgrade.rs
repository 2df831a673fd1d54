//! Zero-downtime binary upgrade, as nginx's: `SIGUSR2` (or `ringway upgrade --pid PID`)
//! starts the binary now at the running one's path with the same arguments, and hands it the
//! listening sockets over a Unix socket (SCM_RIGHTS). Once the new process says it is ready,
//! the old one stops accepting (cancelling its pending accepts, never closing or shutting the
//! shared sockets), drains and exits. The sockets are never closed in between, so the kernel
//! keeps queueing connections throughout: none is refused.
//!
//! A new binary that fails to start (or does not say it is ready within [`READY_TIMEOUT`])
//! changes nothing: the old process keeps serving.
//!
//! The hand-over, on the Unix socket whose path is in `RINGWAY_UPGRADE_SOCKET`:
//! 1. old → new: one line per listener, `CONFIGURED BOUND COUNT\n`, then an empty line, then
//!    one message whose SCM_RIGHTS carry every socket, listener after listener;
//! 2. new → old: `ready\n` once it serves (or nothing, when it fails).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The environment variable naming the hand-over socket.
pub const SOCKET_ENV: &str = "RINGWAY_UPGRADE_SOCKET";

/// How long the new process may take to start and say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Most sockets one hand-over carries (listeners × workers).
const MAX_FDS: usize = 4096;

/// One listener's sockets, as handed over: the address configured, the one bound, and every
/// worker's socket.
pub struct Handed {
    pub configured: SocketAddr,
    pub bound: SocketAddr,
    pub sockets: Vec<std::net::TcpListener>,
}

/// The sockets a new process received, and the stream to say `ready` on.
pub struct Inherited {
    pub listeners: Vec<Handed>,
    ready: UnixStream,
}

impl Inherited {
    /// The sockets of the listener configured at `addr`, taken (once).
    pub fn take(&mut self, addr: SocketAddr) -> Option<Handed> {
        let i = self.listeners.iter().position(|h| h.configured == addr)?;
        Some(self.listeners.remove(i))
    }

    /// Tells the old process that this one serves: it stops accepting and drains.
    pub fn ready(mut self) {
        if let Err(e) = self.ready.write_all(b"ready\n") {
            log::error!("upgrade: cannot tell the old process that this one is ready: {e}");
        }
        // Sockets no listener of this configuration took are closed here.
    }
}

/// In a process started by an upgrade: receives the old process's sockets.
pub fn receive() -> std::io::Result<Option<Inherited>> {
    let Some(path) = std::env::var_os(SOCKET_ENV) else {
        return Ok(None);
    };
    // Not passed on to anything this process starts.
    std::env::remove_var(SOCKET_ENV);
    let stream = UnixStream::connect(&path)?;
    stream.set_read_timeout(Some(READY_TIMEOUT))?;
    // The head is read a byte at a time: a buffered read could take the byte that carries the
    // sockets, and with it the sockets.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\n\n") && head != b"\n" {
        if (&stream).read(&mut byte)? == 0 {
            return Err(std::io::Error::other(
                "the old process closed the hand-over",
            ));
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Err(std::io::Error::other("the hand-over head is too long"));
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut plan = Vec::new();
    for line in head.lines().filter(|l| !l.is_empty()) {
        let bad = || std::io::Error::other(format!("bad hand-over line {line:?}"));
        let mut parts = line.split(' ');
        let configured: SocketAddr = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let bound: SocketAddr = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let count: usize = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        plan.push((configured, bound, count));
    }
    let total: usize = plan.iter().map(|p| p.2).sum();
    let fds = recv_fds(&stream, total)?;
    let mut fds = fds.into_iter();
    let listeners = plan
        .into_iter()
        .map(|(configured, bound, count)| Handed {
            configured,
            bound,
            sockets: (&mut fds)
                .take(count)
                // SAFETY: each descriptor arrived in SCM_RIGHTS and is owned by nothing else.
                .map(|fd| unsafe { std::net::TcpListener::from_raw_fd(fd) })
                .collect(),
        })
        .collect();
    Ok(Some(Inherited {
        listeners,
        ready: stream,
    }))
}

/// The outcome of an upgrade, written beside the pid for `ringway upgrade --pid`.
pub fn status_path(pid: u32) -> PathBuf {
    std::env::temp_dir().join(format!("ringway-upgrade-{pid}.status"))
}

/// Starts `exe` with `args` and hands it `listeners` (configured, bound, sockets' fds); returns
/// the new process's pid once it said it is ready. On any failure the new process (if it
/// started) is killed and nothing else changes.
pub fn hand_over(
    exe: &Path,
    args: &[String],
    listeners: &[(SocketAddr, SocketAddr, Vec<RawFd>)],
) -> Result<u32, String> {
    let path = std::env::temp_dir().join(format!(
        "ringway-upgrade-{}-{}.sock",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    let _ = std::fs::remove_file(&path);
    let socket = UnixListener::bind(&path)
        .map_err(|e| format!("cannot open the hand-over socket {}: {e}", path.display()))?;
    let result = (|| {
        let mut child = Command::new(exe)
            .args(args)
            .env(SOCKET_ENV, &path)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let outcome = talk(&socket, &mut child, listeners);
        if outcome.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        outcome.map(|()| child.id())
    })();
    let _ = std::fs::remove_file(&path);
    result
}

fn talk(
    socket: &UnixListener,
    child: &mut Child,
    listeners: &[(SocketAddr, SocketAddr, Vec<RawFd>)],
) -> Result<(), String> {
    socket.set_nonblocking(true).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut stream = loop {
        match socket.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("hand-over socket: {e}")),
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the new process exited ({status}) before taking the sockets"
            ));
        }
        if Instant::now() >= deadline {
            return Err("the new process did not connect for the sockets".to_string());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    let mut head = String::new();
    let mut fds = Vec::new();
    for (configured, bound, sockets) in listeners {
        head.push_str(&format!("{configured} {bound} {}\n", sockets.len()));
        fds.extend_from_slice(sockets);
    }
    head.push('\n');
    stream
        .write_all(head.as_bytes())
        .map_err(|e| format!("hand-over: {e}"))?;
    send_fds(&stream, &fds).map_err(|e| format!("hand-over of the sockets: {e}"))?;
    // Wait for `ready`, watching the child.
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 16];
    let mut got = Vec::new();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => {
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                return Err(format!(
                    "the new process exited ({status}) before it was ready"
                ));
            }
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.starts_with(b"ready\n") {
                    return Ok(());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(format!("hand-over: {e}")),
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the new process exited ({status}) before it was ready"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the new process was not ready within {}s",
                READY_TIMEOUT.as_secs()
            ));
        }
    }
}

fn send_fds(stream: &UnixStream, fds: &[RawFd]) -> std::io::Result<()> {
    let payload = [b'F'];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    let space = cmsg_space(fds.len());
    let mut control = vec![0u8; space];
    // SAFETY: the message header points at buffers owned by this frame, sized with
    // CMSG_SPACE for `fds.len()` descriptors; CMSG_FIRSTHDR and CMSG_DATA stay inside it.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr(),
            libc::CMSG_DATA(cmsg).cast::<RawFd>(),
            fds.len(),
        );
        if libc::sendmsg(stream.as_raw_fd(), &msg, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn recv_fds(stream: &UnixStream, expected: usize) -> std::io::Result<Vec<RawFd>> {
    if expected > MAX_FDS {
        return Err(std::io::Error::other("too many sockets in the hand-over"));
    }
    let mut payload = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let space = cmsg_space(expected.max(1));
    let mut control = vec![0u8; space];
    let mut fds = Vec::with_capacity(expected);
    // SAFETY: as in `send_fds`; the kernel writes at most `space` bytes of control data, and
    // every header read is checked against the length it wrote.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        if libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let bytes = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(std::ptr::read_unaligned(data.add(i)));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if fds.len() != expected {
        return Err(std::io::Error::other(format!(
            "the hand-over carried {} sockets, not {expected}",
            fds.len()
        )));
    }
    Ok(fds)
}

fn cmsg_space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE only computes a size.
    unsafe { libc::CMSG_SPACE((n * std::mem::size_of::<RawFd>()) as u32) as usize }
}
