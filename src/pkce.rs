//! Proof Key for Code Exchange (RFC 7636).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest verifier or challenge RFC 7636 §4.1 allows (256 bits of entropy as base64url).
const MIN_LEN: usize = 43;
/// Longest verifier or challenge RFC 7636 §4.1 allows.
const MAX_LEN: usize = 128;
/// Random bytes per generated verifier: 384 bits, encoding to exactly 64 unreserved chars.
const GENERATED_VERIFIER_BYTES: usize = 48;
/// Length of BASE64URL(SHA-256(..)) without padding, the only possible S256 challenge length.
const S256_CHALLENGE_LEN: usize = 43;

/// Why a PKCE value was rejected or could not be produced.
///
/// ```
/// use tower_oauth_guard::pkce::{CodeVerifier, PkceError};
///
/// assert_eq!(CodeVerifier::new("short").unwrap_err(), PkceError::VerifierLength);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PkceError {
    /// The verifier is shorter than 43 or longer than 128 characters (RFC 7636 §4.1).
    VerifierLength,
    /// The verifier contains a character outside `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
    VerifierCharacter,
    /// The challenge is not 43..=128 unreserved characters, or not a
    /// base64url SHA-256 digest for `S256` (RFC 7636 §4.2).
    ChallengeSyntax,
    /// The verifier does not hash to the challenge (RFC 7636 §4.6).
    Mismatch,
    /// The `code_challenge_method` is neither `S256` nor `plain` (RFC 7636 §4.3).
    UnsupportedMethod,
    /// The operating system's random number generator failed.
    Rng,
}

impl fmt::Display for PkceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::VerifierLength => "code verifier must be 43 to 128 characters long",
            Self::VerifierCharacter => "code verifier contains a character outside [A-Za-z0-9-._~]",
            Self::ChallengeSyntax => "code challenge is malformed",
            Self::Mismatch => "code verifier does not match the code challenge",
            Self::UnsupportedMethod => "unsupported code challenge method",
            Self::Rng => "the operating system random number generator failed",
        })
    }
}

impl std::error::Error for PkceError {}

/// `unreserved` from RFC 3986 §2.3, the alphabet of verifiers (RFC 7636 §4.1).
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn validate_verifier(s: &str) -> Result<(), PkceError> {
    // Length first so an attacker-sized input is never scanned in full.
    if s.len() > MAX_LEN {
        return Err(PkceError::VerifierLength);
    }
    if !s.bytes().all(is_unreserved) {
        return Err(PkceError::VerifierCharacter);
    }
    if s.len() < MIN_LEN {
        return Err(PkceError::VerifierLength);
    }
    Ok(())
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A high-entropy `code_verifier` (RFC 7636 §4.1).
///
/// ```
/// use tower_oauth_guard::pkce::{ChallengeMethod, CodeVerifier};
///
/// // The client: a fresh verifier per authorization request, its challenge in the request.
/// let verifier = CodeVerifier::generate()?;
/// let challenge = verifier.challenge(ChallengeMethod::S256);
/// // The authorization server, at the token endpoint:
/// assert!(challenge.verify(verifier.as_str()).is_ok());
/// assert!(challenge.verify(CodeVerifier::generate()?.as_str()).is_err());
/// # Ok::<(), tower_oauth_guard::pkce::PkceError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct CodeVerifier(String);

impl CodeVerifier {
    /// Generates a 64-character verifier from 48 OS-random bytes, as
    /// RFC 7636 §4.1 recommends (base64url of a random octet sequence).
    pub fn generate() -> Result<Self, PkceError> {
        let mut bytes = [0u8; GENERATED_VERIFIER_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| {
            tracing::error!(error = %e, "OS random number generator failed");
            PkceError::Rng
        })?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accepts a verifier of 43..=128 characters from `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
    pub fn new(s: impl Into<String>) -> Result<Self, PkceError> {
        let s = s.into();
        validate_verifier(&s)?;
        Ok(Self(s))
    }

    /// The verifier as sent in the token request (RFC 7636 §4.5).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Derives the `code_challenge` for `method` (RFC 7636 §4.2).
    pub fn challenge(&self, method: ChallengeMethod) -> CodeChallenge {
        let value = match method {
            ChallengeMethod::S256 => s256(&self.0),
            ChallengeMethod::Plain => self.0.clone(),
        };
        CodeChallenge { method, value }
    }
}

impl fmt::Debug for CodeVerifier {
    // The verifier is a secret until redeemed; keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeVerifier(..)")
    }
}

/// The `code_challenge_method` (RFC 7636 §4.3).
///
/// ```
/// use tower_oauth_guard::pkce::ChallengeMethod;
///
/// assert_eq!("S256".parse::<ChallengeMethod>(), Ok(ChallengeMethod::S256));
/// assert_eq!(ChallengeMethod::S256.as_str(), "S256");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChallengeMethod {
    /// `S256`: BASE64URL(SHA256(ASCII(code_verifier))) (RFC 7636 §4.2).
    S256,
    /// `plain`: the challenge is the verifier itself (RFC 7636 §4.2).
    Plain,
}

impl ChallengeMethod {
    /// The registered, case-sensitive name (RFC 7636 §4.3, §6.2.2).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S256 => "S256",
            Self::Plain => "plain",
        }
    }
}

impl fmt::Display for ChallengeMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChallengeMethod {
    type Err = PkceError;

    /// Parses the exact registered name; method names are case-sensitive (RFC 7636 §4.3).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "S256" => Ok(Self::S256),
            "plain" => Ok(Self::Plain),
            _ => Err(PkceError::UnsupportedMethod),
        }
    }
}

/// A `code_challenge` together with its method (RFC 7636 §4.2, §4.3).
///
/// ```
/// use tower_oauth_guard::pkce::{ChallengeMethod, CodeChallenge};
///
/// // RFC 7636 Appendix B.
/// let challenge = CodeChallenge::new(ChallengeMethod::S256, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")?;
/// assert!(challenge.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk").is_ok());
/// # Ok::<(), tower_oauth_guard::pkce::PkceError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge {
    method: ChallengeMethod,
    value: String,
}

impl CodeChallenge {
    /// Accepts a challenge received in an authorization request (RFC 7636 §4.3).
    ///
    /// `plain` challenges follow the verifier syntax (43..=128 unreserved
    /// chars); `S256` challenges must additionally be exactly 43 base64url
    /// chars, since no other value can ever match (RFC 7636 §4.2).
    pub fn new(method: ChallengeMethod, value: impl Into<String>) -> Result<Self, PkceError> {
        let value = value.into();
        if value.len() < MIN_LEN || value.len() > MAX_LEN || !value.bytes().all(is_unreserved) {
            return Err(PkceError::ChallengeSyntax);
        }
        if method == ChallengeMethod::S256
            && (value.len() != S256_CHALLENGE_LEN
                || value.bytes().any(|b| matches!(b, b'.' | b'~')))
        {
            return Err(PkceError::ChallengeSyntax);
        }
        Ok(Self { method, value })
    }

    /// The challenge string (RFC 7636 §4.2).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// The transformation that produced the challenge (RFC 7636 §4.3).
    pub fn method(&self) -> ChallengeMethod {
        self.method
    }

    /// Checks a `code_verifier` from a token request against this challenge
    /// (RFC 7636 §4.6), validating its syntax first and comparing in
    /// constant time so the challenge cannot be probed byte by byte.
    pub fn verify(&self, verifier: &str) -> Result<(), PkceError> {
        validate_verifier(verifier)?;
        let derived = match self.method {
            ChallengeMethod::S256 => s256(verifier),
            ChallengeMethod::Plain => verifier.to_owned(),
        };
        if bool::from(derived.as_bytes().ct_eq(self.value.as_bytes())) {
            Ok(())
        } else {
            Err(PkceError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn derives_rfc7636_appendix_b_challenge() {
        let v = CodeVerifier::new(RFC_VERIFIER).unwrap();
        let c = v.challenge(ChallengeMethod::S256);
        assert_eq!(c.value(), RFC_CHALLENGE);
        assert_eq!(c.method(), ChallengeMethod::S256);
    }

    #[test]
    fn verifies_rfc7636_appendix_b_vector() {
        let c = CodeChallenge::new(ChallengeMethod::S256, RFC_CHALLENGE).unwrap();
        assert_eq!(c.verify(RFC_VERIFIER), Ok(()));
    }

    #[test]
    fn generated_verifiers_are_valid_and_distinct() {
        let a = CodeVerifier::generate().unwrap();
        let b = CodeVerifier::generate().unwrap();
        assert_eq!(a.as_str().len(), 64);
        assert!(CodeVerifier::new(a.as_str()).is_ok());
        assert!(CodeVerifier::new(b.as_str()).is_ok());
        assert_ne!(a, b);
        let c = a.challenge(ChallengeMethod::S256);
        assert_eq!(c.verify(a.as_str()), Ok(()));
        assert_eq!(c.verify(b.as_str()), Err(PkceError::Mismatch));
    }

    #[test]
    fn plain_challenge_equals_verifier() {
        let v = CodeVerifier::new(RFC_VERIFIER).unwrap();
        let c = v.challenge(ChallengeMethod::Plain);
        assert_eq!(c.value(), RFC_VERIFIER);
        assert_eq!(c.verify(RFC_VERIFIER), Ok(()));
        let other = "a".repeat(43);
        assert_eq!(c.verify(&other), Err(PkceError::Mismatch));
    }

    #[test]
    fn rejects_malformed_verifiers() {
        assert_eq!(
            CodeVerifier::new("a".repeat(42)),
            Err(PkceError::VerifierLength)
        );
        assert_eq!(
            CodeVerifier::new("a".repeat(129)),
            Err(PkceError::VerifierLength)
        );
        assert!(CodeVerifier::new("a".repeat(43)).is_ok());
        assert!(CodeVerifier::new("~".repeat(128)).is_ok());
        let mut bad = "a".repeat(42);
        bad.push('+');
        assert_eq!(CodeVerifier::new(bad), Err(PkceError::VerifierCharacter));
        let mut non_ascii = "a".repeat(42);
        non_ascii.push('é');
        assert_eq!(
            CodeVerifier::new(non_ascii),
            Err(PkceError::VerifierCharacter)
        );
    }

    #[test]
    fn verify_rejects_malformed_verifier_before_comparing() {
        let c = CodeChallenge::new(ChallengeMethod::Plain, "a".repeat(43)).unwrap();
        assert_eq!(c.verify("short"), Err(PkceError::VerifierLength));
        let mut bad = "a".repeat(42);
        bad.push('/');
        assert_eq!(c.verify(&bad), Err(PkceError::VerifierCharacter));
    }

    #[test]
    fn rejects_wrong_verifier() {
        let c = CodeChallenge::new(ChallengeMethod::S256, RFC_CHALLENGE).unwrap();
        let mut wrong = RFC_VERIFIER.to_owned();
        wrong.replace_range(0..1, "e");
        assert_eq!(c.verify(&wrong), Err(PkceError::Mismatch));
    }

    #[test]
    fn rejects_malformed_challenges() {
        assert_eq!(
            CodeChallenge::new(ChallengeMethod::Plain, "a".repeat(42)),
            Err(PkceError::ChallengeSyntax)
        );
        assert_eq!(
            CodeChallenge::new(ChallengeMethod::Plain, "a".repeat(129)),
            Err(PkceError::ChallengeSyntax)
        );
        assert_eq!(
            CodeChallenge::new(ChallengeMethod::Plain, format!("{}=", "a".repeat(43))),
            Err(PkceError::ChallengeSyntax)
        );
        // Valid for plain but can never be a SHA-256 digest.
        assert!(CodeChallenge::new(ChallengeMethod::Plain, "a".repeat(44)).is_ok());
        assert_eq!(
            CodeChallenge::new(ChallengeMethod::S256, "a".repeat(44)),
            Err(PkceError::ChallengeSyntax)
        );
        assert_eq!(
            CodeChallenge::new(ChallengeMethod::S256, "~".repeat(43)),
            Err(PkceError::ChallengeSyntax)
        );
    }

    #[test]
    fn parses_method_names_case_sensitively() {
        assert_eq!("S256".parse(), Ok(ChallengeMethod::S256));
        assert_eq!("plain".parse(), Ok(ChallengeMethod::Plain));
        assert_eq!(
            "s256".parse::<ChallengeMethod>(),
            Err(PkceError::UnsupportedMethod)
        );
        assert_eq!(
            "PLAIN".parse::<ChallengeMethod>(),
            Err(PkceError::UnsupportedMethod)
        );
        assert_eq!(ChallengeMethod::S256.as_str(), "S256");
        assert_eq!(ChallengeMethod::Plain.as_str(), "plain");
    }

    #[test]
    fn debug_does_not_reveal_verifier() {
        let v = CodeVerifier::new(RFC_VERIFIER).unwrap();
        assert!(!format!("{v:?}").contains(RFC_VERIFIER));
    }
}
