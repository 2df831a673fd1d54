//! TLS for the `-tls` contenders: one ECDSA P-256 certificate per run, made here and shared by
//! every TLS contender, and the client config the readiness probe verifies it with.
//!
//! A throwaway CA (P-256) signs the server's certificate (P-256, for `localhost` and
//! `127.0.0.1`); the servers send the leaf alone, the probe trusts the CA. Load runs with
//! `ringload -k`, which skips the chain check but still verifies every handshake signature.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::process::WorkDir;
use super::Error;

/// Where the files of a run's certificate are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// The server's certificate, PEM (the chain: the leaf alone).
    pub cert: PathBuf,
    /// Its private key, PEM PKCS#8.
    pub key: PathBuf,
    /// The CA that signed it, PEM.
    pub ca: PathBuf,
}

/// The run's certificate in `dir` (`tls/`), made on first use.
pub fn certificate(dir: &WorkDir) -> Result<Certificate, Error> {
    let c = Certificate {
        cert: dir.file("tls/cert.pem"),
        key: dir.file("tls/key.pem"),
        ca: dir.file("tls/ca.pem"),
    };
    if c.cert.is_file() && c.key.is_file() && c.ca.is_file() {
        return Ok(c);
    }
    let made = generate().map_err(|e| Error::Failed(format!("cannot make a certificate: {e}")))?;
    dir.write("tls/cert.pem", made.cert)?;
    dir.write("tls/key.pem", made.key)?;
    dir.write("tls/ca.pem", made.ca)?;
    Ok(c)
}

/// A certificate's PEM texts.
pub struct Pem {
    pub cert: String,
    pub key: String,
    pub ca: String,
}

/// A CA and a server certificate it signed, both ECDSA P-256 with SHA-256.
pub fn generate() -> Result<Pem, rcgen::Error> {
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ringway-bench CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key)?;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
        ca: ca.pem(),
    })
}

/// A client that trusts only the CA in `ca` (a PEM file).
pub fn client_config(ca: &Path) -> Result<Arc<ClientConfig>, Error> {
    let bad = |e: String| Error::Failed(format!("{}: {e}", ca.display()));
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_is_p256_and_made_once_per_run() {
        let dir = WorkDir::new("ringway-bench-tls-test").unwrap();
        let c = certificate(&dir).unwrap();
        let cert = std::fs::read_to_string(&c.cert).unwrap();
        let key = std::fs::read_to_string(&c.key).unwrap();
        assert_eq!(cert.matches("BEGIN CERTIFICATE").count(), 1);
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
        let parsed = KeyPair::from_pem(&key).unwrap();
        assert!(parsed.is_compatible(&PKCS_ECDSA_P256_SHA256));
        // A second call keeps the same files.
        assert_eq!(certificate(&dir).unwrap(), c);
        assert_eq!(std::fs::read_to_string(&c.cert).unwrap(), cert);
        assert!(client_config(&c.ca).is_ok());
    }
}
