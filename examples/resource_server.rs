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
use tower_oauth_guard::AccessToken;
use tower_oauth_guard::mtls::serve::{ClientAuth, serve_tls, server_config};

#[path = "common/guard_flags.rs"]
mod guard_flags;

use guard_flags::GuardFlags;

const USAGE: &str = "\
resource_server: an API protected by tower-oauth-guard

USAGE:
    resource_server --issuer ISS --audience AUD (--jwks PATH_OR_URL | --discover) [OPTIONS]
";

const OWN_HELP: &str = "\
REPLAY STORE:
    --replay-redis URL        remember proofs in Redis (redis:// or rediss://), shared by
                              every instance; fails closed (503) while Redis is away
                              (build with --features redis)

TLS:
    --tls-cert PEM            serve HTTPS with this certificate chain
    --tls-key PEM             and this private key
    --client-ca PEM           request client certificates issued by these CAs

OTHER:
    --listen ADDR             address to listen on (default: 127.0.0.1:8080)
    --help                    this text
";

#[derive(Default)]
struct Args {
    guard: GuardFlags,
    listen: Option<String>,
    replay_redis: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    client_ca: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if args.guard.take(&flag, &mut it)? {
            continue;
        }
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--help" | "-h" => {
                print!("{USAGE}\n{}\n{OWN_HELP}", guard_flags::HELP);
                std::process::exit(0);
            }
            "--listen" => args.listen = Some(value()?),
            "--replay-redis" => args.replay_redis = Some(value()?),
            "--tls-cert" => args.tls_cert = Some(value()?),
            "--tls-key" => args.tls_key = Some(value()?),
            "--client-ca" => args.client_ca = Some(value()?),
            other => return Err(format!("unknown flag {other}; see --help")),
        }
    }
    Ok(args)
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
    let builder = match args.replay_redis {
        None => args.guard.builder()?,
        #[cfg(feature = "redis")]
        Some(url) => {
            let store = tower_oauth_guard::redis::RedisReplayStore::connect(&url).await?;
            args.guard.builder()?.replay_store(store)
        }
        #[cfg(not(feature = "redis"))]
        Some(url) => {
            return Err(format!("--replay-redis {url}: build with --features redis").into());
        }
    };
    let mtls_required = args.guard.mtls_required()?;
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
