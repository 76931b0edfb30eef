//! `--grpc`: the standard `grpc.health.v1.Health` service (tonic-health's pre-generated code, no
//! protoc), implemented here so the handler can show who called: every answer carries the
//! caller's identity in its response metadata (`x-subject`, `x-client-id`, `x-scope`,
//! `x-binding`).
//!
//! Clients send the token in `authorization` metadata (`Bearer <token>` or `DPoP <token>`) and a
//! DPoP proof in `dpop` metadata, one per call, with `htm` `POST` and `htu`
//! `<public URL>/grpc.health.v1.Health/Check` (or `/Watch`). TLS is tonic's own (client
//! certificates for `cnf.x5t#S256` tokens).

use std::pin::Pin;

use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower_oauth_guard::AccessToken;

/// `grpc.health.v1.Health`, answering with the caller's identity in the response metadata.
#[derive(Debug, Default, Clone, Copy)]
pub struct WhoAmIHealth;

/// The health service, protected or not by the caller's layers.
pub fn health_service() -> HealthServer<WhoAmIHealth> {
    HealthServer::new(WhoAmIHealth)
}

/// The name this server answers `SERVING` for (besides `""`, the server as a whole).
const SERVICE_NAME: &str = "grpc.health.v1.Health";

fn status_of(service: &str) -> Result<ServingStatus, Status> {
    match service {
        "" | SERVICE_NAME => Ok(ServingStatus::Serving),
        other => Err(Status::not_found(format!("unknown service {other}"))),
    }
}

/// The identity the guard validated, as response metadata.
fn identify<T>(token: &AccessToken, message: T) -> Response<T> {
    let mut response = Response::new(message);
    let metadata = response.metadata_mut();
    let fields = [
        ("x-subject", token.subject()),
        ("x-client-id", token.client_id().unwrap_or("")),
        ("x-binding", token.binding().kind()),
    ];
    for (name, value) in fields {
        if let Ok(v) = MetadataValue::try_from(value) {
            metadata.insert(name, v);
        }
    }
    if let Ok(v) = MetadataValue::try_from(token.scopes().to_scope_string()) {
        metadata.insert("x-scope", v);
    }
    response
}

type WatchStream = Pin<
    Box<
        dyn tonic::codegen::tokio_stream::Stream<Item = Result<HealthCheckResponse, Status>> + Send,
    >,
>;

#[tonic::async_trait]
impl Health for WhoAmIHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let token = tower_oauth_guard::tonic::require_access_token(&request)?;
        let status = status_of(&request.get_ref().service)?;
        Ok(identify(
            token,
            HealthCheckResponse {
                status: status as i32,
            },
        ))
    }

    type WatchStream = WatchStream;

    /// A server stream: authorized once, when the call starts (one DPoP proof per RPC).
    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let token = tower_oauth_guard::tonic::require_access_token(&request)?;
        let status = status_of(&request.get_ref().service)?;
        let updates = (0..2).map(move |_| {
            Ok(HealthCheckResponse {
                status: status as i32,
            })
        });
        let stream: WatchStream = Box::pin(tonic::codegen::tokio_stream::iter(updates));
        Ok(identify(token, stream))
    }
}

/// Serves the health service behind `layer` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    layer: tower_oauth_guard::OAuthGuardLayer,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<(), Box<dyn std::error::Error>> {
    let local = listener.local_addr()?;
    let mut builder = tonic::transport::Server::builder();
    let scheme = match tls {
        Some(tls) => {
            // tonic's TLS takes rustls' process-wide provider.
            tower_oauth_guard::tonic::install_tls_provider();
            builder = builder.tls_config(tls)?;
            "https"
        }
        None => "http",
    };
    println!("listening on {scheme}://{local} (gRPC)");
    builder
        .layer(layer)
        .add_service(health_service())
        .serve_with_incoming(TcpIncoming::from(listener))
        .await?;
    Ok(())
}
