//! What `ringway ctl` prints for people: summaries, tables, and the admin API's errors.

use serde_json::Value;

pub fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `ringway ctl: STATUS CODE: FIELD: MESSAGE` on stderr; for a refused configuration, a
/// first line and then each error on its own.
pub fn print_error(status: u16, body: &Value) {
    let mut line = format!("ringway ctl: {status}");
    if let Some(code) = body.get("error").and_then(Value::as_str) {
        line.push_str(&format!(" {code}"));
    }
    let errors: Vec<String> = body
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| match (e.get("field"), e.get("message")) {
            (Some(f), Some(m)) => format!("{}: {}", text(f), text(m)),
            _ => text(e),
        })
        .collect();
    if errors.is_empty() {
        let message = match body {
            Value::String(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => body
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| crate::server::reason(status).to_string()),
        };
        match body.get("field").and_then(Value::as_str) {
            Some(field) if !field.is_empty() && !message.contains(field) => {
                line.push_str(&format!(": {field}: {message}"))
            }
            _ => line.push_str(&format!(": {message}")),
        }
        eprintln!("{line}");
    } else {
        let n = errors.len();
        eprintln!(
            "{line}: refused, nothing changed ({n} error{})",
            if n == 1 { "" } else { "s" }
        );
        for e in errors {
            eprintln!("{e}");
        }
    }
}

/// A number of milliseconds, integer or not, as `12 ms` or `1.5 ms`.
fn millis(v: &Value) -> Option<String> {
    let ms = v.as_f64()?;
    Some(if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    })
}

/// `: generation 4 in 37 ms` from a reload's answer, then its warnings on lines of their own.
pub fn reload_summary(body: &Value) -> String {
    let mut out = String::new();
    if let Some(g) = body.get("generation").and_then(Value::as_u64) {
        out.push_str(&format!(": configuration generation {g}"));
    }
    if let Some(ms) = ["reload_ms", "duration_ms"]
        .iter()
        .find_map(|k| body.get(*k).and_then(millis))
    {
        out.push_str(&format!(" in {ms}"));
    }
    out.push_str(&warnings(body));
    out
}

/// The `warnings` of an answer, each on a line of its own after the first.
pub fn warnings(body: &Value) -> String {
    body.get("warnings")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|w| format!("\nwarning: {}", text(w)))
        .collect()
}

/// Seconds since the Unix epoch as how long ago, for times the admin API gives that way.
fn ago(v: &Value) -> String {
    let Some(at) = v.as_u64() else {
        return text(v);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(at);
    format!("{} ago", duration(now.saturating_sub(at)))
}

pub fn print_status(body: &Value) {
    let field = |path: &str| body.pointer(path).filter(|v| !v.is_null());
    let row = |label: &str, value: String| println!("{:<15}{value}", format!("{label}:"));
    if let Some(v) = field("/version") {
        row("version", text(v));
    }
    if let Some(s) = field("/uptime_seconds").and_then(Value::as_u64) {
        row("uptime", duration(s));
    }
    if let Some(v) = field("/workers") {
        let ready = match field("/ready").and_then(Value::as_bool) {
            Some(true) => " (ready)",
            Some(false) => " (not ready)",
            None => "",
        };
        row("workers", format!("{}{ready}", text(v)));
    }
    if let Some(g) = field("/config/generation").or_else(|| field("/generation")) {
        let mut line = format!("generation {}", text(g));
        if let Some(file) = field("/config/file") {
            line.push_str(&format!(", file {}", text(file)));
        }
        if let Some(source) = field("/config/source").or_else(|| field("/source")) {
            line.push_str(&format!(", from {}", text(source)));
        }
        row("configuration", line);
    }
    for l in field("/listeners")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = l.get("name").map(text).unwrap_or_default();
        let address = l.get("address").map(text).unwrap_or_default();
        row("listener", format!("{address} ({name})"));
    }
    match field("/last_reload") {
        Some(r) => {
            let mut line = r.get("result").map(text).unwrap_or_else(|| "-".into());
            if let Some(trigger) = r.get("trigger").filter(|v| !v.is_null()) {
                line.push_str(&format!(" ({})", text(trigger)));
            }
            if let Some(at) = r.get("at").filter(|v| !v.is_null()) {
                line.push_str(&format!(", {}", ago(at)));
            }
            if let Some(ms) = r.get("duration_ms").and_then(millis) {
                line.push_str(&format!(", took {ms}"));
            }
            row("last reload", line);
            for (what, key) in [("error", "errors"), ("warning", "warnings")] {
                for e in r.get(key).and_then(Value::as_array).into_iter().flatten() {
                    println!("  {what}: {}", text(e));
                }
            }
        }
        None => row("last reload", "none".into()),
    }
    if let (Some(ok), Some(failed)) = (field("/reloads/success"), field("/reloads/failure")) {
        row(
            "reloads",
            format!("{} applied, {} refused", text(ok), text(failed)),
        );
    }
    if let Some(v) = field("/requests") {
        row("requests", text(v));
    }
}

fn duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m"),
    }
}

fn scope_text(scope: &Value) -> String {
    if let Some(p) = scope.get("product").and_then(Value::as_str) {
        format!("product {p}")
    } else if let Some(a) = scope.get("api").and_then(Value::as_str) {
        format!("api {a}")
    } else {
        text(scope)
    }
}

pub fn print_subscriptions(body: &Value) {
    let rows: Vec<Vec<String>> = body
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                s.get("id").map(text).unwrap_or_default(),
                s.get("scope").map(scope_text).unwrap_or_default(),
                s.get("state")
                    .filter(|v| !v.is_null())
                    .map(text)
                    .unwrap_or_else(|| "active".into()),
                s.get("owner").map(text).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(&["ID", "SCOPE", "STATE", "OWNER"], &rows);
}

pub fn print_keys(body: &Value) {
    for (slot, label) in [
        ("primary_key", "primary key:  "),
        ("secondary_key", "secondary key:"),
    ] {
        if let Some(key) = body.get(slot).and_then(Value::as_str) {
            println!("{label} {key}");
        }
    }
    println!("These keys are shown this once: the gateway keeps only their hashes.");
}

pub fn print_upstreams(body: &Value) {
    let mut rows = Vec::new();
    for backend in body
        .get("backends")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = backend
            .get("backend")
            .or_else(|| backend.get("name"))
            .map(text)
            .unwrap_or_default();
        let pool = backend.get("pool");
        let reuses = pool
            .and_then(|p| p.get("reuses"))
            .map(text)
            .unwrap_or_else(|| "-".into());
        let targets = backend.get("targets").and_then(Value::as_array);
        for t in targets.into_iter().flatten() {
            let yes_no = |v: Option<bool>| match v {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            };
            let health = match (
                t.get("health_checked").and_then(Value::as_bool),
                t.get("healthy").and_then(Value::as_bool),
            ) {
                (Some(false), _) => "unchecked".to_string(),
                (_, Some(true)) => "healthy".to_string(),
                (_, Some(false)) => "unhealthy".to_string(),
                _ => t.get("health").map(text).unwrap_or_else(|| "-".into()),
            };
            rows.push(vec![
                name.clone(),
                t.get("target")
                    .or_else(|| t.get("url"))
                    .map(text)
                    .unwrap_or_default(),
                t.get("breaker").map(text).unwrap_or_else(|| "-".into()),
                health,
                yes_no(t.get("drained").and_then(Value::as_bool)).to_string(),
                reuses.clone(),
            ]);
        }
    }
    print_table(
        &[
            "BACKEND",
            "TARGET",
            "BREAKER",
            "HEALTH",
            "DRAINED",
            "POOL REUSES",
        ],
        &rows,
    );
}

fn print_table(head: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(head.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn formats() {
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3_725), "1h 2m 5s");
        assert_eq!(duration(90_061), "1d 1h 1m");
        assert_eq!(scope_text(&json!({"product": "gold"})), "product gold");
        assert_eq!(scope_text(&json!("all_apis")), "all_apis");
    }
}
