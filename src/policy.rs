//! Step 4: what a route demands of a valid token: scopes (RFC 6750 §3.1
//! `insufficient_scope`), the authentication behind it (RFC 9470 step-up), claim predicates.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

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
    /// The authentication event behind the token does not meet the route's requirements
    /// (RFC 9470 §3): answered `401 insufficient_user_authentication`, with the route's
    /// requirements in `acr_values` and `max_age`, so that the client can get a token that does.
    InsufficientUserAuthentication {
        /// Which requirement failed.
        failure: StepUpFailure,
        /// The `acr` values the route accepts, in order of preference; empty when it sets none.
        acr_values: Vec<String>,
        /// The longest time since the authentication the route accepts, in seconds.
        max_age: Option<u64>,
    },
}

/// Which step-up requirement a token failed (RFC 9470 §3, §4).
///
/// ```
/// use tower_oauth_guard::{PolicyError, Rejection, StepUpFailure};
///
/// fn log(rejection: &Rejection) {
///     if let Rejection::Policy(PolicyError::InsufficientUserAuthentication { failure, .. }) = rejection {
///         // acr_not_accepted, auth_time_missing, auth_time_invalid or auth_time_too_old
///         println!("step-up needed: {}", failure.reason());
///     }
/// }
/// # let _ = log;
/// assert_eq!(StepUpFailure::AuthTimeTooOld.reason(), "auth_time_too_old");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepUpFailure {
    /// `acr` is absent, not a string, or not exactly one of the accepted values.
    AcrNotAccepted,
    /// The route has a maximum authentication age and the token has no `auth_time`.
    AuthTimeMissing,
    /// `auth_time` is not a NumericDate the guard can use: not a number, negative, beyond
    /// the range of `i64`, or later than now by more than the guard's leeway.
    AuthTimeInvalid,
    /// The authentication is older than the route's maximum age.
    AuthTimeTooOld,
}

impl StepUpFailure {
    /// A stable reason code for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            StepUpFailure::AcrNotAccepted => "acr_not_accepted",
            StepUpFailure::AuthTimeMissing => "auth_time_missing",
            StepUpFailure::AuthTimeInvalid => "auth_time_invalid",
            StepUpFailure::AuthTimeTooOld => "auth_time_too_old",
        }
    }
}

impl PolicyError {
    /// A stable reason code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            PolicyError::InsufficientScope { .. } => "insufficient_scope",
            PolicyError::ClaimRejected => "claim_rejected",
            PolicyError::InsufficientUserAuthentication { failure, .. } => failure.reason(),
        }
    }
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PolicyError::InsufficientScope { .. } => "the token lacks a required scope",
            PolicyError::ClaimRejected => "the token does not satisfy this resource's policy",
            PolicyError::InsufficientUserAuthentication {
                failure: StepUpFailure::AcrNotAccepted,
                ..
            } => "a different authentication level is required",
            PolicyError::InsufficientUserAuthentication { .. } => {
                "a more recent authentication is required"
            }
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

/// The scopes, step-up requirements (RFC 9470) and claim requirements of one route, checked
/// in that order.
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
/// use std::time::Duration;
///
/// let policy = Policy::default()
///     .scope("orders:write")
///     .require_acr(["urn:example:mfa"])
///     .max_auth_age(Duration::from_secs(300))
///     .require(|t: &AccessToken| t.client_id().is_some());
/// let (mut parts, ()) = http::Request::post("/orders").body(())?.into_parts();
/// let refused = guard.check(&mut parts, &policy, Presence::Required).await;
/// assert!(refused.is_err()); // no token at all
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Policy {
    scopes: Vec<String>,
    acr_values: Option<Vec<String>>,
    max_auth_age: Option<u64>,
    requirements: Vec<Arc<dyn Requirement>>,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy")
            .field("scopes", &self.scopes)
            .field("acr_values", &self.acr_values)
            .field("max_auth_age", &self.max_auth_age)
            .field("requirements", &self.requirements.len())
            .finish()
    }
}

impl Policy {
    /// Adds a required scope. Besides the `403 insufficient_scope` of a token without it, the
    /// route's scopes go in the `scope` of its 401s that ask for a token (none presented, or
    /// `invalid_token`; RFC 6750 §3), so that a client knows what to ask for (MCP's scope
    /// selection).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// The route's scopes as a challenge's `scope` parameter, if it requires any.
    pub(crate) fn scope_param(&self) -> Option<String> {
        (!self.scopes.is_empty()).then(|| self.scopes.join(" "))
    }

    /// Requires the token's `acr` claim (RFC 9470 §4) to be exactly one of `values` (a JSON
    /// string, compared byte for byte: no case folding), listed in order of preference for the
    /// challenge's `acr_values`. A second call replaces the set; an empty set admits no token.
    pub fn require_acr<I, S>(mut self, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.acr_values = Some(values.into_iter().map(Into::into).collect());
        self
    }

    /// Requires the user to have authenticated at most `max_age` ago (whole seconds): the
    /// token's `auth_time` (RFC 9470 §4) must be a NumericDate no older than that. The guard's
    /// clock reads "now"; its leeway covers an `auth_time` slightly in the future, never an
    /// older one. A second call replaces the first.
    pub fn max_auth_age(mut self, max_age: Duration) -> Self {
        self.max_auth_age = Some(max_age.as_secs());
        self
    }

    /// Adds a claim requirement.
    pub fn require(mut self, requirement: impl Requirement) -> Self {
        self.requirements.push(Arc::new(requirement));
        self
    }

    /// Applies the policy at `now` (seconds since the epoch; the guard passes its
    /// [`Clock`](crate::Clock)'s), with `leeway` for an `auth_time` in the future (the guard
    /// passes its own).
    pub fn check(
        &self,
        token: &AccessToken,
        now: i64,
        leeway: Duration,
    ) -> Result<(), PolicyError> {
        if !self.scopes.iter().all(|s| token.scopes().contains(s)) {
            return Err(PolicyError::InsufficientScope {
                required: self.scopes.clone(),
            });
        }
        if let Some(failure) = self.step_up_failure(token, now, leeway) {
            return Err(PolicyError::InsufficientUserAuthentication {
                failure,
                acr_values: self.acr_values.clone().unwrap_or_default(),
                max_age: self.max_auth_age,
            });
        }
        if !self.requirements.iter().all(|r| r.allows(token)) {
            return Err(PolicyError::ClaimRejected);
        }
        Ok(())
    }

    /// RFC 9470 §4: `acr` one of the accepted values, `auth_time` recent enough.
    fn step_up_failure(
        &self,
        token: &AccessToken,
        now: i64,
        leeway: Duration,
    ) -> Option<StepUpFailure> {
        if let Some(accepted) = &self.acr_values {
            let acr = match token.claim("acr") {
                Some(Value::String(acr)) => Some(acr),
                _ => None,
            };
            if !acr.is_some_and(|acr| accepted.iter().any(|a| a == acr)) {
                return Some(StepUpFailure::AcrNotAccepted);
            }
        }
        let max_age = self.max_auth_age?;
        let Some(auth_time) = token.claim("auth_time") else {
            return Some(StepUpFailure::AuthTimeMissing);
        };
        let Some(auth_time) = numeric_date(auth_time) else {
            return Some(StepUpFailure::AuthTimeInvalid);
        };
        let leeway = i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX);
        if auth_time > now.saturating_add(leeway) {
            return Some(StepUpFailure::AuthTimeInvalid);
        }
        // Negative (slightly in the future, within leeway) is recent enough.
        let age = now.saturating_sub(auth_time);
        if u64::try_from(age).is_ok_and(|age| age > max_age) {
            return Some(StepUpFailure::AuthTimeTooOld);
        }
        None
    }
}

/// A NumericDate (RFC 7519 §2) at or after the epoch: an integer, or a finite number whose
/// fraction is dropped (which makes the authentication older, never younger); `None` for
/// anything else, a negative value, or one beyond `i64`.
fn numeric_date(value: &Value) -> Option<i64> {
    let Value::Number(n) = value else {
        return None;
    };
    if let Some(i) = n.as_i64() {
        return (i >= 0).then_some(i);
    }
    if n.is_u64() {
        return None; // past i64::MAX
    }
    // 2^63 is exactly representable; every finite f64 below it converts without saturating.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    n.as_f64()
        .filter(|f| f.is_finite() && f.is_sign_positive() && *f < LIMIT)
        .map(|f| f as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_token::Binding;
    use crate::token::Validated;

    const NOW: i64 = 1_800_000_000;
    const LEEWAY: Duration = Duration::from_secs(60);

    /// A token whose payload is `payload` (the claims map is built from it, as for a real one).
    fn token(payload: &str) -> AccessToken {
        AccessToken {
            validated: Arc::new(Validated {
                raw: "t".into(),
                digest: [0; 32],
                issuer: "https://issuer.example".into(),
                subject: None,
                client_id: None,
                scopes: Default::default(),
                expires_at: NOW + 300,
                not_before: None,
                confirmation: Default::default(),
                payload: payload.as_bytes().into(),
                claims: Default::default(),
            }),
            binding: Binding::Bearer,
            admitted_by: 0,
            proof: None,
        }
    }

    fn failure(policy: &Policy, payload: &str) -> Option<StepUpFailure> {
        match policy.check(&token(payload), NOW, LEEWAY) {
            Ok(()) => None,
            Err(PolicyError::InsufficientUserAuthentication { failure, .. }) => Some(failure),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn acr_must_be_exactly_one_of_the_accepted_strings() {
        let policy = Policy::default().require_acr(["urn:example:mfa", "urn:example:hw"]);
        for ok in [
            r#"{"acr":"urn:example:mfa"}"#,
            r#"{"acr":"urn:example:hw"}"#,
            r#"{"acr":"urn:example:other","acr":"urn:example:mfa"}"#, // the last one counts
        ] {
            assert_eq!(failure(&policy, ok), None, "{ok}");
        }
        for refused in [
            r#"{}"#,
            r#"{"acr":null}"#,
            r#"{"acr":"URN:EXAMPLE:MFA"}"#,
            r#"{"acr":"urn:example:mfa "}"#,
            r#"{"acr":"urn:example"}"#,
            r#"{"acr":["urn:example:mfa"]}"#,
            r#"{"acr":{"value":"urn:example:mfa"}}"#,
            r#"{"acr":1}"#,
            r#"{"acr":true}"#,
            r#"{"acr":"urn:example:mfa urn:example:hw"}"#,
        ] {
            assert_eq!(
                failure(&policy, refused),
                Some(StepUpFailure::AcrNotAccepted),
                "{refused}"
            );
        }
        let nothing = Policy::default().require_acr(Vec::<String>::new());
        assert_eq!(
            failure(&nothing, r#"{"acr":""}"#),
            Some(StepUpFailure::AcrNotAccepted)
        );
        // A second call replaces the set.
        let replaced = policy.require_acr(["urn:example:hw"]);
        assert_eq!(
            failure(&replaced, r#"{"acr":"urn:example:mfa"}"#),
            Some(StepUpFailure::AcrNotAccepted)
        );
    }

    #[test]
    fn auth_time_must_be_a_recent_numeric_date() {
        let policy = Policy::default().max_auth_age(Duration::from_secs(300));
        let at = |t: &str| format!(r#"{{"auth_time":{t}}}"#);
        for ok in [
            (NOW - 300).to_string(),
            NOW.to_string(),
            (NOW + 60).to_string(), // within the leeway
            format!("{}.9", NOW - 300),
            format!("{}e0", NOW - 10),
        ] {
            assert_eq!(failure(&policy, &at(&ok)), None, "{ok}");
        }
        let cases = [
            ((NOW - 301).to_string(), StepUpFailure::AuthTimeTooOld),
            ("0".into(), StepUpFailure::AuthTimeTooOld),
            (format!("{}.5", NOW - 301), StepUpFailure::AuthTimeTooOld),
            ((NOW + 61).to_string(), StepUpFailure::AuthTimeInvalid),
            (i64::MAX.to_string(), StepUpFailure::AuthTimeInvalid),
            (u64::MAX.to_string(), StepUpFailure::AuthTimeInvalid),
            ("9223372036854775808".into(), StepUpFailure::AuthTimeInvalid),
            ("1e19".into(), StepUpFailure::AuthTimeInvalid),
            ("-1".into(), StepUpFailure::AuthTimeInvalid),
            ("-0.5".into(), StepUpFailure::AuthTimeInvalid),
            (i64::MIN.to_string(), StepUpFailure::AuthTimeInvalid),
            (format!("\"{NOW}\""), StepUpFailure::AuthTimeInvalid),
            ("null".into(), StepUpFailure::AuthTimeInvalid),
            (format!("[{NOW}]"), StepUpFailure::AuthTimeInvalid),
            ("true".into(), StepUpFailure::AuthTimeInvalid),
        ];
        for (value, expected) in cases {
            assert_eq!(failure(&policy, &at(&value)), Some(expected), "{value}");
        }
        assert_eq!(failure(&policy, "{}"), Some(StepUpFailure::AuthTimeMissing));
        // Without a max age, auth_time is not read at all.
        assert_eq!(failure(&Policy::default(), &at("\"x\"")), None);
    }

    #[test]
    fn the_refusal_carries_every_step_up_requirement_of_the_route() {
        let policy = Policy::default()
            .require_acr(["urn:example:mfa"])
            .max_auth_age(Duration::from_secs(300));
        let fresh_mfa = format!(r#"{{"acr":"urn:example:mfa","auth_time":{NOW}}}"#);
        assert_eq!(policy.check(&token(&fresh_mfa), NOW, LEEWAY), Ok(()));
        let old_mfa = format!(r#"{{"acr":"urn:example:mfa","auth_time":{}}}"#, NOW - 1000);
        assert_eq!(
            policy.check(&token(&old_mfa), NOW, LEEWAY),
            Err(PolicyError::InsufficientUserAuthentication {
                failure: StepUpFailure::AuthTimeTooOld,
                acr_values: vec!["urn:example:mfa".into()],
                max_age: Some(300),
            })
        );
        // The age is checked against the clock it is given, not the system's.
        assert_eq!(
            policy.check(&token(&old_mfa), NOW - 1000 + 300, LEEWAY),
            Ok(())
        );
        // Scopes first (403), then step-up (401), then claim requirements.
        let scoped = policy.clone().scope("admin");
        assert!(matches!(
            scoped.check(&token(&old_mfa), NOW, LEEWAY),
            Err(PolicyError::InsufficientScope { .. })
        ));
        let claims = policy.require(|_: &AccessToken| false);
        assert!(matches!(
            claims.check(&token(&old_mfa), NOW, LEEWAY),
            Err(PolicyError::InsufficientUserAuthentication { .. })
        ));
        assert_eq!(
            claims.check(&token(&fresh_mfa), NOW, LEEWAY),
            Err(PolicyError::ClaimRejected)
        );
    }
}
