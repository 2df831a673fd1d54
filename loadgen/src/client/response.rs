//! Reading responses off a connection: the read buffer and a reader that consumes one whole
//! response at a time with the core HTTP/1.1 codec.
//!
//! Bodies are skipped, never kept: Content-Length bodies are counted off, chunked ones run
//! through [`ChunkedDecoder`] (into a scratch buffer that is cleared each time), and a body that
//! runs until close ends the response at end of stream. Interim 1xx responses are skipped; 204,
//! 304 and answers to HEAD have no body, as the codec's [`ResponseHead::framing`] says.

pub use ringway_core::buf::RecvBuf;
use ringway_core::http1::{
    parse_response, BodyFraming, ChunkedDecoder, CodecError, Limits, ResponseHead,
};

/// One complete response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The connection cannot carry another request.
    pub close: bool,
}

#[derive(Clone, Copy, Debug)]
enum State {
    Head,
    Length { done: Response, remaining: u64 },
    Chunked { done: Response },
    UntilClose { status: u16 },
}

pub struct ResponseReader {
    head: ResponseHead,
    limits: Limits,
    state: State,
    chunked: ChunkedDecoder,
    scratch: Vec<u8>,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseReader {
    pub fn new() -> Self {
        ResponseReader {
            head: ResponseHead::new(),
            limits: Limits {
                max_head_bytes: 64 * 1024,
                max_headers: 256,
                ..Limits::default()
            },
            state: State::Head,
            chunked: ChunkedDecoder::new(),
            scratch: Vec::new(),
        }
    }

    /// Forgets a response in progress (a new connection).
    pub fn reset(&mut self) {
        self.state = State::Head;
    }

    /// Consumes what it can of `buf`; `Some` once a whole response has been consumed (the
    /// bytes after it are left for the next one).
    pub fn advance(
        &mut self,
        buf: &mut RecvBuf,
        request_was_head: bool,
    ) -> Result<Option<Response>, CodecError> {
        loop {
            match self.state {
                State::Head => {
                    let Some(len) = parse_response(buf.data(), &self.limits, &mut self.head)?
                    else {
                        return Ok(None);
                    };
                    let status = self.head.status();
                    let framing = self.head.framing(request_was_head);
                    let done = Response {
                        status,
                        close: !self.head.keep_alive() || status == 101,
                    };
                    buf.consume(len);
                    if (100..200).contains(&status) && status != 101 {
                        continue; // interim; the real response follows
                    }
                    match framing {
                        BodyFraming::None => return Ok(Some(done)),
                        BodyFraming::Length(remaining) => {
                            self.state = State::Length { done, remaining }
                        }
                        BodyFraming::Chunked => {
                            self.chunked = ChunkedDecoder::new();
                            self.state = State::Chunked { done };
                        }
                        BodyFraming::Close => self.state = State::UntilClose { status },
                    }
                }
                State::Length { done, remaining } => {
                    let n = remaining.min(buf.len() as u64);
                    buf.consume(n as usize);
                    if n == remaining {
                        self.state = State::Head;
                        return Ok(Some(done));
                    }
                    self.state = State::Length {
                        done,
                        remaining: remaining - n,
                    };
                    return Ok(None);
                }
                State::Chunked { done } => {
                    self.scratch.clear();
                    let used = self.chunked.decode(buf.data(), &mut self.scratch, false)?;
                    buf.consume(used);
                    if !self.chunked.is_done() {
                        return Ok(None);
                    }
                    self.state = State::Head;
                    return Ok(Some(done));
                }
                State::UntilClose { .. } => {
                    buf.consume(buf.len());
                    return Ok(None);
                }
            }
        }
    }

    /// The peer closed: the response ends here if its body runs until close.
    pub fn at_eof(&mut self) -> Option<Response> {
        match self.state {
            State::UntilClose { status } => {
                self.state = State::Head;
                Some(Response {
                    status,
                    close: true,
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` to a reader in pieces of `step` bytes; returns the responses seen.
    fn read_all(input: &[u8], step: usize, head: bool) -> Vec<Response> {
        let mut reader = ResponseReader::new();
        let mut buf = RecvBuf::with_capacity(64);
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            buf.extend_from_slice(piece);
            while let Some(r) = reader.advance(&mut buf, head).unwrap() {
                out.push(r);
            }
        }
        out.extend(reader.at_eof());
        out
    }

    #[test]
    fn framings_in_any_split() {
        let stream: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
            HTTP/1.1 100 Continue\r\n\r\n\
            HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: y\r\n\r\n\
            HTTP/1.1 204 No Content\r\n\r\n\
            HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n\
            HTTP/1.1 503 Unavailable\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx";
        for step in [1, 2, 7, 64, stream.len()] {
            let got = read_all(stream, step, false);
            let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
            assert_eq!(statuses, vec![200, 404, 204, 304, 503], "step {step}");
            assert!(got[4].close && !got[0].close);
        }
    }

    #[test]
    fn close_delimited_and_head() {
        let got = read_all(b"HTTP/1.0 200 OK\r\n\r\nbody until close", 5, false);
        assert_eq!(
            got,
            vec![Response {
                status: 200,
                close: true
            }]
        );
        // HEAD: a Content-Length but no body follows.
        let got = read_all(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            3,
            true,
        );
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn garbage_is_an_error() {
        let mut reader = ResponseReader::new();
        let mut buf = RecvBuf::with_capacity(64);
        buf.extend_from_slice(b"SSH-2.0-OpenSSH\r\n\r\n");
        assert!(reader.advance(&mut buf, false).is_err());
    }
}
