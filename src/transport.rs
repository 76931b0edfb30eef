//! Connection facts, read once from the request extensions: whether the request came over TLS,
//! the client's certificate chain, and the address of the TCP peer.
//!
//! [`serve_tls`](crate::serve_tls) inserts [`TlsConnection`], [`RemoteAddr`] and
//! [`PeerCertificates`]; axum's `ConnectInfo<SocketAddr>` and tonic's `TcpConnectInfo` /
//! `TlsConnectInfo` are read as well. Every step that needs a connection fact asks here.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::request::Parts;
use pki_types::CertificateDer;

/// The client's certificate chain, leaf first, as a request extension.
/// [`serve_tls`](crate::serve_tls) inserts it into every request of a connection that
/// presented one.
///
/// ```
/// use tower_oauth_guard::PeerCertificates;
///
/// // A server other than `serve_tls` hands the guard the client's chain this way.
/// fn with_chain<B>(mut request: http::Request<B>, chain: PeerCertificates) -> http::Request<B> {
///     request.extensions_mut().insert(chain);
///     request
/// }
/// # let _ = with_chain::<()>;
/// ```
#[derive(Clone)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

impl PeerCertificates {
    /// The end-entity certificate.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.0.first()
    }
}

/// Certificates are identities, not secrets, but they are long and personal: `Debug` shows
/// how many there are, not their bytes.
impl std::fmt::Debug for PeerCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerCertificates")
            .field("count", &self.0.len())
            .finish_non_exhaustive()
    }
}

/// Request extension marking a request that arrived over TLS (the `https` of `htu`).
///
/// ```
/// use tower_oauth_guard::TlsConnection;
///
/// // A server that terminates TLS itself marks its requests, so that `htu` is `https://...`.
/// let mut request = http::Request::get("/r").body(()).unwrap();
/// request.extensions_mut().insert(TlsConnection);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TlsConnection;

/// Request extension: the address of the TCP peer, inserted by
/// [`serve_tls`](crate::serve_tls).
///
/// ```
/// use tower_oauth_guard::RemoteAddr;
///
/// // The TCP peer, for the proxy checks of `ClientCertHeader` and `PublicUri::forwarded_by`.
/// let mut request = http::Request::get("/r").body(()).unwrap();
/// request.extensions_mut().insert(RemoteAddr("10.0.0.7:41000".parse().unwrap()));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// Whether the request arrived over a TLS connection this server terminated.
pub(crate) fn is_tls(parts: &Parts) -> bool {
    parts.extensions.get::<TlsConnection>().is_some()
        || parts.extensions.get::<PeerCertificates>().is_some()
        || tonic_tls(parts)
}

/// The IP address of the TCP peer (the client, or the proxy in front of the server).
pub(crate) fn remote_ip(parts: &Parts) -> Option<IpAddr> {
    if let Some(RemoteAddr(addr)) = parts.extensions.get::<RemoteAddr>() {
        return Some(addr.ip());
    }
    #[cfg(feature = "axum")]
    if let Some(info) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(info.0.ip());
    }
    tonic_remote_addr(parts).map(|a| a.ip())
}

/// The DER of the client's leaf certificate on this connection, if it presented one.
pub(crate) fn peer_leaf(parts: &Parts) -> Option<std::borrow::Cow<'_, [u8]>> {
    if let Some(leaf) = parts
        .extensions
        .get::<PeerCertificates>()
        .and_then(PeerCertificates::leaf)
    {
        return Some(std::borrow::Cow::Borrowed(leaf.as_ref()));
    }
    tonic_peer_leaf(parts).map(std::borrow::Cow::Owned)
}

// tonic's TLS info needs tonic's TLS, which comes with a crypto feature.
#[cfg(all(feature = "tonic", any(feature = "aws-lc-rs", feature = "rust-crypto")))]
type TonicTls = tonic::transport::server::TlsConnectInfo<tonic::transport::server::TcpConnectInfo>;

#[cfg(all(feature = "tonic", any(feature = "aws-lc-rs", feature = "rust-crypto")))]
fn tonic_tls(parts: &Parts) -> bool {
    parts.extensions.get::<TonicTls>().is_some()
}

#[cfg(not(all(feature = "tonic", any(feature = "aws-lc-rs", feature = "rust-crypto"))))]
fn tonic_tls(_: &Parts) -> bool {
    false
}

#[cfg(all(feature = "tonic", any(feature = "aws-lc-rs", feature = "rust-crypto")))]
fn tonic_peer_leaf(parts: &Parts) -> Option<Vec<u8>> {
    let certs = parts.extensions.get::<TonicTls>()?.peer_certs()?;
    certs.first().map(|c| c.to_vec())
}

#[cfg(not(all(feature = "tonic", any(feature = "aws-lc-rs", feature = "rust-crypto"))))]
fn tonic_peer_leaf(_: &Parts) -> Option<Vec<u8>> {
    None
}

#[cfg(feature = "tonic")]
fn tonic_remote_addr(parts: &Parts) -> Option<SocketAddr> {
    #[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
    if let Some(tls) = parts.extensions.get::<TonicTls>() {
        return tls.get_ref().remote_addr();
    }
    parts
        .extensions
        .get::<tonic::transport::server::TcpConnectInfo>()?
        .remote_addr()
}

#[cfg(not(feature = "tonic"))]
fn tonic_remote_addr(_: &Parts) -> Option<SocketAddr> {
    None
}
