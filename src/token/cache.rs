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
            if entry.until <= Instant::now() {
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
        let until = Instant::now() + ttl;
        let entry = Slot {
            key,
            validated,
            until,
            referenced: false,
        };
        if let Some(mut shard) = self.shard(&key) {
            shard.insert(entry);
        }
    }
}

impl Shard {
    fn insert(&mut self, entry: Slot) {
        let key = entry.key;
        if let Some(slot) = self.index.get(&key).and_then(|&i| self.slots.get_mut(i)) {
            *slot = entry;
            return;
        }
        if self.slots.len() < self.capacity {
            self.index.insert(key, self.slots.len());
            self.slots.push(entry);
        } else if let Some((i, slot)) = self.victim() {
            let old = std::mem::replace(slot, entry);
            self.index.remove(&old.key);
            self.index.insert(key, i);
        }
    }

    /// The slot to reuse: the first the hand finds expired or not read since it last passed,
    /// clearing the mark of those it passes. Within two turns at most.
    fn victim(&mut self) -> Option<(usize, &mut Slot)> {
        let now = Instant::now();
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
}
