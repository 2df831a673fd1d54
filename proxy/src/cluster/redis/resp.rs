//! RESP, the Redis protocol: commands out, replies in.
//!
//! Commands go out as RESP2 arrays of bulk strings, encoded straight into a buffer the caller
//! owns and reuses ([`encode_command`], [`encode_parts`]): nothing is allocated per argument,
//! and lengths are formatted on the stack.
//!
//! Replies are parsed incrementally by [`parse`]: it looks at the bytes that have arrived and
//! returns one whole reply with the number of bytes it took, or `None` when the reply is not
//! complete yet. It never consumes part of a reply, so a reader keeps its bytes, reads more and
//! calls again ([`ReplyReader`] does that bookkeeping for both clients). RESP3's types are
//! understood too and mapped onto the RESP2 values (null, boolean, double, big number,
//! verbatim string, map, set, push, blob error; attributes are skipped), so a server that
//! answers in RESP3 is still read correctly, though the clients ask for RESP2.
//!
//! The parser is the boundary against a broken or hostile server: a bulk string over
//! [`MAX_BULK`], an array over [`MAX_ARRAY`] elements, nesting past [`MAX_DEPTH`] or a line over
//! [`MAX_LINE`] without its CRLF is a [`ProtocolError`] as soon as its header is seen, and an
//! array's storage is reserved only in proportion to the bytes that actually arrived. A
//! protocol error leaves the stream unusable: the connection must be dropped.

use std::fmt;

/// The largest bulk string accepted (Redis's own `proto-max-bulk-len` default).
pub const MAX_BULK: usize = 512 * 1024 * 1024;
/// The most elements an array (or twice a map's entries) may declare.
pub const MAX_ARRAY: usize = 1 << 24;
/// How deep arrays may nest (Redis's deepest replies nest four or five levels).
pub const MAX_DEPTH: usize = 32;
/// The longest simple string, error or number line.
pub const MAX_LINE: usize = 1024 * 1024;

/// A reply (or, for tests and fakes, a command) in the RESP2 model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `+OK`: a status line (RESP3 doubles and big numbers arrive as [`Value::Bulk`]).
    Simple(Vec<u8>),
    /// `-ERR ...`: an error reply, as text. See [`error_kind`] and [`Redirect::parse`].
    Error(String),
    /// `:42` (RESP3 booleans arrive as 1 and 0).
    Int(i64),
    /// `$3 foo`, or `$-1` (and RESP3's `_`) as `None`.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`, or `*-1` as `None`. RESP3 maps arrive flattened (key, value, key, value).
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The integer of an `Int`, or of a status or bulk string that holds one (what `INCRBY`
    /// and a Lua script returning a number look like after a proxy or RESP3 double).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::Simple(b) | Value::Bulk(Some(b)) => parse_int(b),
            _ => None,
        }
    }

    /// The bytes of a status or a (non-null) bulk string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Simple(b) | Value::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// [`Value::as_bytes`] when they are UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The bytes of a status or a (non-null) bulk string, taken.
    pub fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Value::Simple(b) | Value::Bulk(Some(b)) => Some(b),
            _ => None,
        }
    }

    /// The elements of a (non-null) array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(items)) => Some(items),
            _ => None,
        }
    }

    /// The elements of a (non-null) array, taken.
    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(Some(items)) => Some(items),
            _ => None,
        }
    }

    /// A null bulk string or a null array.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Bulk(None) | Value::Array(None))
    }

    /// `+OK`.
    pub fn is_ok(&self) -> bool {
        matches!(self, Value::Simple(b) if b == b"OK")
    }

    /// The kind of an error reply; `None` for any other value.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        match self {
            Value::Error(message) => Some(error_kind(message)),
            _ => None,
        }
    }
}

/// What the first word of an error reply says, for the replies a client acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `MOVED slot host:port`: the slot lives elsewhere now; refresh the slot map.
    Moved,
    /// `ASK slot host:port`: this one command goes to that node, after `ASKING`.
    Ask,
    /// `TRYAGAIN`: a multi-key command during resharding; retry shortly.
    TryAgain,
    /// `CLUSTERDOWN`: the cluster cannot serve now; retry shortly.
    ClusterDown,
    /// `NOSCRIPT`: the script is not in the server's cache; send `EVAL` instead.
    NoScript,
    /// `LOADING`: the server is loading its dataset.
    Loading,
    /// `READONLY`: a write reached a replica (a fail-over happened).
    ReadOnly,
    /// `MASTERDOWN`: a replica that lost its master.
    MasterDown,
    /// `NOAUTH` or `WRONGPASS`: the credentials are missing or wrong.
    Auth,
    /// `CROSSSLOT`: the keys of one command are in different slots.
    CrossSlot,
    /// Anything else (`ERR`, `WRONGTYPE`, script errors, ...).
    Other,
}

/// The kind of the error reply `message`.
pub fn error_kind(message: &str) -> ErrorKind {
    let word = message.split(' ').next().unwrap_or("");
    match word {
        "MOVED" => ErrorKind::Moved,
        "ASK" => ErrorKind::Ask,
        "TRYAGAIN" => ErrorKind::TryAgain,
        "CLUSTERDOWN" => ErrorKind::ClusterDown,
        "NOSCRIPT" => ErrorKind::NoScript,
        "LOADING" => ErrorKind::Loading,
        "READONLY" => ErrorKind::ReadOnly,
        "MASTERDOWN" => ErrorKind::MasterDown,
        "NOAUTH" | "WRONGPASS" => ErrorKind::Auth,
        "CROSSSLOT" => ErrorKind::CrossSlot,
        _ => ErrorKind::Other,
    }
}

/// A cluster redirection: `MOVED 3999 127.0.0.1:6381` or `ASK 3999 127.0.0.1:6381`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    /// `ASK` (this command only) rather than `MOVED` (from now on).
    pub ask: bool,
    pub slot: u16,
    /// Empty when the server does not know its address (`MOVED 3999 :6381`): the caller uses
    /// the host of the node that answered.
    pub host: String,
    pub port: u16,
}

impl Redirect {
    /// The redirection in an error reply, if it is one.
    pub fn parse(message: &str) -> Option<Redirect> {
        let mut words = message.split(' ');
        let ask = match words.next()? {
            "MOVED" => false,
            "ASK" => true,
            _ => return None,
        };
        let slot: u16 = words.next()?.parse().ok()?;
        if slot >= super::slots::SLOTS {
            return None;
        }
        let addr = words.next()?;
        let (host, port) = addr.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Some(Redirect {
            ask,
            slot,
            host: host.to_string(),
            port: port.parse().ok()?,
        })
    }
}

/// Why bytes from a server are not RESP (or not RESP this client will accept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A reply started with a byte that is no RESP type.
    UnknownType(u8),
    /// A length or integer that is not a decimal number (or overflows).
    BadNumber,
    /// A negative length other than -1.
    BadLength(i64),
    /// A bulk string or array larger than this client accepts.
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    /// Arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// A bulk string not followed by CRLF.
    MissingCrlf,
    /// No CRLF within [`MAX_LINE`] bytes.
    LineTooLong,
    /// A reply the client did not expect (one with no request waiting for it, or of a shape
    /// that the command cannot return).
    Unexpected(String),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::UnknownType(b) => {
                write!(
                    f,
                    "a reply starts with {:?}, which is no RESP type",
                    *b as char
                )
            }
            ProtocolError::BadNumber => write!(f, "a length or integer is not a decimal number"),
            ProtocolError::BadLength(n) => write!(f, "a negative length {n}"),
            ProtocolError::TooLarge { what, len, max } => {
                write!(f, "a {what} of {len} exceeds the limit of {max}")
            }
            ProtocolError::TooDeep => write!(f, "arrays nest deeper than {MAX_DEPTH} levels"),
            ProtocolError::MissingCrlf => write!(f, "a bulk string is not followed by CRLF"),
            ProtocolError::LineTooLong => write!(f, "a line is longer than {MAX_LINE} bytes"),
            ProtocolError::Unexpected(what) => write!(f, "unexpected reply: {what}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Appends `*n\r\n`.
pub fn write_array_len(out: &mut Vec<u8>, n: usize) {
    out.push(b'*');
    out.extend_from_slice(fmt_u64(&mut [0; 20], n as u64));
    out.extend_from_slice(b"\r\n");
}

/// Appends `$len\r\narg\r\n`.
pub fn write_bulk(out: &mut Vec<u8>, arg: &[u8]) {
    out.push(b'$');
    out.extend_from_slice(fmt_u64(&mut [0; 20], arg.len() as u64));
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(arg);
    out.extend_from_slice(b"\r\n");
}

/// Appends the command `args` (name first) as a RESP array of bulk strings.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    write_array_len(out, args.len());
    for arg in args {
        write_bulk(out, arg);
    }
}

/// Appends one command whose arguments are the concatenation of `parts` (for commands built
/// from a fixed head and the caller's keys and arguments, without collecting them first).
pub fn encode_parts(out: &mut Vec<u8>, parts: &[&[&[u8]]]) {
    write_array_len(out, parts.iter().map(|p| p.len()).sum());
    for part in parts {
        for arg in *part {
            write_bulk(out, arg);
        }
    }
}

/// Appends `value` in RESP2 (what a server would send). For tests and fake servers.
pub fn encode_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Simple(s) => {
            out.push(b'+');
            out.extend_from_slice(s);
            out.extend_from_slice(b"\r\n");
        }
        Value::Error(e) => {
            out.push(b'-');
            out.extend_from_slice(e.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Value::Int(n) => {
            out.push(b':');
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Value::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
        Value::Bulk(Some(b)) => write_bulk(out, b),
        Value::Array(None) => out.extend_from_slice(b"*-1\r\n"),
        Value::Array(Some(items)) => {
            write_array_len(out, items.len());
            for item in items {
                encode_value(out, item);
            }
        }
    }
}

/// Formats `n` in decimal into the end of `buf`; returns the digits.
pub(crate) fn fmt_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Parses one reply from the start of `buf`: the reply and the bytes it took, `None` when it
/// is not complete yet, or why the bytes are not a reply.
pub fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    let mut pos = 0;
    Ok(parse_at(buf, &mut pos, 0)?.map(|v| (v, pos)))
}

/// Returns `Ok(None)` from the enclosing parser when `$e` is incomplete.
macro_rules! need {
    ($e:expr) => {
        match $e? {
            Some(v) => v,
            None => return Ok(None),
        }
    };
}

fn parse_at(buf: &[u8], pos: &mut usize, depth: usize) -> Result<Option<Value>, ProtocolError> {
    if depth > MAX_DEPTH {
        return Err(ProtocolError::TooDeep);
    }
    let Some(&tag) = buf.get(*pos) else {
        return Ok(None);
    };
    let line = need!(line(buf, *pos + 1));
    let text = &buf[*pos + 1..line];
    *pos = line + 2;
    Ok(Some(match tag {
        b'+' => Value::Simple(text.to_vec()),
        b'-' => Value::Error(String::from_utf8_lossy(text).into_owned()),
        b':' => Value::Int(parse_int(text).ok_or(ProtocolError::BadNumber)?),
        b'#' => match text {
            b"t" => Value::Int(1),
            b"f" => Value::Int(0),
            _ => return Err(ProtocolError::BadNumber),
        },
        b',' | b'(' => Value::Bulk(Some(text.to_vec())),
        b'_' => Value::Bulk(None),
        b'$' | b'=' | b'!' => {
            let Some(len) = length(text, "bulk string", MAX_BULK)? else {
                return Ok(Some(Value::Bulk(None)));
            };
            if buf.len() < *pos + len + 2 {
                return Ok(None);
            }
            let body = &buf[*pos..*pos + len];
            if &buf[*pos + len..*pos + len + 2] != b"\r\n" {
                return Err(ProtocolError::MissingCrlf);
            }
            *pos += len + 2;
            match tag {
                b'!' => Value::Error(String::from_utf8_lossy(body).into_owned()),
                // A verbatim string is `fmt:text`; RESP2 sends the text alone.
                b'=' if body.len() >= 4 && body[3] == b':' => Value::Bulk(Some(body[4..].to_vec())),
                _ => Value::Bulk(Some(body.to_vec())),
            }
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let per_entry = if matches!(tag, b'%' | b'|') { 2 } else { 1 };
            let Some(n) = length(text, "array", MAX_ARRAY / per_entry)? else {
                return Ok(Some(Value::Array(None)));
            };
            let n = n * per_entry;
            // Reserve only what the bytes present could hold (an element takes at least 3),
            // so a header claiming millions of elements costs nothing until they arrive.
            let mut items = Vec::with_capacity(n.min((buf.len() - *pos) / 3 + 1));
            for _ in 0..n {
                items.push(need!(parse_at(buf, pos, depth + 1)));
            }
            if tag == b'|' {
                // Attributes describe the reply that follows; the reply is what counts.
                return parse_at(buf, pos, depth);
            }
            Value::Array(Some(items))
        }
        other => return Err(ProtocolError::UnknownType(other)),
    }))
}

/// The index of the CR that ends the line starting at `from`, once the CRLF has arrived.
fn line(buf: &[u8], from: usize) -> Result<Option<usize>, ProtocolError> {
    let rest = buf.get(from..).unwrap_or(&[]);
    let scan = &rest[..rest.len().min(MAX_LINE + 1)];
    match scan.iter().position(|&b| b == b'\r') {
        Some(i) if i > MAX_LINE => Err(ProtocolError::LineTooLong),
        Some(i) => match rest.get(i + 1) {
            None => Ok(None),
            Some(b'\n') => Ok(Some(from + i)),
            Some(_) => Err(ProtocolError::MissingCrlf),
        },
        None if scan.len() > MAX_LINE => Err(ProtocolError::LineTooLong),
        None => Ok(None),
    }
}

/// A length header: `None` for -1 (null), an error past `max`.
fn length(text: &[u8], what: &'static str, max: usize) -> Result<Option<usize>, ProtocolError> {
    let n = parse_int(text).ok_or(ProtocolError::BadNumber)?;
    match n {
        -1 => Ok(None),
        n if n < 0 => Err(ProtocolError::BadLength(n)),
        n if n as u64 > max as u64 => Err(ProtocolError::TooLarge {
            what,
            len: n as u64,
            max: max as u64,
        }),
        n => Ok(Some(n as usize)),
    }
}

/// A strict decimal i64: an optional `-`, then 1 to 19 digits, no overflow.
fn parse_int(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        n = if negative {
            n.checked_mul(10)?.checked_sub(d)?
        } else {
            n.checked_mul(10)?.checked_add(d)?
        };
    }
    Some(n)
}

/// Bytes read from a connection that have not been parsed yet, and the replies in them.
/// Both clients read through one: read into [`ReplyReader::spare`], then take replies with
/// [`ReplyReader::next_reply`] until it says `None`.
#[derive(Debug, Default)]
pub struct ReplyReader {
    buf: Vec<u8>,
    pos: usize,
}

/// The least room a read is offered.
const MIN_READ: usize = 4096;

impl ReplyReader {
    pub fn new() -> ReplyReader {
        ReplyReader {
            buf: Vec::with_capacity(16 * 1024),
            pos: 0,
        }
    }

    /// The next whole reply, if one has arrived.
    pub fn next_reply(&mut self) -> Result<Option<Value>, ProtocolError> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        match parse(&self.buf[self.pos..])? {
            Some((value, used)) => {
                self.pos += used;
                if self.pos == self.buf.len() {
                    self.buf.clear();
                    self.pos = 0;
                }
                Ok(Some(value))
            }
            None => Ok(None),
        }
    }

    /// Bytes received and not yet taken as replies.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Makes room for a read and returns the buffer: bytes are to be appended after its
    /// length. Parsed bytes are dropped first; the buffer grows (doubling) only while one
    /// reply is larger than it, which the parser's limits bound.
    pub fn spare(&mut self) -> &mut Vec<u8> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos.., 0);
            self.buf.truncate(self.buf.len() - self.pos);
            self.pos = 0;
        }
        if self.buf.capacity() - self.buf.len() < MIN_READ {
            self.buf.reserve(self.buf.capacity().max(MIN_READ));
        }
        &mut self.buf
    }

    /// Takes the buffer out, with room made, for a read that needs to own it (monoio's);
    /// the bytes read are to be appended after its length. Give it back with
    /// [`ReplyReader::restore`].
    pub fn take_buffer(&mut self) -> Vec<u8> {
        self.spare();
        std::mem::take(&mut self.buf)
    }

    pub fn restore(&mut self, buf: Vec<u8>) {
        self.buf = buf;
    }

    /// Reads once from `src` (blocking I/O). Returns the bytes read, 0 at end of stream.
    pub fn read_from<R: std::io::Read>(&mut self, src: &mut R) -> std::io::Result<usize> {
        let buf = self.spare();
        let len = buf.len();
        buf.resize(buf.capacity(), 0);
        let res = src.read(&mut buf[len..]);
        let n = *res.as_ref().unwrap_or(&0);
        buf.truncate(len + n);
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            any::<u8>().prop_filter("no CR or LF", |b| *b != b'\r' && *b != b'\n'),
            0..24,
        )
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            line_bytes().prop_map(Value::Simple),
            "[a-zA-Z0-9 :.-]{0,30}".prop_map(Value::Error),
            any::<i64>().prop_map(Value::Int),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64))
                .prop_map(Value::Bulk),
            Just(Value::Array(None)),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            proptest::option::of(proptest::collection::vec(inner, 0..8)).prop_map(Value::Array)
        })
    }

    fn encoded(values: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for v in values {
            encode_value(&mut out, v);
        }
        out
    }

    /// Every reply in `buf`, as a reader fed in the given pieces sees them.
    fn read_in_pieces(pieces: &[&[u8]]) -> Vec<Value> {
        let mut reader = ReplyReader::new();
        let mut got = Vec::new();
        for piece in pieces {
            reader.spare().extend_from_slice(piece);
            while let Some(v) = reader.next_reply().unwrap() {
                got.push(v);
            }
        }
        assert_eq!(reader.pending(), 0);
        got
    }

    proptest! {
        #[test]
        fn a_value_round_trips(v in value()) {
            let bytes = encoded(std::slice::from_ref(&v));
            prop_assert_eq!(parse(&bytes).unwrap(), Some((v, bytes.len())));
        }

        #[test]
        fn every_strict_prefix_needs_more(v in value()) {
            let bytes = encoded(std::slice::from_ref(&v));
            for cut in 0..bytes.len() {
                prop_assert_eq!(parse(&bytes[..cut]).unwrap(), None, "cut at {}", cut);
            }
        }

        #[test]
        fn a_stream_split_at_any_byte_reads_the_same(values in proptest::collection::vec(value(), 1..6)) {
            let bytes = encoded(&values);
            for cut in 0..=bytes.len() {
                let got = read_in_pieces(&[&bytes[..cut], &bytes[cut..]]);
                prop_assert_eq!(&got, &values, "cut at {}", cut);
            }
        }

        #[test]
        fn a_stream_read_byte_by_byte_reads_the_same(values in proptest::collection::vec(value(), 1..4)) {
            let bytes = encoded(&values);
            let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
            prop_assert_eq!(read_in_pieces(&pieces), values);
        }

        #[test]
        fn commands_parse_as_arrays_of_their_arguments(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..10)) {
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            let mut out = Vec::new();
            encode_command(&mut out, &refs);
            let expected = Value::Array(Some(args.iter().map(|a| Value::Bulk(Some(a.clone()))).collect()));
            prop_assert_eq!(parse(&out).unwrap(), Some((expected, out.len())));
            // The same command from parts.
            let mut parts_out = Vec::new();
            let (a, b) = refs.split_at(refs.len() / 2);
            encode_parts(&mut parts_out, &[a, &[], b]);
            prop_assert_eq!(parts_out, out);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn integers_round_trip(n in any::<i64>()) {
            prop_assert_eq!(parse_int(n.to_string().as_bytes()), Some(n));
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET", b"k", b""]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
        let mut big = Vec::new();
        encode_command(&mut big, &[&[b'x'; 1234][..]]);
        assert!(big.starts_with(b"*1\r\n$1234\r\nxxx"));
    }

    #[test]
    fn resp2_replies() {
        let cases: &[(&[u8], Value)] = &[
            (b"+OK\r\n", Value::Simple(b"OK".to_vec())),
            (b"-ERR no\r\n", Value::Error("ERR no".into())),
            (b":-12\r\n", Value::Int(-12)),
            (b"$-1\r\n", Value::Bulk(None)),
            (b"$0\r\n\r\n", Value::Bulk(Some(vec![]))),
            (b"$4\r\na\r\nb\r\n", Value::Bulk(Some(b"a\r\nb".to_vec()))),
            (b"*-1\r\n", Value::Array(None)),
            (b"*0\r\n", Value::Array(Some(vec![]))),
            (
                b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n",
                Value::Array(Some(vec![
                    Value::Int(1),
                    Value::Array(Some(vec![Value::Bulk(Some(b"x".to_vec()))])),
                ])),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes).unwrap(),
                Some((want.clone(), bytes.len())),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn resp3_replies_map_onto_resp2_values() {
        let cases: &[(&[u8], Value)] = &[
            (b"_\r\n", Value::Bulk(None)),
            (b"#t\r\n", Value::Int(1)),
            (b"#f\r\n", Value::Int(0)),
            (b",3.25\r\n", Value::Bulk(Some(b"3.25".to_vec()))),
            (
                b"(3492890328409238509324850943850943825024385\r\n",
                Value::Bulk(Some(
                    b"3492890328409238509324850943850943825024385".to_vec(),
                )),
            ),
            (
                b"=15\r\ntxt:Some string\r\n",
                Value::Bulk(Some(b"Some string".to_vec())),
            ),
            (
                b"!21\r\nSYNTAX invalid syntax\r\n",
                Value::Error("SYNTAX invalid syntax".into()),
            ),
            (
                b"%1\r\n+a\r\n:1\r\n",
                Value::Array(Some(vec![Value::Simple(b"a".to_vec()), Value::Int(1)])),
            ),
            (b"~1\r\n:7\r\n", Value::Array(Some(vec![Value::Int(7)]))),
            (
                b">2\r\n+message\r\n+x\r\n",
                Value::Array(Some(vec![
                    Value::Simple(b"message".to_vec()),
                    Value::Simple(b"x".to_vec()),
                ])),
            ),
            (b"|1\r\n+ttl\r\n:3\r\n:42\r\n", Value::Int(42)),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                parse(bytes).unwrap(),
                Some((want.clone(), bytes.len())),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn hostile_headers_fail_before_their_bodies_arrive() {
        assert_eq!(
            parse(b"$536870913\r\n"),
            Err(ProtocolError::TooLarge {
                what: "bulk string",
                len: 536_870_913,
                max: MAX_BULK as u64
            })
        );
        assert!(matches!(
            parse(b"*99999999999\r\n"),
            Err(ProtocolError::TooLarge { .. })
        ));
        assert!(matches!(
            parse(b"%9999999\r\n"),
            Err(ProtocolError::TooLarge { .. })
        ));
        assert_eq!(parse(b"$-2\r\n"), Err(ProtocolError::BadLength(-2)));
        assert_eq!(parse(b"$1x\r\n"), Err(ProtocolError::BadNumber));
        assert_eq!(
            parse(b":99999999999999999999\r\n"),
            Err(ProtocolError::BadNumber)
        );
        assert_eq!(parse(b"$1\r\nab\r\n"), Err(ProtocolError::MissingCrlf));
        assert_eq!(parse(b"+a\rb\r\n"), Err(ProtocolError::MissingCrlf));
        assert_eq!(parse(b"?\r\n"), Err(ProtocolError::UnknownType(b'?')));
        // A huge declared array reserves nothing it has not received.
        assert_eq!(parse(b"*16000000\r\n:1\r\n").unwrap(), None);
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2);
        assert_eq!(parse(deep.as_bytes()), Err(ProtocolError::TooDeep));
        let ok_deep = format!("{}:1\r\n", "*1\r\n".repeat(MAX_DEPTH));
        assert!(parse(ok_deep.as_bytes()).unwrap().is_some());
        let mut long = vec![b'+'];
        long.resize(MAX_LINE + 2, b'a');
        assert_eq!(parse(&long), Err(ProtocolError::LineTooLong));
        assert_eq!(parse(&long[..MAX_LINE]).unwrap(), None);
    }

    #[test]
    fn helpers() {
        assert_eq!(Value::Int(5).as_int(), Some(5));
        assert_eq!(Value::Bulk(Some(b"-7".to_vec())).as_int(), Some(-7));
        assert_eq!(Value::Bulk(Some(b"7a".to_vec())).as_int(), None);
        assert_eq!(Value::Simple(b"OK".to_vec()).as_bytes(), Some(&b"OK"[..]));
        assert!(Value::Simple(b"OK".to_vec()).is_ok());
        assert!(Value::Bulk(None).is_nil());
        assert_eq!(Value::Bulk(Some(b"x".to_vec())).as_str(), Some("x"));
        assert_eq!(
            Value::Array(Some(vec![Value::Int(1)]))
                .as_array()
                .map(<[_]>::len),
            Some(1)
        );
        assert_eq!(Value::Int(1).as_bytes(), None);
    }

    #[test]
    fn error_kinds_and_redirects() {
        let kinds = [
            ("MOVED 3999 127.0.0.1:6381", ErrorKind::Moved),
            ("ASK 3999 127.0.0.1:6381", ErrorKind::Ask),
            (
                "TRYAGAIN Multiple keys request during rehashing of slot",
                ErrorKind::TryAgain,
            ),
            ("CLUSTERDOWN The cluster is down", ErrorKind::ClusterDown),
            (
                "NOSCRIPT No matching script. Please use EVAL.",
                ErrorKind::NoScript,
            ),
            (
                "LOADING Redis is loading the dataset in memory",
                ErrorKind::Loading,
            ),
            (
                "READONLY You can't write against a read only replica.",
                ErrorKind::ReadOnly,
            ),
            ("MASTERDOWN Link with MASTER is down", ErrorKind::MasterDown),
            ("NOAUTH Authentication required.", ErrorKind::Auth),
            ("WRONGPASS invalid username-password pair", ErrorKind::Auth),
            (
                "CROSSSLOT Keys in request don't hash to the same slot",
                ErrorKind::CrossSlot,
            ),
            ("ERR unknown command", ErrorKind::Other),
            ("", ErrorKind::Other),
        ];
        for (message, kind) in kinds {
            assert_eq!(error_kind(message), kind, "{message}");
        }
        assert_eq!(
            Value::Error("READONLY x".into()).error_kind(),
            Some(ErrorKind::ReadOnly)
        );
        assert_eq!(
            Redirect::parse("MOVED 3999 127.0.0.1:6381"),
            Some(Redirect {
                ask: false,
                slot: 3999,
                host: "127.0.0.1".into(),
                port: 6381
            })
        );
        assert_eq!(
            Redirect::parse("ASK 1 [::1]:7000"),
            Some(Redirect {
                ask: true,
                slot: 1,
                host: "::1".into(),
                port: 7000
            })
        );
        assert_eq!(
            Redirect::parse("MOVED 5 :7001"),
            Some(Redirect {
                ask: false,
                slot: 5,
                host: String::new(),
                port: 7001
            })
        );
        assert_eq!(Redirect::parse("MOVED 16384 a:1"), None);
        assert_eq!(Redirect::parse("MOVED x a:1"), None);
        assert_eq!(Redirect::parse("ERR x"), None);
    }

    #[test]
    fn a_reader_grows_for_a_large_reply_and_compacts_after() {
        let mut reader = ReplyReader::new();
        let big = vec![b'z'; 100_000];
        let mut bytes = Vec::new();
        write_bulk(&mut bytes, &big);
        encode_value(&mut bytes, &Value::Int(1));
        let mut src = std::io::Cursor::new(bytes);
        let mut got = Vec::new();
        loop {
            let n = reader.read_from(&mut src).unwrap();
            while let Some(v) = reader.next_reply().unwrap() {
                got.push(v);
            }
            if n == 0 {
                break;
            }
        }
        assert_eq!(got, vec![Value::Bulk(Some(big)), Value::Int(1)]);
        assert_eq!(reader.pending(), 0);
    }
}
