//! The operations as the developer portal shows them: every `$ref` inlined, parameter styles
//! filled with OpenAPI's defaults, and an example for every parameter and body, the
//! document's own where it has one and otherwise made up from the schema, so that the
//! portal's try-it console starts from a request that has the right shape.

use serde_json::{json, Map, Value};

use super::paths::styles;
use super::refs::{follow, inline, join};
use super::Operation;

/// Schema levels an example is made up for; deeper ones are `null`.
const MAX_EXAMPLE_DEPTH: usize = 8;

pub(super) fn operations(root: &Value, operations: &[Operation]) -> Value {
    Value::Array(operations.iter().map(|op| operation(root, op)).collect())
}

fn operation(root: &Value, op: &Operation) -> Value {
    let empty = Map::new();
    let item = root
        .pointer(&join("/paths", &op.path))
        .and_then(|item| follow(root, item, "").ok())
        .and_then(|(item, _)| item.as_object())
        .unwrap_or(&empty);
    let o = item
        .get(&op.method.to_ascii_lowercase())
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let text = |key: &str| {
        o.get(key)
            .or_else(|| item.get(key))
            .and_then(Value::as_str)
            .map_or(Value::Null, |s| Value::String(s.to_string()))
    };
    let parameters: Vec<Value> = merged_parameters(root, item, o)
        .into_iter()
        .map(|p| parameter(root, p))
        .collect();
    let request_body = o
        .get("requestBody")
        .and_then(|b| follow(root, b, "").ok())
        .and_then(|(b, _)| b.as_object())
        .map_or(Value::Null, |b| {
            json!({
                "required": b.get("required").and_then(Value::as_bool).unwrap_or(false),
                "description": string_or_null(b.get("description")),
                "content": content(root, b.get("content"), Direction::Request),
            })
        });
    let responses: Vec<Value> = o
        .get("responses")
        .and_then(Value::as_object)
        .map(|responses| {
            responses
                .iter()
                .filter(|(status, _)| !status.starts_with("x-"))
                .map(|(status, r)| {
                    let r = follow(root, r, "")
                        .ok()
                        .and_then(|(r, _)| r.as_object())
                        .unwrap_or(&empty);
                    json!({
                        "status": status,
                        "description": string_or_null(r.get("description")),
                        "content": content(root, r.get("content"), Direction::Response),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "id": op.id,
        "method": op.method,
        "path": op.path,
        "summary": text("summary"),
        "description": text("description"),
        "tags": op.tags,
        "deprecated": op.deprecated,
        "parameters": parameters,
        "request_body": request_body,
        "responses": responses,
    })
}

/// The path item's parameters, then the operation's (which replace the path item's of the
/// same name and location, in place); each with its `$ref`s followed.
fn merged_parameters<'a>(
    root: &'a Value,
    item: &'a Map<String, Value>,
    op: &'a Map<String, Value>,
) -> Vec<&'a Map<String, Value>> {
    let listed = |scope: &'a Map<String, Value>| {
        scope
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| follow(root, p, "").ok())
            .filter_map(|(p, _)| p.as_object())
    };
    let key = |p: &Map<String, Value>| (p.get("name").cloned(), p.get("in").cloned());
    let mut out: Vec<&Map<String, Value>> = listed(item).collect();
    for p in listed(op) {
        match out.iter().position(|q| key(q) == key(p)) {
            Some(i) => out[i] = p,
            None => out.push(p),
        }
    }
    out
}

fn parameter(root: &Value, p: &Map<String, Value>) -> Value {
    let location = p.get("in").and_then(Value::as_str).unwrap_or("query");
    let style = p
        .get("style")
        .and_then(Value::as_str)
        .or_else(|| styles(location).first().copied())
        .unwrap_or("form");
    let explode = p
        .get("explode")
        .and_then(Value::as_bool)
        .unwrap_or(style == "form");
    // A parameter with `content` has its schema and examples in its one media type.
    let media = p
        .get("content")
        .and_then(Value::as_object)
        .and_then(|c| c.values().next())
        .and_then(Value::as_object);
    let schema = p
        .get("schema")
        .or_else(|| media.and_then(|m| m.get("schema")))
        .map_or(Value::Null, |s| inline(root, s));
    let example = own_example(root, p)
        .or_else(|| media.and_then(|m| own_example(root, m)))
        .unwrap_or_else(|| synthesize(&schema, 0, Direction::Parameter));
    json!({
        "name": string_or_null(p.get("name")),
        "in": location,
        "required": location == "path"
            || p.get("required").and_then(Value::as_bool).unwrap_or(false),
        "description": string_or_null(p.get("description")),
        "style": style,
        "explode": explode,
        "schema": schema,
        "example": example,
    })
}

/// Which way a body travels: a request's example leaves out `readOnly` properties, a
/// response's `writeOnly` ones.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Request,
    Response,
    Parameter,
}

/// A `content` mapping: for each media type, its inlined schema and an example.
fn content(root: &Value, value: Option<&Value>, direction: Direction) -> Value {
    let Some(content) = value.and_then(Value::as_object) else {
        return Value::Object(Map::new());
    };
    Value::Object(
        content
            .iter()
            .map(|(media_type, media)| {
                let empty = Map::new();
                let media = media.as_object().unwrap_or(&empty);
                let schema = media.get("schema").map_or(Value::Null, |s| inline(root, s));
                let example =
                    own_example(root, media).unwrap_or_else(|| synthesize(&schema, 0, direction));
                (
                    media_type.clone(),
                    json!({"schema": schema, "example": example}),
                )
            })
            .collect(),
    )
}

/// `example`, else the first of `examples` (an Example object's `value`, `$ref`s followed).
fn own_example(root: &Value, holder: &Map<String, Value>) -> Option<Value> {
    if let Some(example) = holder.get("example") {
        return Some(example.clone());
    }
    let first = holder.get("examples")?.as_object()?.values().next()?;
    let (example, _) = follow(root, first, "").ok()?;
    example.get("value").cloned()
}

fn string_or_null(value: Option<&Value>) -> Value {
    value
        .and_then(Value::as_str)
        .map_or(Value::Null, |s| Value::String(s.to_string()))
}

/// An example made up from an inlined `schema`: its own example, default, const or first
/// enum value when it has one, else a value of its type (string formats get a plausible
/// value), objects with every property, arrays with one item.
fn synthesize(schema: &Value, depth: usize, direction: Direction) -> Value {
    let Some(s) = schema.as_object() else {
        return Value::Null;
    };
    if depth > MAX_EXAMPLE_DEPTH || s.contains_key("x-circular") {
        return Value::Null;
    }
    let first = |key: &str| s.get(key).and_then(Value::as_array).and_then(|a| a.first());
    let given = s
        .get("example")
        .or_else(|| first("examples"))
        .or_else(|| s.get("default"))
        .or_else(|| s.get("const"))
        .or_else(|| first("enum"));
    if let Some(v) = given {
        return v.clone();
    }
    if let Some(first) = ["oneOf", "anyOf"]
        .iter()
        .find_map(|k| s.get(*k).and_then(Value::as_array).and_then(|a| a.first()))
    {
        return synthesize(first, depth + 1, direction);
    }
    let own = synthesize_typed(s, depth, direction);
    let Some(all) = s.get("allOf").and_then(Value::as_array) else {
        return own;
    };
    // allOf: the parts' objects merged (with the schema's own properties last).
    let mut merged = Map::new();
    let mut other = Value::Null;
    for part in all.iter().map(|p| synthesize(p, depth + 1, direction)) {
        match part {
            Value::Object(fields) => merged.extend(fields),
            Value::Null => {}
            v => other = v,
        }
    }
    match own {
        Value::Object(fields) => merged.extend(fields),
        Value::Null => {}
        v => other = v,
    }
    if merged.is_empty() && !other.is_null() {
        other
    } else {
        Value::Object(merged)
    }
}

fn synthesize_typed(s: &Map<String, Value>, depth: usize, direction: Direction) -> Value {
    let declared = match s.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        // 3.1: a list of types; the first that is not null.
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .or(Some("null")),
        _ => None,
    };
    let inferred = declared.or_else(|| {
        if s.contains_key("properties") || s.contains_key("additionalProperties") {
            Some("object")
        } else if s.contains_key("items") {
            Some("array")
        } else {
            None
        }
    });
    match inferred {
        Some("object") => {
            let mut out = Map::new();
            if let Some(properties) = s.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    let hidden = match direction {
                        Direction::Request => "readOnly",
                        Direction::Response => "writeOnly",
                        Direction::Parameter => "",
                    };
                    if property.get(hidden) == Some(&Value::Bool(true)) {
                        continue;
                    }
                    out.insert(name.clone(), synthesize(property, depth + 1, direction));
                }
            } else if let Some(extra @ Value::Object(_)) = s.get("additionalProperties") {
                out.insert("key".to_string(), synthesize(extra, depth + 1, direction));
            }
            Value::Object(out)
        }
        Some("array") => match s.get("items") {
            Some(items) => match synthesize(items, depth + 1, direction) {
                Value::Null => json!([]),
                item => json!([item]),
            },
            None => json!([]),
        },
        Some("string") => Value::String(
            match s.get("format").and_then(Value::as_str).unwrap_or("") {
                "date-time" => "2024-01-01T00:00:00Z",
                "date" => "2024-01-01",
                "time" => "12:00:00",
                "email" => "user@example.com",
                "uuid" => "3fa85f64-5717-4562-b3fc-2c963f66afa6",
                "uri" | "url" => "https://example.com/",
                "hostname" => "example.com",
                "ipv4" => "192.0.2.1",
                "ipv6" => "2001:db8::1",
                "byte" => "c3RyaW5n",
                "binary" => "",
                _ => "string",
            }
            .to_string(),
        ),
        Some("integer") => s
            .get("minimum")
            .and_then(Value::as_i64)
            .map_or(json!(0), |m| json!(m)),
        Some("number") => s.get("minimum").cloned().unwrap_or(json!(0)),
        Some("boolean") => Value::Bool(true),
        _ => Value::Null,
    }
}
