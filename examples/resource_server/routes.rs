//! The HTTP routes: `GET|POST /api/whoami` (any valid token), `GET /api/admin` (scope
//! `admin`), `GET /api/stepup` (RFC 9470 step-up: `acr` `urn:example:mfa`, authenticated in the
//! last 300 s), `GET /health` (no token), and the protected resource metadata (RFC 9728) at the
//! well-known URL of the server's resource identifier, when it has one.

use std::time::Duration;

use axum::Router;
use axum::http::{Method, header};
use axum::routing::get;
use serde_json::{Value, json};
use tower_http::cors::{Any, CorsLayer};
use tower_http::trace::TraceLayer;
use tower_oauth_guard::{
    AccessToken, DPOP, DPOP_NONCE, MetadataError, OAuthGuard, OAuthGuardLayer,
    ProtectedResourceMetadata,
};

/// Every scope the routes use, for the metadata's `scopes_supported`.
pub const SCOPES: [&str; 3] = ["read", "write", "admin"];

/// `/api/stepup` needs a token whose `acr` is this...
pub const STEP_UP_ACR: &str = "urn:example:mfa";

/// ... and whose `auth_time` is at most this old.
pub const STEP_UP_MAX_AGE: Duration = Duration::from_secs(300);

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

/// The guard's metadata document, `None` when it has no resource identifier.
pub fn metadata(guard: &OAuthGuard) -> Result<Option<ProtectedResourceMetadata>, MetadataError> {
    let built = guard
        .metadata()
        .scopes_supported(SCOPES)
        .resource_name("tower-oauth-guard resource_server example")
        .build();
    match built {
        Ok(metadata) => Ok(Some(metadata)),
        Err(MetadataError::NoResource) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The HTTP application: `layer` guards every `/api` route.
pub fn app(guard: &OAuthGuard, layer: OAuthGuardLayer) -> Result<Router, MetadataError> {
    let step_up = guard
        .layer()
        .require_acr([STEP_UP_ACR])
        .max_auth_age(STEP_UP_MAX_AGE);
    let mut app = Router::new()
        .route("/api/whoami", get(whoami).post(whoami))
        .route(
            "/api/admin",
            get(whoami).layer(guard.layer().require_scope("admin")),
        )
        .route("/api/stepup", get(whoami).layer(step_up))
        .layer(layer)
        // Added after the guard's layer, so outside it; inside CORS and tracing like the rest.
        .route("/health", get(|| async { "ok" }))
        .layer(cors());
    // Public, and with CORS headers of its own.
    if let Some(metadata) = metadata(guard)? {
        app = app.route_service(metadata.path(), metadata.service());
    }
    Ok(app.layer(TraceLayer::new_for_http()))
}
