//! Every refusal, in one place: status code, `WWW-Authenticate` challenge (RFC 6750 §3,
//! RFC 9449 §7.1, RFC 9470 §3, RFC 9728 §5.1), `DPoP-Nonce` (RFC 9449 §8), and the gRPC status
//! for gRPC requests.

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::dpop::DpopError;
use crate::extract::{CredentialsError, Scheme};
use crate::http_syntax;
use crate::mtls::MtlsError;
use crate::policy::PolicyError;
use crate::token::TokenError;

/// Why the guard refused a request. One variant per step of the pipeline.
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
/// use tower_oauth_guard::{CredentialsError, Policy, Presence, Rejection};
///
/// let (mut parts, ()) = http::Request::get("/r").header("authorization", "Basic dXNlcg==").body(())?.into_parts();
/// let refusal = guard.check(&mut parts, &Policy::default(), Presence::Required).await.unwrap_err();
/// match &refusal.rejection {
///     Rejection::Credentials(CredentialsError::UnsupportedScheme) => {} // Basic is not OAuth
///     Rejection::Token(e) => panic!("token refused: {e}"),
///     Rejection::Dpop(e) => panic!("DPoP binding: {}", e.reason()),
///     other => panic!("{other}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Rejection {
    /// Step 1: the credentials could not be read.
    Credentials(CredentialsError),
    /// Step 2: the access token is not valid.
    Token(TokenError),
    /// Step 3: the DPoP proof or binding failed.
    Dpop(DpopError),
    /// Step 3: the certificate binding failed.
    Mtls(MtlsError),
    /// Step 4: the token does not satisfy the route's policy.
    Policy(PolicyError),
}

impl Rejection {
    /// A stable, secret-free reason code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Credentials(e) => e.reason(),
            Rejection::Token(e) => e.reason(),
            Rejection::Dpop(e) => e.reason(),
            Rejection::Mtls(e) => e.reason(),
            Rejection::Policy(e) => e.reason(),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejection::Credentials(e) => e.fmt(f),
            Rejection::Token(e) => e.fmt(f),
            Rejection::Dpop(e) => e.fmt(f),
            Rejection::Mtls(e) => e.fmt(f),
            Rejection::Policy(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Rejection {}

impl Rejection {
    /// Whether the answer carries a fresh `DPoP-Nonce` (RFC 9449 §9): the proof lacked a
    /// valid, current server nonce.
    pub fn wants_dpop_nonce(&self) -> bool {
        matches!(self, Rejection::Dpop(e) if dpop_error_code(e) == Some(ErrorCode::UseDpopNonce))
    }
}

/// RFC 9449 §7.1, §9: how a DPoP failure is answered. A store that cannot answer is a server
/// fault (503); a key over its share of the store must slow down (429); a request whose own
/// URI cannot be told is malformed (400).
fn dpop_status(e: &DpopError) -> StatusCode {
    match e {
        DpopError::ReplayStoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        DpopError::ReplayQuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
        DpopError::RequestUri(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNAUTHORIZED,
    }
}

/// RFC 9449 §7.1: the proof is at fault (`invalid_dpop_proof`), a nonce is wanted
/// (`use_dpop_nonce`), or the token may not be used this way (`invalid_token`, §7.2). None
/// when the replay store could not answer or the key is over its share of it: no verdict on
/// the proof.
fn dpop_error_code(e: &DpopError) -> Option<ErrorCode> {
    match e {
        DpopError::Proof(_) | DpopError::MissingProof | DpopError::Replayed => {
            Some(ErrorCode::InvalidDpopProof)
        }
        DpopError::ReplayStoreUnavailable(_) | DpopError::ReplayQuotaExceeded => None,
        DpopError::NonceRequired | DpopError::NonceInvalid | DpopError::NonceStale => {
            Some(ErrorCode::UseDpopNonce)
        }
        DpopError::RequestUri(_) => Some(ErrorCode::InvalidRequest),
        DpopError::KeyMismatch
        | DpopError::BoundTokenAsBearer
        | DpopError::TokenNotBound
        | DpopError::DpopRequired => Some(ErrorCode::InvalidToken),
    }
}

impl From<CredentialsError> for Rejection {
    fn from(e: CredentialsError) -> Self {
        Rejection::Credentials(e)
    }
}
impl From<TokenError> for Rejection {
    fn from(e: TokenError) -> Self {
        Rejection::Token(e)
    }
}
impl From<DpopError> for Rejection {
    fn from(e: DpopError) -> Self {
        Rejection::Dpop(e)
    }
}
impl From<MtlsError> for Rejection {
    fn from(e: MtlsError) -> Self {
        Rejection::Mtls(e)
    }
}
impl From<PolicyError> for Rejection {
    fn from(e: PolicyError) -> Self {
        Rejection::Policy(e)
    }
}

/// RFC 6750 §3.1 / RFC 9449 §7.1 / RFC 9470 §3 error codes.
///
/// ```
/// use tower_oauth_guard::ErrorCode;
///
/// assert_eq!(ErrorCode::InsufficientScope.as_str(), "insufficient_scope");
/// assert_eq!(ErrorCode::UseDpopNonce.as_str(), "use_dpop_nonce");
/// assert_eq!(ErrorCode::InsufficientUserAuthentication.as_str(), "insufficient_user_authentication");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed.
    InvalidRequest,
    /// The token is expired, revoked, malformed, or not bound as required.
    InvalidToken,
    /// The token lacks a required scope.
    InsufficientScope,
    /// The DPoP proof is invalid (RFC 9449 §7.1).
    InvalidDpopProof,
    /// A fresh server nonce is required (RFC 9449 §9).
    UseDpopNonce,
    /// The authentication behind the token does not meet the resource's requirements
    /// (RFC 9470 §3): the user must authenticate again.
    InsufficientUserAuthentication,
}

impl ErrorCode {
    /// The registered value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::InsufficientUserAuthentication => "insufficient_user_authentication",
        }
    }
}

/// What the guard answers to one refused request, before it is rendered.
///
/// Each challenge's parameters come in one fixed order: `realm`, `error`, `error_description`,
/// `scope`, `acr_values`, `max_age`, `resource_metadata`, then (DPoP only) `algs`; each at
/// most once, absent when it has nothing to say. Every value is a quoted string but `max_age`,
/// an integer (RFC 9470 §3).
///
/// ```
/// use tower_oauth_guard::{Challenge, ChallengeParams, ErrorCode, Protocol, Scheme};
///
/// let challenge = Challenge {
///     status: http::StatusCode::FORBIDDEN,
///     error: Some(ErrorCode::InsufficientScope),
///     description: Some("needs scope admin".into()),
///     scope: Some("admin".into()),
///     acr_values: None,
///     max_age: None,
///     schemes: vec![Scheme::Bearer],
///     dpop_nonce: None,
///     retry_after: None,
/// };
/// let params = ChallengeParams {
///     realm: Some("api".into()),
///     resource_metadata: Some("https://api.example/.well-known/oauth-protected-resource".into()),
///     ..ChallengeParams::default()
/// };
/// let headers = challenge.headers(&params, Protocol::Http);
/// assert_eq!(
///     headers["www-authenticate"],
///     r#"Bearer realm="api", error="insufficient_scope", error_description="needs scope admin", scope="admin", resource_metadata="https://api.example/.well-known/oauth-protected-resource""#
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Challenge {
    /// 400, 401, 403, 429 or 503.
    pub status: StatusCode,
    /// The error code, absent when the request carried no credentials (RFC 6750 §3.1) and on
    /// 429 and 503, which are no verdict on the credentials.
    pub error: Option<ErrorCode>,
    /// A short, secret-free, human-readable description.
    pub description: Option<String>,
    /// The scopes the route requires (RFC 6750 §3 `scope`), on `insufficient_scope`, and on a
    /// 401 that asks for a token (none presented, or `invalid_token`) of a route that requires
    /// scopes.
    pub scope: Option<String>,
    /// The `acr` values the route accepts, space separated (RFC 9470 §3 `acr_values`), on
    /// `insufficient_user_authentication`.
    pub acr_values: Option<String>,
    /// The longest time since the user's authentication the route accepts, in seconds
    /// (RFC 9470 §3 `max_age`), on `insufficient_user_authentication`.
    pub max_age: Option<u64>,
    /// Schemes to challenge with: the one the client used, or every accepted one; none on 429
    /// and 503.
    pub schemes: Vec<Scheme>,
    /// A fresh `DPoP-Nonce` to send (RFC 9449 §8).
    pub dpop_nonce: Option<String>,
    /// `Retry-After` seconds, for 429 and 503.
    pub retry_after: Option<u32>,
}

/// Guard-wide facts every challenge mentions.
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
/// // The guard's own, shared by every challenge it writes.
/// let params = guard.challenge_params();
/// assert_eq!(params.realm, None);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct ChallengeParams {
    /// RFC 6750 §3 `realm`.
    pub realm: Option<String>,
    /// RFC 9449 §7.1 `algs`: the DPoP proof algorithms accepted, space separated.
    pub dpop_algs: String,
    /// RFC 9728 §5.1 `resource_metadata`: the URL of the resource's metadata document, in
    /// every challenge of both schemes, when the guard has a resource identifier.
    pub resource_metadata: Option<String>,
}

impl Challenge {
    /// Maps a rejection to its challenge. `used` is the scheme the client presented, if any;
    /// `accepted` the schemes this route accepts.
    pub fn for_rejection(rejection: &Rejection, used: Option<Scheme>, accepted: &[Scheme]) -> Self {
        let (status, error) = match rejection {
            Rejection::Credentials(e) if e.is_absent() => (StatusCode::UNAUTHORIZED, None),
            Rejection::Credentials(CredentialsError::MultipleDpopProofs)
            | Rejection::Credentials(CredentialsError::MalformedDpopProof) => {
                (StatusCode::UNAUTHORIZED, Some(ErrorCode::InvalidDpopProof))
            }
            Rejection::Credentials(CredentialsError::MultipleAuthorization) => {
                (StatusCode::BAD_REQUEST, Some(ErrorCode::InvalidRequest))
            }
            // The issuer could not be asked: a server fault, never a verdict on the token.
            Rejection::Token(TokenError::IntrospectionUnavailable) => {
                (StatusCode::SERVICE_UNAVAILABLE, None)
            }
            Rejection::Credentials(_) | Rejection::Token(_) | Rejection::Mtls(_) => {
                (StatusCode::UNAUTHORIZED, Some(ErrorCode::InvalidToken))
            }
            Rejection::Dpop(e) => (dpop_status(e), dpop_error_code(e)),
            // RFC 9470 §3: a new authentication, hence a new token, is needed.
            Rejection::Policy(PolicyError::InsufficientUserAuthentication { .. }) => (
                StatusCode::UNAUTHORIZED,
                Some(ErrorCode::InsufficientUserAuthentication),
            ),
            Rejection::Policy(_) => (StatusCode::FORBIDDEN, Some(ErrorCode::InsufficientScope)),
        };
        let (acr_values, max_age) = match rejection {
            Rejection::Policy(PolicyError::InsufficientUserAuthentication {
                acr_values,
                max_age,
                ..
            }) => (
                (!acr_values.is_empty()).then(|| acr_values.join(" ")),
                *max_age,
            ),
            _ => (None, None),
        };
        // Not a verdict on the credentials: the guard could not decide (503), or the client
        // must slow down (429). No error code (RFC 6750 §3.1 and RFC 9449 §7.1 tie theirs to
        // credentials at fault) and no challenge, which would send the client for new
        // credentials that would fare no better (RFC 9110 §11.6.1: a challenge is only
        // required on 401); `Retry-After` says when to come back.
        let undecided = matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        );
        let schemes = match (rejection, used) {
            _ if undecided => Vec::new(),
            // Where DPoP is off, a DPoP challenge would send the client somewhere it cannot go.
            (Rejection::Dpop(e), _)
                if !matches!(e, DpopError::RequestUri(_)) && accepted.contains(&Scheme::Dpop) =>
            {
                vec![Scheme::Dpop]
            }
            (_, Some(s)) if error.is_some() => vec![s],
            _ => accepted.to_vec(),
        };
        Challenge {
            status,
            error,
            description: (error.is_some() || undecided).then(|| rejection.to_string()),
            scope: match rejection {
                Rejection::Policy(PolicyError::InsufficientScope { required }) => {
                    Some(required.join(" "))
                }
                _ => None,
            },
            acr_values,
            max_age,
            schemes,
            dpop_nonce: None,
            retry_after: match rejection {
                Rejection::Dpop(DpopError::ReplayStoreUnavailable(_)) => Some(1),
                Rejection::Token(TokenError::IntrospectionUnavailable) => Some(5),
                // Proofs of this key start leaving the store within seconds.
                Rejection::Dpop(DpopError::ReplayQuotaExceeded) => Some(5),
                _ => None,
            },
        }
    }

    /// The `WWW-Authenticate` values, one per scheme (RFC 9110 §11.6.1).
    pub fn www_authenticate(&self, params: &ChallengeParams) -> Vec<HeaderValue> {
        self.schemes
            .iter()
            .filter_map(|scheme| {
                let mut out = String::from(scheme.as_str());
                let mut sep = " ";
                // `quoted`: a quoted-string; otherwise a token (RFC 9110 §11.2 allows either).
                let mut param = |name: &str, value: &str, quoted: bool| {
                    out.push_str(sep);
                    out.push_str(name);
                    out.push('=');
                    if quoted {
                        out.push('"');
                        http_syntax::push_quoted(&mut out, value);
                        out.push('"');
                    } else {
                        out.push_str(value);
                    }
                    sep = ", ";
                };
                if let Some(realm) = &params.realm {
                    param("realm", realm, true);
                }
                if let Some(error) = self.error {
                    param("error", error.as_str(), true);
                }
                if let Some(d) = &self.description {
                    param("error_description", d, true);
                }
                if let Some(scope) = &self.scope {
                    param("scope", scope, true);
                }
                if let Some(acr_values) = &self.acr_values {
                    param("acr_values", acr_values, true);
                }
                if let Some(max_age) = self.max_age {
                    // Digits only: a token (RFC 9470 §3 `max_age` is a number of seconds).
                    param("max_age", &max_age.to_string(), false);
                }
                if let Some(url) = &params.resource_metadata {
                    param("resource_metadata", url, true);
                }
                if *scheme == Scheme::Dpop && !params.dpop_algs.is_empty() {
                    param("algs", &params.dpop_algs, true);
                }
                HeaderValue::from_str(&out).ok()
            })
            .collect()
    }

    /// The response headers of this challenge, for HTTP or (with `grpc`) gRPC.
    pub fn headers(&self, params: &ChallengeParams, protocol: Protocol) -> HeaderMap {
        let grpc = protocol == Protocol::Grpc;
        let mut headers = HeaderMap::new();
        for value in self.www_authenticate(params) {
            headers.append(header::WWW_AUTHENTICATE, value);
        }
        if let Some(nonce) = self
            .dpop_nonce
            .as_deref()
            .and_then(|n| HeaderValue::from_str(n).ok())
        {
            headers.insert(crate::dpop::DPOP_NONCE, nonce);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if grpc {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", HeaderValue::from(self.grpc_code()));
            if let Some(d) = &self.description
                && let Ok(v) = HeaderValue::from_str(&percent_encode_grpc(d))
            {
                headers.insert("grpc-message", v);
            }
        }
        headers
    }

    /// gRPC status code (gRPC `statuscodes.md`): 16 UNAUTHENTICATED, 7 PERMISSION_DENIED,
    /// 14 UNAVAILABLE, 8 RESOURCE_EXHAUSTED, 3 INVALID_ARGUMENT.
    pub fn grpc_code(&self) -> u16 {
        match self.status {
            StatusCode::FORBIDDEN => 7,
            StatusCode::TOO_MANY_REQUESTS => 8,
            StatusCode::SERVICE_UNAVAILABLE => 14,
            StatusCode::BAD_REQUEST => 3,
            _ => 16,
        }
    }

    /// The whole response. gRPC answers are HTTP 200 "trailers-only" responses, because gRPC
    /// clients read `grpc-status`, not the HTTP status.
    pub fn into_response<B: Default>(
        self,
        params: &ChallengeParams,
        protocol: Protocol,
    ) -> Response<B> {
        let grpc = protocol == Protocol::Grpc;
        let mut response = Response::new(B::default());
        *response.status_mut() = if grpc { StatusCode::OK } else { self.status };
        *response.headers_mut() = self.headers(params, protocol);
        response
    }
}

/// How a refusal is answered: an HTTP status, or a gRPC status in a trailers-only response.
///
/// ```
/// use tower_oauth_guard::Protocol;
///
/// let grpc = http::Request::post("/pkg.Service/Method")
///     .version(http::Version::HTTP_2)
///     .header("content-type", "application/grpc")
///     .body(())
///     .unwrap();
/// assert_eq!(Protocol::of(&grpc), Protocol::Grpc);
/// assert_eq!(Protocol::of(&http::Request::get("/").body(()).unwrap()), Protocol::Http);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP: the status code and `WWW-Authenticate` (RFC 6750 §3, RFC 9449 §7.1).
    Http,
    /// gRPC over HTTP/2: HTTP 200 with `grpc-status`, the challenge in `www-authenticate`.
    Grpc,
}

impl Protocol {
    /// The protocol of `request`: gRPC for HTTP/2 with `application/grpc`, HTTP otherwise.
    pub fn of<B>(request: &http::Request<B>) -> Self {
        if is_grpc(request) {
            Protocol::Grpc
        } else {
            Protocol::Http
        }
    }
}

/// gRPC requests get gRPC status answers. gRPC runs over HTTP/2 with `application/grpc`,
/// optionally `+format` or parameters (gRPC `PROTOCOL-HTTP2.md`); anything else, such as an
/// HTTP/1.1 request that claims the content type or gRPC-Web, gets an HTTP answer.
pub(crate) fn is_grpc<B>(request: &http::Request<B>) -> bool {
    if request.version() != http::Version::HTTP_2 {
        return false;
    }
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            let v = v.as_bytes();
            v.strip_prefix(b"application/grpc".as_slice())
                .is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with(b"+") || rest.starts_with(b";")
                })
        })
}

/// gRPC's `grpc-message` is percent-encoded outside printable ASCII (and `%` itself).
fn percent_encode_grpc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> ChallengeParams {
        ChallengeParams {
            realm: Some("api".into()),
            dpop_algs: "ES256 EdDSA".into(),
            resource_metadata: None,
        }
    }

    const METADATA: &str = "https://api.example/.well-known/oauth-protected-resource/v1";

    fn with_metadata() -> ChallengeParams {
        ChallengeParams {
            resource_metadata: Some(METADATA.into()),
            ..params()
        }
    }

    fn step_up(
        acr_values: &[&str],
        max_age: Option<u64>,
        failure: crate::policy::StepUpFailure,
    ) -> Rejection {
        Rejection::Policy(PolicyError::InsufficientUserAuthentication {
            failure,
            acr_values: acr_values.iter().map(|s| s.to_string()).collect(),
            max_age,
        })
    }

    #[test]
    fn every_challenge_names_the_metadata_after_its_own_parameters() {
        let missing = Challenge::for_rejection(
            &Rejection::Credentials(CredentialsError::Missing),
            None,
            &[Scheme::Bearer, Scheme::Dpop],
        );
        let v = missing.www_authenticate(&with_metadata());
        assert_eq!(
            v[0],
            format!(r#"Bearer realm="api", resource_metadata="{METADATA}""#)
        );
        assert_eq!(
            v[1],
            format!(r#"DPoP realm="api", resource_metadata="{METADATA}", algs="ES256 EdDSA""#)
        );
        let scope = Challenge::for_rejection(
            &Rejection::Policy(PolicyError::InsufficientScope {
                required: vec!["admin".into()],
            }),
            Some(Scheme::Bearer),
            &[Scheme::Bearer],
        );
        assert_eq!(
            scope.www_authenticate(&with_metadata())[0],
            format!(
                r#"Bearer realm="api", error="insufficient_scope", error_description="the token lacks a required scope", scope="admin", resource_metadata="{METADATA}""#
            )
        );
    }

    #[test]
    fn step_up_is_401_with_acr_values_and_max_age() {
        use crate::policy::StepUpFailure;
        let both = Challenge::for_rejection(
            &step_up(
                &["urn:example:mfa", "urn:example:hw"],
                Some(300),
                StepUpFailure::AcrNotAccepted,
            ),
            Some(Scheme::Dpop),
            &[Scheme::Bearer, Scheme::Dpop],
        );
        assert_eq!(both.status, StatusCode::UNAUTHORIZED);
        assert_eq!(both.grpc_code(), 16);
        assert_eq!(both.error, Some(ErrorCode::InsufficientUserAuthentication));
        assert_eq!(
            both.www_authenticate(&with_metadata()),
            [format!(
                r#"DPoP realm="api", error="insufficient_user_authentication", error_description="a different authentication level is required", acr_values="urn:example:mfa urn:example:hw", max_age=300, resource_metadata="{METADATA}", algs="ES256 EdDSA""#
            )]
        );
        let age = Challenge::for_rejection(
            &step_up(&[], Some(0), StepUpFailure::AuthTimeTooOld),
            Some(Scheme::Bearer),
            &[Scheme::Bearer],
        );
        assert_eq!(
            age.www_authenticate(&ChallengeParams::default()),
            [
                r#"Bearer error="insufficient_user_authentication", error_description="a more recent authentication is required", max_age=0"#
            ]
        );
        let acr = Challenge::for_rejection(
            &step_up(&["a\"b"], None, StepUpFailure::AcrNotAccepted),
            Some(Scheme::Bearer),
            &[Scheme::Bearer],
        );
        assert_eq!(
            acr.www_authenticate(&ChallengeParams::default()),
            [
                r#"Bearer error="insufficient_user_authentication", error_description="a different authentication level is required", acr_values="a\"b""#
            ]
        );
    }

    #[test]
    fn missing_credentials_get_bare_challenges_for_each_scheme() {
        let c = Challenge::for_rejection(
            &Rejection::Credentials(CredentialsError::Missing),
            None,
            &[Scheme::Bearer, Scheme::Dpop],
        );
        assert_eq!(c.status, StatusCode::UNAUTHORIZED);
        let v = c.www_authenticate(&params());
        assert_eq!(v[0], "Bearer realm=\"api\"");
        assert_eq!(v[1], "DPoP realm=\"api\", algs=\"ES256 EdDSA\"");
    }

    #[test]
    fn invalid_token_names_the_error() {
        let c = Challenge::for_rejection(
            &Rejection::Token(TokenError::Expired),
            Some(Scheme::Bearer),
            &[Scheme::Bearer],
        );
        assert_eq!(
            c.www_authenticate(&ChallengeParams::default())[0],
            "Bearer error=\"invalid_token\", error_description=\"token expired\""
        );
    }

    #[test]
    fn insufficient_scope_is_403_with_scope() {
        let c = Challenge::for_rejection(
            &Rejection::Policy(PolicyError::InsufficientScope {
                required: vec!["admin".into(), "write".into()],
            }),
            Some(Scheme::Bearer),
            &[Scheme::Bearer],
        );
        assert_eq!(c.status, StatusCode::FORBIDDEN);
        assert_eq!(c.grpc_code(), 7);
        let v = c.www_authenticate(&ChallengeParams::default());
        assert!(v[0].to_str().unwrap().contains("scope=\"admin write\""));
    }

    #[test]
    fn grpc_answers_are_trailers_only_with_status() {
        let c = Challenge::for_rejection(
            &Rejection::Token(TokenError::Expired),
            Some(Scheme::Bearer),
            &[Scheme::Bearer],
        );
        let r: Response<String> = c.into_response(&ChallengeParams::default(), Protocol::Grpc);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "16");
        assert_eq!(r.headers()["grpc-message"], "token expired");
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    /// 503 (the issuer or the replay store could not answer) and 429 (a DPoP key over its
    /// share of the store) are no verdict on the credentials: `Retry-After`, no error code and
    /// no challenge, whichever scheme was used or accepted; gRPC gets the status and the
    /// description.
    #[test]
    fn undecided_refusals_carry_retry_after_and_no_challenge() {
        use crate::dpop::ReplayStoreError;
        let cases = [
            (
                Rejection::Token(TokenError::IntrospectionUnavailable),
                Scheme::Bearer,
                StatusCode::SERVICE_UNAVAILABLE,
                "5",
                "14",
            ),
            (
                Rejection::Dpop(DpopError::ReplayStoreUnavailable(ReplayStoreError::Timeout)),
                Scheme::Dpop,
                StatusCode::SERVICE_UNAVAILABLE,
                "1",
                "14",
            ),
            (
                Rejection::Dpop(DpopError::ReplayStoreUnavailable(ReplayStoreError::Full)),
                Scheme::Dpop,
                StatusCode::SERVICE_UNAVAILABLE,
                "1",
                "14",
            ),
            (
                Rejection::Dpop(DpopError::ReplayQuotaExceeded),
                Scheme::Dpop,
                StatusCode::TOO_MANY_REQUESTS,
                "5",
                "8",
            ),
        ];
        for (rejection, used, status, retry_after, grpc_status) in cases {
            for accepted in [&[Scheme::Bearer, Scheme::Dpop][..], &[used]] {
                let c = Challenge::for_rejection(&rejection, Some(used), accepted);
                assert_eq!(c.status, status, "{rejection}");
                assert_eq!(c.error, None, "{rejection}");
                assert!(
                    c.www_authenticate(&with_metadata()).is_empty(),
                    "{rejection}"
                );
                let http: Response<()> = c.clone().into_response(&with_metadata(), Protocol::Http);
                assert_eq!(http.status(), status);
                assert_eq!(http.headers()[header::RETRY_AFTER], retry_after);
                assert!(!http.headers().contains_key(header::WWW_AUTHENTICATE));
                let grpc: Response<()> = c.into_response(&with_metadata(), Protocol::Grpc);
                assert_eq!(grpc.headers()["grpc-status"], grpc_status);
                assert_eq!(
                    grpc.headers()["grpc-message"],
                    crate::challenge::percent_encode_grpc(&rejection.to_string()).as_str()
                );
                assert!(!grpc.headers().contains_key(header::WWW_AUTHENTICATE));
            }
        }
    }

    fn request(version: http::Version, content_type: &str) -> http::Request<()> {
        http::Request::builder()
            .version(version)
            .header(header::CONTENT_TYPE, content_type)
            .body(())
            .unwrap()
    }

    #[test]
    fn grpc_is_http2_with_the_grpc_content_type() {
        use http::Version;
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "application/grpc;charset=utf-8",
        ] {
            assert!(is_grpc(&request(Version::HTTP_2, ct)), "{ct}");
            assert!(
                !is_grpc(&request(Version::HTTP_11, ct)),
                "{ct} over HTTP/1.1"
            );
            assert!(
                !is_grpc(&request(Version::HTTP_10, ct)),
                "{ct} over HTTP/1.0"
            );
        }
        for ct in [
            "application/grpc-web",
            "application/grpcx",
            "application/json",
        ] {
            assert!(!is_grpc(&request(Version::HTTP_2, ct)), "{ct}");
        }
    }
}
