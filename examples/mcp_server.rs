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
//! Every request needs scope `mcp:tools` (named in the 401's `scope`, which clients ask for
//! first); `admin_stats` also needs `mcp:admin`. A small middleware reads which tool a
//! `tools/call` names and answers a token without the tool's scope with `403
//! insufficient_scope` naming the scopes the call needs (and the metadata), so that the client
//! can ask the authorization server for them (MCP's scope step-up); the tool checks it again
//! itself. Each session belongs to the user who opened it.

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use http::{Method, StatusCode};
use http_body_util::LengthLimitError;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, schemars, tool, tool_handler, tool_router};
use serde_json::Value;
use tower_oauth_guard::{
    AccessToken, Issuer, MetadataError, OAuthGuard, Policy, Presence, Protocol,
};

/// Every scope the tools use, for the metadata's `scopes_supported`.
pub const SCOPES: [&str; 2] = [TOOLS_SCOPE, ADMIN_SCOPE];

/// The scope every request to `/mcp` needs; a 401 names it, so that clients ask for it.
pub const TOOLS_SCOPE: &str = "mcp:tools";

/// The scope `admin_stats` needs on top of [`TOOLS_SCOPE`].
pub const ADMIN_SCOPE: &str = "mcp:admin";

/// The scope each tool needs on top of a valid token.
pub const TOOL_SCOPES: [(&str, &str); 1] = [("admin_stats", ADMIN_SCOPE)];

/// The largest JSON-RPC message: read whole to find the tool, and rmcp's limit too.
pub const MAX_MESSAGE_LEN: usize = 4 << 20;

/// The longest a message may take to arrive once the guard has admitted its token.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

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
        // `tool_scopes` has refused a call without the scope already; this keeps the tool safe
        // wherever it is mounted.
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

/// The scope a JSON-RPC message needs: that of the tool a `tools/call` names, if any.
fn required_scope(message: &[u8]) -> Option<&'static str> {
    let message: Value = serde_json::from_slice(message).ok()?;
    if message.get("method")?.as_str()? != "tools/call" {
        return None;
    }
    let tool = message.get("params")?.get("name")?.as_str()?;
    TOOL_SCOPES
        .iter()
        .find(|(name, _)| *name == tool)
        .map(|(_, scope)| *scope)
}

/// Refuses a `tools/call` whose token lacks the tool's scope with the guard's own
/// `403 insufficient_scope` challenge (`scope` and `resource_metadata`, RFC 6750 §3.1,
/// RFC 9728 §5.1), before rmcp reads the message. Runs behind the guard's layer, which has
/// admitted the token; the check does not validate it again, but refuses it if it expired
/// while the message arrived (within the guard's leeway after `exp`; a message slower than
/// `message_timeout` gets 408 first).
async fn tool_scopes(
    State((guard, message_timeout)): State<(OAuthGuard, Duration)>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    // A declared length over the limit is refused before any of it is read (nor invited with
    // `100 Continue`).
    if http_body::Body::size_hint(&body).lower() > MAX_MESSAGE_LEN as u64 {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    }
    let message =
        match tokio::time::timeout(message_timeout, axum::body::to_bytes(body, MAX_MESSAGE_LEN))
            .await
        {
            Ok(Ok(message)) => message,
            Ok(Err(e))
                if std::error::Error::source(&e).is_some_and(|e| e.is::<LengthLimitError>()) =>
            {
                return StatusCode::PAYLOAD_TOO_LARGE.into_response();
            }
            Ok(Err(_)) => return StatusCode::BAD_REQUEST.into_response(),
            Err(_) => return StatusCode::REQUEST_TIMEOUT.into_response(),
        };
    // Asked again once the message is in, whatever it is: the token may have expired while
    // it arrived. The challenge names every scope the call needs, so that a client that
    // replaces its scopes with the challenge's keeps `mcp:tools`.
    let policy = match required_scope(&message) {
        Some(scope) => Policy::default().scope(TOOLS_SCOPE).scope(scope),
        None => Policy::default().scope(TOOLS_SCOPE),
    };
    if let Err(refusal) = guard.check(&mut parts, &policy, Presence::Required).await {
        return guard.refusal_response(&refusal, Protocol::Http);
    }
    next.run(Request::from_parts(parts, Body::from(message)))
        .await
}

/// The user behind each MCP session: who opened it (the token's issuer, subject and client),
/// bounded in number and forgotten when idle for [`SESSION_IDLE`].
#[derive(Clone)]
pub struct SessionOwners(moka::sync::Cache<String, Arc<Owner>>);

type Owner = (String, String, Option<String>);

/// How long an unused session's owner is remembered; rmcp closes idle sessions sooner.
pub const SESSION_IDLE: Duration = Duration::from_secs(60 * 60);

impl Default for SessionOwners {
    fn default() -> Self {
        SessionOwners(
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(SESSION_IDLE)
                .build(),
        )
    }
}

/// Binds each session to the user who opened it (MCP security best practices: session
/// hijacking): a request naming a session opened with another user's token (or one this
/// server no longer knows) gets `404`, as for an unknown session, so that a session id that
/// leaks is no use to anyone else. Every request is still authorized by its own token; the
/// session is never a credential.
async fn session_owners(
    State(owners): State<SessionOwners>,
    request: Request,
    next: Next,
) -> Response {
    let owner = request.extensions().get::<AccessToken>().map(|t| {
        let client = t.client_id().map(str::to_owned);
        Arc::new((t.issuer().to_owned(), t.subject().to_owned(), client))
    });
    let Some(owner) = owner else {
        return StatusCode::UNAUTHORIZED.into_response(); // the guard's layer is missing
    };
    let named = request.headers().get(SESSION_ID).cloned();
    if let Some(id) = &named {
        let known = id.to_str().ok().and_then(|id| owners.0.get(id));
        if known.as_deref() != Some(&*owner) {
            return (StatusCode::NOT_FOUND, "session not found").into_response();
        }
    }
    let response = next.run(request).await;
    if named.is_none()
        && let Some(id) = response.headers().get(SESSION_ID)
        && let Ok(id) = id.to_str()
    {
        owners.0.insert(id.to_owned(), owner);
    }
    response
}

/// The Streamable HTTP transport's session header.
const SESSION_ID: &str = "mcp-session-id";

/// `/mcp` behind the guard; the metadata at its well-known path, outside it. A message must
/// arrive within `message_timeout` (408 otherwise).
pub fn app(
    guard: &OAuthGuard,
    host: &str,
    message_timeout: Duration,
) -> Result<Router, MetadataError> {
    let metadata = guard
        .metadata()
        .scopes_supported(SCOPES)
        .resource_name("MCP example")
        .build()?;
    // rmcp refuses Host headers other than loopback by default (DNS rebinding); name ours.
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts([host])
        .with_max_request_body_bytes(MAX_MESSAGE_LEN);
    let mcp: StreamableHttpService<Tools, LocalSessionManager> =
        StreamableHttpService::new(|| Ok(Tools), Default::default(), config);
    Ok(Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state(
            (guard.clone(), message_timeout),
            tool_scopes,
        ))
        .layer(middleware::from_fn_with_state(
            SessionOwners::default(),
            session_owners,
        ))
        .layer(guard.layer().require_scope(TOOLS_SCOPE))
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
    axum::serve(listener, app(&guard, &host, MESSAGE_TIMEOUT)?).await?;
    Ok(())
}
