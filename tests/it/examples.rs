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
