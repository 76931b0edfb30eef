//! Where the client certificate comes from: the TLS connection itself, or a trusted
//! TLS-terminating proxy's `Client-Cert` header (RFC 9440).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::request::Parts;
use pki_types::CertificateDer;

use super::MtlsError;
use super::client_cert;

/// The client's certificate chain, leaf first, as a request extension. [`super::serve_tls`]
/// inserts it into every request of a connection that presented one.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<Vec<CertificateDer<'static>>>);

impl PeerCertificates {
    /// The end-entity certificate.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.0.first()
    }
}

/// Request extension marking a request that arrived over TLS (the `https` of `htu`).
#[derive(Debug, Clone, Copy)]
pub struct TlsConnection;

/// Request extension: the address of the TCP peer, inserted by [`super::serve_tls`].
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub SocketAddr);

/// Trust in a TLS-terminating proxy that forwards the client certificate in `Client-Cert`
/// (RFC 9440 §2). Off unless configured: anyone can send that header.
#[derive(Debug, Clone)]
pub struct ClientCertHeader {
    proxies: Option<Arc<[IpAddr]>>,
}

impl ClientCertHeader {
    /// Honour the header only on connections from these proxy addresses (needs the peer
    /// address: [`RemoteAddr`], or axum's `ConnectInfo<SocketAddr>`).
    pub fn from_proxies(proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        ClientCertHeader {
            proxies: Some(proxies.into_iter().collect()),
        }
    }

    /// Honour the header from any peer. Only sound when the service is reachable through the
    /// proxy alone, and the proxy overwrites the header.
    pub fn from_any_peer() -> Self {
        ClientCertHeader { proxies: None }
    }

    fn trusts(&self, parts: &Parts) -> bool {
        let Some(proxies) = &self.proxies else {
            return true;
        };
        remote_ip(parts).is_some_and(|ip| proxies.contains(&ip))
    }
}

fn remote_ip(parts: &Parts) -> Option<IpAddr> {
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
    #[cfg(feature = "tonic")]
    if let Some(addr) = crate::tonic::remote_addr(parts) {
        return Some(addr.ip());
    }
    None
}

/// Whether the request arrived over TLS, as far as the guard can tell.
pub(crate) fn is_tls(parts: &Parts) -> bool {
    if parts.extensions.get::<TlsConnection>().is_some()
        || parts.extensions.get::<PeerCertificates>().is_some()
    {
        return true;
    }
    #[cfg(feature = "tonic")]
    if crate::tonic::is_tls(parts) {
        return true;
    }
    false
}

/// The leaf certificate DER, from the connection or a trusted proxy header.
pub(crate) fn leaf_certificate<'a>(
    parts: &'a Parts,
    header: Option<&ClientCertHeader>,
) -> Result<Option<Cow<'a, [u8]>>, MtlsError> {
    if let Some(leaf) = parts
        .extensions
        .get::<PeerCertificates>()
        .and_then(PeerCertificates::leaf)
    {
        return Ok(Some(Cow::Borrowed(leaf.as_ref())));
    }
    #[cfg(feature = "tonic")]
    if let Some(leaf) = crate::tonic::peer_leaf(parts) {
        return Ok(Some(Cow::Owned(leaf)));
    }
    match header {
        Some(h) if h.trusts(parts) => match client_cert::client_cert_from_headers(&parts.headers) {
            Ok(Some((leaf, _chain))) => Ok(Some(Cow::Owned(leaf))),
            Ok(None) => Ok(None),
            Err(_) => Err(MtlsError::MalformedClientCertHeader),
        },
        _ => Ok(None),
    }
}

/// Removes `Client-Cert`/`Client-Cert-Chain` unless they come from a trusted proxy, so the
/// inner service never sees a spoofed certificate (RFC 9440 §5.2).
pub(crate) fn strip_untrusted_client_cert(parts: &mut Parts, header: Option<&ClientCertHeader>) {
    if header.is_some_and(|h| h.trusts(parts)) {
        return;
    }
    parts.headers.remove(client_cert::CLIENT_CERT);
    parts.headers.remove(client_cert::CLIENT_CERT_CHAIN);
}
