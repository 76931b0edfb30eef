//! A tonic gRPC server behind the guard: one layer protects every service, and a handler reads
//! the validated token from the request. DPoP proofs over gRPC name `htm` `POST` and `htu`
//! `<public URL>/<package.Service>/<Method>`; refusals are gRPC statuses (`UNAUTHENTICATED`,
//! `PERMISSION_DENIED`) with the challenge in `www-authenticate` metadata.
//!
//! ```text
//! cargo run --features tonic --example grpc_api -- --issuer https://issuer.example \
//!     --audience https://api.example
//! ```

use clap::Parser;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower_oauth_guard::{BaseUrl, Dpop, Issuer, OAuthGuard, PublicUri};

/// A gRPC server on 127.0.0.1:50051; the issuer's keys come from its metadata.
#[derive(Parser)]
struct Cli {
    /// The trusted issuer (exact `iss`).
    #[arg(long)]
    issuer: String,
    /// This API's audience (`aud` must contain it).
    #[arg(long)]
    audience: String,
    /// The URL clients call this API at, which their DPoP proofs name (RFC 9449 `htu`).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    public_url: String,
}

/// `grpc.health.v1.Health`, answering only callers with a valid token, and naming them.
#[derive(Default)]
pub struct Greeter;

#[tonic::async_trait]
impl Health for Greeter {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let token = tower_oauth_guard::tonic::require_access_token(&request)?;
        let mut response = Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        });
        if let Ok(subject) = token.subject().parse() {
            response.metadata_mut().insert("x-subject", subject);
        }
        Ok(response)
    }

    type WatchStream = tonic::codegen::BoxStream<HealthCheckResponse>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

/// The server: the guard's layer around every service.
pub fn server(
    guard: &OAuthGuard,
) -> tonic::transport::server::Router<
    tower::layer::util::Stack<tower_oauth_guard::OAuthGuardLayer, tower::layer::util::Identity>,
> {
    tonic::transport::Server::builder()
        .layer(guard.layer())
        .add_service(HealthServer::new(Greeter))
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
    server(&guard).serve("127.0.0.1:50051".parse()?).await?;
    Ok(())
}
