//! The short examples that teach (`examples/axum_api.rs`, `examples/grpc_api.rs`): each guard is
//! built by the example's own `guard()` against a real issuer (discovery over HTTP), and each
//! server is called for real. The hyper example has its own module (`hyper_api`).

use serde_json::json;

use crate::support::*;

/// The audience the examples are started with; not their URL, which proofs name.
const AUD: &str = "https://api.example";

#[allow(dead_code)]
#[path = "../../examples/axum_api.rs"]
mod axum_api;

#[allow(dead_code)]
#[cfg(feature = "tonic")]
#[path = "../../examples/grpc_api.rs"]
mod grpc_api;

#[allow(dead_code)]
#[path = "../../examples/resource_server/flags.rs"]
mod resource_server_flags;

#[allow(dead_code)]
#[path = "../../examples/resource_server/routes.rs"]
mod resource_server_routes;

#[tokio::test]
async fn the_axum_example_admits_bearer_and_dpop_tokens_and_guards_its_admin_route() {
    let issuer = TestIssuer::start().await;
    let (listener, base) = bind().await;
    let guard = axum_api::guard(&issuer.issuer, AUD, &base).await.unwrap();
    serve_on(listener, axum_api::app(&guard));
    let hello = format!("{base}/hello");

    let bearer = issuer.token(AUD, json!({}));
    let reply = get_with_token(&hello, &bearer).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "hello alice (bearer token)");

    let key = DpopKey::generate();
    let bound = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
    let proof = key.proof("GET", &hello, Some(&bound), None);
    let authorization = format!("DPoP {bound}");
    let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
    let reply = send("GET", &hello, &headers).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "hello alice (dpop token)");
    // The bound token without its proof, or as a bearer token, is refused.
    let without_proof = send("GET", &hello, &[("authorization", &authorization)]).await;
    without_proof.assert_error(401, "DPoP", "invalid_dpop_proof");
    get_with_token(&hello, &bound)
        .await
        .assert_error(401, "DPoP", "invalid_token");

    let anonymous = send("GET", &hello, &[]).await;
    assert_eq!(anonymous.status, 401);
    // RFC 6750 §3.1: no error code when the request had no credentials.
    let challenges = anonymous.www_authenticate();
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().all(|c| !c.contains("error=")),
        "{challenges:?}"
    );
    let reader = get_with_token(&format!("{base}/admin"), &bearer).await;
    reader.assert_error(403, "Bearer", "insufficient_scope");
    let admin = issuer.token(AUD, json!({"scope": "admin"}));
    let reply = get_with_token(&format!("{base}/admin"), &admin).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // A token for another audience is not for this API.
    let elsewhere = issuer.token("https://other.example", json!({}));
    get_with_token(&hello, &elsewhere)
        .await
        .assert_error(401, "Bearer", "invalid_token");
}

#[cfg(feature = "tonic")]
#[tokio::test]
async fn the_grpc_example_names_its_caller_and_refuses_calls_without_a_token() {
    use tokio::net::TcpListener;
    use tonic::Code;
    use tonic::transport::server::TcpIncoming;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let issuer = TestIssuer::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let guard = grpc_api::guard(&issuer.issuer, AUD, &base).await.unwrap();
    tokio::spawn(grpc_api::server(&guard).serve_with_incoming(TcpIncoming::from(listener)));
    let channel = tonic::transport::Channel::from_shared(base.clone()).unwrap();
    let mut client = HealthClient::new(channel.connect().await.unwrap());
    let check = |authorization: Option<String>| {
        let mut request = tonic::Request::new(HealthCheckRequest::default());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().unwrap());
        }
        request
    };

    let token = issuer.token(AUD, json!({}));
    let response = client.check(check(Some(format!("Bearer {token}")))).await;
    let response = response.unwrap();
    assert_eq!(response.metadata().get("x-subject").unwrap(), "alice");

    let refused = client.check(check(None)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let challenge = refused.metadata().get("www-authenticate").unwrap();
    assert!(challenge.to_str().unwrap().starts_with("Bearer"));
    let elsewhere = issuer.token("https://other.example", json!({}));
    let refused = client
        .check(check(Some(format!("Bearer {elsewhere}"))))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
}

/// The interop server's flags, as its command line gives them.
#[derive(clap::Parser)]
struct ResourceServerCli {
    #[command(flatten)]
    guard: resource_server_flags::GuardFlags,
}

/// `examples/resource_server`'s HTTP app, built from its own flags and served: returns the
/// guard and the base URL.
async fn resource_server(
    issuer: &TestIssuer,
    flags: &[&str],
    public_url: impl FnOnce(&str) -> Option<String>,
) -> (tower_oauth_guard::OAuthGuard, String) {
    use clap::Parser as _;
    let (listener, base) = bind().await;
    let local = listener.local_addr().unwrap();
    let mut args = vec![
        "resource_server".to_owned(),
        "--issuer".into(),
        issuer.issuer.clone(),
        "--audience".into(),
        AUD.into(),
        "--jwks".into(),
        issuer.jwks_url(),
    ];
    args.extend(flags.iter().map(|s| s.to_string()));
    if let Some(url) = public_url(&base) {
        args.extend(["--public-url".to_owned(), url]);
    }
    let cli = ResourceServerCli::try_parse_from(args).unwrap();
    let guard = cli
        .guard
        .builder(local, false, false, |d| d)
        .unwrap()
        .build()
        .await
        .unwrap();
    let app = resource_server_routes::app(&guard, guard.layer()).unwrap();
    serve_on(listener, app);
    (guard, base)
}

#[tokio::test]
async fn the_resource_server_serves_its_metadata_and_names_it_in_every_challenge() {
    let issuer = TestIssuer::start().await;
    let (_guard, base) = resource_server(&issuer, &[], |_| None).await;
    // Its public URL defaults to the listen address: the resource, at the root.
    let metadata_url = format!("{base}/.well-known/oauth-protected-resource");
    let reply = send("GET", &metadata_url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    assert_eq!(reply.headers["cache-control"], "public, max-age=3600");
    let doc = reply.json();
    assert_eq!(doc["resource"], base);
    assert_eq!(doc["authorization_servers"], json!([issuer.issuer]));
    assert_eq!(doc["scopes_supported"], json!(["read", "write", "admin"]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    // --dpop allowed (its default): DPoP-bound tokens supported, not required.
    assert_eq!(doc["dpop_bound_access_tokens_required"], false);
    assert!(doc["dpop_signing_alg_values_supported"].is_array());
    // No client certificates asked for: no mTLS claim.
    assert!(
        doc.get("tls_client_certificate_bound_access_tokens")
            .is_none()
    );

    let rm = format!(r#"resource_metadata="{metadata_url}""#);
    let anonymous = send("GET", &format!("{base}/api/whoami"), &[]).await;
    assert_eq!(anonymous.status, 401);
    let challenges = anonymous.www_authenticate();
    assert_eq!(challenges.len(), 2);
    assert!(challenges.iter().all(|c| c.contains(&rm)), "{challenges:?}");
    let invalid = get_with_token(&format!("{base}/api/whoami"), "x.y.z").await;
    assert!(invalid.www_authenticate()[0].ends_with(&rm));
    let reader = issuer.token(AUD, json!({"scope": "read"}));
    let forbidden = get_with_token(&format!("{base}/api/admin"), &reader).await;
    assert_eq!(forbidden.status, 403);
    assert_eq!(
        forbidden.www_authenticate(),
        [format!(
            r#"Bearer error="insufficient_scope", error_description="the token lacks a required scope", scope="admin", {rm}"#
        )]
    );
    // The unguarded route stays unguarded.
    assert_eq!(
        send("GET", &format!("{base}/health"), &[]).await.status,
        200
    );
}

#[tokio::test]
async fn the_resource_servers_stepup_route_needs_mfa_within_300_seconds() {
    let issuer = TestIssuer::start().await;
    let (_guard, base) = resource_server(&issuer, &[], |_| None).await;
    let url = format!("{base}/api/stepup");
    let metadata_url = format!("{base}/.well-known/oauth-protected-resource");
    let t = now();
    // Clear of the 300 s boundary, since this server reads the system clock.
    let fresh = issuer.token(AUD, json!({"acr": "urn:example:mfa", "auth_time": t - 10}));
    let reply = get_with_token(&url, &fresh).await;
    assert_eq!(reply.status, 200, "{:?}", reply.www_authenticate());
    assert_eq!(reply.json()["sub"], "alice");
    for (claims, description) in [
        (
            json!({"acr": "urn:example:mfa", "auth_time": t - 1000}),
            "a more recent authentication is required",
        ),
        (
            json!({"acr": "urn:example:mfa"}),
            "a more recent authentication is required",
        ),
        (
            json!({"acr": "urn:example:pwd", "auth_time": t - 10}),
            "a different authentication level is required",
        ),
        (
            json!({"auth_time": t - 10}),
            "a different authentication level is required",
        ),
    ] {
        let reply = get_with_token(&url, &issuer.token(AUD, claims.clone())).await;
        assert_eq!(reply.status, 401, "{claims}");
        assert_eq!(
            reply.www_authenticate(),
            [format!(
                r#"Bearer error="insufficient_user_authentication", error_description="{description}", acr_values="urn:example:mfa", max_age=300, resource_metadata="{metadata_url}""#
            )],
            "{claims}"
        );
    }
}

#[tokio::test]
async fn the_resource_servers_public_url_with_a_path_is_its_resource() {
    let issuer = TestIssuer::start().await;
    let (guard, base) = resource_server(&issuer, &["--dpop", "off"], |base| {
        Some(format!("{base}/v1"))
    })
    .await;
    let metadata_url = format!("{base}/.well-known/oauth-protected-resource/v1");
    assert_eq!(
        guard.challenge_params().resource_metadata.as_deref(),
        Some(metadata_url.as_str())
    );
    let reply = send("GET", &metadata_url, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["resource"], format!("{base}/v1"));
    // DPoP off: not advertised.
    assert!(
        reply
            .json()
            .get("dpop_signing_alg_values_supported")
            .is_none()
    );
    let anonymous = send("GET", &format!("{base}/api/whoami"), &[]).await;
    assert_eq!(
        anonymous.www_authenticate(),
        [format!(r#"Bearer resource_metadata="{metadata_url}""#)]
    );
}

#[tokio::test]
async fn the_resource_server_without_a_usable_public_url_has_no_metadata() {
    use clap::Parser as _;
    let issuer = TestIssuer::start().await;
    let parse = |extra: &[&str]| {
        let mut args = vec![
            "resource_server",
            "--issuer",
            &issuer.issuer,
            "--audience",
            AUD,
            "--jwks",
            "jwks.json",
        ];
        args.extend_from_slice(extra);
        ResourceServerCli::try_parse_from(args).unwrap().guard
    };
    // Plain http on a public address cannot be a resource identifier; behind a proxy the
    // public URL comes with each request. The server still starts, without metadata.
    let public: std::net::SocketAddr = "0.0.0.0:8080".parse().unwrap();
    assert_eq!(
        parse(&[]).resource(public, false).as_deref(),
        Some("http://0.0.0.0:8080")
    );
    assert!(parse(&[]).builder(public, false, false, |d| d).is_ok());
    let proxied = parse(&[
        "--trust-forwarded",
        "127.0.0.2",
        "--forwarded-headers",
        "forwarded",
    ]);
    assert_eq!(proxied.resource(public, false), None);
    // With TLS, the listen address is an https identifier.
    assert_eq!(
        parse(&[])
            .resource("127.0.0.1:8443".parse().unwrap(), true)
            .as_deref(),
        Some("https://127.0.0.1:8443")
    );
}
