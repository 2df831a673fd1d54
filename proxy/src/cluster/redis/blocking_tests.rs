//! The blocking client and subscriptions against real servers.

use std::time::{Duration, Instant};

use super::testing::{cli, RedisCluster, RedisServer};
use super::{BlockingClient, RedisError, RedisSettings, Script, Value};

fn client(url: &str) -> BlockingClient {
    BlockingClient::new(&RedisSettings::parse(url, None).unwrap())
}

fn bulk(s: &str) -> Value {
    Value::Bulk(Some(s.as_bytes().to_vec()))
}

#[test]
fn calls_and_scripts() {
    let server = RedisServer::start();
    let redis = client(&server.url());
    assert!(redis.call(&[b"SET", b"k", b"v"]).unwrap().is_ok());
    assert_eq!(redis.call(&[b"GET", b"k"]).unwrap(), bulk("v"));
    assert_eq!(
        redis.call(&[b"INCRBY", b"n", b"41"]).unwrap(),
        Value::Int(41)
    );
    let e = redis.call(&[b"INCR", b"k"]).unwrap_err();
    assert!(
        matches!(&e, RedisError::Server(m) if m.starts_with("ERR")),
        "{e:?}"
    );

    let script = Script::new("return redis.call('INCRBY', KEYS[1], ARGV[1]) * 2");
    assert_eq!(
        redis.eval_sha(&script, &[b"n"], &[b"1"]).unwrap(),
        Value::Int(84)
    );
    assert_eq!(
        redis.eval_sha(&script, &[b"n"], &[b"1"]).unwrap(),
        Value::Int(86)
    );
    let stats = server.cli(&["INFO", "commandstats"]);
    assert!(stats.contains("cmdstat_eval:calls=1,"), "{stats}");

    // Usable from several threads at once.
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let redis = redis.clone();
            std::thread::spawn(move || {
                for _ in 0..50 {
                    redis.call(&[b"INCR", b"shared"]).unwrap();
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(server.cli(&["GET", "shared"]), "200");
}

#[test]
fn a_call_after_a_restart_reconnects() {
    let mut server = RedisServer::start();
    let redis = client(&server.url());
    assert!(redis.call(&[b"SET", b"k", b"1"]).unwrap().is_ok());
    server.kill();
    assert!(redis.call(&[b"GET", b"k"]).unwrap_err().is_connection());
    server.restart();
    assert_eq!(redis.call(&[b"GET", b"k"]).unwrap(), Value::Bulk(None));
}

#[test]
fn a_subscription_receives_and_survives_a_restart() {
    let mut server = RedisServer::start();
    let redis = client(&server.url());
    let mut sub = redis.subscribe(&["purge", "config"]);
    let started = Instant::now();
    assert_eq!(sub.next_message(Duration::from_millis(100)).unwrap(), None);
    assert!(started.elapsed() >= Duration::from_millis(90));

    assert_eq!(server.cli(&["PUBLISH", "purge", "/a"]), "1");
    assert_eq!(server.cli(&["PUBLISH", "other", "x"]), "0");
    assert_eq!(server.cli(&["PUBLISH", "config", "v2"]), "1");
    let got = sub.next_message(Duration::from_secs(2)).unwrap();
    assert_eq!(got, Some((b"purge".to_vec(), b"/a".to_vec())));
    let got = sub.next_message(Duration::from_secs(2)).unwrap();
    assert_eq!(got, Some((b"config".to_vec(), b"v2".to_vec())));
    assert_eq!(sub.reconnects(), 0);

    server.kill();
    // The loss is seen; reconnecting fails while the server is down.
    let down = sub.next_message(Duration::from_millis(300));
    assert!(matches!(down, Err(_) | Ok(None)), "{down:?}");
    server.restart();
    // Subscribed again: a message published now arrives.
    let started = Instant::now();
    loop {
        if server.cli(&["PUBLISH", "purge", "/b"]) == "1" {
            break;
        }
        let _ = sub.next_message(Duration::from_millis(100));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no resubscription"
        );
    }
    let got = loop {
        match sub.next_message(Duration::from_secs(2)) {
            Ok(Some(m)) => break m,
            Ok(None) => panic!("the message did not arrive"),
            Err(e) => assert!(started.elapsed() < Duration::from_secs(10), "{e:?}"),
        }
    };
    assert_eq!(got, (b"purge".to_vec(), b"/b".to_vec()));
    assert_eq!(sub.reconnects(), 1);
}

#[test]
fn a_subscription_to_a_missing_server_says_why_and_backs_off() {
    let port = super::testing::free_port();
    let redis = client(&format!("redis://127.0.0.1:{port}"));
    let mut sub = redis.subscribe(&["x"]);
    // The first try already failed in subscribe(): this call waits out the back-off first.
    let e = sub.next_message(Duration::from_secs(1)).unwrap_err();
    assert!(matches!(e, RedisError::Io(_)), "{e:?}");
    let started = Instant::now();
    let quiet = sub.next_message(Duration::from_millis(10));
    assert!(matches!(quiet, Ok(None)), "{quiet:?}");
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[test]
fn cluster_calls_and_a_subscription_on_any_node() {
    let cluster = RedisCluster::start(3);
    let redis = client(&cluster.url());
    for i in 0..100 {
        let key = format!("b:{i}");
        assert!(
            redis.call(&[b"SET", key.as_bytes(), b"v"]).unwrap().is_ok(),
            "{key}"
        );
    }
    for node in &cluster.nodes {
        let n: u64 = node.cli(&["DBSIZE"]).parse().unwrap();
        assert!(n > 10, "{} holds {n} keys", node.port);
    }
    let script = Script::new("return redis.call('GET', KEYS[1])");
    assert_eq!(redis.eval_sha(&script, &[b"b:5"], &[]).unwrap(), bulk("v"));

    let mut sub = redis.subscribe(&["events"]);
    // Published on every node in turn: a cluster delivers it everywhere.
    for node in &cluster.nodes {
        cli(node.port, &["PUBLISH", "events", &node.port.to_string()]);
        let got = sub.next_message(Duration::from_secs(3)).unwrap();
        assert_eq!(
            got,
            Some((b"events".to_vec(), node.port.to_string().into_bytes()))
        );
    }
}
