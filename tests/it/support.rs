//! Test support: an in-test issuer (keys, JWKS and discovery over real HTTP), token minting,
//! DPoP proofs, and a raw HTTP client. Everything runs on 127.0.0.1.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;

/// jsonwebtoken needs a process-wide provider when both backends are compiled in.
pub fn install_provider() {
    #[cfg(feature = "aws-lc-rs")]
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A clock the test moves by hand; the guard and the proofs read the same one.
#[derive(Clone)]
pub struct TestClock(pub Arc<std::sync::atomic::AtomicI64>);

impl TestClock {
    pub fn at(now: i64) -> Self {
        TestClock(Arc::new(std::sync::atomic::AtomicI64::new(now)))
    }
    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst)
    }
}

impl tower_oauth_guard::Clock for TestClock {
    fn now_unix(&self) -> i64 {
        self.now()
    }
}

/// An ES256 signing key with its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub encoding: EncodingKey,
    pub jwk: Jwk,
}

impl SigningKey {
    pub fn generate(kid: &str) -> Self {
        install_provider();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        SigningKey {
            kid: kid.to_owned(),
            encoding,
            jwk,
        }
    }

    /// A JWS over `header` and `payload` exactly as given (no re-serialization), ES256.
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        use base64::Engine as _;
        install_provider();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let signature =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, Algorithm::ES256).unwrap();
        format!("{input}.{signature}")
    }

    pub fn sign(&self, header: Header, claims: &Value) -> String {
        install_provider();
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// An issuer served over real HTTP: `/jwks` and `/.well-known/openid-configuration`.
pub struct TestIssuer {
    pub addr: SocketAddr,
    pub issuer: String,
    pub keys: Arc<Mutex<Vec<SigningKey>>>,
    pub jwks_fetches: Arc<AtomicUsize>,
    pub down: Arc<AtomicBool>,
    pub task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct IssuerState {
    issuer: String,
    keys: Arc<Mutex<Vec<SigningKey>>>,
    fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

async fn jwks(State(s): State<IssuerState>) -> axum::response::Response {
    s.fetches.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let set = JwkSet {
        keys: s
            .keys
            .lock()
            .unwrap()
            .iter()
            .map(|k| k.jwk.clone())
            .collect(),
    };
    axum::Json(set).into_response()
}

async fn metadata(State(s): State<IssuerState>) -> axum::response::Response {
    axum::Json(json!({
        "issuer": s.issuer,
        "jwks_uri": format!("{}/jwks", s.issuer),
    }))
    .into_response()
}

impl TestIssuer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let keys = Arc::new(Mutex::new(vec![SigningKey::generate("k1")]));
        let state = IssuerState {
            issuer: issuer.clone(),
            keys: keys.clone(),
            fetches: Arc::new(AtomicUsize::new(0)),
            down: Arc::new(AtomicBool::new(false)),
        };
        let app = Router::new()
            .route("/jwks", get(jwks))
            .route("/.well-known/openid-configuration", get(metadata))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestIssuer {
            addr,
            issuer,
            keys,
            jwks_fetches: state.fetches,
            down: state.down,
            task,
        }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// A guard builder trusting this issuer for `aud`, keys from its JWKS URL.
    pub fn guard(&self, aud: &str) -> tower_oauth_guard::OAuthGuardBuilder {
        tower_oauth_guard::OAuthGuard::builder().trust(
            tower_oauth_guard::Issuer::new(&self.issuer)
                .audience(aud)
                .jwks_url(self.jwks_url()),
        )
    }

    pub fn key(&self, index: usize) -> SigningKey {
        self.keys.lock().unwrap()[index].clone()
    }

    /// Standard claims for `aud`, valid for 5 minutes; merge `extra` over them.
    pub fn claims(&self, aud: &str, extra: Value) -> Value {
        let now = now();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": "alice",
            "aud": aud,
            "client_id": "client-1",
            "iat": now,
            "exp": now + 300,
            "scope": "read",
            "jti": format!("{}", rand_u64()),
        });
        if let (Value::Object(c), Value::Object(e)) = (&mut claims, extra) {
            for (k, v) in e {
                c.insert(k, v);
            }
        }
        claims
    }

    /// A token signed with key 0, `typ: at+jwt`.
    pub fn token(&self, aud: &str, extra: Value) -> String {
        let key = self.key(0);
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("at+jwt".into());
        key.sign(header, &self.claims(aud, extra))
    }
}

/// An `at+jwt` ES256 header naming `kid`.
pub fn at_header(kid: &str) -> Header {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    h.typ = Some("at+jwt".into());
    h
}

pub fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u64::from_le_bytes(b)
}

/// Serves `app` on 127.0.0.1 with connect info; returns its base URL.
pub async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    serve_on(listener, app)
}

/// A listener on 127.0.0.1 and its base URL, for guards configured with their public URL
/// before the app is served.
pub async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// Serves `app` on `listener` with connect info; returns its base URL.
pub fn serve_on(listener: TcpListener, app: Router) -> String {
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}")
}

/// A response, read whole.
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn www_authenticate(&self) -> Vec<String> {
        self.headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }

    /// A refusal that is no verdict on the credentials (the guard could not decide, 503, or
    /// the client must slow down, 429): `Retry-After`, and no challenge that would send the
    /// client for new credentials.
    #[track_caller]
    pub fn assert_undecided(&self, status: u16, retry_after: &str) {
        assert_eq!(self.status.as_u16(), status, "status; body {}", self.body);
        assert_eq!(self.headers[http::header::RETRY_AFTER], retry_after);
        assert_eq!(self.www_authenticate(), Vec::<String>::new());
    }

    /// Asserts a 401 whose single challenge has `scheme` and `error="..."`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, scheme: &str, error: &str) {
        assert_eq!(self.status.as_u16(), status, "status; body {}", self.body);
        let challenges = self.www_authenticate();
        assert!(
            challenges
                .iter()
                .any(|c| c.starts_with(scheme) && c.contains(&format!("error=\"{error}\""))),
            "expected {scheme} error={error}, got {challenges:?}"
        );
    }
}

/// A plain HTTP/1.1 client that sends headers exactly as given (duplicates included).
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn send(method: &str, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client()
        .request(builder.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn get_with_token(url: &str, token: &str) -> Reply {
    send("GET", url, &[("authorization", &format!("Bearer {token}"))]).await
}

/// A DPoP client key (ES256) that signs proofs.
pub struct DpopKey {
    pub key: SigningKey,
    pub jkt: String,
}

impl DpopKey {
    pub fn generate() -> Self {
        let mut key = SigningKey::generate("dpop");
        key.jwk.common.key_id = None;
        key.jwk.common.key_algorithm = None;
        let jkt =
            tower_oauth_guard::jwk_thumbprint(&serde_json::to_string(&key.jwk).unwrap()).unwrap();
        DpopKey { key, jkt }
    }

    /// Proof claims for a request; merge `extra` over them.
    pub fn proof_with(&self, claims: Value, header_edit: impl FnOnce(&mut Header)) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.key.jwk.clone());
        header_edit(&mut header);
        self.key.sign(header, &claims)
    }

    pub fn claims(
        &self,
        method: &str,
        htu: &str,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> Value {
        let mut c = json!({
            "jti": format!("{}", rand_u64()),
            "htm": method,
            "htu": htu,
            "iat": now(),
        });
        if let Some(t) = token {
            c["ath"] = json!(tower_oauth_guard::ath_for(t));
        }
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        c
    }

    pub fn proof(
        &self,
        method: &str,
        htu: &str,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        self.proof_with(self.claims(method, htu, token, nonce), |_| {})
    }
}

// ---- mtls, grpc, hyper: a test PKI and HTTPS clients with client certificates ---

/// A certificate and its PKCS#8 private key.
pub struct Identity {
    pub cert: pki_types::CertificateDer<'static>,
    pub cert_pem: String,
    pub key_der: Vec<u8>,
    pub key_pem: String,
}

impl Identity {
    pub fn key(&self) -> pki_types::PrivateKeyDer<'static> {
        pki_types::PrivateKeyDer::Pkcs8(self.key_der.clone().into())
    }

    /// `x5t#S256` computed here, independently of the crate: base64url(SHA-256(DER)).
    pub fn x5t_s256(&self) -> String {
        use base64::Engine as _;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.cert.as_ref());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
    }

    /// The certificate as an RFC 9440 `Client-Cert` value: `:base64(DER):`.
    pub fn client_cert_header(&self) -> String {
        use base64::Engine as _;
        format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(self.cert.as_ref())
        )
    }
}

/// A CA, a server certificate for 127.0.0.1/localhost, and two client certificates (A and B),
/// all generated fresh.
pub struct TestPki {
    pub ca: Identity,
    pub server: Identity,
    pub client_a: Identity,
    pub client_b: Identity,
}

fn identity(cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> Identity {
    Identity {
        cert: cert.der().clone(),
        cert_pem: cert.pem(),
        key_der: key.serialize_der(),
        key_pem: key.serialize_pem(),
    }
}

impl TestPki {
    pub fn generate() -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "tower-oauth-guard test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = identity(&ca_cert, &ca_key);
        let issuer = Issuer::new(ca_params, ca_key);

        let mut server =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().unwrap();
        let server = identity(
            &server.signed_by(&server_key, &issuer).unwrap(),
            &server_key,
        );

        let client = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate().unwrap();
            identity(&params.signed_by(&key, &issuer).unwrap(), &key)
        };
        TestPki {
            ca,
            server,
            client_a: client("client A"),
            client_b: client("client B"),
        }
    }

    pub fn ca_pem(&self) -> String {
        self.ca.cert_pem.clone()
    }

    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.cert.clone()).unwrap();
        Arc::new(roots)
    }
}

/// The rustls provider of the test build (aws-lc-rs when compiled in, else ring).
pub fn rustls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = rustls::crypto::ring::default_provider();
    #[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
    let provider: rustls::crypto::CryptoProvider =
        unimplemented!("TLS tests need the aws-lc-rs or rust-crypto feature");
    Arc::new(provider)
}

/// Installs [`rustls_provider`] as the process default, for libraries (tonic) that build their
/// own rustls configurations and cannot choose when both providers are compiled in.
pub fn install_rustls_provider() {
    let _ = Arc::unwrap_or_clone(rustls_provider()).install_default();
}

/// Which HTTP version the client offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    Http1,
    Http2,
}

pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTPS client trusting the test CA, presenting `identity` when given.
pub fn https_client(pki: &TestPki, identity: Option<&Identity>, alpn: Alpn) -> HttpsClient {
    let builder = rustls::ClientConfig::builder_with_provider(rustls_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(pki.roots());
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(vec![id.cert.clone()], id.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only();
    let connector = match alpn {
        Alpn::Http1 => connector.enable_http1().build(),
        Alpn::Http2 => connector.enable_http2().build(),
    };
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Sends a request with `client`; the error is the connection's (e.g. a refused handshake).
pub async fn send_via<C>(
    client: &Client<C, Full<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(Reply, http::Version), hyper_util::client::legacy::Error>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client
        .request(builder.body(Full::new(Bytes::new())).unwrap())
        .await?;
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        },
        version,
    ))
}

/// Serves `app` with [`tower_oauth_guard::serve_tls`] on 127.0.0.1; returns its address.
pub async fn serve_https(app: Router, config: rustls::ServerConfig) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(tower_oauth_guard::serve_tls(
        listener,
        Arc::new(config),
        app,
    ));
    addr
}

// --- redis: redis-server processes for the distributed replay store -------------

/// A `redis-server` child on its own free loopback port, with its own directory; killed (and
/// the directory removed) on drop.
pub struct RedisServer {
    pub port: u16,
    pub dir: std::path::PathBuf,
    args: Vec<String>,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// A plain server on a free port.
    pub fn start() -> Self {
        Self::start_with(free_port(), |port| vec!["--port".into(), port.to_string()])
    }

    /// A server whose listening arguments `args(port)` gives (TLS, cluster mode...).
    pub fn start_with(port: u16, args: impl FnOnce(u16) -> Vec<String>) -> Self {
        let dir = std::env::temp_dir().join(format!("tog-redis-{port}-{}", rand_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut all = args(port);
        all.extend(
            [
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        all.push(dir.display().to_string());
        let mut server = RedisServer {
            port,
            dir,
            args: all,
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("redis.log"))
            .unwrap();
        let child = std::process::Command::new("redis-server")
            .args(&self.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install it (apt-get install redis-server)")
            });
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "redis-server exited ({status}): {}",
                    std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
                );
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen on {}",
                self.port
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// SIGKILL: the server vanishes without a goodbye, its memory with it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// A new server process on the same port, with the same arguments.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The Redis a test uses: `TOG_REDIS_URL` (scripts/test starts one), or, on a developer
/// machine outside CI, a private server that lives as long as the test.
pub enum TestRedis {
    Shared(String),
    Owned(RedisServer),
}

impl TestRedis {
    pub fn get() -> Self {
        if let Ok(url) = std::env::var("TOG_REDIS_URL") {
            return TestRedis::Shared(url);
        }
        let required = std::env::var("TOG_REQUIRE_REDIS").is_ok_and(|v| v == "1")
            || std::env::var_os("CI").is_some();
        assert!(
            !required,
            "TOG_REDIS_URL is not set but Redis is required here (TOG_REQUIRE_REDIS=1 or CI); \
             run the tests through scripts/test, which starts redis-server"
        );
        TestRedis::Owned(RedisServer::start())
    }

    pub fn url(&self) -> String {
        match self {
            TestRedis::Shared(url) => url.clone(),
            TestRedis::Owned(server) => server.url(),
        }
    }
}

// ---- logs: one process-wide subscriber for every test that reads what the crate logs ----

/// What the crate (and its dependencies) logged during the test run: the formatted text, at
/// TRACE for this crate, and the events of the Redis replay store with their key prefix.
pub struct Logs {
    text: Arc<Mutex<Vec<u8>>>,
    events: Arc<Mutex<Vec<(tracing::Level, String, String)>>>,
}

impl Logs {
    /// Everything formatted so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// Messages of `tower_oauth_guard::redis` events at `level` from the store with `prefix`.
    pub fn redis_events(&self, prefix: &str, level: tracing::Level) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(l, _, p)| *l == level && p == prefix)
            .map(|(_, m, _)| m.clone())
            .collect()
    }
}

#[derive(Clone)]
struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Writer {
    type Writer = Writer;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

struct RedisEvents(Arc<Mutex<Vec<(tracing::Level, String, String)>>>);

struct EventFields {
    message: String,
    key_prefix: String,
}

impl tracing::field::Visit for EventFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "key_prefix" => self.key_prefix = format!("{value:?}"),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for RedisEvents {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != "tower_oauth_guard::redis" {
            return;
        }
        let mut fields = EventFields {
            message: String::new(),
            key_prefix: String::new(),
        };
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.message, fields.key_prefix));
    }
}

/// Installs the process-wide subscriber once and returns what it captures.
pub fn logs() -> &'static Logs {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs {
            text: Arc::default(),
            events: Arc::default(),
        };
        // Every level of this crate; its HTTP and TLS dependencies at DEBUG, which is enough
        // to see what they would print of a request without megabytes of frame traces.
        let filter = tracing_subscriber::EnvFilter::new(
            "trace,h2=debug,hyper=debug,hyper_util=debug,rustls=debug,tokio=debug,runtime=debug",
        );
        let text = tracing_subscriber::fmt::layer()
            .with_writer(Writer(logs.text.clone()))
            .with_ansi(false)
            .with_filter(filter);
        let subscriber = tracing_subscriber::registry()
            .with(text)
            .with(RedisEvents(logs.events.clone()));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

// ---- the example server, run as the binary cargo built ----------------------------------------

/// `examples/resource_server` as cargo built it, next to this test's own binary
/// (`target/<profile>/deps/..` -> `target/<profile>/examples/`). A plain `cargo test` builds
/// examples before running tests; `cargo test --test tower_http` alone does not.
pub fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let binary = profile_dir
        .join("examples")
        .join(format!("resource_server{}", std::env::consts::EXE_SUFFIX));
    let build = "build it with `cargo build --profile test --all-features --example \
                 resource_server` (a full `cargo test` builds it too)";
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}; {build}", binary.display()));
    for source in [
        "examples/resource_server/main.rs",
        "examples/resource_server/flags.rs",
        "examples/resource_server/grpc.rs",
        "examples/resource_server/metrics.rs",
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(source);
        let edited = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap();
        assert!(
            edited <= built,
            "{} is older than {source}; {build}",
            binary.display()
        );
    }
    binary
}

/// The example server, trusting `issuer`; killed when dropped.
pub struct ExampleServer {
    pub base: String,
    _child: tokio::process::Child,
}

impl ExampleServer {
    pub async fn start(issuer: &TestIssuer) -> Self {
        Self::start_with(issuer, &[]).await
    }

    /// The example server with more flags.
    pub async fn start_with(issuer: &TestIssuer, flags: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(example_binary())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--audience",
                "https://api.example",
            ])
            .args(["--issuer", &issuer.issuer, "--jwks", &issuer.jwks_url()])
            .args(flags)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.strip_prefix("listening on ") {
                    return url.to_owned();
                }
            }
            panic!("the example exited before listening");
        })
        .await
        .expect("the example did not start listening within 30 s");
        // Keep draining its output, so that logging never blocks it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        ExampleServer {
            base,
            _child: child,
        }
    }
}
