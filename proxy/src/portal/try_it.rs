//! The try-it console's request: sent through the gateway, from the portal's side, with the
//! developer's key, so that the page needs no cross-origin access to the gateway.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The most of a response body shown.
const MAX_SHOWN: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(15);

type Refusal = (&'static str, String);

/// Sends the request `body` describes (`method`, `path`, `headers`, `body`) to the gateway at
/// `url` with `key` in its header, and answers `{status, headers, body, truncated,
/// duration_ms}`.
pub fn send(url: &str, body: &Value, key: Option<(&str, &str)>) -> Result<Value, Refusal> {
    let method = body.get("method").and_then(Value::as_str).unwrap_or("GET");
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(("method", format!("{method:?} is not an HTTP method")));
    }
    let path = body.get("path").and_then(Value::as_str).unwrap_or("/");
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err((
            "path",
            "the path starts with / and has no spaces or control characters".into(),
        ));
    }
    let (tls, authority) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        _ => {
            return Err((
                "gateway_url",
                format!("{url:?} is not an http or https URL"),
            ))
        }
    };
    let authority = authority.split('/').next().unwrap_or_default();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if let Some(Value::Array(headers)) = body.get("headers") {
        for h in headers {
            let (Some(n), Some(v)) = (
                h.get(0).and_then(Value::as_str),
                h.get(1).and_then(Value::as_str),
            ) else {
                return Err(("headers", "each header is [name, value]".into()));
            };
            let name_ok = !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !name_ok || v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err((
                    "headers",
                    format!("{n:?} is not a header this console can send"),
                ));
            }
            let lower = n.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "host"
                    | "connection"
                    | "content-length"
                    | "transfer-encoding"
                    | "te"
                    | "upgrade"
                    | "keep-alive"
            ) || key.is_some_and(|(k, _)| k.eq_ignore_ascii_case(n))
            {
                continue;
            }
            head.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    if let Some((name, value)) = key {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let payload = body.get("body").and_then(Value::as_str).unwrap_or("");
    if !payload.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
        head.push_str(&format!("Content-Length: {}\r\n", payload.len()));
    }
    head.push_str("\r\n");
    let addr = authority
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .or_else(|| {
            format!("{authority}:{}", if tls { 443 } else { 80 })
                .to_socket_addrs()
                .ok()?
                .next()
        })
        .ok_or_else(|| ("gateway_url", format!("cannot resolve {authority:?}")))?;
    let started = Instant::now();
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| {
        (
            "gateway_url",
            format!("cannot connect to the gateway at {addr}: {e}"),
        )
    })?;
    stream.set_read_timeout(Some(TIMEOUT)).ok();
    stream.set_write_timeout(Some(TIMEOUT)).ok();
    let raw = if tls {
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let name =
            rustls::pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_string())
                .map_err(|e| ("gateway_url", format!("{host:?}: {e}")))?;
        let conn = rustls::ClientConnection::new(client_config(), name)
            .map_err(|e| ("gateway_url", e.to_string()))?;
        exchange(rustls::StreamOwned::new(conn, stream), &head, payload)
    } else {
        exchange(stream, &head, payload)
    }
    .map_err(|e| ("gateway_url", format!("the gateway did not answer: {e}")))?;
    let elapsed = started.elapsed();
    parse(&raw, elapsed)
}

fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("the ring provider's versions")
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }))
}

fn exchange<S: Read + Write>(mut s: S, head: &str, payload: &str) -> std::io::Result<Vec<u8>> {
    s.write_all(head.as_bytes())?;
    s.write_all(payload.as_bytes())?;
    s.flush()?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                out.extend_from_slice(&chunk[..n]);
                if out.len() > MAX_SHOWN + 64 * 1024 {
                    break;
                }
            }
            // A TLS peer that closes without close_notify: what came is the answer.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn parse(raw: &[u8], elapsed: Duration) -> Result<Value, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut headers);
    let end = match response.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => {
            return Err((
                "response",
                "the gateway's answer is not an HTTP response".into(),
            ))
        }
    };
    let status = response.code.unwrap_or(0);
    let mut chunked = false;
    let list: Vec<Value> = response
        .headers
        .iter()
        .map(|h| {
            if h.name.eq_ignore_ascii_case("transfer-encoding")
                && String::from_utf8_lossy(h.value)
                    .to_ascii_lowercase()
                    .contains("chunked")
            {
                chunked = true;
            }
            json!([
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value)
            ])
        })
        .collect();
    let mut body = raw[end..].to_vec();
    if chunked {
        body = dechunk(&body);
    }
    let truncated = body.len() > MAX_SHOWN;
    body.truncate(MAX_SHOWN);
    Ok(json!({
        "status": status,
        "headers": list,
        "body": String::from_utf8_lossy(&body),
        "truncated": truncated,
        "duration_ms": (elapsed.as_secs_f64() * 1e4).round() / 10.0,
    }))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        data = &data[line_end + 2..];
        if size == 0 || data.len() < size {
            out.extend_from_slice(&data[..size.min(data.len())]);
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk(b"3\r\nabc\r\n2;x=1\r\nde\r\n0\r\n\r\n"), b"abcde");
    }

    #[test]
    fn bad_requests_are_refused_before_sending() {
        let e = send(
            "http://127.0.0.1:1",
            &json!({"method": "get", "path": "/"}),
            None,
        )
        .unwrap_err();
        assert_eq!(e.0, "method");
        let e = send(
            "http://127.0.0.1:1",
            &json!({"method": "GET", "path": "x y"}),
            None,
        )
        .unwrap_err();
        assert_eq!(e.0, "path");
        let e = send(
            "http://127.0.0.1:1",
            &json!({"method": "GET", "path": "/", "headers": [["a\r\nb", "v"]]}),
            None,
        )
        .unwrap_err();
        assert_eq!(e.0, "headers");
    }
}
