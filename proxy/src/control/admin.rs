//! The admin listener: a small HTTP/1.1 server outside the worker set (one thread per
//! connection, a few at a time), serving the admin API of [`super::routes::ROUTES`].
//!
//! It reads what the workers publish (their metrics, once a second, each into its own slot)
//! and changes the configuration through the [`Plane`]; it reaches the workers only through
//! the reload's per-core messages and the purge hub, so no worker ever waits on it.
//!
//! Every route but `/healthz` and `/readyz` needs the bearer token when one is configured,
//! compared in constant time. Answers are JSON (`/metrics` is the Prometheus text format);
//! errors are `{"error": CODE, "field": WHERE, "message": WHAT}` with a 4xx status. One
//! request per connection (`Connection: close`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use subtle::ConstantTimeEq;

use super::edit::{self, Collection, EditError, Place};
use super::plane::{Applied, Plane};
use super::routes::{self, AdminRoute};
use crate::config::AdminSettings;
use crate::server::ReloadError;

const MAX_HEAD: usize = 16 * 1024;
/// The largest request body (a whole configuration document).
const MAX_BODY: usize = 16 * 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;

/// The OpenAPI document of this API, served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Binds the admin listener and serves it on threads of its own. Returns the bound address.
pub fn start(settings: &AdminSettings, plane: Arc<Plane>) -> std::io::Result<SocketAddr> {
    start_server(settings.address, settings.tls.clone(), plane, Serves::Admin)
}

/// Binds the developer portal's own listener (`portal.listener: ADDRESS`), which serves the
/// portal only.
pub fn start_portal(
    address: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    plane: Arc<Plane>,
) -> std::io::Result<SocketAddr> {
    start_server(address, tls, plane, Serves::Portal)
}

/// What a listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serves {
    /// The admin API (and the portal, when it is on the admin listener).
    Admin,
    Portal,
}

fn start_server(
    address: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    plane: Arc<Plane>,
    serves: Serves,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address)?;
    let addr = listener.local_addr()?;
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("ringway-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                while busy.load(Ordering::Acquire) >= MAX_CONNECTIONS {
                    std::thread::sleep(Duration::from_millis(5));
                }
                busy.fetch_add(1, Ordering::AcqRel);
                let (plane, busy, tls) = (Arc::clone(&plane), Arc::clone(&busy), tls.clone());
                let spawned = std::thread::Builder::new()
                    .name("ringway-admin-conn".into())
                    .spawn(move || {
                        let _ = serve_connection(stream, tls, &plane, serves);
                        busy.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    log::error!("admin: cannot start a thread for a connection");
                }
            }
        })?;
    Ok(addr)
}

fn serve_connection(
    stream: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    plane: &Plane,
    serves: Serves,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    match tls {
        None => serve(stream, plane, serves, peer, false),
        Some(config) => {
            let session = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
            serve(
                rustls::StreamOwned::new(session, stream),
                plane,
                serves,
                peer,
                true,
            )
        }
    }
}

/// A parsed admin request.
struct Request<'a> {
    method: &'a str,
    path: String,
    query: &'a str,
    body: Vec<u8>,
}

impl Request<'_> {
    fn query_flag(&self, name: &str) -> bool {
        self.query.split('&').any(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
            k == name && matches!(v, "true" | "1" | "yes" | "")
        })
    }

    fn query_value(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    }

    fn json(&self) -> Result<Value, Answer> {
        if self.body.is_empty() {
            return Err(Answer::error(
                400,
                "invalid_body",
                "body",
                "this route takes a JSON body",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            Answer::error(
                400,
                "invalid_json",
                "body",
                &format!("the body is not JSON: {e}"),
            )
        })
    }
}

/// An answer: status, content type, body and extra headers.
struct Answer {
    status: u16,
    kind: &'static str,
    body: String,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, value: &Value) -> Answer {
        Answer {
            status,
            kind: "application/json",
            body: serde_json::to_string(value).unwrap_or_default() + "\n",
            headers: Vec::new(),
        }
    }

    fn error(status: u16, code: &str, field: &str, message: &str) -> Answer {
        Answer::json(
            status,
            &json!({ "error": code, "field": field, "message": message }),
        )
    }

    fn from_edit(e: EditError) -> Answer {
        Answer::json(e.status, &e.to_json())
    }

    /// A configuration that did not apply: 422 with every error, the first one's field
    /// named.
    fn refused(e: &ReloadError) -> Answer {
        let field = e.errors.first().map(|m| field_of(m)).unwrap_or_default();
        Answer::json(
            422,
            &json!({
                "error": "invalid_config",
                "field": field,
                "message": e.errors.first().cloned().unwrap_or_default(),
                "errors": e.errors,
            }),
        )
    }
}

/// The field an error message names: `SOURCE: path.to.field: what` gives `path.to.field`.
fn field_of(message: &str) -> String {
    let mut parts = message.splitn(3, ": ");
    let (_, second) = (parts.next(), parts.next());
    match (second, parts.next()) {
        (Some(field), Some(_)) if !field.contains(' ') => field.to_string(),
        _ => String::new(),
    }
}

fn serve<S: Read + Write>(
    mut stream: S,
    plane: &Plane,
    serves: Serves,
    peer: Option<std::net::IpAddr>,
    tls: bool,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return write_answer(
                &mut stream,
                Answer::error(
                    431,
                    "headers_too_large",
                    "head",
                    "the request head is too large",
                ),
            );
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut body = buf[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut authorization = None;
    let mut length = 0usize;
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            match value.trim().parse() {
                Ok(n) => length = n,
                Err(_) => {
                    return write_answer(
                        &mut stream,
                        Answer::error(400, "bad_request", "content-length", "not a number"),
                    )
                }
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return write_answer(
                &mut stream,
                Answer::error(
                    411,
                    "length_required",
                    "transfer-encoding",
                    "send the body with Content-Length",
                ),
            );
        }
    }
    if length > MAX_BODY {
        return write_answer(
            &mut stream,
            Answer::error(
                413,
                "body_too_large",
                "content-length",
                &format!("the body may be at most {MAX_BODY} bytes"),
            ),
        );
    }
    while body.len() < length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let portal = plane.portal.get().filter(|p| {
        serves == Serves::Portal || p.settings.listener == crate::config::PortalListener::Admin
    });
    let decoded = percent_decode(path);
    if let Some(portal) = portal {
        if decoded == "/portal" || decoded.starts_with("/portal/") || serves == Serves::Portal {
            if serves == Serves::Portal
                && !(decoded == "/portal" || decoded.starts_with("/portal/"))
            {
                let to_portal = crate::portal::PortalAnswer {
                    status: if decoded == "/" { 302 } else { 404 },
                    headers: vec![
                        ("Location".into(), "/portal/".into()),
                        ("Content-Type".into(), "text/plain".into()),
                    ],
                    body: b"the developer portal is at /portal/\n".to_vec(),
                };
                return write_portal(&mut stream, to_portal);
            }
            let request = crate::portal::PortalRequest {
                method,
                path: &decoded,
                query,
                headers: &headers,
                body: &body,
                peer,
                tls,
            };
            let answer = portal.handle(&request, plane);
            return write_portal(&mut stream, answer);
        }
    }
    let request = Request {
        method,
        path: percent_decode(path),
        query,
        body,
    };
    let answer = route(&request, authorization.as_deref(), plane);
    write_answer(&mut stream, answer)
}

fn route(request: &Request<'_>, authorization: Option<&str>, plane: &Plane) -> Answer {
    let (route, params) = match routes::find(request.method, &request.path) {
        None => {
            return Answer::error(
                404,
                "not_found",
                "path",
                &format!("no admin route {} (see /openapi.json)", request.path),
            )
        }
        Some(Err(allowed)) => {
            let mut answer = Answer::error(
                405,
                "method_not_allowed",
                "method",
                &format!("{} answers {}", request.path, allowed.join(", ")),
            );
            answer.headers.push(("Allow", allowed.join(", ")));
            return answer;
        }
        Some(Ok(found)) => found,
    };
    if route.auth {
        if let Some(refused) = check_token(plane, authorization) {
            return refused;
        }
    }
    let params: Vec<String> = params.into_iter().map(str::to_string).collect();
    handle(route, &params, request, plane)
}

fn check_token(plane: &Plane, authorization: Option<&str>) -> Option<Answer> {
    let expected = {
        let reloader = plane.reloader.lock().unwrap_or_else(|e| e.into_inner());
        reloader
            .snapshot()
            .config
            .admin
            .as_ref()
            .and_then(|a| a.token.as_ref())
            .map(|t| t.expose().as_bytes().to_vec())
    }?;
    let presented = authorization
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(&expected)) {
        return None;
    }
    let mut answer = Answer::error(
        401,
        "unauthorized",
        "authorization",
        "give the admin token as Authorization: Bearer TOKEN",
    );
    answer
        .headers
        .push(("WWW-Authenticate", "Bearer realm=\"ringway-admin\"".into()));
    Some(answer)
}

fn handle(route: &AdminRoute, params: &[String], request: &Request<'_>, plane: &Plane) -> Answer {
    let p = |i: usize| params.get(i).map(String::as_str).unwrap_or("");
    match (route.method, route.path) {
        ("GET", "/healthz") => Answer::json(200, &json!({ "status": "alive" })),
        ("GET", "/readyz") => {
            if plane.control.ready() {
                Answer::json(
                    200,
                    &json!({ "status": "ready", "workers": plane.control.workers() }),
                )
            } else {
                Answer::json(503, &json!({ "status": "not_ready" }))
            }
        }
        ("GET", "/metrics") => {
            let enabled = {
                let reloader = plane.reloader.lock().unwrap_or_else(|e| e.into_inner());
                reloader
                    .snapshot()
                    .config
                    .admin
                    .as_ref()
                    .is_none_or(|a| a.metrics)
            };
            if !enabled {
                return Answer::error(
                    404,
                    "not_found",
                    "path",
                    "metrics are off (admin.metrics: false)",
                );
            }
            Answer {
                status: 200,
                kind: "text/plain; version=0.0.4; charset=utf-8",
                body: super::prometheus::render_plane(plane),
                headers: Vec::new(),
            }
        }
        ("GET", "/openapi.json") => Answer {
            status: 200,
            kind: "application/json",
            body: OPENAPI.to_string(),
            headers: Vec::new(),
        },
        ("GET", "/status") => Answer::json(200, &status(plane)),
        ("GET", "/config") => Answer::json(200, &edit::redact(&plane.document())),
        ("PUT", "/config") => put_config(request, plane),
        ("POST", "/reload") => match plane.reload_file_pushed("POST /reload") {
            Ok(Some((r, published))) => pushed(Answer::json(200, &reloaded_json(&r)), published),
            Ok(None) => Answer::json(
                200,
                &json!({ "applied": false, "message": "the configuration file is unchanged" }),
            ),
            Err(e) => Answer::refused(&e),
        },
        ("POST", "/cache/purge") => purge(request, plane),
        ("GET", "/state/upstreams") => Answer::json(200, &super::state::upstreams(plane)),
        ("GET", "/state/limits") => match request.query_value("key") {
            Some(key) => Answer::json(200, &super::state::limits(plane, &key)),
            None => Answer::error(
                400,
                "missing_parameter",
                "query.key",
                "give the limit key to look up: /state/limits?key=KEY",
            ),
        },
        ("GET", "/analytics") => {
            let by = request.query_value("by").unwrap_or_else(|| "api".into());
            let minutes = match request.query_value("minutes").map(|m| m.parse::<usize>()) {
                None => 60,
                Some(Ok(m)) if (1..=60).contains(&m) => m,
                Some(_) => {
                    return Answer::error(
                        400,
                        "invalid_parameter",
                        "query.minutes",
                        "minutes is a whole number from 1 to 60",
                    )
                }
            };
            match super::analytics::view(plane, &by, minutes) {
                Some(v) => Answer::json(200, &v),
                None => Answer::error(
                    400,
                    "invalid_parameter",
                    "query.by",
                    "by is api or subscription",
                ),
            }
        }
        ("POST", path) if path.ends_with("/drain") || path.ends_with("/undrain") => {
            drain(plane, p(0), p(1), path.ends_with("/drain"))
        }
        ("GET", "/apis/{api}/revisions") => result(edit::revisions::list(&plane.document(), p(0))),
        ("POST", "/apis/{api}/revisions/{revision}/make-current") => {
            let body = if request.body.is_empty() {
                json!({})
            } else {
                match request.json() {
                    Ok(b) => b,
                    Err(a) => return a,
                }
            };
            let mut document = plane.document();
            match edit::revisions::make_current(&mut document, p(0), p(1), &body) {
                Ok(outcome) => apply(
                    plane,
                    document,
                    request.query_flag("dry_run"),
                    Some(outcome),
                ),
                Err(e) => Answer::from_edit(e),
            }
        }
        ("GET", "/developers") => match plane.portal.get() {
            None => Answer::error(
                404,
                "not_found",
                "path",
                "the developer portal is not configured",
            ),
            Some(portal) => match super::portal_admin::developers(portal) {
                Ok(v) => Answer::json(200, &v),
                Err(e) => Answer::error(500, "internal", "", &e),
            },
        },
        (method, path) if path.starts_with("/subscriptions") => {
            match super::portal_admin::subscription_route(
                method,
                path,
                params,
                &request.body,
                request.query,
                plane,
            ) {
                Some((status, body)) => Answer::json(status, &body),
                None => edit_route(method, path, params, request, plane),
            }
        }
        (method, path) => edit_route(method, path, params, request, plane),
    }
}

/// `PUT /config`: the whole document, YAML or JSON.
fn put_config(request: &Request<'_>, plane: &Plane) -> Answer {
    let text = match std::str::from_utf8(&request.body) {
        Ok(t) if !t.trim().is_empty() => t,
        Ok(_) => {
            return Answer::error(
                400,
                "invalid_body",
                "body",
                "give the configuration document (YAML or JSON) as the body",
            )
        }
        Err(_) => return Answer::error(400, "invalid_body", "body", "the body is not UTF-8"),
    };
    let env = |name: &str| std::env::var(name).ok();
    let mut document = match crate::config::document_value(text, "PUT /config", &env) {
        Ok(d) => d,
        Err(e) => return Answer::refused(&ReloadError::from(e)),
    };
    // A document read from GET /config comes back with its secrets as placeholders.
    if let Err(e) = edit::restore_redacted(&mut document, &plane.document()) {
        return Answer::from_edit(e);
    }
    apply(plane, document, request.query_flag("dry_run"), None)
}

/// Applies an edited document and answers with `outcome` (or the reload's result).
fn apply(plane: &Plane, document: Value, dry_run: bool, outcome: Option<edit::Outcome>) -> Answer {
    match plane.apply_document(document, dry_run) {
        Ok(Applied::Checked(warnings)) => Answer::json(
            200,
            &json!({ "valid": true, "dry_run": true, "warnings": warnings }),
        ),
        Ok(Applied::Reloaded(r, published)) => match outcome {
            Some(o) => pushed(Answer::json(o.status, &o.body), published),
            None => pushed(Answer::json(200, &reloaded_json(&r)), published),
        },
        Err(e) => Answer::refused(&e),
    }
}

/// Cluster mode: says what became of the push of an applied change, in the `Ringway-Cluster`
/// header (`published v7`, `not published: WHY`) and, in an answer about the reload itself,
/// as `"cluster"` (and `"cluster_version"`).
fn pushed(mut answer: Answer, published: Option<crate::cluster::sync::Published>) -> Answer {
    let Some(published) = published else {
        return answer;
    };
    let said = match &published {
        Ok(version) => format!("published v{version}"),
        Err(why) => format!("not published: {why}"),
    };
    if let Ok(mut body) = serde_json::from_str::<Value>(&answer.body) {
        if body.get("applied").is_some() {
            body["cluster"] = json!(if published.is_ok() {
                "published"
            } else {
                said.as_str()
            });
            if let Ok(version) = published {
                body["cluster_version"] = json!(version);
            }
            answer.body = serde_json::to_string(&body).unwrap_or_default() + "\n";
        }
    }
    answer
        .headers
        .push(("Ringway-Cluster", said.replace(['\r', '\n'], " ")));
    answer
}

fn reloaded_json(r: &crate::server::Reloaded) -> Value {
    json!({
        "applied": true,
        "generation": r.generation,
        "switch_ms": r.switch.as_secs_f64() * 1e3,
        "reload_ms": r.total.as_secs_f64() * 1e3,
        "warnings": r.warnings,
    })
}

/// The item routes: each is an edit of the running document, applied like `PUT /config`.
fn edit_route(
    method: &str,
    path: &str,
    params: &[String],
    request: &Request<'_>,
    plane: &Plane,
) -> Answer {
    let p = |i: usize| params.get(i).map(String::as_str).unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let place = match segments.as_slice() {
        ["apis", "{api}", "operations", ..] => Place::Operations { api: p(0) },
        ["backends", "{backend}", "targets", ..] => Place::Targets { backend: p(0) },
        [top, ..] => match Collection::from_key(top) {
            Some(c) => Place::Top(c),
            None => return Answer::error(404, "not_found", "path", "no such collection"),
        },
        [] => return Answer::error(404, "not_found", "path", "no such route"),
    };
    // The item's id is the last path parameter, for routes on one item.
    let id = match place {
        Place::Top(_) => params.first(),
        _ => params.get(1),
    }
    .map(String::as_str);
    let mut document = plane.document();
    let body = || request.json();
    let edited = match (method, id, segments.last().copied()) {
        ("GET", None, _) => return result(edit::list(&document, place)),
        ("GET", Some(id), _) => return result(edit::get(&document, place, id)),
        ("POST", None, _) => match body() {
            Ok(b) => edit::create(&mut document, place, b),
            Err(a) => return a,
        },
        ("PUT", Some(id), _) if place == Place::Top(Collection::Subscriptions) => match body() {
            Ok(b) => edit::replace_subscription(&mut document, id, b),
            Err(a) => return a,
        },
        ("PUT", Some(id), _) => match body() {
            Ok(b) => edit::replace(&mut document, place, id, b),
            Err(a) => return a,
        },
        ("DELETE", Some(id), _) => edit::delete(&mut document, place, id),
        ("POST", Some(id), Some("regenerate")) => {
            let b = if request.body.is_empty() {
                json!({})
            } else {
                match body() {
                    Ok(b) => b,
                    Err(a) => return a,
                }
            };
            edit::regenerate(&mut document, id, &b)
        }
        ("POST", Some(id), Some("suspend")) => edit::suspend(&mut document, id),
        ("POST", Some(id), Some("activate")) => edit::activate(&mut document, id),
        ("POST", Some(id), Some("cancel")) => edit::cancel(&mut document, id),
        _ => return Answer::error(404, "not_found", "path", "no such route"),
    };
    match edited {
        Ok(outcome) => apply(
            plane,
            document,
            request.query_flag("dry_run"),
            Some(outcome),
        ),
        Err(e) => Answer::from_edit(e),
    }
}

fn result(r: Result<Value, EditError>) -> Answer {
    match r {
        Ok(v) => Answer::json(200, &v),
        Err(e) => Answer::from_edit(e),
    }
}

/// `POST /cache/purge`: `{"key": K}` or `{"prefix": P}`, on every core; answers once every
/// core has applied it.
fn purge(request: &Request<'_>, plane: &Plane) -> Answer {
    let body = match request.json() {
        Ok(b) => b,
        Err(a) => return a,
    };
    let node = Arc::clone(&plane.control.node.lock().unwrap_or_else(|e| e.into_inner()));
    let (ticket, what) = match (
        body.get("key").and_then(Value::as_str),
        body.get("prefix").and_then(Value::as_str),
    ) {
        (Some(key), None) => (node.purge.purge_key(key.as_bytes()), "key"),
        (None, Some(prefix)) => (node.purge.purge_prefix(prefix.as_bytes()), "prefix"),
        _ => {
            return Answer::error(
                400,
                "invalid_body",
                "body",
                "give one of {\"key\": KEY} or {\"prefix\": PREFIX} (the cache key as the \
                 cache-lookup policy builds it)",
            )
        }
    };
    let started = Instant::now();
    // Cluster mode: the other nodes purge it too (published before this node's workers are
    // waited for, so that they apply it meanwhile).
    let published = plane.cluster.get().and_then(|c| {
        let bytes = body
            .get(what)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .as_bytes();
        c.publish_purge(what == "prefix", bytes)
    });
    let done = ticket.wait(Duration::from_secs(5));
    let mut answer = json!({
        "purged": what,
        "removed": ticket.removed(),
        "cores_done": ticket.cores_done(),
        "cores": plane.control.workers(),
        "complete": done,
        "ms": started.elapsed().as_secs_f64() * 1e3,
    });
    if let Some(published) = published {
        answer["cluster"] = json!(match published {
            Ok(()) => "published".to_string(),
            Err(why) => format!("not published: {why}"),
        });
    }
    Answer::json(if done { 200 } else { 202 }, &answer)
}

/// Drains a target (no new requests; those in flight finish) or puts it back. Runtime state:
/// it survives reloads, not restarts.
fn drain(plane: &Plane, backend: &str, target: &str, drained: bool) -> Answer {
    let reloader = plane.reloader.lock().unwrap_or_else(|e| e.into_inner());
    let snapshot = reloader.snapshot();
    let Some(b) = snapshot
        .config
        .backends
        .iter()
        .position(|b| b.name == backend)
    else {
        return Answer::error(
            404,
            "not_found",
            "path.backend",
            &format!("no backend named {backend:?}"),
        );
    };
    let Some(t) = snapshot.backend_targets[b]
        .clone()
        .find(|&t| snapshot.targets[t].authority.eq_ignore_ascii_case(target))
    else {
        return Answer::error(
            404,
            "not_found",
            "path.target",
            &format!("backend {backend:?} has no target {target:?}"),
        );
    };
    let changed = reloader.shared_upstreams().set_drained(t, b, drained);
    if changed {
        log::info!(
            "backend {backend}: target {target} {}",
            if drained {
                "drained: no new requests go to it"
            } else {
                "back in rotation"
            }
        );
    }
    Answer::json(
        200,
        &json!({ "backend": backend, "target": target, "drained": drained, "changed": changed }),
    )
}

fn status(plane: &Plane) -> Value {
    let (generation, listeners, source) = {
        let reloader = plane.reloader.lock().unwrap_or_else(|e| e.into_inner());
        (
            reloader.generation(),
            reloader
                .listeners()
                .into_iter()
                .map(|(name, addr)| json!({ "name": name, "address": addr.to_string() }))
                .collect::<Vec<_>>(),
            reloader.snapshot().config.source.clone(),
        )
    };
    let last = plane.last_reload().map(|r| {
        json!({
            "trigger": r.trigger,
            "result": if r.ok { "success" } else { "failure" },
            "at": r.at,
            "duration_ms": r.duration.as_secs_f64() * 1e3,
            "generation": r.generation,
            "errors": r.errors,
            "warnings": r.warnings,
        })
    });
    let (metrics, _) = plane.control.metrics();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "started_at": plane.started_unix,
        "uptime_seconds": plane.started.elapsed().as_secs(),
        "workers": plane.control.workers(),
        "ready": plane.control.ready(),
        "config": {
            "generation": generation,
            "source": source,
            "file": plane.source().map(|p| p.display().to_string()),
        },
        "listeners": listeners,
        "last_reload": last,
        "reloads": {
            "success": plane.reloads_ok.load(Ordering::Relaxed),
            "failure": plane.reloads_failed.load(Ordering::Relaxed),
        },
        "requests": metrics.requests,
        "cluster": plane.cluster.get().and_then(|c| c.status()),
    })
}

/// Decodes `%XX` escapes (path parameters such as a target `[::1]:8080`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn write_answer<S: Write>(stream: &mut S, answer: Answer) -> std::io::Result<()> {
    let reason = crate::server::reason(answer.status);
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n",
        answer.status,
        answer.kind,
        answer.body.len()
    );
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(answer.body.as_bytes())?;
    stream.flush()
}

fn write_portal<S: Write>(
    stream: &mut S,
    answer: crate::portal::PortalAnswer,
) -> std::io::Result<()> {
    let reason = crate::server::reason(answer.status);
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-length: {}\r\nconnection: close\r\n",
        answer.status,
        answer.body.len()
    );
    for (name, value) in &answer.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&answer.body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_messages() {
        assert_eq!(
            field_of("admin API: apis[0].backend: no backend named \"x\""),
            "apis[0].backend"
        );
        assert_eq!(field_of("just a sentence"), "");
        assert_eq!(percent_decode("%5B%3A%3A1%5D:80"), "[::1]:80");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
