//! The portal's page and assets, embedded in the binary.

use super::PortalAnswer;

const INDEX: &[u8] = include_bytes!("assets/index.html");

/// The front end's ES modules (`app.js` is the entry; the others it imports by relative path).
const JS: &str = "text/javascript; charset=utf-8";

/// (name, content type, bytes)
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", JS, include_bytes!("assets/app.js")),
    ("api.js", JS, include_bytes!("assets/api.js")),
    ("dom.js", JS, include_bytes!("assets/dom.js")),
    ("widgets.js", JS, include_bytes!("assets/widgets.js")),
    ("router.js", JS, include_bytes!("assets/router.js")),
    ("catalog.js", JS, include_bytes!("assets/catalog.js")),
    ("reference.js", JS, include_bytes!("assets/reference.js")),
    ("schema.js", JS, include_bytes!("assets/schema.js")),
    ("try.js", JS, include_bytes!("assets/try.js")),
    ("forms.js", JS, include_bytes!("assets/forms.js")),
    ("account.js", JS, include_bytes!("assets/account.js")),
    ("chart.js", JS, include_bytes!("assets/chart.js")),
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
