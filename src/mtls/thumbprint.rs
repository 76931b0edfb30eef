//! X.509 certificate SHA-256 thumbprints for certificate-bound tokens
//! (RFC 8705 §3.1, confirmation method `x5t#S256`).

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of a SHA-256 digest.
const THUMBPRINT_LEN: usize = 32;
/// Length of its unpadded base64url form; longer claims are rejected before decoding.
const THUMBPRINT_B64_LEN: usize = 43;

/// SHA-256 of a certificate's DER encoding (RFC 8705 §3.1).
///
/// ```
/// use tower_oauth_guard::CertificateThumbprint;
///
/// # let der: &[u8] = b"the DER bytes of a certificate";
/// let thumbprint = CertificateThumbprint::from_der(der);
/// let claim = thumbprint.to_base64url(); // what an authorization server puts in cnf.x5t#S256
/// assert!(thumbprint.matches_x5t_s256(&claim));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertificateThumbprint([u8; THUMBPRINT_LEN]);

impl CertificateThumbprint {
    /// Hashes the DER encoding of the client certificate (RFC 8705 §3.1).
    pub fn from_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; THUMBPRINT_LEN] {
        &self.0
    }

    /// The `x5t#S256` value: base64url without padding (RFC 8705 §3.1, RFC 7515 §2).
    pub fn to_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Whether a token's `cnf.x5t#S256` names this certificate (RFC 8705 §3.1).
    /// Padded, malformed or wrong-length claims never match; the digest
    /// comparison is constant time.
    pub fn matches_x5t_s256(&self, claim: &str) -> bool {
        if claim.len() != THUMBPRINT_B64_LEN {
            return false;
        }
        let mut decoded = [0u8; THUMBPRINT_LEN];
        match URL_SAFE_NO_PAD.decode_slice(claim, &mut decoded) {
            Ok(THUMBPRINT_LEN) => bool::from(decoded.ct_eq(&self.0)),
            _ => false,
        }
    }
}

impl fmt::Debug for CertificateThumbprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertificateThumbprint({})", self.to_base64url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DER of `SEQUENCE { INTEGER 5 }`.
    const DER: &[u8] = b"\x30\x03\x02\x01\x05";
    /// Computed independently with
    /// `printf '\x30\x03\x02\x01\x05' | openssl dgst -sha256 -binary | basenc --base64url`
    /// (output `...1yk=`; padding removed).
    const EXPECTED: &str = "QXx3Y8TjIKa3R7PLDG0i-TdBspoytIWUuOtMFE_m1yk";

    #[test]
    fn computes_sha256_thumbprint_of_der() {
        assert_eq!(
            CertificateThumbprint::from_der(DER).to_base64url(),
            EXPECTED
        );
    }

    #[test]
    fn matches_its_own_x5t_s256_claim() {
        assert!(CertificateThumbprint::from_der(DER).matches_x5t_s256(EXPECTED));
    }

    #[test]
    fn rejects_claim_for_another_certificate() {
        let other = CertificateThumbprint::from_der(b"\x30\x03\x02\x01\x06");
        assert!(!other.matches_x5t_s256(EXPECTED));
    }

    #[test]
    fn rejects_padded_malformed_or_truncated_claims() {
        let t = CertificateThumbprint::from_der(DER);
        assert!(!t.matches_x5t_s256(&format!("{EXPECTED}=")));
        assert!(!t.matches_x5t_s256(&EXPECTED[..42]));
        assert!(!t.matches_x5t_s256(""));
        // Standard-alphabet form of the same digest.
        let standard = EXPECTED.replace('-', "+").replace('_', "/");
        assert!(!t.matches_x5t_s256(&standard));
        // Same digest bits as the final 'k' but nonzero padding bits.
        let mut non_canonical = EXPECTED[..42].to_owned();
        non_canonical.push('l');
        assert!(!t.matches_x5t_s256(&non_canonical));
    }
}
