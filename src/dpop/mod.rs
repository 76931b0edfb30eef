//! Step 3a: DPoP, demonstrating proof of possession (RFC 9449).
//!
//! A DPoP-bound token carries `cnf.jkt`, the thumbprint of the client's key. Each request carries
//! a fresh proof JWT signed by that key over the method and URI (and the token's hash). A thief
//! who has the token but not the key cannot make proofs; a captured proof cannot be replayed
//! (unique `jti`, short `iat` window, optional server nonces).

pub mod htu;
pub mod nonce;
pub mod origin;
pub mod proof;
mod proof_keys;
pub mod replay;

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;

use origin::RequestHtus;

pub use htu::HtuError;
pub use nonce::{DpopNonces, NonceCheck};
pub use origin::PublicUri;
pub use proof::{ProofError, ProofPolicy, VerifiedProof};
pub use replay::{
    MemoryReplayStore, ReplayCheck, ReplayKey, ReplayStore, ReplayStoreError, ReplayWindow,
};

/// `DPoP-Nonce` response header (RFC 9449 §8.1).
pub const DPOP_NONCE: http::HeaderName = http::HeaderName::from_static("dpop-nonce");

/// How long a replay-store check may take before the request fails closed.
pub const DEFAULT_REPLAY_TIMEOUT: Duration = Duration::from_millis(50);
/// Default margin for clock skew between instances that share a replay store: a proof is
/// remembered this much longer than the last instant this instance could accept it.
pub const DEFAULT_REPLAY_SKEW_MARGIN: Duration = Duration::from_secs(5);

/// Whether DPoP is off, accepted beside Bearer, or demanded (RFC 9449 §7.2).
///
/// Off unless configured: accepting DPoP needs the API's public origin
/// ([`PublicUri`]), which only the deployment knows.
///
/// ```
/// use tower_oauth_guard::{DpopMode, Issuer};
///
/// // The guard's mode comes with its settings (`Dpop::allowed` / `Dpop::required`); one issuer
/// // may differ from it.
/// let legacy = Issuer::new("https://legacy.example").dpop(DpopMode::Disabled);
/// # let _ = legacy;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DpopMode {
    /// Only `Bearer`. Tokens bound with `cnf.jkt` are still refused when presented as Bearer.
    #[default]
    Disabled,
    /// `Bearer` and `DPoP` both accepted; DPoP-bound tokens must come with a proof.
    Allowed,
    /// Only DPoP-bound tokens with a valid proof.
    Required,
}

/// Why the DPoP binding failed.
///
/// ```
/// use tower_oauth_guard::{Rejection, DpopError};
///
/// // Every refusal has a stable reason code, for logs and metrics.
/// fn log(rejection: &Rejection) {
///     if let Rejection::Dpop(e) = rejection {
///         println!("refused: {} ({e})", e.reason());
///     }
/// }
/// # let _ = log;
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum DpopError {
    /// The proof itself is invalid (RFC 9449 §4.3).
    Proof(ProofError),
    /// `Authorization: DPoP` without a `DPoP` proof header.
    MissingProof,
    /// The proof was seen before (RFC 9449 §11.1).
    Replayed,
    /// The replay store could not answer in time; the request fails closed.
    ReplayStoreUnavailable(ReplayStoreError),
    /// The proof's key holds its whole share of the replay store (too many live proofs).
    ReplayQuotaExceeded,
    /// A nonce is required and the proof has none (RFC 9449 §8).
    NonceRequired,
    /// The nonce was not issued by this server (or its peers).
    NonceInvalid,
    /// The nonce is too old.
    NonceStale,
    /// The server could not tell its own URI for `htu` (bad `Host` or forwarded headers).
    RequestUri(HtuError),
    /// The proof key is not the key the token is bound to (`cnf.jkt`, RFC 9449 §6.1).
    KeyMismatch,
    /// A DPoP-bound token presented with the `Bearer` scheme (RFC 9449 §7.2).
    BoundTokenAsBearer,
    /// `Authorization: DPoP` with a token that carries no `cnf.jkt`.
    TokenNotBound,
    /// DPoP is required and the request used `Bearer`.
    DpopRequired,
}

impl DpopError {
    /// A stable reason code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DpopError::Proof(e) => e.reason(),
            DpopError::MissingProof => "dpop_proof_missing",
            DpopError::Replayed => "dpop_proof_replayed",
            DpopError::ReplayStoreUnavailable(_) => "dpop_replay_store_unavailable",
            DpopError::ReplayQuotaExceeded => "dpop_replay_quota_exceeded",
            DpopError::NonceRequired => "dpop_nonce_required",
            DpopError::NonceInvalid => "dpop_nonce_invalid",
            DpopError::NonceStale => "dpop_nonce_stale",
            DpopError::RequestUri(_) => "dpop_request_uri",
            DpopError::KeyMismatch => "dpop_jkt_mismatch",
            DpopError::BoundTokenAsBearer => "dpop_bound_token_as_bearer",
            DpopError::TokenNotBound => "dpop_token_not_bound",
            DpopError::DpopRequired => "dpop_required",
        }
    }
}

impl std::fmt::Display for DpopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DpopError::Proof(e) => e.fmt(f),
            DpopError::MissingProof => f.write_str("DPoP proof missing"),
            DpopError::Replayed => f.write_str("DPoP proof replayed"),
            DpopError::ReplayStoreUnavailable(_) => f.write_str("DPoP replay check unavailable"),
            DpopError::ReplayQuotaExceeded => {
                f.write_str("too many live DPoP proofs for this key; retry later")
            }
            DpopError::NonceRequired => f.write_str("resource server requires nonce in DPoP proof"),
            DpopError::NonceInvalid | DpopError::NonceStale => {
                f.write_str("DPoP nonce invalid or expired")
            }
            DpopError::RequestUri(e) => write!(f, "cannot determine the request URI: {e}"),
            DpopError::KeyMismatch => f.write_str("DPoP key does not match the token binding"),
            DpopError::BoundTokenAsBearer => f.write_str("DPoP-bound token used as a bearer token"),
            DpopError::TokenNotBound => f.write_str("token is not DPoP-bound"),
            DpopError::DpopRequired => f.write_str("DPoP-bound token required"),
        }
    }
}

impl std::error::Error for DpopError {}

/// A guard's DPoP settings (RFC 9449): the mode, the public origin that `htu` must name, the
/// proof rules, server nonces and the replay store.
///
/// Accepting DPoP needs the API's public origin, so both constructors take it:
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use tower_oauth_guard::{BaseUrl, Dpop, DpopNonces, NonceSecret, PublicUri};
///
/// let dpop = Dpop::required(PublicUri::fixed(BaseUrl::parse("https://api.example")?))
///     .nonces(DpopNonces::new(NonceSecret::generate()?))
///     .replay_timeout(Duration::from_millis(20));
/// # let _ = dpop;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Dpop {
    pub(crate) mode: DpopMode,
    pub(crate) policy: ProofPolicy,
    pub(crate) nonces: Option<DpopNonces>,
    pub(crate) replay: Arc<dyn ReplayStore>,
    pub(crate) replay_timeout: Duration,
    pub(crate) replay_skew_margin: Duration,
    /// Where `htu`'s origin comes from; `None` only while DPoP is off.
    pub(crate) public_uri: Option<PublicUri>,
    /// Clients' proof keys, parsed once per client.
    pub(crate) proof_keys: Arc<proof_keys::ProofKeys<proof::ProofKey>>,
}

impl std::fmt::Debug for Dpop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dpop")
            .field("mode", &self.mode)
            .field("nonces", &self.nonces.is_some())
            .field("public_uri", &self.public_uri)
            .finish_non_exhaustive()
    }
}

impl Dpop {
    /// `Bearer` and `DPoP` both accepted (RFC 9449 §7.2); DPoP-bound tokens need a proof
    /// whose `htu` names `public_uri`.
    pub fn allowed(public_uri: PublicUri) -> Self {
        Dpop {
            mode: DpopMode::Allowed,
            public_uri: Some(public_uri),
            ..Dpop::disabled()
        }
    }

    /// Only DPoP-bound tokens with a valid proof whose `htu` names `public_uri`.
    pub fn required(public_uri: PublicUri) -> Self {
        Dpop {
            mode: DpopMode::Required,
            ..Dpop::allowed(public_uri)
        }
    }

    /// Proof rules: algorithms and `iat` window (RFC 9449 §4.3, §11.1).
    pub fn proof_policy(mut self, policy: ProofPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Require server-issued nonces in proofs (RFC 9449 §8).
    pub fn nonces(mut self, nonces: DpopNonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// Where `jti`s are remembered (default: [`MemoryReplayStore`], in process). Share one
    /// store between the instances behind one origin.
    pub fn replay_store(mut self, store: impl ReplayStore) -> Self {
        self.replay = Arc::new(store);
        self
    }

    /// How long a replay check may take before the request fails closed (default 50 ms).
    pub fn replay_timeout(mut self, timeout: Duration) -> Self {
        self.replay_timeout = timeout;
        self
    }

    /// How much longer than this instance's own acceptance window a shared replay store
    /// keeps each proof, for clock skew between instances (default 5 s; RFC 9449 §11.1).
    pub fn replay_skew_margin(mut self, margin: Duration) -> Self {
        self.replay_skew_margin = margin;
        self
    }

    /// DPoP off: the guard's setting until [`OAuthGuardBuilder::dpop`](crate::OAuthGuardBuilder::dpop).
    pub(crate) fn disabled() -> Self {
        Dpop {
            mode: DpopMode::Disabled,
            policy: ProofPolicy::default(),
            nonces: None,
            replay: Arc::new(MemoryReplayStore::default()),
            replay_timeout: DEFAULT_REPLAY_TIMEOUT,
            replay_skew_margin: DEFAULT_REPLAY_SKEW_MARGIN,
            public_uri: None,
            proof_keys: Arc::default(),
        }
    }
    /// The `algs` challenge parameter (RFC 9449 §7.1).
    pub(crate) fn algs(&self) -> String {
        self.alg_names().join(" ")
    }

    /// The accepted proof algorithms, by name (also RFC 9728 §2
    /// `dpop_signing_alg_values_supported`).
    pub(crate) fn alg_names(&self) -> Vec<String> {
        self.policy
            .algorithms
            .iter()
            .map(|a| a.name().to_owned())
            .collect()
    }

    /// How long a proof with this `iat` must be remembered (RFC 9449 §11.1): until the last
    /// instant any instance could accept it, plus the skew margin. Acceptance compares whole
    /// seconds (`now` ≤ `iat` + `max_age` + `leeway`), so the proof stays acceptable up to one
    /// second after that sum: the window ends one second later.
    pub(crate) fn replay_window(&self, iat: i64, now: i64) -> ReplayWindow {
        let until = iat
            .saturating_add(proof::whole_seconds(self.policy.max_age))
            .saturating_add(proof::whole_seconds(self.policy.leeway))
            .saturating_add(1)
            .saturating_add(proof::whole_seconds(self.replay_skew_margin));
        ReplayWindow { now, until }
    }

    /// A fresh nonce for a challenge or a success response.
    pub(crate) fn fresh_nonce(&self, now: i64) -> Option<String> {
        self.nonces
            .as_ref()
            .map(|n| n.issue(u64::try_from(now).unwrap_or(0)))
    }

    /// How a failed proof check is answered: with nonces on, a stale proof is answered with a
    /// nonce to use (RFC 9449 §9); anything else is the proof's own fault.
    fn proof_failure(&self, e: ProofError) -> DpopError {
        match e {
            ProofError::IatTooOld if self.nonces.is_some() => DpopError::NonceStale,
            e => DpopError::Proof(e),
        }
    }

    /// The server nonce check (RFC 9449 §9): `Ok(refresh)` when nonces are off or `nonce` is
    /// valid; `refresh` asks for a new nonce in the response (§8.2).
    fn check_nonce(&self, nonce: Option<&str>, now: i64) -> Result<bool, DpopError> {
        let Some(nonces) = &self.nonces else {
            return Ok(false);
        };
        let nonce = nonce.ok_or(DpopError::NonceRequired)?;
        match nonces.check(nonce, u64::try_from(now).unwrap_or(0)) {
            NonceCheck::Valid { refresh_soon } => Ok(refresh_soon),
            NonceCheck::Invalid => Err(DpopError::NonceInvalid),
            NonceCheck::Stale => Err(DpopError::NonceStale),
        }
    }

    /// Whether a proof another guard verified (and consumed) for this request also meets this
    /// guard's rules: algorithm, `iat` window, `htu` against this guard's public origin, and
    /// nonce. The replay check is the other guard's; this guard cannot repeat it. Returns
    /// whether a fresh nonce should be sent.
    pub(crate) fn admits_verified(
        &self,
        parts: &Parts,
        verified: &VerifiedProof,
        now: i64,
    ) -> Result<bool, DpopError> {
        if !self.policy.algorithms.contains(&verified.alg) {
            return Err(DpopError::Proof(ProofError::AlgorithmNotAllowed));
        }
        proof::check_iat(verified.iat, now, &self.policy).map_err(|e| self.proof_failure(e))?;
        let public = self
            .public_uri
            .as_ref()
            .ok_or(DpopError::RequestUri(HtuError::UntrustedPeer))?;
        let htus = RequestHtus::of(parts, public).map_err(DpopError::RequestUri)?;
        if !htus.named_by(&verified.htu) {
            return Err(DpopError::Proof(ProofError::HtuMismatch));
        }
        self.check_nonce(verified.nonce.as_deref(), now)
    }

    /// Checks the proof for this request and the token's `cnf.jkt` (RFC 9449 §4.3, §7.1).
    /// Returns the verified proof and whether a fresh nonce should be sent.
    pub(crate) async fn verify(
        &self,
        parts: &Parts,
        proof: &str,
        token_digest: &[u8; 32],
        jkt: &str,
        now: i64,
    ) -> Result<(VerifiedProof, bool), DpopError> {
        let public = self
            .public_uri
            .as_ref()
            .ok_or(DpopError::RequestUri(HtuError::UntrustedPeer))?;
        let htus = RequestHtus::of(parts, public).map_err(DpopError::RequestUri)?;
        let htu_matches = |claimed: &str| htus.named_by(claimed);
        let (verified, client) = proof::verify_proof_matching(
            proof,
            parts.method.as_str(),
            htu_matches,
            Some(token_digest),
            &self.policy,
            now,
            Some(&self.proof_keys),
        )
        .map_err(|e| self.proof_failure(e))?;
        let refresh_nonce = self.check_nonce(verified.nonce.as_deref(), now)?;
        if !proof::jkt_matches(jkt, &verified.jkt) {
            return Err(DpopError::KeyMismatch);
        }
        // Last, so that invalid proofs cannot fill the store.
        let key = ReplayKey::for_client(client.client_digest(), &verified.jkt, &verified.jti);
        let check = tokio::time::timeout(
            self.replay_timeout,
            self.replay
                .check_and_insert(&key, self.replay_window(verified.iat, now)),
        )
        .await
        .unwrap_or(Err(ReplayStoreError::Timeout))
        .map_err(DpopError::ReplayStoreUnavailable)?;
        match check {
            ReplayCheck::Fresh => Ok((verified, refresh_nonce)),
            ReplayCheck::Replayed => Err(DpopError::Replayed),
            ReplayCheck::OverQuota => Err(DpopError::ReplayQuotaExceeded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use htu::BaseUrl;
    use nonce::NonceSecret;
    use proptest::prelude::*;

    fn config(max_age: u64, max_future: u64, leeway: u64, margin: u64) -> Dpop {
        Dpop {
            policy: ProofPolicy {
                max_age: Duration::from_secs(max_age),
                max_future: Duration::from_secs(max_future),
                leeway: Duration::from_secs(leeway),
                ..ProofPolicy::default()
            },
            replay_skew_margin: Duration::from_secs(margin),
            ..Dpop::disabled()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// RFC 9449 §11.1: for any `iat` and any two arrivals at which the proof is
        /// acceptable, the window computed at the first still covers the second.
        #[test]
        fn the_window_covers_every_instant_the_proof_is_acceptable(
            iat in -1_000_000_000i64..4_000_000_000,
            first in -200i64..200,
            later in 0i64..400,
            max_age in 0u64..600,
            max_future in 0u64..60,
            leeway in 0u64..30,
            margin in 0u64..30,
        ) {
            let dpop = config(max_age, max_future, leeway, margin);
            let t1 = iat.saturating_add(first);
            let t2 = t1.saturating_add(later);
            prop_assume!(proof::check_iat(iat, t1, &dpop.policy).is_ok());
            let window = dpop.replay_window(iat, t1);
            prop_assert!(window.until > t1);
            if proof::check_iat(iat, t2, &dpop.policy).is_ok() {
                prop_assert!(window.until > t2, "acceptable at {t2}, forgotten at {}", window.until);
                // Another instance whose clock is behind by up to the margin still finds it.
                prop_assert!(window.until >= t2.saturating_add(1).saturating_add(margin as i64));
            }
        }

        /// The in-process store, driven by a sequence of (proof, arrival) pairs in time order,
        /// accepts each proof at most once while it can be accepted.
        #[test]
        fn the_memory_store_accepts_each_proof_at_most_once(
            arrivals in proptest::collection::vec((0usize..6, -10i64..120), 1..60),
            iats in proptest::collection::vec(-70i64..70, 6),
        ) {
            const T0: i64 = 1_700_000_000;
            let dpop = config(60, 5, 0, 5);
            let store = MemoryReplayStore::with_limits(1_000, 1_000);
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut arrivals = arrivals;
            arrivals.sort_by_key(|(_, t)| *t);
            let mut fresh = [0u32; 6];
            for (proof, offset) in arrivals {
                let now = T0 + offset;
                let iat = T0 + iats[proof];
                if proof::check_iat(iat, now, &dpop.policy).is_err() {
                    continue;
                }
                let key = ReplayKey::new("client", &proof.to_string());
                let check = runtime
                    .block_on(store.check_and_insert(&key, dpop.replay_window(iat, now)))
                    .unwrap();
                if check == ReplayCheck::Fresh {
                    fresh[proof] += 1;
                }
            }
            prop_assert!(fresh.iter().all(|n| *n <= 1), "{fresh:?}");
        }

        /// Neither shortcut changes the answer: a claim names the request exactly when its
        /// normal form is one of the request's URIs built and normalized in full, whether the
        /// claim is in normal form or not and whether the request's path is or not; and the
        /// request is refused for the same reasons.
        #[test]
        fn htu_shortcuts_agree_with_normalizing_everything(
            claim in "(https?|HTTPS?)://(api\\.example|API\\.EXAMPLE|%61pi\\.example|\\[::1\\])(:443|:80|:8443|:)?(/v1)?(/|/r|/%72|/a/\\.\\./r|/r%2F|/r:@!|//r|)",
            path in "(/|/r|/%72|/a/\\.\\./r|/r%2F|/r:@!|//r|/r%2f|/%zz|/r\\?q=1|/\\.)",
            prefix in proptest::sample::select(vec!["", "/v1", "/V1"]),
            // Some: the path is padded to end within a few octets of `MAX_HTU_LEN` once
            // prefixed with the first base URL.
            near_the_bound in proptest::option::weighted(0.2, -4i64..4),
        ) {
            let bases = vec![
                htu::BaseUrl::parse(&format!("https://api.example{prefix}")).unwrap(),
                htu::BaseUrl::parse("HTTP://API.example:80/").unwrap(),
                htu::BaseUrl::parse("https://[0:0::1]:8443").unwrap(),
            ];
            let public = PublicUri::Fixed(bases);
            let first = format!("https://api.example{prefix}").len() + path.len();
            let path = match near_the_bound {
                Some(d) => {
                    let pad = (crate::limits::MAX_HTU_LEN as i64 - first as i64 + d).max(0);
                    format!("{path}{}", "a".repeat(pad as usize))
                }
                None => path,
            };
            let Ok(request) = http::Request::get(&path).body(()) else {
                return Err(proptest::test_runner::TestCaseError::reject("not a request target"));
            };
            let (parts, ()) = request.into_parts();
            let slow = origin::request_htus(&parts, &public);
            let fast = RequestHtus::of(&parts, &public);
            match (&slow, &fast) {
                (Ok(htus), Ok(fast)) => {
                    let named = htu::normalize_htu(&claim).is_ok_and(|c| htus.contains(&c));
                    prop_assert_eq!(fast.named_by(&claim), named, "{} {}", claim, path);
                    for h in htus {
                        prop_assert!(fast.named_by(h), "{} {}", h, path);
                    }
                }
                (Err(slow), Err(fast)) => prop_assert_eq!(slow, fast),
                _ => prop_assert!(false, "{path}: {slow:?} but {:?}", fast.as_ref().err()),
            }
        }
    }

    /// A proof another guard verified for `GET https://api.example/r` at `iat`.
    fn verified(alg: crate::Algorithm, iat: i64, nonce: Option<String>) -> VerifiedProof {
        VerifiedProof {
            jkt: "jkt".into(),
            jti: "jti".into(),
            iat,
            nonce,
            htm: "GET".into(),
            htu: "https://API.example:443/r".into(),
            alg,
        }
    }

    #[test]
    fn a_proof_another_guard_verified_must_meet_this_guards_rules() {
        use crate::Algorithm::{ES256, ES384};
        const NOW: i64 = 1_700_000_000;
        let parts = http::Request::get("/r").body(()).unwrap().into_parts().0;
        let public = PublicUri::fixed(BaseUrl::parse("https://api.example").unwrap());
        let dpop = Dpop {
            policy: ProofPolicy {
                algorithms: vec![ES256],
                max_age: Duration::from_secs(10),
                ..ProofPolicy::default()
            },
            public_uri: Some(public),
            ..Dpop::disabled()
        };
        assert_eq!(
            dpop.admits_verified(&parts, &verified(ES256, NOW, None), NOW)
                .ok(),
            Some(false)
        );
        // Algorithm this guard does not allow.
        assert!(matches!(
            dpop.admits_verified(&parts, &verified(ES384, NOW, None), NOW),
            Err(DpopError::Proof(ProofError::AlgorithmNotAllowed))
        ));
        // Older than this guard's window, or further ahead.
        assert!(matches!(
            dpop.admits_verified(&parts, &verified(ES256, NOW - 11, None), NOW),
            Err(DpopError::Proof(ProofError::IatTooOld))
        ));
        assert!(matches!(
            dpop.admits_verified(&parts, &verified(ES256, NOW + 6, None), NOW),
            Err(DpopError::Proof(ProofError::IatInFuture))
        ));
        // Another origin.
        let elsewhere = Dpop {
            public_uri: Some(PublicUri::fixed(
                BaseUrl::parse("https://b.example").unwrap(),
            )),
            ..Dpop::disabled()
        };
        assert!(matches!(
            elsewhere.admits_verified(&parts, &verified(ES256, NOW, None), NOW),
            Err(DpopError::Proof(ProofError::HtuMismatch))
        ));
        // Nonces: this guard's own, or none.
        let secret = NonceSecret::from_bytes(&[7; 32]).unwrap();
        let with_nonces = Dpop {
            nonces: Some(DpopNonces::new(secret)),
            ..dpop
        };
        let now = u64::try_from(NOW).unwrap();
        let nonce = with_nonces.nonces.as_ref().unwrap().issue(now);
        assert!(matches!(
            with_nonces.admits_verified(&parts, &verified(ES256, NOW, None), NOW),
            Err(DpopError::NonceRequired)
        ));
        let foreign = DpopNonces::new(NonceSecret::from_bytes(&[8; 32]).unwrap()).issue(now);
        assert!(matches!(
            with_nonces.admits_verified(&parts, &verified(ES256, NOW, Some(foreign)), NOW),
            Err(DpopError::NonceInvalid)
        ));
        assert!(
            with_nonces
                .admits_verified(&parts, &verified(ES256, NOW, Some(nonce)), NOW)
                .is_ok()
        );
    }

    #[test]
    fn the_window_saturates_instead_of_panicking() {
        let dpop = Dpop {
            policy: ProofPolicy {
                max_age: Duration::MAX,
                max_future: Duration::MAX,
                leeway: Duration::MAX,
                ..ProofPolicy::default()
            },
            replay_skew_margin: Duration::MAX,
            ..Dpop::disabled()
        };
        assert_eq!(dpop.replay_window(i64::MAX, 0).until, i64::MAX);
        assert_eq!(dpop.replay_window(0, 0).until, i64::MAX);
    }
}
