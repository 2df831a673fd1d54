use super::*;
use crate::http1::CodecErrorKind;
use proptest::prelude::*;

/// Decodes `input` whole; returns (consumed, output, done).
fn decode(input: &[u8], reencode: bool) -> Result<(usize, Vec<u8>, bool), CodecErrorKind> {
    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    let n = dec
        .decode(input, &mut out, reencode)
        .map_err(|e| e.kind())?;
    Ok((n, out, dec.is_done()))
}

fn err(input: &[u8]) -> CodecErrorKind {
    match decode(input, false) {
        Err(k) => k,
        Ok(r) => panic!("accepted {r:?}: {:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn decodes_payload() {
    let body = b"4\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\n\r\nNEXT";
    let (n, out, done) = decode(body, false).unwrap();
    assert!(done);
    assert_eq!(n, body.len() - 4);
    assert_eq!(out, b"Wikipedia in \r\n\r\nchunks.");
}

#[test]
fn reencodes_canonically() {
    let body = b"04;a=b;c=\"q \\\" x\"\r\nWiki\r\nA ; ext\r\n0123456789\r\n0;last\r\nX-Sum: 1\r\nY: a b\r\n\r\n";
    let (n, out, done) = decode(body, true).unwrap();
    assert!(done);
    assert_eq!(n, body.len());
    assert_eq!(
        out,
        b"4\r\nWiki\r\na\r\n0123456789\r\n0\r\nX-Sum: 1\r\nY: a b\r\n\r\n"
    );
    // Trailers are dropped from the bare payload.
    assert_eq!(decode(body, false).unwrap().1, b"Wiki0123456789");
}

#[test]
fn split_chunk_comes_out_in_pieces() {
    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    assert_eq!(dec.decode(b"8\r\nabc", &mut out, true), Ok(6));
    assert_eq!(dec.decode(b"defgh\r\n0\r\n\r\n", &mut out, true), Ok(12));
    assert!(dec.is_done());
    assert_eq!(out, b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n");
    assert_eq!(dec.payload_bytes(), 8);
}

#[test]
fn incomplete_lines_are_left_unconsumed() {
    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    assert_eq!(dec.decode(b"1", &mut out, false), Ok(0));
    assert_eq!(dec.decode(b"1f;x=", &mut out, false), Ok(0));
    assert_eq!(dec.decode(b"1\r", &mut out, false), Ok(0));
    assert_eq!(dec.decode(b"1\r\nx\r", &mut out, false), Ok(5));
    assert_eq!(dec.decode(b"\n0\r\nTrai", &mut out, false), Ok(4));
    assert_eq!(dec.decode(b"Trailer: v\r\n\r", &mut out, false), Ok(12));
    assert!(!dec.is_done());
    assert_eq!(dec.decode(b"\r\n", &mut out, false), Ok(2));
    assert!(dec.is_done());
    assert_eq!(dec.decode(b"GET /", &mut out, false), Ok(0));
    assert_eq!(out, b"x");
}

#[test]
fn bad_chunk_sizes() {
    for input in [
        &b"\r\n"[..],
        b";ext\r\n",
        b"g\r\n",
        b"-1\r\n",
        b"+1\r\n",
        b"0x5\r\n",
        b"5 \r\n",
        b" 5\r\n",
        b"1 2\r\n",
        b"10000000000000000\r\n",
        b"00000000000000001\r\n",
    ] {
        assert_eq!(
            err(input),
            CodecErrorKind::BadChunkSize,
            "{:?}",
            String::from_utf8_lossy(input)
        );
        assert_eq!(CodecError::new(err(input)).status(), 400);
    }
    // 16 hex digits fit.
    let mut dec = ChunkedDecoder::new();
    assert_eq!(
        dec.decode(b"ffffffffffffffff\r\n", &mut Vec::new(), false),
        Ok(18)
    );
    // Refused before the line is complete.
    assert_eq!(err(b"00000000000000000"), CodecErrorKind::BadChunkSize);
    assert_eq!(err(b"z"), CodecErrorKind::BadChunkSize);
    assert_eq!(err(b"12x"), CodecErrorKind::BadChunkSize);
    assert_eq!(decode(b"12;", false), Ok((0, Vec::new(), false)));
    assert_eq!(decode(b"12 ", false), Ok((0, Vec::new(), false)));
}

#[test]
fn chunk_extensions() {
    for ok in [
        &b"1;a\r\nx\r\n0\r\n\r\n"[..],
        b"1 ; a = b ;c\r\nx\r\n0\r\n\r\n",
        b"1;a=\"\"\r\nx\r\n0\r\n\r\n",
        b"1;a=\"x\\\\y;z\"\r\nx\r\n0\r\n\r\n",
        b"1\t;a\r\nx\r\n0\r\n\r\n",
    ] {
        assert_eq!(
            decode(ok, false).map(|r| r.1),
            Ok(b"x".to_vec()),
            "{}",
            String::from_utf8_lossy(ok)
        );
    }
    for (bad, want) in [
        (&b"1;\r\n"[..], CodecErrorKind::BadChunkExtension),
        (b"1;=b\r\n", CodecErrorKind::BadChunkExtension),
        (b"1;a=\r\n", CodecErrorKind::BadChunkExtension),
        (b"1;a=\"open\r\n", CodecErrorKind::BadChunkExtension),
        (b"1;a b\r\n", CodecErrorKind::BadChunkExtension),
        (b"1;a=b c\r\n", CodecErrorKind::BadChunkExtension),
        (b"1;a\rb\r\n", CodecErrorKind::BareCr),
        (b"1;a=\"x\ry\"\r\n", CodecErrorKind::BareCr),
        (b"1;a\0\r\n", CodecErrorKind::Nul),
        (b"1;a=\"\0\"\r\n", CodecErrorKind::Nul),
        (b"1\r\r\n", CodecErrorKind::BareCr),
    ] {
        assert_eq!(err(bad), want, "{}", String::from_utf8_lossy(bad));
    }
    let long = format!("1;{}", "a".repeat(MAX_SIZE_LINE + 10));
    assert_eq!(err(long.as_bytes()), CodecErrorKind::BadChunkExtension);
}

#[test]
fn crlf_required() {
    assert_eq!(err(b"1\nx\r\n0\r\n\r\n"), CodecErrorKind::BareLf);
    assert_eq!(err(b"1\r\nx\n0\r\n\r\n"), CodecErrorKind::BareLf);
    assert_eq!(
        err(b"1\r\nxy\r\n0\r\n\r\n"),
        CodecErrorKind::MissingChunkCrlf
    );
    assert_eq!(err(b"1\r\nx\rz0\r\n\r\n"), CodecErrorKind::BareCr);
    assert_eq!(err(b"0\r\n\n"), CodecErrorKind::BareLf);
    assert_eq!(err(b"0\r\nX: y\n\r\n"), CodecErrorKind::BareLf);
}

#[test]
fn trailers_are_validated() {
    for (bad, want) in [
        (&b"0\r\nNo colon\r\n\r\n"[..], CodecErrorKind::BadTrailer),
        (b"0\r\n: v\r\n\r\n", CodecErrorKind::BadTrailer),
        (b"0\r\nX : v\r\n\r\n", CodecErrorKind::BadTrailer),
        (b"0\r\nX: a\r\n b\r\n\r\n", CodecErrorKind::ObsFold),
        (b"0\r\nX: a\x01\r\n\r\n", CodecErrorKind::BadTrailer),
        (b"0\r\nX: a\0\r\n\r\n", CodecErrorKind::Nul),
        (b"0\r\nX: a\rb\r\n\r\n", CodecErrorKind::BareCr),
    ] {
        assert_eq!(err(bad), want, "{}", String::from_utf8_lossy(bad));
    }
    let ok = b"0\r\nX-Empty:\r\nX-Obs: caf\xc3\xa9\r\n\r\n";
    assert_eq!(decode(ok, true).unwrap().1, ok);
}

#[test]
fn trailer_section_limit() {
    let mut body = b"0\r\n".to_vec();
    for i in 0..MAX_TRAILER_BYTES / 100 + 1 {
        body.extend_from_slice(format!("X-{i:05}: {}\r\n", "v".repeat(90)).as_bytes());
    }
    body.extend_from_slice(b"\r\n");
    let e = err(&body);
    assert_eq!(e, CodecErrorKind::TrailersTooLarge);
    assert_eq!(CodecError::new(e).status(), 431);
    // Also when the oversized line has not ended yet.
    let mut dec = ChunkedDecoder::new();
    let mut input = b"0\r\nX: ".to_vec();
    input.resize(MAX_TRAILER_BYTES + 10, b'v');
    assert_eq!(
        dec.decode(&input, &mut Vec::new(), false)
            .map_err(|e| e.kind()),
        Err(CodecErrorKind::TrailersTooLarge)
    );
}

#[test]
fn payload_limit() {
    let mut dec = ChunkedDecoder::with_limit(5);
    let mut out = Vec::new();
    assert_eq!(dec.decode(b"3\r\nabc\r\n", &mut out, false), Ok(8));
    assert_eq!(
        dec.decode(b"3\r\nabc\r\n", &mut out, false)
            .map_err(|e| e.status()),
        Err(413)
    );
}

#[test]
fn encoder() {
    let mut out = Vec::new();
    encode_chunk(1, &mut out);
    encode_chunk(10, &mut out);
    encode_chunk(0x1234abc, &mut out);
    encode_chunk(usize::MAX, &mut out);
    encode_last_chunk(&mut out);
    let mut want = b"1\r\na\r\n1234abc\r\n".to_vec();
    want.extend_from_slice(format!("{:x}\r\n0\r\n\r\n", usize::MAX).as_bytes());
    assert_eq!(out, want);
}

proptest! {
    #[test]
    fn encode_then_decode(
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..10),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut wire = Vec::new();
        for p in &pieces {
            encode_chunk(p.len(), &mut wire);
            wire.extend_from_slice(p);
            wire.extend_from_slice(b"\r\n");
        }
        encode_last_chunk(&mut wire);
        let payload = pieces.concat();

        // Whole.
        let (n, out, done) = decode(&wire, false).unwrap();
        prop_assert!(done);
        prop_assert_eq!(n, wire.len());
        prop_assert_eq!(&out, &payload);

        // Re-encoded: decodes to the same payload.
        let (_, reencoded, _) = decode(&wire, true).unwrap();
        let (n, again, done) = decode(&reencoded, false).unwrap();
        prop_assert!(done);
        prop_assert_eq!(n, reencoded.len());
        prop_assert_eq!(&again, &payload);

        // Piecewise, both ways.
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        for reencode in [false, true] {
            let mut dec = ChunkedDecoder::new();
            let mut out = Vec::new();
            let mut start = 0;
            for &end in &cuts {
                if end > start {
                    start += dec.decode(&wire[start..end], &mut out, reencode).unwrap();
                }
            }
            prop_assert!(dec.is_done());
            prop_assert_eq!(start, wire.len());
            if reencode {
                let (_, again, _) = decode(&out, false).unwrap();
                prop_assert_eq!(&again, &payload);
            } else {
                prop_assert_eq!(&out, &payload);
            }
        }
    }

    #[test]
    fn mutated_bodies_never_panic(
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..50), 0..5),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), any::<bool>()), 1..5),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wire = Vec::new();
        for p in &pieces {
            encode_chunk(p.len(), &mut wire);
            wire.extend_from_slice(p);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0\r\nT: v\r\n\r\n");
        for (at, byte, insert) in edits {
            let i = at.index(wire.len());
            if insert { wire.insert(i, byte) } else { wire[i] = byte }
        }
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        let split = cut.index(wire.len() + 1);
        if let Ok(n) = dec.decode(&wire[..split], &mut out, true) {
            prop_assert!(n <= split);
            if let Ok(m) = dec.decode(&wire[n..], &mut out, true) {
                prop_assert!(n + m <= wire.len());
            }
        }
    }
}

#[test]
fn whitespace_only_before_semicolon() {
    assert_eq!(err(b"1;a \r\n"), CodecErrorKind::BadChunkExtension);
    assert_eq!(err(b"1;a=b\t\r\n"), CodecErrorKind::BadChunkExtension);
    assert_eq!(err(b"1;a=b c\r\n"), CodecErrorKind::BadChunkExtension);
}

proptest! {
    /// Whatever the input, feeding it in pieces agrees with feeding it whole: the same
    /// payload and consumption when it is accepted, an error when it is refused.
    #[test]
    fn piecewise_agrees_with_whole(
        pieces in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..40), 0..4),
        edits in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(b"0aF;= \t\r\n\"\\:x\0".to_vec()), any::<bool>()), 0..3),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut wire = Vec::new();
        for p in &pieces {
            encode_chunk(p.len(), &mut wire);
            wire.extend_from_slice(p);
            wire.extend_from_slice(b"\r\n");
        }
        wire.extend_from_slice(b"0;e=\"v\"\r\nT: v\r\n\r\nNEXT");
        for (at, byte, insert) in edits {
            let i = at.index(wire.len());
            if insert { wire.insert(i, byte) } else { wire[i] = byte }
        }
        let whole = decode(&wire, false);

        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        cuts.push(wire.len());
        cuts.sort_unstable();
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut start = 0;
        let mut failed = false;
        for &end in &cuts {
            if end <= start {
                continue;
            }
            match dec.decode(&wire[start..end], &mut out, false) {
                Ok(n) => start += n,
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        match whole {
            Ok((n, payload, done)) => {
                prop_assert!(!failed);
                prop_assert_eq!(start, n);
                prop_assert_eq!(out, payload);
                prop_assert_eq!(dec.is_done(), done);
            }
            Err(_) => prop_assert!(failed),
        }
    }
}
