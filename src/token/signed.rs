//! What an issuer signs (RFC 7515): the protected header's members the guard acts on, and
//! the verification of a signed document with the issuer's keys.

use std::borrow::Cow;

use crate::json::{Claim, Name, Skip, Text};

use super::error::TokenError;
#[cfg(feature = "fetch")]
use {
    super::issuer_keys::IssuerKeys,
    crate::algorithm::Algorithm,
    crate::jws::{self, CompactJws},
    crate::signature::Signature,
};

/// The protected header members we act on (RFC 7515 §4.1), read in one pass over the JSON
/// like the payload's claims, so that a member present as `null` is not mistaken for an
/// absent one; every other member is parsed strictly and skipped.
#[derive(Default)]
pub(crate) struct Header<'a> {
    alg: Claim<Cow<'a, str>>,
    kid: Claim<Cow<'a, str>>,
    typ: Claim<Cow<'a, str>>,
    /// `crit` was present, whatever its value.
    crit: bool,
}

impl<'a> Header<'a> {
    pub(crate) fn parse(json: &'a [u8]) -> Result<Self, TokenError> {
        let header: Header<'a> = serde_json::from_slice(json).map_err(|_| TokenError::Malformed)?;
        // Any critical extension is one we do not understand (RFC 7515 §4.1.11: reject),
        // whatever its value.
        if header.crit {
            return Err(TokenError::Malformed);
        }
        if !matches!(header.alg, Claim::Value(_)) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        if header.kid == Claim::OtherType {
            return Err(TokenError::Malformed);
        }
        if header.typ == Claim::OtherType {
            return Err(TokenError::WrongType);
        }
        Ok(header)
    }

    pub(crate) fn alg(&self) -> &str {
        match &self.alg {
            Claim::Value(alg) => alg,
            _ => "",
        }
    }

    pub(crate) fn kid(&self) -> Option<&str> {
        match &self.kid {
            Claim::Value(kid) => Some(kid),
            _ => None,
        }
    }

    pub(crate) fn typ(&self) -> Option<&str> {
        match &self.typ {
            Claim::Value(typ) => Some(typ),
            _ => None,
        }
    }
}

impl<'de> serde::Deserialize<'de> for Header<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Header<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JOSE header")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut header = Header::default();
                while let Some(Name(name)) = map.next_key()? {
                    match &*name {
                        "alg" => header.alg = map.next_value::<Text<'de>>()?.0,
                        "kid" => header.kid = map.next_value::<Text<'de>>()?.0,
                        "typ" => header.typ = map.next_value::<Text<'de>>()?.0,
                        other => {
                            header.crit |= other == "crit";
                            map.next_value_seed(Skip)?;
                        }
                    }
                }
                Ok(header)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// The payload of a JWS (RFC 7515) signed by one of `keys`, whose header names an allowed
/// algorithm, no critical extension, and `typ` exactly `typ` (RFC 8725 §3.11; the
/// `application/` prefix may be left out, RFC 7515 §4.1.9). For the signed documents an
/// issuer sends that are not access tokens (RFC 9701 introspection answers).
#[cfg(feature = "fetch")]
pub(crate) async fn verified_payload(
    jws: &str,
    keys: &IssuerKeys,
    algorithms: &[Algorithm],
    typ: &str,
) -> Result<Vec<u8>, TokenError> {
    let parts = CompactJws::split(jws).map_err(|_| TokenError::Malformed)?;
    let decode = |part: &str| jws::decode(part).ok_or(TokenError::Malformed);
    let header_json = decode(parts.header)?;
    let header = Header::parse(&header_json)?;
    let alg = Algorithm::from_name(header.alg()).ok_or(TokenError::AlgorithmNotAllowed)?;
    if !algorithms.contains(&alg) {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    let named = header.typ().is_some_and(|t| {
        let t = t.strip_prefix("application/").unwrap_or(t);
        t.eq_ignore_ascii_case(typ)
    });
    if !named {
        return Err(TokenError::WrongType);
    }
    let key = keys
        .key(header.kid(), alg)
        .await
        .ok_or(TokenError::UnknownKey)?;
    let signature = Signature::decode(parts.signature).ok_or(TokenError::InvalidSignature)?;
    key.for_algorithm(alg)
        .ok_or(TokenError::UnknownKey)?
        .verify(parts.signing_input.as_bytes(), &signature)
        .map_err(|_| TokenError::InvalidSignature)?;
    decode(parts.payload)
}
