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

    /// ECDSA keys are parsed for DER signatures: a JWS signature (`R || S`, RFC 7518 §3.4)
    /// is re-encoded on the stack ([`ecdsa_der`]) rather than by aws-lc-rs's fixed-size
    /// format, which builds two bignums and a heap buffer for every signature.
    fn algorithm(alg: Algorithm) -> &'static dyn VerificationAlgorithm {
        match alg {
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_ASN1,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_ASN1,
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
        let mut der = [0; MAX_ECDSA_DER_LEN];
        let signature = match key.alg {
            Algorithm::ES256 => ecdsa_der(raw, 32, &mut der),
            Algorithm::ES384 => ecdsa_der(raw, 48, &mut der),
            _ => Some(raw),
        }
        .ok_or(VerifyError::BadSignature)?;
        key.key
            .verify_sig(input, signature)
            .map_err(|_| VerifyError::BadSignature)
    }

    /// The longest `ECDSA-Sig-Value` of P-384: two 49-octet INTEGERs in a SEQUENCE.
    const MAX_ECDSA_DER_LEN: usize = 2 + 2 * (2 + 49);

    /// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` in DER (RFC 3279 §2.2.3)
    /// from a JWS ECDSA signature: `R || S`, each exactly `size` octets (RFC 7518 §3.4).
    /// `None` for any other length, or when `R` or `S` is zero (never a valid signature).
    fn ecdsa_der<'a>(
        fixed: &[u8],
        size: usize,
        out: &'a mut [u8; MAX_ECDSA_DER_LEN],
    ) -> Option<&'a [u8]> {
        if fixed.len() != 2 * size || size > 48 {
            return None;
        }
        let (r, s) = fixed.split_at(size);
        let mut len = 2;
        let mut put = |bytes: &[u8]| {
            out.get_mut(len..len + bytes.len())?.copy_from_slice(bytes);
            len += bytes.len();
            Some(())
        };
        for value in [r, s] {
            // Minimal: leading zeros dropped, one added when the high bit is set so the
            // value stays positive (X.690 §8.3).
            let value = value.get(value.iter().position(|b| *b != 0)?..)?;
            let pad = value.first().is_some_and(|b| b & 0x80 != 0);
            put(&[0x02, u8::try_from(value.len() + usize::from(pad)).ok()?])?;
            if pad {
                put(&[0])?;
            }
            put(value)?;
        }
        // At most 2 × 51 octets of content: the short form of the length.
        let content = u8::try_from(len - 2).ok()?;
        out.get_mut(..2)?.copy_from_slice(&[0x30, content]);
        out.get(..len)
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
        use crate::signature::Signature;
        use aws_lc_rs::rand::SystemRandom;
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED,
            ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey,
        };
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;

        fn der(fixed: &[u8], size: usize) -> Option<Vec<u8>> {
            ecdsa_der(fixed, size, &mut [0; MAX_ECDSA_DER_LEN]).map(<[u8]>::to_vec)
        }

        #[test]
        fn ecdsa_der_is_minimal_and_positive() {
            let mut fixed = [0u8; 64];
            fixed[31] = 0x01;
            fixed[32] = 0x80;
            // R = 1: one octet. S with its high bit set: a zero octet first.
            let mut expected = vec![0x30, 0x26, 0x02, 0x01, 0x01, 0x02, 0x21, 0x00, 0x80];
            expected.extend_from_slice(&[0; 31]);
            assert_eq!(der(&fixed, 32).unwrap(), expected);
            // The longest: P-384 with both high bits set.
            let der384 = der(&[0xff; 96], 48).unwrap();
            assert_eq!(der384.len(), MAX_ECDSA_DER_LEN);
            assert_eq!(der384[..5], [0x30, 0x66, 0x02, 0x31, 0x00]);
            // Zero is never a signature value; any other length is not a JWS signature.
            let mut zero_s = [0x11u8; 64];
            zero_s[32..].fill(0);
            assert_eq!(der(&zero_s, 32), None);
            assert_eq!(der(&[0; 64], 32), None);
            for len in [0, 1, 63, 65, 96, 128] {
                assert_eq!(der(&vec![0x11; len], 32), None, "{len}");
            }
            assert_eq!(der(&[0x11; 98], 49), None);
        }

        struct Signer {
            fixed: &'static dyn VerificationAlgorithm,
            pair: EcdsaKeyPair,
            key: PublicKey,
        }

        fn signer(alg: Algorithm) -> Signer {
            let (signing, fixed): (_, &'static dyn VerificationAlgorithm) = match alg {
                Algorithm::ES256 => (&ECDSA_P256_SHA256_FIXED_SIGNING, &ECDSA_P256_SHA256_FIXED),
                _ => (&ECDSA_P384_SHA384_FIXED_SIGNING, &ECDSA_P384_SHA384_FIXED),
            };
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(signing, &SystemRandom::new()).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8.as_ref()).unwrap();
            let point = pair.public_key().as_ref();
            let (x, y) = point[1..].split_at((point.len() - 1) / 2);
            let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
            let key = PublicKey::new(alg, KeyParams::Ec { x: &x, y: &y }).unwrap();
            Signer { fixed, pair, key }
        }

        proptest::proptest! {
            #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

            /// The stack-encoded DER signature is accepted exactly when aws-lc-rs's own
            /// fixed-size format accepts the JWS signature: genuine ones, and genuine ones with
            /// an octet changed, cut, extended, or with `R` or `S` zeroed, given leading zero
            /// octets, or set above the group order.
            #[test]
            fn der_verification_agrees_with_the_fixed_format(
                p384 in proptest::bool::ANY,
                msg in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
                edit in 0usize..8,
                at in 0usize..96,
                byte in proptest::num::u8::ANY,
            ) {
                static SIGNERS: std::sync::OnceLock<[Signer; 2]> = std::sync::OnceLock::new();
                let signers = SIGNERS
                    .get_or_init(|| [signer(Algorithm::ES256), signer(Algorithm::ES384)]);
                let s = &signers[usize::from(p384)];
                let mut sig = s.pair.sign(&SystemRandom::new(), &msg).unwrap().as_ref().to_vec();
                let half = sig.len() / 2;
                let at = at % sig.len();
                match edit {
                    0 => {}
                    1 => sig[at] ^= byte | 1,
                    2 => sig.truncate(at),
                    3 => sig.push(byte),
                    4 => sig[..half].fill(0),
                    5 => sig[half..at.max(half + 1)].fill(0),
                    6 => sig[half..].fill(0xff),
                    _ => sig[..at.min(half)].fill(0),
                }
                let text = URL_SAFE_NO_PAD.encode(&sig);
                let ours = s.key.verify(&msg, &Signature::decode(&text).unwrap()).is_ok();
                let point = s.pair.public_key().as_ref();
                let theirs = UnparsedPublicKey::new(s.fixed, point).verify(&msg, &sig).is_ok();
                proptest::prop_assert_eq!(ours, theirs);
                proptest::prop_assert!(edit != 0 || ours, "a genuine signature is refused");
            }
        }

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
