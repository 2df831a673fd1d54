//! Consistent hashing: a ring of virtual nodes per backend, and the request key it is looked up
//! with.
//!
//! Each target owns 160 points per unit of weight, placed by hashing its URL, so a target's
//! points do not depend on the others: removing one of N targets moves only the keys that were
//! on its points (about 1/N), and no key moves between two targets that stay. The ring is built
//! once per snapshot and shared read-only by every worker; the hash uses fixed seeds, so every
//! core (and every run of the same binary) agrees on it. It is not a stable hash across builds
//! or machines: ahash's output may change between its versions and CPU features.

use crate::config::HashOn;

/// Virtual nodes per unit of weight (Envoy's ring hash uses a comparable density).
const POINTS_PER_WEIGHT: u64 = 160;
/// The most points a ring holds; beyond it every target's share is scaled down (each keeps at
/// least one point).
const MAX_POINTS: u64 = 1 << 17;

fn hasher() -> ahash::RandomState {
    ahash::RandomState::with_seeds(
        0x243f_6a88_85a3_08d3,
        0x1319_8a2e_0370_7344,
        0xa409_3822_299f_31d0,
        0x082e_fa98_ec4e_6c89,
    )
}

/// The hash of a request key (and of ring points): the same bytes give the same value on every
/// core.
pub fn hash_key(bytes: &[u8]) -> u64 {
    hasher().hash_one(bytes)
}

/// The key of a request for `consistent_hash`, hashed: the named header's value, the named
/// cookie's value (from the `Cookie` header, through `header`), or the client address (its
/// text, as in `X-Forwarded-For`). None when the request has no such header or cookie; the
/// balancer then spreads it round-robin.
pub fn hash_input<'a>(
    on: &HashOn,
    header: impl Fn(&[u8]) -> Option<&'a [u8]>,
    client_ip: &[u8],
) -> Option<u64> {
    match on {
        HashOn::Ip => Some(hash_key(client_ip)),
        HashOn::Header(name) => header(name.as_bytes()).map(|v| hash_key(v.trim_ascii())),
        HashOn::Cookie(name) => cookie(header(b"cookie")?, name.as_bytes()).map(hash_key),
    }
}

/// The value of cookie `name` in a `Cookie` header (`a=1; b=2`).
fn cookie<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name).then(|| pair[eq + 1..].trim_ascii())
    })
}

/// Points on the ring, sorted: `(hash, target)` with `target` the backend-local index.
pub struct Ring {
    points: Box<[(u64, u32)]>,
}

impl Ring {
    /// `targets` as `(identity, weight)`, in declaration order; the identity (the target's URL)
    /// places its points.
    pub fn new<'a>(targets: impl IntoIterator<Item = (&'a str, u32)>) -> Ring {
        let targets: Vec<(&str, u64)> = targets
            .into_iter()
            .map(|(id, w)| (id, u64::from(w.max(1))))
            .collect();
        let total: u64 = targets.iter().map(|(_, w)| w * POINTS_PER_WEIGHT).sum();
        let mut points = Vec::with_capacity(total.min(MAX_POINTS) as usize);
        for (local, &(id, weight)) in targets.iter().enumerate() {
            let mut n = weight * POINTS_PER_WEIGHT;
            if total > MAX_POINTS {
                n = (n * MAX_POINTS / total).max(1);
            }
            // The same URL twice in a backend still gets two sets of points.
            let twin = targets[..local].iter().filter(|(o, _)| *o == id).count();
            let state = hasher();
            for replica in 0..n {
                points.push((state.hash_one((id, twin, replica)), local as u32));
            }
        }
        points.sort_unstable();
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// The target that owns `hash`: the first point at or after it, walking on (round the
    /// ring) past points whose target `usable` refuses. None when it refuses every target.
    pub fn pick(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.points.len();
        let start = self.points.partition_point(|&(p, _)| p < hash);
        let mut refused: u128 = 0;
        for step in 0..n {
            let local = self.points[(start + step) % n].1 as usize;
            // Most walks stop at once; the bit set spares re-asking about a refused target.
            if local < 128 && refused & (1 << local) != 0 {
                continue;
            }
            if usable(local) {
                return Some(local);
            }
            if local < 128 {
                refused |= 1 << local;
            }
        }
        None
    }

    pub fn len(&self) -> usize {
        self.points.len()
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://10.0.0.{i}:8080")).collect()
    }

    fn owners(ring: &Ring, keys: &[u64], usable: impl Fn(usize) -> bool + Copy) -> Vec<usize> {
        keys.iter()
            .map(|&k| ring.pick(k, usable).unwrap())
            .collect()
    }

    fn keys(n: usize) -> Vec<u64> {
        (0..n)
            .map(|i| hash_key(format!("user-{i}").as_bytes()))
            .collect()
    }

    #[test]
    fn keys_spread_evenly_over_equal_targets() {
        let urls = urls(5);
        let ring = Ring::new(urls.iter().map(|u| (u.as_str(), 1)));
        assert_eq!(ring.len(), 5 * 160);
        let mut counts = [0usize; 5];
        for o in owners(&ring, &keys(10_000), |_| true) {
            counts[o] += 1;
        }
        for c in counts {
            assert!((1400..=2600).contains(&c), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn removing_one_of_five_moves_only_its_keys() {
        let urls = urls(5);
        let keys = keys(10_000);
        let before = owners(
            &Ring::new(urls.iter().map(|u| (u.as_str(), 1))),
            &keys,
            |_| true,
        );
        // Target 2 removed from the configuration: a new ring of the other four.
        let survivors: Vec<&String> = urls
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, u)| u)
            .collect();
        let after_ring = Ring::new(survivors.iter().map(|u| (u.as_str(), 1)));
        let after: Vec<usize> = owners(&after_ring, &keys, |_| true)
            .into_iter()
            .map(|i| if i >= 2 { i + 1 } else { i })
            .collect();
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                assert_eq!(*b, 2, "a key moved between surviving targets ({b} -> {a})");
                moved += 1;
            }
        }
        let fraction = moved as f64 / keys.len() as f64;
        assert!(
            (0.2 - 0.06..=0.2 + 0.06).contains(&fraction),
            "moved {fraction}"
        );
        // Skipping a target on the same ring (down or open) moves exactly the same keys.
        let ring = Ring::new(urls.iter().map(|u| (u.as_str(), 1)));
        assert_eq!(owners(&ring, &keys, |i| i != 2), after);
    }

    #[test]
    fn weights_scale_the_share_and_huge_rings_are_capped() {
        let urls = urls(2);
        let ring = Ring::new([(urls[0].as_str(), 3), (urls[1].as_str(), 1)]);
        let heavy = owners(&ring, &keys(10_000), |_| true)
            .into_iter()
            .filter(|&o| o == 0)
            .count();
        assert!((6800..=8200).contains(&heavy), "weight 3:1 gave {heavy}");
        let many = crate::upstream::ring::tests::urls(300);
        let ring = Ring::new(many.iter().map(|u| (u.as_str(), 1000)));
        assert!(ring.len() as u64 <= MAX_POINTS + 300);
        assert!(ring.pick(7, |i| i == 299).is_some());
        assert_eq!(ring.pick(7, |_| false), None);
    }

    #[test]
    fn hash_input_reads_header_cookie_or_ip() {
        let headers = |name: &[u8]| -> Option<&'static [u8]> {
            match name {
                b"x-user" => Some(b" alice "),
                b"cookie" => Some(b"theme=dark; session=abc123;x=1"),
                _ => None,
            }
        };
        let on = |h: HashOn| hash_input(&h, headers, b"10.1.2.3");
        assert_eq!(
            on(HashOn::Header("x-user".into())),
            Some(hash_key(b"alice"))
        );
        assert_eq!(on(HashOn::Header("x-other".into())), None);
        assert_eq!(
            on(HashOn::Cookie("session".into())),
            Some(hash_key(b"abc123"))
        );
        assert_eq!(on(HashOn::Cookie("x".into())), Some(hash_key(b"1")));
        assert_eq!(on(HashOn::Cookie("missing".into())), None);
        assert_eq!(on(HashOn::Ip), Some(hash_key(b"10.1.2.3")));
    }
}
