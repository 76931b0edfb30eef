//! axum extractors (feature `axum`): `AccessToken`, `Option<AccessToken>`, `Claims<T>`.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::access_token::AccessToken;

/// Why an extractor found no usable token.
///
/// ```
/// use tower_oauth_guard::AccessToken;
///
/// // Without the guard's layer in front, the extractor refuses (500: a wiring mistake, not the
/// // client's); `Option<AccessToken>` serves routes whose guard admits anonymous requests.
/// async fn maybe(token: Option<AccessToken>) -> &'static str {
///     if token.is_some() { "hello" } else { "hello, stranger" }
/// }
/// # let _ = maybe;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRejection {
    /// No guard layer ran for this route (or it was optional and the request anonymous).
    NoToken,
    /// The claims do not deserialize into the handler's type.
    ClaimsShape,
}

impl IntoResponse for TokenRejection {
    fn into_response(self) -> Response {
        let (challenge, reason) = match self {
            TokenRejection::NoToken => ("Bearer", "no_token"),
            TokenRejection::ClaimsShape => (
                "Bearer error=\"invalid_token\", error_description=\"unexpected token claims\"",
                "claims_shape",
            ),
        };
        tracing::info!(reason, "extractor refused request");
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AccessToken {
    type Rejection = TokenRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AccessToken>()
            .cloned()
            .ok_or(TokenRejection::NoToken)
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
