//! Step 1: credentials from the request head (RFC 6750 §2.1, RFC 9449 §7.1).
//!
//! Everything read from the client is bounded here, before any parsing or crypto happens.

use http::HeaderMap;
use http::header::AUTHORIZATION;

use crate::limits::{MAX_DPOP_PROOF_LEN, MAX_TOKEN_LEN};

/// `DPoP` header name (RFC 9449 §4.1).
pub const DPOP: http::HeaderName = http::HeaderName::from_static("dpop");

/// The authentication scheme the client used.
///
/// ```
/// use tower_oauth_guard::Scheme;
///
/// assert_eq!(Scheme::Dpop.as_str(), "DPoP");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Authorization: Bearer` (RFC 6750 §2.1).
    Bearer,
    /// `Authorization: DPoP` (RFC 9449 §7.1).
    Dpop,
}

impl Scheme {
    /// The scheme as it appears in challenges.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Bearer => "Bearer",
            Scheme::Dpop => "DPoP",
        }
    }
}

/// The credentials a request carries. The `DPoP` header is read separately
/// ([`dpop_proof`]), only where the token needs a proof: beside an unbound Bearer token it is
/// ignored, whatever it holds (RFC 9449 §7.2).
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// How the token was presented.
    pub scheme: Scheme,
    /// The access token, syntax-checked (token68) and size-bounded.
    pub token: &'a str,
}

/// The token is a secret: `Debug` shows its length only.
impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("scheme", &self.scheme)
            .field("token_len", &self.token.len())
            .finish()
    }
}

/// Why the credentials could not be read.
///
/// ```
/// use tower_oauth_guard::{Rejection, CredentialsError};
///
/// // Every refusal has a stable reason code, for logs and metrics.
/// fn log(rejection: &Rejection) {
///     if let Rejection::Credentials(e) = rejection {
///         println!("refused: {} ({e})", e.reason());
///     }
/// }
/// # let _ = log;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialsError {
    /// No `Authorization` header (RFC 6750 §3.1: answer without an error code).
    Missing,
    /// An `Authorization` scheme this guard does not speak (treated like [`Self::Missing`]).
    UnsupportedScheme,
    /// More than one `Authorization` header.
    MultipleAuthorization,
    /// The token is not `token68` (RFC 9110 §11.2).
    MalformedToken,
    /// The token exceeds [`MAX_TOKEN_LEN`].
    TokenTooLarge,
    /// More than one `DPoP` header, or a list in one (RFC 9449 §4.3 check 1).
    MultipleDpopProofs,
    /// The `DPoP` header exceeds [`MAX_DPOP_PROOF_LEN`] or is not visible ASCII.
    MalformedDpopProof,
}

impl CredentialsError {
    /// A stable, secret-free reason code for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "credentials_missing",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::MultipleAuthorization => "multiple_authorization_headers",
            Self::MalformedToken => "malformed_token",
            Self::TokenTooLarge => "token_too_large",
            Self::MultipleDpopProofs => "multiple_dpop_proofs",
            Self::MalformedDpopProof => "malformed_dpop_proof",
        }
    }

    /// True where RFC 6750 §3.1 says the challenge carries no error code.
    pub fn is_absent(self) -> bool {
        matches!(self, Self::Missing | Self::UnsupportedScheme)
    }
}

impl std::fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Missing => "no access token in the request",
            Self::UnsupportedScheme => "unsupported authorization scheme",
            Self::MultipleAuthorization => "more than one Authorization header",
            Self::MalformedToken => "malformed access token",
            Self::TokenTooLarge => "access token too large",
            Self::MultipleDpopProofs => "more than one DPoP proof",
            Self::MalformedDpopProof => "malformed DPoP proof header",
        })
    }
}

impl std::error::Error for CredentialsError {}

/// Reads the `Authorization` and `DPoP` headers.
pub fn credentials(headers: &HeaderMap) -> Result<Credentials<'_>, CredentialsError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next().ok_or(CredentialsError::Missing)?;
    if values.next().is_some() {
        return Err(CredentialsError::MultipleAuthorization);
    }
    // Non-ASCII bytes cannot be token68 and cannot be a scheme we speak.
    let value = value
        .to_str()
        .map_err(|_| CredentialsError::MalformedToken)?;
    // The scheme ends at the first space or tab; a scheme we speak followed by anything but
    // a space and a token (a tab, nothing) is malformed credentials, not "no credentials",
    // so an optional route does not serve it anonymously.
    let end = value.find([' ', '\t']).unwrap_or(value.len());
    let (scheme, rest) = value.split_at_checked(end).unwrap_or((value, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Scheme::Dpop
    } else {
        return Err(CredentialsError::UnsupportedScheme);
    };
    // RFC 9110 §11.4 allows 1*SP between scheme and credentials.
    let token = rest
        .strip_prefix(' ')
        .ok_or(CredentialsError::MalformedToken)?
        .trim_start_matches(' ');
    if token.len() > MAX_TOKEN_LEN {
        return Err(CredentialsError::TokenTooLarge);
    }
    if !is_token68(token) {
        return Err(CredentialsError::MalformedToken);
    }
    Ok(Credentials { scheme, token })
}

/// The scheme of the `Authorization` header, if it is one we speak; lets a refusal of
/// malformed credentials answer with the scheme the client used.
pub fn presented_scheme(headers: &HeaderMap) -> Option<Scheme> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let scheme = value.split(|b| *b == b' ' || *b == b'\t').next()?;
    if scheme.eq_ignore_ascii_case(b"bearer") {
        Some(Scheme::Bearer)
    } else if scheme.eq_ignore_ascii_case(b"dpop") {
        Some(Scheme::Dpop)
    } else {
        None
    }
}

/// The single `DPoP` header, if present (RFC 9449 §4.3 check 1: "not more than one").
pub fn dpop_proof(headers: &HeaderMap) -> Result<Option<&str>, CredentialsError> {
    let mut values = headers.get_all(DPOP).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(CredentialsError::MultipleDpopProofs);
    }
    if value.len() > MAX_DPOP_PROOF_LEN {
        return Err(CredentialsError::MalformedDpopProof);
    }
    let value = value
        .to_str()
        .map_err(|_| CredentialsError::MalformedDpopProof)?;
    // A comma can only mean a joined list of proofs: JWS compact serialization has none.
    if value.contains(',') {
        return Err(CredentialsError::MultipleDpopProofs);
    }
    Ok(Some(value.trim()))
}

/// `token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="` (RFC 9110 §11.2).
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    // A fold without early exit: every request's token and proof pass through here, and the
    // compiler checks many bytes at once when no byte can stop the loop.
    !body.is_empty() && body.bytes().fold(true, |ok, b| ok & token68_byte(b))
}

/// The bytes `token68` allows before its `=` padding.
fn token68_byte(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' | b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(auth: &[&str], dpop: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for a in auth {
            h.append(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        for d in dpop {
            h.append(DPOP, HeaderValue::from_str(d).unwrap());
        }
        h
    }

    #[test]
    fn reads_bearer_with_any_case_scheme() {
        let h = headers(&["bEaReR  abc.def-_~+/=="], &[]);
        let c = credentials(&h).unwrap();
        assert_eq!(c.scheme, Scheme::Bearer);
        assert_eq!(c.token, "abc.def-_~+/==");
        assert!(!format!("{c:?}").contains("abc"), "Debug shows the token");
    }

    #[test]
    fn reads_dpop_scheme_and_proof() {
        let h = headers(&["DPoP tok"], &["a.b.c"]);
        let c = credentials(&h).unwrap();
        assert_eq!(c.scheme, Scheme::Dpop);
        assert_eq!(dpop_proof(&h), Ok(Some("a.b.c")));
    }

    #[test]
    fn rejects_malformed_and_duplicate_credentials() {
        assert_eq!(
            credentials(&headers(&[], &[])).unwrap_err(),
            CredentialsError::Missing
        );
        assert_eq!(
            credentials(&headers(&["Basic dXNlcjpwYXNz"], &[])).unwrap_err(),
            CredentialsError::UnsupportedScheme
        );
        assert_eq!(
            credentials(&headers(&["Bearer a", "Bearer b"], &[])).unwrap_err(),
            CredentialsError::MultipleAuthorization
        );
        assert_eq!(
            credentials(&headers(&["Bearer a b"], &[])).unwrap_err(),
            CredentialsError::MalformedToken
        );
        // Our scheme with no token, or a tab for the space: malformed, not absent.
        for value in ["Bearer", "bearer ", "Bearer\tabc", "DPoP\tabc", "DPoP"] {
            assert_eq!(
                credentials(&headers(&[value], &[])).unwrap_err(),
                CredentialsError::MalformedToken,
                "{value:?}"
            );
        }
        assert_eq!(
            credentials(&headers(&["Bearerx abc"], &[])).unwrap_err(),
            CredentialsError::UnsupportedScheme
        );
        assert_eq!(
            credentials(&headers(&["Bearer ="], &[])).unwrap_err(),
            CredentialsError::MalformedToken
        );
        assert_eq!(
            credentials(&headers(&["Bearer a=b"], &[])).unwrap_err(),
            CredentialsError::MalformedToken
        );
        let big = format!("Bearer {}", "a".repeat(MAX_TOKEN_LEN + 1));
        assert_eq!(
            credentials(&headers(&[&big], &[])).unwrap_err(),
            CredentialsError::TokenTooLarge
        );
    }

    #[test]
    fn rejects_two_dpop_proofs() {
        assert_eq!(
            dpop_proof(&headers(&["DPoP t"], &["a.b.c", "d.e.f"])).unwrap_err(),
            CredentialsError::MultipleDpopProofs
        );
        assert_eq!(
            dpop_proof(&headers(&["DPoP t"], &["a.b.c, d.e.f"])).unwrap_err(),
            CredentialsError::MultipleDpopProofs
        );
        let big = "a".repeat(MAX_DPOP_PROOF_LEN + 1);
        assert_eq!(
            dpop_proof(&headers(&["DPoP t"], &[&big])).unwrap_err(),
            CredentialsError::MalformedDpopProof
        );
        // The credentials themselves do not depend on the DPoP header.
        assert!(credentials(&headers(&["Bearer t"], &["a.b.c", "x y"])).is_ok());
    }
}
