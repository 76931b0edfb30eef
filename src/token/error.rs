//! Why an access token was refused (RFC 6750 §3.1 `invalid_token`).

/// Why an access token is not valid. Every variant answers `invalid_token`; the variant is for
/// logs and metrics ([`TokenError::reason`]), the description for the client leaks nothing.
///
/// ```
/// use tower_oauth_guard::{Rejection, TokenError};
///
/// // Every refusal has a stable reason code, for logs and metrics.
/// fn log(rejection: &Rejection) {
///     if let Rejection::Token(e) = rejection {
///         println!("refused: {} ({e})", e.reason());
///     }
/// }
/// # let _ = log;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWS compact serialization with JSON header and claims.
    Malformed,
    /// `alg` is not on the allow-list (this includes `none` and every HMAC algorithm).
    AlgorithmNotAllowed,
    /// `typ` names another kind of JWT (`dpop+jwt`, `id_token+jwt`, ...), or is not `at+jwt`
    /// while RFC 9068 typing is required (RFC 9068 §4 check 2).
    WrongType,
    /// No `iss`, or one this guard does not trust.
    UnknownIssuer,
    /// No key of the issuer matches `kid` and `alg`, even after a refresh.
    UnknownKey,
    /// The signature does not verify.
    InvalidSignature,
    /// No `exp` claim (RFC 9068 §2.2: REQUIRED).
    MissingExpiry,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway).
    IssuedInFuture,
    /// `aud` does not contain this resource server (RFC 9068 §4 check 5).
    InvalidAudience,
    /// A claim has the wrong JSON type.
    InvalidClaim,
    /// `cnf` binds the token in a way this guard does not enforce (RFC 7800 §3.1): not an
    /// object, a method other than `jkt` / `x5t#S256`, or one of those with the wrong type.
    UnsupportedConfirmation,
    /// The issuer's introspection endpoint says the token is not active (RFC 7662 §2.2):
    /// revoked, expired, or never issued.
    Inactive,
    /// The introspection endpoint could not answer (unreachable, timed out, an error status,
    /// or an answer that is not an introspection response): refused with `503` and
    /// `Retry-After`, never taken for active (RFC 7662 §4).
    IntrospectionUnavailable,
}

impl TokenError {
    /// A stable reason code for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "token_malformed",
            Self::AlgorithmNotAllowed => "token_alg_not_allowed",
            Self::WrongType => "token_wrong_typ",
            Self::UnknownIssuer => "token_unknown_issuer",
            Self::UnknownKey => "token_unknown_key",
            Self::InvalidSignature => "token_bad_signature",
            Self::MissingExpiry => "token_missing_exp",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::IssuedInFuture => "token_iat_in_future",
            Self::InvalidAudience => "token_wrong_audience",
            Self::InvalidClaim => "token_invalid_claim",
            Self::UnsupportedConfirmation => "token_unsupported_cnf",
            Self::Inactive => "token_inactive",
            Self::IntrospectionUnavailable => "token_introspection_unavailable",
        }
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed token",
            Self::AlgorithmNotAllowed => "signature algorithm not allowed",
            Self::WrongType => "token is not an access token (typ)",
            Self::UnknownIssuer => "untrusted issuer",
            Self::UnknownKey => "unknown signing key",
            Self::InvalidSignature => "invalid signature",
            Self::MissingExpiry => "token has no expiry",
            Self::Expired => "token expired",
            Self::NotYetValid => "token not yet valid",
            Self::IssuedInFuture => "token issued in the future",
            Self::InvalidAudience => "token not intended for this resource",
            Self::InvalidClaim => "invalid claim",
            Self::UnsupportedConfirmation => "token confirmation method not supported",
            Self::Inactive => "token is not active",
            Self::IntrospectionUnavailable => "token introspection unavailable",
        })
    }
}

impl std::error::Error for TokenError {}
