//! Span export through the real binary, to a collector that is a plain listener in the test:
//! a continued trace keeps its trace id and has the caller's span as parent, the gateway's
//! span is the parent the origin saw, an incoming sampled flag decides over `sample`, and a
//! trace the gateway starts is sampled as `sample` says.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringway_tests::{Client, Origin, Ringway};
use serde_json::Value;

/// A collector on loopback: answers every POST with 200 and keeps every span received.
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Value>>>,
    posts: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let posts = Arc::new(Mutex::new(Vec::new()));
        let (s, p) = (Arc::clone(&spans), Arc::clone(&posts));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                if let Some((head, body)) = read_post(&mut stream) {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
                    let json: Value = serde_json::from_slice(&body)
                        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&body)));
                    let mut all = s.lock().unwrap();
                    for r in json["resourceSpans"].as_array().unwrap() {
                        let service = &r["resource"]["attributes"][0];
                        assert_eq!(service["key"], "service.name");
                        for scope in r["scopeSpans"].as_array().unwrap() {
                            all.extend(scope["spans"].as_array().unwrap().iter().cloned());
                        }
                    }
                    p.lock().unwrap().push(head);
                }
            }
        });
        Collector { addr, spans, posts }
    }

    fn url(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// Waits up to 10 s for a span with `trace_id`, and returns every span received by then.
    fn wait_trace(&self, trace_id: &str) -> Vec<Value> {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let spans = self.spans.lock().unwrap().clone();
            if spans.iter().any(|s| s["traceId"] == trace_id) {
                return spans;
            }
            assert!(
                Instant::now() < until,
                "no span of trace {trace_id}; received {spans:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One request's head and body (by Content-Length).
fn read_post(stream: &mut std::net::TcpStream) -> Option<(String, Vec<u8>)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut data = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while data.len() < end + length {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    Some((head, data[end..end + length].to_vec()))
}

fn config(origin: &Origin, collector: &Collector, sample: &str) -> String {
    format!(
        "workers: 1\n\
         listeners:\n  - address: 127.0.0.1:0\n\
         backends:\n  - name: orders\n    targets: [{{url: {}}}]\n\
         tracing:\n  otlp_endpoint: \"{}\"\n  sample: {sample}\n  service_name: edge-test\n  \
         interval: 100ms\n\
         apis:\n  - name: orders\n    path: /orders\n    backend: orders\n    operations:\n\
         \x20     - {{id: get-order, method: GET, url_template: \"/{{id}}\"}}\n\
         routes:\n  - name: rest\n    backend: orders\n",
        origin.url(),
        collector.url()
    )
}

fn attribute<'a>(span: &'a Value, key: &str) -> &'a Value {
    let attrs = span["attributes"].as_array().unwrap();
    let found = attrs.iter().find(|a| a["key"] == key);
    &found.unwrap_or_else(|| panic!("no attribute {key} in {span:#}"))["value"]
}

#[test]
fn a_continued_trace_is_exported_with_the_callers_span_as_parent() {
    let origin = Origin::start("o");
    let collector = Collector::start();
    // `sample: 0`: only the incoming sampled flag can make these spans.
    let rw = Ringway::start(&config(&origin, &collector, "0"));
    let mut c = Client::connect(rw.addr());

    let unsampled = "00-11111111111111111111111111111111-2222222222222222-00";
    assert_eq!(
        c.request("GET", "/orders/1", &[("traceparent", unsampled)], b"")
            .status,
        200
    );
    let sent = origin.last_request().unwrap();
    assert!(sent.header("traceparent").unwrap().ends_with("-00"));
    // A trace the gateway starts is not sampled either, and says so upstream.
    assert_eq!(c.get("/orders/2").status, 200);
    let started = origin.last_request().unwrap();
    let started = started.header("traceparent").unwrap();
    assert!(started.ends_with("-00"), "{started}");

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let answered = c.request(
        "GET",
        "/orders/7?expand=items",
        &[("traceparent", incoming)],
        b"",
    );
    assert_eq!(answered.status, 200);
    let seen = origin.last_request().unwrap();
    let upstream = seen.header("traceparent").unwrap().to_string();
    let gateway_span = &upstream[36..52];

    let spans = collector.wait_trace("4bf92f3577b34da6a3ce929d0e0e4736");
    // Spans are exported in the order they were recorded: the unsampled ones would be here.
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let span = &spans[0];
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(span["spanId"], gateway_span);
    assert_eq!(span["kind"], 2);
    assert!(
        span["name"].as_str().unwrap().starts_with("GET"),
        "{span:#}"
    );
    let start: u128 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u128 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start > 0 && start <= end, "{span:#}");
    assert_eq!(attribute(span, "http.request.method")["stringValue"], "GET");
    assert_eq!(attribute(span, "url.path")["stringValue"], "/orders/7");
    assert_eq!(
        attribute(span, "http.response.status_code")["intValue"],
        "200"
    );
    assert_eq!(attribute(span, "ringway.api")["stringValue"], "orders");
    assert_eq!(
        attribute(span, "ringway.operation")["stringValue"],
        "get-order"
    );
    assert_eq!(attribute(span, "ringway.backend")["stringValue"], "orders");
    assert_eq!(
        attribute(span, "ringway.target")["stringValue"],
        origin.addr().to_string()
    );
    assert_eq!(
        attribute(span, "client.address")["stringValue"],
        "127.0.0.1"
    );

    let posts = collector.posts.lock().unwrap();
    assert!(
        posts[0].starts_with("POST /v1/traces HTTP/1.1\r\n"),
        "{}",
        posts[0]
    );
    assert!(posts[0]
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
}

#[test]
fn started_traces_follow_sample_and_mark_errors() {
    let origin = Origin::start("o");
    let collector = Collector::start();
    let rw = Ringway::start(&config(&origin, &collector, "1"));
    let mut c = Client::connect(rw.addr());
    assert_eq!(c.get("/status/503").status, 503);
    let sent = origin.last_request().unwrap();
    let sent = sent.header("traceparent").unwrap().to_string();
    assert!(sent.ends_with("-01"), "{sent}");
    let spans = collector.wait_trace(&sent[3..35]);
    let span = spans.iter().find(|s| s["traceId"] == sent[3..35]).unwrap();
    assert!(span.get("parentSpanId").is_none(), "{span:#}");
    assert_eq!(span["spanId"], sent[36..52]);
    assert_eq!(span["status"]["code"], 2);
    assert_eq!(
        attribute(span, "http.response.status_code")["intValue"],
        "503"
    );
    assert_eq!(attribute(span, "ringway.api")["stringValue"], "rest");
}
