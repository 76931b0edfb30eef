//! Authorization server metadata: OpenID Connect Discovery 1.0 §4 and RFC 8414 §3.

use http::Uri;
use serde::Deserialize;

use super::fetch::{FetchError, HttpClient, parse_url};
use crate::limits::MAX_METADATA_LEN;

/// Why discovery failed.
///
/// ```
/// use tower_oauth_guard::{BuildError, DiscoveryError};
///
/// // What `build()` reports when an issuer's metadata cannot be used.
/// fn explain(error: &BuildError) -> Option<&'static str> {
///     match error {
///         BuildError::Discovery(_, DiscoveryError::IssuerMismatch) => Some("metadata names another issuer"),
///         BuildError::Discovery(_, DiscoveryError::InvalidJwksUri) => Some("metadata has no jwks_uri"),
///         _ => None,
///     }
/// }
/// # let _ = explain;
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// Neither well-known document could be fetched; the last error is kept.
    Fetch(FetchError),
    /// The document is not metadata JSON; the JSON parser's error is the
    /// [`source`](std::error::Error::source).
    Malformed(Box<dyn std::error::Error + Send + Sync>),
    /// The document names another issuer (RFC 8414 §3.3: it MUST be identical).
    IssuerMismatch,
    /// The document has no `jwks_uri`, or an unusable one.
    InvalidJwksUri,
    /// Introspection is configured without an endpoint, and the document has no
    /// `introspection_endpoint` (RFC 8414 §2).
    NoIntrospectionEndpoint,
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fetch(e) => write!(f, "fetching metadata: {e}"),
            Self::Malformed(e) => write!(f, "malformed metadata: {e}"),
            Self::IssuerMismatch => {
                f.write_str("metadata issuer differs from the configured issuer")
            }
            Self::InvalidJwksUri => f.write_str("metadata has no usable jwks_uri"),
            Self::NoIntrospectionEndpoint => f.write_str("metadata has no introspection_endpoint"),
        }
    }
}

impl std::error::Error for DiscoveryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Fetch(e) => Some(e),
            Self::Malformed(e) => Some(e.as_ref()),
            Self::IssuerMismatch | Self::InvalidJwksUri | Self::NoIntrospectionEndpoint => None,
        }
    }
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
}

/// The two well-known locations for `issuer`, OpenID Connect's first.
///
/// OIDC appends to the issuer; RFC 8414 §3.1 inserts between host and path.
pub(crate) fn metadata_urls(issuer: &str) -> Vec<String> {
    let trimmed = issuer.trim_end_matches('/');
    let mut urls = vec![format!("{trimmed}/.well-known/openid-configuration")];
    if let Some((scheme, rest)) = trimmed.split_once("://") {
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        urls.push(format!(
            "{scheme}://{authority}/.well-known/oauth-authorization-server{path}"
        ));
    }
    urls
}

/// Finds `jwks_uri` for `issuer`.
pub(crate) async fn discover_jwks_uri(
    issuer: &str,
    client: &HttpClient,
) -> Result<Uri, DiscoveryError> {
    let jwks = discover(issuer, client)
        .await?
        .jwks_uri
        .ok_or(DiscoveryError::InvalidJwksUri)?;
    parse_url(&jwks).map_err(|_| DiscoveryError::InvalidJwksUri)
}

/// Finds `introspection_endpoint` for `issuer` (RFC 8414 §2).
pub(crate) async fn discover_introspection_endpoint(
    issuer: &str,
    client: &HttpClient,
) -> Result<String, DiscoveryError> {
    discover(issuer, client)
        .await?
        .introspection_endpoint
        .ok_or(DiscoveryError::NoIntrospectionEndpoint)
}

/// The issuer's metadata, from the first well-known location that answers; its `issuer`
/// must be exactly `issuer` (RFC 8414 §3.3).
async fn discover(issuer: &str, client: &HttpClient) -> Result<Metadata, DiscoveryError> {
    let mut last = DiscoveryError::Fetch(FetchError::InvalidUrl);
    for url in metadata_urls(issuer) {
        let url = parse_url(&url).map_err(DiscoveryError::Fetch)?;
        match client.get(&url, MAX_METADATA_LEN).await {
            Ok(doc) => {
                let meta: Metadata = serde_json::from_slice(&doc.body)
                    .map_err(|e| DiscoveryError::Malformed(Box::new(e)))?;
                if meta.issuer != issuer {
                    return Err(DiscoveryError::IssuerMismatch);
                }
                return Ok(meta);
            }
            Err(e) => last = DiscoveryError::Fetch(e),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_both_well_known_urls() {
        assert_eq!(
            metadata_urls("https://as.example/tenant1"),
            vec![
                "https://as.example/tenant1/.well-known/openid-configuration",
                "https://as.example/.well-known/oauth-authorization-server/tenant1",
            ]
        );
        assert_eq!(
            metadata_urls("https://as.example"),
            vec![
                "https://as.example/.well-known/openid-configuration",
                "https://as.example/.well-known/oauth-authorization-server",
            ]
        );
    }
}
