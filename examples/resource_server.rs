//! A protected API, configured from the command line. Run with `--help` for the flags.
//!
//! ```text
//! cargo run --example resource_server -- --listen 127.0.0.1:8080 \
//!     --issuer https://issuer.example --audience https://api.example --jwks jwks.json
//! ```
//!
//! Routes: `GET|POST /api/whoami` (any valid token) answers
//! `{"sub", "client_id", "scope", "binding"}`; `GET /api/admin` needs scope `admin`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_oauth_guard::dpop::{BaseUrl, NonceSecret};
use tower_oauth_guard::mtls::ClientCertHeader;
use tower_oauth_guard::mtls::serve::{ClientAuth, serve_tls, server_config};
use tower_oauth_guard::{AccessToken, DpopMode, DpopNonces, MtlsMode, OAuthGuard, PublicUri};

const HELP: &str = "\
resource_server: an API protected by tower-oauth-guard

USAGE:
    resource_server --issuer ISS --audience AUD (--jwks PATH_OR_URL | --discover) [OPTIONS]

TOKENS:
    --issuer ISS              trusted issuer (exact `iss`)
    --audience AUD            this API's audience (`aud` must contain it)
    --jwks PATH_OR_URL        the issuer's JWK Set: a file, or an http(s) URL
    --discover                find the JWK Set from the issuer's metadata instead
    --realm REALM             realm of the WWW-Authenticate challenges

DPOP (RFC 9449):
    --dpop off|allowed|required   DPoP mode (default: allowed)
    --dpop-nonce              require server nonces in proofs
    --dpop-nonce-secret HEX   shared nonce secret (>= 32 bytes; default: random, or
                              the DPOP_NONCE_SECRET environment variable)
    --public-url URL          the public base URL that `htu` must match
    --trust-forwarded         take the public URL from Forwarded / X-Forwarded-* headers
    --replay-redis URL        remember proofs in Redis (redis:// or rediss://), shared by
                              every instance; fails closed (503) while Redis is away
                              (build with --features redis)

TLS AND MTLS (RFC 8705, RFC 9440):
    --tls-cert PEM            serve HTTPS with this certificate chain
    --tls-key PEM             and this private key
    --client-ca PEM           request client certificates issued by these CAs
    --mtls optional|required  required: only certificate-bound tokens, and a client
                              certificate on every connection (default: optional)
    --trust-client-cert-header  honour a TLS-terminating proxy's Client-Cert header

OTHER:
    --listen ADDR             address to listen on (default: 127.0.0.1:8080)
    --help                    this text
";

#[derive(Default)]
struct Args {
    listen: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    jwks: Option<String>,
    discover: bool,
    realm: Option<String>,
    dpop: Option<String>,
    dpop_nonce: bool,
    dpop_nonce_secret: Option<String>,
    public_url: Option<String>,
    trust_forwarded: bool,
    replay_redis: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    client_ca: Option<String>,
    mtls: Option<String>,
    trust_client_cert_header: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--help" | "-h" => {
                print!("{HELP}");
                std::process::exit(0);
            }
            "--listen" => args.listen = Some(value()?),
            "--issuer" => args.issuer = Some(value()?),
            "--audience" => args.audience = Some(value()?),
            "--jwks" => args.jwks = Some(value()?),
            "--discover" => args.discover = true,
            "--realm" => args.realm = Some(value()?),
            "--dpop" => args.dpop = Some(value()?),
            "--dpop-nonce" => args.dpop_nonce = true,
            "--dpop-nonce-secret" => args.dpop_nonce_secret = Some(value()?),
            "--public-url" => args.public_url = Some(value()?),
            "--trust-forwarded" => args.trust_forwarded = true,
            "--replay-redis" => args.replay_redis = Some(value()?),
            "--tls-cert" => args.tls_cert = Some(value()?),
            "--tls-key" => args.tls_key = Some(value()?),
            "--client-ca" => args.client_ca = Some(value()?),
            "--mtls" => args.mtls = Some(value()?),
            "--trust-client-cert-header" => args.trust_client_cert_header = true,
            other => return Err(format!("unknown flag {other}; see --help")),
        }
    }
    Ok(args)
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err("hex secret has an odd length".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

async fn whoami(token: AccessToken) -> axum::Json<Value> {
    axum::Json(json!({
        "sub": token.subject(),
        "client_id": token.client_id(),
        "scope": token.scopes().to_scope_string(),
        "binding": token.binding().kind(),
    }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tower_oauth_guard=info".into()),
        )
        .init();
    let args = parse_args()?;
    let issuer = args.issuer.ok_or("--issuer is required")?;
    let audience = args.audience.ok_or("--audience is required")?;
    let mut builder = OAuthGuard::builder().issuer(&issuer).audience(&audience);
    builder = match (args.jwks, args.discover) {
        (Some(j), false) if j.starts_with("http://") || j.starts_with("https://") => {
            builder.jwks_url(j)
        }
        (Some(j), false) => builder.jwks_file(j),
        (None, true) => builder.discover(),
        _ => return Err("exactly one of --jwks and --discover is required".into()),
    };
    if let Some(realm) = args.realm {
        builder = builder.realm(realm);
    }
    builder = builder.dpop(match args.dpop.as_deref() {
        None | Some("allowed") => DpopMode::Allowed,
        Some("off") => DpopMode::Disabled,
        Some("required") => DpopMode::Required,
        Some(other) => return Err(format!("--dpop {other}: expected off|allowed|required").into()),
    });
    if args.dpop_nonce {
        let secret = match args
            .dpop_nonce_secret
            .or_else(|| std::env::var("DPOP_NONCE_SECRET").ok())
        {
            Some(h) => NonceSecret::from_bytes(&hex(&h)?)?,
            None => NonceSecret::generate()?,
        };
        builder = builder.dpop_nonces(DpopNonces::new(secret));
    }
    if let Some(url) = args.public_url {
        builder = builder.public_uri(PublicUri::Fixed(BaseUrl::parse(&url)?));
    } else if args.trust_forwarded {
        builder = builder.public_uri(PublicUri::TrustForwarded);
    }
    if let Some(url) = args.replay_redis {
        #[cfg(feature = "redis")]
        {
            let store = tower_oauth_guard::redis::RedisReplayStore::connect(&url).await?;
            builder = builder.replay_store(store);
        }
        #[cfg(not(feature = "redis"))]
        return Err(format!("--replay-redis {url}: build with --features redis").into());
    }
    let mtls_required = match args.mtls.as_deref() {
        None | Some("optional") => false,
        Some("required") => true,
        Some(other) => return Err(format!("--mtls {other}: expected optional|required").into()),
    };
    if mtls_required {
        builder = builder.mtls(MtlsMode::Required);
    }
    if args.trust_client_cert_header {
        builder = builder.trust_client_cert_header(ClientCertHeader::from_any_peer());
    }
    let guard = builder.build().await?;

    let app = Router::new()
        .route("/api/whoami", get(whoami).post(whoami))
        .route(
            "/api/admin",
            get(whoami).layer(guard.layer().require_scope("admin")),
        )
        .layer(guard.layer());

    let listen: SocketAddr = args.listen.as_deref().unwrap_or("127.0.0.1:8080").parse()?;
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => {
            use tower_oauth_guard::mtls::serve::{load_certificates, load_private_key};
            let client_auth = match args.client_ca {
                None => ClientAuth::None,
                Some(ca) => {
                    let mut roots = rustls::RootCertStore::empty();
                    for c in load_certificates(&ca)? {
                        roots.add(c)?;
                    }
                    if mtls_required {
                        ClientAuth::Required(Arc::new(roots))
                    } else {
                        ClientAuth::Optional(Arc::new(roots))
                    }
                }
            };
            let config = server_config(
                load_certificates(&cert)?,
                load_private_key(&key)?,
                client_auth,
            )?;
            println!("listening on https://{local}");
            serve_tls(listener, Arc::new(config), app).await;
        }
        (None, None) => {
            println!("listening on http://{local}");
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await?;
        }
        _ => return Err("--tls-cert and --tls-key go together".into()),
    }
    Ok(())
}
