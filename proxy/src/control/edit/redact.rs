//! Secrets out of what the admin API shows ([`redact`]), and back into what it is given
//! ([`restore_redacted`]), so that a document read, edited and written back keeps its secrets
//! and never stores the placeholder.

use serde_json::{Map, Value};

use super::EditError;

/// What [`redact`] writes in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Fields whose value is a secret wherever they appear.
const SECRET_FIELDS: &[&str] = &[
    "token",
    "password",
    "passphrase",
    "secret",
    "client_secret",
    "private_key",
    "signing_key",
    "issuer_signing_keys",
    "api_key",
];

/// Fields that name a file, or hold the PEM text itself when it starts with `-----BEGIN`.
const PEM_FIELDS: &[&str] = &["key", "client_key"];

/// A copy of `value` (the whole document or one item) with every secret replaced by
/// `"<redacted>"`:
///
/// - the values of `token` (so `admin.token`), `password`, `secret` (validate-jwt's HMAC
///   keys) and the like, wherever they are;
/// - PEM text written inline in `key` or `client_key`, any string holding a private key, and
///   any URL with a password in it (`http://user:password@host`);
/// - the value of a header or query parameter that carries credentials (`Authorization`,
///   `Cookie`, `X-Api-Key`, `Ocp-Apim-Subscription-Key`, ...) where a policy or route sets,
///   matches or checks it.
///
/// File paths (`token_file`, `pem_file`, `client_key: certs/client.key`) and key hashes are not
/// secrets and stay. `null` stays `null`.
pub fn redact(value: &Value) -> Value {
    let mut out = value.clone();
    redact_in(&mut out);
    out
}

fn redact_in(v: &mut Value) {
    match v {
        Value::String(s) if holds_private_key(s) || has_url_password(s) => {
            *v = Value::String(REDACTED.into())
        }
        Value::Array(items) => items.iter_mut().for_each(redact_in),
        Value::Object(map) => {
            let credential = map
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(is_credential_name);
            for (k, child) in map.iter_mut() {
                if child.is_null() {
                    continue;
                }
                if SECRET_FIELDS.contains(&k.as_str())
                    || (PEM_FIELDS.contains(&k.as_str())
                        && child.as_str().is_some_and(|s| s.contains("-----BEGIN")))
                    || (credential && k == "value")
                {
                    *child = Value::String(REDACTED.into());
                } else if credential && k == "values" {
                    if let Value::Array(values) = child {
                        values
                            .iter_mut()
                            .for_each(|x| *x = Value::String(REDACTED.into()));
                    }
                } else if matches!(k.as_str(), "set" | "add" | "headers") && child.is_object() {
                    // Header maps (route filters, return_response): NAME: VALUE.
                    for (name, value) in child.as_object_mut().expect("an object") {
                        if is_credential_name(name) && !value.is_null() {
                            *value = Value::String(REDACTED.into());
                        } else {
                            redact_in(value);
                        }
                    }
                } else {
                    redact_in(child);
                }
            }
        }
        _ => {}
    }
}

fn holds_private_key(s: &str) -> bool {
    s.contains("PRIVATE KEY-----")
}

/// `scheme://user:password@host...`: a URL that carries a password.
fn has_url_password(s: &str) -> bool {
    let Some((_, rest)) = s.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// Header and query parameter names whose values are credentials.
pub(super) fn is_credential_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "token",
        "secret",
        "password",
        "passwd",
        "credential",
    ]
    .iter()
    .any(|w| name.contains(w))
        || name.ends_with("key")
        || name.ends_with("signature")
}

/// Puts back, in `new`, every `"<redacted>"` value from the same place in `old`: so that a
/// document or item read from the admin API (redacted) can be edited and written back. Items
/// of a list pair by `name` or `id` where they have one, else by position; an object whose
/// `name` or `id` differs from its counterpart's takes nothing from it. A placeholder left
/// without a counterpart is refused (400), naming the field, because writing it would replace
/// a secret with the text `<redacted>`.
///
/// For `PUT /config`, call it with the body and the running document.
pub fn restore_redacted(new: &mut Value, old: &Value) -> Result<(), EditError> {
    let mut path = String::from("body");
    restore(new, Some(old), &mut path)
}

pub(super) fn restore(
    new: &mut Value,
    old: Option<&Value>,
    path: &mut String,
) -> Result<(), EditError> {
    match new {
        Value::String(s) if s == REDACTED => match old {
            Some(Value::String(o)) if o != REDACTED => {
                *s = o.clone();
                Ok(())
            }
            _ => Err(EditError::new(
                400,
                "redacted_value",
                path.clone(),
                "\"<redacted>\" stands for a secret the admin API does not show, and there is \
                 no current value here to keep: give the value"
                    .to_string(),
            )),
        },
        Value::Object(map) => {
            let old = old
                .and_then(Value::as_object)
                .filter(|o| same_identity(map, o));
            for (k, child) in map.iter_mut() {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                let result = restore(child, old.and_then(|o| o.get(k)), path);
                path.truncate(len);
                result?;
            }
            Ok(())
        }
        Value::Array(items) => {
            let old = old.and_then(Value::as_array);
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let result = restore_item(item, old, i, path);
                path.truncate(len);
                result?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Restores the `i`th item of a list. An item with a `name` or `id` pairs with the old item
/// of that name; one without (a policy) with the old item at its position, else with the
/// nearest one that has a value for every placeholder, so that inserting a policy does not
/// lose the secrets of those after it.
fn restore_item(
    item: &mut Value,
    old: Option<&Vec<Value>>,
    i: usize,
    path: &mut String,
) -> Result<(), EditError> {
    let Some(old) = old else {
        return restore(item, None, path);
    };
    if let Some((field, id)) = identity(item).map(|(f, id)| (f, id.to_string())) {
        let counterpart = old
            .iter()
            .find(|x| x.get(field).and_then(Value::as_str) == Some(id.as_str()));
        return restore(item, counterpart, path);
    }
    if !has_placeholder(item) {
        return Ok(());
    }
    let mut order: Vec<usize> = (0..old.len()).collect();
    order.sort_by_key(|&j| j.abs_diff(i));
    for j in order {
        let mut trial = item.clone();
        if restore(&mut trial, Some(&old[j]), path).is_ok() {
            *item = trial;
            return Ok(());
        }
    }
    restore(item, old.get(i), path)
}

fn has_placeholder(v: &Value) -> bool {
    match v {
        Value::String(s) => s == REDACTED,
        Value::Array(items) => items.iter().any(has_placeholder),
        Value::Object(map) => map.values().any(has_placeholder),
        _ => false,
    }
}

fn identity(v: &Value) -> Option<(&'static str, &str)> {
    ["name", "id"]
        .into_iter()
        .find_map(|f| v.get(f).and_then(Value::as_str).map(|s| (f, s)))
}

fn same_identity(new: &Map<String, Value>, old: &Map<String, Value>) -> bool {
    ["name", "id"]
        .iter()
        .all(|f| match (new.get(*f), old.get(*f)) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        })
}
