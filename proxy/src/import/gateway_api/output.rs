//! A [`Conversion`] as a YAML configuration fragment, with its notes as comments: all of them
//! in a header, and each again where it applies (a Gateway's above the listeners, an
//! HTTPRoute's above the route of the rule it concerns, or above the route's first rule).

use serde_json::Value;

use super::{Conversion, Note};

pub(super) fn to_yaml(c: &Conversion) -> String {
    let mut out = String::from(
        "# Converted from Kubernetes Gateway API manifests by `ringway import gateway-api`.\n",
    );
    if c.notes.is_empty() {
        out.push_str("# Everything in them is expressed below.\n");
    } else {
        out.push_str(&format!(
            "# {} {} what Ringway cannot express, and what was done instead:\n",
            c.notes.len(),
            if c.notes.len() == 1 {
                "note says"
            } else {
                "notes say"
            }
        ));
        for note in &c.notes {
            comment(&mut out, "", note);
        }
    }

    out.push_str(&section_head("listeners", &c.listeners));
    for note in c.notes.iter().filter(|n| n.object.starts_with("Gateway ")) {
        comment(&mut out, "  ", note);
    }
    for listener in &c.listeners {
        item(&mut out, listener);
    }

    out.push_str(&section_head("backends", &c.backends));
    for backend in &c.backends {
        item(&mut out, backend);
    }

    out.push_str(&section_head("routes", &c.routes));
    for route in &c.routes {
        let name = route["name"].as_str().unwrap_or_default();
        for note in c
            .notes
            .iter()
            .filter(|n| placed_at(n, &c.routes) == Some(name))
        {
            comment(&mut out, "  ", note);
        }
        item(&mut out, route);
    }
    out
}

fn section_head(key: &str, entries: &[Value]) -> String {
    if entries.is_empty() {
        format!("{key}: []\n")
    } else {
        format!("{key}:\n")
    }
}

fn comment(out: &mut String, indent: &str, note: &Note) {
    let text = note.to_string().replace(['\n', '\r'], " ");
    out.push_str(indent);
    out.push_str("# ");
    out.push_str(&text);
    out.push('\n');
}

/// One list entry, indented under its key.
fn item(out: &mut String, value: &Value) {
    let yaml = serde_yaml_ng::to_string(&[value]).unwrap_or_default();
    for line in yaml.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

/// The route an HTTPRoute's note belongs above: the one made from the rule its field names,
/// else the first made from the HTTPRoute.
fn placed_at<'r>(note: &Note, routes: &'r [Value]) -> Option<&'r str> {
    let object = note.object.strip_prefix("HTTPRoute ")?;
    let (namespace, name) = object.split_once('/')?;
    let prefix = format!("{namespace}-{name}-");
    let names = routes.iter().filter_map(|r| r["name"].as_str());
    let mut own = names.filter(|n| {
        n.strip_prefix(&prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    });
    let rule = note
        .field
        .strip_prefix("spec.rules[")
        .and_then(|rest| rest.split_once(']'))
        .map(|(index, _)| format!("{prefix}{index}"));
    match rule {
        Some(rule) => own.find(|n| *n == rule),
        None => own.next(),
    }
}
