//! `validate-jwt` keys fetched from a JWKS URL, or from the `jwks_uri` of an OpenID Connect
//! discovery document, and kept fresh.
//!
//! The fetching happens off the worker cores, on one thread per process ([`JwksHub::start`]):
//! every source is fetched once before the server serves (a failure stops the start), then
//! again every `refresh_interval`. A refresh that fails keeps the last good set and is logged
//! once, with the URL and the reason, until a refresh succeeds again.
//!
//! Each `validate-jwt` policy with remote keys has a **key group**: its inline keys and its
//! sources' sets merged into one [`KeySet`], published with a version number. A worker keeps
//! the group's set and version it last saw ([`LocalKeys`]); per request it compares that
//! version with the published one (one atomic load) and takes the lock only when it changed.
//! Tokens a worker verified under an older version are not answered from its token cache.
//!
//! A token whose `kid` no key has makes the worker ask for one refresh of the group's
//! sources ([`JwksHub::request_refresh`]). Asks are coalesced (any number of requests while a
//! fetch is pending or in flight wait for that one fetch) and limited (at most one asked-for
//! fetch per source every [`KID_REFRESH_INTERVAL`], against floods of made-up kids). The
//! request waits for the fetch without blocking its core: the connection polls
//! [`KeyWait::is_done`] on a timer for at most [`KID_WAIT`], then verifies once more.

use std::cell::{Ref, RefCell};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use serde_json::Value;

use super::fetch::{self, Url};
use super::jwt::KeySet;

/// `refresh_interval` when none is given.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
const MIN_REFRESH: Duration = Duration::from_secs(1);
const MAX_REFRESH: Duration = Duration::from_secs(7 * 24 * 3600);
/// The least time between two fetches of one source asked for by unknown kids.
pub const KID_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// How long a request with an unknown kid waits for the refresh it asked for.
pub const KID_WAIT: Duration = Duration::from_millis(2500);
/// How often a waiting request looks whether the refresh is done.
pub const KID_POLL: Duration = Duration::from_millis(5);
/// After a failed refresh the next try comes this soon (or at the interval, when shorter).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// One place keys are fetched from.
#[derive(Clone, Debug)]
pub struct SourceDef {
    pub url: Url,
    /// `url` is an OpenID Connect discovery document; the keys are at its `jwks_uri`.
    pub discovery: bool,
    pub refresh: Duration,
    /// The roots trusted for https (`ca_file`); `None`: the system's.
    pub roots: Option<Vec<CertificateDer<'static>>>,
    /// Where it was declared, for messages (`apis[0]...keys[0].jwks_url`).
    pub origin: String,
}

impl SourceDef {
    /// Checks one `keys` entry that names a URL (`jwks_url`, or with `discovery`,
    /// `openid_config_url`). `kpath` is the entry's path; errors come as (path, message).
    pub fn from_config(
        kpath: &str,
        url: &str,
        discovery: bool,
        refresh: Option<Duration>,
        ca_file: Option<&Path>,
        kid: bool,
    ) -> Result<SourceDef, Vec<(String, String)>> {
        let field = if discovery {
            "openid_config_url"
        } else {
            "jwks_url"
        };
        let mut errors = Vec::new();
        let parsed = Url::parse(url).map_err(|e| errors.push((format!("{kpath}.{field}"), e)));
        if kid {
            errors.push((
                format!("{kpath}.kid"),
                "a fetched JWK set names its own keys; kid goes with pem_file, pem or secret"
                    .to_string(),
            ));
        }
        let refresh = refresh.unwrap_or(DEFAULT_REFRESH);
        if !(MIN_REFRESH..=MAX_REFRESH).contains(&refresh) {
            errors.push((
                format!("{kpath}.refresh_interval"),
                "must be from 1s to 168h".to_string(),
            ));
        }
        let mut roots = None;
        if let Some(file) = ca_file {
            let path = format!("{kpath}.ca_file");
            if matches!(&parsed, Ok(u) if !u.https && !discovery) {
                errors.push((path, "a CA bundle is for https URLs".to_string()));
            } else {
                match std::fs::read(file) {
                    Err(e) => errors.push((path, format!("cannot read {}: {e}", file.display()))),
                    Ok(pem) => match fetch::pem_certificates(&pem) {
                        Ok(certs) => roots = Some(certs),
                        Err(e) => errors.push((path, format!("{}: {e}", file.display()))),
                    },
                }
            }
        }
        match parsed {
            Ok(url) if errors.is_empty() => Ok(SourceDef {
                url,
                discovery,
                refresh,
                roots,
                origin: format!("{kpath}.{field}"),
            }),
            _ => Err(errors),
        }
    }
}

/// The key groups and their sources, as compiled from the configuration.
#[derive(Clone, Debug, Default)]
pub struct JwksTables {
    pub sources: Vec<SourceDef>,
    pub groups: Vec<GroupDef>,
}

/// One policy's keys: its inline ones, and the sources whose sets join them.
#[derive(Clone, Debug)]
pub struct GroupDef {
    pub keys: KeySet,
    pub sources: Vec<usize>,
}

impl JwksTables {
    /// Adds a policy's key group; returns its index. A source declared before (the same URL,
    /// kind and CA bundle) is shared, fetched once, at the shortest interval asked for.
    pub fn add_group(&mut self, keys: KeySet, sources: Vec<SourceDef>) -> usize {
        let mut indices = Vec::new();
        for def in sources {
            let same = self.sources.iter().position(|s| {
                s.url == def.url && s.discovery == def.discovery && s.roots == def.roots
            });
            let index = match same {
                Some(i) => {
                    let s = &mut self.sources[i];
                    s.refresh = s.refresh.min(def.refresh);
                    i
                }
                None => {
                    self.sources.push(def);
                    self.sources.len() - 1
                }
            };
            if !indices.contains(&index) {
                indices.push(index);
            }
        }
        self.groups.push(GroupDef {
            keys,
            sources: indices,
        });
        self.groups.len() - 1
    }
}

/// The process's fetched keys: what workers read, and what the fetcher thread is asked.
pub struct JwksHub {
    sources: Vec<SourceDef>,
    /// Fetches finished, good or bad, per source: what a waiting request watches.
    done: Vec<AtomicU64>,
    groups: Vec<Group>,
    signal: Arc<Signal>,
}

struct Group {
    def: GroupDef,
    /// Bumped, under `keys`'s lock, each time a new set is published.
    version: AtomicU64,
    keys: Mutex<Arc<KeySet>>,
}

/// The fetcher thread's inbox.
struct Signal {
    asks: Mutex<Asks>,
    wake: Condvar,
}

struct Asks {
    stop: bool,
    sources: Vec<Ask>,
}

#[derive(Clone, Copy, Default)]
struct Ask {
    /// A fetch was asked for and has not begun.
    pending: bool,
    in_flight: bool,
    /// When an unknown kid last asked for a fetch.
    last_kid: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl JwksHub {
    /// The groups with their inline keys only; nothing is fetched until [`JwksHub::start`].
    pub fn new(tables: &JwksTables) -> Arc<JwksHub> {
        Arc::new(JwksHub {
            sources: tables.sources.clone(),
            done: tables.sources.iter().map(|_| AtomicU64::new(0)).collect(),
            groups: tables
                .groups
                .iter()
                .map(|def| Group {
                    keys: Mutex::new(Arc::new(def.keys.clone())),
                    def: def.clone(),
                    version: AtomicU64::new(0),
                })
                .collect(),
            signal: Arc::new(Signal {
                asks: Mutex::new(Asks {
                    stop: false,
                    sources: vec![Ask::default(); tables.sources.len()],
                }),
                wake: Condvar::new(),
            }),
        })
    }

    /// Fetches every source once, on this thread, then starts the thread that refreshes them.
    /// The error names the source's place in the configuration, its URL and what went wrong.
    pub fn start(self: &Arc<Self>) -> Result<(), String> {
        if self.sources.is_empty() {
            return Ok(());
        }
        let mut fetcher = Fetcher {
            hub: Arc::downgrade(self),
            signal: Arc::clone(&self.signal),
            state: self.sources.iter().map(|_| Fetched::default()).collect(),
            system_roots: None,
            limits: fetch::Limits::default(),
        };
        for (s, def) in self.sources.iter().enumerate() {
            if !def.url.https {
                log::warn!(
                    "{}: signing keys come over plain http from {}; use https",
                    def.origin,
                    def.url
                );
            }
            fetcher.refresh(self, s).map_err(|why| {
                format!(
                    "{}: cannot fetch signing keys from {}: {why}",
                    def.origin, def.url
                )
            })?;
            self.done[s].fetch_add(1, Ordering::Release);
            fetcher.state[s].next = Instant::now() + def.refresh;
        }
        std::thread::Builder::new()
            .name("ringway-jwks".into())
            .spawn(move || fetcher.run())
            .map_err(|e| format!("cannot start the key fetcher thread: {e}"))?;
        Ok(())
    }

    /// The group's set and its version.
    fn current(&self, g: usize) -> KeysNow {
        let group = &self.groups[g];
        let keys = lock(&group.keys);
        KeysNow {
            version: group.version.load(Ordering::Acquire),
            keys: Arc::clone(&keys),
        }
    }

    /// Asks for a refresh of group `g`'s sources, for a token whose kid no key has. `None`
    /// when none may be fetched now (each was fetched for a kid less than
    /// [`KID_REFRESH_INTERVAL`] ago); else what to wait for.
    pub fn request_refresh(self: &Arc<Self>, g: usize, now: Instant) -> Option<KeyWait> {
        let mut asks = lock(&self.signal.asks);
        if asks.stop {
            return None;
        }
        let mut targets = Vec::new();
        let mut woke = false;
        for &s in &self.groups[g].def.sources {
            let ask = &mut asks.sources[s];
            // The fetcher counts a fetch done under this lock: the next one to finish is
            // the pending or running one, or the one asked for here.
            let next = self.done[s].load(Ordering::Acquire) + 1;
            if ask.pending || ask.in_flight {
                targets.push((s, next));
            } else if ask
                .last_kid
                .is_none_or(|t| now.saturating_duration_since(t) >= KID_REFRESH_INTERVAL)
            {
                ask.pending = true;
                ask.last_kid = Some(now);
                woke = true;
                targets.push((s, next));
            }
        }
        drop(asks);
        if woke {
            self.signal.wake.notify_one();
        }
        (!targets.is_empty()).then(|| KeyWait {
            hub: Arc::clone(self),
            targets,
        })
    }
}

impl Drop for JwksHub {
    fn drop(&mut self) {
        lock(&self.signal.asks).stop = true;
        self.signal.wake.notify_all();
    }
}

/// A group's set as published, with its version.
pub struct KeysNow {
    pub version: u64,
    pub keys: Arc<KeySet>,
}

/// A request's wait for the refreshes its unknown kid asked for.
pub struct KeyWait {
    hub: Arc<JwksHub>,
    targets: Vec<(usize, u64)>,
}

impl KeyWait {
    /// Every fetch waited for has finished (whether it found new keys or failed).
    pub fn is_done(&self) -> bool {
        self.targets
            .iter()
            .all(|&(s, n)| self.hub.done[s].load(Ordering::Acquire) >= n)
    }
}

/// One worker's view of the groups: each set and version it last took.
pub struct LocalKeys {
    hub: Arc<JwksHub>,
    groups: Vec<RefCell<KeysNow>>,
}

impl LocalKeys {
    pub fn new(hub: &Arc<JwksHub>) -> LocalKeys {
        LocalKeys {
            hub: Arc::clone(hub),
            groups: (0..hub.groups.len())
                .map(|g| RefCell::new(hub.current(g)))
                .collect(),
        }
    }

    /// Group `g`'s current set: this worker's copy, unless a newer one was published.
    pub fn current(&self, g: usize) -> Ref<'_, KeysNow> {
        let published = self.hub.groups[g].version.load(Ordering::Acquire);
        if self.groups[g].borrow().version != published {
            *self.groups[g].borrow_mut() = self.hub.current(g);
        }
        self.groups[g].borrow()
    }

    /// See [`JwksHub::request_refresh`].
    pub fn request_refresh(&self, g: usize, now: Instant) -> Option<KeyWait> {
        self.hub.request_refresh(g, now)
    }
}

/// The fetcher thread's own state.
struct Fetcher {
    hub: Weak<JwksHub>,
    signal: Arc<Signal>,
    state: Vec<Fetched>,
    /// The TLS configuration with the system's roots, made once when first needed.
    system_roots: Option<Arc<rustls::ClientConfig>>,
    limits: fetch::Limits,
}

struct Fetched {
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The last good document and its keys.
    body: Option<Vec<u8>>,
    keys: Option<KeySet>,
    /// The last refresh failed (and was logged).
    failing: bool,
    next: Instant,
}

impl Default for Fetched {
    fn default() -> Fetched {
        Fetched {
            tls: None,
            body: None,
            keys: None,
            failing: false,
            next: Instant::now(),
        }
    }
}

impl Fetcher {
    fn run(mut self) {
        while let Some(due) = self.wait_for_work() {
            let Some(hub) = self.hub.upgrade() else {
                return;
            };
            for s in due {
                let result = self.refresh(&hub, s);
                let def = &hub.sources[s];
                let state = &mut self.state[s];
                match result {
                    Ok(_) => {
                        if state.failing {
                            log::info!(
                                "{}: signing keys fetched from {} again",
                                def.origin,
                                def.url
                            );
                        }
                        state.failing = false;
                        state.next = Instant::now() + def.refresh;
                    }
                    Err(why) => {
                        if state.failing {
                            log::debug!("{}: {}: {why}", def.origin, def.url);
                        } else {
                            log::warn!(
                                "{}: cannot refresh signing keys from {}: {why}; keeping the \
                                 last good set",
                                def.origin,
                                def.url
                            );
                        }
                        state.failing = true;
                        state.next = Instant::now() + def.refresh.min(RETRY_AFTER_FAILURE);
                    }
                }
                let mut asks = lock(&self.signal.asks);
                asks.sources[s].in_flight = false;
                hub.done[s].fetch_add(1, Ordering::Release);
            }
        }
    }

    /// The sources to fetch now, marked in flight; `None` when the hub is gone.
    fn wait_for_work(&self) -> Option<Vec<usize>> {
        let mut asks = lock(&self.signal.asks);
        loop {
            if asks.stop {
                return None;
            }
            let now = Instant::now();
            let due: Vec<usize> = (0..self.state.len())
                .filter(|&s| asks.sources[s].pending || self.state[s].next <= now)
                .collect();
            if !due.is_empty() {
                for &s in &due {
                    asks.sources[s].pending = false;
                    asks.sources[s].in_flight = true;
                }
                return Some(due);
            }
            let next = self.state.iter().map(|f| f.next).min().expect("a source");
            asks = self
                .signal
                .wake
                .wait_timeout(asks, next.saturating_duration_since(now))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Fetches source `s`; when its set changed, publishes every group that has it.
    fn refresh(&mut self, hub: &JwksHub, s: usize) -> Result<(), String> {
        let def = &hub.sources[s];
        let body = self.download(def, s)?;
        if self.state[s].body.as_deref() == Some(&body[..]) {
            return Ok(());
        }
        let keys = KeySet::from_jwks_json(&body)?;
        for note in keys.notes() {
            log::warn!("{}: {}: {note}", def.origin, def.url);
        }
        if keys.is_empty() {
            return Err("the JWK set has no signing key this gateway can use".into());
        }
        log::info!(
            "{}: {} signing key(s) from {}",
            def.origin,
            keys.len(),
            def.url
        );
        self.state[s].body = Some(body);
        self.state[s].keys = Some(keys);
        for (g, group) in hub.groups.iter().enumerate() {
            if group.def.sources.contains(&s) {
                self.publish(hub, g);
            }
        }
        Ok(())
    }

    /// Group `g`'s inline keys and its sources' last good sets, as one new version.
    fn publish(&self, hub: &JwksHub, g: usize) {
        let group = &hub.groups[g];
        let mut keys = group.def.keys.clone();
        for &s in &group.def.sources {
            if let Some(set) = &self.state[s].keys {
                keys.merge(set.clone());
            }
        }
        let mut current = lock(&group.keys);
        *current = Arc::new(keys);
        group.version.fetch_add(1, Ordering::Release);
    }

    /// The JWK set document of `def`: at its URL, or at its discovery document's `jwks_uri`.
    fn download(&mut self, def: &SourceDef, s: usize) -> Result<Vec<u8>, String> {
        if !def.discovery {
            return self.get(def, s, &def.url);
        }
        let doc = self.get(def, s, &def.url)?;
        let doc: Value = serde_json::from_slice(&doc)
            .map_err(|e| format!("the discovery document is not JSON: {e}"))?;
        let uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or("the discovery document has no jwks_uri")?;
        let jwks = Url::parse(uri).map_err(|e| format!("its jwks_uri: {e}"))?;
        if def.url.https && !jwks.https {
            return Err(format!(
                "its jwks_uri {uri} is not https, while the discovery document is"
            ));
        }
        self.get(def, s, &jwks)
            .map_err(|e| format!("jwks_uri {jwks}: {e}"))
    }

    fn get(&mut self, def: &SourceDef, s: usize, url: &Url) -> Result<Vec<u8>, String> {
        let tls = if url.https {
            Some(self.tls(def, s)?)
        } else {
            None
        };
        fetch::get(url, tls.as_ref(), self.limits)
    }

    fn tls(&mut self, def: &SourceDef, s: usize) -> Result<Arc<rustls::ClientConfig>, String> {
        if let Some(tls) = &self.state[s].tls {
            return Ok(Arc::clone(tls));
        }
        let tls = match (&def.roots, &self.system_roots) {
            (Some(roots), _) => fetch::tls_config(Some(roots))?,
            (None, Some(system)) => Arc::clone(system),
            (None, None) => {
                let system = fetch::tls_config(None)?;
                self.system_roots = Some(Arc::clone(&system));
                system
            }
        };
        self.state[s].tls = Some(Arc::clone(&tls));
        Ok(tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicUsize;

    const JWKS: &str = include_str!("testdata/jwks.json");

    fn load(policy_keys: &str, dir: &Path) -> Result<crate::config::Config, Vec<String>> {
        let text = format!(
            "listeners: [{{ address: 127.0.0.1:8080 }}]\n\
             backends: [{{ name: b, targets: [{{ url: http://127.0.0.1:9000 }}] }}]\n\
             routes: [{{ name: all, backend: b }}]\n\
             policies:\n  inbound:\n{policy_keys}"
        );
        let source = dir.join("gateway.yaml");
        crate::config::load_str(&text, source.to_str().unwrap(), &|_| None).map_err(|e| e.errors)
    }

    fn one_policy(keys: &str) -> String {
        format!("    - validate-jwt: {{ algorithms: [RS256], keys: [{keys}] }}\n")
    }

    fn the_error(keys: &str) -> String {
        let errors = load(&one_policy(keys), Path::new("/nonexistent")).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        errors.into_iter().next().unwrap()
    }

    #[test]
    fn config_errors_name_their_path() {
        let at = "policies.inbound[0].validate-jwt.keys[0]";
        for (keys, path, says) in [
            ("{ jwks_url: ftp://idp.example/keys }", "jwks_url", "http"),
            (
                "{ openid_config_url: idp.example }",
                "openid_config_url",
                "http",
            ),
            (
                "{ jwks_url: \"https://u:p@idp.example/\" }",
                "jwks_url",
                "password",
            ),
            (
                "{ jwks_url: https://idp.example/, secret: 0123456789abcdef0123456789abcdef }",
                "",
                "exactly one of",
            ),
            (
                "{ jwks_url: https://idp.example/, openid_config_url: https://idp.example/c }",
                "",
                "exactly one of",
            ),
            (
                "{ jwks_url: https://idp.example/, kid: a }",
                "kid",
                "names its own keys",
            ),
            (
                "{ jwks_url: https://idp.example/, refresh_interval: 0s }",
                "refresh_interval",
                "1s to 168h",
            ),
            (
                "{ jwks_url: https://idp.example/, refresh_interval: 200h }",
                "refresh_interval",
                "168h",
            ),
            (
                "{ jwks_url: https://idp.example/, ca_file: missing.pem }",
                "ca_file",
                "cannot read /nonexistent/missing.pem",
            ),
            (
                "{ jwks_url: http://idp.example/, ca_file: ca.pem }",
                "ca_file",
                "https",
            ),
            (
                "{ secret: 0123456789abcdef0123456789abcdef, refresh_interval: 1h }",
                "",
                "go with jwks_url",
            ),
        ] {
            let e = the_error(keys);
            let path = if path.is_empty() {
                format!("{at}: ")
            } else {
                format!("{at}.{path}")
            };
            assert!(e.contains(&path) && e.contains(says), "{keys}: {e}");
        }
    }

    #[test]
    fn sources_are_shared_by_url() {
        let dir = std::env::temp_dir().join(format!("ringway-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("bad.pem"), "not a certificate").unwrap();
        let policies = [
            one_policy("{ jwks_url: https://idp.example/keys }"),
            one_policy(
                "{ jwks_url: https://idp.example/keys, refresh_interval: 5m }, \
                 { openid_config_url: https://idp.example/.well-known/openid-configuration, \
                   ca_file: ca.pem }, \
                 { jwks_url: https://idp.example/keys }",
            ),
            one_policy("{ jwks_url: https://idp.example/keys, ca_file: ca.pem }"),
        ]
        .concat();
        let config = load(&policies, &dir).unwrap();
        let t = &config.policy_tables.jwks;
        assert_eq!(t.sources.len(), 3, "{:#?}", t.sources);
        assert_eq!(t.sources[0].refresh, Duration::from_secs(300));
        assert!(t.sources[1].discovery && t.sources[1].roots.as_ref().unwrap().len() == 1);
        assert_eq!(t.sources[2].refresh, DEFAULT_REFRESH);
        assert_eq!(
            t.sources[1].origin,
            "policies.inbound[1].validate-jwt.keys[1].openid_config_url"
        );
        let groups: Vec<_> = t.groups.iter().map(|g| g.sources.clone()).collect();
        assert_eq!(groups, [vec![0], vec![0, 1], vec![2]]);

        let e = load(
            &one_policy("{ jwks_url: https://idp.example/keys, ca_file: bad.pem }"),
            &dir,
        )
        .unwrap_err();
        assert!(
            e[0].contains("keys[0].ca_file") && e[0].contains("certificate"),
            "{e:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A JWK set server on loopback: `(status, body)` can be changed; counts its answers.
    struct Server {
        url: String,
        answer: Arc<Mutex<(u16, String)>>,
        fetches: Arc<AtomicUsize>,
    }

    impl Server {
        fn start(body: &str) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}/jwks", listener.local_addr().unwrap());
            let answer = Arc::new(Mutex::new((200, body.to_string())));
            let fetches = Arc::new(AtomicUsize::new(0));
            let (a, f) = (Arc::clone(&answer), Arc::clone(&fetches));
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    let mut conn = conn.unwrap();
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let (status, body) = a.lock().unwrap().clone();
                    // Slow enough that requests pile up while it is in flight.
                    std::thread::sleep(Duration::from_millis(50));
                    f.fetch_add(1, Ordering::SeqCst);
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
            Server {
                url,
                answer,
                fetches,
            }
        }

        fn fetches(&self) -> usize {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    fn only(kids: &[&str]) -> String {
        let set: Value = serde_json::from_str(JWKS).unwrap();
        let keys: Vec<&Value> = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| kids.contains(&k["kid"].as_str().unwrap()))
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }

    fn hub_for(url: &str, inline: KeySet) -> Arc<JwksHub> {
        let mut tables = JwksTables::default();
        let source = SourceDef::from_config("k", url, false, None, None, false).unwrap();
        tables.add_group(inline, vec![source]);
        JwksHub::new(&tables)
    }

    fn wait(w: &KeyWait) {
        let started = Instant::now();
        while !w.is_done() {
            assert!(started.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn unknown_kids_ask_for_one_coalesced_refresh() {
        let server = Server::start(&only(&["rsa-1"]));
        let inline = KeySet::from_hmac_secret(b"0123456789abcdef0123456789abcdef").with_kid("hs");
        let hub = hub_for(&server.url, inline);
        let (a, b) = (LocalKeys::new(&hub), LocalKeys::new(&hub));
        assert!(!a.current(0).keys.has_kid("rsa-1"), "nothing fetched yet");
        hub.start().unwrap();
        assert_eq!(server.fetches(), 1);
        let first = a.current(0).version;
        assert!(a.current(0).keys.has_kid("rsa-1") && a.current(0).keys.has_kid("hs"));

        server.answer.lock().unwrap().1 = only(&["rsa-1", "ec-1"]);
        let now = Instant::now();
        let waits: Vec<KeyWait> = (0..20)
            .map(|i| if i % 2 == 0 { &a } else { &b })
            .map(|w| w.request_refresh(0, now).expect("a refresh to wait for"))
            .collect();
        waits.iter().for_each(wait);
        assert_eq!(server.fetches(), 2, "twenty asks, one fetch");
        let current = b.current(0);
        assert!(current.version > first);
        assert!(current.keys.has_kid("ec-1") && current.keys.has_kid("hs"));
        drop(current);

        // Within the interval, another made-up kid gets no fetch.
        assert!(a.request_refresh(0, now + Duration::from_secs(9)).is_none());
        // After it, one more; an unchanged set keeps its version.
        let version = a.current(0).version;
        wait(&a.request_refresh(0, now + KID_REFRESH_INTERVAL).unwrap());
        assert_eq!(server.fetches(), 3);
        assert_eq!(a.current(0).version, version);
    }

    #[test]
    fn failed_refreshes_keep_the_last_good_set() {
        let server = Server::start(&only(&["rsa-1"]));
        let hub = hub_for(&server.url, KeySet::default());
        let local = LocalKeys::new(&hub);
        hub.start().unwrap();
        let version = local.current(0).version;
        let mut at = Instant::now();
        for bad in [
            (500, only(&["ec-1"])),
            (
                200,
                "{\"keys\": [{\"kty\": \"oct\", \"k\": \"AAAA\"}]}".to_string(),
            ),
            (200, "not json".to_string()),
        ] {
            *server.answer.lock().unwrap() = bad;
            wait(&local.request_refresh(0, at).unwrap());
            at += KID_REFRESH_INTERVAL;
            let current = local.current(0);
            assert_eq!(current.version, version);
            assert!(current.keys.has_kid("rsa-1") && !current.keys.has_kid("ec-1"));
        }
        assert_eq!(server.fetches(), 4);
    }

    #[test]
    fn the_start_fails_with_the_place_the_url_and_the_reason() {
        let server = Server::start("");
        *server.answer.lock().unwrap() = (404, String::new());
        let hub = hub_for(&server.url, KeySet::default());
        let e = hub.start().unwrap_err();
        assert!(
            e.starts_with("k.jwks_url: cannot fetch signing keys from ")
                && e.contains(&server.url)
                && e.contains("404"),
            "{e}"
        );
        *server.answer.lock().unwrap() = (200, "{\"keys\": []}".to_string());
        let e = hub_for(&server.url, KeySet::default()).start().unwrap_err();
        assert!(e.contains("no signing key"), "{e}");
    }

    #[test]
    fn the_fetcher_stops_with_its_hub() {
        let server = Server::start(&only(&["rsa-1"]));
        let hub = hub_for(&server.url, KeySet::default());
        hub.start().unwrap();
        let signal = Arc::clone(&hub.signal);
        drop(hub);
        assert!(lock(&signal.asks).stop);
    }
}
