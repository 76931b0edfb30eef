//! Certificate-bound access tokens (RFC 8705) through real TLS: `serve_tls` with client
//! certificates, tonic's own TLS, and a proxy's `Client-Cert` header (RFC 9440).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::support::*;
use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tower_oauth_guard::{AccessToken, Mtls, OAuthGuard};
use tower_oauth_guard::{ClientAuth, server_config};
use tower_oauth_guard::{ClientCertHeader, HANDSHAKE_TIMEOUT};

const AUD: &str = "https://api.example";

/// Reports the binding the guard checked and whether a `Client-Cert` header reached the handler.
async fn whoami(token: AccessToken, headers: HeaderMap) -> axum::Json<Value> {
    axum::Json(json!({
        "sub": token.subject(),
        "binding": token.binding().kind(),
        "client_cert_header_seen": headers.contains_key("client-cert")
            || headers.contains_key("client-cert-chain"),
    }))
}

fn app(guard: &OAuthGuard) -> Router {
    Router::new()
        .route("/api/whoami", get(whoami))
        .layer(guard.layer())
}

async fn guard(issuer: &TestIssuer, mtls: Mtls) -> OAuthGuard {
    issuer.guard(AUD).mtls(mtls).build().await.unwrap()
}

struct Https {
    issuer: TestIssuer,
    pki: TestPki,
    url: String,
}

impl Https {
    /// An API served by `serve_tls`, asking for client certificates as `auth` says.
    async fn start(mtls: Mtls, auth: fn(&TestPki) -> ClientAuth) -> Self {
        let issuer = TestIssuer::start().await;
        let pki = TestPki::generate();
        let config =
            server_config(vec![pki.server.cert.clone()], pki.server.key(), auth(&pki)).unwrap();
        let guard = guard(&issuer, mtls).await;
        let addr = serve_https(app(&guard), config).await;
        Https {
            issuer,
            pki,
            url: format!("https://127.0.0.1:{}/api/whoami", addr.port()),
        }
    }

    fn bound_token(&self, client: &Identity) -> String {
        self.issuer
            .token(AUD, json!({"cnf": {"x5t#S256": client.x5t_s256()}}))
    }

    async fn get(&self, client: Option<&Identity>, alpn: Alpn, token: &str) -> Reply {
        let https = https_client(&self.pki, client, alpn);
        let auth = format!("Bearer {token}");
        let (reply, version) = send_via(&https, "GET", &self.url, &[("authorization", &auth)])
            .await
            .unwrap();
        let expected = match alpn {
            Alpn::Http1 => http::Version::HTTP_11,
            Alpn::Http2 => http::Version::HTTP_2,
        };
        assert_eq!(version, expected, "ALPN should pick {alpn:?}");
        reply
    }
}

fn optional(pki: &TestPki) -> ClientAuth {
    ClientAuth::Optional(pki.roots())
}

fn required(pki: &TestPki) -> ClientAuth {
    ClientAuth::Required(pki.roots())
}

#[tokio::test]
async fn bound_token_with_its_certificate_is_accepted_over_http1_and_http2() {
    let api = Https::start(Mtls::allowed(), optional).await;
    let token = api.bound_token(&api.pki.client_a);
    for alpn in [Alpn::Http1, Alpn::Http2] {
        let reply = api.get(Some(&api.pki.client_a), alpn, &token).await;
        assert_eq!(reply.status, 200, "{alpn:?}: {}", reply.body);
        assert_eq!(reply.json()["binding"], "mtls");
        assert_eq!(reply.json()["sub"], "alice");
    }
}

#[tokio::test]
async fn bound_token_with_another_certificate_is_invalid_token() {
    let api = Https::start(Mtls::allowed(), optional).await;
    let token = api.bound_token(&api.pki.client_a);
    for alpn in [Alpn::Http1, Alpn::Http2] {
        let reply = api.get(Some(&api.pki.client_b), alpn, &token).await;
        reply.assert_error(401, "Bearer", "invalid_token");
    }
}

#[tokio::test]
async fn bound_token_without_a_certificate_is_invalid_token() {
    let api = Https::start(Mtls::allowed(), optional).await;
    let token = api.bound_token(&api.pki.client_a);
    let reply = api.get(None, Alpn::Http1, &token).await;
    reply.assert_error(401, "Bearer", "invalid_token");
}

#[tokio::test]
async fn unbound_tokens_pass_in_optional_mode_with_or_without_a_certificate() {
    let api = Https::start(Mtls::allowed(), optional).await;
    let token = api.issuer.token(AUD, json!({}));
    for client in [None, Some(&api.pki.client_a)] {
        let reply = api.get(client, Alpn::Http2, &token).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["binding"], "bearer");
    }
}

#[tokio::test]
async fn required_mode_rejects_unbound_tokens() {
    let api = Https::start(Mtls::required(), required).await;
    let unbound = api.issuer.token(AUD, json!({}));
    let reply = api
        .get(Some(&api.pki.client_a), Alpn::Http1, &unbound)
        .await;
    reply.assert_error(401, "Bearer", "invalid_token");

    let bound = api.bound_token(&api.pki.client_a);
    let reply = api.get(Some(&api.pki.client_a), Alpn::Http1, &bound).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["binding"], "mtls");
}

#[tokio::test]
async fn required_client_auth_refuses_the_handshake_without_a_certificate() {
    let api = Https::start(Mtls::required(), required).await;
    let https = https_client(&api.pki, None, Alpn::Http1);
    let token = format!("Bearer {}", api.bound_token(&api.pki.client_a));
    let result = send_via(&https, "GET", &api.url, &[("authorization", &token)]).await;
    assert!(result.is_err(), "handshake without certificate succeeded");
}

#[tokio::test]
async fn a_client_stuck_in_the_handshake_does_not_block_others() {
    let api = Https::start(Mtls::allowed(), optional).await;
    let addr = api.url["https://".len()..]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    // Connects and never sends a ClientHello; another starts one and stops after 5 bytes.
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut partial, &[0x16, 0x03, 0x01, 0x02, 0x00])
        .await
        .unwrap();

    let token = api.bound_token(&api.pki.client_a);
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        api.get(Some(&api.pki.client_a), Alpn::Http2, &token),
    )
    .await
    .expect("a stalled handshake blocked another connection");
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The answer came before the stalled handshakes could have timed out and freed anything.
    assert!(HANDSHAKE_TIMEOUT > Duration::from_secs(5));

    // The stalled connections are still open: nothing was sent to them, nothing closed them.
    let mut byte = [0u8; 1];
    let still_open = tokio::time::timeout(Duration::from_millis(100), silent.read(&mut byte)).await;
    assert!(
        still_open.is_err(),
        "the silent connection was answered or closed"
    );
    let still_open =
        tokio::time::timeout(Duration::from_millis(100), partial.read(&mut byte)).await;
    assert!(
        still_open.is_err(),
        "the partial connection was answered or closed"
    );
}

// ---- RFC 9440: the client certificate forwarded by a TLS-terminating proxy ----------------

/// A plain-HTTP API (what sits behind the proxy), trusting the header as `header` says.
async fn behind_proxy(header: Option<ClientCertHeader>) -> (TestIssuer, TestPki, String) {
    let issuer = TestIssuer::start().await;
    let pki = TestPki::generate();
    let mtls = match header {
        Some(header) => Mtls::allowed().trust_client_cert_header(header),
        None => Mtls::allowed(),
    };
    let guard = guard(&issuer, mtls).await;
    let base = serve(app(&guard)).await;
    (issuer, pki, format!("{base}/api/whoami"))
}

async fn get_with_client_cert(url: &str, token: &str, cert: &Identity) -> Reply {
    let auth = format!("Bearer {token}");
    let client_cert = cert.client_cert_header();
    send(
        "GET",
        url,
        &[("authorization", &auth), ("client-cert", &client_cert)],
    )
    .await
}

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[tokio::test]
async fn client_cert_header_from_a_trusted_proxy_binds_the_token() {
    for trust in [
        ClientCertHeader::from_proxies([LOCALHOST]),
        ClientCertHeader::from_any_peer(),
    ] {
        let (issuer, pki, url) = behind_proxy(Some(trust.clone())).await;
        let token = issuer.token(AUD, json!({"cnf": {"x5t#S256": pki.client_a.x5t_s256()}}));
        let reply = get_with_client_cert(&url, &token, &pki.client_a).await;
        assert_eq!(reply.status, 200, "{trust:?}: {}", reply.body);
        assert_eq!(reply.json()["binding"], "mtls");
        // A trusted header is the proxy's statement: it reaches the application.
        assert_eq!(reply.json()["client_cert_header_seen"], true);

        let reply = get_with_client_cert(&url, &token, &pki.client_b).await;
        reply.assert_error(401, "Bearer", "invalid_token");
        let reply = get_with_token(&url, &token).await;
        reply.assert_error(401, "Bearer", "invalid_token");
    }
}

#[tokio::test]
async fn a_malformed_client_cert_header_from_a_trusted_proxy_is_invalid_token() {
    let (issuer, pki, url) = behind_proxy(Some(ClientCertHeader::from_any_peer())).await;
    let token = issuer.token(AUD, json!({"cnf": {"x5t#S256": pki.client_a.x5t_s256()}}));
    let auth = format!("Bearer {token}");
    // The PEM body instead of an sf-binary Item.
    let reply = send(
        "GET",
        &url,
        &[
            ("authorization", &auth),
            ("client-cert", "MIIBszCCAVmgAwIBAgIU"),
        ],
    )
    .await;
    reply.assert_error(401, "Bearer", "invalid_token");
}

#[tokio::test]
async fn spoofed_client_cert_header_is_ignored_and_stripped_unless_trusted() {
    let other_proxy = ClientCertHeader::from_proxies([IpAddr::V4(Ipv4Addr::new(10, 9, 8, 7))]);
    for trust in [None, Some(other_proxy)] {
        let (issuer, pki, url) = behind_proxy(trust.clone()).await;
        let bound = issuer.token(AUD, json!({"cnf": {"x5t#S256": pki.client_a.x5t_s256()}}));
        let reply = get_with_client_cert(&url, &bound, &pki.client_a).await;
        reply.assert_error(401, "Bearer", "invalid_token");

        // An unbound token reaches the handler, which must not see the spoofed header.
        let unbound = issuer.token(AUD, json!({}));
        let auth = format!("Bearer {unbound}");
        let cert = pki.client_a.client_cert_header();
        let reply = send(
            "GET",
            &url,
            &[
                ("authorization", &auth),
                ("client-cert", &cert),
                ("client-cert-chain", &pki.ca.client_cert_header()),
            ],
        )
        .await;
        assert_eq!(reply.status, 200, "{trust:?}: {}", reply.body);
        assert_eq!(reply.json()["binding"], "bearer");
        assert_eq!(reply.json()["client_cert_header_seen"], false, "{trust:?}");
    }
}

#[tokio::test]
async fn serve_tls_supplies_the_proxy_address_for_the_client_cert_header() {
    // serve_tls puts the TCP peer address into the request: from_proxies works behind it too.
    let issuer = TestIssuer::start().await;
    let pki = TestPki::generate();
    let config = server_config(
        vec![pki.server.cert.clone()],
        pki.server.key(),
        ClientAuth::None,
    )
    .unwrap();
    let guard = guard(
        &issuer,
        Mtls::allowed().trust_client_cert_header(ClientCertHeader::from_proxies([LOCALHOST])),
    )
    .await;
    let addr = serve_https(app(&guard), config).await;
    let url = format!("https://127.0.0.1:{}/api/whoami", addr.port());
    let token = issuer.token(AUD, json!({"cnf": {"x5t#S256": pki.client_a.x5t_s256()}}));
    let auth = format!("Bearer {token}");
    let https = https_client(&pki, None, Alpn::Http1);
    for (cert, status) in [(&pki.client_a, 200), (&pki.client_b, 401)] {
        let header = cert.client_cert_header();
        let (reply, _) = send_via(
            &https,
            "GET",
            &url,
            &[("authorization", &auth), ("client-cert", &header)],
        )
        .await
        .unwrap();
        assert_eq!(reply.status, status, "{}", reply.body);
    }
}

// ---- tonic's own TLS ------------------------------------------------------------------------

#[cfg(feature = "tonic")]
mod grpc {
    use super::*;
    use tonic::Code;
    use tonic::transport::{
        Certificate, Channel, ClientTlsConfig, Identity as TonicIdentity, Server, ServerTlsConfig,
    };
    use tonic_health::ServingStatus;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    struct Grpc {
        issuer: TestIssuer,
        pki: TestPki,
        url: String,
    }

    /// tonic-health's service behind the guard, on tonic's TLS with client certificates.
    async fn start(client_auth_optional: bool) -> Grpc {
        install_rustls_provider();
        let issuer = TestIssuer::start().await;
        let pki = TestPki::generate();
        let guard = guard(&issuer, Mtls::allowed()).await;
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        let tls = ServerTlsConfig::new()
            .identity(TonicIdentity::from_pem(
                &pki.server.cert_pem,
                &pki.server.key_pem,
            ))
            .client_ca_root(Certificate::from_pem(&pki.ca.cert_pem))
            .client_auth_optional(client_auth_optional);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let mut builder = Server::builder()
            .tls_config(tls)
            .unwrap()
            .layer(guard.layer());
        let server = builder.add_service(health).serve_with_incoming(incoming);
        tokio::spawn(async move { server.await.unwrap() });
        Grpc {
            issuer,
            pki,
            url: format!("https://127.0.0.1:{port}"),
        }
    }

    impl Grpc {
        async fn check(&self, client: Option<&Identity>, token: &str) -> Result<(), tonic::Status> {
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&self.pki.ca.cert_pem))
                .domain_name("localhost");
            if let Some(id) = client {
                tls = tls.identity(TonicIdentity::from_pem(&id.cert_pem, &id.key_pem));
            }
            let channel = Channel::from_shared(self.url.clone())
                .unwrap()
                .tls_config(tls)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut request = tonic::Request::new(HealthCheckRequest {
                service: String::new(),
            });
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
            let response = HealthClient::new(channel).check(request).await?;
            assert_eq!(response.into_inner().status, ServingStatus::Serving as i32);
            Ok(())
        }

        fn bound_token(&self) -> String {
            self.issuer.token(
                AUD,
                json!({"cnf": {"x5t#S256": self.pki.client_a.x5t_s256()}}),
            )
        }
    }

    #[tokio::test]
    async fn tonic_tls_bound_token_needs_its_certificate() {
        let grpc = start(false).await;
        let token = grpc.bound_token();
        grpc.check(Some(&grpc.pki.client_a), &token)
            .await
            .expect("right certificate");
        let status = grpc
            .check(Some(&grpc.pki.client_b), &token)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let challenge = status.metadata().get("www-authenticate").unwrap();
        assert!(
            challenge
                .to_str()
                .unwrap()
                .contains("error=\"invalid_token\""),
            "{challenge:?}"
        );
    }

    #[tokio::test]
    async fn tonic_tls_bound_token_without_a_certificate_is_unauthenticated() {
        let grpc = start(true).await;
        let token = grpc.bound_token();
        let status = grpc.check(None, &token).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        // Unbound tokens still work on the same connection type.
        let unbound = grpc.issuer.token(AUD, json!({}));
        grpc.check(None, &unbound).await.expect("unbound token");
    }
}
