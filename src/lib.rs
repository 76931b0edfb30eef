//! # tower-oauth-guard
//!
//! tower [`Layer`](tower_layer::Layer)s that protect an OAuth 2.0 resource server: they validate
//! JWT access tokens (RFC 9068) against the issuer's keys (RFC 7517, discovered by RFC 8414 /
//! OpenID Connect), check that the presenter holds the key the token is bound to (DPoP,
//! RFC 9449, or a TLS client certificate, RFC 8705), apply the route's scopes and step-up
//! requirements (RFC 9470), and answer every failure with the standard challenge (RFC 6750 §3),
//! or a gRPC status for gRPC requests. Given its resource identifier, the guard also writes and
//! serves its protected resource metadata (RFC 9728, [`OAuthGuard::metadata`]), which every
//! challenge names.
//!
//! Each request flows one way through the guard, in this order:
//!
//! 1. credentials: the `Authorization` and `DPoP` headers, bounded in size ([`limits`]);
//! 2. the access token, validated against the issuer's keys (and cached once verified);
//! 3. the binding: a DPoP proof for `cnf.jkt`, or the client certificate for `cnf.x5t#S256`;
//! 4. the route's [`Policy`]: scopes, step-up (`acr`, `auth_time`) and claim requirements;
//! 5. the inner service, with an [`AccessToken`] in its request extensions; or the refusal
//!    ([`Rejection`], answered as a [`Challenge`]): status and `WWW-Authenticate`.
//!
//! [`OAuthGuard`] runs these steps; [`OAuthGuardBuilder`] configures it and [`OAuthGuardLayer`]
//! makes it a tower `Layer`. Integrations are thin leaves, each behind its feature: axum
//! extractors (`axum`), tonic helpers (`tonic`), a Redis replay store (`redis`), tower-http's
//! `AsyncAuthorizeRequest` (`tower-http`).
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use tower_oauth_guard::{AccessToken, Issuer, OAuthGuard};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let guard = OAuthGuard::builder()
//!     .trust(
//!         Issuer::new("https://issuer.example")        // exact match on `iss`
//!             .audience("https://api.example")         // `aud` must contain it
//!             .jwks_url("https://issuer.example/jwks"), // or .jwks(KeySet), .jwks_file(path), .discover()
//!     )
//!     .build()
//!     .await?;
//!
//! async fn me(token: AccessToken) -> String {
//!     token.subject().to_owned()
//! }
//!
//! let app: Router = Router::new()
//!     .route("/me", get(me))
//!     .layer(guard.layer());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
// Tests may unwrap and index: a panic there is a test failure, not a crash.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The request's path through the crate, in order (blank lines keep rustfmt from sorting).
// Every module is private; what a user needs is re-exported below, each item once.
mod transport;

mod http_syntax;

mod json;

mod extract;

mod token;

mod dpop;

mod mtls;

mod access_token;

mod policy;

mod challenge;

mod metadata;

// The guard that runs those steps, how it is configured, and its tower face.
mod guard;

mod builder;

mod layer;

// Around it.
mod algorithm;
mod clock;
mod crypto;
mod jws;
pub mod limits;
pub mod metrics;
pub mod pkce;
mod signature;

// Integrations: thin leaves, each behind its feature.
#[cfg(feature = "axum")]
mod axum;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "tonic")]
pub mod tonic;
#[cfg(feature = "tower-http")]
mod tower_http;

// The fuzz targets' way in (`cargo fuzz` sets `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;

// 1. Credentials from the request head.
pub use extract::{CredentialsError, DPOP, Scheme};

// 2. The access token.
#[cfg(feature = "fetch")]
pub use token::discovery::DiscoveryError;
#[cfg(feature = "fetch")]
pub use token::fetch::FetchError;
#[cfg(feature = "fetch")]
pub use token::introspection::{Introspection, IntrospectionAuth, IntrospectionAuthError};
pub use token::keys::KeysError;
pub use token::{Confirmation, KeySet, Scopes, TokenError};

// 3a. DPoP (RFC 9449).
pub use dpop::htu::{BaseUrl, HtuError, normalize_htu};
pub use dpop::nonce::{DpopNonces, NonceCheck, NonceError, NonceSecret};
pub use dpop::origin::{ForwardedHeaders, PublicUri};
pub use dpop::proof::{
    ExpectedRequest, MalformedProof, ProofError, ProofPolicy, VerifiedProof, ath_for, jkt_matches,
    jwk_thumbprint, verify_proof,
};
pub use dpop::replay::{
    MemoryReplayStore, ReplayCheck, ReplayFuture, ReplayKey, ReplayStore, ReplayStoreError,
    ReplayWindow,
};
pub use dpop::{DPOP_NONCE, Dpop, DpopError, DpopMode};

// 3b. Certificate-bound tokens (RFC 8705, RFC 9440).
pub use mtls::client_cert::{CLIENT_CERT, CLIENT_CERT_CHAIN, ClientCertError};
#[cfg(feature = "serve-tls")]
pub use mtls::serve::{
    ClientAuth, HANDSHAKE_TIMEOUT, ServeTlsError, load_certificates, load_private_key, serve_tls,
    server_config,
};
pub use mtls::{CertificateThumbprint, ClientCertHeader, Mtls, MtlsError, MtlsMode};
pub use transport::{PeerCertificates, RemoteAddr, TlsConnection};

// 4. The hand-off and the route policy.
pub use access_token::{AccessToken, Binding};
pub use policy::{Policy, PolicyError, Requirement, StepUpFailure};

// 5. The refusal.
pub use challenge::{Challenge, ChallengeParams, ErrorCode, Protocol, Rejection};

// What the resource says about itself (RFC 9728).
pub use metadata::{
    DEFAULT_METADATA_MAX_AGE, MetadataBody, MetadataBuilder, MetadataError, MetadataService,
    ProtectedResourceMetadata, ResourceError, ResourceIdentifier, WELL_KNOWN_SUFFIX,
};

// The guard, its configuration, its tower face.
pub use builder::{BuildError, Issuer, OAuthGuardBuilder};
pub use guard::{Admission, AnonymousRequest, OAuthGuard, Presence, Refusal};
pub use layer::{OAuthGuardLayer, OAuthGuardService};

pub use clock::{Clock, FixedClock, SystemClock};

#[cfg(feature = "axum")]
pub use crate::axum::{Claims, TokenRejection};
#[cfg(feature = "tower-http")]
pub use crate::tower_http::OAuthGuardAuthorizer;

pub use algorithm::Algorithm;

/// The README's examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
