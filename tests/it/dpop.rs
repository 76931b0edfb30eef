//! DPoP (RFC 9449) through a real axum server and a real JWKS issuer.
//!
//! Every proof check of RFC 9449 §4.3 has a test where exactly that one thing is wrong, sent
//! beside a valid request that is accepted; then the scheme rules (§7.2), the public URI behind
//! proxies, `jti` replay (§11.1) and server nonces (§8, §9).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
    EcdsaSigningAlgorithm, Ed25519KeyPair, RsaKeyPair,
};
use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tower_oauth_guard::{
    AccessToken, Binding, Claims, Dpop, DpopMode, DpopNonces, Issuer, OAuthGuard,
    OAuthGuardBuilder, PublicUri,
};
use tower_oauth_guard::{
    BaseUrl, MemoryReplayStore, NonceSecret, ProofPolicy, ReplayCheck, ReplayKey, ReplayStore,
    ReplayStoreError, ReplayWindow,
};
use tower_oauth_guard::{ath_for, jwk_thumbprint};

const AUD: &str = "https://api.example";

// ---------------------------------------------------------------------------------------------
// Fixtures

/// A DPoP client key that signs proofs with any header, so that malformed proofs can be built.
struct ProofKey {
    encoding: EncodingKey,
    alg: Algorithm,
    jwk: Value,
    jkt: String,
}

impl ProofKey {
    fn new(encoding: EncodingKey, alg: Algorithm) -> Self {
        install_provider();
        let mut model = Jwk::from_encoding_key(&encoding, alg).unwrap();
        model.common = Default::default();
        let jkt = jwk_thumbprint(&serde_json::to_string(&model).unwrap()).unwrap();
        let jwk = serde_json::to_value(&model).unwrap();
        ProofKey {
            encoding,
            alg,
            jwk,
            jkt,
        }
    }

    fn ec(signing: &'static EcdsaSigningAlgorithm, alg: Algorithm) -> Self {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &SystemRandom::new()).unwrap();
        Self::new(EncodingKey::from_ec_der(pkcs8.as_ref()), alg)
    }

    fn es256() -> Self {
        Self::ec(&ECDSA_P256_SHA256_FIXED_SIGNING, Algorithm::ES256)
    }

    fn es384() -> Self {
        Self::ec(&ECDSA_P384_SHA384_FIXED_SIGNING, Algorithm::ES384)
    }

    fn ed25519() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
        Self::new(EncodingKey::from_ed_der(pkcs8.as_ref()), Algorithm::EdDSA)
    }

    fn rsa(alg: Algorithm) -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = pair.as_der().unwrap();
        Self::new(
            EncodingKey::from_rsa_der(&pkcs1_from_pkcs8(pkcs8.as_ref())),
            alg,
        )
    }

    /// The same key, signing with another (RSA) algorithm.
    fn with_alg(&self, alg: Algorithm) -> Self {
        ProofKey {
            encoding: self.encoding.clone(),
            alg,
            jwk: self.jwk.clone(),
            jkt: self.jkt.clone(),
        }
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk})
    }

    /// A compact JWS of exactly this header and these claims, signed with this key.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        install_provider();
        let input = format!("{}.{}", b64_json(header), b64_json(claims));
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).unwrap();
        format!("{input}.{signature}")
    }
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// The content of a DER TLV at the start of `input`, and what follows it.
fn der_content(input: &[u8]) -> (&[u8], &[u8]) {
    let first = usize::from(input[1]);
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        let len = input[2..2 + count]
            .iter()
            .fold(0, |len, byte| (len << 8) | usize::from(*byte));
        (len, 2 + count)
    };
    (&input[header..header + len], &input[header + len..])
}

/// jsonwebtoken signs RSA with a PKCS#1 key; aws-lc exports PKCS#8.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (info, _) = der_content(pkcs8);
    let (_version, rest) = der_content(info);
    let (_algorithm, rest) = der_content(rest);
    let (private_key, _) = der_content(rest);
    private_key.to_vec()
}

/// The handler: what the guard handed over.
async fn whoami(token: AccessToken, Claims(claims): Claims<Value>) -> axum::Json<Value> {
    let jkt = match token.binding() {
        Binding::Dpop { jkt } => Some(jkt.clone()),
        _ => None,
    };
    axum::Json(json!({
        "sub": token.subject(),
        "binding": token.binding().kind(),
        "jkt": jkt,
        "cnf": claims.get("cnf"),
    }))
}

fn app(guard: &OAuthGuard) -> Router {
    // Mounted under /v1 with the guard *inside* the nested router: axum strips the prefix from
    // the URI the inner layers see, but the client signed the full path.
    let nested = Router::new()
        .route("/whoami", get(whoami))
        .layer(guard.layer());
    Router::new()
        .route("/", get(whoami))
        .route("/api/whoami", get(whoami).post(whoami))
        .layer(guard.layer())
        .nest("/v1", nested)
}

/// One issuer, one API, one DPoP client with a token bound to its key.
struct Env {
    issuer: TestIssuer,
    clock: TestClock,
    base: String,
    key: ProofKey,
    token: String,
}

/// Changes to a test API's guard beyond its DPoP settings: gets the builder (DPoP not yet
/// set) and the API's own URL as a public origin.
type Configure = Box<dyn FnOnce(OAuthGuardBuilder, PublicUri) -> OAuthGuardBuilder>;

/// The guard with DPoP in `mode` at its own URL.
fn dpop_mode(mode: DpopMode) -> Configure {
    Box::new(move |b, own| match mode {
        DpopMode::Allowed => b.dpop(Dpop::allowed(own)),
        DpopMode::Required => b.dpop(Dpop::required(own)),
        _ => b,
    })
}

impl Env {
    /// DPoP allowed, with the API's own URL as the public origin and `dpop` applied.
    async fn start(dpop: impl FnOnce(Dpop) -> Dpop + 'static) -> Env {
        Self::start_at(now(), Box::new(|b, own| b.dpop(dpop(Dpop::allowed(own))))).await
    }

    /// A guard configured by `configure` alone.
    async fn start_guard(
        configure: impl FnOnce(OAuthGuardBuilder, PublicUri) -> OAuthGuardBuilder + 'static,
    ) -> Env {
        Self::start_at(now(), Box::new(configure)).await
    }

    async fn start_at(time: i64, configure: Configure) -> Env {
        let issuer = TestIssuer::start().await;
        let clock = TestClock::at(time);
        let key = ProofKey::es256();
        let token = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
        let mut env = Env {
            issuer,
            clock,
            base: String::new(),
            key,
            token,
        };
        env.base = env.serve_guard(configure).await;
        env
    }

    /// Another API instance trusting the same issuer and reading the same clock; DPoP
    /// allowed, with its own URL as the public origin and `dpop` applied.
    async fn serve(&self, dpop: impl FnOnce(Dpop) -> Dpop + 'static) -> String {
        self.serve_guard(|b, own| b.dpop(dpop(Dpop::allowed(own))))
            .await
    }

    /// Another API instance trusting the same issuer and reading the same clock, configured
    /// by `configure`.
    async fn serve_guard(
        &self,
        configure: impl FnOnce(OAuthGuardBuilder, PublicUri) -> OAuthGuardBuilder,
    ) -> String {
        let (listener, base) = bind().await;
        let builder = self
            .issuer
            .guard(AUD)
            .realm("api")
            .clock(self.clock.clone());
        let own = PublicUri::fixed(BaseUrl::parse(&base).unwrap());
        let guard = configure(builder, own).build().await.unwrap();
        serve_on(listener, app(&guard))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn bound_token(&self, key: &ProofKey) -> String {
        self.issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}))
    }

    /// Valid proof claims for `method url` with this env's token, at the clock's time.
    fn claims(&self, method: &str, url: &str) -> Value {
        json!({
            "jti": format!("{:016x}", rand_u64()),
            "htm": method,
            "htu": url,
            "iat": self.clock.now(),
            "ath": ath_for(&self.token),
        })
    }

    fn proof(&self, method: &str, url: &str) -> String {
        self.key.sign(&self.key.header(), &self.claims(method, url))
    }

    fn proof_with_nonce(&self, method: &str, url: &str, nonce: &str) -> String {
        let mut claims = self.claims(method, url);
        claims["nonce"] = json!(nonce);
        self.key.sign(&self.key.header(), &claims)
    }

    /// A proof whose header and claims `edit` changes from the valid ones.
    fn proof_edited(
        &self,
        method: &str,
        url: &str,
        edit: impl FnOnce(&mut Value, &mut Value),
    ) -> String {
        let (mut header, mut claims) = (self.key.header(), self.claims(method, url));
        edit(&mut header, &mut claims);
        self.key.sign(&header, &claims)
    }

    /// `Authorization: DPoP <token>` and `DPoP: <proof>`.
    async fn dpop(&self, method: &str, url: &str, token: &str, proof: &str) -> Reply {
        let authorization = format!("DPoP {token}");
        send(
            method,
            url,
            &[("authorization", &authorization), ("dpop", proof)],
        )
        .await
    }

    /// A request with this env's token and `proof`.
    async fn with_proof(&self, method: &str, url: &str, proof: &str) -> Reply {
        self.dpop(method, url, &self.token, proof).await
    }

    /// A fresh valid request, which must be accepted as DPoP-bound.
    async fn assert_valid_accepted(&self, method: &str, path: &str) -> Reply {
        let url = self.url(path);
        let reply = self
            .with_proof(method, &url, &self.proof(method, &url))
            .await;
        assert_dpop_ok(&reply, &self.key.jkt);
        reply
    }
}

#[track_caller]
fn assert_dpop_ok(reply: &Reply, jkt: &str) {
    assert_eq!(
        reply.status,
        200,
        "body {:?}, challenges {:?}",
        reply.body,
        reply.www_authenticate()
    );
    let body = reply.json();
    assert_eq!(body["binding"], "dpop");
    assert_eq!(body["jkt"], jkt);
}

/// A refusal with exactly one challenge, of scheme DPoP, naming `error` and a description that
/// contains `description` (which pins the check that failed).
#[track_caller]
fn assert_refused(reply: &Reply, status: u16, error: &str, description: &str) {
    assert_eq!(reply.status.as_u16(), status, "body {:?}", reply.body);
    let challenges = reply.www_authenticate();
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    let c = &challenges[0];
    assert!(c.starts_with("DPoP realm=\"api\", "), "{c}");
    assert!(c.contains(&format!("error=\"{error}\"")), "{c}");
    assert!(
        c.contains(&format!("error_description=\"{description}")),
        "expected description starting {description:?}, got {c}"
    );
    assert!(c.contains("algs=\"ES256 ES384 PS256 RS256 EdDSA\""), "{c}");
}

#[track_caller]
fn assert_bad_proof(reply: &Reply, description: &str) {
    assert_refused(reply, 401, "invalid_dpop_proof", description);
    assert!(reply.headers.get("dpop-nonce").is_none());
}

// ---------------------------------------------------------------------------------------------
// The valid request and the hand-off

#[tokio::test]
async fn valid_proof_reaches_the_handler_with_the_dpop_binding() {
    let env = Env::start(|d| d).await;
    for method in ["GET", "POST"] {
        let reply = env.assert_valid_accepted(method, "/api/whoami").await;
        let body = reply.json();
        assert_eq!(body["sub"], "alice");
        assert_eq!(body["cnf"]["jkt"], env.key.jkt);
        // No nonces configured: no DPoP-Nonce on success.
        assert!(reply.headers.get("dpop-nonce").is_none());
    }
}

#[tokio::test]
async fn every_default_algorithm_is_accepted_and_others_are_not() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let rsa = ProofKey::rsa(Algorithm::RS256);
    let keys = [
        ProofKey::es256(),
        ProofKey::es384(),
        rsa.with_alg(Algorithm::PS256),
        rsa.with_alg(Algorithm::RS256),
        ProofKey::ed25519(),
    ];
    for key in &keys {
        let token = env.bound_token(key);
        let mut claims = env.claims("GET", &url);
        claims["ath"] = json!(ath_for(&token));
        let reply = env
            .dpop("GET", &url, &token, &key.sign(&key.header(), &claims))
            .await;
        assert_dpop_ok(&reply, &key.jkt);
    }
    // The same RSA key with RS384, a valid signature but not in the default allow-list.
    let rs384 = rsa.with_alg(Algorithm::RS384);
    let token = env.bound_token(&rs384);
    let mut claims = env.claims("GET", &url);
    claims["ath"] = json!(ath_for(&token));
    let reply = env
        .dpop("GET", &url, &token, &rs384.sign(&rs384.header(), &claims))
        .await;
    assert_bad_proof(&reply, "DPoP proof alg is not allowed");
}

// ---------------------------------------------------------------------------------------------
// Proof checks, RFC 9449 §4.3, through the guard: each check on its own is a unit test in
// src/dpop/proof/tests.rs; these prove the wiring (limits, policy, method, origin, window, ath,
// cnf.jkt) and the answer a proof failure gets.

/// A valid proof of exactly `len` bytes, padded with an extra claim and `kid`.
fn proof_of_len(env: &Env, url: &str, len: usize) -> String {
    for kid_len in 0..4 {
        for pad in 0..len {
            let proof = env.proof_edited("GET", url, |header, claims| {
                header["kid"] = json!("k".repeat(kid_len));
                claims["pad"] = json!("p".repeat(pad));
            });
            if proof.len() == len {
                return proof;
            }
            if proof.len() > len {
                break;
            }
        }
    }
    panic!("no proof of length {len}");
}

#[tokio::test]
async fn proof_over_4_kib_is_refused() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let at_limit = proof_of_len(&env, &url, 4096);
    let over = proof_of_len(&env, &url, 4097);
    let reply = env.with_proof("GET", &url, &over).await;
    assert_bad_proof(&reply, "malformed DPoP proof header");
    let reply = env.with_proof("GET", &url, &at_limit).await;
    assert_dpop_ok(&reply, &env.key.jkt);
}

#[tokio::test]
async fn proof_alg_outside_the_configured_allow_list_is_refused() {
    let policy = ProofPolicy {
        algorithms: vec![tower_oauth_guard::Algorithm::ES384],
        ..ProofPolicy::default()
    };
    let env = Env::start(|d| d.proof_policy(policy)).await;
    let url = env.url("/api/whoami");
    let reply = env.with_proof("GET", &url, &env.proof("GET", &url)).await;
    assert_eq!(reply.status, 401);
    let challenge = &reply.www_authenticate()[0];
    assert!(
        challenge.contains("error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("DPoP proof alg is not allowed"),
        "{challenge}"
    );
    assert!(challenge.contains("algs=\"ES384\""), "{challenge}");
    // The allowed algorithm beside it.
    let key = ProofKey::es384();
    let token = env.bound_token(&key);
    let mut claims = env.claims("GET", &url);
    claims["ath"] = json!(ath_for(&token));
    let reply = env
        .dpop("GET", &url, &token, &key.sign(&key.header(), &claims))
        .await;
    assert_dpop_ok(&reply, &key.jkt);
}

#[tokio::test]
async fn proof_with_a_bad_signature_is_refused() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    // Signed by another key while the header names the bound key.
    let thief = ProofKey::es256();
    let forged = thief.sign(&env.key.header(), &env.claims("GET", &url));
    let reply = env.with_proof("GET", &url, &forged).await;
    assert_bad_proof(&reply, "DPoP proof signature is invalid");
    // A valid proof with one claim changed after signing.
    let valid = env.proof("GET", &url);
    let parts: Vec<&str> = valid.split('.').collect();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    claims["htm"] = json!("POST");
    let tampered = format!("{}.{}.{}", parts[0], b64_json(&claims), parts[2]);
    let reply = env.with_proof("POST", &url, &tampered).await;
    assert_bad_proof(&reply, "DPoP proof signature is invalid");
    let reply = env.with_proof("GET", &url, &valid).await;
    assert_dpop_ok(&reply, &env.key.jkt);
}

#[tokio::test]
async fn proof_for_another_method_is_refused() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    for htm in ["POST", "get", "HEAD"] {
        let proof = env.proof_edited("GET", &url, |_, claims| claims["htm"] = json!(htm));
        let reply = env.with_proof("GET", &url, &proof).await;
        assert_bad_proof(&reply, "DPoP proof htm does not match the request method");
    }
    env.assert_valid_accepted("GET", "/api/whoami").await;
    env.assert_valid_accepted("POST", "/api/whoami").await;
}

#[tokio::test]
async fn proof_for_another_uri_is_refused() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let port = env.base.rsplit(':').next().unwrap();
    for htu in [
        env.url("/api/admin"),
        env.url("/api/whoami/"),
        env.url("/API/whoami"),
        env.url("/api/who%61mi%2F"),
        format!("https://127.0.0.1:{port}/api/whoami"),
        format!("http://localhost:{port}/api/whoami"),
        "http://127.0.0.1:1/api/whoami".to_owned(),
        "http://127.0.0.1/api/whoami".to_owned(),
        format!("ftp://127.0.0.1:{port}/api/whoami"),
        "/api/whoami".to_owned(),
        format!("http://user@127.0.0.1:{port}/api/whoami"),
    ] {
        let proof = env.proof_edited("GET", &url, |_, claims| claims["htu"] = json!(htu));
        let reply = env.with_proof("GET", &url, &proof).await;
        assert_bad_proof(&reply, "DPoP proof htu does not match the request URI");
    }
    env.assert_valid_accepted("GET", "/api/whoami").await;
}

/// A request to `path` with `Host: api.example` and a proof for `htu`.
async fn send_as_host(env: &Env, path: &str, htu: &str) -> Reply {
    let url = env.url(path);
    let mut claims = env.claims("GET", &url);
    claims["htu"] = json!(htu);
    let proof = env.key.sign(&env.key.header(), &claims);
    let authorization = format!("DPoP {}", env.token);
    send(
        "GET",
        &url,
        &[
            ("host", "api.example"),
            ("authorization", authorization.as_str()),
            ("dpop", proof.as_str()),
        ],
    )
    .await
}

#[tokio::test]
async fn htu_is_compared_after_normalization_and_without_query() {
    let public = BaseUrl::parse("http://api.example").unwrap();
    let env = Env::start_guard(|b, _| b.dpop(Dpop::allowed(PublicUri::fixed(public)))).await;
    // The public URL `http://api.example` has the default port 80.
    for (path, htu) in [
        ("/api/whoami", "http://api.example/api/whoami"),
        ("/api/whoami", "HTTP://API.Example/api/whoami"),
        ("/api/whoami", "http://api.example:80/api/whoami"),
        ("/api/whoami", "http://api.example/%61pi/who%61mi"),
        (
            "/api/whoami",
            "http://api.example/api/whoami?other=query#frag",
        ),
        ("/api/whoami?a=b&c", "http://api.example/api/whoami"),
        ("/", "http://api.example"),
        ("/", "http://api.example:80/"),
    ] {
        let reply = send_as_host(&env, path, htu).await;
        assert_dpop_ok(&reply, &env.key.jkt);
    }
    for (path, htu) in [
        ("/api/whoami", "http://api.example:8080/api/whoami"),
        ("/api/whoami", "https://api.example/api/whoami"),
        ("/api/whoami", "http://api.example./api/whoami"),
    ] {
        let reply = send_as_host(&env, path, htu).await;
        assert_bad_proof(&reply, "DPoP proof htu does not match the request URI");
    }
}

#[tokio::test]
async fn proof_iat_outside_the_window_is_refused() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let now = env.clock.now();
    let at = |iat: i64| env.proof_edited("GET", &url, |_, claims| claims["iat"] = json!(iat));
    // Default window: 60 s in the past, 5 s in the future, no extra leeway.
    let reply = env.with_proof("GET", &url, &at(now - 61)).await;
    assert_bad_proof(&reply, "DPoP proof iat is too old");
    let reply = env.with_proof("GET", &url, &at(now + 6)).await;
    assert_bad_proof(&reply, "DPoP proof iat is too far in the future");
    let reply = env.with_proof("GET", &url, &at(now - 60)).await;
    assert_dpop_ok(&reply, &env.key.jkt);
    let reply = env.with_proof("GET", &url, &at(now + 5)).await;
    assert_dpop_ok(&reply, &env.key.jkt);
    // Moving the server clock moves the window: the proof of `now` is now too old.
    let proof = at(now);
    env.clock.set(now + 61);
    let reply = env.with_proof("GET", &url, &proof).await;
    assert_bad_proof(&reply, "DPoP proof iat is too old");
}

#[tokio::test]
async fn configured_window_and_leeway_move_the_iat_bounds() {
    let policy = ProofPolicy {
        max_age: Duration::from_secs(10),
        max_future: Duration::from_secs(0),
        leeway: Duration::from_secs(2),
        ..ProofPolicy::default()
    };
    let env = Env::start(|d| d.proof_policy(policy)).await;
    let url = env.url("/api/whoami");
    let now = env.clock.now();
    let at = |iat: i64| env.proof_edited("GET", &url, |_, claims| claims["iat"] = json!(iat));
    for (iat, accepted) in [
        (now - 12, true),
        (now - 13, false),
        (now + 2, true),
        (now + 3, false),
    ] {
        let reply = env.with_proof("GET", &url, &at(iat)).await;
        if accepted {
            assert_dpop_ok(&reply, &env.key.jkt);
        } else {
            assert_eq!(reply.status, 401, "iat {}", iat - now);
            assert!(reply.www_authenticate()[0].contains("DPoP proof iat is too"));
        }
    }
}

#[tokio::test]
async fn proof_without_ath_or_for_another_token_is_refused() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let proof = env.proof_edited("GET", &url, |_, claims| {
        claims.as_object_mut().unwrap().remove("ath");
    });
    let reply = env.with_proof("GET", &url, &proof).await;
    assert_bad_proof(&reply, "DPoP proof has no ath claim for the access token");
    // `ath` of another token bound to the same key.
    let other_token = env.bound_token(&env.key);
    let proof = env.proof_edited("GET", &url, |_, claims| {
        claims["ath"] = json!(ath_for(&other_token));
    });
    let reply = env.with_proof("GET", &url, &proof).await;
    assert_bad_proof(&reply, "DPoP proof ath does not match the access token");
    // `ath` padded, or in standard base64: not the exact encoding.
    let ath = ath_for(&env.token);
    for wrong in [format!("{ath}="), ath.replace('-', "+").replace('_', "/")] {
        if wrong == ath {
            continue;
        }
        let proof = env.proof_edited("GET", &url, |_, claims| claims["ath"] = json!(wrong));
        let reply = env.with_proof("GET", &url, &proof).await;
        assert_bad_proof(&reply, "DPoP proof ath does not match the access token");
    }
    env.assert_valid_accepted("GET", "/api/whoami").await;
}

#[tokio::test]
async fn proof_key_other_than_cnf_jkt_is_refused_as_invalid_token() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    // A thief with the token and their own, perfectly valid, proof key.
    let thief = ProofKey::es256();
    let proof = thief.sign(&thief.header(), &env.claims("GET", &url));
    let reply = env.with_proof("GET", &url, &proof).await;
    assert_refused(
        &reply,
        401,
        "invalid_token",
        "DPoP key does not match the token binding",
    );
    env.assert_valid_accepted("GET", "/api/whoami").await;
}

// ---------------------------------------------------------------------------------------------
// Scheme and headers, modes and challenges

#[tokio::test]
async fn dpop_scheme_without_a_proof_header_is_refused() {
    let env = Env::start(|d| d).await;
    let authorization = format!("DPoP {}", env.token);
    let reply = send(
        "GET",
        &env.url("/api/whoami"),
        &[("authorization", &authorization)],
    )
    .await;
    assert_bad_proof(&reply, "DPoP proof missing");
}

#[tokio::test]
async fn two_dpop_headers_or_a_joined_value_are_refused() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let (a, b) = (env.proof("GET", &url), env.proof("GET", &url));
    let authorization = format!("DPoP {}", env.token);
    let joined = format!("{a}, {b}");
    for headers in [
        vec![
            ("authorization", authorization.as_str()),
            ("dpop", &a),
            ("dpop", &b),
        ],
        vec![
            ("authorization", authorization.as_str()),
            ("dpop", &a),
            ("dpop", &a),
        ],
        vec![("authorization", authorization.as_str()), ("dpop", &joined)],
    ] {
        let reply = send("GET", &url, &headers).await;
        assert_bad_proof(&reply, "more than one DPoP proof");
    }
    // Neither proof was consumed by the refused requests.
    let reply = env.with_proof("GET", &url, &a).await;
    assert_dpop_ok(&reply, &env.key.jkt);
}

#[tokio::test]
async fn bound_token_presented_as_bearer_is_refused() {
    for mode in [DpopMode::Allowed, DpopMode::Disabled, DpopMode::Required] {
        let env = Env::start_guard(dpop_mode(mode)).await;
        let url = env.url("/api/whoami");
        let bearer = format!("Bearer {}", env.token);
        // Without a proof, and with a perfectly valid one: a downgrade either way (§7.2).
        let proof = env.proof("GET", &url);
        for headers in [
            vec![("authorization", bearer.as_str())],
            vec![("authorization", bearer.as_str()), ("dpop", proof.as_str())],
        ] {
            let reply = send("GET", &url, &headers).await;
            if mode == DpopMode::Disabled {
                // A server without DPoP does not send the client to a scheme it refuses.
                assert_eq!(reply.status, 401);
                assert_eq!(
                    reply.www_authenticate(),
                    ["Bearer realm=\"api\", error=\"invalid_token\", \
                      error_description=\"DPoP-bound token used as a bearer token\""]
                );
            } else {
                assert_refused(
                    &reply,
                    401,
                    "invalid_token",
                    "DPoP-bound token used as a bearer token",
                );
            }
        }
        if mode != DpopMode::Disabled {
            env.assert_valid_accepted("GET", "/api/whoami").await;
        }
    }
}

#[tokio::test]
async fn dpop_scheme_with_an_unbound_token_is_refused() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let unbound = env.issuer.token(AUD, json!({}));
    let mut claims = env.claims("GET", &url);
    claims["ath"] = json!(ath_for(&unbound));
    let proof = env.key.sign(&env.key.header(), &claims);
    let reply = env.dpop("GET", &url, &unbound, &proof).await;
    assert_refused(&reply, 401, "invalid_token", "token is not DPoP-bound");
    // A `cnf` with only a certificate thumbprint is not a DPoP binding either.
    let mtls_bound = env.issuer.token(AUD, json!({"cnf": {"x5t#S256": "abc"}}));
    let reply = env.dpop("GET", &url, &mtls_bound, &proof).await;
    assert_refused(&reply, 401, "invalid_token", "token is not DPoP-bound");
    env.assert_valid_accepted("GET", "/api/whoami").await;
}

/// RFC 9449 §7.2 leaves the choice open; this crate ignores the `DPoP` header of a request that
/// uses the `Bearer` scheme with an unbound token, as a server that does not know DPoP would.
#[tokio::test]
async fn dpop_header_beside_an_unbound_bearer_token_is_ignored() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let unbound = env.issuer.token(AUD, json!({}));
    let bearer = format!("Bearer {unbound}");
    for proof in [env.proof("GET", &url), "not-even-a-jwt".to_owned()] {
        let reply = send("GET", &url, &[("authorization", &bearer), ("dpop", &proof)]).await;
        assert_eq!(reply.status, 200, "{:?}", reply.www_authenticate());
        assert_eq!(reply.json()["binding"], "bearer");
        assert_eq!(reply.json()["jkt"], Value::Null);
    }
}

#[tokio::test]
async fn allowed_mode_challenges_with_both_schemes_and_lists_algs() {
    let env = Env::start(|d| d).await;
    let reply = send("GET", &env.url("/api/whoami"), &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.www_authenticate(),
        [
            "Bearer realm=\"api\"",
            "DPoP realm=\"api\", algs=\"ES256 ES384 PS256 RS256 EdDSA\""
        ]
    );
    // Both schemes are served.
    let unbound = env.issuer.token(AUD, json!({}));
    let reply = get_with_token(&env.url("/api/whoami"), &unbound).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["binding"], "bearer");
    env.assert_valid_accepted("GET", "/api/whoami").await;
}

#[tokio::test]
async fn required_mode_refuses_bearer_and_challenges_with_dpop_only() {
    let env = Env::start_guard(dpop_mode(DpopMode::Required)).await;
    let url = env.url("/api/whoami");
    let reply = send("GET", &url, &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.www_authenticate(),
        ["DPoP realm=\"api\", algs=\"ES256 ES384 PS256 RS256 EdDSA\""]
    );
    let unbound = env.issuer.token(AUD, json!({}));
    let reply = get_with_token(&url, &unbound).await;
    assert_refused(&reply, 401, "invalid_token", "DPoP-bound token required");
    env.assert_valid_accepted("GET", "/api/whoami").await;
}

#[tokio::test]
async fn disabled_mode_does_not_speak_dpop() {
    let env = Env::start_guard(dpop_mode(DpopMode::Disabled)).await;
    let url = env.url("/api/whoami");
    let reply = send("GET", &url, &[]).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.www_authenticate(), ["Bearer realm=\"api\""]);
    // The DPoP scheme is unknown here: a bare Bearer challenge, as for no credentials.
    let reply = env.with_proof("GET", &url, &env.proof("GET", &url)).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.www_authenticate(), ["Bearer realm=\"api\""]);
    let unbound = env.issuer.token(AUD, json!({}));
    let reply = get_with_token(&url, &unbound).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["binding"], "bearer");
}

#[tokio::test]
async fn an_issuer_can_require_dpop_while_the_guard_allows_bearer() {
    let env = Env::start(|d| d).await;
    let strict = TestIssuer::start().await;
    let base = env
        .serve_guard(|b, own| {
            b.dpop(Dpop::allowed(own)).trust(
                Issuer::new(&strict.issuer)
                    .audience(AUD)
                    .jwks_url(strict.jwks_url())
                    .dpop(DpopMode::Required),
            )
        })
        .await;
    let url = format!("{base}/api/whoami");
    // The lenient issuer's bearer tokens are served.
    let reply = get_with_token(&url, &env.issuer.token(AUD, json!({}))).await;
    assert_eq!(reply.status, 200);
    // The strict issuer's are not.
    let reply = get_with_token(&url, &strict.token(AUD, json!({}))).await;
    assert_refused(&reply, 401, "invalid_token", "DPoP-bound token required");
    // The strict issuer's DPoP-bound token with a proof is.
    let token = strict.token(AUD, json!({"cnf": {"jkt": env.key.jkt}}));
    let mut claims = env.claims("GET", &url);
    claims["ath"] = json!(ath_for(&token));
    let proof = env.key.sign(&env.key.header(), &claims);
    let reply = env.dpop("GET", &url, &token, &proof).await;
    assert_dpop_ok(&reply, &env.key.jkt);
}

// ---------------------------------------------------------------------------------------------
// The request's public URI

#[tokio::test]
async fn the_configured_origin_holds_whatever_host_or_forwarded_headers_say() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let authorization = format!("DPoP {}", env.token);
    let spoofed = [
        ("host", "bank.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "bank.example"),
        ("x-forwarded-prefix", "/v9"),
        ("forwarded", "proto=https;host=bank.example"),
    ];
    let headers_with = |proof: &str| {
        let mut headers: Vec<(&str, String)> =
            spoofed.iter().map(|(n, v)| (*n, (*v).to_owned())).collect();
        headers.push(("authorization", authorization.clone()));
        headers.push(("dpop", proof.to_owned()));
        headers
    };
    // A proof for the origin the spoofed headers claim (another API that accepts the same
    // token) is refused...
    for htu in [
        "https://bank.example/v9/api/whoami",
        "http://bank.example/api/whoami",
    ] {
        let proof = env.proof("GET", htu);
        let headers = headers_with(&proof);
        let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = send("GET", &url, &refs).await;
        assert_bad_proof(&reply, "DPoP proof htu does not match the request URI");
    }
    // ...and the proof for the configured URL is accepted despite them.
    let proof = env.proof("GET", &url);
    let headers = headers_with(&proof);
    let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = send("GET", &url, &refs).await;
    assert_dpop_ok(&reply, &env.key.jkt);
}

/// Sends one raw HTTP/1.1 request and returns the status code.
async fn raw_status(base: &str, request: String) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = vec![0u8; 12];
    stream.read_exact(&mut head).await.unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

#[tokio::test]
async fn an_absolute_form_target_never_chooses_the_origin() {
    // A proof minted for API B, with a token whose audience covers A and B, sent to A with
    // `GET http://api-b.example/... HTTP/1.1`.
    for public in [None, Some(PublicUri::DangerousHostHeader)] {
        let configured = public.clone();
        let env =
            Env::start_guard(move |b, own| b.dpop(Dpop::allowed(configured.unwrap_or(own)))).await;
        let authority = env.base.trim_start_matches("http://").to_owned();
        let other = "http://api-b.example/api/whoami";
        let request = |target: &str, host: &str, htu: &str| {
            format!(
                "GET {target} HTTP/1.1\r\nhost: {host}\r\nauthorization: DPoP {}\r\ndpop: {}\r\nconnection: close\r\n\r\n",
                env.token,
                env.proof("GET", htu)
            )
        };
        let status = raw_status(&env.base, request(other, &authority, other)).await;
        assert_ne!(
            status, 200,
            "{public:?}: absolute-form target chose the origin"
        );
        // The same request in origin form, for the right origin, passes.
        let own = env.url("/api/whoami");
        let status = raw_status(&env.base, request("/api/whoami", &authority, &own)).await;
        assert_eq!(status, 200, "{public:?}");
        // Absolute form naming A itself is fine too.
        let status = raw_status(&env.base, request(&own, &authority, &own)).await;
        assert_eq!(status, 200, "{public:?}");
    }
}

#[tokio::test]
async fn the_host_header_counts_only_when_dangerously_asked_for() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let authorization = format!("DPoP {}", env.token);
    let send_as = |host: &'static str, proof: String| {
        let authorization = authorization.clone();
        let url = url.clone();
        async move {
            send(
                "GET",
                &url,
                &[
                    ("host", host),
                    ("authorization", &authorization),
                    ("dpop", &proof),
                ],
            )
            .await
        }
    };
    let b_proof = || env.proof("GET", "http://api-b.example/api/whoami");
    assert_bad_proof(
        &send_as("api-b.example", b_proof()).await,
        "DPoP proof htu does not match the request URI",
    );
    let dangerous = env
        .serve_guard(|b, _| b.dpop(Dpop::allowed(PublicUri::DangerousHostHeader)))
        .await;
    let reply = send(
        "GET",
        &format!("{dangerous}/api/whoami"),
        &[
            ("host", "api-b.example"),
            ("authorization", &authorization),
            ("dpop", &b_proof()),
        ],
    )
    .await;
    assert_dpop_ok(&reply, &env.key.jkt);
}

#[tokio::test]
async fn configured_public_urls_set_scheme_host_and_prefix() {
    let public = PublicUri::Fixed(vec![
        BaseUrl::parse("https://API.example:443/gateway/").unwrap(),
        BaseUrl::parse("https://api2.example").unwrap(),
    ]);
    let env = Env::start_guard(|b, _| b.dpop(Dpop::allowed(public))).await;
    let url = env.url("/api/whoami");
    let authorization = format!("DPoP {}", env.token);
    // The proxy terminated TLS, stripped /gateway and rewrote Host; forwarded headers lie.
    let headers = |proof: &str| {
        vec![
            ("host", "backend.internal:8080".to_owned()),
            ("x-forwarded-host", "bank.example".to_owned()),
            ("authorization", authorization.clone()),
            ("dpop", proof.to_owned()),
        ]
    };
    for (htu, accepted) in [
        ("https://api.example/gateway/api/whoami", true),
        ("https://api.example:443/gateway/api/whoami", true),
        ("https://API2.example/api/whoami", true),
        (url.as_str(), false),
        ("http://api.example/gateway/api/whoami", false),
        ("https://api.example/api/whoami", false),
        ("https://api2.example/gateway/api/whoami", false),
        ("http://backend.internal:8080/api/whoami", false),
        ("https://bank.example/gateway/api/whoami", false),
    ] {
        let proof = env.proof("GET", htu);
        let h = headers(&proof);
        let refs: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let reply = send("GET", &url, &refs).await;
        if accepted {
            assert_dpop_ok(&reply, &env.key.jkt);
        } else {
            assert_bad_proof(&reply, "DPoP proof htu does not match the request URI");
        }
    }
}

#[tokio::test]
async fn forwarded_headers_set_the_public_uri_from_listed_proxies_only() {
    use tower_oauth_guard::ForwardedHeaders::{Forwarded, XForwarded, XForwardedWithPrefix};
    let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let env = Env::start(|d| d).await;
    let authorization = format!("DPoP {}", env.token);
    let cases = [
        (
            XForwardedWithPrefix,
            vec![
                ("host", "backend.internal"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "api.example"),
                ("x-forwarded-prefix", "/gateway"),
            ],
            "https://api.example/gateway/api/whoami",
        ),
        (
            // The last element (the proxy's own) counts; X-Forwarded-* are not read.
            Forwarded,
            vec![
                (
                    "forwarded",
                    "for=192.0.2.1;proto=http;host=evil.example, for=10.0.0.1;proto=https;host=\"api.example\"",
                ),
                ("x-forwarded-host", "ignored.example"),
                ("x-forwarded-prefix", "/gateway"),
            ],
            "https://api.example/api/whoami",
        ),
        (
            // The last value of a list is the one the trusted proxy appended; a client's own
            // `Forwarded`, passed through, is not read.
            XForwarded,
            vec![
                ("x-forwarded-proto", "http, https"),
                ("x-forwarded-host", "evil.example, api.example"),
                ("forwarded", "proto=https;host=other.example"),
            ],
            "https://api.example/api/whoami",
        ),
    ];
    for (family, forwarded, htu) in cases {
        let base = env
            .serve_guard(move |b, _| {
                b.dpop(Dpop::allowed(PublicUri::forwarded_by([loopback], family)))
            })
            .await;
        let url = format!("{base}/api/whoami");
        let proof = env.proof("GET", htu);
        let mut headers = forwarded.clone();
        headers.push(("authorization", &authorization));
        headers.push(("dpop", &proof));
        let reply = send("GET", &url, &headers).await;
        assert_dpop_ok(&reply, &env.key.jkt);
        // The same headers with a proof for the URI as seen by the backend: refused.
        let proof = env.proof("GET", &url);
        let mut headers = forwarded.clone();
        headers.push(("authorization", &authorization));
        headers.push(("dpop", &proof));
        let reply = send("GET", &url, &headers).await;
        assert_bad_proof(&reply, "DPoP proof htu does not match the request URI");
    }
    let forwarded = env
        .serve_guard(move |b, _| {
            b.dpop(Dpop::allowed(PublicUri::forwarded_by(
                [loopback],
                Forwarded,
            )))
        })
        .await;
    let forwarded_url = format!("{forwarded}/api/whoami");
    // Forwarded headers that cannot be a public URI, or none at all (no fallback to the
    // client's Host), are a bad request, not a guess.
    for headers in [
        vec![("forwarded", "proto=gopher;host=api.example")],
        vec![("forwarded", "host=api.example")],
        vec![],
    ] {
        let proof = env.proof("GET", &forwarded_url);
        let mut headers = headers.clone();
        headers.push(("authorization", &authorization));
        headers.push(("dpop", &proof));
        let reply = send("GET", &forwarded_url, &headers).await;
        assert_eq!(reply.status, 400, "{headers:?}");
        assert!(reply.www_authenticate()[0].contains("error=\"invalid_request\""));
    }

    // The same headers from a peer that is not a listed proxy are not honoured.
    let proxy: std::net::IpAddr = "192.0.2.9".parse().unwrap();
    let other = env
        .serve_guard(move |b, _| b.dpop(Dpop::allowed(PublicUri::forwarded_by([proxy], Forwarded))))
        .await;
    let proof = env.proof("GET", "https://api.example/api/whoami");
    let reply = send(
        "GET",
        &format!("{other}/api/whoami"),
        &[
            ("forwarded", "proto=https;host=api.example"),
            ("authorization", &authorization),
            ("dpop", &proof),
        ],
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(reply.www_authenticate()[0].contains("request did not come through a trusted proxy"));
}

#[tokio::test]
async fn guard_inside_a_nested_router_checks_the_full_path() {
    let env = Env::start(|d| d).await;
    let url = env.url("/v1/whoami");
    let reply = env.with_proof("GET", &url, &env.proof("GET", &url)).await;
    assert_dpop_ok(&reply, &env.key.jkt);
    // A proof for the path the inner router sees is not a proof for this request.
    let inner = env.url("/whoami");
    let reply = env.with_proof("GET", &url, &env.proof("GET", &inner)).await;
    assert_bad_proof(&reply, "DPoP proof htu does not match the request URI");
}

// ---------------------------------------------------------------------------------------------
// Replay

#[tokio::test]
async fn replayed_proof_is_refused() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let proof = env.proof("GET", &url);
    let reply = env.with_proof("GET", &url, &proof).await;
    assert_dpop_ok(&reply, &env.key.jkt);
    for _ in 0..2 {
        let reply = env.with_proof("GET", &url, &proof).await;
        assert_bad_proof(&reply, "DPoP proof replayed");
    }
    // Another proof by the same client is fine.
    env.assert_valid_accepted("GET", "/api/whoami").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_requests_racing_one_proof_admit_exactly_one() {
    let env = Arc::new(Env::start(|d| d).await);
    for round in 0..5 {
        let url = env.url("/api/whoami");
        let proof = Arc::new(env.proof("GET", &url));
        let barrier = Arc::new(tokio::sync::Barrier::new(8));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (env, proof, barrier, url) =
                    (env.clone(), proof.clone(), barrier.clone(), url.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    env.with_proof("GET", &url, &proof).await
                })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            let reply = task.await.unwrap();
            if reply.status == 200 {
                accepted += 1;
            } else {
                assert_bad_proof(&reply, "DPoP proof replayed");
            }
        }
        assert_eq!(accepted, 1, "round {round}");
    }
}

#[tokio::test]
async fn same_jti_from_another_key_is_not_a_replay() {
    let env = Env::start(|d| d).await;
    let url = env.url("/api/whoami");
    let other = ProofKey::es256();
    let other_token = env.bound_token(&other);
    let jti = "shared-jti";
    let mut claims = env.claims("GET", &url);
    claims["jti"] = json!(jti);
    let reply = env
        .with_proof("GET", &url, &env.key.sign(&env.key.header(), &claims))
        .await;
    assert_dpop_ok(&reply, &env.key.jkt);
    claims["ath"] = json!(ath_for(&other_token));
    let reply = env
        .dpop(
            "GET",
            &url,
            &other_token,
            &other.sign(&other.header(), &claims),
        )
        .await;
    assert_dpop_ok(&reply, &other.jkt);
}

#[tokio::test]
async fn full_replay_store_fails_closed() {
    let env = Env::start(|d| d.replay_store(MemoryReplayStore::new(2))).await;
    let url = env.url("/api/whoami");
    let first = env.proof("GET", &url);
    let reply = env.with_proof("GET", &url, &first).await;
    assert_dpop_ok(&reply, &env.key.jkt);
    env.assert_valid_accepted("GET", "/api/whoami").await;
    // Full: a new proof cannot be remembered, so it is not accepted.
    let reply = env.with_proof("GET", &url, &env.proof("GET", &url)).await;
    reply.assert_undecided(503, "1");
    // And what it remembers is still refused.
    let reply = env.with_proof("GET", &url, &first).await;
    assert_bad_proof(&reply, "DPoP proof replayed");
}

/// A store that counts its calls and can be made slow.
struct CountingStore {
    inner: MemoryReplayStore,
    calls: Arc<AtomicUsize>,
    windows: Arc<std::sync::Mutex<Vec<ReplayWindow>>>,
    delay: Duration,
}

impl ReplayStore for CountingStore {
    fn check_and_insert<'a>(
        &'a self,
        key: &'a ReplayKey,
        window: ReplayWindow,
    ) -> tower_oauth_guard::ReplayFuture<'a> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.windows.lock().unwrap().push(window);
            tokio::time::sleep(self.delay).await;
            let check: Result<ReplayCheck, ReplayStoreError> =
                self.inner.check_and_insert(key, window).await;
            check
        })
    }
}

#[tokio::test]
async fn a_custom_replay_store_is_consulted_only_for_valid_proofs() {
    let calls = Arc::new(AtomicUsize::new(0));
    let store = CountingStore {
        inner: MemoryReplayStore::default(),
        calls: calls.clone(),
        windows: Default::default(),
        delay: Duration::ZERO,
    };
    let env = Env::start(|d| d.replay_store(store)).await;
    let url = env.url("/api/whoami");
    let proof = env.proof("GET", &url);
    env.with_proof("GET", &url, &proof).await;
    let reply = env.with_proof("GET", &url, &proof).await;
    assert_bad_proof(&reply, "DPoP proof replayed");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Invalid proofs never reach the store, so they cannot fill it.
    let bad = env.proof_edited("GET", &url, |_, claims| claims["htm"] = json!("PUT"));
    env.with_proof("GET", &url, &bad).await;
    let thief = ProofKey::es256();
    env.with_proof(
        "GET",
        &url,
        &thief.sign(&thief.header(), &env.claims("GET", &url)),
    )
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_replay_store_slower_than_the_timeout_fails_closed() {
    let store = CountingStore {
        inner: MemoryReplayStore::default(),
        calls: Arc::new(AtomicUsize::new(0)),
        windows: Default::default(),
        delay: Duration::from_millis(300),
    };
    let env = Env::start(|d| {
        d.replay_store(store)
            .replay_timeout(Duration::from_millis(20))
    })
    .await;
    let url = env.url("/api/whoami");
    let reply = env.with_proof("GET", &url, &env.proof("GET", &url)).await;
    reply.assert_undecided(503, "1");
}

// ---------------------------------------------------------------------------------------------
// Server nonces

const STEP: i64 = 60;

fn secret(fill: u8) -> NonceSecret {
    NonceSecret::from_bytes(&[fill; 32]).unwrap()
}

/// The start of the next nonce step: the tests move the clock within and across steps.
fn next_step_start() -> i64 {
    let now = now();
    now - now.rem_euclid(STEP) + STEP
}

#[track_caller]
fn assert_use_nonce(reply: &Reply, description: &str) -> String {
    assert_refused(reply, 401, "use_dpop_nonce", description);
    reply
        .headers
        .get("dpop-nonce")
        .expect("a use_dpop_nonce answer carries a DPoP-Nonce")
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn nonce_flow_first_challenge_then_retry_succeeds() {
    let env = Env::start(|d| d.nonces(DpopNonces::new(secret(1)))).await;
    let url = env.url("/api/whoami");
    let reply = env.with_proof("GET", &url, &env.proof("GET", &url)).await;
    let nonce = assert_use_nonce(&reply, "resource server requires nonce in DPoP proof");
    assert!(!nonce.is_empty());
    let reply = env
        .with_proof("GET", &url, &env.proof_with_nonce("GET", &url, &nonce))
        .await;
    assert_dpop_ok(&reply, &env.key.jkt);
    // The nonce is good for more than one proof while it is current.
    let reply = env
        .with_proof("POST", &url, &env.proof_with_nonce("POST", &url, &nonce))
        .await;
    assert_dpop_ok(&reply, &env.key.jkt);
}

#[tokio::test]
async fn invalid_nonces_are_refused_with_a_fresh_one() {
    let env = Env::start(|d| d.nonces(DpopNonces::new(secret(1)))).await;
    let url = env.url("/api/whoami");
    let now = u64::try_from(env.clock.now()).unwrap();
    let foreign = DpopNonces::new(secret(2)).issue(now);
    let own = DpopNonces::new(secret(1)).issue(now);
    for bad in [foreign.as_str(), "made-up", ""] {
        let reply = env
            .with_proof("GET", &url, &env.proof_with_nonce("GET", &url, bad))
            .await;
        let fresh = assert_use_nonce(&reply, "DPoP nonce invalid or expired");
        assert_eq!(fresh, own);
    }
    let reply = env
        .with_proof("GET", &url, &env.proof_with_nonce("GET", &url, &own))
        .await;
    assert_dpop_ok(&reply, &env.key.jkt);
}

#[tokio::test]
async fn guards_sharing_a_secret_accept_each_others_nonces() {
    let env = Env::start(|d| d.nonces(DpopNonces::new(secret(7)))).await;
    let peer = env.serve(|d| d.nonces(DpopNonces::new(secret(7)))).await;
    let stranger = env.serve(|d| d.nonces(DpopNonces::new(secret(8)))).await;
    let url = env.url("/api/whoami");
    let reply = env.with_proof("GET", &url, &env.proof("GET", &url)).await;
    let nonce = assert_use_nonce(&reply, "resource server requires nonce");
    let peer_url = format!("{peer}/api/whoami");
    let reply = env
        .with_proof(
            "GET",
            &peer_url,
            &env.proof_with_nonce("GET", &peer_url, &nonce),
        )
        .await;
    assert_dpop_ok(&reply, &env.key.jkt);
    let stranger_url = format!("{stranger}/api/whoami");
    let reply = env
        .with_proof(
            "GET",
            &stranger_url,
            &env.proof_with_nonce("GET", &stranger_url, &nonce),
        )
        .await;
    assert_use_nonce(&reply, "DPoP nonce invalid or expired");
}

#[tokio::test]
async fn rotated_secret_still_accepts_nonces_of_the_previous_one() {
    let env = Env::start(|d| d.nonces(DpopNonces::new(secret(1)))).await;
    let rotated = env
        .serve(|d| d.nonces(DpopNonces::new(secret(2)).previous(secret(1))))
        .await;
    let url = env.url("/api/whoami");
    let old = assert_use_nonce(
        &env.with_proof("GET", &url, &env.proof("GET", &url)).await,
        "resource server requires nonce",
    );
    let rotated_url = format!("{rotated}/api/whoami");
    let reply = env
        .with_proof(
            "GET",
            &rotated_url,
            &env.proof_with_nonce("GET", &rotated_url, &old),
        )
        .await;
    assert_dpop_ok(&reply, &env.key.jkt);
    // The rotated instance issues nonces of the new secret, which the old instance refuses.
    let new = assert_use_nonce(
        &env.with_proof("GET", &rotated_url, &env.proof("GET", &rotated_url))
            .await,
        "resource server requires nonce",
    );
    assert_ne!(new, old);
    let reply = env
        .with_proof("GET", &url, &env.proof_with_nonce("GET", &url, &new))
        .await;
    assert_use_nonce(&reply, "DPoP nonce invalid or expired");
}

#[tokio::test]
async fn stale_iat_with_nonces_on_asks_for_a_nonce() {
    let env = Env::start(|d| d.nonces(DpopNonces::new(secret(1)))).await;
    let url = env.url("/api/whoami");
    let nonce = DpopNonces::new(secret(1)).issue(u64::try_from(env.clock.now()).unwrap());
    let proof = env.proof_edited("GET", &url, |_, claims| {
        claims["nonce"] = json!(nonce);
        claims["iat"] = json!(env.clock.now() - 61);
    });
    let reply = env.with_proof("GET", &url, &proof).await;
    let fresh = assert_use_nonce(&reply, "DPoP nonce invalid or expired");
    assert_eq!(fresh, nonce);
    let reply = env
        .with_proof("GET", &url, &env.proof_with_nonce("GET", &url, &fresh))
        .await;
    assert_dpop_ok(&reply, &env.key.jkt);
}

#[tokio::test]
async fn success_carries_a_fresh_nonce_when_the_current_one_is_about_to_expire() {
    let start = next_step_start();
    let env = Env::start_at(
        start,
        Box::new(|b, own| b.dpop(Dpop::allowed(own).nonces(DpopNonces::new(secret(1))))),
    )
    .await;
    let url = env.url("/api/whoami");
    let nonce = assert_use_nonce(
        &env.with_proof("GET", &url, &env.proof("GET", &url)).await,
        "resource server requires nonce",
    );
    // Same step: the nonce is current, no new one is sent.
    env.clock.set(start + STEP - 1);
    let reply = env
        .with_proof("GET", &url, &env.proof_with_nonce("GET", &url, &nonce))
        .await;
    assert_dpop_ok(&reply, &env.key.jkt);
    assert!(reply.headers.get("dpop-nonce").is_none());
    // Next step: still accepted, and the answer carries the nonce of the new step.
    env.clock.set(start + STEP);
    let reply = env
        .with_proof("GET", &url, &env.proof_with_nonce("GET", &url, &nonce))
        .await;
    assert_dpop_ok(&reply, &env.key.jkt);
    let fresh = reply.headers["dpop-nonce"].to_str().unwrap().to_owned();
    assert_ne!(fresh, nonce);
    // Three steps on, the old nonce is stale and the client is told to use a new one.
    env.clock.set(start + 3 * STEP);
    let reply = env
        .with_proof("GET", &url, &env.proof_with_nonce("GET", &url, &nonce))
        .await;
    assert_use_nonce(&reply, "DPoP nonce invalid or expired");
    // The fresh one, from the step before, still works.
    let reply = env
        .with_proof("GET", &url, &env.proof_with_nonce("GET", &url, &fresh))
        .await;
    assert_dpop_ok(&reply, &env.key.jkt);
}

#[tokio::test]
async fn nonce_problems_do_not_mask_proof_problems() {
    let env = Env::start(|d| d.nonces(DpopNonces::new(secret(1)))).await;
    let url = env.url("/api/whoami");
    // A proof that is wrong in itself is invalid_dpop_proof even without a nonce...
    let bad = env.proof_edited("GET", &url, |_, claims| claims["htm"] = json!("POST"));
    let reply = env.with_proof("GET", &url, &bad).await;
    assert_bad_proof(&reply, "DPoP proof htm does not match the request method");
    // ...and a thief's proof with a valid nonce is still the wrong key.
    let nonce = DpopNonces::new(secret(1)).issue(u64::try_from(env.clock.now()).unwrap());
    let thief = ProofKey::es256();
    let mut claims = env.claims("GET", &url);
    claims["nonce"] = json!(nonce);
    let reply = env
        .with_proof("GET", &url, &thief.sign(&thief.header(), &claims))
        .await;
    assert_refused(
        &reply,
        401,
        "invalid_token",
        "DPoP key does not match the token binding",
    );
}
