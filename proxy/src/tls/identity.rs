//! What a verified client certificate says about its holder, read once per connection (at the
//! end of the handshake) for policies: `validate-client-certificate` and the
//! `{client_cert:FIELD}` key template.

use std::fmt::Write as _;

use ring::digest;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The leaf certificate of a client that presented one (rustls has verified it by then).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// RFC 4514-style distinguished name, as the certificate orders it: `CN=alice, O=Acme`.
    pub subject: String,
    pub issuer: String,
    /// The subject's common name, if it has one.
    pub common_name: String,
    /// DNS names, e-mail addresses, URIs and IP addresses of the subject alternative names.
    pub sans: Vec<String>,
    /// SHA-256 of the DER, lower-case hex.
    pub fingerprint: String,
    /// SHA-1 of the DER, upper-case hex (API Management's "thumbprint").
    pub thumbprint: String,
    /// Upper-case hex.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl ClientCert {
    /// Reads `der`; None when it does not parse (rustls would not have accepted it).
    pub fn from_der(der: &[u8]) -> Option<ClientCert> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .unwrap_or_default()
            .to_string();
        let mut sans = Vec::new();
        if let Ok(Some(ext)) = cert.subject_alternative_name() {
            for name in &ext.value.general_names {
                match name {
                    GeneralName::DNSName(n) | GeneralName::RFC822Name(n) | GeneralName::URI(n) => {
                        sans.push(n.to_string())
                    }
                    GeneralName::IPAddress(ip) => match ip.len() {
                        4 => sans.push(
                            std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string(),
                        ),
                        16 => sans.push(
                            std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string(),
                        ),
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        Some(ClientCert {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            common_name,
            sans,
            fingerprint: hex(digest::digest(&digest::SHA256, der).as_ref(), false),
            thumbprint: hex(
                digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der).as_ref(),
                true,
            ),
            serial: hex(cert.raw_serial(), true),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }

    /// A field by its template name: `subject`, `issuer`, `common_name`, `fingerprint`,
    /// `thumbprint`, `serial`, `san` (the first SAN).
    pub fn field(&self, name: &str) -> Option<&str> {
        Some(match name {
            "subject" => &self.subject,
            "issuer" => &self.issuer,
            "common_name" | "cn" => &self.common_name,
            "fingerprint" => &self.fingerprint,
            "thumbprint" => &self.thumbprint,
            "serial" => &self.serial,
            "san" => self.sans.first().map_or("", String::as_str),
            _ => return None,
        })
    }
}

/// The field names [`ClientCert::field`] knows.
pub const FIELDS: &[&str] = &[
    "subject",
    "issuer",
    "common_name",
    "fingerprint",
    "thumbprint",
    "serial",
    "san",
];

fn hex(bytes: &[u8], upper: bool) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = if upper {
            write!(out, "{b:02X}")
        } else {
            write!(out, "{b:02x}")
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_subject_sans_and_digests() {
        let mut params = rcgen::CertificateParams::new(vec!["client.example".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme");
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(std::net::IpAddr::from([
                10, 0, 0, 1,
            ])));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let c = ClientCert::from_der(cert.der()).unwrap();
        assert_eq!(c.common_name, "alice");
        assert!(c.subject.contains("CN=alice"), "{}", c.subject);
        assert!(c.subject.contains("O=Acme"), "{}", c.subject);
        assert_eq!(c.sans, ["client.example", "10.0.0.1"]);
        assert_eq!(c.fingerprint.len(), 64);
        assert_eq!(c.thumbprint.len(), 40);
        assert_eq!(c.field("cn"), Some("alice"));
        assert_eq!(c.field("san"), Some("client.example"));
        assert!(c.field("nope").is_none());
        assert!(ClientCert::from_der(b"not a certificate").is_none());
    }
}
