//! JWT access tokens: RFC 9068 §4 validation on top of RFC 7515 / RFC 7519.

use std::collections::HashMap;

use crate::algorithm::Algorithm;
use crate::json::Claim;
use crate::jws::{self, CompactJws};
use crate::signature::Signature;

use super::claims::Validated;
use super::error::TokenError;
use super::issuer::TrustedIssuer;
use super::registered::Registered;
use super::signed::Header;

/// The default allow-list: asymmetric algorithms only (RFC 9068 §4 check 6 forbids `none`).
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

/// Rules shared by all issuers.
#[derive(Debug, Clone)]
pub(crate) struct JwtRules {
    pub(crate) algorithms: Vec<Algorithm>,
    pub(crate) leeway: i64,
    pub(crate) require_at_jwt_typ: bool,
}

/// Validates `token`, whose protected header decodes to `header_json` ([`jose_header`]),
/// against the trusted issuers at time `now` (RFC 9068 §4).
pub(crate) async fn validate(
    token: &str,
    header_json: &[u8],
    digest: [u8; 32],
    issuers: &HashMap<String, TrustedIssuer>,
    rules: &JwtRules,
    now: i64,
) -> Result<Validated, TokenError> {
    let jws = CompactJws::split(token).map_err(|_| TokenError::Malformed)?;
    let decode = |part: &str| jws::decode(part).ok_or(TokenError::Malformed);
    let header = Header::parse(header_json)?;
    // `none`, HMAC and unknown names have no `Algorithm`: never allowed (RFC 9068 §4 check 6).
    let alg = Algorithm::from_name(header.alg()).ok_or(TokenError::AlgorithmNotAllowed)?;
    if !rules.algorithms.contains(&alg) {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    if !typ_allowed(header.typ(), rules.require_at_jwt_typ) {
        return Err(TokenError::WrongType);
    }
    let payload = decode(jws.payload)?;
    // One pass over the payload: the claims checked here, nothing else built.
    let registered = Registered::parse(&payload).ok_or(TokenError::Malformed)?;

    // The unverified `iss` only picks which keys to try; it is trusted after the signature.
    let Claim::Value(iss) = &registered.iss else {
        return Err(TokenError::UnknownIssuer);
    };
    let issuer = issuers.get(&**iss).ok_or(TokenError::UnknownIssuer)?;
    let key = issuer
        .keys
        .key(header.kid(), alg)
        .await
        .ok_or(TokenError::UnknownKey)?;
    let signature = Signature::decode(jws.signature).ok_or(TokenError::InvalidSignature)?;
    key.for_algorithm(alg)
        .ok_or(TokenError::UnknownKey)?
        .verify(jws.signing_input.as_bytes(), &signature)
        .map_err(|_| TokenError::InvalidSignature)?;

    // Authenticated by the issuer: the claims are checked.
    if registered.exp == Claim::Absent {
        return Err(TokenError::MissingExpiry);
    }
    Validated::check(
        token,
        digest,
        &registered,
        issuer.expected(),
        rules.leeway,
        now,
    )
    .map(|validated| validated.with_payload(payload))
}

/// The first part of `token` decoded, when `token` is shaped as a JOSE object in compact form
/// (RFC 7515 §7.1, RFC 7516 §7.1): a first dot-separated part that is the base64url of a JSON
/// object. Such a token is a JWT for the local checks, which refuse it if it is not a valid
/// one (an unsecured JWT with its empty signature, a JWE, a part missing); it is never sent
/// to introspection. Anything else (`None`) is an opaque token.
pub(crate) fn jose_header(token: &str) -> Option<Vec<u8>> {
    let (header, _) = token.split_once('.')?;
    jws::decode(header).filter(|header| header.trim_ascii_start().starts_with(b"{"))
}

/// RFC 9068 §4: `typ` is `at+jwt` or `application/at+jwt`, compared case-insensitively
/// (media types are, RFC 2045 §5.1).
fn is_at_jwt(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
    })
}

/// RFC 9068 §4 check 2 and RFC 8725 §3.11: a JWT typed as another kind of token (`dpop+jwt`,
/// `id_token+jwt`, `secevent+jwt`, `logout+jwt`, ...) is never an access token. Untyped and
/// plain `JWT` tokens, which most issuers still send, pass unless `at+jwt` is required.
fn typ_allowed(typ: Option<&str>, require_at_jwt: bool) -> bool {
    if is_at_jwt(typ) {
        return true;
    }
    !require_at_jwt
        && typ.is_none_or(|t| {
            t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("application/jwt")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn typ_of_another_kind_of_token_is_refused() {
        for typ in [
            "dpop+jwt",
            "secevent+jwt",
            "logout+jwt",
            "id_token+jwt",
            "application/dpop+jwt",
            "token-introspection+jwt",
            "at+jwt ",
            "JOSE",
            "",
        ] {
            assert!(!typ_allowed(Some(typ), false), "{typ}");
            assert!(!typ_allowed(Some(typ), true), "{typ}");
        }
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/AT+JWT",
        ] {
            assert!(typ_allowed(Some(typ), false), "{typ}");
            assert!(typ_allowed(Some(typ), true), "{typ}");
        }
        for typ in [None, Some("JWT"), Some("jwt"), Some("application/jwt")] {
            assert!(typ_allowed(typ, false), "{typ:?}");
            assert!(!typ_allowed(typ, true), "{typ:?}");
        }
    }

    #[test]
    fn header_members_present_as_null_are_not_absent() {
        let header = |v: Value| Header::parse(v.to_string().as_bytes()).map(|_| ());
        assert!(header(json!({"alg": "ES256"})).is_ok());
        assert_eq!(
            header(json!({"alg": "ES256", "crit": null})).err(),
            Some(TokenError::Malformed)
        );
        assert_eq!(
            header(json!({"alg": "ES256", "crit": []})).err(),
            Some(TokenError::Malformed)
        );
        assert_eq!(
            header(json!({"alg": "ES256", "typ": null})).err(),
            Some(TokenError::WrongType)
        );
        assert_eq!(
            header(json!({"alg": "ES256", "typ": 1})).err(),
            Some(TokenError::WrongType)
        );
        assert_eq!(
            header(json!({"alg": "ES256", "kid": null})).err(),
            Some(TokenError::Malformed)
        );
        assert_eq!(
            header(json!({"alg": null})).err(),
            Some(TokenError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn typ_accepts_both_spellings() {
        assert!(is_at_jwt(Some("at+JWT")));
        assert!(is_at_jwt(Some("application/at+jwt")));
        assert!(!is_at_jwt(Some("JWT")));
        assert!(!is_at_jwt(None));
    }
    /// The header as the map-based reader this one replaced read it: the kept members built
    /// by `Members`, then checked in the same order.
    fn old_header(json: &[u8]) -> Result<(String, Option<String>, Option<String>), TokenError> {
        let mut members = crate::json::Members {
            keep: &["alg", "kid", "typ", "crit"],
            nested: None,
        }
        .parse(json)
        .ok_or(TokenError::Malformed)?;
        if members.contains_key("crit") {
            return Err(TokenError::Malformed);
        }
        let alg = match members.remove("alg") {
            Some(Value::String(alg)) => alg,
            _ => return Err(TokenError::AlgorithmNotAllowed),
        };
        let kid = match members.remove("kid") {
            None => None,
            Some(Value::String(kid)) => Some(kid),
            Some(_) => return Err(TokenError::Malformed),
        };
        let typ = match members.remove("typ") {
            None => None,
            Some(Value::String(typ)) => Some(typ),
            Some(_) => return Err(TokenError::WrongType),
        };
        Ok((alg, kid, typ))
    }

    fn new_header(json: &[u8]) -> Result<(String, Option<String>, Option<String>), TokenError> {
        let h = Header::parse(json)?;
        Ok((
            h.alg().to_owned(),
            h.kid().map(str::to_owned),
            h.typ().map(str::to_owned),
        ))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        /// Same verdict, same error, same members as the map-based header reader, on
        /// hostile headers (escaped names, `crit` spelled with escapes, repeats, every JSON
        /// type, invalid text, depth).
        #[test]
        fn the_typed_header_agrees_with_the_map_based_one(
            json in crate::json::hostile::document(&["alg", "kid", "typ", "crit"])
        ) {
            proptest::prop_assert_eq!(
                new_header(&json),
                old_header(&json),
                "{}",
                String::from_utf8_lossy(&json)
            );
        }
    }

    #[test]
    fn header_members_spelled_with_escapes_or_repeated_agree() {
        for json in [
            r#"{"alg":"ES256","cr\u0069t":["exp"]}"#,
            r#"{"alg":"ES256","\u0063rit":null}"#,
            r#"{"alg":"ES256","crit":[],"crit":[]}"#,
            r#"{"\u0061lg":"ES256"}"#,
            r#"{"alg":"E\u0053256"}"#,
            r#"{"alg":"ES256","alg":"none"}"#,
            r#"{"alg":"none","alg":"ES256"}"#,
            r#"{"alg":"ES256","alg":null}"#,
            r#"{"alg":["ES256"]}"#,
            r#"{"alg":"ES256","kid":"a","kid":1}"#,
            r#"{"alg":"ES256","kid":1,"kid":"a"}"#,
            r#"{"alg":"ES256","typ":"at+jwt","typ":{}}"#,
            r#"{"alg":"ES256","typ":{},"typ":"at+jwt"}"#,
            r#"{"alg":"ES256","t\u0079p":"dpop+jwt"}"#,
            r#"{"alg":"ES256","x":"\ud800"}"#,
            r#"{"alg":"ES256","x":1e400}"#,
            r#"{"alg":"ES256","$serde_json::private::RawValue":"1"}"#,
            r#"{"alg":"ES256","jwk":{"$serde_json::private::RawValue":"{"}}"#,
        ] {
            assert_eq!(
                new_header(json.as_bytes()),
                old_header(json.as_bytes()),
                "{json}"
            );
        }
        assert_eq!(
            new_header(br#"{"alg":"ES256","cr\u0069t":["exp"]}"#),
            Err(TokenError::Malformed)
        );
        assert_eq!(
            new_header(br#"{"alg":"E\u0053256"}"#).map(|h| h.0),
            Ok("ES256".to_owned())
        );
    }
}
