//! Real Redis servers for tests: one server ([`RedisServer`]), a master with a replica and
//! three Sentinels ([`SentinelGroup`]), a three-master cluster ([`RedisCluster`]). Each runs
//! from `/usr/bin` (`redis-server`, `redis-sentinel`, `redis-cli`: a missing binary fails the
//! test) on loopback ports picked free, in a temporary folder, and is killed when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A port that was free a moment ago (bound, then released).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// A folder removed with everything in it when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ringway-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temporary folder");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How a server process is started, kept so that it can be started again.
#[derive(Clone)]
struct Launch {
    binary: &'static str,
    /// Arguments after the port ones; `{dir}` stands for the server's folder.
    args: Vec<String>,
    /// Sentinel: the config file it is started with (and rewrites).
    config: Option<String>,
    /// Readiness by TCP connect only (a TLS port answers no plain PING).
    tls: bool,
}

/// One `redis-server` (or `redis-sentinel`) process.
pub(crate) struct RedisServer {
    pub port: u16,
    launch: Launch,
    child: Option<Child>,
    dir: TempDir,
}

impl RedisServer {
    /// A plain server with no persistence.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// A server with extra arguments (`["--requirepass", "pw"]`, ...).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        RedisServer::launch(Launch {
            binary: "redis-server",
            args: extra.iter().map(|s| s.to_string()).collect(),
            config: None,
            tls: false,
        })
    }

    /// A server whose `port` is a TLS port (the plain port is off), with `extra` naming the
    /// certificate files.
    pub fn start_tls(extra: &[&str]) -> RedisServer {
        RedisServer::launch(Launch {
            binary: "redis-server",
            args: extra.iter().map(|s| s.to_string()).collect(),
            config: None,
            tls: true,
        })
    }

    fn launch(launch: Launch) -> RedisServer {
        let dir = TempDir::new("redis");
        let mut server = RedisServer {
            port: 0,
            launch,
            child: None,
            dir,
        };
        // A port picked free may be taken again before the server binds it: try others.
        for _ in 0..5 {
            server.port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("{} did not start: {}", server.launch.binary, server.log());
    }

    /// Starts the process on `self.port`; true once it answers.
    fn spawn(&mut self) -> bool {
        let dir = self
            .dir
            .path()
            .to_str()
            .expect("a UTF-8 temp path")
            .to_string();
        let mut cmd = Command::new(format!("/usr/bin/{}", self.launch.binary));
        if let Some(config) = &self.launch.config {
            let path = self.dir.path().join("sentinel.conf");
            let text = config
                .replace("{port}", &self.port.to_string())
                .replace("{dir}", &dir);
            std::fs::write(&path, text).expect("the Sentinel config");
            cmd.arg(&path);
        } else if self.launch.tls {
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        if self.launch.config.is_none() {
            cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
            cmd.args(["--dir", &dir, "--logfile", "redis.log"]);
            for arg in &self.launch.args {
                cmd.arg(arg.replace("{dir}", &dir));
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run /usr/bin/{}: {e}", self.launch.binary));
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false;
            }
            if self.answers() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// Whether the server answers a PING (a TLS server: accepts a connection).
    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.launch.tls {
            return true;
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(n) => buf[..n].starts_with(b"+PONG") || buf[..n].starts_with(b"-NOAUTH"),
            Err(_) => false,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        let name = if self.launch.config.is_some() {
            "sentinel.log"
        } else {
            "redis.log"
        };
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Kills the process (SIGKILL: a crash, nothing saved) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same port, with the same arguments and folder.
    pub fn restart(&mut self) {
        self.kill();
        let started = Instant::now();
        // The old socket may linger a moment.
        while !self.spawn() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{} did not restart on {}: {}",
                self.launch.binary,
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `redis-cli -p PORT ARGS...` and returns its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-cli -p port args...`, its output trimmed. Panics if it cannot run.
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("/usr/bin/redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run /usr/bin/redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `check` until it holds; panics with `what` after `limit`.
pub(crate) fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A master, its replica, and three Sentinels watching it as `mymaster` (quorum 2, down after
/// 1 s, fail-over timeout 3 s).
pub(crate) struct SentinelGroup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinels: Vec<RedisServer>,
}

pub(crate) const MASTER_NAME: &str = "mymaster";

impl SentinelGroup {
    pub fn start() -> SentinelGroup {
        let master = RedisServer::start();
        let m = master.port.to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &m]);
        wait_until(Duration::from_secs(10), "the replica to sync", || {
            replica
                .cli(&["INFO", "replication"])
                .contains("master_link_status:up")
        });
        let config = format!(
            "port {{port}}\nbind 127.0.0.1\ndir {{dir}}\nlogfile sentinel.log\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {m} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 3000\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n"
        );
        let sentinels: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::launch(Launch {
                    binary: "redis-sentinel",
                    args: Vec::new(),
                    config: Some(config.clone()),
                    tls: false,
                })
            })
            .collect();
        // A fail-over needs the Sentinels to know each other and the replica.
        for s in &sentinels {
            wait_until(Duration::from_secs(30), "the Sentinels to meet", || {
                let others = s.cli(&["SENTINEL", "sentinels", MASTER_NAME]);
                let replicas = s.cli(&["SENTINEL", "replicas", MASTER_NAME]);
                others.matches("runid").count() == 2 && replicas.contains("name")
            });
        }
        SentinelGroup {
            master,
            replica,
            sentinels,
        }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.sentinels.iter().map(RedisServer::addr).collect();
        format!("redis+sentinel://{}/{MASTER_NAME}", hosts.join(","))
    }
}

/// Masters of a Redis Cluster, all slots assigned, no replicas.
pub(crate) struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start(masters: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                let bus = free_port().to_string();
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(RedisServer::addr).collect();
        let out = Command::new("/usr/bin/redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("cannot run /usr/bin/redis-cli");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for node in &nodes {
            wait_until(Duration::from_secs(20), "cluster_state:ok", || {
                let info = node.cli(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384")
            });
        }
        RedisCluster { nodes }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(RedisServer::addr).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The node id of node `i`.
    pub fn id(&self, i: usize) -> String {
        self.nodes[i].cli(&["CLUSTER", "MYID"])
    }

    /// The index of the node that serves `slot` (a key of it gets no redirect there).
    pub fn owner(&self, slot: u16) -> usize {
        let key = key_in_slot(slot, "probe");
        (0..self.nodes.len())
            .find(|&i| !self.nodes[i].cli(&["EXISTS", &key]).contains("MOVED"))
            .expect("a node serves every slot")
    }
}

/// A key of `slot`: `prefix` with a counter, found by trying.
pub(crate) fn key_in_slot(slot: u16, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| super::slots::key_slot(k.as_bytes()) == slot)
        .expect("a key")
}
