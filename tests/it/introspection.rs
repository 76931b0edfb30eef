//! Opaque tokens validated at the issuer's introspection endpoint (RFC 7662), through real
//! HTTP: a local endpoint in Rust answers what each test needs (active, inactive, errors,
//! slowness, another issuer, `cnf`), and records what the guard sent.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use tower_oauth_guard::{
    AccessToken, BaseUrl, BuildError, Dpop, Introspection, IntrospectionAuth, Issuer, OAuthGuard,
    OAuthGuardBuilder, PublicUri,
};

use crate::support::*;

const AUD: &str = "https://api.example";

/// What the endpoint answers for one token.
#[derive(Clone)]
enum Answer {
    Json(Value),
    Status(u16),
    Body(&'static str),
    Slow(Duration, Value),
    /// A signed answer (RFC 9701): a JWT, as `application/token-introspection+jwt`.
    Signed(String),
}

/// One request the endpoint received.
#[derive(Clone, Debug)]
struct Seen {
    authorization: Option<String>,
    accept: Option<String>,
    form: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct EndpointState {
    answers: Arc<Mutex<HashMap<String, Answer>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    calls: Arc<AtomicUsize>,
    issuer: Arc<Mutex<String>>,
}

/// An authorization server with an introspection endpoint and metadata naming it.
struct Endpoint {
    base: String,
    state: EndpointState,
}

async fn introspect(
    State(state): State<EndpointState>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    state.calls.fetch_add(1, Ordering::SeqCst);
    let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let authorization = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    let accept = headers
        .get("accept")
        .map(|v| v.to_str().unwrap().to_owned());
    state.seen.lock().unwrap().push(Seen {
        authorization,
        accept,
        form: form.clone(),
    });
    let token = form.get("token").cloned().unwrap_or_default();
    let answer = state.answers.lock().unwrap().get(&token).cloned();
    match answer {
        None => axum::Json(json!({"active": false})).into_response(),
        Some(Answer::Json(v)) => axum::Json(v).into_response(),
        Some(Answer::Status(s)) => StatusCode::from_u16(s).unwrap().into_response(),
        Some(Answer::Body(b)) => ([("content-type", "application/json")], b).into_response(),
        Some(Answer::Slow(d, v)) => {
            tokio::time::sleep(d).await;
            axum::Json(v).into_response()
        }
        Some(Answer::Signed(jwt)) => (
            [("content-type", "application/token-introspection+jwt")],
            jwt,
        )
            .into_response(),
    }
}

async fn metadata(State(state): State<EndpointState>) -> axum::Json<Value> {
    let issuer = state.issuer.lock().unwrap().clone();
    axum::Json(json!({
        "issuer": issuer,
        "introspection_endpoint": format!("{issuer}/introspect"),
    }))
}

impl Endpoint {
    async fn start() -> Self {
        let state = EndpointState::default();
        let app = Router::new()
            .route("/introspect", post(introspect))
            .route("/.well-known/oauth-authorization-server", get(metadata))
            .with_state(state.clone());
        let base = serve(app).await;
        *state.issuer.lock().unwrap() = base.clone();
        Endpoint { base, state }
    }

    fn url(&self) -> String {
        format!("{}/introspect", self.base)
    }

    fn answer(&self, token: &str, answer: Answer) {
        let mut answers = self.state.answers.lock().unwrap();
        answers.insert(token.to_owned(), answer);
    }

    /// An active answer for `token` from this issuer for our audience, with `extra` merged in.
    fn active(&self, token: &str, extra: Value) {
        let mut answer = json!({
            "active": true,
            "iss": self.base,
            "aud": AUD,
            "sub": "alice",
            "client_id": "client-1",
            "scope": "read write",
            "exp": now() + 300,
            "iat": now(),
            "token_type": "Bearer",
        });
        if let (Value::Object(a), Value::Object(e)) = (&mut answer, extra) {
            for (k, v) in e {
                if v.is_null() {
                    a.remove(&k);
                } else {
                    a.insert(k, v);
                }
            }
        }
        self.answer(token, Answer::Json(answer));
    }

    fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    fn last(&self) -> Seen {
        self.state.seen.lock().unwrap().last().cloned().unwrap()
    }

    /// A guard trusting this issuer for opaque tokens, introspection configured by `configure`.
    fn guard(&self, configure: impl FnOnce(Introspection) -> Introspection) -> OAuthGuardBuilder {
        let auth = IntrospectionAuth::client_secret_basic("api", "s3cret");
        self.guard_with(auth, configure)
    }

    /// The same, authenticating with `auth`.
    fn guard_with(
        &self,
        auth: IntrospectionAuth,
        configure: impl FnOnce(Introspection) -> Introspection,
    ) -> OAuthGuardBuilder {
        let introspection = configure(Introspection::new(auth).endpoint(self.url()));
        OAuthGuard::builder().trust(
            Issuer::new(&self.base)
                .audience(AUD)
                .introspection(introspection),
        )
    }

    /// A guard trusting `issuer`, its JWTs verified with its keys, introspection here
    /// configured by `configure`.
    async fn guard_for_jwts(
        &self,
        issuer: &TestIssuer,
        configure: impl FnOnce(Introspection) -> Introspection,
    ) -> OAuthGuard {
        let auth = IntrospectionAuth::client_secret_basic("api", "s");
        let introspection = configure(Introspection::new(auth).endpoint(self.url()));
        let trusted = Issuer::new(&issuer.issuer)
            .audience(AUD)
            .jwks_url(issuer.jwks_url())
            .introspection(introspection);
        OAuthGuard::builder().trust(trusted).build().await.unwrap()
    }
}

async fn whoami(token: AccessToken) -> axum::Json<Value> {
    axum::Json(json!({
        "sub": token.subject(),
        "client_id": token.client_id(),
        "scope": token.scopes().to_scope_string(),
        "binding": token.binding().kind(),
        "token_type": token.claim("token_type"),
    }))
}

/// Serves `/api/whoami` behind `guard`; returns the route's URL.
async fn serve_guard(guard: &OAuthGuard) -> String {
    let app = Router::new()
        .route("/api/whoami", get(whoami))
        .layer(guard.layer());
    format!("{}/api/whoami", serve(app).await)
}

#[tokio::test]
async fn an_active_opaque_token_is_admitted_with_the_claims_of_the_answer() {
    let endpoint = Endpoint::start().await;
    let guard = endpoint.guard(|i| i).build().await.unwrap();
    let url = serve_guard(&guard).await;
    endpoint.active("opaque-1", json!({}));

    let reply = get_with_token(&url, "opaque-1").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"sub": "alice", "client_id": "client-1", "scope": "read write",
               "binding": "bearer", "token_type": "Bearer"})
    );
    // RFC 7662 §2.1: the token with its type hint, the client authenticated (RFC 6749
    // §2.3.1: Basic with the form-encoded id and secret).
    let seen = endpoint.last();
    assert_eq!(seen.form["token"], "opaque-1");
    assert_eq!(seen.form["token_type_hint"], "access_token");
    let basic = format!("Basic {}", STANDARD.encode("api:s3cret"));
    assert_eq!(seen.authorization.as_deref(), Some(basic.as_str()));
    // The answer is reused: the next request does not ask again.
    assert_eq!(get_with_token(&url, "opaque-1").await.status, 200);
    assert_eq!(endpoint.calls(), 1);
}

#[tokio::test]
async fn inactive_and_unknown_tokens_are_refused_and_briefly_remembered() {
    let endpoint = Endpoint::start().await;
    let guard = endpoint.guard(|i| i).build().await.unwrap();
    let url = serve_guard(&guard).await;
    endpoint.answer("revoked", Answer::Json(json!({"active": false})));
    for _ in 0..3 {
        get_with_token(&url, "revoked")
            .await
            .assert_error(401, "Bearer", "invalid_token");
    }
    assert_eq!(endpoint.calls(), 1, "an inactive answer is reused");
    // Without a remembered answer, each request asks.
    let guard = endpoint
        .guard(|i| i.inactive_cache_ttl(Duration::ZERO))
        .build()
        .await
        .unwrap();
    let url = serve_guard(&guard).await;
    for _ in 0..2 {
        get_with_token(&url, "never-issued")
            .await
            .assert_error(401, "Bearer", "invalid_token");
    }
    assert_eq!(endpoint.calls(), 3);
}

#[tokio::test]
async fn an_endpoint_that_cannot_answer_gets_503_never_admission() {
    let endpoint = Endpoint::start().await;
    let guard = endpoint
        .guard(|i| i.timeout(Duration::from_millis(300)))
        .build()
        .await
        .unwrap();
    let url = serve_guard(&guard).await;
    let cases = [
        ("status-500", Answer::Status(500)),
        ("status-401", Answer::Status(401)),
        ("not-json", Answer::Body("active=true")),
        ("active-string", Answer::Json(json!({"active": "true"}))),
        ("active-one", Answer::Json(json!({"active": 1}))),
        ("no-active", Answer::Json(json!({"sub": "alice"}))),
        ("array", Answer::Body("[{\"active\":true}]")),
        ("trailing", Answer::Body("{\"active\":true} {}")),
        (
            "lone-surrogate",
            Answer::Body("{\"active\":true,\"sub\":\"\\ud800\"}"),
        ),
        (
            "slow",
            Answer::Slow(Duration::from_secs(5), json!({"active": true})),
        ),
    ];
    for (token, answer) in cases {
        endpoint.answer(token, answer);
        let reply = get_with_token(&url, token).await;
        reply.assert_error(503, "Bearer", "invalid_token");
        assert_eq!(reply.headers["retry-after"], "5", "{token}");
    }
    // Unreachable: nothing listens there any more.
    let (listener, gone) = bind().await;
    drop(listener);
    let guard = OAuthGuard::builder()
        .trust(
            Issuer::new(&endpoint.base).audience(AUD).introspection(
                Introspection::new(IntrospectionAuth::client_secret_basic("api", "s"))
                    .endpoint(format!("{gone}/introspect")),
            ),
        )
        .build()
        .await
        .unwrap();
    let url = serve_guard(&guard).await;
    get_with_token(&url, "anything")
        .await
        .assert_error(503, "Bearer", "invalid_token");
}

#[tokio::test]
async fn the_answer_is_checked_like_a_jwt() {
    let endpoint = Endpoint::start().await;
    let guard = endpoint.guard(|i| i).build().await.unwrap();
    let url = serve_guard(&guard).await;
    let refused = [
        ("other-issuer", json!({"iss": "https://other.example"})),
        ("issuer-number", json!({"iss": 7})),
        ("other-audience", json!({"aud": "https://other.example"})),
        ("no-audience", json!({"aud": null})),
        ("expired", json!({"exp": now() - 3600})),
        ("exp-string", json!({"exp": "never"})),
        ("not-yet", json!({"nbf": now() + 3600})),
        ("issued-later", json!({"iat": now() + 3600})),
        ("sub-number", json!({"sub": 7})),
        ("cnf-unknown", json!({"cnf": {"jwk": {"kty": "EC"}}})),
        ("cnf-empty-jkt", json!({"cnf": {"jkt": ""}})),
    ];
    for (token, extra) in refused {
        endpoint.active(token, extra);
        get_with_token(&url, token)
            .await
            .assert_error(401, "Bearer", "invalid_token");
    }
    // `iss` is optional (RFC 7662 §2.2): absent, it is the issuer that was asked; `exp`
    // too, and then the answer is reused for the configured bound only.
    endpoint.active("no-iss-no-exp", json!({"iss": null, "exp": null}));
    let reply = get_with_token(&url, "no-iss-no-exp").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn cnf_in_the_answer_binds_the_token_to_a_dpop_key() {
    let endpoint = Endpoint::start().await;
    let (listener, base) = bind().await;
    let public = PublicUri::fixed(BaseUrl::parse(&base).unwrap());
    let guard = endpoint
        .guard(|i| i)
        .dpop(Dpop::allowed(public))
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route("/api/whoami", get(whoami))
        .layer(guard.layer());
    serve_on(listener, app);
    let url = format!("{base}/api/whoami");
    let key = DpopKey::generate();
    endpoint.active(
        "bound-opaque",
        json!({"cnf": {"jkt": key.jkt}, "token_type": "DPoP"}),
    );

    // As a bearer token it is refused (RFC 9449 §7.2), with the DPoP challenge.
    get_with_token(&url, "bound-opaque")
        .await
        .assert_error(401, "DPoP", "invalid_token");
    // With a proof of the key it names, and `ath` of the opaque token, it is admitted.
    let proof = key.proof("GET", &url, Some("bound-opaque"), None);
    let reply = send(
        "GET",
        &url,
        &[("authorization", "DPoP bound-opaque"), ("dpop", &proof)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["binding"], "dpop");
    // Another key's proof is not.
    let other = DpopKey::generate();
    let proof = other.proof("GET", &url, Some("bound-opaque"), None);
    let reply = send(
        "GET",
        &url,
        &[("authorization", "DPoP bound-opaque"), ("dpop", &proof)],
    )
    .await;
    reply.assert_error(401, "DPoP", "invalid_token");
}

#[tokio::test]
async fn cnf_x5t_in_the_answer_requires_the_certificate() {
    let endpoint = Endpoint::start().await;
    let guard = endpoint.guard(|i| i).build().await.unwrap();
    let url = serve_guard(&guard).await;
    endpoint.active(
        "cert-bound",
        json!({"cnf": {"x5t#S256": "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2"}}),
    );
    // No client certificate on this plain-HTTP connection: refused (RFC 8705 §3).
    get_with_token(&url, "cert-bound")
        .await
        .assert_error(401, "Bearer", "invalid_token");
}

#[tokio::test]
async fn concurrent_requests_with_one_token_share_one_introspection() {
    let endpoint = Endpoint::start().await;
    let guard = endpoint.guard(|i| i).build().await.unwrap();
    let url = serve_guard(&guard).await;
    let mut answer = json!({"active": true, "iss": endpoint.base, "aud": AUD, "exp": now() + 300});
    answer["sub"] = json!("alice");
    endpoint.answer("shared", Answer::Slow(Duration::from_millis(300), answer));
    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let url = url.clone();
        requests.spawn(async move { get_with_token(&url, "shared").await.status });
    }
    let statuses = requests.join_all().await;
    assert_eq!(statuses, vec![StatusCode::OK; 16]);
    assert_eq!(endpoint.calls(), 1);
}

#[tokio::test]
async fn an_answer_is_reused_no_longer_than_its_bound_or_the_tokens_exp() {
    let endpoint = Endpoint::start().await;
    // A bound of zero: every request asks, so a revocation shows at once.
    let guard = endpoint
        .guard(|i| i.max_cache_ttl(Duration::ZERO))
        .build()
        .await
        .unwrap();
    let url = serve_guard(&guard).await;
    endpoint.active("revocable", json!({}));
    assert_eq!(get_with_token(&url, "revocable").await.status, 200);
    endpoint.answer("revocable", Answer::Json(json!({"active": false})));
    get_with_token(&url, "revocable")
        .await
        .assert_error(401, "Bearer", "invalid_token");
    assert_eq!(endpoint.calls(), 2);
    // The guard's clock past the answer's `exp`: the kept answer is not served.
    let clock = TestClock::at(now());
    let guard = endpoint
        .guard(|i| i)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let url = serve_guard(&guard).await;
    endpoint.active("short", json!({"exp": now() + 30}));
    assert_eq!(get_with_token(&url, "short").await.status, 200);
    assert_eq!(get_with_token(&url, "short").await.status, 200);
    let asked = endpoint.calls();
    clock.set(clock.now() + 3600);
    get_with_token(&url, "short")
        .await
        .assert_error(401, "Bearer", "invalid_token");
    assert_eq!(
        endpoint.calls(),
        asked + 1,
        "asked again once the kept answer expired"
    );
}

#[tokio::test]
async fn a_revocation_sensitive_issuer_is_asked_about_its_jwts_too() {
    let issuer = TestIssuer::start().await;
    let endpoint = Endpoint::start().await;
    let guard = endpoint.guard_for_jwts(&issuer, |i| i.jwts_too()).await;
    let url = serve_guard(&guard).await;
    let live = issuer.token(AUD, json!({}));
    endpoint.answer(&live, Answer::Json(json!({"active": true})));
    let reply = get_with_token(&url, &live).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["sub"], "alice", "the JWT's own claims");
    // Revoked at the issuer: a valid signature does not help.
    let revoked = issuer.token(AUD, json!({}));
    get_with_token(&url, &revoked)
        .await
        .assert_error(401, "Bearer", "invalid_token");
    // An answer that names another issuer is refused too.
    let confused = issuer.token(AUD, json!({}));
    endpoint.answer(
        &confused,
        Answer::Json(json!({"active": true, "iss": "https://other.example"})),
    );
    get_with_token(&url, &confused)
        .await
        .assert_error(401, "Bearer", "invalid_token");
    // A forged JWT never reaches the endpoint.
    let asked = endpoint.calls();
    let forged = SigningKey::generate("k1").sign(at_header("k1"), &issuer.claims(AUD, json!({})));
    get_with_token(&url, &forged)
        .await
        .assert_error(401, "Bearer", "invalid_token");
    assert_eq!(endpoint.calls(), asked);
}

#[tokio::test]
async fn opaque_tokens_without_an_introspecting_issuer_are_malformed() {
    let issuer = TestIssuer::start().await;
    let guard = issuer.guard(AUD).build().await.unwrap();
    let url = serve_guard(&guard).await;
    get_with_token(&url, "opaque")
        .await
        .assert_error(401, "Bearer", "invalid_token");
}

#[tokio::test]
async fn the_endpoint_is_discovered_from_the_issuers_metadata() {
    let endpoint = Endpoint::start().await;
    let guard = OAuthGuard::builder()
        .trust(
            Issuer::new(&endpoint.base)
                .audience(AUD)
                .introspection(Introspection::new(IntrospectionAuth::client_secret_basic(
                    "api", "s",
                ))),
        )
        .build()
        .await
        .unwrap();
    let url = serve_guard(&guard).await;
    endpoint.active("discovered", json!({}));
    assert_eq!(get_with_token(&url, "discovered").await.status, 200);
    assert_eq!(endpoint.calls(), 1);
}

#[tokio::test]
async fn private_key_jwt_and_tls_client_auth_identify_the_guard() {
    let endpoint = Endpoint::start().await;
    let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pkcs8.as_ref())
    );
    let auth = IntrospectionAuth::private_key_jwt(
        "api",
        tower_oauth_guard::Algorithm::ES256,
        pem.as_bytes(),
        Some("k-api".into()),
    )
    .unwrap();
    let guard = endpoint.guard_with(auth, |i| i).build().await.unwrap();
    let url = serve_guard(&guard).await;
    endpoint.active("pkjwt", json!({}));
    assert_eq!(get_with_token(&url, "pkjwt").await.status, 200);
    // RFC 7523 §2.2: the assertion, signed by the guard's key, names it and the issuer.
    let seen = endpoint.last();
    assert_eq!(seen.authorization, None);
    assert_eq!(
        seen.form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    let assertion = &seen.form["client_assertion"];
    let parts: Vec<&str> = assertion.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(
        (header["alg"].as_str(), header["kid"].as_str()),
        (Some("ES256"), Some("k-api"))
    );
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["iss"], "api");
    assert_eq!(claims["sub"], "api");
    assert_eq!(claims["aud"], endpoint.base.as_str());
    let exp = claims["exp"].as_i64().unwrap();
    assert!(exp > now() && exp <= now() + 60, "{claims}");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let key_pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
    )
    .unwrap();
    use aws_lc_rs::signature::KeyPair as _;
    let public = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        key_pair.public_key().as_ref(),
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    public
        .verify(
            signed.as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
        )
        .expect("the assertion is signed by the guard's key");
    // A key that cannot sign is refused when configured, not on the first request.
    assert!(
        IntrospectionAuth::private_key_jwt(
            "api",
            tower_oauth_guard::Algorithm::ES256,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            None,
        )
        .is_err()
    );

    // tls_client_auth (RFC 8705 §2): the client id in the form, no secret anywhere.
    let auth = IntrospectionAuth::tls_client_auth("api");
    let guard = endpoint.guard_with(auth, |i| i).build().await.unwrap();
    let url = serve_guard(&guard).await;
    endpoint.active("mtls-auth", json!({}));
    assert_eq!(get_with_token(&url, "mtls-auth").await.status, 200);
    let seen = endpoint.last();
    assert_eq!(seen.authorization, None);
    assert_eq!(seen.form["client_id"], "api");
    assert!(!seen.form.contains_key("client_assertion"));
}

#[tokio::test]
async fn client_secret_basic_form_encodes_the_id_and_secret() {
    let endpoint = Endpoint::start().await;
    let auth = IntrospectionAuth::client_secret_basic("a:b c", "p@ss/w:rd+");
    let guard = endpoint.guard_with(auth, |i| i).build().await.unwrap();
    let url = serve_guard(&guard).await;
    endpoint.active("basic", json!({}));
    assert_eq!(get_with_token(&url, "basic").await.status, 200);
    let basic = format!("Basic {}", STANDARD.encode("a%3Ab+c:p%40ss%2Fw%3Ard%2B"));
    assert_eq!(
        endpoint.last().authorization.as_deref(),
        Some(basic.as_str())
    );
}

#[tokio::test]
async fn only_one_issuer_may_introspect() {
    let auth = || IntrospectionAuth::client_secret_basic("api", "s");
    let built = OAuthGuard::builder()
        .trust(
            Issuer::new("http://127.0.0.1:9/a")
                .audience(AUD)
                .introspection(Introspection::new(auth()).endpoint("http://127.0.0.1:9/i")),
        )
        .trust(
            Issuer::new("http://127.0.0.1:9/b")
                .audience(AUD)
                .introspection(Introspection::new(auth()).endpoint("http://127.0.0.1:9/i")),
        )
        .build()
        .await;
    assert!(matches!(
        built,
        Err(BuildError::SeveralIntrospectingIssuers)
    ));
    // Endpoints travel over TLS, but on loopback.
    let built = OAuthGuard::builder()
        .trust(
            Issuer::new("https://issuer.example")
                .audience(AUD)
                .introspection(Introspection::new(auth()).endpoint("http://issuer.example/i")),
        )
        .build()
        .await;
    assert!(matches!(
        built,
        Err(BuildError::InvalidIntrospectionEndpoint(..))
    ));
}

#[cfg(feature = "metrics")]
#[tokio::test]
async fn the_example_server_introspects_the_tokens_that_are_not_jwts() {
    let issuer = TestIssuer::start().await;
    let endpoint = Endpoint::start().await;
    let url = endpoint.url();
    let flags = [
        "--introspection-url",
        url.as_str(),
        "--client-id",
        "api",
        "--client-secret",
        "s3cret",
    ];
    let server = ExampleServer::start_with(&issuer, &flags).await;
    let whoami = format!("{}/api/whoami", server.base);
    // The answer names no `iss`: it is the issuer the example was given (RFC 7662 §2.2).
    endpoint.active("opaque", json!({"iss": null}));
    let reply = get_with_token(&whoami, "opaque").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["sub"], "alice");
    let basic = format!("Basic {}", STANDARD.encode("api:s3cret"));
    assert_eq!(
        endpoint.last().authorization.as_deref(),
        Some(basic.as_str())
    );
    // JWTs are still verified with the issuer's keys, and not shown to the endpoint.
    let jwt = issuer.token(AUD, json!({}));
    assert_eq!(get_with_token(&whoami, &jwt).await.status, 200);
    assert_eq!(endpoint.calls(), 1);
    get_with_token(&whoami, "unknown-opaque")
        .await
        .assert_error(401, "Bearer", "invalid_token");
}

/// A signed introspection answer (RFC 9701 §5) by `key`, with `typ`, `iss`, `aud` and the
/// answer itself.
fn signed_answer(key: &SigningKey, typ: &str, iss: &str, aud: &str, answer: Value) -> String {
    let mut header = at_header(&key.kid);
    header.typ = Some(typ.into());
    let claims = json!({"iss": iss, "aud": aud, "iat": now(), "token_introspection": answer});
    key.sign(header, &claims)
}

#[tokio::test]
async fn signed_answers_are_verified_with_the_issuers_keys() {
    let issuer = TestIssuer::start().await;
    let endpoint = Endpoint::start().await;
    let guard = endpoint
        .guard_for_jwts(&issuer, Introspection::signed_answers)
        .await;
    let url = serve_guard(&guard).await;
    let iss = issuer.issuer.as_str();
    let active = json!({"active": true, "aud": AUD, "sub": "carol", "exp": now() + 300});
    let key = issuer.key(0);
    let typ = "token-introspection+jwt";
    endpoint.answer(
        "signed",
        Answer::Signed(signed_answer(&key, typ, iss, "api", active.clone())),
    );
    let reply = get_with_token(&url, "signed").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["sub"], "carol");
    assert_eq!(
        endpoint.last().accept.as_deref(),
        Some("application/token-introspection+jwt")
    );
    // Inactive, signed: 401.
    let inactive = json!({"active": false});
    endpoint.answer(
        "signed-inactive",
        Answer::Signed(signed_answer(&key, typ, iss, "api", inactive)),
    );
    get_with_token(&url, "signed-inactive")
        .await
        .assert_error(401, "Bearer", "invalid_token");
    // Anything but a signed answer that verifies, from this issuer, for this client: 503.
    let stranger = SigningKey::generate("k1");
    let refused = [
        ("unsigned", Answer::Json(active.clone())),
        (
            "other-key",
            Answer::Signed(signed_answer(&stranger, typ, iss, "api", active.clone())),
        ),
        (
            "other-typ",
            Answer::Signed(signed_answer(&key, "at+jwt", iss, "api", active.clone())),
        ),
        (
            "other-issuer",
            Answer::Signed(signed_answer(
                &key,
                typ,
                "https://other.example",
                "api",
                active.clone(),
            )),
        ),
        (
            "other-client",
            Answer::Signed(signed_answer(
                &key,
                typ,
                iss,
                "someone-else",
                active.clone(),
            )),
        ),
        ("not-a-jwt", Answer::Signed("eyJ.not.signed".into())),
    ];
    for (token, answer) in refused {
        endpoint.answer(token, answer);
        let reply = get_with_token(&url, token).await;
        assert_eq!(reply.status, 503, "{token}: {}", reply.body);
    }
    // Signed answers need the issuer's keys.
    let built = OAuthGuard::builder()
        .trust(
            Issuer::new(&issuer.issuer).audience(AUD).introspection(
                Introspection::new(IntrospectionAuth::client_secret_basic("api", "s"))
                    .endpoint(endpoint.url())
                    .signed_answers(),
            ),
        )
        .build()
        .await;
    assert!(matches!(built, Err(BuildError::MissingKeys(_))));
}
