//! Requests an attacker shapes to get through, through a real axum server on 127.0.0.1: each
//! must be refused (or, where the RFC says so, served), and no credential may leak into
//! `Debug` output or logs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::*;
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tower_oauth_guard::{
    AccessToken, Dpop, KeySet, Mtls, OAuthGuard, OAuthGuardBuilder, PublicUri,
};
use tower_oauth_guard::{
    BaseUrl, MemoryReplayStore, ProofPolicy, ReplayKey, ReplayStore, ReplayWindow,
};

const AUD: &str = "https://api.example";

async fn whoami(token: AccessToken) -> axum::Json<Value> {
    axum::Json(json!({
        "sub": token.subject(),
        "binding": token.binding().kind(),
        "debug": format!("{token:?}"),
    }))
}

fn app(guard: &OAuthGuard) -> Router {
    Router::new()
        .route("/api/whoami", get(whoami))
        .layer(guard.layer())
}

/// Serves `app(guard)` where the guard allows DPoP with the server's own URL as the public
/// origin and settings `dpop`, and `configure` sets the rest.
async fn serve_guard(
    issuer: &TestIssuer,
    dpop: impl FnOnce(Dpop) -> Dpop,
    configure: impl FnOnce(OAuthGuardBuilder) -> OAuthGuardBuilder,
) -> String {
    let (listener, base) = bind().await;
    let own = PublicUri::fixed(BaseUrl::parse(&base).unwrap());
    let builder = issuer.guard(AUD).dpop(dpop(Dpop::allowed(own)));
    let guard = configure(builder).build().await.unwrap();
    serve_on(listener, app(&guard))
}

fn dpop_headers(token: &str, proof: &str) -> [(&'static str, String); 2] {
    [
        ("authorization", format!("DPoP {token}")),
        ("dpop", proof.to_owned()),
    ]
}

async fn send_owned(method: &str, url: &str, headers: &[(&'static str, String)]) -> Reply {
    let refs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    send(method, url, &refs).await
}

// ---------------------------------------------------------------------------------------------
// `cnf` (RFC 7800 §3.1, RFC 9449 §6.1, RFC 8705 §3.1)

#[tokio::test]
async fn a_binding_the_guard_cannot_enforce_is_not_a_bearer_token() {
    let issuer = TestIssuer::start().await;
    let base = serve_guard(&issuer, |d| d, |b| b).await;
    let url = format!("{base}/api/whoami");
    for cnf in [
        json!({"jwk": {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}),
        json!({"kid": "client-key-1"}),
        json!({"jku": "https://client.example/jwks"}),
        json!({"x5t": "abc"}),
        json!({"unknown-method": true}),
        json!("jkt"),
        json!(["jkt"]),
        json!(42),
        json!(null),
        json!({}),
        json!({"jkt": 5}),
        json!({"jkt": ["a"]}),
        json!({"jkt": {"v": "a"}}),
        json!({"x5t#S256": false}),
        json!({"jkt": "abc", "jwk": {"kty": "EC"}}),
    ] {
        let token = issuer.token(AUD, json!({ "cnf": cnf }));
        let reply = get_with_token(&url, &token).await;
        assert_eq!(reply.status, 401, "cnf {cnf} got {}", reply.body);
        reply.assert_error(401, "Bearer", "invalid_token");
        assert!(
            reply.www_authenticate()[0].contains("confirmation method not supported"),
            "{cnf}: {:?}",
            reply.www_authenticate()
        );
    }
    // A token without `cnf` is a bearer token.
    let reply = get_with_token(&url, &issuer.token(AUD, json!({}))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

// ---------------------------------------------------------------------------------------------
// `typ` (RFC 9068 §4, RFC 8725 §3.11)

fn token_typed(issuer: &TestIssuer, typ: Option<&str>) -> String {
    let key = issuer.key(0);
    let mut header = at_header(&key.kid);
    header.typ = typ.map(str::to_owned);
    key.sign(header, &issuer.claims(AUD, json!({})))
}

#[tokio::test]
async fn a_jwt_of_another_kind_is_not_an_access_token() {
    let issuer = TestIssuer::start().await;
    let lenient = serve_guard(&issuer, |d| d, |b| b).await;
    let strict = serve_guard(&issuer, |d| d, |b| b.require_at_jwt_typ()).await;
    let status = |base: String, token: String| async move {
        get_with_token(&format!("{base}/api/whoami"), &token)
            .await
            .status
    };
    for typ in [
        "dpop+jwt",
        "secevent+jwt",
        "logout+jwt",
        "id_token+jwt",
        "application/dpop+jwt",
        "JOSE",
    ] {
        let token = token_typed(&issuer, Some(typ));
        assert_eq!(status(lenient.clone(), token.clone()).await, 401, "{typ}");
        assert_eq!(status(strict.clone(), token).await, 401, "{typ}");
    }
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let token = token_typed(&issuer, Some(typ));
        assert_eq!(status(lenient.clone(), token.clone()).await, 200, "{typ}");
        assert_eq!(status(strict.clone(), token).await, 200, "{typ}");
    }
    for typ in [None, Some("JWT")] {
        let token = token_typed(&issuer, typ);
        assert_eq!(status(lenient.clone(), token.clone()).await, 200, "{typ:?}");
        assert_eq!(status(strict.clone(), token).await, 401, "{typ:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Nested guards

/// The outer guard is lenient (bearer, any of two audiences); the inner one, on `/strict`,
/// is the guard under test.
async fn nested(
    issuer: &TestIssuer,
    other: &TestIssuer,
    inner: impl FnOnce(OAuthGuardBuilder, PublicUri) -> OAuthGuardBuilder,
) -> String {
    let (listener, base) = bind().await;
    let outer = OAuthGuard::builder()
        .trust(
            tower_oauth_guard::Issuer::new(&issuer.issuer)
                .audience(AUD)
                .audience("https://other-api.example")
                .jwks_url(issuer.jwks_url()),
        )
        .trust(
            tower_oauth_guard::Issuer::new(&other.issuer)
                .audience(AUD)
                .jwks_url(other.jwks_url()),
        )
        .build()
        .await
        .unwrap();
    let inner = inner(
        issuer.guard(AUD),
        PublicUri::fixed(BaseUrl::parse(&base).unwrap()),
    )
    .build()
    .await
    .unwrap();
    let app = Router::new()
        .route("/strict", get(whoami).layer(inner.layer()))
        .route(
            "/same",
            get(whoami).layer(outer.layer().require_scope("read")),
        )
        .layer(outer.layer());
    serve_on(listener, app)
}

#[tokio::test]
async fn an_inner_guard_checks_what_it_demands_of_a_token_an_outer_guard_admitted() {
    let issuer = TestIssuer::start().await;
    let other = TestIssuer::start().await;
    let bearer = issuer.token(AUD, json!({}));

    // The same guard nested: its own admission stands, and the route policy applies.
    let base = nested(&issuer, &other, |b, _| b).await;
    let reply = get_with_token(&format!("{base}/same"), &bearer).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let no_scope = issuer.token(AUD, json!({"scope": "write"}));
    let reply = get_with_token(&format!("{base}/same"), &no_scope).await;
    assert_eq!(reply.status, 403);
    // A different but equally lenient inner guard admits the token too.
    let reply = get_with_token(&format!("{base}/strict"), &bearer).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // Inner guard demands DPoP: a bearer token admitted outside is refused inside.
    let base = nested(&issuer, &other, |b, own| b.dpop(Dpop::required(own))).await;
    let reply = get_with_token(&format!("{base}/strict"), &bearer).await;
    reply.assert_error(401, "DPoP", "invalid_token");
    assert!(reply.www_authenticate()[0].contains("DPoP-bound token required"));

    // Inner guard demands a certificate-bound token.
    let base = nested(&issuer, &other, |b, _| b.mtls(Mtls::required())).await;
    let reply = get_with_token(&format!("{base}/strict"), &bearer).await;
    reply.assert_error(401, "Bearer", "invalid_token");

    // Inner guard has another audience: a token for the outer one's other audience is refused.
    let base = nested(&issuer, &other, |b, _| b).await;
    let other_aud = issuer.token("https://other-api.example", json!({}));
    let reply = get_with_token(&format!("{base}/same"), &other_aud).await;
    assert_eq!(reply.status, 200, "the outer guard admits it");
    let reply = get_with_token(&format!("{base}/strict"), &other_aud).await;
    reply.assert_error(401, "Bearer", "invalid_token");
    assert!(reply.www_authenticate()[0].contains("not intended for this resource"));

    // Inner guard trusts only the first issuer.
    let from_other = other.token(AUD, json!({}));
    let reply = get_with_token(&format!("{base}/same"), &from_other).await;
    assert_eq!(reply.status, 200, "the outer guard admits it");
    let reply = get_with_token(&format!("{base}/strict"), &from_other).await;
    reply.assert_error(401, "Bearer", "invalid_token");
    assert!(reply.www_authenticate()[0].contains("untrusted issuer"));
}

/// A handler that reads the body before asking the guard again (a per-tool scope check, say)
/// may ask after the token expired: the inner check refuses it then, leeway and all.
#[tokio::test]
async fn a_token_that_expired_since_the_outer_admission_is_refused_inside() {
    let issuer = TestIssuer::start().await;
    let clock = TestClock::at(now());
    let (listener, base) = bind().await;
    let guard = issuer
        .guard(AUD)
        .clock(clock.clone())
        .leeway(Duration::from_secs(30))
        .build()
        .await
        .unwrap();
    // Between the two layers, the time the body takes to arrive: the clock moves by `?late=`.
    let late = {
        let clock = clock.clone();
        axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let clock = clock.clone();
                async move {
                    let by: i64 = request
                        .uri()
                        .query()
                        .and_then(|q| q.strip_prefix("late="))
                        .map_or(0, |n| n.parse().unwrap());
                    clock.set(clock.now() + by);
                    next.run(request).await
                }
            },
        )
    };
    let app = Router::new()
        .route("/x", get(whoami).layer(guard.layer().require_scope("read")))
        .layer(late)
        .layer(guard.layer());
    serve_on(listener, app);
    let t = clock.now();
    let token = issuer.token(AUD, json!({"scope": "read", "iat": t, "exp": t + 100}));
    // Within the leeway after `exp`: still admitted inside.
    assert_eq!(
        get_with_token(&format!("{base}/x?late=129"), &token)
            .await
            .status,
        200
    );
    clock.set(t);
    let reply = get_with_token(&format!("{base}/x?late=130"), &token).await;
    reply.assert_error(401, "Bearer", "invalid_token");
    assert!(
        reply.www_authenticate()[0].contains("token expired"),
        "{:?}",
        reply.www_authenticate()
    );
}

#[tokio::test]
async fn an_inner_guard_holds_an_admitted_token_to_its_own_keys_rules_and_proof_policy() {
    let issuer = TestIssuer::start().await;
    let other = TestIssuer::start().await;
    let bearer = issuer.token(AUD, json!({}));

    // The inner guard pins another key for the same issuer: the outer guard's signature
    // check is not the inner guard's.
    let pinned = SigningKey::generate("pinned");
    let set = KeySet::from_json(json!({"keys": [pinned.jwk]}).to_string().as_bytes()).unwrap();
    let (listener, base) = bind().await;
    let outer = issuer.guard(AUD).build().await.unwrap();
    let inner = OAuthGuard::builder()
        .trust(
            tower_oauth_guard::Issuer::new(&issuer.issuer)
                .audience(AUD)
                .jwks(set),
        )
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route("/strict", get(whoami).layer(inner.layer()))
        .layer(outer.layer());
    let _ = serve_on(listener, app);
    let reply = get_with_token(&format!("{base}/strict"), &bearer).await;
    reply.assert_error(401, "Bearer", "invalid_token");

    // Stricter token rules inside: `typ`, algorithms, leeway.
    let untyped = token_typed(&issuer, Some("JWT"));
    let base = nested(&issuer, &other, |b, _| b.require_at_jwt_typ()).await;
    assert_eq!(
        get_with_token(&format!("{base}/strict"), &untyped)
            .await
            .status,
        401
    );
    let base = nested(&issuer, &other, |b, _| {
        b.algorithms([tower_oauth_guard::Algorithm::ES384])
    })
    .await;
    assert_eq!(
        get_with_token(&format!("{base}/strict"), &bearer)
            .await
            .status,
        401
    );
    let early = issuer.token(AUD, json!({"nbf": now() + 30}));
    let base = nested(&issuer, &other, |b, _| b.leeway(Duration::ZERO)).await;
    assert_eq!(
        get_with_token(&format!("{base}/strict"), &early)
            .await
            .status,
        401
    );
    assert_eq!(
        get_with_token(&format!("{base}/same"), &early).await.status,
        200
    );
}

#[tokio::test]
async fn an_inner_guard_holds_a_consumed_proof_to_its_own_nonce_and_origin() {
    use tower_oauth_guard::DpopNonces;
    use tower_oauth_guard::NonceSecret;
    let issuer = TestIssuer::start().await;
    let (listener, base) = bind().await;
    let public = PublicUri::fixed(BaseUrl::parse(&base).unwrap());
    let outer = issuer
        .guard(AUD)
        .dpop(Dpop::allowed(public.clone()))
        .build()
        .await
        .unwrap();
    let inner = issuer
        .guard(AUD)
        .dpop(Dpop::required(public).nonces(DpopNonces::new(NonceSecret::generate().unwrap())))
        .build()
        .await
        .unwrap();
    let elsewhere = issuer
        .guard(AUD)
        .dpop(Dpop::allowed(PublicUri::fixed(
            BaseUrl::parse("https://elsewhere.example").unwrap(),
        )))
        .build()
        .await
        .unwrap();
    let app = Router::new()
        .route("/nonce", get(whoami).layer(inner.layer()))
        .route("/elsewhere", get(whoami).layer(elsewhere.layer()))
        .layer(outer.layer());
    let _ = serve_on(listener, app);
    let key = DpopKey::generate();
    let token = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));

    // The outer guard takes a proof without a nonce; the inner one wants its own nonce.
    let url = format!("{base}/nonce");
    let proof = key.proof("GET", &url, Some(&token), None);
    let reply = send_owned("GET", &url, &dpop_headers(&token, &proof)).await;
    reply.assert_error(401, "DPoP", "use_dpop_nonce");
    let nonce = reply.headers["dpop-nonce"].to_str().unwrap().to_owned();
    let proof = key.proof("GET", &url, Some(&token), Some(&nonce));
    let reply = send_owned("GET", &url, &dpop_headers(&token, &proof)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["binding"], "dpop");

    // A proof the outer guard accepted for its origin does not name the inner one's.
    let url = format!("{base}/elsewhere");
    let proof = key.proof("GET", &url, Some(&token), None);
    let reply = send_owned("GET", &url, &dpop_headers(&token, &proof)).await;
    reply.assert_error(401, "DPoP", "invalid_dpop_proof");
}

// ---------------------------------------------------------------------------------------------
// Replay window (RFC 9449 §11.1)

/// Records the windows the guard asks a store to remember proofs for.
#[derive(Default, Clone)]
struct RecordingStore {
    inner: Arc<MemoryReplayStore>,
    windows: Arc<Mutex<Vec<ReplayWindow>>>,
}

impl ReplayStore for RecordingStore {
    fn check_and_insert<'a>(
        &'a self,
        key: &'a ReplayKey,
        window: ReplayWindow,
    ) -> tower_oauth_guard::ReplayFuture<'a> {
        self.windows.lock().unwrap().push(window);
        self.inner.check_and_insert(key, window)
    }
}

#[tokio::test]
async fn a_proof_is_remembered_as_long_as_any_instance_could_accept_it() {
    let issuer = TestIssuer::start().await;
    let t0 = now();
    let clock = TestClock::at(t0);
    let store = RecordingStore::default();
    let base = serve_guard(&issuer, |d| d.replay_store(store.clone()), {
        let clock = clock.clone();
        |b| b.clock(clock)
    })
    .await;
    let url = format!("{base}/api/whoami");
    let key = DpopKey::generate();
    let token = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
    // `iat` 5 s ahead of the server clock: the edge of the default allowance.
    let mut claims = key.claims("GET", &url, Some(&token), None);
    claims["iat"] = json!(t0 + 5);
    let proof = key.proof_with(claims, |_| {});
    let reply = send_owned("GET", &url, &dpop_headers(&token, &proof)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);

    // The last instant any instance accepts this proof is iat + 60 s (+ the second that
    // whole-second comparison adds); the store was asked to remember it at least that long,
    // plus the skew margin (5 s by default), not 65 s from first use.
    let window = store.windows.lock().unwrap()[0];
    assert_eq!(window.now, t0);
    assert!(window.until >= t0 + 5 + 60 + 1 + 5, "{window:?}");

    // Up to the last acceptable second (65.x s after first use, when the finding's replay
    // got through), the proof is a replay.
    for later in [30, 64, 65] {
        clock.set(t0 + later);
        let reply = send_owned("GET", &url, &dpop_headers(&token, &proof)).await;
        reply.assert_error(401, "DPoP", "invalid_dpop_proof");
        assert!(
            reply.www_authenticate()[0].contains("replayed"),
            "at +{later}: {:?}",
            reply.www_authenticate()
        );
    }
    // Past the window the proof is too old, whatever the store remembers.
    clock.set(t0 + 5 + 61);
    let reply = send_owned("GET", &url, &dpop_headers(&token, &proof)).await;
    assert!(reply.www_authenticate()[0].contains("too old"));
}

#[tokio::test]
async fn a_fractional_iat_is_accepted() {
    let issuer = TestIssuer::start().await;
    let base = serve_guard(&issuer, |d| d, |b| b).await;
    let url = format!("{base}/api/whoami");
    let key = DpopKey::generate();
    let token = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
    let mut claims = key.claims("GET", &url, Some(&token), None);
    claims["iat"] = json!(now() as f64 + 0.731);
    let proof = key.proof_with(claims, |_| {});
    let reply = send_owned("GET", &url, &dpop_headers(&token, &proof)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["binding"], "dpop");
}

#[tokio::test]
async fn one_client_cannot_fill_the_replay_store_for_the_others() {
    let issuer = TestIssuer::start().await;
    let base = serve_guard(
        &issuer,
        |d| d.replay_store(MemoryReplayStore::with_limits(1_000, 5)),
        |b| b,
    )
    .await;
    let url = format!("{base}/api/whoami");
    let greedy = DpopKey::generate();
    let greedy_token = issuer.token(AUD, json!({"cnf": {"jkt": greedy.jkt}}));
    let proof = || greedy.proof("GET", &url, Some(&greedy_token), None);
    for _ in 0..5 {
        let reply = send_owned("GET", &url, &dpop_headers(&greedy_token, &proof())).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let reply = send_owned("GET", &url, &dpop_headers(&greedy_token, &proof())).await;
    reply.assert_undecided(429, "5");
    // Everyone else is served.
    for _ in 0..10 {
        let honest = DpopKey::generate();
        let token = issuer.token(AUD, json!({"cnf": {"jkt": honest.jkt}}));
        let proof = honest.proof("GET", &url, Some(&token), None);
        let reply = send_owned("GET", &url, &dpop_headers(&token, &proof)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
}

// ---------------------------------------------------------------------------------------------
// RFC 9449 §7.2: a DPoP header beside an unbound Bearer token is ignored

#[tokio::test]
async fn a_dpop_header_beside_an_unbound_bearer_token_is_ignored_whatever_it_holds() {
    let issuer = TestIssuer::start().await;
    let base = serve_guard(&issuer, |d| d, |b| b).await;
    let url = format!("{base}/api/whoami");
    let authorization = format!("Bearer {}", issuer.token(AUD, json!({})));
    let long = "a".repeat(10_000);
    for dpop in [
        vec!["not a jws"],
        vec!["a.b.c", "d.e.f"],
        vec!["a.b.c, d.e.f"],
        vec![long.as_str()],
        vec![""],
    ] {
        let mut headers = vec![("authorization", authorization.as_str())];
        headers.extend(dpop.iter().map(|d| ("dpop", *d)));
        let reply = send("GET", &url, &headers).await;
        assert_eq!(
            reply.status,
            200,
            "{dpop:?}: {:?}",
            reply.www_authenticate()
        );
        assert_eq!(reply.json()["binding"], "bearer");
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC runs over HTTP/2 only

#[tokio::test]
async fn an_http1_request_claiming_grpc_gets_an_http_answer() {
    let issuer = TestIssuer::start().await;
    let base = serve_guard(&issuer, |d| d, |b| b).await;
    let reply = send(
        "POST",
        &format!("{base}/api/whoami"),
        &[("content-type", "application/grpc")],
    )
    .await;
    assert_eq!(reply.status, 401);
    assert!(reply.headers.get("grpc-status").is_none());
    assert!(reply.headers.contains_key("www-authenticate"));
}

// ---------------------------------------------------------------------------------------------
// Configuration cannot panic a request

#[tokio::test]
async fn the_largest_durations_in_every_setting_do_not_panic_a_request() {
    let issuer = TestIssuer::start().await;
    let base = serve_guard(
        &issuer,
        |d| {
            d.proof_policy(ProofPolicy {
                max_age: Duration::MAX,
                max_future: Duration::MAX,
                leeway: Duration::MAX,
                ..ProofPolicy::default()
            })
            .replay_timeout(Duration::MAX)
            .replay_skew_margin(Duration::MAX)
        },
        |b| b.leeway(Duration::MAX).jwks_refresh_cooldown(Duration::MAX),
    )
    .await;
    let url = format!("{base}/api/whoami");
    let key = DpopKey::generate();
    let token = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
    let proof = key.proof("GET", &url, Some(&token), None);
    let reply = send_owned("GET", &url, &dpop_headers(&token, &proof)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = send_owned("GET", &url, &dpop_headers(&token, &proof)).await;
    assert_eq!(reply.status, 401, "a replay is still a replay");
    let reply = get_with_token(&url, &issuer.token(AUD, json!({}))).await;
    assert_eq!(reply.status, 200);
}

// ---------------------------------------------------------------------------------------------
// Issuer keys: RSA below 2048 bits is refused on every backend (RFC 7518 §3.3)

/// A 1024-bit RSA public key, and an RS256 token it signed (iss `https://weak.example`, aud
/// `api`, exp 2100-01-01), made with openssl.
const WEAK_RSA_JWK: &str = r#"{"kty": "RSA", "kid": "weak", "alg": "RS256", "n": "v-Q7d-twSR5voNfQWdfgKVqwHKHWPrQzXaYJGo2rsgfEgdkbZ76Imy70WqJGROqfUOZOQY-G_2qJ0Kyp6ZXT648yRoJNhoVRgEooZWbBDflp7Tp4f74dp2InJL2_kNmcnuGkVaOvyCxplfUFo21Ti7yhvgSjg_TKiVctF6rsiKk", "e": "AQAB"}"#;
const WEAK_RSA_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6IndlYWsiLCJ0eXAiOiJhdCtqd3QifQ.eyJpc3MiOiJodHRwczovL3dlYWsuZXhhbXBsZSIsImF1ZCI6ImFwaSIsInN1YiI6IndlYWsiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMH0.CGCY8HJTQkcJMKOOOwRUKw8tvaPmkzN-FR7xT0FW-mGe574TqT8Kds6TUv9y17Yh8YnjfuhuEfsmg75O7yPp26xnu0MfY9gcns7zbh6KiIZM8CQDxSx5g-wGQ2jPxeQ8yd8zpSfx1cCxJkiE9gVwvBdyyYE8SR3gBnxBNij0xFU";

#[tokio::test]
async fn an_issuer_rsa_key_below_2048_bits_is_never_used() {
    let strong = SigningKey::generate("strong");
    let weak: Value = serde_json::from_str(WEAK_RSA_JWK).unwrap();
    let set =
        KeySet::from_json(json!({"keys": [weak, strong.jwk]}).to_string().as_bytes()).unwrap();
    assert_eq!(set.len(), 1, "the weak key was kept");
    let guard = OAuthGuard::builder()
        .trust(
            tower_oauth_guard::Issuer::new("https://weak.example")
                .audience("api")
                .jwks(set),
        )
        .clock(tower_oauth_guard::FixedClock(1_700_000_100))
        .build()
        .await
        .unwrap();
    let base = serve(app(&guard)).await;
    let reply = get_with_token(&format!("{base}/api/whoami"), WEAK_RSA_TOKEN).await;
    reply.assert_error(401, "Bearer", "invalid_token");
}

// ---------------------------------------------------------------------------------------------
// No credential in any output

/// The parts of a compact JWS that are secret or identifying: the whole, and its signature.
fn secrets_of(jws: &str) -> [String; 2] {
    [jws.to_owned(), jws.rsplit('.').next().unwrap().to_owned()]
}

#[test]
fn no_token_proof_or_signature_appears_in_logs_or_debug_output() {
    // The process-wide subscriber: a scoped one can miss events whose callsites another test
    // thread registered first. Other tests' events land there too, which only adds to what
    // is checked.
    let captured = crate::support::logs();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut secrets = Vec::new();
    let debug_outputs = {
        runtime.block_on(async {
            let issuer = TestIssuer::start().await;
            let base = serve_guard(&issuer, |d| d, |b| b.realm("api")).await;
            let url = format!("{base}/api/whoami");
            let key = DpopKey::generate();
            let bound = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
            let bearer = issuer.token(AUD, json!({}));
            let expired = issuer.token(AUD, json!({"exp": now() - 3600}));
            let mut forged = bearer.clone();
            forged.push_str("AAAA");
            let proof = key.proof("GET", &url, Some(&bound), None);
            let wrong_htu = key.proof("GET", "https://elsewhere.example/", Some(&bound), None);
            for jws in [&bound, &bearer, &expired, &forged, &proof, &wrong_htu] {
                secrets.extend(secrets_of(jws));
            }
            let mut bodies = Vec::new();
            // Accepted: bearer, DPoP; refused: replay, wrong htu, expired, forged, bound as
            // bearer, missing proof.
            bodies.push(get_with_token(&url, &bearer).await.body);
            bodies.push(
                send_owned("GET", &url, &dpop_headers(&bound, &proof))
                    .await
                    .body,
            );
            for reply in [
                send_owned("GET", &url, &dpop_headers(&bound, &proof)).await,
                send_owned("GET", &url, &dpop_headers(&bound, &wrong_htu)).await,
                get_with_token(&url, &expired).await,
                get_with_token(&url, &forged).await,
                get_with_token(&url, &bound).await,
                send("GET", &url, &[("authorization", &format!("DPoP {bound}"))]).await,
            ] {
                assert_ne!(reply.status, 200);
                bodies.push(format!("{:?}", reply.headers));
            }
            // Debug of what the guard hands out and refuses with, called directly.
            let guard = issuer.guard(AUD).build().await.unwrap();
            let policy = tower_oauth_guard::Policy::default();
            let request = |auth: String| {
                http::Request::builder()
                    .uri("/api/whoami")
                    .header("authorization", auth)
                    .header("dpop", proof.clone())
                    .body(())
                    .unwrap()
                    .into_parts()
                    .0
            };
            let admission = guard
                .check(
                    &mut request(format!("Bearer {bearer}")),
                    &policy,
                    tower_oauth_guard::Presence::Required,
                )
                .await
                .unwrap();
            bodies.push(format!("{admission:?}"));
            let refusal = guard
                .check(
                    &mut request(format!("Bearer {expired}")),
                    &policy,
                    tower_oauth_guard::Presence::Required,
                )
                .await
                .unwrap_err();
            bodies.push(format!("{refusal:?}"));
            bodies.push(format!("{guard:?}"));
            let expected = tower_oauth_guard::ExpectedRequest {
                method: "GET",
                htu: &url,
                access_token: Some(&bound),
            };
            bodies.push(format!("{expected:?}"));
            bodies
        })
    };
    // A certificate is no secret, but it is personal: Debug shows no bytes of it.
    let der = vec![0x30, 0x82, 0x01, 0x0a, 0xde, 0xad, 0xbe, 0xef];
    let certs = tower_oauth_guard::PeerCertificates(Arc::new(vec![der.clone().into()]));
    let shown = format!("{certs:?}");
    assert!(!shown.contains("222") && !shown.contains("173"), "{shown}");
    assert!(
        format!("{der:?}").contains("222"),
        "the bytes would show as decimals"
    );
    let logs = captured.text();
    assert!(
        logs.contains("request refused"),
        "the capture saw the guard's events: {logs}"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a credential is in the logs"
        );
        for output in &debug_outputs {
            assert!(
                !output.contains(secret.as_str()),
                "a credential is in a Debug output: {output}"
            );
        }
    }
}

/// RFC 7515 §5.2: a signed token whose header is not valid JSON is refused, even where the
/// invalid part is a member the guard skips (not built before the signature, parsed whole
/// after it).
#[tokio::test]
async fn a_token_header_with_invalid_json_in_any_member_is_refused() {
    let issuer = TestIssuer::start().await;
    let base = serve_guard(&issuer, |d| d, |b| b).await;
    let key = issuer.key(0);
    let claims = issuer.claims(AUD, json!({})).to_string();
    let token = |header: &str| key.sign_raw(header, &claims);
    let url = format!("{base}/api/whoami");
    let header = |member: &str| {
        format!(
            r#"{{{member}"alg":"ES256","kid":"{}","typ":"at+jwt"}}"#,
            key.kid
        )
    };
    let valid = get_with_token(&url, &token(&header(r#""z":[1,{"a":null}],"#))).await;
    assert_eq!(valid.status, 200, "{}", valid.body);
    for member in [r#""z":1e400,"#, r#""z":"\ud800","#] {
        let reply = get_with_token(&url, &token(&header(member))).await;
        reply.assert_error(401, "Bearer", "invalid_token");
    }
}
