//! Entry points for the coverage-guided fuzz targets under `fuzz/`, which reach the parsers
//! that are not public. Compiled only under `cargo fuzz` (`--cfg fuzzing`); not part of the
//! API.

use http::HeaderMap;
use http::request::Parts;

use crate::dpop::htu::HtuError;
use crate::dpop::origin::{PublicUri, request_htus};

/// The credential extractor: `Authorization` and `DPoP` (RFC 6750 §2.1, RFC 9449 §4.1, §7.1).
pub fn credentials(headers: &HeaderMap) {
    let _ = crate::extract::credentials(headers);
    let _ = crate::extract::presented_scheme(headers);
    let _ = crate::extract::dpop_proof(headers);
}

/// The `Client-Cert` / `Client-Cert-Chain` parser (RFC 9440 §2).
pub fn client_cert(headers: &HeaderMap) {
    let _ = crate::mtls::client_cert::client_cert_from_headers(headers);
}

/// The public origin of a request, from `Forwarded` (RFC 7239), `X-Forwarded-*` or `Host`.
pub fn request_origin(parts: &Parts, public: &PublicUri) -> Result<Vec<String>, HtuError> {
    request_htus(parts, public)
}
