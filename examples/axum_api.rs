//! An axum API behind the guard: tokens from one issuer, bearer or DPoP-bound (RFC 9449),
//! a route that needs a scope, and the validated token in the handlers.
//!
//! ```text
//! cargo run --example axum_api -- --issuer https://issuer.example --audience https://api.example
//! ```

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use clap::Parser;
use tower_oauth_guard::{AccessToken, BaseUrl, Dpop, Issuer, OAuthGuard, PublicUri};

/// An axum API on 127.0.0.1:8080; the issuer's keys come from its metadata.
#[derive(Parser)]
struct Cli {
    /// The trusted issuer (exact `iss`).
    #[arg(long)]
    issuer: String,
    /// This API's audience (`aud` must contain it).
    #[arg(long)]
    audience: String,
    /// The URL clients call this API at, which their DPoP proofs name (RFC 9449 `htu`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    public_url: String,
}

/// Every route needs a valid token; `/admin` also needs scope `admin`.
pub fn app(guard: &OAuthGuard) -> Router {
    Router::new()
        .route("/hello", get(hello))
        .route(
            "/admin",
            get(hello).layer(guard.layer().require_scope("admin")),
        )
        .layer(guard.layer())
}

/// The guard has validated the token (and its DPoP proof or certificate) before this runs.
async fn hello(token: AccessToken) -> String {
    let (who, how) = (token.subject(), token.binding().kind());
    format!("hello {who} ({how} token)")
}

/// Tokens from `issuer` (keys from its metadata) for `audience`, bearer or DPoP-bound with
/// proofs for URLs under `public_url`.
pub async fn guard(
    issuer: &str,
    audience: &str,
    public_url: &str,
) -> Result<OAuthGuard, Box<dyn std::error::Error>> {
    let guard = OAuthGuard::builder()
        .trust(Issuer::new(issuer).audience(audience).discover())
        .dpop(Dpop::allowed(PublicUri::fixed(BaseUrl::parse(public_url)?)))
        .build()
        .await?;
    Ok(guard)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Cli::parse();
    let guard = guard(&args.issuer, &args.audience, &args.public_url).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    // The peer address lets the guard trust a proxy's headers, if configured to.
    let app = app(&guard).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await?;
    Ok(())
}
