//! The router: picks the route for a request, with Gateway API HTTPRoute precedence.
//!
//! [`Router::build`] turns the validated `routes` into candidates, one per (route, match, host
//! pattern), grouped by host and sorted by precedence, so [`Router::find`] takes the first
//! candidate that matches. `find` is on the per-request hot path and never allocates: host
//! lowercasing uses a stack buffer, exact paths are a hash lookup, and the rest is a linear scan
//! of pre-sorted candidates.

mod matcher;

use std::fmt;

use ahash::AHashMap;
use bytes::Bytes;

use crate::config::{Config, ConfigError, RouteAction};

pub use matcher::{
    full_match_regex, query_param, HeaderMatch, HostPattern, PathMatch, QueryMatch, RouteMatch,
    Template, ValueMatch,
};

/// Header access for matching, implemented by the server over its parsed request head.
pub trait HeaderLookup {
    /// The first value of the header `name_lowercase`, the name compared case-insensitively.
    fn get(&self, name_lowercase: &[u8]) -> Option<&[u8]>;
}

/// What the router looks at in a request.
pub struct RouteRequest<'a, H: HeaderLookup> {
    /// The Host value as sent: any case, maybe with `:port`, maybe an IPv6 literal `[::1]:80`.
    pub host: &'a [u8],
    pub method: &'a [u8],
    /// The path without the query.
    pub path: &'a [u8],
    /// The raw query, without the `?`.
    pub query: &'a [u8],
    pub headers: &'a H,
}

impl<H: HeaderLookup> Clone for RouteRequest<'_, H> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<H: HeaderLookup> Copy for RouteRequest<'_, H> {}

impl<H: HeaderLookup> fmt::Debug for RouteRequest<'_, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteRequest")
            .field("host", &String::from_utf8_lossy(self.host))
            .field("method", &String::from_utf8_lossy(self.method))
            .field("path", &String::from_utf8_lossy(self.path))
            .field("query", &String::from_utf8_lossy(self.query))
            .finish_non_exhaustive()
    }
}

/// A compiled route: what to do with a request that matched it.
#[derive(Clone, Debug)]
pub struct Route {
    pub name: String,
    pub action: Action,
    pub request_headers: HeaderEdits,
    pub response_headers: HeaderEdits,
    pub rewrite: Option<Rewrite>,
    /// Index into `Config::pipelines`, when policies apply.
    pub pipeline: Option<usize>,
    /// The API's name (`{api}` in templates); the route's name outside APIs.
    pub api: Box<str>,
    /// The operation's id (`{operation}`); empty outside operations.
    pub operation: Box<str>,
    /// The operation's template, when it has path parameters (`{id}`) policies may read.
    pub params: Option<Template>,
    /// The bytes of the path a prefix rewrite replaces, when fixed (an API's base path);
    /// otherwise the matched prefix.
    pub strip: Option<usize>,
    /// The subscription check that runs before the pipeline, on an API's route that checks
    /// keys (`pipeline` is then set, even to an empty pipeline, so that the check runs).
    pub keys: Option<Box<crate::policy::auth::subscription::KeyCheck>>,
    /// The route answers APIM's 404 for requests that match none of its API's operations,
    /// and runs `pipeline` (global → API) only for CORS preflights, as APIM answers a
    /// preflight with the API's `cors` policy when no operation takes `OPTIONS`.
    pub preflights_only: bool,
    /// Whether requests on this route are written to the access log (an API's `access_log`;
    /// always for plain routes).
    pub access_log: bool,
    /// The metric label id of its API (or route) and operation.
    pub label: u32,
}

#[derive(Clone, Debug)]
pub enum Action {
    /// Proxy to `config.backends[index]`.
    Backend(usize),
    /// No backend of its own: a policy answers or picks one (`set-backend-service`).
    Pipeline,
    Redirect(Redirect),
    Respond(DirectResponse),
}

/// A header name (lowercase) and value.
pub type HeaderPair = (Box<[u8]>, Box<[u8]>);

/// Header edits, applied in the order remove, set, add. Names are lowercase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Replace every value of the header with this one (or add it).
    pub set: Vec<HeaderPair>,
    /// Append another value.
    pub add: Vec<HeaderPair>,
    pub remove: Vec<Box<[u8]>>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Whether `set` or `remove` names the header `name` (any case): the original header is
    /// then not forwarded as it came.
    pub fn touches(&self, name: &[u8]) -> bool {
        self.set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
            || self.remove.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// A URL rewrite before forwarding; the query is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewrite {
    /// Replace the whole path.
    Path(Box<[u8]>),
    /// Replace the matched prefix (`Matched::prefix_len` bytes). Stored without a trailing `/`
    /// (`/` is stored empty).
    Prefix(Box<[u8]>),
}

impl Rewrite {
    /// Appends the rewritten path for `path` to `out`. For a prefix rewrite the rest after
    /// the matched prefix is appended to the replacement, and an empty result becomes `/`.
    pub fn apply(&self, path: &[u8], prefix_len: usize, out: &mut Vec<u8>) {
        let start = out.len();
        match self {
            Rewrite::Path(new) => out.extend_from_slice(new),
            Rewrite::Prefix(new) => {
                out.extend_from_slice(new);
                out.extend_from_slice(&path[prefix_len.min(path.len())..]);
                if out.len() == start {
                    out.push(b'/');
                }
            }
        }
    }
}

/// A redirect answer. Unset parts come from the request (scheme `http`, its Host, its path);
/// the query is always kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub scheme: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    /// 301, 302, 303, 307 or 308.
    pub status: u16,
}

/// A response made by the gateway itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectResponse {
    /// 200..=599.
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// The route chosen for a request.
#[derive(Clone, Copy, Debug)]
pub struct Matched<'r> {
    pub route: &'r Route,
    /// Bytes of the path covered by a prefix match (its value without trailing `/`), else 0.
    pub prefix_len: usize,
}

/// The compiled routing table.
#[derive(Clone)]
pub struct Router {
    routes: Vec<Route>,
    exact_hosts: AHashMap<Box<[u8]>, Group>,
    /// Longest suffix first.
    wildcard_hosts: Vec<(Box<[u8]>, Group)>,
    any_host: Group,
}

/// The candidates for one host pattern, in precedence order.
#[derive(Clone, Default)]
struct Group {
    exact_paths: AHashMap<Box<[u8]>, Vec<Candidate>>,
    /// Templates, then prefixes, then regexes, each by specificity.
    others: Vec<Candidate>,
}

#[derive(Clone)]
struct Candidate {
    route: usize,
    /// (route index, match index): declaration order, the last tie-breaker.
    order: (usize, usize),
    matcher: RouteMatch,
}

impl Candidate {
    /// Sorts before (is preferred to) a candidate with a smaller key, after the path rules.
    fn conditions_key(&self) -> (bool, usize, usize) {
        let m = &self.matcher;
        (m.method.is_some(), m.headers.len(), m.query.len())
    }

    /// (path kind rank, specificity): lower rank first, higher specificity first.
    fn path_key(&self) -> (u8, usize) {
        match &self.matcher.path {
            PathMatch::Exact(_) => (0, 0),
            PathMatch::Template(t) => (1, t.literal_chars()),
            PathMatch::Prefix(p) => (2, p.len()),
            PathMatch::Regex(_) => (3, 0),
        }
    }
}

impl Group {
    fn push(&mut self, candidate: Candidate) {
        match &candidate.matcher.path {
            PathMatch::Exact(path) => self
                .exact_paths
                .entry(path.clone())
                .or_default()
                .push(candidate),
            _ => self.others.push(candidate),
        }
    }

    fn sort(&mut self) {
        let by_conditions = |a: &Candidate, b: &Candidate| {
            b.conditions_key()
                .cmp(&a.conditions_key())
                .then(a.order.cmp(&b.order))
        };
        for list in self.exact_paths.values_mut() {
            list.sort_by(by_conditions);
        }
        self.others.sort_by(|a, b| {
            let (ra, sa) = a.path_key();
            let (rb, sb) = b.path_key();
            ra.cmp(&rb)
                .then(sb.cmp(&sa))
                .then_with(|| by_conditions(a, b))
        });
    }

    fn is_empty(&self) -> bool {
        self.exact_paths.is_empty() && self.others.is_empty()
    }
}

impl Router {
    /// Compiles `config.routes`, resolving backend names to indices into `config.backends`.
    pub fn build(config: &Config) -> Result<Router, ConfigError> {
        let mut errors = Vec::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut exact_hosts: AHashMap<Box<[u8]>, Group> = AHashMap::new();
        let mut wildcard_hosts: Vec<(Box<[u8]>, Group)> = Vec::new();
        let mut any_host = Group::default();
        for (index, rc) in config.routes.iter().enumerate() {
            let action = match &rc.action {
                RouteAction::Backend(name) => {
                    match config.backends.iter().position(|b| &b.name == name) {
                        Some(b) => Action::Backend(b),
                        None => {
                            errors.push(format!(
                                "{}: routes[{index}].backend: {}",
                                config.source,
                                crate::config::unknown_backend(name, &config.backends)
                            ));
                            continue;
                        }
                    }
                }
                RouteAction::Redirect(r) => Action::Redirect(r.clone()),
                RouteAction::Respond(r) => Action::Respond(r.clone()),
            };
            routes.push(Route {
                name: rc.name.clone(),
                action,
                request_headers: rc.request_headers.clone(),
                response_headers: rc.response_headers.clone(),
                rewrite: rc.rewrite.clone(),
                pipeline: rc.pipeline,
                api: rc.name.as_str().into(),
                operation: Box::default(),
                params: None,
                strip: None,
                keys: None,
                preflights_only: false,
                access_log: true,
                label: crate::control::labels::route(&rc.name, ""),
            });
            let route = routes.len() - 1;
            for (m, matcher) in rc.matches.iter().enumerate() {
                let candidate = Candidate {
                    route,
                    order: (index, m),
                    matcher: matcher.clone(),
                };
                place(
                    &rc.hosts,
                    candidate,
                    &mut exact_hosts,
                    &mut wildcard_hosts,
                    &mut any_host,
                );
            }
        }
        let mut order = config.routes.len();
        for api in &config.apis {
            let mut add = |route: Route, matcher: RouteMatch| {
                routes.push(route);
                let candidate = Candidate {
                    route: routes.len() - 1,
                    order: (order, 0),
                    matcher,
                };
                order += 1;
                place(
                    &api.hosts,
                    candidate,
                    &mut exact_hosts,
                    &mut wildcard_hosts,
                    &mut any_host,
                );
            };
            let backend = |name: &Option<String>| match name {
                Some(n) => config
                    .backends
                    .iter()
                    .position(|b| &b.name == n)
                    .map_or(Action::Pipeline, Action::Backend),
                None => Action::Pipeline,
            };
            let (rewrite, strip) = if api.strip_path {
                (
                    Some(Rewrite::Prefix(api.backend_path.as_bytes().into())),
                    Some(api.path.len()),
                )
            } else if !api.backend_path.is_empty() {
                (
                    Some(Rewrite::Prefix(api.backend_path.as_bytes().into())),
                    Some(0),
                )
            } else {
                (None, None)
            };
            let route = |name: String, action: Action, pipeline: usize, operation: &str, keys| {
                let keys: Option<&crate::policy::auth::subscription::KeyCheck> = keys;
                let runs = !config.pipelines[pipeline].is_empty() || keys.is_some();
                Route {
                    name,
                    action,
                    request_headers: HeaderEdits::default(),
                    response_headers: HeaderEdits::default(),
                    rewrite: rewrite.clone(),
                    pipeline: runs.then_some(pipeline),
                    api: api.name.as_str().into(),
                    operation: operation.into(),
                    params: None,
                    strip,
                    keys: keys.cloned().map(Box::new),
                    preflights_only: false,
                    access_log: api.access_log,
                    label: crate::control::labels::route(&api.name, operation),
                }
            };
            for op in &api.operations {
                let action = match &op.backend {
                    Some(_) => backend(&op.backend),
                    None => backend(&api.backend),
                };
                let mut r = route(
                    format!("{}/{}", api.route_name(), op.id),
                    action,
                    op.pipeline,
                    &op.id,
                    op.keys.as_ref(),
                );
                if !op.template.param_names().is_empty() {
                    r.params = Some(op.template.clone());
                }
                add(
                    r,
                    RouteMatch {
                        path: PathMatch::Template(op.template.clone()),
                        method: op.method.clone(),
                        headers: api.headers.clone(),
                        query: api.query.clone(),
                    },
                );
            }
            // The API's own path: every request under it when it lists no operations;
            // otherwise APIM's 404 for a request that matches none of them.
            let fallback = if api.operations.is_empty() {
                let keys = api.keys.as_ref();
                route(
                    api.route_name(),
                    backend(&api.backend),
                    api.pipeline,
                    "",
                    keys,
                )
            } else {
                let mut r = route(
                    format!("{}/no-operation", api.route_name()),
                    Action::Respond(DirectResponse {
                        status: 404,
                        headers: vec![("content-type".into(), "application/json".into())],
                        body: Bytes::from_static(
                            b"{ \"statusCode\": 404, \"message\": \"Resource not found\" }",
                        ),
                    }),
                    api.pipeline,
                    "",
                    None,
                );
                let cors = config.pipelines[api.pipeline]
                    .inbound
                    .iter()
                    .any(|p| matches!(p, crate::policy::Policy::Cors(_)));
                r.pipeline = cors.then_some(api.pipeline);
                r.preflights_only = cors;
                r.rewrite = None;
                r
            };
            add(
                fallback,
                RouteMatch {
                    path: PathMatch::Prefix(api.path.as_bytes().into()),
                    method: None,
                    headers: api.headers.clone(),
                    query: api.query.clone(),
                },
            );
        }
        // The gateway's own 404s under an API's place, each a prefix with a JSON body: an
        // offline revision, under the revision's own path (where the API's own routes, or a
        // version set's default, would otherwise take it); and a version set without a default,
        // for a request that names no version (or one it does not have), listing its versions.
        let mut answers: Vec<(String, &str, String, &[HostPattern], serde_json::Value)> =
            Vec::new();
        for api in config.apis.iter().filter(|a| a.current) {
            for r in api.revisions.iter().filter(|r| !r.online) {
                let path = format!("{};rev={}", api.path, r.revision);
                if !answers.iter().any(|(_, _, p, ..)| *p == path) {
                    let message = format!("revision {} of API {} is offline", r.revision, api.name);
                    answers.push((
                        format!("{};rev={}/offline", api.name, r.revision),
                        &api.name,
                        path,
                        &api.hosts,
                        serde_json::json!({"statusCode": 404, "message": message}),
                    ));
                }
            }
        }
        for set in config.version_sets.iter().filter(|s| s.default.is_none()) {
            answers.push((
                format!("{}/versions", set.name),
                &set.name,
                set.path.clone(),
                &set.hosts,
                version_list(set),
            ));
        }
        for (name, api, path, hosts, body) in answers {
            routes.push(not_found_route(name, api, &body));
            let candidate = Candidate {
                route: routes.len() - 1,
                order: (order, 0),
                matcher: RouteMatch {
                    path: PathMatch::Prefix(path.as_bytes().into()),
                    method: None,
                    headers: Vec::new(),
                    query: Vec::new(),
                },
            };
            order += 1;
            place(
                hosts,
                candidate,
                &mut exact_hosts,
                &mut wildcard_hosts,
                &mut any_host,
            );
        }
        if !errors.is_empty() {
            return Err(ConfigError { errors });
        }
        for group in exact_hosts.values_mut() {
            group.sort();
        }
        for (_, group) in wildcard_hosts.iter_mut() {
            group.sort();
        }
        wildcard_hosts.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
        any_host.sort();
        Ok(Router {
            routes,
            exact_hosts,
            wildcard_hosts,
            any_host,
        })
    }

    /// The route for `req`, or None (the server answers 404).
    ///
    /// Hot path: no allocation here. (A regex match borrows a cached matching state from the
    /// regex's own pool, which allocates only the first time a thread uses that regex.)
    pub fn find<H: HeaderLookup>(&self, req: &RouteRequest<'_, H>) -> Option<Matched<'_>> {
        let mut buf = [0u8; MAX_HOST];
        if let Some(host) = normalize_host(req.host, &mut buf) {
            if !self.exact_hosts.is_empty() {
                if let Some(group) = self.exact_hosts.get(host) {
                    if let Some(found) = self.find_in(group, req) {
                        return Some(found);
                    }
                }
            }
            for (suffix, group) in &self.wildcard_hosts {
                if host.len() > suffix.len() && host.ends_with(suffix) {
                    if let Some(found) = self.find_in(group, req) {
                        return Some(found);
                    }
                }
            }
        }
        self.find_in(&self.any_host, req)
    }

    #[inline]
    fn find_in<H: HeaderLookup>(
        &self,
        group: &Group,
        req: &RouteRequest<'_, H>,
    ) -> Option<Matched<'_>> {
        if group.is_empty() {
            return None;
        }
        if !group.exact_paths.is_empty() {
            if let Some(list) = group.exact_paths.get(req.path) {
                for c in list {
                    if c.matcher
                        .conditions_match(req.method, req.headers, req.query)
                    {
                        let route = &self.routes[c.route];
                        return Some(Matched {
                            route,
                            prefix_len: route.strip.unwrap_or(0),
                        });
                    }
                }
            }
        }
        for c in &group.others {
            if let Some(prefix_len) = c.matcher.path.matches(req.path) {
                if c.matcher
                    .conditions_match(req.method, req.headers, req.query)
                {
                    let route = &self.routes[c.route];
                    return Some(Matched {
                        route,
                        prefix_len: route.strip.unwrap_or(prefix_len),
                    });
                }
            }
        }
        None
    }

    /// The routes in declaration order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes)
            .field("exact_hosts", &self.exact_hosts.len())
            .field("wildcard_hosts", &self.wildcard_hosts.len())
            .finish_non_exhaustive()
    }
}

/// The 404 body of a version set without a default version, listing its versions.
fn version_list(set: &crate::config::VersionSet) -> serde_json::Value {
    let versions: Vec<&str> = set.versions.iter().map(|(v, _)| v.as_str()).collect();
    let how = match set.scheme {
        crate::config::VersionScheme::Path => format!("{}/VERSION/...", set.path),
        crate::config::VersionScheme::Header => format!("the {} header", set.header),
        crate::config::VersionScheme::Query => format!("?{}=VERSION", set.query),
    };
    serde_json::json!({
        "statusCode": 404,
        "message": format!("API version required: name one of its versions with {how}"),
        "versions": versions,
    })
}

/// A route the gateway answers itself: 404 with a JSON `body`, counted under `api`.
fn not_found_route(name: String, api: &str, body: &serde_json::Value) -> Route {
    Route {
        name,
        action: Action::Respond(DirectResponse {
            status: 404,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body.to_string()),
        }),
        request_headers: HeaderEdits::default(),
        response_headers: HeaderEdits::default(),
        rewrite: None,
        pipeline: None,
        api: api.into(),
        operation: Box::default(),
        params: None,
        strip: None,
        keys: None,
        preflights_only: false,
        access_log: true,
        label: crate::control::labels::route(api, ""),
    }
}

/// Puts a candidate in the group of each of its hosts (or of any host, when it names none).
fn place(
    hosts: &[HostPattern],
    candidate: Candidate,
    exact_hosts: &mut AHashMap<Box<[u8]>, Group>,
    wildcard_hosts: &mut Vec<(Box<[u8]>, Group)>,
    any_host: &mut Group,
) {
    if hosts.is_empty() {
        any_host.push(candidate);
        return;
    }
    for host in hosts {
        let group = match host {
            HostPattern::Exact(name) => exact_hosts.entry(name.clone()).or_default(),
            HostPattern::Wildcard(suffix) => {
                match wildcard_hosts.iter().position(|(s, _)| s == suffix) {
                    Some(i) => &mut wildcard_hosts[i].1,
                    None => {
                        wildcard_hosts.push((suffix.clone(), Group::default()));
                        &mut wildcard_hosts.last_mut().expect("just pushed").1
                    }
                }
            }
        };
        group.push(candidate.clone());
    }
}

/// Host names are at most 253 bytes; a longer Host cannot match a configured host.
const MAX_HOST: usize = 256;

/// The Host value without its port and trailing dot, lowercased into `buf`. None when it is
/// too long to be a host name.
#[inline]
fn normalize_host<'b>(host: &[u8], buf: &'b mut [u8; MAX_HOST]) -> Option<&'b [u8]> {
    let name = if host.first() == Some(&b'[') {
        match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.iter().position(|&b| b == b':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    let name = name.strip_suffix(b".").unwrap_or(name);
    let out = buf.get_mut(..name.len())?;
    for (o, &b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

#[cfg(test)]
mod tests;
