//! JWT access tokens: RFC 9068 §4 validation on top of RFC 7515 / RFC 7519.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::algorithm::Algorithm;
use serde_json::{Map, Value};

use crate::json::Members;
use crate::jws::{self, CompactJws};
use crate::signature::Signature;

use super::claims::{Confirmation, Scopes, Validated};
use super::error::TokenError;
use super::issuer::TrustedIssuer;
use super::registered::{Claim, Registered, structured_value};

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
    // One pass over the payload: the claims checked here, nothing else built.
    let registered = Registered::parse(&payload).ok_or(TokenError::Malformed)?;

    // The unverified `iss` only picks which keys to try; it is trusted after the signature.
    let Claim::Value(iss) = &registered.iss else {
        return Err(TokenError::UnknownIssuer);
    };
    let issuer = issuers.get(&**iss).ok_or(TokenError::UnknownIssuer)?;
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

    // Authenticated by the issuer: the claims are checked.
    let exp = time_claim(&registered.exp)?.ok_or(TokenError::MissingExpiry)?;
    if now.saturating_sub(rules.leeway) >= exp {
        return Err(TokenError::Expired);
    }
    let nbf = time_claim(&registered.nbf)?;
    if nbf.is_some_and(|nbf| now.saturating_add(rules.leeway) < nbf) {
        return Err(TokenError::NotYetValid);
    }
    if time_claim(&registered.iat)?.is_some_and(|iat| iat > now.saturating_add(rules.leeway)) {
        return Err(TokenError::IssuedInFuture);
    }
    // The whole payload, as strictly and as deep as the handlers' claims map reads it: a
    // repeated structured claim's earlier value was kept only as raw text.
    if !crate::json::strictly_valid(&payload) {
        return Err(TokenError::Malformed);
    }
    // `aud`, `scope`, `scp` and `cnf` as JSON values, as the checks below read them.
    let mut structured = Map::new();
    for (name, raw) in &registered.structured {
        let value = structured_value(raw).ok_or(TokenError::Malformed)?;
        structured.insert((*name).to_owned(), value);
    }
    if !audience_matches(structured.get("aud"), &issuer.audiences) {
        return Err(TokenError::InvalidAudience);
    }
    let string_claim = |claim: &Claim<Cow<'_, str>>| match claim {
        Claim::Absent => Ok(None),
        Claim::Value(s) => Ok(Some(s.clone().into_owned())),
        Claim::OtherType => Err(TokenError::InvalidClaim),
    };
    let subject = string_claim(&registered.sub)?;
    let client_id = string_claim(&registered.client_id)?;
    let confirmation =
        Confirmation::from_claims(&structured).ok_or(TokenError::UnsupportedConfirmation)?;
    let scopes = Scopes::from_claims(&structured);
    drop(registered);
    Ok(Validated {
        raw: token.into(),
        digest,
        issuer: issuer.issuer.clone(),
        subject,
        client_id,
        scopes,
        expires_at: exp,
        not_before: nbf,
        confirmation,
        payload: payload.into_boxed_slice(),
        claims: std::sync::OnceLock::new(),
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
fn time_claim(claim: &Claim<i64>) -> Result<Option<i64>, TokenError> {
    match claim {
        Claim::Absent => Ok(None),
        Claim::Value(t) => Ok(Some(*t)),
        Claim::OtherType => Err(TokenError::InvalidClaim),
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
