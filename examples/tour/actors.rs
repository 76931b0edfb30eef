//! The tour's cast: the authorization server (signing key, PKCE-checking token endpoint), DPoP
//! keys, the PKI (CA, the API's certificate, client certificates) and HTTPS clients.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tower_oauth_guard::pkce::CodeChallenge;
use tower_oauth_guard::{KeySet, ath_for, jwk_thumbprint};

use crate::scenarios::{API, Error};

/// The `iss` of every token the tour's authorization server signs.
pub const ISSUER: &str = "https://issuer.tour.example";

// ---- the authorization server ---------------------------------------------------------------

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn random_string() -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "random number generator failed")?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// An ES256 key with its public JWK.
pub struct SigningKey {
    pub encoding: EncodingKey,
    pub jwk: Jwk,
}

impl SigningKey {
    pub fn generate(kid: Option<&str>) -> Result<Self, Error> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| "key generation failed")?;
        let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256)?;
        jwk.common.key_id = kid.map(str::to_owned);
        if kid.is_none() {
            jwk.common.key_algorithm = None;
        }
        Ok(SigningKey { encoding, jwk })
    }
}

/// The in-process authorization server: it signs access tokens and runs the token endpoint's
/// authorization-code grant with PKCE (RFC 6749 §4.1.3, RFC 7636 §4.6).
pub struct AuthorizationServer {
    pub key: SigningKey,
    codes: Mutex<HashMap<String, Option<CodeChallenge>>>,
}

impl AuthorizationServer {
    pub fn new() -> Result<Self, Error> {
        Ok(AuthorizationServer {
            key: SigningKey::generate(Some("as-1"))?,
            codes: Mutex::new(HashMap::new()),
        })
    }

    /// The server's public keys, as its `jwks_uri` would serve them.
    pub fn jwks(&self) -> Result<KeySet, Error> {
        let document = serde_json::json!({ "keys": [self.key.jwk] });
        Ok(KeySet::from_json(document.to_string().as_bytes())?)
    }

    /// A token for `audience`, bound by `cnf` when given, expiring in `lifetime` seconds.
    pub fn mint(&self, audience: &str, cnf: Option<Value>, lifetime: i64) -> Result<String, Error> {
        sign_token(&self.key.encoding, audience, cnf, lifetime)
    }

    /// The authorization endpoint's answer: a one-time code, remembering the PKCE challenge.
    pub fn authorize(&self, challenge: Option<CodeChallenge>) -> Result<String, Error> {
        let code = random_string()?;
        self.codes
            .lock()
            .map_err(|_| "lock poisoned")?
            .insert(code.clone(), challenge);
        Ok(code)
    }

    /// The token endpoint: redeems `code` once. When the authorization request carried a
    /// challenge, the verifier must match it (RFC 7636 §4.6) or the grant is refused.
    pub fn redeem(
        &self,
        code: &str,
        verifier: Option<&str>,
    ) -> Result<Result<String, String>, Error> {
        let Some(challenge) = self.codes.lock().map_err(|_| "lock poisoned")?.remove(code) else {
            return Ok(Err("invalid_grant (unknown or used code)".into()));
        };
        if let Some(challenge) = challenge {
            let Some(verifier) = verifier else {
                return Ok(Err("invalid_grant (code_verifier missing)".into()));
            };
            if let Err(e) = challenge.verify(verifier) {
                return Ok(Err(format!("invalid_grant ({e})")));
            }
        }
        Ok(Ok(self.mint(API, None, 300)?))
    }
}

pub fn sign_token(
    key: &EncodingKey,
    audience: &str,
    cnf: Option<Value>,
    lifetime: i64,
) -> Result<String, Error> {
    let now = now();
    let mut claims = json!({
        "iss": ISSUER,
        "sub": "alice",
        "aud": audience,
        "client_id": "alice-app",
        "scope": "payments",
        "iat": now,
        "exp": now + lifetime,
        "jti": random_string()?,
    });
    if let Some(cnf) = cnf {
        claims["cnf"] = cnf;
    }
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("as-1".into());
    header.typ = Some("at+jwt".into());
    Ok(jsonwebtoken::encode(&header, &claims, key)?)
}

// ---- clients -----------------------------------------------------------------------------------

/// A DPoP key pair held by one client.
pub struct DpopKey {
    pub key: SigningKey,
    pub jkt: String,
}

impl DpopKey {
    pub fn generate() -> Result<Self, Error> {
        let key = SigningKey::generate(None)?;
        let jkt = jwk_thumbprint(&serde_json::to_string(&key.jwk)?)?;
        Ok(DpopKey { key, jkt })
    }

    /// A fresh proof for `method` `url`, bound to `token` (RFC 9449 §4.2).
    pub fn proof(&self, method: &str, url: &str, token: &str) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("dpop+jwt".into());
        header.jwk = Some(self.key.jwk.clone());
        let claims = json!({
            "jti": random_string()?,
            "htm": method,
            "htu": url,
            "iat": now(),
            "ath": ath_for(token),
        });
        Ok(jsonwebtoken::encode(&header, &claims, &self.key.encoding)?)
    }
}

/// An HTTPS client (HTTP/1.1 or HTTP/2, by ALPN).
pub type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The rustls provider of this build.
pub fn rustls_provider() -> Result<Arc<rustls::crypto::CryptoProvider>, Error> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = Some(rustls::crypto::aws_lc_rs::default_provider());
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let provider = Some(rustls::crypto::ring::default_provider());
    #[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
    let provider: Option<rustls::crypto::CryptoProvider> = None;
    provider
        .map(Arc::new)
        .ok_or_else(|| "the tour needs the aws-lc-rs or rust-crypto feature".into())
}

/// jsonwebtoken signs the tour's tokens and proofs with the provider of this build.
pub fn install_jwt_provider() {
    #[cfg(feature = "aws-lc-rs")]
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
}

/// A CA, the API's certificate, and one client certificate each for alice and mallory.
pub struct Pki {
    pub ca: CertificateDer<'static>,
    pub server: (CertificateDer<'static>, Vec<u8>),
    pub alice: (CertificateDer<'static>, Vec<u8>),
    pub mallory: (CertificateDer<'static>, Vec<u8>),
}

impl Pki {
    pub fn generate() -> Result<Self, Error> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name.push(DnType::CommonName, "tour CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |names: Vec<String>, cn: &str, eku| -> Result<_, Error> {
            let mut params = CertificateParams::new(names)?;
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![eku];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &issuer)?;
            Ok((cert.der().clone(), key.serialize_der()))
        };
        Ok(Pki {
            ca: ca_cert.der().clone(),
            server: leaf(
                vec!["127.0.0.1".into()],
                "api",
                ExtendedKeyUsagePurpose::ServerAuth,
            )?,
            alice: leaf(Vec::new(), "alice", ExtendedKeyUsagePurpose::ClientAuth)?,
            mallory: leaf(Vec::new(), "mallory", ExtendedKeyUsagePurpose::ClientAuth)?,
        })
    }

    pub fn roots(&self) -> Result<Arc<rustls::RootCertStore>, Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }

    /// An HTTPS client trusting the CA, presenting `identity` when given.
    pub fn client(
        &self,
        identity: Option<&(CertificateDer<'static>, Vec<u8>)>,
    ) -> Result<HttpsClient, Error> {
        let builder = rustls::ClientConfig::builder_with_provider(rustls_provider()?)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots()?);
        let config = match identity {
            Some((cert, key)) => builder.with_client_auth_cert(
                vec![cert.clone()],
                PrivateKeyDer::Pkcs8(key.clone().into()),
            )?,
            None => builder.with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_all_versions()
            .build();
        Ok(Client::builder(TokioExecutor::new()).build(connector))
    }
}
