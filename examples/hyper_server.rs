//! A plain hyper 1.x API (no framework) protected by tower-oauth-guard, over TLS with optional
//! client certificates. Run with `--help` for the flags.
//!
//! ```text
//! cargo run --features aws-lc-rs --example hyper_server -- --listen 127.0.0.1:8443 \
//!     --issuer https://issuer.example --audience https://api.example --jwks jwks.json \
//!     --tls-cert server.pem --tls-key server.key --client-ca clients-ca.pem
//! ```
//!
//! The handler is a `tower::service_fn` over `http::Request<hyper::body::Incoming>`; the guard
//! wraps it through `tower::ServiceBuilder`, and `tower_oauth_guard::serve_tls` serves it
//! (with the client certificate in each request's extensions, for `cnf.x5t#S256` tokens).
//! Routes: `GET /whoami` (any valid token) answers `{"sub","client_id","scope","binding"}`;
//! `GET /admin` also needs scope `admin`. Without `--tls-cert`, plain HTTP through hyper-util.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_oauth_guard::serve_tls;
use tower_oauth_guard::{AccessToken, OAuthGuard};

#[path = "common/flags.rs"]
mod flags;

/// A plain hyper API protected by tower-oauth-guard (listens on 127.0.0.1:8443 by default).
#[derive(Debug, clap::Parser)]
struct Cli {
    #[command(flatten)]
    guard: flags::GuardFlags,
    #[command(flatten)]
    server: flags::ServerFlags,
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    flags::init_tracing();
    let args = <Cli as clap::Parser>::parse();
    let listen = args.server.listen.unwrap_or(([127, 0, 0, 1], 8443).into());
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let local = listener.local_addr()?;
    let guard = args
        .guard
        .builder(local, args.server.tls())?
        .build()
        .await?;
    match args.server.rustls_config(args.guard.mtls_required())? {
        Some(config) => {
            println!("listening on https://{local}");
            serve_tls(listener, Arc::new(config), app(&guard)).await;
        }
        None => {
            println!("listening on http://{local}");
            serve_plain(listener, app(&guard)).await;
        }
    }
    Ok(())
}
