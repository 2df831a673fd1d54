//! `ChunkedDecoder` on arbitrary bytes, fed in pieces, and the encoder round trip.
//!
//! Input layout: byte 0's low 3 bits say how many split points follow (0..=7); each of those
//! bytes places one split at `byte * len / 256` of the body; the rest is the body. Checked:
//! - never panics; `decode` consumes at most what it was given, and a second call on what it
//!   left (with no new bytes) consumes and emits nothing;
//! - the outcome (payload, accepted or refused with which status, done, bytes consumed) is the
//!   same whether the body arrives in one piece, at the split points or byte by byte;
//! - with `reencode == true`, the output is valid chunked coding of the same payload, which
//!   decodes to the same payload, is done exactly when the input was, and is a fixed point of
//!   re-encoding; `payload_bytes()` counts the payload;
//! - a limit equal to the payload changes nothing, one byte less fails with 413;
//! - the body split into chunks with `encode_chunk`/`encode_last_chunk` decodes back to it,
//!   re-encodes to the same bytes, and bytes after it are left for the next message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringway_core::http1::{encode_chunk, encode_last_chunk, ChunkedDecoder, CodecErrorKind};

fuzz_target!(|data: &[u8]| {
    let Some((&ctrl, rest)) = data.split_first() else {
        return;
    };
    let splits = (ctrl & 7) as usize;
    if rest.len() < splits {
        return;
    }
    let (fractions, body) = rest.split_at(splits);
    let mut cuts: Vec<usize> = fractions
        .iter()
        .map(|&f| f as usize * body.len() / 256)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();

    check_decode(body, &cuts);
    check_encode(body, &cuts);
});

/// What feeding a body to a decoder came to.
#[derive(Debug, PartialEq)]
struct Outcome {
    out: Vec<u8>,
    /// The status of the error that stopped decoding, if one did.
    error: Option<u16>,
    done: bool,
    /// Bytes consumed in all (0 after an error: how much earlier calls took depends on the
    /// split).
    consumed: usize,
    payload_bytes: u64,
}

fn pieces<'a>(body: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut v = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for &c in cuts {
        v.push(&body[at..c]);
        at = c;
    }
    v.push(&body[at..]);
    v
}

/// Feeds `pieces` as a connection would: the unconsumed rest of the buffer plus each new read.
fn feed(pieces: &[&[u8]], reencode: bool, limit: u64) -> Outcome {
    let mut dec = ChunkedDecoder::with_limit(limit);
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    let mut error = None;
    for piece in pieces {
        if dec.is_done() {
            break;
        }
        pending.extend_from_slice(piece);
        match dec.decode(&pending, &mut out, reencode) {
            Ok(n) => {
                assert!(n <= pending.len(), "consumed {n} of {}", pending.len());
                let before = out.len();
                let m = dec.decode(&pending[n..], &mut out, reencode);
                assert_eq!(m, Ok(0), "a second call without new bytes made progress");
                assert_eq!(
                    out.len(),
                    before,
                    "a second call without new bytes wrote output"
                );
                pending.drain(..n);
                consumed += n;
            }
            Err(e) => {
                error = Some(e.status());
                break;
            }
        }
    }
    if error.is_some() {
        consumed = 0;
    }
    Outcome {
        out,
        error,
        done: dec.is_done(),
        consumed,
        payload_bytes: dec.payload_bytes(),
    }
}

/// Decodes `body` in one piece without re-encoding.
fn plain_payload(body: &[u8]) -> Outcome {
    feed(&[body], false, 0)
}

fn check_decode(body: &[u8], cuts: &[usize]) {
    let whole = feed(&[body], false, 0);
    assert_eq!(
        whole.payload_bytes,
        whole.out.len() as u64,
        "payload_bytes is not the payload"
    );
    if whole.error.is_none() && !whole.done {
        // Not refused and not finished: everything up to an incomplete line was taken.
        assert!(body.len() - whole.consumed <= ringway_core::http1::MAX_TRAILER_BYTES + 2);
    }

    let mut splits = vec![pieces(body, cuts)];
    if body.len() <= 512 {
        splits.push(body.chunks(1).collect());
    }
    for split in &splits {
        let outcome = feed(split, false, 0);
        assert_eq!(outcome, whole, "splitting at {cuts:?} changed the outcome");
    }

    // Re-encoding, one piece and split.
    splits.insert(0, vec![body]);
    for split in &splits {
        let re = feed(split, true, 0);
        assert_eq!(re.error, whole.error, "re-encoding changed the error");
        assert_eq!(re.done, whole.done, "re-encoding changed completion");
        assert_eq!(
            re.consumed, whole.consumed,
            "re-encoding changed what was consumed"
        );
        assert_eq!(re.payload_bytes, whole.payload_bytes);
        // The output is chunked coding of the same payload, complete exactly when the body was.
        let back = plain_payload(&re.out);
        assert_eq!(back.error, None, "re-encoded output refused: {:?}", re.out);
        assert_eq!(back.out, whole.out, "re-encoded output has another payload");
        assert_eq!(back.done, whole.done, "re-encoded output done-ness differs");
        assert_eq!(
            back.consumed,
            re.out.len(),
            "re-encoded output not wholly consumed"
        );
        // Canonical: re-encoding the re-encoded output in one piece changes nothing.
        let again = feed(&[&re.out], true, 0);
        assert_eq!(again.out, re.out, "re-encoding is not a fixed point");
    }

    // Limits: the payload's own size is allowed, one byte less is 413.
    if whole.done {
        let p = whole.payload_bytes;
        if p > 0 {
            let limited = feed(&[body], false, p);
            assert_eq!(
                limited, whole,
                "a limit of exactly the payload changed the outcome"
            );
        }
        if p > 1 {
            let over = feed(&[body], false, p - 1);
            assert_eq!(
                over.error,
                Some(CodecErrorKind::BodyTooLarge.status()),
                "a payload over the limit was accepted"
            );
            let mut dec = ChunkedDecoder::with_limit(p - 1);
            let e = dec.decode(body, &mut Vec::new(), false).unwrap_err();
            assert_eq!(e.kind(), CodecErrorKind::BodyTooLarge);
        }
    }
}

fn check_encode(data: &[u8], cuts: &[usize]) {
    let mut encoded = Vec::new();
    let mut boundaries = Vec::new();
    for piece in pieces(data, cuts) {
        if piece.is_empty() {
            continue;
        }
        encode_chunk(piece.len(), &mut encoded);
        encoded.extend_from_slice(piece);
        encoded.extend_from_slice(b"\r\n");
        boundaries.push(encoded.len());
    }
    encode_last_chunk(&mut encoded);
    let end = encoded.len();

    let whole = plain_payload(&encoded);
    assert_eq!(whole.error, None, "encoded body refused: {encoded:?}");
    assert_eq!(whole.out, data, "encoded body decodes to other data");
    assert!(whole.done, "encoded body not done");
    assert_eq!(whole.consumed, end);

    // Canonical already: re-encoding in one piece gives the same bytes.
    let re = feed(&[&encoded], true, 0);
    assert_eq!(
        re.out, encoded,
        "re-encoding the encoder's output changed it"
    );

    // Split at every chunk boundary and in the middle of the framing.
    let mut cuts2: Vec<usize> = boundaries.iter().flat_map(|&b| [b - 1, b]).collect();
    cuts2.push(end - 2);
    cuts2.retain(|&c| c <= end);
    cuts2.sort_unstable();
    cuts2.dedup();
    let split = feed(&pieces(&encoded, &cuts2), false, 0);
    assert_eq!(
        split, whole,
        "splitting the encoded body changed the outcome"
    );

    // The next message's bytes are left alone.
    let mut pipelined = encoded.clone();
    pipelined.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let next = plain_payload(&pipelined);
    assert_eq!(
        next.consumed, end,
        "bytes after the last chunk were consumed"
    );
    assert_eq!(next.out, data);
}
