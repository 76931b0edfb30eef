//! Protected resource metadata (RFC 9728): the JSON document that tells clients which
//! authorization servers this resource trusts and how tokens must be presented, generated from
//! the guard's own configuration so that what it advertises is what the guard enforces, and
//! the tower service that serves it at its well-known URL (§3.1).

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::net::IpAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use serde::Serialize;
use serde_json::{Map, Value};
use tower_service::Service;

use crate::dpop::htu::{BaseUrl, HtuError, normalize_htu};

/// The well-known URI suffix of protected resource metadata (RFC 9728 §3, §8.3).
pub const WELL_KNOWN_SUFFIX: &str = "oauth-protected-resource";

/// How long clients and caches may keep the document by default (`Cache-Control: max-age`):
/// it changes only when the guard's configuration does.
pub const DEFAULT_METADATA_MAX_AGE: Duration = Duration::from_secs(3600);

/// Why a URL cannot be this resource's identifier (RFC 9728 §1.2, §3).
///
/// ```
/// use tower_oauth_guard::{ResourceError, ResourceIdentifier};
///
/// assert_eq!(ResourceIdentifier::parse("http://api.example").unwrap_err(), ResourceError::NotHttps);
/// assert_eq!(ResourceIdentifier::parse("https://api.example/?v=1").unwrap_err(), ResourceError::Query);
/// assert!(ResourceIdentifier::parse("http://127.0.0.1:8080").is_ok()); // loopback, for development
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceError {
    /// Not an absolute http(s) URL with a host, or one past [`MAX_HTU_LEN`](crate::limits::MAX_HTU_LEN).
    Malformed(HtuError),
    /// `http` on a host other than a loopback address or `localhost`: the identifier must use
    /// `https` (RFC 9728 §1.2).
    NotHttps,
    /// The URL has a query component (RFC 9728 §1.2).
    Query,
    /// The URL has a fragment component (RFC 9728 §1.2).
    Fragment,
}

impl std::fmt::Display for ResourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(e) => write!(f, "not an absolute http(s) URL: {e}"),
            Self::NotHttps => f.write_str("must use https (http only for a loopback host)"),
            Self::Query => f.write_str("must have no query component"),
            Self::Fragment => f.write_str("must have no fragment component"),
        }
    }
}

impl std::error::Error for ResourceError {}

/// The resource identifier of a protected resource (RFC 9728 §1.2): an `https` URL (plain
/// `http` only on a loopback host) without query or fragment, kept exactly as written, since
/// clients compare the document's `resource` with the URL they started from character by
/// character (§3.3). Its metadata lives at the well-known URL of §3.1: the well-known path is
/// inserted between the host and the path, and a terminating `/` is dropped.
///
/// ```
/// use tower_oauth_guard::ResourceIdentifier;
///
/// let root = ResourceIdentifier::parse("https://api.example.com")?;
/// assert_eq!(root.metadata_url(), "https://api.example.com/.well-known/oauth-protected-resource");
///
/// let v1 = ResourceIdentifier::parse("https://api.example.com:8443/v1/")?;
/// assert_eq!(v1.as_str(), "https://api.example.com:8443/v1/"); // as written
/// assert_eq!(v1.metadata_url(), "https://api.example.com:8443/.well-known/oauth-protected-resource/v1");
/// assert_eq!(v1.metadata_path(), "/.well-known/oauth-protected-resource/v1"); // to route on
/// # Ok::<(), tower_oauth_guard::ResourceError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceIdentifier {
    id: String,
    metadata_url: String,
    /// Where the path starts in `metadata_url`.
    path_start: usize,
}

impl ResourceIdentifier {
    /// Checks `url` (RFC 9728 §1.2) and computes its metadata URL (§3.1).
    pub fn parse(url: &str) -> Result<Self, ResourceError> {
        let base = BaseUrl::parse(url).map_err(|e| match e {
            HtuError::QueryNotAllowed => ResourceError::Query,
            HtuError::FragmentNotAllowed => ResourceError::Fragment,
            e => ResourceError::Malformed(e),
        })?;
        if base.scheme() != "https" && !is_loopback(base.authority()) {
            return Err(ResourceError::NotHttps);
        }
        // Split the URL as written: `BaseUrl` accepted it, so it is `scheme://authority[/path]`.
        let malformed = ResourceError::Malformed(HtuError::MissingHost);
        let after_scheme = url.find("://").ok_or(malformed)? + 3;
        let rest = url.get(after_scheme..).ok_or(malformed)?;
        let authority_end = after_scheme + rest.find('/').unwrap_or(rest.len());
        let origin = url.get(..authority_end).ok_or(malformed)?;
        let path = url.get(authority_end..).ok_or(malformed)?;
        let metadata_url = format!(
            "{origin}/.well-known/{WELL_KNOWN_SUFFIX}{}",
            path.trim_end_matches('/')
        );
        Ok(ResourceIdentifier {
            id: url.to_owned(),
            metadata_url,
            path_start: origin.len(),
        })
    }

    /// The identifier, exactly as configured: the document's `resource`.
    pub fn as_str(&self) -> &str {
        &self.id
    }

    /// The URL of its metadata (RFC 9728 §3.1), which 401 challenges name in
    /// `resource_metadata` (§5.1).
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// The path of [`metadata_url`](Self::metadata_url), for a router on the same host.
    pub fn metadata_path(&self) -> &str {
        self.metadata_url.get(self.path_start..).unwrap_or("/")
    }
}

impl std::fmt::Display for ResourceIdentifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.id)
    }
}

/// `localhost`, or an IP address of the loopback network, from a normalized authority.
fn is_loopback(authority: &str) -> bool {
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(host, _)| host),
        None => authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a metadata document could not be built.
///
/// ```
/// # const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// # use tower_oauth_guard::{Issuer, KeySet, OAuthGuard};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_oauth_guard::MetadataError;
///
/// let guard = OAuthGuard::builder()
///     .trust(Issuer::new("https://issuer.example").audience("https://api.example").jwks(KeySet::from_json(JWKS)?))
///     .build()
///     .await?;
/// // Without `.resource(..)` the guard has no identifier to describe.
/// assert!(matches!(guard.metadata().build(), Err(MetadataError::NoResource)));
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum MetadataError {
    /// The guard was built without a resource identifier
    /// ([`OAuthGuardBuilder::resource`](crate::OAuthGuardBuilder::resource)).
    NoResource,
    /// A scope is not a `scope-token` (RFC 6749 §3.3: one or more of `%x21 / %x23-5B / %x5D-7E`).
    InvalidScope(String),
    /// A URL-valued member (`jwks_uri`, `resource_documentation`, ...) is not an absolute
    /// `https` URL (plain `http` only on a loopback host).
    InvalidUrl {
        /// The member.
        member: &'static str,
        /// Why.
        error: ResourceError,
    },
    /// [`MetadataBuilder::member`] named a member the guard writes from its configuration, or
    /// one with its own setter, or `signed_metadata`, which it cannot check.
    ReservedMember(String),
    /// The document could not be serialized.
    Json(serde_json::Error),
}

impl std::fmt::Display for MetadataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoResource => {
                f.write_str("the guard has no resource identifier: set OAuthGuardBuilder::resource")
            }
            Self::InvalidScope(s) => write!(f, "not a scope-token (RFC 6749 §3.3): {s:?}"),
            Self::InvalidUrl { member, error } => write!(f, "{member}: {error}"),
            Self::ReservedMember(m) => write!(
                f,
                "{m} is written by the guard or by its own setter, not by MetadataBuilder::member"
            ),
            Self::Json(e) => write!(f, "serializing the metadata: {e}"),
        }
    }
}

impl std::error::Error for MetadataError {}

/// What the guard's configuration says about itself, for its metadata document.
#[derive(Debug, Clone)]
pub(crate) struct GuardFacts {
    pub(crate) resource: ResourceIdentifier,
    /// The trusted issuers, in the order they were configured.
    pub(crate) authorization_servers: Vec<String>,
    /// DPoP proof algorithms, empty when no issuer's tokens may be DPoP-bound.
    pub(crate) dpop_algs: Vec<String>,
    /// Every issuer's tokens must be DPoP-bound.
    pub(crate) dpop_required: bool,
    /// mTLS was configured, for the guard or an issuer.
    pub(crate) mtls: bool,
}

/// Members the guard writes, or that have their own setter (checked values), or that it
/// cannot vouch for (`signed_metadata`, whose claims would have to agree with the rest).
const RESERVED: [&str; 13] = [
    "resource",
    "authorization_servers",
    "jwks_uri",
    "scopes_supported",
    "bearer_methods_supported",
    "resource_name",
    "resource_documentation",
    "resource_policy_uri",
    "resource_tos_uri",
    "tls_client_certificate_bound_access_tokens",
    "dpop_signing_alg_values_supported",
    "dpop_bound_access_tokens_required",
    "signed_metadata",
];

/// The document (RFC 9728 §2), members in the RFC's order; the ones that say nothing are left
/// out.
#[derive(Debug, Clone, Serialize)]
struct Document {
    resource: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    authorization_servers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jwks_uri: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scopes_supported: Vec<String>,
    /// RFC 6750 §2.1 only: the guard reads tokens from `Authorization` and nowhere else.
    bearer_methods_supported: [&'static str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_documentation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_policy_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_tos_uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_client_certificate_bound_access_tokens: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    dpop_signing_alg_values_supported: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dpop_bound_access_tokens_required: Option<bool>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// Builds the metadata document of a guard: start from
/// [`OAuthGuard::metadata`](crate::OAuthGuard::metadata), which fills in what the guard
/// enforces, and add what only you know.
///
/// From the guard (RFC 9728 §2): `resource` (its
/// [`resource`](crate::OAuthGuardBuilder::resource) identifier, as written),
/// `authorization_servers` (the trusted issuers, in order), `bearer_methods_supported`
/// (`["header"]`), `dpop_signing_alg_values_supported` and `dpop_bound_access_tokens_required`
/// (when any issuer's tokens may be DPoP-bound; required when every issuer's must be), and
/// `tls_client_certificate_bound_access_tokens: true` when mTLS was configured
/// ([`OAuthGuardBuilder::mtls`](crate::OAuthGuardBuilder::mtls) or an issuer's mode).
/// `resource_signing_alg_values_supported` is left out: the guard signs nothing.
///
/// From you: `scopes_supported` (the guard sees only the scopes of the routes it is asked
/// about, so it cannot list them all), `jwks_uri` (the resource's own keys, if it has any),
/// the human-readable members, and any other member with [`member`](Self::member).
///
/// ```
/// # const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// # use tower_oauth_guard::{Issuer, KeySet, OAuthGuard};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let guard = OAuthGuard::builder()
///     .resource("https://api.example/v1")
///     .trust(Issuer::new("https://issuer.example").jwks(KeySet::from_json(JWKS)?)) // aud: the resource
///     .build()
///     .await?;
/// let metadata = guard
///     .metadata()
///     .scopes_supported(["read", "write"])
///     .resource_name("Example API")
///     .member("resource_name#fr", "API d'exemple")
///     .build()?;
/// assert_eq!(
///     std::str::from_utf8(metadata.json())?,
///     r#"{"resource":"https://api.example/v1","authorization_servers":["https://issuer.example"],"scopes_supported":["read","write"],"bearer_methods_supported":["header"],"resource_name":"Example API","resource_name#fr":"API d'exemple"}"#
/// );
/// assert_eq!(metadata.path(), "/.well-known/oauth-protected-resource/v1");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct MetadataBuilder {
    facts: Option<GuardFacts>,
    scopes: Vec<String>,
    jwks_uri: Option<String>,
    resource_name: Option<String>,
    resource_documentation: Option<String>,
    resource_policy_uri: Option<String>,
    resource_tos_uri: Option<String>,
    other: Vec<(String, Value)>,
    max_age: Duration,
}

impl MetadataBuilder {
    pub(crate) fn new(facts: Option<GuardFacts>) -> Self {
        MetadataBuilder {
            facts,
            scopes: Vec::new(),
            jwks_uri: None,
            resource_name: None,
            resource_documentation: None,
            resource_policy_uri: None,
            resource_tos_uri: None,
            other: Vec::new(),
            max_age: DEFAULT_METADATA_MAX_AGE,
        }
    }

    /// `scopes_supported`: the scopes clients may request for this resource (RECOMMENDED).
    /// A second call replaces the list.
    pub fn scopes_supported<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// `jwks_uri`: the resource's own public keys (for signed responses), not the issuers'.
    pub fn jwks_uri(mut self, url: impl Into<String>) -> Self {
        self.jwks_uri = Some(url.into());
        self
    }

    /// `resource_name`: a name for end users.
    pub fn resource_name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// `resource_documentation`: a page for developers.
    pub fn resource_documentation(mut self, url: impl Into<String>) -> Self {
        self.resource_documentation = Some(url.into());
        self
    }

    /// `resource_policy_uri`: how the resource uses data.
    pub fn resource_policy_uri(mut self, url: impl Into<String>) -> Self {
        self.resource_policy_uri = Some(url.into());
        self
    }

    /// `resource_tos_uri`: its terms of service.
    pub fn resource_tos_uri(mut self, url: impl Into<String>) -> Self {
        self.resource_tos_uri = Some(url.into());
        self
    }

    /// Any other member: a language-tagged variant (`resource_name#fr`, RFC 9728 §2.1),
    /// `authorization_details_types_supported`, an extension. The members the guard writes
    /// or that have their own setter are refused at [`build`](Self::build).
    pub fn member(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.other.push((name.into(), value.into()));
        self
    }

    /// `Cache-Control: public, max-age=<seconds>` on the document (default
    /// [`DEFAULT_METADATA_MAX_AGE`]; whole seconds).
    pub fn cache_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Checks every member and serializes the document, once.
    pub fn build(self) -> Result<ProtectedResourceMetadata, MetadataError> {
        let facts = self.facts.ok_or(MetadataError::NoResource)?;
        if let Some(bad) = self.scopes.iter().find(|s| !is_scope_token(s)) {
            return Err(MetadataError::InvalidScope(bad.clone()));
        }
        let url = |member: &'static str, value: Option<String>| match value {
            Some(v) => check_url(&v)
                .map(|()| Some(v))
                .map_err(|error| MetadataError::InvalidUrl { member, error }),
            None => Ok(None),
        };
        let jwks_uri = url("jwks_uri", self.jwks_uri)?;
        let resource_documentation = url("resource_documentation", self.resource_documentation)?;
        let resource_policy_uri = url("resource_policy_uri", self.resource_policy_uri)?;
        let resource_tos_uri = url("resource_tos_uri", self.resource_tos_uri)?;
        let mut other = Map::new();
        for (name, value) in self.other {
            if RESERVED.contains(&name.as_str()) {
                return Err(MetadataError::ReservedMember(name));
            }
            other.insert(name, value);
        }
        let dpop = !facts.dpop_algs.is_empty();
        let document = Document {
            resource: facts.resource.as_str().to_owned(),
            authorization_servers: facts.authorization_servers,
            jwks_uri,
            scopes_supported: self.scopes,
            bearer_methods_supported: ["header"],
            resource_name: self.resource_name,
            resource_documentation,
            resource_policy_uri,
            resource_tos_uri,
            tls_client_certificate_bound_access_tokens: facts.mtls.then_some(true),
            dpop_signing_alg_values_supported: facts.dpop_algs,
            dpop_bound_access_tokens_required: dpop.then_some(facts.dpop_required),
            other,
        };
        let json = Bytes::from(serde_json::to_vec(&document).map_err(MetadataError::Json)?);
        let cache_control =
            HeaderValue::try_from(format!("public, max-age={}", self.max_age.as_secs()))
                .unwrap_or(HeaderValue::from_static("no-cache"));
        Ok(ProtectedResourceMetadata {
            document,
            json,
            resource: facts.resource,
            cache_control,
        })
    }
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// An absolute `https` URL (or `http` on a loopback host); query and fragment allowed.
fn check_url(url: &str) -> Result<(), ResourceError> {
    let normalized = normalize_htu(url).map_err(ResourceError::Malformed)?;
    let authority = normalized
        .strip_prefix("http://")
        .map(|rest| rest.split_once('/').map_or(rest, |(a, _)| a));
    match authority {
        Some(authority) if !is_loopback(authority) => Err(ResourceError::NotHttps),
        _ => Ok(()),
    }
}

/// A protected resource metadata document (RFC 9728 §2), checked and serialized once, with
/// where it is served (§3.1). [`service`](Self::service) serves it; it also serializes with
/// serde, as the same JSON.
///
/// ```
/// # const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// # use tower_oauth_guard::{Issuer, KeySet, OAuthGuard};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{Router, routing::get};
///
/// let guard = OAuthGuard::builder()
///     .resource("https://api.example")
///     .trust(Issuer::new("https://issuer.example").jwks(KeySet::from_json(JWKS)?))
///     .build()
///     .await?;
/// let metadata = guard.metadata().scopes_supported(["read"]).build()?;
/// let app: Router = Router::new()
///     .route("/me", get(|| async { "me" }))
///     .layer(guard.layer())
///     // Public, so outside the guard's layer.
///     .route_service(metadata.path(), metadata.service());
/// assert_eq!(serde_json::to_vec(&metadata)?, metadata.json());
/// # let _ = app;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ProtectedResourceMetadata {
    document: Document,
    json: Bytes,
    resource: ResourceIdentifier,
    cache_control: HeaderValue,
}

impl Serialize for ProtectedResourceMetadata {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.document.serialize(serializer)
    }
}

impl ProtectedResourceMetadata {
    /// The resource it describes.
    pub fn resource(&self) -> &ResourceIdentifier {
        &self.resource
    }

    /// Where clients fetch it (RFC 9728 §3.1).
    pub fn url(&self) -> &str {
        self.resource.metadata_url()
    }

    /// The path of [`url`](Self::url), to route on.
    pub fn path(&self) -> &str {
        self.resource.metadata_path()
    }

    /// The document, as served.
    pub fn json(&self) -> &[u8] {
        &self.json
    }

    /// A tower service that serves it (cheap to clone; the JSON is shared).
    pub fn service(&self) -> MetadataService {
        MetadataService {
            json: self.json.clone(),
            cache_control: self.cache_control.clone(),
        }
    }
}

/// Serves a [`ProtectedResourceMetadata`] document, whatever the path it is routed on
/// (RFC 9728 §3): `GET` and `HEAD` answer `200` with `Content-Type: application/json`,
/// `Cache-Control: public, max-age=…` and `Access-Control-Allow-Origin: *` (browser clients
/// fetch it from other origins; it holds nothing private, and no credentials are needed);
/// `OPTIONS` answers a CORS preflight; other methods answer `405` with `Allow`.
///
/// With axum: `Router::route_service(metadata.path(), metadata.service())`; with hyper or
/// tonic, any tower stack over `http::Request`.
///
/// ```
/// # const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// # use tower_oauth_guard::{Issuer, KeySet, OAuthGuard};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::ServiceExt;
///
/// # let guard = OAuthGuard::builder()
/// #     .resource("https://api.example")
/// #     .trust(Issuer::new("https://issuer.example").jwks(KeySet::from_json(JWKS)?))
/// #     .build()
/// #     .await?;
/// let service = guard.metadata().build()?.service();
/// let response = service.oneshot(http::Request::get("/.well-known/oauth-protected-resource").body(())?).await?;
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert_eq!(response.headers()["cache-control"], "public, max-age=3600");
/// assert_eq!(response.headers()["access-control-allow-origin"], "*");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MetadataService {
    json: Bytes,
    cache_control: HeaderValue,
}

/// The methods the document answers.
const ALLOW: &str = "GET, HEAD, OPTIONS";

/// How long browsers may remember a preflight answer.
const PREFLIGHT_MAX_AGE: &str = "86400";

impl MetadataService {
    fn respond(&self, method: &Method, request: &HeaderMap) -> Response<MetadataBody> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        let mut body = MetadataBody::default();
        let status = match *method {
            Method::GET | Method::HEAD => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                headers.insert(header::CACHE_CONTROL, self.cache_control.clone());
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(self.json.len()));
                if *method == Method::GET {
                    body = MetadataBody(Some(self.json.clone()));
                }
                StatusCode::OK
            }
            Method::OPTIONS => {
                headers.insert(header::ALLOW, HeaderValue::from_static(ALLOW));
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    HeaderValue::from_static("GET, HEAD"),
                );
                // Whatever headers the client's script adds (a protocol version, say): the
                // document is public and the answer carries no credentials.
                if let Some(asked) = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
                    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
                }
                headers.insert(
                    header::ACCESS_CONTROL_MAX_AGE,
                    HeaderValue::from_static(PREFLIGHT_MAX_AGE),
                );
                StatusCode::NO_CONTENT
            }
            _ => {
                headers.insert(header::ALLOW, HeaderValue::from_static(ALLOW));
                StatusCode::METHOD_NOT_ALLOWED
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

impl<B> Service<Request<B>> for MetadataService {
    type Response = Response<MetadataBody>;
    type Error = Infallible;
    type Future = Ready<Result<Response<MetadataBody>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        ready(Ok(self.respond(request.method(), request.headers())))
    }
}

/// The body of a [`MetadataService`] answer: the document, or nothing.
#[derive(Debug, Default)]
pub struct MetadataBody(Option<Bytes>);

impl Body for MetadataBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(resource: &str) -> GuardFacts {
        GuardFacts {
            resource: ResourceIdentifier::parse(resource).unwrap(),
            authorization_servers: vec!["https://a.example".into(), "https://b.example".into()],
            dpop_algs: Vec::new(),
            dpop_required: false,
            mtls: false,
        }
    }

    fn json(builder: MetadataBuilder) -> Value {
        serde_json::from_slice(builder.build().unwrap().json()).unwrap()
    }

    #[test]
    fn the_well_known_segment_goes_between_host_and_path() {
        let cases = [
            (
                "https://api.example.com",
                "https://api.example.com/.well-known/oauth-protected-resource",
            ),
            (
                "https://api.example.com/",
                "https://api.example.com/.well-known/oauth-protected-resource",
            ),
            (
                "https://api.example.com/v1",
                "https://api.example.com/.well-known/oauth-protected-resource/v1",
            ),
            (
                "https://api.example.com/v1/",
                "https://api.example.com/.well-known/oauth-protected-resource/v1",
            ),
            (
                "https://api.example.com:8443/a/b",
                "https://api.example.com:8443/.well-known/oauth-protected-resource/a/b",
            ),
            (
                "http://127.0.0.1:8080/mcp",
                "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp",
            ),
            (
                "http://[::1]:3000",
                "http://[::1]:3000/.well-known/oauth-protected-resource",
            ),
            (
                "http://localhost/x%20y",
                "http://localhost/.well-known/oauth-protected-resource/x%20y",
            ),
        ];
        for (resource, url) in cases {
            let id = ResourceIdentifier::parse(resource).unwrap();
            assert_eq!(id.as_str(), resource);
            assert_eq!(id.metadata_url(), url, "{resource}");
            let path = url.split_once("//").unwrap().1;
            let path = &path[path.find('/').unwrap()..];
            assert_eq!(id.metadata_path(), path, "{resource}");
        }
    }

    #[test]
    fn a_resource_identifier_is_https_without_query_or_fragment() {
        let cases = [
            ("http://api.example.com", ResourceError::NotHttps),
            ("http://10.0.0.1", ResourceError::NotHttps),
            ("http://localhost.example", ResourceError::NotHttps),
            ("https://api.example.com/v1?x=1", ResourceError::Query),
            ("https://api.example.com/?", ResourceError::Query),
            ("https://api.example.com/#top", ResourceError::Fragment),
            (
                "ftp://api.example.com",
                ResourceError::Malformed(HtuError::UnsupportedScheme),
            ),
            (
                "api.example.com/v1",
                ResourceError::Malformed(HtuError::NotAbsolute),
            ),
            (
                "https://user@api.example.com",
                ResourceError::Malformed(HtuError::UserinfoNotAllowed),
            ),
            (
                "https://api.example.com/a b",
                ResourceError::Malformed(HtuError::InvalidCharacter),
            ),
            ("", ResourceError::Malformed(HtuError::NotAbsolute)),
        ];
        for (url, error) in cases {
            assert_eq!(ResourceIdentifier::parse(url), Err(error), "{url}");
        }
        let long = format!("https://api.example.com/{}", "a".repeat(4096));
        assert_eq!(
            ResourceIdentifier::parse(&long),
            Err(ResourceError::Malformed(HtuError::TooLong))
        );
        for loopback in [
            "http://127.0.0.1",
            "http://127.1.2.3:9",
            "http://[::1]",
            "http://localhost:8080/",
        ] {
            assert!(ResourceIdentifier::parse(loopback).is_ok(), "{loopback}");
        }
    }

    #[test]
    fn the_document_says_what_the_guard_enforces() {
        let mut f = facts("https://api.example.com/v1");
        assert_eq!(
            json(MetadataBuilder::new(Some(f.clone()))),
            serde_json::json!({
                "resource": "https://api.example.com/v1",
                "authorization_servers": ["https://a.example", "https://b.example"],
                "bearer_methods_supported": ["header"],
            })
        );
        f.dpop_algs = vec!["ES256".into(), "EdDSA".into()];
        f.mtls = true;
        let doc = json(MetadataBuilder::new(Some(f.clone())));
        assert_eq!(
            doc["dpop_signing_alg_values_supported"],
            serde_json::json!(["ES256", "EdDSA"])
        );
        assert_eq!(doc["dpop_bound_access_tokens_required"], false);
        assert_eq!(doc["tls_client_certificate_bound_access_tokens"], true);
        assert!(doc.get("resource_signing_alg_values_supported").is_none());
        f.dpop_required = true;
        let doc = json(MetadataBuilder::new(Some(f)));
        assert_eq!(doc["dpop_bound_access_tokens_required"], true);
    }

    #[test]
    fn members_the_guard_writes_cannot_be_overridden() {
        for name in RESERVED {
            let result = MetadataBuilder::new(Some(facts("https://api.example")))
                .member(name, "x")
                .build();
            assert!(
                matches!(&result, Err(MetadataError::ReservedMember(n)) if n == name),
                "{name}: {result:?}"
            );
        }
    }

    #[test]
    fn scopes_and_urls_are_checked() {
        let builder = || MetadataBuilder::new(Some(facts("https://api.example")));
        for bad in ["", "a b", "quote\"", "back\\slash", "caf\u{e9}"] {
            let result = builder().scopes_supported([bad]).build();
            assert!(
                matches!(&result, Err(MetadataError::InvalidScope(s)) if s == bad),
                "{bad:?}"
            );
        }
        assert!(builder().scopes_supported(["a:b", "!#[]~"]).build().is_ok());
        let result = builder()
            .resource_documentation("http://docs.example")
            .build();
        assert!(matches!(
            result,
            Err(MetadataError::InvalidUrl {
                member: "resource_documentation",
                error: ResourceError::NotHttps
            })
        ));
        let result = builder().jwks_uri("/jwks").build();
        assert!(matches!(
            result,
            Err(MetadataError::InvalidUrl {
                member: "jwks_uri",
                ..
            })
        ));
        // Documentation URLs may have a query or fragment; the resource identifier may not.
        assert!(
            builder()
                .resource_tos_uri("https://docs.example/tos?lang=en#terms")
                .build()
                .is_ok()
        );
        assert!(matches!(
            MetadataBuilder::new(None).build(),
            Err(MetadataError::NoResource)
        ));
    }

    #[test]
    fn the_service_answers_get_head_preflight_and_refuses_the_rest() {
        let metadata = MetadataBuilder::new(Some(facts("https://api.example")))
            .cache_max_age(Duration::from_secs(60))
            .build()
            .unwrap();
        let mut service = metadata.service();
        let call = |service: &mut MetadataService, method: Method| {
            let request = Request::builder()
                .method(method)
                .header("access-control-request-headers", "mcp-protocol-version")
                .body(())
                .unwrap();
            let response = service.respond(request.method(), request.headers());
            let (parts, body) = response.into_parts();
            (parts, body.0)
        };
        let (get, body) = call(&mut service, Method::GET);
        assert_eq!(get.status, StatusCode::OK);
        assert_eq!(get.headers["cache-control"], "public, max-age=60");
        assert_eq!(
            get.headers["content-length"],
            metadata.json().len().to_string()
        );
        assert_eq!(body.as_deref(), Some(metadata.json()));
        let (head, body) = call(&mut service, Method::HEAD);
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.headers, get.headers);
        assert_eq!(body, None);
        let (options, _) = call(&mut service, Method::OPTIONS);
        assert_eq!(options.status, StatusCode::NO_CONTENT);
        assert_eq!(
            options.headers["access-control-allow-headers"],
            "mcp-protocol-version"
        );
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
            let (refused, body) = call(&mut service, method.clone());
            assert_eq!(refused.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(refused.headers["allow"], "GET, HEAD, OPTIONS");
            assert_eq!(body, None);
        }
    }
}
