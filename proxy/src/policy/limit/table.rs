//! A core's table of per-key limit state: fixed size, set-associative, allocated once.
//!
//! A key hashes to one set of four ways; a lookup compares at most four keys and a full set
//! gives up one of its own ways, so every operation is O(1) and the table never grows, rehashes
//! or allocates after it is built. That bound is what keeps a flood of distinct keys from
//! costing more memory than the configured `max_keys`. The table holds only per-core caches of
//! shared counters; what a key has used is never lost by evicting it, only the unused part of
//! its lease, which the owner returns to the shared counters first.

use std::mem::size_of;

/// Ways per set: four `u64` keys fill half a cache line, so a lookup reads one line.
const WAYS: usize = 4;

#[derive(Clone, Copy)]
struct Set<V> {
    keys: [u64; WAYS],
    vals: [V; WAYS],
    /// Bit `i` set: way `i` holds `keys[i]`.
    used: u8,
}

pub(super) struct KeyTable<V> {
    sets: Box<[Set<V>]>,
    /// Ways in use per set: fewer than `WAYS` only when `max_keys` is below it.
    ways: usize,
    len: usize,
}

impl<V: Copy + Default> KeyTable<V> {
    /// Room for at most `max_keys` keys (at least one): `max_keys` rounded down to a multiple
    /// of four, so that `len() <= max_keys` always holds.
    pub(super) fn new(max_keys: usize) -> KeyTable<V> {
        let max_keys = max_keys.max(1);
        let ways = max_keys.min(WAYS);
        let empty = Set {
            keys: [0; WAYS],
            vals: [V::default(); WAYS],
            used: 0,
        };
        KeyTable {
            sets: vec![empty; max_keys / ways].into_boxed_slice(),
            ways,
            len: 0,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.sets.len() * self.ways
    }

    /// Bytes the table holds, all allocated up front.
    pub(super) fn memory_bytes(&self) -> usize {
        self.sets.len() * size_of::<Set<V>>()
    }

    /// The set of `key`. Multiply-shift on a scrambled key: it takes the key's high bits,
    /// while the shared tables index by its low bits, so keys that share a shared line do not
    /// also crowd one local set.
    fn set_of(&self, key: u64) -> usize {
        ((u128::from(scramble(key)) * self.sets.len() as u128) >> 64) as usize
    }

    fn way_of(&self, set: usize, key: u64) -> Option<usize> {
        let set = &self.sets[set];
        (0..self.ways).find(|&i| set.used & (1 << i) != 0 && set.keys[i] == key)
    }

    pub(super) fn get_mut(&mut self, key: u64) -> Option<&mut V> {
        let set = self.set_of(key);
        let way = self.way_of(set, key)?;
        Some(&mut self.sets[set].vals[way])
    }

    /// The state of `key`, inserted as `V::default()` when absent. When its set is full, the
    /// way with the lowest `victim_rank` is given up and returned as `(key, state)`, for the
    /// caller to hand back whatever it still holds.
    pub(super) fn entry(
        &mut self,
        key: u64,
        victim_rank: impl Fn(&V) -> u64,
    ) -> (&mut V, Option<(u64, V)>) {
        let s = self.set_of(key);
        if let Some(way) = self.way_of(s, key) {
            return (&mut self.sets[s].vals[way], None);
        }
        let ways = self.ways;
        let set = &mut self.sets[s];
        let free = (0..ways).find(|&i| set.used & (1 << i) == 0);
        let (way, evicted) = match free {
            Some(way) => {
                self.len += 1;
                (way, None)
            }
            None => {
                // Ties go to the first way from a start that varies with the new key, so that
                // equal ranks do not always sacrifice way 0 and spare the others for ever.
                let start = (scramble(key) >> 32) as usize;
                let way = (0..ways)
                    .map(|i| (start + i) % ways)
                    .min_by_key(|&i| victim_rank(&set.vals[i]))
                    .unwrap_or(0);
                (way, Some((set.keys[way], set.vals[way])))
            }
        };
        set.used |= 1 << way;
        set.keys[way] = key;
        set.vals[way] = V::default();
        (&mut set.vals[way], evicted)
    }

    /// Inserts absent `key` as `V::default()` only if its set has a free way.
    pub(super) fn insert_if_room(&mut self, key: u64) -> Option<&mut V> {
        let s = self.set_of(key);
        debug_assert!(self.way_of(s, key).is_none());
        let ways = self.ways;
        let set = &mut self.sets[s];
        let way = (0..ways).find(|&i| set.used & (1 << i) == 0)?;
        set.used |= 1 << way;
        set.keys[way] = key;
        set.vals[way] = V::default();
        self.len += 1;
        Some(&mut set.vals[way])
    }

    pub(super) fn remove(&mut self, key: u64) -> Option<V> {
        let s = self.set_of(key);
        let way = self.way_of(s, key)?;
        self.sets[s].used &= !(1 << way);
        self.len -= 1;
        Some(self.sets[s].vals[way])
    }

    /// Keeps the keys for which `keep` returns true; `keep` may also change their state.
    /// Visits every set: O(capacity), for periodic upkeep only.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(u64, &mut V) -> bool) {
        for set in self.sets.iter_mut() {
            if set.used == 0 {
                continue;
            }
            for way in 0..self.ways {
                if set.used & (1 << way) != 0 && !keep(set.keys[way], &mut set.vals[way]) {
                    set.used &= !(1 << way);
                    self.len -= 1;
                }
            }
        }
    }
}

fn scramble(key: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_never_exceeds_max_keys() {
        for max_keys in [1, 2, 3, 4, 5, 7, 8, 100, 1001] {
            let table = KeyTable::<u32>::new(max_keys);
            assert!(table.capacity() <= max_keys, "max_keys {max_keys}");
            assert!(table.capacity() + 3 >= max_keys, "max_keys {max_keys}");
        }
    }

    #[test]
    fn flood_of_keys_stays_bounded_and_reports_evictions() {
        let mut table = KeyTable::<u64>::new(64);
        let mut evicted = 0;
        for key in 0..10_000u64 {
            let (v, old) = table.entry(key, |v| *v);
            *v = key;
            if let Some((old_key, old_v)) = old {
                assert_eq!(old_key, old_v, "the evicted state is the key's own");
                evicted += 1;
            }
            assert!(table.len() <= 64);
        }
        assert_eq!(table.len() + evicted, 10_000);
    }

    #[test]
    fn entry_get_remove_retain() {
        let mut table = KeyTable::<u32>::new(16);
        *table.entry(7, |_| 0).0 = 70;
        *table.entry(8, |_| 0).0 = 80;
        assert_eq!(table.get_mut(7).copied(), Some(70));
        assert_eq!(
            *table.entry(7, |_| 0).0,
            70,
            "an existing key keeps its state"
        );
        assert_eq!(table.remove(7), Some(70));
        assert_eq!(table.get_mut(7), None);
        assert_eq!(table.len(), 1);
        *table.insert_if_room(9).unwrap() = 90;
        table.retain(|key, v| {
            *v += 1;
            key == 9
        });
        assert_eq!(table.len(), 1);
        assert_eq!(table.get_mut(9).copied(), Some(91));
    }

    #[test]
    fn victim_is_the_lowest_rank() {
        let mut table = KeyTable::<u64>::new(4);
        for key in 0..4 {
            *table.entry(key, |v| *v).0 = 10 + key;
        }
        *table.get_mut(2).unwrap() = 1;
        let (_, old) = table.entry(99, |v| *v);
        assert_eq!(old, Some((2, 1)));
        assert!(table.insert_if_room(100).is_none(), "the one set is full");
    }
}
