//! tower-http around the guard, through real HTTP on 127.0.0.1: the guard as tower-http's
//! `AsyncAuthorizeRequest` (feature `tower-http`), and the CORS of `examples/resource_server`,
//! run as the binary cargo built.

use crate::support::*;
use serde_json::json;

const AUD: &str = "https://api.example";

#[cfg(feature = "tower-http")]
mod authorizer {
    use axum::Router;
    use axum::routing::get;
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use serde_json::{Value, json};
    use tower_http::auth::AsyncRequireAuthorizationLayer;
    use tower_oauth_guard::BaseUrl;
    use tower_oauth_guard::{AccessToken, Dpop, OAuthGuard, PublicUri};

    use super::AUD;
    use crate::support::*;

    async fn whoami(token: AccessToken) -> axum::Json<Value> {
        axum::Json(json!({
            "sub": token.subject(),
            "scope": token.scopes().to_scope_string(),
            "binding": token.binding().kind(),
        }))
    }

    /// `/authz/whoami` behind tower-http's layer with the guard's authorizer (scope `read`),
    /// `/layer/whoami` behind the guard's own layer with the same policy, to compare answers.
    fn app(guard: &OAuthGuard) -> Router {
        Router::new()
            .route(
                "/authz/whoami",
                get(whoami)
                    .post(whoami)
                    .layer(AsyncRequireAuthorizationLayer::new(
                        guard.layer().require_scope("read").authorizer(),
                    )),
            )
            .route(
                "/layer/whoami",
                get(whoami).layer(guard.layer().require_scope("read")),
            )
            .route(
                "/authz-optional/whoami",
                get(whoami).layer(AsyncRequireAuthorizationLayer::new(
                    guard.layer().require_scope("read").optional().authorizer(),
                )),
            )
    }

    async fn setup() -> (TestIssuer, String) {
        let issuer = TestIssuer::start().await;
        let guard = issuer.guard(AUD).realm("api").build().await.unwrap();
        let base = serve(app(&guard)).await;
        (issuer, base)
    }

    #[tokio::test]
    async fn valid_token_reaches_the_handler_with_its_access_token() {
        let (issuer, base) = setup().await;
        let token = issuer.token(AUD, json!({"scope": "read write"}));
        let reply = get_with_token(&format!("{base}/authz/whoami"), &token).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        assert_eq!(body["sub"], "alice");
        assert_eq!(body["scope"], "read write");
        assert_eq!(body["binding"], "bearer");
    }

    #[tokio::test]
    async fn missing_token_gets_the_guards_401_challenge() {
        let (_issuer, base) = setup().await;
        let reply = send("GET", &format!("{base}/authz/whoami"), &[]).await;
        assert_eq!(reply.status, 401, "{}", reply.body);
        // The route's scope tells the client what to ask for (RFC 6750 §3).
        assert_eq!(
            reply.www_authenticate(),
            [r#"Bearer realm="api", scope="read""#]
        );
        let own = send("GET", &format!("{base}/layer/whoami"), &[]).await;
        assert_eq!(own.status, reply.status);
        assert_eq!(own.www_authenticate(), reply.www_authenticate());
        // An optional authorizer lets the request through; the handler's extractor, which
        // needs a token, answers with the same challenge.
        let anonymous = send("GET", &format!("{base}/authz-optional/whoami"), &[]).await;
        assert_eq!(anonymous.status, reply.status, "{}", anonymous.body);
        assert_eq!(anonymous.www_authenticate(), reply.www_authenticate());

        let reply = get_with_token(&format!("{base}/authz/whoami"), "not-a-jwt").await;
        reply.assert_error(401, "Bearer", "invalid_token");
        assert!(
            reply.www_authenticate()[0].ends_with(r#", scope="read""#),
            "{:?}",
            reply.www_authenticate()
        );
    }

    #[tokio::test]
    async fn token_without_the_scope_gets_403_insufficient_scope() {
        let (issuer, base) = setup().await;
        let token = issuer.token(AUD, json!({"scope": "write"}));
        let reply = get_with_token(&format!("{base}/authz/whoami"), &token).await;
        reply.assert_error(403, "Bearer", "insufficient_scope");
        let own = get_with_token(&format!("{base}/layer/whoami"), &token).await;
        assert_eq!(own.status, reply.status);
        assert_eq!(own.www_authenticate(), reply.www_authenticate());
    }

    /// The guard's DPoP checks run in the authorizer: the proof must match the request
    /// (RFC 9449 §4.3) and is consumed (§11.1).
    #[tokio::test]
    async fn dpop_bound_token_with_a_valid_proof_passes() {
        let issuer = TestIssuer::start().await;
        let (listener, base) = bind().await;
        let guard = issuer
            .guard(AUD)
            .realm("api")
            .dpop(Dpop::allowed(PublicUri::fixed(
                BaseUrl::parse(&base).unwrap(),
            )))
            .build()
            .await
            .unwrap();
        let base = serve_on(listener, app(&guard));
        let key = DpopKey::generate();
        let token = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
        let url = format!("{base}/authz/whoami");
        let authorization = format!("DPoP {token}");

        let proof = key.proof("GET", &url, Some(&token), None);
        let headers = [
            ("authorization", authorization.as_str()),
            ("dpop", proof.as_str()),
        ];
        let reply = send("GET", &url, &headers).await;
        assert_eq!(
            reply.status,
            200,
            "{} {:?}",
            reply.body,
            reply.www_authenticate()
        );
        assert_eq!(reply.json()["binding"], "dpop");

        // The same proof again is a replay.
        let reply = send("GET", &url, &headers).await;
        reply.assert_error(401, "DPoP", "invalid_dpop_proof");
        // A proof for another method does not match this request.
        let proof = key.proof("POST", &url, Some(&token), None);
        let reply = send(
            "GET",
            &url,
            &[("authorization", &authorization), ("dpop", &proof)],
        )
        .await;
        reply.assert_error(401, "DPoP", "invalid_dpop_proof");
    }

    /// gRPC requests (HTTP/2, `application/grpc`) are refused with a trailers-only gRPC status,
    /// as by the guard's own layer.
    #[tokio::test]
    async fn grpc_requests_get_a_grpc_status() {
        let (_issuer, base) = setup().await;
        let h2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http::<Full<Bytes>>();
        let request = http::Request::post(format!("{base}/authz/whoami"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
            .unwrap();
        let response = h2.request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "16");
        assert!(response.headers().contains_key("www-authenticate"));
    }
}

// ---- the example server's CORS, in front of its guard --------------------------------------

/// A comma-separated header value, as lowercase items.
fn list(reply: &Reply, name: &str) -> Vec<String> {
    reply
        .headers
        .get_all(name)
        .iter()
        .flat_map(|v| v.to_str().unwrap().split(','))
        .map(|item| item.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn example_answers_cors_preflights_before_the_guard() {
    let issuer = TestIssuer::start().await;
    let server = ExampleServer::start(&issuer).await;
    let url = format!("{}/api/whoami", server.base);

    let reply = send(
        "OPTIONS",
        &url,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "authorization, dpop"),
        ],
    )
    .await;
    assert!(
        reply.status.is_success(),
        "{} {:?}",
        reply.status,
        reply.headers
    );
    assert!(
        reply.www_authenticate().is_empty(),
        "the guard answered the preflight: {:?}",
        reply.headers
    );
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    let allowed = list(&reply, "access-control-allow-headers");
    for header in ["authorization", "dpop"] {
        assert!(allowed.iter().any(|h| h == header), "{header}: {allowed:?}");
    }
    let methods = list(&reply, "access-control-allow-methods");
    for method in ["get", "post"] {
        assert!(methods.iter().any(|m| m == method), "{method}: {methods:?}");
    }
}

#[tokio::test]
async fn example_exposes_the_challenge_and_nonce_headers_to_browsers() {
    let issuer = TestIssuer::start().await;
    let server = ExampleServer::start(&issuer).await;
    let url = format!("{}/api/whoami", server.base);
    let origin = ("origin", "https://app.example");

    // A refusal from the guard still carries the CORS headers, so scripts can read it.
    let reply = send("GET", &url, &[origin]).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(!reply.www_authenticate().is_empty());
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    let exposed = list(&reply, "access-control-expose-headers");
    for header in ["dpop-nonce", "www-authenticate"] {
        assert!(exposed.iter().any(|h| h == header), "{header}: {exposed:?}");
    }

    // And an admitted request goes through both layers to the handler.
    let token = issuer.token(AUD, json!({}));
    let authorization = format!("Bearer {token}");
    let reply = send("GET", &url, &[origin, ("authorization", &authorization)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["sub"], "alice");
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
}
