//! Where the client certificate comes from: the TLS connection itself, or a trusted
//! TLS-terminating proxy's `Client-Cert` header (RFC 9440).

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;

use super::client_cert::{self, ClientCertError};
use crate::transport;

/// Trust in a TLS-terminating proxy that forwards the client certificate in `Client-Cert`
/// (RFC 9440 §2). Off unless configured: anyone can send that header.
///
/// ```
/// use tower_oauth_guard::{ClientCertHeader, Mtls};
///
/// let proxies = ["10.0.0.5".parse()?, "10.0.0.6".parse()?];
/// let mtls = Mtls::allowed().trust_client_cert_header(ClientCertHeader::from_proxies(proxies));
/// # let _ = mtls;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct ClientCertHeader {
    proxies: Option<Arc<[IpAddr]>>,
}

impl ClientCertHeader {
    /// Honour the header only on connections from these proxy addresses (needs the peer
    /// address: [`RemoteAddr`](crate::RemoteAddr), or axum's `ConnectInfo<SocketAddr>`).
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
        transport::remote_ip(parts).is_some_and(|ip| proxies.contains(&ip))
    }
}

/// The leaf certificate DER, from the connection or a trusted proxy header.
pub(crate) fn leaf_certificate<'a>(
    parts: &'a Parts,
    header: Option<&ClientCertHeader>,
) -> Result<Option<Cow<'a, [u8]>>, ClientCertError> {
    if let Some(leaf) = transport::peer_leaf(parts) {
        return Ok(Some(leaf));
    }
    match header {
        Some(h) if h.trusts(parts) => client_cert::client_cert_from_headers(&parts.headers)
            .map(|forwarded| forwarded.map(|(leaf, _chain)| Cow::Owned(leaf))),
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
