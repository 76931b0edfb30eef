//! Detection of replayed DPoP proofs by their `jti` (RFC 9449 §11.1).
//!
//! A proof must be remembered until the last instant at which *any* instance could still
//! accept it: that instant follows from the proof's own `iat` and the acceptance window
//! ([`ReplayWindow`]), never from the moment of first use. Each client key (`jkt`) may hold
//! only a bounded share of a store, so one client signing unique proofs as fast as it can
//! fills its own share and nobody else's ([`ReplayCheck::OverQuota`]).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use moka::ops::compute::{CompResult, Op};
use sha2::{Digest, Sha256};

/// Default bound of [`MemoryReplayStore`]: about 450 MB of entries, far above honest
/// traffic within a proof lifetime.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// Default share of a store one client key (`jkt`) may hold: with the default 60 s + 5 s
/// window and 5 s skew margin, a proof is remembered 71 s at most, so a client may make
/// about 140 DPoP requests per second, sustained, before its own proofs are refused.
pub const DEFAULT_MAX_PROOFS_PER_KEY: u64 = 10_000;
/// Domain separation so replay keys never collide with other SHA-256 uses of the same fields.
const KEY_DOMAIN: &[u8] = b"dpop-replay-key-v1";
/// Domain separation of the per-client (`jkt`) part of a replay key.
const CLIENT_DOMAIN: &[u8] = b"dpop-replay-client-v1";
/// Shards of the per-client counters: enough that concurrent requests rarely wait on one lock.
const QUOTA_SHARDS: usize = 32;

/// Whether a proof may be accepted (RFC 9449 §11.1).
///
/// ```
/// use tower_oauth_guard::{MemoryReplayStore, ReplayCheck, ReplayKey, ReplayStore, ReplayWindow};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let store = MemoryReplayStore::default();
/// let key = ReplayKey::new("client-jkt", "proof-jti");
/// let window = ReplayWindow { now: 1_767_225_600, until: 1_767_225_671 };
/// assert_eq!(store.check_and_insert(&key, window).await?, ReplayCheck::Fresh);
/// assert_eq!(store.check_and_insert(&key, window).await?, ReplayCheck::Replayed);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplayCheck {
    /// First use within its window; the proof may be accepted.
    Fresh,
    /// Already used; the proof must be rejected.
    Replayed,
    /// The proof is new, but its client key already holds its whole share of the store; the
    /// proof must be rejected (this client only; others are unaffected).
    OverQuota,
}

/// Why a replay store could not decide; callers must reject the proof (fail closed).
///
/// ```
/// use tower_oauth_guard::{MemoryReplayStore, ReplayKey, ReplayStore, ReplayStoreError, ReplayWindow};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let store = MemoryReplayStore::new(1);
/// let window = ReplayWindow { now: 1_000, until: 1_071 };
/// let _ = store.check_and_insert(&ReplayKey::new("k", "1"), window).await;
/// // Full: the guard answers 503 rather than forget a proof early.
/// let full = store.check_and_insert(&ReplayKey::new("k", "2"), window).await;
/// assert!(matches!(full, Err(ReplayStoreError::Full)));
/// # }
/// ```
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

/// Identity of one proof: SHA-256 over the length-prefixed key thumbprint and `jti`, so a
/// client cannot collide with another client's `jti` (RFC 9449 §11.1 makes `jti` unique per
/// key, not globally); and the identity of its client key, for the per-client share.
///
/// ```
/// use tower_oauth_guard::ReplayKey;
///
/// let key = ReplayKey::new("client-jkt", "proof-jti");
/// assert_eq!(key.to_hex().len(), 64); // a digest: the store never holds the proof's values
/// assert_ne!(key, ReplayKey::new("other-jkt", "proof-jti"));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ReplayKey {
    proof: [u8; 32],
    client: [u8; 32],
}

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
        let mut c = Sha256::new();
        c.update(CLIENT_DOMAIN);
        c.update(jkt.as_bytes());
        Self {
            proof: h.finalize().into(),
            client: c.finalize().into(),
        }
    }

    /// The 32 digest bytes that name the proof.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.proof
    }

    /// The 32 digest bytes that name the client key (`jkt`) alone.
    pub fn client_bytes(&self) -> &[u8; 32] {
        &self.client
    }

    /// The proof digest in lowercase hex, e.g. for keys in an external store.
    pub fn to_hex(&self) -> String {
        hex(&self.proof)
    }

    /// The client digest in lowercase hex.
    pub fn client_hex(&self) -> String {
        hex(&self.client)
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            let digit = HEX.get(usize::from(nibble)).copied().unwrap_or(b'0');
            out.push(char::from(digit));
        }
    }
    out
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey({})", self.to_hex())
    }
}

/// How long a store must remember one proof (RFC 9449 §11.1), in the guard's clock.
///
/// ```
/// use std::time::Duration;
/// use tower_oauth_guard::ReplayWindow;
///
/// let window = ReplayWindow { now: 1_000, until: 1_071 };
/// assert_eq!(window.ttl(), Duration::from_secs(71));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Unix seconds: the guard's time of this check.
    pub now: i64,
    /// Unix seconds: the proof must be remembered until this instant (exclusive). It is the
    /// last instant at which any instance could accept the proof, computed from its `iat`,
    /// plus the configured margin for clock skew between instances.
    pub until: i64,
}

impl ReplayWindow {
    /// Time left to remember the proof, from `now`; at least one second.
    pub fn ttl(&self) -> Duration {
        let secs = u64::try_from(self.until.saturating_sub(self.now)).unwrap_or(0);
        Duration::from_secs(secs.max(1))
    }
}

/// Boxed future returned by [`ReplayStore::check_and_insert`].
///
/// ```
/// use tower_oauth_guard::{ReplayCheck, ReplayFuture, ReplayKey, ReplayStore, ReplayWindow};
///
/// /// Refuses every proof: a store for a maintenance window.
/// struct Closed;
///
/// impl ReplayStore for Closed {
///     fn check_and_insert<'a>(&'a self, _: &'a ReplayKey, _: ReplayWindow) -> ReplayFuture<'a> {
///         Box::pin(async { Ok(ReplayCheck::OverQuota) })
///     }
/// }
/// # let _ = Closed;
/// ```
pub type ReplayFuture<'a> =
    Pin<Box<dyn Future<Output = Result<ReplayCheck, ReplayStoreError>> + Send + 'a>>;

/// Memory of recently used proofs (RFC 9449 §11.1).
///
/// ```
/// use tower_oauth_guard::{MemoryReplayStore, ReplayFuture, ReplayKey, ReplayStore, ReplayWindow};
///
/// /// A store that counts its checks, around another store.
/// struct Counted<S> {
///     inner: S,
///     checks: std::sync::atomic::AtomicU64,
/// }
///
/// impl<S: ReplayStore> ReplayStore for Counted<S> {
///     fn check_and_insert<'a>(&'a self, key: &'a ReplayKey, window: ReplayWindow) -> ReplayFuture<'a> {
///         self.checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
///         self.inner.check_and_insert(key, window)
///     }
/// }
/// # let _ = Counted { inner: MemoryReplayStore::default(), checks: Default::default() };
/// ```
pub trait ReplayStore: Send + Sync + 'static {
    /// Atomically: if `key` is not remembered (or only until an instant before
    /// `window.now`), remember it until `window.until` and return [`ReplayCheck::Fresh`];
    /// if it is, [`ReplayCheck::Replayed`]; if its client key holds its whole share,
    /// [`ReplayCheck::OverQuota`].
    fn check_and_insert<'a>(&'a self, key: &'a ReplayKey, window: ReplayWindow)
    -> ReplayFuture<'a>;
}

impl<T: ReplayStore + ?Sized> ReplayStore for Arc<T> {
    fn check_and_insert<'a>(
        &'a self,
        key: &'a ReplayKey,
        window: ReplayWindow,
    ) -> ReplayFuture<'a> {
        (**self).check_and_insert(key, window)
    }
}

/// What the in-process store keeps per proof.
#[derive(Clone, Copy)]
struct Remembered {
    /// Unix seconds, guard clock: the proof is a replay until then.
    until: i64,
    /// Real time moka keeps the entry: the same span, measured from insertion.
    ttl: Duration,
}

/// Expires each entry after the ttl stored in its value.
struct PerEntryTtl;

impl Expiry<ReplayKey, Remembered> for PerEntryTtl {
    fn expire_after_create(&self, _: &ReplayKey, v: &Remembered, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }

    // Reached when a stale entry is overwritten: the new ttl applies, not the old remainder.
    fn expire_after_update(
        &self,
        _: &ReplayKey,
        v: &Remembered,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// Live proofs per client key (`ReplayKey::client_bytes`), one shard of them.
type ClientShard = Mutex<HashMap<[u8; 32], u64>>;

/// Live entries, in total and per client key; shared with moka's removal listener.
struct Counters {
    live: AtomicU64,
    max_entries: u64,
    per_client: Box<[ClientShard]>,
    max_per_client: u64,
}

impl Counters {
    fn shard(&self, client: &[u8; 32]) -> Option<&ClientShard> {
        self.per_client
            .get(usize::from(client[0]) % self.per_client.len().max(1))
    }

    /// Takes one global slot, unless the store is full.
    fn take_slot(&self) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_entries).then_some(n.saturating_add(1))
            })
            .is_ok()
    }

    fn release_slot(&self) {
        // Saturating: the bound must never wrap around to "empty".
        let _ = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Takes one of `client`'s slots, unless it holds its whole share.
    fn take_client_slot(&self, client: &[u8; 32]) -> bool {
        let Some(shard) = self.shard(client) else {
            return false;
        };
        let mut map = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = map.entry(*client).or_insert(0);
        if *count >= self.max_per_client {
            return false;
        }
        *count = count.saturating_add(1);
        true
    }

    fn release_client_slot(&self, client: &[u8; 32]) {
        let Some(shard) = self.shard(client) else {
            return;
        };
        let mut map = shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = map.get_mut(client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(client);
            }
        }
    }

    fn client_count(&self, client: &[u8; 32]) -> u64 {
        self.shard(client).map_or(0, |shard| {
            let map = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.get(client).copied().unwrap_or(0)
        })
    }
}

/// One global slot and one client slot, held for an insert; released on drop unless the
/// insert happened (then moka's removal listener releases them when the entry goes).
struct Reservation {
    counters: Arc<Counters>,
    client: [u8; 32],
    global: bool,
    committed: bool,
}

impl Reservation {
    fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.committed {
            self.counters.release_client_slot(&self.client);
            if self.global {
                self.counters.release_slot();
            }
        }
    }
}

/// In-process replay store for a single instance (RFC 9449 §11.1).
///
/// Every key is kept until its own window ends: there is no capacity-based eviction.
/// Instead counters of held slots (taken before an insert, released by moka's removal
/// listener) never undercount the entries. At `max_entries` new proofs fail with
/// [`ReplayStoreError::Full`]; a client key holding `max_per_key` live proofs gets
/// [`ReplayCheck::OverQuota`] for its new ones; known proofs still report `Replayed`.
///
/// Memory bound: about 450 bytes of resident memory per live proof (the key, the window and
/// moka's bookkeeping, measured by `examples/flood`), so the default million entries take
/// about 450 MB at most; [`MemoryReplayStore::with_limits`] sets a smaller bound.
///
/// ```
/// use tower_oauth_guard::{BaseUrl, Dpop, MemoryReplayStore, PublicUri};
///
/// // 100 000 live proofs at most (about 45 MB), 1 000 of them per client key.
/// let store = MemoryReplayStore::with_limits(100_000, 1_000);
/// let dpop = Dpop::allowed(PublicUri::fixed(BaseUrl::parse("https://api.example")?)).replay_store(store);
/// # let _ = dpop;
/// # Ok::<(), tower_oauth_guard::HtuError>(())
/// ```
pub struct MemoryReplayStore {
    cache: Cache<ReplayKey, Remembered>,
    counters: Arc<Counters>,
}

impl MemoryReplayStore {
    /// A store that remembers at most `max_entries` live proofs, at most
    /// 10 000 (`DEFAULT_MAX_PROOFS_PER_KEY`) of them from any one client key.
    pub fn new(max_entries: u64) -> Self {
        Self::with_limits(max_entries, DEFAULT_MAX_PROOFS_PER_KEY)
    }

    /// A store that remembers at most `max_entries` live proofs, at most `max_per_key` of
    /// them from any one client key (`jkt`).
    pub fn with_limits(max_entries: u64, max_per_key: u64) -> Self {
        let counters = Arc::new(Counters {
            live: AtomicU64::new(0),
            max_entries,
            per_client: (0..QUOTA_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            max_per_client: max_per_key,
        });
        let on_removal = Arc::clone(&counters);
        let cache = Cache::builder()
            .expire_after(PerEntryTtl)
            // Every removal, whatever its cause (including a stale entry being overwritten,
            // reported as `Replaced`), frees the slots its insert took.
            .eviction_listener(move |key: Arc<ReplayKey>, _, _| {
                on_removal.release_client_slot(key.client_bytes());
                on_removal.release_slot();
            })
            .build();
        Self { cache, counters }
    }

    /// Slots in use: unexpired proofs plus expired ones not yet swept (moka sweeps in ~1 s
    /// ticks, so a slot is freed up to about a second late).
    pub fn len(&self) -> u64 {
        self.counters.live.load(Ordering::Acquire)
    }

    /// Whether no slot is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots one client key holds (`jkt`, as in [`ReplayKey::new`]).
    pub fn len_for_key(&self, jkt: &str) -> u64 {
        self.counters
            .client_count(ReplayKey::new(jkt, "").client_bytes())
    }

    /// Whether `key` is remembered at `now` (guard clock), without remembering it.
    pub(crate) async fn remembers(&self, key: &ReplayKey, now: i64) -> bool {
        self.cache.get(key).await.is_some_and(|r| r.until > now)
    }

    async fn reserve(&self, key: &ReplayKey) -> Option<Reservation> {
        if !self.counters.take_client_slot(key.client_bytes()) {
            return None;
        }
        let mut reservation = Reservation {
            counters: Arc::clone(&self.counters),
            client: *key.client_bytes(),
            global: false,
            committed: false,
        };
        reservation.global = self.counters.take_slot();
        if !reservation.global {
            // Expired entries free their slots only when moka sweeps them.
            self.cache.run_pending_tasks().await;
            reservation.global = self.counters.take_slot();
        }
        Some(reservation)
    }

    async fn check(
        &self,
        key: &ReplayKey,
        window: ReplayWindow,
    ) -> Result<ReplayCheck, ReplayStoreError> {
        if self.remembers(key, window.now).await {
            return Ok(ReplayCheck::Replayed);
        }
        let Some(reservation) = self.reserve(key).await else {
            tracing::debug!(
                max_per_key = self.counters.max_per_client,
                "DPoP client key holds its whole share of the replay store"
            );
            return Ok(ReplayCheck::OverQuota);
        };
        if !reservation.global {
            if self.remembers(key, window.now).await {
                return Ok(ReplayCheck::Replayed);
            }
            tracing::warn!(
                max_entries = self.counters.max_entries,
                "DPoP replay store is full"
            );
            return Err(ReplayStoreError::Full);
        }
        let value = Remembered {
            until: window.until,
            ttl: window.ttl(),
        };
        // One compute per key at a time: exactly one of concurrent checks of a proof puts it.
        let now = window.now;
        let outcome = self
            .cache
            .entry(key.clone())
            .and_compute_with(|existing| async move {
                match existing {
                    Some(e) if e.value().until > now => Op::Nop,
                    _ => Op::Put(value),
                }
            })
            .await;
        Ok(match outcome {
            CompResult::Inserted(_) | CompResult::ReplacedWith(_) => {
                reservation.commit();
                ReplayCheck::Fresh
            }
            _ => ReplayCheck::Replayed,
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
            .field("max_entries", &self.counters.max_entries)
            .field("max_per_key", &self.counters.max_per_client)
            .finish()
    }
}

impl ReplayStore for MemoryReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        key: &'a ReplayKey,
        window: ReplayWindow,
    ) -> ReplayFuture<'a> {
        Box::pin(self.check(key, window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn window(now: i64, until: i64) -> ReplayWindow {
        ReplayWindow { now, until }
    }

    fn live() -> ReplayWindow {
        window(NOW, NOW + 60)
    }

    fn key(i: u64) -> ReplayKey {
        ReplayKey::new("client-thumbprint", &i.to_string())
    }

    #[tokio::test]
    async fn reports_second_use_as_replayed() {
        let store = MemoryReplayStore::default();
        let k = key(1);
        assert_eq!(store.check(&k, live()).await.unwrap(), ReplayCheck::Fresh);
        assert_eq!(
            store.check(&k, live()).await.unwrap(),
            ReplayCheck::Replayed
        );
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn remembers_until_the_window_ends_in_the_guards_clock() {
        let store = MemoryReplayStore::default();
        let k = key(1);
        assert_eq!(
            store.check(&k, window(NOW, NOW + 71)).await.unwrap(),
            ReplayCheck::Fresh
        );
        // 70 s later (guard clock) the proof is still remembered; no real time passes.
        assert_eq!(
            store.check(&k, window(NOW + 70, NOW + 71)).await.unwrap(),
            ReplayCheck::Replayed
        );
        // At `until` the proof can no longer be accepted anywhere: it may be forgotten,
        // and a check then remembers it anew, once.
        assert_eq!(
            store.check(&k, window(NOW + 71, NOW + 200)).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store.check(&k, window(NOW + 199, NOW + 200)).await.unwrap(),
            ReplayCheck::Replayed
        );
        store.cache.run_pending_tasks().await;
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
                        store.check_and_insert(&key(round), live()).await.unwrap()
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
            store.cache.run_pending_tasks().await;
            assert_eq!(store.len(), 1, "round {round}");
            assert_eq!(store.len_for_key("client-thumbprint"), 1, "round {round}");
        }
    }

    #[tokio::test]
    async fn remembers_every_key_after_a_flood() {
        let store = MemoryReplayStore::with_limits(DEFAULT_MAX_ENTRIES, 300_000);
        for i in 0..200_000 {
            assert_eq!(
                store.check(&key(i), live()).await.unwrap(),
                ReplayCheck::Fresh
            );
        }
        store.cache.run_pending_tasks().await;
        for i in 0..1000 {
            assert_eq!(
                store.check(&key(i), live()).await.unwrap(),
                ReplayCheck::Replayed,
                "key {i} was forgotten"
            );
        }
        assert_eq!(store.len(), 200_000);
        assert_eq!(store.cache.entry_count(), 200_000);
    }

    #[tokio::test]
    async fn fails_closed_when_full_but_still_detects_replays() {
        let store = MemoryReplayStore::new(3);
        for i in 0..3 {
            assert_eq!(
                store.check(&key(i), live()).await.unwrap(),
                ReplayCheck::Fresh
            );
        }
        assert!(matches!(
            store.check(&key(3), live()).await,
            Err(ReplayStoreError::Full)
        ));
        assert_eq!(
            store.check(&key(0), live()).await.unwrap(),
            ReplayCheck::Replayed
        );
        assert_eq!(store.len(), 3);
        // The refused proof took no client slot.
        assert_eq!(store.len_for_key("client-thumbprint"), 3);
    }

    #[tokio::test]
    async fn one_client_over_its_share_does_not_deny_the_others() {
        let store = MemoryReplayStore::with_limits(100, 10);
        let greedy = |i: u64| ReplayKey::new("greedy", &i.to_string());
        for i in 0..10 {
            assert_eq!(
                store.check(&greedy(i), live()).await.unwrap(),
                ReplayCheck::Fresh
            );
        }
        for i in 10..1000 {
            assert_eq!(
                store.check(&greedy(i), live()).await.unwrap(),
                ReplayCheck::OverQuota
            );
        }
        // Its own replays are still replays, not "over quota".
        assert_eq!(
            store.check(&greedy(3), live()).await.unwrap(),
            ReplayCheck::Replayed
        );
        for client in 0..9 {
            let k = ReplayKey::new(&format!("honest-{client}"), "1");
            assert_eq!(store.check(&k, live()).await.unwrap(), ReplayCheck::Fresh);
        }
        assert_eq!(store.len(), 19);
        assert_eq!(store.len_for_key("greedy"), 10);
        // Its share comes back as its proofs leave the store (moka's sweep, on real time),
        // not before: a full share stays full.
        assert_eq!(
            store
                .check(&greedy(5000), window(NOW + 61, NOW + 121))
                .await
                .unwrap(),
            ReplayCheck::OverQuota
        );
    }

    #[tokio::test]
    async fn expired_entries_free_their_slots() {
        // moka's own expiry runs on real time: the one test that waits for it.
        let store = MemoryReplayStore::new(1);
        assert_eq!(
            store.check(&key(1), window(NOW, NOW + 1)).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert!(matches!(
            store.check(&key(2), live()).await,
            Err(ReplayStoreError::Full)
        ));
        // moka's timer wheel sweeps in ~1.07 s ticks, so the slot comes back within about
        // a second of the expiry, not at once.
        let deadline = Instant::now() + Duration::from_secs(4);
        let outcome = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match store.check(&key(2), live()).await {
                Err(ReplayStoreError::Full) if Instant::now() < deadline => continue,
                other => break other,
            }
        };
        assert_eq!(outcome.unwrap(), ReplayCheck::Fresh);
        assert_eq!(store.len(), 1);
        assert_eq!(store.len_for_key("client-thumbprint"), 1);
    }

    #[test]
    fn window_ttl_is_at_least_a_second_and_never_panics() {
        assert_eq!(window(10, 81).ttl(), Duration::from_secs(71));
        assert_eq!(window(10, 10).ttl(), Duration::from_secs(1));
        assert_eq!(window(10, 0).ttl(), Duration::from_secs(1));
        assert_eq!(
            window(i64::MIN, i64::MAX).ttl(),
            Duration::from_secs(u64::try_from(i64::MAX).unwrap())
        );
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
        assert_eq!(
            ReplayKey::new("jkt", "a").client_bytes(),
            ReplayKey::new("jkt", "b").client_bytes()
        );
        assert_ne!(
            ReplayKey::new("jkt", "a").client_bytes(),
            ReplayKey::new("jkt2", "a").client_bytes()
        );
    }

    #[tokio::test]
    async fn different_clients_may_reuse_a_jti() {
        let store = MemoryReplayStore::default();
        let a = ReplayKey::new("jkt-a", "same-jti");
        let b = ReplayKey::new("jkt-b", "same-jti");
        assert_eq!(store.check(&a, live()).await.unwrap(), ReplayCheck::Fresh);
        assert_eq!(store.check(&b, live()).await.unwrap(), ReplayCheck::Fresh);
    }

    #[test]
    fn hex_encodes_all_digest_bytes() {
        let k = ReplayKey::new("jkt", "jti");
        for (hex, bytes) in [
            (k.to_hex(), k.as_bytes()),
            (k.client_hex(), k.client_bytes()),
        ] {
            assert_eq!(hex.len(), 64);
            let decoded: Vec<u8> = (0..32)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            assert_eq!(decoded.as_slice(), bytes);
        }
    }

    #[tokio::test]
    async fn works_through_arc_dyn() {
        let store: Arc<dyn ReplayStore> = Arc::new(MemoryReplayStore::default());
        let k = key(9);
        assert_eq!(
            store.check_and_insert(&k, live()).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store.check_and_insert(&k, live()).await.unwrap(),
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
