//! Typed reads of manifest fields, each recording an error with the field's path when the value
//! is missing, of the wrong type, or not among the values the Gateway API allows.

use std::ops::RangeInclusive;

use serde_json::{Map, Value};

use super::Diag;

/// `field.key`, or `key` at the top.
pub(super) fn join(field: &str, key: &str) -> String {
    if field.is_empty() {
        key.to_string()
    } else {
        format!("{field}.{key}")
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// `v` as a mapping whose keys are all in `known`. An unknown key is an error: Kubernetes
/// would refuse or prune it, and a misspelt `backendRefs` must not silently drop backends.
pub(super) fn mapping<'v>(
    d: &mut Diag,
    field: &str,
    v: &'v Value,
    known: &[&str],
) -> Option<&'v Map<String, Value>> {
    let Some(map) = v.as_object() else {
        d.error(field, format!("expected a mapping, not {}", describe(v)));
        return None;
    };
    for key in map.keys() {
        if !known.contains(&key.as_str()) {
            d.error(
                &join(field, key),
                format!("unknown field (known: {})", known.join(", ")),
            );
        }
    }
    Some(map)
}

/// `map[key]` as a mapping; None when absent (or invalid, with an error).
pub(super) fn child<'v>(
    d: &mut Diag,
    field: &str,
    map: &'v Map<String, Value>,
    key: &str,
    known: &[&str],
) -> Option<&'v Map<String, Value>> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => mapping(d, &join(field, key), v, known),
    }
}

/// `map[key]` as a list; empty when absent (or invalid, with an error).
pub(super) fn list<'v>(
    d: &mut Diag,
    field: &str,
    map: &'v Map<String, Value>,
    key: &str,
) -> &'v [Value] {
    match map.get(key) {
        None | Some(Value::Null) => &[],
        Some(Value::Array(items)) => items,
        Some(v) => {
            d.error(
                &join(field, key),
                format!("expected a list, not {}", describe(v)),
            );
            &[]
        }
    }
}

/// `map[key]` as a string; None when absent (or invalid, with an error).
pub(super) fn string<'v>(
    d: &mut Diag,
    field: &str,
    map: &'v Map<String, Value>,
    key: &str,
) -> Option<&'v str> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(v) => {
            d.error(
                &join(field, key),
                format!("expected a string, not {}", describe(v)),
            );
            None
        }
    }
}

/// `map[key]` as a non-empty string, which the Gateway API requires.
pub(super) fn required<'v>(
    d: &mut Diag,
    field: &str,
    map: &'v Map<String, Value>,
    key: &str,
) -> Option<&'v str> {
    let value = string(d, field, map, key);
    match value {
        Some(s) if !s.is_empty() => Some(s),
        Some(_) => {
            d.error(&join(field, key), "must not be empty");
            None
        }
        None => {
            if map.get(key).is_none_or(Value::is_null) {
                d.error(&join(field, key), "is required");
            }
            None
        }
    }
}

/// `map[key]` as one of `allowed`; None when absent (or invalid, with an error).
pub(super) fn one_of<'v>(
    d: &mut Diag,
    field: &str,
    map: &'v Map<String, Value>,
    key: &str,
    allowed: &[&str],
) -> Option<&'v str> {
    let value = string(d, field, map, key)?;
    if allowed.contains(&value) {
        Some(value)
    } else {
        d.error(
            &join(field, key),
            format!("{value:?} is not one of {}", allowed.join(", ")),
        );
        None
    }
}

/// `map[key]` as an integer within `range`; None when absent (or invalid, with an error).
pub(super) fn integer(
    d: &mut Diag,
    field: &str,
    map: &Map<String, Value>,
    key: &str,
    range: RangeInclusive<i64>,
) -> Option<i64> {
    let v = map.get(key)?;
    if v.is_null() {
        return None;
    }
    let path = join(field, key);
    match v.as_i64() {
        Some(n) if range.contains(&n) => Some(n),
        Some(n) => {
            d.error(
                &path,
                format!("must be from {} to {}, not {n}", range.start(), range.end()),
            );
            None
        }
        None => {
            d.error(&path, format!("expected an integer, not {}", describe(v)));
            None
        }
    }
}

/// `map[key]` as text: a string, or a number or boolean written without quotes.
pub(super) fn text(
    d: &mut Diag,
    field: &str,
    map: &Map<String, Value>,
    key: &str,
) -> Option<String> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
        Some(v) => {
            d.error(
                &join(field, key),
                format!("expected a string, not {}", describe(v)),
            );
            None
        }
    }
}

/// Whether `name` is a Gateway API hostname: DNS labels, optionally a leading `*.` wildcard
/// label, no IP address and no port.
pub(super) fn is_hostname(name: &str) -> bool {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let is_ip = rest.parse::<std::net::Ipv4Addr>().is_ok();
    !rest.is_empty() && rest.len() <= 253 && !is_ip && rest.split('.').all(label_ok)
}

/// A Gateway API duration (`1h`, `30s`, `500ms`, `1m30s`: up to four numbers with units) in
/// milliseconds.
pub(super) fn duration_ms(text: &str) -> Option<u64> {
    let mut rest = text;
    let mut total = 0u64;
    let mut parts = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else {
            return None;
        };
        rest = &rest[len..];
        total += n * unit;
        parts += 1;
    }
    (1..=4).contains(&parts).then_some(total)
}

/// Milliseconds as a Ringway duration: one number in the largest unit that divides it.
pub(super) fn ringway_duration(ms: u64) -> String {
    match ms {
        0 => "0ms".to_string(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}
