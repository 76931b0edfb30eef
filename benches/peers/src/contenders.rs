//! Each contender set up as it would guard one API, with a static key set (no network), and
//! the calls the table times.
//!
//! Every contender is given the issuer's single ES256 key, and told the issuer and the audience
//! it must demand. What each one checks beyond that is its own (see the footnotes in `main`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey, UnparsedPublicKey};
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode, Uri};
use huskarl_resource_server::core::crypto::verifier::{
    JwsVerifier, JwsVerifierFactory, JwsVerifierPlatform, MultiKeyVerifier,
};
use huskarl_resource_server::core::jwk::{PublicJwk, PublicJwks};
use huskarl_resource_server::core::jwt::JtiUniquenessChecker;
use huskarl_resource_server::core::platform::MaybeSendBoxFuture;
use huskarl_resource_server::core::{EndpointUrl, Error as HuskarlError};
use huskarl_resource_server::validator::rfc9068::Rfc9068Validator;
use serde::Deserialize;
use tower::ServiceExt as _;
use tower_oauth_guard::{
    BaseUrl, Dpop, Issuer, KeySet, MemoryReplayStore, OAuthGuard, Policy, Presence, PublicUri,
};

use crate::fixture::{AUDIENCE, Fixture, HOST, HTU, ISSUER, ORIGIN, PATH, SplitJws, now};
use crate::huskarl_aws_lc::AwsLcPlatform;

/// The claims the raw decoders (jsonwebtoken, and jwt-authorizer, which is built on it)
/// deserialize: the RFC 9068 §2.2 set, and `cnf` (RFC 7800 §3.1, RFC 9449 §6.1).
#[derive(Debug, Clone, Deserialize)]
#[allow(
    dead_code,
    reason = "deserialized as a resource server would; the bench reads only some"
)]
pub struct AtClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    #[serde(default)]
    pub cnf: Option<Confirmation>,
}

/// `cnf` with the DPoP member `jkt` (RFC 9449 §6.1).
#[derive(Debug, Clone, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// The head of a `GET` to the protected route: `Authorization: <scheme> <token>` (RFC 6750
/// §2.1, RFC 9449 §7.1) and, with a proof, the `DPoP` header (RFC 9449 §4.1).
pub fn head(token: &str, proof: Option<&str>) -> Parts {
    let scheme = if proof.is_some() { "DPoP" } else { "Bearer" };
    let mut request = http::Request::builder()
        .method(Method::GET)
        .uri(PATH)
        .header(http::header::HOST, HOST)
        .header(http::header::AUTHORIZATION, format!("{scheme} {token}"));
    if let Some(proof) = proof {
        request = request.header("dpop", proof);
    }
    request
        .body(())
        .expect("a valid request head")
        .into_parts()
        .0
}

/// The baseline **A** and the **floor**: one ES256 verification, with the key parsed per call
/// and parsed once.
pub struct Raw {
    /// The issuer key as a SEC1 point, parsed on every call of [`Raw::a`].
    issuer_point: Vec<u8>,
    /// The issuer key, parsed once.
    issuer: ParsedPublicKey,
    /// The client key, parsed once (the second signature of the two-signature row).
    client: ParsedPublicKey,
    /// The signing input and signature of [`Fixture::seen_token`].
    pub token: SplitJws,
    /// The signing input and signature of one proof.
    pub proof: SplitJws,
}

impl Raw {
    pub fn new(fixture: &Fixture) -> Self {
        let parse = |point: &[u8]| {
            ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).expect("a P-256 point")
        };
        Raw {
            issuer_point: fixture.issuer.point().to_vec(),
            issuer: parse(fixture.issuer.point()),
            client: parse(fixture.client.point()),
            token: SplitJws::new(&fixture.seen_token),
            proof: SplitJws::new(&fixture.proof(&fixture.bound_token)),
        }
    }

    /// **A**: `UnparsedPublicKey::verify`, which parses the point and then verifies.
    pub fn a(&self, jws: &SplitJws) -> bool {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.issuer_point)
            .verify(&jws.message, &jws.signature)
            .is_ok()
    }

    /// The floor of a one-signature path: `ParsedPublicKey::verify_sig` with the issuer key.
    pub fn floor(&self, jws: &SplitJws) -> bool {
        self.issuer.verify_sig(&jws.message, &jws.signature).is_ok()
    }

    /// The token's signature verified by ring 0.17 (jwt-authorizer's crypto, through
    /// jsonwebtoken 9), which parses the point on every call as jsonwebtoken does.
    pub fn ring(&self, jws: &SplitJws) -> bool {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            &self.issuer_point,
        )
        .verify(&jws.message, &jws.signature)
        .is_ok()
    }

    /// The floor of the proof's signature: `ParsedPublicKey::verify_sig` with the client key.
    pub fn floor_proof(&self, proof: &SplitJws) -> bool {
        self.client
            .verify_sig(&proof.message, &proof.signature)
            .is_ok()
    }

    /// The floor of a two-signature path: the token's and the proof's.
    pub fn floor2(&self, token: &SplitJws, proof: &SplitJws) -> bool {
        self.floor(token) && self.floor_proof(proof)
    }
}

/// The handler behind every router: the same for the guarded and the bare one.
async fn hello() -> &'static str {
    "hello"
}

/// tower-oauth-guard: one guard per row, so that no row warms another's token cache.
pub struct Guard {
    /// Row 1: bearer tokens, each new to this guard (its token cache stays on, as by default:
    /// a new token costs its verification and its insertion into the cache).
    pub bearer_new: OAuthGuard,
    /// Row 1 again, with its token cache off: what the insertion costs.
    pub bearer_new_uncached: OAuthGuard,
    /// Row 2: the same bearer token every call, a cache hit after the first.
    pub bearer_seen: OAuthGuard,
    /// Row 3: DPoP required, the bound token seen before, a new proof every call.
    pub dpop_seen: OAuthGuard,
    /// Row 4: DPoP required, a new bound token and a new proof every call.
    pub dpop_new: OAuthGuard,
    /// Row 5: an axum 0.8 router behind `guard.layer()` (a bearer guard of its own).
    pub router: axum::Router,
    /// Row 5: the same router without the layer.
    pub bare: axum::Router,
    pub policy: Policy,
}

impl Guard {
    /// `proofs` is how many proofs the run will present to one guard: its replay store must
    /// remember them all (a full store refuses proofs, failing closed), from one client key.
    pub async fn new(fixture: &Fixture, proofs: u64) -> Self {
        let bearer = || async {
            OAuthGuard::builder()
                .trust(Self::issuer(fixture))
                .require_at_jwt_typ()
                .build()
                .await
                .expect("the bearer guard builds")
        };
        let uncached = OAuthGuard::builder()
            .trust(Self::issuer(fixture))
            .require_at_jwt_typ()
            .no_token_cache()
            .build()
            .await
            .expect("the bearer guard without a cache builds");
        let dpop = || async {
            let origin = BaseUrl::parse(ORIGIN).expect("the origin is a base URL");
            OAuthGuard::builder()
                .trust(Self::issuer(fixture))
                .require_at_jwt_typ()
                .dpop(
                    Dpop::required(PublicUri::fixed(origin))
                        .replay_store(MemoryReplayStore::with_limits(proofs, proofs)),
                )
                .build()
                .await
                .expect("the DPoP guard builds")
        };
        let bare = axum::Router::new().route(PATH, axum::routing::get(hello));
        Guard {
            bearer_new: bearer().await,
            bearer_new_uncached: uncached,
            bearer_seen: bearer().await,
            dpop_seen: dpop().await,
            dpop_new: dpop().await,
            router: bare.clone().layer(bearer().await.layer()),
            bare,
            policy: Policy::default(),
        }
    }

    fn issuer(fixture: &Fixture) -> Issuer {
        Issuer::new(ISSUER)
            .audience(AUDIENCE)
            .jwks(KeySet::from_json(fixture.jwks().as_bytes()).expect("the JWK Set parses"))
    }

    /// `OAuthGuard::check` on a request head: true when admitted with a token.
    pub async fn check(&self, guard: &OAuthGuard, parts: &mut Parts) -> bool {
        guard
            .check(parts, &self.policy, Presence::Required)
            .await
            .is_ok_and(|admission| admission.token.is_some())
    }
}

/// A request to the protected route for the axum 0.8 routers.
pub fn request08(token: &str) -> http::Request<axum::body::Body> {
    http::Request::from_parts(head(token, None), axum::body::Body::empty())
}

/// A request to the protected route for the axum 0.7 routers.
pub fn request07(token: &str) -> http::Request<axum07::body::Body> {
    http::Request::from_parts(head(token, None), axum07::body::Body::empty())
}

/// The status an axum 0.8 router answers.
pub async fn status08(
    router: &axum::Router,
    request: http::Request<axum::body::Body>,
) -> StatusCode {
    router
        .clone()
        .oneshot(request)
        .await
        .expect("a router is infallible")
        .status()
}

/// The status an axum 0.7 router answers.
pub async fn status07(
    router: &axum07::Router,
    request: http::Request<axum07::body::Body>,
) -> StatusCode {
    router
        .clone()
        .oneshot(request)
        .await
        .expect("a router is infallible")
        .status()
}

/// jwt-authorizer: its `Authorizer` from a JWK Set text, with `iss` and `aud` demanded (it
/// checks `exp` by default, with 60 s of leeway as the others).
pub struct JwtAuthorizer {
    pub authorizer: jwt_authorizer::Authorizer<AtClaims>,
    /// Row 5: an axum 0.7 router behind its `AuthorizationLayer`.
    pub router: axum07::Router,
    /// Row 5: the same axum 0.7 router without the layer.
    pub bare: axum07::Router,
}

impl JwtAuthorizer {
    pub async fn new(fixture: &Fixture) -> Self {
        use jwt_authorizer::IntoLayer as _;
        let authorizer = || async {
            jwt_authorizer::JwtAuthorizer::<AtClaims>::from_jwks_text(&fixture.jwks())
                .validation(
                    jwt_authorizer::Validation::new()
                        .iss(&[ISSUER])
                        .aud(&[AUDIENCE]),
                )
                .build()
                .await
                .expect("the jwt-authorizer builds")
        };
        let bare = axum07::Router::new().route(PATH, axum07::routing::get(hello));
        JwtAuthorizer {
            authorizer: authorizer().await,
            router: bare.clone().layer(authorizer().await.into_layer()),
            bare,
        }
    }

    /// What its layer does for a request: take the bearer token from the headers, validate it.
    pub async fn check(&self, headers: &HeaderMap) -> bool {
        let Some(token) = self.authorizer.extract_token(headers) else {
            return false;
        };
        self.authorizer.check_auth(&token).await.is_ok()
    }
}

/// huskarl's key source for a static JWK Set: its `MultiKeyVerifier` over the keys, built with
/// whichever verifier platform the validator is given.
struct StaticJwks(PublicJwks);

impl JwsVerifierFactory for StaticJwks {
    fn build(
        &self,
        _jwks_uri: Option<&EndpointUrl>,
        platform: Arc<dyn JwsVerifierPlatform>,
    ) -> MaybeSendBoxFuture<'static, Result<Arc<dyn JwsVerifier>, HuskarlError>> {
        let jwks = self.0.clone();
        Box::pin(async move {
            let verifier = MultiKeyVerifier::from_jwks(&jwks, platform.as_ref()).await?;
            Ok(Arc::new(verifier) as Arc<dyn JwsVerifier>)
        })
    }
}

/// Remembers every DPoP proof `jti` (RFC 9449 §11.1); huskarl ships the trait, not a store.
#[derive(Debug, Default)]
struct SeenJtis(Mutex<HashSet<String>>);

impl JtiUniquenessChecker for SeenJtis {
    fn check_and_mark_seen(&self, jti: &str) -> MaybeSendBoxFuture<'_, Result<bool, HuskarlError>> {
        let fresh = self
            .0
            .lock()
            .expect("the jti set is never poisoned")
            .insert(jti.to_owned());
        Box::pin(async move { Ok(!fresh) })
    }
}

/// huskarl-resource-server's `Rfc9068Validator`, on one verifier platform: a bearer one and a
/// DPoP-requiring one with a proof-replay checker.
pub struct Huskarl {
    pub bearer: Rfc9068Validator,
    pub dpop: Rfc9068Validator,
    uri: Uri,
}

impl Huskarl {
    /// `platform`: `None` for huskarl's default (native, RustCrypto), or another.
    pub async fn new(fixture: &Fixture, platform: Option<Arc<dyn JwsVerifierPlatform>>) -> Self {
        let jwk: PublicJwk =
            serde_json::from_str(&fixture.issuer_jwk()).expect("huskarl reads the JWK");
        let jwks = PublicJwks::new(vec![jwk]);
        let validator =
            |dpop: bool| {
                let platform = platform.clone();
                let jwks = jwks.clone();
                async move {
                    Rfc9068Validator::builder()
                        .issuer(ISSUER)
                        .audience(AUDIENCE)
                        .jws_verifier_factory(StaticJwks(jwks))
                        .maybe_jws_verifier_platform(platform)
                        .require_dpop(dpop)
                        .maybe_dpop_jti_checker(dpop.then(|| {
                            Arc::new(SeenJtis::default()) as Arc<dyn JtiUniquenessChecker>
                        }))
                        .build()
                        .await
                        .expect("the huskarl validator builds")
                }
            };
        Huskarl {
            bearer: validator(false).await,
            dpop: validator(true).await,
            uri: HTU.parse().expect("the target URI parses"),
        }
    }

    /// The aws-lc-rs variant.
    pub async fn aws_lc(fixture: &Fixture) -> Self {
        Self::new(fixture, Some(Arc::new(AwsLcPlatform))).await
    }

    /// `validate_request` on the request's headers, method and absolute target URI: true when a
    /// token was validated.
    pub async fn check(&self, validator: &Rfc9068Validator, headers: &HeaderMap) -> bool {
        matches!(
            validator
                .validate_request(headers, &Method::GET, &self.uri, None)
                .await
                .outcome,
            Ok(Some(_))
        )
    }
}

/// Remembers the hash of every DPoP proof `jti` dpop-verifier hands it.
#[derive(Default)]
pub struct SeenProofs(HashSet<[u8; 32]>);

#[async_trait]
impl dpop_verifier::ReplayStore for SeenProofs {
    async fn insert_once(
        &mut self,
        jti_hash: [u8; 32],
        _ctx: dpop_verifier::ReplayContext<'_>,
    ) -> Result<bool, dpop_verifier::DpopError> {
        Ok(self.0.insert(jti_hash))
    }
}

/// jsonwebtoken 11 alone: `decode` with a `DecodingKey` from the issuer's JWK and a `Validation`
/// for ES256 with `iss`, `aud`, and `exp` (leeway 60 s, its default).
pub struct Jsonwebtoken {
    key: jsonwebtoken::DecodingKey,
    validation: jsonwebtoken::Validation,
}

impl Jsonwebtoken {
    pub fn new(fixture: &Fixture) -> Self {
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_str(&fixture.issuer_jwk()).expect("jsonwebtoken reads the JWK");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Jsonwebtoken {
            key: jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("a decoding key"),
            validation,
        }
    }

    pub fn decode(&self, token: &str) -> Option<AtClaims> {
        jsonwebtoken::decode::<AtClaims>(token, &self.key, &self.validation)
            .ok()
            .map(|data| data.claims)
    }
}

/// dpop-verifier for the proof, and for the token what a resource server built on it would do:
/// look up a token it validated before (row 3) or decode a new one with jsonwebtoken (row 4),
/// then compare the token's `cnf.jkt` with the proof key's thumbprint (RFC 9449 §7.1).
pub struct DpopVerifier {
    verifier: dpop_verifier::DpopVerifier,
    /// Tokens validated before, by their text: the lookup of row 3.
    known: HashMap<String, AtClaims>,
}

impl DpopVerifier {
    /// Proofs from 60 s ago to 5 s ahead, as tower-oauth-guard's default `ProofPolicy`.
    pub fn new(fixture: &Fixture, jwt: &Jsonwebtoken) -> Self {
        let claims = jwt
            .decode(&fixture.bound_token)
            .expect("the bound token validates");
        DpopVerifier {
            verifier: dpop_verifier::DpopVerifier::new()
                .with_max_age_seconds(60)
                .with_future_skew_seconds(5),
            known: HashMap::from([(fixture.bound_token.clone(), claims)]),
        }
    }

    async fn proof_jkt(&self, store: &mut SeenProofs, token: &str, proof: &str) -> Option<String> {
        self.verifier
            .verify(store, proof, HTU, "GET", Some(token))
            .await
            .ok()
            .map(|verified| verified.jkt)
    }

    fn bound_to(claims: &AtClaims, jkt: &str) -> bool {
        claims.exp > now() && claims.cnf.as_ref().is_some_and(|cnf| cnf.jkt == jkt)
    }

    /// Row 3: the proof, and a token looked up among those validated before.
    pub async fn check_known(&self, store: &mut SeenProofs, token: &str, proof: &str) -> bool {
        let Some(jkt) = self.proof_jkt(store, token, proof).await else {
            return false;
        };
        self.known
            .get(token)
            .is_some_and(|claims| Self::bound_to(claims, &jkt))
    }

    /// Row 4: the proof, and the token decoded and validated by jsonwebtoken.
    pub async fn check_new(
        &self,
        store: &mut SeenProofs,
        jwt: &Jsonwebtoken,
        token: &str,
        proof: &str,
    ) -> bool {
        let Some(jkt) = self.proof_jkt(store, token, proof).await else {
            return false;
        };
        jwt.decode(token)
            .is_some_and(|claims| Self::bound_to(&claims, &jkt))
    }
}
