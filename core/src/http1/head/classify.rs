//! Naming the rule a refused head broke.
//!
//! httparse reports only which part of the grammar failed; the proxy owes the client a precise
//! status and reason (NUL, bare CR, obs-fold, 505 for a well-formed but unsupported version).
//! This runs only on the error path, so it may scan the head again.

use crate::http1::CodecErrorKind as K;

/// Names the broken rule after httparse refused the head. Called only on the error path, so
/// it can afford to scan the head again for the precise cause.
pub(super) fn classify(window: &[u8], err: httparse::Error, request: bool) -> K {
    if let Some(kind) = scan_for_forbidden(window) {
        return kind;
    }
    match err {
        httparse::Error::HeaderName => K::InvalidHeaderName,
        httparse::Error::HeaderValue => K::InvalidHeaderValue,
        httparse::Error::NewLine | httparse::Error::Token => K::Malformed,
        httparse::Error::Status => K::InvalidStatus,
        httparse::Error::TooManyHeaders => K::TooManyHeaders,
        httparse::Error::Version => version_kind(window, request),
    }
}

/// The first NUL, bare CR or folded line in the head, if any.
fn scan_for_forbidden(window: &[u8]) -> Option<K> {
    let mut line_start = true;
    let mut start_line_seen = false;
    for (i, &b) in window.iter().enumerate() {
        if line_start {
            line_start = false;
            match b {
                b' ' | b'\t' if start_line_seen => return Some(K::ObsFold),
                b'\r' | b'\n' if start_line_seen => {
                    // The empty line ending the head.
                    return (b == b'\r' && window.get(i + 1).is_some_and(|&c| c != b'\n'))
                        .then_some(K::BareCr);
                }
                b'\r' | b'\n' => {}
                _ => start_line_seen = true,
            }
        }
        match b {
            0 => return Some(K::Nul),
            b'\r' if window.get(i + 1).is_some_and(|&c| c != b'\n') => return Some(K::BareCr),
            b'\n' => line_start = true,
            _ => {}
        }
    }
    None
}

/// A version that is well-formed but not 1.0/1.1 is 505; anything else 400.
fn version_kind(window: &[u8], request: bool) -> K {
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let rest = &window[start..];
    let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
        Some(lf) => (rest[..lf].strip_suffix(b"\r").unwrap_or(&rest[..lf]), true),
        None => (rest, false),
    };
    let version = if request {
        // "method SP target SP version": anything else is not a version problem.
        if line.iter().filter(|&&b| b == b' ').count() != 2 {
            return K::Malformed;
        }
        line.rsplit(|&b| b == b' ').next().unwrap_or_default()
    } else {
        line.split(|&b| b == b' ').next().unwrap_or_default()
    };
    let shape: &[fn(u8) -> bool] = &[
        |b| b == b'H',
        |b| b == b'T',
        |b| b == b'T',
        |b| b == b'P',
        |b| b == b'/',
        |b| b.is_ascii_digit(),
        |b| b == b'.',
        |b| b.is_ascii_digit(),
    ];
    let fits = version.len() <= shape.len() && version.iter().zip(shape).all(|(&b, f)| f(b));
    let whole = version.len() == shape.len() || (!complete && version.len() > 5);
    if fits && whole {
        K::UnsupportedVersion
    } else {
        K::InvalidVersion
    }
}
