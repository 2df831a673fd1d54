//! Every route of the admin API: the one table the router, the OpenAPI document
//! (`openapi.json`) and `docs/admin-api.md` are checked against.
//!
//! Paths use `{name}` for a path parameter. `auth: false` routes answer without the token.

/// One admin route.
#[derive(Clone, Copy, Debug)]
pub struct AdminRoute {
    pub method: &'static str,
    pub path: &'static str,
    pub auth: bool,
}

const fn r(method: &'static str, path: &'static str) -> AdminRoute {
    AdminRoute {
        method,
        path,
        auth: true,
    }
}

const fn open(method: &'static str, path: &'static str) -> AdminRoute {
    AdminRoute {
        method,
        path,
        auth: false,
    }
}

pub const ROUTES: &[AdminRoute] = &[
    open("GET", "/healthz"),
    open("GET", "/readyz"),
    r("GET", "/metrics"),
    r("GET", "/openapi.json"),
    r("GET", "/status"),
    r("GET", "/config"),
    r("PUT", "/config"),
    r("POST", "/reload"),
    r("GET", "/apis"),
    r("POST", "/apis"),
    r("GET", "/apis/{api}"),
    r("PUT", "/apis/{api}"),
    r("DELETE", "/apis/{api}"),
    r("GET", "/apis/{api}/operations"),
    r("POST", "/apis/{api}/operations"),
    r("GET", "/apis/{api}/operations/{operation}"),
    r("PUT", "/apis/{api}/operations/{operation}"),
    r("DELETE", "/apis/{api}/operations/{operation}"),
    r("GET", "/apis/{api}/revisions"),
    r("POST", "/apis/{api}/revisions/{revision}/make-current"),
    r("GET", "/backends"),
    r("POST", "/backends"),
    r("GET", "/backends/{backend}"),
    r("PUT", "/backends/{backend}"),
    r("DELETE", "/backends/{backend}"),
    r("GET", "/backends/{backend}/targets"),
    r("POST", "/backends/{backend}/targets"),
    r("DELETE", "/backends/{backend}/targets/{target}"),
    r("POST", "/backends/{backend}/targets/{target}/drain"),
    r("POST", "/backends/{backend}/targets/{target}/undrain"),
    r("GET", "/products"),
    r("POST", "/products"),
    r("GET", "/products/{product}"),
    r("PUT", "/products/{product}"),
    r("DELETE", "/products/{product}"),
    r("GET", "/subscriptions"),
    r("POST", "/subscriptions"),
    r("GET", "/subscriptions/{subscription}"),
    r("PUT", "/subscriptions/{subscription}"),
    r("DELETE", "/subscriptions/{subscription}"),
    r("POST", "/subscriptions/{subscription}/regenerate"),
    r("POST", "/subscriptions/{subscription}/suspend"),
    r("POST", "/subscriptions/{subscription}/activate"),
    r("POST", "/subscriptions/{subscription}/cancel"),
    r("GET", "/developers"),
    r("POST", "/cache/purge"),
    r("GET", "/state/upstreams"),
    r("GET", "/state/limits"),
    r("GET", "/analytics"),
];

/// A route found, with its path parameters in order; or, for a path that exists but not with
/// this method, the methods it takes.
pub type Found<'p> = Result<(&'static AdminRoute, Vec<&'p str>), Vec<&'static str>>;

/// Matches `method` and `path` against [`ROUTES`]; None when no route has the path.
pub fn find<'p>(method: &str, path: &'p str) -> Option<Found<'p>> {
    let mut allowed = Vec::new();
    for route in ROUTES {
        if let Some(params) = match_path(route.path, path) {
            if route.method == method {
                return Some(Ok((route, params)));
            }
            allowed.push(route.method);
        }
    }
    (!allowed.is_empty()).then_some(Err(allowed))
}

fn match_path<'p>(template: &str, path: &'p str) -> Option<Vec<&'p str>> {
    let mut params = Vec::new();
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') => {
                if ps.is_empty() {
                    return None;
                }
                params.push(ps);
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_routes_and_parameters() {
        let (route, params) = find("GET", "/apis/orders/operations/get-order")
            .unwrap()
            .unwrap();
        assert_eq!(route.path, "/apis/{api}/operations/{operation}");
        assert_eq!(params, ["orders", "get-order"]);
        assert_eq!(
            find("PATCH", "/apis/orders").unwrap().unwrap_err(),
            ["GET", "PUT", "DELETE"]
        );
        assert!(find("GET", "/nope").is_none());
        assert!(find("GET", "/apis/").is_none());
    }
}
