//! Metric labels: the names of APIs, operations, backends and subscriptions, as small numbers
//! that workers count under without touching a string.
//!
//! Names are interned here, on the control side, when a configuration is compiled; each keeps
//! its number for the life of the process, so a series survives reloads. A worker's series key
//! is `route << 32 | backend` (see [`series_key`]); a subscription's is its [`name_key`].
//! Exporters turn keys back into names with [`resolve`].

use std::sync::{Mutex, OnceLock};

use ahash::AHashMap;

#[derive(Default)]
struct Interner {
    ids: AHashMap<String, u32>,
    names: Vec<String>,
    /// Subscription ids by their hash.
    by_hash: AHashMap<u64, String>,
}

fn interner() -> std::sync::MutexGuard<'static, Interner> {
    static INTERNER: OnceLock<Mutex<Interner>> = OnceLock::new();
    INTERNER
        .get_or_init(|| {
            let mut i = Interner::default();
            // 0: no route matched; 1: no backend (answered by the gateway).
            i.intern(UNMATCHED);
            i.intern("");
            Mutex::new(i)
        })
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

impl Interner {
    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }
}

/// The API label of requests no route took.
pub const UNMATCHED: &str = "unmatched";
/// Route id of requests no route took.
pub const NO_ROUTE: u32 = 0;
/// Backend id of requests the gateway answered itself.
pub const NO_BACKEND: u32 = 1;

/// The id of an API (or plain route) and operation.
pub fn route(api: &str, operation: &str) -> u32 {
    interner().intern(&format!("{api}\u{0}{operation}"))
}

/// The id of a backend.
pub fn backend(name: &str) -> u32 {
    interner().intern(name)
}

#[inline]
pub fn series_key(route: u32, backend: u32) -> u64 {
    (u64::from(route) << 32) | u64::from(backend)
}

/// The key of a subscription id (or any name counted by itself): a fixed hash, so that a
/// worker computes it from the bytes it has.
#[inline]
pub fn name_key(name: &[u8]) -> u64 {
    ahash::RandomState::with_seeds(0x52, 0x49, 0x4e, 0x47).hash_one(name)
}

/// Makes `name_key(name)` resolvable.
pub fn subscription(name: &str) {
    interner()
        .by_hash
        .insert(name_key(name.as_bytes()), name.to_string());
}

/// `(api, operation, backend)` of a series key; the overflow series is `("other", "", "")`.
pub fn resolve(key: u64) -> (String, String, String) {
    if key == ringway_core::metrics::OVERFLOW {
        return ("other".into(), String::new(), String::new());
    }
    let i = interner();
    let name = |id: u32| i.names.get(id as usize).cloned().unwrap_or_default();
    let route = name((key >> 32) as u32);
    let (api, operation) = route.split_once('\u{0}').unwrap_or((&route, ""));
    (api.to_string(), operation.to_string(), name(key as u32))
}

/// The subscription id of a subscription key ("other" for the overflow series).
pub fn resolve_name(key: u64) -> String {
    if key == ringway_core::metrics::OVERFLOW {
        return "other".into();
    }
    interner()
        .by_hash
        .get(&key)
        .cloned()
        .unwrap_or_else(|| "unknown".into())
}
