//! TLS to upstream targets: one `rustls::ClientConfig` per backend (roots, optional client
//! certificate, versions), shared by every core. Connections are pooled like plain ones, so a
//! reused connection costs no handshake; a new one may still resume a session from the
//! config's cache.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

use super::stream::TlsStream;

/// A backend's `tls:` block, validated (paths resolved against the config's folder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamTlsSpec {
    /// A PEM CA bundle; None: the system's roots.
    pub ca: Option<PathBuf>,
    /// The name sent and verified; None: each target's host.
    pub sni: Option<String>,
    pub verify: bool,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub tls13_only: bool,
}

pub struct UpstreamTls {
    pub spec: UpstreamTlsSpec,
    pub config: Arc<ClientConfig>,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl PartialEq for UpstreamTls {
    fn eq(&self, other: &UpstreamTls) -> bool {
        self.spec == other.spec
    }
}

impl Eq for UpstreamTls {}

/// The system's trusted roots (the platform's bundle, as `rustls-native-certs` finds it).
fn system_roots() -> Result<rustls::RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), |e| e.to_string());
        return Err(format!(
            "no system CA certificates could be loaded ({why}); give ca: FILE"
        ));
    }
    Ok(roots)
}

impl UpstreamTls {
    pub fn build(spec: UpstreamTlsSpec) -> Result<UpstreamTls, String> {
        let provider = Arc::new(super::server::provider(None)?);
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(super::server::versions(spec.tls13_only))
            .map_err(|e| e.to_string())?;
        let builder = if spec.verify {
            let roots = match &spec.ca {
                Some(ca) => super::server::read_roots(ca).map_err(|e| format!("ca: {e}"))?,
                None => system_roots().map_err(|e| format!("ca: {e}"))?,
            };
            builder.with_root_certificates(roots)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        };
        let mut config = match (&spec.client_cert, &spec.client_key) {
            (Some(cert), Some(key)) => {
                let certs =
                    super::server::read_certs(cert).map_err(|e| format!("client_cert: {e}"))?;
                let key = super::server::read_key(key).map_err(|e| format!("client_key: {e}"))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| format!("client_key: {e}"))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("give both client_cert and client_key, or neither".into()),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            spec,
            config: Arc::new(config),
        })
    }

    /// The name to send to a target whose URL host is `host`.
    pub fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = self.spec.sni.as_deref().unwrap_or(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(name.to_string())
            .map_err(|e| format!("{name:?}: not a server name: {e}"))
    }

    /// Runs the client handshake on a connected socket.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        name: ServerName<'static>,
    ) -> io::Result<TlsStream<ClientConnection>> {
        let session = ClientConnection::new(Arc::clone(&self.config), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut stream = TlsStream::new(tcp, session);
        stream.handshake().await?;
        Ok(stream)
    }
}

/// `verify: false`: any certificate is accepted (signatures are still checked, so the
/// handshake is sound; who holds the key is not).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
