//! Subscriptions: issuing them with generated keys, replacing them without losing their key
//! hashes, regenerating one key, and their lifecycle state. A generated key leaves only in the
//! answer that created it; the document holds its `sha256:` hash.

use serde_json::{Map, Value};

use super::{
    items, items_mut, missing, name_from_path, object, position, redact, refuse_placeholders,
    restore_redacted, shape_error, Collection, EditError, Outcome, Place,
};
use crate::policy::auth::keys;

/// A subscription's lifecycle state, as `subscriptions[].state` writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscriptionState {
    Active,
    Suspended,
    Cancelled,
}

impl SubscriptionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionState::Active => "active",
            SubscriptionState::Suspended => "suspended",
            SubscriptionState::Cancelled => "cancelled",
        }
    }
}

const SUBSCRIPTION: Place<'static> = Place::Top(Collection::Subscriptions);

/// Issues a subscription (POST /subscriptions): `body` is `{id, scope, display_name?, owner?,
/// state?}`. Each of `primary_key` and `secondary_key` the body does not give (as a `sha256:`
/// hash) is generated; only its hash is stored, and the generated keys are in the answer
/// (201), once: `{"subscription": {...}, "primary_key": KEY, "secondary_key": KEY}`.
pub fn issue(doc: &mut Value, body: Value) -> Result<Outcome, EditError> {
    let mut body = object(body)?;
    let id = match body.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None => {
            return Err(EditError::bad(
                "body.id",
                "give the subscription's id (letters, digits, '-', '_', '.')",
            ))
        }
        Some(_) => return Err(EditError::bad("body.id", "the id is a string")),
    };
    if !body.contains_key("scope") {
        return Err(EditError::bad(
            "body.scope",
            "give the scope: {\"product\": NAME}, {\"api\": NAME} or \"all_apis\"",
        ));
    }
    if let Some(state) = body.get("state") {
        parse_state(state)?;
    }
    if position(
        items(doc, SUBSCRIPTION)?
            .map(Vec::as_slice)
            .unwrap_or_default(),
        SUBSCRIPTION,
        &id,
    )
    .is_some()
    {
        return Err(EditError::new(
            409,
            "conflict",
            "body.id",
            format!(
                "subscription {id:?} exists; regenerate its keys with POST \
                 /subscriptions/{id}/regenerate, or delete it first"
            ),
        ));
    }
    refuse_placeholders(&mut body)?;
    let generated = fill_keys(&mut body)?;
    let list = items_mut(doc, SUBSCRIPTION)?;
    list.push(Value::Object(body));
    let mut answer = Map::new();
    answer.insert(
        "subscription".into(),
        redact(list.last().expect("just pushed")),
    );
    answer.extend(generated);
    Ok(Outcome {
        status: 201,
        body: Value::Object(answer),
    })
}

/// PUT /subscriptions/{id}: creates or replaces. On replace, a key the body leaves out keeps
/// its current hash (`"secondary_key": null` removes the secondary key); on create, a key left
/// out is generated as [`issue`] does, and returned once. Keys given must be `sha256:` hashes.
pub fn replace_subscription(doc: &mut Value, id: &str, body: Value) -> Result<Outcome, EditError> {
    let mut body = object(body)?;
    name_from_path(&mut body, SUBSCRIPTION, id)?;
    if let Some(state) = body.get("state") {
        parse_state(state)?;
    }
    let list = items_mut(doc, SUBSCRIPTION)?;
    match position(list, SUBSCRIPTION, id) {
        Some(i) => {
            for slot in ["primary_key", "secondary_key"] {
                match body.get(slot) {
                    None => {
                        if let Some(old) = list[i].get(slot) {
                            body.insert(slot.into(), old.clone());
                        }
                    }
                    Some(Value::Null) => {
                        body.remove(slot);
                    }
                    Some(given) => check_hash(slot, given)?,
                }
            }
            let mut new = Value::Object(body);
            restore_redacted(&mut new, &list[i])?;
            list[i] = new;
            Ok(Outcome {
                status: 200,
                body: redact(&list[i]),
            })
        }
        None => {
            if !body.contains_key("scope") {
                return Err(EditError::bad(
                    "body.scope",
                    "give the scope: {\"product\": NAME}, {\"api\": NAME} or \"all_apis\"",
                ));
            }
            refuse_placeholders(&mut body)?;
            let generated = fill_keys(&mut body)?;
            list.push(Value::Object(body));
            let mut answer = Map::new();
            answer.insert(
                "subscription".into(),
                redact(list.last().expect("just pushed")),
            );
            answer.extend(generated);
            Ok(Outcome {
                status: 201,
                body: Value::Object(answer),
            })
        }
    }
}

/// Replaces one key of subscription `id` with a fresh one (POST .../regenerate, body
/// `{"key": "primary"|"secondary"}`). The answer holds the new key, once:
/// `{"subscription": {...}, "primary_key": KEY}` (or `secondary_key`). The old key stops
/// working when the edited document is applied.
pub fn regenerate(doc: &mut Value, id: &str, body: &Value) -> Result<Outcome, EditError> {
    let slot =
        match body.get("key").and_then(Value::as_str) {
            Some("primary") => "primary_key",
            Some("secondary") => "secondary_key",
            _ => return Err(EditError::bad(
                "body.key",
                "give which key to regenerate: {\"key\": \"primary\"} or {\"key\": \"secondary\"}",
            )),
        };
    let sub = subscription_mut(doc, id)?;
    let key = keys::new_key();
    sub.insert(slot.into(), Value::String(keys::hash_key(&key).to_string()));
    let mut answer = Map::new();
    answer.insert("subscription".into(), redact(&Value::Object(sub.clone())));
    answer.insert(slot.into(), Value::String(key));
    Ok(Outcome {
        status: 200,
        body: Value::Object(answer),
    })
}

/// Sets subscription `id`'s state. A cancelled subscription stays cancelled (409): issue a new
/// one instead. Setting the state it already has is not an error.
pub fn set_state(
    doc: &mut Value,
    id: &str,
    state: SubscriptionState,
) -> Result<Outcome, EditError> {
    let sub = subscription_mut(doc, id)?;
    let current = match sub.get("state") {
        None | Some(Value::Null) => SubscriptionState::Active,
        Some(v) => parse_state(v).unwrap_or(SubscriptionState::Active),
    };
    if current == SubscriptionState::Cancelled && state != SubscriptionState::Cancelled {
        return Err(EditError::new(
            409,
            "cancelled",
            "path.subscription",
            format!(
                "subscription {id:?} is cancelled, which is final; issue a new subscription \
                 instead"
            ),
        ));
    }
    sub.insert("state".into(), Value::String(state.as_str().into()));
    Ok(Outcome {
        status: 200,
        body: redact(&Value::Object(sub.clone())),
    })
}

/// POST /subscriptions/{id}/suspend: its keys are refused (403) until it is activated.
pub fn suspend(doc: &mut Value, id: &str) -> Result<Outcome, EditError> {
    set_state(doc, id, SubscriptionState::Suspended)
}

/// POST /subscriptions/{id}/activate.
pub fn activate(doc: &mut Value, id: &str) -> Result<Outcome, EditError> {
    set_state(doc, id, SubscriptionState::Active)
}

/// POST /subscriptions/{id}/cancel: final.
pub fn cancel(doc: &mut Value, id: &str) -> Result<Outcome, EditError> {
    set_state(doc, id, SubscriptionState::Cancelled)
}

fn parse_state(v: &Value) -> Result<SubscriptionState, EditError> {
    match v.as_str() {
        Some("active") => Ok(SubscriptionState::Active),
        Some("suspended") => Ok(SubscriptionState::Suspended),
        Some("cancelled") => Ok(SubscriptionState::Cancelled),
        _ => Err(EditError::bad(
            "body.state",
            "the state is one of active, suspended, cancelled",
        )),
    }
}

fn subscription_mut<'d>(
    doc: &'d mut Value,
    id: &str,
) -> Result<&'d mut Map<String, Value>, EditError> {
    let found = items(doc, SUBSCRIPTION)?.and_then(|list| position(list, SUBSCRIPTION, id));
    let Some(i) = found else {
        return Err(missing(doc, SUBSCRIPTION, id));
    };
    items_mut(doc, SUBSCRIPTION)?[i]
        .as_object_mut()
        .ok_or_else(|| shape_error("subscriptions", "a mapping"))
}

/// A key hash the body gives: `sha256:` and 64 hex digits. Anything else is refused without
/// being repeated, in case it is a key.
fn check_hash(slot: &str, v: &Value) -> Result<(), EditError> {
    let ok = v
        .as_str()
        .is_some_and(|s| s.parse::<keys::KeyHash>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(EditError::bad(
            format!("body.{slot}"),
            "not a key hash: give sha256:<64 hex digits> (`ringway key hash KEY`), or leave it \
             out and the gateway generates the key",
        ))
    }
}

/// Generates each key `body` does not give; returns the plaintext keys by slot.
fn fill_keys(body: &mut Map<String, Value>) -> Result<Vec<(String, Value)>, EditError> {
    let mut generated = Vec::new();
    for slot in ["primary_key", "secondary_key"] {
        match body.get(slot) {
            None => {
                let key = keys::new_key();
                body.insert(slot.into(), Value::String(keys::hash_key(&key).to_string()));
                generated.push((slot.to_string(), Value::String(key)));
            }
            Some(Value::Null) if slot == "secondary_key" => {
                body.remove(slot);
            }
            Some(given) => check_hash(slot, given)?,
        }
    }
    Ok(generated)
}
