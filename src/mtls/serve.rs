//! Serving HTTPS with client certificates: tokio-rustls + hyper-util, one task per
//! connection, the peer certificates put into every request's extensions.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;

use crate::transport::{PeerCertificates, RemoteAddr, TlsConnection};

/// A client that connects but does not finish the handshake in this time is dropped, so slow
/// clients cannot pile up half-open connections.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether and how the server asks for client certificates (RFC 8705 §2 PKI method).
///
/// ``` no_run
/// use std::sync::Arc;
/// use tower_oauth_guard::{ClientAuth, load_certificates, load_private_key, serve_tls, server_config};
///
/// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
/// let mut client_cas = rustls::RootCertStore::empty();
/// for ca in load_certificates("client-ca.pem")? {
///     client_cas.add(ca)?;
/// }
/// let config = server_config(
///     load_certificates("server.pem")?, // leaf first
///     load_private_key("server.key")?,
///     ClientAuth::Optional(Arc::new(client_cas)), // bearer and DPoP clients share the port
/// )?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// serve_tls(listener, Arc::new(config), app).await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No client certificates requested.
    None,
    /// Requested and verified against these roots when presented; connections without one
    /// are accepted (bearer and DPoP clients share the port).
    Optional(Arc<RootCertStore>),
    /// Every connection must present a certificate chaining to these roots.
    Required(Arc<RootCertStore>),
}

/// Why a server configuration could not be built.
///
/// ```
/// use tower_oauth_guard::{ClientAuth, ServeTlsError, server_config};
///
/// // A key that does not parse is an error, not a panic.
/// let key = rustls::pki_types::PrivateKeyDer::Pkcs8(vec![0u8; 8].into());
/// let result = server_config(vec![], key, ClientAuth::None);
/// assert!(matches!(result, Err(ServeTlsError::Tls(_)) | Err(ServeTlsError::NoTlsProvider)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeTlsError {
    /// No rustls crypto provider (see the crate's features).
    NoTlsProvider,
    /// rustls refused the certificate, key or roots.
    Tls(rustls::Error),
    /// The client verifier could not be built (for example, no roots).
    ClientVerifier(rustls::server::VerifierBuilderError),
}

impl std::fmt::Display for ServeTlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoTlsProvider => f.write_str("no rustls crypto provider"),
            Self::Tls(e) => write!(f, "TLS configuration: {e}"),
            Self::ClientVerifier(e) => write!(f, "client certificate verifier: {e}"),
        }
    }
}

impl std::error::Error for ServeTlsError {}

/// Reads every certificate of a PEM file (leaf first, for a chain).
///
/// ``` no_run
/// use std::sync::Arc;
/// use tower_oauth_guard::{ClientAuth, load_certificates, load_private_key, serve_tls, server_config};
///
/// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
/// let mut client_cas = rustls::RootCertStore::empty();
/// for ca in load_certificates("client-ca.pem")? {
///     client_cas.add(ca)?;
/// }
/// let config = server_config(
///     load_certificates("server.pem")?, // leaf first
///     load_private_key("server.key")?,
///     ClientAuth::Optional(Arc::new(client_cas)), // bearer and DPoP clients share the port
/// )?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// serve_tls(listener, Arc::new(config), app).await;
/// # Ok(()) }
/// ```
pub fn load_certificates(
    path: impl AsRef<std::path::Path>,
) -> Result<Vec<CertificateDer<'static>>, pki_types::pem::Error> {
    use pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)?.collect()
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
///
/// ``` no_run
/// use std::sync::Arc;
/// use tower_oauth_guard::{ClientAuth, load_certificates, load_private_key, serve_tls, server_config};
///
/// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
/// let mut client_cas = rustls::RootCertStore::empty();
/// for ca in load_certificates("client-ca.pem")? {
///     client_cas.add(ca)?;
/// }
/// let config = server_config(
///     load_certificates("server.pem")?, // leaf first
///     load_private_key("server.key")?,
///     ClientAuth::Optional(Arc::new(client_cas)), // bearer and DPoP clients share the port
/// )?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// serve_tls(listener, Arc::new(config), app).await;
/// # Ok(()) }
/// ```
pub fn load_private_key(
    path: impl AsRef<std::path::Path>,
) -> Result<PrivateKeyDer<'static>, pki_types::pem::Error> {
    use pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_file(path)
}

/// A rustls server configuration for `cert_chain`/`key`, asking for client certificates as
/// `client_auth` says, offering HTTP/2 and HTTP/1.1 by ALPN.
///
/// ``` no_run
/// use std::sync::Arc;
/// use tower_oauth_guard::{ClientAuth, load_certificates, load_private_key, serve_tls, server_config};
///
/// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
/// let mut client_cas = rustls::RootCertStore::empty();
/// for ca in load_certificates("client-ca.pem")? {
///     client_cas.add(ca)?;
/// }
/// let config = server_config(
///     load_certificates("server.pem")?, // leaf first
///     load_private_key("server.key")?,
///     ClientAuth::Optional(Arc::new(client_cas)), // bearer and DPoP clients share the port
/// )?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// serve_tls(listener, Arc::new(config), app).await;
/// # Ok(()) }
/// ```
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
) -> Result<rustls::ServerConfig, ServeTlsError> {
    let provider = crate::crypto::tls_provider().ok_or(ServeTlsError::NoTlsProvider)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(ServeTlsError::Tls)?;
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Optional(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots, provider)
                .allow_unauthenticated()
                .build()
                .map_err(ServeTlsError::ClientVerifier)?,
        ),
        ClientAuth::Required(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(ServeTlsError::ClientVerifier)?,
        ),
    };
    let mut config = builder
        .with_single_cert(cert_chain, key)
        .map_err(ServeTlsError::Tls)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `service` (an axum `Router`, or any tower HTTP service) over TLS on `listener`.
///
/// Each connection is handshaken in its own task (with [`HANDSHAKE_TIMEOUT`]), so one slow
/// client never blocks the accept loop. Every request carries [`TlsConnection`],
/// [`RemoteAddr`] and, when the client sent one, [`PeerCertificates`] in its extensions.
/// Runs until the task is dropped; accept errors (such as running out of file descriptors)
/// are logged and retried.
///
/// ``` no_run
/// use std::sync::Arc;
/// use tower_oauth_guard::{ClientAuth, load_certificates, load_private_key, serve_tls, server_config};
///
/// # async fn run(app: axum::Router) -> Result<(), Box<dyn std::error::Error>> {
/// let mut client_cas = rustls::RootCertStore::empty();
/// for ca in load_certificates("client-ca.pem")? {
///     client_cas.add(ca)?;
/// }
/// let config = server_config(
///     load_certificates("server.pem")?, // leaf first
///     load_private_key("server.key")?,
///     ClientAuth::Optional(Arc::new(client_cas)), // bearer and DPoP clients share the port
/// )?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8443").await?;
/// serve_tls(listener, Arc::new(config), app).await;
/// # Ok(()) }
/// ```
pub async fn serve_tls<S, B>(listener: TcpListener, config: Arc<rustls::ServerConfig>, service: S)
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let acceptor = TlsAcceptor::from(config);
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(serve_connection(
            acceptor.clone(),
            stream,
            remote,
            service.clone(),
        ));
    }
}

async fn serve_connection<S, B>(
    acceptor: TlsAcceptor,
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    service: S,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
    };
    let peer = tls.get_ref().1.peer_certificates().map(|certs| {
        PeerCertificates(Arc::new(
            certs.iter().map(|c| c.clone().into_owned()).collect(),
        ))
    });
    let hyper_service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        let extensions = request.extensions_mut();
        extensions.insert(TlsConnection);
        extensions.insert(RemoteAddr(remote));
        if let Some(peer) = &peer {
            extensions.insert(peer.clone());
        }
        let mut service = service.clone();
        async move {
            std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(request).await
        }
    });
    if let Err(error) = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), hyper_service)
        .await
    {
        tracing::debug!(%remote, %error, "connection ended with an error");
    }
}
