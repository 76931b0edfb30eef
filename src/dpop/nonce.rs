//! Stateless server-provided DPoP nonces (RFC 9449 §8, §9).
//!
//! A nonce is `base64url(step || HMAC-SHA256(secret, "dpop-nonce" || step)[..16])`
//! with `step = unix_seconds / step_length`, so every instance that shares
//! the secret issues and accepts the same nonces without shared state.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

/// Shortest secret accepted: HMAC keys below the hash output size weaken it (RFC 2104 §3).
pub const MIN_SECRET_LEN: usize = 32;
/// Bytes drawn for a generated secret; the hash output size is all HMAC-SHA256 can use fully.
const GENERATED_SECRET_LEN: usize = 32;
/// Truncated MAC bytes: 128 bits is ample against forgery within a nonce lifetime (RFC 2104 §5).
const MAC_LEN: usize = 16;
/// Bytes of the big-endian step counter at the start of a nonce.
const STEP_LEN: usize = 8;
/// Decoded nonce length.
const NONCE_LEN: usize = STEP_LEN + MAC_LEN;
/// Encoded nonce length (24 bytes are 32 base64 chars, no padding); checked before decoding.
const NONCE_ENCODED_LEN: usize = 32;
/// Domain separation so the secret's MACs cannot be replayed from another use.
const DOMAIN: &[u8] = b"dpop-nonce";
/// Default step length: short enough to bound the nonce lifetime to minutes.
const DEFAULT_STEP: Duration = Duration::from_secs(60);
/// Default number of past steps still accepted, giving a 2-3 minute lifetime.
const DEFAULT_ACCEPTED_STEPS: u32 = 2;
/// Shortest step: the clock is in whole seconds.
const MIN_STEP_SECS: u64 = 1;

/// Why a nonce secret could not be created.
///
/// ```
/// use tower_oauth_guard::{NonceError, NonceSecret};
///
/// assert_eq!(NonceSecret::from_bytes(b"too short").unwrap_err(), NonceError::SecretTooShort);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NonceError {
    /// The secret is shorter than 32 bytes (RFC 2104 §3).
    SecretTooShort,
    /// The operating system's random number generator failed.
    Rng,
}

impl fmt::Display for NonceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SecretTooShort => "DPoP nonce secret must be at least 32 bytes",
            Self::Rng => "the operating system random number generator failed",
        })
    }
}

impl std::error::Error for NonceError {}

/// The HMAC key that authenticates server nonces (RFC 9449 §9: nonces must
/// be unpredictable to clients). Shared by all instances of one API.
///
/// ```
/// use tower_oauth_guard::{DpopNonces, NonceSecret};
///
/// // Every instance of one API holds the same secret (here from 32 bytes of configuration).
/// let shared = NonceSecret::from_bytes(&[7u8; 32])?;
/// let nonces = DpopNonces::new(shared);
/// // A single instance may generate its own.
/// let single = DpopNonces::new(NonceSecret::generate()?);
/// # let _ = (nonces, single);
/// # Ok::<(), tower_oauth_guard::NonceError>(())
/// ```
#[derive(Clone)]
pub struct NonceSecret {
    // Keyed once; cloning the state per nonce avoids re-hashing the key.
    mac: Hmac<Sha256>,
}

impl NonceSecret {
    /// Generates a fresh 32-byte secret from the OS random number generator.
    pub fn generate() -> Result<Self, NonceError> {
        let mut bytes = [0u8; GENERATED_SECRET_LEN];
        getrandom::fill(&mut bytes).map_err(|e| {
            tracing::error!(error = %e, "OS random number generator failed");
            NonceError::Rng
        })?;
        Self::from_bytes(&bytes)
    }

    /// Uses `bytes` (at least 32 bytes long) as the secret, e.g. one
    /// loaded from configuration so several instances agree.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, NonceError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(NonceError::SecretTooShort);
        }
        let mac = Hmac::<Sha256>::new_from_slice(bytes).map_err(|_| NonceError::SecretTooShort)?;
        Ok(Self { mac })
    }

    fn tag(&self, step: u64) -> [u8; MAC_LEN] {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(&step.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; MAC_LEN];
        for (dst, src) in tag.iter_mut().zip(full.iter()) {
            *dst = *src;
        }
        tag
    }
}

impl fmt::Debug for NonceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceSecret(..)")
    }
}

/// Outcome of checking a client-supplied nonce (RFC 9449 §8, §9).
///
/// ```
/// use tower_oauth_guard::{DpopNonces, NonceCheck, NonceSecret};
///
/// let nonces = DpopNonces::new(NonceSecret::from_bytes(&[7u8; 32])?);
/// let now = 1_767_225_600;
/// let nonce = nonces.issue(now);
/// assert!(matches!(nonces.check(&nonce, now), NonceCheck::Valid { refresh_soon: false }));
/// assert_eq!(nonces.check("forged", now), NonceCheck::Invalid);
/// assert_eq!(nonces.check(&nonce, now + 3_600), NonceCheck::Stale);
/// # Ok::<(), tower_oauth_guard::NonceError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Authentic and recent. With `refresh_soon`, the nonce was issued in an
    /// earlier step, so the server should send a new one (RFC 9449 §8.2).
    Valid {
        /// Whether to send a fresh `DPoP-Nonce` with the successful response.
        refresh_soon: bool,
    },
    /// Forged, malformed, from an unknown secret or from the future.
    Invalid,
    /// Authentic but older than the accepted window; answer `use_dpop_nonce` (RFC 9449 §8).
    Stale,
}

/// Issues and checks server nonces (RFC 9449 §8 for the authorization
/// server, §9 for resource servers).
///
/// ```
/// use std::time::Duration;
/// use tower_oauth_guard::{BaseUrl, Dpop, DpopNonces, NonceSecret, PublicUri};
///
/// // Rotating the secret: the new one issues, the old one is still accepted for a while.
/// let (new, old) = (NonceSecret::from_bytes(&[2u8; 32])?, NonceSecret::from_bytes(&[1u8; 32])?);
/// let nonces = DpopNonces::new(new).previous(old).step(Duration::from_secs(60));
/// let dpop = Dpop::required(PublicUri::fixed(BaseUrl::parse("https://api.example")?)).nonces(nonces);
/// # let _ = dpop;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct DpopNonces {
    current: NonceSecret,
    previous: Option<NonceSecret>,
    step_secs: u64,
    accepted_steps: u32,
}

impl DpopNonces {
    /// Nonces keyed by `current`, with 60 s steps and 2 past steps accepted.
    pub fn new(current: NonceSecret) -> Self {
        Self {
            current,
            previous: None,
            step_secs: DEFAULT_STEP.as_secs(),
            accepted_steps: DEFAULT_ACCEPTED_STEPS,
        }
    }

    /// Also accepts nonces of `previous`, so rotating the secret does not
    /// invalidate nonces clients already hold; new nonces use the current one.
    pub fn previous(mut self, previous: NonceSecret) -> Self {
        self.previous = Some(previous);
        self
    }

    /// Sets the step length; sub-second parts are ignored and the minimum is 1 s.
    pub fn step(mut self, step: Duration) -> Self {
        self.step_secs = step.as_secs().max(MIN_STEP_SECS);
        self
    }

    /// Sets how many steps before the current one are still accepted.
    pub fn accepted_steps(mut self, steps: u32) -> Self {
        self.accepted_steps = steps;
        self
    }

    fn step_at(&self, now: u64) -> u64 {
        now.checked_div(self.step_secs).unwrap_or(now)
    }

    /// A nonce for the current step, for the `DPoP-Nonce` header (RFC 9449
    /// §8.1); its characters are base64url, a subset of NQCHAR.
    pub fn issue(&self, now: u64) -> String {
        let step = self.step_at(now);
        let mut raw = [0u8; NONCE_LEN];
        let (step_part, mac_part) = raw.split_at_mut(STEP_LEN);
        step_part.copy_from_slice(&step.to_be_bytes());
        mac_part.copy_from_slice(&self.current.tag(step));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks the `nonce` claim of a proof (RFC 9449 §4.3 check 10). The MAC
    /// is verified in constant time against the current and previous secret
    /// before the step is looked at, so only authentic nonces are `Stale`.
    pub fn check(&self, nonce: &str, now: u64) -> NonceCheck {
        if nonce.len() != NONCE_ENCODED_LEN {
            return NonceCheck::Invalid;
        }
        let mut raw = [0u8; NONCE_LEN];
        match URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) {
            Ok(NONCE_LEN) => {}
            _ => return NonceCheck::Invalid,
        }
        let Some((step_bytes, mac)) = raw.split_first_chunk::<STEP_LEN>() else {
            return NonceCheck::Invalid;
        };
        let step = u64::from_be_bytes(*step_bytes);
        let mut authentic: Choice = self.current.tag(step).ct_eq(mac);
        if let Some(previous) = &self.previous {
            authentic |= previous.tag(step).ct_eq(mac);
        }
        if !bool::from(authentic) {
            return NonceCheck::Invalid;
        }
        let current = self.step_at(now);
        match current.checked_sub(step) {
            None => NonceCheck::Invalid,
            Some(age) if age > u64::from(self.accepted_steps) => NonceCheck::Stale,
            Some(age) => NonceCheck::Valid {
                refresh_soon: age > 0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000;

    fn secret(fill: u8) -> NonceSecret {
        NonceSecret::from_bytes(&[fill; 32]).unwrap()
    }

    #[test]
    fn accepts_nonce_it_issued() {
        let n = DpopNonces::new(secret(1));
        let nonce = n.issue(T0);
        assert_eq!(nonce.len(), NONCE_ENCODED_LEN);
        assert_eq!(
            n.check(&nonce, T0),
            NonceCheck::Valid {
                refresh_soon: false
            }
        );
    }

    #[test]
    fn instances_sharing_a_secret_agree() {
        let a = DpopNonces::new(secret(1));
        let b = DpopNonces::new(secret(1));
        assert_eq!(
            b.check(&a.issue(T0), T0),
            NonceCheck::Valid {
                refresh_soon: false
            }
        );
    }

    #[test]
    fn generated_secrets_differ() {
        let a = DpopNonces::new(NonceSecret::generate().unwrap());
        let b = DpopNonces::new(NonceSecret::generate().unwrap());
        assert_eq!(b.check(&a.issue(T0), T0), NonceCheck::Invalid);
    }

    #[test]
    fn rejects_nonce_from_another_secret() {
        let a = DpopNonces::new(secret(1));
        let b = DpopNonces::new(secret(2));
        assert_eq!(b.check(&a.issue(T0), T0), NonceCheck::Invalid);
    }

    #[test]
    fn accepts_previous_secret_during_rotation() {
        let old = DpopNonces::new(secret(1));
        let rotated = DpopNonces::new(secret(2)).previous(secret(1));
        assert_eq!(
            rotated.check(&old.issue(T0), T0),
            NonceCheck::Valid {
                refresh_soon: false
            }
        );
        // New nonces come from the current secret only.
        assert_eq!(old.check(&rotated.issue(T0), T0), NonceCheck::Invalid);
    }

    #[test]
    fn asks_for_refresh_within_window_then_rejects_stale_nonce() {
        let n = DpopNonces::new(secret(1));
        let start = T0 - T0 % 60;
        let nonce = n.issue(start);
        assert_eq!(
            n.check(&nonce, start + 59),
            NonceCheck::Valid {
                refresh_soon: false
            }
        );
        assert_eq!(
            n.check(&nonce, start + 60),
            NonceCheck::Valid { refresh_soon: true }
        );
        assert_eq!(
            n.check(&nonce, start + 179),
            NonceCheck::Valid { refresh_soon: true }
        );
        assert_eq!(n.check(&nonce, start + 180), NonceCheck::Stale);
    }

    #[test]
    fn honours_custom_step_and_window() {
        let n = DpopNonces::new(secret(1))
            .step(Duration::from_secs(10))
            .accepted_steps(0);
        let start = T0 - T0 % 10;
        let nonce = n.issue(start);
        assert_eq!(
            n.check(&nonce, start + 9),
            NonceCheck::Valid {
                refresh_soon: false
            }
        );
        assert_eq!(n.check(&nonce, start + 10), NonceCheck::Stale);
    }

    #[test]
    fn clamps_zero_step_to_one_second() {
        let n = DpopNonces::new(secret(1))
            .step(Duration::ZERO)
            .accepted_steps(1);
        let nonce = n.issue(T0);
        assert_eq!(
            n.check(&nonce, T0 + 1),
            NonceCheck::Valid { refresh_soon: true }
        );
        assert_eq!(n.check(&nonce, T0 + 2), NonceCheck::Stale);
    }

    #[test]
    fn rejects_nonce_from_future_step() {
        let n = DpopNonces::new(secret(1));
        let nonce = n.issue(T0 + 60);
        assert_eq!(n.check(&nonce, T0), NonceCheck::Invalid);
    }

    #[test]
    fn rejects_tampered_nonce() {
        let n = DpopNonces::new(secret(1));
        let nonce = n.issue(T0);
        let mut raw = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
        // Move the step back by one without re-MACing.
        raw[7] ^= 1;
        assert_eq!(
            n.check(&URL_SAFE_NO_PAD.encode(&raw), T0),
            NonceCheck::Invalid
        );
        let mut raw = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
        raw[NONCE_LEN - 1] ^= 0x80;
        assert_eq!(
            n.check(&URL_SAFE_NO_PAD.encode(&raw), T0),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn rejects_malformed_and_oversized_input() {
        let n = DpopNonces::new(secret(1));
        let nonce = n.issue(T0);
        assert_eq!(n.check("", T0), NonceCheck::Invalid);
        assert_eq!(n.check(&"A".repeat(1 << 20), T0), NonceCheck::Invalid);
        assert_eq!(n.check(&format!("{nonce}A"), T0), NonceCheck::Invalid);
        assert_eq!(n.check(&nonce[..31], T0), NonceCheck::Invalid);
        let bad_alphabet = format!("{}+", &nonce[..31]);
        assert_eq!(n.check(&bad_alphabet, T0), NonceCheck::Invalid);
    }

    #[test]
    fn issued_nonce_is_nqchar() {
        let nonce = DpopNonces::new(secret(1)).issue(T0);
        // NQCHAR = %x21 / %x23-5B / %x5D-7E (RFC 9449 §8.1)
        assert!(
            nonce
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        );
    }

    #[test]
    fn rejects_short_secret_and_hides_bytes_in_debug() {
        assert_eq!(
            NonceSecret::from_bytes(&[7; 31]).unwrap_err(),
            NonceError::SecretTooShort
        );
        let s = NonceSecret::from_bytes(&[0xAB; 32]).unwrap();
        let debug = format!("{s:?} {:?}", DpopNonces::new(s.clone()));
        assert!(!debug.contains("171") && !debug.to_lowercase().contains("ab, "));
        assert!(debug.contains("NonceSecret(..)"));
    }
}
