//! The flags every example server shares: which tokens to trust, and how they must be bound.
//! Each example adds its own (address, TLS, routes) around these; `take` consumes ours.

use tower_oauth_guard::dpop::{BaseUrl, NonceSecret};
use tower_oauth_guard::mtls::ClientCertHeader;
use tower_oauth_guard::{DpopMode, DpopNonces, MtlsMode, OAuthGuard, OAuthGuardBuilder, PublicUri};

/// `--help` text of the shared flags.
pub const HELP: &str = "\
TOKENS:
    --issuer ISS              trusted issuer (exact `iss`)
    --audience AUD            this API's audience (`aud` must contain it)
    --jwks PATH_OR_URL        the issuer's JWK Set: a file, or an http(s) URL
    --discover                find the JWK Set from the issuer's metadata instead
    --realm REALM             realm of the WWW-Authenticate challenges

DPOP (RFC 9449):
    --dpop off|allowed|required   DPoP mode (default: allowed)
    --dpop-nonce              require server nonces in proofs
    --dpop-nonce-secret HEX   shared nonce secret (>= 32 bytes; default: random, or
                              the DPOP_NONCE_SECRET environment variable)
    --public-url URL          the public base URL that `htu` must match
    --trust-forwarded         take the public URL from Forwarded / X-Forwarded-* headers

MTLS (RFC 8705, RFC 9440):
    --mtls optional|required  required: only certificate-bound tokens, and a client
                              certificate on every connection (default: optional)
    --trust-client-cert-header  honour a TLS-terminating proxy's Client-Cert header
";

/// The shared flags, as given.
#[derive(Debug, Default)]
pub struct GuardFlags {
    issuer: Option<String>,
    audience: Option<String>,
    jwks: Option<String>,
    discover: bool,
    realm: Option<String>,
    dpop: Option<String>,
    dpop_nonce: bool,
    dpop_nonce_secret: Option<String>,
    public_url: Option<String>,
    trust_forwarded: bool,
    mtls: Option<String>,
    trust_client_cert_header: bool,
}

impl GuardFlags {
    /// Consumes `flag` (and its value from `rest`) if it is one of ours.
    pub fn take(
        &mut self,
        flag: &str,
        rest: &mut impl Iterator<Item = String>,
    ) -> Result<bool, String> {
        let mut value = || rest.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag {
            "--issuer" => self.issuer = Some(value()?),
            "--audience" => self.audience = Some(value()?),
            "--jwks" => self.jwks = Some(value()?),
            "--discover" => self.discover = true,
            "--realm" => self.realm = Some(value()?),
            "--dpop" => self.dpop = Some(value()?),
            "--dpop-nonce" => self.dpop_nonce = true,
            "--dpop-nonce-secret" => self.dpop_nonce_secret = Some(value()?),
            "--public-url" => self.public_url = Some(value()?),
            "--trust-forwarded" => self.trust_forwarded = true,
            "--mtls" => self.mtls = Some(value()?),
            "--trust-client-cert-header" => self.trust_client_cert_header = true,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `--mtls required`.
    pub fn mtls_required(&self) -> Result<bool, String> {
        match self.mtls.as_deref() {
            None | Some("optional") => Ok(false),
            Some("required") => Ok(true),
            Some(other) => Err(format!("--mtls {other}: expected optional|required")),
        }
    }

    /// A guard builder configured by the shared flags.
    pub fn builder(&self) -> Result<OAuthGuardBuilder, Box<dyn std::error::Error>> {
        let issuer = self.issuer.as_deref().ok_or("--issuer is required")?;
        let audience = self.audience.as_deref().ok_or("--audience is required")?;
        let mut builder = OAuthGuard::builder().issuer(issuer).audience(audience);
        builder = match (self.jwks.as_deref(), self.discover) {
            (Some(j), false) if j.starts_with("http://") || j.starts_with("https://") => {
                builder.jwks_url(j)
            }
            (Some(j), false) => builder.jwks_file(j),
            (None, true) => builder.discover(),
            _ => return Err("exactly one of --jwks and --discover is required".into()),
        };
        if let Some(realm) = &self.realm {
            builder = builder.realm(realm);
        }
        builder = builder.dpop(match self.dpop.as_deref() {
            None | Some("allowed") => DpopMode::Allowed,
            Some("off") => DpopMode::Disabled,
            Some("required") => DpopMode::Required,
            Some(other) => {
                return Err(format!("--dpop {other}: expected off|allowed|required").into());
            }
        });
        if self.dpop_nonce {
            let secret = match self
                .dpop_nonce_secret
                .clone()
                .or_else(|| std::env::var("DPOP_NONCE_SECRET").ok())
            {
                Some(h) => NonceSecret::from_bytes(&hex(&h)?)?,
                None => NonceSecret::generate()?,
            };
            builder = builder.dpop_nonces(DpopNonces::new(secret));
        }
        if let Some(url) = &self.public_url {
            builder = builder.public_uri(PublicUri::Fixed(BaseUrl::parse(url)?));
        } else if self.trust_forwarded {
            builder = builder.public_uri(PublicUri::TrustForwarded);
        }
        if self.mtls_required()? {
            builder = builder.mtls(MtlsMode::Required);
        }
        if self.trust_client_cert_header {
            builder = builder.trust_client_cert_header(ClientCertHeader::from_any_peer());
        }
        Ok(builder)
    }
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 || !s.is_ascii() {
        return Err("the nonce secret must be hex".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}
