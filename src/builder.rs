//! Configuring a guard: trusted issuers, their keys, and the DPoP / mTLS / cache settings.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::algorithm::Algorithm;

use crate::challenge::ChallengeParams;
use crate::clock::{Clock, SystemClock};
use crate::dpop::{Dpop, DpopMode};
use crate::guard::{DEFAULT_LEEWAY, Inner, IssuerModes, OAuthGuard};
use crate::limits::MAX_REALM_LEN;
use crate::metadata::{GuardFacts, ResourceError, ResourceIdentifier};
use crate::mtls::{Mtls, MtlsMode};
use crate::token::cache::{DEFAULT_CACHE_CAPACITY, TokenCache};
#[cfg(feature = "fetch")]
use crate::token::discovery::{DiscoveryError, discover_introspection_endpoint, discover_jwks_uri};
#[cfg(feature = "fetch")]
use crate::token::fetch::{FetchError, HttpClient, parse_url};
#[cfg(feature = "fetch")]
use crate::token::introspection::{Introspection, Introspector};
use crate::token::issuer::{IssuerKeys, TrustedIssuer};
use crate::token::jwt::{DEFAULT_ALGORITHMS, JwtRules};
use crate::token::keys::{KeySet, KeysError};
#[cfg(feature = "fetch")]
use crate::token::remote::{DEFAULT_UNKNOWN_KID_COOLDOWN, RemoteKeys};
use crate::token::{JwksSource, TokenValidator};

/// One trusted issuer (RFC 9068 §4 checks 3–5): its `iss`, our audience(s), and its keys.
///
/// ```
/// use tower_oauth_guard::{DpopMode, Issuer};
///
/// let issuer = Issuer::new("https://issuer.example")   // exact `iss`
///     .audience("https://api.example")                 // one of these must be in `aud`
///     .audience("api://default")
///     .jwks_url("https://issuer.example/jwks")         // or .discover(), .jwks_file(..), .jwks(KeySet)
///     .dpop(DpopMode::Required);                       // only DPoP-bound tokens from this issuer
/// # let _ = issuer;
/// ```
#[derive(Debug, Clone)]
pub struct Issuer {
    issuer: String,
    audiences: Vec<String>,
    keys: Option<JwksSource>,
    dpop_mode: Option<DpopMode>,
    mtls_mode: Option<MtlsMode>,
    #[cfg(feature = "fetch")]
    introspection: Option<Introspection>,
}

impl Issuer {
    /// An issuer identified by its exact `iss` value.
    pub fn new(issuer: impl Into<String>) -> Self {
        Issuer {
            issuer: issuer.into(),
            audiences: Vec::new(),
            keys: None,
            dpop_mode: None,
            mtls_mode: None,
            #[cfg(feature = "fetch")]
            introspection: None,
        }
    }

    /// An audience this resource server answers to; `aud` must contain one of them. Without
    /// one, the guard's [`resource`](OAuthGuardBuilder::resource) identifier is the audience.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Keys from a fixed JWK Set, e.g. [`KeySet::from_json`].
    pub fn jwks(mut self, keys: KeySet) -> Self {
        self.keys = Some(JwksSource::Static(keys));
        self
    }

    /// Keys from a JWK Set file, read once at build.
    pub fn jwks_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.keys = Some(JwksSource::File(path.into()));
        self
    }

    /// Keys from `jwks_uri`, fetched at build and refreshed (feature `fetch`).
    #[cfg(feature = "fetch")]
    pub fn jwks_url(mut self, url: impl Into<String>) -> Self {
        self.keys = Some(JwksSource::Url(url.into()));
        self
    }

    /// Keys from the `jwks_uri` of the issuer's metadata (OIDC Discovery / RFC 8414; feature
    /// `fetch`).
    #[cfg(feature = "fetch")]
    pub fn discover(mut self) -> Self {
        self.keys = Some(JwksSource::Discover);
        self
    }

    /// This issuer's tokens use another DPoP mode than the guard's. A mode that accepts DPoP
    /// needs the guard's DPoP settings too ([`OAuthGuardBuilder::dpop`]): they say which
    /// public origin proofs name, and which replay store remembers them.
    pub fn dpop(mut self, mode: DpopMode) -> Self {
        self.dpop_mode = Some(mode);
        self
    }

    /// This issuer's tokens use another mTLS mode than the guard's.
    pub fn mtls(mut self, mode: MtlsMode) -> Self {
        self.mtls_mode = Some(mode);
        self
    }

    /// Ask this issuer's introspection endpoint (RFC 7662; feature `fetch`) about the tokens
    /// that are not JWTs, and, with [`Introspection::jwts_too`], about its JWTs as well. An
    /// issuer that only hands out opaque tokens needs no keys. One issuer at most may
    /// introspect: an opaque token does not say who issued it, and is never shown to
    /// another.
    #[cfg(feature = "fetch")]
    pub fn introspection(mut self, introspection: Introspection) -> Self {
        self.introspection = Some(introspection);
        self
    }
}

impl OAuthGuard {
    /// Starts configuring a guard.
    pub fn builder() -> OAuthGuardBuilder {
        OAuthGuardBuilder::default()
    }
}

/// Why a guard could not be built.
///
/// ```
/// use tower_oauth_guard::{BuildError, Issuer, OAuthGuard};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let no_audience = OAuthGuard::builder()
///     .trust(Issuer::new("https://issuer.example").jwks_file("jwks.json"))
///     .build()
///     .await;
/// assert!(matches!(no_audience, Err(BuildError::MissingAudience(issuer)) if issuer == "https://issuer.example"));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// No crypto backend: enable feature `aws-lc-rs` or `rust-crypto`.
    NoCryptoBackend,
    /// No issuer configured.
    NoIssuer,
    /// The same issuer configured twice.
    DuplicateIssuer(String),
    /// An issuer has no audience, and the guard no [`resource`](OAuthGuardBuilder::resource)
    /// to take as one (RFC 9068 §4 check 5 cannot be skipped).
    MissingAudience(String),
    /// An issuer has no key source.
    MissingKeys(String),
    /// The HTTP client could not be set up.
    #[cfg(feature = "fetch")]
    HttpClient(FetchError),
    /// A JWKS URL is unusable.
    #[cfg(feature = "fetch")]
    InvalidJwksUrl(String, FetchError),
    /// Discovery failed.
    #[cfg(feature = "fetch")]
    Discovery(String, DiscoveryError),
    /// The issuer's keys could not be loaded, or hold no usable key.
    Keys(String, KeysError),
    /// An issuer accepts DPoP ([`Issuer::dpop`]) but the guard has no DPoP settings to check
    /// proofs with (no public origin for `htu`, RFC 9449 §4.3 check 9): set
    /// [`OAuthGuardBuilder::dpop`] too.
    DpopNotConfigured(String),
    /// [`PublicUri::Fixed`](crate::PublicUri::Fixed) with no URL, or
    /// [`PublicUri::TrustForwarded`](crate::PublicUri::TrustForwarded) with no proxy.
    EmptyPublicOrigin,
    /// The `realm` cannot be sent in a `WWW-Authenticate` header: it must be at most
    /// [`MAX_REALM_LEN`] bytes of visible ASCII and spaces.
    InvalidRealm,
    /// An introspection endpoint URL is unusable.
    #[cfg(feature = "fetch")]
    InvalidIntrospectionEndpoint(String, FetchError),
    /// More than one issuer has an introspection endpoint: an opaque token does not say which
    /// issuer to ask, and asking the wrong one would show it the token.
    SeveralIntrospectingIssuers,
    /// The [`resource`](OAuthGuardBuilder::resource) identifier is not one (RFC 9728 §1.2).
    InvalidResource(ResourceError),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoCryptoBackend => {
                f.write_str("no crypto backend: enable feature `aws-lc-rs` or `rust-crypto`")
            }
            Self::NoIssuer => f.write_str("no issuer configured"),
            Self::DuplicateIssuer(i) => write!(f, "issuer {i} configured twice"),
            Self::MissingAudience(i) => write!(f, "issuer {i} has no audience"),
            Self::MissingKeys(i) => write!(f, "issuer {i} has no key source"),
            #[cfg(feature = "fetch")]
            Self::HttpClient(e) => write!(f, "HTTP client: {e}"),
            #[cfg(feature = "fetch")]
            Self::InvalidJwksUrl(i, e) => write!(f, "issuer {i}: JWKS URL: {e}"),
            #[cfg(feature = "fetch")]
            Self::Discovery(i, e) => write!(f, "issuer {i}: discovery: {e}"),
            Self::Keys(i, e) => write!(f, "issuer {i}: keys: {e}"),
            Self::DpopNotConfigured(i) => write!(
                f,
                "issuer {i} accepts DPoP but the guard has no DPoP settings: call .dpop(Dpop::allowed(PublicUri::fixed(BaseUrl::parse(\"https://your.api\")?)))"
            ),
            Self::EmptyPublicOrigin => {
                f.write_str("the DPoP public origin names no URL (PublicUri::Fixed) or no proxy (PublicUri::TrustForwarded)")
            }
            Self::InvalidRealm => write!(
                f,
                "realm must be at most {MAX_REALM_LEN} bytes of visible ASCII and spaces"
            ),
            #[cfg(feature = "fetch")]
            Self::InvalidIntrospectionEndpoint(i, e) => {
                write!(f, "issuer {i}: introspection endpoint: {e}")
            }
            Self::SeveralIntrospectingIssuers => {
                f.write_str("at most one issuer may have an introspection endpoint")
            }
            Self::InvalidResource(e) => write!(f, "resource identifier: {e}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Builder for [`OAuthGuard`]. Defaults are the safe ones: asymmetric algorithms only, 60 s
/// leeway, verified-token cache on, DPoP off until enabled together with the public origin
/// (DPoP-bound tokens are refused as Bearer in every mode), mTLS optional (bound tokens
/// always checked), proxy headers ignored.
///
/// ```
/// # const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// use std::time::Duration;
/// use tower_oauth_guard::{Algorithm, BaseUrl, Dpop, Issuer, KeySet, Mtls, OAuthGuard, PublicUri};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let guard = OAuthGuard::builder()
///     .trust(Issuer::new("https://issuer.example").audience("https://api.example").jwks(KeySet::from_json(JWKS)?))
///     .algorithms([Algorithm::ES256, Algorithm::EdDSA])
///     .leeway(Duration::from_secs(30))
///     .require_at_jwt_typ()
///     .realm("api")
///     .dpop(Dpop::allowed(PublicUri::fixed(BaseUrl::parse("https://api.example")?)))
///     .mtls(Mtls::allowed())
///     .build()
///     .await?;
/// # let _ = guard;
/// # Ok(()) }
/// ```
pub struct OAuthGuardBuilder {
    issuers: Vec<Issuer>,
    rules: JwtRules,
    cache_capacity: u64,
    realm: Option<String>,
    resource: Option<String>,
    dpop: Dpop,
    mtls: Mtls,
    /// `mtls` was set: the metadata says certificate-bound tokens are supported.
    mtls_configured: bool,
    clock: Arc<dyn Clock>,
    #[cfg(feature = "fetch")]
    http_tls: Option<rustls::ClientConfig>,
    #[cfg(feature = "fetch")]
    unknown_kid_cooldown: Duration,
}

impl Default for OAuthGuardBuilder {
    fn default() -> Self {
        OAuthGuardBuilder {
            issuers: Vec::new(),
            rules: JwtRules {
                algorithms: DEFAULT_ALGORITHMS.to_vec(),
                leeway: DEFAULT_LEEWAY.as_secs() as i64,
                require_at_jwt_typ: false,
            },
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            realm: None,
            resource: None,
            dpop: Dpop::disabled(),
            mtls: Mtls::allowed(),
            mtls_configured: false,
            clock: Arc::new(SystemClock),
            #[cfg(feature = "fetch")]
            http_tls: None,
            #[cfg(feature = "fetch")]
            unknown_kid_cooldown: DEFAULT_UNKNOWN_KID_COOLDOWN,
        }
    }
}

impl OAuthGuardBuilder {
    /// Trusts a fully configured [`Issuer`].
    pub fn trust(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Signature algorithms accepted for access tokens (asymmetric only: [`Algorithm`] has no
    /// HMAC or `none`).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.rules.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Clock skew tolerated on `exp`, `nbf`, `iat` (default 60 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.rules.leeway = i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX);
        self
    }

    /// Demand `typ: at+jwt` (RFC 9068 §4 check 2). By default untyped and plain `JWT` tokens,
    /// which most issuers still send, pass too; other kinds (`dpop+jwt`, ...) never do.
    pub fn require_at_jwt_typ(mut self) -> Self {
        self.rules.require_at_jwt_typ = true;
        self
    }

    /// Size of the verified-token cache (default 10 000 tokens): a token seen before skips
    /// parsing and signature verification until its `exp`, or five minutes at most.
    pub fn token_cache(mut self, capacity: std::num::NonZeroU64) -> Self {
        self.cache_capacity = capacity.get();
        self
    }

    /// Verifies every token's signature on every request: no verified-token cache.
    pub fn no_token_cache(mut self) -> Self {
        self.cache_capacity = 0;
        self
    }

    /// `realm` of every challenge (RFC 6750 §3).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// This resource's identifier (RFC 9728 §1.2): an `https` URL (plain `http` only on a
    /// loopback host) without query or fragment, kept exactly as written. With it, every
    /// challenge names the URL of the resource's metadata in `resource_metadata` (RFC 9728
    /// §5.1, §3.1), [`OAuthGuard::metadata`] builds that document, and it is the audience of
    /// every issuer configured without one ([`Issuer::audience`]): a token must then have been
    /// issued for this resource (RFC 8707). An issuer with its own audiences keeps them only;
    /// list the identifier among them for RFC 8707 clients. Checked at [`build`](Self::build).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// The time source (tests, replayed vectors).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Minimum time between JWKS refreshes caused by unknown `kid`s (default 30 s).
    #[cfg(feature = "fetch")]
    pub fn jwks_refresh_cooldown(mut self, cooldown: Duration) -> Self {
        self.unknown_kid_cooldown = cooldown;
        self
    }

    /// TLS settings for fetching metadata and keys (default: platform roots).
    #[cfg(feature = "fetch")]
    pub fn http_tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.http_tls = Some(config);
        self
    }

    /// Accept DPoP-bound tokens (RFC 9449): off until set, since accepting DPoP needs the
    /// API's public origin, which [`Dpop`]'s constructors take. A second call replaces the
    /// first call's settings as a whole.
    pub fn dpop(mut self, dpop: Dpop) -> Self {
        self.dpop = dpop;
        self
    }

    /// Certificate-bound tokens (RFC 8705): default [`Mtls::allowed`], bound tokens checked
    /// and unbound ones passed. A second call replaces the first. Setting it (or an issuer's
    /// [`Issuer::mtls`]) also says in the metadata document that certificate-bound tokens are
    /// supported (`tls_client_certificate_bound_access_tokens`, RFC 9728 §2): the server
    /// then asks for client certificates.
    pub fn mtls(mut self, mtls: Mtls) -> Self {
        self.mtls = mtls;
        self.mtls_configured = true;
        self
    }

    /// Loads keys (fetching remote ones) and returns the guard.
    pub async fn build(self) -> Result<OAuthGuard, BuildError> {
        if !crate::crypto::install_jwt_provider() {
            return Err(BuildError::NoCryptoBackend);
        }
        if self.issuers.is_empty() {
            return Err(BuildError::NoIssuer);
        }
        if let Some(realm) = &self.realm
            && (realm.len() > MAX_REALM_LEN
                || !realm.bytes().all(|b| b == b' ' || b.is_ascii_graphic()))
        {
            return Err(BuildError::InvalidRealm);
        }
        let resource = self
            .resource
            .as_deref()
            .map(ResourceIdentifier::parse)
            .transpose()
            .map_err(BuildError::InvalidResource)?;
        match &self.dpop.public_uri {
            Some(public) if !public.is_usable() => return Err(BuildError::EmptyPublicOrigin),
            Some(_) => {}
            None => {
                let accepts_dpop =
                    |i: &&Issuer| i.dpop_mode.is_some_and(|m| m != DpopMode::Disabled);
                if let Some(issuer) = self.issuers.iter().find(accepts_dpop) {
                    return Err(BuildError::DpopNotConfigured(issuer.issuer.clone()));
                }
            }
        }
        let metadata = resource.as_ref().map(|resource| {
            let dpop_modes: Vec<DpopMode> = self
                .issuers
                .iter()
                .map(|i| i.dpop_mode.unwrap_or(self.dpop.mode))
                .collect();
            let accepts_dpop = dpop_modes.iter().any(|m| *m != DpopMode::Disabled);
            GuardFacts {
                resource: resource.clone(),
                authorization_servers: self.issuers.iter().map(|i| i.issuer.clone()).collect(),
                dpop_algs: if accepts_dpop {
                    self.dpop.alg_names()
                } else {
                    Vec::new()
                },
                dpop_required: dpop_modes.iter().all(|m| *m == DpopMode::Required),
                mtls: self.mtls_configured || self.issuers.iter().any(|i| i.mtls_mode.is_some()),
            }
        });
        let cache =
            (self.cache_capacity > 0).then(|| Arc::new(TokenCache::new(self.cache_capacity)));
        #[cfg(feature = "fetch")]
        let mut client: Option<HttpClient> = None;
        let mut issuers = HashMap::new();
        let mut issuer_modes = HashMap::new();
        #[cfg(feature = "fetch")]
        let mut opaque_issuer: Option<String> = None;
        for mut issuer in self.issuers {
            let name = issuer.issuer.clone();
            if issuer.audiences.is_empty() {
                match &resource {
                    // RFC 8707 §2: the token names the resource it was issued for.
                    Some(resource) => issuer.audiences.push(resource.as_str().to_owned()),
                    None => return Err(BuildError::MissingAudience(name)),
                }
            }
            #[cfg(feature = "fetch")]
            let introspected = issuer.introspection.is_some();
            #[cfg(not(feature = "fetch"))]
            let introspected = false;
            let keys = match issuer.keys {
                None if introspected => IssuerKeys::None,
                None => return Err(BuildError::MissingKeys(name.clone())),
                Some(source) => match source {
                    JwksSource::Static(keys) => {
                        if keys.is_empty() {
                            return Err(BuildError::Keys(name.clone(), KeysError::NoUsableKey));
                        }
                        IssuerKeys::Static(keys)
                    }
                    JwksSource::File(path) => {
                        let bytes = tokio::fs::read(&path)
                            .await
                            .map_err(|e| BuildError::Keys(name.clone(), KeysError::Io(e)))?;
                        let set = KeySet::from_json(&bytes)
                            .map_err(|e| BuildError::Keys(name.clone(), e))?;
                        IssuerKeys::Static(set)
                    }
                    #[cfg(feature = "fetch")]
                    source => {
                        let client = match &client {
                            Some(c) => c.clone(),
                            None => client
                                .insert(http_client(self.http_tls.clone()).await?)
                                .clone(),
                        };
                        let remote =
                            remote_keys(&name, source, client, self.unknown_kid_cooldown).await?;
                        IssuerKeys::Remote(remote)
                    }
                },
            };
            #[cfg(feature = "fetch")]
            let introspection = match issuer.introspection {
                None => None,
                Some(config) => {
                    let client = match &client {
                        Some(c) => c.clone(),
                        None => client
                            .insert(http_client(self.http_tls.clone()).await?)
                            .clone(),
                    };
                    if opaque_issuer.replace(name.clone()).is_some() {
                        return Err(BuildError::SeveralIntrospectingIssuers);
                    }
                    if config.signed_answers && matches!(keys, IssuerKeys::None) {
                        // Signed answers (RFC 9701) are verified with the issuer's keys.
                        return Err(BuildError::MissingKeys(name));
                    }
                    let algorithms = &self.rules.algorithms;
                    let cache = cache.clone();
                    Some(Arc::new(
                        introspector(&name, config, client, &keys, algorithms, cache).await?,
                    ))
                }
            };
            let trusted = TrustedIssuer {
                issuer: name.as_str().into(),
                audiences: issuer.audiences,
                keys,
                #[cfg(feature = "fetch")]
                introspection,
            };
            let modes = IssuerModes {
                dpop: issuer.dpop_mode,
                mtls: issuer.mtls_mode,
            };
            if modes != IssuerModes::default() {
                issuer_modes.insert(name.clone(), modes);
            }
            if issuers.insert(name.clone(), trusted).is_some() {
                return Err(BuildError::DuplicateIssuer(name));
            }
        }
        let challenge = ChallengeParams {
            realm: self.realm,
            dpop_algs: self.dpop.algs(),
            resource_metadata: resource.map(|r| r.metadata_url().to_owned()),
        };
        Ok(OAuthGuard {
            inner: Arc::new(Inner {
                id: crate::guard::next_guard_id(),
                issuer_modes,
                validator: TokenValidator {
                    issuers,
                    rules: self.rules,
                    cache,
                    #[cfg(feature = "fetch")]
                    opaque_issuer,
                },
                dpop: self.dpop,
                mtls: self.mtls,
                clock: self.clock,
                challenge,
                metadata,
            }),
        })
    }
}

/// The HTTPS client for issuer metadata and keys. Loading the platform's root certificates
/// reads files: off the async workers.
#[cfg(feature = "fetch")]
async fn http_client(tls: Option<rustls::ClientConfig>) -> Result<HttpClient, BuildError> {
    tokio::task::spawn_blocking(move || HttpClient::new(tls))
        .await
        .map_err(|e| BuildError::HttpClient(FetchError::Transport(Box::new(e))))?
        .map_err(BuildError::HttpClient)
}

/// The issuer's introspection endpoint: configured, or from its metadata.
#[cfg(feature = "fetch")]
async fn introspector(
    issuer: &str,
    config: Introspection,
    client: HttpClient,
    keys: &IssuerKeys,
    algorithms: &[Algorithm],
    cache: Option<Arc<TokenCache>>,
) -> Result<Introspector, BuildError> {
    let endpoint = match &config.endpoint {
        Some(url) => url.clone(),
        None => discover_introspection_endpoint(issuer, &client)
            .await
            .map_err(|e| BuildError::Discovery(issuer.to_owned(), e))?,
    };
    Introspector::new(config, &endpoint, client, keys, algorithms, cache)
        .map_err(|e| BuildError::InvalidIntrospectionEndpoint(issuer.to_owned(), e))
}

/// Keys from a URL, or from the URL in the issuer's metadata: fetched now, refreshed later.
#[cfg(feature = "fetch")]
async fn remote_keys(
    issuer: &str,
    source: JwksSource,
    client: HttpClient,
    cooldown: Duration,
) -> Result<std::sync::Arc<RemoteKeys>, BuildError> {
    let url = match source {
        JwksSource::Url(url) => {
            parse_url(&url).map_err(|e| BuildError::InvalidJwksUrl(issuer.to_owned(), e))?
        }
        _ => discover_jwks_uri(issuer, &client)
            .await
            .map_err(|e| BuildError::Discovery(issuer.to_owned(), e))?,
    };
    let (remote, refresh) = RemoteKeys::load(url, client, cooldown)
        .await
        .map_err(|e| BuildError::Keys(issuer.to_owned(), e))?;
    remote.spawn_refresh(refresh);
    Ok(remote)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
    use crate::dpop::htu::BaseUrl;
    #[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
    use crate::dpop::origin::PublicUri;

    /// The P-256 public key of RFC 7515 Appendix A.3.
    fn one_key() -> KeySet {
        KeySet::from_json(
            br#"{"keys": [{
                "kty": "EC", "crv": "P-256", "kid": "a3",
                "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
            }]}"#,
        )
        .unwrap()
    }

    fn issuer() -> Issuer {
        Issuer::new("https://issuer.example").audience("api")
    }

    fn builder() -> OAuthGuardBuilder {
        OAuthGuard::builder().trust(issuer().jwks(one_key()))
    }

    #[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
    #[tokio::test]
    async fn build_without_crypto_backend_is_an_error_not_a_panic() {
        let result = builder().build().await;
        assert!(matches!(result, Err(BuildError::NoCryptoBackend)));
        // Standalone proof verification refuses instead of panicking too.
        let expected = crate::dpop::proof::ExpectedRequest {
            method: "GET",
            htu: "https://api.example/",
            access_token: None,
        };
        let err = crate::dpop::proof::verify_proof(
            "a.b.c",
            &expected,
            &crate::dpop::proof::ProofPolicy::default(),
            0,
            |s| Some(s.to_owned()),
        )
        .unwrap_err();
        assert_eq!(err, crate::dpop::ProofError::NoCryptoBackend);
    }

    #[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
    #[tokio::test]
    async fn build_installs_a_provider_whatever_the_feature_mix() {
        // With both features on (CI's --all-features), jsonwebtoken alone would panic at
        // first use; a built guard has installed aws-lc-rs explicitly.
        let guard = builder().build().await;
        assert!(guard.is_ok(), "{guard:?}");
        // The choice itself: aws-lc-rs whenever its feature is on, RustCrypto otherwise.
        let chosen = crate::crypto::jwt_provider().unwrap();
        #[cfg(feature = "aws-lc-rs")]
        assert!(std::ptr::eq(
            chosen,
            &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
        ));
        #[cfg(not(feature = "aws-lc-rs"))]
        assert!(std::ptr::eq(
            chosen,
            &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
        ));
    }

    #[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
    #[tokio::test]
    async fn refuses_a_missing_audience_keys_or_issuer() {
        let no_aud = OAuthGuard::builder()
            .trust(Issuer::new("https://issuer.example").jwks(one_key()))
            .build()
            .await;
        assert!(matches!(no_aud, Err(BuildError::MissingAudience(_))));
        let no_keys = OAuthGuard::builder().trust(issuer()).build().await;
        assert!(matches!(no_keys, Err(BuildError::MissingKeys(_))));
        let none = OAuthGuard::builder().build().await;
        assert!(matches!(none, Err(BuildError::NoIssuer)));
        let twice = builder().trust(issuer().jwks(one_key())).build().await;
        assert!(matches!(twice, Err(BuildError::DuplicateIssuer(_))));
    }

    #[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
    #[tokio::test]
    async fn refuses_a_static_key_set_without_usable_keys() {
        let empty = OAuthGuard::builder()
            .trust(issuer().jwks(KeySet::default()))
            .build()
            .await;
        assert!(
            matches!(empty, Err(BuildError::Keys(_, KeysError::NoUsableKey))),
            "{empty:?}"
        );
        let secret_only = KeySet::from_json(
            br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}"#,
        );
        assert!(matches!(secret_only, Err(KeysError::NoUsableKey)));
    }

    #[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
    #[tokio::test]
    async fn refuses_a_realm_that_cannot_be_sent() {
        for realm in [
            "a\"b\nc",
            "caf\u{e9}",
            "tab\there",
            &"r".repeat(MAX_REALM_LEN + 1),
        ] {
            let r = builder().realm(realm).build().await;
            assert!(matches!(r, Err(BuildError::InvalidRealm)), "{realm:?}");
        }
        assert!(builder().realm("api \"v1\"").build().await.is_ok());
    }

    #[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
    #[tokio::test]
    async fn an_issuer_accepting_dpop_needs_the_guards_dpop_settings() {
        // Off by default, so the minimal bearer guard builds without a public origin.
        assert!(builder().build().await.is_ok());
        let dpop_issuer = |mode| {
            Issuer::new("https://other.example")
                .audience("api")
                .jwks(one_key())
                .dpop(mode)
        };
        for mode in [DpopMode::Allowed, DpopMode::Required] {
            let per_issuer = builder().trust(dpop_issuer(mode)).build().await;
            assert!(
                matches!(&per_issuer, Err(BuildError::DpopNotConfigured(i)) if i == "https://other.example"),
                "{mode:?}: {per_issuer:?}"
            );
            assert!(
                per_issuer
                    .unwrap_err()
                    .to_string()
                    .contains(".dpop(Dpop::allowed(")
            );
        }
        // An issuer that turns DPoP off needs nothing.
        let off = builder()
            .trust(
                Issuer::new("https://other.example")
                    .audience("api")
                    .jwks(one_key())
                    .dpop(DpopMode::Disabled),
            )
            .build()
            .await;
        assert!(off.is_ok());
        let public = || PublicUri::fixed(BaseUrl::parse("https://api.example").unwrap());
        let with_settings = builder()
            .dpop(Dpop::allowed(public()))
            .trust(dpop_issuer(DpopMode::Required))
            .build()
            .await;
        assert!(with_settings.is_ok());
        let empty = builder()
            .dpop(Dpop::allowed(PublicUri::Fixed(vec![])))
            .build()
            .await;
        assert!(matches!(empty, Err(BuildError::EmptyPublicOrigin)));
        let no_proxy = builder()
            .dpop(Dpop::required(PublicUri::forwarded_by(
                [],
                crate::dpop::origin::ForwardedHeaders::Forwarded,
            )))
            .build()
            .await;
        assert!(matches!(no_proxy, Err(BuildError::EmptyPublicOrigin)));
    }
}
