//! Opening a connection: TCP (no Nagle), and for `https://` a rustls client handshake with the
//! server name from the URL (or `--sni`), verified against the system's roots unless
//! `--insecure`.
//!
//! TLS runs over our own [`TlsStream`], a `rustls::ClientConnection` over a monoio
//! `TcpStream`, so that each handshake can say whether it was full or resumed. Each worker has
//! its own client config ([`for_worker`]): with `--tls-resume on` its connections share one
//! session cache ([`SessionCache`], no lock shared with other workers), and a reconnect
//! resumes the session a previous connection was given (TLS 1.3 tickets, or TLS 1.2 session
//! ids and tickets).

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut, RawBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::BufResult;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, NamedGroup,
    ProtocolVersion, RootCertStore, SignatureScheme,
};

use crate::target::{Scheme, Target};

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// An open connection, its socket (for the timer wheel's deadlines, which shut it down) and,
/// for TLS, how its handshake went.
pub struct Opened {
    pub conn: Conn,
    pub fd: RawFd,
    pub handshake: Option<Handshake>,
}

/// What one TLS handshake negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// An abbreviated handshake that resumed an earlier session.
    pub resumed: bool,
    pub version: Option<ProtocolVersion>,
    pub suite: Option<&'static str>,
    pub group: Option<&'static str>,
}

/// The TLS version(s) offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.3 and 1.2, the server picks.
    Any,
    Tls12,
    Tls13,
}

/// The TLS options of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    pub insecure: bool,
    pub sni: Option<String>,
    pub version: TlsVersion,
    /// Offer the sessions earlier connections were given (`--tls-resume on`).
    pub resume: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            insecure: false,
            sni: None,
            version: TlsVersion::Any,
            resume: true,
        }
    }
}

/// The TLS 1.3 tickets a worker keeps per server name (the newest; each is used once).
const TICKETS_PER_SERVER: usize = 4096;

/// TLS for one URL: the client config and the name to send.
#[derive(Clone)]
pub struct TlsTarget {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
    /// Whether the config resumes sessions.
    pub resume: bool,
}

/// Connects to `target` within `timeout`.
pub async fn connect(
    target: &Target,
    tls: Option<&TlsTarget>,
    timeout: Duration,
) -> io::Result<Opened> {
    let open = async {
        let tcp = TcpStream::connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let fd = tcp.as_raw_fd();
        match tls {
            None => Ok(Opened {
                conn: Conn::Plain(tcp),
                fd,
                handshake: None,
            }),
            Some(tls) => {
                let stream =
                    TlsStream::connect(tcp, Arc::clone(&tls.config), tls.name.clone()).await?;
                let handshake = stream.handshake();
                Ok(Opened {
                    conn: Conn::Tls(Box::new(stream)),
                    fd,
                    handshake: Some(handshake),
                })
            }
        }
    };
    match monoio::time::timeout(timeout, open).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// The TLS setup of each target (`None` for `http://` ones), sharing one client config.
pub fn tls_targets(targets: &[Target], o: &TlsOptions) -> Result<Vec<Option<TlsTarget>>, String> {
    if targets.iter().all(|t| t.url.scheme == Scheme::Http) {
        return Ok(vec![None; targets.len()]);
    }
    let config = Arc::new(client_config(o)?);
    targets
        .iter()
        .map(|t| {
            if t.url.scheme == Scheme::Http {
                return Ok(None);
            }
            let name = o.sni.as_deref().unwrap_or(&t.url.host).to_string();
            let name = ServerName::try_from(name.clone())
                .map_err(|_| format!("{name:?} is not a valid TLS server name"))?;
            Ok(Some(TlsTarget {
                config: Arc::clone(&config),
                name,
                resume: o.resume,
            }))
        })
        .collect()
}

/// One worker's copy of `tls`: the same settings with a session cache of its own (when
/// resumption is on), shared by the worker's connections to every target.
pub fn for_worker(tls: &[Option<TlsTarget>]) -> Vec<Option<TlsTarget>> {
    let Some(base) = tls.iter().flatten().next() else {
        return tls.to_vec();
    };
    let mut config = (*base.config).clone();
    if base.resume {
        config.resumption = SessionCache::resumption();
    }
    let config = Arc::new(config);
    tls.iter()
        .map(|t| {
            t.as_ref().map(|t| TlsTarget {
                config: Arc::clone(&config),
                name: t.name.clone(),
                resume: t.resume,
            })
        })
        .collect()
}

fn client_config(o: &TlsOptions) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider));
    let builder = match o.version {
        TlsVersion::Any => builder.with_safe_default_protocol_versions(),
        TlsVersion::Tls12 => builder.with_protocol_versions(&[&rustls::version::TLS12]),
        TlsVersion::Tls13 => builder.with_protocol_versions(&[&rustls::version::TLS13]),
    }
    .map_err(|e| format!("TLS setup: {e}"))?;
    let mut config = if o.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(found.certs);
        if roots.is_empty() {
            return Err(
                "no trusted root certificates found on this system (install \
                        ca-certificates, or pass --insecure)"
                    .into(),
            );
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.resumption = if o.resume {
        SessionCache::resumption()
    } else {
        // No session store and no TLS 1.2 session ticket extension: nothing to resume is
        // offered, so every handshake is a full one.
        Resumption::disabled()
    };
    Ok(config)
}

/// A worker's sessions, shared by its connections. rustls's own in-memory cache keeps at most
/// 8 TLS 1.3 tickets per server name: when more connections than that reopen at once (tens of
/// connections against a server that answers them in batches), most find no ticket and make a
/// full handshake. This one keeps up to [`TICKETS_PER_SERVER`]; otherwise it behaves as
/// rustls's: one TLS 1.2 session per name, TLS 1.3 tickets used once, the newest first.
#[derive(Default)]
pub struct SessionCache {
    servers: Mutex<HashMap<ServerName<'static>, Sessions>>,
}

#[derive(Default)]
struct Sessions {
    kx_hint: Option<NamedGroup>,
    tls12: Option<Tls12ClientSessionValue>,
    tls13: VecDeque<Tls13ClientSessionValue>,
}

impl SessionCache {
    /// Resumption with TLS 1.3 tickets and TLS 1.2 session ids or tickets, from a new cache.
    pub fn resumption() -> Resumption {
        Resumption::store(Arc::new(SessionCache::default()))
    }

    fn with<R>(&self, name: &ServerName<'static>, f: impl FnOnce(&mut Sessions) -> R) -> Option<R> {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers.get_mut(name).map(f)
    }

    fn edit(&self, name: ServerName<'static>, f: impl FnOnce(&mut Sessions)) {
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        f(servers.entry(name).or_default());
    }
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache").finish_non_exhaustive()
    }
}

impl ClientSessionStore for SessionCache {
    fn set_kx_hint(&self, name: ServerName<'static>, group: NamedGroup) {
        self.edit(name, |s| s.kx_hint = Some(group));
    }

    fn kx_hint(&self, name: &ServerName<'_>) -> Option<NamedGroup> {
        self.with(&name.to_owned(), |s| s.kx_hint).flatten()
    }

    fn set_tls12_session(&self, name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.edit(name, |s| s.tls12 = Some(value));
    }

    fn tls12_session(&self, name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.with(&name.to_owned(), |s| s.tls12.clone()).flatten()
    }

    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.with(name, |s| s.tls12 = None);
    }

    fn insert_tls13_ticket(&self, name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.edit(name, |s| {
            if s.tls13.len() >= TICKETS_PER_SERVER {
                s.tls13.pop_front();
            }
            s.tls13.push_back(value);
        });
    }

    fn take_tls13_ticket(&self, name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        self.with(name, |s| s.tls13.pop_back()).flatten()
    }
}

/// TLS bytes read from the socket at a time: a whole record of 16 KiB and its overhead.
const READ_SIZE: usize = 17 * 1024 + 512;

/// A TLS client connection over TCP, done by hand on rustls's buffers: plaintext is written
/// into rustls and the TLS records it makes are written to the socket; TLS bytes read from the
/// socket are handed to rustls, and the plaintext it decrypts is read out.
pub struct TlsStream {
    tcp: TcpStream,
    tls: ClientConnection,
    /// TLS bytes read from the socket; `incoming[fed..]` are not yet handed to rustls.
    incoming: Vec<u8>,
    fed: usize,
    /// TLS bytes to write, reused.
    outgoing: Vec<u8>,
}

impl TlsStream {
    /// Runs the client handshake on `tcp`.
    pub async fn connect(
        tcp: TcpStream,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let tls = ClientConnection::new(config, name).map_err(io::Error::other)?;
        let mut stream = TlsStream {
            tcp,
            tls,
            incoming: Vec::with_capacity(READ_SIZE),
            fed: 0,
            outgoing: Vec::with_capacity(4096),
        };
        loop {
            stream.send_tls().await?;
            if !stream.tls.is_handshaking() {
                return Ok(stream);
            }
            if stream.receive_tls().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the TLS handshake",
                ));
            }
        }
    }

    /// How the handshake went.
    pub fn handshake(&self) -> Handshake {
        Handshake {
            resumed: self.tls.handshake_kind() == Some(HandshakeKind::Resumed),
            version: self.tls.protocol_version(),
            suite: self
                .tls
                .negotiated_cipher_suite()
                .and_then(|s| s.suite().as_str()),
            group: self
                .tls
                .negotiated_key_exchange_group()
                .and_then(|g| g.name().as_str()),
        }
    }

    /// Writes out every TLS byte rustls has to send.
    async fn send_tls(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            self.outgoing.clear();
            self.tls.write_tls(&mut self.outgoing)?;
            let buf = std::mem::take(&mut self.outgoing);
            let (result, buf) = self.tcp.write_all(buf).await;
            self.outgoing = buf;
            result?;
        }
        Ok(())
    }

    /// Hands rustls more TLS bytes (left from an earlier read, else read from the socket) and
    /// processes them. `Ok(0)`: the server closed the connection.
    async fn receive_tls(&mut self) -> io::Result<usize> {
        if self.fed == self.incoming.len() {
            let mut buf = std::mem::take(&mut self.incoming);
            buf.clear();
            let (result, buf) = self.tcp.read(buf).await;
            self.incoming = buf;
            self.fed = 0;
            if result? == 0 {
                return Ok(0);
            }
        }
        let mut pending = &self.incoming[self.fed..];
        let n = self.tls.read_tls(&mut pending)?;
        if n == 0 {
            return Err(io::Error::other("rustls took no TLS bytes"));
        }
        self.fed += n;
        if let Err(e) = self.tls.process_new_packets() {
            // Send the alert that says why, if the socket still takes it.
            let _ = self.send_tls().await;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        // A TLS 1.3 key update asks for an answer.
        if self.tls.wants_write() {
            self.send_tls().await?;
        }
        Ok(n)
    }

    /// Moves decrypted bytes into `out`; `WouldBlock` when there are none yet.
    fn take_plaintext(&mut self, out: *mut u8, room: usize) -> io::Result<usize> {
        let mut reader = self.tls.reader();
        let chunk = reader.fill_buf()?;
        let n = chunk.len().min(room);
        // SAFETY: `out` is valid for `room` bytes (the caller's buffer), and rustls's buffer
        // does not overlap it.
        unsafe { std::ptr::copy_nonoverlapping(chunk.as_ptr(), out, n) };
        reader.consume(n);
        Ok(n)
    }
}

impl AsyncReadRent for TlsStream {
    async fn read<T: IoBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        loop {
            match self.take_plaintext(buf.write_ptr(), buf.bytes_total()) {
                Ok(n) => {
                    // SAFETY: the first `n` bytes were just written.
                    unsafe { buf.set_init(n) };
                    return (Ok(n), buf);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // No close_notify before the TCP end: the end, as for a plain connection.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return (Ok(0), buf),
                Err(e) => return (Err(e), buf),
            }
            match self.receive_tls().await {
                Ok(0) => return (Ok(0), buf),
                Ok(_) => {}
                Err(e) => return (Err(e), buf),
            }
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer points into `buf`, which outlives the read.
        let n = match unsafe { RawBuf::new_from_iovec_mut(&mut buf) } {
            Some(raw) => self.read(raw).await.0,
            None => Ok(0),
        };
        if let Ok(n) = n {
            // SAFETY: `n` bytes were written into the first buffer of the vector.
            unsafe { buf.set_init(n) };
        }
        (n, buf)
    }
}

impl AsyncWriteRent for TlsStream {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: an IoBuf's first `bytes_init` bytes are initialised and live as long as it.
        let data = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
        let n = match self.tls.writer().write(data) {
            Ok(n) => n,
            Err(e) => return (Err(e), buf),
        };
        match self.send_tls().await {
            Ok(()) => (Ok(n), buf),
            Err(e) => (Err(e), buf),
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: the raw buffer points into `buf`, which outlives the write.
        let n = match unsafe { RawBuf::new_from_iovec(&buf) } {
            Some(raw) => self.write(raw).await.0,
            None => Ok(0),
        };
        (n, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.send_tls().await?;
        self.tcp.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.tls.send_close_notify();
        self.send_tls().await?;
        self.tcp.shutdown().await
    }
}

/// `--insecure`: any certificate is accepted, but handshake signatures are still checked (a
/// load generator must still do the server's real TLS work).
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn https_target() -> Target {
        let template = crate::target::RequestTemplate {
            method: "GET",
            headers: &[],
            body: b"",
            pipeline: 1,
            close: false,
        };
        crate::target::prepare(&["https://127.0.0.1:8443/".to_string()], &template)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn resumption_follows_the_option() {
        let targets = [https_target()];
        let on = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        let disabled = |c: &ClientConfig| format!("{:?}", c.resumption).contains("Disabled");
        let tls = tls_targets(&targets, &on).unwrap();
        let config = &tls[0].as_ref().unwrap().config;
        assert!(!disabled(config));
        assert!(format!("{:?}", config.resumption).contains("SessionCache"));
        // Each worker gets its own cache, still on.
        let mine = for_worker(&tls);
        let worker_config = &mine[0].as_ref().unwrap().config;
        assert!(!Arc::ptr_eq(config, worker_config));
        assert!(!disabled(worker_config));

        let off = TlsOptions {
            resume: false,
            version: TlsVersion::Tls13,
            ..on
        };
        let tls = tls_targets(&targets, &off).unwrap();
        let mine = for_worker(&tls);
        let config = &mine[0].as_ref().unwrap().config;
        assert!(disabled(config));
        assert!(format!("{:?}", config.resumption).contains("NoClientSessionStorage"));
        assert!(!mine[0].as_ref().unwrap().resume);
    }

    #[test]
    fn plain_targets_need_no_tls() {
        let template = crate::target::RequestTemplate {
            method: "GET",
            headers: &[],
            body: b"",
            pipeline: 1,
            close: false,
        };
        let targets =
            crate::target::prepare(&["http://127.0.0.1:8080/".to_string()], &template).unwrap();
        let tls = tls_targets(&targets, &TlsOptions::default()).unwrap();
        assert!(tls[0].is_none());
        assert!(for_worker(&tls)[0].is_none());
    }
}
