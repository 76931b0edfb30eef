//! tonic integration (feature `tonic`): the guard in front of gRPC services, the identity from
//! a `tonic::Request`, and the client certificate and address from tonic's own TLS.
//!
//! The guard is a plain tower layer. Around every service of a server:
//!
//! ```no_run
//! # async fn run(guard: tower_oauth_guard::OAuthGuard) -> Result<(), Box<dyn std::error::Error>> {
//! # let (_, health) = tonic_health::server::health_reporter();
//! tonic::transport::Server::builder()
//!     .layer(guard.layer())
//!     .add_service(health)
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! or around one service, with its own policy (a guarded service keeps its gRPC name):
//!
//! ```no_run
//! # use tower_layer::Layer;
//! # async fn run(guard: tower_oauth_guard::OAuthGuard) -> Result<(), Box<dyn std::error::Error>> {
//! # let (_, health) = tonic_health::server::health_reporter();
//! tonic::transport::Server::builder()
//!     .add_service(guard.layer().require_scope("health").layer(health))
//!     .serve("127.0.0.1:50051".parse()?)
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! With tonic's own TLS (`Server::builder().tls_config(..)`), the client certificate tonic
//! reports (`TlsConnectInfo`) is checked against `cnf.x5t#S256` tokens (RFC 8705); call
//! [`install_tls_provider`] first when both crypto features are compiled in.
//!
//! Refusals of gRPC requests (`content-type: application/grpc…`) are gRPC statuses in a
//! trailers-only response (HTTP 200): `UNAUTHENTICATED` for a missing or invalid token or proof,
//! or a step-up requirement (RFC 9470) the token falls short of, `PERMISSION_DENIED` for a
//! missing scope, `UNAVAILABLE` when the replay store or the introspection endpoint cannot
//! answer, `RESOURCE_EXHAUSTED` for a DPoP key over its share of the replay store (both with
//! `retry-after` and no challenge, as over HTTP). The RFC 6750 / RFC 9449 challenge travels in
//! the `www-authenticate` metadata, and a server nonce in `dpop-nonce`, as over HTTP. Handlers read the identity with [`access_token`] or
//! [`require_access_token`].
//!
//! # DPoP over gRPC
//!
//! gRPC rides on HTTP/2 `POST`s to `/<package.Service>/<Method>`, so RFC 9449 applies unchanged:
//!
//! - the access token goes in the `authorization` metadata (`DPoP <token>`), the proof in the
//!   `dpop` metadata: they are the HTTP headers of the same names;
//! - the proof's `htm` is `POST`;
//! - its `htu` is the public base URL of the server followed by the method path, e.g.
//!   `https://api.example/grpc.health.v1.Health/Check` (with
//!   [`PublicUri::Fixed`](crate::PublicUri::Fixed) the configured base, otherwise the
//!   `:scheme` and `:authority` the client sent);
//! - one proof per RPC: the guard checks the request head once, so a streaming call is
//!   authorized when it starts and its messages carry no proofs. A new call needs a new proof
//!   (the `jti` is single use).
//! - when a nonce is required the call fails with `UNAUTHENTICATED`, `error="use_dpop_nonce"` in
//!   `www-authenticate` and the nonce in `dpop-nonce`; the client retries with it.

use tonic::server::NamedService;

use crate::access_token::AccessToken;
use crate::guard::AnonymousRequest;
use crate::layer::OAuthGuardService;

/// A guarded service answers to the gRPC name of the service it guards, so it can be given
/// to `Server::add_service` directly.
impl<S: NamedService> NamedService for OAuthGuardService<S> {
    const NAME: &'static str = S::NAME;
}

/// The validated token of a gRPC request, put there by the guard layer.
///
/// ```
/// use tonic::{Request, Response, Status};
///
/// // In a tonic handler behind `guard.layer()`:
/// fn greet(request: &Request<()>) -> Result<Response<String>, Status> {
///     let token = tower_oauth_guard::tonic::require_access_token(request)?;
///     Ok(Response::new(format!("hello {}", token.subject())))
/// }
/// # let _ = greet;
/// assert!(tower_oauth_guard::tonic::access_token(&Request::new(())).is_none());
/// ```
pub fn access_token<T>(request: &tonic::Request<T>) -> Option<&AccessToken> {
    request.extensions().get::<AccessToken>()
}

/// Like [`access_token`], as a `Status` for handlers that use `?`. Behind an
/// [`optional`](crate::OAuthGuardLayer::optional) layer, an anonymous request gets the guard's
/// own answer (`UNAUTHENTICATED`, its challenge in `www-authenticate`); with no guard layer
/// in front at all, `INTERNAL`: a wiring mistake, not the client's.
///
/// ```
/// use tonic::{Request, Response, Status};
///
/// // In a tonic handler behind `guard.layer()`:
/// fn greet(request: &Request<()>) -> Result<Response<String>, Status> {
///     let token = tower_oauth_guard::tonic::require_access_token(request)?;
///     Ok(Response::new(format!("hello {}", token.subject())))
/// }
/// # let _ = greet;
/// assert!(tower_oauth_guard::tonic::access_token(&Request::new(())).is_none());
/// ```
pub fn require_access_token<T>(request: &tonic::Request<T>) -> Result<&AccessToken, tonic::Status> {
    if let Some(token) = access_token(request) {
        return Ok(token);
    }
    let Some(anonymous) = request.extensions().get::<AnonymousRequest>() else {
        crate::layer::log_missing_guard("require_access_token");
        return Err(tonic::Status::internal("no guard layer for this service"));
    };
    // The guard answers a gRPC request with its status and challenge in the headers; a call
    // it took for plain HTTP (gRPC-web, HTTP/1.1) still gets the challenge in the metadata.
    let answer = anonymous.challenge::<()>();
    Err(
        tonic::Status::from_header_map(answer.headers()).unwrap_or_else(|| {
            let metadata = tonic::metadata::MetadataMap::from_headers(answer.headers().clone());
            tonic::Status::with_metadata(tonic::Code::Unauthenticated, "no access token", metadata)
        }),
    )
}

/// Installs this crate's rustls provider (aws-lc-rs, else ring) as the process default, unless
/// the application installed one. tonic's `ServerTlsConfig` takes rustls' process default, and
/// rustls cannot pick one alone when several are compiled in. Returns false when this crate has
/// no TLS backend (no crypto feature) and none is installed.
///
/// ```
/// // Before building tonic's `ServerTlsConfig` (with both crypto features compiled in, rustls
/// // cannot choose alone).
/// assert!(tower_oauth_guard::tonic::install_tls_provider());
/// ```
pub fn install_tls_provider() -> bool {
    match crate::crypto::tls_provider() {
        Some(provider) => {
            // Err only means another provider won the race: one is installed either way.
            let _ = std::sync::Arc::unwrap_or_clone(provider).install_default();
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::challenge::Protocol;
    use crate::policy::Policy;
    use crate::{Issuer, KeySet, OAuthGuard};

    const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

    /// A call the guard took for plain HTTP (gRPC-web, HTTP/1.1) has no `grpc-status` in the
    /// guard's answer; the status still carries the guard's challenge.
    #[tokio::test]
    async fn an_anonymous_call_answered_as_http_keeps_the_challenge() {
        let guard = OAuthGuard::builder()
            .trust(
                Issuer::new("https://issuer.example")
                    .audience("https://api.example")
                    .jwks(KeySet::from_json(JWKS).unwrap()),
            )
            .realm("grpc-web")
            .build()
            .await
            .unwrap();
        let policy = Arc::new(Policy::default().scope("read"));
        for protocol in [Protocol::Http, Protocol::Grpc] {
            let mut request = tonic::Request::new(());
            let anonymous = AnonymousRequest::new(&guard, &policy, protocol);
            request.extensions_mut().insert(anonymous);
            let status = require_access_token(&request).unwrap_err();
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{protocol:?}");
            let challenge = status.metadata().get("www-authenticate");
            assert_eq!(
                challenge.and_then(|v| v.to_str().ok()),
                Some(r#"Bearer realm="grpc-web", scope="read""#),
                "{protocol:?}: {status:?}"
            );
        }
    }
}
