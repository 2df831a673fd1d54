//! [`Script`]: a Lua script run by its SHA-1 (`EVALSHA`), sent whole (`EVAL`) only when the
//! server does not have it cached yet.

use std::fmt;

/// A Lua script and its SHA-1, computed once (make scripts at start-up, not per call).
#[derive(Clone)]
pub struct Script {
    source: &'static str,
    sha1: [u8; 40],
}

impl Script {
    pub fn new(source: &'static str) -> Script {
        let digest =
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, source.as_bytes());
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut sha1 = [0u8; 40];
        for (i, b) in digest.as_ref().iter().enumerate() {
            sha1[2 * i] = HEX[usize::from(b >> 4)];
            sha1[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        Script { source, sha1 }
    }

    pub fn source(&self) -> &'static str {
        self.source
    }

    /// The SHA-1 in lowercase hex, as `EVALSHA` and `SCRIPT LOAD` name it.
    pub fn sha1(&self) -> &[u8; 40] {
        &self.sha1
    }
}

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Script")
            .field("sha1", &String::from_utf8_lossy(&self.sha1))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sha1_is_what_redis_computes() {
        // `redis-cli SCRIPT LOAD "return 1"`.
        assert_eq!(
            Script::new("return 1").sha1(),
            b"e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
        );
        assert_eq!(
            Script::new("").sha1(),
            b"da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }
}
