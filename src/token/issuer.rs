//! One trusted issuer (RFC 9068 §4 checks 3–5): its exact `iss`, the audiences it may mint for
//! this resource server, and where its keys come from.

use std::sync::Arc;

use super::claims::Expected;
pub(crate) use super::issuer_keys::IssuerKeys;

/// One trusted issuer: its exact `iss`, the audiences it may mint for us, and its keys.
pub(crate) struct TrustedIssuer {
    pub(crate) issuer: Arc<str>,
    pub(crate) audiences: Vec<String>,
    pub(crate) keys: IssuerKeys,
    /// Its introspection endpoint (RFC 7662), if tokens are checked there.
    #[cfg(feature = "fetch")]
    pub(crate) introspection: Option<Arc<super::introspection::Introspector>>,
}

impl TrustedIssuer {
    /// What its tokens must say.
    pub(crate) fn expected(&self) -> Expected<'_> {
        Expected {
            issuer: &self.issuer,
            audiences: &self.audiences,
        }
    }
}
