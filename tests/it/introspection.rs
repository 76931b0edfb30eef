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
    /// Requests being answered now, and the most at once.
    answering: Arc<AtomicUsize>,
    most_at_once: Arc<AtomicUsize>,
}

/// Counts one request as being answered until dropped (answered, or its client went away).
struct Answering(Arc<AtomicUsize>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
    let now_answering = state.answering.fetch_add(1, Ordering::SeqCst) + 1;
    state
        .most_at_once
        .fetch_max(now_answering, Ordering::SeqCst);
    let _answering = Answering(Arc::clone(&state.answering));
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

/// Builds the guard and serves `/api/whoami` behind it; returns the route's URL.
async fn serve_built(guard: OAuthGuardBuilder) -> String {
    serve_guard(&guard.build().await.unwrap()).await
}

#[tokio::test]
async fn an_active_opaque_token_is_admitted_with_the_claims_of_the_answer() {
    let endpoint = Endpoint::start().await;
    let url = serve_built(endpoint.guard(|i| i)).await;
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
    let url = serve_built(endpoint.guard(|i| i.inactive_cache_ttl(Duration::ZERO))).await;
    for _ in 0..2 {
        get_with_token(&url, "never-issued")
            .await
            .assert_error(401, "Bearer", "invalid_token");
    }
    assert_eq!(endpoint.calls(), 3);
}

#[tokio::test]
async fn an_endpoint_that_cannot_answer_gets_503_never_admission() {
    let logs = logs();
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
        reply.assert_undecided(503, "5");
    }
    // A refusal of the guard's own client authentication is logged as what it is.
    assert!(
        logs.text()
            .contains("401 Unauthorized: the endpoint refused this guard's client authentication"),
        "{}",
        logs.text()
    );
    // Unreachable: nothing listens there any more.
    let (listener, gone) = bind().await;
    drop(listener);
    let url = serve_built(
        OAuthGuard::builder().trust(
            Issuer::new(&endpoint.base).audience(AUD).introspection(
                Introspection::new(IntrospectionAuth::client_secret_basic("api", "s"))
                    .endpoint(format!("{gone}/introspect")),
            ),
        ),
    )
    .await;
    get_with_token(&url, "anything")
        .await
        .assert_undecided(503, "5");
}

#[tokio::test]
async fn the_answer_is_checked_like_a_jwt() {
    let endpoint = Endpoint::start().await;
    let url = serve_built(endpoint.guard(|i| i)).await;
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
    let url = serve_built(endpoint.guard(|i| i)).await;
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
    let url = serve_built(endpoint.guard(|i| i)).await;
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
    let url = serve_built(endpoint.guard(|i| i).clock(clock.clone())).await;
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
    // An answer binding the token where the JWT does not (or to another key) is refused:
    // a bound token is never served as a bearer one.
    let unbound = issuer.token(AUD, json!({}));
    endpoint.answer(
        &unbound,
        Answer::Json(
            json!({"active": true, "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}}),
        ),
    );
    get_with_token(&url, &unbound)
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
    let url = serve_built(issuer.guard(AUD)).await;
    get_with_token(&url, "opaque")
        .await
        .assert_error(401, "Bearer", "invalid_token");
}

#[tokio::test]
async fn the_endpoint_is_discovered_from_the_issuers_metadata() {
    let endpoint = Endpoint::start().await;
    let url = serve_built(
        OAuthGuard::builder().trust(Issuer::new(&endpoint.base).audience(AUD).introspection(
            Introspection::new(IntrospectionAuth::client_secret_basic("api", "s")),
        )),
    )
    .await;
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
    let url = serve_built(endpoint.guard_with(auth, |i| i)).await;
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
    let url = serve_built(endpoint.guard_with(auth, |i| i)).await;
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

// ---- Attacks on introspection: answers, transport, caching, classification, secrets ----

/// `body` for ever, as the endpoint's answer.
fn leak(body: String) -> &'static str {
    Box::leak(body.into_boxed_str())
}

#[tokio::test]
async fn a_repeated_or_escaped_active_member_is_read_as_the_claims_map_reads_it() {
    let endpoint = Endpoint::start().await;
    let url = serve_built(endpoint.guard(|i| i)).await;
    let claims = format!(
        r#""iss":"{}","aud":"{AUD}","sub":"mallory","exp":{}"#,
        endpoint.base,
        now() + 300
    );
    // The last `active` counts, however its name is spelled: false here.
    let inactive = [
        (
            "dup-false-last",
            format!(r#"{{"active":true,{claims},"active":false}}"#),
        ),
        (
            "escaped-false-last",
            format!(r#"{{"active":true,{claims},"\u0061ctive":false}}"#),
        ),
    ];
    for (token, body) in inactive {
        endpoint.answer(token, Answer::Body(leak(body)));
        get_with_token(&url, token)
            .await
            .assert_error(401, "Bearer", "invalid_token");
    }
    // Not a boolean, however it is written: the issuer did not answer (503), never admitted.
    let unusable = [
        ("active-null", format!(r#"{{"active":null,{claims}}}"#)),
        (
            "active-bool-then-null",
            format!(r#"{{"active":true,{claims},"active":null}}"#),
        ),
        (
            "active-object",
            format!(r#"{{"active":{{"value":true}},{claims}}}"#),
        ),
        ("active-array", format!(r#"{{"active":[true],{claims}}}"#)),
        ("active-capital", format!(r#"{{"Active":true,{claims}}}"#)),
    ];
    for (token, body) in unusable {
        endpoint.answer(token, Answer::Body(leak(body)));
        let reply = get_with_token(&url, token).await;
        assert_eq!(reply.status, 503, "{token}: {}", reply.body);
    }
}

#[tokio::test]
async fn aud_of_any_other_shape_in_the_answer_is_refused() {
    let endpoint = Endpoint::start().await;
    let url = serve_built(endpoint.guard(|i| i)).await;
    let refused = [
        ("aud-nested", json!({"aud": [[AUD]]})),
        ("aud-object", json!({"aud": {AUD: AUD}})),
        ("aud-slash", json!({"aud": format!("{AUD}/")})),
        ("aud-case", json!({"aud": AUD.to_uppercase()})),
        ("aud-empty", json!({"aud": []})),
        ("aud-space", json!({"aud": format!("{AUD} other")})),
    ];
    for (token, extra) in refused {
        endpoint.active(token, extra);
        get_with_token(&url, token)
            .await
            .assert_error(401, "Bearer", "invalid_token");
    }
    endpoint.active("aud-array", json!({"aud": ["https://other.example", AUD]}));
    assert_eq!(get_with_token(&url, "aud-array").await.status, 200);
}

#[tokio::test]
async fn a_redirecting_endpoint_is_not_followed() {
    let endpoint = Endpoint::start().await;
    endpoint.active("redirected", json!({}));
    let target = endpoint.url();
    let redirector = Router::new().route(
        "/introspect",
        post(move || {
            let target = target.clone();
            async move { (StatusCode::TEMPORARY_REDIRECT, [("location", target)]) }
        }),
    );
    let base = serve(redirector).await;
    let url = serve_built(
        OAuthGuard::builder().trust(
            Issuer::new(&endpoint.base).audience(AUD).introspection(
                Introspection::new(IntrospectionAuth::client_secret_basic("api", "s"))
                    .endpoint(format!("{base}/introspect")),
            ),
        ),
    )
    .await;
    let reply = get_with_token(&url, "redirected").await;
    reply.assert_undecided(503, "5");
    assert_eq!(endpoint.calls(), 0, "the redirect was followed");
}

#[tokio::test]
async fn an_answer_past_the_size_bound_is_503_and_one_within_it_is_read() {
    let endpoint = Endpoint::start().await;
    let url = serve_built(endpoint.guard(|i| i)).await;
    endpoint.active("padded-70k", json!({"pad": "x".repeat(70 * 1024)}));
    let reply = get_with_token(&url, "padded-70k").await;
    reply.assert_undecided(503, "5");
    endpoint.active("padded-60k", json!({"pad": "x".repeat(60 * 1024)}));
    assert_eq!(get_with_token(&url, "padded-60k").await.status, 200);
}

/// An endpoint that answers `200` at once, then drips its body one byte at a time.
async fn dripping_endpoint() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (listener, base) = bind().await;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 16 * 1024];
                let _ = stream.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            content-length: 60000\r\n\r\n{\"active\":true";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                while stream.write_all(b" ").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
        }
    });
    format!("{base}/introspect")
}

#[tokio::test]
async fn a_body_dripped_slower_than_the_timeout_is_cut_off_with_503() {
    let endpoint = dripping_endpoint().await;
    let url = serve_built(
        OAuthGuard::builder().trust(
            Issuer::new("https://issuer.example")
                .audience(AUD)
                .introspection(
                    Introspection::new(IntrospectionAuth::client_secret_basic("api", "s"))
                        .endpoint(endpoint)
                        .timeout(Duration::from_millis(500)),
                ),
        ),
    )
    .await;
    let started = std::time::Instant::now();
    get_with_token(&url, "dripped")
        .await
        .assert_undecided(503, "5");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout covers the body: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn signed_answers_refuse_none_hmac_duplicates_and_serve_arrays_of_audiences() {
    let issuer = TestIssuer::start().await;
    let endpoint = Endpoint::start().await;
    let guard = endpoint
        .guard_for_jwts(&issuer, |i| i.signed_answers())
        .await;
    let url = serve_guard(&guard).await;
    let iss = issuer.issuer.as_str();
    let key = issuer.key(0);
    let kid = key.kid.clone();
    let typ = "token-introspection+jwt";
    let active = format!(
        r#"{{"active":true,"aud":"{AUD}","sub":"carol","exp":{}}}"#,
        now() + 300
    );
    let inactive = r#"{"active":false}"#;
    let header = format!(r#"{{"alg":"ES256","typ":"{typ}","kid":"{kid}"}}"#);
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s.as_bytes());
    let outer = |answer: &str| {
        format!(
            r#"{{"iss":"{iss}","aud":"api","iat":{},"token_introspection":{answer}}}"#,
            now()
        )
    };

    // alg none, the issuer's header otherwise.
    let none = format!(
        "{}.{}.",
        b64(&format!(r#"{{"alg":"none","typ":"{typ}"}}"#)),
        b64(&outer(&active))
    );
    // HS256 keyed with the issuer's public JWK (the classic key confusion).
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = Some(typ.into());
    hs.kid = Some(kid.clone());
    let public_jwk = serde_json::to_string(&key.jwk).unwrap();
    let hmac = jsonwebtoken::encode(
        &hs,
        &serde_json::from_str::<Value>(&outer(&active)).unwrap(),
        &jsonwebtoken::EncodingKey::from_secret(public_jwk.as_bytes()),
    )
    .unwrap();
    // Two `token_introspection` members: inactive first, active last.
    let twice = format!(
        r#"{{"iss":"{iss}","aud":"api","token_introspection":{inactive},"token_introspection":{active}}}"#
    );
    // Two `iss`: another issuer's last.
    let two_iss = format!(
        r#"{{"iss":"{iss}","aud":"api","iss":"https://other.example","token_introspection":{active}}}"#
    );
    // `token_introspection` as a string holding an active answer.
    let as_string = format!(
        r#"{{"iss":"{iss}","aud":"api","token_introspection":{}}}"#,
        serde_json::to_string(&active).unwrap()
    );
    // A JWS JSON serialization instead of the compact one.
    let json_serialization = serde_json::to_string(&json!({
        "protected": b64(&header), "payload": b64(&outer(&active)), "signature": "AA"
    }))
    .unwrap();
    let unavailable = [
        ("signed-none", none),
        ("signed-hs256", hmac),
        ("signed-twice", key.sign_raw(&header, &twice)),
        ("signed-two-iss", key.sign_raw(&header, &two_iss)),
        ("signed-string", key.sign_raw(&header, &as_string)),
        ("signed-json-serialization", json_serialization),
        (
            "signed-crit",
            key.sign_raw(
                &format!(r#"{{"alg":"ES256","typ":"{typ}","kid":"{kid}","crit":["exp"],"exp":1}}"#),
                &outer(&active),
            ),
        ),
        (
            "signed-typ-null",
            key.sign_raw(
                &format!(r#"{{"alg":"ES256","typ":null,"kid":"{kid}"}}"#),
                &outer(&active),
            ),
        ),
        (
            "signed-typ-jwt",
            key.sign_raw(
                &format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{kid}"}}"#),
                &outer(&active),
            ),
        ),
    ];
    for (token, jwt) in unavailable {
        endpoint.answer(token, Answer::Signed(jwt));
        let reply = get_with_token(&url, token).await;
        assert_eq!(reply.status, 503, "{token}: {}", reply.body);
    }
    // Inside a verified answer, a repeated `active` keeps its last value (false): 401.
    let dup_active = format!(
        r#"{{"active":true,"aud":"{AUD}","exp":{},"active":false}}"#,
        now() + 300
    );
    endpoint.answer(
        "signed-dup-active",
        Answer::Signed(key.sign_raw(&header, &outer(&dup_active))),
    );
    get_with_token(&url, "signed-dup-active")
        .await
        .assert_error(401, "Bearer", "invalid_token");
    // The inner answer naming another issuer: refused like an unsigned one.
    let other_iss = format!(
        r#"{{"active":true,"iss":"https://other.example","aud":"{AUD}","exp":{}}}"#,
        now() + 300
    );
    endpoint.answer(
        "signed-inner-other-iss",
        Answer::Signed(key.sign_raw(&header, &outer(&other_iss))),
    );
    get_with_token(&url, "signed-inner-other-iss")
        .await
        .assert_error(401, "Bearer", "invalid_token");
    // `aud` as an array that names this client, and `application/` spelled out: served.
    let array_aud =
        format!(r#"{{"iss":"{iss}","aud":["someone-else","api"],"token_introspection":{active}}}"#);
    let full_typ = format!(r#"{{"alg":"ES256","typ":"application/{typ}","kid":"{kid}"}}"#);
    endpoint.answer(
        "signed-array-aud",
        Answer::Signed(key.sign_raw(&full_typ, &array_aud)),
    );
    let reply = get_with_token(&url, "signed-array-aud").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["sub"], "carol");
}

#[tokio::test]
async fn a_signed_introspection_answer_is_never_an_access_token() {
    // An RS whose client id is also its audience (common): the issuer's signed answers name
    // it in `aud`; replayed as a bearer token they must still be refused.
    let issuer = TestIssuer::start().await;
    let url = serve_built(issuer.guard("api")).await;
    let key = issuer.key(0);
    let mut header = at_header(&key.kid);
    header.typ = Some("token-introspection+jwt".into());
    let answer = json!({
        "iss": issuer.issuer, "aud": "api", "iat": now(), "exp": now() + 300, "sub": "alice",
        "token_introspection": {"active": true, "aud": "api", "sub": "alice"},
    });
    let replayed = key.sign(header, &answer);
    get_with_token(&url, &replayed)
        .await
        .assert_error(401, "Bearer", "invalid_token");
    // The same claims as an access token are admitted: the type alone refused it.
    let mut header = at_header(&key.kid);
    header.typ = Some("at+jwt".into());
    assert_eq!(
        get_with_token(&url, &key.sign(header, &answer))
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn an_active_answer_is_not_reused_past_max_cache_ttl_on_the_guards_clock() {
    let endpoint = Endpoint::start().await;
    let clock = TestClock::at(now());
    let guard = endpoint
        .guard(|i| i.max_cache_ttl(Duration::from_secs(30)))
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let url = serve_guard(&guard).await;
    endpoint.active("long-lived", json!({"exp": now() + 86_400}));
    assert_eq!(get_with_token(&url, "long-lived").await.status, 200);
    // Revoked at the issuer; an hour later by the guard's clock, far past the 30 s bound.
    endpoint.answer("long-lived", Answer::Json(json!({"active": false})));
    clock.set(clock.now() + 3600);
    let reply = get_with_token(&url, "long-lived").await;
    assert_eq!(
        (reply.status.as_u16(), endpoint.calls()),
        (401, 2),
        "a revoked token was admitted 3600 s (guard clock) after its answer, with max_cache_ttl 30 s"
    );
}

#[tokio::test]
async fn a_revocation_shows_once_the_bound_has_passed_in_real_time() {
    let endpoint = Endpoint::start().await;
    let url = serve_built(endpoint.guard(|i| i.max_cache_ttl(Duration::from_secs(1)))).await;
    endpoint.active("revoked-later", json!({"exp": now() + 86_400}));
    assert_eq!(get_with_token(&url, "revoked-later").await.status, 200);
    endpoint.answer("revoked-later", Answer::Json(json!({"active": false})));
    assert_eq!(
        get_with_token(&url, "revoked-later").await.status,
        200,
        "within the bound"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    get_with_token(&url, "revoked-later")
        .await
        .assert_error(401, "Bearer", "invalid_token");
}

#[tokio::test]
async fn concurrent_requests_with_different_tokens_never_share_an_answer() {
    let endpoint = Endpoint::start().await;
    let url = serve_built(endpoint.guard(|i| i)).await;
    let base = endpoint.base.clone();
    for i in 0..24 {
        let answer = json!({
            "active": i % 2 == 0, "iss": base, "aud": AUD, "sub": format!("user-{i}"),
            "exp": now() + 300,
        });
        endpoint.answer(
            &format!("tok-{i}"),
            Answer::Slow(Duration::from_millis(300), answer),
        );
    }
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..24 {
        let url = url.clone();
        requests.spawn(async move {
            let reply = get_with_token(&url, &format!("tok-{i}")).await;
            (i, reply.status.as_u16(), reply.body)
        });
    }
    for (i, status, body) in requests.join_all().await {
        if i % 2 == 0 {
            assert_eq!(status, 200, "tok-{i}: {body}");
            let sub: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(sub["sub"], format!("user-{i}"), "another token's answer");
        } else {
            assert_eq!(status, 401, "tok-{i}: {body}");
        }
    }
    assert_eq!(endpoint.calls(), 24);
}

/// Many different tokens at once (a flood of made-up opaque ones, say) never have more
/// requests in flight to the endpoint than the guard allows; one that finds every slot busy
/// until its timeout gets 503, never an admission.
#[tokio::test]
async fn requests_in_flight_to_the_endpoint_are_bounded() {
    let endpoint = Endpoint::start().await;
    let guard = endpoint
        .guard(|i| i.max_concurrent_requests(3))
        .build()
        .await
        .unwrap();
    let url = serve_guard(&guard).await;
    let answer = |sub: &str| json!({"active": true, "iss": endpoint.base, "aud": AUD, "sub": sub, "exp": now() + 300});
    for i in 0..12 {
        let token = format!("many-{i}");
        endpoint.answer(
            &token,
            Answer::Slow(Duration::from_millis(200), answer(&token)),
        );
    }
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..12 {
        let url = url.clone();
        requests.spawn(async move { get_with_token(&url, &format!("many-{i}")).await.status });
    }
    let statuses = requests.join_all().await;
    assert_eq!(statuses, vec![StatusCode::OK; 12]);
    assert_eq!(endpoint.calls(), 12);
    assert_eq!(endpoint.state.most_at_once.load(Ordering::SeqCst), 3);

    // One slot and a 2 s timeout: one token's answer takes 1.5 s, so the other waits for the
    // slot until 0.5 s are left, too little for its own 1.5 s answer.
    let url = serve_built(
        endpoint.guard(|i| i.max_concurrent_requests(1).timeout(Duration::from_secs(2))),
    )
    .await;
    for token in ["first", "second"] {
        endpoint.answer(
            token,
            Answer::Slow(Duration::from_millis(1500), answer(token)),
        );
    }
    let (a, b) = tokio::join!(
        get_with_token(&url, "first"),
        get_with_token(&url, "second")
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 503]);
    // The one that waited past half its timeout was never sent.
    let sent: Vec<String> = endpoint
        .state
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|s| s.form.get("token").cloned())
        .filter(|t| t == "first" || t == "second")
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");

    // Clients that go away do not free their slots early: a slot is the endpoint's work,
    // held until it answers. Two slots, two abandoned 1 s introspections, then a quick one.
    let url = serve_built(endpoint.guard(|i| i.max_concurrent_requests(2))).await;
    for token in ["gone-1", "gone-2"] {
        endpoint.answer(token, Answer::Slow(Duration::from_secs(1), answer(token)));
    }
    endpoint.answer("quick", Answer::Json(answer("quick")));
    let started = std::time::Instant::now();
    let (gone_1, gone_2) = tokio::join!(
        tokio::time::timeout(Duration::from_millis(100), get_with_token(&url, "gone-1")),
        tokio::time::timeout(Duration::from_millis(100), get_with_token(&url, "gone-2"))
    );
    assert!(
        gone_1.is_err() && gone_2.is_err(),
        "the clients gave up first"
    );
    let quick = get_with_token(&url, "quick").await;
    assert_eq!(quick.status, 200, "{}", quick.body);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "served before the abandoned introspections ended: {:?}",
        started.elapsed()
    );
}

/// The introspection of a token runs on when the client that started it hangs up: a request
/// arriving meanwhile with the same token waits for that one, never starts a second.
#[tokio::test]
async fn a_client_that_hangs_up_leaves_its_introspection_to_the_next_request() {
    let endpoint = Endpoint::start().await;
    let url = serve_built(endpoint.guard(|i| i)).await;
    let answer = json!({"active": true, "iss": endpoint.base, "aud": AUD, "sub": "alice", "exp": now() + 300});
    endpoint.answer("shared", Answer::Slow(Duration::from_millis(800), answer));
    for _ in 0..3 {
        let gone = tokio::time::timeout(Duration::from_millis(100), get_with_token(&url, "shared"));
        assert!(gone.await.is_err(), "the client gave up first");
    }
    let reply = get_with_token(&url, "shared").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(endpoint.calls(), 1);
}

#[tokio::test]
async fn extreme_cache_and_timeout_settings_do_not_panic() {
    let endpoint = Endpoint::start().await;
    endpoint.active("extreme", json!({}));
    for (name, configure) in [
        (
            "max_cache_ttl",
            (|i: Introspection| i.max_cache_ttl(Duration::MAX)) as fn(_) -> _,
        ),
        ("timeout", |i: Introspection| i.timeout(Duration::MAX)),
        ("inactive_cache_ttl", |i: Introspection| {
            i.inactive_cache_ttl(Duration::from_secs(2000 * 365 * 86_400))
        }),
    ] {
        let builder = endpoint.guard(configure);
        let built = tokio::spawn(async move { builder.build().await }).await;
        let guard = match built {
            Err(e) => panic!("{name}: the build panicked: {e}"),
            Ok(Err(_refused)) => continue, // refusing the setting is fine too
            Ok(Ok(guard)) => guard,
        };
        let url = serve_guard(&guard).await;
        assert_eq!(get_with_token(&url, "extreme").await.status, 200, "{name}");
    }
}

#[tokio::test]
async fn a_revocation_sensitive_issuer_that_cannot_answer_refuses_its_valid_jwts() {
    let issuer = TestIssuer::start().await;
    let endpoint = Endpoint::start().await;
    let guard = endpoint.guard_for_jwts(&issuer, |i| i.jwts_too()).await;
    let url = serve_guard(&guard).await;
    let cases = [
        (Answer::Status(500), 503),
        (Answer::Json(json!({"active": "true"})), 503),
        (Answer::Body("{\"active\":true"), 503),
        (Answer::Json(json!({"active": true, "iss": 7})), 401),
        (Answer::Json(json!({"active": true, "iss": null})), 401),
        (Answer::Body("{\"active\":true,\"active\":false}"), 401),
    ];
    for (answer, status) in cases {
        let token = issuer.token(AUD, json!({}));
        endpoint.answer(&token, answer);
        let reply = get_with_token(&url, &token).await;
        assert_eq!(reply.status, status, "{}", reply.body);
    }
}

#[tokio::test]
async fn tokens_that_are_not_the_introspecting_issuers_never_reach_its_endpoint() {
    // Issuer A: JWTs, its own keys. Issuer B: introspection only. A's tokens, forged tokens
    // and JWS-looking tokens must never be shown to B (RFC 7662 §4: a token leaks to B).
    let a = TestIssuer::start().await;
    let endpoint = Endpoint::start().await;
    let url = serve_built(
        OAuthGuard::builder()
            .trust(Issuer::new(&a.issuer).audience(AUD).jwks_url(a.jwks_url()))
            .trust(
                Issuer::new(&endpoint.base).audience(AUD).introspection(
                    Introspection::new(IntrospectionAuth::client_secret_basic("api", "s"))
                        .endpoint(endpoint.url()),
                ),
            ),
    )
    .await;
    let good = a.token(AUD, json!({}));
    assert_eq!(get_with_token(&url, &good).await.status, 200);
    let key = a.key(0);
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s.as_bytes());
    let claims = |iss: &str| a.claims(AUD, json!({"iss": iss}));
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    let tokens = [
        // Signed by A, claiming to be B's: B has no keys, and is not asked.
        (
            "a-signed-b-iss",
            key.sign(at_header(&key.kid), &claims(&endpoint.base)),
        ),
        // Unknown issuer.
        (
            "unknown-iss",
            key.sign(at_header(&key.kid), &claims("https://unknown.example")),
        ),
        ("tampered-signature", tampered),
        (
            "none-with-signature",
            format!(
                "{}.{}.AAAA",
                b64(r#"{"alg":"none"}"#),
                b64(&claims(&endpoint.base).to_string())
            ),
        ),
    ];
    for (label, token) in tokens {
        endpoint.active(&token, json!({}));
        let reply = get_with_token(&url, &token).await;
        assert_eq!(reply.status, 401, "{label}: {}", reply.body);
    }
    assert_eq!(
        endpoint.calls(),
        0,
        "a JWT was shown to the introspecting issuer"
    );
}

#[tokio::test]
async fn an_unsecured_jwt_is_refused_not_introspected_as_an_opaque_token() {
    // RFC 7519 §6.1: an unsecured JWT is `header.payload.` (empty signature), `alg: none`.
    // RFC 9068 §4 forbids `none`; such a token is a (forged) JWT, never an opaque token, and
    // is neither shown to the introspecting issuer nor admitted on its answer.
    let endpoint = Endpoint::start().await;
    let guard = endpoint.guard(|i| i).build().await.unwrap();
    let url = serve_guard(&guard).await;
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s.as_bytes());
    let claims = json!({
        "iss": endpoint.base, "aud": AUD, "sub": "admin", "exp": now() + 300,
    })
    .to_string();
    let unsecured = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"at+jwt"}"#),
        b64(&claims)
    );
    // An issuer that looks tokens up loosely (or decodes JWTs without checking `alg`) says
    // active: the guard must not have asked.
    endpoint.active(&unsecured, json!({"sub": "admin"}));
    let reply = get_with_token(&url, &unsecured).await;
    assert_eq!(
        (reply.status.as_u16(), endpoint.calls()),
        (401, 0),
        "an alg-none JWT with an empty signature was sent to introspection: {}",
        reply.body
    );
}

#[tokio::test]
async fn secrets_and_tokens_stay_out_of_debug_logs_and_answers() {
    let logs = logs();
    let secret = "s3cret-7f1c2b";
    let token = "tok-9d8e7a6b-opaque";
    let endpoint = Endpoint::start().await;
    let introspection = Introspection::new(IntrospectionAuth::client_secret_basic("api", secret))
        .endpoint(endpoint.url());
    let issuer = Issuer::new(&endpoint.base)
        .audience(AUD)
        .introspection(introspection.clone());
    for debug in [format!("{introspection:?}"), format!("{issuer:?}")] {
        assert!(!debug.contains(secret), "{debug}");
    }
    let basic = STANDARD.encode(format!("api:{secret}"));
    let url = serve_built(OAuthGuard::builder().trust(issuer)).await;
    // Failures of every kind, each logged.
    for (suffix, answer) in [
        ("-500", Answer::Status(500)),
        ("-garbage", Answer::Body("{\"active\":tru")),
        (
            "-reflect",
            Answer::Json(json!({"active": "tok-9d8e7a6b-opaque-reflect"})),
        ),
    ] {
        let token = format!("{token}{suffix}");
        endpoint.answer(&token, answer);
        let reply = get_with_token(&url, &token).await;
        assert_eq!(reply.status, 503);
        let answer = format!("{:?}{}", reply.headers, reply.body);
        assert!(
            !answer.contains(token.as_str()) && !answer.contains(secret),
            "{answer}"
        );
    }
    let text = logs.text();
    assert!(
        text.contains("token introspection failed"),
        "the failures are logged"
    );
    for leaked in [secret, token, basic.as_str()] {
        assert!(!text.contains(leaked), "{leaked} in the logs");
    }
}

#[tokio::test]
async fn step_up_is_judged_on_the_answers_claims_with_the_guards_clock() {
    let endpoint = Endpoint::start().await;
    let clock = TestClock::at(now());
    let guard = endpoint
        .guard(|i| i)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let app = Router::new().route("/api/whoami", get(whoami)).layer(
        guard
            .layer()
            .require_acr(["urn:example:mfa"])
            .max_auth_age(Duration::from_secs(300)),
    );
    let url = format!("{}/api/whoami", serve(app).await);
    let t0 = clock.now();
    endpoint.active(
        "stepped",
        json!({"acr": "urn:example:mfa", "auth_time": t0 - 290, "exp": now() + 3600}),
    );
    assert_eq!(get_with_token(&url, "stepped").await.status, 200);
    // The kept answer ages with the guard's clock: refused without asking again (30 s on,
    // within the 60 s the answer is kept).
    clock.set(t0 + 30);
    get_with_token(&url, "stepped").await.assert_error(
        401,
        "Bearer",
        "insufficient_user_authentication",
    );
    assert_eq!(endpoint.calls(), 1);
    clock.set(t0);
    let refused = [
        (
            "acr-array",
            json!({"acr": ["urn:example:mfa"], "auth_time": t0}),
        ),
        (
            "acr-case",
            json!({"acr": "URN:EXAMPLE:MFA", "auth_time": t0}),
        ),
        (
            "acr-space",
            json!({"acr": " urn:example:mfa", "auth_time": t0}),
        ),
        ("acr-null", json!({"acr": null, "auth_time": t0})),
        (
            "auth-time-string",
            json!({"acr": "urn:example:mfa", "auth_time": t0.to_string()}),
        ),
        (
            "auth-time-future",
            json!({"acr": "urn:example:mfa", "auth_time": t0 + 3600}),
        ),
        (
            "auth-time-negative",
            json!({"acr": "urn:example:mfa", "auth_time": -1}),
        ),
        (
            "auth-time-huge",
            json!({"acr": "urn:example:mfa", "auth_time": u64::MAX}),
        ),
        ("auth-time-absent", json!({"acr": "urn:example:mfa"})),
    ];
    for (token, extra) in refused {
        endpoint.active(token, extra);
        get_with_token(&url, token).await.assert_error(
            401,
            "Bearer",
            "insufficient_user_authentication",
        );
    }
}

#[tokio::test]
async fn the_token_reaches_the_endpoint_exactly_as_presented() {
    let endpoint = Endpoint::start().await;
    let guard = endpoint.guard(|i| i).build().await.unwrap();
    let url = serve_guard(&guard).await;
    // Form injection: were `&` and `=` not encoded, the endpoint would read `token=evil`.
    endpoint.active("evil", json!({"sub": "evil"}));
    for token in [
        "a+b/c==",
        "A.B~_-9",
        "x%41y",
        "t&token=evil",
        "t;token=evil",
        "t token=evil",
    ] {
        endpoint.active(token, json!({"sub": "exact"}));
        let reply = get_with_token(&url, token).await;
        if reply.status == 200 {
            assert_eq!(reply.json()["sub"], "exact", "{token}");
            assert_eq!(endpoint.last().form["token"], token);
        } else {
            assert_eq!(reply.status, 401, "{token}: {}", reply.body);
        }
    }
    // b64token (RFC 6750 §2.1) characters are all passed on.
    assert_eq!(get_with_token(&url, "a+b/c==").await.status, 200);
    assert_eq!(get_with_token(&url, "A.B~_-9").await.status, 200);
    // And the built guard's `Debug` holds no secret either.
    let secret_guard = OAuthGuard::builder()
        .trust(
            Issuer::new(&endpoint.base).audience(AUD).introspection(
                Introspection::new(IntrospectionAuth::client_secret_basic(
                    "api",
                    "s3cret-guard",
                ))
                .endpoint(endpoint.url()),
            ),
        )
        .build()
        .await
        .unwrap();
    assert!(!format!("{secret_guard:?}").contains("s3cret-guard"));
}

/// tls_client_auth (RFC 8705 §2): the guard presents the client certificate of its own HTTP
/// client to an endpoint that requires one, and the endpoint sees that certificate.
#[tokio::test]
async fn tls_client_auth_presents_the_guards_certificate() {
    use tower_oauth_guard::{PeerCertificates, server_config};
    let pki = TestPki::generate();
    let seen = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let app = {
        let seen = seen.clone();
        Router::new().route(
            "/introspect",
            post(move |certs: Option<axum::Extension<PeerCertificates>>| {
                let leaf = certs.and_then(|c| c.0.leaf().map(|l| l.as_ref().to_vec()));
                seen.lock().unwrap().extend(leaf);
                std::future::ready(axum::Json(json!({"active": true, "aud": AUD, "sub": "m"})))
            }),
        )
    };
    let roots = pki.roots();
    let auth = tower_oauth_guard::ClientAuth::Required(roots.clone());
    let config = server_config(vec![pki.server.cert.clone()], pki.server.key(), auth).unwrap();
    let addr = serve_https(app, config).await;
    let endpoint = format!("https://localhost:{}/introspect", addr.port());
    let client_tls = |identity: Option<&Identity>| {
        let builder = rustls::ClientConfig::builder_with_provider(rustls_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone());
        match identity {
            Some(id) => builder
                .with_client_auth_cert(vec![id.cert.clone()], id.key())
                .unwrap(),
            None => builder.with_no_client_auth(),
        }
    };
    let guard_with = |tls: rustls::ClientConfig| {
        let introspection = Introspection::new(IntrospectionAuth::tls_client_auth("api"))
            .endpoint(endpoint.clone());
        OAuthGuard::builder()
            .trust(
                Issuer::new("https://issuer.example")
                    .audience(AUD)
                    .introspection(introspection),
            )
            .http_tls_config(tls)
            .build()
    };
    // With its certificate: admitted, and the endpoint saw exactly that certificate.
    let guard = guard_with(client_tls(Some(&pki.client_a))).await.unwrap();
    let url = serve_guard(&guard).await;
    let reply = get_with_token(&url, "opaque-mtls").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![pki.client_a.cert.as_ref().to_vec()]
    );
    // Without one, the endpoint's handshake refuses it: 503, never admitted.
    let guard = guard_with(client_tls(None)).await.unwrap();
    let url = serve_guard(&guard).await;
    get_with_token(&url, "opaque-mtls")
        .await
        .assert_undecided(503, "5");
    assert_eq!(seen.lock().unwrap().len(), 1);
}
