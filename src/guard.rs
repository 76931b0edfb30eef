//! The guard: configuration, its builder, and the pipeline every request goes through.
//!
//! ```text
//! extract credentials -> validate token -> check binding (DPoP / mTLS) -> policy -> inner service
//!                     \__________________ any failure: challenge _________________/
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::request::Parts;
use http::{Response, StatusCode};

use crate::access_token::{AccessToken, Binding};
use crate::challenge::{Challenge, ChallengeParams, ErrorCode, Protocol, Rejection};
use crate::clock::Clock;
use crate::dpop::{Dpop, DpopError, DpopMode, ReplayStoreError};
use crate::extract::{self, CredentialsError, Scheme};
use crate::metadata::{GuardFacts, MetadataBuilder};
use crate::metrics::{self, Decision, Started};
use crate::mtls::{Mtls, MtlsMode, peer};
use crate::policy::Policy;
use crate::token::{TokenError, TokenValidator};

/// Default clock skew tolerated on `exp`, `nbf` and `iat` of access tokens.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Protects a resource server: validates access tokens and their binding, then applies a
/// route policy. Cheap to clone; build one with [`OAuthGuard::builder`] and turn it into tower
/// layers with [`OAuthGuard::layer`].
///
/// ```
/// # const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// # use tower_oauth_guard::{Issuer, KeySet, OAuthGuard};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let guard = OAuthGuard::builder()
///     .trust(Issuer::new("https://issuer.example").audience("https://api.example").jwks(KeySet::from_json(JWKS)?))
///     .build()
///     .await?;
/// // As tower layers: the whole router, and a stricter one on one route.
/// let app: axum::Router = axum::Router::new()
///     .route("/admin", axum::routing::get(|| async { "ok" }).layer(guard.layer().require_scope("admin")))
///     .layer(guard.layer());
/// # let _ = app;
/// // Outside a tower stack, `check` runs the whole pipeline on a request head.
/// let (mut parts, ()) = http::Request::get("/r").body(())?.into_parts();
/// let refusal = guard
///     .check(&mut parts, &tower_oauth_guard::Policy::default(), tower_oauth_guard::Presence::Required)
///     .await
///     .unwrap_err();
/// assert_eq!(refusal.challenge().status, 401); // no credentials: a bare challenge
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct OAuthGuard {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Unique per built guard: tells a nested guard whether an admitted token is its own.
    pub(crate) id: u64,
    pub(crate) validator: TokenValidator,
    /// Issuers whose tokens use other DPoP or mTLS modes than the guard's.
    pub(crate) issuer_modes: HashMap<String, IssuerModes>,
    pub(crate) dpop: Dpop,
    pub(crate) mtls: Mtls,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) challenge: ChallengeParams,
    /// What its metadata document says (RFC 9728), when it has a resource identifier.
    pub(crate) metadata: Option<GuardFacts>,
}

impl std::fmt::Debug for OAuthGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthGuard")
            .field(
                "issuers",
                &self.inner.validator.issuers.keys().collect::<Vec<_>>(),
            )
            .field("dpop", &self.inner.dpop)
            .field("mtls", &self.inner.mtls)
            .finish_non_exhaustive()
    }
}

/// One issuer's overrides of the guard's DPoP and mTLS modes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IssuerModes {
    pub(crate) dpop: Option<DpopMode>,
    pub(crate) mtls: Option<MtlsMode>,
}

/// Hands out [`Inner::id`]s.
static NEXT_GUARD_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh guard identity.
pub(crate) fn next_guard_id() -> u64 {
    NEXT_GUARD_ID.fetch_add(1, Ordering::Relaxed)
}

/// Whether a route serves requests without credentials.
///
/// ```
/// # const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// # use tower_oauth_guard::{Issuer, KeySet, OAuthGuard};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let guard = OAuthGuard::builder()
/// #     .trust(Issuer::new("https://issuer.example").audience("https://api.example").jwks(KeySet::from_json(JWKS)?))
/// #     .build()
/// #     .await?;
/// // A route that also serves anonymous requests: `Admission::token` is `None` for them.
/// let (mut parts, ()) = http::Request::get("/r").body(())?.into_parts();
/// let policy = tower_oauth_guard::Policy::default();
/// let admission = guard.check(&mut parts, &policy, tower_oauth_guard::Presence::Optional).await;
/// assert!(admission.is_ok_and(|a| a.token.is_none()));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Presence {
    /// Credentials are required (401 without them).
    #[default]
    Required,
    /// Requests without credentials pass anonymously; presented credentials are still
    /// checked and refused when invalid.
    Optional,
}

/// What the guard lets through.
///
/// ```
/// # const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// # use tower_oauth_guard::{Issuer, KeySet, OAuthGuard};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let guard = OAuthGuard::builder()
/// #     .trust(Issuer::new("https://issuer.example").audience("https://api.example").jwks(KeySet::from_json(JWKS)?))
/// #     .build()
/// #     .await?;
/// # let (mut parts, ()) = http::Request::get("/r").body(())?.into_parts();
/// # let policy = tower_oauth_guard::Policy::default();
/// match guard.check(&mut parts, &policy, tower_oauth_guard::Presence::Optional).await {
///     Ok(admission) => {
///         if let Some(token) = admission.token {
///             parts.extensions.insert(token); // for the handler
///         }
///         // ... call the handler; add `admission.dpop_nonce` as `DPoP-Nonce` to its response.
///     }
///     Err(refusal) => {
///         let response: http::Response<()> = guard.refusal_response(&refusal, tower_oauth_guard::Protocol::Http);
///         # let _ = response;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Admission {
    /// The validated token; `None` only for anonymous requests on optional routes.
    pub token: Option<AccessToken>,
    /// A fresh `DPoP-Nonce` to add to the response (RFC 9449 §8.2).
    pub dpop_nonce: Option<String>,
}

/// In the request extensions of a request an [`optional`](crate::OAuthGuardLayer::optional)
/// layer let through without credentials: a handler that needs a token after all answers with
/// [`AnonymousRequest::challenge`], the `401` a route requiring one would have given (RFC 6750
/// §3.1, RFC 9449 §7.1, with the guard's realm, schemes, `resource_metadata` and the route's
/// scopes). The axum extractors do so themselves.
///
/// ```
/// use tower_oauth_guard::AnonymousRequest;
///
/// fn handle(request: &http::Request<()>) -> Option<http::Response<String>> {
///     let anonymous = request.extensions().get::<AnonymousRequest>()?;
///     Some(anonymous.challenge())
/// }
/// # let _ = handle;
/// ```
#[derive(Clone, Debug)]
pub struct AnonymousRequest {
    guard: OAuthGuard,
    policy: Arc<Policy>,
    protocol: Protocol,
}

impl AnonymousRequest {
    pub(crate) fn new(guard: &OAuthGuard, policy: &Arc<Policy>, protocol: Protocol) -> Self {
        AnonymousRequest {
            guard: guard.clone(),
            policy: Arc::clone(policy),
            protocol,
        }
    }

    /// The guard's answer to a request without credentials on this route.
    pub fn challenge<B: Default>(&self) -> Response<B> {
        let refusal = self.guard.no_credentials_refusal(&self.policy);
        self.guard.refusal_response(&refusal, self.protocol)
    }
}

/// A refused request: why, and the scheme the client used.
///
/// ```
/// # const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// # use tower_oauth_guard::{Issuer, KeySet, OAuthGuard};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let guard = OAuthGuard::builder()
/// #     .trust(Issuer::new("https://issuer.example").audience("https://api.example").jwks(KeySet::from_json(JWKS)?))
/// #     .build()
/// #     .await?;
/// let (mut parts, ()) = http::Request::get("/r")
///     .header("authorization", "Bearer not-a-jwt")
///     .body(())?
///     .into_parts();
/// let policy = tower_oauth_guard::Policy::default();
/// let refusal = guard.check(&mut parts, &policy, tower_oauth_guard::Presence::Required).await.unwrap_err();
/// assert_eq!(refusal.rejection.reason(), "token_malformed"); // for logs and metrics
/// let response: http::Response<()> = guard.refusal_response(&refusal, tower_oauth_guard::Protocol::Http);
/// assert_eq!(response.status(), 401);
/// assert!(response.headers()["www-authenticate"].to_str()?.contains("invalid_token"));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Refusal {
    /// Why.
    pub rejection: Rejection,
    /// The scheme the client presented, if any.
    pub scheme: Option<Scheme>,
    nonce: Option<String>,
    accepted: Vec<Scheme>,
    /// The trusted issuer of a token that validated before the request was refused.
    issuer: Option<Arc<str>>,
    /// The route's scopes, for a 401 that asks for a token (RFC 6750 §3 `scope`).
    route_scope: Option<String>,
}

impl Refusal {
    /// The challenge for this refusal.
    pub fn challenge(&self) -> Challenge {
        let mut c = Challenge::for_rejection(&self.rejection, self.scheme, &self.accepted);
        c.dpop_nonce = self.nonce.clone();
        let asks_for_token = c.status == StatusCode::UNAUTHORIZED
            && matches!(c.error, None | Some(ErrorCode::InvalidToken));
        if asks_for_token && c.scope.is_none() {
            c.scope = self.route_scope.clone();
        }
        c
    }
}

impl OAuthGuard {
    /// The `WWW-Authenticate` parameters shared by every challenge.
    pub fn challenge_params(&self) -> &ChallengeParams {
        &self.inner.challenge
    }

    /// Its protected resource metadata document (RFC 9728 §2), filled in from its own
    /// configuration; add what only you know and [`build`](MetadataBuilder::build) it. The
    /// guard needs a resource identifier ([`OAuthGuardBuilder::resource`](crate::OAuthGuardBuilder::resource)).
    pub fn metadata(&self) -> MetadataBuilder {
        MetadataBuilder::new(self.inner.metadata.clone())
    }

    /// The clock skew tolerated on token times, and on a step-up `auth_time`.
    fn leeway(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.inner.validator.rules.leeway).unwrap_or(0))
    }

    /// Builds the response for a refusal: HTTP 4xx/503, or a gRPC status.
    pub fn refusal_response<B: Default>(
        &self,
        refusal: &Refusal,
        protocol: Protocol,
    ) -> Response<B> {
        refusal
            .challenge()
            .into_response(&self.inner.challenge, protocol)
    }

    /// The refusal a request without credentials gets on a route that requires a token under
    /// `policy`: `401` with the guard's challenge, no error code (RFC 6750 §3.1, RFC 9449
    /// §7.1), naming the route's scopes.
    pub(crate) fn no_credentials_refusal(&self, policy: &Policy) -> Refusal {
        let now = self.inner.clock.now_unix();
        let refusal = self.refuse(
            CredentialsError::Missing.into(),
            None,
            self.inner.dpop.mode,
            now,
        );
        Refusal {
            route_scope: policy.scope_param(),
            ..refusal
        }
    }

    fn accepted_schemes(mode: DpopMode) -> Vec<Scheme> {
        match mode {
            DpopMode::Disabled => vec![Scheme::Bearer],
            DpopMode::Allowed => vec![Scheme::Bearer, Scheme::Dpop],
            DpopMode::Required => vec![Scheme::Dpop],
        }
    }

    /// The DPoP and mTLS modes that apply to one issuer's tokens.
    fn modes(&self, issuer: &str) -> (DpopMode, MtlsMode) {
        let inner = &*self.inner;
        let modes = inner.issuer_modes.get(issuer).copied().unwrap_or_default();
        (
            modes.dpop.unwrap_or(inner.dpop.mode),
            modes.mtls.unwrap_or(inner.mtls.mode),
        )
    }

    /// Runs the pipeline on a request head. On success the caller inserts the token into the
    /// request extensions (the layer does). With the `metrics` feature, records the decision
    /// ([`crate::metrics`]).
    pub async fn check(
        &self,
        parts: &mut Parts,
        policy: &Policy,
        presence: Presence,
    ) -> Result<Admission, Refusal> {
        let started = Started::now();
        // A request an outer guard layer admitted is counted once, there: this guard counts it
        // again only if it refuses it, or admits a token the outer layer did not see (it let
        // the request through anonymously, and server code between the two added one).
        let outer_token = parts.extensions.get::<AccessToken>().is_some();
        let decided = self
            .run(parts, policy, presence)
            .await
            .map_err(|refusal| Refusal {
                route_scope: policy.scope_param(),
                ..refusal
            });
        if decided.as_ref().is_ok_and(|a| {
            outer_token
                || (a.token.is_none() && parts.extensions.get::<AnonymousRequest>().is_some())
        }) {
            return decided;
        }
        started.decided(match &decided {
            Ok(admission) => Decision {
                admitted: true,
                // An optional route's request without credentials: let through, not
                // authenticated.
                reason: match admission.token {
                    Some(_) => "admitted",
                    None => "anonymous",
                },
                binding: admission
                    .token
                    .as_ref()
                    .map_or(metrics::NONE, |t| binding_label(t.binding())),
                issuer: admission.token.as_ref().map(|t| &t.validated.issuer),
            },
            Err(refusal) => Decision {
                admitted: false,
                reason: refusal.rejection.reason(),
                binding: refusal.scheme.map_or(metrics::NONE, scheme_label),
                issuer: refusal.issuer.as_ref(),
            },
        });
        decided
    }

    /// The pipeline, top to bottom.
    async fn run(
        &self,
        parts: &mut Parts,
        policy: &Policy,
        presence: Presence,
    ) -> Result<Admission, Refusal> {
        let inner = &*self.inner;
        peer::strip_untrusted_client_cert(parts, inner.mtls.client_cert_header.as_ref());
        let now = inner.clock.now_unix();

        // An outer guard layer already admitted this request (and consumed its DPoP proof).
        if let Some(token) = parts.extensions.get::<AccessToken>().cloned() {
            let refuse = |r: Rejection| {
                let scheme = extract::presented_scheme(&parts.headers);
                let mut refusal = self.refuse(r, scheme, self.modes(token.issuer()).0, now);
                refusal.issuer = Some(Arc::clone(&token.validated.issuer));
                refusal
            };
            // Admitted when the head arrived; a handler that reads the body first asks again
            // later, when the token may have expired (same test as `Validated::check`).
            if now.saturating_sub(inner.validator.rules.leeway) >= token.expires_at() {
                return Err(refuse(TokenError::Expired.into()));
            }
            let mut refresh = false;
            if token.admitted_by != inner.id {
                refresh = Box::pin(self.admit_nested(parts, &token, now))
                    .await
                    .map_err(refuse)?;
            }
            policy
                .check(&token, now, self.leeway())
                .map_err(|e| refuse(e.into()))?;
            return Ok(Admission {
                token: Some(token),
                dpop_nonce: refresh.then(|| inner.dpop.fresh_nonce(now)).flatten(),
            });
        }

        let credentials = match extract::credentials(&parts.headers) {
            Ok(c) => c,
            Err(e) if e.is_absent() && presence == Presence::Optional => {
                return Ok(Admission {
                    token: None,
                    dpop_nonce: None,
                });
            }
            Err(e) => {
                let scheme = extract::presented_scheme(&parts.headers);
                return Err(self.refuse(e.into(), scheme, inner.dpop.mode, now));
            }
        };
        let scheme = Some(credentials.scheme);
        let validated = inner
            .validator
            .validate(credentials.token, now)
            .await
            .map_err(|e| self.refuse(e.into(), scheme, inner.dpop.mode, now))?;
        let (dpop_mode, mtls_mode) = self.modes(&validated.issuer);
        let issuer = Arc::clone(&validated.issuer);
        let refuse = |r: Rejection| {
            let mut refusal = self.refuse(r, scheme, dpop_mode, now);
            refusal.issuer = Some(Arc::clone(&issuer));
            refusal
        };

        let mut dpop_nonce = None;
        let mut verified_proof = None;
        let cnf = &validated.confirmation;
        let mut binding = match (credentials.scheme, cnf.jkt.as_deref()) {
            (Scheme::Dpop, _) if dpop_mode == DpopMode::Disabled => {
                return Err(refuse(CredentialsError::UnsupportedScheme.into()));
            }
            (Scheme::Bearer, Some(_)) => return Err(refuse(DpopError::BoundTokenAsBearer.into())),
            (Scheme::Bearer, None) if dpop_mode == DpopMode::Required => {
                return Err(refuse(DpopError::DpopRequired.into()));
            }
            // RFC 9449 §7.2: a DPoP header beside an unbound Bearer token is ignored, whatever
            // it holds; it is not even read.
            (Scheme::Bearer, None) => Binding::Bearer,
            (Scheme::Dpop, None) => return Err(refuse(DpopError::TokenNotBound.into())),
            (Scheme::Dpop, Some(jkt)) => {
                let proof = extract::dpop_proof(&parts.headers)
                    .map_err(|e| refuse(e.into()))?
                    .ok_or_else(|| refuse(DpopError::MissingProof.into()))?;
                let (verified, refresh) =
                    Box::pin(inner.dpop.verify(parts, proof, &validated.digest, jkt, now))
                        .await
                        .map_err(|e| refuse(e.into()))?;
                if refresh {
                    dpop_nonce = inner.dpop.fresh_nonce(now);
                }
                let jkt = verified.jkt.clone();
                verified_proof = Some(Arc::new(verified));
                Binding::Dpop { jkt }
            }
        };
        if let Some(x5t_s256) = inner
            .mtls
            .verify(parts, cnf.x5t_s256.as_deref(), mtls_mode)
            .map_err(|e| refuse(e.into()))?
            && binding == Binding::Bearer
        {
            binding = Binding::Mtls { x5t_s256 };
        }

        let token = AccessToken {
            validated,
            binding,
            admitted_by: inner.id,
            proof: verified_proof,
        };
        policy
            .check(&token, now, self.leeway())
            .map_err(|e| refuse(e.into()))?;
        Ok(Admission {
            token: Some(token),
            dpop_nonce,
        })
    }

    /// A token another (outer) guard admitted: this guard takes it only if it would have
    /// admitted the request itself, but for the replay check of the proof the other guard
    /// consumed. The token is validated again by this guard's issuers, keys and rules (a cache
    /// hit once seen), the binding must be one this guard accepts, the proof must meet this
    /// guard's algorithm, `iat`, `htu` and nonce rules, and the certificate binding is checked
    /// again on this connection. Returns whether a fresh nonce of this guard should be sent.
    ///
    /// Nested guards that both demand nonces must share one [`DpopNonces`](crate::DpopNonces):
    /// one proof carries one nonce, and each guard checks it against its own secret.
    async fn admit_nested(
        &self,
        parts: &Parts,
        token: &AccessToken,
        now: i64,
    ) -> Result<bool, Rejection> {
        let inner = &*self.inner;
        let validated = inner.validator.validate(token.raw(), now).await?;
        let (dpop_mode, mtls_mode) = self.modes(&validated.issuer);
        match (&token.binding, dpop_mode) {
            (Binding::Dpop { .. }, DpopMode::Disabled) => {
                return Err(CredentialsError::UnsupportedScheme.into());
            }
            (Binding::Bearer | Binding::Mtls { .. }, DpopMode::Required) => {
                return Err(DpopError::DpopRequired.into());
            }
            _ => {}
        }
        let refresh = match (&token.binding, token.proof.as_deref()) {
            (Binding::Dpop { .. }, Some(proof)) => inner.dpop.admits_verified(parts, proof, now)?,
            (Binding::Dpop { .. }, None) => return Err(DpopError::MissingProof.into()),
            _ => false,
        };
        inner
            .mtls
            .verify(parts, validated.confirmation.x5t_s256.as_deref(), mtls_mode)?;
        Ok(refresh)
    }

    fn refuse(
        &self,
        rejection: Rejection,
        scheme: Option<Scheme>,
        mode: DpopMode,
        now: i64,
    ) -> Refusal {
        match &rejection {
            Rejection::Credentials(e) if e.is_absent() => {
                tracing::debug!(reason = rejection.reason(), "request refused")
            }
            Rejection::Dpop(DpopError::ReplayStoreUnavailable(error)) => {
                metrics::replay_store_failed(match error {
                    ReplayStoreError::Full => "full",
                    ReplayStoreError::Timeout => "timeout",
                    _ => "unavailable",
                });
                tracing::warn!(reason = rejection.reason(), %error, "request refused")
            }
            _ => tracing::info!(reason = rejection.reason(), "request refused"),
        }
        let nonce = match &rejection {
            r if r.wants_dpop_nonce() => self.inner.dpop.fresh_nonce(now),
            _ => None,
        };
        Refusal {
            rejection,
            scheme,
            nonce,
            accepted: Self::accepted_schemes(mode),
            issuer: None,
            route_scope: None,
        }
    }
}

/// The `binding` label of an admitted request ([`crate::metrics`]).
fn binding_label(binding: &Binding) -> &'static str {
    match binding {
        Binding::Bearer => "bearer",
        Binding::Dpop { .. } => "dpop",
        Binding::Mtls { .. } => "mtls",
    }
}

/// The `binding` label of a refused request: the scheme presented ([`crate::metrics`]).
fn scheme_label(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::Bearer => "bearer",
        Scheme::Dpop => "dpop",
    }
}
