//! What a sweep varies: `--param NAME=V1,V2,...`, the dotted paths they set in the YAML
//! document, the combinations (their cartesian product) and the order each round runs them in.
//!
//! Nothing here starts a process, so the test file includes this module as it is.

use serde_yaml_ng::{Mapping, Value};

/// The settings a sweep is meant for, with what each trades (`--help` and the docs list them).
/// Any other dotted path is accepted too: `ringway check` decides whether it is valid.
pub const SWEEPABLE: [(&str, &str); 9] = [
    (
        "workers",
        "threads (one per core): more serve more, but share the CPUs with the origin and the load",
    ),
    (
        "cpus",
        "where the workers are pinned: apart from the origin and the load, or on top of them",
    ),
    ("runtime.driver", "auto | io_uring | epoll"),
    (
        "runtime.ring_entries",
        "io_uring submission queue size (power of two)",
    ),
    (
        "runtime.ring_flags",
        "none | coop_taskrun | defer_taskrun | sqpoll",
    ),
    (
        "runtime.buffer_size",
        "the large buffers lent to connections (e.g. 16KiB)",
    ),
    ("limits.accept_backlog", "listen(2) backlog"),
    (
        "limits.max_connections_per_worker",
        "open client connections per worker",
    ),
    (
        "backends.*.pool.max_idle_per_target",
        "idle upstream keep-alive connections per target per worker",
    ),
];

/// One `--param`: a dotted path and the values it takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    /// The path's segments: a key, `*` (every element), or a list index.
    pub path: Vec<String>,
    /// The values as written (for labels) and as YAML scalars (for the document).
    pub values: Vec<(String, Value)>,
}

impl Param {
    /// Parses `NAME=V1,V2,...`. Values are YAML scalars separated by commas; a value that holds
    /// a comma is quoted (`cpus="0,2","1"`).
    pub fn parse(text: &str) -> Result<Param, String> {
        let (name, list) = text
            .split_once('=')
            .ok_or_else(|| format!("--param {text:?}: expected NAME=V1,V2,..."))?;
        let name = name.trim();
        let path = parse_path(name).map_err(|e| format!("--param {text:?}: {e}"))?;
        let mut values: Vec<(String, Value)> = Vec::new();
        for raw in split_values(list).map_err(|e| format!("--param {text:?}: {e}"))? {
            let value = scalar(&raw).map_err(|e| format!("--param {text:?}: {e}"))?;
            if values.iter().any(|(_, v)| *v == value) {
                return Err(format!("--param {text:?}: the value {raw} is given twice"));
            }
            values.push((raw, value));
        }
        if values.is_empty() {
            return Err(format!("--param {text:?}: no values"));
        }
        Ok(Param {
            name: name.to_string(),
            path,
            values,
        })
    }
}

/// `a.b.*.c` into its segments.
pub fn parse_path(name: &str) -> Result<Vec<String>, String> {
    if name.is_empty() {
        return Err("the setting's name is empty".into());
    }
    let path: Vec<String> = name.split('.').map(str::to_string).collect();
    if let Some(bad) = path.iter().find(|s| {
        s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '*')
            || (s.contains('*') && s.as_str() != "*")
    }) {
        return Err(format!(
            "{name:?} is not a dotted path (segment {bad:?}; use keys, list indices and *)"
        ));
    }
    Ok(path)
}

/// Splits a comma-separated list, keeping commas inside single or double quotes.
pub fn split_values(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in list.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                current.push(c);
            }
            (None, ',') => out.push(std::mem::take(&mut current)),
            (None, c) => current.push(c),
        }
    }
    if quote.is_some() {
        return Err("a quote is not closed".into());
    }
    out.push(current);
    let out: Vec<String> = out.into_iter().map(|v| v.trim().to_string()).collect();
    if out.iter().any(String::is_empty) {
        return Err("an empty value (two commas in a row, or one at an end)".into());
    }
    Ok(out)
}

/// One value: a YAML scalar (a number, a word, a quoted string, a boolean).
pub fn scalar(raw: &str) -> Result<Value, String> {
    let value: Value =
        serde_yaml_ng::from_str(raw).map_err(|e| format!("{raw:?} is not a YAML scalar: {e}"))?;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(value),
        _ => Err(format!(
            "{raw:?} is not a YAML scalar (a number, a word or a quoted string)"
        )),
    }
}

/// Sets `path` to `value` in `doc`: missing keys are created as mappings on the way, `*` applies
/// to every element of a list (or every value of a mapping), a number indexes a list. Returns
/// how many places were set; a `*` over an empty or missing list is an error, since the setting
/// would then change nothing.
pub fn set(doc: &mut Value, path: &[String], value: &Value) -> Result<usize, String> {
    set_at(doc, path, 0, value)
}

fn set_at(node: &mut Value, path: &[String], depth: usize, value: &Value) -> Result<usize, String> {
    let Some(head) = path.get(depth) else {
        *node = value.clone();
        return Ok(1);
    };
    let here = || {
        if depth == 0 {
            "the document".to_string()
        } else {
            path[..depth].join(".")
        }
    };
    if head == "*" {
        let mut count = 0;
        match node {
            Value::Sequence(items) => {
                for item in items.iter_mut() {
                    count += set_at(item, path, depth + 1, value)?;
                }
            }
            Value::Mapping(map) => {
                for (_, item) in map.iter_mut() {
                    count += set_at(item, path, depth + 1, value)?;
                }
            }
            Value::Null => {}
            _ => return Err(format!("{}: not a list, so * applies to nothing", here())),
        }
        if count == 0 {
            return Err(format!("{}: empty, so * applies to nothing", here()));
        }
        return Ok(count);
    }
    if let Value::Sequence(items) = node {
        let len = items.len();
        let index: usize = head
            .parse()
            .map_err(|_| format!("{}: a list, indexed by a number or *, not {head:?}", here()))?;
        let item = items
            .get_mut(index)
            .ok_or_else(|| format!("{}: has {len} elements, no {index}", here()))?;
        return set_at(item, path, depth + 1, value);
    }
    if node.is_null() {
        *node = Value::Mapping(Mapping::new());
    }
    let Value::Mapping(map) = node else {
        return Err(format!("{}: a scalar, not a mapping with {head:?}", here()));
    };
    let key = Value::String(head.clone());
    if !map.contains_key(&key) {
        if path.get(depth + 1).is_some_and(|next| next == "*") {
            return Err(format!(
                "{}: missing, so * applies to nothing",
                path[..=depth].join(".")
            ));
        }
        map.insert(key.clone(), Value::Null);
    }
    let child = map.get_mut(&key).expect("present or inserted above");
    set_at(child, path, depth + 1, value)
}

/// The combinations: one value index per param, the last param varying fastest.
pub fn cartesian(sizes: &[usize]) -> Vec<Vec<usize>> {
    if sizes.is_empty() || sizes.contains(&0) {
        return Vec::new();
    }
    let total: usize = sizes.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut current = vec![0; sizes.len()];
    for _ in 0..total {
        out.push(current.clone());
        for i in (0..sizes.len()).rev() {
            current[i] += 1;
            if current[i] < sizes[i] {
                break;
            }
            current[i] = 0;
        }
    }
    out
}

/// The order round `round` (from 0) runs `m` combinations in: a balanced Latin square
/// (Williams design). Every round runs each combination once; over `m` rounds (`2m` when `m` is
/// odd) each combination runs once in every position, and each one directly follows each other
/// one equally often, so neither a drift over time (a neighbour's build, a warming CPU) nor what
/// ran just before favours any of them.
pub fn round_order(m: usize, round: usize) -> Vec<usize> {
    if m == 0 {
        return Vec::new();
    }
    let base: Vec<usize> = (0..m)
        .map(|j| {
            if j == 0 {
                0
            } else if j % 2 == 1 {
                j.div_ceil(2)
            } else {
                m - j / 2
            }
        })
        .collect();
    // m rounds for an even m, 2m for an odd one.
    let period = m * (1 + m % 2);
    let r = round % period;
    let shift = r % m;
    let mut row: Vec<usize> = base.iter().map(|b| (b + shift) % m).collect();
    if r >= m {
        row.reverse();
    }
    row
}

/// `name=value name=value` for a combination.
pub fn label(params: &[Param], combination: &[usize]) -> String {
    params
        .iter()
        .zip(combination)
        .map(|(p, &v)| format!("{}={}", p.name, p.values[v].0))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Applies a combination's values to a copy of `doc`.
pub fn apply(doc: &Value, params: &[Param], combination: &[usize]) -> Result<Value, String> {
    let mut out = doc.clone();
    for (p, &v) in params.iter().zip(combination) {
        set(&mut out, &p.path, &p.values[v].1).map_err(|e| format!("{}: {e}", p.name))?;
    }
    Ok(out)
}
