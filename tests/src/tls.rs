//! TLS for the black-box tests: certificates made on the spot (`rcgen`), a blocking rustls
//! client that reports what the handshake did, and a TLS origin that counts its handshakes.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore, ServerConfig};

use crate::IO_TIMEOUT;

/// A certificate authority that signs leaf certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A leaf certificate and its key, as PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Leaf {
    /// Writes `NAME.crt` and `NAME.key` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert_pem).unwrap();
        std::fs::write(&key, &self.key_pem).unwrap();
        (cert, key)
    }

    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![CertificateDer::from(self.der.clone())]
    }

    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        use rustls::pki_types::pem::PemObject;
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.crt"));
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.leaf(names, "server", false)
    }

    /// A client certificate with common name `cn`.
    pub fn client(&self, cn: &str) -> Leaf {
        self.leaf(&[], cn, false)
    }

    /// A client certificate that expired in 2021.
    pub fn expired_client(&self, cn: &str) -> Leaf {
        self.leaf(&[], cn, true)
    }

    fn leaf(&self, names: &[&str], cn: &str, expired: bool) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Ringway Tests");
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.der().clone()).unwrap();
        roots
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a client asks for in a handshake.
#[derive(Clone)]
pub struct ClientSetup {
    pub roots: RootCertStore,
    pub alpn: Vec<Vec<u8>>,
    pub identity: Option<Leaf>,
    pub tls12_only: bool,
    pub tls13_only: bool,
    /// Resumption through tickets (TLS 1.3 and 1.2); off: session ids only (TLS 1.2).
    pub tickets: bool,
    /// Where to keep the OCSP response the server staples (verification is unchanged).
    pub ocsp_seen: Option<Arc<Mutex<Vec<u8>>>>,
}

/// The web PKI verifier, noting the stapled OCSP response it is shown.
#[derive(Debug)]
struct OcspCapture {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl rustls::client::danger::ServerCertVerifier for OcspCapture {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap() = ocsp.to_vec();
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

impl ClientSetup {
    pub fn new(ca: &Ca) -> ClientSetup {
        ClientSetup {
            roots: ca.roots(),
            alpn: vec![b"http/1.1".to_vec()],
            identity: None,
            tls12_only: false,
            tls13_only: false,
            tickets: true,
            ocsp_seen: None,
        }
    }

    pub fn config(&self) -> Arc<ClientConfig> {
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else if self.tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::ALL_VERSIONS
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap();
        let builder = match &self.ocsp_seen {
            None => builder.with_root_certificates(self.roots.clone()),
            Some(seen) => {
                let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(self.roots.clone()),
                    provider(),
                )
                .build()
                .unwrap();
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(OcspCapture {
                        inner,
                        seen: Arc::clone(seen),
                    }))
            }
        };
        let mut config = match &self.identity {
            Some(leaf) => builder
                .with_client_auth_cert(leaf.chain(), leaf.private_key())
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        if !self.tickets {
            config.resumption = rustls::client::Resumption::in_memory_sessions(64)
                .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
            config.enable_sni = true;
        }
        Arc::new(config)
    }
}

/// One TLS connection's facts and the response to one request on it.
#[derive(Debug)]
pub struct TlsExchange {
    pub kind: Option<HandshakeKind>,
    pub alpn: Option<Vec<u8>>,
    pub version: Option<rustls::ProtocolVersion>,
    /// The server's leaf certificate (DER).
    pub server_cert: Vec<u8>,
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl TlsExchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A blocking TLS client connection (rustls over std), for requests one after another.
pub struct TlsClient {
    pub stream: rustls::StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

impl TlsClient {
    /// Connects and completes the handshake, sending `sni` (a DNS name or an IP address).
    pub fn connect(
        addr: SocketAddr,
        sni: &str,
        config: Arc<ClientConfig>,
    ) -> io::Result<TlsClient> {
        let tcp = TcpStream::connect(addr)?;
        tcp.set_read_timeout(Some(IO_TIMEOUT))?;
        tcp.set_write_timeout(Some(IO_TIMEOUT))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(sni.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config, name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsClient {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends a GET and reads one response (with a Content-Length or chunked body).
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> io::Result<TlsExchange> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.stream.write_all(req.as_bytes())?;
        self.stream.flush()?;
        let (status, head, body) = self.read_response()?;
        let conn = &self.stream.conn;
        Ok(TlsExchange {
            kind: conn.handshake_kind(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            version: conn.protocol_version(),
            server_cert: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec())
                .unwrap_or_default(),
            status,
            head,
            body,
        })
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    fn read_response(&mut self) -> io::Result<(u16, String, Vec<u8>)> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).to_string();
        self.buf.drain(..end);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status"))?;
        let header = |name: &str| {
            head.lines().skip(1).find_map(|line| {
                let (n, v) = line.split_once(':')?;
                n.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        let body = if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok())
        {
            while self.buf.len() < len {
                self.fill()?;
            }
            self.buf.drain(..len).collect()
        } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            let mut body = Vec::new();
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    self.fill()?;
                };
                let size_text = String::from_utf8_lossy(&self.buf[..line_end]).to_string();
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    self.fill()?;
                }
                body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
            body
        } else {
            Vec::new()
        };
        Ok((status, head, body))
    }
}

/// Connects, sends one GET, and reads the answer.
pub fn tls_get(
    addr: SocketAddr,
    sni: &str,
    config: Arc<ClientConfig>,
    path: &str,
) -> io::Result<TlsExchange> {
    TlsClient::connect(addr, sni, config)?.get(path, &[])
}

/// An HTTPS origin on 127.0.0.1 (a thread per connection): answers every request with 200 and
/// a body naming itself and the request path; counts TLS handshakes and requests.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    pub handshakes: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    /// The SNI of the last handshake.
    pub last_sni: Arc<Mutex<Option<String>>>,
    /// The client certificate's leaf of the last handshake, if any.
    pub last_client_cert: Arc<Mutex<Option<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsOrigin {
    /// Serves `leaf`; with `client_ca`, requires client certificates signed by it.
    pub fn start(name: &str, leaf: &Leaf, client_ca: Option<&Ca>) -> TlsOrigin {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = match client_ca {
            Some(ca) => builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(ca.roots()),
                    provider(),
                )
                .build()
                .unwrap(),
            ),
            None => builder.with_no_client_auth(),
        };
        let config = Arc::new(
            builder
                .with_single_cert(leaf.chain(), leaf.private_key())
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let last_sni = Arc::new(Mutex::new(None));
        let last_client_cert = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let name = name.to_string();
        let thread = {
            let (handshakes, requests, stop) = (handshakes.clone(), requests.clone(), stop.clone());
            let (last_sni, last_client_cert) = (last_sni.clone(), last_client_cert.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((tcp, _)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    };
                    let _ = tcp.set_nonblocking(false);
                    let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
                    let config = config.clone();
                    let (handshakes, requests, name) =
                        (handshakes.clone(), requests.clone(), name.clone());
                    let (last_sni, last_client_cert) = (last_sni.clone(), last_client_cert.clone());
                    std::thread::spawn(move || {
                        let Ok(conn) = rustls::ServerConnection::new(config) else {
                            return;
                        };
                        let mut s = rustls::StreamOwned::new(conn, tcp);
                        while s.conn.is_handshaking() {
                            if s.conn.complete_io(&mut s.sock).is_err() {
                                return;
                            }
                        }
                        handshakes.fetch_add(1, Ordering::SeqCst);
                        *last_sni.lock().unwrap() = s.conn.server_name().map(str::to_string);
                        *last_client_cert.lock().unwrap() = s
                            .conn
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| c.as_ref().to_vec());
                        let mut buf = Vec::new();
                        let mut chunk = [0u8; 8192];
                        loop {
                            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                                buf.drain(..end + 4);
                                requests.fetch_add(1, Ordering::SeqCst);
                                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                                let body = format!("{name} {path}");
                                let reply = format!(
                                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-origin: {name}\r\n\r\n{body}",
                                    body.len()
                                );
                                if s.write_all(reply.as_bytes()).is_err() || s.flush().is_err() {
                                    return;
                                }
                            }
                            match s.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                    });
                }
            })
        };
        TlsOrigin {
            addr,
            handshakes,
            requests,
            last_sni,
            last_client_cert,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for TlsOrigin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
