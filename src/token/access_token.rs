//! The validated access token handed to the inner service (RFC 9068 §2.2).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// The claims of a validated token, shared between the cache and every request that presents it.
pub(crate) struct Validated {
    pub(crate) raw: Box<str>,
    pub(crate) issuer: String,
    pub(crate) subject: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) scopes: Scopes,
    pub(crate) expires_at: i64,
    pub(crate) not_before: Option<i64>,
    pub(crate) confirmation: Confirmation,
    pub(crate) claims: Map<String, Value>,
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

/// The `cnf` claim: what the token is bound to (RFC 7800 §3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confirmation {
    /// `cnf.jkt`: JWK SHA-256 thumbprint of the DPoP key (RFC 9449 §6.1).
    pub jkt: Option<String>,
    /// `cnf.x5t#S256`: SHA-256 thumbprint of the client certificate (RFC 8705 §3.1).
    pub x5t_s256: Option<String>,
}

/// Confirmation methods the guard enforces: `jkt` (RFC 9449 §6.1) and `x5t#S256`
/// (RFC 8705 §3.1). Any other (`jwk`, `kid`, `jku` of RFC 7800, or unknown) binds the token
/// to something the guard cannot check, so such a token is refused rather than served as a
/// bearer token.
const ENFORCED_METHODS: [&str; 2] = ["jkt", "x5t#S256"];

impl Confirmation {
    /// Reads `cnf`. `None` when `cnf` is present but not an object, is empty, holds a method
    /// the guard does not enforce, or holds `jkt` / `x5t#S256` as anything but a non-empty
    /// string: the issuer bound the token, and the guard cannot check how.
    pub(crate) fn from_claims(claims: &Map<String, Value>) -> Option<Self> {
        let cnf = match claims.get("cnf") {
            None => return Some(Confirmation::default()),
            Some(Value::Object(cnf)) if !cnf.is_empty() => cnf,
            Some(_) => return None,
        };
        if cnf.keys().any(|k| !ENFORCED_METHODS.contains(&k.as_str())) {
            return None;
        }
        let member = |name: &str| match cnf.get(name) {
            None => Some(None),
            Some(Value::String(s)) if !s.is_empty() => Some(Some(s.clone())),
            Some(_) => None,
        };
        Some(Confirmation {
            jkt: member("jkt")?,
            x5t_s256: member("x5t#S256")?,
        })
    }
}

/// How the presenter proved it may use the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Binding {
    /// A plain bearer token: whoever holds it may use it (RFC 6750).
    Bearer,
    /// A DPoP proof signed by the key whose thumbprint is `jkt` (RFC 9449).
    Dpop {
        /// JWK SHA-256 thumbprint (RFC 7638) of the proof key.
        jkt: String,
    },
    /// A TLS client certificate whose SHA-256 thumbprint is `x5t_s256` (RFC 8705).
    Mtls {
        /// base64url SHA-256 of the certificate DER.
        x5t_s256: String,
    },
}

impl Binding {
    /// `"bearer"`, `"dpop"` or `"mtls"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Binding::Bearer => "bearer",
            Binding::Dpop { .. } => "dpop",
            Binding::Mtls { .. } => "mtls",
        }
    }
}

/// The scopes a token grants: `scope` (space separated, RFC 8693 §4.2 / RFC 9068 §2.2.3) or
/// `scp` (array or string).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Vec<String>);

impl Scopes {
    pub(crate) fn from_claims(claims: &Map<String, Value>) -> Self {
        let mut scopes = Vec::new();
        for name in ["scope", "scp"] {
            match claims.get(name) {
                Some(Value::String(s)) => {
                    scopes.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
                }
                Some(Value::Array(items)) => {
                    scopes.extend(items.iter().filter_map(Value::as_str).map(str::to_owned))
                }
                _ => {}
            }
        }
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

/// A validated access token, with the binding that was checked for this request.
///
/// The guard puts one into the request extensions of every request it lets through; with the
/// `axum` feature it is also an extractor.
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub(crate) validated: Arc<Validated>,
    pub(crate) binding: Binding,
    /// The guard that admitted it: a nested guard takes its word only if it is the same one.
    pub(crate) admitted_by: u64,
    /// The DPoP proof that guard verified (and consumed), for a nested guard to hold to its
    /// own rules.
    pub(crate) proof: Option<Arc<crate::dpop::VerifiedProof>>,
}

impl AccessToken {
    /// `sub`, or `""` when the token has none (client-credentials tokens often do not).
    pub fn subject(&self) -> &str {
        self.validated.subject.as_deref().unwrap_or("")
    }

    /// `iss`, exactly as the trusted issuer is configured.
    pub fn issuer(&self) -> &str {
        &self.validated.issuer
    }

    /// `client_id` (RFC 9068 §2.2).
    pub fn client_id(&self) -> Option<&str> {
        self.validated.client_id.as_deref()
    }

    /// The granted scopes.
    pub fn scopes(&self) -> &Scopes {
        &self.validated.scopes
    }

    /// `exp`, seconds since the epoch.
    pub fn expires_at(&self) -> i64 {
        self.validated.expires_at
    }

    /// The `cnf` claim.
    pub fn confirmation(&self) -> &Confirmation {
        &self.validated.confirmation
    }

    /// How this request proved possession of the token.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    /// All claims, as JSON.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.validated.claims
    }

    /// One claim, if present.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.validated.claims.get(name)
    }

    /// The claims deserialized into your own type.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&Value::Object(self.validated.claims.clone()))
    }

    /// The token as presented. Treat it as a secret: never log it.
    pub fn raw(&self) -> &str {
        &self.validated.raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_merge_scope_string_and_scp_array() {
        let claims = json!({"scope": "read  write", "scp": ["admin", "read"]});
        let s = Scopes::from_claims(claims.as_object().unwrap());
        assert!(s.contains("read") && s.contains("write") && s.contains("admin"));
        assert!(!s.contains("rea"));
        assert_eq!(s.to_scope_string(), "admin read write");
    }

    #[test]
    fn confirmation_reads_jkt_and_x5t() {
        let claims = json!({"cnf": {"jkt": "abc", "x5t#S256": "def"}});
        let c = Confirmation::from_claims(claims.as_object().unwrap()).unwrap();
        assert_eq!(c.jkt.as_deref(), Some("abc"));
        assert_eq!(c.x5t_s256.as_deref(), Some("def"));
        let none = json!({"sub": "x"});
        assert_eq!(
            Confirmation::from_claims(none.as_object().unwrap()),
            Some(Confirmation::default())
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
            let claims = json!({ "cnf": cnf });
            assert_eq!(
                Confirmation::from_claims(claims.as_object().unwrap()),
                None,
                "{cnf}"
            );
        }
    }
}
