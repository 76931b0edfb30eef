//! Step 2: validate the access token (RFC 9068 JWTs against the issuer's JWK Set).

pub(crate) mod cache;
pub mod claims;
#[cfg(feature = "fetch")]
pub mod discovery;
pub mod error;
#[cfg(feature = "fetch")]
pub mod fetch;
pub(crate) mod issuer;
pub mod jwt;
pub mod keys;
pub(crate) mod registered;
#[cfg(feature = "fetch")]
pub mod remote;

use std::collections::HashMap;
use std::sync::Arc;

pub use claims::{Confirmation, Scopes};
pub use error::TokenError;
pub use keys::{JwksSource, KeySet};

use cache::TokenCache;
pub(crate) use claims::Validated;
use issuer::TrustedIssuer;
use jwt::JwtRules;

/// Validates access tokens: cache first, then the JWT checks against the issuer's keys.
pub(crate) struct TokenValidator {
    pub(crate) issuers: HashMap<String, TrustedIssuer>,
    pub(crate) rules: JwtRules,
    pub(crate) cache: Option<TokenCache>,
}

impl TokenValidator {
    pub(crate) async fn validate(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Arc<Validated>, TokenError> {
        let digest = TokenCache::key(token);
        let Some(cache) = &self.cache else {
            return jwt::validate(token, digest, &self.issuers, &self.rules, now)
                .await
                .map(Arc::new);
        };
        if let Some(hit) = cache.get(&digest, now, self.rules.leeway) {
            return Ok(hit);
        }
        let validated =
            Arc::new(jwt::validate(token, digest, &self.issuers, &self.rules, now).await?);
        cache.insert(digest, validated.clone(), now);
        Ok(validated)
    }
}
