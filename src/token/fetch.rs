//! A small HTTPS client for issuer metadata and key sets: hyper-util + rustls, bounded bodies,
//! timeouts, and `Cache-Control: max-age` (RFC 9111 §5.2.2.1).

use std::time::Duration;

use bytes::Bytes;
use http::{Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one metadata or JWKS request may take, end to end.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a document could not be fetched.
///
/// ```
/// use tower_oauth_guard::{BuildError, FetchError, Issuer, OAuthGuard};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // Keys travel over HTTPS only (plain HTTP on loopback, for tests).
/// let built = OAuthGuard::builder()
///     .trust(Issuer::new("https://issuer.example").audience("api").jwks_url("http://issuer.example/jwks"))
///     .build()
///     .await;
/// assert!(matches!(built, Err(BuildError::InvalidJwksUrl(_, FetchError::InsecureUrl))));
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not `https` (plain `http` is accepted for loopback hosts only).
    InsecureUrl,
    /// The URL does not parse.
    InvalidUrl,
    /// Connecting or reading failed.
    Transport(Box<dyn std::error::Error + Send + Sync>),
    /// The server answered something other than 200.
    Status(http::StatusCode),
    /// The body exceeds the limit for this kind of document.
    TooLarge,
    /// No answer within the fetch timeout (10 s).
    Timeout,
    /// No TLS crypto provider (see the crate's features).
    NoTlsProvider,
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InsecureUrl => f.write_str("URL must be https (http only for loopback)"),
            Self::InvalidUrl => f.write_str("invalid URL"),
            Self::Transport(e) => write!(f, "transport error: {e}"),
            Self::Status(s) => write!(f, "unexpected status {s}"),
            Self::TooLarge => f.write_str("response body too large"),
            Self::Timeout => f.write_str("timed out"),
            Self::NoTlsProvider => f.write_str("no rustls crypto provider"),
        }
    }
}

impl std::error::Error for FetchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Transport(e) => Some(e.as_ref()),
            _ => None,
        }
    }
}

/// A fetched document.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) body: Bytes,
    /// `Cache-Control: max-age`, unbounded; the caller clamps it.
    pub(crate) max_age: Option<Duration>,
}

/// The client used for every issuer request of one guard.
#[derive(Clone, Debug)]
pub(crate) struct HttpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl HttpClient {
    /// A client trusting `tls` or, by default, the platform's root certificates.
    pub(crate) fn new(tls: Option<rustls::ClientConfig>) -> Result<Self, FetchError> {
        let tls = match tls {
            Some(tls) => tls,
            None => {
                let provider = crate::crypto::tls_provider().ok_or(FetchError::NoTlsProvider)?;
                let mut roots = rustls::RootCertStore::empty();
                // Unreadable platform certificates are skipped: the remaining ones still work,
                // and an issuer signed by a missing root fails loudly at fetch time.
                let native = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(native.certs);
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| FetchError::Transport(Box::new(e)))?
                    .with_root_certificates(roots)
                    .with_no_client_auth()
            }
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        Ok(HttpClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// GETs `url`, accepting at most `max_body` bytes.
    pub(crate) async fn get(&self, url: &Uri, max_body: usize) -> Result<Fetched, FetchError> {
        check_url(url)?;
        let request = http::Request::get(url.clone())
            .header(header::ACCEPT, "application/json")
            .body(Full::default())
            .map_err(|_| FetchError::InvalidUrl)?;
        let answer = self.send(request, max_body, FETCH_TIMEOUT).await?;
        if answer.status != http::StatusCode::OK {
            return Err(FetchError::Status(answer.status));
        }
        let max_age = answer
            .headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age);
        Ok(Fetched {
            body: answer.body,
            max_age,
        })
    }

    /// POSTs `form` (`application/x-www-form-urlencoded`) to `url` with `headers` and
    /// returns the answer, whatever its status, with at most `max_body` bytes of body.
    pub(crate) async fn post_form(
        &self,
        url: &Uri,
        headers: http::HeaderMap,
        form: String,
        max_body: usize,
        timeout: Duration,
    ) -> Result<Answer, FetchError> {
        check_url(url)?;
        let mut request = http::Request::post(url.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|_| FetchError::InvalidUrl)?;
        request.headers_mut().extend(headers);
        self.send(request, max_body, timeout).await
    }

    async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        max_body: usize,
        timeout: Duration,
    ) -> Result<Answer, FetchError> {
        let work = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Transport(Box::new(e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, max_body)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<http_body_util::LengthLimitError>() {
                        FetchError::TooLarge
                    } else {
                        FetchError::Transport(e)
                    }
                })?
                .to_bytes();
            Ok(Answer {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| FetchError::Timeout)?
    }
}

/// An answer to a request: status, headers and the (bounded) body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: http::StatusCode,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

/// Parses an absolute URL and applies [`check_url`].
pub(crate) fn parse_url(url: &str) -> Result<Uri, FetchError> {
    let uri: Uri = url.parse().map_err(|_| FetchError::InvalidUrl)?;
    check_url(&uri)?;
    Ok(uri)
}

/// Keys and metadata travel over TLS; `http` is tolerated for loopback (tests, sidecars).
fn check_url(url: &Uri) -> Result<(), FetchError> {
    let host = url.host().ok_or(FetchError::InvalidUrl)?;
    match url.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(FetchError::InsecureUrl),
        _ => Err(FetchError::InvalidUrl),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `max-age=N` from a `Cache-Control` value (`no-store`/`no-cache` mean zero).
fn max_age(value: &str) -> Option<Duration> {
    let mut result = None;
    for directive in value.split(',').map(str::trim) {
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Some(Duration::ZERO);
        }
        if let Some((name, secs)) = directive.split_once('=')
            && name.trim().eq_ignore_ascii_case("max-age")
        {
            result = secs
                .trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_max_age() {
        assert_eq!(
            max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn requires_https_except_loopback() {
        assert!(parse_url("https://issuer.example/jwks").is_ok());
        assert!(parse_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(parse_url("http://[::1]:8080/jwks").is_ok());
        assert!(parse_url("http://localhost/jwks").is_ok());
        assert!(matches!(
            parse_url("http://issuer.example/jwks"),
            Err(FetchError::InsecureUrl)
        ));
        assert!(matches!(
            parse_url("ftp://x/jwks"),
            Err(FetchError::InvalidUrl)
        ));
        assert!(matches!(parse_url("/jwks"), Err(FetchError::InvalidUrl)));
    }
}
