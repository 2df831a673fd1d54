//! Just enough RFC 6455 for an echo test: the handshake key (SHA-1 and base64, written out
//! here to keep the harness free of dependencies) and frame encoding and decoding.

use std::io;
use std::net::SocketAddr;

use crate::client::{build_request, Client, Response};
use crate::wire::{self, Wire};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    base64(&sha1(format!("{key}{GUID}").as_bytes()))
}

/// SHA-1 (FIPS 180-4). Used for the handshake and to compare large bodies by digest.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut message = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());
    for block in message.chunks(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let temp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
        }
        for (state, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *state = state.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for group in data.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One frame (fragmentation is not used by these tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// Encodes a final frame; clients pass a mask, servers do not.
pub fn encode_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// Reads one frame, unmasking it if masked.
pub fn read_frame(wire: &mut Wire) -> io::Result<Frame> {
    let first = wire.read_exact_vec(2)?;
    let fin = first[0] & 0x80 != 0;
    let opcode = first[0] & 0x0F;
    let masked = first[1] & 0x80 != 0;
    let len = match first[1] & 0x7F {
        126 => u16::from_be_bytes(wire.read_exact_vec(2)?.try_into().unwrap()) as usize,
        127 => u64::from_be_bytes(wire.read_exact_vec(8)?.try_into().unwrap()) as usize,
        n => n as usize,
    };
    if len > 64 << 20 {
        return Err(wire::invalid("websocket frame over 64 MiB"));
    }
    let key = if masked {
        Some(wire.read_exact_vec(4)?)
    } else {
        None
    };
    let mut payload = wire.read_exact_vec(len)?;
    if let Some(key) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok(Frame {
        fin,
        opcode,
        payload,
    })
}

/// A client connection after a successful (101) upgrade.
pub struct WsClient {
    pub client: Client,
    pub handshake: Response,
    next_mask: u32,
}

impl WsClient {
    /// Performs the opening handshake on `path`. Panics unless the answer is a 101 with the
    /// right `Sec-WebSocket-Accept`.
    pub fn connect(addr: SocketAddr, path: &str) -> WsClient {
        let mut client = Client::connect(addr);
        let key = base64(b"ringway-test-key");
        let request = build_request(
            "GET",
            path,
            &[
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", &key),
                ("Sec-WebSocket-Version", "13"),
            ],
            b"",
        );
        client.send_raw(&request);
        let handshake = client
            .read_response_to("GET")
            .unwrap_or_else(|e| panic!("websocket handshake: {e}"));
        assert_eq!(
            handshake.status,
            101,
            "websocket handshake answered {} {:?}: {}",
            handshake.status,
            handshake.headers,
            handshake.text()
        );
        assert_eq!(
            handshake.header("sec-websocket-accept"),
            Some(accept_key(&key).as_str()),
            "Sec-WebSocket-Accept"
        );
        WsClient {
            client,
            handshake,
            next_mask: 0x1234_5678,
        }
    }

    pub fn send(&mut self, opcode: u8, payload: &[u8]) {
        self.next_mask = self
            .next_mask
            .wrapping_mul(1_103_515_245)
            .wrapping_add(12_345);
        let frame = encode_frame(opcode, payload, Some(self.next_mask.to_be_bytes()));
        self.client.send_raw(&frame);
    }

    pub fn recv(&mut self) -> Frame {
        read_frame(self.client.wire()).unwrap_or_else(|e| panic!("read websocket frame: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_and_base64_match_known_values() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        // The example from RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_round_trip() {
        for len in [0usize, 5, 125, 126, 70_000] {
            let payload = crate::pattern_bytes(len);
            let bytes = encode_frame(OP_BINARY, &payload, Some([1, 2, 3, 4]));
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let writer = std::thread::spawn(move || {
                use std::io::Write;
                let (mut s, _) = listener.accept().unwrap();
                s.write_all(&bytes).unwrap();
            });
            let mut wire = Wire::new(std::net::TcpStream::connect(addr).unwrap());
            let frame = read_frame(&mut wire).unwrap();
            writer.join().unwrap();
            assert_eq!(frame.opcode, OP_BINARY);
            assert!(frame.fin);
            assert_eq!(frame.payload, payload);
        }
    }
}
