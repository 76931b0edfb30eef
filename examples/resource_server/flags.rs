//! The flags: which tokens to trust, how they must be bound, where and how to listen.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Args, ValueEnum};
use tower_oauth_guard::ResourceIdentifier;
use tower_oauth_guard::{BaseUrl, ClientCertHeader, ForwardedHeaders, Issuer, NonceSecret};
use tower_oauth_guard::{Dpop, DpopNonces, Mtls, OAuthGuard, OAuthGuardBuilder, PublicUri};
use tower_oauth_guard::{Introspection, IntrospectionAuth};

/// Which tokens to trust and how they must be bound.
#[derive(Debug, Args)]
pub struct GuardFlags {
    /// Trusted issuer (exact `iss`).
    #[arg(long)]
    issuer: String,
    /// This API's audience (`aud` must contain it).
    #[arg(long)]
    audience: String,
    /// The issuer's JWK Set: a file, or an http(s) URL.
    #[arg(long, value_name = "PATH_OR_URL", required_unless_present = "discover")]
    jwks: Option<String>,
    /// Find the JWK Set from the issuer's metadata instead.
    #[arg(long, conflicts_with = "jwks")]
    discover: bool,
    /// The issuer's token introspection endpoint (RFC 7662): tokens of --issuer that are not
    /// JWTs are validated there, the guard authenticating with client_secret_basic.
    #[arg(long, value_name = "URL", requires_all = ["client_id", "client_secret"])]
    introspection_url: Option<String>,
    /// The guard's client id at the introspection endpoint.
    #[arg(long, value_name = "ID", requires = "introspection_url")]
    client_id: Option<String>,
    /// The guard's client secret at the introspection endpoint.
    #[arg(
        long,
        value_name = "SECRET",
        env = "INTROSPECTION_CLIENT_SECRET",
        hide_env_values = true,
        requires = "introspection_url"
    )]
    client_secret: Option<String>,
    /// Longest an active introspection answer is reused, in seconds (default 60; never beyond
    /// the token's `exp`): a revoked token is refused at most this long after its revocation.
    #[arg(long, value_name = "SECONDS", requires = "introspection_url")]
    introspection_cache_ttl: Option<u64>,
    /// Realm of the WWW-Authenticate challenges.
    #[arg(long)]
    realm: Option<String>,

    /// DPoP mode (RFC 9449).
    #[arg(long, value_enum, default_value_t = DpopFlag::Allowed)]
    dpop: DpopFlag,
    /// Require server nonces in DPoP proofs (implied by a nonce secret).
    #[arg(long)]
    dpop_nonce: bool,
    /// Shared nonce secret, hex, at least 32 bytes (default: random).
    #[arg(
        long,
        value_name = "HEX",
        env = "DPOP_NONCE_SECRET",
        hide_env_values = true
    )]
    dpop_nonce_secret: Option<String>,
    /// A public base URL of this API, which a proof's `htu` must name (repeatable; default:
    /// the listen address, with https when serving TLS). The first is also its resource
    /// identifier (RFC 9728), whose metadata it serves and every challenge names.
    #[arg(long, value_name = "URL")]
    public_url: Vec<String>,
    /// Take the public URL from forwarding headers, but only on connections from this proxy
    /// address (repeatable).
    #[arg(
        long,
        value_name = "PROXY_IP",
        conflicts_with = "public_url",
        requires = "forwarded_headers"
    )]
    trust_forwarded: Vec<IpAddr>,
    /// Which forwarding headers the trusted proxies set (the others are never read); required
    /// with --trust-forwarded, since a wrong guess lets a client's own header through.
    #[arg(long, value_enum, requires = "trust_forwarded")]
    forwarded_headers: Option<ProxyHeaders>,

    /// mTLS mode (RFC 8705): required = only certificate-bound tokens, and a client
    /// certificate on every connection.
    #[arg(long, value_enum, default_value_t = MtlsFlag::Allowed)]
    mtls: MtlsFlag,
    /// Honour a TLS-terminating proxy's Client-Cert header (RFC 9440) on connections from
    /// this proxy address (repeatable).
    #[arg(long, value_name = "PROXY_IP")]
    trust_client_cert_header: Vec<IpAddr>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DpopFlag {
    Off,
    Allowed,
    Required,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProxyHeaders {
    /// `Forwarded` (RFC 7239).
    Forwarded,
    /// `X-Forwarded-Proto` and `X-Forwarded-Host`.
    XForwarded,
    /// The same, plus `X-Forwarded-Prefix`.
    XForwardedWithPrefix,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MtlsFlag {
    Allowed,
    Required,
}

/// Where and how to listen.
#[derive(Debug, Args)]
pub struct ServerFlags {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Serve over TLS with this certificate chain (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<String>,
    /// ... and this private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<String>,
    /// Request client certificates issued by these CAs (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub client_ca: Option<String>,
}

impl ServerFlags {
    /// Whether the server speaks TLS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// Whether it asks clients for certificates (`--client-ca`).
    pub fn client_certs(&self) -> bool {
        self.client_ca.is_some()
    }

    /// The rustls configuration for `serve_tls`: `None` for plain HTTP. Client certificates are
    /// requested when `--client-ca` is given, and demanded when `mtls_required`.
    pub fn rustls_config(
        &self,
        mtls_required: bool,
    ) -> Result<Option<rustls::ServerConfig>, Box<dyn std::error::Error>> {
        use std::sync::Arc;
        use tower_oauth_guard::{ClientAuth, load_certificates, load_private_key, server_config};
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let client_auth = match &self.client_ca {
            None => ClientAuth::None,
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in load_certificates(ca)? {
                    roots.add(c)?;
                }
                if mtls_required {
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

    /// tonic's TLS settings (for `--grpc`): `None` for plain HTTP/2.
    #[cfg(feature = "tonic")]
    pub fn tonic_tls_config(
        &self,
        mtls_required: bool,
    ) -> Result<Option<tonic::transport::ServerTlsConfig>, Box<dyn std::error::Error>> {
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let (cert, key) = (std::fs::read(cert)?, std::fs::read(key)?);
        let mut config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &self.client_ca {
            // Clients without a certificate may still come with bearer or DPoP tokens.
            config = config
                .client_ca_root(Certificate::from_pem(std::fs::read(ca)?))
                .client_auth_optional(!mtls_required);
        }
        Ok(Some(config))
    }
}

impl GuardFlags {
    /// DPoP accepted (`--dpop allowed|required`).
    pub fn dpop_on(&self) -> bool {
        !matches!(self.dpop, DpopFlag::Off)
    }

    /// This API's resource identifier (RFC 9728 §1.2): the first `--public-url`, else the
    /// listen address; none behind `--trust-forwarded`, where the public URL comes with each
    /// request.
    pub fn resource(&self, local: SocketAddr, tls: bool) -> Option<String> {
        if !self.trust_forwarded.is_empty() {
            return None;
        }
        let scheme = if tls { "https" } else { "http" };
        Some(
            self.public_url
                .first()
                .cloned()
                .unwrap_or_else(|| format!("{scheme}://{local}")),
        )
    }

    /// `--mtls required`.
    pub fn mtls_required(&self) -> bool {
        self.mtls == MtlsFlag::Required
    }

    /// A guard builder configured by the flags; `dpop` adds to the DPoP settings. `local` is
    /// the address the server listens on: without `--public-url` or `--trust-forwarded`, it
    /// is the public URL. `client_certs`: the TLS server asks for client certificates.
    pub fn builder(
        &self,
        local: SocketAddr,
        tls: bool,
        client_certs: bool,
        dpop: impl FnOnce(Dpop) -> Dpop,
    ) -> Result<OAuthGuardBuilder, Box<dyn std::error::Error>> {
        let issuer = Issuer::new(&self.issuer).audience(&self.audience);
        let issuer = match self.jwks.as_deref() {
            Some(j) if j.starts_with("http://") || j.starts_with("https://") => issuer.jwks_url(j),
            Some(j) => issuer.jwks_file(j),
            None => issuer.discover(),
        };
        let issuer = match (
            &self.introspection_url,
            &self.client_id,
            &self.client_secret,
        ) {
            (Some(url), Some(id), Some(secret)) => {
                let mut introspection =
                    Introspection::new(IntrospectionAuth::client_secret_basic(id, secret))
                        .endpoint(url);
                if let Some(seconds) = self.introspection_cache_ttl {
                    introspection = introspection.max_cache_ttl(Duration::from_secs(seconds));
                }
                issuer.introspection(introspection)
            }
            _ => issuer,
        };
        let mut builder = OAuthGuard::builder().trust(issuer);
        if let Some(realm) = &self.realm {
            builder = builder.realm(realm);
        }
        if let Some(url) = self.resource(local, tls) {
            match ResourceIdentifier::parse(&url) {
                Ok(_) => builder = builder.resource(url),
                // Plain http on a public address, say: the server runs, without metadata.
                Err(e) => eprintln!(
                    "no protected resource metadata: {url} cannot be a resource identifier \
                     ({e}); set --public-url https://..."
                ),
            }
        }
        let public = if !self.trust_forwarded.is_empty() {
            let headers = match self.forwarded_headers.unwrap_or(ProxyHeaders::Forwarded) {
                ProxyHeaders::Forwarded => ForwardedHeaders::Forwarded,
                ProxyHeaders::XForwarded => ForwardedHeaders::XForwarded,
                ProxyHeaders::XForwardedWithPrefix => ForwardedHeaders::XForwardedWithPrefix,
            };
            PublicUri::forwarded_by(self.trust_forwarded.iter().copied(), headers)
        } else if !self.public_url.is_empty() {
            let bases = self.public_url.iter().map(|u| BaseUrl::parse(u));
            PublicUri::Fixed(bases.collect::<Result<_, _>>()?)
        } else {
            let scheme = if tls { "https" } else { "http" };
            PublicUri::fixed(BaseUrl::parse(&format!("{scheme}://{local}"))?)
        };
        // A nonce secret alone turns nonces on: nobody sets one to leave them off.
        let nonces = self.dpop_nonce || self.dpop_nonce_secret.is_some();
        let mut settings = match self.dpop {
            DpopFlag::Off => {
                // --public-url still names the resource (RFC 9728).
                let dpop_only = nonces || !self.trust_forwarded.is_empty();
                if dpop_only {
                    return Err(
                        "--dpop off: the DPoP flags (--dpop-nonce[-secret], --trust-forwarded) \
                                would do nothing"
                            .into(),
                    );
                }
                None
            }
            DpopFlag::Allowed => Some(Dpop::allowed(public)),
            DpopFlag::Required => Some(Dpop::required(public)),
        };
        if nonces {
            let secret = match &self.dpop_nonce_secret {
                Some(h) => NonceSecret::from_bytes(&hex::decode(h)?)?,
                None => NonceSecret::generate()?,
            };
            settings = settings.map(|d| d.nonces(DpopNonces::new(secret)));
        }
        if let Some(settings) = settings {
            builder = builder.dpop(dpop(settings));
        }
        let mut mtls = match self.mtls {
            MtlsFlag::Allowed => Mtls::allowed(),
            MtlsFlag::Required => Mtls::required(),
        };
        if !self.trust_client_cert_header.is_empty() {
            mtls = mtls.trust_client_cert_header(ClientCertHeader::from_proxies(
                self.trust_client_cert_header.iter().copied(),
            ));
        }
        // Set only where certificates can arrive (the TLS server asks for them, or a proxy
        // forwards them): setting it says so in the metadata. Bound tokens are checked anyway.
        let certificates = client_certs || !self.trust_client_cert_header.is_empty();
        if certificates || self.mtls_required() {
            builder = builder.mtls(mtls);
        }
        Ok(builder)
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
