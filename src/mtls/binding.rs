//! The certificate binding check (RFC 8705 §3): `cnf.x5t#S256` against the client
//! certificate of this request, and whether unbound tokens are accepted.

use super::peer::{self, ClientCertHeader};
use super::thumbprint::CertificateThumbprint;

/// Whether unbound tokens are accepted (RFC 8705 §3).
///
/// ```
/// use tower_oauth_guard::{Issuer, MtlsMode};
///
/// // The guard's mode is set by `Mtls::allowed()` / `Mtls::required()`; one issuer may differ.
/// let partner = Issuer::new("https://partner.example").mtls(MtlsMode::Required);
/// # let _ = partner;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtlsMode {
    /// Certificate-bound tokens are checked; unbound tokens pass (as with
    /// [`DpopMode::Allowed`](crate::DpopMode::Allowed)).
    #[default]
    Allowed,
    /// Only certificate-bound tokens are accepted.
    Required,
}

/// Why the certificate binding failed. All answer `invalid_token` (RFC 8705 §3).
///
/// ```
/// use tower_oauth_guard::{Rejection, MtlsError};
///
/// // Every refusal has a stable reason code, for logs and metrics.
/// fn log(rejection: &Rejection) {
///     if let Rejection::Mtls(e) = rejection {
///         println!("refused: {} ({e})", e.reason());
///     }
/// }
/// # let _ = log;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MtlsError {
    /// The token is certificate-bound and the connection presented no client certificate.
    MissingCertificate,
    /// The client certificate is not the one the token is bound to.
    CertificateMismatch,
    /// Certificate-bound tokens are required and this token carries no `cnf.x5t#S256`.
    TokenNotBound,
    /// A trusted proxy sent a `Client-Cert` header that does not parse (RFC 9440 §2).
    MalformedClientCertHeader,
}

impl MtlsError {
    /// A stable reason code for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            MtlsError::MissingCertificate => "mtls_certificate_missing",
            MtlsError::CertificateMismatch => "mtls_certificate_mismatch",
            MtlsError::TokenNotBound => "mtls_token_not_bound",
            MtlsError::MalformedClientCertHeader => "mtls_client_cert_header_malformed",
        }
    }
}

impl std::fmt::Display for MtlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MtlsError::MissingCertificate => "client certificate required for this token",
            MtlsError::CertificateMismatch => "client certificate does not match the token binding",
            MtlsError::TokenNotBound => "certificate-bound token required",
            MtlsError::MalformedClientCertHeader => "malformed client certificate",
        })
    }
}

impl std::error::Error for MtlsError {}

/// A guard's mTLS settings (RFC 8705 §3): whether unbound tokens pass, and whether a
/// TLS-terminating proxy's `Client-Cert` header (RFC 9440) is trusted.
///
/// ```
/// use tower_oauth_guard::{ClientCertHeader, Mtls};
///
/// let mtls = Mtls::required()
///     .trust_client_cert_header(ClientCertHeader::from_proxies(["10.0.0.7".parse().unwrap()]));
/// # let _ = mtls;
/// ```
#[derive(Debug, Clone)]
pub struct Mtls {
    pub(crate) mode: MtlsMode,
    pub(crate) client_cert_header: Option<ClientCertHeader>,
}

impl Mtls {
    /// Certificate-bound tokens are checked; unbound tokens pass (the default).
    pub fn allowed() -> Self {
        Mtls {
            mode: MtlsMode::Allowed,
            client_cert_header: None,
        }
    }

    /// Only certificate-bound tokens are accepted.
    pub fn required() -> Self {
        Mtls {
            mode: MtlsMode::Required,
            client_cert_header: None,
        }
    }

    /// Read the client certificate from a trusted TLS-terminating proxy's `Client-Cert`
    /// header (RFC 9440) when the request comes from one of its addresses.
    pub fn trust_client_cert_header(mut self, trust: ClientCertHeader) -> Self {
        self.client_cert_header = Some(trust);
        self
    }

    /// Checks `x5t#S256` (if the token has one, or if binding is required) against the
    /// request's client certificate. `mode` is the guard's, or the token issuer's override.
    /// Returns the thumbprint that matched.
    pub(crate) fn verify(
        &self,
        parts: &http::request::Parts,
        x5t_s256: Option<&str>,
        mode: MtlsMode,
    ) -> Result<Option<String>, MtlsError> {
        let Some(expected) = x5t_s256 else {
            return match mode {
                MtlsMode::Required => Err(MtlsError::TokenNotBound),
                MtlsMode::Allowed => Ok(None),
            };
        };
        let leaf = peer::leaf_certificate(parts, self.client_cert_header.as_ref())
            .map_err(|_| MtlsError::MalformedClientCertHeader)?
            .ok_or(MtlsError::MissingCertificate)?;
        let thumbprint = CertificateThumbprint::from_der(&leaf);
        if thumbprint.matches_x5t_s256(expected) {
            Ok(Some(thumbprint.to_base64url()))
        } else {
            Err(MtlsError::CertificateMismatch)
        }
    }
}
