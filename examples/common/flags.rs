//! What every example server shares: the flags (which tokens to trust, how they must be bound,
//! where and how to listen; each example adds its own few through [`parse`]) and logging.

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

SERVER:
    --listen ADDR             address to listen on
    --tls-cert PEM            serve over TLS with this certificate chain
    --tls-key PEM             and this private key
    --client-ca PEM           request client certificates issued by these CAs
    --help                    this text
";

/// Every shared flag, as given.
#[derive(Debug, Default)]
pub struct Flags {
    pub guard: GuardFlags,
    pub listen: Option<String>,
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    pub client_ca: Option<String>,
}

impl Flags {
    /// The rustls configuration for `serve_tls`: `None` for plain HTTP. Client certificates are
    /// requested when `--client-ca` is given, and demanded with `--mtls required`.
    #[allow(dead_code)] // grpc_server uses tonic's TLS instead
    pub fn rustls_config(
        &self,
    ) -> Result<Option<rustls::ServerConfig>, Box<dyn std::error::Error>> {
        use std::sync::Arc;
        use tower_oauth_guard::mtls::serve::{
            ClientAuth, load_certificates, load_private_key, server_config,
        };
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) if self.client_ca.is_none() => return Ok(None),
            _ => {
                return Err(
                    "--tls-cert and --tls-key go together (and --client-ca needs them)".into(),
                );
            }
        };
        let client_auth = match &self.client_ca {
            None => ClientAuth::None,
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in load_certificates(ca)? {
                    roots.add(c)?;
                }
                if self.guard.mtls_required()? {
                    ClientAuth::Required(Arc::new(roots))
                } else {
                    // Bearer and DPoP clients without a certificate share the port.
                    ClientAuth::Optional(Arc::new(roots))
                }
            }
        };
        let config = server_config(
            load_certificates(cert)?,
            load_private_key(key)?,
            client_auth,
        )?;
        Ok(Some(config))
    }
}

/// Logs the guard's events at `info` (override with `RUST_LOG`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "tower_oauth_guard=info".into()),
        )
        .init();
}

/// The value after `flag`.
pub fn value(flag: &str, rest: &mut dyn Iterator<Item = String>) -> Result<String, String> {
    rest.next().ok_or_else(|| format!("{flag} needs a value"))
}

/// Parses the command line: the shared flags, then those `own` takes (returning `true`).
/// `--help` prints `usage`, the shared flags and `own_help`.
pub fn parse(
    usage: &str,
    own_help: &str,
    mut own: impl FnMut(&str, &mut dyn Iterator<Item = String>) -> Result<bool, String>,
) -> Result<Flags, String> {
    let mut flags = Flags::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flags.guard.take(&flag, &mut it)? || own(&flag, &mut it)? {
            continue;
        }
        match flag.as_str() {
            "--help" | "-h" => {
                print!("{usage}\n{HELP}\n{own_help}");
                std::process::exit(0);
            }
            "--listen" => flags.listen = Some(value(&flag, &mut it)?),
            "--tls-cert" => flags.tls_cert = Some(value(&flag, &mut it)?),
            "--tls-key" => flags.tls_key = Some(value(&flag, &mut it)?),
            "--client-ca" => flags.client_ca = Some(value(&flag, &mut it)?),
            other => return Err(format!("unknown flag {other}; see --help")),
        }
    }
    Ok(flags)
}

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
    fn take(&mut self, flag: &str, rest: &mut dyn Iterator<Item = String>) -> Result<bool, String> {
        let mut value = || value(flag, rest);
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
