//! The interop server: a protected API with every setting of the guard as a flag, which
//! `scripts/test` drives with clients this crate did not write. Run with `--help` for the flags;
//! the short examples that teach are `axum_api`, `grpc_api` and `hyper_api`.
//!
//! ```text
//! cargo run --example resource_server -- --listen 127.0.0.1:8080 \
//!     --issuer https://issuer.example --audience https://api.example --jwks jwks.json
//! ```
//!
//! HTTP routes (`routes.rs`): `GET|POST /api/whoami` (any valid token) answers
//! `{"sub", "client_id", "scope", "binding"}`; `GET /api/admin` needs scope `admin`;
//! `GET /api/stepup` needs `acr` `urn:example:mfa` and an authentication (`auth_time`) in the
//! last 300 s (RFC 9470); `GET /health` needs no token and answers `ok` (for liveness probes,
//! and the unguarded baseline of `benches/e2e/`); `GET /metrics` needs no token either and
//! answers the guard's metrics in the Prometheus text format (`metrics.rs`). Its protected
//! resource metadata (RFC 9728) is served at the well-known URL of its public URL (the first
//! `--public-url`, else the listen address), which every challenge names in
//! `resource_metadata`. Browser clients on other origins may call them (CORS), and every
//! request is traced (`RUST_LOG=tower_oauth_guard=info,tower_http=debug` shows the traces).
//! With `--grpc` it serves `grpc.health.v1.Health` instead (see `grpc.rs`; build with
//! `--features tonic`).

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use tokio::net::TcpListener;
use tower_oauth_guard::{Dpop, serve_tls};

mod flags;
#[cfg(feature = "tonic")]
mod grpc;
mod metrics;
mod routes;

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
    /// Serve gRPC (grpc.health.v1.Health) instead of the HTTP routes; DPoP proofs then name
    /// htm POST and htu <public URL>/package.Service/Method (build with --features tonic).
    #[arg(long)]
    grpc: bool,
    /// Every request needs this scope (else 403, or PERMISSION_DENIED over gRPC).
    #[arg(long, value_name = "SCOPE")]
    require_scope: Option<String>,
}

/// The DPoP replay store `--replay-redis` asks for (the default is in process).
async fn replay_store(
    url: Option<&str>,
) -> Result<Box<dyn FnOnce(Dpop) -> Dpop>, Box<dyn std::error::Error>> {
    let Some(url) = url else {
        return Ok(Box::new(|dpop| dpop));
    };
    #[cfg(feature = "redis")]
    {
        let store = tower_oauth_guard::redis::RedisReplayStore::connect(url).await?;
        Ok(Box::new(move |dpop: Dpop| dpop.replay_store(store)))
    }
    #[cfg(not(feature = "redis"))]
    Err(format!("--replay-redis {url}: build with --features redis").into())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    flags::init_tracing();
    let args = Cli::parse();
    let prometheus = metrics::install()?;
    let default_port = if args.grpc { 50051 } else { 8080 };
    let listen = args
        .server
        .listen
        .unwrap_or(([127, 0, 0, 1], default_port).into());
    let listener = TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    if args.replay_redis.is_some() && !args.guard.dpop_on() {
        return Err(
            "--replay-redis: DPoP is off (--dpop off), there are no proofs to remember".into(),
        );
    }
    let store = replay_store(args.replay_redis.as_deref()).await?;
    let guard = args
        .guard
        .builder(local, args.server.tls(), args.server.client_certs(), store)?
        .build()
        .await?;
    let mut layer = guard.layer();
    if let Some(scope) = &args.require_scope {
        layer = layer.require_scope(scope);
    }
    let mtls_required = args.guard.mtls_required();

    if args.grpc {
        #[cfg(feature = "tonic")]
        return grpc::serve(
            listener,
            layer,
            args.server.tonic_tls_config(mtls_required)?,
        )
        .await;
        #[cfg(not(feature = "tonic"))]
        return Err("--grpc: build with --features tonic".into());
    }
    let app = routes::app(&guard, layer)?
        // Unprotected, for the example: a real deployment serves its metrics on an internal
        // port (or behind its own authentication), never beside the public API.
        .route(
            "/metrics",
            axum::routing::get(move || std::future::ready(prometheus.render())),
        );
    if let Some(metadata) = routes::metadata(&guard)? {
        println!("protected resource metadata at {}", metadata.url());
    }
    match args.server.rustls_config(mtls_required)? {
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
