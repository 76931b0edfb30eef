//! Step 4: what a route demands of a valid token (RFC 6750 §3.1 `insufficient_scope`).

use std::sync::Arc;

use crate::access_token::AccessToken;

/// Why a valid token may not use this route.
///
/// ```
/// use tower_oauth_guard::{PolicyError, Rejection};
///
/// fn why(rejection: &Rejection) -> String {
///     match rejection {
///         Rejection::Policy(PolicyError::InsufficientScope { required }) => {
///             format!("needs scopes {required:?}") // answered 403 insufficient_scope
///         }
///         other => other.to_string(),
///     }
/// }
/// # let _ = why;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// A required scope is missing; `required` is every scope the route needs.
    InsufficientScope {
        /// The route's scopes, sent back in the challenge's `scope` parameter.
        required: Vec<String>,
    },
    /// A claim requirement refused the token.
    ClaimRejected,
}

impl PolicyError {
    /// A stable reason code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PolicyError::InsufficientScope { .. } => "insufficient_scope",
            PolicyError::ClaimRejected => "claim_rejected",
        }
    }
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PolicyError::InsufficientScope { .. } => "the token lacks a required scope",
            PolicyError::ClaimRejected => "the token does not satisfy this resource's policy",
        })
    }
}

impl std::error::Error for PolicyError {}

/// A requirement on a validated token: implement it for step-up or tenant checks, or pass a
/// closure to [`crate::OAuthGuardLayer::require`].
///
/// ```
/// use tower_oauth_guard::{AccessToken, Requirement};
///
/// /// Tokens of one tenant only.
/// struct Tenant(&'static str);
///
/// impl Requirement for Tenant {
///     fn allows(&self, token: &AccessToken) -> bool {
///         token.claim("tenant").and_then(|t| t.as_str()) == Some(self.0)
///     }
/// }
/// # fn routes(guard: tower_oauth_guard::OAuthGuard) {
/// let layer = guard.layer().require(Tenant("acme"));
/// // A closure is a requirement too.
/// let recent = guard.layer().require(|t: &AccessToken| t.claim("auth_time").is_some());
/// # let _ = (layer, recent); }
/// ```
pub trait Requirement: Send + Sync + 'static {
    /// `true` lets the request through.
    fn allows(&self, token: &AccessToken) -> bool;
}

impl<F> Requirement for F
where
    F: Fn(&AccessToken) -> bool + Send + Sync + 'static,
{
    fn allows(&self, token: &AccessToken) -> bool {
        self(token)
    }
}

/// The scopes and claim requirements of one route.
///
/// ```
/// # const JWKS: &[u8] = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"a3","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
/// # use tower_oauth_guard::{Issuer, KeySet, OAuthGuard};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let guard = OAuthGuard::builder()
/// #     .trust(Issuer::new("https://issuer.example").audience("https://api.example").jwks(KeySet::from_json(JWKS)?))
/// #     .build()
/// #     .await?;
/// use tower_oauth_guard::{AccessToken, Policy, Presence};
///
/// let policy = Policy::default()
///     .scope("orders:write")
///     .require(|t: &AccessToken| t.client_id().is_some());
/// let (mut parts, ()) = http::Request::post("/orders").body(())?.into_parts();
/// let refused = guard.check(&mut parts, &policy, Presence::Required).await;
/// assert!(refused.is_err()); // no token at all
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Policy {
    scopes: Vec<String>,
    requirements: Vec<Arc<dyn Requirement>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("scopes", &self.scopes)
            .field("requirements", &self.requirements.len())
            .finish()
    }
}

impl Policy {
    /// Adds a required scope.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Adds a claim requirement.
    pub fn require(mut self, requirement: impl Requirement) -> Self {
        self.requirements.push(Arc::new(requirement));
        self
    }

    /// Applies the policy.
    pub fn check(&self, token: &AccessToken) -> Result<(), PolicyError> {
        if !self.scopes.iter().all(|s| token.scopes().contains(s)) {
            return Err(PolicyError::InsufficientScope {
                required: self.scopes.clone(),
            });
        }
        if !self.requirements.iter().all(|r| r.allows(token)) {
            return Err(PolicyError::ClaimRejected);
        }
        Ok(())
    }
}
