//! [`RedisError`]: why a command got no reply, or got an error reply.

use std::fmt;
use std::io;
use std::sync::Arc;

use super::resp::{self, ErrorKind, ProtocolError};

/// Why a call failed. Cloned to every call waiting on a connection that fails, so the I/O
/// error is shared.
#[derive(Clone, Debug)]
pub enum RedisError {
    /// The connection failed (connect, TLS, read or write). The command may or may not have
    /// run on the server.
    Io(Arc<io::Error>),
    /// No reply within the command timeout (or the connect timeout, while connecting). The
    /// command may or may not have run.
    Timeout,
    /// The server sent bytes that are not a reply this client accepts; the connection is
    /// dropped. The command may or may not have run.
    Protocol(ProtocolError),
    /// The server answered with an error reply (`ERR ...`, `WRONGTYPE ...`, a script error,
    /// `NOAUTH`, ...). The connection stays usable.
    Server(String),
    /// Refused without trying: the target is backing off after failures, no master or slot
    /// owner is known yet, or too many commands are waiting on the connection. The command
    /// did not run.
    Unavailable(&'static str),
}

impl RedisError {
    pub(crate) fn io(kind: io::ErrorKind, message: &str) -> RedisError {
        RedisError::Io(Arc::new(io::Error::new(kind, message.to_string())))
    }

    /// The kind of an error reply; `None` for the other variants.
    pub fn server_kind(&self) -> Option<ErrorKind> {
        match self {
            RedisError::Server(message) => Some(resp::error_kind(message)),
            _ => None,
        }
    }

    /// True when the connection (not the command) failed: the client reconnects, and a
    /// Sentinel or Cluster client looks up its topology again.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            RedisError::Io(_) | RedisError::Timeout | RedisError::Protocol(_)
        )
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisError::Io(e) => write!(f, "redis: connection failed: {e}"),
            RedisError::Timeout => write!(f, "redis: no reply in time"),
            RedisError::Protocol(e) => write!(f, "redis: protocol error: {e}"),
            RedisError::Server(message) => write!(f, "redis: {message}"),
            RedisError::Unavailable(why) => write!(f, "redis: unavailable: {why}"),
        }
    }
}

impl std::error::Error for RedisError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RedisError::Io(e) => Some(e.as_ref()),
            RedisError::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for RedisError {
    fn from(e: io::Error) -> RedisError {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => RedisError::Timeout,
            _ => RedisError::Io(Arc::new(e)),
        }
    }
}

impl From<ProtocolError> for RedisError {
    fn from(e: ProtocolError) -> RedisError {
        RedisError::Protocol(e)
    }
}
