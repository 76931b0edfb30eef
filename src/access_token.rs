//! The identity handed to the inner service: a validated access token (RFC 9068 §2.2) and the
//! binding this request proved (RFC 9449, RFC 8705), in the request extensions.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::dpop::VerifiedProof;
use crate::token::{Confirmation, Scopes, Validated};

/// How the presenter proved it may use the token.
///
/// ```
/// use tower_oauth_guard::{AccessToken, Binding};
///
/// async fn handler(token: AccessToken) -> String {
///     match token.binding() {
///         Binding::Dpop { jkt } => format!("proof of possession of key {jkt}"),
///         Binding::Mtls { x5t_s256 } => format!("client certificate {x5t_s256}"),
///         _ => "a bearer token".to_owned(),
///     }
/// }
/// # let _ = handler;
/// ```
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

/// A validated access token, with the binding that was checked for this request.
///
/// The guard puts one into the request extensions of every request it lets through; with the
/// `axum` feature it is also an extractor.
///
/// ```
/// use tower_oauth_guard::AccessToken;
///
/// // In an axum handler (feature `axum`); elsewhere, from the request extensions.
/// async fn whoami(token: AccessToken) -> String {
///     let scopes: Vec<&str> = token.scopes().iter().collect();
///     let tenant = token.claim("tenant").and_then(|t| t.as_str()).unwrap_or("-");
///     format!("{} via {:?}: {scopes:?}, tenant {tenant}", token.subject(), token.client_id())
/// }
/// # let _ = whoami;
/// ```
#[derive(Debug, Clone)]
pub struct AccessToken {
    pub(crate) validated: Arc<Validated>,
    pub(crate) binding: Binding,
    /// The guard that admitted it: a nested guard takes its word only if it is the same one.
    pub(crate) admitted_by: u64,
    /// The DPoP proof that guard verified (and consumed), for a nested guard to hold to its
    /// own rules.
    pub(crate) proof: Option<Arc<VerifiedProof>>,
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
        self.validated.claims()
    }

    /// One claim, if present.
    pub fn claim(&self, name: &str) -> Option<&Value> {
        self.validated.claims().get(name)
    }

    /// The claims deserialized into your own type.
    pub fn claims_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&Value::Object(self.validated.claims().clone()))
    }

    /// The token as presented. Treat it as a secret: never log it.
    pub fn raw(&self) -> &str {
        &self.validated.raw
    }
}
