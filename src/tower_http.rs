//! tower-http's authorization middleware (feature `tower-http`): the guard as an
//! `AsyncAuthorizeRequest`; see [`OAuthGuardAuthorizer`].

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use tower_http::auth::AsyncAuthorizeRequest;

use crate::challenge::Protocol;
use crate::guard::OAuthGuard;
use crate::guard::Presence;
use crate::layer::{OAuthGuardLayer, hand_off};
use crate::policy::Policy;

/// An [`OAuthGuard`] with a route policy, as tower-http's [`AsyncAuthorizeRequest`]; made by
/// [`OAuthGuardLayer::authorizer`](crate::OAuthGuardLayer::authorizer). `ResBody` is the body
/// type of the guarded service's responses, inferred from that service.
///
/// tower-http integration (feature `tower-http`): the guard as tower-http's
/// [`AsyncAuthorizeRequest`], for [`AsyncRequireAuthorizationLayer`].
///
/// [`OAuthGuardLayer::authorizer`] turns a configured layer into an [`OAuthGuardAuthorizer`], so the
/// route's scopes, claim requirements and `optional` carry over:
///
/// ```no_run
/// use axum::{Router, routing::get};
/// use tower_http::auth::AsyncRequireAuthorizationLayer;
/// use tower_oauth_guard::{AccessToken, Issuer, OAuthGuard};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
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
///     .layer(AsyncRequireAuthorizationLayer::new(
///         guard.layer().require_scope("admin").authorizer(),
///     ));
/// # Ok(()) }
/// ```
///
/// An admitted request reaches the inner service with its [`AccessToken`] in the request
/// extensions; a refused one gets the guard's answer (status and `WWW-Authenticate`, RFC 6750
/// §3, or a trailers-only gRPC status for gRPC requests), exactly as from [`OAuthGuardLayer`].
///
/// # One difference from [`OAuthGuardLayer`]
///
/// [`AsyncAuthorizeRequest`] has no say over a successful response, so the authorizer cannot add
/// the fresh `DPoP-Nonce` (RFC 9449 §8.2) that the guard sends when a proof's nonce, still
/// accepted, is no longer the current one. Clients get new nonces only through refusals: once
/// their nonce is too old, the request is refused with `use_dpop_nonce` and a fresh `DPoP-Nonce`
/// (RFC 9449 §8.1), and the client retries with it. With server nonces on, that costs a client
/// one extra round trip per nonce lifetime; [`OAuthGuardLayer`] avoids it.
///
/// [`AccessToken`]: crate::AccessToken
/// [`OAuthGuardLayer`]: crate::OAuthGuardLayer
/// [`OAuthGuardLayer::authorizer`]: crate::OAuthGuardLayer::authorizer
/// [`AsyncRequireAuthorizationLayer`]: tower_http::auth::AsyncRequireAuthorizationLayer
pub struct OAuthGuardAuthorizer<ResBody> {
    guard: OAuthGuard,
    policy: Arc<Policy>,
    presence: Presence,
    _body: PhantomData<fn() -> ResBody>,
}

impl OAuthGuardLayer {
    /// This layer's guard and policy as tower-http's `AsyncAuthorizeRequest`, for
    /// `AsyncRequireAuthorizationLayer`. See [`OAuthGuardAuthorizer`] for the one
    /// difference from the layer itself.
    pub fn authorizer<ResBody>(self) -> OAuthGuardAuthorizer<ResBody> {
        OAuthGuardAuthorizer::new(self.guard, self.policy, self.presence)
    }
}

impl<ResBody> OAuthGuardAuthorizer<ResBody> {
    pub(crate) fn new(guard: OAuthGuard, policy: Arc<Policy>, presence: Presence) -> Self {
        OAuthGuardAuthorizer {
            guard,
            policy,
            presence,
            _body: PhantomData,
        }
    }
}

// Not derived: a derive would demand `ResBody: Clone` / `ResBody: Debug`.
impl<ResBody> Clone for OAuthGuardAuthorizer<ResBody> {
    fn clone(&self) -> Self {
        Self::new(self.guard.clone(), self.policy.clone(), self.presence)
    }
}

impl<ResBody> std::fmt::Debug for OAuthGuardAuthorizer<ResBody> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthGuardAuthorizer")
            .field("guard", &self.guard)
            .field("policy", &self.policy)
            .field("presence", &self.presence)
            .finish()
    }
}

impl<B, ResBody> AsyncAuthorizeRequest<B> for OAuthGuardAuthorizer<ResBody>
where
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type RequestBody = B;
    type ResponseBody = ResBody;
    type Future = Pin<Box<dyn Future<Output = Result<Request<B>, Response<ResBody>>> + Send>>;

    fn authorize(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let protocol = Protocol::of(&request);
            let (mut parts, body) = request.into_parts();
            match this
                .guard
                .check(&mut parts, &this.policy, this.presence)
                .await
            {
                Ok(admission) => {
                    hand_off(
                        &mut parts,
                        admission.token,
                        &this.guard,
                        &this.policy,
                        protocol,
                    );
                    if admission.dpop_nonce.is_some() {
                        tracing::debug!(
                            "fresh DPoP-Nonce not sent: AsyncAuthorizeRequest cannot add it to \
                             the response"
                        );
                    }
                    Ok(Request::from_parts(parts, body))
                }
                Err(refusal) => Err(this.guard.refusal_response(&refusal, protocol)),
            }
        })
    }
}
