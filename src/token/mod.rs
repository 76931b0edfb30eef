//! Step 2: validate the access token: RFC 9068 JWTs against the issuer's JWK Set, opaque
//! tokens (and, where configured, JWTs too) at the issuer's introspection endpoint (RFC 7662).

pub(crate) mod cache;
pub mod claims;
#[cfg(feature = "fetch")]
pub mod discovery;
pub mod error;
#[cfg(feature = "fetch")]
pub mod fetch;
#[cfg(feature = "fetch")]
pub mod introspection;
pub(crate) mod issuer;
pub(crate) mod issuer_keys;
pub mod jwt;
pub mod keys;
pub(crate) mod registered;
#[cfg(feature = "fetch")]
pub mod remote;
pub(crate) mod signed;

use std::collections::HashMap;
use std::sync::Arc;

pub use claims::{Confirmation, Scopes};
pub use error::TokenError;
pub use keys::{JwksSource, KeySet};

use cache::TokenCache;
pub(crate) use claims::Validated;
use issuer::TrustedIssuer;
use jwt::JwtRules;

/// Validates access tokens: cache first, then the JWT checks against the issuer's keys, or
/// the issuer's introspection endpoint.
pub(crate) struct TokenValidator {
    pub(crate) issuers: HashMap<String, TrustedIssuer>,
    pub(crate) rules: JwtRules,
    pub(crate) cache: Option<Arc<TokenCache>>,
    /// The issuer whose introspection endpoint takes the tokens that are not JWTs.
    #[cfg(feature = "fetch")]
    pub(crate) opaque_issuer: Option<String>,
}

impl TokenValidator {
    pub(crate) async fn validate(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Arc<Validated>, TokenError> {
        let digest = TokenCache::key(token);
        let hit = self
            .cache
            .as_ref()
            .and_then(|c| c.get(&digest, now, self.rules.leeway));
        if let Some(hit) = hit {
            return Ok(hit);
        }
        // Boxed: its state (signature checks, key fetches, introspection) is far larger than
        // a cache hit's, and every request's future would otherwise carry room for it.
        let (validated, max_ttl) = Box::pin(self.validate_uncached(token, digest, now)).await?;
        let Some(cache) = &self.cache else {
            return Ok(validated);
        };
        if let Some(max_ttl) = max_ttl {
            cache.insert(digest, validated.clone(), now, max_ttl);
        }
        Ok(validated)
    }

    /// The token validated, and how long its validation may be reused; `None` when the
    /// introspection that answered has put it in the cache itself.
    async fn validate_uncached(
        &self,
        token: &str,
        digest: [u8; 32],
        now: i64,
    ) -> Result<(Arc<Validated>, Option<std::time::Duration>), TokenError> {
        #[cfg(feature = "fetch")]
        let leeway = self.rules.leeway;
        let header = jwt::jose_header(token);
        #[cfg(feature = "fetch")]
        if header.is_none() {
            // Opaque: only the configured issuer can tell what it is.
            let issuer = self
                .opaque_issuer
                .as_ref()
                .and_then(|name| self.issuers.get(name))
                .ok_or(TokenError::Malformed)?;
            let introspector = issuer.introspection.as_ref().ok_or(TokenError::Malformed)?;
            let validated = introspector
                .validate(token, digest, issuer.expected(), leeway, now, None)
                .await?;
            return Ok((validated, None));
        }
        let header = header.ok_or(TokenError::Malformed)?;
        let validated =
            Arc::new(jwt::validate(token, &header, digest, &self.issuers, &self.rules, now).await?);
        #[cfg(feature = "fetch")]
        if let Some(issuer) = self.issuers.get(&*validated.issuer)
            && let Some(introspector) = issuer.introspection.as_ref().filter(|i| i.jwts)
        {
            // Revocation-sensitive: the issuer must also say the token is still active.
            let validated = introspector
                .validate(
                    token,
                    digest,
                    issuer.expected(),
                    leeway,
                    now,
                    Some(validated),
                )
                .await?;
            return Ok((validated, None));
        }
        Ok((validated, Some(cache::MAX_CACHE_TTL)))
    }
}
