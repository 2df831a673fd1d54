//! Opening a connection: TCP (no Nagle), and for `https://` a rustls client handshake with the
//! server name from the URL (or `--sni`), verified against the system's roots unless
//! `--insecure`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use monoio_rustls::{ClientTlsStream, TlsConnector};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::target::{Scheme, Target};

pub enum Conn {
    Plain(TcpStream),
    Tls(Box<ClientTlsStream<TcpStream>>),
}

/// TLS for one URL: the shared client config and the name to send.
#[derive(Clone)]
pub struct TlsTarget {
    pub connector: TlsConnector,
    pub name: ServerName<'static>,
}

/// Connects to `target` within `timeout`. Returns the connection and its socket (for the
/// timer wheel's deadlines, which shut it down).
pub async fn connect(
    target: &Target,
    tls: Option<&TlsTarget>,
    timeout: Duration,
) -> io::Result<(Conn, RawFd)> {
    let open = async {
        let tcp = TcpStream::connect(target.addr).await?;
        tcp.set_nodelay(true)?;
        let fd = tcp.as_raw_fd();
        match tls {
            None => Ok((Conn::Plain(tcp), fd)),
            Some(tls) => {
                let stream = tls.connector.connect(tls.name.clone(), tcp).await?;
                Ok((Conn::Tls(Box::new(stream)), fd))
            }
        }
    };
    match monoio::time::timeout(timeout, open).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// The TLS setup of each target (`None` for `http://` ones).
pub fn tls_targets(
    targets: &[Target],
    insecure: bool,
    sni: Option<&str>,
) -> Result<Vec<Option<TlsTarget>>, String> {
    if targets.iter().all(|t| t.url.scheme == Scheme::Http) {
        return Ok(vec![None; targets.len()]);
    }
    let connector = TlsConnector::from(Arc::new(client_config(insecure)?));
    targets
        .iter()
        .map(|t| {
            if t.url.scheme == Scheme::Http {
                return Ok(None);
            }
            let name = sni.unwrap_or(&t.url.host).to_string();
            let name = ServerName::try_from(name.clone())
                .map_err(|_| format!("{name:?} is not a valid TLS server name"))?;
            Ok(Some(TlsTarget {
                connector: connector.clone(),
                name,
            }))
        })
        .collect()
}

fn client_config(insecure: bool) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if insecure {
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
    Ok(config)
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
