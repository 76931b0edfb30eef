//! huskarl with aws-lc-rs: a [`JwsVerifierPlatform`] whose ES256 verifiers are aws-lc-rs
//! `ParsedPublicKey`s, so that huskarl's own pipeline can be compared on the same crypto as
//! tower-oauth-guard (huskarl's default platform verifies with RustCrypto's `p256`).
//!
//! huskarl builds one verifier per issuer key when the validator is built, and one per DPoP
//! proof (from the proof's `jwk` header, RFC 9449 §4.2), as its native platform does. Only
//! ES256 (RFC 7518 §3.4) is offered: it is all this benchmark signs with.

use std::sync::Arc;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ParsedPublicKey};
use huskarl_resource_server::core::crypto::KeyMatchStrength;
use huskarl_resource_server::core::crypto::verifier::{
    CreateVerifierError, JwsVerifier, JwsVerifierPlatform, KeyMatch, VerifyError,
};
use huskarl_resource_server::core::jwk::{KeyUse, PublicJwk, PublicKey};
use huskarl_resource_server::core::platform::MaybeSendBoxFuture;
use huskarl_resource_server::core::{Error, RetryAdvice};

const ES256: &[&str] = &["ES256"];

/// Turns public JWKs into aws-lc-rs ES256 verifiers.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsLcPlatform;

/// One P-256 public key, parsed once.
struct AwsLcEs256 {
    key: ParsedPublicKey,
    kid: Option<String>,
}

impl std::fmt::Debug for AwsLcEs256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsLcEs256")
            .field("kid", &self.kid)
            .finish()
    }
}

fn unsupported(why: &'static str) -> CreateVerifierError {
    CreateVerifierError::UnsupportedKey {
        source: Error::new(RetryAdvice::No, why),
    }
}

/// The verifier for `jwk`, refusing what huskarl's native platform refuses for EC keys: a
/// `use` other than `sig`, another curve or `alg`, a point not on the curve.
fn es256_verifier(jwk: PublicJwk) -> Result<AwsLcEs256, CreateVerifierError> {
    if jwk.key_use.as_ref().is_some_and(|u| *u != KeyUse::Sign) {
        return Err(unsupported("JWK use is not sig"));
    }
    if jwk.algorithm.as_deref().is_some_and(|a| a != "ES256") {
        return Err(unsupported("only ES256 is offered"));
    }
    let PublicKey::Ec(ec) = jwk.key else {
        return Err(unsupported("not an EC key"));
    };
    if ec.crv != "P-256" || ec.x.len() != 32 || ec.y.len() != 32 {
        return Err(unsupported("not a P-256 point"));
    }
    let point = [&[0x04][..], &ec.x, &ec.y].concat();
    let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .map_err(|_| unsupported("P-256 point rejected"))?;
    Ok(AwsLcEs256 { key, kid: jwk.kid })
}

impl JwsVerifierPlatform for AwsLcPlatform {
    fn create_verifier_from_jwk(
        &self,
        jwk: PublicJwk,
    ) -> MaybeSendBoxFuture<'static, Result<Arc<dyn JwsVerifier>, CreateVerifierError>> {
        let verifier = es256_verifier(jwk).map(|v| Arc::new(v) as Arc<dyn JwsVerifier>);
        Box::pin(async move { verifier })
    }

    fn supported_signature_algorithms(&self) -> &[&str] {
        ES256
    }
}

impl JwsVerifier for AwsLcEs256 {
    fn key_match(&self, key_match: &KeyMatch<'_>) -> Option<KeyMatchStrength> {
        key_match.strength_for(ES256, self.kid.as_deref())
    }

    fn verify<'a>(
        &'a self,
        input: &'a [u8],
        signature: &'a [u8],
        key_match: &'a KeyMatch<'a>,
    ) -> MaybeSendBoxFuture<'a, Result<(), VerifyError>> {
        Box::pin(async move {
            if self.key_match(key_match).is_none() {
                return Err(VerifyError::NoMatchingKey);
            }
            self.key
                .verify_sig(input, signature)
                .map_err(|_| VerifyError::SignatureMismatch)
        })
    }
}
