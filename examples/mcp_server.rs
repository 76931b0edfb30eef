//! An MCP server (the official Rust SDK, `rmcp`, over Streamable HTTP) behind the guard, as the
//! MCP authorization spec asks of a protected MCP server: tokens must name the server's
//! canonical URI as their audience (RFC 8707), every 401 points at the protected resource
//! metadata (RFC 9728), which is served outside the guard, and a tool needs an extra scope.
//!
//! ```text
//! cargo run --example mcp_server -- --issuer https://issuer.example \
//!     --jwks https://issuer.example/jwks --public-url http://127.0.0.1:8080/mcp
//! ```
//!
//! `echo` needs any valid token; `admin_stats` also needs scope `mcp:admin`. That check runs in
//! the tool, since the HTTP layer does not read JSON-RPC bodies: without the scope the call is
//! answered (HTTP 200) with a tool error naming the missing scope, not with a 403 challenge.

use axum::Router;
use clap::Parser;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use tower_oauth_guard::{AccessToken, Issuer, MetadataError, OAuthGuard};

/// Every scope the tools use, for the metadata's `scopes_supported`.
pub const SCOPES: [&str; 2] = ["mcp:tools", "mcp:admin"];

/// The scope `admin_stats` needs on top of a valid token.
pub const ADMIN_SCOPE: &str = "mcp:admin";

/// An MCP server on `--listen`, its endpoint at `/mcp`.
#[derive(Parser)]
struct Cli {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The trusted issuer (exact `iss`).
    #[arg(long)]
    issuer: String,
    /// The issuer's keys: a URL or a file (default: discovered from the issuer's metadata).
    #[arg(long)]
    jwks: Option<String>,
    /// The server's canonical URI (its MCP endpoint): the audience tokens must name.
    #[arg(long, default_value = "http://127.0.0.1:8080/mcp")]
    public_url: String,
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
pub struct EchoRequest {
    /// The text to send back.
    pub text: String,
}

/// The MCP server: one instance per session.
#[derive(Clone, Default)]
pub struct Tools;

#[tool_router]
impl Tools {
    #[tool(description = "Echoes the text, with the caller's subject")]
    fn echo(
        &self,
        Extension(http): Extension<http::request::Parts>,
        Parameters(req): Parameters<EchoRequest>,
    ) -> String {
        let who = http
            .extensions
            .get::<AccessToken>()
            .map_or("?", |t| t.subject());
        format!("{who}: {}", req.text)
    }

    #[tool(description = "Server statistics; needs scope mcp:admin")]
    fn admin_stats(&self, Extension(http): Extension<http::request::Parts>) -> CallToolResult {
        // rmcp hands the tool the HTTP request's parts, and with them the guard's `AccessToken`.
        let token = http.extensions.get::<AccessToken>();
        if !token.is_some_and(|t| t.scopes().contains(ADMIN_SCOPE)) {
            let message = format!("insufficient_scope: this tool needs scope {ADMIN_SCOPE}");
            return CallToolResult::error(vec![ContentBlock::text(message)]);
        }
        CallToolResult::success(vec![ContentBlock::text(r#"{"sessions":1}"#)])
    }
}

#[tool_handler]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

/// `/mcp` behind the guard; the metadata at its well-known path, outside it.
pub fn app(guard: &OAuthGuard, host: &str) -> Result<Router, MetadataError> {
    let metadata = guard
        .metadata()
        .scopes_supported(SCOPES)
        .resource_name("MCP example")
        .build()?;
    // rmcp refuses Host headers other than loopback by default (DNS rebinding); name ours.
    let config = StreamableHttpServerConfig::default().with_allowed_hosts([host]);
    let mcp: StreamableHttpService<Tools, LocalSessionManager> =
        StreamableHttpService::new(|| Ok(Tools), Default::default(), config);
    Ok(Router::new()
        .nest_service("/mcp", mcp)
        .layer(guard.layer())
        .route_service(metadata.path(), metadata.service()))
}

/// Tokens from `issuer` whose audience is `public_url`, the server's canonical URI.
pub async fn guard(
    issuer: &str,
    jwks: Option<&str>,
    public_url: &str,
) -> Result<OAuthGuard, Box<dyn std::error::Error>> {
    let issuer = match jwks {
        Some(j) if j.starts_with("http://") || j.starts_with("https://") => {
            Issuer::new(issuer).jwks_url(j)
        }
        Some(j) => Issuer::new(issuer).jwks_file(j),
        None => Issuer::new(issuer).discover(),
    };
    // No audience on the issuer: the resource identifier is the audience (RFC 8707).
    Ok(OAuthGuard::builder()
        .trust(issuer)
        .resource(public_url)
        .build()
        .await?)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Cli::parse();
    let guard = guard(&args.issuer, args.jwks.as_deref(), &args.public_url).await?;
    let host = args
        .public_url
        .split('/')
        .nth(2)
        .unwrap_or_default()
        .to_owned();
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    axum::serve(listener, app(&guard, &host)?).await?;
    Ok(())
}
