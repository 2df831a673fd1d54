//! HTTP/1.1 framing shared by the test client and the test origin: a buffered socket that
//! reads heads, lines, exact lengths and chunked bodies.
//!
//! It is strict only where a test needs it to be: it accepts what a correct peer sends and
//! reports anything else as an `InvalidData` error instead of guessing.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// Header fields in arrival order, names as sent.
pub type Headers = Vec<(String, String)>;

/// The first value of `name` (case-insensitive).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of `name` (case-insensitive), in order.
pub fn header_all<'a>(headers: &'a Headers, name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

/// Every value of `name` joined with ", " (how a list-valued header reads once combined).
pub fn header_joined(headers: &Headers, name: &str) -> Option<String> {
    let all = header_all(headers, name);
    (!all.is_empty()).then(|| all.join(", "))
}

/// Whether the comma-separated header `name` lists `token` (case-insensitive).
pub fn header_has_token(headers: &Headers, name: &str, token: &str) -> bool {
    header_all(headers, name)
        .iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// A socket with a read buffer, so pipelined messages are read one at a time in order.
pub struct Wire {
    pub(crate) stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
}

impl Wire {
    pub fn new(stream: TcpStream) -> Wire {
        Wire {
            stream,
            buf: Vec::new(),
            pos: 0,
        }
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Bytes received but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads more bytes into the buffer; 0 means the peer closed.
    pub fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 && (self.pos == self.buf.len() || self.pos > 1 << 20) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// A message head up to and including the blank line, or `None` if the peer closed cleanly
    /// before sending any byte of it.
    pub fn read_head(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        // Offset from `pos` where the terminator search resumes (bytes before it were searched).
        let mut from = 0;
        loop {
            if let Some(i) = find(&self.buf[self.pos + from..], b"\r\n\r\n") {
                let end = self.pos + from + i + 4;
                let head = self.buf[self.pos..end].to_vec();
                self.pos = end;
                return Ok(Some(head));
            }
            from = (self.buf.len() - self.pos).saturating_sub(3);
            if self.buf.len() - self.pos > max {
                return Err(invalid(format!("message head longer than {max} bytes")));
            }
            if self.fill()? == 0 {
                if self.pos == self.buf.len() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "peer closed in the middle of a head: {:?}",
                        String::from_utf8_lossy(&self.buf[self.pos..])
                    ),
                ));
            }
        }
    }

    /// One CRLF-terminated line, without the CRLF.
    pub fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = find(&self.buf[self.pos..], b"\r\n") {
                let line = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed in the middle of a line",
                ));
            }
        }
    }

    pub fn read_exact_vec(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if self.pos == self.buf.len() && self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("peer closed after {} of {n} body bytes", out.len()),
                ));
            }
            let take = (n - out.len()).min(self.buf.len() - self.pos);
            out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
        }
        Ok(out)
    }

    /// Everything until the peer closes (a response framed by close).
    pub fn read_to_close(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
                Err(e) => return Err(e),
            }
        }
        let out = self.buf[self.pos..].to_vec();
        self.pos = self.buf.len();
        Ok(out)
    }

    /// A chunked body and its trailer fields.
    pub fn read_chunked(&mut self, max_body: usize) -> io::Result<(Vec<u8>, Headers)> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let line = String::from_utf8(line).map_err(|_| invalid("chunk size is not ASCII"))?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                break;
            }
            if body.len() + size > max_body {
                return Err(invalid("chunked body over the limit"));
            }
            body.extend_from_slice(&self.read_exact_vec(size)?);
            if !self.read_line()?.is_empty() {
                return Err(invalid("chunk data not followed by CRLF"));
            }
        }
        let mut trailers = Headers::new();
        loop {
            let line = self.read_line()?;
            if line.is_empty() {
                return Ok((body, trailers));
            }
            trailers.push(parse_field(&line)?);
        }
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn parse_field(line: &[u8]) -> io::Result<(String, String)> {
    let line = std::str::from_utf8(line).map_err(|_| invalid("header field is not UTF-8"))?;
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| invalid(format!("header field without a colon: {line:?}")))?;
    Ok((name.to_string(), value.trim().to_string()))
}

/// Splits a head into its start line and fields.
pub fn parse_head(head: &[u8]) -> io::Result<(String, Headers)> {
    let text = head
        .strip_suffix(b"\r\n\r\n")
        .ok_or_else(|| invalid("head does not end with a blank line"))?;
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let start = lines.next().unwrap_or_default();
    let start = String::from_utf8(start.to_vec()).map_err(|_| invalid("start line not UTF-8"))?;
    let mut headers = Headers::new();
    for line in lines {
        headers.push(parse_field(line)?);
    }
    Ok((start, headers))
}

/// Encodes `body` as chunks of at most `chunk` bytes, with the given trailer fields.
pub fn encode_chunked(body: &[u8], chunk: usize, trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / chunk.max(1) * 8 + 16);
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}
