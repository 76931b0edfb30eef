//! tonic integration (feature `tonic`): the identity from a `tonic::Request`, and the client
//! certificate and address from tonic's own TLS connection info.
//!
//! The guard itself is a plain tower layer: `Server::builder().layer(guard.layer())` puts it in
//! front of every service, and refusals of gRPC requests are already gRPC statuses
//! (`UNAUTHENTICATED`, `PERMISSION_DENIED`) carrying `www-authenticate` (and `dpop-nonce`).

use std::net::SocketAddr;

use http::request::Parts;
use tonic::transport::server::TcpConnectInfo;
#[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
use tonic::transport::server::TlsConnectInfo;

use crate::token::AccessToken;

/// The validated token of a gRPC request, put there by the guard layer.
pub fn access_token<T>(request: &tonic::Request<T>) -> Option<&AccessToken> {
    request.extensions().get::<AccessToken>()
}

/// Like [`access_token`], as a `Status` for handlers that use `?`.
pub fn require_access_token<T>(request: &tonic::Request<T>) -> Result<&AccessToken, tonic::Status> {
    access_token(request).ok_or_else(|| tonic::Status::unauthenticated("no access token"))
}

#[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
pub(crate) fn peer_leaf(parts: &Parts) -> Option<Vec<u8>> {
    let certs = parts
        .extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    certs.first().map(|c| c.to_vec())
}

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
pub(crate) fn peer_leaf(_: &Parts) -> Option<Vec<u8>> {
    None
}

/// tonic's TLS info needs tonic's TLS, which comes with a crypto feature.
#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
pub(crate) fn is_tls(_: &Parts) -> bool {
    false
}

#[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
pub(crate) fn is_tls(parts: &Parts) -> bool {
    parts
        .extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .is_some()
}

pub(crate) fn remote_addr(parts: &Parts) -> Option<SocketAddr> {
    #[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
    if let Some(tls) = parts.extensions.get::<TlsConnectInfo<TcpConnectInfo>>() {
        return tls.get_ref().remote_addr();
    }
    parts.extensions.get::<TcpConnectInfo>()?.remote_addr()
}
