//! The subscription check of an API's route, run before its inbound section: find the
//! request's key, ask the [`KeyTable`] who it belongs to, and pick the pipeline of the product
//! it was admitted under (global → product → API → operation).
//!
//! The invariant that matters: the check never copies, logs or keeps the key. It borrows it
//! from the request's buffer, the table hashes it, and only the subscription's and product's
//! indices come out. The key header itself is forwarded as sent, as API Management does.
//!
//! What this module deliberately does not do: write the refusal (the server answers a
//! [`Denial`] with its status and APIM's JSON body) or count calls per subscription (the
//! `rate-limit` policy does, with the id this check found).

use super::keys::{self, Access, Denial, KeyTable};
use crate::route::HeaderLookup;

/// The header API Management reads a subscription key from.
pub const DEFAULT_HEADER: &str = "Ocp-Apim-Subscription-Key";
/// The query parameter API Management reads a key from when the header is absent.
pub const DEFAULT_QUERY: &str = "subscription-key";

/// How the routes of one API check subscription keys; compiled with the configuration.
#[derive(Clone, Debug)]
pub struct KeyCheck {
    /// The header that carries the key, lower case.
    pub header: Box<[u8]>,
    /// The query parameter read when the header is absent or empty.
    pub query: Box<[u8]>,
    /// A request without a key is refused (401). When false (`subscription_required: false`
    /// on the API) it passes without a subscription; a key that is sent is still checked.
    pub required: bool,
    /// The route's pipeline under each product that holds its API: (product index in the
    /// key table, pipeline index). Empty outside products.
    pub by_product: Box<[(usize, usize)]>,
}

/// Who an admitted request is, and the pipeline it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// Index in [`KeyTable::subscription`]; None for a request without a key.
    pub subscription: Option<usize>,
    /// Index in [`KeyTable::product`]: the product of a product-scoped subscription, or the
    /// open product that let a request without a key in.
    pub product: Option<usize>,
    pub pipeline: usize,
}

impl KeyCheck {
    /// Decides one request to `api`. `pipeline` is the route's pipeline outside products.
    ///
    /// Hot path: one SHA-256 and two map lookups in the table, a scan of the few products
    /// holding the API, no allocation.
    pub fn admit(
        &self,
        table: &KeyTable,
        api: &str,
        headers: &impl HeaderLookup,
        query: &[u8],
        pipeline: usize,
    ) -> Result<Admitted, Denial> {
        let key = keys::key_from_request(headers.get(&self.header), query, &self.query);
        let (subscription, product) = match table.check(key, api) {
            Access::Granted {
                subscription,
                product,
            } => (Some(subscription), product),
            Access::Open { product } => (None, Some(product)),
            Access::Denied(Denial::Missing) if !self.required => (None, None),
            Access::Denied(denial) => return Err(denial),
        };
        let pipeline = product
            .and_then(|p| self.by_product.iter().find(|(q, _)| *q == p))
            .map_or(pipeline, |&(_, pipe)| pipe);
        Ok(Admitted {
            subscription,
            product,
            pipeline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::auth::keys::{hash_key, ProductSpec, Scope, State, Subscription};

    struct Headers(Vec<(&'static [u8], &'static [u8])>);

    impl HeaderLookup for Headers {
        fn get(&self, name: &[u8]) -> Option<&[u8]> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
    }

    fn table() -> KeyTable {
        let sub = |id: &str, scope, state, key: &str| Subscription {
            id: id.into(),
            scope,
            state,
            primary: hash_key(key),
            secondary: None,
        };
        KeyTable::build(
            vec![
                sub("gold-1", Scope::Product("gold".into()), State::Active, "g1"),
                sub("ops", Scope::AllApis, State::Active, "o1"),
                sub("old", Scope::AllApis, State::Suspended, "s1"),
            ],
            &[
                ProductSpec {
                    name: "gold".into(),
                    apis: vec!["orders".into()],
                    subscription_required: true,
                },
                ProductSpec {
                    name: "free".into(),
                    apis: vec!["weather".into()],
                    subscription_required: false,
                },
            ],
        )
        .unwrap()
    }

    fn check(required: bool) -> KeyCheck {
        KeyCheck {
            header: b"x-key"[..].into(),
            query: b"key"[..].into(),
            required,
            by_product: Box::new([(0, 10), (1, 11)]),
        }
    }

    #[test]
    fn the_product_of_the_subscription_picks_the_pipeline() {
        let t = table();
        let h = Headers(vec![(b"x-key", b"g1")]);
        assert_eq!(
            check(true).admit(&t, "orders", &h, b"", 5),
            Ok(Admitted {
                subscription: Some(0),
                product: Some(0),
                pipeline: 10
            })
        );
        // An all-APIs subscription has no product: the route's own pipeline.
        let h = Headers(vec![(b"x-key", b"o1")]);
        assert_eq!(
            check(true)
                .admit(&t, "orders", &h, b"", 5)
                .map(|a| a.pipeline),
            Ok(5)
        );
        // The query, under its configured name, when the header is absent.
        let none = Headers(vec![]);
        assert_eq!(
            check(true)
                .admit(&t, "orders", &none, b"a=1&key=g1", 5)
                .map(|a| a.subscription),
            Ok(Some(0))
        );
    }

    #[test]
    fn open_products_and_optional_checks_let_keyless_requests_in() {
        let t = table();
        let none = Headers(vec![]);
        assert_eq!(
            check(true).admit(&t, "weather", &none, b"", 5),
            Ok(Admitted {
                subscription: None,
                product: Some(1),
                pipeline: 11
            })
        );
        assert_eq!(
            check(true).admit(&t, "orders", &none, b"", 5),
            Err(Denial::Missing)
        );
        assert_eq!(
            check(false).admit(&t, "orders", &none, b"", 5),
            Ok(Admitted {
                subscription: None,
                product: None,
                pipeline: 5
            })
        );
        // An optional check still refuses a bad key.
        let bad = Headers(vec![(b"x-key", b"nope")]);
        assert_eq!(
            check(false).admit(&t, "orders", &bad, b"", 5),
            Err(Denial::Invalid)
        );
        let old = Headers(vec![(b"x-key", b"s1")]);
        assert_eq!(
            check(false).admit(&t, "orders", &old, b"", 5),
            Err(Denial::Suspended)
        );
    }
}
