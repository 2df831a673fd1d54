//! The portal's page and assets, embedded in the binary.

use super::PortalAnswer;

const INDEX: &[u8] = include_bytes!("assets/index.html");

/// (name, content type, bytes)
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("assets/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("assets/favicon.svg"),
    ),
];

/// The application's page, for every page path (the application routes in the browser).
pub fn index() -> PortalAnswer {
    let mut a = PortalAnswer::new(200, "text/html; charset=utf-8", INDEX.to_vec());
    a.headers.push(("Cache-Control".into(), "no-cache".into()));
    a
}

pub fn asset(name: &str, method: &str) -> PortalAnswer {
    if method != "GET" && method != "HEAD" {
        return PortalAnswer::error(405, "method_not_allowed", None, "assets are read with GET")
            .header("Allow", "GET, HEAD".into());
    }
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, bytes)) => {
            let mut a = PortalAnswer::new(200, kind, bytes.to_vec());
            a.headers.push(("Cache-Control".into(), "no-cache".into()));
            a
        }
        None => PortalAnswer::error(
            404,
            "not_found",
            Some("path"),
            &format!("no portal asset named {name:?}"),
        ),
    }
}
