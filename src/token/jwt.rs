//! JWT access tokens: RFC 9068 §4 validation on top of RFC 7515 / RFC 7519.

use std::collections::HashMap;

use crate::algorithm::Algorithm;
use serde_json::{Map, Value};

use crate::json::Members;
use crate::jws::{self, CompactJws};
use crate::signature::Signature;

use super::claims::{Confirmation, Scopes, Validated};
use super::error::TokenError;
use super::issuer::TrustedIssuer;

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

/// The protected header members we act on (RFC 7515 §4.1), read from the raw object so that
/// a member present as `null` is not mistaken for an absent one.
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

impl Header {
    fn from_json(mut members: Map<String, Value>) -> Result<Self, TokenError> {
        // Any critical extension is one we do not understand (RFC 7515 §4.1.11: reject),
        // whatever its value.
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
        Ok(Header { alg, kid, typ })
    }
}

/// Validates `token` against the trusted issuers at time `now` (RFC 9068 §4).
pub(crate) async fn validate(
    token: &str,
    digest: [u8; 32],
    issuers: &HashMap<String, TrustedIssuer>,
    rules: &JwtRules,
    now: i64,
) -> Result<Validated, TokenError> {
    let jws = CompactJws::split(token).map_err(|_| TokenError::Malformed)?;
    // Before the signature is checked, only the members that choose the key are built.
    let members = |bytes: &[u8], keep: &[&str]| {
        Members { keep, nested: None }
            .parse(bytes)
            .ok_or(TokenError::Malformed)
    };
    let decode = |part: &str| jws::decode(part).ok_or(TokenError::Malformed);
    let header = Header::from_json(members(
        &decode(jws.header)?,
        &["alg", "kid", "typ", "crit"],
    )?)?;
    // `none`, HMAC and unknown names have no `Algorithm`: never allowed (RFC 9068 §4 check 6).
    let alg = Algorithm::from_name(&header.alg).ok_or(TokenError::AlgorithmNotAllowed)?;
    if !rules.algorithms.contains(&alg) {
        return Err(TokenError::AlgorithmNotAllowed);
    }
    if !typ_allowed(header.typ.as_deref(), rules.require_at_jwt_typ) {
        return Err(TokenError::WrongType);
    }
    let payload = decode(jws.payload)?;
    let unverified = members(&payload, &["iss"])?;

    // The unverified `iss` only picks which keys to try; it is trusted after the signature.
    let iss = unverified.get("iss").and_then(Value::as_str);
    let issuer = iss
        .and_then(|iss| issuers.get(iss))
        .ok_or(TokenError::UnknownIssuer)?;
    let key = issuer
        .keys
        .key(header.kid.as_deref(), alg)
        .await
        .ok_or(TokenError::UnknownKey)?;
    let signature = Signature::decode(jws.signature).ok_or(TokenError::InvalidSignature)?;
    key.for_algorithm(alg)
        .ok_or(TokenError::UnknownKey)?
        .verify(jws.signing_input.as_bytes(), &signature)
        .map_err(|_| TokenError::InvalidSignature)?;

    // Authenticated by the issuer: now the whole payload is read, for the handlers.
    let claims = jws::json_object(&payload).ok_or(TokenError::Malformed)?;
    if claims.get("iss") != unverified.get("iss") {
        return Err(TokenError::Malformed);
    }
    let exp = time_claim(&claims, "exp")?.ok_or(TokenError::MissingExpiry)?;
    if now.saturating_sub(rules.leeway) >= exp {
        return Err(TokenError::Expired);
    }
    let nbf = time_claim(&claims, "nbf")?;
    if nbf.is_some_and(|nbf| now.saturating_add(rules.leeway) < nbf) {
        return Err(TokenError::NotYetValid);
    }
    if time_claim(&claims, "iat")?.is_some_and(|iat| iat > now.saturating_add(rules.leeway)) {
        return Err(TokenError::IssuedInFuture);
    }
    if !audience_matches(claims.get("aud"), &issuer.audiences) {
        return Err(TokenError::InvalidAudience);
    }
    let string_claim = |name: &str| -> Result<Option<String>, TokenError> {
        match claims.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(TokenError::InvalidClaim),
        }
    };
    Ok(Validated {
        raw: token.into(),
        digest,
        issuer: issuer.issuer.clone(),
        subject: string_claim("sub")?,
        client_id: string_claim("client_id")?,
        scopes: Scopes::from_claims(&claims),
        expires_at: exp,
        not_before: nbf,
        confirmation: Confirmation::from_claims(&claims)
            .ok_or(TokenError::UnsupportedConfirmation)?,
        claims,
    })
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

/// A NumericDate claim (RFC 7519 §2); fractional seconds are truncated.
fn time_claim(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(TokenError::InvalidClaim),
        Some(_) => Err(TokenError::InvalidClaim),
    }
}

/// `aud` is a string or an array of strings; one of them must be ours (RFC 7519 §4.1.3).
pub(crate) fn audience_matches(aud: Option<&Value>, ours: &[String]) -> bool {
    let is_ours = |a: &str| ours.iter().any(|o| o == a);
    match aud {
        Some(Value::String(a)) => is_ours(a),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).any(is_ours),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn audience_may_be_string_or_array() {
        let ours = vec!["api".to_owned()];
        assert!(audience_matches(Some(&json!("api")), &ours));
        assert!(audience_matches(Some(&json!(["x", "api"])), &ours));
        assert!(!audience_matches(Some(&json!(["x"])), &ours));
        assert!(!audience_matches(None, &ours));
    }

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
        let header = |v: Value| Header::from_json(v.as_object().unwrap().clone());
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
}
