//! What can be wrong with an HTTP/1.1 message, and the status to answer it with.
//!
//! A [`CodecError`] is one [`CodecErrorKind`]: a rule the peer broke. The kind fixes the status
//! (400, 413, 414, 431, 501, 505) and a short reason, so an error is `Copy`, allocates nothing
//! and can be logged or turned into a response without further context. After any codec error
//! the connection's framing can no longer be trusted: the caller answers (or, for an upstream
//! response, reports 502) and closes the connection.

use std::fmt;

/// The rule a message broke. Each kind maps to one status, see [`CodecErrorKind::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodecErrorKind {
    /// A syntax error in the request line, status line or head not covered by a finer kind.
    Malformed,
    /// A header name with a character outside `token`, or a space before the colon.
    InvalidHeaderName,
    /// A header value with a control character.
    InvalidHeaderValue,
    /// A response status code that is not three digits.
    InvalidStatus,
    /// The version field is not `HTTP/<digit>.<digit>`.
    InvalidVersion,
    /// A well-formed version other than HTTP/1.0 or HTTP/1.1 (505).
    UnsupportedVersion,
    /// A header line starting with a space or tab (obsolete line folding).
    ObsFold,
    /// A CR not followed by LF.
    BareCr,
    /// A line ended by LF without a CR before it.
    BareLf,
    /// A NUL byte in the head.
    Nul,
    /// An HTTP/1.1 request without a Host header.
    MissingHost,
    /// More than one Host header.
    RepeatedHost,
    /// A Host value with characters no `uri-host [":" port]` has (RFC 9112 3.2: 400).
    InvalidHost,
    /// Both Content-Length and Transfer-Encoding present.
    ContentLengthWithTransferEncoding,
    /// Content-Length values that differ (across headers or within a comma list).
    ConflictingContentLength,
    /// A Content-Length that is not plain decimal digits fitting in 64 bits.
    InvalidContentLength,
    /// Transfer-Encoding in an HTTP/1.0 request.
    TransferEncodingInHttp10,
    /// Transfer-Encoding whose codings do not end in exactly one `chunked`.
    TransferEncodingNotChunked,
    /// A transfer coding other than `chunked` (501).
    UnknownTransferCoding,
    /// The request-target is longer than the limit (414).
    UriTooLong,
    /// The head is larger than the limit (431).
    HeadersTooLarge,
    /// More headers than the limit (431).
    TooManyHeaders,
    /// The declared or decoded body is larger than the limit (413).
    BodyTooLarge,
    /// A chunk size that is empty, not hexadecimal or longer than 16 digits.
    BadChunkSize,
    /// A chunk extension that is not `;name[=value]` with a token or quoted-string value.
    BadChunkExtension,
    /// Chunk data not followed by CRLF.
    MissingChunkCrlf,
    /// A trailer line that is not a valid header line.
    BadTrailer,
    /// The trailer section is larger than the limit (431).
    TrailersTooLarge,
}

impl CodecErrorKind {
    /// The HTTP status a server answers with.
    pub fn status(self) -> u16 {
        use CodecErrorKind::*;
        match self {
            UriTooLong => 414,
            HeadersTooLarge | TooManyHeaders | TrailersTooLarge => 431,
            BodyTooLarge => 413,
            UnknownTransferCoding => 501,
            UnsupportedVersion => 505,
            _ => 400,
        }
    }

    /// The machine-readable code of a JSON error answer, one per status, so that a client
    /// sees the same code for a limit however the message was framed.
    pub fn code(self) -> &'static str {
        match self.status() {
            413 => "body_too_large",
            414 => "uri_too_long",
            431 => "headers_too_large",
            501 => "not_implemented",
            505 => "version_not_supported",
            _ => "bad_request",
        }
    }

    /// A short human description of what was wrong.
    pub fn reason(self) -> &'static str {
        use CodecErrorKind::*;
        match self {
            Malformed => "malformed request line, status line or header",
            InvalidHeaderName => "invalid header name",
            InvalidHeaderValue => "invalid header value",
            InvalidStatus => "invalid status code",
            InvalidVersion => "invalid HTTP version",
            UnsupportedVersion => "HTTP version not supported (only 1.0 and 1.1)",
            ObsFold => "obsolete line folding (header line starts with whitespace)",
            BareCr => "CR not followed by LF",
            BareLf => "line ended by LF without CR",
            Nul => "NUL byte in message head",
            MissingHost => "HTTP/1.1 request without Host header",
            RepeatedHost => "more than one Host header",
            InvalidHost => "invalid Host header value",
            ContentLengthWithTransferEncoding => {
                "Content-Length and Transfer-Encoding both present"
            }
            ConflictingContentLength => "conflicting Content-Length values",
            InvalidContentLength => "Content-Length is not a plain decimal number",
            TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 request",
            TransferEncodingNotChunked => "Transfer-Encoding does not end in a single chunked",
            UnknownTransferCoding => "transfer coding other than chunked",
            UriTooLong => "request-target too long",
            HeadersTooLarge => "message head too large",
            TooManyHeaders => "too many headers",
            BodyTooLarge => "body too large",
            BadChunkSize => "invalid chunk size",
            BadChunkExtension => "invalid chunk extension",
            MissingChunkCrlf => "chunk data not followed by CRLF",
            BadTrailer => "invalid trailer field",
            TrailersTooLarge => "trailer section too large",
        }
    }
}

/// A message the codec refused; see [`CodecErrorKind`] for the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CodecError {
    kind: CodecErrorKind,
}

impl CodecError {
    #[inline]
    pub fn new(kind: CodecErrorKind) -> Self {
        CodecError { kind }
    }

    /// The HTTP status to answer with: 400, 413, 414, 431, 501 or 505.
    #[inline]
    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The code of the JSON error answer (`bad_request`, `body_too_large`, ...).
    #[inline]
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    #[inline]
    pub fn kind(&self) -> CodecErrorKind {
        self.kind
    }

    /// A short human description of what was wrong.
    #[inline]
    pub fn reason(&self) -> &'static str {
        self.kind.reason()
    }
}

impl From<CodecErrorKind> for CodecError {
    fn from(kind: CodecErrorKind) -> Self {
        CodecError::new(kind)
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.status())
    }
}

impl std::error::Error for CodecError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        use CodecErrorKind::*;
        assert_eq!(CodecError::new(ConflictingContentLength).status(), 400);
        assert_eq!(CodecError::new(UriTooLong).status(), 414);
        assert_eq!(CodecError::new(HeadersTooLarge).status(), 431);
        assert_eq!(CodecError::new(TooManyHeaders).status(), 431);
        assert_eq!(CodecError::new(TrailersTooLarge).status(), 431);
        assert_eq!(CodecError::new(BodyTooLarge).status(), 413);
        assert_eq!(CodecError::new(UnknownTransferCoding).status(), 501);
        assert_eq!(CodecError::new(UnsupportedVersion).status(), 505);
    }

    #[test]
    fn codes_follow_the_status() {
        use CodecErrorKind::*;
        assert_eq!(CodecError::new(BodyTooLarge).code(), "body_too_large");
        assert_eq!(
            CodecError::new(TrailersTooLarge).code(),
            "headers_too_large"
        );
        assert_eq!(CodecError::new(BadChunkSize).code(), "bad_request");
        assert_eq!(CodecError::new(UriTooLong).code(), "uri_too_long");
    }

    #[test]
    fn display_names_the_rule() {
        let e = CodecError::new(CodecErrorKind::ContentLengthWithTransferEncoding);
        assert_eq!(
            e.to_string(),
            "Content-Length and Transfer-Encoding both present (400)"
        );
        assert_eq!(e.kind(), CodecErrorKind::ContentLengthWithTransferEncoding);
    }
}
