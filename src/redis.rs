//! A [`ReplayStore`] on Redis: one DPoP replay window shared by every instance of an API
//! (RFC 9449 §11.1).
//!
//! With an in-process store, a proof captured on its way to instance A can be replayed against
//! instance B. [`RedisReplayStore`] remembers each proof in Redis with one atomic command per
//! check, `SET <prefix><sha256(jkt, jti)> 1 NX PX <ttl>`: `OK` means first use, nil means replay.
//! It talks to one server (through the `redis` crate's auto-reconnecting
//! [`ConnectionManager`]) or to a Redis Cluster, over TCP or TLS (`rediss://`, rustls).
//!
//! ```no_run
//! use tower_oauth_guard::OAuthGuard;
//! use tower_oauth_guard::redis::RedisReplayStore;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let replay = RedisReplayStore::connect("redis://10.0.0.5:6379/").await?;
//! let guard = OAuthGuard::builder()
//!     .issuer("https://issuer.example")
//!     .audience("https://api.example")
//!     .jwks_url("https://issuer.example/jwks")
//!     .replay_store(replay.clone()) // keep `replay` for `unavailable_count()`
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Fails closed
//!
//! When Redis cannot answer (unreachable, erroring, or slower than the timeout, 50 ms by
//! default) the check ends in a [`ReplayStoreError`], and the guard refuses the request with
//! `503 Service Unavailable`, `Retry-After: 1` and `WWW-Authenticate: DPoP
//! error="invalid_dpop_proof"` (gRPC: `UNAVAILABLE`). 503 rather than 401, because the proof
//! was not found bad: the server could not check it, which is transient, and monitoring should
//! count it as a server fault. There is no setting that accepts a proof unchecked; the timeouts
//! only make refusals come sooner. Each refusal increments
//! [`unavailable_count`](RedisReplayStore::unavailable_count); the first one of an outage logs a
//! `warn` event and the first answer after it an `info` event (every refusal also gets the
//! guard's own `warn` with reason `dpop_replay_store_unavailable`). The store reconnects by
//! itself: once Redis answers again, so does the guard.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, IntoConnectionInfo, RedisError, TlsCertificates, Value};

use crate::dpop::replay::ReplayFuture;
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

/// Why a [`RedisReplayStore`] could not be set up.
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

/// Redis answered `SET .. NX` with neither `OK` nor nil (a proxy or a module in the way).
#[derive(Debug)]
struct UnexpectedReply;

impl fmt::Display for UnexpectedReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Redis answered SET NX with neither OK nor nil")
    }
}

impl std::error::Error for UnexpectedReply {}

/// Settings of a [`RedisReplayStore`]; start with [`RedisReplayStore::builder`].
#[derive(Clone)]
pub struct RedisReplayStoreBuilder {
    key_prefix: String,
    timeout: Duration,
    connection_timeout: Duration,
    root_certificates: Option<Vec<u8>>,
    local_cache: Option<u64>,
}

impl fmt::Debug for RedisReplayStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisReplayStoreBuilder")
            .field("key_prefix", &self.key_prefix)
            .field("timeout", &self.timeout)
            .field("connection_timeout", &self.connection_timeout)
            .field("root_certificates", &self.root_certificates.is_some())
            .field("local_cache", &self.local_cache)
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
    /// so the guarantee is Redis's. A local store that is full defers to Redis.
    pub fn local_cache(mut self, max_entries: u64) -> Self {
        self.local_cache = Some(max_entries);
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

    /// Uses a cluster connection configured by the application.
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
                health: Health {
                    key_prefix: self.key_prefix.clone().into_boxed_str(),
                    ..Health::default()
                },
                key_prefix: self.key_prefix.into_boxed_str(),
                timeout: self.timeout,
                local: self.local_cache.map(MemoryReplayStore::new),
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
    key_prefix: Box<str>,
    timeout: Duration,
    local: Option<MemoryReplayStore>,
    health: Health,
}

/// DPoP replay store on Redis, shared by every instance of an API; see the [module](self)
/// documentation. Cheap to clone; clones share the connection and the counter.
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
            .field("local_cache", &self.inner.local)
            .field("unavailable_count", &self.unavailable_count())
            .finish()
    }
}

impl RedisReplayStore {
    /// Settings: key prefix, timeouts, TLS roots, local cache.
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

    /// The Redis key that remembers `key`: the prefix, then the hash in hex.
    pub fn redis_key(&self, key: &ReplayKey) -> String {
        let mut out = String::with_capacity(self.inner.key_prefix.len() + 64);
        out.push_str(&self.inner.key_prefix);
        out.push_str(&key.to_hex());
        out
    }

    async fn check(&self, key: &ReplayKey, ttl: Duration) -> Result<ReplayCheck, ReplayStoreError> {
        let inner = &*self.inner;
        let in_flight = InFlight {
            health: &inner.health,
            settled: false,
        };
        if let Some(local) = &inner.local {
            // Only a local "replayed" is final; "fresh" and "full" are Redis's to decide.
            let window = ReplayWindow { now: 0, until: 0 }; // placeholder: see redis helper
            if let Ok(ReplayCheck::Replayed) = local.check_and_insert(key, window).await {
                in_flight.settled_locally();
                return Ok(ReplayCheck::Replayed);
            }
        }
        let outcome = match tokio::time::timeout(inner.timeout, self.set_nx(key, ttl)).await {
            Err(_elapsed) => Err(ReplayStoreError::Timeout),
            Ok(Err(e)) if e.is_timeout() => Err(ReplayStoreError::Timeout),
            Ok(Err(e)) => Err(ReplayStoreError::Unavailable(Box::new(e))),
            Ok(Ok(Value::Okay)) => Ok(ReplayCheck::Fresh),
            Ok(Ok(Value::Nil)) => Ok(ReplayCheck::Replayed),
            Ok(Ok(_)) => Err(ReplayStoreError::Unavailable(Box::new(UnexpectedReply))),
        };
        in_flight.settle(&outcome);
        outcome
    }

    /// `SET key 1 NX PX ttl`: one atomic round trip. Never retried here: a retry after a lost
    /// reply would find our own key and call a fresh proof a replay.
    async fn set_nx(&self, key: &ReplayKey, ttl: Duration) -> Result<Value, RedisError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.redis_key(key))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl));
        match &self.inner.connection {
            Connection::Single(manager) => cmd.query_async(&mut manager.clone()).await,
            Connection::Cluster(connection) => cmd.query_async(&mut connection.clone()).await,
        }
    }
}

impl ReplayStore for RedisReplayStore {
    fn check_and_insert<'a>(
        &'a self,
        key: &'a ReplayKey,
        window: ReplayWindow,
    ) -> ReplayFuture<'a> {
        Box::pin(self.check(key, window.ttl()))
    }
}

/// `PX` milliseconds, rounded up (forgetting a `jti` early would reopen its window) and at
/// least 1 (Redis rejects `PX 0`). Out-of-range values make Redis answer an error: refused.
fn ttl_millis(ttl: Duration) -> u64 {
    let millis = ttl
        .as_millis()
        .saturating_add(u128::from(ttl.subsec_nanos() % 1_000_000 != 0));
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
}
