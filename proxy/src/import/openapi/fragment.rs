//! The configuration fragment `ringway import openapi` prints: a backend and an API whose
//! operations are the document's, as commented YAML that Ringway loads as it is (the text
//! escapes `${` so that environment substitution leaves the document's words alone).

use std::fmt::Write;

use super::Document;

/// The target written when neither `--backend` nor a server gives one.
const PLACEHOLDER_TARGET: &str = "http://127.0.0.1:8000";

pub(super) fn config_yaml(
    doc: &Document,
    api_name: &str,
    api_path: &str,
    backend: Option<&str>,
) -> String {
    let mut out = String::new();
    let title = one_line(&doc.title);
    let _ = writeln!(
        out,
        "# {title} {} (OpenAPI {}),\n# imported from {} by `ringway import openapi`.",
        one_line(&doc.version),
        doc.openapi,
        one_line(&doc.source)
    );
    out.push_str(
        "# Merge these sections into the configuration; policies go under the API or an \
         operation.\n",
    );

    // Where the backend is, and which of its paths the API's requests go under.
    // A --backend without a scheme (`10.0.0.5:8080`) is a host and port.
    let backend = backend.map(|b| {
        if b.contains("://") {
            b.to_string()
        } else {
            format!("http://{b}")
        }
    });
    let (from, url) = match &backend {
        Some(url) => ("--backend", Some(url.as_str())),
        None => ("servers[0]", doc.servers.first().map(String::as_str)),
    };
    let (origin, base) = url.map(split_url).unwrap_or((None, None));
    out.push_str("backends:\n");
    let _ = writeln!(out, "  - name: {}", scalar(api_name));
    out.push_str("    targets:\n");
    match &origin {
        Some(origin) => {
            let _ = writeln!(
                out,
                "      - url: {}    # from {from}: {}",
                scalar(origin),
                one_line(url.unwrap_or_default())
            );
        }
        None => {
            match url {
                Some(url) => {
                    let _ = writeln!(
                        out,
                        "      # TODO: {from} ({}) names no host: replace this placeholder \
                         with the API's backend.",
                        one_line(url)
                    );
                }
                None => out.push_str(
                    "      # TODO: the document names no server: replace this placeholder with \
                     the API's backend\n      # (or import again with --backend URL).\n",
                ),
            }
            let _ = writeln!(out, "      - url: {PLACEHOLDER_TARGET}");
        }
    }

    out.push_str("apis:\n");
    let _ = writeln!(out, "  - name: {}", scalar(api_name));
    let _ = writeln!(out, "    path: {}", scalar(api_path));
    let _ = writeln!(out, "    backend: {}", scalar(api_name));
    if let Some(base) = base {
        let _ = writeln!(
            out,
            "    backend_path: {}    # requests go to {base}/... on the backend",
            scalar(&base)
        );
    }
    if doc.operations.is_empty() {
        out.push_str("    # The document declares no operations: every request under the path goes through.\n");
        return out.replace("${", "$${");
    }
    out.push_str("    operations:\n");
    for op in &doc.operations {
        let mut note = op.summary.as_deref().map(one_line).unwrap_or_default();
        if op.deprecated {
            note = if note.is_empty() {
                "(deprecated)".to_string()
            } else {
                format!("{note} (deprecated)")
            };
        }
        if !note.is_empty() {
            let _ = writeln!(out, "      # {note}");
        }
        let _ = writeln!(out, "      - id: {}", scalar(&op.id));
        let _ = writeln!(out, "        method: {}", scalar(&op.method));
        let _ = writeln!(out, "        url_template: {}", scalar(&op.path));
    }
    out.replace("${", "$${")
}

/// `scheme://authority` of a URL, and its path without a trailing `/` (none when empty).
/// A URL without a scheme (a server relative to the document) has only a path.
fn split_url(url: &str) -> (Option<String>, Option<String>) {
    let url = url.split(['?', '#']).next().unwrap_or("");
    let (origin, path) = match url.split_once("://") {
        Some((scheme, rest)) if !scheme.is_empty() && !rest.is_empty() => {
            let slash = rest.find('/').unwrap_or(rest.len());
            (
                Some(format!("{scheme}://{}", &rest[..slash])),
                &rest[slash..],
            )
        }
        _ => (None, url),
    };
    let path = path.trim_end_matches('/');
    let path = (!path.is_empty()).then(|| {
        if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        }
    });
    (origin, path)
}

/// `text` on one line, for a comment.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` as a YAML scalar: plain when that reads back as the same string, else quoted.
fn scalar(text: &str) -> String {
    // Starting with a letter, `/` or `_` keeps YAML from reading a number or an indicator.
    let plain = text.starts_with(|c: char| c.is_ascii_alphabetic() || c == '/' || c == '_')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./{}:@+~=".contains(&b))
        && !text.ends_with(':')
        && !matches!(
            text.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
        );
    if plain {
        text.to_string()
    } else {
        serde_json::Value::String(text.to_string()).to_string()
    }
}
