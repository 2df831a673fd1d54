use super::*;
use crate::config::load_str;

/// Headers as a list of (lowercase name, value).
struct Headers(Vec<(&'static str, &'static str)>);

impl HeaderLookup for Headers {
    fn get(&self, name_lowercase: &[u8]) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name_lowercase))
            .map(|(_, v)| v.as_bytes())
    }
}

/// A router over `routes` (YAML list items), with backends `a`, `b`, `c`.
fn router(routes: &str) -> Router {
    let text = format!(
        "listeners: [{{address: 127.0.0.1:8080}}]\nbackends:\n  - {{name: a, targets: [{{url: http://127.0.0.1:1}}]}}\n  - {{name: b, targets: [{{url: http://127.0.0.1:2}}]}}\n  - {{name: c, targets: [{{url: http://127.0.0.1:3}}]}}\nroutes:\n{routes}"
    );
    let config = load_str(&text, "test.yaml", &|_| None).unwrap_or_else(|e| panic!("{e}"));
    Router::build(&config).unwrap()
}

struct Req {
    host: &'static str,
    method: &'static str,
    path: &'static str,
    query: &'static str,
    headers: Headers,
}

fn get(path: &'static str) -> Req {
    Req {
        host: "example.com",
        method: "GET",
        path,
        query: "",
        headers: Headers(Vec::new()),
    }
}

impl Req {
    fn host(mut self, host: &'static str) -> Req {
        self.host = host;
        self
    }
    fn method(mut self, method: &'static str) -> Req {
        self.method = method;
        self
    }
    fn query(mut self, query: &'static str) -> Req {
        self.query = query;
        self
    }
    fn header(mut self, name: &'static str, value: &'static str) -> Req {
        self.headers.0.push((name, value));
        self
    }
}

/// The name of the route chosen for `req`, or "none".
fn pick(router: &Router, req: &Req) -> String {
    find(router, req).map_or("none".into(), |m| m.route.name.clone())
}

fn find<'r>(router: &'r Router, req: &Req) -> Option<Matched<'r>> {
    router.find(&RouteRequest {
        host: req.host.as_bytes(),
        method: req.method.as_bytes(),
        path: req.path.as_bytes(),
        query: req.query.as_bytes(),
        headers: &req.headers,
    })
}

#[test]
fn exact_beats_prefix() {
    let r = router(
        "  - {name: prefix, backend: a, matches: [{path: {value: /orders}}]}\n  - {name: exact, backend: b, matches: [{path: {type: exact, value: /orders/list}}]}\n",
    );
    assert_eq!(pick(&r, &get("/orders/list")), "exact");
    assert_eq!(pick(&r, &get("/orders/list/")), "prefix");
    assert_eq!(pick(&r, &get("/orders")), "prefix");
}

#[test]
fn longest_prefix_wins() {
    let r = router(
        "  - {name: root, backend: a}\n  - {name: short, backend: a, matches: [{path: {value: /api}}]}\n  - {name: long, backend: b, matches: [{path: {value: /api/v2/}}]}\n",
    );
    assert_eq!(pick(&r, &get("/api/v2/x")), "long");
    assert_eq!(pick(&r, &get("/api/v2")), "long");
    assert_eq!(pick(&r, &get("/api/v3")), "short");
    assert_eq!(pick(&r, &get("/other")), "root");
    assert_eq!(pick(&r, &get("/")), "root");
}

#[test]
fn prefix_respects_segment_boundaries() {
    let r = router("  - {name: abc, backend: a, matches: [{path: {value: /abc}}]}\n");
    assert_eq!(pick(&r, &get("/abc")), "abc");
    assert_eq!(pick(&r, &get("/abc/")), "abc");
    assert_eq!(pick(&r, &get("/abc/x")), "abc");
    assert_eq!(pick(&r, &get("/abcd")), "none");
    assert_eq!(pick(&r, &get("/ab")), "none");
}

#[test]
fn prefix_len() {
    let r = router(
        "  - {name: api, backend: a, matches: [{path: {value: /api/}}]}\n  - {name: root, backend: a, matches: [{path: {value: /}}]}\n  - {name: exact, backend: a, matches: [{path: {type: exact, value: /e}}]}\n  - {name: re, backend: a, matches: [{path: {type: regex, value: \"/r.*\"}}]}\n",
    );
    assert_eq!(find(&r, &get("/api/x")).unwrap().prefix_len, 4);
    assert_eq!(find(&r, &get("/api")).unwrap().prefix_len, 4);
    assert_eq!(find(&r, &get("/zzz")).unwrap().prefix_len, 0);
    assert_eq!(find(&r, &get("/e")).unwrap().prefix_len, 0);
    let m = find(&r, &get("/rx")).unwrap();
    // "/" prefix (rank prefix) beats regex, so the root route wins here.
    assert_eq!(m.route.name, "root");
}

#[test]
fn template_beats_prefix_and_more_literals_win() {
    let r = router(
        "  - {name: prefix, backend: a, matches: [{path: {value: /users}}]}\n  - {name: generic, backend: a, matches: [{path: {type: template, value: \"/users/{id}/{sub}\"}}]}\n  - {name: specific, backend: b, matches: [{path: {type: template, value: \"/users/{id}/orders\"}}]}\n  - {name: exact, backend: c, matches: [{path: {type: exact, value: /users/me/orders}}]}\n",
    );
    assert_eq!(pick(&r, &get("/users/5/orders")), "specific");
    assert_eq!(pick(&r, &get("/users/5/profile")), "generic");
    assert_eq!(pick(&r, &get("/users/me/orders")), "exact");
    assert_eq!(pick(&r, &get("/users/5")), "prefix");
    assert_eq!(pick(&r, &get("/users//orders")), "prefix");
}

#[test]
fn regex_is_a_full_match_and_ranks_last() {
    let r = router(
        "  - {name: re, backend: a, matches: [{path: {type: regex, value: \"/v[0-9]+/.*\"}}]}\n  - {name: prefix, backend: b, matches: [{path: {value: /v1}}]}\n",
    );
    assert_eq!(pick(&r, &get("/v2/x")), "re");
    assert_eq!(pick(&r, &get("/v1/x")), "prefix");
    assert_eq!(pick(&r, &get("/api/v2/x")), "none");
}

#[test]
fn method_match_beats_none() {
    let r = router(
        "  - {name: any, backend: a, matches: [{path: {value: /x}}]}\n  - {name: post, backend: b, matches: [{path: {value: /x}, method: POST}]}\n",
    );
    assert_eq!(pick(&r, &get("/x").method("POST")), "post");
    assert_eq!(pick(&r, &get("/x")), "any");
    // Methods are case-sensitive.
    assert_eq!(pick(&r, &get("/x").method("post")), "any");
}

#[test]
fn more_header_matches_win() {
    let r = router(
        "  - {name: one, backend: a, matches: [{headers: [{name: x-a, value: '1'}]}]}\n  - {name: two, backend: b, matches: [{headers: [{name: X-A, value: '1'}, {name: x-b, type: regex, value: '[0-9]+'}]}]}\n",
    );
    assert_eq!(
        pick(&r, &get("/").header("X-A", "1").header("x-b", "42")),
        "two"
    );
    assert_eq!(
        pick(&r, &get("/").header("x-a", "1").header("x-b", "4x")),
        "one"
    );
    assert_eq!(pick(&r, &get("/").header("x-a", "2")), "none");
    assert_eq!(pick(&r, &get("/")), "none");
}

#[test]
fn more_query_matches_win() {
    let r = router(
        "  - {name: one, backend: a, matches: [{query: [{name: a, value: '1'}]}]}\n  - {name: two, backend: b, matches: [{query: [{name: a, value: '1'}, {name: b, value: ''}]}]}\n",
    );
    assert_eq!(pick(&r, &get("/").query("b&a=1")), "two");
    assert_eq!(pick(&r, &get("/").query("a=1&b=2")), "one");
    assert_eq!(pick(&r, &get("/").query("a=2&a=1")), "none");
    assert_eq!(pick(&r, &get("/").query("a=%31")), "none");
}

#[test]
fn headers_rank_before_query() {
    let r = router(
        "  - {name: query, backend: a, matches: [{query: [{name: q, value: '1'}, {name: r, value: '1'}]}]}\n  - {name: header, backend: b, matches: [{headers: [{name: h, value: '1'}]}]}\n",
    );
    assert_eq!(
        pick(&r, &get("/").query("q=1&r=1").header("h", "1")),
        "header"
    );
}

#[test]
fn declaration_order_breaks_ties() {
    let r = router(
        "  - {name: first, backend: a, matches: [{path: {value: /x}}]}\n  - {name: second, backend: b, matches: [{path: {value: /x}}]}\n  - {name: e1, backend: a, matches: [{path: {type: exact, value: /e}}]}\n  - {name: e2, backend: b, matches: [{path: {type: exact, value: /e}}]}\n",
    );
    assert_eq!(pick(&r, &get("/x/y")), "first");
    assert_eq!(pick(&r, &get("/e")), "e1");
}

#[test]
fn each_match_is_a_candidate() {
    let r = router(
        "  - {name: multi, backend: a, matches: [{path: {value: /a}}, {path: {type: exact, value: /b/c}}]}\n  - {name: other, backend: b, matches: [{path: {value: /b}}]}\n",
    );
    assert_eq!(pick(&r, &get("/a/1")), "multi");
    assert_eq!(pick(&r, &get("/b/c")), "multi");
    assert_eq!(pick(&r, &get("/b/d")), "other");
}

#[test]
fn host_precedence() {
    let r = router(
        "  - {name: none, backend: a, matches: [{path: {type: exact, value: /x}}]}\n  - {name: wide, backend: a, hosts: ['*.example.com']}\n  - {name: narrow, backend: b, hosts: ['*.api.example.com']}\n  - {name: exact, backend: c, hosts: [api.example.com]}\n",
    );
    assert_eq!(pick(&r, &get("/x").host("api.example.com")), "exact");
    assert_eq!(pick(&r, &get("/x").host("v1.api.example.com")), "narrow");
    assert_eq!(pick(&r, &get("/x").host("www.example.com")), "wide");
    assert_eq!(pick(&r, &get("/x").host("a.b.example.com")), "wide");
    // The wildcard needs at least one more label.
    assert_eq!(pick(&r, &get("/x").host("example.com")), "none");
    assert_eq!(pick(&r, &get("/y").host("example.com")), "none");
    assert_eq!(pick(&r, &get("/x").host("other.org")), "none");
}

#[test]
fn host_falls_through_when_nothing_matches() {
    let r = router(
        "  - {name: any, backend: a}\n  - {name: api, backend: b, hosts: [api.example.com], matches: [{path: {value: /v1}}]}\n",
    );
    assert_eq!(pick(&r, &get("/v1/x").host("api.example.com")), "api");
    assert_eq!(pick(&r, &get("/v2").host("api.example.com")), "any");
}

#[test]
fn host_port_and_case_are_ignored() {
    let r = router(
        "  - {name: exact, backend: a, hosts: [Api.Example.com]}\n  - {name: wild, backend: b, hosts: ['*.example.com']}\n  - {name: any, backend: c}\n",
    );
    assert_eq!(pick(&r, &get("/").host("API.EXAMPLE.COM:8080")), "exact");
    assert_eq!(pick(&r, &get("/").host("api.example.com.")), "exact");
    assert_eq!(pick(&r, &get("/").host("WWW.Example.Com:443")), "wild");
    assert_eq!(pick(&r, &get("/").host("[::1]:8080")), "any");
    assert_eq!(pick(&r, &get("/").host("[::1]")), "any");
    assert_eq!(pick(&r, &get("/").host("")), "any");
    let long: &'static str = Box::leak("a".repeat(300).into_boxed_str());
    assert_eq!(pick(&r, &get("/").host(long)), "any");
}

#[test]
fn path_case_matters() {
    let r = router("  - {name: p, backend: a, matches: [{path: {value: /Api}}]}\n");
    assert_eq!(pick(&r, &get("/Api/x")), "p");
    assert_eq!(pick(&r, &get("/api/x")), "none");
}

#[test]
fn no_routes_no_match() {
    let r = router("  []\n");
    assert_eq!(pick(&r, &get("/")), "none");
    assert!(r.routes().is_empty());
}

#[test]
fn actions_resolve_backend_indices() {
    let r = router(
        "  - {name: c, backend: c, matches: [{path: {value: /c}}]}\n  - {name: r, redirect: {host: example.org}, matches: [{path: {value: /r}}]}\n  - {name: d, return_response: {status: 204}}\n",
    );
    assert!(matches!(r.routes()[0].action, Action::Backend(2)));
    assert!(matches!(&r.routes()[1].action, Action::Redirect(rd) if rd.status == 302));
    assert!(
        matches!(&r.routes()[2].action, Action::Respond(d) if d.status == 204 && d.body.is_empty())
    );
    assert_eq!(pick(&r, &get("/r/1")), "r");
}

#[test]
fn build_reports_unknown_backends() {
    let text = "listeners: [{address: 127.0.0.1:8080}]\nbackends: [{name: a, targets: [{url: http://127.0.0.1:1}]}]\nroutes: [{backend: a}]\n";
    let mut config = load_str(text, "gw.yaml", &|_| None).unwrap();
    config.routes[0].action = RouteAction::Backend("gone".into());
    let e = Router::build(&config).unwrap_err();
    assert_eq!(
        e.errors,
        vec!["gw.yaml: routes[0].backend: no backend named \"gone\" (known: a)"]
    );
}

#[test]
fn rewrites() {
    let rewrite = |r: Rewrite, path: &[u8], prefix_len: usize| {
        let mut out = b"GET ".to_vec();
        r.apply(path, prefix_len, &mut out);
        out.split_off(4)
    };
    assert_eq!(
        rewrite(Rewrite::Prefix((*b"/v2").into()), b"/api/x", 4),
        b"/v2/x"
    );
    assert_eq!(rewrite(Rewrite::Prefix((*b"").into()), b"/api/x", 4), b"/x");
    assert_eq!(rewrite(Rewrite::Prefix((*b"").into()), b"/api", 4), b"/");
    assert_eq!(
        rewrite(Rewrite::Prefix((*b"/v2").into()), b"/x", 0),
        b"/v2/x"
    );
    assert_eq!(
        rewrite(Rewrite::Path((*b"/new").into()), b"/old/x", 4),
        b"/new"
    );
}

/// Counts allocations made by the current thread, to check that `find` allocates nothing.
/// (The only global allocator of the library's test binary.)
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct CountingAlloc;

    thread_local! {
        static COUNT: Cell<usize> = const { Cell::new(0) };
    }

    // SAFETY: forwards to the system allocator unchanged; only counts calls.
    unsafe impl GlobalAlloc for CountingAlloc {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as the caller's.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static ALLOC: CountingAlloc = CountingAlloc;

    pub fn allocations() -> usize {
        COUNT.with(Cell::get)
    }
}

#[test]
fn find_does_not_allocate() {
    let r = router(
        "  - {name: e, backend: a, hosts: [api.example.com], matches: [{path: {type: exact, value: /e}, method: GET}]}\n  - {name: w, backend: a, hosts: ['*.example.com'], matches: [{path: {type: template, value: '/u/{id}'}}]}\n  - {name: q, backend: b, matches: [{path: {value: /q}, query: [{name: a, type: regex, value: '[0-9]+'}], headers: [{name: x, value: '1'}]}]}\n  - {name: re, backend: c, matches: [{path: {type: regex, value: '/r/.*'}}]}\n",
    );
    let requests = [
        get("/e").host("API.example.com:80"),
        get("/u/5").host("www.example.com"),
        get("/q/1").query("b&a=12").header("x", "1"),
        get("/r/x"),
        get("/nothing"),
    ];
    let expected = ["e", "w", "q", "re", "none"];
    // Warm up: a regex's matching state is created on its first use by a thread.
    for req in &requests {
        find(&r, req);
    }
    let before = counting::allocations();
    let mut found = [None; 5];
    for (slot, req) in found.iter_mut().zip(&requests) {
        *slot = find(&r, req).map(|m| m.route as *const Route);
    }
    assert_eq!(counting::allocations(), before);
    for ((f, name), req) in found.iter().zip(expected).zip(&requests) {
        assert_eq!(f.is_some(), name != "none");
        assert_eq!(pick(&r, req), name);
    }
}
