//! The shared cache tier's entries in Redis: a cached response with the full cache key (a hash
//! collision is never served), its status, headers and body, its TTL and when it was stored
//! (so that `Age` and the expiry carry over to the node that takes it).
//!
//! Layout: `RW1`, key length (u32), key, status (u16), TTL ms (u64), stored at unix ms (u64),
//! headers length (u32), headers, body; integers big-endian.

use std::time::Duration;

use bytes::Bytes;

const MAGIC: &[u8; 3] = b"RW1";

/// An entry read back.
pub struct Entry {
    pub status: u16,
    pub headers: Bytes,
    pub body: Bytes,
    /// The TTL it was stored with, and its age now.
    pub ttl: Duration,
    pub age: Duration,
}

pub fn encode(
    key: &[u8],
    status: u16,
    headers: &[u8],
    body: &[u8],
    ttl: Duration,
    now_unix_ms: u64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(33 + key.len() + headers.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(key.len() as u32).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&status.to_be_bytes());
    out.extend_from_slice(&(ttl.as_millis() as u64).to_be_bytes());
    out.extend_from_slice(&now_unix_ms.to_be_bytes());
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    out.extend_from_slice(headers);
    out.extend_from_slice(body);
    out
}

/// The entry in `bytes` when it is one for `key` and has not expired.
pub fn decode(bytes: &[u8], key: &[u8], now_unix_ms: u64) -> Option<Entry> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (len, rest) = take_u32(rest)?;
    let (stored_key, rest) = rest.split_at_checked(len as usize)?;
    if stored_key != key {
        return None;
    }
    let (status, rest) = rest.split_at_checked(2)?;
    let (ttl, rest) = rest.split_at_checked(8)?;
    let (at, rest) = rest.split_at_checked(8)?;
    let (hlen, rest) = take_u32(rest)?;
    let (headers, body) = rest.split_at_checked(hlen as usize)?;
    let ttl = u64::from_be_bytes(ttl.try_into().ok()?);
    let age = now_unix_ms.saturating_sub(u64::from_be_bytes(at.try_into().ok()?));
    if age >= ttl {
        return None;
    }
    Some(Entry {
        status: u16::from_be_bytes(status.try_into().ok()?),
        headers: Bytes::copy_from_slice(headers),
        body: Bytes::copy_from_slice(body),
        ttl: Duration::from_millis(ttl),
        age: Duration::from_millis(age),
    })
}

fn take_u32(b: &[u8]) -> Option<(u32, &[u8])> {
    let (n, rest) = b.split_at_checked(4)?;
    Some((u32::from_be_bytes(n.try_into().ok()?), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_keys_and_expired_entries() {
        let e = encode(
            b"k1",
            200,
            b"a: b\r\n",
            b"body",
            Duration::from_secs(10),
            1_000,
        );
        let d = decode(&e, b"k1", 3_000).unwrap();
        assert_eq!(d.status, 200);
        assert_eq!(&d.headers[..], b"a: b\r\n");
        assert_eq!(&d.body[..], b"body");
        assert_eq!(d.age, Duration::from_secs(2));
        assert!(decode(&e, b"k2", 3_000).is_none());
        assert!(decode(&e, b"k1", 11_000).is_none());
        assert!(decode(&e[..10], b"k1", 3_000).is_none());
    }
}
