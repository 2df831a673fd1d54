//! `portal:`, the developer portal's settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::model::AdminTls;
use super::units::Dur;
use super::validate::Errors;

#[derive(Debug, Default, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with optionally listener, tls, title, database, gateway_url, signup, \
                 secure_cookies, session_ttl, signin_attempts"
)]
pub struct PortalDoc {
    /// `admin` (default): on the admin listener; or an address for a listener of its own.
    pub listener: Option<String>,
    /// TLS on the portal's own listener.
    pub tls: Option<AdminTls>,
    pub title: Option<String>,
    /// The SQLite database of developers and the subscriptions they hold (relative to the
    /// configuration's directory).
    pub database: Option<String>,
    /// The gateway's URL as developers call it (shown on API pages; the try-it console sends
    /// its requests there). Default: the first listener.
    pub gateway_url: Option<String>,
    /// Whether developers may sign up (default true).
    pub signup: Option<bool>,
    /// Session cookies carry `Secure` (default true).
    pub secure_cookies: Option<bool>,
    /// How long a session lasts without use (default 12h).
    pub session_ttl: Option<Dur>,
    /// Failed sign-ins allowed per email address in 15 minutes (default 5); a client address
    /// is allowed four times as many, across the addresses it tries.
    pub signin_attempts: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortalListener {
    Admin,
    Own(SocketAddr),
}

/// The developer portal's settings.
#[derive(Clone, Debug)]
pub struct PortalSettings {
    pub listener: PortalListener,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub title: String,
    pub database: PathBuf,
    pub gateway_url: Option<String>,
    pub signup: bool,
    pub secure_cookies: bool,
    pub session_ttl: Duration,
    pub signin_attempts: u32,
}

/// A product as the portal lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductInfo {
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub apis: Vec<String>,
    /// Subscriptions wait for an owner's approval (through the admin API).
    pub approval_required: bool,
    pub subscription_required: bool,
}

pub(super) fn portal(
    doc: &PortalDoc,
    source: &str,
    dir: &Path,
    admin: Option<&super::AdminSettings>,
    errors: &mut Errors,
) -> Option<PortalSettings> {
    let listener = match doc.listener.as_deref().map(str::trim) {
        None | Some("admin") => {
            if admin.is_none() {
                errors.push(
                    "portal.listener",
                    "the portal is served on the admin listener, and there is none: configure \
                     `admin:`, or give the portal an address of its own",
                );
            }
            PortalListener::Admin
        }
        Some(text) => match text.parse::<SocketAddr>() {
            Ok(a) => PortalListener::Own(a),
            Err(_) => {
                errors.push(
                    "portal.listener",
                    format!("{text:?} is neither `admin` nor an IP:port address"),
                );
                return None;
            }
        },
    };
    let tls = match (&doc.tls, &listener) {
        (Some(_), PortalListener::Admin) => {
            errors.push(
                "portal.tls",
                "only for a listener of the portal's own (on the admin listener, set admin.tls)",
            );
            None
        }
        (Some(t), PortalListener::Own(_)) => {
            super::validate::admin_tls("portal.tls", t, dir, errors)
        }
        (None, _) => None,
    };
    let database = match &doc.database {
        Some(d) => dir.join(d),
        None => {
            let stem = Path::new(source)
                .file_stem()
                .map_or("ringway".into(), |s| s.to_string_lossy().into_owned());
            dir.join(format!("{stem}.portal.db"))
        }
    };
    if let Some(url) = &doc.gateway_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            errors.push(
                "portal.gateway_url",
                format!("{url:?} is not an http:// or https:// URL"),
            );
        }
    }
    let session_ttl = doc
        .session_ttl
        .map_or(Duration::from_secs(12 * 3600), |d| d.0);
    if session_ttl < Duration::from_secs(60) {
        errors.push("portal.session_ttl", "must be at least 1m");
    }
    let signin_attempts = doc.signin_attempts.unwrap_or(5);
    if signin_attempts == 0 {
        errors.push("portal.signin_attempts", "must be at least 1");
    }
    let title = doc
        .title
        .clone()
        .unwrap_or_else(|| "Ringway Developer Portal".to_string());
    if title.chars().any(char::is_control) {
        errors.push("portal.title", "may not contain control characters");
    }
    Some(PortalSettings {
        listener,
        tls,
        title,
        database,
        gateway_url: doc.gateway_url.clone(),
        signup: doc.signup.unwrap_or(true),
        secure_cookies: doc.secure_cookies.unwrap_or(true),
        session_ttl,
        signin_attempts,
    })
}
