//! One trusted issuer (RFC 9068 §4 checks 3–5): its exact `iss`, the audiences it may mint for
//! this resource server, and where its keys come from.

use std::sync::Arc;

use crate::algorithm::Algorithm;

use super::claims::Expected;
use super::keys::{KeySet, VerificationKey};
#[cfg(feature = "fetch")]
use super::remote::RemoteKeys;

/// One trusted issuer: its exact `iss`, the audiences it may mint for us, and its keys.
pub(crate) struct TrustedIssuer {
    pub(crate) issuer: Arc<str>,
    pub(crate) audiences: Vec<String>,
    pub(crate) keys: IssuerKeys,
    /// Its introspection endpoint (RFC 7662), if tokens are checked there.
    #[cfg(feature = "fetch")]
    pub(crate) introspection: Option<super::introspection::Introspector>,
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

/// The keys of one issuer, as the validator sees them.
pub(crate) enum IssuerKeys {
    /// None: the issuer's tokens are introspected, never verified here.
    None,
    Static(KeySet),
    #[cfg(feature = "fetch")]
    Remote(Arc<RemoteKeys>),
}

impl IssuerKeys {
    pub(crate) async fn key(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Option<Arc<VerificationKey>> {
        match self {
            IssuerKeys::None => None,
            IssuerKeys::Static(set) => set.select(kid, alg),
            #[cfg(feature = "fetch")]
            IssuerKeys::Remote(remote) => remote.key(kid, alg).await,
        }
    }
}
