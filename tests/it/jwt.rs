//! Bearer JWT access tokens through a real axum server and a real JWKS server.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::support::*;
use axum::Router;
use axum::routing::get;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};
use tower_oauth_guard::{AccessToken, AnonymousRequest, Claims, Issuer, OAuthGuard};

const AUD: &str = "https://api.example";

async fn whoami(token: AccessToken) -> axum::Json<Value> {
    axum::Json(json!({
        "sub": token.subject(),
        "client_id": token.client_id(),
        "scope": token.scopes().to_scope_string(),
        "binding": token.binding().kind(),
    }))
}

fn app(guard: &OAuthGuard) -> Router {
    Router::new()
        .route("/api/whoami", get(whoami).post(whoami))
        .route(
            "/api/admin",
            get(whoami).layer(guard.layer().require_scope("admin")),
        )
        .layer(guard.layer())
}

async fn setup() -> (TestIssuer, String) {
    let issuer = TestIssuer::start().await;
    let guard = issuer
        .guard(AUD)
        .realm("api")
        .require_at_jwt_typ()
        .jwks_refresh_cooldown(Duration::from_secs(300))
        .build()
        .await
        .unwrap();
    let base = serve(app(&guard)).await;
    (issuer, base)
}

#[tokio::test]
async fn valid_token_reaches_the_handler() {
    let (issuer, base) = setup().await;
    let reply = get_with_token(&format!("{base}/api/whoami"), &issuer.token(AUD, json!({}))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["client_id"], "client-1");
    assert_eq!(body["scope"], "read");
    assert_eq!(body["binding"], "bearer");
}

#[tokio::test]
async fn missing_token_gets_bare_challenges() {
    let (_issuer, base) = setup().await;
    let reply = send("GET", &format!("{base}/api/whoami"), &[]).await;
    assert_eq!(reply.status, 401);
    // DPoP is off by default, so Bearer is the only scheme offered.
    assert_eq!(reply.www_authenticate(), ["Bearer realm=\"api\""]);
    // An unknown scheme is treated as no credentials (RFC 6750 §3.1).
    let reply = send(
        "GET",
        &format!("{base}/api/whoami"),
        &[("authorization", "Basic YTpi")],
    )
    .await;
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .www_authenticate()
            .iter()
            .all(|c| !c.contains("error="))
    );
}

#[tokio::test]
async fn invalid_tokens_get_invalid_token() {
    let (issuer, base) = setup().await;
    let url = format!("{base}/api/whoami");
    let key = issuer.key(0);
    let now = now();
    let header = |kid: &str| {
        let mut h = Header::new(Algorithm::ES256);
        h.kid = Some(kid.into());
        h.typ = Some("at+jwt".into());
        h
    };
    let mut cases: Vec<(&str, String)> = vec![
        ("expired", issuer.token(AUD, json!({"exp": now - 120}))),
        (
            "not yet valid",
            issuer.token(AUD, json!({"nbf": now + 600})),
        ),
        (
            "issued in the future",
            issuer.token(AUD, json!({"iat": now + 600})),
        ),
        ("no exp", {
            let mut c = issuer.claims(AUD, json!({}));
            c.as_object_mut().unwrap().remove("exp");
            key.sign(header("k1"), &c)
        }),
        (
            "wrong iss",
            issuer.token(AUD, json!({"iss": "https://evil.example"})),
        ),
        (
            "wrong aud",
            issuer.token("https://other.example", json!({})),
        ),
        (
            "aud array without ours",
            issuer.token(AUD, json!({"aud": ["a", "b"]})),
        ),
        (
            "bad signature",
            SigningKey::generate("k1").sign(header("k1"), &issuer.claims(AUD, json!({}))),
        ),
        (
            "unknown kid",
            key.sign(header("nope"), &issuer.claims(AUD, json!({}))),
        ),
        ("wrong typ", {
            let mut h = header("k1");
            h.typ = Some("JWT".into());
            key.sign(h, &issuer.claims(AUD, json!({})))
        }),
        ("malformed", "abc.def".to_owned()),
        ("garbage parts", "abc.def.ghi".to_owned()),
    ];
    // alg "none", unsigned (RFC 7519 §6.1): never accepted.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = issuer.claims(AUD, json!({}));
    let none_header = json!({"alg": "none", "typ": "at+jwt", "kid": "k1"});
    cases.push((
        "alg none",
        format!("{}.{}.", b64(&none_header), b64(&claims)),
    ));
    cases.push((
        "alg none with sig",
        format!("{}.{}.e30", b64(&none_header), b64(&claims)),
    ));
    // HS256 keyed with the issuer's public key: the classic alg confusion attack.
    let public = serde_json::to_vec(&key.jwk).unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some("k1".into());
    hs.typ = Some("at+jwt".into());
    install_provider();
    let confused = jsonwebtoken::encode(&hs, &claims, &EncodingKey::from_secret(&public)).unwrap();
    cases.push(("HS256 with public key", confused));
    cases.push((
        "oversized",
        format!("{}.{}.{}", "a".repeat(5000), "b".repeat(5000), "c"),
    ));

    for (name, token) in cases {
        let reply = get_with_token(&url, &token).await;
        assert_eq!(reply.status, 401, "{name}: {}", reply.body);
        let challenges = reply.www_authenticate();
        assert_eq!(challenges.len(), 1, "{name}: {challenges:?}");
        assert!(
            challenges[0].starts_with("Bearer realm=\"api\", error=\"invalid_token\""),
            "{name}: {challenges:?}"
        );
        // The description never echoes the token.
        assert!(
            !challenges[0].contains(&token[..token.len().min(20)]),
            "{name}"
        );
    }
    // The valid token beside them still works.
    let reply = get_with_token(&url, &issuer.token(AUD, json!({}))).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn two_authorization_headers_are_a_bad_request() {
    let (issuer, base) = setup().await;
    let token = issuer.token(AUD, json!({}));
    let bearer = format!("Bearer {token}");
    let reply = send(
        "GET",
        &format!("{base}/api/whoami"),
        &[("authorization", &bearer), ("authorization", &bearer)],
    )
    .await;
    reply.assert_error(400, "Bearer", "invalid_request");
}

#[tokio::test]
async fn insufficient_scope_is_403_with_scope() {
    let (issuer, base) = setup().await;
    let url = format!("{base}/api/admin");
    let reply = get_with_token(&url, &issuer.token(AUD, json!({"scope": "read"}))).await;
    reply.assert_error(403, "Bearer", "insufficient_scope");
    assert!(reply.www_authenticate()[0].contains("scope=\"admin\""));
    // `scp` arrays count as well.
    let reply = get_with_token(
        &url,
        &issuer.token(AUD, json!({"scope": null, "scp": ["admin"]})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Sends `n` requests with `token` at once; returns their statuses.
async fn concurrently(n: usize, url: &str, token: &str) -> Vec<u16> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (url, token) = (url.to_owned(), token.to_owned());
            tokio::spawn(async move { get_with_token(&url, &token).await.status.as_u16() })
        })
        .collect();
    let mut statuses = Vec::with_capacity(n);
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn key_rotation_needs_exactly_one_refresh() {
    let (issuer, base) = setup().await;
    let url = format!("{base}/api/whoami");
    assert_eq!(
        issuer.jwks_fetches.load(Ordering::SeqCst),
        1,
        "build fetches once"
    );
    let new_key = SigningKey::generate("k2");
    issuer.keys.lock().unwrap().push(new_key.clone());
    let token = new_key.sign(at_header("k2"), &issuer.claims(AUD, json!({})));

    // 200 concurrent requests with the unknown kid: one fetch, and all of them succeed.
    for status in concurrently(200, &url, &token).await {
        assert_eq!(status, 200);
    }
    assert_eq!(issuer.jwks_fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unknown_kid_flood_causes_one_fetch() {
    let (issuer, base) = setup().await;
    let url = format!("{base}/api/whoami");
    let token = issuer
        .key(0)
        .sign(at_header("k9"), &issuer.claims(AUD, json!({})));
    for status in concurrently(200, &url, &token).await {
        assert_eq!(status, 401);
    }
    assert_eq!(
        issuer.jwks_fetches.load(Ordering::SeqCst),
        2,
        "build + one refresh"
    );
}

#[tokio::test]
async fn known_keys_keep_working_while_jwks_is_down() {
    let (issuer, base) = setup().await;
    issuer.down.store(true, Ordering::SeqCst);
    let url = format!("{base}/api/whoami");
    // An unknown kid triggers a (failing) refresh; the known key still verifies.
    let stray = issuer
        .key(0)
        .sign(at_header("gone"), &issuer.claims(AUD, json!({})));
    assert_eq!(get_with_token(&url, &stray).await.status, 401);
    let reply = get_with_token(&url, &issuer.token(AUD, json!({}))).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn discovery_finds_the_jwks() {
    let issuer = TestIssuer::start().await;
    let guard = OAuthGuard::builder()
        .trust(
            tower_oauth_guard::Issuer::new(&issuer.issuer)
                .audience(AUD)
                .discover(),
        )
        .build()
        .await
        .unwrap();
    let base = serve(app(&guard)).await;
    let reply = get_with_token(&format!("{base}/api/whoami"), &issuer.token(AUD, json!({}))).await;
    assert_eq!(reply.status, 200);
}

#[tokio::test]
async fn discovery_falls_back_to_rfc_8414_metadata_with_the_path_inserted() {
    // An issuer with a path that publishes only RFC 8414 metadata, at the well-known URI with
    // the issuer's path appended after it (RFC 8414 §3.1); the OpenID Connect location 404s.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let iss = format!("{origin}/tenant");
    let key = SigningKey::generate("k8414");
    let jwks = json!({ "keys": [key.jwk.clone()] });
    let metadata = json!({ "issuer": iss, "jwks_uri": format!("{iss}/keys") });
    let server = Router::new()
        .route(
            "/.well-known/oauth-authorization-server/tenant",
            get(move || async move { axum::Json(metadata) }),
        )
        .route("/tenant/keys", get(move || async move { axum::Json(jwks) }));
    let _ = serve_on(listener, server);
    let guard = OAuthGuard::builder()
        .trust(Issuer::new(&iss).audience(AUD).discover())
        .build()
        .await
        .unwrap();
    let base = serve(app(&guard)).await;
    let mut claims = json!({"iss": iss, "sub": "alice", "aud": AUD, "exp": now() + 300});
    claims["scope"] = json!("read");
    let token = key.sign(at_header(&key.kid), &claims);
    let reply = get_with_token(&format!("{base}/api/whoami"), &token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn discovery_refuses_a_metadata_issuer_mismatch() {
    let issuer = TestIssuer::start().await;
    // Same server, but we claim a different issuer identifier than the metadata states.
    let err = OAuthGuard::builder()
        .trust(
            tower_oauth_guard::Issuer::new(format!("{}/", issuer.issuer))
                .audience(AUD)
                .discover(),
        )
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(err, tower_oauth_guard::BuildError::Discovery(..)),
        "{err}"
    );
}

#[tokio::test]
async fn several_issuers_each_with_their_audience() {
    let a = TestIssuer::start().await;
    let b = TestIssuer::start().await;
    let guard = a
        .guard(AUD)
        .trust(
            Issuer::new(&b.issuer)
                .audience("urn:b")
                .jwks_url(b.jwks_url()),
        )
        .build()
        .await
        .unwrap();
    let base = serve(app(&guard)).await;
    let url = format!("{base}/api/whoami");
    assert_eq!(
        get_with_token(&url, &a.token(AUD, json!({}))).await.status,
        200
    );
    assert_eq!(
        get_with_token(&url, &b.token("urn:b", json!({})))
            .await
            .status,
        200
    );
    // b's token for a's audience, and b's token signed by a's key, are refused.
    assert_eq!(
        get_with_token(&url, &b.token(AUD, json!({}))).await.status,
        401
    );
    let forged = a.key(0).sign(
        {
            let mut h = Header::new(Algorithm::ES256);
            h.kid = Some("k1".into());
            h
        },
        &b.claims("urn:b", json!({})),
    );
    assert_eq!(get_with_token(&url, &forged).await.status, 401);
    // An unknown issuer costs no network call.
    let before = (
        a.jwks_fetches.load(Ordering::SeqCst),
        b.jwks_fetches.load(Ordering::SeqCst),
    );
    let reply = get_with_token(
        &url,
        &a.token(AUD, json!({"iss": "https://unknown.example"})),
    )
    .await;
    reply.assert_error(401, "Bearer", "invalid_token");
    let after = (
        a.jwks_fetches.load(Ordering::SeqCst),
        b.jwks_fetches.load(Ordering::SeqCst),
    );
    assert_eq!(before, after);
}

#[tokio::test]
async fn optional_routes_serve_anonymous_requests() {
    let issuer = TestIssuer::start().await;
    let guard = issuer.guard(AUD).build().await.unwrap();
    async fn hello(token: Option<AccessToken>) -> String {
        match token {
            Some(t) => format!("hello {}", t.subject()),
            None => "hello stranger".into(),
        }
    }
    let app = Router::new()
        .route("/hello", get(hello))
        .layer(guard.layer().optional());
    let base = serve(app).await;
    let url = format!("{base}/hello");
    assert_eq!(send("GET", &url, &[]).await.body, "hello stranger");
    assert_eq!(
        get_with_token(&url, &issuer.token(AUD, json!({})))
            .await
            .body,
        "hello alice"
    );
    // A presented but invalid token is still refused.
    let reply = get_with_token(&url, &issuer.token(AUD, json!({"exp": now() - 3600}))).await;
    reply.assert_error(401, "Bearer", "invalid_token");
}

/// A handler that needs a token, behind a layer that lets anonymous requests through, answers
/// an anonymous request with the guard's own 401: the one a route requiring a token gives
/// (schemes, realm, `resource_metadata`, the route's scope), byte for byte. With no guard
/// layer in front at all, the extractor answers 500: a wiring mistake, not a challenge the
/// client could meet.
#[tokio::test]
async fn a_token_extractor_answers_as_its_guard_or_as_a_wiring_mistake() {
    #[derive(Deserialize)]
    struct Subject {
        sub: String,
    }
    let issuer = TestIssuer::start().await;
    let (listener, base) = bind().await;
    let resource = format!("{base}/api");
    let guard = issuer
        .guard(&resource)
        .realm("extractors")
        .resource(&resource)
        .build()
        .await
        .unwrap();
    let subject = |t: AccessToken| async move { t.subject().to_owned() };
    let typed = |Claims(c): Claims<Subject>| async move { c.sub };
    let token = issuer.token(&resource, json!({"scope": "read"}));
    // An outer optional layer lets an anonymous request through, something between the
    // layers then adds credentials, and an inner layer admits them: the handler sees the
    // token and no anonymous mark.
    let marks = |request: axum::extract::Request| async move {
        let e = request.extensions();
        let token = e.get::<AccessToken>().map(|t| t.subject().to_owned());
        format!("{token:?} {}", e.get::<AnonymousRequest>().is_some())
    };
    let authorization = format!("Bearer {token}");
    let add_credentials =
        axum::middleware::map_request(move |mut request: axum::extract::Request| {
            let value = authorization.parse().unwrap();
            async move {
                request
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, value);
                request
            }
        });
    let app = Router::new()
        .route(
            "/api/required",
            get(subject).layer(guard.layer().require_scope("read")),
        )
        .route(
            "/api/optional",
            get(subject).layer(guard.layer().require_scope("read").optional()),
        )
        .route(
            "/api/typed",
            get(typed).layer(guard.layer().require_scope("read").optional()),
        )
        .route(
            "/api/nested",
            get(marks)
                .layer(guard.layer())
                .layer::<_, std::convert::Infallible>(add_credentials)
                .layer(guard.layer().optional()),
        )
        .route("/api/unguarded", get(subject))
        .route("/api/unguarded-typed", get(typed));
    serve_on(listener, app);

    let required = send("GET", &format!("{base}/api/required"), &[]).await;
    assert_eq!(required.status, 401);
    let expected = required.www_authenticate();
    assert_eq!(expected.len(), 1, "{expected:?}");
    for part in [
        "Bearer ",
        "realm=\"extractors\"",
        "scope=\"read\"",
        "resource_metadata=\"",
    ] {
        assert!(expected[0].contains(part), "{part} in {expected:?}");
    }
    for route in ["optional", "typed"] {
        let anonymous = send("GET", &format!("{base}/api/{route}"), &[]).await;
        assert_eq!(anonymous.status, 401, "{route}: {}", anonymous.body);
        assert_eq!(anonymous.www_authenticate(), expected, "{route}");
    }
    let nested = send("GET", &format!("{base}/api/nested"), &[]).await;
    assert_eq!(nested.body, r#"Some("alice") false"#);
    // With a token, the same routes serve it.
    for route in ["required", "optional", "typed"] {
        let reply = get_with_token(&format!("{base}/api/{route}"), &token).await;
        assert_eq!(
            (reply.status.as_u16(), reply.body.as_str()),
            (200, "alice"),
            "{route}"
        );
    }
    for route in ["unguarded", "unguarded-typed"] {
        for headers in [vec![], vec![("authorization", format!("Bearer {token}"))]] {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            let reply = send("GET", &format!("{base}/api/{route}"), &headers).await;
            assert_eq!(reply.status, 500, "{route}");
            assert!(reply.www_authenticate().is_empty(), "{route}");
        }
    }
}

#[tokio::test]
async fn typed_claims_and_custom_requirements() {
    #[derive(Deserialize)]
    struct MyClaims {
        sub: String,
        tenant: String,
    }
    let issuer = TestIssuer::start().await;
    let guard = issuer.guard(AUD).build().await.unwrap();
    let app =
        Router::new()
            .route(
                "/tenant",
                get(|Claims(c): Claims<MyClaims>| async move { format!("{}@{}", c.sub, c.tenant) }),
            )
            .layer(guard.layer().require(|t: &AccessToken| {
                t.claim("tenant").and_then(Value::as_str) == Some("acme")
            }));
    let base = serve(app).await;
    let url = format!("{base}/tenant");
    let reply = get_with_token(&url, &issuer.token(AUD, json!({"tenant": "acme"}))).await;
    assert_eq!(reply.body, "alice@acme");
    let reply = get_with_token(&url, &issuer.token(AUD, json!({"tenant": "other"}))).await;
    reply.assert_error(403, "Bearer", "insufficient_scope");
    // DPoP disabled: only the Bearer challenge.
    let reply = send("GET", &url, &[]).await;
    assert_eq!(reply.www_authenticate(), vec!["Bearer".to_owned()]);
}

#[tokio::test]
async fn cached_tokens_still_expire() {
    let issuer = TestIssuer::start().await;
    let clock = TestClock::at(now());
    let guard = issuer
        .guard(AUD)
        .leeway(Duration::from_secs(5))
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let base = serve(app(&guard)).await;
    let url = format!("{base}/api/whoami");
    // Expiry from the guard's clock, not the wall clock, which may have ticked since.
    let exp = clock.now() + 100;
    let token = issuer.token(AUD, json!({"exp": exp}));
    for _ in 0..3 {
        assert_eq!(get_with_token(&url, &token).await.status, 200);
    }
    clock.set(exp + 5);
    let reply = get_with_token(&url, &token).await;
    reply.assert_error(401, "Bearer", "invalid_token");
    assert!(reply.www_authenticate()[0].contains("token expired"));
}
