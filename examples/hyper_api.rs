//! A plain hyper 1.x API (no framework) behind the guard: a `tower::service_fn` over
//! `http::Request<hyper::body::Incoming>`, wrapped through `tower::ServiceBuilder`.
//!
//! ```text
//! cargo run --example hyper_api -- --issuer https://issuer.example --audience https://api.example
//! ```
//!
//! Routes: `GET /whoami` (any valid token) answers `{"sub","client_id","scope","binding"}`;
//! `GET /admin` also needs scope `admin`. Served here over plain HTTP with hyper-util; the same
//! `app` runs over TLS with client certificates (for `cnf.x5t#S256` tokens) through
//! `tower_oauth_guard::serve_tls`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_oauth_guard::{AccessToken, BaseUrl, Dpop, Issuer, OAuthGuard, PublicUri};

/// A plain hyper API on 127.0.0.1:8081; the issuer's keys come from its metadata.
#[derive(Debug, clap::Parser)]
struct Cli {
    /// The trusted issuer (exact `iss`).
    #[arg(long)]
    issuer: String,
    /// This API's audience (`aud` must contain it).
    #[arg(long)]
    audience: String,
    /// The URL clients call this API at, which their DPoP proofs name (RFC 9449 `htu`).
    #[arg(long, default_value = "http://127.0.0.1:8081")]
    public_url: String,
}

/// The response body: `Default` (the guard's refusals are empty) and a hyper body.
pub type Body = Full<Bytes>;

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The handler: the guard has put the validated token into the request extensions.
async fn whoami(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let Some(token) = request.extensions().get::<AccessToken>() else {
        // Only reachable if the guard layer were missing: fail closed.
        return Ok(json(StatusCode::UNAUTHORIZED, &serde_json::json!({})));
    };
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "sub": token.subject(),
            "client_id": token.client_id(),
            "scope": token.scopes().to_scope_string(),
            "binding": token.binding().kind(),
        }),
    ))
}

/// The whole API as one tower service, ready for `serve_tls` (or hyper-util through
/// `TowerToHyperService`): the guard around a small router, and a second guard layer with a
/// scope around `/admin` (it reuses the token the outer layer validated).
pub fn app(
    guard: &OAuthGuard,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    let admin = ServiceBuilder::new()
        .layer(guard.layer().require_scope("admin"))
        .service_fn(whoami);
    ServiceBuilder::new()
        .layer(guard.layer())
        .service_fn(move |request: Request<Incoming>| {
            let admin = admin.clone();
            async move {
                match (request.method(), request.uri().path()) {
                    (&Method::GET, "/whoami") => whoami(request).await,
                    (&Method::GET, "/admin") => admin.oneshot(request).await,
                    _ => Ok(json(
                        StatusCode::NOT_FOUND,
                        &serde_json::json!({"error": "not found"}),
                    )),
                }
            }
        })
}

/// Serves `app` over plain HTTP with hyper-util (a tower service adapted to hyper).
pub async fn serve_plain<S>(listener: tokio::net::TcpListener, app: S)
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    loop {
        let Ok((stream, remote)) = listener.accept().await else {
            // Out of file descriptors, typically: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let service = TowerToHyperService::new(app.clone().map_request(
            move |mut request: Request<Incoming>| {
                // Lets the guard know the peer, e.g. for a trusted Client-Cert proxy.
                request
                    .extensions_mut()
                    .insert(tower_oauth_guard::RemoteAddr(remote));
                request
            },
        ));
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
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
    let args = <Cli as clap::Parser>::parse();
    let guard = guard(&args.issuer, &args.audience, &args.public_url).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
    serve_plain(listener, app(&guard)).await;
    Ok(())
}
