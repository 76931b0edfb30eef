//! DPoP proof JWT verification (RFC 9449 §4).
//!
//! [`verify_proof`] performs the checks of RFC 9449 §4.3 that need only the
//! proof and the request. Checks that need server state stay with the caller:
//! the `nonce` (§4.3 item 10, §9), `jti` replay detection (§11.1), and the
//! binding of the proof key to the access token (§4.3 item 12, §6), for which
//! [`jkt_matches`] compares [`VerifiedProof::jkt`] with the token's `cnf.jkt`.
#![forbid(unsafe_code)]

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::json::{Claim, Members, Name, Skip, Text, other_types};
use crate::jws::{self, CompactJws, SplitError};
use crate::limits::{MAX_DPOP_PROOF_LEN, MAX_JTI_LEN, MAX_JWKS_LEN};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};

use super::proof_keys::ProofKeys;
use super::replay::ReplayKey;
use crate::algorithm::Algorithm;
use crate::signature::{KeyParams, PublicKey, Signature, VerifyError};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The only `typ` accepted (RFC 9449 §4.2). Compared exactly: explicit typing
/// (RFC 8725 §3.11) only helps if look-alike spellings are not accepted too.
const DPOP_TYP: &str = "dpop+jwt";

/// JWK members that only private or symmetric keys carry (RFC 7518 §6.2.2,
/// §6.3.2, §6.4; RFC 8037 §2). The proof's `jwk` MUST NOT contain a private
/// key (RFC 9449 §4.2).
const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The proof header members the checks read (RFC 9449 §4.2, RFC 7515 §4.1): the public key
/// members of `jwk` and, to refuse them, its private ones.
const HEADER_MEMBERS: Members<'static> = Members {
    keep: &["typ", "alg", "crit"],
    nested: Some((
        "jwk",
        &[
            "kty", "crv", "x", "y", "n", "e", "d", "p", "q", "dp", "dq", "qi", "oth", "k",
        ],
    )),
};

/// Longest RSA public exponent accepted, in bytes: aws-lc takes at most
/// 33-bit exponents, and real keys use 65537 (3 bytes).
const MAX_RSA_EXPONENT_BYTES: usize = 5;

/// Coordinate length of a P-256 public key (RFC 7518 §6.2.1.2 requires the
/// full length, leading zeros included).
const P256_COORDINATE_LEN: usize = 32;

/// Coordinate length of a P-384 public key (RFC 7518 §6.2.1.2).
const P384_COORDINATE_LEN: usize = 48;

/// Length of an Ed25519 public key (RFC 8037 §2, RFC 8032 §5.1.5).
const ED25519_PUBLIC_KEY_LEN: usize = 32;

/// What the server expects of a proof for this request (RFC 9449 §4.3).
///
/// ```
/// use tower_oauth_guard::{ExpectedRequest, ProofPolicy, normalize_htu, verify_proof};
///
/// # let (proof, now) = ("eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.sig", 1_767_225_600);
/// let expected = ExpectedRequest {
///     method: "POST",
///     htu: "https://server.example.com/token",
///     access_token: None,
/// };
/// let result = verify_proof(proof, &expected, &ProofPolicy::default(), now, |htu| normalize_htu(htu).ok());
/// assert!(result.is_err()); // not a valid proof
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ExpectedRequest<'a> {
    /// HTTP method of the request, compared exactly with `htm` (§4.3 item 8).
    pub method: &'a str,
    /// Target URI of the request without query and fragment, already
    /// normalized by the caller (§4.3 item 9).
    pub htu: &'a str,
    /// Access token presented with the request; when set, the proof must
    /// carry its hash in `ath` (§4.3 item 12, §7).
    pub access_token: Option<&'a str>,
}

/// The access token is a secret: `Debug` says whether there is one, not what it is.
impl fmt::Debug for ExpectedRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpectedRequest")
            .field("method", &self.method)
            .field("htu", &self.htu)
            .field("access_token", &self.access_token.map(|_| ".."))
            .finish()
    }
}

/// Local policy for accepting proofs (RFC 9449 §4.3 items 5 and 11).
///
/// ```
/// use std::time::Duration;
/// use tower_oauth_guard::{Algorithm, ProofPolicy};
///
/// let strict = ProofPolicy {
///     algorithms: vec![Algorithm::ES256],
///     max_age: Duration::from_secs(30),
///     ..ProofPolicy::default()
/// };
/// # let _ = strict;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofPolicy {
    /// Accepted `alg` values; [`Algorithm`] has no HMAC or `none`, since
    /// a proof must use an asymmetric algorithm (§4.2).
    pub algorithms: Vec<Algorithm>,
    /// How far `iat` may lie in the past (§11.1). Whole seconds count.
    pub max_age: Duration,
    /// How far `iat` may lie in the future, for clients whose clock runs
    /// ahead (§11.1). Whole seconds count.
    pub max_future: Duration,
    /// Added to both `max_age` and `max_future`. Defaults to zero because
    /// those two already are the tolerance; it exists to widen both at once
    /// where clock skew is known to be large.
    pub leeway: Duration,
}

impl Default for ProofPolicy {
    /// ES256, ES384, PS256, RS256 and EdDSA; `iat` from 60 s ago to 5 s ahead.
    fn default() -> Self {
        Self {
            algorithms: vec![
                Algorithm::ES256,
                Algorithm::ES384,
                Algorithm::PS256,
                Algorithm::RS256,
                Algorithm::EdDSA,
            ],
            max_age: Duration::from_secs(60),
            max_future: Duration::from_secs(5),
            leeway: Duration::ZERO,
        }
    }
}

/// A proof that passed every check of [`verify_proof`].
///
/// ```
/// use tower_oauth_guard::{ExpectedRequest, ProofPolicy, normalize_htu, verify_proof};
///
/// # let (proof, now) = ("eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.sig", 1_767_225_600);
/// let expected = ExpectedRequest {
///     method: "POST",
///     htu: "https://server.example.com/token",
///     access_token: None,
/// };
/// let result = verify_proof(proof, &expected, &ProofPolicy::default(), now, |htu| normalize_htu(htu).ok());
/// if let Ok(verified) = result {
///     // Bind it: the token's `cnf.jkt` must name this key, and `(jkt, jti)` go to a replay store.
///     println!("key {} proof {} at {}", verified.jkt, verified.jti, verified.iat);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifiedProof {
    /// RFC 7638 SHA-256 thumbprint of the proof key, base64url: compare with
    /// the access token's `cnf.jkt` (RFC 9449 §6.1) using [`jkt_matches`].
    pub jkt: String,
    /// The proof's `jti`, for the caller's replay cache (§11.1).
    pub jti: String,
    /// The proof's `iat`, in seconds since the Unix epoch.
    pub iat: i64,
    /// The proof's `nonce`, unchecked: the caller compares it with the nonce
    /// it issued (§9).
    pub nonce: Option<String>,
    /// The proof's `htm`.
    pub htm: String,
    /// The proof's `alg` (RFC 9449 §4.2).
    pub alg: Algorithm,
    /// The htu a proof claims, as sent: normalization is left to the caller,
    /// and the guard compares only after RFC 3986 normalization.
    pub htu: String,
}

/// Why a proof was rejected (RFC 9449 §4.3).
///
/// ```
/// use tower_oauth_guard::{ExpectedRequest, MalformedProof, ProofError, ProofPolicy, verify_proof};
///
/// let expected = ExpectedRequest { method: "GET", htu: "https://api.example/r", access_token: None };
/// let result = verify_proof("not.a-proof", &expected, &ProofPolicy::default(), 0, |h| Some(h.to_owned()));
/// assert_eq!(result.unwrap_err(), ProofError::Malformed(MalformedProof::WrongPartCount));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofError {
    /// The proof is longer than [`MAX_DPOP_PROOF_LEN`].
    TooLarge,
    /// The proof is not a well-formed compact JWS (§4.3 item 2).
    Malformed(MalformedProof),
    /// The `typ` header is missing or not exactly `dpop+jwt` (§4.3 item 4).
    WrongType,
    /// The `alg` header is missing, unknown, `none`, symmetric, or not in
    /// the policy (§4.3 item 5).
    AlgorithmNotAllowed,
    /// The header has a `crit` parameter; no JWS extension is understood
    /// here, so it must be refused (RFC 7515 §4.1.11).
    UnsupportedCriticalHeader,
    /// The `jwk` header is missing (§4.2).
    MissingJwk,
    /// The `jwk` header has a private or symmetric key member (§4.3 item 7).
    PrivateKeyInJwk,
    /// The `jwk` key type or curve cannot be used with `alg` (§4.3 item 6).
    JwkAlgorithmMismatch,
    /// The `jwk` is not a usable public key: not an object, a member missing
    /// or not base64url, or the wrong size (RFC 7518 §6, RFC 8037 §2).
    InvalidJwk,
    /// The signature does not verify with the `jwk` (§4.3 item 6).
    InvalidSignature,
    /// A required claim is absent (§4.3 item 3); holds the claim name.
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type or an unacceptable value; holds the
    /// claim name.
    InvalidClaim(&'static str),
    /// `htm` differs from the request method (§4.3 item 8).
    HtmMismatch,
    /// `htu`, once normalized, differs from the request URI, or it could not
    /// be normalized (§4.3 item 9).
    HtuMismatch,
    /// `iat` is older than the policy allows (§4.3 item 11).
    IatTooOld,
    /// `iat` is further in the future than the policy allows (§4.3 item 11).
    IatInFuture,
    /// An access token was presented but the proof has no `ath` (§7).
    MissingAth,
    /// `ath` is not the hash of the presented access token (§4.3 item 12).
    AthMismatch,
    /// Built without a crypto feature and no provider was given to a guard builder.
    NoCryptoBackend,
}

impl ProofError {
    /// A stable reason code for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::TooLarge => "dpop_proof_too_large",
            Self::Malformed(_) => "dpop_proof_malformed",
            Self::WrongType => "dpop_proof_wrong_typ",
            Self::AlgorithmNotAllowed => "dpop_proof_alg_not_allowed",
            Self::UnsupportedCriticalHeader => "dpop_proof_crit",
            Self::MissingJwk => "dpop_proof_missing_jwk",
            Self::PrivateKeyInJwk => "dpop_proof_private_jwk",
            Self::JwkAlgorithmMismatch => "dpop_proof_jwk_alg_mismatch",
            Self::InvalidJwk => "dpop_proof_invalid_jwk",
            Self::InvalidSignature => "dpop_proof_bad_signature",
            Self::MissingClaim(_) => "dpop_proof_missing_claim",
            Self::InvalidClaim(_) => "dpop_proof_invalid_claim",
            Self::HtmMismatch => "dpop_proof_htm_mismatch",
            Self::HtuMismatch => "dpop_proof_htu_mismatch",
            Self::IatTooOld => "dpop_proof_iat_too_old",
            Self::IatInFuture => "dpop_proof_iat_in_future",
            Self::MissingAth => "dpop_proof_missing_ath",
            Self::AthMismatch => "dpop_proof_ath_mismatch",
            Self::NoCryptoBackend => "dpop_no_crypto_backend",
        }
    }
}

/// How a proof fails to be a compact JWS (RFC 7515 §7.1).
///
/// ```
/// use tower_oauth_guard::{ExpectedRequest, MalformedProof, ProofError, ProofPolicy, verify_proof};
///
/// let expected = ExpectedRequest { method: "GET", htu: "https://api.example/r", access_token: None };
/// let result = verify_proof("a..c", &expected, &ProofPolicy::default(), 0, |h| Some(h.to_owned()));
/// assert_eq!(result.unwrap_err(), ProofError::Malformed(MalformedProof::EmptyPart));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MalformedProof {
    /// Not exactly three dot-separated parts.
    WrongPartCount,
    /// One of the three parts is empty.
    EmptyPart,
    /// The header part is not unpadded base64url.
    HeaderNotBase64url,
    /// The header does not decode to a JSON object.
    HeaderNotJsonObject,
    /// The payload part is not unpadded base64url.
    PayloadNotBase64url,
    /// The payload does not decode to a JSON object.
    PayloadNotJsonObject,
    /// The signature part is not unpadded base64url.
    SignatureNotBase64url,
}

impl fmt::Display for MalformedProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::WrongPartCount => "not three dot-separated parts",
            Self::EmptyPart => "a part is empty",
            Self::HeaderNotBase64url => "header is not base64url",
            Self::HeaderNotJsonObject => "header is not a JSON object",
            Self::PayloadNotBase64url => "payload is not base64url",
            Self::PayloadNotJsonObject => "payload is not a JSON object",
            Self::SignatureNotBase64url => "signature is not base64url",
        })
    }
}

impl std::error::Error for MalformedProof {}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => write!(f, "DPoP proof longer than {MAX_DPOP_PROOF_LEN} bytes"),
            Self::Malformed(why) => write!(f, "malformed DPoP proof: {why}"),
            Self::WrongType => write!(f, "DPoP proof typ is not {DPOP_TYP}"),
            Self::AlgorithmNotAllowed => f.write_str("DPoP proof alg is not allowed"),
            Self::UnsupportedCriticalHeader => {
                f.write_str("DPoP proof has a crit header, which is not supported")
            }
            Self::MissingJwk => f.write_str("DPoP proof has no jwk header"),
            Self::PrivateKeyInJwk => f.write_str("DPoP proof jwk contains a private key"),
            Self::JwkAlgorithmMismatch => {
                f.write_str("DPoP proof jwk key type or curve does not match alg")
            }
            Self::InvalidJwk => f.write_str("DPoP proof jwk is not a usable public key"),
            Self::InvalidSignature => f.write_str("DPoP proof signature is invalid"),
            Self::MissingClaim(name) => write!(f, "DPoP proof has no {name} claim"),
            Self::InvalidClaim(name) => write!(f, "DPoP proof {name} claim is invalid"),
            Self::HtmMismatch => f.write_str("DPoP proof htm does not match the request method"),
            Self::HtuMismatch => f.write_str("DPoP proof htu does not match the request URI"),
            Self::IatTooOld => f.write_str("DPoP proof iat is too old"),
            Self::IatInFuture => f.write_str("DPoP proof iat is too far in the future"),
            Self::MissingAth => f.write_str("DPoP proof has no ath claim for the access token"),
            Self::AthMismatch => f.write_str("DPoP proof ath does not match the access token"),
            Self::NoCryptoBackend => f.write_str("no signature verification backend"),
        }
    }
}

impl std::error::Error for ProofError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Malformed(why) => Some(why),
            _ => None,
        }
    }
}

/// Verifies a DPoP proof JWT against the request it came with
/// (RFC 9449 §4.3).
///
/// `proof` is the `DPoP` header value, already taken as the single such
/// header (§4.3 item 1). `normalize_htu` applies to the proof's `htu` the
/// same RFC 3986 §6.2.2/§6.2.3 normalization the caller applied to
/// `expected.htu`; a claim it cannot normalize (`None`) is a mismatch.
///
/// Checks run in a fixed order and the first failure is returned: size,
/// JWS structure, `typ`, `alg`, `crit`, `jwk` presence, private members,
/// key type against `alg`, key validity, signature, payload JSON, required
/// claims, `htm`, `htu`, `iat` window, then `ath` when an access token is
/// given (otherwise `ath` is ignored). Unknown claims are tolerated (§4.2).
///
/// Signatures are checked by `jsonwebtoken`'s crypto provider: the one of this crate's
/// `aws-lc-rs` or `rust-crypto` feature, or, without either, one the application installed
/// (building an [`OAuthGuard`](crate::OAuthGuard) installs it). Without any, `jsonwebtoken`
/// panics.
///
/// # Errors
///
/// The [`ProofError`] of the first check that failed.
///
/// ```
/// use tower_oauth_guard::{ExpectedRequest, ProofPolicy, normalize_htu, verify_proof};
///
/// # let (proof, now) = ("eyJ0eXAiOiJkcG9wK2p3dCJ9.e30.sig", 1_767_225_600);
/// let expected = ExpectedRequest {
///     method: "POST",
///     htu: "https://server.example.com/token",
///     access_token: None,
/// };
/// let result = verify_proof(proof, &expected, &ProofPolicy::default(), now, |htu| normalize_htu(htu).ok());
/// assert!(result.is_err()); // not a valid proof
/// ```
pub fn verify_proof<N>(
    proof: &str,
    expected: &ExpectedRequest<'_>,
    policy: &ProofPolicy,
    now_unix: i64,
    normalize_htu: N,
) -> Result<VerifiedProof, ProofError>
where
    N: Fn(&str) -> Option<String>,
{
    let digest = expected
        .access_token
        .map(|token| <[u8; 32]>::from(Sha256::digest(token.as_bytes())));
    verify_proof_matching(
        proof,
        expected.method,
        |claimed| normalize_htu(claimed).as_deref() == Some(expected.htu),
        digest.as_ref(),
        policy,
        now_unix,
        None,
    )
    .map(|(verified, _)| verified)
}

/// What a proof's header establishes once every header check passed (RFC 9449 §4.3 items
/// 4–7): the algorithm, the client's public key, parsed, and its thumbprint. A client sends
/// the same header on every request, so a guard keeps these by the header's exact text
/// ([`ProofKeys`](super::proof_keys::ProofKeys)).
pub(crate) struct ProofKey {
    alg: Algorithm,
    key: PublicKey,
    jkt: String,
    /// The replay store's name for this client key ([`ReplayKey::client_bytes`]).
    client: [u8; 32],
}

impl ProofKey {
    /// The replay store's digest of this key's thumbprint.
    pub(crate) fn client_digest(&self) -> [u8; 32] {
        self.client
    }
}

impl ProofKey {
    /// The header checks, in order: JSON object, `typ`, `alg`, `crit`, `jwk` presence,
    /// private members, key type against `alg`, key validity.
    fn from_header(header: &[u8], policy: &ProofPolicy) -> Result<Self, ProofError> {
        // Unauthenticated: only the members the checks read are built.
        let mut header = HEADER_MEMBERS
            .parse(header)
            .ok_or(ProofError::Malformed(MalformedProof::HeaderNotJsonObject))?;
        if header.get("typ").and_then(Value::as_str) != Some(DPOP_TYP) {
            return Err(ProofError::WrongType);
        }
        let alg = allowed_algorithm(&header, policy)?;
        if header.contains_key("crit") {
            return Err(ProofError::UnsupportedCriticalHeader);
        }
        let jwk = match header.remove("jwk") {
            None => return Err(ProofError::MissingJwk),
            Some(Value::Object(members)) => members,
            Some(_) => return Err(ProofError::InvalidJwk),
        };
        if PRIVATE_JWK_MEMBERS
            .iter()
            .any(|member| jwk.contains_key(*member))
        {
            return Err(ProofError::PrivateKeyInJwk);
        }
        let (params, jkt) = public_key_members(alg, &jwk)?;
        let key = PublicKey::new(alg, params).ok_or(ProofError::InvalidJwk)?;
        let client = ReplayKey::client_digest(&jkt);
        Ok(ProofKey {
            alg,
            key,
            jkt,
            client,
        })
    }
}

/// [`verify_proof`] with the `htu` check left to `htu_matches`, which receives the claim as
/// sent (for a server with several public URLs), the access token given by its SHA-256
/// (which the guard computed once), and the header's checks taken from `keys` when the same
/// header was verified before. Returns the client's key beside the proof.
pub(crate) fn verify_proof_matching(
    proof: &str,
    method: &str,
    htu_matches: impl Fn(&str) -> bool,
    token_digest: Option<&[u8; 32]>,
    policy: &ProofPolicy,
    now_unix: i64,
    keys: Option<&ProofKeys<ProofKey>>,
) -> Result<(VerifiedProof, Arc<ProofKey>), ProofError> {
    if !crate::crypto::jwt_provider_ready() {
        return Err(ProofError::NoCryptoBackend);
    }
    if proof.len() > MAX_DPOP_PROOF_LEN {
        return Err(ProofError::TooLarge);
    }
    let malformed = ProofError::Malformed;
    let jws = CompactJws::split(proof).map_err(|e| {
        malformed(match e {
            SplitError::WrongPartCount => MalformedProof::WrongPartCount,
            SplitError::EmptyPart => MalformedProof::EmptyPart,
        })
    })?;
    // A header seen before passed every header check: only the policy's algorithms, which
    // the cache does not know, are checked again. Otherwise its decoded JSON, checked below.
    let known = match keys.and_then(|keys| keys.get(jws.header)) {
        Some(key) => Ok(key),
        None => Err(jws::decode(jws.header).ok_or(malformed(MalformedProof::HeaderNotBase64url))?),
    };
    let payload = jws::decode(jws.payload).ok_or(malformed(MalformedProof::PayloadNotBase64url))?;
    let signature =
        Signature::decode(jws.signature).ok_or(malformed(MalformedProof::SignatureNotBase64url))?;
    let fresh = known.is_err();
    let key = match known {
        Ok(key) if policy.algorithms.contains(&key.alg) => key,
        Ok(_) => return Err(ProofError::AlgorithmNotAllowed),
        Err(header) => Arc::new(ProofKey::from_header(&header, policy)?),
    };
    key.key
        .verify(jws.signing_input.as_bytes(), &signature)
        .map_err(|e| match e {
            VerifyError::BadSignature => ProofError::InvalidSignature,
            VerifyError::UnusableKey => ProofError::InvalidJwk,
        })?;
    if let (Some(keys), true) = (keys, fresh) {
        // Only keys that made a valid signature are remembered.
        keys.insert(jws.header, &key);
    }

    // Parsed only once the signature verifies, so anonymous input never reaches the claim
    // logic; and even then only the claims checked here are built, since anyone can sign a
    // proof with a key of their own (the key binding comes later).
    let claims: ProofClaims<'_> = serde_json::from_slice(&payload)
        .map_err(|_| ProofError::Malformed(MalformedProof::PayloadNotJsonObject))?;
    let jti = required(claims.jti, "jti")?;
    if jti.is_empty() || jti.chars().count() > MAX_JTI_LEN {
        return Err(ProofError::InvalidClaim("jti"));
    }
    let htm = required(claims.htm, "htm")?;
    let htu = required(claims.htu, "htu")?;
    let iat = required(claims.iat, "iat")?;
    let nonce = match claims.nonce {
        Claim::Absent => None,
        Claim::Value(nonce) => Some(nonce.into_owned()),
        Claim::OtherType => return Err(ProofError::InvalidClaim("nonce")),
    };

    // Exact: RFC 9110 §9.1 makes methods case-sensitive.
    if htm != method {
        return Err(ProofError::HtmMismatch);
    }
    if !htu_matches(&htu) {
        return Err(ProofError::HtuMismatch);
    }
    check_iat(iat, now_unix, policy)?;
    if let Some(digest) = token_digest {
        let ath = match &claims.ath {
            Claim::Absent => return Err(ProofError::MissingAth),
            Claim::Value(ath) => ath,
            Claim::OtherType => return Err(ProofError::InvalidClaim("ath")),
        };
        // base64url of 32 bytes, without padding: 43 characters, encoded on the stack.
        let mut expected = [0u8; 43];
        let encoded = URL_SAFE_NO_PAD.encode_slice(digest, &mut expected);
        if encoded != Ok(expected.len()) || !bool::from(ath.as_bytes().ct_eq(&expected)) {
            return Err(ProofError::AthMismatch);
        }
    }

    let verified = VerifiedProof {
        jkt: key.jkt.clone(),
        jti: jti.into_owned(),
        iat,
        alg: key.alg,
        nonce,
        htm: htm.into_owned(),
        htu: htu.into_owned(),
    };
    Ok((verified, key))
}

/// The `ath` value for an access token: base64url of the SHA-256 of its
/// ASCII bytes (RFC 9449 §4.2).
///
/// ```
/// // RFC 9449 §7.1's example token and `ath`.
/// assert_eq!(
///     tower_oauth_guard::ath_for("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
///     "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
/// );
/// ```
#[must_use]
pub fn ath_for(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// RFC 7638 SHA-256 thumbprint of a public JWK given as JSON, base64url (RFC 9449 §6.1): the
/// `jkt` a DPoP client's key is bound by.
///
/// ```
/// // RFC 8037 Appendix A.3.
/// let jkt = tower_oauth_guard::jwk_thumbprint(
///     r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#,
/// );
/// assert_eq!(jkt.as_deref(), Ok("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"));
/// ```
///
/// # Errors
///
/// [`ProofError::InvalidJwk`] for JSON that is not a JWK (or is longer than a whole JWK Set
/// may be, [`MAX_JWKS_LEN`]) and for a key type and curve pair that RFC 7518 or RFC 8037
/// does not define; [`ProofError::PrivateKeyInJwk`] for a symmetric (`oct`) key, whose
/// thumbprint would publish a digest of the secret.
pub fn jwk_thumbprint(jwk: &str) -> Result<String, ProofError> {
    if jwk.len() > MAX_JWKS_LEN {
        return Err(ProofError::InvalidJwk);
    }
    let jwk: Jwk = serde_json::from_str(jwk).map_err(|_| ProofError::InvalidJwk)?;
    thumbprint(&jwk)
}

/// RFC 7638 SHA-256 thumbprint of a parsed public JWK, base64url.
///
/// Hashes the required members only, sorted, without whitespace
/// (RFC 7638 §3.2). Written here rather than using jsonwebtoken's, which
/// does not escape member values and panics on serialization failure.
pub(crate) fn thumbprint(jwk: &Jwk) -> Result<String, ProofError> {
    Ok(match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(params) => {
            let crv = match params.curve {
                EllipticCurve::P256 => "P-256",
                EllipticCurve::P384 => "P-384",
                EllipticCurve::P521 => "P-521",
                _ => return Err(ProofError::InvalidJwk),
            };
            jkt_of(&[
                ("crv", crv),
                ("kty", "EC"),
                ("x", &params.x),
                ("y", &params.y),
            ])
        }
        AlgorithmParameters::RSA(params) => {
            jkt_of(&[("e", &params.e), ("kty", "RSA"), ("n", &params.n)])
        }
        AlgorithmParameters::OctetKeyPair(params) => match params.curve {
            EllipticCurve::Ed25519 => {
                jkt_of(&[("crv", "Ed25519"), ("kty", "OKP"), ("x", &params.x)])
            }
            _ => return Err(ProofError::InvalidJwk),
        },
        AlgorithmParameters::OctetKey(_) => return Err(ProofError::PrivateKeyInJwk),
        _ => return Err(ProofError::InvalidJwk),
    })
}

/// Whether a token's `cnf.jkt` names the proof key (RFC 9449 §6), compared
/// in constant time so a probing client learns nothing from timing.
///
/// ```
/// use tower_oauth_guard::jkt_matches;
///
/// let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
/// assert!(jkt_matches(jkt, jkt));
/// assert!(!jkt_matches(jkt, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4J"));
/// ```
#[must_use]
pub fn jkt_matches(jkt_claim: &str, jkt: &str) -> bool {
    jkt_claim.as_bytes().ct_eq(jkt.as_bytes()).into()
}

/// The header's `alg`, if the policy allows it (RFC 9449 §4.3 item 5).
fn allowed_algorithm(
    header: &Map<String, Value>,
    policy: &ProofPolicy,
) -> Result<Algorithm, ProofError> {
    // `none`, HMAC and unregistered names have no `Algorithm`, so they never get here.
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(Algorithm::from_name)
        .ok_or(ProofError::AlgorithmNotAllowed)?;
    if !policy.algorithms.contains(&alg) {
        return Err(ProofError::AlgorithmNotAllowed);
    }
    Ok(alg)
}

/// The required public members of the proof's `jwk`, after checking that the key type and
/// curve fit `alg` and that the members have the sizes RFC 7518 §6 and RFC 8037 §2 require;
/// and the key's RFC 7638 thumbprint, over those members as sent, so that it matches the
/// one the client and the authorization server computed. Whether an EC point lies on its
/// curve is the backend's check, when it parses the key.
fn public_key_members(
    alg: Algorithm,
    members: &Map<String, Value>,
) -> Result<(KeyParams<'_>, String), ProofError> {
    let kty = members.get("kty").and_then(Value::as_str);
    let crv = members.get("crv").and_then(Value::as_str);
    Ok(match alg {
        Algorithm::ES256 | Algorithm::ES384 => {
            let (curve, coordinate_len) = match alg {
                Algorithm::ES256 => ("P-256", P256_COORDINATE_LEN),
                _ => ("P-384", P384_COORDINATE_LEN),
            };
            if kty != Some("EC") || crv != Some(curve) {
                return Err(ProofError::JwkAlgorithmMismatch);
            }
            let x = fixed_len_member(members, "x", coordinate_len)?;
            let y = fixed_len_member(members, "y", coordinate_len)?;
            let jkt = jkt_of(&[("crv", curve), ("kty", "EC"), ("x", x), ("y", y)]);
            (KeyParams::Ec { x, y }, jkt)
        }
        Algorithm::EdDSA => {
            if kty != Some("OKP") || crv != Some("Ed25519") {
                return Err(ProofError::JwkAlgorithmMismatch);
            }
            let x = fixed_len_member(members, "x", ED25519_PUBLIC_KEY_LEN)?;
            let jkt = jkt_of(&[("crv", "Ed25519"), ("kty", "OKP"), ("x", x)]);
            (KeyParams::Ed25519 { x }, jkt)
        }
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            if kty != Some("RSA") {
                return Err(ProofError::JwkAlgorithmMismatch);
            }
            let n = rsa_modulus(members)?;
            let e = rsa_exponent(members)?;
            let jkt = jkt_of(&[("e", e), ("kty", "RSA"), ("n", n)]);
            (KeyParams::Rsa { n, e }, jkt)
        }
    })
}

/// RFC 7638 §3: base64url SHA-256 of the required members as canonical JSON.
fn jkt_of(members: &[(&str, &str)]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical_json(members).as_bytes()))
}

/// A base64url member and its decoded bytes, or [`ProofError::InvalidJwk`].
fn decoded_member<'m>(
    members: &'m Map<String, Value>,
    name: &str,
) -> Result<(&'m str, Vec<u8>), ProofError> {
    let text = members
        .get(name)
        .and_then(Value::as_str)
        .ok_or(ProofError::InvalidJwk)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| ProofError::InvalidJwk)?;
    Ok((text, bytes))
}

fn fixed_len_member<'m>(
    members: &'m Map<String, Value>,
    name: &str,
    len: usize,
) -> Result<&'m str, ProofError> {
    let (text, bytes) = decoded_member(members, name)?;
    if bytes.len() != len {
        return Err(ProofError::InvalidJwk);
    }
    Ok(text)
}

/// `n`, minimally encoded (RFC 7518 §6.3.1.1) and within the size limits.
fn rsa_modulus(members: &Map<String, Value>) -> Result<&str, ProofError> {
    let (text, bytes) = decoded_member(members, "n")?;
    // Checked here rather than left to the backend, which would report a bad signature
    // instead of a bad key (aws-lc) or accept a weak key (the pure-Rust backend).
    if !crate::crypto::acceptable_rsa_modulus(&bytes) {
        return Err(ProofError::InvalidJwk);
    }
    Ok(text)
}

/// `e`, minimally encoded (RFC 7518 §6.3.1.2), odd and above 1 as an RSA
/// public exponent must be.
fn rsa_exponent(members: &Map<String, Value>) -> Result<&str, ProofError> {
    let (text, bytes) = decoded_member(members, "e")?;
    let minimal = bytes.first().is_some_and(|byte| *byte != 0);
    let odd = bytes.last().is_some_and(|byte| byte & 1 == 1);
    if !minimal || !odd || bytes.len() > MAX_RSA_EXPONENT_BYTES || bytes == [1] {
        return Err(ProofError::InvalidJwk);
    }
    Ok(text)
}

/// A required claim: absent is [`ProofError::MissingClaim`], of another JSON type
/// [`ProofError::InvalidClaim`].
fn required<T>(claim: Claim<T>, name: &'static str) -> Result<T, ProofError> {
    match claim {
        Claim::Value(value) => Ok(value),
        Claim::Absent => Err(ProofError::MissingClaim(name)),
        Claim::OtherType => Err(ProofError::InvalidClaim(name)),
    }
}

/// The proof claims the checks read (RFC 9449 §4.2), in one pass over the payload, strings
/// borrowed where they have no escapes; every other claim is tolerated, parsed strictly and
/// not built. A repeated claim keeps its last value.
#[derive(Default)]
struct ProofClaims<'a> {
    jti: Claim<Cow<'a, str>>,
    htm: Claim<Cow<'a, str>>,
    htu: Claim<Cow<'a, str>>,
    iat: Claim<i64>,
    ath: Claim<Cow<'a, str>>,
    nonce: Claim<Cow<'a, str>>,
}

impl<'de> serde::Deserialize<'de> for ProofClaims<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ProofClaims<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object of claims")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut claims = ProofClaims::default();
                while let Some(Name(name)) = map.next_key()? {
                    let text = match &*name {
                        "jti" => &mut claims.jti,
                        "htm" => &mut claims.htm,
                        "htu" => &mut claims.htu,
                        "ath" => &mut claims.ath,
                        "nonce" => &mut claims.nonce,
                        "iat" => {
                            claims.iat = map.next_value::<NumericDate>()?.0;
                            continue;
                        }
                        _ => {
                            map.next_value_seed(Skip)?;
                            continue;
                        }
                    };
                    *text = map.next_value::<Text<'de>>()?.0;
                }
                Ok(claims)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, possibly fractional, as clients
/// with floating-point clocks send them. Fractions are dropped toward the past (floor), and
/// values beyond `i64` saturate; the window check then decides. Any other JSON value is
/// [`Claim::OtherType`].
struct NumericDate(Claim<i64>);

impl<'de> serde::Deserialize<'de> for NumericDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
                Ok(NumericDate(Claim::Value(n)))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
                Ok(NumericDate(Claim::Value(
                    i64::try_from(n).unwrap_or(i64::MAX),
                )))
            }
            fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
                // `as` saturates at the i64 bounds; JSON numbers are always finite.
                Ok(NumericDate(Claim::Value(n.floor() as i64)))
            }
            other_types!(NumericDate(Claim::OtherType); strings literals arrays objects);
        }
        deserializer.deserialize_any(V)
    }
}

/// Whether `iat` is inside the policy's window around `now` (RFC 9449 §11.1).
pub(crate) fn check_iat(iat: i64, now: i64, policy: &ProofPolicy) -> Result<(), ProofError> {
    let leeway = whole_seconds(policy.leeway);
    let oldest = now.saturating_sub(whole_seconds(policy.max_age).saturating_add(leeway));
    let newest = now.saturating_add(whole_seconds(policy.max_future).saturating_add(leeway));
    if iat < oldest {
        return Err(ProofError::IatTooOld);
    }
    if iat > newest {
        return Err(ProofError::IatInFuture);
    }
    Ok(())
}

/// Seconds in `duration`, saturating: a policy of centuries means "no limit".
pub(crate) fn whole_seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Compact JSON object of string members, in the order given (RFC 7638 §3.3).
fn canonical_json(members: &[(&str, &str)]) -> String {
    let mut out = String::from("{");
    for (index, (name, value)) in members.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        // serde_json escapes exactly what JSON requires and nothing more.
        out.push_str(&Value::from(*name).to_string());
        out.push(':');
        out.push_str(&Value::from(*value).to_string());
    }
    out.push('}');
    out
}

// Every test signs or verifies, which needs a jsonwebtoken provider: these run in the builds
// that have one (`aws-lc-rs`, `rust-crypto`), not in the backend-less build.
#[cfg(all(test, any(feature = "aws-lc-rs", feature = "rust-crypto")))]
mod tests;
