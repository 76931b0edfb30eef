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
use tower_oauth_guard::mtls::serve::serve_tls;

#[path = "common/flags.rs"]
mod flags;

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

The server listens on 127.0.0.1:8080 unless --listen says otherwise.
";

/// The shared flags, and `--replay-redis`.
fn parse_args() -> Result<(flags::Flags, Option<String>), String> {
    let mut replay_redis = None;
    let flags = flags::parse(USAGE, OWN_HELP, |flag, rest| match flag {
        "--replay-redis" => {
            replay_redis = Some(flags::value(flag, rest)?);
            Ok(true)
        }
        _ => Ok(false),
    })?;
    Ok((flags, replay_redis))
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
    flags::init_tracing();
    let (args, replay_redis) = parse_args()?;
    let builder = match replay_redis {
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
    match args.rustls_config()? {
        Some(config) => {
            println!("listening on https://{local}");
            serve_tls(listener, Arc::new(config), app).await;
        }
        None => {
            println!("listening on http://{local}");
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await?;
        }
    }
    Ok(())
}
