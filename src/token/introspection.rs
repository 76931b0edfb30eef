//! Token introspection (RFC 7662): the issuer says whether a token is active, and what it
//! grants. Opaque tokens are validated this way, and the JWTs of an issuer configured for it
//! (tokens whose revocation must take effect before they expire).
//!
//! The answer feeds the same checks as a JWT's claims ([`Validated::check`]): `iss`, `aud`,
//! `exp`, `nbf`, `iat`, `sub`, `client_id`, `scope`, and `cnf` for DPoP (RFC 9449 §6.2) and
//! mTLS (RFC 8705 §3.2) binding. Active answers are kept in the guard's verified-token cache
//! until the token's `exp` or the configured maximum, whichever is sooner; inactive ones
//! briefly; concurrent requests with the same token share one request to the issuer; an issuer
//! that cannot answer gets the request refused with `503`, never admitted (RFC 7662 §4).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, HeaderValue, Uri, header};
use tokio::sync::watch;

use super::cache::{MAX_CACHE_TTL, TokenCache};
use super::claims::{Confirmation, Expected, Validated};
use super::error::TokenError;
use super::fetch::{Answer, FetchError, HttpClient, parse_url};
use super::issuer_keys::IssuerKeys;
use super::registered::Registered;
use super::signed::verified_payload;
use crate::algorithm::Algorithm;
use crate::json::Claim;
use crate::limits::MAX_INTROSPECTION_RESPONSE_LEN;

/// Default longest time an active answer is reused before the issuer is asked again.
pub const DEFAULT_INTROSPECTION_CACHE_TTL: Duration = Duration::from_secs(60);
/// Default time an inactive answer is reused.
pub const DEFAULT_INACTIVE_CACHE_TTL: Duration = Duration::from_secs(10);
/// Default time one introspection request may take, end to end.
pub const DEFAULT_INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default most introspection requests in flight to one issuer at once.
pub const DEFAULT_INTROSPECTION_CONCURRENCY: usize = 32;
/// Inactive answers remembered at most.
const INACTIVE_CAPACITY: u64 = 10_000;
/// The media type of a signed introspection answer (RFC 9701 §5).
const SIGNED_ANSWER: &str = "application/token-introspection+jwt";
/// Lifetime of a `private_key_jwt` client assertion (RFC 7523 §3 item 4).
const ASSERTION_LIFETIME: i64 = 60;

/// How the guard authenticates to an issuer's introspection endpoint (RFC 7662 §2.1: the
/// endpoint requires it). Its `Debug` shows the method and the client id, never a secret.
///
/// ```
/// use tower_oauth_guard::IntrospectionAuth;
///
/// let auth = IntrospectionAuth::client_secret_basic("api", "s3cret");
/// assert!(!format!("{auth:?}").contains("s3cret"));
/// ```
#[derive(Clone)]
pub struct IntrospectionAuth(Method);

#[derive(Clone)]
enum Method {
    SecretBasic {
        client_id: String,
        secret: String,
    },
    PrivateKeyJwt {
        client_id: String,
        key: Arc<jsonwebtoken::EncodingKey>,
        alg: jsonwebtoken::Algorithm,
        kid: Option<String>,
    },
    TlsClientAuth {
        client_id: String,
    },
}

impl std::fmt::Debug for IntrospectionAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (method, client_id) = match &self.0 {
            Method::SecretBasic { client_id, .. } => ("client_secret_basic", client_id),
            Method::PrivateKeyJwt { client_id, .. } => ("private_key_jwt", client_id),
            Method::TlsClientAuth { client_id } => ("tls_client_auth", client_id),
        };
        f.debug_struct("IntrospectionAuth")
            .field("method", &method)
            .field("client_id", client_id)
            .finish_non_exhaustive()
    }
}

/// Why a [`IntrospectionAuth`] could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntrospectionAuthError {
    /// The key is not a PEM private key of the algorithm's type.
    InvalidKey,
}

impl std::fmt::Display for IntrospectionAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a PEM private key for this algorithm")
    }
}

impl std::error::Error for IntrospectionAuthError {}

impl IntrospectionAuth {
    /// `client_secret_basic` (RFC 6749 §2.3.1): HTTP Basic with the form-encoded client id
    /// and secret.
    pub fn client_secret_basic(client_id: impl Into<String>, secret: impl Into<String>) -> Self {
        IntrospectionAuth(Method::SecretBasic {
            client_id: client_id.into(),
            secret: secret.into(),
        })
    }

    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): a short-lived JWT signed
    /// with this private key, whose `iss` and `sub` are the client id and `aud` the issuer.
    /// The key is PEM: PKCS#8 (`PRIVATE KEY`) for ES256, ES384 and EdDSA; PKCS#1
    /// (`RSA PRIVATE KEY`) for the RSA algorithms.
    ///
    /// # Errors
    ///
    /// [`IntrospectionAuthError::InvalidKey`] when `pem` is not a private key that signs with
    /// `algorithm` (tried once, here).
    pub fn private_key_jwt(
        client_id: impl Into<String>,
        algorithm: Algorithm,
        pem: &[u8],
        kid: Option<String>,
    ) -> Result<Self, IntrospectionAuthError> {
        use jsonwebtoken::{Algorithm as A, EncodingKey};
        use pki_types::pem::PemObject as _;
        let der = pki_types::PrivateKeyDer::from_pem_slice(pem)
            .map_err(|_| IntrospectionAuthError::InvalidKey)?;
        let der = der.secret_der();
        let (alg, key) = match algorithm {
            Algorithm::ES256 => (A::ES256, EncodingKey::from_ec_der(der)),
            Algorithm::ES384 => (A::ES384, EncodingKey::from_ec_der(der)),
            Algorithm::RS256 => (A::RS256, EncodingKey::from_rsa_der(der)),
            Algorithm::RS384 => (A::RS384, EncodingKey::from_rsa_der(der)),
            Algorithm::RS512 => (A::RS512, EncodingKey::from_rsa_der(der)),
            Algorithm::PS256 => (A::PS256, EncodingKey::from_rsa_der(der)),
            Algorithm::PS384 => (A::PS384, EncodingKey::from_rsa_der(der)),
            Algorithm::PS512 => (A::PS512, EncodingKey::from_rsa_der(der)),
            Algorithm::EdDSA => (A::EdDSA, EncodingKey::from_ed_der(der)),
        };
        // A key that cannot sign fails here, not on the first request.
        let signs = crate::crypto::install_jwt_provider()
            && jsonwebtoken::encode(
                &jsonwebtoken::Header::new(alg),
                &serde_json::json!({}),
                &key,
            )
            .is_ok();
        if !signs {
            return Err(IntrospectionAuthError::InvalidKey);
        }
        Ok(IntrospectionAuth(Method::PrivateKeyJwt {
            client_id: client_id.into(),
            key: Arc::new(key),
            alg,
            kid,
        }))
    }

    /// The client id, however it authenticates.
    fn client_id(&self) -> &str {
        match &self.0 {
            Method::SecretBasic { client_id, .. }
            | Method::PrivateKeyJwt { client_id, .. }
            | Method::TlsClientAuth { client_id } => client_id,
        }
    }

    /// `tls_client_auth` (RFC 8705 §2): the client certificate of the guard's HTTP client
    /// (give it one with [`OAuthGuardBuilder::http_tls_config`](crate::OAuthGuardBuilder::http_tls_config)),
    /// and the client id in the form.
    pub fn tls_client_auth(client_id: impl Into<String>) -> Self {
        IntrospectionAuth(Method::TlsClientAuth {
            client_id: client_id.into(),
        })
    }
}

/// An issuer's introspection endpoint (RFC 7662), for [`Issuer::introspection`](crate::Issuer::introspection).
///
/// ```
/// use std::time::Duration;
/// use tower_oauth_guard::{IntrospectionAuth, Introspection, Issuer};
///
/// let issuer = Issuer::new("https://issuer.example")
///     .audience("https://api.example")
///     .introspection(
///         Introspection::new(IntrospectionAuth::client_secret_basic("api", "s3cret"))
///             .endpoint("https://issuer.example/introspect") // or, by default, discovered
///             .jwts_too()                                  // revocation-sensitive: ask for JWTs too
///             .max_cache_ttl(Duration::from_secs(30)),
///     );
/// # let _ = issuer;
/// ```
#[derive(Debug, Clone)]
pub struct Introspection {
    pub(crate) endpoint: Option<String>,
    pub(crate) auth: IntrospectionAuth,
    pub(crate) jwts: bool,
    pub(crate) signed_answers: bool,
    pub(crate) max_cache_ttl: Duration,
    pub(crate) inactive_cache_ttl: Duration,
    pub(crate) timeout: Duration,
    pub(crate) concurrency: usize,
}

impl Introspection {
    /// Introspection authenticated with `auth`, at the `introspection_endpoint` of the
    /// issuer's metadata (RFC 8414 §2) unless [`Introspection::endpoint`] names it.
    pub fn new(auth: IntrospectionAuth) -> Self {
        Introspection {
            endpoint: None,
            auth,
            jwts: false,
            signed_answers: false,
            max_cache_ttl: DEFAULT_INTROSPECTION_CACHE_TTL,
            inactive_cache_ttl: DEFAULT_INACTIVE_CACHE_TTL,
            timeout: DEFAULT_INTROSPECTION_TIMEOUT,
            concurrency: DEFAULT_INTROSPECTION_CONCURRENCY,
        }
    }

    /// The endpoint's URL (https; http only on loopback).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The issuer's JWTs are introspected too, once they validate locally: a revoked JWT is
    /// refused within [`Introspection::max_cache_ttl`] rather than at its `exp`.
    pub fn jwts_too(mut self) -> Self {
        self.jwts = true;
        self
    }

    /// Ask for answers signed by the issuer (RFC 9701: `application/token-introspection+jwt`,
    /// verified with the issuer's keys, its `iss` the issuer's and its `aud` this client):
    /// an answer that is not, or does not verify, is refused with `503`. The issuer needs
    /// keys ([`Issuer::jwks_url`](crate::Issuer::jwks_url) or another key source).
    pub fn signed_answers(mut self) -> Self {
        self.signed_answers = true;
        self
    }

    /// Longest an active answer is reused (default 60 s); never beyond the token's `exp`.
    pub fn max_cache_ttl(mut self, ttl: Duration) -> Self {
        self.max_cache_ttl = ttl;
        self
    }

    /// How long an inactive answer is reused (default 10 s; zero: not at all; at most
    /// 5 min, the longest the verified-token cache keeps anything).
    pub fn inactive_cache_ttl(mut self, ttl: Duration) -> Self {
        self.inactive_cache_ttl = ttl;
        self
    }

    /// Longest one introspection request may take (default 5 s), waiting for a free slot
    /// included ([`Introspection::max_concurrent_requests`]; a request still waiting at half
    /// of it is not sent); past it, `503`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Most requests in flight to the endpoint at once (default 32; at least 1). Requests
    /// for one token share one already; this bounds what many different tokens (say, a
    /// flood of made-up opaque ones) can make the guard send: the others wait for a slot
    /// within half of [`Introspection::timeout`], then get `503`. A request keeps its slot
    /// until the endpoint answers or the timeout ends it, even when the request it serves
    /// is abandoned.
    pub fn max_concurrent_requests(mut self, requests: usize) -> Self {
        self.concurrency = requests.max(1);
        self
    }
}

/// The answer of one token's introspection, once it is in, for every request that presents
/// the token meanwhile.
type Shared = watch::Receiver<Option<Result<Arc<Validated>, TokenError>>>;

/// Removes one introspection's entry from the in-flight map when dropped: when its task is
/// done, and also when the task panics, or is dropped with its runtime, polled or not.
struct Forget {
    introspector: Arc<Introspector>,
    digest: [u8; 32],
    shared: Shared,
}

impl Drop for Forget {
    fn drop(&mut self) {
        let mut in_flight = self
            .introspector
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if in_flight
            .get(&self.digest)
            .is_some_and(|shared| shared.same_channel(&self.shared))
        {
            in_flight.remove(&self.digest);
        }
    }
}

/// What an introspection needs of the request that started it, owned: it outlives that
/// request when its client goes away.
struct Question {
    token: String,
    digest: [u8; 32],
    issuer: Arc<str>,
    audiences: Vec<String>,
    leeway: i64,
    now: i64,
    local: Option<Arc<Validated>>,
}

/// An issuer's introspection endpoint, ready to ask.
pub(crate) struct Introspector {
    endpoint: Uri,
    client: HttpClient,
    auth: IntrospectionAuth,
    /// For signed answers (RFC 9701): the issuer's keys and the algorithms allowed.
    signed: Option<(IssuerKeys, Vec<Algorithm>)>,
    pub(crate) jwts: bool,
    max_cache_ttl: Duration,
    timeout: Duration,
    inactive: Option<moka::sync::Cache<[u8; 32], ()>>,
    /// The introspections under way, by token digest; each entry is removed by the task
    /// that answers it, never by a request that stops waiting.
    in_flight: Mutex<HashMap<[u8; 32], Shared>>,
    /// One permit per request that may be in flight to the endpoint.
    slots: tokio::sync::Semaphore,
    /// The guard's verified-token cache, where an introspection keeps its active answer
    /// itself: it is not lost when every request that waited for it has gone.
    cache: Option<Arc<TokenCache>>,
}

impl Introspector {
    /// `keys` and `algorithms` verify signed answers, when `config` asks for them; active
    /// answers go into `cache`.
    pub(crate) fn new(
        config: Introspection,
        endpoint: &str,
        client: HttpClient,
        keys: &IssuerKeys,
        algorithms: &[Algorithm],
        cache: Option<Arc<TokenCache>>,
    ) -> Result<Self, FetchError> {
        let inactive_ttl = config.inactive_cache_ttl.min(MAX_CACHE_TTL);
        let inactive = (!inactive_ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(INACTIVE_CAPACITY)
                .time_to_live(inactive_ttl)
                .build()
        });
        Ok(Introspector {
            endpoint: parse_url(endpoint)?,
            client,
            auth: config.auth,
            signed: config
                .signed_answers
                .then(|| (keys.clone(), algorithms.to_vec())),
            jwts: config.jwts,
            max_cache_ttl: config.max_cache_ttl,
            timeout: config.timeout,
            inactive,
            in_flight: Mutex::new(HashMap::new()),
            slots: tokio::sync::Semaphore::new(config.concurrency.max(1)),
            cache,
        })
    }

    /// The issuer's answer for `token`, checked: an active token's claims, or why not. With
    /// `local`, a JWT that validated here, only its being active is asked (its own claims
    /// were checked) and `local` is returned. Concurrent calls for the same token share one
    /// introspection, which a task of its own runs to its end even if every call stops
    /// waiting; each call waits at most the timeout from its own start.
    pub(crate) async fn validate(
        self: &Arc<Self>,
        token: &str,
        digest: [u8; 32],
        issuer: Expected<'_>,
        leeway: i64,
        now: i64,
        local: Option<Arc<Validated>>,
    ) -> Result<Arc<Validated>, TokenError> {
        if self
            .inactive
            .as_ref()
            .is_some_and(|c| c.contains_key(&digest))
        {
            return Err(TokenError::Inactive);
        }
        let deadline = tokio::time::Instant::now().checked_add(self.timeout);
        let (mut shared, started) = {
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match in_flight.get(&digest) {
                Some(shared) => (shared.clone(), None),
                None => {
                    let (answer, shared) = watch::channel(None);
                    in_flight.insert(digest, shared.clone());
                    (shared, Some(answer))
                }
            }
        };
        if let Some(answer) = started {
            // Spawned outside the lock, which `Forget` takes when dropped.
            let forget = Forget {
                introspector: Arc::clone(self),
                digest,
                shared: shared.clone(),
            };
            let question = Question {
                token: token.to_owned(),
                digest,
                issuer: Arc::clone(issuer.issuer),
                audiences: issuer.audiences.to_vec(),
                leeway,
                now,
                local,
            };
            tokio::spawn(Self::answer(question, answer, forget));
        }
        let answered = shared.wait_for(Option::is_some);
        let answered = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, answered)
                .await
                .map_err(|_| TokenError::IntrospectionUnavailable)?,
            None => answered.await,
        };
        // A sender dropped unanswered (its task panicked or was cancelled; it forgot itself):
        // unavailable, never admitted.
        let answer = answered.map_err(|_| TokenError::IntrospectionUnavailable)?;
        let validated = answer
            .clone()
            .unwrap_or(Err(TokenError::IntrospectionUnavailable))?;
        // Checked at the `now` of the request that started it: a request that joined it
        // later holds it to its own.
        if now.saturating_sub(leeway) >= validated.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(validated)
    }

    /// Runs one introspection to its end, then forgets it and hands its answer to every
    /// request waiting (a request arriving after it is forgotten asks afresh, and finds an
    /// inactive answer in its cache).
    async fn answer(
        question: Question,
        answer: watch::Sender<Option<Result<Arc<Validated>, TokenError>>>,
        forget: Forget,
    ) {
        let expected = Expected {
            issuer: &question.issuer,
            audiences: &question.audiences,
        };
        let result = forget
            .introspector
            .ask(
                &question.token,
                question.digest,
                expected,
                question.leeway,
                question.now,
                question.local.clone(),
            )
            .await;
        // Kept before it is forgotten: a request arriving after that finds it cached.
        if let (Ok(validated), Some(cache)) = (&result, &forget.introspector.cache) {
            let max_ttl = forget.introspector.max_cache_ttl;
            cache.insert(
                question.digest,
                Arc::clone(validated),
                question.now,
                max_ttl,
            );
        }
        drop(forget);
        answer.send_replace(Some(result));
    }

    /// One request to the endpoint (RFC 7662 §2.1) and the checks of its answer (§2.2).
    async fn ask(
        &self,
        token: &str,
        digest: [u8; 32],
        issuer: Expected<'_>,
        leeway: i64,
        now: i64,
        local: Option<Arc<Validated>>,
    ) -> Result<Arc<Validated>, TokenError> {
        let unavailable = |why: &dyn std::fmt::Display| {
            tracing::warn!(endpoint = %self.endpoint, %why, "token introspection failed");
            TokenError::IntrospectionUnavailable
        };
        let (headers, form) = self
            .request(token, issuer.issuer, now)
            .map_err(|e| unavailable(&e))?;
        // A slot is held until the endpoint answers or the timeout ends the request; the
        // task running this outlives the requests it serves, so the slots bound what the
        // endpoint is working on. An introspection that waited for a slot until half its
        // timeout is not sent at all.
        let send_by = tokio::time::Instant::now().checked_add(self.timeout / 2);
        let acquired = self.slots.acquire();
        let slot = match send_by {
            Some(send_by) => tokio::time::timeout_at(send_by, acquired)
                .await
                .map_err(|_| unavailable(&"every introspection slot stayed busy"))?,
            None => acquired.await,
        };
        let slot = slot.map_err(|_| unavailable(&"closed"))?;
        let answer = self
            .client
            .post_form(
                &self.endpoint,
                headers,
                form,
                MAX_INTROSPECTION_RESPONSE_LEN,
                self.timeout,
            )
            .await
            .map_err(|e| unavailable(&e))?;
        // Released once the answer is in: checking it (a signed answer may fetch keys) is
        // not the endpoint's work.
        drop(slot);
        match answer.status {
            http::StatusCode::OK => {}
            // RFC 7662 §2.1: the endpoint authenticates the guard as its client. Refusing that
            // is a configuration error on one side or the other, not an outage; still no
            // verdict on the token.
            status @ (http::StatusCode::UNAUTHORIZED | http::StatusCode::FORBIDDEN) => {
                return Err(unavailable(&format_args!(
                    "{status}: the endpoint refused this guard's client authentication \
                     (check its IntrospectionAuth)"
                )));
            }
            status => return Err(unavailable(&status)),
        }
        let body = match &self.signed {
            None => answer.body.to_vec(),
            Some((keys, algorithms)) => self
                .signed_answer(&answer, issuer, keys, algorithms)
                .await
                .map_err(|why| unavailable(&why))?,
        };
        let registered = Registered::parse(&body)
            .ok_or_else(|| unavailable(&"the answer is not one JSON object"))?;
        match registered.active {
            Claim::Value(true) => {}
            Claim::Value(false) => {
                if let Some(inactive) = &self.inactive {
                    inactive.insert(digest, ());
                }
                return Err(TokenError::Inactive);
            }
            // RFC 7662 §2.2: `active` is REQUIRED, and a boolean.
            _ => return Err(unavailable(&"the answer has no boolean `active`")),
        }
        if let Some(local) = local {
            // Active, says the issuer; an `iss` in its answer must still be its own, and a
            // binding in its answer the JWT's own (never a bound token served as a bearer one).
            match &registered.iss {
                Claim::Value(iss) if **iss != **issuer.issuer => {
                    return Err(TokenError::UnknownIssuer);
                }
                Claim::OtherType => return Err(TokenError::UnknownIssuer),
                _ => {}
            }
            if registered.cnf != Claim::Absent
                && Confirmation::from_cnf(&registered.cnf).as_ref() != Some(&local.confirmation)
            {
                return Err(TokenError::UnsupportedConfirmation);
            }
            return Ok(local);
        }
        // RFC 7662 §2.2 makes `iss` optional: absent, it is the issuer that was asked.
        let registered = Registered {
            iss: match registered.iss {
                Claim::Absent => Claim::Value(std::borrow::Cow::Borrowed(&**issuer.issuer)),
                iss => iss,
            },
            ..registered
        };
        let validated = Validated::check(token, digest, &registered, issuer, leeway, now)?;
        drop(registered);
        Ok(Arc::new(validated.with_payload(body)))
    }

    /// The introspection answer inside a signed one (RFC 9701 §5): a JWT of the type
    /// `token-introspection+jwt`, signed with the issuer's keys, whose `iss` is the issuer and
    /// whose `aud` names this client; its `token_introspection` member is the answer.
    async fn signed_answer(
        &self,
        answer: &Answer,
        issuer: Expected<'_>,
        keys: &IssuerKeys,
        algorithms: &[Algorithm],
    ) -> Result<Vec<u8>, String> {
        let media_type = answer
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::trim);
        if !media_type.is_some_and(|t| t.eq_ignore_ascii_case(SIGNED_ANSWER)) {
            return Err(format!("not {SIGNED_ANSWER}: {media_type:?}"));
        }
        let jwt = std::str::from_utf8(&answer.body).map_err(|e| e.to_string())?;
        let payload = verified_payload(jwt.trim(), keys, algorithms, "token-introspection+jwt")
            .await
            .map_err(|e| format!("the signed answer: {e}"))?;
        // Read by the strict reader first: it refuses what serde_json's map would read two ways.
        let outer = Registered::parse(&payload).ok_or("the signed answer is not JSON")?;
        if !matches!(&outer.iss, Claim::Value(iss) if **iss == **issuer.issuer) {
            return Err("the signed answer is from another issuer".into());
        }
        let client_id = self.auth.client_id();
        if !matches!(&outer.aud, Claim::Value(aud) if aud.iter().any(|a| a == client_id)) {
            return Err("the signed answer is for another client".into());
        }
        #[derive(serde::Deserialize)]
        struct Outer {
            token_introspection: serde_json::Map<String, serde_json::Value>,
        }
        let outer: Outer = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
        serde_json::to_vec(&outer.token_introspection).map_err(|e| e.to_string())
    }

    /// The request's headers and form: the token with its type hint (RFC 7662 §2.1), and
    /// the client authentication.
    fn request(
        &self,
        token: &str,
        issuer: &str,
        now: i64,
    ) -> Result<(HeaderMap, String), Box<dyn std::error::Error + Send + Sync>> {
        let mut headers = HeaderMap::new();
        let accept = match self.signed {
            Some(_) => SIGNED_ANSWER,
            None => "application/json",
        };
        headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("token", token)
            .append_pair("token_type_hint", "access_token");
        match &self.auth.0 {
            Method::SecretBasic { client_id, secret } => {
                // RFC 6749 §2.3.1: each form-encoded before they are joined.
                let encode =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let pair: String = [encode(client_id), encode(secret)].join(":");
                let basic = format!("Basic {}", STANDARD.encode(pair));
                let mut value = HeaderValue::from_str(&basic)?;
                value.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, value);
            }
            Method::PrivateKeyJwt {
                client_id,
                key,
                alg,
                kid,
            } => {
                let mut header = jsonwebtoken::Header::new(*alg);
                header.kid.clone_from(kid);
                let mut jti = [0u8; 16];
                getrandom::fill(&mut jti)?;
                let claims = serde_json::json!({
                    "iss": client_id,
                    "sub": client_id,
                    "aud": issuer,
                    "jti": URL_SAFE_NO_PAD.encode(jti),
                    "iat": now,
                    "exp": now.saturating_add(ASSERTION_LIFETIME),
                });
                let assertion = jsonwebtoken::encode(&header, &claims, key)?;
                form.append_pair(
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                )
                .append_pair("client_assertion", &assertion)
                .append_pair("client_id", client_id);
            }
            Method::TlsClientAuth { client_id } => {
                form.append_pair("client_id", client_id);
            }
        }
        Ok((headers, form.finish()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An introspector for `url` with `timeout`.
    fn introspector(url: &str, timeout: Duration) -> Arc<Introspector> {
        let config = Introspection::new(IntrospectionAuth::tls_client_auth("api")).timeout(timeout);
        let client = HttpClient::new(None).unwrap();
        let cache = Some(Arc::new(TokenCache::new(100)));
        Arc::new(Introspector::new(config, url, client, &IssuerKeys::None, &[], cache).unwrap())
    }

    /// An endpoint that accepts every connection and never answers; its URL.
    async fn silent_endpoint() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok(connection) = listener.accept().await {
                held.push(connection);
            }
        });
        url
    }

    /// Waits (polling, at most 10 s) until no introspection is under way.
    async fn until_none_in_flight(introspector: &Introspector) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !introspector.in_flight.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("an introspection was never forgotten");
    }

    /// An introspection whose task never ends normally (its runtime stops, before or while it
    /// runs) is forgotten all the same: the next request for the token asks again, rather
    /// than finding a channel that will never answer.
    #[tokio::test]
    async fn an_introspection_cut_short_with_its_runtime_is_forgotten() {
        let url = silent_endpoint().await;
        let introspector = introspector(&url, Duration::from_secs(30));
        for run_first in [false, true] {
            let other = Arc::clone(&introspector);
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let expected = expected();
                    let mut request = Box::pin(other.validate("t", [9; 32], expected, 0, 0, None));
                    let pending = pending_after_one_poll(&mut request).await;
                    assert!(pending);
                    if run_first {
                        // Let the task start its request.
                        for _ in 0..100 {
                            tokio::task::yield_now().await;
                        }
                    }
                });
                assert_eq!(other.in_flight.lock().unwrap().len(), 1);
                drop(runtime);
            })
            .join()
            .unwrap();
            assert!(
                introspector.in_flight.lock().unwrap().is_empty(),
                "run first: {run_first}"
            );
        }
    }

    #[tokio::test]
    async fn a_request_abandoned_mid_flight_is_forgotten_once_its_introspection_ends() {
        let url = silent_endpoint().await;
        let introspector = introspector(&url, Duration::from_millis(300));
        let expected = expected();
        let mut request = Box::pin(introspector.validate("opaque", [7; 32], expected, 0, 0, None));
        // Polled once: the introspection is under way.
        let polled = pending_after_one_poll(&mut request).await;
        assert!(polled);
        assert_eq!(introspector.in_flight.lock().unwrap().len(), 1);
        // Its client goes away; the introspection runs on to its timeout, then is forgotten.
        drop(request);
        until_none_in_flight(&introspector).await;
    }

    /// What the tests' tokens must say: issuer `https://issuer.example`, audience
    /// `https://api.example`.
    fn expected() -> Expected<'static> {
        let issuer: &'static Arc<str> = Box::leak(Box::new("https://issuer.example".into()));
        let audiences: &'static [String] = vec!["https://api.example".to_owned()].leak();
        Expected { issuer, audiences }
    }

    /// An active answer for alice, expiring at `exp`.
    fn alice_until(exp: i64) -> &'static str {
        let body = format!(
            r#"{{"active":true,"iss":"https://issuer.example","aud":"https://api.example","sub":"alice","exp":{exp}}}"#
        );
        Box::leak(body.into_boxed_str())
    }

    /// Whether `request`, polled once, is still pending (its introspection under way).
    async fn pending_after_one_poll<F: Future>(request: &mut std::pin::Pin<Box<F>>) -> bool {
        std::future::poll_fn(|cx| std::task::Poll::Ready(request.as_mut().poll(cx).is_pending()))
            .await
    }

    /// An endpoint that reads each whole request, waits `delay`, then answers `body`; and how
    /// many requests it has read.
    async fn slow_endpoint(
        delay: Duration,
        body: &'static str,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/introspect", listener.local_addr().unwrap());
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&calls);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if request.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                         content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        (url, calls)
    }

    #[tokio::test]
    async fn a_flood_of_abandoned_requests_leaves_nothing_behind_once_their_introspections_end() {
        let url = silent_endpoint().await;
        let introspector = introspector(&url, Duration::from_millis(300));
        let expected = expected();
        // 500 distinct tokens, and 50 requests sharing one, each polled once then dropped.
        let mut pending = Vec::new();
        for i in 0..550u32 {
            let digest = if i < 500 {
                let mut d = [0u8; 32];
                d[..4].copy_from_slice(&i.to_be_bytes());
                d
            } else {
                [0xff; 32]
            };
            let mut request = Box::pin(introspector.validate("t", digest, expected, 0, 0, None));
            let is_pending = pending_after_one_poll(&mut request).await;
            assert!(is_pending);
            pending.push(request);
        }
        assert_eq!(introspector.in_flight.lock().unwrap().len(), 501);
        // Dropped in an order where the one sharing an introspection with others goes first;
        // each introspection ends on its own (no slot, or the timeout), and is forgotten.
        pending.reverse();
        drop(pending);
        until_none_in_flight(&introspector).await;
    }

    #[tokio::test]
    async fn a_waiter_still_gets_its_answer_when_the_first_request_is_abandoned() {
        let (url, calls) = slow_endpoint(Duration::from_millis(200), alice_until(4102444800)).await;
        let introspector = introspector(&url, Duration::from_secs(5));
        let expected = expected();
        let now = 1_800_000_000;
        let mut first = Box::pin(introspector.validate("shared", [3; 32], expected, 0, now, None));
        let mut second = Box::pin(introspector.validate("shared", [3; 32], expected, 0, now, None));
        for request in [&mut first, &mut second] {
            assert!(pending_after_one_poll(request).await);
        }
        drop(first);
        let validated = tokio::time::timeout(Duration::from_secs(5), second)
            .await
            .expect("the waiter was left hanging")
            .expect("the waiter got no answer");
        assert_eq!(validated.subject.as_deref(), Some("alice"));
        // One introspection for both, the first one's, which ran on without it.
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert!(introspector.in_flight.lock().unwrap().is_empty());
        // A different token is asked about on its own, never served the shared answer.
        let other = introspector
            .validate("other", [4; 32], expected, 0, now, None)
            .await
            .unwrap();
        assert_eq!(&*other.raw, "other");
    }

    /// An active answer that comes in after every request for it has gone is kept in the
    /// verified-token cache all the same: the next request does not ask again.
    #[tokio::test]
    async fn an_answer_nobody_waits_for_any_more_is_cached() {
        let (url, calls) = slow_endpoint(Duration::from_millis(200), alice_until(4102444800)).await;
        let introspector = introspector(&url, Duration::from_secs(5));
        let expected = expected();
        let now = 1_800_000_000;
        let mut request = Box::pin(introspector.validate("t", [6; 32], expected, 0, now, None));
        let pending = pending_after_one_poll(&mut request).await;
        assert!(pending);
        drop(request);
        until_none_in_flight(&introspector).await;
        let cache = introspector.cache.as_ref().unwrap();
        let cached = cache
            .get(&[6; 32], now, 0)
            .expect("the answer was not kept");
        assert_eq!(cached.subject.as_deref(), Some("alice"));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_request_that_joins_an_introspection_holds_its_answer_to_its_own_now() {
        let (url, calls) = slow_endpoint(Duration::from_millis(200), alice_until(1800000100)).await;
        let introspector = introspector(&url, Duration::from_secs(5));
        let expected = expected();
        let first = introspector.validate("t", [5; 32], expected, 0, 1_800_000_000, None);
        let later = introspector.validate("t", [5; 32], expected, 0, 1_800_000_200, None);
        let (first, later) = tokio::join!(first, later);
        assert_eq!(first.unwrap().subject.as_deref(), Some("alice"));
        assert_eq!(later.unwrap_err(), TokenError::Expired);
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    /// What the claims reader admits, the claims map handlers read must read too: otherwise an
    /// admitted token's claims silently vanish (`AccessToken::claim` reads `None`), and a
    /// requirement such as "not suspended" passes.
    #[test]
    fn every_answer_the_claims_reader_admits_reads_as_a_claims_map() {
        let deep = format!(
            r#"{{"active":true,"x":{}1{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let payloads: Vec<Vec<u8>> = [
            r#"{"active":true,"x":"\ud800"}"#,
            r#"{"active":true,"x":"\udc00\ud800"}"#,
            r#"{"active":true,"x":{"y":"\udfff"}}"#,
            r#"{"active":true,"\ud800":1}"#,
            r#"{"active":true,"x":1e400}"#,
            r#"{"active":true,"x":-1e400}"#,
            r#"{"active":true,"x":[1e400]}"#,
            r#"{"active":true,"x":1e-400}"#,
            r#"{"active":true,"exp":1e400}"#,
            r#"{"active":true,"exp":18446744073709551616}"#,
            r#"{"active":true,"exp":-0}"#,
            r#"{"active":true,"x":"\u0000"}"#,
            r#"{"active":true,"x":"a\u0001b"}"#,
            "{\"active\":true,\"x\":\"a\u{1}b\"}",
            r#"{"active":true,"sub":"\ud83d\ude00"}"#,
            "{\"active\":true}\n\t ",
            "\u{feff}{\"active\":true}",
            &deep,
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .chain([b"{\"active\":true,\"x\":\"\xff\"}".to_vec()])
        .collect();
        for payload in payloads {
            let readable = Registered::parse(&payload).is_some();
            let map =
                serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&payload);
            assert!(
                !readable || map.is_ok(),
                "admitted by the claims reader, unreadable as claims ({:?}): {}",
                map.err(),
                String::from_utf8_lossy(&payload)
            );
        }
    }
}
