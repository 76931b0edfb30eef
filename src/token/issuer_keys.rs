//! The keys an issuer signs with, however the guard holds them: a fixed set, a set fetched
//! and refreshed from `jwks_uri` (RFC 7517 §5), or none (its tokens are introspected).

use std::sync::Arc;

use crate::algorithm::Algorithm;

use super::keys::{KeySet, VerificationKey};
#[cfg(feature = "fetch")]
use super::remote::RemoteKeys;

/// The keys of one issuer, as the validator sees them. Cheap to clone (shared sets).
#[derive(Clone)]
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
