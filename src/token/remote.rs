//! Issuer keys fetched from `jwks_uri` (feature `fetch`): loaded when the guard is built,
//! refreshed in the background (honouring `Cache-Control: max-age` within bounds), and once
//! per cooldown on an unknown `kid`, in a single flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use crate::algorithm::Algorithm;
use http::Uri;

use super::fetch::HttpClient;
use super::keys::{KeySet, KeysError, VerificationKey};
use crate::limits::MAX_JWKS_LEN;

/// Refresh period when the issuer sends no usable `Cache-Control: max-age`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5 * 60);
/// Lower bound on the refresh period, whatever `max-age` says, so an issuer cannot make us poll.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);
/// Upper bound on the refresh period, so revoked keys do not linger for days.
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 60 * 60);
/// Retry period after a failed background refresh.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);
/// Default minimum time between two refreshes caused by unknown `kid`s.
pub const DEFAULT_UNKNOWN_KID_COOLDOWN: Duration = Duration::from_secs(30);

/// A remote JWK Set with its refresh state.
pub(crate) struct RemoteKeys {
    url: Uri,
    client: HttpClient,
    current: RwLock<Arc<KeySet>>,
    /// Bumped on every successful refresh; lets waiters see that someone else refreshed.
    generation: AtomicU64,
    /// Held while fetching (single flight); remembers when the last fetch started.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    cooldown: Duration,
}

impl RemoteKeys {
    /// Fetches the set once; the guard is not built if the issuer's keys cannot be read.
    pub(crate) async fn load(
        url: Uri,
        client: HttpClient,
        cooldown: Duration,
    ) -> Result<(Arc<Self>, Duration), KeysError> {
        let remote = Arc::new(RemoteKeys {
            url,
            client,
            current: RwLock::new(Arc::new(KeySet::default())),
            generation: AtomicU64::new(0),
            refresh: tokio::sync::Mutex::new(None),
            cooldown,
        });
        let max_age = remote.fetch().await?;
        Ok((remote, max_age))
    }

    fn snapshot(&self) -> (Arc<KeySet>, u64) {
        // A poisoned lock only means a panic elsewhere while swapping an Arc: the Arc is intact.
        let set = match self.current.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        (set, self.generation.load(Ordering::Acquire))
    }

    pub(crate) async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Option<Arc<VerificationKey>> {
        let (set, seen) = self.snapshot();
        if let Some(key) = set.select(kid, alg) {
            return Some(key);
        }
        // Unknown kid: one refresh per cooldown, however many requests ask at once.
        let mut last = self.refresh.lock().await;
        let (set, now) = self.snapshot();
        if now != seen {
            return set.select(kid, alg);
        }
        if last.is_some_and(|t| t.elapsed() < self.cooldown) {
            return None;
        }
        *last = Some(Instant::now());
        let fetched = self.fetch().await;
        crate::metrics::jwks_refreshed(&self.url, fetched.is_ok());
        match fetched {
            Ok(_) => self.snapshot().0.select(kid, alg),
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "JWKS refresh for an unknown kid failed");
                None
            }
        }
    }

    /// Fetches and installs the set; returns the refresh period the issuer asked for.
    async fn fetch(&self) -> Result<Duration, KeysError> {
        let fetched = self
            .client
            .get(&self.url, MAX_JWKS_LEN)
            .await
            .map_err(KeysError::Fetch)?;
        let set = Arc::new(KeySet::from_json(&fetched.body)?);
        tracing::debug!(url = %self.url, keys = set.len(), "JWKS loaded");
        match self.current.write() {
            Ok(mut g) => *g = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(fetched
            .max_age
            .unwrap_or(DEFAULT_REFRESH)
            .clamp(MIN_REFRESH, MAX_REFRESH))
    }

    /// Refreshes in the background until the guard is dropped. Failures keep the known keys.
    pub(crate) fn spawn_refresh(self: &Arc<Self>, first: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut period = first;
            loop {
                tokio::time::sleep(period).await;
                let Some(remote) = weak.upgrade() else { return };
                let mut last = remote.refresh.lock().await;
                *last = Some(Instant::now());
                let fetched = remote.fetch().await;
                crate::metrics::jwks_refreshed(&remote.url, fetched.is_ok());
                period = match fetched {
                    Ok(p) => p,
                    Err(error) => {
                        tracing::warn!(url = %remote.url, %error, "JWKS background refresh failed; keeping known keys");
                        RETRY_AFTER_FAILURE
                    }
                };
            }
        });
    }
}
