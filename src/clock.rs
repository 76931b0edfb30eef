//! Time, injectable so that tests (and replayed RFC vectors) can fix "now".

use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in whole seconds since the Unix epoch.
///
/// Every time-dependent check of the guard (`exp`, `nbf`, the DPoP `iat` window, nonce steps)
/// reads this clock, never the system time directly.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicI64, Ordering};
/// use tower_oauth_guard::Clock;
///
/// /// A clock a test moves by hand.
/// #[derive(Clone, Default)]
/// struct TestClock(Arc<AtomicI64>);
///
/// impl Clock for TestClock {
///     fn now_unix(&self) -> i64 {
///         self.0.load(Ordering::Relaxed)
///     }
/// }
/// # let clock = TestClock::default();
/// # clock.0.store(1_700_000_000, Ordering::Relaxed);
/// # assert_eq!(clock.now_unix(), 1_700_000_000);
/// ```
pub trait Clock: Send + Sync + 'static {
    /// Seconds since 1970-01-01T00:00:00Z.
    fn now_unix(&self) -> i64;
}

/// The system clock.
///
/// ```
/// use tower_oauth_guard::{Clock, SystemClock};
///
/// assert!(SystemClock.now_unix() > 1_700_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix(&self) -> i64 {
        // A clock before 1970 is a broken machine; treating it as 0 makes every token expired,
        // which fails closed.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }
}

/// A clock that always answers the same instant.
///
/// ```
/// use tower_oauth_guard::{Clock, FixedClock, OAuthGuard};
///
/// // Replaying recorded tokens at the instant they were valid:
/// let builder = OAuthGuard::builder().clock(FixedClock(1_767_225_600));
/// # let _ = builder;
/// assert_eq!(FixedClock(5).now_unix(), 5);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now_unix(&self) -> i64 {
        self.0
    }
}
