//! The tower face of the guard: [`OAuthGuardLayer`] and [`OAuthGuardService`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::access_token::AccessToken;
use crate::challenge::Protocol;
use crate::dpop::DPOP_NONCE;
use crate::guard::{AnonymousRequest, OAuthGuard, Presence};
use crate::policy::{Policy, Requirement};

/// Applies an [`OAuthGuard`] and a route [`Policy`] to a service.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{Router, routing::get};
/// use tower_oauth_guard::{AccessToken, Issuer, OAuthGuard};
///
/// let guard = OAuthGuard::builder()
///     .trust(
///         Issuer::new("https://issuer.example")
///             .audience("https://api.example")
///             .jwks_url("https://issuer.example/jwks"),
///     )
///     .build()
///     .await?;
/// let app: Router = Router::new()
///     .route("/admin", get(|t: AccessToken| async move { t.subject().to_owned() }))
///     .layer(guard.layer().require_scope("admin"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct OAuthGuardLayer {
    pub(crate) guard: OAuthGuard,
    pub(crate) policy: Arc<Policy>,
    pub(crate) presence: Presence,
}

impl OAuthGuard {
    /// A layer that demands a valid token (no scope).
    pub fn layer(&self) -> OAuthGuardLayer {
        OAuthGuardLayer::new(self.clone())
    }
}

impl OAuthGuardLayer {
    pub(crate) fn new(guard: OAuthGuard) -> Self {
        OAuthGuardLayer {
            guard,
            policy: Arc::new(Policy::default()),
            presence: Presence::Required,
        }
    }

    fn policy(mut self, f: impl FnOnce(Policy) -> Policy) -> Self {
        self.policy = Arc::new(f((*self.policy).clone()));
        self
    }

    /// Requires `scope` (403 `insufficient_scope` otherwise).
    pub fn require_scope(self, scope: impl Into<String>) -> Self {
        self.policy(|p| p.scope(scope))
    }

    /// Requires every scope listed.
    pub fn require_scopes<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.policy(|p| scopes.into_iter().fold(p, |p, s| p.scope(s)))
    }

    /// Step-up (RFC 9470): requires the token's `acr` to be exactly one of `values`, else
    /// `401 insufficient_user_authentication` with `acr_values`. See [`Policy::require_acr`].
    pub fn require_acr<I, S>(self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.policy(|p| p.require_acr(values))
    }

    /// Step-up (RFC 9470): requires an `auth_time` at most `max_age` ago, else
    /// `401 insufficient_user_authentication` with `max_age`. See [`Policy::max_auth_age`].
    pub fn max_auth_age(self, max_age: std::time::Duration) -> Self {
        self.policy(|p| p.max_auth_age(max_age))
    }

    /// Requires a claim predicate to hold.
    pub fn require(self, requirement: impl Requirement) -> Self {
        self.policy(|p| p.require(requirement))
    }

    /// Lets requests without credentials through anonymously; presented credentials are still
    /// checked and refused when invalid.
    pub fn optional(mut self) -> Self {
        self.presence = Presence::Optional;
        self
    }
}

impl<S> Layer<S> for OAuthGuardLayer {
    type Service = OAuthGuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OAuthGuardService {
            inner,
            layer: self.clone(),
        }
    }
}

/// Hands an admitted request's identity to the inner service through the request extensions:
/// its token, or for a request admitted without credentials the [`AnonymousRequest`] mark;
/// never both (an outer optional layer's mark does not outlive a token found here).
pub(crate) fn hand_off(
    parts: &mut http::request::Parts,
    token: Option<AccessToken>,
    guard: &OAuthGuard,
    policy: &Arc<Policy>,
    protocol: Protocol,
) {
    if let Some(token) = token {
        parts.extensions.remove::<AnonymousRequest>();
        parts.extensions.insert(token);
    } else {
        let anonymous = AnonymousRequest::new(guard, policy, protocol);
        parts.extensions.insert(anonymous);
    }
}

/// Logs a handler that asked for a token on a request no guard layer saw: a wiring mistake,
/// answered 500. At `error` once per process, then at `debug`, so that clients cannot flood
/// the log through a mis-wired route.
#[cfg(any(feature = "axum", feature = "tonic"))]
pub(crate) fn log_missing_guard(asked_by: &'static str) {
    static LOGGED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if LOGGED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::debug!(
            reason = "no_guard",
            asked_by,
            "no guard layer for this request"
        );
    } else {
        tracing::error!(
            reason = "no_guard",
            asked_by,
            "no guard layer for this request: the route is wired without the guard's layer \
             (logged once; later ones at debug)"
        );
    }
}

/// The service produced by [`OAuthGuardLayer`].
///
/// ```
/// use std::convert::Infallible;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// # use tower_oauth_guard::{Issuer, KeySet, OAuthGuard};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let guard = OAuthGuard::builder()
/// #     .trust(Issuer::new("https://issuer.example").audience("https://api.example").jwks(KeySet::from_json(JWKS)?))
/// #     .build()
/// #     .await?;
/// // Any tower service over `http::Request`, whose response body has a `Default`.
/// let service = ServiceBuilder::new()
///     .layer(guard.layer())
///     .service_fn(|_request: http::Request<()>| async { Ok::<_, Infallible>(http::Response::new(String::from("ok"))) });
/// let response = service.oneshot(http::Request::get("/").body(())?).await?;
/// assert_eq!(response.status(), 401);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct OAuthGuardService<S> {
    inner: S,
    layer: OAuthGuardLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OAuthGuardService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResBody>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The ready service goes into the future; a fresh clone stays for the next call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let protocol = Protocol::of(&request);
            let (mut parts, body) = request.into_parts();
            match layer
                .guard
                .check(&mut parts, &layer.policy, layer.presence)
                .await
            {
                Ok(admission) => {
                    hand_off(
                        &mut parts,
                        admission.token,
                        &layer.guard,
                        &layer.policy,
                        protocol,
                    );
                    let mut response = inner.call(Request::from_parts(parts, body)).await?;
                    // An inner guard's nonce (in its refusal, or its own refresh) is the one
                    // the client must use next: it is not overwritten.
                    if let Some(nonce) = admission
                        .dpop_nonce
                        .and_then(|n| HeaderValue::from_str(&n).ok())
                        && !response.headers().contains_key(DPOP_NONCE)
                    {
                        response.headers_mut().insert(DPOP_NONCE, nonce);
                    }
                    Ok(response)
                }
                Err(refusal) => Ok(layer.guard.refusal_response(&refusal, protocol)),
            }
        })
    }
}
