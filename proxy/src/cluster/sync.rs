//! Cluster-wide cache purges and configuration distribution, through Redis (docs/cluster.md,
//! "Purge across nodes" and "Configuration distribution").
//!
//! Control side only: each node runs one thread, `ringway-cluster-sync`, subscribed to the
//! channel `NAME:events`; the workers see nothing of it but the purge hub's messages and the
//! ordinary two-phase reload.
//!
//! - **Purges.** A purge made on a node (`POST /cache/purge`) is applied through its own purge
//!   hub, then published as `purge key HEX NODE` or `purge prefix HEX NODE` (the key's bytes in
//!   hex; `NODE` the publishing process's random id, so that it skips its own echo). Every
//!   other node posts it to its own hub on receipt; its workers apply it on their next
//!   100 ms tick.
//! - **Configuration.** The shared document lives in the hash `NAME:config` (`version`,
//!   `document` as JSON text, `node`, `at`), written by [`STORE_SCRIPT`], which increments the
//!   version and publishes `config VERSION NODE` in one atomic step. A change applied on a node
//!   through the [`Plane`] is pushed there; every other node fetches and applies the stored
//!   document when it hears of a newer version, when it starts, after its subscription was
//!   made again, and every [`CHECK_EVERY`] (pub/sub loses what is published while a node is
//!   away). A node applies only versions above the one it serves, so concurrent pushes end with
//!   every node on the highest.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::redis::{BlockingClient, Script, Subscription, Value as Reply};
use super::Node;
use crate::config::cluster::{redact_url, ClusterSettings};
use crate::config::Config;
use crate::control::plane::Plane;
use crate::server::Control;
use crate::snapshot::Snapshot;

/// Stores a pushed document: `KEYS[1]` the hash, `ARGV`: the document, the node, the time
/// (unix seconds), the lowest version the pusher accepts less one (the version it serves), the
/// channel. The new version is one above the stored one (and above the floor, so that a Redis
/// that lost its data never hands out a version some node already serves); it is returned, and
/// published as `config VERSION NODE`.
pub const STORE_SCRIPT: &str = r"
local stored = redis.call('HGET', KEYS[1], 'version')
local v = 1
if stored then
  v = tonumber(stored)
  if not v then
    return redis.error_reply('ERR ' .. KEYS[1] .. ' holds a version that is not an integer')
  end
  v = v + 1
end
local floor = tonumber(ARGV[4]) or 0
if v <= floor then
  v = floor + 1
end
redis.call('HSET', KEYS[1], 'version', v, 'document', ARGV[1], 'node', ARGV[2], 'at', ARGV[3])
redis.call('PUBLISH', ARGV[5], 'config ' .. v .. ' ' .. ARGV[2])
return v
";

static STORE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| Script::new(STORE_SCRIPT));

/// How often a node compares the stored version with its own, besides the messages.
pub const CHECK_EVERY: Duration = Duration::from_secs(10);
/// How soon it tries again after Redis could not be asked.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// The longest the thread waits for a message before looking at its stop flag.
const WAIT: Duration = Duration::from_millis(250);

/// The channel every node of cluster `name` listens on.
pub fn events_channel(name: &str) -> String {
    format!("{name}:events")
}

/// The hash holding cluster `name`'s shared document.
pub fn config_key(name: &str) -> String {
    format!("{name}:config")
}

/// What the trigger and source of a pushed document are called.
pub fn push_label(version: u64) -> String {
    format!("cluster push v{version}")
}

/// A message on `NAME:events`.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// `purge key HEX NODE` / `purge prefix HEX NODE`.
    Purge {
        prefix: bool,
        bytes: Vec<u8>,
        node: String,
    },
    /// `config VERSION NODE`.
    Config { version: u64, node: String },
    /// `portal NODE`: the portal's developers or subscriptions changed.
    Portal { node: String },
}

impl Event {
    pub fn parse(payload: &[u8]) -> Option<Event> {
        let text = std::str::from_utf8(payload).ok()?;
        let parts: Vec<&str> = text.split(' ').collect();
        match parts.as_slice() {
            ["purge", kind @ ("key" | "prefix"), hex, node] if !node.is_empty() => {
                Some(Event::Purge {
                    prefix: *kind == "prefix",
                    bytes: from_hex(hex)?,
                    node: node.to_string(),
                })
            }
            ["config", version, node] if !node.is_empty() => Some(Event::Config {
                version: version.parse().ok()?,
                node: node.to_string(),
            }),
            ["portal", node] if !node.is_empty() => Some(Event::Portal {
                node: node.to_string(),
            }),
            _ => None,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Event::Purge {
                prefix,
                bytes,
                node,
            } => format!(
                "purge {} {} {node}",
                if *prefix { "prefix" } else { "key" },
                to_hex(bytes)
            )
            .into_bytes(),
            Event::Config { version, node } => format!("config {version} {node}").into_bytes(),
            Event::Portal { node } => format!("portal {node}").into_bytes(),
        }
    }
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A random id for this process: 16 hex digits.
fn new_node_id() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No system randomness: the time and the process id still tell nodes apart.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (nanos ^ (u64::from(std::process::id()) << 40)).to_be_bytes();
    }
    to_hex(&bytes)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The outcome of pushing a change: the version it was stored as, or why it was not.
pub type Published = Result<u64, String>;

/// The last pushed document this node applied or refused (its own pushes included).
#[derive(Clone, Debug)]
pub struct LastPush {
    pub version: u64,
    /// The node that pushed it.
    pub node: String,
    /// Unix seconds, when this node applied or refused it.
    pub at: u64,
    pub applied: bool,
    pub error: Option<String>,
}

/// What a node found in Redis on start ([`startup`]), handed to [`start`].
#[derive(Default)]
pub struct Joined {
    /// The stored version the node starts with (0: it starts with its local document).
    pub version: u64,
    /// The stored version, when the node could not use it.
    pub refused: Option<LastPush>,
}

/// The stored document's head, and the document when asked for.
struct Stored {
    version: u64,
    node: String,
    document: Option<Vec<u8>>,
}

/// The Redis connection of the cluster the node is in now (the running configuration's
/// `cluster:`); made again when a reload changes it.
#[derive(Clone)]
struct Link {
    node: Arc<Node>,
    client: BlockingClient,
    key: Vec<u8>,
    channel: Vec<u8>,
}

impl Link {
    fn new(node: Arc<Node>) -> Link {
        Link {
            client: BlockingClient::new(&node.settings.client),
            key: config_key(&node.settings.name).into_bytes(),
            channel: events_channel(&node.settings.name).into_bytes(),
            node,
        }
    }

    fn name(&self) -> &str {
        &self.node.settings.name
    }

    /// The stored version and who pushed it; with the document when `document`.
    fn stored(&self, document: bool) -> Result<Stored, String> {
        let reply = if document {
            self.client
                .call(&[b"HMGET", &self.key, b"version", b"node", b"document"])
        } else {
            self.client
                .call(&[b"HMGET", &self.key, b"version", b"node"])
        }
        .map_err(|e| e.to_string())?;
        parse_stored(reply)
    }
}

fn parse_stored(reply: Reply) -> Result<Stored, String> {
    let mut items = reply
        .into_array()
        .ok_or("redis: an unexpected answer to HMGET")?
        .into_iter();
    let mut next = || items.next().and_then(Reply::into_bytes);
    let version = match next() {
        None => 0,
        Some(v) => std::str::from_utf8(&v)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or("the stored version is not an integer")?,
    };
    let node = next()
        .map(|n| String::from_utf8_lossy(&n).into_owned())
        .unwrap_or_default();
    Ok(Stored {
        version,
        node,
        document: next(),
    })
}

#[derive(Default)]
struct State {
    last_push: Option<LastPush>,
    /// The version last refused here: not tried again (a later version is).
    refused: u64,
    /// A change applied here that could not be stored: the version it was based on, and why.
    unpublished: Option<(u64, String)>,
    /// Why Redis could not be asked, while it cannot.
    unreachable: Option<String>,
}

/// A node's end of cluster-wide purges and configuration distribution, shared by the admin
/// listener (through the [`Plane`]) and the `ringway-cluster-sync` thread.
pub struct ClusterSync {
    /// This process's random id, in every message it publishes.
    pub node_id: String,
    control: Arc<Control>,
    link: Mutex<Option<Link>>,
    state: Mutex<State>,
    /// The stored version this node serves (0: none).
    applied: AtomicU64,
    /// Pushed documents this node refused; purges it published and received.
    pub rejected: AtomicU64,
    pub purges_published: AtomicU64,
    pub purges_received: AtomicU64,
    reachable: AtomicBool,
    stop: AtomicBool,
}

impl ClusterSync {
    fn new(control: Arc<Control>, joined: Joined) -> ClusterSync {
        let sync = ClusterSync {
            node_id: new_node_id(),
            control,
            link: Mutex::new(None),
            state: Mutex::new(State::default()),
            applied: AtomicU64::new(joined.version),
            rejected: AtomicU64::new(0),
            purges_published: AtomicU64::new(0),
            purges_received: AtomicU64::new(0),
            reachable: AtomicBool::new(true),
            stop: AtomicBool::new(false),
        };
        if let Some(refused) = joined.refused {
            sync.rejected.fetch_add(1, Relaxed);
            let mut state = lock(&sync.state);
            state.refused = refused.version;
            state.last_push = Some(refused);
        }
        sync
    }

    /// The stored version this node serves (0: none yet).
    pub fn applied_version(&self) -> u64 {
        self.applied.load(Relaxed)
    }

    /// The link to the cluster the running configuration names; None outside cluster mode.
    fn link(&self) -> Option<Link> {
        let node = lock(&self.control.node).cluster.clone()?;
        let mut link = lock(&self.link);
        if let Some(l) = link.as_ref().filter(|l| Arc::ptr_eq(&l.node, &node)) {
            return Some(l.clone());
        }
        let made = Link::new(node);
        *link = Some(made.clone());
        Some(made)
    }

    fn reached(&self, name: &str) {
        if !self.reachable.swap(true, Relaxed) {
            lock(&self.state).unreachable = None;
            log::info!(
                "cluster {name}: Redis answers again; purges and configuration changes are \
                 shared again"
            );
        }
    }

    fn unreachable(&self, name: &str, why: &str) {
        lock(&self.state).unreachable = Some(why.to_string());
        if self.reachable.swap(false, Relaxed) {
            log::warn!(
                "cluster {name}: Redis cannot be reached ({why}); purges and configuration \
                 changes made on this node stay on this node until it answers"
            );
        }
    }

    /// Checks that `config` keeps this node in its cluster: a change in cluster mode must
    /// keep the `cluster:` section's name and Redis (without them the node would be cut off
    /// from the others once it applied the change).
    pub fn check_identity(&self, config: &Config) -> Result<(), String> {
        let Some(node) = lock(&self.control.node).cluster.clone() else {
            return Ok(());
        };
        same_cluster(&node.settings, config)
    }

    /// Stores `document` as the cluster's next version and publishes it (this node already
    /// serves it). None outside cluster mode.
    pub fn push(&self, document: &Value) -> Option<Published> {
        let link = self.link()?;
        let text = match serde_json::to_string(document) {
            Ok(t) => t,
            Err(e) => return Some(Err(format!("the document cannot be written: {e}"))),
        };
        let based_on = self.applied_version();
        let (at, floor) = (unix_now().to_string(), based_on.to_string());
        let reply = link.client.eval_sha(
            &STORE,
            &[&link.key],
            &[
                text.as_bytes(),
                self.node_id.as_bytes(),
                at.as_bytes(),
                floor.as_bytes(),
                &link.channel,
            ],
        );
        let version = reply
            .map_err(|e| e.to_string())
            .and_then(|v| {
                v.as_int()
                    .ok_or_else(|| "redis: an unexpected answer".into())
            })
            .and_then(|v| u64::try_from(v).map_err(|_| "redis: a negative version".into()));
        match version {
            Ok(version) => {
                self.reached(link.name());
                self.applied.fetch_max(version, Relaxed);
                let mut state = lock(&self.state);
                state.unpublished = None;
                state.last_push = Some(LastPush {
                    version,
                    node: self.node_id.clone(),
                    at: unix_now(),
                    applied: true,
                    error: None,
                });
                drop(state);
                log::info!(
                    "cluster {}: the configuration in force is pushed as version {version}",
                    link.name()
                );
                Some(Ok(version))
            }
            Err(why) => {
                self.unreachable(link.name(), &why);
                log::error!(
                    "cluster {}: the change is applied on this node only: it could not be \
                     stored ({why}); it is pushed when Redis answers, unless another node \
                     pushes first",
                    link.name()
                );
                let mut state = lock(&self.state);
                if state.unpublished.is_none() {
                    state.unpublished = Some((based_on, why.clone()));
                } else if let Some((_, last)) = &mut state.unpublished {
                    last.clone_from(&why);
                }
                Some(Err(why))
            }
        }
    }

    /// Publishes a purge this node applied, for the others. None outside cluster mode.
    pub fn publish_purge(&self, prefix: bool, bytes: &[u8]) -> Option<Result<(), String>> {
        let link = self.link()?;
        let message = Event::Purge {
            prefix,
            bytes: bytes.to_vec(),
            node: self.node_id.clone(),
        }
        .to_bytes();
        match link.client.call(&[b"PUBLISH", &link.channel, &message]) {
            Ok(_) => {
                self.reached(link.name());
                self.purges_published.fetch_add(1, Relaxed);
                Some(Ok(()))
            }
            Err(e) => {
                let why = e.to_string();
                self.unreachable(link.name(), &why);
                Some(Err(why))
            }
        }
    }

    /// Whether a pushed `version` is one to apply: above the one served and not refused.
    pub fn wants(&self, version: u64) -> bool {
        version > self.applied_version() && version != lock(&self.state).refused
    }

    /// The node applied pushed `version` (from `node`), or found it the same as its own.
    pub fn pushed_applied(&self, version: u64, node: &str) {
        self.applied.fetch_max(version, Relaxed);
        let mut state = lock(&self.state);
        state.unpublished = None;
        state.last_push = Some(LastPush {
            version,
            node: node.to_string(),
            at: unix_now(),
            applied: true,
            error: None,
        });
    }

    /// The node refused pushed `version`: it keeps serving what it served.
    pub fn pushed_refused(&self, version: u64, node: &str, errors: &[String]) {
        self.rejected.fetch_add(1, Relaxed);
        let mut state = lock(&self.state);
        state.refused = version;
        // A change made here that could not be stored is superseded all the same.
        state.unpublished = None;
        state.last_push = Some(LastPush {
            version,
            node: node.to_string(),
            at: unix_now(),
            applied: false,
            error: Some(errors.join("; ")),
        });
    }

    /// `/status`'s `cluster` object; None outside cluster mode.
    pub fn status(&self) -> Option<Value> {
        let node = lock(&self.control.node).cluster.clone()?;
        let state = lock(&self.state);
        let last_push = state.last_push.as_ref().map(|p| {
            json!({
                "version": p.version,
                "node": p.node,
                "at": p.at,
                "applied": p.applied,
                "error": p.error,
            })
        });
        Some(json!({
            "name": node.settings.name,
            "node": self.node_id,
            "redis": match &state.unreachable {
                None => "reachable".to_string(),
                Some(why) => format!("unreachable: {why}"),
            },
            "config_version": self.applied_version(),
            "last_push": last_push,
            "unpublished": state.unpublished.as_ref().map(|(_, why)| why.clone()),
        }))
    }

    /// Compares the stored version with the one served, and acts: applies a newer stored
    /// document; pushes a change that could not be stored before, if no other node pushed
    /// since; pushes the document in force again if Redis lost the stored one.
    fn check(&self, plane: &Plane, link: &Link) -> Result<(), String> {
        let head = link.stored(false)?;
        self.reached(link.name());
        let applied = self.applied_version();
        let unpublished = lock(&self.state)
            .unpublished
            .as_ref()
            .map(|(base, _)| *base);
        match unpublished {
            // No other node pushed since (or Redis lost what it held): the change made here
            // is the newest.
            Some(base) if head.version <= base => {
                plane.push_current("a change made while Redis could not be reached");
                return Ok(());
            }
            Some(_) => log::warn!(
                "cluster {}: another node pushed version {} while Redis could not be reached \
                 from here; it replaces the change made on this node meanwhile",
                link.name(),
                head.version
            ),
            None if head.version < applied => {
                log::warn!(
                    "cluster {}: Redis holds version {} of the configuration, older than the \
                     {applied} served here (it lost its data?); pushing the one in force again",
                    link.name(),
                    head.version
                );
                plane.push_current("Redis lost the stored configuration");
                return Ok(());
            }
            None => {}
        }
        if !self.wants(head.version) {
            return Ok(());
        }
        let stored = link.stored(true)?;
        if !self.wants(stored.version) {
            return Ok(());
        }
        let document = stored
            .document
            .as_deref()
            .ok_or_else(|| "no document".to_string())
            .and_then(|d| serde_json::from_slice::<Value>(d).map_err(|e| e.to_string()));
        match document {
            Ok(document) => plane.apply_pushed(document, stored.version, &stored.node),
            Err(e) => {
                let error = format!(
                    "{}: the stored document is not JSON: {e}",
                    push_label(stored.version)
                );
                log::error!(
                    "cluster {}: {error}; the configuration in force keeps serving",
                    link.name()
                );
                self.pushed_refused(stored.version, &stored.node, &[error]);
            }
        }
        Ok(())
    }

    fn handle(&self, plane: &Plane, link: &Link, payload: &[u8]) -> Result<(), String> {
        let Some(event) = Event::parse(payload) else {
            log::debug!(
                "cluster {}: an unknown message on {}: {:?}",
                link.name(),
                String::from_utf8_lossy(&link.channel),
                String::from_utf8_lossy(payload)
            );
            return Ok(());
        };
        match event {
            Event::Purge { node, .. } | Event::Config { node, .. } | Event::Portal { node }
                if node == self.node_id =>
            {
                Ok(())
            }
            Event::Portal { .. } => self.merge_portal(plane, link),
            Event::Purge {
                prefix,
                bytes,
                node,
            } => {
                let hub = Arc::clone(&lock(&self.control.node).purge);
                self.purges_received.fetch_add(1, Relaxed);
                // The ticket is not waited on: the workers apply it on their next tick.
                let _ticket = if prefix {
                    hub.purge_prefix(&bytes)
                } else {
                    hub.purge_key(&bytes)
                };
                log::debug!(
                    "cluster {}: purge of {} {:?} from node {node} posted to every worker",
                    link.name(),
                    if prefix { "prefix" } else { "key" },
                    String::from_utf8_lossy(&bytes)
                );
                Ok(())
            }
            Event::Config { version, .. } if self.wants(version) => self.check(plane, link),
            Event::Config { .. } => Ok(()),
        }
    }

    /// Merges the cluster's portal records with this node's, and puts changed subscriptions
    /// in force.
    fn merge_portal(&self, plane: &Plane, link: &Link) -> Result<(), String> {
        let Some(portal) = plane.portal.get() else {
            return Ok(());
        };
        if super::portal::merge(&link.client, link.name(), portal)? {
            if let Err(e) = portal.apply(plane, "changed on another node") {
                log::error!("cluster {}: the portal's subscriptions: {e}", link.name());
            }
        }
        Ok(())
    }

    /// Announces a change of the portal's records.
    fn publish_portal(&self, link: &Link) {
        let message = Event::Portal {
            node: self.node_id.clone(),
        }
        .to_bytes();
        if let Err(e) = link.client.call(&[b"PUBLISH", &link.channel, &message]) {
            self.unreachable(link.name(), &e.to_string());
        }
    }

    /// Subscribes to the running configuration's cluster's channel.
    fn subscribe(&self) -> Option<Subscribed> {
        let link = self.link()?;
        Some((
            Arc::clone(&link.node),
            link.client.subscribe(&[&link.channel]),
            0,
        ))
    }

    /// The thread's loop: follows the running configuration's cluster, keeps the subscription
    /// up, applies what other nodes publish, compares versions now and then.
    fn run(&self, plane: &Plane, mut sub: Option<Subscribed>) {
        let mut check_at = Instant::now();
        while !self.stop.load(Relaxed) {
            let Some(link) = self.link() else {
                sub = None;
                std::thread::sleep(WAIT);
                continue;
            };
            if !sub
                .as_ref()
                .is_some_and(|(node, ..)| Arc::ptr_eq(node, &link.node))
            {
                sub = self.subscribe();
                check_at = Instant::now();
            }
            let now = Instant::now();
            if now >= check_at {
                check_at = match self
                    .check(plane, &link)
                    .and_then(|()| self.merge_portal(plane, &link))
                {
                    Ok(()) => now + CHECK_EVERY,
                    Err(why) => {
                        self.unreachable(link.name(), &why);
                        now + RETRY_EVERY
                    }
                };
            }
            let Some((_, subscription, seen)) = sub.as_mut() else {
                continue;
            };
            match subscription.next_message(WAIT) {
                Ok(Some((_, payload))) => {
                    self.reached(link.name());
                    if let Err(why) = self.handle(plane, &link, &payload) {
                        self.unreachable(link.name(), &why);
                        check_at = Instant::now() + RETRY_EVERY;
                    }
                }
                Ok(None) => {}
                Err(e) => self.unreachable(link.name(), &e.to_string()),
            }
            if subscription.reconnects() != *seen {
                // Made again after a loss: what was published meanwhile is missed.
                *seen = subscription.reconnects();
                check_at = Instant::now();
            }
        }
    }
}

/// A subscription, the cluster it is to, and its reconnections seen so far.
type Subscribed = (Arc<Node>, Subscription, u64);

/// Whether `config` keeps the cluster of `settings` (the name and the Redis).
fn same_cluster(settings: &ClusterSettings, config: &Config) -> Result<(), String> {
    match &config.cluster {
        None => Err(format!(
            "cluster: this node is in cluster mode (cluster {}), and a configuration without \
             a cluster: section would cut it off from the other nodes; keep the section (GET \
             /config shows it)",
            settings.name
        )),
        Some(c) if c.name != settings.name => Err(format!(
            "cluster.name: {:?} is not the cluster this node is in ({:?}); a node changes \
             clusters through its configuration file, not through a change shared with every \
             node",
            c.name, settings.name
        )),
        Some(c) if c.redis != settings.redis => Err(format!(
            "cluster.redis: {} is not the Redis this cluster shares ({}); change it in each \
             node's configuration file",
            redact_url(&c.redis),
            redact_url(&settings.redis)
        )),
        Some(_) => Ok(()),
    }
}

/// On start, in cluster mode: the version stored in Redis wins over the local document. Reads
/// `NAME:config` (within the connect and command timeouts); when a version is stored and it
/// validates here, returns it in place of `snapshot` and `document`. Otherwise the node starts
/// with its own: nothing is stored yet, Redis cannot be reached (the sync thread applies the
/// stored version once it answers), or the stored one does not validate here (reported).
///
/// None outside cluster mode.
pub fn startup(snapshot: Snapshot, document: Value) -> (Snapshot, Value, Option<Joined>) {
    let Some(settings) = snapshot.config.cluster.clone() else {
        return (snapshot, document, None);
    };
    let name = settings.name.clone();
    let link = Link {
        node: Node::new(settings.clone()),
        client: BlockingClient::new(&settings.client),
        key: config_key(&name).into_bytes(),
        channel: Vec::new(),
    };
    let stored = match link.stored(true) {
        Ok(s) => s,
        Err(why) => {
            log::warn!(
                "cluster {name}: cannot read the shared configuration from Redis ({why}); \
                 starting with the local one (the stored one applies once Redis answers)"
            );
            return (snapshot, document, Some(Joined::default()));
        }
    };
    if stored.version == 0 {
        log::info!(
            "cluster {name}: no configuration is stored yet; serving the local one (the first \
             change pushed from any node is stored)"
        );
        return (snapshot, document, Some(Joined::default()));
    }
    let label = push_label(stored.version);
    let loaded = stored
        .document
        .as_deref()
        .ok_or_else(|| vec![format!("{label}: no document is stored")])
        .and_then(|d| {
            serde_json::from_slice::<Value>(d)
                .map_err(|e| vec![format!("{label}: the stored document is not JSON: {e}")])
        })
        .and_then(|value| {
            let text = serde_yaml_ng::to_string(&value)
                .map_err(|e| vec![format!("{label}: the document cannot be written: {e}")])?;
            let config = crate::config::load_literal(&text, &label).map_err(|e| e.errors)?;
            same_cluster(&settings, &config).map_err(|e| vec![format!("{label}: {e}")])?;
            let snapshot = Snapshot::build(config).map_err(|e| e.errors)?;
            Ok((snapshot, value))
        });
    match loaded {
        Ok((stored_snapshot, value)) => {
            log::info!(
                "cluster {name}: serving version {} of the shared configuration (pushed by node \
                 {}) in place of the local one",
                stored.version,
                stored.node
            );
            if value != document {
                log::warn!(
                    "cluster {name}: the local configuration differs from the shared one and is \
                     not served; to make it the cluster's, push it (ringway ctl push FILE)"
                );
            }
            let joined = Joined {
                version: stored.version,
                refused: None,
            };
            (stored_snapshot, value, Some(joined))
        }
        Err(errors) => {
            log::error!(
                "cluster {name}: version {} of the shared configuration does not validate on \
                 this node; serving the local one:\n{}",
                stored.version,
                errors.join("\n")
            );
            let refused = LastPush {
                version: stored.version,
                node: stored.node,
                at: unix_now(),
                applied: false,
                error: Some(errors.join("; ")),
            };
            let joined = Joined {
                version: 0,
                refused: Some(refused),
            };
            (snapshot, document, Some(joined))
        }
    }
}

/// The running sync thread; [`SyncThread::stop`] ends it.
pub struct SyncThread {
    sync: Arc<ClusterSync>,
    thread: Option<JoinHandle<()>>,
}

impl SyncThread {
    /// Stops the thread, waiting up to `wait` for it to end.
    pub fn stop(mut self, wait: Duration) {
        self.sync.stop.store(true, Relaxed);
        let until = Instant::now() + wait;
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// The portal's end of the cluster: its changes go to Redis at once (and, when Redis cannot
/// be reached, on the next periodic merge).
struct PortalShare {
    sync: Arc<ClusterSync>,
    portal: std::sync::Weak<crate::portal::Portal>,
}

impl crate::portal::Shared for PortalShare {
    fn subscription(&self, s: &crate::portal::store::StoredSubscription) {
        let Some(link) = self.sync.link() else { return };
        match super::portal::put_subscription(&link.client, link.name(), s) {
            Ok(()) => self.sync.publish_portal(&link),
            Err(e) => self.sync.unreachable(link.name(), &e),
        }
    }

    fn developer(&self, email: &str) {
        let (Some(link), Some(portal)) = (self.sync.link(), self.portal.upgrade()) else {
            return;
        };
        match super::portal::put_developer(&link.client, link.name(), &portal, email) {
            Ok(()) => self.sync.publish_portal(&link),
            Err(e) => self.sync.unreachable(link.name(), &e),
        }
    }

    fn add_usage(
        &self,
        subscription: &str,
        day: &str,
        requests: u64,
        errors: u64,
    ) -> Result<(), String> {
        let Some(link) = self.sync.link() else {
            return Ok(());
        };
        super::portal::add_usage(
            &link.client,
            link.name(),
            subscription,
            day,
            requests,
            errors,
        )
    }

    fn usage(
        &self,
        subscriptions: &[String],
        since: &str,
    ) -> Result<Vec<(String, u64, u64)>, String> {
        let link = self.sync.link().ok_or("not in a cluster")?;
        super::portal::usage(&link.client, link.name(), subscriptions, since)
    }
}

/// Starts `ringway-cluster-sync` for `plane` (a node that started in cluster mode: `joined`
/// from [`startup`]) and hands the plane its end for pushes and purges. Subscribes before it
/// returns (within the connect and command timeouts), so that what other nodes publish once
/// this node is ready is seen.
pub fn start(plane: &Arc<Plane>, joined: Joined) -> std::io::Result<SyncThread> {
    let sync = Arc::new(ClusterSync::new(Arc::clone(&plane.control), joined));
    let _ = plane.cluster.set(Arc::clone(&sync));
    if let Some(portal) = plane.portal.get() {
        let shared = PortalShare {
            sync: Arc::clone(&sync),
            portal: Arc::downgrade(portal),
        };
        let _ = portal.shared.set(Arc::new(shared));
    }
    let subscribed = sync.subscribe();
    let (plane, run) = (Arc::clone(plane), Arc::clone(&sync));
    let thread = std::thread::Builder::new()
        .name("ringway-cluster-sync".into())
        .spawn(move || run.run(&plane, subscribed))?;
    log::info!(
        "cluster: node id {}; purges and configuration changes are shared through Redis",
        sync.node_id
    );
    Ok(SyncThread {
        sync,
        thread: Some(thread),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::redis::testing::RedisServer;
    use crate::cluster::redis::RedisSettings;

    #[test]
    fn messages_round_trip() {
        let purge = Event::Purge {
            prefix: true,
            bytes: b"ringway.test/orders\0GET".to_vec(),
            node: "00ff".into(),
        };
        let bytes = purge.to_bytes();
        assert_eq!(
            bytes,
            b"purge prefix 72696e677761792e746573742f6f726465727300474554 00ff"
        );
        assert_eq!(Event::parse(&bytes), Some(purge));
        let all = Event::Purge {
            prefix: true,
            bytes: Vec::new(),
            node: "n".into(),
        };
        assert_eq!(Event::parse(&all.to_bytes()), Some(all));
        assert_eq!(
            Event::parse(b"config 12 abc"),
            Some(Event::Config {
                version: 12,
                node: "abc".into()
            })
        );
        for bad in [
            &b"config x abc"[..],
            b"config 1",
            b"purge key 0g n",
            b"purge key 012 n",
            b"purge all 00 n",
            b"hello",
            b"\xff",
        ] {
            assert_eq!(
                Event::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(new_node_id().len(), 16);
        assert_ne!(new_node_id(), new_node_id());
    }

    #[test]
    fn the_store_script_gives_distinct_increasing_versions_and_publishes() {
        let server = RedisServer::start();
        let settings = RedisSettings::parse(&server.url(), None).unwrap();
        let client = BlockingClient::new(&settings);
        let mut sub = client.subscribe(&[b"t:events"]);
        let store = |doc: &str, node: &str, floor: u64| {
            client
                .eval_sha(
                    &STORE,
                    &[b"t:config"],
                    &[
                        doc.as_bytes(),
                        node.as_bytes(),
                        b"1",
                        floor.to_string().as_bytes(),
                        b"t:events",
                    ],
                )
                .unwrap()
                .as_int()
                .unwrap()
        };
        assert_eq!(store("{}", "a", 0), 1);
        // Concurrent pushes: every one gets a version of its own.
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let client = client.clone();
                std::thread::spawn(move || {
                    client
                        .eval_sha(
                            &STORE,
                            &[b"t:config"],
                            &[format!("{{\"n\":{i}}}").as_bytes(), b"b", b"1", b"0", b"x"],
                        )
                        .unwrap()
                        .as_int()
                        .unwrap()
                })
            })
            .collect();
        let mut got: Vec<i64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, [2, 3, 4, 5]);
        // A floor above the stored version (Redis lost its data): above the floor.
        assert_eq!(store("{\"x\":1}", "c", 9), 10);
        let link = Link {
            node: Node::new(
                crate::config::load_literal(
                    &format!(
                        "listeners: [{{address: 127.0.0.1:0}}]\nbackends: [{{name: b, targets: \
                         [{{url: http://127.0.0.1:1}}]}}]\nroutes: [{{name: r, backend: b}}]\n\
                         cluster: {{name: t, redis: {}}}\n",
                        server.url()
                    ),
                    "test",
                )
                .unwrap()
                .cluster
                .unwrap(),
            ),
            client: client.clone(),
            key: b"t:config".to_vec(),
            channel: b"t:events".to_vec(),
        };
        let stored = link.stored(true).unwrap();
        assert_eq!(
            (stored.version, stored.node.as_str()),
            (10, "c"),
            "the highest version holds the last document"
        );
        assert_eq!(stored.document.as_deref(), Some(&b"{\"x\":1}"[..]));
        let mut seen = Vec::new();
        while let Some((_, payload)) = sub.next_message(Duration::from_millis(500)).unwrap() {
            seen.push(String::from_utf8(payload).unwrap());
        }
        assert_eq!(seen, ["config 1 a", "config 10 c"]);
        // A version that is not an integer is refused, and nothing is written.
        server.cli(&["HSET", "t:config", "version", "x"]);
        let e = client
            .eval_sha(
                &STORE,
                &[b"t:config"],
                &[b"{}", b"a", b"1", b"0", b"t:events"],
            )
            .unwrap_err();
        assert!(e.to_string().contains("not an integer"), "{e}");
        assert_eq!(server.cli(&["HGET", "t:config", "node"]).trim(), "c");
        assert!(link.stored(false).is_err());
    }
}
