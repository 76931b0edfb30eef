//! axum extractors (feature `axum`): `AccessToken`, `Option<AccessToken>`, `Claims<T>`.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::access_token::AccessToken;
use crate::guard::AnonymousRequest;

/// Why an extractor found no usable token.
///
/// ```
/// use tower_oauth_guard::AccessToken;
///
/// // Behind `guard.layer().optional()`, `Option<AccessToken>` serves anonymous requests too;
/// // `AccessToken` answers them with the guard's own 401 challenge. With no guard layer in
/// // front at all, `AccessToken` answers 500: a wiring mistake, not the client's.
/// async fn maybe(token: Option<AccessToken>) -> &'static str {
///     if token.is_some() { "hello" } else { "hello, stranger" }
/// }
/// # let _ = maybe;
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum TokenRejection {
    /// No guard layer ran for this route: `500`, logged as an error (the first time).
    NoGuard,
    /// The route's guard lets requests without credentials through
    /// ([`optional`](crate::OAuthGuardLayer::optional)) and this one had none: the guard's
    /// `401` for a missing token ([`AnonymousRequest::challenge`]).
    Anonymous(AnonymousRequest),
    /// The claims do not deserialize into the handler's type.
    ClaimsShape,
}

impl IntoResponse for TokenRejection {
    fn into_response(self) -> Response {
        match self {
            TokenRejection::NoGuard => {
                crate::layer::log_missing_guard("AccessToken extractor");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
            TokenRejection::Anonymous(anonymous) => {
                tracing::debug!(reason = "no_token", "extractor refused request");
                anonymous.challenge()
            }
            TokenRejection::ClaimsShape => {
                tracing::info!(reason = "claims_shape", "extractor refused request");
                let mut response = StatusCode::UNAUTHORIZED.into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer error=\"invalid_token\", error_description=\"unexpected token claims\"",
                    ),
                );
                response
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AccessToken {
    type Rejection = TokenRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(token) = parts.extensions.get::<AccessToken>() {
            return Ok(token.clone());
        }
        Err(match parts.extensions.get::<AnonymousRequest>() {
            Some(anonymous) => TokenRejection::Anonymous(anonymous.clone()),
            None => TokenRejection::NoGuard,
        })
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for AccessToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<AccessToken>().cloned())
    }
}

/// The token's claims as your own type: `async fn h(Claims(c): Claims<MyClaims>)`.
///
/// ```
/// use serde::Deserialize;
/// use tower_oauth_guard::Claims;
///
/// #[derive(Deserialize)]
/// struct MyClaims {
///     sub: String,
///     tenant: String,
/// }
///
/// async fn handler(Claims(claims): Claims<MyClaims>) -> String {
///     format!("{} of {}", claims.sub, claims.tenant)
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, Clone)]
pub struct Claims<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Claims<T> {
    type Rejection = TokenRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = <AccessToken as FromRequestParts<S>>::from_request_parts(parts, state).await?;
        token
            .claims_as()
            .map(Claims)
            .map_err(|_| TokenRejection::ClaimsShape)
    }
}
