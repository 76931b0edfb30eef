//! Verified-token cache: a token seen before skips parsing and signature verification.
//!
//! Keyed by SHA-256 of the token so the cache never holds the token as a key, and bounded in
//! size: evicting an entry only costs one more verification, never correctness.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use sha2::{Digest, Sha256};

use super::claims::Validated;

/// Default number of cached tokens.
pub const DEFAULT_CACHE_CAPACITY: u64 = 10_000;
/// Longest a token stays cached, so key revocation and issuer removal take effect.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Clone)]
struct Entry {
    validated: Arc<Validated>,
    ttl: Duration,
}

struct PerEntry;

impl Expiry<[u8; 32], Entry> for PerEntry {
    fn expire_after_create(&self, _: &[u8; 32], entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Cache of verified tokens.
pub(crate) struct TokenCache {
    cache: moka::sync::Cache<[u8; 32], Entry>,
}

impl TokenCache {
    pub(crate) fn new(capacity: u64) -> Self {
        TokenCache {
            cache: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(PerEntry)
                .build(),
        }
    }

    pub(crate) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// A cached token still within its validity at `now`.
    pub(crate) fn get(&self, key: &[u8; 32], now: i64, leeway: i64) -> Option<Arc<Validated>> {
        let entry = self.cache.get(key)?;
        let v = &entry.validated;
        let expired = now.saturating_sub(leeway) >= v.expires_at;
        let early = v
            .not_before
            .is_some_and(|nbf| now.saturating_add(leeway) < nbf);
        (!expired && !early).then(|| v.clone())
    }

    pub(crate) fn insert(&self, key: [u8; 32], validated: Arc<Validated>, now: i64) {
        let remaining = u64::try_from(validated.expires_at.saturating_sub(now)).unwrap_or(0);
        let ttl = Duration::from_secs(remaining).min(MAX_CACHE_TTL);
        if !ttl.is_zero() {
            self.cache.insert(key, Entry { validated, ttl });
        }
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

    #[test]
    fn holds_at_most_its_capacity() {
        const CAPACITY: u64 = 100;
        let cache = TokenCache::new(CAPACITY);
        // Its capacity, then past it: entries are evicted (a later request verifies again),
        // the count never exceeds the bound.
        for (inserted, bound) in [(CAPACITY, CAPACITY), (10 * CAPACITY, CAPACITY)] {
            for i in 0..inserted {
                let key = TokenCache::key(&format!("token-{i}"));
                cache.insert(key, validated(2_000), 1_000);
            }
            cache.cache.run_pending_tasks();
            assert!(
                cache.cache.entry_count() <= bound,
                "{}",
                cache.cache.entry_count()
            );
        }
        assert!(cache.cache.entry_count() > 0);
    }

    #[test]
    fn keeps_a_token_no_longer_than_it_is_valid_nor_than_max_cache_ttl() {
        let cache = TokenCache::new(10);
        let key = TokenCache::key("token");
        cache.insert(key, validated(1_000 + 10), 1_000);
        assert!(cache.get(&key, 1_000, 0).is_some());
        assert!(cache.get(&key, 1_010, 0).is_none(), "expired at its exp");
        let entry = cache.cache.get(&key).unwrap();
        assert_eq!(entry.ttl, Duration::from_secs(10));
        cache.insert(key, validated(1_000 + 86_400), 1_000);
        assert_eq!(cache.cache.get(&key).unwrap().ttl, MAX_CACHE_TTL);
    }
}
