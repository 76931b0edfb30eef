//! The JWS signature algorithms the guard verifies (RFC 7518 §3.1, RFC 8037 §3.1), for access
//! tokens and DPoP proofs. HMAC and `none` are not among them: a public key must never become
//! an HMAC secret (RFC 8725 §3.1, §3.2), so no configuration can allow them.

use std::fmt;

/// An asymmetric JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1).
///
/// ```
/// use tower_oauth_guard::{Algorithm, OAuthGuard};
///
/// let builder = OAuthGuard::builder().algorithms([Algorithm::ES256, Algorithm::PS256]);
/// # let _ = builder;
/// assert_eq!(Algorithm::EdDSA.name(), "EdDSA");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// ECDSA using P-256 and SHA-256.
    ES256,
    /// ECDSA using P-384 and SHA-384.
    ES384,
    /// RSASSA-PKCS1-v1_5 using SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 using SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 using SHA-512.
    RS512,
    /// RSASSA-PSS using SHA-256 and MGF1 with SHA-256.
    PS256,
    /// RSASSA-PSS using SHA-384 and MGF1 with SHA-384.
    PS384,
    /// RSASSA-PSS using SHA-512 and MGF1 with SHA-512.
    PS512,
    /// EdDSA with Ed25519 (RFC 8037).
    EdDSA,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The algorithm an `alg` header names, compared exactly (RFC 7515 §4.1.1 values are
    /// case-sensitive); `None` for `none`, HMAC and anything unknown.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        [
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
            Algorithm::EdDSA,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }

    /// The same algorithm for the verification backend.
    #[cfg(any(test, not(feature = "aws-lc-rs")))]
    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Algorithm::ES256 => jsonwebtoken::Algorithm::ES256,
            Algorithm::ES384 => jsonwebtoken::Algorithm::ES384,
            Algorithm::RS256 => jsonwebtoken::Algorithm::RS256,
            Algorithm::RS384 => jsonwebtoken::Algorithm::RS384,
            Algorithm::RS512 => jsonwebtoken::Algorithm::RS512,
            Algorithm::PS256 => jsonwebtoken::Algorithm::PS256,
            Algorithm::PS384 => jsonwebtoken::Algorithm::PS384,
            Algorithm::PS512 => jsonwebtoken::Algorithm::PS512,
            Algorithm::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_exactly_and_exclude_hmac_and_none() {
        for name in [
            "ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA",
        ] {
            let alg = Algorithm::from_name(name).unwrap();
            assert_eq!(alg.name(), name);
            assert_eq!(format!("{:?}", alg.jwt()), name);
        }
        for name in [
            "none", "HS256", "HS384", "HS512", "es256", "EDDSA", "ES256 ", "",
        ] {
            assert_eq!(Algorithm::from_name(name), None, "{name:?}");
        }
    }
}
