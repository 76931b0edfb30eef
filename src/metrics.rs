//! What the guard decides, as metrics through the [`metrics`](https://docs.rs/metrics) facade
//! (feature `metrics`). The crate installs no recorder and no exporter: install the one your
//! service uses (Prometheus, StatsD, OpenTelemetry, ...) and these appear in it. Without the
//! feature, or without a recorder, nothing is recorded.
//!
//! | name | kind | labels |
//! |---|---|---|
//! | [`REQUESTS`] `oauth_guard_requests_total` | counter | `outcome` (`admitted`, `refused`), `reason`, `binding`, `issuer` |
//! | [`DURATION`] `oauth_guard_duration_seconds` | histogram | `outcome` |
//! | [`JWKS_REFRESHES`] `oauth_guard_jwks_refreshes_total` | counter | `jwks_uri`, `result` (`ok`, `error`) |
//! | [`REPLAY_STORE_ERRORS`] `oauth_guard_replay_store_errors_total` | counter | `error` (`full`, `timeout`, `unavailable`) |
//! | [`REPLAY_STORE_FULLNESS`] `oauth_guard_replay_store_fullness` | gauge | — |
//!
//! - A request counts once in `oauth_guard_requests_total`, as the outermost guard layer
//!   decided; a stricter layer inside it (a route's own scopes) adds a count only when it
//!   refuses the request, or when it admits a token that an outer optional layer did not see
//!   (server code between the two added it): then the request counts once as `anonymous`
//!   and once as `admitted`.
//! - `reason` is the refusal's stable code ([`Rejection::reason`](crate::Rejection::reason)),
//!   `admitted` for admitted requests, and `anonymous` for a request without credentials that
//!   an optional layer let through unauthenticated (`outcome` `admitted`, `binding` `none`).
//! - `binding` is how the token was bound: `bearer`, `dpop` (RFC 9449) or `mtls` (RFC 8705)
//!   once admitted; for a refusal, the scheme the client presented (`bearer`, `dpop`), or
//!   `none` without credentials.
//! - `issuer` is a trusted issuer's configured `iss`, once a token validated against it, else
//!   `none`: label values never come from unauthenticated input, so an attacker cannot grow
//!   the number of series.
//! - `oauth_guard_duration_seconds` is the time the guard spent on a request (extraction,
//!   validation, binding, policy), not the inner service's.
//! - `oauth_guard_replay_store_fullness` is the share (0 to 1) of its bound that the
//!   in-process [`MemoryReplayStore`](crate::MemoryReplayStore) holds, updated as it sweeps.

/// Requests the guard decided on: a counter.
pub const REQUESTS: &str = "oauth_guard_requests_total";
/// Time the guard spent deciding, in seconds: a histogram.
pub const DURATION: &str = "oauth_guard_duration_seconds";
/// Fetches of an issuer's JWK Set after the first (background, or for an unknown `kid`).
pub const JWKS_REFRESHES: &str = "oauth_guard_jwks_refreshes_total";
/// Requests refused because the DPoP replay store could not answer (fail closed, 503).
pub const REPLAY_STORE_ERRORS: &str = "oauth_guard_replay_store_errors_total";
/// How full the in-process replay store is, 0 to 1: a gauge.
pub const REPLAY_STORE_FULLNESS: &str = "oauth_guard_replay_store_fullness";

/// The label value for "no issuer" and "no credentials".
pub(crate) const NONE: &str = "none";

/// One decision of the guard, as labels.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Decision<'a> {
    pub(crate) admitted: bool,
    pub(crate) reason: &'static str,
    pub(crate) binding: &'static str,
    pub(crate) issuer: Option<&'a std::sync::Arc<str>>,
}

/// When the guard started on a request, if anything records it.
pub(crate) struct Started(#[cfg(feature = "metrics")] std::time::Instant);

impl Started {
    pub(crate) fn now() -> Self {
        Started(
            #[cfg(feature = "metrics")]
            std::time::Instant::now(),
        )
    }

    /// Records one decision and the time it took.
    #[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
    pub(crate) fn decided(self, decision: Decision<'_>) {
        #[cfg(feature = "metrics")]
        {
            let outcome = if decision.admitted {
                "admitted"
            } else {
                "refused"
            };
            let issuer = match decision.issuer {
                Some(issuer) => metrics::SharedString::from(std::sync::Arc::clone(issuer)),
                None => metrics::SharedString::const_str(NONE),
            };
            metrics::counter!(
                REQUESTS,
                "outcome" => outcome,
                "reason" => decision.reason,
                "binding" => decision.binding,
                "issuer" => issuer,
            )
            .increment(1);
            metrics::histogram!(DURATION, "outcome" => outcome).record(self.0.elapsed());
        }
    }
}

/// A fetch of a JWK Set after the first, and whether it succeeded.
#[cfg(feature = "fetch")]
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn jwks_refreshed(jwks_uri: &http::Uri, ok: bool) {
    #[cfg(feature = "metrics")]
    metrics::counter!(
        JWKS_REFRESHES,
        "jwks_uri" => jwks_uri.to_string(),
        "result" => if ok { "ok" } else { "error" },
    )
    .increment(1);
}

/// A request refused because the replay store could not answer: `full`, `timeout` or
/// `unavailable`.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn replay_store_failed(error: &'static str) {
    #[cfg(feature = "metrics")]
    metrics::counter!(REPLAY_STORE_ERRORS, "error" => error).increment(1);
}

/// The in-process replay store's live proofs over its bound.
#[cfg_attr(not(feature = "metrics"), allow(unused_variables))]
pub(crate) fn replay_store_fullness(live: u64, bound: u64) {
    #[cfg(feature = "metrics")]
    metrics::gauge!(REPLAY_STORE_FULLNESS).set(live as f64 / bound.max(1) as f64);
}
