//! Detection of replayed DPoP proofs by their `jti` (RFC 9449 §11.1).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use sha2::{Digest, Sha256};

/// Default bound of [`MemoryReplayStore`]: about 100 MB of keys, far above honest traffic within a proof lifetime.
const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// Domain separation so replay keys never collide with other SHA-256 uses of the same fields.
const KEY_DOMAIN: &[u8] = b"dpop-replay-key-v1";

/// Whether a proof was seen before (RFC 9449 §11.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// First use within the store's memory; the proof may be accepted.
    Fresh,
    /// Already used; the proof must be rejected.
    Replayed,
}

/// Why a replay store could not decide; callers must reject the proof (fail closed).
#[derive(Debug)]
#[non_exhaustive]
pub enum ReplayStoreError {
    /// The store holds as many live keys as it may; remembering another would
    /// mean forgetting one within its lifetime.
    Full,
    /// The backing store failed.
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
    /// The backing store did not answer in time.
    Timeout,
}

impl fmt::Display for ReplayStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => f.write_str("DPoP replay store is full"),
            Self::Unavailable(e) => write!(f, "DPoP replay store is unavailable: {e}"),
            Self::Timeout => f.write_str("DPoP replay store timed out"),
        }
    }
}

impl std::error::Error for ReplayStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable(e) => Some(e.as_ref()),
            Self::Full | Self::Timeout => None,
        }
    }
}

/// Identity of one proof: SHA-256 over the length-prefixed key thumbprint
/// and `jti`, so a client cannot collide with another client's `jti`
/// (RFC 9449 §11.1 makes `jti` unique per key, not globally).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReplayKey([u8; 32]);

impl ReplayKey {
    /// Derives the key from the proof key's JWK thumbprint (RFC 7638) and the proof's `jti`.
    pub fn new(jkt: &str, jti: &str) -> Self {
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        for field in [jkt, jti] {
            // usize always fits in u64 on supported targets; saturate rather than panic.
            let len = u64::try_from(field.len()).unwrap_or(u64::MAX);
            h.update(len.to_be_bytes());
            h.update(field.as_bytes());
        }
        Self(h.finalize().into())
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex, e.g. for keys in an external store.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for b in self.0 {
            for nibble in [b >> 4, b & 0x0f] {
                let digit = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
                out.push(char::from(digit));
            }
        }
        out
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey({})", self.to_hex())
    }
}

/// Boxed future returned by [`ReplayStore::check_and_insert`].
pub type ReplayFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ReplayCheck, ReplayStoreError>> + Send + 'a>>;

/// Memory of recently used proofs (RFC 9449 §11.1).
pub trait ReplayStore: Send + Sync + 'static {
    /// Atomically: if `key` is unseen, remember it for `ttl` and return Fresh; else Replayed.
    fn check_and_insert<'a>(&'a self, key: &'a ReplayKey, ttl: Duration) -> ReplayFuture<'a>;
}

impl<T: ReplayStore + ?Sized> ReplayStore for Arc<T> {
    fn check_and_insert<'a>(&'a self, key: &'a ReplayKey, ttl: Duration) -> ReplayFuture<'a> {
        (**self).check_and_insert(key, ttl)
    }
}

/// Expires each entry after the ttl stored as its value.
struct PerEntryTtl;

impl Expiry<ReplayKey, Duration> for PerEntryTtl {
    fn expire_after_create(&self, _: &ReplayKey, ttl: &Duration, _: Instant) -> Option<Duration> {
        Some(*ttl)
    }

    // Reached only when an expired entry is overwritten: the new ttl must
    // apply, not the old entry's (elapsed) remainder.
    fn expire_after_update(
        &self,
        _: &ReplayKey,
        ttl: &Duration,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(*ttl)
    }
}

/// One held slot of the store's bound; released on drop unless committed.
struct Slot {
    live: Arc<AtomicU64>,
    committed: bool,
}

impl Slot {
    fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.committed {
            release(&self.live);
        }
    }
}

fn release(live: &AtomicU64) {
    // Saturating: the bound must never wrap around to "empty".
    let _ = live.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
}

/// In-process replay store for a single instance (RFC 9449 §11.1).
///
/// Every key is kept until its own ttl ends: there is no capacity-based
/// eviction. Instead `live` counts held slots (incremented before an insert,
/// decremented by moka's removal listener), so it never undercounts the
/// entries in the cache; at `max_entries` new keys fail with
/// [`ReplayStoreError::Full`] while known keys still report `Replayed`.
pub struct MemoryReplayStore {
    cache: Cache<ReplayKey, Duration>,
    live: Arc<AtomicU64>,
    max_entries: u64,
}

impl MemoryReplayStore {
    /// A store that remembers at most `max_entries` unexpired keys.
    pub fn new(max_entries: u64) -> Self {
        let live = Arc::new(AtomicU64::new(0));
        let on_removal = Arc::clone(&live);
        let cache = Cache::builder()
            .expire_after(PerEntryTtl)
            // Every removal, whatever its cause (including an expired entry
            // being overwritten, reported as `Replaced`), frees one slot.
            .eviction_listener(move |_, _, _| release(&on_removal))
            .build();
        Self {
            cache,
            live,
            max_entries,
        }
    }

    /// Slots in use: unexpired keys plus expired ones not yet swept (moka
    /// sweeps in ~1 s ticks, so a slot is freed up to about a second late).
    pub fn len(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    /// Whether no slot is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn try_reserve(&self) -> Option<Slot> {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_entries).then_some(n.saturating_add(1))
            })
            .ok()
            .map(|_| Slot {
                live: Arc::clone(&self.live),
                committed: false,
            })
    }

    async fn reserve(&self) -> Option<Slot> {
        if let Some(slot) = self.try_reserve() {
            return Some(slot);
        }
        // Expired entries free their slots only when moka sweeps them.
        self.cache.run_pending_tasks().await;
        self.try_reserve()
    }

    async fn check(&self, key: &ReplayKey, ttl: Duration) -> Result<ReplayCheck, ReplayStoreError> {
        if self.cache.contains_key(key) {
            return Ok(ReplayCheck::Replayed);
        }
        let Some(slot) = self.reserve().await else {
            if self.cache.contains_key(key) {
                return Ok(ReplayCheck::Replayed);
            }
            tracing::warn!(max_entries = self.max_entries, "DPoP replay store is full");
            return Err(ReplayStoreError::Full);
        };
        // moka runs at most one initializer per key and hands every
        // concurrent caller its result, so exactly one caller sees a fresh
        // entry. The slot is committed only if our value is the one inserted;
        // otherwise it is dropped with the unused future and released.
        let entry = self
            .cache
            .entry(key.clone())
            .or_insert_with(async move {
                slot.commit();
                ttl
            })
            .await;
        Ok(if entry.is_fresh() {
            ReplayCheck::Fresh
        } else {
            ReplayCheck::Replayed
        })
    }
}

impl Default for MemoryReplayStore {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ENTRIES)
    }
}

impl fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("len", &self.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl ReplayStore for MemoryReplayStore {
    fn check_and_insert<'a>(&'a self, key: &'a ReplayKey, ttl: Duration) -> ReplayFuture<'a> {
        Box::pin(self.check(key, ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn key(i: u64) -> ReplayKey {
        ReplayKey::new("client-thumbprint", &i.to_string())
    }

    #[tokio::test]
    async fn reports_second_use_as_replayed() {
        let store = MemoryReplayStore::default();
        let k = key(1);
        assert_eq!(
            store.check_and_insert(&k, TTL).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store.check_and_insert(&k, TTL).await.unwrap(),
            ReplayCheck::Replayed
        );
        assert_eq!(store.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_checks_of_one_key_yield_exactly_one_fresh() {
        for round in 0..50 {
            let store = Arc::new(MemoryReplayStore::default());
            let barrier = Arc::new(tokio::sync::Barrier::new(8));
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let store = Arc::clone(&store);
                    let barrier = Arc::clone(&barrier);
                    tokio::spawn(async move {
                        barrier.wait().await;
                        store.check_and_insert(&key(round), TTL).await.unwrap()
                    })
                })
                .collect();
            let mut fresh = 0;
            for t in tasks {
                if t.await.unwrap() == ReplayCheck::Fresh {
                    fresh += 1;
                }
            }
            assert_eq!(fresh, 1, "round {round}");
            assert_eq!(store.len(), 1, "round {round}");
        }
    }

    #[tokio::test]
    async fn remembers_every_key_after_a_flood() {
        let store = MemoryReplayStore::default();
        for i in 0..200_000 {
            assert_eq!(
                store.check_and_insert(&key(i), TTL).await.unwrap(),
                ReplayCheck::Fresh
            );
        }
        store.cache.run_pending_tasks().await;
        for i in 0..1000 {
            assert_eq!(
                store.check_and_insert(&key(i), TTL).await.unwrap(),
                ReplayCheck::Replayed,
                "key {i} was forgotten"
            );
        }
        assert_eq!(store.len(), 200_000);
        assert_eq!(store.cache.entry_count(), 200_000);
    }

    #[tokio::test]
    async fn forgets_key_after_its_ttl() {
        let store = MemoryReplayStore::default();
        let k = key(1);
        let short = Duration::from_millis(200);
        assert_eq!(
            store.check_and_insert(&k, short).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store.check_and_insert(&k, short).await.unwrap(),
            ReplayCheck::Replayed
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            store.check_and_insert(&k, TTL).await.unwrap(),
            ReplayCheck::Fresh
        );
        // The re-inserted key gets its own, longer ttl.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            store.check_and_insert(&k, TTL).await.unwrap(),
            ReplayCheck::Replayed
        );
        store.cache.run_pending_tasks().await;
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn fails_closed_when_full_but_still_detects_replays() {
        let store = MemoryReplayStore::new(3);
        for i in 0..3 {
            assert_eq!(
                store.check_and_insert(&key(i), TTL).await.unwrap(),
                ReplayCheck::Fresh
            );
        }
        assert!(matches!(
            store.check_and_insert(&key(3), TTL).await,
            Err(ReplayStoreError::Full)
        ));
        assert_eq!(
            store.check_and_insert(&key(0), TTL).await.unwrap(),
            ReplayCheck::Replayed
        );
        assert_eq!(store.len(), 3);
    }

    #[tokio::test]
    async fn expired_entries_free_their_slots() {
        let store = MemoryReplayStore::new(1);
        let short = Duration::from_millis(100);
        assert_eq!(
            store.check_and_insert(&key(1), short).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert!(matches!(
            store.check_and_insert(&key(2), TTL).await,
            Err(ReplayStoreError::Full)
        ));
        // moka's timer wheel sweeps in ~1.07 s ticks, so the slot comes
        // back within about a second of the expiry, not at once.
        let deadline = Instant::now() + Duration::from_secs(3);
        let outcome = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match store.check_and_insert(&key(2), TTL).await {
                Err(ReplayStoreError::Full) if Instant::now() < deadline => continue,
                other => break other,
            }
        };
        assert_eq!(outcome.unwrap(), ReplayCheck::Fresh);
        assert_eq!(store.len(), 1);
        assert!(matches!(
            store.check_and_insert(&key(3), TTL).await,
            Err(ReplayStoreError::Full)
        ));
    }

    #[test]
    fn same_jti_under_different_keys_is_distinct() {
        assert_ne!(
            ReplayKey::new("jkt-a", "jti"),
            ReplayKey::new("jkt-b", "jti")
        );
        // Length prefixes keep field boundaries: ("ab","c") != ("a","bc").
        assert_ne!(ReplayKey::new("ab", "c"), ReplayKey::new("a", "bc"));
        assert_eq!(ReplayKey::new("jkt", "jti"), ReplayKey::new("jkt", "jti"));
    }

    #[tokio::test]
    async fn different_clients_may_reuse_a_jti() {
        let store = MemoryReplayStore::default();
        let a = ReplayKey::new("jkt-a", "same-jti");
        let b = ReplayKey::new("jkt-b", "same-jti");
        assert_eq!(
            store.check_and_insert(&a, TTL).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store.check_and_insert(&b, TTL).await.unwrap(),
            ReplayCheck::Fresh
        );
    }

    #[test]
    fn hex_encodes_all_digest_bytes() {
        let k = ReplayKey::new("jkt", "jti");
        let hex = k.to_hex();
        assert_eq!(hex.len(), 64);
        let decoded: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert_eq!(decoded.as_slice(), k.as_bytes());
    }

    #[tokio::test]
    async fn works_through_arc_dyn() {
        let store: Arc<dyn ReplayStore> = Arc::new(MemoryReplayStore::default());
        let k = key(9);
        assert_eq!(
            store.check_and_insert(&k, TTL).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store.check_and_insert(&k, TTL).await.unwrap(),
            ReplayCheck::Replayed
        );
    }

    #[test]
    fn error_exposes_backend_cause() {
        let inner = std::io::Error::other("connection refused");
        let e = ReplayStoreError::Unavailable(Box::new(inner));
        assert!(e.to_string().contains("connection refused"));
        assert!(std::error::Error::source(&e).is_some());
    }
}
