//! Issuer signing keys: JWK Sets (RFC 7517 §5), parsed into verification keys, and how the
//! validator finds the key for a token's `kid` and `alg`.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};

use crate::algorithm::Algorithm;
use crate::signature::{KeyParams, PublicKey};

#[cfg(feature = "fetch")]
use super::fetch::FetchError;
use crate::json::{self, Members};
use crate::limits::{MAX_JWKS_LEN, MAX_KEYS};

/// The JWK members a key is built from (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2); the others
/// are skipped unread.
const JWK_MEMBERS: Members<'static> = Members {
    keep: &[
        "kty", "use", "alg", "kid", "crv", "x", "y", "n", "e", "k", "d",
    ],
    nested: None,
};

/// Why a key set was refused.
///
/// ```
/// use tower_oauth_guard::{KeySet, KeysError};
///
/// assert!(matches!(KeySet::from_json(b"[]"), Err(KeysError::NotAJwkSet(_))));
/// // A symmetric key is never an issuer's key: the set holds nothing usable.
/// let secret = br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
/// assert!(matches!(KeySet::from_json(secret), Err(KeysError::NoUsableKey)));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum KeysError {
    /// The document is not a JWK Set (RFC 7517 §5): not JSON, or no `keys` array; the JSON
    /// parser's error is the [`source`](std::error::Error::source).
    NotAJwkSet(Box<dyn std::error::Error + Send + Sync>),
    /// The document is larger than [`MAX_JWKS_LEN`].
    TooLarge,
    /// The set holds no usable public signature key.
    NoUsableKey,
    /// Reading the file failed.
    Io(std::io::Error),
    /// Fetching the set failed.
    #[cfg(feature = "fetch")]
    Fetch(FetchError),
}

impl std::fmt::Display for KeysError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAJwkSet(e) => write!(f, "not a JWK Set: {e}"),
            Self::TooLarge => f.write_str("JWK Set too large"),
            Self::NoUsableKey => f.write_str("JWK Set holds no usable public signature key"),
            Self::Io(e) => write!(f, "reading JWK Set: {e}"),
            #[cfg(feature = "fetch")]
            Self::Fetch(e) => write!(f, "fetching JWK Set: {e}"),
        }
    }
}

impl std::error::Error for KeysError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::NotAJwkSet(e) => Some(e.as_ref()),
            Self::Io(e) => Some(e),
            #[cfg(feature = "fetch")]
            Self::Fetch(e) => Some(e),
            Self::TooLarge | Self::NoUsableKey => None,
        }
    }
}

/// One public verification key: parsed once for every algorithm it may verify.
pub(crate) struct VerificationKey {
    kid: Option<String>,
    /// One per algorithm the JWK allows (RFC 7517 §4.4): a single one for EC and OKP keys
    /// and for RSA keys with `alg`, the six RSA algorithms for an RSA key without.
    keys: Vec<PublicKey>,
}

impl VerificationKey {
    fn from_jwk(jwk: &Jwk) -> Option<Self> {
        // JWKS keys marked for encryption are not for us (RFC 7517 §4.2).
        if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
            return None;
        }
        let fixed = match jwk.common.key_algorithm {
            None => None,
            Some(a) => Some(signature_algorithm(a)?),
        };
        // Which algorithms the key type and curve allow (RFC 7518 §3.1, RFC 8037 §3.1).
        let (params, algorithms): (KeyParams<'_>, &[Algorithm]) = match &jwk.algorithm {
            // RFC 7518 §3.3: at least 2048 bits, whatever the backend would accept.
            AlgorithmParameters::RSA(rsa) => {
                let n = URL_SAFE_NO_PAD.decode(&rsa.n).ok()?;
                if !crate::crypto::acceptable_rsa_modulus(&n) {
                    return None;
                }
                (
                    KeyParams::Rsa {
                        n: &rsa.n,
                        e: &rsa.e,
                    },
                    &[
                        Algorithm::RS256,
                        Algorithm::RS384,
                        Algorithm::RS512,
                        Algorithm::PS256,
                        Algorithm::PS384,
                        Algorithm::PS512,
                    ],
                )
            }
            AlgorithmParameters::EllipticCurve(p) => {
                let params = KeyParams::Ec { x: &p.x, y: &p.y };
                match p.curve {
                    EllipticCurve::P256 => (params, &[Algorithm::ES256]),
                    EllipticCurve::P384 => (params, &[Algorithm::ES384]),
                    _ => return None,
                }
            }
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                (KeyParams::Ed25519 { x: &p.x }, &[Algorithm::EdDSA])
            }
            // Symmetric keys never verify access tokens: that is how alg confusion starts.
            _ => return None,
        };
        let keys = algorithms
            .iter()
            .filter(|alg| fixed.is_none_or(|fixed| fixed == **alg))
            .map(|alg| PublicKey::new(*alg, params))
            .collect::<Option<Vec<_>>>()?;
        if keys.is_empty() {
            return None;
        }
        Some(VerificationKey {
            kid: jwk.common.key_id.clone(),
            keys,
        })
    }

    /// The key for a JWS signed with `alg`, if this key may verify it (RFC 7517 §4.4,
    /// RFC 7518 §3.4).
    pub(crate) fn for_algorithm(&self, alg: Algorithm) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.algorithm() == alg)
    }

    fn accepts(&self, alg: Algorithm) -> bool {
        self.for_algorithm(alg).is_some()
    }
}

/// The JWS algorithm a JWK's `alg` names; `None` for encryption algorithms (RFC 7518 §4).
fn signature_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A parsed JWK Set (RFC 7517 §5): the public signature keys of one issuer.
///
/// ```
/// use tower_oauth_guard::KeySet;
///
/// // The P-256 key of RFC 7515 Appendix A.3.
/// let keys = KeySet::from_json(br#"{"keys": [{
///     "kty": "EC", "crv": "P-256", "kid": "a3",
///     "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
///     "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
/// }]}"#)?;
/// assert_eq!(keys.len(), 1);
/// # Ok::<(), tower_oauth_guard::KeysError>(())
/// ```
#[derive(Default, Clone)]
pub struct KeySet {
    keys: Vec<Arc<VerificationKey>>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .map(|k| k.kid.as_deref().unwrap_or("<no kid>")),
            )
            .finish()
    }
}

impl KeySet {
    /// Parses a JWK Set document (RFC 7517 §5). Of its `keys`, the first [`MAX_KEYS`] are read
    /// and the rest skipped unread; keys that do not parse are skipped rather than failing the
    /// whole set, so an issuer adding a key type we do not know does not lock everyone out.
    pub fn from_json(bytes: &[u8]) -> Result<Self, KeysError> {
        if bytes.len() > MAX_JWKS_LEN {
            return Err(KeysError::TooLarge);
        }
        let entries = json::array_member(bytes, "keys", MAX_KEYS, JWK_MEMBERS)
            .ok_or_else(|| KeysError::NotAJwkSet("not a JSON object with a `keys` array".into()))?;
        let keys = entries
            .into_iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
            .filter_map(|jwk| VerificationKey::from_jwk(&jwk))
            .map(Arc::new)
            .collect::<Vec<_>>();
        if keys.is_empty() {
            return Err(KeysError::NoUsableKey);
        }
        Ok(KeySet { keys })
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is usable.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for a JWS header: by `kid` when the header has one; without a `kid`, only when
    /// exactly one key fits `alg`, so that a token cannot make us try every key.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<VerificationKey>> {
        let mut fitting = self.keys.iter().filter(|k| k.accepts(alg));
        match kid {
            Some(kid) => fitting.find(|k| k.kid.as_deref() == Some(kid)).cloned(),
            None => {
                let first = fitting.next()?;
                fitting.next().is_none().then(|| first.clone())
            }
        }
    }
}

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A fixed set.
    Static(KeySet),
    /// A JSON file read once when the guard is built.
    File(std::path::PathBuf),
    /// `jwks_uri`, fetched and refreshed.
    #[cfg(feature = "fetch")]
    Url(String),
    /// `jwks_uri` from the issuer's metadata (RFC 8414 / OpenID Connect Discovery).
    #[cfg(feature = "fetch")]
    Discover,
}
