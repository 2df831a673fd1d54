//! `products`, `subscriptions`, and each API's subscription settings: the document's shapes,
//! their validation, and what they compile to (the read-only [`KeyTable`] every core shares,
//! and which APIs check keys).
//!
//! Which APIs check keys (docs/security.md states the same rule):
//!
//! - an API that sets `subscription_required: true` needs a key, in products or not;
//! - an API that sets `subscription_required: false` lets requests without a key in, and still
//!   checks a key that is sent;
//! - an API that sets neither needs a key when a product holds it (a key-free "open" product
//!   lets requests without one in), and checks nothing when no product holds it, so that a
//!   configuration written before products keeps working.
//!
//! Keys are configured as `sha256:` hashes only; a plaintext key is refused without being
//! repeated in the message.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::apis::{Api, Sections};
use super::validate::Errors;
use crate::policy::auth::keys::{KeyHash, KeyTable, ProductSpec, Scope, State, Subscription};
use crate::policy::auth::subscription::{DEFAULT_HEADER, DEFAULT_QUERY};

// ---------------------------------------------------------------------------------------------
// The document.

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a product: a mapping with name, apis and optionally display_name, description, \
                 subscription_required, approval_required, policies"
)]
pub struct ProductDoc {
    pub name: String,
    /// Subscriptions developers ask for wait for an owner's approval (default false).
    pub approval_required: Option<bool>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    #[serde(default)]
    pub apis: Vec<String>,
    /// Default true; false makes an "open" product whose APIs take requests without a key.
    pub subscription_required: Option<bool>,
    #[serde(default)]
    pub policies: Sections,
}

#[derive(Debug, Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a subscription: a mapping with id, scope, primary_key and optionally \
                 secondary_key, state, display_name, owner"
)]
pub struct SubscriptionDoc {
    pub id: String,
    pub display_name: Option<String>,
    pub owner: Option<String>,
    pub scope: ScopeDoc,
    #[serde(default)]
    pub state: StateDoc,
    pub primary_key: HashText,
    pub secondary_key: Option<HashText>,
}

/// `{product: NAME}`, `{api: NAME}` or `all_apis`.
#[derive(Debug)]
pub enum ScopeDoc {
    Product(String),
    Api(String),
    AllApis,
}

impl<'de> Deserialize<'de> for ScopeDoc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ScopeDoc, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ScopeDoc;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scope: {product: NAME}, {api: NAME} or all_apis")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ScopeDoc, E> {
                match s {
                    "all_apis" => Ok(ScopeDoc::AllApis),
                    other => Err(E::unknown_variant(other, &["all_apis"])),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<ScopeDoc, A::Error> {
                let key: Option<String> = m.next_key()?;
                let scope = match key.as_deref() {
                    Some("product") => ScopeDoc::Product(m.next_value()?),
                    Some("api") => ScopeDoc::Api(m.next_value()?),
                    Some(other) => {
                        return Err(de::Error::unknown_field(other, &["product", "api"]))
                    }
                    None => return Err(de::Error::custom("an empty mapping is not a scope")),
                };
                if m.next_key::<String>()?.is_some() {
                    return Err(de::Error::custom(
                        "a scope is one product or one API (or all_apis)",
                    ));
                }
                Ok(scope)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateDoc {
    #[default]
    Active,
    Suspended,
    Cancelled,
}

/// A key hash as written. Its `Debug` shows nothing, in case a key was written in its place,
/// and a number or a boolean there (a key, unquoted) is kept as no text at all, so that no
/// message can repeat it.
pub struct HashText(String);

impl<'de> Deserialize<'de> for HashText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HashText, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HashText;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key hash: sha256:<64 hex digits>")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<HashText, E> {
                Ok(HashText(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<HashText, E> {
                Ok(HashText(String::new()))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<HashText, E> {
                Ok(HashText(String::new()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<HashText, E> {
                Ok(HashText(String::new()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<HashText, E> {
                Ok(HashText(String::new()))
            }
        }
        d.deserialize_any(V)
    }
}

impl fmt::Debug for HashText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashText(..)")
    }
}

/// Where an API's requests carry their key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with header, query")]
pub struct SubscriptionKeyDoc {
    pub header: Option<String>,
    pub query: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Compilation.

/// How one API checks keys, before its pipelines are known.
#[derive(Clone, Debug)]
pub struct KeySettings {
    /// Lower case.
    pub header: Box<[u8]>,
    pub query: Box<[u8]>,
    pub required: bool,
}

/// What `products` and `subscriptions` compile to.
pub struct Products {
    pub table: KeyTable,
    /// For each of the document's APIs, by index, the products that hold it (indices in the
    /// table, in configuration order).
    pub holding: Vec<Vec<usize>>,
}

/// Letters, digits, `-`, `_`, `.`: names that go into templates, counter keys and logs as
/// they are.
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn known(list: &[&str]) -> String {
    if list.is_empty() {
        "none are defined".to_string()
    } else {
        format!("known: {}", list.join(", "))
    }
}

/// Display names, descriptions and owners are for people (logs, the portal): one line of
/// text without control characters.
fn check_text(path: String, text: Option<&str>, errors: &mut Errors) {
    if text.is_some_and(|t| t.chars().any(char::is_control)) {
        errors.push(path, "may not contain control characters or line breaks");
    }
}

fn key_hash(path: String, text: &HashText, errors: &mut Errors) -> Option<KeyHash> {
    text.0
        .parse::<KeyHash>()
        .map_err(|e| {
            if text.0.starts_with("sha256:") {
                errors.push(path, format!("not a key hash: {e}"));
            } else {
                errors.push(
                    path,
                    "not a key hash: the configuration holds sha256:<64 hex digits> of each key, \
                     never the key itself; run `ringway key hash KEY` and write its output here",
                );
            }
        })
        .ok()
}

/// Validates `products` and `subscriptions` and builds the key table.
pub fn compile(
    products: &[ProductDoc],
    subs: &[SubscriptionDoc],
    apis: &[Api],
    errors: &mut Errors,
) -> Products {
    let before = errors.0.len();
    let api_names: Vec<&str> = apis.iter().map(|a| a.name.as_str()).collect();
    let mut holding = vec![Vec::new(); apis.len()];
    let mut specs = Vec::with_capacity(products.len());
    for (p, product) in products.iter().enumerate() {
        let ppath = format!("products[{p}]");
        if !is_name(&product.name) {
            errors.push(
                format_args!("{ppath}.name"),
                format!(
                    "{:?} is not a name (letters, digits, '-', '_', '.')",
                    product.name
                ),
            );
        } else if let Some(first) = products[..p].iter().position(|q| q.name == product.name) {
            errors.push(
                format_args!("{ppath}.name"),
                format!(
                    "products[{first}] is already named {:?}; product names must be unique",
                    product.name
                ),
            );
        }
        check_text(
            format!("{ppath}.display_name"),
            product.display_name.as_deref(),
            errors,
        );
        if product
            .description
            .as_deref()
            .is_some_and(|d| d.contains('\0'))
        {
            errors.push(format_args!("{ppath}.description"), "may not contain NUL");
        }
        for (i, name) in product.apis.iter().enumerate() {
            let ipath = format!("{ppath}.apis[{i}]");
            match api_names.iter().position(|a| a == name) {
                None => errors.push(
                    ipath,
                    format!("no API named {name:?} ({})", known(&api_names)),
                ),
                Some(_) if product.apis[..i].contains(name) => {
                    errors.push(ipath, format!("{name:?} is listed twice"))
                }
                Some(a) => holding[a].push(p),
            }
        }
        specs.push(ProductSpec {
            name: product.name.clone(),
            apis: product.apis.clone(),
            subscription_required: product.subscription_required.unwrap_or(true),
        });
    }

    let product_names: Vec<&str> = products.iter().map(|p| p.name.as_str()).collect();
    let mut subscriptions = Vec::with_capacity(subs.len());
    for (s, sub) in subs.iter().enumerate() {
        let spath = format!("subscriptions[{s}]");
        if !is_name(&sub.id) {
            errors.push(
                format_args!("{spath}.id"),
                format!("{:?} is not an id (letters, digits, '-', '_', '.')", sub.id),
            );
        } else if let Some(first) = subs[..s].iter().position(|t| t.id == sub.id) {
            errors.push(
                format_args!("{spath}.id"),
                format!(
                    "subscriptions[{first}] already has id {:?}; subscription ids must be unique",
                    sub.id
                ),
            );
        }
        check_text(
            format!("{spath}.display_name"),
            sub.display_name.as_deref(),
            errors,
        );
        check_text(format!("{spath}.owner"), sub.owner.as_deref(), errors);
        let scope = match &sub.scope {
            ScopeDoc::Product(name) => {
                match products.iter().position(|p| &p.name == name) {
                    None => errors.push(
                        format_args!("{spath}.scope.product"),
                        format!("no product named {name:?} ({})", known(&product_names)),
                    ),
                    Some(p) if !specs[p].subscription_required => errors.push(
                        format_args!("{spath}.scope.product"),
                        format!(
                            "product {name:?} (products[{p}]) is open (subscription_required: \
                             false): it takes no subscriptions"
                        ),
                    ),
                    Some(_) => {}
                }
                Scope::Product(name.clone())
            }
            ScopeDoc::Api(name) => {
                if !api_names.contains(&name.as_str()) {
                    errors.push(
                        format_args!("{spath}.scope.api"),
                        format!("no API named {name:?} ({})", known(&api_names)),
                    );
                }
                Scope::Api(name.clone())
            }
            ScopeDoc::AllApis => Scope::AllApis,
        };
        let primary = key_hash(format!("{spath}.primary_key"), &sub.primary_key, errors);
        let secondary = match &sub.secondary_key {
            None => Ok(None),
            Some(k) => key_hash(format!("{spath}.secondary_key"), k, errors)
                .map(Some)
                .ok_or(()),
        };
        if let (Some(primary), Ok(secondary)) = (primary, secondary) {
            subscriptions.push(Subscription {
                id: sub.id.clone(),
                scope,
                state: match sub.state {
                    StateDoc::Active => State::Active,
                    StateDoc::Suspended => State::Suspended,
                    StateDoc::Cancelled => State::Cancelled,
                },
                primary,
                secondary,
            });
        }
    }

    let table = if errors.0.len() == before {
        // What is left for the table to refuse: one key hash used twice.
        KeyTable::build(subscriptions, &specs)
            .map_err(|e| errors.0.push(e))
            .ok()
    } else {
        None
    };
    Products {
        table: table.unwrap_or_else(|| KeyTable::build(Vec::new(), &[]).expect("an empty table")),
        holding,
    }
}

impl Products {
    /// How `api` (the document's `apis[a]`) checks keys; None when it checks none.
    pub fn key_settings(&self, a: usize, api: &Api, errors: &mut Errors) -> Option<KeySettings> {
        let apath = format!("apis[{a}]");
        let holding = &self.holding[a];
        if api.subscription_required == Some(true) {
            for &p in holding {
                let product = self.table.product(p);
                if !product.subscription_required {
                    errors.push(
                        format_args!("{apath}.subscription_required"),
                        format!(
                            "true, but the open product {:?} (products[{p}]) holds this API and \
                             lets requests without a key in; remove the API from that product \
                             or this setting",
                            product.name
                        ),
                    );
                }
            }
        }
        if api.subscription_required.is_none() && holding.is_empty() {
            if api.subscription_key.is_some() {
                errors.push(
                    format_args!("{apath}.subscription_key"),
                    "this API checks no subscription key: no product holds it and it does not \
                     set subscription_required",
                );
            }
            return None;
        }
        let doc = api.subscription_key.as_ref();
        let header = doc
            .and_then(|k| k.header.as_deref())
            .unwrap_or(DEFAULT_HEADER);
        super::routes::check_header(
            &format!("{apath}.subscription_key.header"),
            header,
            None,
            errors,
        );
        let query = doc
            .and_then(|k| k.query.as_deref())
            .unwrap_or(DEFAULT_QUERY);
        if query.is_empty() || query.bytes().any(|b| b"&=#?+% ".contains(&b) || b < 0x21) {
            errors.push(
                format_args!("{apath}.subscription_key.query"),
                format!("{query:?} is not a query parameter name"),
            );
        }
        Some(KeySettings {
            header: header.to_ascii_lowercase().into_bytes().into(),
            query: query.as_bytes().into(),
            required: api.subscription_required.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests;
