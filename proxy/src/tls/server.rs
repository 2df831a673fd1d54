//! A TLS listener's settings compiled into one `rustls::ServerConfig` that every worker core
//! shares: the certificates (chosen by SNI), versions, cipher suites, ALPN, session tickets and
//! the session cache, and client certificate verification.
//!
//! The certificates live in a [`CertResolver`] whose store can be swapped whole while the
//! listener serves ([`ServerTls::reload`]): a handshake reads the store once, so it sees the
//! old set or the new one, never a mix. A store that fails to load is never swapped in.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ahash::AHashMap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// One certificate of a listener, as configured (paths resolved against the config's folder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSpec {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A DER OCSP response to staple.
    pub ocsp: Option<PathBuf>,
    /// Names it serves; empty: the certificate's own DNS names (SANs, else its CN).
    pub names: Vec<String>,
    pub default: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthMode {
    Required,
    Optional,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAuthSpec {
    pub mode: ClientAuthMode,
    pub ca: PathBuf,
}

/// A listener's `tls:` block, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsSpec {
    pub certificates: Vec<CertSpec>,
    /// TLS 1.3 only (else 1.2 and 1.3).
    pub tls13_only: bool,
    /// Cipher suite names as rustls spells them; None: rustls's defaults.
    pub cipher_suites: Option<Vec<String>>,
    pub alpn: Vec<String>,
    pub session_tickets: bool,
    pub ticket_rotation: Duration,
    /// Entries of the session cache shared by the listener's cores; 0: none.
    pub session_cache: usize,
    pub client_auth: Option<ClientAuthSpec>,
    /// Reload when a certificate or key file changes (SIGHUP always reloads).
    pub watch: bool,
}

/// The certificates in force, by the names they serve.
struct CertStore {
    exact: AHashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is kept under `example.com`.
    wildcard: AHashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    /// The certificate, key and OCSP files' modification times when loaded.
    stamps: Vec<Option<SystemTime>>,
}

impl CertStore {
    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = sni else {
            return Arc::clone(&self.default);
        };
        // rustls hands the name over lower-cased and without a trailing dot.
        if let Some(c) = self.exact.get(name) {
            return Arc::clone(c);
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(c) = self.wildcard.get(parent) {
                return Arc::clone(c);
            }
        }
        Arc::clone(&self.default)
    }
}

/// Chooses the certificate for each handshake from the current store.
pub struct CertResolver {
    store: RwLock<Arc<CertStore>>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CertResolver")
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let store = Arc::clone(&self.store.read().unwrap_or_else(|e| e.into_inner()));
        Some(store.pick(hello.server_name()))
    }
}

/// A compiled TLS listener.
pub struct ServerTls {
    pub spec: ServerTlsSpec,
    pub config: Arc<ServerConfig>,
    resolver: Arc<CertResolver>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths and settings only: never key material.
        f.debug_struct("ServerTls")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ServerTls {
    fn eq(&self, other: &ServerTls) -> bool {
        self.spec == other.spec
    }
}

impl Eq for ServerTls {}

/// The crypto provider: ring, with the configured cipher suites.
pub fn provider(suites: Option<&[String]>) -> Result<CryptoProvider, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = suites {
        let known: Vec<String> = provider
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        for name in names {
            if !known.iter().any(|k| k == name) {
                return Err(format!(
                    "unknown cipher suite {name:?} (known: {})",
                    known.join(", ")
                ));
            }
        }
        provider
            .cipher_suites
            .retain(|s| names.iter().any(|n| *n == format!("{:?}", s.suite())));
    }
    Ok(provider)
}

pub fn versions(tls13_only: bool) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    if tls13_only {
        &TLS13_ONLY
    } else {
        rustls::ALL_VERSIONS
    }
}

/// Reads a PEM certificate chain.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, SEC1 or PKCS#1).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

/// Reads a PEM bundle of CA certificates into a root store.
pub fn read_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

fn stamp(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The DNS names a certificate serves: its SANs, else its subject CN.
fn names_of(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, parsed)) = X509Certificate::from_der(cert.as_ref()) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = parsed.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        if let Some(cn) = parsed
            .subject()
            .iter_common_name()
            .next()
            .and_then(|c| c.as_str().ok())
        {
            names.push(cn.to_ascii_lowercase());
        }
    }
    names
}

fn load_store(spec: &ServerTlsSpec, provider: &CryptoProvider) -> Result<CertStore, String> {
    let mut exact = AHashMap::new();
    let mut wildcard = AHashMap::new();
    let mut default = None;
    let default_at = spec
        .certificates
        .iter()
        .position(|c| c.default)
        .unwrap_or(0);
    let mut stamps = Vec::new();
    for (i, c) in spec.certificates.iter().enumerate() {
        let at = |e: String| format!("certificates[{i}]: {e}");
        stamps.push(stamp(&c.cert));
        stamps.push(stamp(&c.key));
        let certs = read_certs(&c.cert).map_err(at)?;
        let key = read_key(&c.key).map_err(at)?;
        let names = if c.names.is_empty() {
            names_of(&certs[0])
        } else {
            c.names.iter().map(|n| n.to_ascii_lowercase()).collect()
        };
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| at(format!("{}: unusable private key: {e}", c.key.display())))?;
        let mut certified = CertifiedKey::new(certs, signing);
        certified.keys_match().map_err(|e| {
            at(format!(
                "the key {} does not belong to the certificate {}: {e}",
                c.key.display(),
                c.cert.display()
            ))
        })?;
        if let Some(ocsp) = &c.ocsp {
            stamps.push(stamp(ocsp));
            let response = std::fs::read(ocsp).map_err(|e| {
                at(format!(
                    "cannot read the OCSP response {}: {e}",
                    ocsp.display()
                ))
            })?;
            if response.is_empty() {
                return Err(at(format!("the OCSP response {} is empty", ocsp.display())));
            }
            certified.ocsp = Some(response);
        }
        let certified = Arc::new(certified);
        for name in names {
            match name.strip_prefix("*.") {
                Some(parent) => wildcard
                    .entry(parent.to_string())
                    .or_insert_with(|| Arc::clone(&certified)),
                None => exact.entry(name).or_insert_with(|| Arc::clone(&certified)),
            };
        }
        if i == default_at {
            default = Some(Arc::clone(&certified));
        }
    }
    let default = default.ok_or("give at least one certificate")?;
    Ok(CertStore {
        exact,
        wildcard,
        default,
        stamps,
    })
}

impl ServerTls {
    /// Loads every file and builds the rustls configuration. The error names the setting and
    /// the file, and why.
    pub fn build(spec: ServerTlsSpec) -> Result<ServerTls, String> {
        let provider =
            provider(spec.cipher_suites.as_deref()).map_err(|e| format!("cipher_suites: {e}"))?;
        if spec.tls13_only
            && !provider
                .cipher_suites
                .iter()
                .any(|s| s.version() == &rustls::version::TLS13)
        {
            return Err("cipher_suites: no TLS 1.3 suite is left, and min_version is 1.3".into());
        }
        let store = load_store(&spec, &provider)?;
        let resolver = Arc::new(CertResolver {
            store: RwLock::new(Arc::new(store)),
        });
        let provider = Arc::new(provider);
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(versions(spec.tls13_only))
            .map_err(|e| format!("cipher_suites: {e}"))?;
        let builder = match &spec.client_auth {
            None => builder.with_no_client_auth(),
            Some(auth) => {
                let roots = read_roots(&auth.ca).map_err(|e| format!("client_auth.ca: {e}"))?;
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                );
                let verifier = match auth.mode {
                    ClientAuthMode::Required => verifier,
                    ClientAuthMode::Optional => verifier.allow_unauthenticated(),
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| format!("client_auth.ca: {e}"))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = spec.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.session_storage = if spec.session_cache > 0 {
            rustls::server::ServerSessionMemoryCache::new(spec.session_cache)
        } else {
            Arc::new(rustls::server::NoServerSessionStorage {})
        };
        if spec.session_tickets {
            config.ticketer = super::ticket::rotating(spec.ticket_rotation)?;
        }
        // Early data (0-RTT) can be replayed; an API gateway does not accept it.
        config.max_early_data_size = 0;
        Ok(ServerTls {
            spec,
            config: Arc::new(config),
            resolver,
        })
    }

    /// Loads the certificates again and swaps them in for every core at once. On an error
    /// (named with its file and reason) the certificates in force keep serving.
    pub fn reload(&self) -> Result<(), String> {
        let provider = provider(self.spec.cipher_suites.as_deref())?;
        let store = load_store(&self.spec, &provider)?;
        *self
            .resolver
            .store
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(store);
        Ok(())
    }

    /// Whether a certificate, key or OCSP file changed since the store in force was loaded.
    pub fn files_changed(&self) -> bool {
        let store = Arc::clone(
            &self
                .resolver
                .store
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        );
        self.file_times() != store.stamps
    }

    /// The modification times of the certificate, key and OCSP files, in load order.
    pub fn file_times(&self) -> Vec<Option<SystemTime>> {
        let mut now = Vec::new();
        for c in &self.spec.certificates {
            now.push(stamp(&c.cert));
            now.push(stamp(&c.key));
            if let Some(o) = &c.ocsp {
                now.push(stamp(o));
            }
        }
        now
    }
}
