//! The claims of a validated access token (RFC 9068 §2.2): the confirmation (`cnf`) and the
//! granted scopes.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::error::TokenError;
use super::registered::{Cnf, Registered};
use crate::json::Claim;

/// The claims of a validated token, shared between the cache and every request that presents it.
pub(crate) struct Validated {
    pub(crate) raw: Box<str>,
    /// SHA-256 of `raw`: the token cache's key and what a DPoP proof's `ath` hashes
    /// (RFC 9449 §4.2), computed once.
    pub(crate) digest: [u8; 32],
    pub(crate) issuer: std::sync::Arc<str>,
    pub(crate) subject: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) scopes: Scopes,
    pub(crate) expires_at: i64,
    pub(crate) not_before: Option<i64>,
    pub(crate) confirmation: Confirmation,
    /// The payload's JSON, signed by the issuer: the claims map is built from it only when a
    /// handler asks for it.
    pub(crate) payload: Box<[u8]>,
    pub(crate) claims: std::sync::OnceLock<Map<String, Value>>,
}

impl Validated {
    /// The checks of the claims an issuer vouched for, by its signature (RFC 9068 §4 checks
    /// 3, 5, 7–9) or its introspection endpoint (RFC 7662 §2.2): `iss` names `issuer`, `aud`
    /// holds one of its audiences, `exp`, `nbf` and `iat` fit `now` within `leeway`,
    /// `sub` and `client_id` are strings, `cnf` binds the token in a way the guard enforces.
    /// An absent `exp` is the caller's to refuse; here it is "no expiry", [`i64::MAX`]. The
    /// payload is left empty ([`Validated::with_payload`]).
    pub(crate) fn check(
        token: &str,
        digest: [u8; 32],
        registered: &Registered<'_>,
        issuer: Expected<'_>,
        leeway: i64,
        now: i64,
    ) -> Result<Validated, TokenError> {
        match &registered.iss {
            Claim::Value(iss) if **iss == **issuer.issuer => {}
            _ => return Err(TokenError::UnknownIssuer),
        }
        let exp = time_claim(&registered.exp)?.unwrap_or(i64::MAX);
        if now.saturating_sub(leeway) >= exp {
            return Err(TokenError::Expired);
        }
        let nbf = time_claim(&registered.nbf)?;
        if nbf.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
            return Err(TokenError::NotYetValid);
        }
        if time_claim(&registered.iat)?.is_some_and(|iat| iat > now.saturating_add(leeway)) {
            return Err(TokenError::IssuedInFuture);
        }
        if !audience_matches(&registered.aud, issuer.audiences) {
            return Err(TokenError::InvalidAudience);
        }
        let string_claim = |claim: &Claim<Cow<'_, str>>| match claim {
            Claim::Absent => Ok(None),
            Claim::Value(s) => Ok(Some(s.clone().into_owned())),
            Claim::OtherType => Err(TokenError::InvalidClaim),
        };
        let confirmation =
            Confirmation::from_cnf(&registered.cnf).ok_or(TokenError::UnsupportedConfirmation)?;
        let names = registered.scope.0.iter().chain(&registered.scp.0);
        Ok(Validated {
            raw: token.into(),
            digest,
            issuer: std::sync::Arc::clone(issuer.issuer),
            subject: string_claim(&registered.sub)?,
            client_id: string_claim(&registered.client_id)?,
            scopes: Scopes::from_names(names.map(|n| &**n)),
            expires_at: exp,
            not_before: nbf,
            confirmation,
            payload: Box::default(),
            claims: std::sync::OnceLock::new(),
        })
    }

    /// The JSON the claims were read from, for the handlers' claims map.
    pub(crate) fn with_payload(mut self, payload: Vec<u8>) -> Self {
        self.payload = payload.into_boxed_slice();
        self
    }

    /// Every claim, as JSON, built on first use. The payload was read as one JSON object
    /// when the token was validated, so it reads again.
    pub(crate) fn claims(&self) -> &Map<String, Value> {
        self.claims
            .get_or_init(|| serde_json::from_slice(&self.payload).unwrap_or_default())
    }
}

/// The token itself is a secret: `Debug` leaves it out.
impl std::fmt::Debug for Validated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validated")
            .field("issuer", &self.issuer)
            .field("subject", &self.subject)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("expires_at", &self.expires_at)
            .field("confirmation", &self.confirmation)
            .finish_non_exhaustive()
    }
}

/// What a trusted issuer's tokens must say: its exact `iss`, and one of the audiences it
/// may mint for this resource server.
#[derive(Clone, Copy)]
pub(crate) struct Expected<'a> {
    pub(crate) issuer: &'a std::sync::Arc<str>,
    pub(crate) audiences: &'a [String],
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
fn audience_matches(aud: &Claim<Vec<Cow<'_, str>>>, ours: &[String]) -> bool {
    match aud {
        Claim::Value(names) => names.iter().any(|a| ours.iter().any(|o| o == a)),
        _ => false,
    }
}

/// The `cnf` claim: what the token is bound to (RFC 7800 §3.1).
///
/// ```
/// use tower_oauth_guard::AccessToken;
///
/// async fn handler(token: AccessToken) -> &'static str {
///     match (&token.confirmation().jkt, &token.confirmation().x5t_s256) {
///         (Some(_), _) => "bound to a DPoP key",
///         (_, Some(_)) => "bound to a client certificate",
///         _ => "a bearer token",
///     }
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// `cnf.jkt`: JWK SHA-256 thumbprint of the DPoP key (RFC 9449 §6.1).
    pub jkt: Option<String>,
    /// `cnf.x5t#S256`: SHA-256 thumbprint of the client certificate (RFC 8705 §3.1).
    pub x5t_s256: Option<String>,
}

impl Confirmation {
    /// Reads `cnf`. `None` when `cnf` is present but not an object, is empty, holds a method
    /// the guard does not enforce (`jwk`, `kid`, `jku` of RFC 7800, or unknown), or holds
    /// `jkt` / `x5t#S256` as anything but a non-empty string: the issuer bound the token, and
    /// the guard cannot check how, so it is refused rather than served as a bearer token.
    pub(crate) fn from_cnf(cnf: &Claim<Cnf<'_>>) -> Option<Self> {
        let cnf = match cnf {
            Claim::Absent => return Some(Confirmation::default()),
            Claim::Value(cnf) => cnf,
            Claim::OtherType => return None,
        };
        let empty = cnf.jkt == Claim::Absent && cnf.x5t_s256 == Claim::Absent;
        if cnf.other || empty {
            return None;
        }
        let member = |claim: &Claim<Cow<'_, str>>| match claim {
            Claim::Absent => Some(None),
            Claim::Value(s) if !s.is_empty() => Some(Some(s.clone().into_owned())),
            _ => None,
        };
        Some(Confirmation {
            jkt: member(&cnf.jkt)?,
            x5t_s256: member(&cnf.x5t_s256)?,
        })
    }
}

/// The scopes a token grants: `scope` (space separated, RFC 8693 §4.2 / RFC 9068 §2.2.3) or
/// `scp` (array or string).
///
/// ```
/// use tower_oauth_guard::AccessToken;
///
/// async fn handler(token: AccessToken) -> String {
///     let scopes = token.scopes();
///     if scopes.contains("admin") { "all".into() } else { scopes.to_scope_string() }
/// }
/// # let _ = handler;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

impl Scopes {
    /// The names of `scope` and `scp` together, sorted, each once.
    pub(crate) fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut scopes: Vec<String> = names.into_iter().map(str::to_owned).collect();
        scopes.sort_unstable();
        scopes.dedup();
        Scopes(scopes)
    }

    /// True when `scope` was granted.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.binary_search_by(|s| s.as_str().cmp(scope)).is_ok()
    }

    /// The granted scopes, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Space-separated, as in the `scope` claim.
    pub fn to_scope_string(&self) -> String {
        self.0.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::registered::Registered;
    use serde_json::json;

    fn read(payload: Value) -> Registered<'static> {
        let bytes = Box::leak(payload.to_string().into_bytes().into_boxed_slice());
        Registered::parse(bytes).unwrap()
    }

    #[test]
    fn audience_may_be_string_or_array() {
        let ours = vec!["api".to_owned()];
        let matches = |payload: Value| {
            let bytes = payload.to_string();
            audience_matches(&Registered::parse(bytes.as_bytes()).unwrap().aud, &ours)
        };
        assert!(matches(json!({"aud": "api"})));
        assert!(matches(json!({"aud": ["x", "api"]})));
        assert!(matches(json!({"aud": [1, "api"]})));
        assert!(!matches(json!({"aud": ["x"]})));
        assert!(!matches(json!({"aud": "API"})));
        assert!(!matches(json!({"aud": {"api": "api"}})));
        assert!(!matches(json!({"aud": [["api"]]})));
        assert!(!matches(json!({"aud": null})));
        assert!(!matches(json!({"sub": "api"})));
        // A repeated `aud` keeps its last value.
        let last = Registered::parse(br#"{"aud":"api","aud":["x"]}"#).unwrap();
        assert!(!audience_matches(&last.aud, &ours));
    }

    #[test]
    fn scopes_merge_scope_string_and_scp_array() {
        let r = read(json!({"scope": "read  write", "scp": ["admin", "read", 7]}));
        let s = Scopes::from_names(r.scope.0.iter().chain(&r.scp.0).map(|n| &**n));
        assert!(s.contains("read") && s.contains("write") && s.contains("admin"));
        assert!(!s.contains("rea"));
        assert_eq!(s.to_scope_string(), "admin read write");
        let none = read(json!({"scope": 1, "scp": {"a": "b"}}));
        assert_eq!(none.scope.0.len() + none.scp.0.len(), 0);
    }

    #[test]
    fn confirmation_reads_jkt_and_x5t() {
        let r = read(json!({"cnf": {"jkt": "abc", "x5t#S256": "def"}}));
        let c = Confirmation::from_cnf(&r.cnf).unwrap();
        assert_eq!(c.jkt.as_deref(), Some("abc"));
        assert_eq!(c.x5t_s256.as_deref(), Some("def"));
        let none = read(json!({"sub": "x"}));
        assert_eq!(
            Confirmation::from_cnf(&none.cnf),
            Some(Confirmation::default())
        );
        // A repeated member keeps its last value, as the claims map does.
        let r = Registered::parse(br#"{"cnf":{"jkt":1,"jkt":"abc"}}"#).unwrap();
        assert_eq!(
            Confirmation::from_cnf(&r.cnf).unwrap().jkt.as_deref(),
            Some("abc")
        );
        let r = Registered::parse(br#"{"cnf":{"jkt":"abc","jkt":1}}"#).unwrap();
        assert_eq!(Confirmation::from_cnf(&r.cnf), None);
        let r = Registered::parse(br#"{"cnf":{"jkt":"abc"},"cnf":{}}"#).unwrap();
        assert_eq!(Confirmation::from_cnf(&r.cnf), None);
        let r = Registered::parse(br#"{"cnf":{"j\u006bt":"abc"}}"#).unwrap();
        assert_eq!(
            Confirmation::from_cnf(&r.cnf).unwrap().jkt.as_deref(),
            Some("abc")
        );
    }

    #[test]
    fn confirmation_the_guard_cannot_enforce_is_refused() {
        let refused = [
            json!("jkt"),
            json!(["jkt"]),
            json!(null),
            json!(1),
            json!({}),
            json!({"jwk": {"kty": "EC"}}),
            json!({"kid": "k1"}),
            json!({"jku": "https://x/jwks"}),
            json!({"jkt": "abc", "jwk": {"kty": "EC"}}),
            json!({"x5t": "abc"}),
            json!({"jkt": 1}),
            json!({"jkt": ["abc"]}),
            json!({"jkt": null}),
            json!({"jkt": ""}),
            json!({"x5t#S256": {"v": "abc"}}),
            json!({"JKT": "abc"}),
        ];
        for cnf in refused {
            let r = read(json!({ "cnf": cnf }));
            assert_eq!(Confirmation::from_cnf(&r.cnf), None, "{cnf}");
        }
    }
}
