//! W3C Trace Context through the real binary: every forwarded request carries a
//! `traceparent` whose parent id is the gateway's own span; an incoming trace is continued
//! (trace id and flags kept), a missing or invalid one is started; `tracestate` passes through.

use ringway_tests::{proxy_to, Client, Origin};

fn parts(v: &str) -> Vec<String> {
    v.split('-').map(str::to_string).collect()
}

#[test]
fn traces_are_continued_or_started_with_a_new_span_per_hop() {
    let origin = Origin::start("o");
    let rw = proxy_to(&origin);
    let mut c = Client::connect(rw.addr());

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let r = c.request(
        "GET",
        "/a",
        &[
            ("traceparent", incoming),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let seen = origin.last_request().unwrap();
    let sent = parts(seen.header("traceparent").unwrap());
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0], "00");
    assert_eq!(sent[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(sent[2], "00f067aa0ba902b7");
    assert_eq!(sent[2].len(), 16);
    assert_eq!(sent[3], "00");
    assert_eq!(seen.header("tracestate"), Some("congo=t61rcWkgMzE"));
    assert_eq!(seen.header_all("traceparent").len(), 1);

    // No traceparent, or a broken one: a new sampled trace, a different one each time.
    let mut traces = Vec::new();
    for header in [None, Some("00-garbage")] {
        let headers: Vec<(&str, &str)> =
            header.map(|h| vec![("traceparent", h)]).unwrap_or_default();
        assert_eq!(c.request("GET", "/b", &headers, b"").status, 200);
        let sent = parts(
            origin
                .last_request()
                .unwrap()
                .header("traceparent")
                .unwrap(),
        );
        assert_eq!(sent[0], "00");
        assert_eq!(sent[1].len(), 32);
        assert!(sent[1]
            .chars()
            .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase()));
        assert_eq!(sent[3], "01");
        traces.push(sent[1].clone());
    }
    assert_ne!(traces[0], traces[1]);
}
