//! Edits of the configuration document for the admin API: list, read, create, replace and
//! delete APIs, operations, backends, targets, products and subscriptions; issue and rotate
//! subscription keys; redact secrets from what is read.
//!
//! Everything here is a pure function over the document as a [`serde_json::Value`] (the YAML
//! document converted to JSON, keys as written). A change is an edit of that document, which
//! the caller then validates and applies exactly as `PUT /config` does; so these functions
//! check only what addressing needs (the body is an object, its name matches the path, the
//! item exists or does not), and leave meaning (references, ranges, shapes) to validation.
//! Deleting a backend that a route still uses, for example, is refused there, with its own
//! message.
//!
//! Two invariants:
//!
//! - Nothing read through here carries a secret: [`list`], [`get`] and the bodies of
//!   [`Outcome`]s pass through [`redact`]. The one exception is a subscription key the gateway
//!   has just generated ([`issue`], [`regenerate`]): it is returned once and stored only as its
//!   `sha256:` hash.
//! - A `"<redacted>"` placeholder is never written into the document: [`replace`] puts the
//!   current value back ([`restore_redacted`]) and refuses one it cannot match.

use std::fmt;

use serde_json::{json, Map, Value};

mod redact;
pub mod revisions;
mod subscriptions;

pub use redact::{redact, restore_redacted, REDACTED};
pub use subscriptions::{
    activate, cancel, issue, regenerate, replace_subscription, set_state, suspend,
    SubscriptionState,
};

/// A top-level list of the document whose items the admin API addresses by name or id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collection {
    Apis,
    Backends,
    Products,
    Subscriptions,
}

impl Collection {
    /// The document key: `apis`, `backends`, `products`, `subscriptions`.
    pub fn key(self) -> &'static str {
        match self {
            Collection::Apis => "apis",
            Collection::Backends => "backends",
            Collection::Products => "products",
            Collection::Subscriptions => "subscriptions",
        }
    }

    /// The field that names an item: `id` for subscriptions, `name` for the others.
    pub fn id_field(self) -> &'static str {
        match self {
            Collection::Subscriptions => "id",
            _ => "name",
        }
    }

    /// The collection a document key (or the first segment of an admin path) names.
    pub fn from_key(key: &str) -> Option<Collection> {
        match key {
            "apis" => Some(Collection::Apis),
            "backends" => Some(Collection::Backends),
            "products" => Some(Collection::Products),
            "subscriptions" => Some(Collection::Subscriptions),
            _ => None,
        }
    }

    /// The path parameter that names one item (`/apis/{api}`).
    fn param(self) -> &'static str {
        match self {
            Collection::Apis => "api",
            Collection::Backends => "backend",
            Collection::Products => "product",
            Collection::Subscriptions => "subscription",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Collection::Apis => "API",
            Collection::Backends => "backend",
            Collection::Products => "product",
            Collection::Subscriptions => "subscription",
        }
    }
}

/// Where a list of items lives: a top-level collection, the operations of one API, or the
/// targets of one backend.
///
/// Operations are named by `id`. A target is named by its URL's authority as written
/// (`10.0.0.5:8080`, `[::1]:8080`, `orders.internal`), compared without regard to case;
/// for a URL without a port, `host:80` (`host:443` for https) names it too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place<'a> {
    Top(Collection),
    Operations { api: &'a str },
    Targets { backend: &'a str },
}

/// A successful edit: the status to answer with (200, or 201 when an item was created) and
/// the JSON body, already redacted.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: u16,
    pub body: Value,
}

/// Why an edit was refused: the status (4xx), a stable code, the field at fault (`body.name`,
/// `path.api`, `body.policies.inbound[0].set-header.value`) and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EditError {
    pub status: u16,
    pub code: &'static str,
    pub field: String,
    pub message: String,
}

impl EditError {
    fn new(status: u16, code: &'static str, field: impl Into<String>, message: String) -> Self {
        EditError {
            status,
            code,
            field: field.into(),
            message,
        }
    }

    fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        EditError::new(400, "invalid_body", field, message.into())
    }

    /// The JSON the admin API answers with: `{"error": code, "field": ..., "message": ...}`.
    pub fn to_json(&self) -> Value {
        json!({ "error": self.code, "field": self.field, "message": self.message })
    }
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for EditError {}

// ---------------------------------------------------------------------------------------------
// Generic items.

/// Every item at `place`, redacted, as a JSON array.
pub fn list(doc: &Value, place: Place) -> Result<Value, EditError> {
    let items = match items(doc, place)? {
        Some(items) => items.iter().map(redact).collect(),
        None => Vec::new(),
    };
    Ok(Value::Array(items))
}

/// The item at `place` named `id`, redacted.
pub fn get(doc: &Value, place: Place, id: &str) -> Result<Value, EditError> {
    let list = items(doc, place)?.map(Vec::as_slice).unwrap_or_default();
    let index = position(list, place, id).ok_or_else(|| missing(doc, place, id))?;
    Ok(redact(&list[index]))
}

/// Adds `body` at `place` (POST). 409 when an item with its name exists. For subscriptions
/// this is [`issue`]; for targets, `body` is `{"url", "weight"?, "priority"?}`.
pub fn create(doc: &mut Value, place: Place, body: Value) -> Result<Outcome, EditError> {
    if place == Place::Top(Collection::Subscriptions) {
        return issue(doc, body);
    }
    let mut body = object(body)?;
    let id = match place {
        Place::Targets { .. } => target_of_body(&body)?,
        _ => {
            let field = id_field(place);
            match body.get(field) {
                Some(Value::String(s)) if !s.is_empty() => s.clone(),
                Some(Value::String(_)) | None => {
                    return Err(EditError::bad(
                        format!("body.{field}"),
                        format!("give the new {}'s {field}", what(place)),
                    ))
                }
                Some(_) => {
                    return Err(EditError::bad(
                        format!("body.{field}"),
                        format!("the {field} is a string"),
                    ))
                }
            }
        }
    };
    refuse_placeholders(&mut body)?;
    let list = items_mut(doc, place)?;
    if let Some(i) = position(list, place, &id) {
        let existing = match place {
            Place::Targets { .. } => list[i]["url"].as_str().unwrap_or(&id).to_string(),
            _ => id.clone(),
        };
        return Err(EditError::new(
            409,
            "conflict",
            conflict_field(place),
            format!(
                "{} {existing:?} exists ({}); {}",
                what(place),
                location(place, &id),
                match place {
                    Place::Targets { .. } => "delete it first to change it".to_string(),
                    _ => format!("PUT {} replaces it", item_path(place, &id)),
                }
            ),
        ));
    }
    list.push(Value::Object(body));
    let stored = list.last().expect("just pushed");
    Ok(Outcome {
        status: 201,
        body: redact(stored),
    })
}

/// Creates or replaces the item at `place` named `id` (PUT): 200 when it replaced one, at the
/// same position in its list, 201 when it added one at the end. The body's name (or id) must
/// equal `id`, or be absent and is then filled in. `"<redacted>"` values take the replaced
/// item's values back. Subscriptions keep their key hashes unless the body gives them (see
/// [`replace_subscription`]); targets are not replaced (delete and add).
pub fn replace(doc: &mut Value, place: Place, id: &str, body: Value) -> Result<Outcome, EditError> {
    if place == Place::Top(Collection::Subscriptions) {
        return replace_subscription(doc, id, body);
    }
    if let Place::Targets { .. } = place {
        return Err(EditError::new(
            405,
            "method_not_allowed",
            "path",
            "a target is not replaced: delete it and add the new one".to_string(),
        ));
    }
    let mut body = object(body)?;
    name_from_path(&mut body, place, id)?;
    let list = items_mut(doc, place)?;
    match position(list, place, id) {
        Some(i) => {
            let mut new = Value::Object(body);
            restore_redacted(&mut new, &list[i])?;
            list[i] = new;
            Ok(Outcome {
                status: 200,
                body: redact(&list[i]),
            })
        }
        None => {
            refuse_placeholders(&mut body)?;
            list.push(Value::Object(body));
            Ok(Outcome {
                status: 201,
                body: redact(list.last().expect("just pushed")),
            })
        }
    }
}

/// Removes the item at `place` named `id`; the body is the removed item, redacted.
pub fn delete(doc: &mut Value, place: Place, id: &str) -> Result<Outcome, EditError> {
    let Some(i) = items(doc, place)?.and_then(|list| position(list, place, id)) else {
        return Err(missing(doc, place, id));
    };
    let removed = items_mut(doc, place)?.remove(i);
    Ok(Outcome {
        status: 200,
        body: redact(&removed),
    })
}

/// The index of `backend`'s target named `target` (for drain and undrain, which change state,
/// not the document).
pub fn target_index(doc: &Value, backend: &str, target: &str) -> Result<usize, EditError> {
    let place = Place::Targets { backend };
    let list = items(doc, place)?.map(Vec::as_slice).unwrap_or_default();
    position(list, place, target).ok_or_else(|| missing(doc, place, target))
}

/// The authority of a target URL as written: `http://10.0.0.5:8080/` gives `10.0.0.5:8080`.
pub fn target_id(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    (!authority.is_empty()).then_some(authority)
}

// ---------------------------------------------------------------------------------------------
// Addressing.

fn what(place: Place) -> &'static str {
    match place {
        Place::Top(c) => c.what(),
        Place::Operations { .. } => "operation",
        Place::Targets { .. } => "target",
    }
}

fn id_field(place: Place) -> &'static str {
    match place {
        Place::Top(c) => c.id_field(),
        Place::Operations { .. } => "id",
        Place::Targets { .. } => "url",
    }
}

fn param(place: Place) -> &'static str {
    match place {
        Place::Top(c) => c.param(),
        Place::Operations { .. } => "operation",
        Place::Targets { .. } => "target",
    }
}

fn conflict_field(place: Place) -> String {
    format!("body.{}", id_field(place))
}

/// Where an item sits in the document, for messages: `apis[orders]`,
/// `apis[orders].operations[get-order]`, `backends[b].targets[10.0.0.5:8080]`.
fn location(place: Place, id: &str) -> String {
    match place {
        Place::Top(c) => format!("{}[{id}]", c.key()),
        Place::Operations { api } => format!("apis[{api}].operations[{id}]"),
        Place::Targets { backend } => format!("backends[{backend}].targets[{id}]"),
    }
}

fn item_path(place: Place, id: &str) -> String {
    match place {
        Place::Top(c) => format!("/{}/{id}", c.key()),
        Place::Operations { api } => format!("/apis/{api}/operations/{id}"),
        Place::Targets { backend } => format!("/backends/{backend}/targets/{id}"),
    }
}

/// The list at `place`: None when the document does not have it yet (an absent or empty
/// key). 404 when the parent API or backend does not exist.
fn items<'d>(doc: &'d Value, place: Place) -> Result<Option<&'d Vec<Value>>, EditError> {
    let (parent, key) = match place {
        Place::Top(c) => (doc, c.key()),
        Place::Operations { api } => (parent(doc, Collection::Apis, api)?, "operations"),
        Place::Targets { backend } => (parent(doc, Collection::Backends, backend)?, "targets"),
    };
    match parent.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(list)) => Ok(Some(list)),
        Some(_) => Err(shape_error(key, "a list")),
    }
}

/// The list at `place`, made an empty list when the document does not have it yet.
fn items_mut<'d>(doc: &'d mut Value, place: Place) -> Result<&'d mut Vec<Value>, EditError> {
    if doc.is_null() {
        *doc = Value::Object(Map::new());
    }
    let (parent, key) = match place {
        Place::Top(c) => (doc, c.key()),
        Place::Operations { api } => (parent_mut(doc, Collection::Apis, api)?, "operations"),
        Place::Targets { backend } => (parent_mut(doc, Collection::Backends, backend)?, "targets"),
    };
    let map = parent
        .as_object_mut()
        .ok_or_else(|| shape_error(key, "in a mapping"))?;
    let slot = map.entry(key).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Array(Vec::new());
    }
    slot.as_array_mut()
        .ok_or_else(|| shape_error(key, "a list"))
}

fn parent<'d>(doc: &'d Value, c: Collection, name: &str) -> Result<&'d Value, EditError> {
    let list = items(doc, Place::Top(c))?
        .map(Vec::as_slice)
        .unwrap_or_default();
    position(list, Place::Top(c), name)
        .map(|i| &list[i])
        .ok_or_else(|| missing(doc, Place::Top(c), name))
}

fn parent_mut<'d>(
    doc: &'d mut Value,
    c: Collection,
    name: &str,
) -> Result<&'d mut Value, EditError> {
    let found = items(doc, Place::Top(c))?.and_then(|list| position(list, Place::Top(c), name));
    let Some(i) = found else {
        return Err(missing(doc, Place::Top(c), name));
    };
    Ok(&mut items_mut(doc, Place::Top(c))?[i])
}

fn position(list: &[Value], place: Place, id: &str) -> Option<usize> {
    match place {
        Place::Targets { .. } => {
            let wanted = percent_decode(id);
            list.iter().position(|t| {
                t.get("url")
                    .and_then(Value::as_str)
                    .is_some_and(|url| target_matches(url, &wanted))
            })
        }
        _ => {
            let field = id_field(place);
            list.iter()
                .position(|item| item.get(field).and_then(Value::as_str) == Some(id))
        }
    }
}

/// Whether `wanted` names the target at `url`: its authority, or for a URL without a port,
/// the authority with the scheme's default port.
fn target_matches(url: &str, wanted: &str) -> bool {
    let Some(authority) = target_id(url) else {
        return false;
    };
    if authority.eq_ignore_ascii_case(wanted) {
        return true;
    }
    let has_port = authority
        .rfind(':')
        .is_some_and(|colon| !authority[colon..].contains(']'));
    if has_port {
        return false;
    }
    let https = url
        .split_once("://")
        .is_some_and(|(s, _)| s.eq_ignore_ascii_case("https"));
    let default = format!("{authority}:{}", if https { 443 } else { 80 });
    default.eq_ignore_ascii_case(wanted)
}

/// `%5B::1%5D:8080` as `[::1]:8080`: a target in a path arrives as the client encoded it.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn missing(doc: &Value, place: Place, id: &str) -> EditError {
    // A missing parent is reported by `items` before this; here the parent exists.
    let names: Vec<String> = items(doc, place)
        .ok()
        .flatten()
        .map(|list| {
            list.iter()
                .filter_map(|item| match place {
                    Place::Targets { .. } => item
                        .get("url")
                        .and_then(Value::as_str)
                        .and_then(target_id)
                        .map(str::to_string),
                    _ => item
                        .get(id_field(place))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    let known = if names.is_empty() {
        "none are defined".to_string()
    } else {
        format!("known: {}", names.join(", "))
    };
    let within = match place {
        Place::Top(_) => String::new(),
        Place::Operations { api } => format!(" in API {api:?}"),
        Place::Targets { backend } => format!(" in backend {backend:?}"),
    };
    EditError::new(
        404,
        "not_found",
        format!("path.{}", param(place)),
        format!("no {} {id:?}{within} ({known})", what(place)),
    )
}

fn shape_error(key: &str, shape: &str) -> EditError {
    EditError::new(
        500,
        "invalid_document",
        key.to_string(),
        format!("the running configuration's {key} is not {shape}"),
    )
}

fn object(body: Value) -> Result<Map<String, Value>, EditError> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(EditError::bad("body", "the body is a JSON object")),
    }
}

/// Fills in or checks the body's name (or id) against the one in the path.
fn name_from_path(body: &mut Map<String, Value>, place: Place, id: &str) -> Result<(), EditError> {
    let field = id_field(place);
    match body.get(field) {
        None | Some(Value::Null) => {
            body.insert(field.into(), Value::String(id.into()));
            Ok(())
        }
        Some(Value::String(s)) if s == id => Ok(()),
        Some(other) => Err(EditError::bad(
            format!("body.{field}"),
            format!(
                "{other} differs from the path's {id:?}: to rename, delete the {} and create \
                 it under the new name",
                what(place)
            ),
        )),
    }
}

/// The target name a new target's `url` gives.
fn target_of_body(body: &Map<String, Value>) -> Result<String, EditError> {
    let url = body
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| EditError::bad("body.url", "give the target's url (http://host:port)"))?;
    target_id(url).map(str::to_string).ok_or_else(|| {
        EditError::bad(
            "body.url",
            format!("{url:?} is not a URL (write e.g. http://10.0.0.5:8080)"),
        )
    })
}

/// A new item may not hold `"<redacted>"`: there is no value to put back.
fn refuse_placeholders(body: &mut Map<String, Value>) -> Result<(), EditError> {
    let mut path = String::from("body");
    let mut body_value = Value::Object(std::mem::take(body));
    let result = redact::restore(&mut body_value, None, &mut path);
    if let Value::Object(map) = body_value {
        *body = map;
    }
    result
}

#[cfg(test)]
mod tests;
