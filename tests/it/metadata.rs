//! Protected resource metadata (RFC 9728) over real HTTP: the document the guard writes from its
//! own configuration, its well-known URL (§3.1), the headers browsers need, and
//! `resource_metadata` in every challenge (§5.1).

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tower_oauth_guard::{
    Algorithm, BaseUrl, BuildError, Dpop, DpopMode, DpopNonces, Issuer, KeySet, MetadataError,
    Mtls, MtlsMode, NonceSecret, OAuthGuard, OAuthGuardBuilder, ProofPolicy, PublicUri,
    ResourceError,
};

use crate::support::*;

const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// A key set that verifies nothing these tests sign: the document does not depend on keys.
fn keys() -> KeySet {
    let key = SigningKey::generate("k");
    KeySet::from_json(json!({ "keys": [key.jwk] }).to_string().as_bytes()).unwrap()
}

fn issuer(name: &str) -> Issuer {
    Issuer::new(name).jwks(keys())
}

fn public() -> PublicUri {
    PublicUri::fixed(BaseUrl::parse("https://api.example").unwrap())
}

async fn document(builder: OAuthGuardBuilder) -> Value {
    let guard = builder.build().await.unwrap();
    serde_json::from_slice(guard.metadata().build().unwrap().json()).unwrap()
}

/// A guard for `resource` (a path under the base URL of `listener`), its app with one protected
/// route and the document, served.
async fn serve_guarded(
    builder: impl FnOnce(String) -> OAuthGuardBuilder,
    path: &str,
) -> (OAuthGuard, String, String) {
    let (listener, base) = bind().await;
    let resource = format!("{base}{path}");
    let guard = builder(resource.clone()).build().await.unwrap();
    let metadata = guard
        .metadata()
        .scopes_supported(["read", "admin"])
        .build()
        .unwrap();
    let app = Router::new()
        .route("/api", get(|| async { "ok" }))
        .route(
            "/admin",
            get(|| async { "ok" }).layer(guard.layer().require_scope("admin")),
        )
        .layer(guard.layer())
        .route_service(metadata.path(), metadata.service());
    serve_on(listener, app);
    (guard, base, resource)
}

#[tokio::test]
async fn the_document_is_served_at_its_well_known_url_with_cache_and_cors_headers() {
    let test_issuer = TestIssuer::start().await;
    let (_guard, base, resource) = serve_guarded(
        |resource| test_issuer.guard("unused").resource(resource).realm("api"),
        "/v1",
    )
    .await;
    let url = format!("{base}{WELL_KNOWN}/v1");
    let reply = send("GET", &url, &[("origin", "https://app.example")]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Byte for byte: RFC 9728 §2 members in order, only those the guard can vouch for.
    assert_eq!(
        reply.body,
        format!(
            r#"{{"resource":"{resource}","authorization_servers":["{}"],"scopes_supported":["read","admin"],"bearer_methods_supported":["header"]}}"#,
            test_issuer.issuer
        )
    );
    assert_eq!(reply.headers["content-type"], "application/json");
    assert_eq!(reply.headers["cache-control"], "public, max-age=3600");
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    assert_eq!(
        reply.headers["content-length"],
        reply.body.len().to_string()
    );

    let head = send("HEAD", &url, &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    assert_eq!(head.headers["content-length"], reply.body.len().to_string());
    assert_eq!(head.headers["content-type"], "application/json");

    // A browser's preflight, for a script that adds a header of its own.
    let preflight = send(
        "OPTIONS",
        &url,
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "mcp-protocol-version"),
        ],
    )
    .await;
    assert_eq!(preflight.status, 204);
    assert_eq!(preflight.headers["access-control-allow-origin"], "*");
    assert_eq!(
        preflight.headers["access-control-allow-methods"],
        "GET, HEAD"
    );
    assert_eq!(
        preflight.headers["access-control-allow-headers"],
        "mcp-protocol-version"
    );

    for method in ["POST", "PUT", "DELETE"] {
        let refused = send(method, &url, &[]).await;
        assert_eq!(refused.status, 405, "{method}");
        assert_eq!(refused.headers["allow"], "GET, HEAD, OPTIONS", "{method}");
    }
    // The document is public; the API next to it is not.
    assert_eq!(send("GET", &format!("{base}/api"), &[]).await.status, 401);
    // Only the §3.1 URL serves it: not the root form, not the path appended after it.
    assert_eq!(
        send("GET", &format!("{base}{WELL_KNOWN}"), &[])
            .await
            .status,
        401
    );
    assert_eq!(
        send("GET", &format!("{base}/v1{WELL_KNOWN}"), &[])
            .await
            .status,
        401
    );
}

/// A client starting from the resource identifier finds the document where §3.1 puts it, and
/// its `resource` is the identifier exactly (§3.3), with or without a path or trailing slash.
#[tokio::test]
async fn the_well_known_url_inserts_the_suffix_between_host_and_path() {
    let test_issuer = TestIssuer::start().await;
    for (path, well_known) in [
        ("", WELL_KNOWN.to_owned()),
        ("/", WELL_KNOWN.to_owned()),
        ("/v1", format!("{WELL_KNOWN}/v1")),
        ("/v1/", format!("{WELL_KNOWN}/v1")),
        ("/a/b", format!("{WELL_KNOWN}/a/b")),
    ] {
        let (guard, base, resource) = serve_guarded(
            |resource| test_issuer.guard("unused").resource(resource),
            path,
        )
        .await;
        let metadata_url = format!("{base}{well_known}");
        assert_eq!(
            guard.challenge_params().resource_metadata.as_deref(),
            Some(metadata_url.as_str()),
            "{path:?}"
        );
        let reply = send("GET", &metadata_url, &[]).await;
        assert_eq!(reply.status, 200, "{path:?}: {}", reply.body);
        assert_eq!(reply.json()["resource"], resource, "{path:?}");
        // The challenge of the API names the same URL, which a client follows.
        let challenge = send("GET", &format!("{base}/api"), &[]).await;
        assert_eq!(
            challenge.www_authenticate(),
            [format!(r#"Bearer resource_metadata="{metadata_url}""#)],
            "{path:?}"
        );
    }
}

#[tokio::test]
async fn dpop_members_follow_every_issuers_mode() {
    let doc = |builder: OAuthGuardBuilder| document(builder.resource("https://api.example"));
    // Off: no DPoP member at all.
    let off = doc(OAuthGuard::builder().trust(issuer("https://i.example"))).await;
    assert!(off.get("dpop_signing_alg_values_supported").is_none());
    assert!(off.get("dpop_bound_access_tokens_required").is_none());
    // Allowed: the proof algorithms, not required.
    let allowed = doc(OAuthGuard::builder()
        .trust(issuer("https://i.example"))
        .dpop(Dpop::allowed(public()).proof_policy(ProofPolicy {
            algorithms: vec![Algorithm::ES256, Algorithm::EdDSA],
            ..ProofPolicy::default()
        })))
    .await;
    assert_eq!(
        allowed["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
    assert_eq!(allowed["dpop_bound_access_tokens_required"], false);
    // Required for the guard and every issuer.
    let required = doc(OAuthGuard::builder()
        .trust(issuer("https://i.example"))
        .trust(issuer("https://j.example").dpop(DpopMode::Required))
        .dpop(Dpop::required(public())))
    .await;
    assert_eq!(required["dpop_bound_access_tokens_required"], true);
    let defaults: Vec<Value> = ProofPolicy::default()
        .algorithms
        .iter()
        .map(|a| json!(a.name()))
        .collect();
    assert_eq!(
        required["dpop_signing_alg_values_supported"],
        Value::Array(defaults)
    );
    // Required by the guard, but one issuer's tokens may be bearer tokens: not required.
    let mixed = doc(OAuthGuard::builder()
        .trust(issuer("https://i.example"))
        .trust(issuer("https://legacy.example").dpop(DpopMode::Allowed))
        .dpop(Dpop::required(public())))
    .await;
    assert_eq!(mixed["dpop_bound_access_tokens_required"], false);
    // Settings present, but every issuer turns DPoP off: nothing to advertise.
    let all_off = doc(OAuthGuard::builder()
        .trust(issuer("https://i.example").dpop(DpopMode::Disabled))
        .dpop(Dpop::allowed(public())))
    .await;
    assert!(all_off.get("dpop_signing_alg_values_supported").is_none());
    assert!(all_off.get("dpop_bound_access_tokens_required").is_none());
    // One issuer may bind to DPoP while the others stay off.
    let one = doc(OAuthGuard::builder()
        .trust(issuer("https://i.example").dpop(DpopMode::Disabled))
        .trust(issuer("https://j.example").dpop(DpopMode::Required))
        .dpop(Dpop::allowed(public())))
    .await;
    assert_eq!(one["dpop_bound_access_tokens_required"], false);
    assert!(one["dpop_signing_alg_values_supported"].is_array());
}

#[tokio::test]
async fn mtls_multiple_issuers_and_extras_are_described() {
    let base = || {
        OAuthGuard::builder()
            .resource("https://api.example.com/v1")
            .trust(issuer("https://b.example"))
            .trust(issuer("https://a.example"))
    };
    let plain = document(base()).await;
    // Issuers in the order they were trusted; no mTLS member unless mTLS is configured.
    assert_eq!(
        plain["authorization_servers"],
        json!(["https://b.example", "https://a.example"])
    );
    assert!(
        plain
            .get("tls_client_certificate_bound_access_tokens")
            .is_none()
    );
    assert!(plain.get("resource_signing_alg_values_supported").is_none());
    assert!(plain.get("jwks_uri").is_none());
    let mtls = document(base().mtls(Mtls::allowed())).await;
    assert_eq!(mtls["tls_client_certificate_bound_access_tokens"], true);
    let issuer_mtls = document(
        OAuthGuard::builder()
            .resource("https://api.example.com/v1")
            .trust(issuer("https://a.example").mtls(MtlsMode::Required)),
    )
    .await;
    assert_eq!(
        issuer_mtls["tls_client_certificate_bound_access_tokens"],
        true
    );

    let guard = base().mtls(Mtls::required()).build().await.unwrap();
    let metadata = guard
        .metadata()
        .scopes_supported(["read", "write"])
        .jwks_uri("https://api.example.com/jwks")
        .resource_name("Example API")
        .resource_documentation("https://docs.example.com/api")
        .resource_policy_uri("https://example.com/privacy")
        .resource_tos_uri("https://example.com/tos")
        .member("resource_name#fr", "API d'exemple")
        .member("authorization_details_types_supported", json!(["payment"]))
        .build()
        .unwrap();
    assert_eq!(
        std::str::from_utf8(metadata.json()).unwrap(),
        concat!(
            r#"{"resource":"https://api.example.com/v1","#,
            r#""authorization_servers":["https://b.example","https://a.example"],"#,
            r#""jwks_uri":"https://api.example.com/jwks","scopes_supported":["read","write"],"#,
            r#""bearer_methods_supported":["header"],"resource_name":"Example API","#,
            r#""resource_documentation":"https://docs.example.com/api","#,
            r#""resource_policy_uri":"https://example.com/privacy","#,
            r#""resource_tos_uri":"https://example.com/tos","#,
            r#""tls_client_certificate_bound_access_tokens":true,"#,
            r#""authorization_details_types_supported":["payment"],"#,
            r#""resource_name#fr":"API d'exemple"}"#
        )
    );
    assert_eq!(serde_json::to_vec(&metadata).unwrap(), metadata.json());
    assert_eq!(
        metadata.url(),
        "https://api.example.com/.well-known/oauth-protected-resource/v1"
    );
    // What the guard writes cannot be written over.
    for member in [
        "resource",
        "authorization_servers",
        "dpop_bound_access_tokens_required",
    ] {
        let result = guard.metadata().member(member, true).build();
        assert!(
            matches!(&result, Err(MetadataError::ReservedMember(m)) if m == member),
            "{member}"
        );
    }
}

#[tokio::test]
async fn a_resource_that_is_not_an_identifier_fails_the_build() {
    for (resource, error) in [
        ("http://api.example", ResourceError::NotHttps),
        ("https://api.example/v1?tenant=a", ResourceError::Query),
        ("https://api.example/v1#x", ResourceError::Fragment),
    ] {
        let result = OAuthGuard::builder()
            .resource(resource)
            .trust(issuer("https://i.example"))
            .build()
            .await;
        assert!(
            matches!(&result, Err(BuildError::InvalidResource(e)) if *e == error),
            "{resource}: {result:?}"
        );
    }
    // No resource: no metadata, no parameter, and an issuer needs its own audience.
    let guard = OAuthGuard::builder()
        .trust(issuer("https://i.example").audience("api"))
        .build()
        .await
        .unwrap();
    assert!(matches!(
        guard.metadata().build(),
        Err(MetadataError::NoResource)
    ));
    assert_eq!(guard.challenge_params().resource_metadata, None);
    let no_audience = OAuthGuard::builder()
        .trust(issuer("https://i.example"))
        .build()
        .await;
    assert!(matches!(no_audience, Err(BuildError::MissingAudience(_))));
}

/// RFC 8707: with a resource and no audience of its own, an issuer's tokens must name the
/// resource; an issuer with audiences keeps exactly those.
#[tokio::test]
async fn the_resource_is_the_audience_of_issuers_without_one() {
    let test_issuer = TestIssuer::start().await;
    let (listener, base) = bind().await;
    let resource = format!("{base}/v1");
    let guard = OAuthGuard::builder()
        .resource(&resource)
        .trust(Issuer::new(&test_issuer.issuer).jwks_url(test_issuer.jwks_url()))
        .build()
        .await
        .unwrap();
    serve_on(
        listener,
        Router::new()
            .route("/v1/me", get(|| async { "ok" }))
            .layer(guard.layer()),
    );
    let url = format!("{base}/v1/me");
    let for_us = test_issuer.token(&resource, json!({}));
    assert_eq!(get_with_token(&url, &for_us).await.status, 200);
    let metadata_url = format!("{base}{WELL_KNOWN}/v1");
    for other in ["https://other.example", &base, &format!("{resource}/")] {
        let elsewhere = test_issuer.token(other, json!({}));
        let reply = get_with_token(&url, &elsewhere).await;
        assert_eq!(
            reply.www_authenticate(),
            [format!(
                r#"Bearer error="invalid_token", error_description="token not intended for this resource", resource_metadata="{metadata_url}""#
            )],
            "{other}"
        );
    }

    // Explicit audiences are not widened by the resource.
    let (listener, base) = bind().await;
    let guard = OAuthGuard::builder()
        .resource(format!("{base}/v1"))
        .trust(
            Issuer::new(&test_issuer.issuer)
                .audience("api://default")
                .jwks_url(test_issuer.jwks_url()),
        )
        .build()
        .await
        .unwrap();
    serve_on(
        listener,
        Router::new()
            .route("/v1/me", get(|| async { "ok" }))
            .layer(guard.layer()),
    );
    let url = format!("{base}/v1/me");
    let for_resource = test_issuer.token(&format!("{base}/v1"), json!({}));
    get_with_token(&url, &for_resource)
        .await
        .assert_error(401, "Bearer", "invalid_token");
    let for_audience = test_issuer.token("api://default", json!({}));
    assert_eq!(get_with_token(&url, &for_audience).await.status, 200);
}

/// Every challenge the guard writes, whatever the scheme and the error, names the same
/// metadata URL (RFC 9728 §5.1), after its own parameters and before DPoP's `algs`.
#[tokio::test]
async fn every_challenge_names_the_same_metadata_url() {
    let test_issuer = TestIssuer::start().await;
    let (listener, base) = bind().await;
    let resource = format!("{base}/v1");
    let metadata_url = format!("{base}{WELL_KNOWN}/v1");
    let rm = format!(r#"resource_metadata="{metadata_url}""#);
    let secret = NonceSecret::from_bytes(&[7; 32]).unwrap();
    let guard = test_issuer
        .guard(&resource)
        .resource(&resource)
        .realm("api")
        .dpop(
            Dpop::allowed(PublicUri::fixed(BaseUrl::parse(&base).unwrap())).proof_policy(
                ProofPolicy {
                    algorithms: vec![Algorithm::ES256],
                    ..ProofPolicy::default()
                },
            ),
        )
        .build()
        .await
        .unwrap();
    let nonce_guard = test_issuer
        .guard(&resource)
        .resource(&resource)
        .realm("api")
        .dpop(
            Dpop::allowed(PublicUri::fixed(BaseUrl::parse(&base).unwrap()))
                .nonces(DpopNonces::new(secret))
                .proof_policy(ProofPolicy {
                    algorithms: vec![Algorithm::ES256],
                    ..ProofPolicy::default()
                }),
        )
        .build()
        .await
        .unwrap();
    serve_on(
        listener,
        Router::new()
            .route(
                "/v1/admin",
                get(|| async { "ok" }).layer(guard.layer().require_scope("admin")),
            )
            .route("/v1/me", get(|| async { "ok" }).layer(guard.layer()))
            .route(
                "/v1/nonce",
                get(|| async { "ok" }).layer(nonce_guard.layer()),
            ),
    );
    let me = format!("{base}/v1/me");
    let key = DpopKey::generate();
    let bound = test_issuer.token(&resource, json!({"cnf": {"jkt": key.jkt}}));
    let bearer = test_issuer.token(&resource, json!({}));
    let expired = test_issuer.token(&resource, json!({"exp": now() - 3600, "iat": now() - 7200}));
    let dpop_auth = format!("DPoP {bound}");

    // No credentials: one bare challenge per scheme.
    let anonymous = send("GET", &me, &[]).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.www_authenticate(),
        [
            format!(r#"Bearer realm="api", {rm}"#),
            format!(r#"DPoP realm="api", {rm}, algs="ES256""#),
        ]
    );
    // Each kind of refusal, byte for byte.
    let cases: Vec<(&str, Reply, String)> = vec![
        (
            "malformed bearer token",
            get_with_token(&me, "not-a-jwt").await,
            format!(
                r#"Bearer realm="api", error="invalid_token", error_description="malformed token", {rm}"#
            ),
        ),
        (
            "expired bearer token",
            get_with_token(&me, &expired).await,
            format!(
                r#"Bearer realm="api", error="invalid_token", error_description="token expired", {rm}"#
            ),
        ),
        (
            "bound token as bearer",
            get_with_token(&me, &bound).await,
            format!(
                r#"DPoP realm="api", error="invalid_token", error_description="DPoP-bound token used as a bearer token", {rm}, algs="ES256""#
            ),
        ),
        (
            "DPoP without a proof",
            send("GET", &me, &[("authorization", &dpop_auth)]).await,
            format!(
                r#"DPoP realm="api", error="invalid_dpop_proof", error_description="DPoP proof missing", {rm}, algs="ES256""#
            ),
        ),
        (
            "DPoP without its nonce",
            send(
                "GET",
                &format!("{base}/v1/nonce"),
                &[
                    ("authorization", &dpop_auth),
                    (
                        "dpop",
                        &key.proof("GET", &format!("{base}/v1/nonce"), Some(&bound), None),
                    ),
                ],
            )
            .await,
            format!(
                r#"DPoP realm="api", error="use_dpop_nonce", error_description="resource server requires nonce in DPoP proof", {rm}, algs="ES256""#
            ),
        ),
        (
            "scope missing",
            get_with_token(&format!("{base}/v1/admin"), &bearer).await,
            format!(
                r#"Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope", scope="admin", {rm}"#
            ),
        ),
    ];
    for (what, reply, expected) in cases {
        let challenges = reply.www_authenticate();
        assert_eq!(challenges, [expected], "{what}");
        let expected_status = if what == "scope missing" { 403 } else { 401 };
        assert_eq!(reply.status.as_u16(), expected_status, "{what}");
    }
    // And what it names is the document of this resource.
    let served = guard.metadata().build().unwrap();
    assert_eq!(served.url(), metadata_url);
    assert_eq!(served.resource().as_str(), resource);
}

#[tokio::test]
async fn resource_metadata_never_comes_from_the_request() {
    // Host header injection: whatever Host, Forwarded or X-Forwarded-* the request carries,
    // the challenge names the configured metadata URL, and the document the configured resource.
    let test_issuer = TestIssuer::start().await;
    let (_guard, base, resource) = serve_guarded(
        |resource| test_issuer.guard("unused").resource(resource).realm("api"),
        "/v1",
    )
    .await;
    let expected = format!(r#"resource_metadata="{base}{WELL_KNOWN}/v1""#);
    let spoofed: [&[(&str, &str)]; 4] = [
        &[("host", "evil.example")],
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-proto", "https"),
        ],
        &[("forwarded", "host=evil.example;proto=https")],
        &[
            ("host", "evil.example:443"),
            ("x-forwarded-prefix", "/evil"),
        ],
    ];
    for headers in spoofed {
        for path in ["/api", "/admin"] {
            let reply = send("GET", &format!("{base}{path}"), headers).await;
            if reply.status == 400 {
                continue; // a Host the server refuses outright never reaches the guard
            }
            assert_eq!(reply.status, 401, "{headers:?}");
            let challenge = reply.www_authenticate().join(", ");
            assert!(challenge.contains(&expected), "{headers:?}: {challenge}");
            assert!(!challenge.contains("evil"), "{headers:?}: {challenge}");
        }
        let reply = send("GET", &format!("{base}{WELL_KNOWN}/v1"), headers).await;
        if reply.status == 400 {
            continue;
        }
        assert_eq!(reply.status, 200);
        assert!(!reply.body.contains("evil"), "{}", reply.body);
        assert!(reply.body.contains(&format!(r#""resource":"{resource}""#)));
    }
    // Odd resource identifiers: refused, or a metadata URL that cannot break out of the
    // challenge's quoted string.
    for odd in [
        "https://api.example/a\"b",
        "https://api.example/a\\b",
        "https://api.example/a b",
        "https://api.example/a\r\nb",
        "https://user:pw@api.example/",
        "http://localhost@evil.example/",
        "http://127.0.0.1.evil.example/",
        "http://[::1]@evil.example/",
        "https://api.example/%22",
    ] {
        if let Ok(id) = tower_oauth_guard::ResourceIdentifier::parse(odd) {
            let url = id.metadata_url();
            assert!(
                !url.contains(['"', '\\', ' ', '\r', '\n', '@']),
                "{odd} -> {url}"
            );
            assert!(!url.contains("evil"), "{odd} -> {url}");
        }
    }
}
