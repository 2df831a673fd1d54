//! What to connect to, from the configuration: one server, a master watched by Sentinels, or
//! a Redis Cluster, with the credentials, timeouts and TLS that apply to all of them.
//!
//! ```text
//! redis://[[user]:password@]host[:port][/db]              one server (port 6379)
//! rediss://...                                            the same over TLS
//! redis+sentinel://[password@]h1:p1,h2:p2,.../MASTER[/db] the master Sentinels name (port 26379)
//! redis+cluster://[[user]:password@]h1:p1,h2:p2,...       a Redis Cluster, from seed nodes
//! rediss+sentinel://, rediss+cluster://                   the same over TLS
//! ```
//!
//! A user-info part without a colon is a password (`redis://secret@host`), as Redis had only
//! passwords before ACLs. Percent-escapes are decoded in user names and passwords. The
//! password authenticates to the data nodes (a Sentinel setup's master, a cluster's nodes);
//! Sentinels themselves get [`RedisSettings::sentinel_password`] if it is set.
//!
//! Parsing reads no files but the TLS CA file, and resolves no names: host names are resolved
//! when a connection is made, so a name that moves is followed.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use super::resp::{self, Value};

const DEFAULT_PORT: u16 = 6379;
const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// A node's address as configured or as a server named it: a host (name or IP) and a port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn new(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
        }
    }

    /// `host:port`, `[v6]:port` or `host` (then `default_port`).
    fn parse(text: &str, default_port: u16) -> Result<Endpoint, String> {
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("{text:?}: an IPv6 address without its closing ']'"))?;
            match after {
                "" => (host, None),
                _ => match after.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None => return Err(format!("{text:?}: expected ':port' after ']'")),
                },
            }
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) if !host.contains(':') => (host, Some(port)),
                Some(_) => {
                    return Err(format!(
                        "{text:?}: write an IPv6 address in brackets, [addr]:port"
                    ))
                }
                None => (text, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{text:?}: no host"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        {
            return Err(format!("{text:?}: {host:?} is not a host name or address"));
        }
        let port = match port {
            None => default_port,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => {
                    return Err(format!(
                        "{text:?}: the port {p:?} is not a number in 1-65535"
                    ))
                }
            },
        };
        Ok(Endpoint::new(host, port))
    }

    /// The address when the host is an IP address (no lookup needed).
    pub fn ip_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }

    /// The addresses, looking the name up if it is one (this blocks; see the async client for
    /// how a worker avoids that). A connection tries them in order.
    pub fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        if let Some(addr) = self.ip_addr() {
            return Ok(vec![addr]);
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} resolved to no address", self.host),
            ));
        }
        Ok(addrs)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The shape of the deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One server.
    Single(Endpoint),
    /// The master that these Sentinels know as `master`.
    Sentinel {
        sentinels: Vec<Endpoint>,
        master: String,
    },
    /// A Redis Cluster, found from any of these nodes.
    Cluster { seeds: Vec<Endpoint> },
}

/// TLS to every node: the roots to trust (a CA file, or the system's) in a client config
/// built once and shared.
#[derive(Clone)]
pub struct RedisTls {
    pub ca_file: Option<PathBuf>,
    config: Arc<ClientConfig>,
}

impl RedisTls {
    /// Reads `ca_file` (PEM), or the system's roots when it is `None`.
    pub fn new(ca_file: Option<&Path>) -> Result<RedisTls, String> {
        let spec = crate::tls::UpstreamTlsSpec {
            ca: ca_file.map(Path::to_path_buf),
            sni: None,
            verify: true,
            client_cert: None,
            client_key: None,
            tls13_only: false,
        };
        let upstream = crate::tls::UpstreamTls::build(spec)?;
        let mut config = (*upstream.config).clone();
        // The upstream config offers HTTP/1.1; Redis negotiates no application protocol.
        config.alpn_protocols.clear();
        Ok(RedisTls {
            ca_file: ca_file.map(Path::to_path_buf),
            config: Arc::new(config),
        })
    }

    pub(crate) fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// The name `host` is verified as: an IP address or a DNS name.
    pub(crate) fn server_name(host: &str) -> std::io::Result<ServerName<'static>> {
        ServerName::try_from(host.to_string()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host:?} is not a TLS server name: {e}"),
            )
        })
    }
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

impl PartialEq for RedisTls {
    fn eq(&self, other: &RedisTls) -> bool {
        self.ca_file == other.ca_file
    }
}

impl Eq for RedisTls {}

/// Everything a client needs to reach Redis. Made by [`RedisSettings::parse`] with defaults
/// for what a URL does not say; the fields are public so a configuration can set the rest.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub target: Target,
    /// Set for `rediss` schemes.
    pub tls: Option<RedisTls>,
    /// The ACL user (`AUTH user password`); None: `AUTH password`.
    pub username: Option<String>,
    /// Shown as `<redacted>` by `Debug`.
    pub password: Option<String>,
    /// Sent to Sentinels (`AUTH`), which have their own; shown as `<redacted>`.
    pub sentinel_password: Option<String>,
    /// `SELECT`ed on connect when not 0 (a cluster has only 0).
    pub db: u32,
    /// For the TCP connect, TLS handshake and AUTH/SELECT together.
    pub connect_timeout: Duration,
    /// For one call: from the call until its reply, redirects and discovery included.
    pub command_timeout: Duration,
    /// Connections per node, per core (async client).
    pub pool_size: usize,
    /// Commands that may wait on one connection; one more is refused (`Unavailable`).
    pub max_in_flight: usize,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |p: &Option<String>| p.as_ref().map(|_| "<redacted>");
        f.debug_struct("RedisSettings")
            .field("target", &self.target)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("sentinel_password", &redact(&self.sentinel_password))
            .field("db", &self.db)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("pool_size", &self.pool_size)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

/// Errors say where they come from, as the configuration names it.
fn err(what: impl fmt::Display) -> String {
    format!("cluster.redis: {what}")
}

impl RedisSettings {
    /// Settings for `url` (see the module's documentation for the forms), with default
    /// timeouts (connect 1 s, command 500 ms), one connection per node and core, and at most
    /// 1,024 commands waiting per connection. `tls_ca_file` is the CA to trust for a
    /// `rediss` URL instead of the system's roots; giving one with a plain URL is an error.
    pub fn parse(url: &str, tls_ca_file: Option<&Path>) -> Result<RedisSettings, String> {
        const SCHEMES: &str =
            "redis://, rediss://, redis+sentinel://, rediss+sentinel://, redis+cluster:// or rediss+cluster://";
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| err(format!("url {url:?}: expected {SCHEMES}")))?;
        let (tls, kind) = match scheme.to_ascii_lowercase().as_str() {
            "redis" => (false, ""),
            "rediss" => (true, ""),
            "redis+sentinel" => (false, "sentinel"),
            "rediss+sentinel" => (true, "sentinel"),
            "redis+cluster" => (false, "cluster"),
            "rediss+cluster" => (true, "cluster"),
            other => {
                return Err(err(format!(
                    "url {url:?}: unknown scheme {other:?}; expected {SCHEMES}"
                )))
            }
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(err(format!(
                "url {url:?}: query parameters are not read; set timeouts and TLS in the configuration"
            )));
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (user, pass) = match u.split_once(':') {
                    Some((user, pass)) => (user, pass),
                    None => ("", u),
                };
                let decode = |s: &str, what: &str| {
                    percent_decode(s).ok_or_else(|| {
                        err(format!(
                            "url {}: the {what} has a bad %-escape",
                            redacted(url)
                        ))
                    })
                };
                let user = (!user.is_empty())
                    .then(|| decode(user, "user name"))
                    .transpose()?;
                let pass = (!pass.is_empty())
                    .then(|| decode(pass, "password"))
                    .transpose()?;
                (user, pass)
            }
        };
        let default_port = if kind == "sentinel" {
            DEFAULT_SENTINEL_PORT
        } else {
            DEFAULT_PORT
        };
        let endpoints = hosts
            .split(',')
            .map(|h| Endpoint::parse(h.trim(), default_port))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("url {}: {e}", redacted(url))))?;
        let mut path = path.split('/').filter(|s| !s.is_empty());
        let parse_db = |s: Option<&str>| -> Result<u32, String> {
            match s {
                None => Ok(0),
                Some(db) => db.parse::<u32>().map_err(|_| {
                    err(format!(
                        "url {}: the database {db:?} is not a number",
                        redacted(url)
                    ))
                }),
            }
        };
        let (target, db) = match kind {
            "sentinel" => {
                let master = path.next().ok_or_else(|| {
                    err(format!(
                        "url {}: no master name; write redis+sentinel://host:port,.../MASTER_NAME",
                        redacted(url)
                    ))
                })?;
                let db = parse_db(path.next())?;
                let target = Target::Sentinel {
                    sentinels: endpoints,
                    master: master.to_string(),
                };
                (target, db)
            }
            "cluster" => {
                let db = parse_db(path.next())?;
                if db != 0 {
                    return Err(err(format!(
                        "url {}: a Redis Cluster has only database 0",
                        redacted(url)
                    )));
                }
                (Target::Cluster { seeds: endpoints }, 0)
            }
            _ => {
                if endpoints.len() > 1 {
                    return Err(err(format!(
                        "url {}: several hosts; use redis+sentinel:// or redis+cluster:// for more than one",
                        redacted(url)
                    )));
                }
                let db = parse_db(path.next())?;
                (
                    Target::Single(endpoints.into_iter().next().expect("one")),
                    db,
                )
            }
        };
        if let Some(extra) = path.next() {
            return Err(err(format!(
                "url {}: unexpected {extra:?} at the end of the path",
                redacted(url)
            )));
        }
        let tls = match (tls, tls_ca_file) {
            (true, ca) => Some(RedisTls::new(ca).map_err(|e| err(format!("tls: {e}")))?),
            (false, Some(ca)) => {
                return Err(err(format!(
                    "tls_ca_file {} is set but the url is not TLS; use rediss://",
                    ca.display()
                )))
            }
            (false, None) => None,
        };
        let settings = RedisSettings {
            target,
            tls,
            username,
            password,
            sentinel_password: None,
            db,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(500),
            pool_size: 1,
            max_in_flight: 1024,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the fields a configuration may have set after parsing.
    pub fn validate(&self) -> Result<(), String> {
        if self.connect_timeout.is_zero() || self.command_timeout.is_zero() {
            return Err(err(
                "connect_timeout and command_timeout must be above zero",
            ));
        }
        if !(1..=64).contains(&self.pool_size) {
            return Err(err(format!("pool_size {} is not in 1-64", self.pool_size)));
        }
        if !(1..=65_536).contains(&self.max_in_flight) {
            return Err(err(format!(
                "max_in_flight {} is not in 1-65536",
                self.max_in_flight
            )));
        }
        if self.username.is_some() && self.password.is_none() {
            return Err(err("a user name needs a password"));
        }
        match &self.target {
            Target::Sentinel { master, .. } if master.is_empty() => {
                Err(err("the Sentinel master name is empty"))
            }
            Target::Cluster { .. } if self.db != 0 => {
                Err(err("a Redis Cluster has only database 0"))
            }
            _ => Ok(()),
        }
    }

    /// The commands sent on every new connection before any other, and how many replies they
    /// bring: `AUTH` when there is a password, `SELECT` when the database is not 0. RESP2 is
    /// kept (no `HELLO`): it is what every server version speaks, and its reply shapes are the
    /// ones the clients read.
    pub(crate) fn handshake(&self, role: Role) -> Handshake {
        let mut bytes = Vec::new();
        let mut replies = 0;
        let (user, password) = match role {
            Role::Data => (self.username.as_deref(), self.password.as_deref()),
            Role::Sentinel => (None, self.sentinel_password.as_deref()),
        };
        match (user, password) {
            (Some(user), Some(pass)) => {
                resp::encode_command(&mut bytes, &[b"AUTH", user.as_bytes(), pass.as_bytes()]);
                replies += 1;
            }
            (None, Some(pass)) => {
                resp::encode_command(&mut bytes, &[b"AUTH", pass.as_bytes()]);
                replies += 1;
            }
            _ => {}
        }
        if role == Role::Data && self.db != 0 {
            let mut digits = [0; 20];
            let db = resp::fmt_u64(&mut digits, u64::from(self.db));
            resp::encode_command(&mut bytes, &[b"SELECT", db]);
            replies += 1;
        }
        Handshake { bytes, replies }
    }
}

/// A client's settings with its handshakes encoded once, shared by its connections.
#[derive(Debug)]
pub(crate) struct Setup {
    pub settings: RedisSettings,
    data: Handshake,
    sentinel: Handshake,
}

impl Setup {
    pub fn new(settings: &RedisSettings) -> Setup {
        Setup {
            settings: settings.clone(),
            data: settings.handshake(Role::Data),
            sentinel: settings.handshake(Role::Sentinel),
        }
    }

    pub fn handshake(&self, role: Role) -> &Handshake {
        match role {
            Role::Data => &self.data,
            Role::Sentinel => &self.sentinel,
        }
    }

    /// The TLS config and the name to verify for a connection to `host`, when TLS is on.
    pub fn tls_for(
        &self,
        host: &str,
    ) -> std::io::Result<Option<(Arc<ClientConfig>, ServerName<'static>)>> {
        match &self.settings.tls {
            None => Ok(None),
            Some(tls) => Ok(Some((
                Arc::clone(tls.config()),
                RedisTls::server_name(host)?,
            ))),
        }
    }
}

/// What a connection is for: data (a master or cluster node) or asking a Sentinel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Data,
    Sentinel,
}

/// The commands a new connection sends first, encoded once.
#[derive(Clone, Debug, Default)]
pub(crate) struct Handshake {
    pub bytes: Vec<u8>,
    pub replies: usize,
}

impl Handshake {
    /// Fails on the first error reply (a wrong password, a database that does not exist).
    pub fn check(replies: &[Value]) -> Result<(), super::RedisError> {
        match replies.iter().find_map(|r| match r {
            Value::Error(e) => Some(e),
            _ => None,
        }) {
            Some(e) => Err(super::RedisError::Server(e.clone())),
            None => Ok(()),
        }
    }
}

/// The master in a `SENTINEL get-master-addr-by-name` reply: `[host, port]`, or nil when the
/// Sentinel does not know the name.
pub(crate) fn sentinel_master(reply: &Value) -> Result<Option<Endpoint>, String> {
    if reply.is_nil() {
        return Ok(None);
    }
    if let Value::Error(e) = reply {
        return Err(e.clone());
    }
    match reply.as_array() {
        Some([host, port]) => {
            let host = host.as_str().filter(|h| !h.is_empty());
            let port = port.as_int().and_then(|p| u16::try_from(p).ok());
            match (host, port) {
                (Some(host), Some(port)) if port > 0 => Ok(Some(Endpoint::new(host, port))),
                _ => Err(format!("an address that is not host and port: {reply:?}")),
            }
        }
        _ => Err(format!("an unexpected reply {reply:?}")),
    }
}

/// Whether a `ROLE` reply says `master`.
pub(crate) fn is_master(role: &Value) -> bool {
    role.as_array()
        .and_then(|r| r.first())
        .and_then(Value::as_bytes)
        == Some(b"master")
}

/// `url` with the user-info part hidden, for error messages.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{:?}", format!("{scheme}://***{}", &url[at..])),
        _ => format!("{url:?}"),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<RedisSettings, String> {
        RedisSettings::parse(url, None)
    }

    #[test]
    fn single_servers() {
        let s = parse("redis://127.0.0.1:6380").unwrap();
        assert_eq!(s.target, Target::Single(Endpoint::new("127.0.0.1", 6380)));
        assert_eq!(
            (s.db, s.password.as_deref(), s.tls.is_some()),
            (0, None, false)
        );
        assert_eq!(s.pool_size, 1);

        let s = parse("redis://alice:s%40cret@cache.internal/3").unwrap();
        assert_eq!(
            s.target,
            Target::Single(Endpoint::new("cache.internal", 6379))
        );
        assert_eq!(s.username.as_deref(), Some("alice"));
        assert_eq!(s.password.as_deref(), Some("s@cret"));
        assert_eq!(s.db, 3);

        let s = parse("redis://:pw@[::1]:7000/").unwrap();
        assert_eq!(s.target, Target::Single(Endpoint::new("::1", 7000)));
        assert_eq!((s.username, s.password.as_deref()), (None, Some("pw")));
        assert_eq!(Endpoint::new("::1", 7000).to_string(), "[::1]:7000");

        let s = parse("redis://justapassword@h:1").unwrap();
        assert_eq!(
            (s.username, s.password.as_deref()),
            (None, Some("justapassword"))
        );
    }

    #[test]
    fn sentinels_and_clusters() {
        let s =
            parse("redis+sentinel://pw@10.0.0.1:26379,10.0.0.2,10.0.0.3:26380/mymaster/2").unwrap();
        assert_eq!(
            s.target,
            Target::Sentinel {
                sentinels: vec![
                    Endpoint::new("10.0.0.1", 26379),
                    Endpoint::new("10.0.0.2", 26379),
                    Endpoint::new("10.0.0.3", 26380)
                ],
                master: "mymaster".into()
            }
        );
        assert_eq!((s.db, s.password.as_deref()), (2, Some("pw")));

        let s = parse("redis+cluster://a:7000,b:7001").unwrap();
        assert_eq!(
            s.target,
            Target::Cluster {
                seeds: vec![Endpoint::new("a", 7000), Endpoint::new("b", 7001)]
            }
        );
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let cases = [
            ("localhost:6379", "expected redis://"),
            ("http://x", "unknown scheme \"http\""),
            ("redis://", "no host"),
            ("redis://h:0", "not a number in 1-65535"),
            ("redis://h:99999", "not a number in 1-65535"),
            ("redis://h:x", "not a number in 1-65535"),
            (
                "redis://a:1,b:2",
                "use redis+sentinel:// or redis+cluster://",
            ),
            ("redis://h/x", "the database \"x\" is not a number"),
            ("redis://h/1/2", "unexpected \"2\""),
            ("redis://h?timeout=1", "query parameters"),
            ("redis+sentinel://a:1,b:2", "no master name"),
            ("redis+cluster://a:1/2", "only database 0"),
            ("redis://::1:6379", "brackets"),
            ("redis://[::1:6379", "closing ']'"),
            ("redis://ho st:1", "not a host name"),
            ("redis://u:%zz@h", "bad %-escape"),
            ("redis://alice:@h", "a user name needs a password"),
        ];
        for (url, want) in cases {
            let e = parse(url).unwrap_err();
            assert!(e.starts_with("cluster.redis: "), "{url}: {e}");
            assert!(e.contains(want), "{url}: {e}");
        }
        // Credentials never show in an error.
        let e = parse("redis://alice:hunter2@h:bad").unwrap_err();
        assert!(!e.contains("hunter2") && e.contains("***@h:bad"), "{e}");
        let e = RedisSettings::parse("redis://h", Some(Path::new("/ca.pem"))).unwrap_err();
        assert!(e.contains("use rediss://"), "{e}");
        let e =
            RedisSettings::parse("rediss://h", Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(
            e.starts_with("cluster.redis: tls: ") && e.contains("ca.pem"),
            "{e}"
        );

        let mut s = parse("redis://h").unwrap();
        s.pool_size = 0;
        assert!(s.validate().unwrap_err().contains("pool_size 0"));
    }

    #[test]
    fn debug_hides_passwords() {
        let mut s = parse("redis://alice:hunter2@h").unwrap();
        s.sentinel_password = Some("swordfish".into());
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("swordfish"),
            "{shown}"
        );
        assert!(
            shown.contains("<redacted>") && shown.contains("alice"),
            "{shown}"
        );
    }

    #[test]
    fn handshakes() {
        let s = parse("redis://alice:pw@h/2").unwrap();
        let h = s.handshake(Role::Data);
        assert_eq!(h.replies, 2);
        assert_eq!(
            h.bytes,
            b"*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$2\r\npw\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"
        );
        assert_eq!(s.handshake(Role::Sentinel).replies, 0);
        let h = parse("redis://h").unwrap().handshake(Role::Data);
        assert_eq!((h.replies, h.bytes.is_empty()), (0, true));
        assert!(Handshake::check(&[Value::Simple(b"OK".to_vec())]).is_ok());
        assert!(Handshake::check(&[Value::Error("WRONGPASS x".into())]).is_err());
    }

    #[test]
    fn sentinel_replies() {
        let bulk = |s: &str| Value::Bulk(Some(s.as_bytes().to_vec()));
        let reply = Value::Array(Some(vec![bulk("10.0.0.5"), bulk("6380")]));
        assert_eq!(
            sentinel_master(&reply),
            Ok(Some(Endpoint::new("10.0.0.5", 6380)))
        );
        assert_eq!(sentinel_master(&Value::Array(None)), Ok(None));
        assert_eq!(sentinel_master(&Value::Bulk(None)), Ok(None));
        assert!(sentinel_master(&Value::Array(Some(vec![bulk("h")]))).is_err());
        assert!(sentinel_master(&Value::Error("ERR".into())).is_err());
        let role = Value::Array(Some(vec![bulk("master"), Value::Int(0)]));
        assert!(is_master(&role));
        let role = Value::Array(Some(vec![bulk("slave"), bulk("h")]));
        assert!(!is_master(&role));
        assert!(!is_master(&Value::Error("LOADING".into())));
    }
}
