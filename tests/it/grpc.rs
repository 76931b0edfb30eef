//! The guard in front of a real tonic server, called by a real tonic client: gRPC
//! statuses instead of HTTP 401s, DPoP over gRPC, mTLS through tonic's own TLS.
#![cfg(all(feature = "tonic", any(feature = "aws-lc-rs", feature = "rust-crypto")))]

#[allow(dead_code)]
#[path = "../../examples/resource_server/grpc.rs"]
mod example;

use std::net::SocketAddr;

use crate::support::*;
use serde_json::json;
use tokio::net::TcpListener;
use tonic::codegen::tokio_stream::StreamExt;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower_layer::Layer;
use tower_oauth_guard::{BaseUrl, MemoryReplayStore, NonceSecret};
use tower_oauth_guard::{
    Dpop, DpopNonces, OAuthGuard, OAuthGuardBuilder, OAuthGuardLayer, PublicUri,
};

const AUD: &str = "https://grpc.example";
const CHECK: &str = "/grpc.health.v1.Health/Check";
const WATCH: &str = "/grpc.health.v1.Health/Watch";

/// DPoP allowed; `htu`'s origin is the `:authority` the client sent (HTTP/2), which these
/// tests know only once the server is bound. Fixed public URLs have their own test.
fn builder(issuer: &TestIssuer) -> OAuthGuardBuilder {
    issuer.guard(AUD).realm("grpc").dpop(dpop())
}

/// DPoP allowed, `htu`'s origin from `:authority`.
fn dpop() -> Dpop {
    Dpop::allowed(PublicUri::DangerousHostHeader)
}

/// Serves the example's health service behind `guard.layer()` for the whole server.
async fn serve_whole(guard: &OAuthGuard) -> SocketAddr {
    serve_behind(guard.layer()).await
}

/// Serves the example's health service behind `layer` for the whole server.
async fn serve_behind(layer: OAuthGuardLayer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Server::builder()
        .layer(layer)
        .add_service(example::health_service());
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));
    addr
}

/// Every `www-authenticate` of a refusal, in order.
fn challenges(status: &Status) -> Vec<String> {
    let values = status.metadata().get_all("www-authenticate").iter();
    values.map(|v| v.to_str().unwrap().to_owned()).collect()
}

async fn client(addr: SocketAddr) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

/// A `Check` request for the whole server carrying `metadata`.
fn check_request(metadata: &[(&'static str, String)]) -> Request<HealthCheckRequest> {
    let mut request = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    request
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

fn dpop_auth(token: &str, proof: String) -> [(&'static str, String); 2] {
    [("authorization", format!("DPoP {token}")), ("dpop", proof)]
}

fn metadata_str<'a>(status: &'a Status, name: &str) -> &'a str {
    status
        .metadata()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", status.metadata()))
        .to_str()
        .unwrap()
}

#[track_caller]
fn assert_ok(reply: &Result<tonic::Response<HealthCheckResponse>, Status>, binding: &str) {
    let response = reply.as_ref().unwrap_or_else(|s| panic!("refused: {s:?}"));
    assert_eq!(response.get_ref().status, ServingStatus::Serving as i32);
    // The handler read the AccessToken the guard put into the request extensions.
    assert_eq!(response.metadata().get("x-subject").unwrap(), "alice");
    assert_eq!(response.metadata().get("x-client-id").unwrap(), "client-1");
    assert_eq!(response.metadata().get("x-binding").unwrap(), binding);
}

#[track_caller]
fn assert_refused(
    reply: &Result<tonic::Response<HealthCheckResponse>, Status>,
    code: Code,
    challenge: &str,
) -> Status {
    let status = reply
        .as_ref()
        .expect_err("the call should be refused")
        .clone();
    assert_eq!(status.code(), code, "{status:?}");
    let www = metadata_str(&status, "www-authenticate");
    assert!(www.contains(challenge), "{challenge} not in {www}");
    status
}

#[tokio::test]
async fn valid_bearer_token_reaches_the_handler() {
    let issuer = TestIssuer::start().await;
    let guard = builder(&issuer).build().await.unwrap();
    let mut client = client(serve_whole(&guard).await).await;
    let token = issuer.token(AUD, json!({}));
    let reply = client.check(check_request(&[bearer(&token)])).await;
    assert_ok(&reply, "bearer");
    assert_eq!(reply.unwrap().metadata().get("x-scope").unwrap(), "read");
}

#[tokio::test]
async fn missing_token_is_unauthenticated_with_a_challenge() {
    let issuer = TestIssuer::start().await;
    let guard = builder(&issuer).build().await.unwrap();
    let mut client = client(serve_whole(&guard).await).await;
    let reply = client.check(check_request(&[])).await;
    let status = assert_refused(&reply, Code::Unauthenticated, "Bearer realm=\"grpc\"");
    // Both accepted schemes are offered, without an error code (RFC 6750 §3.1).
    let challenges = challenges(&status);
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(challenges[1].starts_with("DPoP realm=\"grpc\", algs=\""));
    assert!(challenges.iter().all(|c| !c.contains("error=")));
}

/// Behind an optional layer, a handler that needs a token (`require_access_token`) answers an
/// anonymous call with the guard's own status and challenges, as the required layer does.
#[tokio::test]
async fn an_anonymous_call_behind_an_optional_layer_gets_the_guards_challenge() {
    let issuer = TestIssuer::start().await;
    let guard = builder(&issuer).build().await.unwrap();
    let addr = serve_behind(guard.layer().optional()).await;

    let required = client(serve_whole(&guard).await)
        .await
        .check(check_request(&[]))
        .await;
    let required = assert_refused(&required, Code::Unauthenticated, "Bearer realm=\"grpc\"");
    let reply = client(addr).await.check(check_request(&[])).await;
    let anonymous = assert_refused(&reply, Code::Unauthenticated, "Bearer realm=\"grpc\"");
    assert_eq!(challenges(&anonymous), challenges(&required));
    assert_eq!(challenges(&anonymous).len(), 2);
    // A token is still served.
    let token = issuer.token(AUD, json!({}));
    assert_ok(
        &client(addr)
            .await
            .check(check_request(&[bearer(&token)]))
            .await,
        "bearer",
    );
}

/// A handler that needs a token on a service no guard layer wraps: a wiring mistake.
#[test]
fn require_access_token_without_a_guard_layer_is_internal() {
    let request = Request::new(());
    let status = tower_oauth_guard::tonic::require_access_token(&request).unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
}

#[tokio::test]
async fn invalid_tokens_are_unauthenticated() {
    let issuer = TestIssuer::start().await;
    let guard = builder(&issuer).build().await.unwrap();
    let mut client = client(serve_whole(&guard).await).await;
    let reply = client.check(check_request(&[bearer("not.a.jwt")])).await;
    let status = assert_refused(&reply, Code::Unauthenticated, "error=\"invalid_token\"");
    assert!(!status.message().is_empty());

    let other_audience = issuer.token("https://other.example", json!({}));
    let reply = client
        .check(check_request(&[bearer(&other_audience)]))
        .await;
    assert_refused(&reply, Code::Unauthenticated, "error=\"invalid_token\"");
}

#[tokio::test]
async fn guard_on_one_service_enforces_its_scope() {
    let issuer = TestIssuer::start().await;
    let guard = builder(&issuer).build().await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // The guarded service keeps its gRPC name, so add_service routes to it.
    let guarded = guard
        .layer()
        .require_scope("health")
        .layer(example::health_service());
    tokio::spawn(
        Server::builder()
            .add_service(guarded)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let mut client = client(addr).await;

    let read_only = issuer.token(AUD, json!({"scope": "read"}));
    let reply = client.check(check_request(&[bearer(&read_only)])).await;
    let status = assert_refused(
        &reply,
        Code::PermissionDenied,
        "error=\"insufficient_scope\"",
    );
    assert!(metadata_str(&status, "www-authenticate").contains("scope=\"health\""));

    let allowed = issuer.token(AUD, json!({"scope": "read health"}));
    let reply = client.check(check_request(&[bearer(&allowed)])).await;
    assert_ok(&reply, "bearer");

    let reply = client.check(check_request(&[])).await;
    assert_refused(&reply, Code::Unauthenticated, "Bearer");
}

#[tokio::test]
async fn dpop_bound_token_needs_a_fresh_proof_for_this_method() {
    let issuer = TestIssuer::start().await;
    let guard = builder(&issuer).build().await.unwrap();
    let addr = serve_whole(&guard).await;
    let mut client = client(addr).await;
    let key = DpopKey::generate();
    let token = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
    // htu: the :scheme and :authority the client sent, then /package.Service/Method.
    let htu = format!("http://{addr}{CHECK}");

    let proof = key.proof("POST", &htu, Some(&token), None);
    let reply = client
        .check(check_request(&dpop_auth(&token, proof.clone())))
        .await;
    assert_ok(&reply, "dpop");

    // The same proof again: replay.
    let reply = client.check(check_request(&dpop_auth(&token, proof))).await;
    assert_refused(
        &reply,
        Code::Unauthenticated,
        "error=\"invalid_dpop_proof\"",
    );

    // A proof for another method, or another HTTP method, does not fit this call.
    let wrong_method = key.proof("POST", &format!("http://{addr}{WATCH}"), Some(&token), None);
    let reply = client
        .check(check_request(&dpop_auth(&token, wrong_method)))
        .await;
    assert_refused(
        &reply,
        Code::Unauthenticated,
        "error=\"invalid_dpop_proof\"",
    );
    let get = key.proof("GET", &htu, Some(&token), None);
    let reply = client.check(check_request(&dpop_auth(&token, get))).await;
    assert_refused(
        &reply,
        Code::Unauthenticated,
        "error=\"invalid_dpop_proof\"",
    );

    // The bound token as a bearer token: refused (RFC 9449 §7.2 downgrade).
    let reply = client.check(check_request(&[bearer(&token)])).await;
    assert_refused(&reply, Code::Unauthenticated, "error=\"invalid_token\"");
}

#[tokio::test]
async fn fixed_public_url_is_the_htu_base() {
    let issuer = TestIssuer::start().await;
    let guard = builder(&issuer)
        .dpop(Dpop::allowed(PublicUri::fixed(
            BaseUrl::parse("https://GRPC.example:443/").unwrap(),
        )))
        .build()
        .await
        .unwrap();
    let addr = serve_whole(&guard).await;
    let mut client = client(addr).await;
    let key = DpopKey::generate();
    let token = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));

    let proof = key.proof(
        "POST",
        &format!("https://grpc.example{CHECK}"),
        Some(&token),
        None,
    );
    let reply = client.check(check_request(&dpop_auth(&token, proof))).await;
    assert_ok(&reply, "dpop");

    // The address the client connected to is not the public URL.
    let as_seen = key.proof("POST", &format!("http://{addr}{CHECK}"), Some(&token), None);
    let reply = client
        .check(check_request(&dpop_auth(&token, as_seen)))
        .await;
    assert_refused(
        &reply,
        Code::Unauthenticated,
        "error=\"invalid_dpop_proof\"",
    );
}

#[tokio::test]
async fn nonce_is_required_then_accepted() {
    let issuer = TestIssuer::start().await;
    let guard = builder(&issuer)
        .dpop(dpop().nonces(DpopNonces::new(NonceSecret::generate().unwrap())))
        .build()
        .await
        .unwrap();
    let addr = serve_whole(&guard).await;
    let mut client = client(addr).await;
    let key = DpopKey::generate();
    let token = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
    let htu = format!("http://{addr}{CHECK}");

    let proof = key.proof("POST", &htu, Some(&token), None);
    let reply = client.check(check_request(&dpop_auth(&token, proof))).await;
    let status = assert_refused(&reply, Code::Unauthenticated, "error=\"use_dpop_nonce\"");
    let nonce = metadata_str(&status, "dpop-nonce").to_owned();
    assert!(!nonce.is_empty());

    let proof = key.proof("POST", &htu, Some(&token), Some(&nonce));
    let reply = client.check(check_request(&dpop_auth(&token, proof))).await;
    assert_ok(&reply, "dpop");

    let forged = key.proof("POST", &htu, Some(&token), Some("forged-nonce"));
    let reply = client
        .check(check_request(&dpop_auth(&token, forged)))
        .await;
    let status = assert_refused(&reply, Code::Unauthenticated, "error=\"use_dpop_nonce\"");
    assert!(status.metadata().get("dpop-nonce").is_some());
}

#[tokio::test]
async fn one_proof_authorizes_a_whole_stream() {
    let issuer = TestIssuer::start().await;
    let guard = builder(&issuer).build().await.unwrap();
    let addr = serve_whole(&guard).await;
    let mut client = client(addr).await;
    let key = DpopKey::generate();
    let token = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));

    let proof = key.proof("POST", &format!("http://{addr}{WATCH}"), Some(&token), None);
    let response = client
        .watch(check_request(&dpop_auth(&token, proof.clone())))
        .await
        .unwrap();
    assert_eq!(response.metadata().get("x-binding").unwrap(), "dpop");
    let messages: Vec<_> = response.into_inner().collect().await;
    assert_eq!(messages.len(), 2);
    assert!(
        messages
            .iter()
            .all(|m| m.as_ref().unwrap().status == ServingStatus::Serving as i32)
    );

    // A second stream needs a second proof.
    let status = client
        .watch(check_request(&dpop_auth(&token, proof)))
        .await
        .expect_err("replayed proof");
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// tonic's own TLS: the guard reads the client certificate from tonic's `TlsConnectInfo`.
#[tokio::test]
async fn certificate_bound_token_over_tonic_tls() {
    tower_oauth_guard::tonic::install_tls_provider();
    let issuer = TestIssuer::start().await;
    let guard = builder(&issuer).build().await.unwrap();
    let pki = TestPki::generate();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(
            &pki.server.cert_pem,
            &pki.server.key_pem,
        ))
        .client_ca_root(Certificate::from_pem(pki.ca_pem()))
        .client_auth_optional(true);
    let router = Server::builder()
        .tls_config(tls)
        .unwrap()
        .layer(guard.layer())
        .add_service(example::health_service());
    tokio::spawn(router.serve_with_incoming(TcpIncoming::from(listener)));

    let connect = |cert: Option<&crate::support::Identity>| {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(pki.ca_pem()))
            .domain_name("localhost");
        if let Some(cert) = cert {
            tls = tls.identity(Identity::from_pem(&cert.cert_pem, &cert.key_pem));
        }
        let endpoint = Channel::from_shared(format!("https://{addr}"))
            .unwrap()
            .tls_config(tls)
            .unwrap();
        async move { HealthClient::new(endpoint.connect().await.unwrap()) }
    };

    let alice = &pki.client_a;
    let mallory = &pki.client_b;
    let token = issuer.token(AUD, json!({"cnf": {"x5t#S256": alice.x5t_s256()}}));

    let reply = connect(Some(alice))
        .await
        .check(check_request(&[bearer(&token)]))
        .await;
    assert_ok(&reply, "mtls");

    let reply = connect(Some(mallory))
        .await
        .check(check_request(&[bearer(&token)]))
        .await;
    let status = assert_refused(&reply, Code::Unauthenticated, "error=\"invalid_token\"");
    assert!(status.message().contains("does not match"), "{status:?}");

    let reply = connect(None)
        .await
        .check(check_request(&[bearer(&token)]))
        .await;
    assert_refused(&reply, Code::Unauthenticated, "error=\"invalid_token\"");

    // An unbound token still works for a client without a certificate.
    let unbound = issuer.token(AUD, json!({}));
    let reply = connect(None)
        .await
        .check(check_request(&[bearer(&unbound)]))
        .await;
    assert_ok(&reply, "bearer");
}

/// On the wire: a refusal is HTTP 200 with `grpc-status` in a trailers-only response, never a
/// plain 401/403 that gRPC clients would have to guess from.
#[tokio::test]
async fn refusals_are_trailers_only_grpc_responses() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let issuer = TestIssuer::start().await;
    let guard = builder(&issuer).build().await.unwrap();
    let addr = serve_whole(&guard).await;
    let h2 = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let call = |auth: Option<String>| {
        let mut request = http::Request::post(format!("http://{addr}{CHECK}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        // One uncompressed, empty HealthCheckRequest message.
        let body = Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
        h2.request(request.body(body).unwrap())
    };

    let response = call(None).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "16");
    assert!(response.headers().contains_key("www-authenticate"));
    let body = response.into_body().collect().await.unwrap();
    assert!(body.to_bytes().is_empty(), "trailers-only: no message");

    let read_only = issuer.token(AUD, json!({"scope": "read"}));
    let scoped = Server::builder().add_service(
        guard
            .layer()
            .require_scope("admin")
            .layer(example::health_service()),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scoped_addr = listener.local_addr().unwrap();
    tokio::spawn(scoped.serve_with_incoming(TcpIncoming::from(listener)));
    let request = http::Request::post(format!("http://{scoped_addr}{CHECK}"))
        .header("content-type", "application/grpc")
        .header("authorization", format!("Bearer {read_only}"))
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = h2.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["grpc-status"], "7");
    assert!(
        response.headers()["grpc-message"]
            .to_str()
            .unwrap()
            .contains("scope")
    );

    // The same guard answers a plain HTTP request with a plain 401.
    let response = h2
        .request(
            http::Request::post(format!("http://{addr}{CHECK}"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert!(!response.headers().contains_key("grpc-status"));

    // And lets a valid call through to a real gRPC answer (status in the trailers).
    let token = issuer.token(AUD, json!({}));
    let response = call(Some(format!("Bearer {token}"))).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(!response.headers().contains_key("grpc-status"));
    let body = response.into_body().collect().await.unwrap();
    assert_eq!(body.trailers().unwrap()["grpc-status"], "0");
}

/// RFC 9470 over gRPC: a step-up refusal is UNAUTHENTICATED, with the HTTP challenge (and
/// the metadata URL, RFC 9728 §5.1) in `www-authenticate`.
#[tokio::test]
async fn step_up_is_unauthenticated_with_the_challenge_in_metadata() {
    let issuer = TestIssuer::start().await;
    let clock = TestClock::at(now());
    let guard = builder(&issuer)
        .resource("https://grpc.example/")
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let guarded = guard
        .layer()
        .require_acr(["urn:example:mfa"])
        .max_auth_age(std::time::Duration::from_secs(120))
        .layer(example::health_service());
    tokio::spawn(
        Server::builder()
            .add_service(guarded)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let mut client = client(addr).await;
    let t = clock.now();
    let token = |claims: serde_json::Value| {
        let mut all = json!({"iat": t, "exp": t + 600});
        all.as_object_mut()
            .unwrap()
            .extend(claims.as_object().unwrap().clone());
        issuer.token(AUD, all)
    };
    let rm = r#"resource_metadata="https://grpc.example/.well-known/oauth-protected-resource""#;

    let stale = token(json!({"acr": "urn:example:mfa", "auth_time": t - 121}));
    let reply = client.check(check_request(&[bearer(&stale)])).await;
    let status = assert_refused(
        &reply,
        Code::Unauthenticated,
        "insufficient_user_authentication",
    );
    assert_eq!(
        metadata_str(&status, "www-authenticate"),
        format!(
            r#"Bearer realm="grpc", error="insufficient_user_authentication", error_description="a more recent authentication is required", acr_values="urn:example:mfa", max_age=120, {rm}"#
        )
    );
    assert_eq!(status.message(), "a more recent authentication is required");

    let password = token(json!({"acr": "urn:example:password", "auth_time": t}));
    let reply = client.check(check_request(&[bearer(&password)])).await;
    let status = assert_refused(
        &reply,
        Code::Unauthenticated,
        "acr_values=\"urn:example:mfa\"",
    );
    assert_eq!(
        metadata_str(&status, "www-authenticate"),
        format!(
            r#"Bearer realm="grpc", error="insufficient_user_authentication", error_description="a different authentication level is required", acr_values="urn:example:mfa", max_age=120, {rm}"#
        )
    );

    let fresh = token(json!({"acr": "urn:example:mfa", "auth_time": t - 120}));
    let reply = client.check(check_request(&[bearer(&fresh)])).await;
    assert_ok(&reply, "bearer");
    // The manual clock moves: the same token is now too old.
    clock.set(t + 1);
    let reply = client.check(check_request(&[bearer(&fresh)])).await;
    assert_refused(&reply, Code::Unauthenticated, "max_age=120");

    // The bare challenge for a call without a token names the metadata too.
    let reply = client.check(check_request(&[])).await;
    let status = assert_refused(&reply, Code::Unauthenticated, rm);
    let challenges: Vec<_> = status
        .metadata()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(challenges.iter().all(|c| c.contains(rm)), "{challenges:?}");
}

/// A DPoP key over its share of the replay store is `RESOURCE_EXHAUSTED`, a full store
/// `UNAVAILABLE`: each with `retry-after` and the description, and no challenge, which would
/// send the client for new credentials that would fare no better. A bad proof is still
/// `UNAUTHENTICATED` with its challenge.
#[tokio::test]
async fn a_replay_store_that_cannot_take_a_proof_is_no_verdict_on_it() {
    let issuer = TestIssuer::start().await;
    let store = MemoryReplayStore::with_limits(2, 1);
    let guard = issuer
        .guard(AUD)
        .dpop(dpop().replay_store(store))
        .build()
        .await
        .unwrap();
    let addr = serve_whole(&guard).await;
    let mut client = client(addr).await;
    let htu = format!("http://{addr}{CHECK}");
    let mut call = async |key: &DpopKey, htu: &str| {
        let token = issuer.token(AUD, json!({"cnf": {"jkt": key.jkt}}));
        let proof = key.proof("POST", htu, Some(&token), None);
        client.check(check_request(&dpop_auth(&token, proof))).await
    };
    let (first, second) = (DpopKey::generate(), DpopKey::generate());
    assert_ok(&call(&first, &htu).await, "dpop");
    let over_share = call(&first, &htu).await.unwrap_err();
    let full = {
        assert_ok(&call(&second, &htu).await, "dpop");
        call(&DpopKey::generate(), &htu).await.unwrap_err()
    };
    for (status, code, retry_after, message) in [
        (
            &over_share,
            Code::ResourceExhausted,
            "5",
            "too many live DPoP proofs for this key; retry later",
        ),
        (
            &full,
            Code::Unavailable,
            "1",
            "DPoP replay check unavailable",
        ),
    ] {
        assert_eq!(status.code(), code, "{status:?}");
        assert_eq!(status.metadata().get("retry-after").unwrap(), retry_after);
        assert_eq!(status.message(), message);
        assert_eq!(challenges(status), Vec::<String>::new());
    }
    let wrong_htu = format!("http://{addr}{WATCH}");
    let bad = call(&DpopKey::generate(), &wrong_htu).await.unwrap_err();
    assert_eq!(bad.code(), Code::Unauthenticated, "{bad:?}");
    assert!(challenges(&bad)[0].contains("error=\"invalid_dpop_proof\""));
}
