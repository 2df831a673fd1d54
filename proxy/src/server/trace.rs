//! W3C Trace Context (`traceparent`): every request forwarded is a new span. A valid incoming
//! `traceparent` keeps its trace id and flags and gets the gateway's span as its parent id; a
//! request without one (or with an invalid one) starts a trace, sampled. `tracestate` passes
//! through unchanged.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The length of a version-00 `traceparent` value.
pub const LEN: usize = 55;

/// splitmix64's finalizer: spreads a unique counter over 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn put_hex(out: &mut [u8], bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
}

fn is_hex(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The trace id and flags of a valid `traceparent` (version 00, or a later version read as
/// 00, as the recommendation says); None for anything else.
fn parse(value: &[u8]) -> Option<(&[u8], &[u8])> {
    let v = value.trim_ascii();
    if v.len() < LEN || (v.len() > LEN && (v[..2] == *b"00" || v[LEN] != b'-')) {
        return None;
    }
    let (version, trace, parent, flags) = (&v[..2], &v[3..35], &v[36..52], &v[53..55]);
    let dashes = v[2] == b'-' && v[35] == b'-' && v[52] == b'-';
    let valid = dashes
        && is_hex(version)
        && version != b"ff"
        && is_hex(trace)
        && trace.iter().any(|&b| b != b'0')
        && is_hex(parent)
        && parent.iter().any(|&b| b != b'0')
        && is_hex(flags);
    valid.then_some((trace, flags))
}

/// Writes the `traceparent` to send upstream into `out`. `unique` is a per-request unique
/// number (the request id), from which the span id (and a new trace id) are drawn.
/// A new trace is sampled (`-01`) when `sample_new` says so, else `-00`.
pub fn next(incoming: Option<&[u8]>, unique: u128, sample_new: bool, out: &mut [u8; LEN]) {
    let low = unique as u64;
    let high = (unique >> 64) as u64;
    let span = mix(low ^ mix(high)).max(1);
    out[..3].copy_from_slice(b"00-");
    out[35] = b'-';
    out[52] = b'-';
    put_hex(&mut out[36..52], &span.to_be_bytes());
    match incoming.and_then(parse) {
        Some((trace, flags)) => {
            out[3..35].copy_from_slice(trace);
            out[53..55].copy_from_slice(flags);
        }
        None => {
            let a = mix(span ^ 0x9e37_79b9_7f4a_7c15);
            let b = mix(a ^ high).max(1);
            put_hex(&mut out[3..19], &a.to_be_bytes());
            put_hex(&mut out[19..35], &b.to_be_bytes());
            out[53..55].copy_from_slice(if sample_new { b"01" } else { b"00" });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn make(incoming: Option<&[u8]>, unique: u128) -> String {
        let mut out = [0u8; LEN];
        next(incoming, unique, true, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn keeps_the_trace_and_flags_with_a_new_parent() {
        let out = make(Some(IN), 7);
        assert!(
            out.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{out}"
        );
        assert!(out.ends_with("-01"));
        assert_ne!(&out[36..52], "00f067aa0ba902b7");
        assert!(parse(out.as_bytes()).is_some());
        assert_ne!(make(Some(IN), 8)[36..52], out[36..52]);
        let unsampled = make(
            Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
            1,
        );
        assert!(unsampled.ends_with("-00"));
        // A later version is read as 00, extra fields and all.
        let v1 = b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds";
        assert!(make(Some(v1), 1).starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    }

    #[test]
    fn starts_a_trace_for_missing_or_invalid_ones() {
        for bad in [
            &b""[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            let out = make(Some(bad), 3);
            assert!(!out.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{out}");
            assert!(parse(out.as_bytes()).is_some(), "{out}");
            assert!(out.ends_with("-01"));
        }
        let a = make(None, 1);
        let b = make(None, 2);
        assert_ne!(a[3..35], b[3..35]);
        assert!(parse(a.as_bytes()).is_some());
    }
}
