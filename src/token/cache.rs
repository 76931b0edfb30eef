//! Verified-token cache: a token seen before skips parsing and signature verification.
//!
//! Keyed by SHA-256 of the token so the cache never holds the token as a key, and bounded in
//! entries: evicting an entry only costs one more verification, never correctness. Entries
//! are kept in shards, each a fixed set of slots swept by a CLOCK hand: a token used since
//! the hand last passed gets a second chance, so tokens in use stay while one-off ones go.

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::claims::Validated;

/// Default number of cached tokens.
pub const DEFAULT_CACHE_CAPACITY: u64 = 10_000;
/// Longest a token stays cached, so key revocation and issuer removal take effect.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(5 * 60);

/// Shards, so that concurrent requests rarely wait on one lock.
const SHARDS: usize = 16;

/// Cache of verified tokens.
pub(crate) struct TokenCache {
    shards: Box<[Mutex<Shard>]>,
}

struct Shard {
    /// Slot of each cached key.
    index: HashMap<[u8; 32], usize>,
    slots: Vec<Slot>,
    /// Most slots this shard holds.
    capacity: usize,
    /// The CLOCK hand: the next slot considered for eviction.
    hand: usize,
}

struct Slot {
    key: [u8; 32],
    validated: Arc<Validated>,
    /// When the entry is forgotten: [`MAX_CACHE_TTL`] or the token's expiry, if sooner.
    until: Instant,
    /// The same bound on the guard's clock (Unix seconds), which tests and deployments with
    /// their own clock move: the entry is forgotten at whichever comes first.
    until_unix: i64,
    /// Read since the hand last passed.
    referenced: bool,
}

impl TokenCache {
    /// A cache of at most `capacity` tokens.
    pub(crate) fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        let shards = SHARDS.min(capacity);
        // Each shard holds its share, rounded down: together never more than `capacity`.
        let per_shard = capacity / shards;
        let hasher = RandomState::new();
        TokenCache {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        index: HashMap::with_hasher(hasher.clone()),
                        slots: Vec::new(),
                        capacity: per_shard,
                        hand: 0,
                    })
                })
                .collect(),
        }
    }

    pub(crate) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    fn shard(&self, key: &[u8; 32]) -> Option<MutexGuard<'_, Shard>> {
        // The key is a SHA-256 digest: any of its bytes spreads keys evenly. (The index within
        // a shard hashes the whole key with a random key of its own.)
        let shard = self.shards.get(usize::from(key[31]) % self.shards.len())?;
        // Nothing below panics while holding the lock, and every change is complete before
        // the next begins: a poisoned shard is still consistent.
        Some(shard.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A cached token still within its validity at `now`.
    pub(crate) fn get(&self, key: &[u8; 32], now: i64, leeway: i64) -> Option<Arc<Validated>> {
        let v = {
            let mut shard = self.shard(key)?;
            let slot = *shard.index.get(key)?;
            let entry = shard.slots.get_mut(slot)?;
            if entry.until <= Instant::now() || now >= entry.until_unix {
                return None;
            }
            entry.referenced = true;
            Arc::clone(&entry.validated)
        };
        let expired = now.saturating_sub(leeway) >= v.expires_at;
        let early = v
            .not_before
            .is_some_and(|nbf| now.saturating_add(leeway) < nbf);
        (!expired && !early).then_some(v)
    }

    /// Keeps `validated` until its expiry, `max_ttl` or [`MAX_CACHE_TTL`], whichever is
    /// soonest.
    pub(crate) fn insert(
        &self,
        key: [u8; 32],
        validated: Arc<Validated>,
        now: i64,
        max_ttl: Duration,
    ) {
        let remaining = u64::try_from(validated.expires_at.saturating_sub(now)).unwrap_or(0);
        let ttl = Duration::from_secs(remaining)
            .min(MAX_CACHE_TTL)
            .min(max_ttl);
        if ttl.is_zero() {
            return;
        }
        let at = Instant::now();
        let until = at + ttl;
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let entry = Slot {
            key,
            validated,
            until,
            until_unix: now.saturating_add(ttl_secs),
            referenced: false,
        };
        // The entry it replaces, if any, is dropped after the lock is released: freeing an
        // old token's memory is no reason to hold up the shard's other requests.
        let replaced = self
            .shard(&key)
            .and_then(|mut shard| shard.insert(entry, at));
        drop(replaced);
    }
}

impl Shard {
    /// Keeps `entry` (at `now`); returns the entry it replaced or evicted, if any.
    fn insert(&mut self, entry: Slot, now: Instant) -> Option<Slot> {
        let key = entry.key;
        if let Some(slot) = self.index.get(&key).and_then(|&i| self.slots.get_mut(i)) {
            return Some(std::mem::replace(slot, entry));
        }
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(entry);
            return None;
        }
        let (i, slot) = self.victim(now)?;
        let old = std::mem::replace(slot, entry);
        self.index.remove(&old.key);
        self.index.insert(key, i);
        Some(old)
    }

    /// The slot to reuse: the first the hand finds expired at `now` or not read since it last
    /// passed, clearing the mark of those it passes. Within two turns at most.
    fn victim(&mut self, now: Instant) -> Option<(usize, &mut Slot)> {
        let len = self.slots.len();
        for _ in 0..=2 * len {
            let i = self.hand % len.max(1);
            self.hand = i + 1;
            let entry = self.slots.get_mut(i)?;
            if !entry.referenced || entry.until <= now {
                return self.slots.get_mut(i).map(|slot| (i, slot));
            }
            entry.referenced = false;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validated(expires_at: i64) -> Arc<Validated> {
        Arc::new(Validated {
            raw: "t".into(),
            digest: [0; 32],
            issuer: "https://issuer.example".into(),
            subject: None,
            client_id: None,
            scopes: Default::default(),
            expires_at,
            not_before: None,
            confirmation: Default::default(),
            payload: Box::default(),
            claims: Default::default(),
        })
    }

    fn len(cache: &TokenCache) -> usize {
        cache
            .shards
            .iter()
            .map(|s| s.lock().unwrap().index.len())
            .sum()
    }

    #[test]
    fn holds_at_most_its_capacity() {
        for capacity in [1_u64, 5, 16, 100, 1_000] {
            let cache = TokenCache::new(capacity);
            for i in 0..10 * capacity {
                cache.insert(
                    TokenCache::key(&format!("token-{i}")),
                    validated(2_000),
                    1_000,
                    MAX_CACHE_TTL,
                );
                assert!(len(&cache) as u64 <= capacity, "{capacity}");
            }
            // Every shard's index and slots agree.
            for shard in cache.shards.iter() {
                let shard = shard.lock().unwrap();
                assert_eq!(shard.index.len(), shard.slots.len());
                for (key, &slot) in &shard.index {
                    assert_eq!(&shard.slots[slot].key, key);
                }
            }
            // Filled to its bound, give or take the rounding of its shards.
            assert!(
                len(&cache) as u64 >= (capacity * 9 / 10).saturating_sub(16),
                "{capacity}"
            );
        }
    }

    #[test]
    fn a_token_in_use_outlives_one_off_tokens() {
        let cache = TokenCache::new(64);
        let hot = TokenCache::key("hot");
        cache.insert(hot, validated(2_000), 1_000, MAX_CACHE_TTL);
        for i in 0..10_000 {
            assert!(cache.get(&hot, 1_000, 0).is_some(), "evicted after {i}");
            cache.insert(
                TokenCache::key(&format!("cold-{i}")),
                validated(2_000),
                1_000,
                MAX_CACHE_TTL,
            );
        }
    }

    #[test]
    fn keeps_a_token_no_longer_than_it_is_valid_nor_than_max_cache_ttl() {
        let cache = TokenCache::new(10);
        let key = TokenCache::key("token");
        let until = |cache: &TokenCache| {
            let shard = cache.shard(&key).unwrap();
            shard.slots[shard.index[&key]].until
        };
        let before = Instant::now();
        cache.insert(key, validated(1_000 + 10), 1_000, MAX_CACHE_TTL);
        let after = Instant::now();
        assert!(cache.get(&key, 1_000, 0).is_some());
        assert!(cache.get(&key, 1_010, 0).is_none(), "expired at its exp");
        let ttl = Duration::from_secs(10);
        assert!(before + ttl <= until(&cache) && until(&cache) <= after + ttl);
        cache.insert(key, validated(1_000 + 86_400), 1_000, MAX_CACHE_TTL);
        assert!(until(&cache) <= Instant::now() + MAX_CACHE_TTL);
        assert!(until(&cache) >= after + MAX_CACHE_TTL);
        // A shorter bound of the caller's (an introspection answer's) wins.
        cache.insert(
            key,
            validated(1_000 + 86_400),
            1_000,
            Duration::from_secs(30),
        );
        assert!(until(&cache) <= Instant::now() + Duration::from_secs(30));
        cache.insert(key, validated(1_000 + 86_400), 1_000, Duration::ZERO);
        assert!(until(&cache) <= Instant::now() + Duration::from_secs(30));
        // An entry past its time is not served, whatever the token's own expiry.
        {
            let mut shard = cache.shard(&key).unwrap();
            let slot = shard.index[&key];
            shard.slots[slot].until = Instant::now();
        }
        assert!(cache.get(&key, 1_000, 0).is_none());
        // Nothing is cached for a token already expired.
        let gone = TokenCache::key("gone");
        cache.insert(gone, validated(1_000), 1_000, MAX_CACHE_TTL);
        assert!(!cache.shard(&gone).unwrap().index.contains_key(&gone));
    }
    fn validated_for(key: [u8; 32], expires_at: i64, not_before: Option<i64>) -> Arc<Validated> {
        Arc::new(Validated {
            raw: "t".into(),
            digest: key,
            issuer: "https://issuer.example".into(),
            subject: None,
            client_id: None,
            scopes: Default::default(),
            expires_at,
            not_before,
            confirmation: Default::default(),
            payload: Box::default(),
            claims: Default::default(),
        })
    }

    /// Every shard's index and slots agree, no shard holds more than its share, and no key
    /// is in two slots.
    #[track_caller]
    fn assert_consistent(cache: &TokenCache) {
        for shard in cache.shards.iter() {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            assert_eq!(shard.index.len(), shard.slots.len());
            assert!(shard.slots.len() <= shard.capacity);
            for (key, &slot) in &shard.index {
                assert_eq!(&shard.slots[slot].key, key);
                assert_eq!(&shard.slots[slot].validated.digest, key);
            }
        }
    }

    #[test]
    fn capacity_one_keeps_the_last_token_and_its_index_in_step() {
        let cache = TokenCache::new(1);
        let (a, b) = (TokenCache::key("a"), TokenCache::key("b"));
        cache.insert(a, validated_for(a, 2_000, None), 1_000, MAX_CACHE_TTL);
        assert_eq!(cache.get(&a, 1_000, 0).unwrap().digest, a);
        for round in 0..50 {
            let (new, old) = if round % 2 == 0 { (b, a) } else { (a, b) };
            cache.insert(new, validated_for(new, 2_000, None), 1_000, MAX_CACHE_TTL);
            // The same key again: replaced in place, never a second slot.
            cache.insert(new, validated_for(new, 2_000, None), 1_000, MAX_CACHE_TTL);
            assert_consistent(&cache);
            assert_eq!(len(&cache), 1);
            assert_eq!(cache.get(&new, 1_000, 0).unwrap().digest, new);
            assert!(cache.get(&old, 1_000, 0).is_none(), "round {round}");
        }
    }

    #[test]
    fn a_token_inserted_again_is_served_as_last_validated() {
        let cache = TokenCache::new(4);
        let key = TokenCache::key("t");
        cache.insert(key, validated_for(key, 5_000, None), 1_000, MAX_CACHE_TTL);
        cache.insert(
            key,
            validated_for(key, 1_500, Some(1_200)),
            1_000,
            MAX_CACHE_TTL,
        );
        assert_consistent(&cache);
        assert!(cache.get(&key, 1_100, 0).is_none(), "before its new nbf");
        assert_eq!(cache.get(&key, 1_250, 0).unwrap().expires_at, 1_500);
        assert!(cache.get(&key, 1_500, 0).is_none(), "at its new exp");
    }

    /// `get` is the guard's check of `exp` and `nbf` at the guard's clock, whatever the
    /// entry's own time: moved forward past `exp` or past the cache's own bound
    /// ([`MAX_CACHE_TTL`] after the insert, on the same clock), back before `nbf`, or to the
    /// extremes. The leeway widens `exp` and `nbf`, never the cache's bound: past it, the
    /// token is validated again (and the leeway applied there).
    #[test]
    fn a_cached_token_is_served_only_within_its_validity_at_the_guards_clock() {
        let cache = TokenCache::new(16);
        let key = TokenCache::key("t");
        // Inserted at 1_600, valid until 2_000: kept until 1_600 + 300.
        cache.insert(
            key,
            validated_for(key, 2_000, Some(1_500)),
            1_600,
            MAX_CACHE_TTL,
        );
        let short = TokenCache::key("short");
        // Valid until 1_700: kept until then.
        cache.insert(
            short,
            validated_for(short, 1_700, None),
            1_600,
            MAX_CACHE_TTL,
        );
        for (key, now, leeway, served) in [
            (short, 1_699, 0, true),
            (short, 1_700, 0, false),
            (short, 1_700, 1, false),
        ] {
            assert_eq!(
                cache.get(&key, now, leeway).is_some(),
                served,
                "{now} {leeway}"
            );
        }
        for (now, leeway, served) in [
            (1_600, 0, true),
            (1_899, 0, true),
            (1_900, 0, false),
            (1_900, 200, false),
            (1_499, 0, false),
            (1_499, 1, true),
            (1_000, 0, false),
            (i64::MAX, 0, false),
            (i64::MIN, 0, false),
            (i64::MIN, i64::MAX, false),
            (i64::MAX, i64::MAX, false),
            (0, i64::MIN, false),
        ] {
            assert_eq!(
                cache.get(&key, now, leeway).is_some(),
                served,
                "now {now} leeway {leeway}"
            );
        }
    }

    #[test]
    fn times_at_the_extremes_neither_panic_nor_cache_what_expired() {
        let cache = TokenCache::new(16);
        for (exp, now, cached) in [
            (i64::MIN, i64::MAX, false),
            (i64::MIN, 0, false),
            (0, i64::MIN, true),
            (i64::MAX, i64::MIN, true),
            (i64::MAX, i64::MAX, false),
            (i64::MAX, 0, true),
            (1, 0, true),
            (0, 0, false),
        ] {
            let key = TokenCache::key(&format!("{exp}/{now}"));
            cache.insert(key, validated_for(key, exp, None), now, MAX_CACHE_TTL);
            let present = cache.shard(&key).unwrap().index.contains_key(&key);
            assert_eq!(present, cached, "exp {exp} now {now}");
        }
        assert_consistent(&cache);
        // A capacity past the address space is a cache that grows as it is filled.
        let huge = TokenCache::new(u64::MAX);
        for i in 0..100 {
            let key = TokenCache::key(&i.to_string());
            huge.insert(key, validated_for(key, 2_000, None), 1_000, MAX_CACHE_TTL);
        }
        assert_eq!(len(&huge), 100);
        assert_consistent(&huge);
    }

    /// Threads inserting and reading an overlapping set of keys through a small cache: a key
    /// is only ever answered with its own token, and the shards stay consistent and bounded.
    #[test]
    fn concurrent_inserts_and_gets_never_serve_another_keys_token() {
        const CAPACITY: u64 = 24;
        let cache = Arc::new(TokenCache::new(CAPACITY));
        let keys: Arc<Vec<[u8; 32]>> = Arc::new(
            (0..200)
                .map(|i| TokenCache::key(&format!("k{i}")))
                .collect(),
        );
        let threads: Vec<_> = (0..8u64)
            .map(|t| {
                let (cache, keys) = (Arc::clone(&cache), Arc::clone(&keys));
                std::thread::spawn(move || {
                    let mut x = t.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
                    let mut hits = 0_u32;
                    for _ in 0..20_000 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = keys[(x % keys.len() as u64) as usize];
                        if x & 0x300 == 0 {
                            cache.insert(
                                key,
                                validated_for(key, 2_000, None),
                                1_000,
                                MAX_CACHE_TTL,
                            );
                        } else if let Some(hit) = cache.get(&key, 1_000, 0) {
                            assert_eq!(hit.digest, key);
                            hits += 1;
                        }
                    }
                    hits
                })
            })
            .collect();
        let hits: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(hits > 0);
        assert_consistent(&cache);
        assert!(len(&cache) as u64 <= CAPACITY);
    }

    /// A shard whose lock was poisoned (a panic elsewhere while holding it) still serves and
    /// takes tokens, consistently.
    #[test]
    fn a_poisoned_shard_still_serves_consistently() {
        let cache = Arc::new(TokenCache::new(16));
        let key = TokenCache::key("t");
        cache.insert(key, validated_for(key, 2_000, None), 1_000, MAX_CACHE_TTL);
        let poisoner = Arc::clone(&cache);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.shard(&key).unwrap();
            panic!("poison the shard");
        })
        .join();
        assert!(cache.shards.iter().any(|s| s.is_poisoned()));
        assert_eq!(cache.get(&key, 1_000, 0).unwrap().digest, key);
        let other = (0..)
            .map(|i| TokenCache::key(&format!("o{i}")))
            .find(|k| k[31] % 16 == key[31] % 16 && *k != key)
            .unwrap();
        cache.insert(
            other,
            validated_for(other, 2_000, None),
            1_000,
            MAX_CACHE_TTL,
        );
        assert_eq!(cache.get(&other, 1_000, 0).unwrap().digest, other);
        assert_consistent(&cache);
    }

    /// A shard full of tokens in use: a new token still finds a slot (the hand clears the
    /// marks in one turn), and which token went is one the hand passed, never a half-updated
    /// index.
    #[test]
    fn a_full_shard_of_tokens_in_use_still_takes_a_new_one() {
        let cache = TokenCache::new(1);
        let shard_keys: Vec<[u8; 32]> = (0..8).map(|i| TokenCache::key(&format!("s{i}"))).collect();
        for key in &shard_keys {
            cache.insert(*key, validated_for(*key, 2_000, None), 1_000, MAX_CACHE_TTL);
            assert!(cache.get(key, 1_000, 0).is_some());
            assert!(cache.get(key, 1_000, 0).is_some());
            assert_consistent(&cache);
            assert_eq!(len(&cache), 1);
        }
        let cache = TokenCache::new(32);
        let mut in_shard: Vec<[u8; 32]> = (0..)
            .map(|i| TokenCache::key(&format!("x{i}")))
            .filter(|k| k[31] % 16 == 0)
            .take(3)
            .collect();
        for key in &in_shard[..2] {
            cache.insert(*key, validated_for(*key, 2_000, None), 1_000, MAX_CACHE_TTL);
            assert!(cache.get(key, 1_000, 0).is_some());
        }
        let newcomer = in_shard.pop().unwrap();
        cache.insert(
            newcomer,
            validated_for(newcomer, 2_000, None),
            1_000,
            MAX_CACHE_TTL,
        );
        assert_consistent(&cache);
        assert!(cache.get(&newcomer, 1_000, 0).is_some());
        let kept = in_shard
            .iter()
            .filter(|k| cache.get(k, 1_000, 0).is_some())
            .count();
        assert_eq!(kept, 1, "a shard of two holds the newcomer and one other");
    }
}
