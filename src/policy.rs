//! Step 4: what a route demands of a valid token (RFC 6750 §3.1 `insufficient_scope`).

use std::sync::Arc;

use crate::access_token::AccessToken;

/// Why a valid token may not use this route.
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
