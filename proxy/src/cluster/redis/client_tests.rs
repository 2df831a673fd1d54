//! The async client against real servers (and a few fake ones that misbehave on purpose).

use std::cell::RefCell;
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::resp::{self, Value};
use super::testing::{key_in_slot, wait_until, RedisCluster, RedisServer, SentinelGroup, TempDir};
use super::{BlockingClient, Endpoint, RedisClient, RedisError, RedisSettings, Script};

/// Runs `f` on a runtime of its own. A client belongs to the runtime it is first used on
/// (its connections' tasks live there), so each test uses a client inside one `run`.
pub(super) fn run<F: Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("a runtime")
        .block_on(f)
}

fn settings(url: &str) -> RedisSettings {
    RedisSettings::parse(url, None).unwrap()
}

fn bulk(s: &str) -> Value {
    Value::Bulk(Some(s.as_bytes().to_vec()))
}

#[test]
fn set_get_incrby_and_error_replies() {
    let server = RedisServer::start();
    let client = RedisClient::new(&settings(&server.url()));
    run(async {
        assert!(client.is_available());
        assert!(client.call(&[b"SET", b"k", b"v"]).await.unwrap().is_ok());
        assert_eq!(client.call(&[b"GET", b"k"]).await.unwrap(), bulk("v"));
        assert_eq!(
            client.call(&[b"GET", b"missing"]).await.unwrap(),
            Value::Bulk(None)
        );
        let n = client.call(&[b"INCRBY", b"n", b"5"]).await.unwrap();
        assert_eq!(n.as_int(), Some(5));
        let n = client.call(&[b"incrby", b"n", b"-7"]).await.unwrap();
        assert_eq!(n, Value::Int(-2));
        // An error reply is the command's failure, not the connection's.
        match client.call(&[b"INCR", b"k"]).await {
            Err(RedisError::Server(m)) => {
                assert!(m.starts_with("ERR value is not an integer"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        let list = client.call(&[b"RPUSH", b"l", b"a", b"b"]).await.unwrap();
        assert_eq!(list.as_int(), Some(2));
        let items = client.call(&[b"LRANGE", b"l", b"0", b"-1"]).await.unwrap();
        assert_eq!(items, Value::Array(Some(vec![bulk("a"), bulk("b")])));
        assert_eq!(client.call(&[b"GET", b"k"]).await.unwrap(), bulk("v"));
    });
    assert_eq!(server.cli(&["GET", "n"]), "-2");
}

#[test]
fn eval_sha_falls_back_to_eval_on_noscript() {
    let server = RedisServer::start();
    let client = RedisClient::new(&settings(&server.url()));
    let script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    let sha = String::from_utf8(script.sha1().to_vec()).unwrap();
    assert_eq!(server.cli(&["SCRIPT", "EXISTS", &sha]), "0");
    run(async {
        let first = client
            .eval_sha(&script, &[b"counter"], &[b"3"])
            .await
            .unwrap();
        assert_eq!(first, Value::Int(3));
        // Cached now: EVALSHA alone does it.
        let second = client
            .eval_sha(&script, &[b"counter"], &[b"4"])
            .await
            .unwrap();
        assert_eq!(second, Value::Int(7));
        assert_eq!(server.cli(&["SCRIPT", "EXISTS", &sha]), "1");
        let stats = server.cli(&["INFO", "commandstats"]);
        assert!(stats.contains("cmdstat_eval:calls=1,"), "{stats}");
        assert!(stats.contains("cmdstat_evalsha:calls=2,"), "{stats}");
        // A script error is a server error.
        let broken = Script::new("return redis.call('NOPE')");
        let e = client.eval_sha(&broken, &[], &[]).await.unwrap_err();
        assert!(
            matches!(&e, RedisError::Server(m) if m.contains("Unknown Redis command")),
            "{e:?}"
        );
    });
}

#[test]
fn many_tasks_pipeline_on_one_connection() {
    let server = RedisServer::start();
    let client = RedisClient::new(&settings(&server.url()));
    let got = run(async {
        let seen = Rc::new(RefCell::new(Vec::new()));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                let seen = Rc::clone(&seen);
                monoio::spawn(async move {
                    for _ in 0..250 {
                        let n = client.call(&[b"INCR", b"hits"]).await.unwrap();
                        seen.borrow_mut().push(n.as_int().unwrap());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        // Every caller shared one connection.
        let clients = client.call(&[b"CLIENT", b"LIST"]).await.unwrap();
        assert_eq!(clients.as_str().unwrap().lines().count(), 1, "{clients:?}");
        let seen = seen.borrow().clone();
        seen
    });
    let mut got = got;
    got.sort_unstable();
    assert_eq!(got, (1..=2000).collect::<Vec<i64>>());
}

#[test]
fn a_pool_spreads_calls_over_its_connections() {
    let server = RedisServer::start();
    let mut s = settings(&server.url());
    s.pool_size = 3;
    let client = RedisClient::new(&s);
    run(async {
        let calls: Vec<_> = (0..30)
            .map(|_| {
                let client = client.clone();
                monoio::spawn(async move { client.call(&[b"INCR", b"n"]).await })
            })
            .collect();
        for c in calls {
            assert!(c.await.is_ok());
        }
        let clients = client.call(&[b"CLIENT", b"LIST"]).await.unwrap();
        assert_eq!(clients.as_str().unwrap().lines().count(), 3, "{clients:?}");
    });
    assert_eq!(server.cli(&["GET", "n"]), "30");
}

#[test]
fn unreachable_topologies_fail_fast() {
    let (a, b) = (super::testing::free_port(), super::testing::free_port());
    run(async {
        let sentinel = RedisClient::new(&settings(&format!(
            "redis+sentinel://127.0.0.1:{a},127.0.0.1:{b}/mymaster"
        )));
        let e = sentinel.call(&[b"PING"]).await.unwrap_err();
        assert!(
            matches!(e, RedisError::Unavailable(m) if m.contains("no master known")),
            "{e:?}"
        );
        assert!(!sentinel.is_available());
        let started = Instant::now();
        assert!(matches!(
            sentinel.call(&[b"PING"]).await,
            Err(RedisError::Unavailable(_))
        ));
        assert!(started.elapsed() < Duration::from_millis(20));

        let cluster = RedisClient::new(&settings(&format!(
            "redis+cluster://127.0.0.1:{a},127.0.0.1:{b}"
        )));
        let e = cluster.call(&[b"GET", b"k"]).await.unwrap_err();
        assert!(
            matches!(e, RedisError::Unavailable(m) if m.contains("slot map is unknown")),
            "{e:?}"
        );
        assert!(!cluster.is_available());
    });
}

/// A server that accepts connections and reads, but never answers. Counts its connections.
fn silent_server() -> (u16, Arc<AtomicUsize>, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (count, stopped) = (Arc::clone(&accepted), Arc::clone(&stop));
    std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        while !stopped.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((s, _)) => {
                    count.fetch_add(1, Ordering::SeqCst);
                    held.push(s);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (port, accepted, stop)
}

#[test]
fn a_silent_server_times_out_and_a_full_queue_fails_fast() {
    let (port, accepted, stop) = silent_server();
    let mut s = settings(&format!("redis://127.0.0.1:{port}"));
    s.command_timeout = Duration::from_millis(200);
    s.max_in_flight = 4;
    let client = RedisClient::new(&s);
    run(async {
        let started = Instant::now();
        let got = client.call(&[b"PING"]).await;
        assert!(matches!(got, Err(RedisError::Timeout)), "{got:?}");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_secs(1),
            "{took:?}"
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // The abandoned PING keeps its place (a late reply must still be matched) until the
        // connection is found stuck: the next call, a timeout later, replaces it first.
        monoio::time::sleep(Duration::from_millis(250)).await;
        let waiting: Vec<_> = (0..4)
            .map(|_| {
                let client = client.clone();
                monoio::spawn(async move { client.call(&[b"PING"]).await })
            })
            .collect();
        monoio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        // Four commands wait on the new connection: a fifth is refused without waiting.
        let started = Instant::now();
        let refused = client.call(&[b"PING"]).await;
        assert!(
            matches!(refused, Err(RedisError::Unavailable(m)) if m.contains("too many")),
            "{refused:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(50));
        for w in waiting {
            let got = w.await;
            assert!(matches!(got, Err(RedisError::Timeout)), "{got:?}");
        }
    });
    stop.store(true, Ordering::Relaxed);
}

#[test]
fn a_connection_lost_mid_pipeline_fails_every_waiting_call() {
    // Answers the first two of ten PINGs, then closes the connection.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let ping = b"*1\r\n$4\r\nPING\r\n";
        while got.windows(ping.len()).filter(|w| w == ping).count() < 10 {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "the client closed first");
            got.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"+PONG\r\n+PONG\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        drop(s);
    });
    let mut s = settings(&format!("redis://127.0.0.1:{port}"));
    s.command_timeout = Duration::from_secs(10);
    let client = RedisClient::new(&s);
    let results = run(async {
        let started = Instant::now();
        let calls: Vec<_> = (0..10)
            .map(|_| {
                let client = client.clone();
                monoio::spawn(async move { client.call(&[b"PING"]).await })
            })
            .collect();
        let mut results = Vec::new();
        for c in calls {
            results.push(c.await);
        }
        // Failed by the close, not by the (10 s) timeout.
        assert!(started.elapsed() < Duration::from_secs(3));
        results
    });
    server.join().unwrap();
    let ok = results
        .iter()
        .filter(|r| matches!(r, Ok(v) if v.as_bytes() == Some(b"PONG")))
        .count();
    let io = results
        .iter()
        .filter(|r| matches!(r, Err(RedisError::Io(_))))
        .count();
    assert_eq!((ok, io), (2, 8), "{results:?}");
}

#[test]
fn reconnects_after_the_server_restarts() {
    let mut server = RedisServer::start();
    let client = RedisClient::new(&settings(&server.url()));
    run(async {
        assert!(client.call(&[b"SET", b"k", b"1"]).await.is_ok());
        server.kill();
        // The broken connection fails a call (or two, if the first went out before the
        // close was seen); reconnecting fails, and the link backs off: refused at once.
        let mut failures = Vec::new();
        loop {
            match client.call(&[b"GET", b"k"]).await {
                Err(RedisError::Unavailable(_)) => break,
                Err(e) => failures.push(e),
                Ok(v) => panic!("{v:?} from a dead server"),
            }
            assert!(failures.len() <= 2, "{failures:?}");
        }
        assert!(!failures.is_empty());
        assert!(
            failures.iter().all(|e| matches!(e, RedisError::Io(_))),
            "{failures:?}"
        );
        assert!(!client.is_available());

        server.restart();
        let started = Instant::now();
        loop {
            match client.call(&[b"SET", b"k", b"2"]).await {
                Ok(v) => {
                    assert!(v.is_ok());
                    break;
                }
                Err(e) => assert!(started.elapsed() < Duration::from_secs(5), "{e:?}"),
            }
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(client.is_available());
        assert_eq!(client.call(&[b"GET", b"k"]).await.unwrap(), bulk("2"));
    });
}

#[test]
fn a_slow_reply_times_out_and_the_connection_is_replaced() {
    let server = RedisServer::start_with(&["--enable-debug-command", "local"]);
    let mut s = settings(&server.url());
    s.command_timeout = Duration::from_millis(150);
    let client = RedisClient::new(&s);
    run(async {
        assert!(client.call(&[b"SET", b"k", b"v"]).await.is_ok());
        let started = Instant::now();
        let slow = client.call(&[b"DEBUG", b"SLEEP", b"0.5"]).await;
        assert!(matches!(slow, Err(RedisError::Timeout)), "{slow:?}");
        assert!(started.elapsed() < Duration::from_millis(400));
        // The stalled connection was dropped (its late reply cannot be mistaken for
        // another command's); a new one answers once the server is awake.
        monoio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(client.call(&[b"GET", b"k"]).await.unwrap(), bulk("v"));
    });
}

#[test]
fn auth_and_select_on_connect() {
    let server = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let port = server.port;
    run(async {
        let client = RedisClient::new(&settings(&format!("redis://:s3cret@127.0.0.1:{port}/3")));
        assert!(client.call(&[b"SET", b"k", b"in-3"]).await.unwrap().is_ok());

        let anonymous = RedisClient::new(&settings(&format!("redis://127.0.0.1:{port}")));
        let e = anonymous.call(&[b"GET", b"k"]).await.unwrap_err();
        assert!(
            matches!(&e, RedisError::Server(m) if m.starts_with("NOAUTH")),
            "{e:?}"
        );

        let wrong = RedisClient::new(&settings(&format!("redis://:nope@127.0.0.1:{port}")));
        let e = wrong.call(&[b"GET", b"k"]).await.unwrap_err();
        assert!(
            matches!(&e, RedisError::Server(m) if m.starts_with("WRONGPASS")),
            "{e:?}"
        );
        assert!(!wrong.is_available());

        let acl = client
            .call(&[b"ACL", b"SETUSER", b"alice", b"on", b">pw", b"~*", b"+@all"])
            .await
            .unwrap();
        assert!(acl.is_ok());
        let alice = RedisClient::new(&settings(&format!("redis://alice:pw@127.0.0.1:{port}/3")));
        assert_eq!(
            alice.call(&[b"ACL", b"WHOAMI"]).await.unwrap(),
            bulk("alice")
        );
        assert_eq!(alice.call(&[b"GET", b"k"]).await.unwrap(), bulk("in-3"));
    });
    assert_eq!(
        server.cli(&["-a", "s3cret", "--no-auth-warning", "-n", "3", "GET", "k"]),
        "in-3"
    );
    assert_eq!(
        server.cli(&[
            "-a",
            "s3cret",
            "--no-auth-warning",
            "-n",
            "0",
            "EXISTS",
            "k"
        ]),
        "0"
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM files in `dir`.
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let path = |name: &str| dir.join(name).to_str().unwrap().to_string();
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("cert.pem"), cert.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    (path("ca.pem"), path("cert.pem"), path("key.pem"))
}

#[test]
fn tls_with_a_ca_file() {
    let dir = TempDir::new("redis-tls");
    let (ca, cert, key) = certificates(dir.path());
    let server = RedisServer::start_tls(&[
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ]);
    let url = format!("rediss://127.0.0.1:{}", server.port);
    let trusted = RedisSettings::parse(&url, Some(std::path::Path::new(&ca))).unwrap();
    run(async {
        let client = RedisClient::new(&trusted);
        assert!(client
            .call(&[b"SET", b"secure", b"yes"])
            .await
            .unwrap()
            .is_ok());
        assert_eq!(
            client.call(&[b"GET", b"secure"]).await.unwrap(),
            bulk("yes")
        );
    });
    let blocking = BlockingClient::new(&trusted);
    assert_eq!(blocking.call(&[b"GET", b"secure"]).unwrap(), bulk("yes"));
    // By name: looked up off the worker's thread, verified as a DNS name.
    let by_name = format!("rediss://localhost:{}", server.port);
    let by_name = RedisSettings::parse(&by_name, Some(std::path::Path::new(&ca))).unwrap();
    let got = run(RedisClient::new(&by_name).call(&[b"GET", b"secure"]));
    assert_eq!(got.unwrap(), bulk("yes"));
    let got = BlockingClient::new(&by_name).call(&[b"GET", b"secure"]);
    assert_eq!(got.unwrap(), bulk("yes"));

    // Another CA's certificate is not trusted.
    let other = TempDir::new("redis-tls-other");
    let (other_ca, _, _) = certificates(other.path());
    let untrusted = RedisSettings::parse(&url, Some(std::path::Path::new(&other_ca))).unwrap();
    let e = run(RedisClient::new(&untrusted).call(&[b"PING"])).unwrap_err();
    assert!(
        matches!(&e, RedisError::Io(io) if io.to_string().contains("certificate")),
        "{e:?}"
    );
    let e = BlockingClient::new(&untrusted)
        .call(&[b"PING"])
        .unwrap_err();
    assert!(
        matches!(&e, RedisError::Io(io) if io.to_string().contains("certificate")),
        "{e:?}"
    );
}

/// A fake Sentinel that names the master whose port `master` holds.
fn fake_sentinel(master: Arc<AtomicU16>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            let master = Arc::clone(&master);
            std::thread::spawn(move || {
                let mut got = Vec::new();
                let mut buf = [0u8; 1024];
                loop {
                    while let Ok(Some((command, used))) = resp::parse(&got) {
                        got.drain(..used);
                        let args: Vec<&[u8]> = command
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|a| a.as_bytes().unwrap())
                            .collect();
                        assert_eq!(args[1], b"get-master-addr-by-name", "{command:?}");
                        let port = master.load(Ordering::SeqCst).to_string();
                        let mut out = Vec::new();
                        resp::encode_value(
                            &mut out,
                            &Value::Array(Some(vec![bulk("127.0.0.1"), bulk(&port)])),
                        );
                        if s.write_all(&out).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_readonly_reply_sends_the_write_to_the_new_master() {
    let a = RedisServer::start();
    let b = RedisServer::start();
    let named = Arc::new(AtomicU16::new(a.port));
    let sentinel = fake_sentinel(Arc::clone(&named));
    let client = RedisClient::new(&settings(&format!(
        "redis+sentinel://127.0.0.1:{sentinel}/mymaster"
    )));
    run(async {
        assert!(client.call(&[b"SET", b"k", b"on-a"]).await.unwrap().is_ok());
        assert_eq!(
            client.current_master(),
            Some(Endpoint::new("127.0.0.1", a.port))
        );
        // A fail-over the client does not see coming: A becomes B's replica.
        named.store(b.port, Ordering::SeqCst);
        assert_eq!(
            a.cli(&["REPLICAOF", "127.0.0.1", &b.port.to_string()]),
            "OK"
        );
        let after = client.call(&[b"SET", b"k2", b"on-b"]).await;
        assert!(matches!(&after, Ok(v) if v.is_ok()), "{after:?}");
        assert_eq!(
            client.current_master(),
            Some(Endpoint::new("127.0.0.1", b.port))
        );
    });
    assert_eq!(b.cli(&["GET", "k2"]), "on-b");
}

#[test]
fn sentinel_fail_over_finds_the_new_master() {
    let mut group = SentinelGroup::start();
    let s = settings(&group.url());
    let client = RedisClient::new(&s);
    let blocking = BlockingClient::new(&s);
    let master = Endpoint::new("127.0.0.1", group.master.port);
    let replica = Endpoint::new("127.0.0.1", group.replica.port);
    run(async {
        let set = client.call(&[b"SET", b"before", b"1"]).await;
        assert!(matches!(&set, Ok(v) if v.is_ok()), "{set:?}");
        assert_eq!(client.current_master(), Some(master));
        assert_eq!(blocking.call(&[b"GET", b"before"]).unwrap(), bulk("1"));

        group.master.kill();
        let killed = Instant::now();
        loop {
            match client.call(&[b"SET", b"after", b"2"]).await {
                Ok(v) => {
                    assert!(v.is_ok());
                    break;
                }
                Err(e) => assert!(
                    killed.elapsed() < Duration::from_secs(20),
                    "no write within 20 s: {e:?}; sentinel log: {}",
                    group.sentinels[0].log()
                ),
            }
            monoio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = killed.elapsed();
        assert!(
            took < Duration::from_secs(15),
            "the fail-over took {took:?}"
        );
        assert_eq!(client.current_master(), Some(replica));
        assert_eq!(client.call(&[b"GET", b"before"]).await.unwrap(), bulk("1"));
    });
    assert_eq!(group.replica.cli(&["GET", "after"]), "2");
    // The blocking client's connection died with the master; it finds the new one too.
    let started = Instant::now();
    loop {
        match blocking.call(&[b"SET", b"blocking", b"3"]) {
            Ok(v) => {
                assert!(v.is_ok());
                break;
            }
            Err(e) => assert!(started.elapsed() < Duration::from_secs(10), "{e:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(group.replica.cli(&["GET", "blocking"]), "3");
}

#[test]
fn cluster_routes_keys_across_slots() {
    let cluster = RedisCluster::start(3);
    let client = RedisClient::new(&settings(&cluster.url()));
    let script =
        Script::new("redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])");
    run(async {
        for i in 0..300 {
            let key = format!("key:{i}");
            let value = format!("value:{i}");
            let r = client
                .call(&[b"SET", key.as_bytes(), value.as_bytes()])
                .await;
            assert!(matches!(&r, Ok(v) if v.is_ok()), "{key}: {r:?}");
        }
        for i in 0..300 {
            let key = format!("key:{i}");
            assert_eq!(
                client.call(&[b"GET", key.as_bytes()]).await.unwrap(),
                bulk(&format!("value:{i}"))
            );
        }
        // Hash tags keep a multi-key command in one slot.
        let r = client
            .call(&[
                b"MSET",
                b"{user1000}.following",
                b"a",
                b"{user1000}.followers",
                b"b",
            ])
            .await;
        assert!(matches!(&r, Ok(v) if v.is_ok()), "{r:?}");
        let e = client
            .call(&[b"MSET", b"foo", b"1", b"bar", b"2"])
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RedisError::Server(m) if m.starts_with("CROSSSLOT")),
            "{e:?}"
        );
        // Keyless commands go to any master.
        assert_eq!(
            client.call(&[b"PING"]).await.unwrap().as_bytes(),
            Some(&b"PONG"[..])
        );
        for i in 0..20 {
            let key = format!("scripted:{i}");
            let got = client
                .eval_sha(&script, &[key.as_bytes()], &[b"x"])
                .await
                .unwrap();
            assert_eq!(got, bulk("x"));
        }
    });
    // Every master holds some of the keys, and each key is on its slot's owner.
    for node in &cluster.nodes {
        let n: u64 = node.cli(&["DBSIZE"]).parse().unwrap();
        assert!(n > 50, "{} holds {n} keys", node.port);
    }
    let owner = cluster.owner(super::slots::key_slot(b"key:7"));
    assert_eq!(cluster.nodes[owner].cli(&["GET", "key:7"]), "value:7");
}

#[test]
fn cluster_follows_ask_and_moved_when_a_slot_moves() {
    let cluster = RedisCluster::start(3);
    let client = RedisClient::new(&settings(&cluster.url()));
    let slot = super::slots::key_slot(b"foo");
    let from = cluster.owner(slot);
    let to = (from + 1) % 3;
    let (from_id, to_id) = (cluster.id(from), cluster.id(to));
    let key = key_in_slot(slot, "moving:");
    let s = slot.to_string();
    run(async {
        // Load the slot map.
        assert!(client.call(&[b"SET", b"foo", b"1"]).await.unwrap().is_ok());
        assert_eq!(client.call(&[b"DEL", b"foo"]).await.unwrap(), Value::Int(1));
        let from_endpoint = Endpoint::new("127.0.0.1", cluster.nodes[from].port);
        assert_eq!(client.slot_owner(slot), Some(from_endpoint.clone()));

        // Migration under way: a key the old owner lacks is asked of the new one.
        assert_eq!(
            cluster.nodes[to].cli(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]),
            "OK"
        );
        assert_eq!(
            cluster.nodes[from].cli(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]),
            "OK"
        );
        let r = client.call(&[b"SET", key.as_bytes(), b"asked"]).await;
        assert!(matches!(&r, Ok(v) if v.is_ok()), "{r:?}");
        assert_eq!(
            cluster.nodes[to].cli(&["CLUSTER", "COUNTKEYSINSLOT", &s]),
            "1"
        );
        assert_eq!(
            cluster.nodes[from].cli(&["CLUSTER", "COUNTKEYSINSLOT", &s]),
            "0"
        );
        // ASK changes nothing in the map.
        assert_eq!(client.slot_owner(slot), Some(from_endpoint));

        // Migration done: the stale map is corrected by MOVED.
        for i in [to, from, (to + 1) % 3] {
            assert_eq!(
                cluster.nodes[i].cli(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]),
                "OK"
            );
        }
        wait_until(
            Duration::from_secs(10),
            "the slot to move everywhere",
            || cluster.owner(slot) == to,
        );
        assert_eq!(
            client.call(&[b"GET", key.as_bytes()]).await.unwrap(),
            bulk("asked")
        );
        let to_endpoint = Endpoint::new("127.0.0.1", cluster.nodes[to].port);
        assert_eq!(client.slot_owner(slot), Some(to_endpoint));
        assert!(client.call(&[b"SET", b"foo", b"2"]).await.unwrap().is_ok());
    });
    assert_eq!(cluster.nodes[to].cli(&["GET", "foo"]), "2");
}
