//! A [`ReplayStore`] on Redis: one DPoP replay window shared by every instance of an API
//! (RFC 9449 §11.1).
//!
//! With an in-process store, a proof captured on its way to instance A can be replayed against
//! instance B. [`RedisReplayStore`] remembers each proof in Redis, with one atomic Lua script
//! per check (`EVALSHA`: one round trip). It talks to one server (through the `redis` crate's
//! auto-reconnecting [`ConnectionManager`]) or to a Redis Cluster, over TCP or TLS (`rediss://`,
//! rustls). It needs Redis 6.2 or later (`SET .. PXAT`), or a compatible server such as Valkey.
//!
//! ```no_run
//! use tower_oauth_guard::{BaseUrl, Dpop, Issuer, OAuthGuard, PublicUri};
//! use tower_oauth_guard::redis::RedisReplayStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let replay = RedisReplayStore::connect("redis://10.0.0.5:6379/").await?;
//! let guard = OAuthGuard::builder()
//!     .trust(
//!         Issuer::new("https://issuer.example")
//!             .audience("https://api.example")
//!             .jwks_url("https://issuer.example/jwks"),
//!     )
//!     .dpop(
//!         Dpop::allowed(PublicUri::fixed(BaseUrl::parse("https://api.example")?))
//!             .replay_store(replay.clone()), // keep `replay` for `unavailable_count()`
//!     )
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # What Redis holds
//!
//! For a proof with digest `<proof>` ([`ReplayKey::to_hex`]) whose client key (`jkt`) has
//! digest `<client>` ([`ReplayKey::client_hex`]), under the key prefix `<prefix>`:
//!
//! - `<prefix>{<client>}:<proof>`: a string, the random value of the check that stored it
//!   (see *Retries* below), expiring at the instant below; [`RedisReplayStore::redis_key`].
//! - `<prefix>{<client>}:live`: a sorted set of the client key's remembered proofs, member
//!   `<proof>`, score the proof's expiry in Unix milliseconds; it expires with its last member.
//!
//! The hash tag `{<client>}` puts both keys of one check in one Redis Cluster slot, so the
//! script may touch both on any cluster. (Keep `{` out of the prefix: Cluster would hash on the
//! prefix's tag instead, and put every key in one slot: still correct, but on one node.)
//!
//! The script, atomically:
//! 1. If the proof's key exists, answers [`Replayed`](ReplayCheck::Replayed), or
//!    [`Fresh`](ReplayCheck::Fresh) if it holds this very check's value (a resent command).
//! 2. Drops the client's expired members; if `max_per_key` remain, answers
//!    [`OverQuota`](ReplayCheck::OverQuota) and stores nothing.
//! 3. Otherwise stores the key and the member, both until the expiry below, and answers
//!    [`Fresh`](ReplayCheck::Fresh).
//!
//! # How long a proof is remembered
//!
//! Until the last instant at which any instance could still accept it (RFC 9449 §11.1): the
//! guard computes that from the proof's `iat` plus a skew margin, as
//! [`ReplayWindow::until`], never from the first use. Redis expires the key at an absolute
//! instant (`PXAT`), by its own clock:
//!
//! ```text
//! expiry = max(window.until, redis_now + window.ttl())      (window.ttl() = until - now, ≥ 1 s)
//! ```
//!
//! Never earlier than `until` itself, so a guard whose clock runs ahead (and so thinks less
//! time is left) cannot shorten the memory that the other instances rely on; and never
//! earlier than the time left as the guard sees it, so a guard clock behind Redis's (or a
//! test's fixed clock, far in the past) cannot make Redis forget a proof at once. The price of
//! a guard clock ahead of Redis's is memory, not safety: its entries live that much longer
//! (and hold their client key's share that much longer).
//!
//! # Per-key share
//!
//! One client key (`jkt`) signing unique proofs as fast as it can must not fill Redis and deny
//! the others. A new proof is stored only while its client key has fewer than `max_per_key`
//! live proofs (default 10 000, set with
//! [`max_per_key`](RedisReplayStoreBuilder::max_per_key)); past that it gets
//! [`OverQuota`](ReplayCheck::OverQuota) (the guard answers `429`), while its replays still get
//! [`Replayed`](ReplayCheck::Replayed) and other keys are unaffected. The bound is exact, in
//! Redis's clock: each set member expires at its proof key's own instant, expired members are
//! dropped before counting, and a check adds at most one member; so at any instant a client
//! key has at most `max_per_key` live proof keys, and at most `max_per_key` members plus those
//! expired since its last check (which the next check drops; the set expires after its last).
//!
//! Memory, measured on Redis 7 with the default prefix (`used_memory` over 100,000 proofs):
//! about 500 bytes per live proof, of which about 170 are its set member. So one client key at
//! its share holds at most about `max_per_key` × 500 bytes, 5 MB at the default, and Redis as
//! a whole at most that times the number of client keys with live proofs; each such key needs
//! an access token bound to it (`cnf.jkt`) and a valid proof, since the guard checks for
//! replays last. With the default 71 s window the default share lets one client key make
//! about 140 DPoP requests per second, sustained, as with the in-process store.
//!
//! Run Redis with `maxmemory-policy noeviction` (the default), or give it to this store alone:
//! every key here has an expiry, so a `volatile-*` or `allkeys-*` policy would evict proofs
//! within their windows and let replays through. With `noeviction`, a full Redis refuses
//! writes and the guard fails closed. Redis replicates asynchronously: a failover may lose the
//! proofs stored in its last moments, which can then be replayed once within their windows.
//!
//! # Retries
//!
//! A reply lost on its way back (the connection dropped after Redis ran the script) may make a
//! client resend the command: the cluster client does so on connection errors (an
//! application's own connection may too), and a `SET NX` resent that way would find its own
//! key and call a fresh proof a replay. So each check
//! stores a fresh random 128-bit value, a resent command carries the same value, and the
//! script answers `Fresh` when the key holds it: a check is never a replay of itself, and it
//! counts once toward the share. Another check of the same proof, from any instance, carries
//! another value and gets `Replayed`. This store does not resend anything itself: a failed
//! check is refused (below).
//!
//! # Fails closed
//!
//! When Redis cannot answer (unreachable, erroring, or slower than the timeout, 50 ms by
//! default) the check ends in a [`ReplayStoreError`], and the guard refuses the request with
//! `503 Service Unavailable` and `Retry-After: 1`, without a challenge or an error code (gRPC:
//! `UNAVAILABLE`). 503 rather than 401, because the proof was not found bad: the server could
//! not check it, which is transient, and monitoring should count it as a server fault. There
//! is no setting that accepts a proof unchecked; the timeouts only make refusals come sooner.
//! Each refusal increments [`unavailable_count`](RedisReplayStore::unavailable_count); the
//! first one of an outage logs a `warn` event and the first answer after it an `info` event
//! (every refusal also gets the guard's own `warn` with reason
//! `dpop_replay_store_unavailable`). The store reconnects by itself: once Redis answers again,
//! so does the guard. Any answer of the script other than the three above is an error too.

use std::fmt::{self, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisError, TlsCertificates, Value};

use crate::dpop::replay::{DEFAULT_MAX_PROOFS_PER_KEY, ReplayFuture};
use crate::dpop::{
    DEFAULT_REPLAY_TIMEOUT, MemoryReplayStore, ReplayCheck, ReplayKey, ReplayStore,
    ReplayStoreError, ReplayWindow,
};

/// Namespace of the keys, so that the replay store can share a Redis with other data.
pub const DEFAULT_KEY_PREFIX: &str = "tog:dpop:jti:";
/// Default bound of one check, the guard's own default: a DPoP request waits at most this long.
pub const DEFAULT_TIMEOUT: Duration = DEFAULT_REPLAY_TIMEOUT;
/// Default bound of one connection attempt: reconnecting runs beside the requests, which are
/// bounded by the check timeout, so it may take longer than one check.
pub const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest check timeout accepted: every DPoP request waits on the check, so a larger value
/// (say `Duration::MAX` by mistake) is clamped here rather than letting requests hang.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest key prefix: a namespace, not data; every remembered proof stores it again.
pub const MAX_KEY_PREFIX_LEN: usize = 128;
/// First pause between reconnection attempts, short so that a restarted Redis is found soon.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// Longest pause between reconnection attempts: bounds how long after Redis comes back the
/// guard keeps refusing.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(1);
/// Attempts per reconnection round; the next failed check starts a new round.
const RECONNECT_ATTEMPTS: usize = 6;
/// Largest expiry or time-to-live sent to the script, in milliseconds (about 35,000 years):
/// far beyond any proof window, so never shortens one, yet exact as a Lua number (a double)
/// and accepted by `PXAT`; a misconfigured window is clamped rather than refused forever.
const MAX_MILLIS: u64 = 1 << 50;
/// Suffix of a client key's set of live proofs; proof keys end in 64 hex digits instead.
const LIVE_SET_SUFFIX: &str = ":live";

/// The replay check, atomic in Redis (see the module documentation, RFC 9449 §11.1).
///
/// `KEYS[1]`: the proof; `KEYS[2]`: its client key's live proofs (one hash tag: one slot).
/// `ARGV[1]`: this check's random value; `ARGV[2]`: `window.until` in Unix ms (guard clock);
/// `ARGV[3]`: `window.ttl()` in ms; `ARGV[4]`: the per-key share; `ARGV[5]`: the set member.
/// Answers 1 (fresh), 0 (replayed) or 2 (over quota): [`FRESH`], [`REPLAYED`], [`OVER_QUOTA`].
/// Needs effects replication for `TIME` before writes: the default since Redis 5.
const SCRIPT: &str = r"
local stored = redis.call('GET', KEYS[1])
if stored then
  -- Our own value: this very check, resent after its reply was lost. Not a replay.
  if stored == ARGV[1] then return 1 end
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- A key lives while now <= its expiry: drop only the members strictly before now.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('(%d', now))
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then return 2 end
-- Never before the proof's absolute end, never before the time left as the guard sees it.
local at = string.format('%d', math.max(tonumber(ARGV[2]), now + tonumber(ARGV[3])))
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', at)
redis.call('ZADD', KEYS[2], at, ARGV[5])
-- The set lives as long as its last member (a new set has no expiry: PTTL -1).
local left = redis.call('PTTL', KEYS[2])
if left < 0 or now + left < tonumber(at) then redis.call('PEXPIREAT', KEYS[2], at) end
return 1
";
/// Answer of [`SCRIPT`]: first use.
const FRESH: i64 = 1;
/// Answer of [`SCRIPT`]: already remembered.
const REPLAYED: i64 = 0;
/// Answer of [`SCRIPT`]: new, but the client key holds its whole share.
const OVER_QUOTA: i64 = 2;

/// Why a [`RedisReplayStore`] could not be set up.
///
/// ```
/// use tower_oauth_guard::redis::{MAX_KEY_PREFIX_LEN, RedisReplayStore, RedisStoreError};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let prefix = "p".repeat(MAX_KEY_PREFIX_LEN + 1);
/// let store = RedisReplayStore::builder().key_prefix(prefix).connect("redis://127.0.0.1/").await;
/// assert!(matches!(store, Err(RedisStoreError::KeyPrefixTooLong(_))));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum RedisStoreError {
    /// The key prefix is longer than [`MAX_KEY_PREFIX_LEN`] bytes.
    KeyPrefixTooLong(usize),
    /// A Redis URL is malformed, or the settings are inconsistent (e.g. cluster nodes with
    /// different TLS modes).
    InvalidConfig(RedisError),
    /// A `rediss://` URL, but no rustls crypto provider: enable the `aws-lc-rs` or
    /// `rust-crypto` feature, or install a process-wide provider.
    NoTlsProvider,
    /// The first connection failed (after the reconnection attempts).
    Connect(RedisError),
}

impl fmt::Display for RedisStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::KeyPrefixTooLong(n) => write!(
                f,
                "Redis key prefix is {n} bytes, more than {MAX_KEY_PREFIX_LEN}"
            ),
            Self::InvalidConfig(e) => write!(f, "Redis configuration: {e}"),
            Self::NoTlsProvider => f.write_str("rediss:// needs a rustls crypto provider"),
            Self::Connect(e) => write!(f, "cannot connect to Redis: {e}"),
        }
    }
}

impl std::error::Error for RedisStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidConfig(e) | Self::Connect(e) => Some(e),
            Self::KeyPrefixTooLong(_) | Self::NoTlsProvider => None,
        }
    }
}

/// The replay script answered something it never answers (a proxy or a module in the way,
/// or another script under its name).
#[derive(Debug)]
struct UnexpectedReply;

impl fmt::Display for UnexpectedReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the Redis replay script answered neither fresh, replayed nor over quota")
    }
}

impl std::error::Error for UnexpectedReply {}

/// Settings of a [`RedisReplayStore`]; start with [`RedisReplayStore::builder`].
///
/// ``` no_run
/// use std::time::Duration;
/// use tower_oauth_guard::redis::RedisReplayStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisReplayStore::builder()
///     .key_prefix("orders-api:dpop:")          // the same on every instance of one API
///     .timeout(Duration::from_millis(20))      // fail closed (503) sooner
///     .max_per_key(5_000)                      // one client key's share
///     .connect("rediss://redis.internal:6380/")
///     .await?;
/// println!("refusals while Redis was away: {}", store.unavailable_count());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisReplayStoreBuilder {
    key_prefix: String,
    timeout: Duration,
    connection_timeout: Duration,
    root_certificates: Option<Vec<u8>>,
    local_cache: Option<u64>,
    max_per_key: u64,
}

impl fmt::Debug for RedisReplayStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStoreBuilder")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("connection_timeout", &self.connection_timeout)
            .field("root_certificates", &self.root_certificates.is_some())
            .field("local_cache", &self.local_cache)
            .field("max_per_key", &self.max_per_key)
            .finish()
    }
}

impl Default for RedisReplayStoreBuilder {
    fn default() -> Self {
        Self {
            key_prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            root_certificates: None,
            local_cache: None,
            max_per_key: DEFAULT_MAX_PROOFS_PER_KEY,
        }
    }
}

impl RedisReplayStoreBuilder {
    /// Namespace of the keys (default [`DEFAULT_KEY_PREFIX`]). Every instance that shares the
    /// replay window must use the same prefix.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// How long one check may take, reconnection included, before it fails closed with
    /// [`ReplayStoreError::Timeout`] (default 50 ms; clamped to [`MAX_TIMEOUT`]). Also Redis's
    /// response timeout. The guard's own `replay_timeout` applies as well: the shorter wins.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.min(MAX_TIMEOUT);
        self
    }

    /// How long one connection attempt may take (default 1 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// For `rediss://`: trust the CA certificate(s) in this PEM instead of the platform's roots.
    pub fn tls_root_certificates_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.root_certificates = Some(pem.into());
        self
    }

    /// Puts an in-process store of at most `max_entries` keys in front of Redis. A proof this
    /// instance has already seen is refused without a round trip (a flood of replays costs
    /// Redis nothing); a proof it has not seen is still accepted only if Redis says it is new,
    /// so the guarantee is Redis's. A local store that is full defers to Redis; it has no
    /// per-key share of its own, Redis's applies.
    pub fn local_cache(mut self, max_entries: u64) -> Self {
        self.local_cache = Some(max_entries);
        self
    }

    /// How many live proofs one client key (`jkt`) may have in Redis (default
    /// 10 000); past that its new proofs get
    /// [`ReplayCheck::OverQuota`]. Every instance sharing the prefix should use the same
    /// value. See the [module](self) documentation for the memory this bounds.
    pub fn max_per_key(mut self, max: u64) -> Self {
        self.max_per_key = max;
        self
    }

    /// Connects to one Redis server: `redis://[user:password@]host[:port][/db]`, or
    /// `rediss://` for TLS. Fails if the server cannot be reached now; later outages are
    /// survived by reconnecting.
    pub async fn connect(self, url: &str) -> Result<RedisReplayStore, RedisStoreError> {
        self.check_prefix()?;
        let info = url
            .into_connection_info()
            .map_err(RedisStoreError::InvalidConfig)?;
        let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        if tls {
            ensure_tls_provider()?;
        }
        let client = match (&self.root_certificates, tls) {
            (Some(pem), true) => redis::Client::build_with_tls(info, certificates(pem)),
            _ => redis::Client::open(info),
        }
        .map_err(RedisStoreError::InvalidConfig)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(self.timeout))
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY)
            .set_number_of_retries(RECONNECT_ATTEMPTS);
        let manager = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(RedisStoreError::Connect)?;
        Ok(self.finish(Connection::Single(manager)))
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://` or `rediss://`, all
    /// alike). Each key lives on the node that owns its slot.
    pub async fn connect_cluster<I, S>(self, urls: I) -> Result<RedisReplayStore, RedisStoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.check_prefix()?;
        let infos = urls
            .into_iter()
            .map(|u| u.as_ref().into_connection_info())
            .collect::<Result<Vec<_>, _>>()
            .map_err(RedisStoreError::InvalidConfig)?;
        if infos
            .iter()
            .any(|i| matches!(i.addr(), ConnectionAddr::TcpTls { .. }))
        {
            ensure_tls_provider()?;
        }
        // The client's own retries stay on: they follow MOVED/ASK redirects and failovers,
        // without which every resharding would refuse requests. They may also resend a
        // script whose reply was lost; that is safe because a resent check carries its own
        // random value and the script answers it `Fresh` (see "Retries" above). The check
        // timeout bounds the time all of them take.
        let mut builder = ClusterClient::builder(infos)
            .connection_timeout(self.connection_timeout)
            .response_timeout(self.timeout);
        if let Some(pem) = &self.root_certificates {
            builder = builder.certs(certificates(pem));
        }
        let client = builder.build().map_err(RedisStoreError::InvalidConfig)?;
        let connection = client
            .get_async_connection()
            .await
            .map_err(RedisStoreError::Connect)?;
        Ok(self.finish(Connection::Cluster(connection)))
    }

    /// Uses a connection manager configured by the application. Give it a response timeout:
    /// the check timeout bounds each request anyway, but not the manager's own waiting.
    pub fn build(self, manager: ConnectionManager) -> Result<RedisReplayStore, RedisStoreError> {
        self.check_prefix()?;
        Ok(self.finish(Connection::Single(manager)))
    }

    /// Uses a cluster connection configured by the application. Its retries may stay on: a
    /// resent check is answered as the original (see the [module](self) documentation).
    pub fn build_cluster(
        self,
        connection: ClusterConnection,
    ) -> Result<RedisReplayStore, RedisStoreError> {
        self.check_prefix()?;
        Ok(self.finish(Connection::Cluster(connection)))
    }

    fn check_prefix(&self) -> Result<(), RedisStoreError> {
        let len = self.key_prefix.len();
        if len > MAX_KEY_PREFIX_LEN {
            return Err(RedisStoreError::KeyPrefixTooLong(len));
        }
        Ok(())
    }

    fn finish(self, connection: Connection) -> RedisReplayStore {
        RedisReplayStore {
            inner: Arc::new(Inner {
                connection,
                script: redis::Script::new(SCRIPT),
                health: Health {
                    key_prefix: self.key_prefix.clone().into_boxed_str(),
                    ..Health::default()
                },
                key_prefix: self.key_prefix.into_boxed_str(),
                timeout: self.timeout,
                max_per_key: self.max_per_key,
                // No local share: a local "over quota" would refuse proofs Redis accepts
                // (and would defer to Redis anyway).
                local: self
                    .local_cache
                    .map(|max| MemoryReplayStore::with_limits(max, u64::MAX)),
            }),
        }
    }
}

fn certificates(pem: &[u8]) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.to_vec()),
    }
}

/// The `redis` crate builds its rustls config from the process-wide provider, and panics
/// without one (as when both crypto features are on); install this crate's choice first.
fn ensure_tls_provider() -> Result<(), RedisStoreError> {
    if rustls::crypto::CryptoProvider::get_default().is_some() {
        return Ok(());
    }
    let provider = crate::crypto::tls_provider().ok_or(RedisStoreError::NoTlsProvider)?;
    // Losing a race to another installer is fine: any installed provider will do.
    let _ = (*provider).clone().install_default();
    Ok(())
}

enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Outage bookkeeping: the refusal counter and whether an outage is in progress.
#[derive(Default)]
struct Health {
    /// The store's key prefix, to tell stores apart in the logs.
    key_prefix: Box<str>,
    refusals: AtomicU64,
    failing: AtomicBool,
}

impl Health {
    fn refused(&self, cause: &dyn fmt::Display) {
        let total = self
            .refusals
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        if self.failing.swap(true, Ordering::AcqRel) {
            tracing::debug!(%cause, total, key_prefix = %self.key_prefix, "DPoP replay check failed closed");
        } else {
            tracing::warn!(
                %cause,
                total,
                key_prefix = %self.key_prefix,
                "Redis replay store unavailable: DPoP proofs are refused until it answers"
            );
        }
    }

    fn answered(&self) {
        // Load first: the common, healthy path only reads the flag.
        if self.failing.load(Ordering::Acquire) && self.failing.swap(false, Ordering::AcqRel) {
            let total = self.refusals.load(Ordering::Relaxed);
            tracing::info!(
                total,
                key_prefix = %self.key_prefix,
                "Redis replay store answers again"
            );
        }
    }
}

/// One check in flight: a check dropped before Redis answered (the caller's timeout fired
/// first) was refused all the same, and counts as such.
struct InFlight<'a> {
    health: &'a Health,
    settled: bool,
}

impl InFlight<'_> {
    /// Answered by the local cache: neither a Redis answer nor a refusal for the counter.
    fn settled_locally(mut self) {
        self.settled = true;
    }

    fn settle(mut self, outcome: &Result<ReplayCheck, ReplayStoreError>) {
        self.settled = true;
        match outcome {
            Ok(_) => self.health.answered(),
            Err(e) => self.health.refused(e),
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.health
                .refused(&"caller's timeout expired before Redis answered");
        }
    }
}

struct Inner {
    connection: Connection,
    /// [`SCRIPT`], with its SHA-1 computed once for `EVALSHA`.
    script: redis::Script,
    key_prefix: Box<str>,
    timeout: Duration,
    max_per_key: u64,
    local: Option<MemoryReplayStore>,
    health: Health,
}

/// DPoP replay store on Redis, shared by every instance of an API; see the [module](self)
/// documentation. Cheap to clone; clones share the connection and the counter.
///
/// ``` no_run
/// use std::time::Duration;
/// use tower_oauth_guard::redis::RedisReplayStore;
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisReplayStore::builder()
///     .key_prefix("orders-api:dpop:")          // the same on every instance of one API
///     .timeout(Duration::from_millis(20))      // fail closed (503) sooner
///     .max_per_key(5_000)                      // one client key's share
///     .connect("rediss://redis.internal:6380/")
///     .await?;
/// println!("refusals while Redis was away: {}", store.unavailable_count());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisReplayStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisReplayStore {
    // No connection details: a URL may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner.connection {
            Connection::Single(_) => "single",
            Connection::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisReplayStore")
            .field("connection", &kind)
            .field("key_prefix", &self.inner.key_prefix)
            .field("timeout", &self.inner.timeout)
            .field("max_per_key", &self.inner.max_per_key)
            .field("local_cache", &self.inner.local)
            .field("unavailable_count", &self.unavailable_count())
            .finish()
    }
}

impl RedisReplayStore {
    /// Settings: key prefix, timeouts, TLS roots, local cache, per-key share.
    pub fn builder() -> RedisReplayStoreBuilder {
        RedisReplayStoreBuilder::default()
    }

    /// Connects to one server with the default settings; see [`RedisReplayStoreBuilder::connect`].
    pub async fn connect(url: &str) -> Result<Self, RedisStoreError> {
        Self::builder().connect(url).await
    }

    /// Connects to a cluster with the default settings; see
    /// [`RedisReplayStoreBuilder::connect_cluster`].
    pub async fn cluster<I, S>(urls: I) -> Result<Self, RedisStoreError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::builder().connect_cluster(urls).await
    }

    /// Uses an application-configured connection manager with the default settings.
    pub fn from_connection_manager(manager: ConnectionManager) -> Self {
        RedisReplayStoreBuilder::default().finish(Connection::Single(manager))
    }

    /// How many checks failed closed since this store was made: Redis errors, timeouts, and
    /// checks abandoned by the caller's timeout. Each one was a refused request.
    pub fn unavailable_count(&self) -> u64 {
        self.inner.health.refusals.load(Ordering::Relaxed)
    }

    /// The Redis key that remembers `key`: `<prefix>{<client digest>}:<proof digest>`, in hex
    /// (see the [module](self) documentation). Its expiry is the proof's.
    pub fn redis_key(&self, key: &ReplayKey) -> String {
        let proof = key.to_hex();
        let mut out = self.client_part(key, 1 + proof.len());
        out.push(':');
        out.push_str(&proof);
        out
    }

    /// The sorted set of `key`'s client key's live proofs, for the per-key share.
    fn live_set_key(&self, key: &ReplayKey) -> String {
        let mut out = self.client_part(key, LIVE_SET_SUFFIX.len());
        out.push_str(LIVE_SET_SUFFIX);
        out
    }

    /// `<prefix>{<client digest>}`: the hash tag keeps a client's keys in one cluster slot.
    fn client_part(&self, key: &ReplayKey, extra: usize) -> String {
        let client = key.client_hex();
        let prefix = &self.inner.key_prefix;
        let mut out = String::with_capacity(prefix.len() + client.len() + 2 + extra);
        out.push_str(prefix);
        out.push('{');
        out.push_str(&client);
        out.push('}');
        out
    }

    async fn check(
        &self,
        key: &ReplayKey,
        window: ReplayWindow,
    ) -> Result<ReplayCheck, ReplayStoreError> {
        let inner = &*self.inner;
        let in_flight = InFlight {
            health: &inner.health,
            settled: false,
        };
        // A proof the local cache remembers is a replay: Redis said so (or accepted it) before.
        // Anything else is Redis's to decide.
        if let Some(local) = &inner.local
            && local.remembers(key, window.now)
        {
            in_flight.settled_locally();
            return Ok(ReplayCheck::Replayed);
        }
        let outcome = match new_attempt() {
            Err(e) => Err(e),
            Ok(attempt) => {
                let run = self.run_script(key, window, &attempt);
                match tokio::time::timeout(inner.timeout, run).await {
                    Err(_elapsed) => Err(ReplayStoreError::Timeout),
                    Ok(Err(e)) if e.is_timeout() => Err(ReplayStoreError::Timeout),
                    Ok(Err(e)) => Err(ReplayStoreError::Unavailable(Box::new(e))),
                    Ok(Ok(reply)) => decode(&reply),
                }
            }
        };
        in_flight.settle(&outcome);
        // Remembered locally only once Redis has it: a proof Redis refused as over quota, or
        // could not check, may be sent again and must then reach Redis again.
        if let (Some(local), Ok(ReplayCheck::Fresh | ReplayCheck::Replayed)) =
            (&inner.local, &outcome)
        {
            // A full local cache only costs round trips; the answer is Redis's either way.
            let _ = local.check_and_insert(key, window).await;
        }
        outcome
    }

    /// One atomic round trip: `EVALSHA`; where Redis does not know the script yet (first use,
    /// restart, failover, `SCRIPT FLUSH`) it answers `NOSCRIPT` having run nothing, and the
    /// `redis` crate loads the script and sends `EVALSHA` again, which is no second attempt.
    /// `attempt` is this check's random value: the same value makes the same command, however
    /// often it is sent.
    async fn run_script(
        &self,
        key: &ReplayKey,
        window: ReplayWindow,
        attempt: &str,
    ) -> Result<Value, RedisError> {
        let (until_ms, ttl_ms) = window_millis(window);
        let mut invocation = self.inner.script.key(self.redis_key(key));
        invocation
            .key(self.live_set_key(key))
            .arg(attempt)
            .arg(until_ms)
            .arg(ttl_ms)
            .arg(self.inner.max_per_key)
            .arg(key.to_hex());
        match &self.inner.connection {
            Connection::Single(manager) => invocation.invoke_async(&mut manager.clone()).await,
            Connection::Cluster(connection) => {
                invocation.invoke_async(&mut connection.clone()).await
            }
        }
    }
}

impl ReplayStore for RedisReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        key: &'a ReplayKey,
        window: ReplayWindow,
    ) -> ReplayFuture<'a> {
        Box::pin(self.check(key, window))
    }
}

/// A fresh random value per check, 128 bits in hex: two checks never share one, so a stored
/// value names the check that stored it.
fn new_attempt() -> Result<String, ReplayStoreError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| {
        ReplayStoreError::Unavailable(Box::new(std::io::Error::other(format!(
            "no randomness for the replay check: {e}"
        ))))
    })?;
    let mut hex = String::with_capacity(2 * bytes.len());
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    Ok(hex)
}

/// The script's answer; anything else fails closed.
fn decode(reply: &Value) -> Result<ReplayCheck, ReplayStoreError> {
    match reply {
        Value::Int(FRESH) => Ok(ReplayCheck::Fresh),
        Value::Int(REPLAYED) => Ok(ReplayCheck::Replayed),
        Value::Int(OVER_QUOTA) => Ok(ReplayCheck::OverQuota),
        _ => Err(ReplayStoreError::Unavailable(Box::new(UnexpectedReply))),
    }
}

/// `window.until` in Unix milliseconds and `window.ttl()` in milliseconds, within
/// `0..=MAX_MILLIS` (a window ending before 1970 is simply over: the ttl then decides).
fn window_millis(window: ReplayWindow) -> (u64, u64) {
    let until = u64::try_from(window.until)
        .unwrap_or(0)
        .saturating_mul(1000)
        .min(MAX_MILLIS);
    (until, ttl_millis(window.ttl()).min(MAX_MILLIS))
}

/// Milliseconds, rounded up (forgetting a `jti` early would reopen its window) and at least 1.
fn ttl_millis(ttl: Duration) -> u64 {
    let millis = ttl
        .as_millis()
        .saturating_add(u128::from(!ttl.subsec_nanos().is_multiple_of(1_000_000)));
    u64::try_from(millis).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_rounded_up_to_whole_milliseconds() {
        assert_eq!(ttl_millis(Duration::from_secs(65)), 65_000);
        assert_eq!(ttl_millis(Duration::from_micros(1_500)), 2);
        assert_eq!(ttl_millis(Duration::from_nanos(1)), 1);
        assert_eq!(ttl_millis(Duration::ZERO), 1);
        assert_eq!(ttl_millis(Duration::MAX), u64::MAX);
    }

    #[test]
    fn timeout_is_clamped() {
        let b = RedisReplayStore::builder().timeout(Duration::MAX);
        assert_eq!(b.timeout, MAX_TIMEOUT);
        let b = RedisReplayStore::builder().timeout(Duration::from_millis(20));
        assert_eq!(b.timeout, Duration::from_millis(20));
    }

    #[tokio::test]
    async fn rejects_long_prefix_and_bad_url_before_connecting() {
        let long = "p".repeat(MAX_KEY_PREFIX_LEN + 1);
        let e = RedisReplayStore::builder()
            .key_prefix(long)
            .connect("redis://127.0.0.1:1/")
            .await
            .unwrap_err();
        assert!(matches!(e, RedisStoreError::KeyPrefixTooLong(129)), "{e}");
        let e = RedisReplayStore::connect("http://127.0.0.1/")
            .await
            .unwrap_err();
        assert!(matches!(e, RedisStoreError::InvalidConfig(_)), "{e}");
    }

    #[test]
    fn in_flight_check_dropped_unanswered_counts_as_refusal() {
        let health = Health::default();
        drop(InFlight {
            health: &health,
            settled: false,
        });
        assert_eq!(health.refusals.load(Ordering::Relaxed), 1);
        assert!(health.failing.load(Ordering::Relaxed));
        InFlight {
            health: &health,
            settled: false,
        }
        .settle(&Ok(ReplayCheck::Fresh));
        assert_eq!(health.refusals.load(Ordering::Relaxed), 1);
        assert!(!health.failing.load(Ordering::Relaxed));
        InFlight {
            health: &health,
            settled: false,
        }
        .settle(&Err(ReplayStoreError::Timeout));
        assert_eq!(health.refusals.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn only_the_three_answers_are_decoded() {
        assert_eq!(decode(&Value::Int(1)).unwrap(), ReplayCheck::Fresh);
        assert_eq!(decode(&Value::Int(0)).unwrap(), ReplayCheck::Replayed);
        assert_eq!(decode(&Value::Int(2)).unwrap(), ReplayCheck::OverQuota);
        for other in [Value::Int(3), Value::Int(-1), Value::Okay, Value::Nil] {
            assert!(
                matches!(decode(&other), Err(ReplayStoreError::Unavailable(_))),
                "{other:?}"
            );
        }
    }

    #[test]
    fn window_is_sent_in_milliseconds_within_range() {
        let w = |now, until| ReplayWindow { now, until };
        assert_eq!(
            window_millis(w(1_700_000_000, 1_700_000_071)),
            (1_700_000_071_000, 71_000)
        );
        // Over before 1970: the ttl (at least a second) decides.
        assert_eq!(window_millis(w(-10, -5)), (0, 5_000));
        assert_eq!(window_millis(w(0, 0)), (0, 1_000));
        assert_eq!(
            window_millis(w(i64::MIN, i64::MAX)),
            (MAX_MILLIS, MAX_MILLIS)
        );
    }

    #[test]
    fn attempts_are_random_128_bit_hex() {
        let a = new_attempt().unwrap();
        let b = new_attempt().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }

    /// The Redis of `TOG_REDIS_URL`; `None` (skipped, with a notice) when it is not set,
    /// unless Redis is required (`TOG_REQUIRE_REDIS=1` or CI), as in tests/support.
    fn test_redis_url() -> Option<String> {
        if let Ok(url) = std::env::var("TOG_REDIS_URL") {
            return Some(url);
        }
        let required = std::env::var("TOG_REQUIRE_REDIS").is_ok_and(|v| v == "1")
            || std::env::var_os("CI").is_some();
        assert!(
            !required,
            "TOG_REDIS_URL is not set but Redis is required here (TOG_REQUIRE_REDIS=1 or CI); \
             run the tests through scripts/test, which starts redis-server"
        );
        eprintln!("skipped: TOG_REDIS_URL is not set (scripts/test starts a redis-server)");
        None
    }

    fn live_window() -> ReplayWindow {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let now = i64::try_from(now).unwrap();
        ReplayWindow {
            now,
            until: now + 60,
        }
    }

    async fn test_store(
        url: &str,
        configure: impl FnOnce(RedisReplayStoreBuilder) -> RedisReplayStoreBuilder,
    ) -> RedisReplayStore {
        let prefix = format!("tog:unit:{}:", new_attempt().unwrap());
        configure(RedisReplayStore::builder().key_prefix(prefix))
            .timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .unwrap()
    }

    async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
        redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// What a client resending a command after a lost reply does: the same script call,
    /// with the same attempt value, twice.
    #[tokio::test]
    async fn a_resent_check_is_fresh_again_and_counts_once() {
        let Some(url) = test_redis_url() else { return };
        let store = test_store(&url, |b| b.max_per_key(2)).await;
        let mut raw = raw(&url).await;
        // The first call finds no cached script: EVALSHA answers NOSCRIPT, the script is loaded and run.
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut raw)
            .await
            .unwrap();
        let key = ReplayKey::new("client", "jti-1");
        let window = live_window();
        let attempt = new_attempt().unwrap();
        for send in ["first", "resent"] {
            let reply = store.run_script(&key, window, &attempt).await.unwrap();
            assert_eq!(decode(&reply).unwrap(), ReplayCheck::Fresh, "{send}");
        }
        let live: u64 = redis::cmd("ZCARD")
            .arg(store.live_set_key(&key))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(live, 1, "the resent check counted again");
        // Another check of the same proof is a replay.
        let other = new_attempt().unwrap();
        let reply = store.run_script(&key, window, &other).await.unwrap();
        assert_eq!(decode(&reply).unwrap(), ReplayCheck::Replayed);
        assert_eq!(
            store.check_and_insert(&key, window).await.unwrap(),
            ReplayCheck::Replayed
        );
        // One slot of the two is left: the resend took none.
        let second = ReplayKey::new("client", "jti-2");
        let third = ReplayKey::new("client", "jti-3");
        assert_eq!(
            store.check_and_insert(&second, window).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store.check_and_insert(&third, window).await.unwrap(),
            ReplayCheck::OverQuota
        );
        // Over its share, a resent check of an admitted proof is still fresh.
        let reply = store.run_script(&key, window, &attempt).await.unwrap();
        assert_eq!(decode(&reply).unwrap(), ReplayCheck::Fresh);
        assert_eq!(store.unavailable_count(), 0);
    }

    #[tokio::test]
    async fn local_cache_keeps_the_window_and_defers_to_redis_when_full() {
        let Some(url) = test_redis_url() else { return };
        let store = test_store(&url, |b| b.local_cache(1)).await;
        let mut raw = raw(&url).await;
        let window = live_window();
        let seen = ReplayKey::new("client", "seen");
        assert_eq!(
            store.check_and_insert(&seen, window).await.unwrap(),
            ReplayCheck::Fresh
        );
        // Gone from Redis, still remembered locally until the window ends: the local store
        // got the real window.
        let _: () = redis::cmd("DEL")
            .arg(store.redis_key(&seen))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(
            store.check_and_insert(&seen, window).await.unwrap(),
            ReplayCheck::Replayed
        );
        // The local store is full: Redis decides, both ways.
        let next = ReplayKey::new("client", "next");
        assert_eq!(
            store.check_and_insert(&next, window).await.unwrap(),
            ReplayCheck::Fresh
        );
        assert_eq!(
            store.check_and_insert(&next, window).await.unwrap(),
            ReplayCheck::Replayed
        );
        assert_eq!(store.unavailable_count(), 0);
    }

    #[tokio::test]
    async fn local_cache_remembers_only_what_redis_accepted() {
        let Some(url) = test_redis_url() else { return };
        let store = test_store(&url, |b| b.max_per_key(1).local_cache(100)).await;
        let window = live_window();
        let first = ReplayKey::new("greedy", "1");
        let second = ReplayKey::new("greedy", "2");
        assert_eq!(
            store.check_and_insert(&first, window).await.unwrap(),
            ReplayCheck::Fresh
        );
        // Over the share twice: the refused proof was not remembered, so it is not a replay.
        for _ in 0..2 {
            assert_eq!(
                store.check_and_insert(&second, window).await.unwrap(),
                ReplayCheck::OverQuota
            );
        }
        assert_eq!(
            store.check_and_insert(&first, window).await.unwrap(),
            ReplayCheck::Replayed
        );
    }
}
