//! A protected API, configured from the command line. Run with `--help` for the flags.
//!
//! ```text
//! cargo run --example resource_server -- --listen 127.0.0.1:8080 \
//!     --issuer https://issuer.example --audience https://api.example --jwks jwks.json
//! ```
//!
//! Routes: `GET|POST /api/whoami` (any valid token) answers
//! `{"sub", "client_id", "scope", "binding"}`; `GET /api/admin` needs scope `admin`. Browser
//! clients on other origins may call them (CORS), and every request is traced
//! (`RUST_LOG=tower_oauth_guard=info,tower_http=debug` shows the traces).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{Method, header};
use axum::routing::get;
use clap::Parser;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;
use tower_oauth_guard::AccessToken;
use tower_oauth_guard::DPOP;
use tower_oauth_guard::DPOP_NONCE;
use tower_oauth_guard::serve_tls;

#[path = "common/flags.rs"]
mod flags;

/// An API protected by tower-oauth-guard.
#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    guard: flags::GuardFlags,
    #[command(flatten)]
    server: flags::ServerFlags,
    /// Remember DPoP proofs in Redis (redis:// or rediss://), shared by every instance; fails
    /// closed (503) while Redis is away (build with --features redis).
    #[arg(long, value_name = "URL")]
    replay_redis: Option<String>,
}

async fn whoami(token: AccessToken) -> axum::Json<Value> {
    axum::Json(json!({
        "sub": token.subject(),
        "client_id": token.client_id(),
        "scope": token.scopes().to_scope_string(),
        "binding": token.binding().kind(),
    }))
}

/// CORS for browser clients, outside the guard: preflights carry no credentials and are answered
/// here, before authentication.
fn cors() -> CorsLayer {
    CorsLayer::new()
        // Any origin, for the example; a real deployment lists its origins
        // (`AllowOrigin::list`).
        .allow_origin(Any)
        .allow_methods([Method::GET, Method::POST])
        // Named: a `*` wildcard never covers `Authorization` (Fetch standard).
        .allow_headers([header::AUTHORIZATION, DPOP])
        // So that scripts can read the server nonce (RFC 9449 §8) and the challenge.
        .expose_headers([DPOP_NONCE, header::WWW_AUTHENTICATE])
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    flags::init_tracing();
    let args = Cli::parse();
    let listen = args.server.listen.unwrap_or(([127, 0, 0, 1], 8080).into());
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let builder = args.guard.builder(local, args.server.tls())?;
    let builder = match args.replay_redis {
        None => builder,
        #[cfg(feature = "redis")]
        Some(url) => {
            builder.replay_store(tower_oauth_guard::redis::RedisReplayStore::connect(&url).await?)
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
        .layer(guard.layer())
        .layer(cors())
        .layer(TraceLayer::new_for_http());

    match args.server.rustls_config(args.guard.mtls_required())? {
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
