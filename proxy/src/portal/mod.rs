//! The developer portal: a web application served at `/portal/` (on the admin listener, or
//! on a listener of its own) where developers find the products and APIs, read each API's
//! operations, sign up, subscribe, see and regenerate their keys, try an operation through
//! the gateway, and see their usage.
//!
//! The page itself is a static application embedded in the binary (`assets/`); it talks to
//! the JSON API under `/portal/api/`. Developers, sessions, run-time subscriptions and usage
//! live in SQLite ([`store`]). Subscriptions join the document's keys on every core through
//! the same two-phase switch as a reload ([`crate::control::plane::Plane::refresh_keys`]), so
//! the data path reads them as it reads any key, without a lock.
//!
//! Security: passwords are hashed with Argon2id; the session is a random token in a
//! `Secure; HttpOnly; SameSite=Strict` cookie (its SHA-256 is what the database holds); every
//! POST needs the session's CSRF token in `X-CSRF-Token` and a JSON body (a cross-site form
//! can send neither); failed sign-ins are limited per email and per client address.

mod api;
mod assets;
pub mod store;
mod try_it;
mod usage;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::PortalSettings;
use crate::control::plane::Plane;
use crate::policy::auth::keys;
use store::{Store, StoredSubscription, SubState};

/// A request to the portal, as the admin listener parsed it.
pub struct PortalRequest<'a> {
    pub method: &'a str,
    /// Percent-decoded, starting with `/portal`.
    pub path: &'a str,
    pub query: &'a str,
    /// Names lower case.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub peer: Option<IpAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

impl PortalRequest<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .find_map(|c| {
                let (k, v) = c.trim().split_once('=')?;
                (k == name).then_some(v)
            })
    }

    fn query_value(&self, name: &str) -> Option<&str> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then_some(v)
        })
    }
}

/// The portal's answer.
pub struct PortalAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl PortalAnswer {
    fn new(status: u16, kind: &str, body: Vec<u8>) -> PortalAnswer {
        PortalAnswer {
            status,
            headers: vec![("Content-Type".into(), kind.into())],
            body,
        }
    }

    fn json(status: u16, value: &serde_json::Value) -> PortalAnswer {
        let mut a = PortalAnswer::new(
            status,
            "application/json",
            serde_json::to_vec(value).unwrap_or_default(),
        );
        a.headers.push(("Cache-Control".into(), "no-store".into()));
        a
    }

    fn error(status: u16, code: &str, field: Option<&str>, message: &str) -> PortalAnswer {
        PortalAnswer::json(
            status,
            &serde_json::json!({"error": code, "field": field, "message": message}),
        )
    }

    fn header(mut self, name: &str, value: String) -> PortalAnswer {
        self.headers.push((name.into(), value));
        self
    }
}

const COOKIE: &str = "ringway_portal";
/// Failed sign-ins are counted over this window.
const SIGNIN_WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failed sign-in attempts, by email and by client address.
#[derive(Default)]
struct Attempts {
    by_key: HashMap<String, Vec<Instant>>,
}

impl Attempts {
    /// Seconds until `key` may try again, when it is over `limit`.
    fn blocked(&mut self, key: &str, limit: u32, now: Instant) -> Option<u64> {
        let list = self.by_key.get_mut(key)?;
        list.retain(|t| now.duration_since(*t) < SIGNIN_WINDOW);
        if list.len() < limit as usize {
            return None;
        }
        let oldest = *list.first()?;
        Some(
            (SIGNIN_WINDOW - now.duration_since(oldest))
                .as_secs()
                .max(1),
        )
    }

    fn fail(&mut self, key: &str, now: Instant) {
        if self.by_key.len() > 100_000 {
            self.by_key.retain(|_, l| {
                l.last()
                    .is_some_and(|t| now.duration_since(*t) < SIGNIN_WINDOW)
            });
        }
        self.by_key.entry(key.to_string()).or_default().push(now);
    }

    fn clear(&mut self, key: &str) {
        self.by_key.remove(key);
    }
}

pub struct Portal {
    pub settings: PortalSettings,
    pub store: Store,
    attempts: Mutex<Attempts>,
    /// The run-time subscriptions as last read, for when the database cannot be read.
    keys: Mutex<Vec<keys::Subscription>>,
    /// Cluster mode: where changes and usage are shared with the other nodes.
    pub shared: std::sync::OnceLock<Arc<dyn Shared>>,
    /// The key of anonymous visitors' form tokens (kept in the database, so that a restart
    /// does not void the pages open in browsers).
    form_key: ring::hmac::Key,
    /// The gateway's first listener as bound (`http://127.0.0.1:8080`), when
    /// `portal.gateway_url` is not set.
    pub gateway: std::sync::OnceLock<String>,
}

/// What the portal shares with the other nodes of a cluster (see `cluster::portal`).
pub trait Shared: Send + Sync {
    /// A subscription changed here.
    fn subscription(&self, s: &StoredSubscription);
    /// A developer (by email) was added here.
    fn developer(&self, email: &str);
    /// Adds this node's calls of `day` to the cluster's count.
    fn add_usage(
        &self,
        subscription: &str,
        day: &str,
        requests: u64,
        errors: u64,
    ) -> Result<(), String>;
    /// The cluster's requests and errors per day, from `since`.
    fn usage(
        &self,
        subscriptions: &[String],
        since: &str,
    ) -> Result<Vec<(String, u64, u64)>, String>;
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Portal {
    /// Opens the portal's database and reads its subscriptions, before the gateway serves:
    /// the first configuration's keys are `keys` with them ([`Portal::first_keys`]).
    pub fn open(settings: &PortalSettings) -> Result<Arc<Portal>, String> {
        let store = Store::open(&settings.database)?;
        let form_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &store.secret("form_key")?);
        let portal = Arc::new(Portal {
            form_key,
            settings: settings.clone(),
            store,
            attempts: Mutex::default(),
            keys: Mutex::default(),
            shared: std::sync::OnceLock::new(),
            gateway: std::sync::OnceLock::new(),
        });
        Ok(portal)
    }

    /// The keys of the document (`keys`) with the portal's subscriptions: what the gateway
    /// starts with, so that a portal key works from the first request.
    pub fn first_keys(&self, keys: &keys::KeyTable) -> keys::KeyTable {
        keys.with_runtime(&self.key_subscriptions())
    }

    /// Joins the control plane (whose later switches take the portal's subscriptions) and
    /// starts recording usage.
    pub fn start(self: &Arc<Portal>, plane: &Arc<Plane>) -> Result<(), String> {
        if plane.portal.set(Arc::clone(self)).is_err() {
            return Err("the portal is already started".into());
        }
        let portal = self;
        let settings = &self.settings;
        usage::start(Arc::clone(portal), Arc::clone(&plane.control));
        log::info!(
            "portal: {} (database {})",
            match &settings.listener {
                crate::config::PortalListener::Admin => "on the admin listener at /portal/".into(),
                crate::config::PortalListener::Own(a) => format!("on {a} at /portal/"),
            },
            settings.database.display()
        );
        Ok(())
    }

    /// The run-time subscriptions as the key tables take them, read from the database now.
    /// Every switch of the workers calls this under the control plane's lock, so the last
    /// switch after a change always carries it, however changes and switches interleave. If
    /// the database cannot be read, the list last read stands (keys are not dropped for it).
    pub fn key_subscriptions(&self) -> Vec<keys::Subscription> {
        let mut last = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        match self.store.subscriptions(None) {
            Ok(subs) => {
                *last = subs
                    .iter()
                    .map(|s| keys::Subscription {
                        id: s.id.clone(),
                        scope: keys::Scope::Product(s.product.clone()),
                        state: match s.state {
                            SubState::Active => keys::State::Active,
                            SubState::Pending | SubState::Suspended => keys::State::Suspended,
                            SubState::Cancelled => keys::State::Cancelled,
                        },
                        primary: keys::hash_key(&s.primary_key),
                        secondary: Some(keys::hash_key(&s.secondary_key)),
                    })
                    .collect();
            }
            Err(e) => log::error!("{e}; the portal's subscriptions last read stay in force"),
        }
        last.clone()
    }

    /// Stores a change of a subscription and puts it in force on every core (and, in cluster
    /// mode, shares it with the other nodes).
    pub fn save_subscription(&self, plane: &Plane, s: &StoredSubscription) -> Result<(), String> {
        // A change made here is the newest: its time is after the stored one's, even when a
        // merged record carries a later clock (another node's), so that it is kept here and
        // wins on every node.
        let mut s = s.clone();
        if let Some(stored) = self.store.subscription(&s.id)? {
            s.updated = s.updated.max(stored.updated + 1);
        }
        if !self.store.put_subscription(&s)? {
            return Err(format!("subscription {}: the change was not stored", s.id));
        }
        if let Some(shared) = self.shared.get() {
            shared.subscription(&s);
        }
        self.apply(plane, &format!("subscription {}", s.id))
    }

    /// Puts the database's subscriptions in force.
    pub fn apply(&self, plane: &Plane, why: &str) -> Result<(), String> {
        plane
            .refresh_keys(&format!("portal: {why}"))
            .map(|_| ())
            .map_err(|e| e.errors.join("; "))
    }

    /// Answers a request under `/portal`.
    pub fn handle(&self, req: &PortalRequest<'_>, plane: &Plane) -> PortalAnswer {
        let mut answer = if req.path == "/portal" {
            PortalAnswer::new(301, "text/plain", Vec::new()).header("Location", "/portal/".into())
        } else if let Some(rest) = req.path.strip_prefix("/portal/api/") {
            api::handle(self, plane, req, rest)
        } else if let Some(file) = req.path.strip_prefix("/portal/assets/") {
            assets::asset(file, req.method)
        } else if req.method == "GET" || req.method == "HEAD" {
            assets::index()
        } else {
            PortalAnswer::error(405, "method_not_allowed", None, "pages are read with GET")
                .header("Allow", "GET, HEAD".into())
        };
        for (name, value) in [
            (
                "Content-Security-Policy",
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                 connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "DENY"),
            ("Referrer-Policy", "no-referrer"),
            ("Cross-Origin-Opener-Policy", "same-origin"),
        ] {
            answer.headers.push((name.into(), value.into()));
        }
        if req.method == "HEAD" {
            answer.body.clear();
        }
        answer
    }
}
