//! The plain-hyper example (`examples/hyper_api.rs`), built exactly as the example builds it,
//! served over TLS with optional client certificates by `serve_tls`, called by a hyper-rustls
//! client.
#![cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]

#[allow(dead_code)]
#[path = "../../examples/hyper_api.rs"]
mod example;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::support::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_oauth_guard::{ClientAuth, serve_tls, server_config};

const AUD: &str = "https://hyper.example";

async fn start(pki: &TestPki) -> (TestIssuer, SocketAddr) {
    install_rustls_provider();
    let issuer = TestIssuer::start().await;
    let guard = example::guard(&issuer.issuer, AUD, AUD).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.cert.clone()).unwrap();
    let config = server_config(
        vec![pki.server.cert.clone()],
        pki.server.key(),
        ClientAuth::Optional(Arc::new(roots)),
    )
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tls(listener, Arc::new(config), example::app(&guard)));
    (issuer, addr)
}

/// GETs `https://localhost:<port><path>`, with `cert` as the client certificate if given.
async fn get(
    pki: &TestPki,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    cert: Option<&Identity>,
) -> (u16, http::HeaderMap, String) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.cert.clone()).unwrap();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let tls = match cert {
        Some(c) => builder
            .with_client_auth_cert(vec![c.cert.clone()], c.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https);
    let mut request = http::Request::get(format!("https://localhost:{}{path}", addr.port()));
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn valid_token_reaches_the_plain_hyper_handler() {
    let pki = TestPki::generate();
    let (issuer, addr) = start(&pki).await;
    let token = issuer.token(AUD, json!({}));
    let (status, _, body) = get(&pki, addr, "/whoami", Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["sub"], "alice");
    assert_eq!(body["client_id"], "client-1");
    assert_eq!(body["binding"], "bearer");
}

#[tokio::test]
async fn missing_or_invalid_token_is_401_with_a_challenge() {
    let pki = TestPki::generate();
    let (issuer, addr) = start(&pki).await;
    let (status, headers, _) = get(&pki, addr, "/whoami", None, None).await;
    assert_eq!(status, 401);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert!(!challenge.contains("error="));

    let wrong_audience = issuer.token("https://other.example", json!({}));
    let (status, headers, _) = get(&pki, addr, "/whoami", Some(&wrong_audience), None).await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    // Unknown routes are behind the guard too.
    let (status, _, _) = get(&pki, addr, "/elsewhere", None, None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn admin_route_needs_its_scope() {
    let pki = TestPki::generate();
    let (issuer, addr) = start(&pki).await;
    let reader = issuer.token(AUD, json!({"scope": "read"}));
    let (status, headers, _) = get(&pki, addr, "/admin", Some(&reader), None).await;
    assert_eq!(status, 403);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"admin\"")
    );
    let admin = issuer.token(AUD, json!({"scope": "read admin"}));
    let (status, _, body) = get(&pki, addr, "/admin", Some(&admin), None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn certificate_bound_token_needs_its_certificate() {
    let pki = TestPki::generate();
    let (issuer, addr) = start(&pki).await;
    let alice = &pki.client_a;
    let mallory = &pki.client_b;
    let token = issuer.token(AUD, json!({"cnf": {"x5t#S256": alice.x5t_s256()}}));

    let (status, _, body) = get(&pki, addr, "/whoami", Some(&token), Some(alice)).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["binding"], "mtls");

    let (status, _, _) = get(&pki, addr, "/whoami", Some(&token), Some(mallory)).await;
    assert_eq!(status, 401);
    let (status, _, _) = get(&pki, addr, "/whoami", Some(&token), None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn plain_http_through_hyper_util() {
    let issuer = TestIssuer::start().await;
    let guard = example::guard(&issuer.issuer, AUD, AUD).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve_plain(listener, example::app(&guard)));

    let reply = get_with_token(
        &format!("http://{addr}/whoami"),
        &issuer.token(AUD, json!({})),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["sub"], "alice");
    let reply = send("GET", &format!("http://{addr}/whoami"), &[]).await;
    assert_eq!(reply.status, 401);
    assert!(reply.www_authenticate()[0].starts_with("Bearer"));
}
