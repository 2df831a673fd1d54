//! The chunked transfer coding (RFC 9112 section 7.1): a streaming decoder and the encoder's
//! two framing writes.
//!
//! [`ChunkedDecoder`] is a state machine fed whatever bytes have arrived; it never buffers
//! payload, only hands it on (as bare payload or re-encoded canonically, extensions dropped),
//! so a body streams through in constant memory. The invariant: [`ChunkedDecoder::decode`]
//! consumes a prefix of its input and leaves an incomplete size or trailer line unconsumed, to
//! be presented again with more bytes; such a line may be at most [`MAX_SIZE_LINE`] bytes and
//! the trailer section at most [`MAX_TRAILER_BYTES`]. Sizes, delimiters and trailers are
//! checked strictly (bare LF, bare CR, NUL, over-long sizes are errors) because a lenient
//! chunk parser is the classic request-smuggling hole.

use super::error::CodecErrorKind as K;
use super::CodecError;

/// The longest chunk-size line (size and extensions, without CRLF) accepted.
pub const MAX_SIZE_LINE: usize = 4096;

/// The largest trailer section (all trailer lines and the final CRLF) accepted; more is 431.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// In chunk data, with this many bytes of it still to come.
    Data(u64),
    /// Chunk data done; expecting its CR.
    DataCr,
    /// Expecting the LF after the data's CR.
    DataLf,
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
    Done,
}

/// A streaming decoder of one chunked body.
#[derive(Clone, Debug)]
pub struct ChunkedDecoder {
    state: State,
    payload: u64,
    trailer_bytes: usize,
    /// 0 = unlimited.
    max_payload: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: State::Size,
            payload: 0,
            trailer_bytes: 0,
            max_payload: 0,
        }
    }

    /// A decoder that fails with `BodyTooLarge` (413) as soon as a chunk size would take the
    /// payload past `max_payload` bytes (0 = unlimited).
    pub fn with_limit(max_payload: u64) -> Self {
        ChunkedDecoder {
            max_payload,
            ..Self::new()
        }
    }

    /// Decodes as much of `input` as possible and returns how many bytes of it were consumed.
    ///
    /// With `reencode == false` only payload bytes are appended to `out` (trailers dropped).
    /// With `reencode == true` the canonical chunked form is appended instead: for each piece
    /// of data "<hex size>\r\n<data>\r\n", and at the end "0\r\n", the trailer lines as
    /// received, and "\r\n"; chunk extensions are dropped. A chunk split across reads comes out
    /// as several pieces. An incomplete size or trailer line is left unconsumed: present it
    /// again with more bytes. Once [`ChunkedDecoder::is_done`], nothing more is consumed (the
    /// bytes after the body belong to the next message).
    pub fn decode(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        reencode: bool,
    ) -> Result<usize, CodecError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Size => {
                    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                        check_partial_size_line(rest)?;
                        return Ok(pos);
                    };
                    if lf > MAX_SIZE_LINE + 1 {
                        return Err(K::BadChunkExtension.into());
                    }
                    let line = rest[..lf].strip_suffix(b"\r").ok_or(K::BareLf)?;
                    let size = parse_size_line(line)?;
                    pos += lf + 1;
                    if size == 0 {
                        self.state = State::Trailers;
                        if reencode {
                            out.extend_from_slice(b"0\r\n");
                        }
                    } else {
                        let total = self.payload.checked_add(size);
                        if self.max_payload != 0 && total.is_none_or(|t| t > self.max_payload) {
                            return Err(K::BodyTooLarge.into());
                        }
                        self.state = State::Data(size);
                    }
                }
                State::Data(remaining) => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let n = remaining.min(rest.len() as u64) as usize;
                    if reencode {
                        encode_chunk(n, out);
                        out.extend_from_slice(&rest[..n]);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(&rest[..n]);
                    }
                    self.payload += n as u64;
                    pos += n;
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data(left)
                    };
                }
                State::DataCr => match rest.first() {
                    None => return Ok(pos),
                    Some(b'\r') => {
                        pos += 1;
                        self.state = State::DataLf;
                    }
                    Some(b'\n') => return Err(K::BareLf.into()),
                    Some(_) => return Err(K::MissingChunkCrlf.into()),
                },
                State::DataLf => match rest.first() {
                    None => return Ok(pos),
                    Some(b'\n') => {
                        pos += 1;
                        self.state = State::Size;
                    }
                    Some(_) => return Err(K::BareCr.into()),
                },
                State::Trailers => {
                    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                        if self.trailer_bytes + rest.len() > MAX_TRAILER_BYTES {
                            return Err(K::TrailersTooLarge.into());
                        }
                        return Ok(pos);
                    };
                    self.trailer_bytes += lf + 1;
                    if self.trailer_bytes > MAX_TRAILER_BYTES {
                        return Err(K::TrailersTooLarge.into());
                    }
                    let line = rest[..lf].strip_suffix(b"\r").ok_or(K::BareLf)?;
                    pos += lf + 1;
                    if line.is_empty() {
                        self.state = State::Done;
                        if reencode {
                            out.extend_from_slice(b"\r\n");
                        }
                        return Ok(pos);
                    }
                    check_trailer_line(line)?;
                    if reencode {
                        out.extend_from_slice(line);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                State::Done => return Ok(pos),
            }
        }
    }

    /// The last chunk and the trailer section have been consumed.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Payload bytes decoded so far.
    #[inline]
    pub fn payload_bytes(&self) -> u64 {
        self.payload
    }
}

/// Writes the start of a data chunk, "<hex data_len>\r\n" (lowercase hex, no leading zeros).
/// The caller then writes exactly `data_len` bytes of data and "\r\n". `data_len` must not be
/// 0: a zero-size chunk is the last chunk, written by [`encode_last_chunk`].
pub fn encode_chunk(data_len: usize, out: &mut Vec<u8>) {
    debug_assert!(data_len != 0, "a zero-size chunk ends the body");
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = data_len;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Writes the last chunk with no trailers: "0\r\n\r\n".
pub fn encode_last_chunk(out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n\r\n");
}

/// Fails early on an incomplete size line that can already not be valid or is too long.
fn check_partial_size_line(rest: &[u8]) -> Result<(), K> {
    let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let after = rest.get(digits).copied();
    if digits > 16 || (digits == 0 && after.is_some()) {
        return Err(forbidden_or(after, K::BadChunkSize));
    }
    if after.is_some_and(|b| !matches!(b, b' ' | b'\t' | b';' | b'\r')) {
        return Err(forbidden_or(after, K::BadChunkSize));
    }
    if rest.len() > MAX_SIZE_LINE + 1 {
        return Err(K::BadChunkExtension);
    }
    Ok(())
}

/// `chunk-size *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`, without the
/// CRLF; returns the size.
fn parse_size_line(line: &[u8]) -> Result<u64, K> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(forbidden_or(line.get(digits).copied(), K::BadChunkSize));
    }
    let size = line[..digits].iter().fold(0u64, |n, &b| {
        // At most 16 hex digits: never overflows.
        (n << 4) | u64::from((b as char).to_digit(16).unwrap_or(0))
    });
    let mut rest = &line[digits..];
    if let Some(&b) = rest.first() {
        if !matches!(b, b' ' | b'\t' | b';') {
            return Err(forbidden_or(Some(b), K::BadChunkSize));
        }
    }
    let mut first = true;
    loop {
        let trimmed = skip_bws(rest);
        let Some((&b, after)) = trimmed.split_first() else {
            // Whitespace is allowed only before ';' (BWS), not at the end of the line.
            return match (rest.is_empty(), first) {
                (true, _) => Ok(size),
                (false, true) => Err(K::BadChunkSize),
                (false, false) => Err(K::BadChunkExtension),
            };
        };
        if b != b';' {
            let kind = if first {
                K::BadChunkSize
            } else {
                K::BadChunkExtension
            };
            return Err(forbidden_or(Some(b), kind));
        }
        first = false;
        rest = skip_bws(after);
        let name = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return Err(forbidden_or(rest.first().copied(), K::BadChunkExtension));
        }
        rest = &rest[name..];
        let after_ws = skip_bws(rest);
        if let Some((b'=', value)) = after_ws.split_first() {
            let value = skip_bws(value);
            let len = match value.first() {
                Some(b'"') => quoted_string_len(value)?,
                _ => value.iter().take_while(|&&b| is_tchar(b)).count(),
            };
            if len == 0 {
                return Err(forbidden_or(value.first().copied(), K::BadChunkExtension));
            }
            rest = &value[len..];
        }
    }
}

/// The length of the quoted-string at the start of `s` (which starts with '"').
fn quoted_string_len(s: &[u8]) -> Result<usize, K> {
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return Ok(i + 1),
            b'\\' => match s.get(i + 1) {
                Some(&c) if is_field_vchar_or_ws(c) => i += 2,
                other => return Err(forbidden_or(other.copied(), K::BadChunkExtension)),
            },
            _ if is_field_vchar_or_ws(b) => i += 1,
            _ => return Err(forbidden_or(Some(b), K::BadChunkExtension)),
        }
    }
    Err(K::BadChunkExtension)
}

/// `field-name ":" OWS field-value OWS`, no folding, no control characters.
fn check_trailer_line(line: &[u8]) -> Result<(), K> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(K::ObsFold);
    }
    let name = line.iter().take_while(|&&b| is_tchar(b)).count();
    if name == 0 || line.get(name) != Some(&b':') {
        return Err(forbidden_or(line.get(name).copied(), K::BadTrailer));
    }
    match line[name + 1..].iter().find(|&&b| !is_field_vchar_or_ws(b)) {
        Some(&b) => Err(forbidden_or(Some(b), K::BadTrailer)),
        None => Ok(()),
    }
}

/// The precise kind for a CR or NUL where it does not belong, else `otherwise`.
fn forbidden_or(b: Option<u8>, otherwise: K) -> K {
    match b {
        Some(b'\r') => K::BareCr,
        Some(0) => K::Nul,
        _ => otherwise,
    }
}

fn skip_bws(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

#[inline]
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTAB, SP, VCHAR or obs-text.
#[inline]
fn is_field_vchar_or_ws(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

#[cfg(test)]
mod tests;
