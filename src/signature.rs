//! JWS signature verification (RFC 7515 §5.2) with a public key parsed once, when a JWK Set
//! is loaded or a DPoP client's key is first seen, rather than on every signature.
//!
//! With `aws-lc-rs` the key is an aws-lc `ParsedPublicKey`, bound to one algorithm (RFC 7518
//! §3.3–§3.5, RFC 8037 §3.1). With `rust-crypto` alone it is a `jsonwebtoken` key, verified by
//! that crate's pure-Rust provider.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::algorithm::Algorithm;

/// The public members of a JWK, base64url as sent (RFC 7518 §6.2.1, §6.3.1, RFC 8037 §2).
/// The caller has checked that the key type and curve fit the algorithm.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyParams<'a> {
    /// `EC`: the point's coordinates (for ES256 on P-256, ES384 on P-384).
    Ec { x: &'a str, y: &'a str },
    /// `RSA`: modulus and exponent.
    Rsa { n: &'a str, e: &'a str },
    /// `OKP` on `Ed25519`: the public key.
    Ed25519 { x: &'a str },
}

/// The longest signature any allowed algorithm makes: RSA at 8192 bits.
const MAX_SIGNATURE_LEN: usize = crate::limits::MAX_RSA_MODULUS_BITS / 8;

/// A public key ready to verify signatures of one algorithm.
pub(crate) struct PublicKey {
    alg: Algorithm,
    #[cfg(feature = "aws-lc-rs")]
    key: aws_lc_rs::signature::ParsedPublicKey,
    #[cfg(not(feature = "aws-lc-rs"))]
    key: jsonwebtoken::DecodingKey,
}

impl PublicKey {
    /// Parses the key for `alg`; `None` when the members do not make a valid key of that
    /// algorithm's type (including an EC point that is not on its curve, with `aws-lc-rs`).
    pub(crate) fn new(alg: Algorithm, params: KeyParams<'_>) -> Option<Self> {
        Some(PublicKey {
            alg,
            key: backend::parse(alg, params)?,
        })
    }

    /// The one algorithm this key verifies.
    pub(crate) fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Checks that `signature` is this key's signature of `signing_input`.
    pub(crate) fn verify(
        &self,
        signing_input: &[u8],
        signature: &Signature<'_>,
    ) -> Result<(), VerifyError> {
        if signature.len > MAX_SIGNATURE_LEN {
            return Err(VerifyError::BadSignature);
        }
        let raw = signature
            .raw
            .get(..signature.len)
            .ok_or(VerifyError::BadSignature)?;
        backend::verify(self, signing_input, raw, signature.text)
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VerifyError {
    /// Not this key's signature of the input.
    BadSignature,
    /// The key turned out unusable only when used (the pure-Rust backend parses late).
    #[cfg_attr(feature = "aws-lc-rs", allow(dead_code))]
    UnusableKey,
}

/// The signature part of a compact JWS (RFC 7515 §7.1), decoded once, on the stack.
pub(crate) struct Signature<'a> {
    raw: [u8; MAX_SIGNATURE_LEN],
    /// Decoded length; above `MAX_SIGNATURE_LEN` for valid base64url that no allowed
    /// algorithm could have made, which never verifies.
    len: usize,
    text: &'a str,
}

impl<'a> Signature<'a> {
    /// Decodes unpadded base64url; `None` when `text` is not that.
    pub(crate) fn decode(text: &'a str) -> Option<Self> {
        let mut raw = [0u8; MAX_SIGNATURE_LEN];
        let len = match URL_SAFE_NO_PAD.decode_slice(text, &mut raw) {
            Ok(len) => len,
            // Too long for any key: still told apart from text that is not base64url.
            Err(base64::DecodeSliceError::OutputSliceTooSmall) => {
                URL_SAFE_NO_PAD.decode(text).ok()?;
                MAX_SIGNATURE_LEN + 1
            }
            Err(base64::DecodeSliceError::DecodeError(_)) => return None,
        };
        Some(Signature { raw, len, text })
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey").field("alg", &self.alg).finish()
    }
}

/// Decodes a base64url member; `None` when it is not unpadded base64url.
fn decoded(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}

#[cfg(feature = "aws-lc-rs")]
mod backend {
    use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};

    use super::{Algorithm, KeyParams, PublicKey, VerifyError, decoded};

    fn algorithm(alg: Algorithm) -> &'static dyn VerificationAlgorithm {
        match alg {
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            Algorithm::EdDSA => &signature::ED25519,
        }
    }

    pub(super) fn parse(alg: Algorithm, params: KeyParams<'_>) -> Option<ParsedPublicKey> {
        let bytes = match params {
            // SEC 1 §2.3.3: the uncompressed point, 0x04 || x || y.
            KeyParams::Ec { x, y } => {
                let (x, y) = (decoded(x)?, decoded(y)?);
                if x.len() != y.len() {
                    return None;
                }
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                point
            }
            KeyParams::Rsa { n, e } => rsa_public_key_der(&decoded(n)?, &decoded(e)?)?,
            KeyParams::Ed25519 { x } => decoded(x)?,
        };
        ParsedPublicKey::new(algorithm(alg), bytes).ok()
    }

    pub(super) fn verify(
        key: &PublicKey,
        input: &[u8],
        raw: &[u8],
        _: &str,
    ) -> Result<(), VerifyError> {
        key.key
            .verify_sig(input, raw)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` in DER
    /// (RFC 8017 §A.1.1), from the unsigned big-endian `n` and `e` of a JWK.
    fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Option<Vec<u8>> {
        let mut body = Vec::with_capacity(n.len() + e.len() + 16);
        der_unsigned_integer(&mut body, n)?;
        der_unsigned_integer(&mut body, e)?;
        let mut out = Vec::with_capacity(body.len() + 4);
        out.push(0x30);
        der_length(&mut out, body.len())?;
        out.extend_from_slice(&body);
        Some(out)
    }

    /// A DER INTEGER of an unsigned value: leading zeros dropped, one added when the high
    /// bit is set so the value stays positive (X.690 §8.3).
    fn der_unsigned_integer(out: &mut Vec<u8>, value: &[u8]) -> Option<()> {
        let start = value.iter().position(|b| *b != 0)?;
        let value = value.get(start..)?;
        let pad = value.first().is_some_and(|b| b & 0x80 != 0);
        out.push(0x02);
        der_length(out, value.len() + usize::from(pad))?;
        if pad {
            out.push(0);
        }
        out.extend_from_slice(value);
        Some(())
    }

    /// A DER length (X.690 §8.1.3): short form below 128, else up to two length octets,
    /// which covers every key this crate accepts.
    fn der_length(out: &mut Vec<u8>, len: usize) -> Option<()> {
        match len {
            0..=0x7f => out.push(u8::try_from(len).ok()?),
            0x80..=0xff => out.extend_from_slice(&[0x81, u8::try_from(len).ok()?]),
            _ => out.extend_from_slice(&[0x82, u8::try_from(len >> 8).ok()?, (len & 0xff) as u8]),
        }
        (len <= 0xffff).then_some(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rsa_public_key_der_is_minimal_and_positive() {
            // n with the high bit set gets one zero octet; e = 65537.
            let der = rsa_public_key_der(&[0x80, 0x01], &[0x01, 0x00, 0x01]).unwrap();
            assert_eq!(
                der,
                [
                    0x30, 0x0a, 0x02, 0x03, 0x00, 0x80, 0x01, 0x02, 0x03, 0x01, 0x00, 0x01
                ]
            );
            // Leading zeros are dropped; an all-zero value is no key.
            let der = rsa_public_key_der(&[0x00, 0x7f], &[0x03]).unwrap();
            assert_eq!(der, [0x30, 0x06, 0x02, 0x01, 0x7f, 0x02, 0x01, 0x03]);
            assert!(rsa_public_key_der(&[0, 0], &[3]).is_none());
            // Long-form lengths for a 4096-bit modulus.
            let der = rsa_public_key_der(&[0xff; 512], &[3]).unwrap();
            assert_eq!(der[..4], [0x30, 0x82, 0x02, 0x08]);
            assert_eq!(der[4..8], [0x02, 0x82, 0x02, 0x01]);
        }
    }
}

#[cfg(not(feature = "aws-lc-rs"))]
mod backend {
    use jsonwebtoken::DecodingKey;

    use super::{Algorithm, KeyParams, PublicKey, VerifyError, decoded};

    pub(super) fn parse(alg: Algorithm, params: KeyParams<'_>) -> Option<DecodingKey> {
        match params {
            KeyParams::Ec { x, y } => {
                // Checked here: jsonwebtoken decodes only when it verifies, and never checks
                // that the coordinates have the curve's size (RFC 7518 §6.2.1.2).
                let size = match alg {
                    Algorithm::ES256 => 32,
                    Algorithm::ES384 => 48,
                    _ => return None,
                };
                if decoded(x)?.len() != size || decoded(y)?.len() != size {
                    return None;
                }
                DecodingKey::from_ec_components(x, y).ok()
            }
            KeyParams::Rsa { n, e } => DecodingKey::from_rsa_components(n, e).ok(),
            KeyParams::Ed25519 { x } => DecodingKey::from_ed_components(x).ok(),
        }
    }

    pub(super) fn verify(
        key: &PublicKey,
        input: &[u8],
        _: &[u8],
        signature: &str,
    ) -> Result<(), VerifyError> {
        // Without a provider jsonwebtoken panics: the callers refuse first
        // (`crypto::jwt_provider_ready`).
        match jsonwebtoken::crypto::verify(signature, input, &key.key, key.alg.jwt()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(VerifyError::BadSignature),
            // The signature is valid base64url (`Signature::decode`): only the key is left.
            Err(_) => Err(VerifyError::UnusableKey),
        }
    }
}
