//! Revisions: making another revision of an API the current one. The API's own fields are
//! its current revision; the edit swaps them with the chosen entry of `revisions`, so that
//! the whole change is one document applied by one reload.

use serde_json::{Map, Value};

use super::{EditError, Outcome};

/// The fields a revision may set; the rest belong to the API whatever its revision.
const REVISION_FIELDS: &[&str] = &[
    "backend",
    "backend_path",
    "openapi",
    "operations",
    "policies",
];

fn api_mut<'d>(doc: &'d mut Value, api: &str) -> Result<&'d mut Map<String, Value>, EditError> {
    doc.get_mut("apis")
        .and_then(Value::as_array_mut)
        .and_then(|list| {
            list.iter_mut()
                .find(|a| a.get("name").and_then(Value::as_str) == Some(api))
        })
        .and_then(Value::as_object_mut)
        .ok_or_else(|| {
            EditError::new(
                404,
                "not_found",
                "path.api",
                format!("no API named {api:?}"),
            )
        })
}

/// The API's revisions, the current one first: `[{revision, current, online, change_log}]`.
pub fn list(doc: &Value, api: &str) -> Result<Value, EditError> {
    let mut doc = doc.clone();
    let a = api_mut(&mut doc, api)?;
    let current = a.get("revision").and_then(Value::as_u64).unwrap_or(1);
    let mut out = vec![serde_json::json!({
        "revision": current,
        "current": true,
        "online": true,
        "change_log": a.get("change_log"),
    })];
    let mut others: Vec<&Value> = a
        .get("revisions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    others.sort_by_key(|r| r.get("revision").and_then(Value::as_u64).unwrap_or(0));
    for r in others {
        out.push(serde_json::json!({
            "revision": r.get("revision"),
            "current": false,
            "online": r.get("online").and_then(Value::as_bool).unwrap_or(true),
            "change_log": r.get("change_log"),
        }));
    }
    Ok(Value::Array(out))
}

/// `POST /apis/{api}/revisions/{revision}/make-current`: the revision's fields become the
/// API's, and the API's become a revision entry (online), each field a revision did not set
/// staying the API's. `change_log` (optional, in `body`) replaces the new current revision's
/// entry.
pub fn make_current(
    doc: &mut Value,
    api: &str,
    revision: &str,
    body: &Value,
) -> Result<Outcome, EditError> {
    let number: u64 = revision.parse().map_err(|_| {
        EditError::new(
            400,
            "invalid_parameter",
            "path.revision",
            format!("{revision:?} is not a revision number"),
        )
    })?;
    let a = api_mut(doc, api)?;
    let current = a.get("revision").and_then(Value::as_u64).unwrap_or(1);
    if number == current {
        return Err(EditError::new(
            409,
            "conflict",
            "path.revision",
            format!("revision {number} is already the current revision of {api:?}"),
        ));
    }
    let revisions = a
        .get_mut("revisions")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| {
            EditError::new(
                404,
                "not_found",
                "path.revision",
                format!("API {api:?} has no revision {number}"),
            )
        })?;
    let at = revisions
        .iter()
        .position(|r| r.get("revision").and_then(Value::as_u64) == Some(number))
        .ok_or_else(|| {
            EditError::new(
                404,
                "not_found",
                "path.revision",
                format!("API {api:?} has no revision {number}"),
            )
        })?;
    let chosen = match revisions.remove(at) {
        Value::Object(m) => m,
        _ => {
            return Err(EditError::bad(
                "path.revision",
                "the revision entry is not a mapping",
            ))
        }
    };
    // The current revision, as an entry of its own.
    let mut old = Map::new();
    old.insert("revision".into(), Value::from(current));
    old.insert("online".into(), Value::Bool(true));
    if let Some(c) = a.get("change_log") {
        old.insert("change_log".into(), c.clone());
    }
    for field in REVISION_FIELDS {
        match a.get(*field) {
            Some(v) => {
                old.insert((*field).to_string(), v.clone());
            }
            // A field the API did not write but the chosen revision sets: written out for the
            // old revision, which would otherwise take the new value.
            None if chosen.contains_key(*field) => {
                let empty = match *field {
                    "operations" => Some(Value::Array(Vec::new())),
                    "policies" => Some(Value::Object(Map::new())),
                    _ => None,
                };
                if let Some(e) = empty {
                    old.insert((*field).to_string(), e);
                }
            }
            None => {}
        }
    }
    for field in REVISION_FIELDS {
        if let Some(v) = chosen.get(*field) {
            a.insert((*field).to_string(), v.clone());
        }
    }
    a.insert("revision".into(), Value::from(number));
    match body.get("change_log").or_else(|| chosen.get("change_log")) {
        Some(c) => a.insert("change_log".into(), c.clone()),
        None => a.remove("change_log"),
    };
    let revisions = a
        .get_mut("revisions")
        .and_then(Value::as_array_mut)
        .expect("checked above");
    revisions.push(Value::Object(old));
    revisions.sort_by_key(|r| r.get("revision").and_then(Value::as_u64).unwrap_or(0));
    let listed = list(doc, api)?;
    Ok(Outcome {
        status: 200,
        body: serde_json::json!({"api": api, "current": number, "revisions": listed}),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn making_a_revision_current_swaps_its_fields_with_the_apis() {
        let mut doc = json!({"apis": [{
            "name": "pets", "path": "/pets", "backend": "v1", "revision": 1,
            "change_log": "first",
            "operations": [{"id": "a", "method": "GET", "url_template": "/a"}],
            "revisions": [{"revision": 2, "online": false, "change_log": "second", "backend": "v2"}],
        }]});
        let out = make_current(&mut doc, "pets", "2", &json!({})).unwrap();
        assert_eq!(out.body["current"], 2);
        let a = &doc["apis"][0];
        assert_eq!(a["revision"], 2);
        assert_eq!(a["backend"], "v2");
        assert_eq!(a["change_log"], "second");
        // Revision 2 set no operations: it keeps the API's.
        assert_eq!(a["operations"][0]["id"], "a");
        let old = &a["revisions"][0];
        assert_eq!(old["revision"], 1);
        assert_eq!(old["backend"], "v1");
        assert_eq!(old["online"], true);
        assert_eq!(old["change_log"], "first");
        // And back.
        make_current(&mut doc, "pets", "1", &json!({"change_log": "rolled back"})).unwrap();
        assert_eq!(doc["apis"][0]["backend"], "v1");
        assert_eq!(doc["apis"][0]["change_log"], "rolled back");
        assert_eq!(doc["apis"][0]["revisions"][0]["revision"], 2);
    }

    #[test]
    fn unknown_and_current_revisions_are_refused() {
        let mut doc = json!({"apis": [{"name": "pets", "path": "/pets", "revision": 3}]});
        assert_eq!(
            make_current(&mut doc, "pets", "3", &json!({}))
                .unwrap_err()
                .status,
            409
        );
        assert_eq!(
            make_current(&mut doc, "pets", "4", &json!({}))
                .unwrap_err()
                .status,
            404
        );
        assert_eq!(
            make_current(&mut doc, "nope", "1", &json!({}))
                .unwrap_err()
                .status,
            404
        );
        assert_eq!(
            make_current(&mut doc, "pets", "x", &json!({}))
                .unwrap_err()
                .status,
            400
        );
    }
}
