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
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Default bound of [`MemoryReplayStore`]: about 70 MB of entries, far above honest traffic
/// within a proof lifetime.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// Default share of a store one client key (`jkt`) may hold: with the default 60 s + 5 s
/// window and 5 s skew margin, a proof is remembered 71 s at most, so a client may make
/// about 140 DPoP requests per second, sustained, before its own proofs are refused.
pub const DEFAULT_MAX_PROOFS_PER_KEY: u64 = 10_000;
/// Domain separation so replay keys never collide with other SHA-256 uses of the same fields.
const KEY_DOMAIN: &[u8] = b"dpop-replay-key-v1";
/// Domain separation of the per-client (`jkt`) part of a replay key.
const CLIENT_DOMAIN: &[u8] = b"dpop-replay-client-v1";

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
        Self::for_client(Self::client_digest(jkt), jkt, jti)
    }

    /// The digest that names a client key (`jkt`) alone, as in [`ReplayKey::client_bytes`].
    pub(crate) fn client_digest(jkt: &str) -> [u8; 32] {
        let mut c = Sha256::new();
        c.update(CLIENT_DOMAIN);
        c.update(jkt.as_bytes());
        c.finalize().into()
    }

    /// [`ReplayKey::new`] with the client digest already known (a guard keeps it with the
    /// client's parsed key).
    pub(crate) fn for_client(client: [u8; 32], jkt: &str, jti: &str) -> Self {
        let mut h = Sha256::new();
        h.update(KEY_DOMAIN);
        for field in [jkt, jti] {
            // usize always fits in u64 on supported targets; saturate rather than panic.
            let len = u64::try_from(field.len()).unwrap_or(u64::MAX);
            h.update(len.to_be_bytes());
            h.update(field.as_bytes());
        }
        Self {
            proof: h.finalize().into(),
            client,
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

/// A proof's identity in [`MemoryReplayStore`]: the first 128 bits of its digest. Two proofs
/// that shared them would make the second one a "replay" (refused, never admitted); SHA-256
/// makes that as likely as guessing a 128-bit key.
type ProofTag = [u64; 2];
/// A client key's identity in [`MemoryReplayStore`], for its share: the first 64 bits of its
/// digest. Two keys that shared them would share one quota.
type ClientTag = u64;

fn word(bytes: &[u8; 32], at: usize) -> u64 {
    let mut word = [0u8; 8];
    if let Some(src) = bytes.get(at..at + 8) {
        word.copy_from_slice(src);
    }
    u64::from_le_bytes(word)
}

fn proof_tag(key: &ReplayKey) -> ProofTag {
    [word(&key.proof, 0), word(&key.proof, 8)]
}

fn client_tag(key: &ReplayKey) -> ClientTag {
    word(&key.client, 0)
}

/// Which shard holds a client's proofs: from a digest byte the tags do not use.
fn shard_of(key: &ReplayKey, shards: usize) -> usize {
    usize::from(key.client[31]) % shards.max(1)
}

/// Tables hashed with a per-table random key (SipHash): a client chooses its `jti`s, so it
/// could otherwise search for tags that pile up in one part of a table.
type TagMap<K, V> = HashMap<K, V, std::hash::RandomState>;

/// What the store keeps per proof: with its tag, 40 bytes in an open-addressing table.
#[derive(Clone, Copy)]
struct Remembered {
    /// Unix seconds, guard clock: the proof is a replay until then (exclusive).
    until: i64,
    client: ClientTag,
    /// Seconds on the store's monotonic clock: the entry is not forgotten before then,
    /// however the guard's clock moves (a clock stepped forward and then back again must
    /// not make a live proof new).
    kept_until: u32,
}

/// The store's monotonic clock, in whole seconds since the store was made.
enum Monotonic {
    Real(std::time::Instant),
    #[cfg(test)]
    Manual(Arc<AtomicU64>),
}

impl Monotonic {
    fn now(&self) -> u32 {
        match self {
            Monotonic::Real(epoch) => u32::try_from(epoch.elapsed().as_secs()).unwrap_or(u32::MAX),
            #[cfg(test)]
            Monotonic::Manual(secs) => {
                u32::try_from(secs.load(Ordering::Acquire)).unwrap_or(u32::MAX)
            }
        }
    }
}

/// The proofs of the clients whose digests fall in one shard, and their counts.
struct Shard {
    proofs: TagMap<ProofTag, Remembered>,
    clients: TagMap<ClientTag, u64>,
    /// Monotonic second before which a sweep would find nothing to forget (or already ran).
    next_sweep: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard {
            proofs: TagMap::default(),
            clients: TagMap::default(),
            next_sweep: u32::MAX,
        }
    }
}

impl Shard {
    /// Forgets every proof whose window has ended by both clocks: the guard's (`now`) and
    /// the store's monotonic one (`mono`); frees its client's slot and returns how many, for
    /// the global count. Scans at most once per monotonic second, and gives back the room of
    /// a table that emptied, so that memory follows the live proofs, not a past peak.
    fn sweep(&mut self, now: i64, mono: u32) -> u64 {
        if mono < self.next_sweep {
            return 0;
        }
        let (mut freed, mut next) = (0, u32::MAX);
        let clients = &mut self.clients;
        self.proofs.retain(|_, entry| {
            if entry.until > now || entry.kept_until > mono {
                next = next.min(entry.kept_until);
                return true;
            }
            release_client(clients, entry.client);
            freed += 1;
            false
        });
        self.next_sweep = next.max(mono.saturating_add(1));
        if self.proofs.len().saturating_mul(4) < self.proofs.capacity() {
            self.proofs.shrink_to(self.proofs.len().saturating_mul(2));
        }
        if self.clients.len().saturating_mul(4) < self.clients.capacity() {
            self.clients.shrink_to(self.clients.len().saturating_mul(2));
        }
        freed
    }
}

/// One slot of `client` given back.
fn release_client(clients: &mut TagMap<ClientTag, u64>, client: ClientTag) {
    if let Some(count) = clients.get_mut(&client) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            clients.remove(&client);
        }
    }
}

/// Shards of the store: enough that concurrent checks rarely wait on one lock.
const SHARDS: usize = 64;

/// In-process replay store for a single instance (RFC 9449 §11.1).
///
/// Every proof is kept until its own window ends: there is no capacity-based eviction. At
/// `max_entries` live proofs, new ones fail with [`ReplayStoreError::Full`]; a client key
/// holding `max_per_key` live proofs gets [`ReplayCheck::OverQuota`] for its new ones; known
/// proofs still report `Replayed`. A proof is forgotten only once its window has ended both
/// in the guard's clock and in real (monotonic) time, so a clock stepped forward and back
/// again never makes a live proof new; until then it holds its slots.
///
/// Memory bound: a proof takes a 16-byte tag, its window's end in both clocks and its
/// client's tag in an open-addressing table, about 70 bytes of resident memory per live
/// proof with the table's spare room (about 120 when every proof comes from a key of its
/// own; both measured by a test), so the default million entries take about 70 MB at most;
/// [`MemoryReplayStore::with_limits`] sets a smaller bound.
///
/// ```
/// use tower_oauth_guard::{BaseUrl, Dpop, MemoryReplayStore, PublicUri};
///
/// // 100 000 live proofs at most (about 7 MB), 1 000 of them per client key.
/// let store = MemoryReplayStore::with_limits(100_000, 1_000);
/// let dpop = Dpop::allowed(PublicUri::fixed(BaseUrl::parse("https://api.example")?)).replay_store(store);
/// # let _ = dpop;
/// # Ok::<(), tower_oauth_guard::HtuError>(())
/// ```
pub struct MemoryReplayStore {
    shards: Box<[Mutex<Shard>]>,
    /// Live proofs in all shards; never above `max_entries`.
    live: AtomicU64,
    max_entries: u64,
    max_per_key: u64,
    clock: Monotonic,
    /// The next shard a check sweeps besides its own, so idle shards are swept too.
    cursor: std::sync::atomic::AtomicUsize,
    /// The monotonic second of the last fullness report ([`crate::metrics`]): once a second.
    reported: std::sync::atomic::AtomicU32,
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
        Self::with_clock(
            max_entries,
            max_per_key,
            Monotonic::Real(std::time::Instant::now()),
        )
    }

    fn with_clock(max_entries: u64, max_per_key: u64, clock: Monotonic) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            live: AtomicU64::new(0),
            max_entries,
            max_per_key,
            clock,
            cursor: std::sync::atomic::AtomicUsize::new(0),
            reported: std::sync::atomic::AtomicU32::new(u32::MAX),
        }
    }

    /// Slots in use: live proofs plus proofs whose window ended but that no sweep has
    /// forgotten yet.
    pub fn len(&self) -> u64 {
        self.live.load(Ordering::Acquire)
    }

    /// Whether no slot is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots one client key holds (`jkt`, as in [`ReplayKey::new`]).
    pub fn len_for_key(&self, jkt: &str) -> u64 {
        let key = ReplayKey::new(jkt, "");
        self.lock(shard_of(&key, self.shards.len()))
            .and_then(|shard| shard.clients.get(&client_tag(&key)).copied())
            .unwrap_or(0)
    }

    /// Shard `index`, locked; `None` cannot happen for an index from [`shard_of`] and makes
    /// callers fail closed.
    fn lock(&self, index: usize) -> Option<std::sync::MutexGuard<'_, Shard>> {
        // Nothing in a shard's critical sections panics; if something did, the counts and
        // the entries would still never let a remembered proof through, so a poisoned lock
        // is used as it is.
        self.shards.get(index).map(|shard| {
            shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
    }

    /// Whether `key` is remembered at `now` (guard clock), without remembering it.
    #[cfg(feature = "redis")]
    pub(crate) fn remembers(&self, key: &ReplayKey, now: i64) -> bool {
        self.lock(shard_of(key, self.shards.len()))
            .is_none_or(|shard| {
                shard
                    .proofs
                    .get(&proof_tag(key))
                    .is_some_and(|entry| entry.until > now)
            })
    }

    /// Takes one global slot, unless the store is full.
    fn take_slot(&self) -> bool {
        self.live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_entries).then_some(n.saturating_add(1))
            })
            .is_ok()
    }

    fn release_slots(&self, n: u64) {
        if n > 0 {
            // Saturating: the bound must never wrap around to "empty".
            let _ = self
                .live
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                    Some(live.saturating_sub(n))
                });
        }
    }

    /// Sweeps every shard but the one the caller holds (which it swept), waiting for each.
    fn sweep_others(&self, held: usize, now: i64, mono: u32) {
        for index in (0..self.shards.len()).filter(|i| *i != held) {
            if let Some(mut shard) = self.lock(index) {
                let freed = shard.sweep(now, mono);
                self.release_slots(freed);
            }
        }
    }

    /// Sweeps the next shard in turn if it is free at once: shards nobody checks against
    /// still give back their room.
    fn sweep_next(&self, held: usize, now: i64, mono: u32) {
        let index = self.cursor.fetch_add(1, Ordering::Relaxed) % self.shards.len().max(1);
        if index == held {
            return;
        }
        if let Some(Ok(mut shard)) = self.shards.get(index).map(Mutex::try_lock) {
            let freed = shard.sweep(now, mono);
            self.release_slots(freed);
        }
    }

    fn check(
        &self,
        key: &ReplayKey,
        window: ReplayWindow,
    ) -> Result<ReplayCheck, ReplayStoreError> {
        let (now, mono) = (window.now, self.clock.now());
        let (tag, client) = (proof_tag(key), client_tag(key));
        let index = shard_of(key, self.shards.len());
        let mut shard = self.lock(index).ok_or(ReplayStoreError::Full)?;
        // One lock per shard: the checks and the insert below are one atomic step.
        let freed = shard.sweep(now, mono);
        self.release_slots(freed);
        let replayed = |shard: &Shard| shard.proofs.get(&tag).is_some_and(|e| e.until > now);
        let over_quota =
            |shard: &Shard| shard.clients.get(&client).copied().unwrap_or(0) >= self.max_per_key;
        if replayed(&shard) {
            return Ok(ReplayCheck::Replayed);
        }
        if over_quota(&shard) {
            tracing::debug!(
                max_per_key = self.max_per_key,
                "DPoP client key holds its whole share of the replay store"
            );
            return Ok(ReplayCheck::OverQuota);
        }
        if !self.take_slot() {
            // The other shards are swept without this one held, so that two checks on a
            // full store never wait on each other's shard.
            drop(shard);
            self.sweep_others(index, now, mono);
            shard = self.lock(index).ok_or(ReplayStoreError::Full)?;
            if replayed(&shard) {
                return Ok(ReplayCheck::Replayed);
            }
            if over_quota(&shard) {
                return Ok(ReplayCheck::OverQuota);
            }
            if !self.take_slot() {
                tracing::warn!(max_entries = self.max_entries, "DPoP replay store is full");
                return Err(ReplayStoreError::Full);
            }
        }
        let ttl = u32::try_from(window.ttl().as_secs()).unwrap_or(u32::MAX);
        let entry = Remembered {
            until: window.until,
            client,
            // Rounded up: the monotonic second has begun, so a whole `ttl` lies after it.
            kept_until: mono.saturating_add(ttl).saturating_add(1),
        };
        // A proof whose window ended may be remembered anew: its old slots are released.
        if let Some(old) = shard.proofs.insert(tag, entry) {
            release_client(&mut shard.clients, old.client);
            self.release_slots(1);
        }
        *shard.clients.entry(client).or_insert(0) += 1;
        shard.next_sweep = shard.next_sweep.min(entry.kept_until);
        drop(shard);
        self.sweep_next(index, now, mono);
        if self.reported.swap(mono, Ordering::Relaxed) != mono {
            let live = self.live.load(Ordering::Relaxed);
            crate::metrics::replay_store_fullness(live, self.max_entries);
        }
        Ok(ReplayCheck::Fresh)
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
            .field("max_per_key", &self.max_per_key)
            .finish()
    }
}

impl ReplayStore for MemoryReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        key: &'a ReplayKey,
        window: ReplayWindow,
    ) -> ReplayFuture<'a> {
        let outcome = self.check(key, window);
        Box::pin(std::future::ready(outcome))
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
        assert_eq!(
            store.check_and_insert(&k, live()).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store.check_and_insert(&k, live()).await.unwrap(),
            ReplayCheck::Replayed
        );
        assert_eq!(store.len(), 1);
    }

    #[tokio::test]
    async fn remembers_until_the_window_ends_in_the_guards_clock() {
        let store = MemoryReplayStore::default();
        let k = key(1);
        assert_eq!(
            store
                .check_and_insert(&k, window(NOW, NOW + 71))
                .await
                .unwrap(),
            ReplayCheck::Fresh
        );
        // 70 s later (guard clock) the proof is still remembered; no real time passes.
        assert_eq!(
            store
                .check_and_insert(&k, window(NOW + 70, NOW + 71))
                .await
                .unwrap(),
            ReplayCheck::Replayed
        );
        // At `until` the proof can no longer be accepted anywhere: it may be forgotten,
        // and a check then remembers it anew, once.
        assert_eq!(
            store
                .check_and_insert(&k, window(NOW + 71, NOW + 200))
                .await
                .unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store
                .check_and_insert(&k, window(NOW + 199, NOW + 200))
                .await
                .unwrap(),
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
            assert_eq!(store.len(), 1, "round {round}");
            assert_eq!(store.len_for_key("client-thumbprint"), 1, "round {round}");
        }
    }

    #[tokio::test]
    async fn remembers_every_key_after_a_flood() {
        let store = MemoryReplayStore::with_limits(DEFAULT_MAX_ENTRIES, 300_000);
        for i in 0..200_000 {
            assert_eq!(
                store.check_and_insert(&key(i), live()).await.unwrap(),
                ReplayCheck::Fresh
            );
        }
        for i in 0..1000 {
            assert_eq!(
                store.check_and_insert(&key(i), live()).await.unwrap(),
                ReplayCheck::Replayed,
                "key {i} was forgotten"
            );
        }
        assert_eq!(store.len(), 200_000);
        let entries: usize = store
            .shards
            .iter()
            .map(|s| s.lock().unwrap().proofs.len())
            .sum();
        assert_eq!(entries, 200_000);
    }

    #[tokio::test]
    async fn fails_closed_when_full_but_still_detects_replays() {
        let store = MemoryReplayStore::new(3);
        for i in 0..3 {
            assert_eq!(
                store.check_and_insert(&key(i), live()).await.unwrap(),
                ReplayCheck::Fresh
            );
        }
        assert!(matches!(
            store.check_and_insert(&key(3), live()).await,
            Err(ReplayStoreError::Full)
        ));
        assert_eq!(
            store.check_and_insert(&key(0), live()).await.unwrap(),
            ReplayCheck::Replayed
        );
        assert_eq!(store.len(), 3);
        // The refused proof took no client slot.
        assert_eq!(store.len_for_key("client-thumbprint"), 3);
    }

    #[tokio::test]
    async fn one_client_over_its_share_does_not_deny_the_others() {
        let (store, mono) = manual(100, 10);
        let greedy = |i: u64| ReplayKey::new("greedy", &i.to_string());
        for i in 0..10 {
            assert_eq!(
                store.check_and_insert(&greedy(i), live()).await.unwrap(),
                ReplayCheck::Fresh
            );
        }
        for i in 10..1000 {
            assert_eq!(
                store.check_and_insert(&greedy(i), live()).await.unwrap(),
                ReplayCheck::OverQuota
            );
        }
        // Its own replays are still replays, not "over quota".
        assert_eq!(
            store.check_and_insert(&greedy(3), live()).await.unwrap(),
            ReplayCheck::Replayed
        );
        for client in 0..9 {
            let k = ReplayKey::new(&format!("honest-{client}"), "1");
            assert_eq!(
                store.check_and_insert(&k, live()).await.unwrap(),
                ReplayCheck::Fresh
            );
        }
        assert_eq!(store.len(), 19);
        assert_eq!(store.len_for_key("greedy"), 10);
        // Its share comes back as its proofs' windows end, not before: a full share stays
        // full while they last.
        assert_eq!(
            store
                .check_and_insert(&greedy(5000), window(NOW + 59, NOW + 121))
                .await
                .unwrap(),
            ReplayCheck::OverQuota
        );
        mono.store(61, Ordering::Release);
        assert_eq!(
            store
                .check_and_insert(&greedy(5001), window(NOW + 60, NOW + 121))
                .await
                .unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(store.len_for_key("greedy"), 1);
        assert_eq!(
            store.len(),
            10,
            "the 9 honest proofs live on, 10 greedy ones left"
        );
    }

    /// A store on a monotonic clock the test moves, and the handle that moves it.
    fn manual(max_entries: u64, max_per_key: u64) -> (MemoryReplayStore, Arc<AtomicU64>) {
        let secs = Arc::new(AtomicU64::new(0));
        let clock = Monotonic::Manual(Arc::clone(&secs));
        (
            MemoryReplayStore::with_clock(max_entries, max_per_key, clock),
            secs,
        )
    }

    /// A client key whose proofs fall in shard `shard`.
    fn jkt_in_shard(shard: usize) -> String {
        (0u64..)
            .map(|i| format!("client-{i}"))
            .find(|jkt| shard_of(&ReplayKey::new(jkt, ""), SHARDS) == shard)
            .unwrap()
    }

    #[tokio::test]
    async fn an_ended_window_frees_its_slots_once_both_clocks_have_passed_it() {
        let (store, mono) = manual(2, DEFAULT_MAX_PROOFS_PER_KEY);
        let other = ReplayKey::new("other-client", "1");
        assert_eq!(
            store
                .check_and_insert(&key(1), window(NOW, NOW + 10))
                .await
                .unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store
                .check_and_insert(&other, window(NOW, NOW + 20))
                .await
                .unwrap(),
            ReplayCheck::Fresh
        );
        // The guard's clock is past the first window, real time is not: the slot is held.
        assert!(matches!(
            store
                .check_and_insert(&key(2), window(NOW + 10, NOW + 60))
                .await,
            Err(ReplayStoreError::Full)
        ));
        mono.store(10, Ordering::Release);
        assert!(matches!(
            store
                .check_and_insert(&key(2), window(NOW + 10, NOW + 60))
                .await,
            Err(ReplayStoreError::Full)
        ));
        // Real time is past it too: the slot is free, and the second proof still held.
        mono.store(11, Ordering::Release);
        assert_eq!(
            store
                .check_and_insert(&key(2), window(NOW + 10, NOW + 60))
                .await
                .unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(store.len(), 2);
        assert_eq!(store.len_for_key("client-thumbprint"), 1);
        assert_eq!(
            store
                .check_and_insert(&other, window(NOW + 19, NOW + 60))
                .await
                .unwrap(),
            ReplayCheck::Replayed
        );
        let shard = store.lock(shard_of(&key(1), SHARDS)).unwrap();
        assert!(
            !shard.proofs.contains_key(&proof_tag(&key(1))),
            "an ended window is forgotten, not only ignored"
        );
    }

    #[tokio::test]
    async fn a_clock_stepped_forward_and_back_never_makes_a_live_proof_new() {
        let (store, mono) = manual(1_000, 1_000);
        let first = ReplayKey::new("client", "p1");
        assert_eq!(
            store
                .check_and_insert(&first, window(NOW, NOW + 71))
                .await
                .unwrap(),
            ReplayCheck::Fresh
        );
        // An hour ahead in the guard's clock, a second later in real time: a check in the
        // same shard, which sweeps it.
        mono.store(1, Ordering::Release);
        let second = ReplayKey::new("client", "p2");
        assert_eq!(
            store
                .check_and_insert(&second, window(NOW + 3600, NOW + 3671))
                .await
                .unwrap(),
            ReplayCheck::Fresh
        );
        // The clock is corrected: the first proof is live again, and remembered.
        mono.store(2, Ordering::Release);
        assert_eq!(
            store
                .check_and_insert(&first, window(NOW + 2, NOW + 73))
                .await
                .unwrap(),
            ReplayCheck::Replayed
        );
        // Even after its real-time span, while the guard's clock says it is live.
        mono.store(500, Ordering::Release);
        assert_eq!(
            store
                .check_and_insert(&first, window(NOW + 3, NOW + 73))
                .await
                .unwrap(),
            ReplayCheck::Replayed
        );
    }

    #[tokio::test]
    async fn memory_follows_the_live_proofs_not_each_shards_past_peak() {
        const MAX: u64 = 10_000;
        let (store, mono) = manual(MAX, MAX);
        // A full store's worth in one shard after another, each after the last has ended.
        for shard in 0..SHARDS {
            let jkt = jkt_in_shard(shard);
            let step = 100 * shard as u64;
            mono.store(step, Ordering::Release);
            let now = NOW + step as i64;
            for i in 0..MAX {
                let k = ReplayKey::new(&jkt, &i.to_string());
                assert_eq!(
                    store
                        .check_and_insert(&k, window(now, now + 71))
                        .await
                        .unwrap(),
                    ReplayCheck::Fresh,
                    "shard {shard}, proof {i}"
                );
            }
        }
        let capacity: usize = store
            .shards
            .iter()
            .map(|s| s.lock().unwrap().proofs.capacity())
            .sum();
        assert!(
            capacity <= 4 * MAX as usize,
            "room for {capacity} proofs kept, {MAX} may be live"
        );
    }

    #[test]
    fn tags_a_client_chose_to_collide_cost_no_more_than_random_ones() {
        fn timed(keys: &[ReplayKey]) -> Duration {
            let store = MemoryReplayStore::with_limits(1_000_000, 1_000_000);
            let start = std::time::Instant::now();
            for k in keys {
                assert_eq!(store.check(k, live()).unwrap(), ReplayCheck::Fresh);
            }
            start.elapsed()
        }
        const N: u64 = 20_000;
        let client = *ReplayKey::new("attacker", "").client_bytes();
        // Tags equal in the bits an unkeyed hash of them would use.
        let colliding: Vec<ReplayKey> = (0..N)
            .map(|i| {
                let mut proof = [0u8; 32];
                proof[..8].copy_from_slice(&(i ^ 0x5a5a_5a5a_5a5a_5a5a).to_le_bytes());
                proof[8..16].copy_from_slice(&i.to_le_bytes());
                ReplayKey { proof, client }
            })
            .collect();
        let random: Vec<ReplayKey> = (0..N)
            .map(|i| ReplayKey::for_client(client, "attacker", &i.to_string()))
            .collect();
        let (slow, fast) = (timed(&colliding), timed(&random));
        assert!(
            slow < fast * 10,
            "{N} colliding tags took {slow:?}, {N} random ones {fast:?}"
        );
    }

    #[tokio::test]
    async fn a_proof_remembered_anew_takes_one_slot() {
        let store = MemoryReplayStore::with_limits(10, 10);
        let k = key(1);
        for start in [NOW, NOW + 100, NOW + 200] {
            assert_eq!(
                store
                    .check_and_insert(&k, window(start, start + 50))
                    .await
                    .unwrap(),
                ReplayCheck::Fresh
            );
        }
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
        assert_eq!(
            store.check_and_insert(&a, live()).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store.check_and_insert(&b, live()).await.unwrap(),
            ReplayCheck::Fresh
        );
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
