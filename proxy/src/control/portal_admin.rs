//! The admin API's view of the developer portal's state: its developers, and the
//! subscriptions they hold (listed with the document's, and approved, suspended, cancelled or
//! regenerated through the same `/subscriptions` routes).

use serde_json::{json, Value};

use super::edit::{self, Collection, Place};
use super::plane::Plane;
use crate::policy::auth::keys;
use crate::portal::store::{StoredSubscription, SubState};
use crate::portal::{unix_ms, unix_now, Portal};

pub fn developers(portal: &Portal) -> Result<Value, String> {
    let list = portal.store.developers()?;
    let subs = portal.store.subscriptions(None)?;
    Ok(Value::Array(
        list.iter()
            .map(|d| {
                json!({
                    "email": d.email,
                    "name": d.name,
                    "created": d.created,
                    "subscriptions": subs.iter().filter(|s| s.owner == d.email).map(|s| &s.id).collect::<Vec<_>>(),
                })
            })
            .collect(),
    ))
}

/// A portal subscription as the admin API shows it: the document's shape, key hashes only.
fn admin_json(s: &StoredSubscription) -> Value {
    json!({
        "id": s.id,
        "owner": s.owner,
        "scope": {"product": s.product},
        "state": s.state.as_str(),
        "primary_key": keys::hash_key(&s.primary_key).to_string(),
        "secondary_key": keys::hash_key(&s.secondary_key).to_string(),
        "source": "portal",
        "created": s.created,
    })
}

fn error(status: u16, code: &str, field: &str, message: &str) -> Option<(u16, Value)> {
    Some((
        status,
        json!({"error": code, "field": field, "message": message}),
    ))
}

/// Answers a `/subscriptions` route when it concerns the portal's subscriptions; None leaves
/// it to the document's.
pub fn subscription_route(
    method: &str,
    path: &str,
    params: &[String],
    body: &[u8],
    query: &str,
    plane: &Plane,
) -> Option<(u16, Value)> {
    let document = plane.document();
    let state_filter = query.split('&').find_map(|kv| kv.strip_prefix("state="));
    let id = params.first().map(String::as_str);
    let action = path.rsplit('/').next().unwrap_or_default();
    let portal = plane.portal.get();
    match (method, id) {
        ("GET", None) => {
            if portal.is_none() && state_filter.is_none() {
                return None;
            }
            let mut list = match edit::list(&document, Place::Top(Collection::Subscriptions)) {
                Ok(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            if let Some(portal) = portal {
                match portal.store.subscriptions(None) {
                    Ok(subs) => list.extend(subs.iter().map(admin_json)),
                    Err(e) => return error(500, "internal", "", &e),
                }
            }
            if let Some(state) = state_filter {
                list.retain(|s| {
                    s.get("state").and_then(Value::as_str).unwrap_or("active") == state
                });
            }
            Some((200, Value::Array(list)))
        }
        ("POST", None) => issue(portal?, plane, body),
        (_, None) => None,
        (_, Some(id)) => {
            let portal = portal?;
            let in_document =
                edit::get(&document, Place::Top(Collection::Subscriptions), id).is_ok();
            if in_document {
                return None;
            }
            let mut sub = match portal.store.subscription(id) {
                Ok(Some(s)) => s,
                Ok(None) => return None,
                Err(e) => return error(500, "internal", "", &e),
            };
            portal_action(portal, plane, &mut sub, method, action, body)
        }
    }
}

/// An action on one of the portal's subscriptions. Answers as the document's routes do: the
/// subscription in its new state; for a regeneration, `{"subscription", SLOT: KEY}`, the new
/// key once.
fn portal_action(
    portal: &Portal,
    plane: &Plane,
    sub: &mut StoredSubscription,
    method: &str,
    action: &str,
    body: &[u8],
) -> Option<(u16, Value)> {
    if method == "GET" {
        return Some((200, admin_json(sub)));
    }
    if sub.state == SubState::Cancelled && !(method == "POST" && action == "cancel") {
        return error(
            409,
            "cancelled",
            "path.subscription",
            &format!("subscription {:?} is cancelled, for good", sub.id),
        );
    }
    let mut generated = None;
    match (method, action) {
        ("POST", "activate") => sub.state = SubState::Active,
        ("POST", "suspend") => sub.state = SubState::Suspended,
        ("POST", "cancel") | ("DELETE", _) => sub.state = SubState::Cancelled,
        ("POST", "regenerate") => {
            let which: Value = serde_json::from_slice(body).unwrap_or(json!({}));
            let key = keys::new_key();
            let slot = match which.get("key").and_then(Value::as_str) {
                Some("primary") => {
                    sub.primary_key.clone_from(&key);
                    "primary_key"
                }
                Some("secondary") => {
                    sub.secondary_key.clone_from(&key);
                    "secondary_key"
                }
                _ => {
                    return error(
                        400,
                        "invalid_body",
                        "body.key",
                        "give which key to regenerate: {\"key\": \"primary\"} or \
                         {\"key\": \"secondary\"}",
                    )
                }
            };
            generated = Some((slot, key));
        }
        _ => {
            return error(
                409,
                "conflict",
                "path.subscription",
                "a subscription made in the developer portal changes through its actions \
                 (activate, suspend, cancel, regenerate)",
            )
        }
    }
    sub.updated = unix_ms();
    if let Err(e) = portal.save_subscription(plane, sub) {
        return error(500, "internal", "", &e);
    }
    Some((
        200,
        match generated {
            Some((slot, key)) => json!({"subscription": admin_json(sub), slot: key}),
            None => admin_json(sub),
        },
    ))
}

/// `POST /subscriptions` for a developer of the portal (`owner` is their email, `scope` a
/// product): the subscription is the portal's, and the developer sees it there.
fn issue(portal: &Portal, plane: &Plane, body: &[u8]) -> Option<(u16, Value)> {
    let body: Value = serde_json::from_slice(body).ok()?;
    let owner = body
        .get("owner")
        .and_then(Value::as_str)?
        .to_ascii_lowercase();
    portal.store.developer_by_email(&owner).ok()??;
    let Some(product) = body.pointer("/scope/product").and_then(Value::as_str) else {
        return error(
            400,
            "invalid_body",
            "body.scope",
            "a developer's subscription is to a product: {\"product\": NAME}",
        );
    };
    let known = {
        let r = plane.reloader.lock().unwrap_or_else(|e| e.into_inner());
        r.snapshot()
            .config
            .products
            .iter()
            .any(|p| p.name == product)
    };
    if !known {
        return error(
            422,
            "invalid_config",
            "body.scope.product",
            &format!("no product named {product:?}"),
        );
    }
    let state = match body.get("state").and_then(Value::as_str) {
        None => SubState::Active,
        Some(s) => match SubState::parse(s) {
            Some(st) => st,
            None => {
                return error(
                    400,
                    "invalid_body",
                    "body.state",
                    "state is pending, active, suspended or cancelled",
                )
            }
        },
    };
    let id = match body.get("id").and_then(Value::as_str) {
        Some(id)
            if !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
        {
            id.to_string()
        }
        Some(_) => {
            return error(
                400,
                "invalid_body",
                "body.id",
                "the id is letters, digits, '-', '_', '.'",
            )
        }
        None => format!("{product}-{}", unix_ms()),
    };
    let taken = edit::get(
        &plane.document(),
        Place::Top(Collection::Subscriptions),
        &id,
    )
    .is_ok()
        || portal.store.subscription(&id).ok().flatten().is_some();
    if taken {
        return error(
            409,
            "conflict",
            "body.id",
            &format!("subscription {id:?} exists"),
        );
    }
    let sub = StoredSubscription {
        id,
        owner,
        product: product.to_string(),
        state,
        primary_key: keys::new_key(),
        secondary_key: keys::new_key(),
        created: unix_now(),
        updated: unix_ms(),
    };
    if let Err(e) = portal.save_subscription(plane, &sub) {
        return error(500, "internal", "", &e);
    }
    Some((
        201,
        json!({
            "subscription": admin_json(&sub),
            "primary_key": sub.primary_key,
            "secondary_key": sub.secondary_key,
        }),
    ))
}
