//! The portal's JSON API, under `/portal/api/`.

use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::store::{Developer, Session, StoredSubscription, SubState};
use super::{unix_ms, unix_now, Portal, PortalAnswer, PortalRequest, COOKIE};
use crate::config::{ApiConfig, Config};
use crate::control::plane::Plane;
use crate::policy::auth::keys;

/// The smallest password length accepted.
const MIN_PASSWORD: usize = 12;
const MAX_FIELD: usize = 256;

/// The session of a request: its token's hash and its record.
///
/// A visitor who has not signed in has a session the database does not hold: its form token
/// is an HMAC of its cookie's token under the portal's key, so visitors cost no storage. A
/// signed-in session is a row keyed by the token's SHA-256.
struct Current {
    token_hash: Vec<u8>,
    session: Session,
    /// A session made for this request: its cookie goes out with the answer.
    new_token: Option<String>,
    /// The cookie of a session whose expiry moved: sent again with the new lifetime.
    refresh: Option<String>,
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

fn random_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("the system's random source");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn config(plane: &Plane) -> std::sync::Arc<crate::snapshot::Snapshot> {
    plane
        .reloader
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .snapshot()
        .clone()
}

pub fn handle(portal: &Portal, plane: &Plane, req: &PortalRequest<'_>, rest: &str) -> PortalAnswer {
    let segments: Vec<&str> = rest.split('/').collect();
    // A POST needs the session its form token belongs to: one without it is refused, and
    // gets no new session (whose cookie would replace the developer's: a cross-site form
    // could then sign them out).
    let found = if req.method == "POST" {
        match existing_session(portal, req) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => {
                return PortalAnswer::error(
                    403,
                    "csrf",
                    None,
                    "no session: read GET /portal/api/session first, and send its form token \
                     in X-CSRF-Token",
                )
            }
            Err(e) => Err(e),
        }
    } else {
        session(portal, req)
    };
    let mut current = match found {
        Ok(c) => c,
        Err(e) => return internal(&e),
    };
    let answer = if req.method == "GET" || req.method == "HEAD" {
        match segments.as_slice() {
            ["session"] => get_session(portal, &current),
            ["catalog"] => catalog(portal, &config(plane).config),
            ["apis", name] => api_page(portal, &config(plane).config, req, name),
            ["subscriptions"] => {
                signed_in(portal, &current, |d| list_subscriptions(portal, plane, d))
            }
            ["usage"] => signed_in(portal, &current, |d| usage(portal, req, d)),
            _ => not_found(rest),
        }
    } else if req.method == "POST" {
        if let Some(refused) = check_csrf(req, &current) {
            return with_cookie(portal, refused, &current);
        }
        let body: Value = match serde_json::from_slice(req.body) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                return with_cookie(
                    portal,
                    PortalAnswer::error(
                        400,
                        "invalid_body",
                        Some("body"),
                        "the body is a JSON object",
                    ),
                    &current,
                )
            }
        };
        match segments.as_slice() {
            ["signup"] => signup(portal, req, &mut current, &body),
            ["signin"] => signin(portal, req, &mut current, &body),
            ["signout"] => signout(portal, &mut current),
            ["subscriptions"] => {
                signed_in(portal, &current, |d| subscribe(portal, plane, d, &body))
            }
            ["subscriptions", id, "regenerate"] => signed_in(portal, &current, |d| {
                regenerate(portal, plane, d, id, &body)
            }),
            ["subscriptions", id, "cancel"] => {
                signed_in(portal, &current, |d| cancel(portal, plane, d, id))
            }
            ["try"] => signed_in(portal, &current, |d| try_it(portal, plane, d, &body)),
            _ => not_found(rest),
        }
    } else {
        PortalAnswer::error(
            405,
            "method_not_allowed",
            Some("method"),
            "the portal API answers GET and POST",
        )
        .header("Allow", "GET, POST".into())
    };
    with_cookie(portal, answer, &current)
}

fn internal(e: &str) -> PortalAnswer {
    log::error!("portal: {e}");
    PortalAnswer::error(
        500,
        "internal",
        None,
        "the portal could not answer; see the gateway's log",
    )
}

fn not_found(rest: &str) -> PortalAnswer {
    PortalAnswer::error(
        404,
        "not_found",
        Some("path"),
        &format!("no portal API /portal/api/{rest}"),
    )
}

fn with_cookie(portal: &Portal, mut answer: PortalAnswer, current: &Current) -> PortalAnswer {
    if let Some(token) = current.new_token.as_ref().or(current.refresh.as_ref()) {
        answer
            .headers
            .push(("Set-Cookie".into(), cookie(portal, token)));
    }
    answer
}

fn cookie(portal: &Portal, token: &str) -> String {
    format!(
        "{COOKIE}={token}; Path=/portal/; Max-Age={}; HttpOnly; SameSite=Strict{}",
        portal.settings.session_ttl.as_secs(),
        if portal.settings.secure_cookies {
            "; Secure"
        } else {
            ""
        }
    )
}

/// The request's session, or a new anonymous one.
fn session(portal: &Portal, req: &PortalRequest<'_>) -> Result<Current, String> {
    match existing_session(portal, req)? {
        Some(c) => Ok(c),
        None => new_session(portal, None),
    }
}

/// The session the request's cookie names, if it is one and has not expired.
fn existing_session(portal: &Portal, req: &PortalRequest<'_>) -> Result<Option<Current>, String> {
    let now = unix_now();
    let ttl = portal.settings.session_ttl.as_secs() as i64;
    let Some(token) = req.cookie(COOKIE).filter(|t| t.len() == 43) else {
        return Ok(None);
    };
    let hash = sha256(token.as_bytes());
    if let Some(mut s) = portal.store.session(&hash, now)? {
        // Sliding expiry, written (and the cookie's lifetime renewed) at most once a minute.
        let mut refresh = None;
        if s.expires - now < ttl - 60 {
            s.expires = now + ttl;
            portal.store.touch_session(&hash, s.expires)?;
            refresh = Some(token.to_string());
        }
        return Ok(Some(Current {
            token_hash: hash,
            session: s,
            new_token: None,
            refresh,
        }));
    }
    Ok(Some(anonymous(portal, token, None)))
}

/// The session of a visitor who has not signed in (or whose signed-in session ended).
fn anonymous(portal: &Portal, token: &str, new_token: Option<String>) -> Current {
    let tag = ring::hmac::sign(&portal.form_key, token.as_bytes());
    use base64::Engine;
    Current {
        token_hash: sha256(token.as_bytes()),
        session: Session {
            developer: None,
            csrf: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref()),
            expires: 0,
        },
        new_token,
        refresh: None,
    }
}

fn new_session(portal: &Portal, developer: Option<i64>) -> Result<Current, String> {
    let now = unix_now();
    let token = random_token();
    if developer.is_none() {
        return Ok(anonymous(portal, &token.clone(), Some(token)));
    }
    let hash = sha256(token.as_bytes());
    let session = Session {
        developer,
        csrf: random_token(),
        expires: now + portal.settings.session_ttl.as_secs() as i64,
    };
    if now % 16 == 0 {
        portal.store.expire_sessions(now)?;
    }
    portal.store.put_session(&hash, &session)?;
    Ok(Current {
        token_hash: hash,
        session,
        new_token: Some(token),
        refresh: None,
    })
}

/// A POST needs the session's token in `X-CSRF-Token`, a JSON body, and (when the browser
/// says where it comes from) the portal's own origin.
fn check_csrf(req: &PortalRequest<'_>, current: &Current) -> Option<PortalAnswer> {
    let refuse = |why: &str| Some(PortalAnswer::error(403, "csrf", None, why));
    if req
        .header("sec-fetch-site")
        .is_some_and(|s| s == "cross-site" || s == "same-site")
    {
        return refuse("a request from another site is refused");
    }
    if let (Some(origin), Some(host)) = (req.header("origin"), req.header("host")) {
        let origin_host = origin.split_once("://").map_or("", |(_, h)| h);
        if origin != "null" && !origin_host.eq_ignore_ascii_case(host) {
            return refuse("a request from another origin is refused");
        }
        if origin == "null" {
            return refuse("a request from an opaque origin is refused");
        }
    }
    let presented = req.header("x-csrf-token").unwrap_or("");
    if current.new_token.is_some()
        || presented.is_empty()
        || !bool::from(presented.as_bytes().ct_eq(current.session.csrf.as_bytes()))
    {
        return refuse("send the form token from GET /portal/api/session in X-CSRF-Token");
    }
    let json = req.header("content-type").is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Some(PortalAnswer::error(
            415,
            "unsupported_media_type",
            Some("content-type"),
            "the portal API takes application/json",
        ));
    }
    None
}

fn developer_json(d: &Developer) -> Value {
    json!({"email": d.email, "name": d.name, "created": rfc3339(d.created)})
}

fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The civil date of a day number since 1970-01-01.
pub(super) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub(super) fn day_of(unix: i64) -> String {
    let (y, m, d) = civil(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

fn get_session(portal: &Portal, current: &Current) -> PortalAnswer {
    let developer = match current
        .session
        .developer
        .map(|id| portal.store.developer(id))
    {
        Some(Ok(d)) => d,
        Some(Err(e)) => return internal(&e),
        None => None,
    };
    PortalAnswer::json(
        200,
        &json!({
            "developer": developer.as_ref().map(developer_json),
            "csrf": current.session.csrf,
            "signup": portal.settings.signup,
        }),
    )
}

fn signed_in(
    portal: &Portal,
    current: &Current,
    f: impl FnOnce(&Developer) -> PortalAnswer,
) -> PortalAnswer {
    let found = current
        .session
        .developer
        .map(|id| portal.store.developer(id));
    match found {
        Some(Ok(Some(d))) => f(&d),
        Some(Err(e)) => internal(&e),
        _ => PortalAnswer::error(401, "unauthorized", None, "sign in first"),
    }
}

fn text<'v>(body: &'v Value, field: &str) -> Result<&'v str, PortalAnswer> {
    match body.get(field) {
        Some(Value::String(s)) if s.len() <= MAX_FIELD => Ok(s),
        Some(Value::String(_)) => Err(PortalAnswer::error(
            422,
            "invalid",
            Some(field),
            &format!("{field} is at most {MAX_FIELD} characters"),
        )),
        _ => Err(PortalAnswer::error(
            422,
            "invalid",
            Some(field),
            &format!("give {field}"),
        )),
    }
}

fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
}

/// Argon2id with the crate's default parameters (19 MiB, 2 passes) and a random salt.
fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| "no random source".to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(hash).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A hash to verify against when the email is unknown, so that both cases take as long.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("decoy password never used").unwrap_or_default())
}

fn signup(
    portal: &Portal,
    req: &PortalRequest<'_>,
    current: &mut Current,
    body: &Value,
) -> PortalAnswer {
    if !portal.settings.signup {
        return PortalAnswer::error(
            403,
            "signup_closed",
            None,
            "this portal does not take sign-ups",
        );
    }
    let (email, name, password) = match (
        text(body, "email"),
        text(body, "name"),
        text(body, "password"),
    ) {
        (Ok(e), Ok(n), Ok(p)) => (e.trim().to_ascii_lowercase(), n.trim().to_string(), p),
        (Err(a), _, _) | (_, Err(a), _) | (_, _, Err(a)) => return a,
    };
    if !valid_email(&email) {
        return PortalAnswer::error(
            422,
            "invalid",
            Some("email"),
            "give an email address such as name@example.com",
        );
    }
    if name.is_empty() || name.chars().any(char::is_control) {
        return PortalAnswer::error(422, "invalid", Some("name"), "give your name");
    }
    if password.chars().count() < MIN_PASSWORD {
        return PortalAnswer::error(
            422,
            "invalid",
            Some("password"),
            &format!("a password has at least {MIN_PASSWORD} characters"),
        );
    }
    if let Some(wait) = limited(portal, req, None) {
        return wait;
    }
    let hash = match hash_password(password) {
        Ok(h) => h,
        Err(e) => return internal(&e),
    };
    let developer = match portal.store.add_developer(&email, &name, &hash, unix_now()) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return PortalAnswer::error(
                409,
                "taken",
                Some("email"),
                "an account with this email exists; sign in",
            )
        }
        Err(e) => return internal(&e),
    };
    if let Some(shared) = portal.shared.get() {
        shared.developer(&developer.email);
    }
    start_session(portal, current, &developer, 201)
}

/// Replaces the session with a new one for `developer` (a new token and a new form token:
/// nothing set before sign-in carries over).
fn start_session(
    portal: &Portal,
    current: &mut Current,
    developer: &Developer,
    status: u16,
) -> PortalAnswer {
    let _ = portal.store.delete_session(&current.token_hash);
    match new_session(portal, Some(developer.id)) {
        Ok(c) => *current = c,
        Err(e) => return internal(&e),
    }
    PortalAnswer::json(
        status,
        &json!({"developer": developer_json(developer), "csrf": current.session.csrf}),
    )
}

/// 429 when the email or the client address has failed too often.
fn limited(portal: &Portal, req: &PortalRequest<'_>, email: Option<&str>) -> Option<PortalAnswer> {
    let now = std::time::Instant::now();
    let limit = portal.settings.signin_attempts;
    let mut attempts = portal.attempts.lock().unwrap_or_else(|e| e.into_inner());
    let by_ip = req.peer.map(|ip| format!("ip:{ip}"));
    let wait = email
        .and_then(|e| attempts.blocked(&format!("email:{e}"), limit, now))
        .into_iter()
        .chain(by_ip.and_then(|k| attempts.blocked(&k, limit.saturating_mul(4), now)))
        .max()?;
    Some(
        PortalAnswer::json(
            429,
            &json!({
                "error": "too_many_attempts",
                "field": null,
                "message": format!("too many failed sign-ins; try again in {wait} s"),
                "retry_after": wait,
            }),
        )
        .header("Retry-After", wait.to_string()),
    )
}

fn signin(
    portal: &Portal,
    req: &PortalRequest<'_>,
    current: &mut Current,
    body: &Value,
) -> PortalAnswer {
    let (email, password) = match (text(body, "email"), text(body, "password")) {
        (Ok(e), Ok(p)) => (e.trim().to_ascii_lowercase(), p),
        (Err(a), _) | (_, Err(a)) => return a,
    };
    if let Some(wait) = limited(portal, req, Some(&email)) {
        return wait;
    }
    let found = match portal.store.developer_by_email(&email) {
        Ok(f) => f,
        Err(e) => return internal(&e),
    };
    let ok = match &found {
        Some((_, hash)) => verify_password(password, hash),
        None => {
            verify_password(password, decoy_hash());
            false
        }
    };
    let now = std::time::Instant::now();
    let mut attempts = portal.attempts.lock().unwrap_or_else(|e| e.into_inner());
    match found {
        Some((developer, _)) if ok => {
            attempts.clear(&format!("email:{email}"));
            drop(attempts);
            start_session(portal, current, &developer, 200)
        }
        _ => {
            attempts.fail(&format!("email:{email}"), now);
            if let Some(ip) = req.peer {
                attempts.fail(&format!("ip:{ip}"), now);
            }
            PortalAnswer::error(401, "unauthorized", None, "wrong email or password")
        }
    }
}

fn signout(portal: &Portal, current: &mut Current) -> PortalAnswer {
    let _ = portal.store.delete_session(&current.token_hash);
    match new_session(portal, None) {
        Ok(c) => *current = c,
        Err(e) => return internal(&e),
    }
    PortalAnswer::json(200, &json!({"csrf": current.session.csrf}))
}

// -- the catalog ------------------------------------------------------------------------------

/// The first entry of each API: its current revision at its own (versioned) path.
fn current_apis(config: &Config) -> Vec<&ApiConfig> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for api in config.apis.iter().filter(|a| a.current) {
        if !seen.contains(&api.name.as_str()) {
            seen.push(&api.name);
            out.push(api);
        }
    }
    out
}

fn products_of<'c>(config: &'c Config, api: &str) -> Vec<&'c str> {
    config
        .products
        .iter()
        .filter(|p| p.apis.iter().any(|a| a == api))
        .map(|p| p.name.as_str())
        .collect()
}

fn catalog(portal: &Portal, config: &Config) -> PortalAnswer {
    let products: Vec<Value> = config
        .products
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "display_name": p.display_name.clone().unwrap_or_else(|| p.name.clone()),
                "description": p.description,
                "approval": if p.approval_required { "manual" } else { "auto" },
                "subscription_required": p.subscription_required,
                "apis": p.apis,
            })
        })
        .collect();
    let apis: Vec<Value> = current_apis(config)
        .into_iter()
        .map(|a| {
            json!({
                "name": a.name,
                "display_name": display_name(a),
                "description": api_description(a),
                "path": a.path,
                "version": a.version,
                "version_set": a.version_set.map(|s| &config.version_sets[s].name),
                "products": products_of(config, &a.name),
            })
        })
        .collect();
    PortalAnswer::json(
        200,
        &json!({"title": portal.settings.title, "products": products, "apis": apis}),
    )
}

fn display_name(a: &ApiConfig) -> String {
    a.display_name
        .clone()
        .or_else(|| a.openapi.as_ref().map(|d| d.title.clone()))
        .unwrap_or_else(|| a.name.clone())
}

fn api_description(a: &ApiConfig) -> Option<String> {
    a.description
        .clone()
        .or_else(|| a.openapi.as_ref().and_then(|d| d.description.clone()))
}

/// The URL developers call the gateway at.
pub(super) fn gateway_url(portal: &Portal, config: &Config) -> String {
    if let Some(u) = &portal.settings.gateway_url {
        return u.trim_end_matches('/').to_string();
    }
    if let Some(u) = portal.gateway.get() {
        return u.clone();
    }
    let Some(l) = config.listeners.first() else {
        return String::new();
    };
    let mut addr = l.address;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    format!(
        "{}://{addr}",
        if l.tls.is_some() { "https" } else { "http" }
    )
}

fn api_page(portal: &Portal, config: &Config, req: &PortalRequest<'_>, name: &str) -> PortalAnswer {
    let Some(current) = current_apis(config).into_iter().find(|a| a.name == name) else {
        return PortalAnswer::error(
            404,
            "not_found",
            Some("api"),
            &format!("no API named {name:?}"),
        );
    };
    let rev = match req.query_value("rev").filter(|v| !v.is_empty()) {
        None => current.revision,
        Some(v) => match v.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                return PortalAnswer::error(400, "invalid", Some("rev"), "rev is a revision number")
            }
        },
    };
    let Some(info) = current.revisions.iter().find(|r| r.revision == rev) else {
        return PortalAnswer::error(
            404,
            "not_found",
            Some("rev"),
            &format!("API {name:?} has no revision {rev}"),
        );
    };
    if !info.online {
        return PortalAnswer::error(
            404,
            "offline",
            Some("rev"),
            &format!("revision {rev} of {name:?} is offline"),
        );
    }
    let entry = config
        .apis
        .iter()
        .find(|a| a.name == name && a.revision == rev)
        .unwrap_or(current);
    let set = entry.version_set.map(|s| &config.version_sets[s]);
    let (headers, query) = match (set, &entry.version) {
        (Some(s), Some(v)) if s.scheme == crate::config::VersionScheme::Header => {
            (json!({ header_name(&s.header): v }), json!({}))
        }
        (Some(s), Some(v)) if s.scheme == crate::config::VersionScheme::Query => {
            (json!({}), json!({ s.query.clone(): v }))
        }
        _ => (json!({}), json!({})),
    };
    let mut operations: Vec<Value> = match &entry.openapi {
        Some(d) => match d.portal_operations() {
            Value::Array(a) => a,
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    for op in &entry.operations {
        let method = op
            .method
            .as_deref()
            .map_or("*".into(), |m| String::from_utf8_lossy(m).into_owned());
        if let Some(o) = operations.iter_mut().find(|o| o["id"] == op.id.as_str()) {
            // The configuration's operation of that id is the one served.
            o["method"] = json!(method);
            o["path"] = json!(op.url_template);
            continue;
        }
        operations.push(json!({
            "id": op.id,
            "method": method,
            "path": op.url_template,
            "summary": null, "description": null, "tags": [], "deprecated": false,
            "parameters": op.template.param_names().iter().map(|p| json!({
                "name": p, "in": "path", "required": true, "description": null,
                "style": "simple", "explode": false, "schema": {"type": "string"}, "example": null,
            })).collect::<Vec<_>>(),
            "request_body": null, "responses": [],
        }));
    }
    // Only operations the gateway serves (the document's, or those the API lists).
    operations.retain(|o| entry.operations.iter().any(|op| o["id"] == op.id.as_str()));
    let key_header = entry
        .keys
        .as_ref()
        .map(|k| header_name(&String::from_utf8_lossy(&k.header)));
    PortalAnswer::json(
        200,
        &json!({
            "name": entry.name,
            "display_name": display_name(entry),
            "description": api_description(entry),
            "path": entry.path,
            "gateway_url": gateway_url(portal, config),
            "request": {"prefix": entry.path, "headers": headers, "query": query},
            "key_header": key_header,
            "version_set": set.map(|s| json!({
                "name": s.name, "scheme": s.scheme.as_str(), "default": s.default,
                "display_name": s.display_name, "description": s.description,
            })),
            "versions": set.map_or(Vec::new(), |s| s.versions.iter().map(|(v, api)| json!({"version": v, "api": api})).collect()),
            "revisions": current.revisions.iter().map(|r| json!({
                "rev": r.revision, "current": r.current, "online": r.online, "change_log": r.change_log,
            })).collect::<Vec<_>>(),
            "revision": rev,
            "products": products_of(config, name),
            "openapi": entry.openapi.as_ref().map(|d| d.openapi.clone()),
            "operations": operations,
        }),
    )
}

/// `api-version` → `Api-Version`.
fn header_name(lower: &str) -> String {
    lower
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join("-")
}

// -- subscriptions ---------------------------------------------------------------------------

pub(super) fn subscription_json(config: &Config, s: &StoredSubscription) -> Value {
    let product = config.products.iter().find(|p| p.name == s.product);
    let active = s.state == SubState::Active;
    json!({
        "id": s.id,
        "product": s.product,
        "product_display_name": product.map(|p| p.display_name.clone().unwrap_or_else(|| p.name.clone())),
        "apis": product.map_or(Vec::new(), |p| p.apis.clone()),
        "state": s.state.as_str(),
        "owner": s.owner,
        "created": rfc3339(s.created),
        "primary_key": active.then_some(&s.primary_key),
        "secondary_key": active.then_some(&s.secondary_key),
    })
}

fn list_subscriptions(portal: &Portal, plane: &Plane, d: &Developer) -> PortalAnswer {
    let config = config(plane);
    match portal.store.subscriptions(Some(&d.email)) {
        Ok(list) => PortalAnswer::json(
            200,
            &json!({"subscriptions": list.iter().map(|s| subscription_json(&config.config, s)).collect::<Vec<_>>()}),
        ),
        Err(e) => internal(&e),
    }
}

fn subscribe(portal: &Portal, plane: &Plane, d: &Developer, body: &Value) -> PortalAnswer {
    let product = match text(body, "product") {
        Ok(p) => p.to_string(),
        Err(a) => return a,
    };
    let snapshot = config(plane);
    let Some(info) = snapshot.config.products.iter().find(|p| p.name == product) else {
        return PortalAnswer::error(
            404,
            "not_found",
            Some("product"),
            &format!("no product named {product:?}"),
        );
    };
    if !info.subscription_required {
        return PortalAnswer::error(
            422,
            "open_product",
            Some("product"),
            "this product's APIs take requests without a key; there is nothing to subscribe to",
        );
    }
    let existing = match portal.store.subscriptions(Some(&d.email)) {
        Ok(l) => l,
        Err(e) => return internal(&e),
    };
    if existing
        .iter()
        .any(|s| s.product == product && s.state != SubState::Cancelled)
    {
        return PortalAnswer::error(
            409,
            "exists",
            Some("product"),
            "you already have a subscription to this product",
        );
    }
    let now = unix_now();
    let sub = StoredSubscription {
        id: format!(
            "{product}-{}",
            &random_token()[..10]
                .to_ascii_lowercase()
                .replace(['-', '_'], "x")
        ),
        owner: d.email.clone(),
        product: product.clone(),
        state: if info.approval_required {
            SubState::Pending
        } else {
            SubState::Active
        },
        primary_key: keys::new_key(),
        secondary_key: keys::new_key(),
        created: now,
        updated: unix_ms(),
    };
    if let Err(e) = portal.save_subscription(plane, &sub) {
        return internal(&e);
    }
    log::info!(
        "portal: {} subscribed to {product} ({}, {})",
        d.email,
        sub.id,
        sub.state.as_str()
    );
    PortalAnswer::json(
        201,
        &json!({"subscription": subscription_json(&snapshot.config, &sub)}),
    )
}

fn own_subscription(
    portal: &Portal,
    d: &Developer,
    id: &str,
) -> Result<StoredSubscription, PortalAnswer> {
    match portal.store.subscription(id) {
        Ok(Some(s)) if s.owner == d.email => Ok(s),
        Ok(_) => Err(PortalAnswer::error(
            404,
            "not_found",
            Some("subscription"),
            &format!("you have no subscription {id:?}"),
        )),
        Err(e) => Err(internal(&e)),
    }
}

fn regenerate(
    portal: &Portal,
    plane: &Plane,
    d: &Developer,
    id: &str,
    body: &Value,
) -> PortalAnswer {
    let mut sub = match own_subscription(portal, d, id) {
        Ok(s) => s,
        Err(a) => return a,
    };
    if sub.state != SubState::Active {
        return PortalAnswer::error(
            409,
            "not_active",
            Some("subscription"),
            &format!("the subscription is {}", sub.state.as_str()),
        );
    }
    match body.get("key").and_then(Value::as_str) {
        Some("primary") => sub.primary_key = keys::new_key(),
        Some("secondary") => sub.secondary_key = keys::new_key(),
        _ => {
            return PortalAnswer::error(422, "invalid", Some("key"), "key is primary or secondary")
        }
    }
    sub.updated = unix_ms();
    if let Err(e) = portal.save_subscription(plane, &sub) {
        return internal(&e);
    }
    PortalAnswer::json(
        200,
        &json!({"subscription": subscription_json(&config(plane).config, &sub)}),
    )
}

fn cancel(portal: &Portal, plane: &Plane, d: &Developer, id: &str) -> PortalAnswer {
    let mut sub = match own_subscription(portal, d, id) {
        Ok(s) => s,
        Err(a) => return a,
    };
    sub.state = SubState::Cancelled;
    sub.updated = unix_ms();
    if let Err(e) = portal.save_subscription(plane, &sub) {
        return internal(&e);
    }
    PortalAnswer::json(
        200,
        &json!({"subscription": subscription_json(&config(plane).config, &sub)}),
    )
}

fn usage(portal: &Portal, req: &PortalRequest<'_>, d: &Developer) -> PortalAnswer {
    let days: i64 = req
        .query_value("days")
        .and_then(|v| v.parse().ok())
        .unwrap_or(14)
        .clamp(1, 90);
    let subs: Vec<String> = match portal.store.subscriptions(Some(&d.email)) {
        Ok(l) => l.into_iter().map(|s| s.id).collect(),
        Err(e) => return internal(&e),
    };
    let today = unix_now().div_euclid(86_400);
    let first = day_of((today - days + 1) * 86_400);
    // The cluster's count when there is one (the node's own when Redis cannot be reached).
    let recorded = match portal
        .shared
        .get()
        .map(|shared| shared.usage(&subs, &first))
    {
        Some(Ok(rows)) => Ok(rows),
        _ => portal.store.usage(&subs, &first),
    };
    let recorded = match recorded {
        Ok(r) => r,
        Err(e) => return internal(&e),
    };
    let live = super::usage::unrecorded(&subs);
    let rows: Vec<Value> = (today - days + 1..=today)
        .map(|day| {
            let name = day_of(day * 86_400);
            let (mut requests, mut errors) = recorded
                .iter()
                .find(|(d, _, _)| *d == name)
                .map_or((0, 0), |(_, r, e)| (*r, *e));
            if day == today {
                requests += live.0;
                errors += live.1;
            }
            json!({"day": name, "requests": requests, "errors": errors})
        })
        .collect();
    PortalAnswer::json(200, &json!({"days": rows}))
}

fn try_it(portal: &Portal, plane: &Plane, d: &Developer, body: &Value) -> PortalAnswer {
    let snapshot = config(plane);
    let key = match body.get("subscription").and_then(Value::as_str) {
        None => None,
        Some(id) => {
            let sub = match own_subscription(portal, d, id) {
                Ok(s) => s,
                Err(a) => return a,
            };
            if sub.state != SubState::Active {
                return PortalAnswer::error(
                    409,
                    "not_active",
                    Some("subscription"),
                    &format!("the subscription is {}", sub.state.as_str()),
                );
            }
            Some(match body.get("key").and_then(Value::as_str) {
                Some("secondary") => sub.secondary_key,
                _ => sub.primary_key,
            })
        }
    };
    let api = body.get("api").and_then(Value::as_str).unwrap_or_default();
    let key_header = snapshot
        .config
        .apis
        .iter()
        .find(|a| a.name == api)
        .and_then(|a| a.keys.as_ref())
        .map(|k| String::from_utf8_lossy(&k.header).into_owned())
        .unwrap_or_else(|| crate::policy::auth::subscription::DEFAULT_HEADER.to_string());
    let url = gateway_url(portal, &snapshot.config);
    match super::try_it::send(&url, body, key.as_deref().map(|k| (key_header.as_str(), k))) {
        Ok(v) => PortalAnswer::json(200, &v),
        Err((field, message)) => PortalAnswer::error(422, "try_failed", Some(field), &message),
    }
}
