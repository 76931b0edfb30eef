//! Step 3b: certificate-bound access tokens (RFC 8705 §3).
//!
//! The token carries `cnf.x5t#S256`, the SHA-256 thumbprint of the client certificate the
//! authorization server saw. The resource server compares it with the certificate of the TLS
//! connection the token arrives on: a stolen token is useless without the private key.

mod binding;
pub mod client_cert;
pub mod peer;
#[cfg(feature = "serve-tls")]
pub mod serve;
pub mod thumbprint;

pub use binding::{Mtls, MtlsError, MtlsMode};
pub use peer::ClientCertHeader;
pub use thumbprint::CertificateThumbprint;
