//! A small bounded map whose entries expire: the authentication and authorization answers of
//! the API server, kept for a short TTL so repeated calls do not each cost a review.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `capacity` entries; each expires `ttl` after its insertion. When full, expired
/// entries go first, then the one closest to expiry. Lookups and inserts take a short lock
/// (eviction scans the map only when it is full).
#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The live value for `key` at `now` (an expired one is removed).
    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((value, expires)) if *expires > now => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` until `now + ttl`; a zero TTL stores nothing (caching off).
    pub fn insert(&self, key: K, value: V, ttl: Duration, now: Instant) {
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.lock();
        if !entries.contains_key(&key) && entries.len() >= self.capacity {
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= self.capacity {
                let soonest = entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(key, (value, now + ttl));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn an_entry_lives_for_its_ttl_and_not_longer() {
        let c = TtlCache::new(8);
        let t0 = Instant::now();
        c.insert("a", 1, TTL, t0);
        assert_eq!(c.get(&"a", t0), Some(1));
        assert_eq!(c.get(&"a", t0 + TTL - Duration::from_millis(1)), Some(1));
        assert_eq!(c.get(&"a", t0 + TTL), None, "expired at its TTL");
        assert!(c.is_empty(), "an expired entry is removed when looked up");
    }

    #[test]
    fn entries_have_their_own_ttl() {
        let c = TtlCache::new(8);
        let t0 = Instant::now();
        c.insert("allowed", true, TTL, t0);
        c.insert("denied", false, Duration::from_secs(2), t0);
        let t = t0 + Duration::from_secs(3);
        assert_eq!(c.get(&"allowed", t), Some(true));
        assert_eq!(c.get(&"denied", t), None);
    }

    #[test]
    fn zero_ttl_caches_nothing() {
        let c = TtlCache::new(8);
        c.insert("a", 1, Duration::ZERO, Instant::now());
        assert!(c.is_empty());
    }

    #[test]
    fn size_is_bounded_evicting_expired_entries_first_then_the_soonest_to_expire() {
        let c = TtlCache::new(3);
        let t0 = Instant::now();
        c.insert(1, "short", Duration::from_secs(1), t0);
        c.insert(2, "long", Duration::from_secs(30), t0);
        c.insert(3, "mid", Duration::from_secs(20), t0);
        assert_eq!(c.len(), 3);
        // Full, and entry 1 has expired: it goes, the others stay.
        let t = t0 + Duration::from_secs(2);
        c.insert(4, "new", TTL, t);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&1, t), None);
        assert_eq!(c.get(&2, t), Some("long"));
        assert_eq!(c.get(&3, t), Some("mid"));
        // Full, nothing expired: the one closest to expiry (4, at t + 10 s) goes.
        c.insert(5, "newer", TTL + TTL, t);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&4, t), None);
        for k in [2, 3, 5] {
            assert!(c.get(&k, t).is_some(), "{k} kept");
        }
        // Replacing an existing key never evicts another.
        c.insert(5, "again", TTL, t);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&5, t), Some("again"));
    }

    #[test]
    fn many_inserts_never_exceed_the_capacity() {
        let c = TtlCache::new(100);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            c.insert(i, i, TTL, t0 + Duration::from_millis(u64::from(i)));
            assert!(c.len() <= 100);
        }
        // The newest entries survive.
        let now = t0 + Duration::from_millis(10_000);
        assert_eq!(c.get(&9_999, now), Some(9_999));
        assert_eq!(c.get(&0, now), None);
    }
}
